"""Forward and backward passes through a stack of encoders (and a softmax output layer).

Written once, used three times: by the fine-tuning of
:class:`~skae.StackedAutoencoderClassifier` (gradient with respect to the parameters)
and by :mod:`skae.inspection` (gradient with respect to the input, for activation
maximisation and code inversion).

A network is a list of :class:`Layer`; layer ``l`` maps the activations ``A[l-1]`` of
shape ``(m, n_in)`` to ``A[l] = act(A[l-1] @ weights.T + bias)`` of shape ``(m, n_out)``,
with ``A[0] = X``. Rows are samples. ``weights`` has the orientation of
``SparseAutoencoder.components_``: ``(n_out, n_in)``, one row per unit.

Backpropagation (all rows at once, never a Python loop over samples)::

    δ_L       = dJ/dZ_L                    (from dJ/dA_L through the activation)
    ∇W_l      = δ_lᵀ A[l-1],  ∇b_l = Σ_i δ_l
    dJ/dA[l-1] = δ_l W_l,      δ_{l-1} = dJ/dA[l-1] ⊙ act'(A[l-1])

For a softmax layer the step from ``dJ/dA`` to ``δ`` is the full Jacobian-vector product
``δ = A ⊙ (g − Σ_k g_k A_k)`` (row by row). For the softmax with the cross-entropy loss
of fine-tuning, ``δ_L = (P − Y) / m`` directly.

The fine-tuning objective (:class:`FineTuneObjective`) is a pure function of one flat
float64 parameter vector (:class:`NetworkLayout` gives views into it):

    J(θ) = −(1/m) Σ_i log P(y_i | x_i) + Σ_l (α_l / 2) ‖W_l‖²_F

over the *trainable* layers (the top ``n_trainable``; the layers below are frozen and
their output is computed once). ``α_l`` is per layer; the classifier passes its
``softmax_alpha`` for the output layer and 0 for the encoders (see its docstring).
"""

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.utils.validation import check_is_fitted

from ._base import ACTIVATIONS
from ._parallel import (
    available_threads,
    blas_single_threaded,
    block_rows_for,
    map_blocks,
    row_blocks,
)

__all__ = [
    "FineTuneObjective",
    "assemble_fine_tune",
    "Layer",
    "NetworkLayout",
    "estimator_activation",
    "forward",
    "input_gradient",
    "network_layers",
    "parameter_gradient",
]

LAYER_ACTIVATIONS = ("sigmoid", "tanh", "softmax", "identity")
# Data with fewer elements than this are evaluated by one worker.
_PARALLEL_MIN_SIZE = 1 << 16


@dataclass(frozen=True, eq=False)
class Layer:
    """One layer of a network: ``A_out = activation(A_in @ weights.T + bias)``.

    Attributes
    ----------
    weights : ndarray of shape (n_out, n_in)
        One row per unit (the orientation of ``components_``).
    bias : ndarray of shape (n_out,)
    activation : {"sigmoid", "tanh", "softmax", "identity"}
    """

    weights: np.ndarray
    bias: np.ndarray
    activation: str

    def __post_init__(self):
        if self.activation not in LAYER_ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {LAYER_ACTIVATIONS}, got {self.activation!r}."
            )
        if np.ndim(self.weights) != 2 or np.shape(self.bias) != (np.shape(self.weights)[0],):
            raise ValueError(
                f"weights must be (n_out, n_in) and bias (n_out,); got "
                f"{np.shape(self.weights)} and {np.shape(self.bias)}."
            )

    @property
    def n_in(self):
        return self.weights.shape[1]

    @property
    def n_out(self):
        return self.weights.shape[0]


# --------------------------------------------------------------------------- estimators
def estimator_activation(estimator):
    """The hidden activation a fitted autoencoder used (``_spec_`` if present)."""
    spec = getattr(estimator, "_spec_", None)
    if spec is not None:
        return spec.activation
    return estimator.activation


