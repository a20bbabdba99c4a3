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

Other array-API namespaces (PyTorch, CuPy, array_api_strict; scikit-learn's array API
dispatch): every function here runs on their arrays, on their device, as
:mod:`skae._objective` does. Each step has its NumPy form (products and elementwise work
into reused buffers, ``out=``) and, where the array API has no ``out=``, the same
operation returning a new array (:func:`skae._array.matmul`, :func:`_exp_`, the
activations of :mod:`skae._activations`); the labels of the cross-entropy are picked by fancy
indexing on NumPy and by a one-hot matrix elsewhere (the array API has no scatter).
Sparse matrices are NumPy/SciPy only.
"""

import functools
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.utils.validation import check_is_fitted

from ._activations import ACTIVATIONS
from ._array import (
    array_device,
    array_namespace,
    assign,
    astype,
    buffer,
    cast,
    concat,
    dot,
    matmul,
    modify_in_place,
    parameter_dtype,
    row_dot,
    row_slice,
    sum_rows,
    zeros,
)
from ._parallel import (
    PARALLEL_MIN_SIZE,
    BlockSums,
    available_threads,
    blas_single_threaded,
    map_blocks,
    row_blocks,
    sets_per_worker,
    worker_count,
)

__all__ = [
    "FineTuneObjective",
    "Layer",
    "NetworkLayout",
    "ParameterLayout",
    "affine",
    "assemble",
    "backpropagate",
    "layer_forward",
    "estimator_activation",
    "fine_tune_block_rows",
    "forward",
    "input_gradient",
    "network_layers",
]

LAYER_ACTIVATIONS = ("sigmoid", "tanh", "softmax", "identity", "linear")
# Fine-tuning blocks: at least this many flops of products each, at most this many elements
# in one (rows, n_out) buffer.
_BLOCK_FLOPS = 1 << 29
_BLOCK_BUFFER = 1 << 20


def fine_tune_block_rows(shapes, minimum=256):
    """Rows per block of :class:`FineTuneObjective`, from the trainable layers' shapes.

    A block's products cost about ``6 Σ n_in n_out`` flops per row (forward, the
    weights' gradient and the delta below, two flops a multiply-add). Each block also
    costs a fixed amount of Python, a weight-gradient buffer and its addition into the
    totals, so a block should hold enough work to hide them: at least ``2**29`` flops
    (about 5 ms of one core), in a multiple of ``minimum`` rows, with at most ``2**20``
    elements in any ``(rows, n_out)`` buffer. For 784-200-200-10 that is 512 rows; for a
    softmax on 200 codes the whole of most data sets (one block, no threads).
    """
    per_row = max(1, 6 * sum(int(n_out) * int(n_in) for n_out, n_in in shapes))
    widest = max((int(n_out) for n_out, _ in shapes), default=1)
    rows = minimum * max(1, -(-_BLOCK_FLOPS // (per_row * minimum)))
    cap = max(minimum, _BLOCK_BUFFER // max(widest, 1) // minimum * minimum)
    return min(rows, cap)


@dataclass(frozen=True, eq=False)
class Layer:
    """One layer of a network: ``A_out = activation(A_in @ weights.T + bias)``.

    Attributes
    ----------
    weights : ndarray of shape (n_out, n_in)
        One row per unit (the orientation of ``components_``).
    bias : ndarray of shape (n_out,)
    activation : {"sigmoid", "tanh", "softmax", "identity", "linear"}
        ("linear" is "identity" under the name of the linear decoder).
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

    def __sklearn_array_api_convert__(self, converter):
        """The layer with its arrays converted (scikit-learn's ``move_estimator_to``
        calls this for the layers of a fitted stack)."""
        return Layer(converter(self.weights), converter(self.bias), self.activation)

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