def _autoencoder_layer(autoencoder):
    return Layer(
        autoencoder.components_,
        autoencoder.intercept_hidden_,
        estimator_activation(autoencoder),
    )


def network_layers(estimator, layer=None):
    """The encoder layers of a fitted skae estimator, from the input up to ``layer``.

    Parameters
    ----------
    estimator : SparseAutoencoder, StackedAutoencoder or StackedAutoencoderClassifier
        A fitted estimator. A SparseAutoencoder has 1 layer, a StackedAutoencoder one
        per hidden layer, a StackedAutoencoderClassifier one per hidden layer (its
        fine-tuned encoders) plus the softmax output layer.
    layer : int, "output" or None, default=None
        1-based index of the last layer to return. For the classifier, ``"output"`` or
        ``len(hidden_layer_sizes) + 1`` is the softmax layer (the class units). None
        returns every layer (up to the class units for the classifier).

    Returns
    -------
    layers : list of Layer
        ``layers[0]`` reads the input ``X`` of shape (m, n_features_in_).

    Raises
    ------
    NotFittedError
        If the estimator is not fitted.
    ValueError
        If ``layer`` is out of range, or the estimator is not a skae network.
    """
    if hasattr(estimator, "_network_layers"):
        layers = estimator._network_layers()  # checks that it is fitted
    elif hasattr(estimator, "intercept_hidden_") or hasattr(estimator, "n_hidden"):
        check_is_fitted(estimator, "components_")
        layers = [_autoencoder_layer(estimator)]
    else:
        raise ValueError(
            f"network_layers needs a skae SparseAutoencoder, StackedAutoencoder or "
            f"StackedAutoencoderClassifier, got {type(estimator).__name__}."
        )
    if layer is None:
        return list(layers)
    has_output = layers[-1].activation == "softmax"
    if isinstance(layer, str):
        if layer != "output" or not has_output:
            allowed = "'output' or " if has_output else ""
            raise ValueError(
                f"layer={layer!r} is not a layer of this {type(estimator).__name__}; "
                f"use {allowed}an int from 1 to {len(layers)}."
            )
        return list(layers)
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)):
        raise ValueError(f"layer must be an int, 'output' or None, got {layer!r}.")
    if not 1 <= layer <= len(layers):
        extra = f" ({len(layers)} is the output layer)" if has_output else ""
        raise ValueError(
            f"layer={layer} is out of range for this {type(estimator).__name__}: it has "
            f"layers 1 to {len(layers)}{extra}."
        )
    return list(layers[: int(layer)])


# --------------------------------------------------------------------------- forward
def _float_dtype(X):
    dtype = np.dtype(getattr(X, "dtype", np.float64))
    return dtype if dtype in (np.float32, np.float64) else np.dtype(np.float64)


def _affine(A, layer, dtype, out=None):
    """``A @ weights.T + bias`` in ``dtype`` (A dense or sparse), into ``out`` if given."""
    W = np.asarray(layer.weights, dtype=dtype)
    if sp.issparse(A):
        Z = np.asarray(A @ W.T, dtype=dtype)
        if out is not None:
            out[...] = Z
            Z = out
    else:
        Z = np.matmul(A, W.T, out=out)
    Z += np.asarray(layer.bias, dtype=dtype)
    return Z


def _softmax_(Z):
    """Row-wise softmax of ``Z`` in place (shifted by the row maximum, no overflow)."""
    Z -= Z.max(axis=1, keepdims=True)
    np.exp(Z, out=Z)
    Z /= Z.sum(axis=1, keepdims=True)
    return Z


def _activate_(Z, activation):
    if activation == "softmax":
        return _softmax_(Z)
    if activation == "identity":
        return Z
    return ACTIVATIONS[activation].forward(Z)


def forward(layers, X):
    """Activations of every layer.

    Parameters
    ----------
    layers : list of Layer
    X : {ndarray, sparse matrix} of shape (m, layers[0].n_in)

    Returns
    -------
    activations : list of length len(layers) + 1
        ``[X, A1, ..., AL]``; ``A_l`` has shape (m, layers[l-1].n_out), in the dtype of
        ``X`` (float32 stays float32, other dtypes give float64). ``X`` is the object
        passed in (not copied).
    """
    dtype = _float_dtype(X)
    activations = [X]
    A = X
    for layer in layers:
        A = _activate_(_affine(A, layer, dtype), layer.activation)
        activations.append(A)
    return activations


# --------------------------------------------------------------------------- backward
def _activation_jvp(activation, A, grad, consume=False):
    """``dJ/dZ`` from ``dJ/dA`` for ``A = act(Z)``; in place on ``grad`` when consume.

    With ``consume`` both ``grad`` (the result) and ``A`` (overwritten) may be modified.
    """
    if not consume:
        grad = np.array(grad, dtype=A.dtype)
    if activation == "identity":
        return grad
    if activation == "softmax":
        inner = np.einsum("ij,ij->i", grad, A)
        grad -= inner[:, None]
        grad *= A
        return grad
    ACTIVATIONS[activation].derivative(A if consume else A.copy(), grad)
    return grad


def _backpropagate(
    layers, activations, delta, *, n_params, want_input, out=None, scratch=None
):
    """Backpropagate ``delta`` = dJ/dZ of the top layer down the network.

    Returns ``(param_grads, input_grad)``: ``param_grads`` holds ``(gW, gb)`` for the top
    ``n_params`` layers (bottom first); ``input_grad`` is dJ/dX (None unless
    ``want_input``). ``delta`` and the hidden activations ``activations[1:-1]`` are
    overwritten (callers pass copies or their own buffers); ``activations[0]`` is only
    read. ``out`` are preallocated ``(gW, gb)`` pairs (bottom first) to write into,
    ``scratch`` preallocated arrays for the deltas of lower layers (dJ/dZ of layer ``l``
    goes into ``scratch[l-1]``, shape (m, n_out of layer l)).
    """
    L = len(layers)
    first_param = L - n_params + 1  # lowest 1-based layer whose gradient is wanted
    grads = []
    for k in range(L, 0, -1):
        below = activations[k - 1]
        if k >= first_param:
            gW_out, gb_out = out[k - first_param] if out is not None else (None, None)
            if sp.issparse(below):
                gW = np.asarray((below.T @ delta).T)
            elif gW_out is not None and gW_out.dtype == delta.dtype:
                gW = np.matmul(delta.T, below, out=gW_out)
            else:
                gW = delta.T @ below
            if gW_out is not None and gW is not gW_out:
                gW_out[...] = gW
                gW = gW_out
            gb = delta.sum(axis=0, dtype=np.float64)
            if gb_out is not None:
                gb_out[...] = gb
                gb = gb_out
            else:
                gb = gb.astype(delta.dtype, copy=False)
            grads.append((gW, gb))
        W = np.asarray(layers[k - 1].weights, dtype=delta.dtype)
        if k == 1:
            return grads[::-1], (delta @ W if want_input else None)
        if not want_input and k <= first_param:
            break
        target = scratch[k - 2] if scratch is not None else None
        grad_below = np.matmul(delta, W, out=target)
        delta = _activation_jvp(layers[k - 2].activation, below, grad_below, consume=True)
    return grads[::-1], None


def _check_activations(layers, activations):
    if len(activations) != len(layers) + 1:
        raise ValueError(
            f"activations must be the output of forward(layers, X): {len(layers) + 1} "
            f"arrays, got {len(activations)}."
        )


def input_gradient(layers, activations, grad_output):
    """Gradient of a scalar objective with respect to the input ``X``.

    Parameters
    ----------
    layers : list of Layer
    activations : list
        ``forward(layers, X)``; not modified.
    grad_output : ndarray of shape (m, layers[-1].n_out)
        ``dJ/dA_L``, the gradient of the objective with respect to the top activations.
        A softmax top layer is handled with its full Jacobian.

    Returns
    -------
    grad_input : ndarray of shape (m, layers[0].n_in)
        ``dJ/dX`` (dense, also for sparse ``X``), in the dtype of the activations.
    """
    acts, delta = _top_delta(layers, activations, grad_output)
    return _backpropagate(layers, acts, delta, n_params=0, want_input=True)[1]