def autoencoder_layer(autoencoder):
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
        layers = [autoencoder_layer(estimator)]
    else:
        names = [
            name
            for name, step in getattr(estimator, "steps", [])
            if hasattr(step, "_network_layers") or hasattr(step, "n_hidden")
        ]
        hint = (
            f"; pass its step, e.g. pipeline.named_steps[{names[0]!r}] (which reads the "
            "features that reach that step)" if names else ""
        )
        raise ValueError(
            f"expected a fitted skae SparseAutoencoder, StackedAutoencoder or "
            f"StackedAutoencoderClassifier, got {type(estimator).__name__}{hint}."
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
    """The dtype the work runs in: float32 stays float32, other dtypes give float64 (the
    widest float of the device for arrays of another namespace)."""
    xp = array_namespace(X)
    dtype = getattr(X, "dtype", None)
    if dtype in (xp.float32, xp.float64):
        return dtype
    return parameter_dtype(xp, array_device(X))


def affine(A, layer, dtype, out=None):
    """``A @ weights.T + bias`` in ``dtype`` (A dense or sparse), into ``out`` if given
    (NumPy; other namespaces return a new array)."""
    W = cast(layer.weights, dtype)
    if sp.issparse(A):
        Z = np.asarray(A @ W.T, dtype=dtype)
        if out is not None:
            out[...] = Z
            Z = out
    else:
        Z = matmul(A, W.T, out)
    Z += cast(layer.bias, dtype)
    return Z


def layer_forward(A, layer, dtype, out=None):
    """``act(A @ weights.T + bias)``: one layer's activations, into ``out`` if given."""
    return _activate_(affine(A, layer, dtype, out), layer.activation)


def _exp_(Z):
    """``exp(Z)``, in place on NumPy arrays (a new array on other namespaces)."""
    xp = array_namespace(Z)
    return modify_in_place(xp, xp.exp, Z, out=Z)


def _copy(A):
    """A copy of ``A`` that may be overwritten."""
    return astype(A, A.dtype, array_namespace(A))


def _softmax_(Z):
    """Row-wise softmax of ``Z`` in place (shifted by the row maximum, no overflow)."""
    xp = array_namespace(Z)
    Z -= xp.max(Z, axis=1, keepdims=True)
    Z = _exp_(Z)
    Z /= xp.sum(Z, axis=1, keepdims=True)
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
        Or an array of another array-API namespace, with ``layers`` in that namespace:
        the activations are then arrays of it, on X's device.

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
        A = layer_forward(A, layer, dtype)
        activations.append(A)
    return activations


# --------------------------------------------------------------------------- backward
def _activation_jvp(activation, A, grad, consume=False):
    """``dJ/dZ`` from ``dJ/dA`` for ``A = act(Z)``; in place on ``grad`` when consume.

    With ``consume`` both ``grad`` (the result) and ``A`` (overwritten) may be modified.
    """
    xp = array_namespace(A)
    if not consume:
        grad = astype(grad, A.dtype, xp)
    if activation == "identity":
        return grad
    if activation == "softmax":
        grad -= xp.reshape(row_dot(grad, A, xp), (-1, 1))
        grad *= A
        return grad
    return ACTIVATIONS[activation].derivative(A if consume else _copy(A), grad)


def backpropagate(
    layers, activations, delta, *, n_params, want_input, out=None, scratch=None,
    wide_bias_sums=False, layout=None, hidden_terms=None, weight_scratch=None,
):
    """Backpropagate ``delta`` = dJ/dZ of the top layer down the network.

    Returns ``(param_grads, input_grad)``: ``param_grads`` holds ``(gW, gb)`` for the top
    ``n_params`` layers (bottom first); ``input_grad`` is dJ/dX (None unless
    ``want_input``). ``delta`` and the hidden activations ``activations[1:-1]`` are
    overwritten on NumPy (callers pass copies or their own buffers); ``activations[0]``
    is only read. ``out`` are preallocated ``(gW, gb)`` pairs (bottom first) to write
    into, ``scratch`` preallocated arrays for the deltas of lower layers (dJ/dZ of layer
    ``l`` goes into ``scratch[l-1]``, shape (m, n_out of layer l)); both NumPy only. The
    bias gradients are summed in float64 (where the device has it) and, without ``out``,
    returned in ``delta``'s dtype unless ``wide_bias_sums``.

    The hooks of an autoencoder: ``layout`` (a :class:`NetworkLayout` of the top
    ``n_params`` layers) says how each weight gradient is stored: a layer stored
    transposed gets ``A[l-1]ᵀ δ_l`` (the orientation of its slot, which is also a
    different rounding from ``(δ_lᵀ A[l-1])ᵀ``), and a layer sharing the slot of a lower
    one hands its product down to be added to that layer's (with ``out``, the shared
    slot's buffer; the product is formed in ``weight_scratch``, of the slot's shape, and
    added). ``hidden_terms`` maps a layer index ``l`` (1-based) to a row added to
    ``dJ/dA_l`` before the activation's derivative (the sparsity term of δ2).
    """
    L = len(layers)
    first_param = L - n_params + 1  # lowest 1-based layer whose gradient is wanted
    grads = []
    handed_down = {}  # slot owner's index -> the product of a layer that shares its slot
    for k in range(L, 0, -1):
        below = activations[k - 1]
        if k >= first_param:
            j = k - first_param
            gW_out, gb_out = out[j] if out is not None else (None, None)
            transposed = layout is not None and layout.is_transposed(j)
            pending = handed_down.pop(j, None)
            target = gW_out if pending is None else weight_scratch
            gW = _weight_product(below, delta, transposed, target)
            if pending is not None:  # a layer above shares this slot: the sum of both
                xp = array_namespace(gW)
                gW = modify_in_place(xp, xp.add, pending, gW, out=pending)
            elif gW_out is not None and gW is not gW_out:
                gW_out[...] = gW
                gW = gW_out
            owner = None if layout is None else layout.owner(j)
            if owner is not None:
                handed_down[owner] = gW
            gb = sum_rows(delta, axis=0)
            if gb_out is not None:
                gb_out[...] = gb
                gb = gb_out
            elif not wide_bias_sums:
                gb = cast(gb, delta.dtype)
            grads.append((gW, gb))
        W = cast(layers[k - 1].weights, delta.dtype)
        if k == 1:
            return grads[::-1], (delta @ W if want_input else None)
        if not want_input and k <= first_param:
            break
        target = scratch[k - 2] if scratch is not None else None
        grad_below = matmul(delta, W, target)
        if hidden_terms is not None and k - 1 in hidden_terms:
            xp = array_namespace(grad_below)
            term = hidden_terms[k - 1]
            grad_below = modify_in_place(xp, xp.add, grad_below, term, out=grad_below)
        delta = _activation_jvp(layers[k - 2].activation, below, grad_below, consume=True)
    return grads[::-1], None


def _weight_product(below, delta, transposed, out):
    """A layer's weight gradient summed over rows: ``δᵀ A`` of shape (n_out, n_in), or
    ``Aᵀ δ`` (n_in, n_out) for a layer stored transposed; into ``out`` (NumPy, same
    dtype) when given."""
    if sp.issparse(below):
        product = below.T @ delta
        return np.asarray(product if transposed else product.T)
    a, b = (below, delta) if transposed else (delta, below)
    if out is not None and out.dtype == delta.dtype:
        return np.matmul(a.T, b, out=out)
    return a.T @ b


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
    return backpropagate(layers, acts, delta, n_params=0, want_input=True)[1]


def _top_delta(layers, activations, grad_output):
    """The checked activations (inner ones copied, as backpropagation overwrites them) and
    ``dJ/dZ_L`` of the top layer, from ``dJ/dA_L``."""
    _check_activations(layers, activations)
    A_top = activations[-1]
    grad_output = cast(grad_output, A_top.dtype)
    if tuple(grad_output.shape) != tuple(A_top.shape):
        raise ValueError(
            f"grad_output must have the shape of the top activations "
            f"{tuple(A_top.shape)}, got {tuple(grad_output.shape)}."
        )
    delta = _activation_jvp(layers[-1].activation, A_top, grad_output)
    acts = [activations[0]] + [_copy(A) for A in activations[1:-1]] + [A_top]
    return acts, delta


# --------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class NetworkLayout:
    """Where each layer's weights and bias live in one flat float64 vector.

    ``shapes`` is a tuple of ``(n_out, n_in)``, bottom layer first; the vector holds
    ``W1, b1, W2, b2, ...``. :meth:`unpack` returns views, never copies (on namespaces
    that have views). The vector may be an array of any array-API namespace.

    Two options make an autoencoder one of these networks (:class:`ParameterLayout`):
    ``transposed[l]`` stores layer ``l``'s weights as ``(n_in, n_out)`` (a decoder's
    ``W2``, in the orientation of ``components_``), and ``shared[l] = j`` (``j < l``)
    gives layer ``l`` no slot of its own: it reads layer ``j``'s slot (tied weights; it
    is then also marked transposed) and its gradient is added to layer ``j``'s. Empty
    tuples mean neither (0-based layer indices).
    """

    shapes: tuple
    transposed: tuple = ()
    shared: tuple = ()

    def is_transposed(self, layer):
        """Whether layer ``layer``'s slot holds its weights transposed."""
        return bool(self.transposed) and bool(self.transposed[layer])

    def owner(self, layer):
        """The index of the layer whose slot layer ``layer`` reads, or None (its own)."""
        return self.shared[layer] if self.shared else None

    def stored_shape(self, layer):
        """The shape of layer ``layer``'s weights as stored in the vector."""
        n_out, n_in = self.shapes[layer]
        return (n_in, n_out) if self.is_transposed(layer) else (n_out, n_in)

    @property
    def size(self):
        return sum(
            (0 if self.owner(k) is not None else o * i) + o for k, (o, i) in enumerate(self.shapes)
        )

    def unpack(self, theta):
        """``[(W1, b1), (W2, b2), ...]`` as views into ``theta``, each ``W`` as stored (a
        shared layer's is its owner's); None (no buffer, see :func:`skae._array.buffer`)
        gives pairs of Nones."""
        return self.pairs(theta)

    def pairs(self, theta):
        """:meth:`unpack` of the network (also for :class:`ParameterLayout`)."""
        if theta is None:
            return [(None, None)] * len(self.shapes)
        xp = array_namespace(theta)
        parts, start = [], 0
        for k, (n_out, n_in) in enumerate(self.shapes):
            owner = self.owner(k)
            if owner is None:
                W = xp.reshape(theta[start : start + n_out * n_in], self.stored_shape(k))
                start += n_out * n_in
            else:
                W = parts[owner][0]
            b = theta[start : start + n_out]
            start += n_out
            parts.append((W, b))
        return parts

    def pack(self, layers):
        """A new flat float64 vector from Layers (or ``(W, b)`` pairs with ``W`` as
        stored), bottom first; a shared layer's weights are not stored again.

        Arrays of another namespace give a vector of that namespace, on their device, in
        float64 where the device has it (:func:`skae._array.parameter_dtype`).
        """
        pairs = []
        for k, item in enumerate(layers):
            if isinstance(item, Layer):
                W = item.weights.T if self.is_transposed(k) else item.weights
                item = (W, item.bias)
            pairs.append(item)
        xp = array_namespace(*[a for pair in pairs for a in pair])
        dtype = parameter_dtype(xp, array_device(pairs[0][0]) if pairs else None)
        parts = [
            xp.reshape(cast(a, dtype, xp), (-1,))
            for k, pair in enumerate(pairs)
            for a in (pair if self.owner(k) is None else pair[1:])
        ]
        return concat(parts, xp) if parts else zeros(xp, (0,), dtype)

    def flatten(self, pairs):
        """The arrays of per-layer ``(W, b)`` pairs in the vector's order (a shared
        layer's ``W`` left out)."""
        return [a for k, pair in enumerate(pairs)
                for a in (pair if self.owner(k) is None else pair[1:])]

    def unflatten(self, parts):
        """The inverse of :meth:`flatten`: ``(W, b)`` pairs, a shared layer's ``W`` None."""
        parts, pairs = list(parts), []
        for k in range(len(self.shapes)):
            W = parts.pop(0) if self.owner(k) is None else None
            pairs.append((W, parts.pop(0)))
        return pairs

    def network(self, theta, activations, dtype):
        """The layers of ``theta`` (``Layer`` objects with ``(n_out, n_in)`` weights,
        views of a copy in ``dtype`` where it differs from the vector's)."""
        layers, cast_weights = [], {}
        for k, ((W, b), activation) in enumerate(zip(self.pairs(theta), activations)):
            owner = self.owner(k)
            if owner is None:
                W = cast_weights[k] = cast(W, dtype)
            else:  # the owner's weights, cast once
                W = cast_weights[owner]
            layers.append(Layer(W.T if self.is_transposed(k) else W, cast(b, dtype), activation))
        return layers


class ParameterLayout(NetworkLayout):
    """The sparse autoencoder's layout: the network encoder, decoder (a
    :class:`NetworkLayout`) seen as ``W1 (n_hidden, n_features), b1 (n_hidden,),
    [W2 (n_hidden, n_features)], b2 (n_features,)``.

    ``W2`` is stored in the orientation of ``W1`` (the decoder layer transposed) and is
    absent when the weights are tied (the decoder reads ``W1``). :meth:`unpack` returns
    ``(W1, b1, W2, b2)``, views, never copies (``W2 is W1`` when tied).
    """

    def __init__(self, n_features, n_hidden, tied=False):
        h, n = int(n_hidden), int(n_features)
        super().__init__(
            ((h, n), (n, h)), transposed=(False, True), shared=(None, 0 if tied else None)
        )

    @property
    def n_features(self):
        return self.shapes[0][1]

    @property
    def n_hidden(self):
        return self.shapes[0][0]

    @property
    def tied(self):
        return self.owner(1) is not None

    def __repr__(self):
        return f"ParameterLayout({self.n_features}, {self.n_hidden}, tied={self.tied})"

    def unpack(self, theta):
        """Return ``(W1, b1, W2, b2)`` as views into ``theta`` (``W2 is W1`` when tied).

        ``theta`` may be an array of any array-API namespace (views where it has them);
        None (no buffer, see :func:`skae._array.buffer`) gives four Nones.
        """
        (W1, b1), (W2, b2) = self.pairs(theta)
        return W1, b1, W2, b2

    def pack(self, W1, b1, W2, b2):
        """Concatenate parameters into a new flat float64 vector (the inverse of unpack).

        Arrays of another namespace give a vector of that namespace, on their device, in
        :func:`~skae._array.parameter_dtype`.
        """
        return super().pack([(W1, b1), (W2, b2)])

    def initialize(self, random_state):
        """UFLDL initialisation: weights uniform in ±sqrt(6 / (n_in + n_out + 1)), biases 0."""
        h, n = self.n_hidden, self.n_features
        r = np.sqrt(6.0 / (n + h + 1))
        theta = np.zeros(self.size)
        W1, _, W2, _ = self.unpack(theta)
        W1[...] = random_state.uniform(-r, r, size=(h, n))
        if not self.tied:
            W2[...] = random_state.uniform(-r, r, size=(h, n))
        return theta


# --------------------------------------------------------------------------- fine-tuning
class FineTuneObjective:
    """Softmax cross-entropy of a network on labelled data, as a function of theta.

    Parameters
    ----------
    layers : list of Layer
        The network; the last layer must be a softmax. The bottom
        ``len(layers) - n_trainable`` layers are frozen at these values; the values of
        the trainable ones only give the shapes (and :attr:`theta0`).
    X : {ndarray, sparse matrix, array of another namespace} of shape (m, n_features)
        The labelled rows; float32 stays float32 (other dtypes become float64). An array
        of another array-API namespace (with ``layers`` in that namespace) is evaluated
        there, on its device.
    y : ndarray of int of shape (m,)
        Class indices in ``range(layers[-1].n_out)`` (a NumPy array; for another
        namespace it is copied to the data's device once).
    n_trainable : int
        How many top layers are trained (1: the softmax only).
    alphas : sequence of float, length n_trainable
        Weight decay of each trainable layer's weights (biases are not decayed).
    n_workers : int or None
        Threads that evaluate blocks of rows at once. None uses as many as BLAS may use
        (1 for small data). The result does not depend on it.
    rows : ndarray of int of shape (m,) or None
        The rows of ``X`` that are the labelled rows, ``y[i]`` the label of
        ``X[rows[i]]``; None: every row of ``X``, in order. ``X`` is not copied: each
        block gathers its own rows (on NumPy; another namespace gathers them once), so
        the semi-supervised classifier hands over its whole, possibly memory-mapped,
        ``X``.
    block_rows : int or None
        Rows per block; None chooses them from the layers' shapes
        (:func:`fine_tune_block_rows`). The mini-batch solvers pass
        :func:`skae._parallel.minibatch_block_rows` of the mini-batch, so that two
        workers share one mini-batch.
    buffers : BufferPool or None
        Where the work buffers come from (NumPy): a mini-batch solver's pool, so that
        the objectives of successive mini-batches reuse them; None: new arrays.

    Calling the object with a flat float64 ``theta`` (laid out by :attr:`layout`)
    returns ``(J, grad)`` with ``grad`` float64. For fixed data and settings the result
    depends only on ``theta``; the data are never modified.

    Blocks and threads, as in the autoencoder's objective: the rows are cut into a
    fixed partition of blocks (:func:`fine_tune_block_rows`, from the trainable
    layers' shapes only), each block's
    forward pass, loss and gradient are computed by whichever worker thread is free
    (BLAS on one thread in each), and the blocks' sums are added in block order
    (:func:`skae._parallel.map_blocks`), so the result is the same, bit for bit, for any
    number of workers. Each worker owns, for a block of ``c`` rows, one ``(c, n_out)``
    buffer per trainable layer (activations, then the top one's δ) and one per layer
    below the top for the deltas, and two sets of the block's gradients (one while its
    last result waits to be added after an earlier block's); the objective owns the
    totals. Nothing else of size ``m`` is allocated per evaluation (with ``rows``, a block
    of input rows is gathered into a new ``(c, n_features)`` array, and ``c`` is then
    small enough for it to hold at most ``2**20`` elements). With frozen layers,
    their output for the ``m`` rows is computed once, ``4096`` rows at a time.

    On another namespace than NumPy the same code runs with no buffers (each step makes
    its result), the rows are one block evaluated by one thread, the labels are a one-hot
    ``(m, n_classes)`` matrix on the device, ``theta`` and ``grad`` are vectors of that
    namespace in float64 where the device has it, and the bias gradients are summed in
    that dtype, as on NumPy.
    """

    def __init__(
        self,
        layers,
        X,
        y,
        *,
        n_trainable,
        alphas,
        n_workers=None,
        rows=None,
        block_rows=None,
        buffers=None,
    ):
        L = len(layers)
        if layers[-1].activation != "softmax":
            raise ValueError("the top layer of a fine-tuned network must be a softmax.")
        if not 1 <= n_trainable <= L:
            raise ValueError(f"n_trainable must be in [1, {L}], got {n_trainable}.")
        if len(alphas) != n_trainable:
            raise ValueError(f"need {n_trainable} alphas, got {len(alphas)}.")
        self.dtype = dt = _float_dtype(X)
        self.xp = xp = array_namespace(X)
        # NumPy: reused buffers and worker threads; other namespaces: the device runs the
        # work (no buffers, one block, one thread issuing it)
        threaded = xp is np
        if not sp.issparse(X):
            X = cast(X, dt, xp)
        elif X.dtype != dt:
            X = X.astype(dt)
        if rows is not None:
            rows = np.asarray(rows, dtype=np.intp)
            if not threaded:  # gathered once, on the device
                X = xp.take(X, xp.asarray(rows, device=array_device(X)), axis=0)
                rows = None
        self.frozen = list(layers[: L - n_trainable])
        self.trainable = list(layers[L - n_trainable :])
        # Input of the first trainable layer: the frozen layers' output, computed once.
        if not self.frozen:
            self.inputs = X
        elif rows is None:
            self.inputs = forward(self.frozen, X)[-1]
        else:
            self.inputs, rows = _forward_rows(self.frozen, X, rows, dt), None
        self.gather = rows  # the rows of self.inputs each block reads (None: all)
        self.y = np.asarray(y, dtype=np.intp)
        self.m = m = self.inputs.shape[0] if rows is None else len(rows)
        self.n_classes = layers[-1].n_out
        self.alphas = tuple(float(a) for a in alphas)
        self.layout = NetworkLayout(
            tuple(tuple(layer.weights.shape) for layer in self.trainable)
        )
        self.last_terms = None
        self.parameter_dtype = parameter_dtype(xp, array_device(self.inputs))
        n_in = self.inputs.shape[1]
        if threaded:
            c = fine_tune_block_rows(self.layout.shapes) if block_rows is None else block_rows
            if self.gather is not None:  # a gathered block holds at most _BLOCK_BUFFER elements
                c = min(c, max(256, _BLOCK_BUFFER // max(n_in, 1) // 256 * 256))
        else:  # one block
            c = m
        c = min(c, max(m, 1))
        self.blocks = row_blocks(m, c)
        if not threaded:
            n_workers = 1
        elif n_workers is None:
            n_workers = available_threads() if m * n_in >= PARALLEL_MIN_SIZE else 1
        self.n_workers = k = worker_count(n_workers, len(self.blocks))
        # Buffers (None on other namespaces than NumPy: every step makes its result).
        pool = buffers
        self.workspaces = [
            _FineTuneWorkspace(
                A=[buffer(xp, (c, layer.n_out), dt, pool) for layer in self.trainable],
                D=[buffer(xp, (c, layer.n_out), dt, pool) for layer in self.trainable[:-1]],
            )
            for _ in range(k)
        ]
        # a block's gradients stay in its buffer set until added to the totals: two sets
        # per worker when there are more blocks than workers (skae._parallel.map_blocks)
        self.sets_per_worker = sets_per_worker(k, len(self.blocks))
        self.block_grads = [
            [
                (buffer(xp, shape, dt, pool), buffer(xp, shape[0], np.float64, pool))
                for shape in self.layout.shapes
            ]
            for _ in range(k * self.sets_per_worker)
        ]
        self.totals = [
            (buffer(xp, shape, dt, pool), buffer(xp, shape[0], np.float64, pool))
            for shape in self.layout.shapes
        ]
        if threaded:  # NumPy picks Z[rows, y]
            self.rows, self.one_hot = np.arange(c), None
        else:  # other namespaces multiply by the one-hot labels, on the device
            device = array_device(self.inputs)
            labels = xp.asarray(self.y, device=device)
            classes = xp.arange(self.n_classes, dtype=labels.dtype, device=device)
            self.one_hot = xp.astype(
                xp.reshape(labels, (-1, 1)) == xp.reshape(classes, (1, -1)), dt
            )

    @functools.cached_property
    def theta0(self):
        """The trainable layers' parameters as given, laid out by :attr:`layout` (packed
        on first use: a mini-batch objective of the mini-batch solvers never needs it)."""
        return self.layout.pack(self.trainable)

    def _layers(self, theta):
        acts = [layer.activation for layer in self.trainable]
        return self.layout.network(theta, acts, self.dtype)

    def _labels(self, start, stop):
        """The labels of rows start:stop: ``(rows, y)`` for NumPy's fancy indexing, the
        one-hot rows on other namespaces."""
        if self.one_hot is None:
            return self.rows[: stop - start], self.y[start:stop]
        return self.one_hot[start:stop, ...]

    def _block(self, start, stop, buffer_set, layers):
        """Loss sum and gradients (times m) of the rows start:stop, in ``block_grads``'s
        ``buffer_set``."""
        ws, dt, k = self.workspaces[buffer_set % self.n_workers], self.dtype, stop - start
        xp = self.xp
        if self.gather is None:
            A_in = row_slice(self.inputs, start, stop)
        else:  # the block's labelled rows, gathered (X itself is never copied whole)
            A_in = self.inputs[self.gather[start:stop]]
        activations = [A_in]
        for layer, A_out in zip(layers[:-1], ws.A[:-1]):
            A_in = layer_forward(A_in, layer, dt, out=_head(A_out, k))
            activations.append(A_in)
        Z = affine(A_in, layers[-1], dt, out=_head(ws.A[-1], k))
        # Cross-entropy from the shifted pre-activation: log Σ exp(z) − z_y.
        labels = self._labels(start, stop)
        Z -= xp.max(Z, axis=1, keepdims=True)
        loss = -_label_sum(Z, labels)
        Z = _exp_(Z)
        totals = xp.sum(Z, axis=1, keepdims=True)
        loss += float(sum_rows(xp.log(totals)))
        Z /= totals  # P
        Z = _subtract_labels_(Z, labels)  # δ_L · m = P − Y
        activations.append(Z)
        grads, _ = backpropagate(
            layers,
            activations,
            Z,
            n_params=len(layers),
            want_input=False,
            out=self.block_grads[buffer_set],
            scratch=[_head(D, k) for D in ws.D],
            wide_bias_sums=True,
        )
        return [loss] + [a for pair in grads for a in pair]

    def sums(self, theta):
        """The per-chunk piece: the loss and gradient *sums* over this object's rows.

        Returns ``(loss_sum, totals)``: ``−Σ_i log P(y_i | x_i)`` and one
        ``(Σ ∇W, Σ ∇b)`` pair per trainable layer (bottom first; sums over rows, not yet
        divided by ``m``, no weight decay). ``totals`` are this object's buffers,
        overwritten by the next call. Objectives over disjoint row sets (the chunks of a
        dask array, :mod:`skae._dask`) add their sums, and :func:`assemble`
        turns the total into ``(J, grad)``, as :meth:`__call__` does for its own rows.
        """
        xp = self.xp
        theta = cast(theta, self.parameter_dtype, xp)
        layers = self._layers(theta)
        # the loss, then (gW, gb) per trainable layer: into this object's buffers on NumPy
        sums = BlockSums([None] + [a for pair in self.totals for a in pair], xp)

        # BLAS on one thread: the workers' products run at once, and the rounding of a
        # product does not depend on a thread count.
        with blas_single_threaded():
            map_blocks(
                lambda start, stop, i: self._block(start, stop, i, layers),
                self.blocks,
                self.n_workers,
                combine=sums,
                sets_per_worker=self.sets_per_worker,
            )
        if not sums.empty:
            loss, *flat = sums.totals
            self.totals = list(zip(flat[::2], flat[1::2]))
        else:  # no rows
            loss = 0.0
            device = array_device(theta)
            self.totals = [
                (zeros(xp, layer.weights.shape, layer.weights.dtype, device),
                 zeros(xp, layer.bias.shape, theta.dtype, device))
                for layer in layers
            ]
        return loss, self.totals

    def __call__(self, theta):
        theta = cast(theta, self.parameter_dtype, self.xp)
        with blas_single_threaded():  # assemble's dot products too (skae._array.dot)
            loss, totals = self.sums(theta)
            J, grad, data_loss = assemble(
                self.layout, self.alphas, theta, self.m, loss, totals
            )
        self.last_terms = (J, data_loss)
        return J, grad


_FORWARD_ROWS = 4096  # rows per step of _forward_rows


def _forward_rows(layers, X, rows, dtype):
    """The top activations of ``X[rows]`` (NumPy or sparse), a block of rows at a time,
    so that no copy of ``X[rows]`` is made."""
    out = np.empty((len(rows), layers[-1].n_out), dtype=dtype)
    for start in range(0, len(rows), _FORWARD_ROWS):
        stop = min(start + _FORWARD_ROWS, len(rows))
        out[start:stop] = forward(layers, X[rows[start:stop]])[-1]
    return out


def assemble(layout, alphas, theta, m, loss_sum, totals, penalty=0.0, divide_biases=False):
    """``(J, grad, data_loss)`` from an objective's sums over all ``m`` rows.

    ``J = loss_sum / m + Σ (α / 2) ‖W‖² + penalty``: the data term, weight decay of each
    weight slot (biases are never decayed; the slots that share one α are summed before
    it scales them) and an extra term (the autoencoder's sparsity penalty, whose gradient
    is already in the sums); ``grad = totals / m + α W``, laid out by ``layout``.

    Parameters
    ----------
    layout : NetworkLayout
        The trainable layers' layout.
    alphas : sequence of float
        Weight decay of each trainable layer's weights.
    theta : ndarray of float64
        The parameters the sums were computed at (an array of another namespace gives
        ``grad`` in that namespace, in ``theta``'s dtype).
    m : int
        Number of rows the sums run over.
    loss_sum : float
    totals : list of (ndarray, ndarray)
        ``(Σ ∇W, Σ ∇b)`` per trainable layer, bottom first, each ``∇W`` as stored (a
        layer that shares another's slot: its entry is not read, the owner's holds the
        sum).
    penalty : float
        Added to ``J``.
    divide_biases : bool
        The bias gradients as ``Σ ∇b / m`` (the autoencoder's rounding) rather than
        ``Σ ∇b · (1/m)`` (fine-tuning's): the two differ in the last bit, and a fit
        follows such differences, so each objective keeps its own.
    """
    data_loss = loss_sum / m
    xp = array_namespace(theta)
    # NumPy: into views of one new vector; other namespaces: new arrays, concatenated.
    grad = buffer(xp, (layout.size,), theta.dtype)
    views = layout.pairs(grad)
    parts, groups = [], []  # groups: [alpha, Σ ‖W‖²] of consecutive slots with one alpha
    slots = zip(views, layout.pairs(theta), totals, alphas)
    for k, ((gW, gb), (W, _), (tW, tb), alpha) in enumerate(slots):
        if layout.owner(k) is None:
            gW = _scale(tW, 1.0 / m, gW, theta.dtype)
            if alpha:
                gW += alpha * W
                if groups and groups[-1][0] == alpha:
                    groups[-1][1] += dot(W, W)
                else:
                    groups.append([alpha, dot(W, W)])
            parts.append(gW)
        if divide_biases:
            parts.append(assign(tb / m, gb, xp))
        else:
            parts.append(_scale(tb, 1.0 / m, gb, theta.dtype))
    if grad is None:
        grad = concat([xp.reshape(p, (-1,)) for p in parts], xp)
    decay = 0.0
    for alpha, squares in groups:
        decay += 0.5 * alpha * squares
    J = data_loss + decay + penalty
    return J, grad, data_loss


def _scale(a, factor, out, dtype):
    """``a * factor`` in ``dtype``, into ``out`` on NumPy."""
    xp = array_namespace(a)
    return cast(modify_in_place(xp, xp.multiply, a, factor, out=out), dtype, xp)


def _head(buffer, k):
    """The first ``k`` rows of a worker's buffer (None: no buffers, other namespaces)."""
    return None if buffer is None else buffer[:k]


def _label_sum(Z, labels):
    """``Σ_i Z[i, y_i]`` in float64: NumPy picks ``(rows, y)``, other namespaces
    multiply by the one-hot labels."""
    if isinstance(labels, tuple):
        rows, y = labels
        return float(Z[rows, y].sum(dtype=np.float64))
    return float(sum_rows(Z * labels))


def _subtract_labels_(Z, labels):
    """``Z − Y`` for the one-hot ``Y`` of the labels (in place on NumPy)."""
    if isinstance(labels, tuple):
        rows, y = labels
        Z[rows, y] -= 1.0
        return Z
    return Z - labels


@dataclass
class _FineTuneWorkspace:
    """One worker's reused buffers (see :class:`FineTuneObjective`)."""

    A: list
    D: list