def _top_delta(layers, activations, grad_output):
    """The checked activations (inner ones copied, as backpropagation overwrites them) and
    ``dJ/dZ_L`` of the top layer, from ``dJ/dA_L``."""
    _check_activations(layers, activations)
    A_top = activations[-1]
    grad_output = np.asarray(grad_output, dtype=A_top.dtype)
    if grad_output.shape != A_top.shape:
        raise ValueError(
            f"grad_output must have the shape of the top activations {A_top.shape}, got "
            f"{grad_output.shape}."
        )
    delta = _activation_jvp(layers[-1].activation, A_top, grad_output)
    acts = [activations[0]] + [np.array(A) for A in activations[1:-1]] + [A_top]
    return acts, delta


def parameter_gradient(layers, activations, grad_output):
    """Gradient of a scalar objective with respect to every layer's weights and bias.

    Parameters
    ----------
    layers : list of Layer
    activations : list
        ``forward(layers, X)``; not modified.
    grad_output : ndarray of shape (m, layers[-1].n_out)
        ``dJ/dA_L`` (a softmax top layer is handled with its full Jacobian).

    Returns
    -------
    grads : list of (grad_weights, grad_bias)
        One pair per layer, bottom first; shapes (n_out, n_in) and (n_out,).
    """
    acts, delta = _top_delta(layers, activations, grad_output)
    return _backpropagate(
        layers, acts, delta, n_params=len(layers), want_input=False
    )[0]


# --------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class NetworkLayout:
    """Where each layer's weights and bias live in one flat float64 vector.

    ``shapes`` is a tuple of ``(n_out, n_in)``, bottom layer first; the vector holds
    ``W1, b1, W2, b2, ...``. :meth:`unpack` returns views, never copies.
    """

    shapes: tuple

    @property
    def size(self):
        return sum(o * i + o for o, i in self.shapes)

    def unpack(self, theta):
        """``[(W1, b1), (W2, b2), ...]`` as views into ``theta``."""
        parts, start = [], 0
        for n_out, n_in in self.shapes:
            W = theta[start : start + n_out * n_in].reshape(n_out, n_in)
            start += n_out * n_in
            b = theta[start : start + n_out]
            start += n_out
            parts.append((W, b))
        return parts

    def pack(self, layers):
        """A new flat float64 vector from Layers (or (W, b) pairs), bottom first."""
        parts = []
        for item in layers:
            W, b = (item.weights, item.bias) if isinstance(item, Layer) else item
            parts += [np.asarray(W, dtype=np.float64).ravel(),
                      np.asarray(b, dtype=np.float64).ravel()]
        return np.concatenate(parts) if parts else np.zeros(0)


# --------------------------------------------------------------------------- fine-tuning
class FineTuneObjective:
    """Softmax cross-entropy of a network on labelled data, as a function of theta.

    Parameters
    ----------
    layers : list of Layer
        The network; the last layer must be a softmax. The bottom
        ``len(layers) - n_trainable`` layers are frozen at these values; the values of
        the trainable ones only give the shapes (and :attr:`theta0`).
    X : {ndarray, sparse matrix} of shape (m, n_features)
        The labelled rows; float32 stays float32 (other dtypes become float64).
    y : ndarray of int of shape (m,)
        Class indices in ``range(layers[-1].n_out)``.
    n_trainable : int
        How many top layers are trained (1: the softmax only).
    alphas : sequence of float, length n_trainable
        Weight decay of each trainable layer's weights (biases are not decayed).
    n_workers : int or None
        Threads that evaluate blocks of rows at once. None uses as many as BLAS may use
        (1 for small data). The result does not depend on it.

    Calling the object with a flat float64 ``theta`` (laid out by :attr:`layout`)
    returns ``(J, grad)`` with ``grad`` float64. For fixed data and settings the result
    depends only on ``theta``; the data are never modified.

    Blocks and threads, as in the autoencoder's objective: the rows are cut into a
    fixed partition of blocks (:func:`skae._parallel.block_rows_for`), each block's
    forward pass, loss and gradient are computed by whichever worker thread is free
    (BLAS on one thread in each), and the blocks' sums are added in block order
    (:func:`skae._parallel.map_blocks`), so the result is the same, bit for bit, for any
    number of workers. Each worker owns, for a block of ``c`` rows, one ``(c, n_out)``
    buffer per trainable layer (activations, then the top one's δ), one per layer below
    the top for the deltas, and the block's weight gradients; the objective owns the
    totals. Nothing else of size ``m`` is allocated per evaluation.
    """

    def __init__(self, layers, X, y, *, n_trainable, alphas, n_workers=None):
        L = len(layers)
        if layers[-1].activation != "softmax":
            raise ValueError("the top layer of a fine-tuned network must be a softmax.")
        if not 1 <= n_trainable <= L:
            raise ValueError(f"n_trainable must be in [1, {L}], got {n_trainable}.")
        if len(alphas) != n_trainable:
            raise ValueError(f"need {n_trainable} alphas, got {len(alphas)}.")
        self.dtype = dt = _float_dtype(X)
        if not sp.issparse(X):
            X = np.asarray(X, dtype=dt)
        elif X.dtype != dt:
            X = X.astype(dt)
        self.frozen = list(layers[: L - n_trainable])
        self.trainable = list(layers[L - n_trainable :])
        # Input of the first trainable layer: the frozen layers' output, computed once.
        self.inputs = forward(self.frozen, X)[-1] if self.frozen else X
        self.y = np.asarray(y, dtype=np.intp)
        self.m = m = self.inputs.shape[0]
        self.n_classes = layers[-1].n_out
        self.alphas = tuple(float(a) for a in alphas)
        self.layout = NetworkLayout(tuple(layer.weights.shape for layer in self.trainable))
        self.theta0 = self.layout.pack(self.trainable)
        n_in = self.inputs.shape[1]
        c = min(block_rows_for(n_in), max(m, 1))
        self.blocks = row_blocks(m, c)
        if n_workers is None:
            n_workers = available_threads() if m * n_in >= _PARALLEL_MIN_SIZE else 1
        self.n_workers = k = max(1, min(int(n_workers), len(self.blocks)))
        self.workspaces = [
            _FineTuneWorkspace(
                A=[np.empty((c, layer.n_out), dtype=dt) for layer in self.trainable],
                D=[np.empty((c, layer.n_out), dtype=dt) for layer in self.trainable[:-1]],
                grads=[
                    (np.empty(shape, dtype=dt), np.empty(shape[0])) for shape in self.layout.shapes
                ],
            )
            for _ in range(k)
        ]
        self.totals = [
            (np.empty(shape, dtype=dt), np.empty(shape[0])) for shape in self.layout.shapes
        ]
        self.rows = np.arange(c)
        self.last_terms = None

    def _layers(self, theta):
        acts = [layer.activation for layer in self.trainable]
        return [
            Layer(np.asarray(W, dtype=self.dtype), np.asarray(b, dtype=self.dtype), a)
            for (W, b), a in zip(self.layout.unpack(theta), acts)
        ]

    def _block(self, start, stop, worker, layers):
        """Loss sum and gradients (times m) of the rows start:stop, in the worker's buffers."""
        ws, dt, k = self.workspaces[worker], self.dtype, stop - start
        A_in = self.inputs[start:stop]
        activations = [A_in]
        for layer, buffer in zip(layers[:-1], ws.A[:-1]):
            A_in = _activate_(_affine(A_in, layer, dt, out=buffer[:k]), layer.activation)
            activations.append(A_in)
        Z = _affine(A_in, layers[-1], dt, out=ws.A[-1][:k])
        # Cross-entropy from the shifted pre-activation: log Σ exp(z) − z_y.
        rows, y = self.rows[:k], self.y[start:stop]
        Z -= Z.max(axis=1, keepdims=True)
        loss = -float(Z[rows, y].sum(dtype=np.float64))
        np.exp(Z, out=Z)
        totals = Z.sum(axis=1, keepdims=True)
        loss += float(np.log(totals).sum(dtype=np.float64))
        Z /= totals  # P
        Z[rows, y] -= 1.0  # δ_L · m = P − Y
        activations.append(Z)
        grads, _ = _backpropagate(
            layers,
            activations,
            Z,
            n_params=len(layers),
            want_input=False,
            out=ws.grads,
            scratch=[D[:k] for D in ws.D],
        )
        return loss, grads

    def sums(self, theta):
        """The per-chunk piece: the loss and gradient *sums* over this object's rows.

        Returns ``(loss_sum, totals)``: ``−Σ_i log P(y_i | x_i)`` and one
        ``(Σ ∇W, Σ ∇b)`` pair per trainable layer (bottom first; sums over rows, not yet
        divided by ``m``, no weight decay). ``totals`` are this object's buffers,
        overwritten by the next call. Objectives over disjoint row sets (the chunks of a
        dask array, :mod:`skae._dask`) add their sums, and :func:`assemble_fine_tune`
        turns the total into ``(J, grad)``, as :meth:`__call__` does for its own rows.
        """
        theta = np.asarray(theta, dtype=np.float64)
        layers = self._layers(theta)
        for gW, gb in self.totals:
            gW[...] = 0.0
            gb[...] = 0.0
        state = {"loss": 0.0}

        def combine(result):
            state["loss"] += result[0]
            for (tW, tb), (gW, gb) in zip(self.totals, result[1]):
                tW += gW
                tb += gb

        # BLAS on one thread: the workers' products run at once, and the rounding of a
        # product does not depend on a thread count.
        with blas_single_threaded():
            map_blocks(
                lambda start, stop, w: self._block(start, stop, w, layers),
                self.blocks,
                self.n_workers,
                combine=combine,
            )
        return state["loss"], self.totals

    def __call__(self, theta):
        theta = np.asarray(theta, dtype=np.float64)
        loss, totals = self.sums(theta)
        J, grad, self.last_terms = assemble_fine_tune(
            self.layout, self.alphas, theta, self.m, loss, totals
        )
        return J, grad


def assemble_fine_tune(layout, alphas, theta, m, loss_sum, totals):
    """``(J, grad, (J, data_loss))`` from the sums of :meth:`FineTuneObjective.sums`.

    Parameters
    ----------
    layout : NetworkLayout
        The trainable layers' layout.
    alphas : sequence of float
        Weight decay of each trainable layer's weights.
    theta : ndarray of float64
        The parameters the sums were computed at.
    m : int
        Number of rows the sums run over.
    loss_sum : float
    totals : list of (ndarray, ndarray)
        ``(Σ ∇W, Σ ∇b)`` per trainable layer, bottom first.
    """
    data_loss = loss_sum / m
    grad = np.empty(layout.size)
    decay = 0.0
    for (gW, gb), (W, _), (tW, tb), alpha in zip(
        layout.unpack(grad), layout.unpack(theta), totals, alphas
    ):
        np.multiply(tW, 1.0 / m, out=gW)
        np.multiply(tb, 1.0 / m, out=gb)
        if alpha:
            gW += alpha * W
            decay += 0.5 * alpha * float(np.einsum("ij,ij->", W, W))
    J = data_loss + decay
    return J, grad, (J, data_loss)


@dataclass
class _FineTuneWorkspace:
    """One worker's reused buffers (see :class:`FineTuneObjective`)."""

    A: list
    D: list
    grads: list
