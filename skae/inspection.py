"""Look at what an autoencoder learned: filters, activation maximisation, code inversion.

The plotting functions import matplotlib only when they are called; everything else here
needs NumPy, SciPy and scikit-learn only. Install matplotlib with ``pip install "skae[plot]"``.

A model fitted on a device under scikit-learn's array API dispatch is inspected on the host:
its weights, and inputs given as arrays of its namespace, are copied to NumPy, and the
results are NumPy arrays.
"""

import numbers

import numpy as np
import scipy.sparse as sp
from scipy.optimize import minimize
from scipy.special import log_softmax
from sklearn.base import BaseEstimator
from sklearn.utils import Bunch, check_random_state
from sklearn.utils.validation import check_array, check_is_fitted

from ._activations import ACTIVATIONS, kl_divergence
from ._array import array_namespace, to_numpy
from ._network import Layer, forward, input_gradient, network_layers
from ._stochastic import AdamOptimizer
from ._validation import as_real_floats

__all__ = [
    "tile_images",
    "plot_filters",
    "max_activation_inputs",
    "activation_maximization",
    "invert_code",
    "multifaceted_visualization",
    "plot_loss_curve",
    "plot_kl_penalty",
]

_PLOT_INSTALL = 'pip install "skae[plot]"'
# activation_maximization under a norm constraint grows the ball through this many radii
_N_RADII = 6


def _pyplot(function_name):
    """Import ``matplotlib.pyplot`` or say how to install it."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            f"skae.inspection.{function_name} draws with matplotlib, which is not installed. "
            f"Install it with: {_PLOT_INSTALL}"
        ) from exc
    return plt


def _axes(ax, function_name):
    plt = _pyplot(function_name)
    if ax is None:
        _, ax = plt.subplots()
    return ax


# --------------------------------------------------------------------------- validation
def _plain(value):
    """``value`` as error messages show it: NumPy scalars and arrays as Python numbers
    and lists (``0``, not ``np.int64(0)``)."""
    return value.tolist() if isinstance(value, (np.generic, np.ndarray)) else value


def _check_bool(value, name):
    """Refuse a flag that is not a bool (a string such as "no" is truthy)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {_plain(value)!r}.")


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _check_int(value, name, minimum):
    """``value`` as an int ``>= minimum``; a float, a bool or a smaller int is refused."""
    if not (_is_int(value) and value >= minimum):
        raise ValueError(f"{name} must be an int >= {minimum}, got {_plain(value)!r}.")
    return int(value)


def _check_real(value, name, *, positive=False):
    """``value`` as a finite float, ``> 0`` when ``positive`` else ``>= 0``."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
    if not (ok and np.isfinite(value) and (value > 0 if positive else value >= 0)):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {_plain(value)!r}.")
    return float(value)


def _real_number(value):
    """Whether ``value`` is one real number: a Python or NumPy number, a ``Fraction`` or
    ``Decimal``, or a 0-d array of one (not a bool or a string)."""
    if isinstance(value, (bool, np.bool_, str, bytes)):
        return False
    if isinstance(value, numbers.Real) or (
        isinstance(value, numbers.Number) and not isinstance(value, numbers.Complex)
    ):
        return True  # Decimal is a Number but not Real
    array = np.asarray(value)
    return array.ndim == 0 and array.dtype.kind in "iuf"


def _finite_number(value):
    """A real number (see :func:`_real_number`) that is finite as a float (10**400 is not)."""
    if not _real_number(value):
        return False
    try:
        return bool(np.isfinite(float(value)))
    except (OverflowError, ValueError):  # 10**400; Decimal("sNaN")
        return False


def _row_norms(X, keepdims=False):
    """The Euclidean norm of each row of ``X`` without overflow or underflow: a row whose
    largest absolute entry lies in [1e-150, 1e150] (or is 0) as ``numpy.linalg.norm``
    computes it, any other row divided by that entry first and multiplied back."""
    X = np.asarray(X)
    if X.shape[0] == 0 or X.shape[1] == 0:
        return np.linalg.norm(X, axis=1, keepdims=keepdims)
    peak = np.max(np.abs(X), axis=1, keepdims=True)
    plain = (peak == 0.0) | ~np.isfinite(peak) | ((peak >= 1e-150) & (peak <= 1e150))
    if np.all(plain):
        return np.linalg.norm(X, axis=1, keepdims=keepdims)
    scale = np.where(plain, 1.0, peak)
    norms = np.linalg.norm(X / scale, axis=1, keepdims=True) * scale
    return norms if keepdims else norms[:, 0]


def _int_tuple(value, lengths):
    """``value`` as a tuple of ints ``>= 1`` of one of the ``lengths``, or None."""
    try:
        items = tuple(value)
    except TypeError:
        return None
    ok = len(items) in lengths and all(_is_int(v) and v >= 1 for v in items)
    return tuple(int(v) for v in items) if ok else None


# --------------------------------------------------------------------------- tiles
def _check_image_shape(image_shape, n_features):
    shape = _int_tuple((image_shape,) * 2 if _is_int(image_shape) else image_shape, (2, 3))
    if shape is None:
        raise ValueError(
            f"image_shape must be an int or (height, width) or (height, width, channels) of "
            f"positive ints, got {_plain(image_shape)!r}."
        )
    image_shape = shape
    if int(np.prod(image_shape)) != n_features:
        raise ValueError(
            f"image_shape {image_shape} has {int(np.prod(image_shape))} pixels but each row "
            f"has {n_features} features; pass the shape the rows were flattened from "
            f"(e.g. (8, 8) for 64 features)."
        )
    return image_shape

def _check_center_bias(center_bias, image_shape, n_features):
    """The checked ``image_shape`` (checked whenever given; ``center_bias=True`` needs it)."""
    if not isinstance(center_bias, (bool, np.bool_)):
        raise ValueError(f"center_bias must be True or False, got {center_bias!r}.")
    if image_shape is None and center_bias:
        raise ValueError(
            "center_bias=True blurs and centres the input as an image: pass "
            "image_shape=(height, width), e.g. image_shape=(8, 8) for 64 features."
        )
    return None if image_shape is None else _check_image_shape(image_shape, n_features)


def tile_images(rows, image_shape, *, grid_shape=None, spacing=1, scale_each=True, fill=-1.0):
    """Arrange flattened images as tiles of one 2-D array (UFLDL ``display_network``).

    Parameters
    ----------
    rows : {array-like, sparse matrix} of shape (n_images, n_features)
        One flattened image per row (C order), e.g. ``components_`` of an autoencoder.
        Sparse rows are densified (every row is drawn).
    image_shape : int or tuple of int
        ``(height, width)`` or ``(height, width, channels)`` of one image;
        ``height * width * channels`` must equal ``n_features``. An int means a square.
    grid_shape : tuple of int, default=None
        ``(n_rows, n_cols)`` of the grid of tiles. By default the grid is as square as
        possible: ``n_cols = ceil(sqrt(n_images))``.
    spacing : int, default=1
        Pixels of ``fill`` between neighbouring tiles and around the border.
    scale_each : bool, default=True
        Divide each tile by its own largest absolute value, so that every tile lies in
        ``[-1, 1]`` and uses the full contrast (a tile of zeros stays zero). With False the
        values are copied as given.
    fill : float, default=-1.0
        Value of the spacing pixels (black with a grey colour map when tiles lie in
        ``[-1, 1]``).

    Returns
    -------
    tiles : ndarray of shape (n_rows * (height + spacing) + spacing, n_cols * (width +
        spacing) + spacing) or with a trailing ``channels`` axis
        The tiled image, float64.

    Examples
    --------
    >>> import numpy as np
    >>> from skae.inspection import tile_images
    >>> rows = np.arange(6 * 4, dtype=float).reshape(6, 4)
    >>> tile_images(rows, (2, 2)).shape  # 6 tiles on a 2 x 3 grid, 1-pixel spacing
    (7, 10)
    >>> float(tile_images(rows, (2, 2)).max())
    1.0
    """
    rows = as_real_floats(rows.toarray() if sp.issparse(rows) else rows, "rows")
    if rows.size == 0:
        raise ValueError(f"rows is empty (shape {rows.shape}): there are no images to tile.")
    if rows.ndim == 1:
        rows = rows[np.newaxis, :]
    if rows.ndim != 2 or rows.shape[0] == 0:
        raise ValueError(
            f"rows must be a non-empty 2-D array of flattened images, got shape {rows.shape}."
        )
    if not np.all(np.isfinite(rows)):
        raise ValueError("rows contain NaN or infinite values; there is nothing to draw.")
    n_images, n_features = rows.shape
    image_shape = _check_image_shape(image_shape, n_features)
    spacing = _check_int(spacing, "spacing", 0)
    if grid_shape is None:
        n_cols = int(np.ceil(np.sqrt(n_images)))
        n_rows = int(np.ceil(n_images / n_cols))
    else:
        shape = _int_tuple(grid_shape, (2,))
        if shape is None:
            raise ValueError(
                f"grid_shape must be a tuple of 2 positive ints (n_rows, n_cols), got "
                f"{_plain(grid_shape)!r}."
            )
        n_rows, n_cols = shape
        if n_rows * n_cols < n_images:
            raise ValueError(
                f"grid_shape {(n_rows, n_cols)} has room for {n_rows * n_cols} tiles but "
                f"there are {n_images} images; use a larger grid or fewer rows."
            )
    _check_bool(scale_each, "scale_each")
    if not _finite_number(fill):
        raise ValueError(
            f"fill must be a finite number (the value of the spacing pixels), got "
            f"{_plain(fill)!r}."
        )
    if scale_each:
        peak = np.max(np.abs(rows), axis=1, keepdims=True)
        rows = rows / np.where(peak > 0, peak, 1.0)
    h, w = image_shape[:2]
    out_shape = (n_rows * (h + spacing) + spacing, n_cols * (w + spacing) + spacing)
    out = np.full(out_shape + tuple(image_shape[2:]), float(fill))
    for k in range(n_images):
        i, j = divmod(k, n_cols)
        top, left = spacing + i * (h + spacing), spacing + j * (w + spacing)
        out[top : top + h, left : left + w] = rows[k].reshape(image_shape)
    return out


# --------------------------------------------------------------------------- estimators
def _host(a):
    """``a`` unchanged, or a NumPy copy of an array of another namespace (a model fitted
    on a device is inspected on the host, in NumPy)."""
    return a if array_namespace(a) is np else to_numpy(a)


def _first_layer_weights(estimator):
    """``W1`` of a fitted skae estimator (fine-tuned for the classifier), or the array."""
    if isinstance(estimator, BaseEstimator):
        return np.asarray(_host(network_layers(estimator, 1)[0].weights))
    return np.asarray(_host(estimator))


def max_activation_inputs(estimator):
    """Inputs of norm 1 that maximally activate each first-layer hidden unit.

    For a hidden unit ``i`` with weights ``W1_i`` the input ``x`` with ``‖x‖ ≤ 1`` that
    maximises its activation ``f(W1_i · x + b1_i)`` (for any increasing ``f``) is
    ``x = W1_i / ‖W1_i‖``, the closed form of the UFLDL notes.

    Parameters
    ----------
    estimator : SparseAutoencoder, StackedAutoencoder or StackedAutoencoderClassifier
        A fitted estimator; its first layer is used.

    Returns
    -------
    inputs : ndarray of shape (n_hidden, n_features)
        Row ``i`` is the maximising input of unit ``i`` (a zero row for a unit whose
        weights are all zero).

    Examples
    --------
    >>> import numpy as np
    >>> from skae import SparseAutoencoder
    >>> from skae.inspection import max_activation_inputs
    >>> X = np.random.default_rng(0).random((50, 16))
    >>> ae = SparseAutoencoder(n_hidden=4, tol=1e-3, random_state=0).fit(X)
    >>> inputs = max_activation_inputs(ae)
    >>> inputs.shape, bool(np.allclose(np.linalg.norm(inputs, axis=1), 1.0))
    ((4, 16), True)
    """
    if not isinstance(estimator, BaseEstimator):
        raise TypeError(
            f"max_activation_inputs expects a fitted skae estimator, got "
            f"{type(estimator).__name__}."
        )
    W = np.array(_first_layer_weights(estimator), dtype=np.float64)
    norms = _row_norms(W, keepdims=True)
    return W / np.where(norms > 0, norms, 1.0)


# --------------------------------------------------------------------------- plots
def plot_filters(
    estimator_or_array,
    image_shape,
    ax=None,
    *,
    n_filters=None,
    grid_shape=None,
    spacing=1,
    cmap="gray",
    title=None,
):
    """Draw first-layer filters (or any flattened images) as a grid of tiles.

    Each tile is scaled by its own largest absolute value (:func:`tile_images`), so a
    tile shows the same picture as the norm-1 maximising input of that unit
    (:func:`max_activation_inputs`): mid grey is zero, white positive, black negative.

    Parameters
    ----------
    estimator_or_array : estimator, array-like or sparse matrix of shape \
(n_filters, n_features)
        A fitted :class:`~skae.SparseAutoencoder` (its ``components_``), a fitted stacked
        estimator (the first layer's weights), or rows to draw (sparse rows are densified,
        only those drawn).
    image_shape : int or tuple of int
        Shape of one image, see :func:`tile_images`: ``(height, width)``, or with a
        trailing axis of 1 (grey), 3 (RGB) or 4 (RGBA) channels.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when None.
    n_filters : int, default=None
        Draw only the first ``n_filters`` rows (at least 1; all rows when None).
    grid_shape, spacing :
        Passed to :func:`tile_images`.
    cmap : str, default="gray"
        Colour map for one-channel images (ignored for RGB and RGBA tiles).
    title : str, default=None
        Axes title.

    Returns
    -------
    ax : matplotlib Axes
        The Axes with the tiles (no ticks).

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from skae.inspection import plot_filters
    >>> ax = plot_filters(np.random.default_rng(0).normal(size=(25, 64)), (8, 8))
    >>> ax.images[0].get_array().shape
    (46, 46)
    """
    if n_filters is not None:
        n_filters = _check_int(n_filters, "n_filters", 1)
    if sp.issparse(estimator_or_array):
        rows = sp.csr_array(estimator_or_array)
        rows = rows[:n_filters] if rows.ndim == 2 else rows
    else:
        if not isinstance(estimator_or_array, BaseEstimator) and np.ndim(estimator_or_array) == 0:
            raise TypeError(
                "plot_filters expects a fitted skae estimator or a 2-D array of flattened "
                f"images, got {_plain(estimator_or_array)!r}."
            )
        rows = as_real_floats(_first_layer_weights(estimator_or_array), "estimator_or_array")
        if rows.ndim == 1:
            rows = rows[np.newaxis, :]
        rows = rows[:n_filters]
    tiles = tile_images(rows, image_shape, grid_shape=grid_shape, spacing=spacing)
    if tiles.ndim == 3 and tiles.shape[2] == 1:  # one channel: a grey image
        tiles = tiles[:, :, 0]
    if tiles.ndim == 3 and tiles.shape[2] not in (3, 4):
        raise ValueError(
            f"plot_filters draws images of 1 channel (grey), 3 (RGB) or 4 (RGBA); "
            f"image_shape {_plain(image_shape)!r} has {tiles.shape[2]} channels. Draw one "
            "channel at a time, e.g. rows.reshape(n, height, width, channels)[..., k]"
            ".reshape(n, -1) with image_shape (height, width)."
        )
    ax = _axes(ax, "plot_filters")
    if tiles.ndim == 3:  # RGB(A) tiles in [-1, 1] -> [0, 1]
        ax.imshow((tiles + 1.0) / 2.0, interpolation="nearest")
    else:
        ax.imshow(tiles, cmap=cmap, vmin=-1.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title)
    return ax


def plot_loss_curve(estimator, ax=None, *, log_scale=True):
    """Draw the training objective against the L-BFGS iteration (the epoch, for the
    mini-batch solvers ``"sgd"`` and ``"adam"``).

    Parameters
    ----------
    estimator : fitted skae estimator
        A :class:`~skae.SparseAutoencoder` (its ``loss_curve_``) or a stacked estimator:
        one curve per pretrained layer and, for the classifier, one per supervised stage
        (softmax, fine-tuning) from ``loss_curves_``.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when None.
    log_scale : bool, default=True
        Logarithmic objective axis.

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from skae import SparseAutoencoder
    >>> from skae.inspection import plot_loss_curve
    >>> X = np.random.default_rng(0).random((50, 16))
    >>> ae = SparseAutoencoder(n_hidden=4, tol=1e-3, random_state=0).fit(X)
    >>> len(plot_loss_curve(ae).lines) == 1
    True
    """
    from ._sparse_autoencoder import SparseAutoencoder
    from ._stacked import StackedAutoencoder, StackedAutoencoderClassifier

    skae_estimators = (SparseAutoencoder, StackedAutoencoder, StackedAutoencoderClassifier)
    if not isinstance(estimator, skae_estimators):
        raise TypeError(
            f"plot_loss_curve plots the loss curves of skae's estimators (their axis is "
            f"L-BFGS iterations or epochs, as skae records them); got "
            f"{type(estimator).__name__}. For scikit-learn's MLPs plot their loss_curve_ "
            "with matplotlib directly."
        )
    check_is_fitted(estimator)
    _check_bool(log_scale, "log_scale")
    curves = []  # (label, values, unit)
    if hasattr(estimator, "loss_curve_"):
        curves.append(("objective", estimator.loss_curve_, _unit(estimator, "_optimizer_")))
    for k, ae in enumerate(getattr(estimator, "autoencoders_", []), start=1):
        curves.append((f"layer {k}", ae.loss_curve_, _unit(ae, "_optimizer_")))
    stages = getattr(estimator, "loss_curves_", {})
    supervised = _unit(estimator, "_stage_solver_")  # the classifier's stages' solver
    if not curves:  # the classifier keeps its pretraining curves in loss_curves_ too
        for k, curve in enumerate(stages.get("pretraining", []), start=1):
            curves.append((f"layer {k}", curve, supervised))
    for stage in ("softmax", "fine_tuning"):
        if len(stages.get(stage, [])):
            curves.append((stage.replace("_", "-"), stages[stage], supervised))
    if not curves:
        raise TypeError(
            f"{type(estimator).__name__} records no loss curve; pass a fitted skae estimator."
        )
    ax = _axes(ax, "plot_loss_curve")
    units = {unit for _, _, unit in curves}
    for label, curve, unit in curves:
        curve = np.asarray(curve, dtype=np.float64)
        label = label if len(units) == 1 else f"{label}, by {unit}"
        ax.plot(np.arange(1, len(curve) + 1), curve, label=label)
    if log_scale and all(np.all(np.asarray(c) > 0) for _, c, _ in curves):
        ax.set_yscale("log")
    ax.set_xlabel(units.pop() if len(units) == 1 else "L-BFGS iteration or epoch")
    ax.set_ylabel("objective J")
    if len(curves) > 1:
        ax.legend()
    return ax


def _unit(fitted, attribute):
    """What one point of a loss curve stands for: an L-BFGS iteration, or an epoch of the
    mini-batch solver whose optimiser the fit kept in ``attribute`` (``_optimizer_`` of a
    SparseAutoencoder, ``(optimizer, state)`` in ``_stage_solver_`` of a classifier's last
    supervised stage). Read from the fitted state, not from ``solver``, which may have
    been changed since."""
    kept = getattr(fitted, attribute, None)
    if isinstance(kept, tuple):
        kept = kept[0]
    if kept is None:
        return "L-BFGS iteration"
    return f"epoch ({'adam' if isinstance(kept, AdamOptimizer) else 'sgd'})"


def plot_kl_penalty(rho=0.2, ax=None, *, n_points=500):
    r"""Draw the sparsity penalty :math:`\mathrm{KL}(\rho \| \hat\rho)` against the mean
    activation :math:`\hat\rho`.

    This is the figure of the UFLDL notes: zero at :math:`\hat\rho = \rho`, growing
    without bound as :math:`\hat\rho` approaches 0 or 1.

    Parameters
    ----------
    rho : float or sequence of float, default=0.2
        Sparsity target(s) in (0, 1); one curve each.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when None.
    n_points : int, default=500
        Number of values of :math:`\hat\rho` in (0, 1).

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from skae.inspection import plot_kl_penalty
    >>> ax = plot_kl_penalty(0.2)
    >>> float(ax.lines[0].get_ydata().min()) < 1e-4
    True
    """
    items = np.atleast_1d(np.asarray(rho, dtype=object)).ravel()
    if not all(_real_number(item) for item in items):
        raise ValueError(f"rho must be a number or a sequence of numbers, got {_plain(rho)!r}.")
    rhos = np.atleast_1d(np.asarray(rho, dtype=object).astype(np.float64))
    if rhos.ndim != 1 or rhos.size == 0 or not np.all((rhos > 0) & (rhos < 1)):
        raise ValueError(
            f"rho must lie strictly between 0 and 1 (one number or a non-empty sequence), "
            f"got {_plain(rho)!r}."
        )
    n_points = _check_int(n_points, "n_points", 1)
    ax = _axes(ax, "plot_kl_penalty")
    rho_hat = np.linspace(0.0, 1.0, n_points + 2)[1:-1]
    for r in rhos:
        ax.plot(rho_hat, kl_divergence(r, rho_hat), label=f"ρ = {r:g}")
    ax.set_xlabel("mean activation ρ̂")
    ax.set_ylabel("KL(ρ ‖ ρ̂)")
    ax.set_xlim(0, 1)
    # show the growth towards both ends without letting the poles flatten the minimum:
    # up to the larger of the penalties at ρ̂ = 0.05 and 0.95
    ax.set_ylim(0, max(float(np.max(kl_divergence(r, np.array([0.05, 0.95])))) for r in rhos))
    ax.legend()
    return ax


# --------------------------------------------------------------------------- objectives
def _layers_float64(estimator, layer):
    if layer is None:  # network_layers' "every layer"; the public functions name one
        raise ValueError("layer must be a 1-based int or 'output', got None.")
    layers = network_layers(estimator, layer)
    return [
        Layer(
            np.asarray(_host(lay.weights), np.float64),
            np.asarray(_host(lay.bias), np.float64),
            lay.activation,
        )
        for lay in layers
    ]


def _check_units(units, layers, layer):
    n_units = layers[-1].n_out
    if units is None:
        return np.arange(n_units)
    scalar = np.ndim(units) == 0
    units = np.atleast_1d(np.asarray(units))
    if units.size == 0 or units.ndim != 1 or not np.issubdtype(units.dtype, np.integer):
        raise ValueError(
            f"units must be an int or a 1-D sequence of ints, got {_plain(units)!r}."
        )
    bad = units[(units < 0) | (units >= n_units)]
    if bad.size:
        raise ValueError(
            f"unit {int(bad[0])} is out of range: layer {_plain(layer)!r} has {n_units} units "
            f"(indices 0 to {n_units - 1})."
        )
    return units if not scalar else units[:1]


def _unit_score(layers, X, units):
    """Score of one unit per row of ``X`` and its gradient with respect to ``X``.

    The score is a strictly increasing function of the unit's activation, chosen to be
    well conditioned: the pre-activation ``z`` for sigmoid, tanh and identity units
    (no saturation), the log-probability ``log softmax(z)_u`` for softmax (class) units.
    Maximising the score maximises the activation.

    Returns ``(scores (m,), grad (m, n_features), activations (m,))``.
    """
    top = layers[-1]
    linear_top = Layer(top.weights, top.bias, "identity")
    acts = forward(layers[:-1] + [linear_top], X)
    Z = acts[-1]
    rows = np.arange(X.shape[0])
    grad_top = np.zeros_like(Z)
    if top.activation == "softmax":
        log_p = log_softmax(Z, axis=1)
        scores = log_p[rows, units]
        grad_top -= np.exp(log_p)
        grad_top[rows, units] += 1.0
        activations = np.exp(scores)
    else:
        scores = Z[rows, units]
        grad_top[rows, units] = 1.0
        activations = scores.copy()
        if top.activation != "identity":
            ACTIVATIONS[top.activation].forward(activations)  # in place
    return scores, input_gradient(layers[:-1] + [linear_top], acts, grad_top), activations


def _regulariser(X, kind, image_shape):
    """``R(x)`` per row and its gradient: squared L2 norm or squared total variation."""
    if kind == "l2":
        return np.sum(X * X, axis=1), 2.0 * X
    images = X.reshape((X.shape[0],) + tuple(image_shape))
    dy = np.diff(images, axis=1)
    dx = np.diff(images, axis=2)
    value = np.sum(dy.reshape(len(X), -1) ** 2, axis=1) + np.sum(dx.reshape(len(X), -1) ** 2, 1)
    grad = np.zeros_like(images)
    grad[:, 1:] += 2.0 * dy
    grad[:, :-1] -= 2.0 * dy
    grad[:, :, 1:] += 2.0 * dx
    grad[:, :, :-1] -= 2.0 * dx
    return value, grad.reshape(X.shape)


def _inversion_objective(layers, codes, reg=0.0, regularizer="l2", image_shape=None):
    """``fun(theta) -> (J, grad)`` for code inversion, over the flattened inputs ``theta``.

    ``J = Σ_i ‖Φ(x_i) − Φ0_i‖² + reg · Σ_i R(x_i)`` where ``Φ`` is the output of
    ``layers`` and ``R`` the squared L2 norm or the squared total variation (sum of squared
    differences between neighbouring pixels of an image of shape ``image_shape``).
    """
    codes = np.asarray(codes, dtype=np.float64)
    m, n = codes.shape[0], layers[0].n_in

    def fun(theta):
        X = np.asarray(theta, dtype=np.float64).reshape(m, n)
        acts = forward(layers, X)
        diff = acts[-1] - codes
        J = float(np.sum(diff * diff))
        grad = input_gradient(layers, acts, 2.0 * diff)
        if reg:
            value, reg_grad = _regulariser(X, regularizer, image_shape)
            J += reg * float(np.sum(value))
            grad += reg * reg_grad
        return J, grad.ravel()

    return fun


# --------------------------------------------------------------------------- optimisers
def _project_ball(X, radius):
    norms = _row_norms(X, keepdims=True)
    return X * np.minimum(1.0, radius / np.where(norms > 0, norms, 1.0))


def _start(init, n_rows, n_features, norm, bounds, rng, name):
    if isinstance(init, str):
        if init not in ("random", "zeros"):
            raise ValueError(f"{name}: init must be 'random', 'zeros' or an array, got {init!r}.")
        if init == "zeros":
            X = np.zeros((n_rows, n_features))
            return X if bounds is None else np.clip(X, *bounds)
        if bounds is not None:
            low, high = bounds
            return rng.uniform(low, high, size=(n_rows, n_features))
        X = rng.standard_normal((n_rows, n_features))
        return 0.1 * norm * X / _row_norms(X, keepdims=True)
    X = as_real_floats(init, f"{name}: init")
    if X.ndim == 1:
        X = np.broadcast_to(X, (n_rows, X.shape[0]))
    if X.shape != (n_rows, n_features):
        raise ValueError(
            f"{name}: init must have shape ({n_rows}, {n_features}) or ({n_features},), "
            f"got {X.shape}."
        )
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{name}: init contains NaN or infinite values.")
    return np.array(X)


def _check_bounds(bounds):
    if bounds is None:
        return None
    try:
        pair = tuple(bounds)
    except TypeError:
        pair = ()
    reals = len(pair) == 2 and all(
        isinstance(b, numbers.Real) and not isinstance(b, (bool, np.bool_)) for b in pair
    )
    if not (reals and np.all(np.isfinite(pair)) and pair[0] < pair[1]):
        shown = tuple(map(_plain, pair)) if isinstance(bounds, (tuple, list)) else bounds
        raise ValueError(
            f"bounds must be (low, high) of two finite numbers with low < high, got "
            f"{_plain(shown)!r}."
        )
    return float(pair[0]), float(pair[1])


def _projected_gradient_ascent(
    layers, X, units, radius, max_iter, tol, *, project=None, direction=None
):
    """Maximise each row's unit score over a convex set (rows are independent).

    The set is the ball ``‖x‖ ≤ radius`` unless ``project`` (a Euclidean projection onto
    another set, e.g. a box) is given; ``radius`` is then only the length scale of the
    step and of ``tol``. ``direction(grad) -> d`` turns the gradient into the ascent
    direction (a symmetric positive semi-definite preconditioner such as a blur); the
    gradient itself by default. A step is kept when it raises the score by the Armijo
    amount; the step length then doubles, otherwise it halves.
    """
    if project is None:

        def project(Z):
            return _project_ball(Z, radius)

    if direction is None:

        def direction(G):
            return G

    X = project(X)
    score, grad, _ = _unit_score(layers, X, units)
    d = direction(grad)
    d_norm = _row_norms(d)
    step = 0.5 * radius / np.where(d_norm > 0, d_norm, 1.0)
    active = np.ones(len(X), dtype=bool)
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        X_new = project(X[idx] + step[idx, None] * d[idx])
        s_new, g_new, _ = _unit_score(layers, X_new, units[idx])
        moved = X_new - X[idx]
        gain = s_new - score[idx]
        accept = gain >= 1e-4 * np.sum(grad[idx] * moved, axis=1)
        acc = idx[accept]
        X[acc], score[acc], grad[acc] = X_new[accept], s_new[accept], g_new[accept]
        if acc.size:
            d[acc] = direction(g_new[accept])
        step[acc] *= 2.0
        step[idx[~accept]] *= 0.5
        small = _row_norms(moved) <= tol * radius
        done = (accept & small) | (
            ~accept & (step[idx] * _row_norms(d[idx]) <= tol * radius)
        )
        active[idx[done]] = False
    return X, n_iter


# Stages of center-biased regularisation: (blur, window) with the standard deviation of
# the Gaussian blur and of the centred Gaussian window as fractions of the image's side.
_CENTER_STAGES = ((1 / 8, 1 / 2), (1 / 16, 2 / 5), (1 / 32, 1 / 3), (0.0, 1 / 3))


def _center_window(image_shape, width):
    """Centred Gaussian window of an image (peak 1), of std ``width`` times each side."""
    h, w = image_shape[:2]
    i = (np.arange(h) - (h - 1) / 2.0) / (width * h)
    j = (np.arange(w) - (w - 1) / 2.0) / (width * w)
    window = np.exp(-0.5 * (i[:, None] ** 2 + j[None, :] ** 2))
    if len(image_shape) == 3:
        window = np.repeat(window[:, :, None], image_shape[2], axis=2)
    return window.ravel()


def _blur(X, image_shape, sigma):
    """Each row of ``X`` seen as an image, blurred by a Gaussian of std ``sigma`` pixels
    (zero outside the image, so that the blur is a symmetric linear map)."""
    from scipy.ndimage import gaussian_filter

    if sigma <= 0:
        return np.array(X)
    images = X.reshape((len(X),) + tuple(image_shape))
    sigmas = (0.0, sigma, sigma) + (0.0,) * (len(image_shape) - 2)
    return gaussian_filter(images, sigmas, mode="constant").reshape(X.shape)


def _windowed_layers(layers, window, offset):
    """``layers`` seen as a function of ``u`` where the input is ``x = window ⊙ u + offset``
    (the window folded into the first layer's weights, the offset into its bias)."""
    first = layers[0]
    folded = Layer(
        first.weights * window[np.newaxis, :],
        first.bias + first.weights @ offset,
        first.activation,
    )
    return [folded] + list(layers[1:])


def _center_biased_ascent(
    layers, X, units, radii, bounds, max_iter, tol, image_shape, blur_start=True
):
    """Projected gradient ascent in the stages of ``_CENTER_STAGES``.

    The start is blurred by the first stage's blur if ``blur_start``. In stage ``k`` the
    input is written ``x = low + c ⊙ (u − low)`` with ``c`` the stage's centred window
    (``low`` = 0 without ``bounds``), and ``u`` is optimised in the ball
    ``‖u‖ ≤ radii[k]`` or the box, with the gradient blurred by the stage's blur: ``x``
    grows as a smooth object where the window is large, then sharpens with smaller blurs,
    while pixels far from the centre pay more for their brightness.
    """
    side = max(image_shape[:2])
    if blur_start:
        X = _blur(X, image_shape, _CENTER_STAGES[0][0] * side)
    low = 0.0 if bounds is None else bounds[0]
    project = None if bounds is None else (lambda Z: np.clip(Z, *bounds))
    for (blur, width), radius in zip(_CENTER_STAGES, radii):
        window = _center_window(image_shape, width)
        offset = low * (1.0 - window)

        def direction(G, sigma=blur * side):
            return _blur(G, image_shape, sigma)

        U, _ = _projected_gradient_ascent(
            _windowed_layers(layers, window, offset),
            (X - offset) / window,
            units,
            radius,
            max_iter,
            tol,
            project=project,
            direction=direction,
        )
        X = U * window + offset
    return X


def _lbfgs(fun, X0, bounds, max_iter, tol, name, advice):
    """Minimise ``fun`` over the flattened ``X0`` with L-BFGS-B, inside ``bounds`` if given.

    It stops at ``max_iter`` or when the projected gradient is below ``tol`` (the relative
    decrease test is switched off, so that ``tol`` decides). A start where the objective
    or its gradient is not finite, and a start from which L-BFGS-B cannot take a step
    (its first line search finds no decrease: the objective's scale is beyond what it
    handles), are ValueErrors from the function ``name``, with ``advice``: the result
    would be the start.
    """
    if bounds is not None:
        X0 = np.clip(X0, *bounds)
    with np.errstate(over="ignore", invalid="ignore"):
        f0, g0 = fun(X0.ravel())
    if not (np.isfinite(f0) and np.all(np.isfinite(g0))):
        raise ValueError(
            f"{name}: the objective or its gradient is not finite at the start (the "
            f"objective is {f0:.3g}), so L-BFGS-B cannot move from it. {advice}"
        )
    result = minimize(
        fun,
        X0.ravel(),
        jac=True,
        method="L-BFGS-B",
        bounds=None if bounds is None else [bounds] * X0.size,
        options={"maxiter": max_iter, "gtol": tol, "ftol": np.finfo(float).eps},
    )
    if result.nit == 0 and result.status == 2:
        raise ValueError(
            f"{name}: L-BFGS-B could not take a step from the start (its line search found "
            f"no decrease; the objective is {f0:.3g} there), so the result would be the "
            f"start. {advice}"
        )
    return result.x.reshape(X0.shape), int(result.nit)


# --------------------------------------------------------------------------- public
def activation_maximization(
    estimator,
    layer=1,
    units=None,
    *,
    norm=1.0,
    bounds=None,
    init="random",
    max_iter=500,
    tol=1e-6,
    center_bias=False,
    image_shape=None,
    random_state=None,
):
    """Inputs that maximise the activation of chosen units, by optimisation over the input.

    For each unit the input ``x`` is found by gradient ascent on the unit's activation,
    backpropagated through the network down to the input (the activation maximisation of
    Erhan et al., 2009). The input is constrained, or the answer is unbounded:

    - ``‖x‖ ≤ norm`` (default): projected gradient ascent with a per-unit step that doubles
      after an improving step and halves otherwise (Armijo condition), in balls of radius
      ``norm / 32``, ``norm / 16``, ..., ``norm``, each started from the previous answer
      (far from the origin saturated units make the landscape flat, and an ascent started
      there stalls); from a given ``init`` only in the ball of radius ``norm``;
    - a box ``low ≤ x_j ≤ high`` (``bounds``): SciPy's L-BFGS-B.

    The ascent maximises a strictly increasing function of the activation (the
    pre-activation for sigmoid, tanh and identity units, the log-probability for class
    units), which has the same maximisers and does not saturate. On the first layer the
    answer for ``‖x‖ ≤ 1`` is known in closed form (:func:`max_activation_inputs`); deeper
    layers have local maxima, so the result depends on ``init``.

    Parameters
    ----------
    estimator : SparseAutoencoder, StackedAutoencoder or StackedAutoencoderClassifier
        A fitted estimator.
    layer : int or "output", default=1
        1-based hidden layer whose units are maximised; for the classifier ``"output"``
        (or the number of hidden layers + 1) is the layer of class units (unit ``k`` is
        ``classes_[k]``).
    units : int, array-like of int or None, default=None
        0-based indices of the units in that layer; None means all of them.
    norm : float, default=1.0
        Radius of the ball ``‖x‖ ≤ norm``, finite and positive (ignored when ``bounds`` is
        given).
    bounds : (float, float), default=None
        ``(low, high)`` for every input feature, finite with ``low < high``, e.g. ``(0, 1)``
        for images scaled to [0, 1]. Replaces the norm constraint.
    init : {"random", "zeros"} or array-like of shape (n_units, n_features) or \
(n_features,), default="random"
        Start of the ascent: random (a small random vector, or uniform in the box), zeros,
        or given inputs (projected onto the constraint first).
    max_iter : int, default=500
        Maximum number of ascent iterations per radius (or of L-BFGS-B iterations), at
        least 1.
    tol : float, default=1e-6
        Stop a unit when its step moves the input by less than ``tol * norm`` (projected
        ascent) or when the projected gradient is below ``tol`` (L-BFGS-B).
    center_bias : bool, default=False
        Center-biased regularisation (Nguyen, Yosinski & Clune, 2016), against inputs made
        of fragments spread over the whole image: a blurred object is grown in the centre
        first, then sharpened there. A random start is blurred (a given ``init`` is kept
        as it is), and the projected ascent (also
        inside ``bounds``, instead of L-BFGS-B) runs in 4 stages of ``max_iter``
        iterations each. In each stage the input is ``x = low + c ⊙ (u − low)`` with ``c``
        a centred Gaussian window (1 in the middle; ``low`` is 0 without ``bounds``), ``u``
        is constrained as ``x`` would be (``‖u‖ ≤ norm`` or the box) and its gradient is
        blurred by a Gaussian filter. The blur's standard deviation is 1/8, 1/16, 1/32
        and 0 of the image's longer side, the window's 1/2, 2/5, 1/3 and 1/3 of each side:
        the object starts smooth, then sharpens, and a pixel far from the centre costs
        more of the norm (or may not reach ``high``) than one in the middle. The result
        still satisfies ``‖x‖ ≤ norm`` (or the box). Under the norm constraint from
        ``init="random"`` or ``"zeros"`` the stages run with ``norm / 8``, ..., ``norm``.
        Needs ``image_shape``.
    image_shape : int or tuple of int, default=None
        ``(height, width)`` or ``(height, width, channels)`` the inputs were flattened
        from (C order), for ``center_bias=True``; checked whenever given.
    random_state : int, RandomState instance or None, default=None
        Seed for ``init="random"``.

    Returns
    -------
    inputs : ndarray of shape (n_units, n_features)
        Row ``k`` maximises unit ``units[k]``.
    activations : ndarray of shape (n_units,)
        The activation each unit reaches at its input (a class probability for class units).

    Examples
    --------
    >>> import numpy as np
    >>> from skae import SparseAutoencoder
    >>> from skae.inspection import activation_maximization, max_activation_inputs
    >>> X = np.random.default_rng(0).random((100, 16))
    >>> ae = SparseAutoencoder(n_hidden=4, tol=1e-3, random_state=0).fit(X)
    >>> inputs, activations = activation_maximization(ae, layer=1, random_state=0)
    >>> closed_form = max_activation_inputs(ae)
    >>> bool(np.all(np.sum(inputs * closed_form, axis=1) > 0.99))
    True
    """
    layers = _layers_float64(estimator, layer)
    units = _check_units(units, layers, layer)
    bounds = _check_bounds(bounds)
    norm = 1.0 if bounds is not None else _check_real(norm, "norm", positive=True)
    max_iter = _check_int(max_iter, "max_iter", 1)
    tol = _check_real(tol, "tol")
    rng = check_random_state(random_state)
    n_features = layers[0].n_in
    image_shape = _check_center_bias(center_bias, image_shape, n_features)
    X = _start(init, len(units), n_features, float(norm), bounds, rng, "activation_maximization")
    if center_bias:
        n_stages = len(_CENTER_STAGES)
        if bounds is None:
            shrink = 0.5 ** np.arange(n_stages - 1, -1, -1) if isinstance(init, str) else 1.0
            radii = float(norm) * np.ones(n_stages) * shrink
        else:
            radii = np.full(n_stages, bounds[1] - bounds[0])
        X = _center_biased_ascent(
            layers, X, units, radii, bounds, int(max_iter), tol, image_shape,
            blur_start=isinstance(init, str),
        )
    elif bounds is None:
        # Continuation: maximise in balls of growing radius, each started from the last
        # answer. Far from the origin sigmoid units saturate and the landscape has flat
        # plateaus where the ascent would stall; near it the gradient is informative.
        n_radii = _N_RADII if isinstance(init, str) else 1  # keep a given start
        for radius in norm * 0.5 ** np.arange(n_radii - 1, -1, -1):
            X, _ = _projected_gradient_ascent(layers, X, units, radius, max_iter, tol)
    else:

        def fun(theta):
            score, grad, _ = _unit_score(layers, theta.reshape(X.shape), units)
            return -float(np.sum(score)), -grad.ravel()

        X, _ = _lbfgs(
            fun, X, bounds, max_iter, tol, "activation_maximization",
            "Give bounds and an init of magnitudes near 1 (the scale of the training data).",
        )
    _, _, activations = _unit_score(layers, X, units)
    return X, activations


def invert_code(
    estimator,
    X_or_codes,
    *,
    layer=1,
    given="auto",
    reg=1e-4,
    regularizer="l2",
    image_shape=None,
    bounds=None,
    init="zeros",
    max_iter=500,
    tol=1e-8,
    random_state=None,
):
    """Inputs whose code at a layer matches given codes (code inversion).

    For each target code ``Φ0`` (or the code of a given input) this minimises
    ``‖Φ(x) − Φ0‖² + reg · R(x)`` over the input ``x`` with SciPy's L-BFGS-B, where
    ``Φ`` is the network up to ``layer`` and ``R`` a regulariser (Mahendran & Vedaldi,
    2015): the squared norm ``‖x‖²`` or the squared total variation of ``x`` seen as an
    image. The gradient with respect to ``x`` is backpropagated through the encoders.

    Parameters
    ----------
    estimator : SparseAutoencoder, StackedAutoencoder or StackedAutoencoderClassifier
        A fitted estimator.
    X_or_codes : array-like of shape (n_samples, n_features) or (n_samples, n_units)
        Inputs whose codes are to be matched, or the target codes themselves.
    layer : int or "output", default=1
        1-based layer whose code is matched.
    given : {"auto", "inputs", "codes"}, default="auto"
        What ``X_or_codes`` holds. "auto" decides by the number of columns (and asks you to
        say when inputs and codes have the same width).
    reg : float, default=1e-4
        Weight ``λ`` of the regulariser (0 for none).
    regularizer : {"l2", "tv"}, default="l2"
        ``"l2"``: ``R(x) = ‖x‖²``; ``"tv"``: sum of squared differences between
        neighbouring pixels (needs ``image_shape``).
    image_shape : tuple of int, default=None
        ``(height, width)`` of an input, for ``regularizer="tv"`` (checked against the
        number of features whenever given).
    bounds : (float, float), default=None
        Optional box for every input feature, finite with ``low < high``.
    init : {"zeros", "random"} or array-like of shape (n_samples, n_features) or \
(n_features,), default="zeros"
        Start: zeros (clipped into the box), a small random vector (uniform in the box
        when ``bounds`` is given) or given inputs. Codes usually have fewer numbers than
        the input has features, so many inputs share a code; from zeros with the L2
        regulariser the search finds one of small norm, without the start's noise.
    max_iter : int, default=500
        Maximum number of L-BFGS-B iterations (all rows are optimised together; the
        objective is a sum of independent terms).
    tol : float, default=1e-8
        L-BFGS-B's projected-gradient tolerance.
    random_state : int, RandomState instance or None, default=None
        Seed for ``init="random"``.

    Returns
    -------
    inputs : ndarray of shape (n_samples, n_features)
        The reconstructed inputs.
    code_error : ndarray of shape (n_samples,)
        ``‖Φ(x) − Φ0‖``, the Euclidean distance between the achieved and the target code.

    Examples
    --------
    >>> import numpy as np
    >>> from skae import SparseAutoencoder
    >>> from skae.inspection import invert_code
    >>> X = np.random.default_rng(0).random((100, 16))
    >>> ae = SparseAutoencoder(n_hidden=8, tol=1e-3, random_state=0).fit(X)
    >>> inputs, code_error = invert_code(ae, X[:3], layer=1, random_state=0)
    >>> bool(np.all(code_error < 0.05 * np.linalg.norm(ae.transform(X[:3]), axis=1)))
    True
    """
    layers = _layers_float64(estimator, layer)
    if not (isinstance(given, str) and given in ("auto", "inputs", "codes")):
        raise ValueError(f"given must be 'auto', 'inputs' or 'codes', got {_plain(given)!r}.")
    if not (isinstance(regularizer, str) and regularizer in ("l2", "tv")):
        raise ValueError(f"regularizer must be 'l2' or 'tv', got {_plain(regularizer)!r}.")
    reg = _check_real(reg, "reg")
    max_iter = _check_int(max_iter, "max_iter", 1)
    tol = _check_real(tol, "tol")
    n_features, n_units = layers[0].n_in, layers[-1].n_out
    if regularizer == "tv" and image_shape is None:
        raise ValueError('regularizer="tv" needs image_shape=(height, width).')
    if image_shape is not None:  # checked whenever given, as the other functions do
        image_shape = _check_image_shape(image_shape, n_features)
    data = check_array(_host(X_or_codes), dtype=np.float64, input_name="X_or_codes")
    width = data.shape[1]
    if given == "auto":
        if width == n_features == n_units:
            raise ValueError(
                f"inputs and codes of layer {_plain(layer)!r} both have {width} columns; say "
                "which you passed with given='inputs' or given='codes'."
            )
        given = "inputs" if width == n_features else "codes" if width == n_units else None
    expected = n_features if given == "inputs" else n_units
    if given is None or width != expected:
        raise ValueError(
            f"X_or_codes has {width} columns, but inputs of this "
            f"{type(estimator).__name__} have {n_features} features and codes of layer "
            f"{_plain(layer)!r} have {n_units} units."
        )
    codes = forward(layers, data)[-1] if given == "inputs" else data
    bounds = _check_bounds(bounds)
    rng = check_random_state(random_state)
    X0 = _start(init, len(codes), n_features, 1.0, bounds, rng, "invert_code")
    fun = _inversion_objective(layers, codes, reg, regularizer, image_shape)
    X, _ = _lbfgs(
        fun, X0, bounds, max_iter, tol, "invert_code",
        "Use codes within the range of the layer's units, a smaller reg, and an init and "
        "bounds of magnitudes near 1 (the scale of the training data).",
    )
    code_error = np.linalg.norm(forward(layers, X)[-1] - codes, axis=1)
    return X, code_error


def _check_code_spread(codes, n_facets, code_layer):
    """Refuse codes with fewer distinct rows than t-SNE and k-means need.

    Identical codes leave PCA nothing but zeros, on which scikit-learn's t-SNE can crash
    the process; fewer distinct codes than facets leave k-means empty clusters.
    """
    n_distinct = len(np.unique(codes, axis=0))
    needed = max(n_facets, 2)
    if n_distinct < needed:
        raise ValueError(
            f"the {len(codes)} most activating rows of X have {n_distinct} distinct "
            f"code{'s' if n_distinct != 1 else ''} at layer {code_layer}, but {needed} are "
            f"needed to find n_facets={n_facets} facets; pass more varied inputs X, a larger "
            "n_top or a smaller n_facets."
        )


def multifaceted_visualization(
    estimator,
    X,
    unit,
    *,
    layer=1,
    n_facets=3,
    n_top=200,
    n_nearest=15,
    code_layer=None,
    norm=None,
    bounds=None,
    max_iter=50,
    perplexity=30.0,
    center_bias=False,
    image_shape=None,
    random_state=None,
):
    """One input per facet of a unit (multifaceted feature visualisation).

    A unit can respond to several kinds of input (facets). Following Nguyen, Yosinski &
    Clune (2016), with scikit-learn's estimators:

    1. the ``n_top`` rows of ``X`` that activate the unit most are kept;
    2. their codes at ``code_layer`` are reduced with :class:`~sklearn.decomposition.PCA`
       (at most 50 components), then embedded in 2-D with :class:`~sklearn.manifold.TSNE`
       (a ``ValueError`` is raised first when fewer than ``max(n_facets, 2)`` of the codes
       differ: there is nothing to embed or too little to split into ``n_facets``);
    3. :class:`~sklearn.cluster.KMeans` splits the embedding into ``n_facets`` clusters;
    4. the mean of the ``n_nearest`` inputs nearest each centroid (in the embedding) starts
       :func:`activation_maximization` of the unit, for ``max_iter`` iterations.

    A short ascent keeps each facet near its start; a long one may carry every facet to
    the same maximum (on the first layer there is only one).

    Parameters
    ----------
    estimator : SparseAutoencoder, StackedAutoencoder or StackedAutoencoderClassifier
        A fitted estimator.
    X : array-like of shape (n_samples, n_features)
        Inputs to draw the facets from (e.g. the training data).
    unit : int
        0-based index of the unit in ``layer``.
    layer : int or "output", default=1
        1-based layer of the unit (``"output"``: class units of the classifier).
    n_facets : int, default=3
        Number of clusters (facets).
    n_top : int, default=200
        Number of most-activating inputs that are clustered (at most ``n_samples``; at
        least ``max(n_facets, 5)``, so ``X`` needs that many rows).
    n_nearest : int, default=15
        Number of inputs averaged per facet for the start (all ``n_top`` when there are
        fewer).
    code_layer : int, default=None
        Layer whose codes are clustered; by default the layer below the unit's (its
        input), or layer 1 for a first-layer unit.
    norm, bounds : optional
        Constraint of the ascent, see :func:`activation_maximization`. By default the
        ball whose radius is the largest norm among the starts.
    max_iter : int, default=50
        Iterations of activation maximisation from each start.
    perplexity : float, default=30.0
        t-SNE perplexity (reduced to ``(n_top - 1) / 3`` when ``n_top`` is small).
    center_bias : bool, default=False
        Center-biased regularisation of the ascent, see :func:`activation_maximization`:
        from each facet's mean image, the ascent first adds smooth changes weighted
        towards the centre of the image, then sharper ones (``max_iter`` iterations in
        each of its 4 stages). Needs ``image_shape``.
    image_shape : int or tuple of int, default=None
        Shape the inputs were flattened from, for ``center_bias=True``; checked whenever
        given.
    random_state : int, RandomState instance or None, default=None
        Seed for t-SNE and k-means.

    Returns
    -------
    result : :class:`~sklearn.utils.Bunch`
        ``facets`` (n_facets, n_features): the maximised inputs, one per facet;
        ``facet_activations`` (n_facets,): the unit's activation at each;
        ``starts`` (n_facets, n_features): the mean images the ascent started from;
        ``top_indices`` (n_top,): rows of ``X`` used, most activating first;
        ``top_activations`` (n_top,): their activations;
        ``embedding`` (n_top, 2): their t-SNE embedding;
        ``labels`` (n_top,): their facet;
        ``nearest`` (n_facets, min(n_nearest, n_top)): for each facet, the positions (in
        ``top_indices`` and ``embedding``) of the inputs averaged into its start.

    Examples
    --------
    >>> import numpy as np
    >>> from skae import SparseAutoencoder
    >>> from skae.inspection import multifaceted_visualization
    >>> X = np.random.default_rng(0).random((300, 16))
    >>> ae = SparseAutoencoder(n_hidden=4, tol=1e-3, random_state=0).fit(X)
    >>> result = multifaceted_visualization(ae, X, unit=0, n_facets=2, n_top=60,
    ...                                     random_state=0)
    >>> result.facets.shape, result.labels.shape
    ((2, 16), (60,))
    """
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    layers = _layers_float64(estimator, layer)
    if not _is_int(unit):
        raise ValueError(f"unit must be one int, got {_plain(unit)!r}.")
    units = _check_units(unit, layers, layer)
    X = check_array(_host(X), dtype=np.float64, input_name="X")
    if X.shape[1] != layers[0].n_in:
        raise ValueError(
            f"X has {X.shape[1]} features, but the {type(estimator).__name__} was fitted on "
            f"{layers[0].n_in}."
        )
    image_shape = _check_center_bias(center_bias, image_shape, layers[0].n_in)
    n_facets = _check_int(n_facets, "n_facets", 1)
    n_nearest = _check_int(n_nearest, "n_nearest", 1)
    n_top = min(_check_int(n_top, "n_top", 1), len(X))
    perplexity = _check_real(perplexity, "perplexity", positive=True)
    if n_facets < 1 or n_nearest < 1 or n_top < max(n_facets, 5):
        raise ValueError(
            f"need n_facets >= 1, n_nearest >= 1 and at least max(n_facets, 5) inputs to "
            f"cluster; got n_facets={n_facets}, n_nearest={n_nearest}, n_top={n_top}."
        )
    n_layers = len(network_layers(estimator))
    if code_layer is None:
        code_layer = max(len(layers) - 1, 1)
    if not (_is_int(code_layer) and 1 <= code_layer <= n_layers):
        raise ValueError(
            f"code_layer must be an int from 1 to {n_layers}, got {_plain(code_layer)!r}."
        )
    rng = check_random_state(random_state)

    _, _, activation = _unit_score(layers, X, np.full(len(X), units[0]))
    top = np.argsort(-activation, kind="stable")[:n_top]
    codes = forward(
        layers[:code_layer]
        if code_layer <= len(layers)
        else _layers_float64(estimator, code_layer),
        X[top],
    )[-1]
    _check_code_spread(codes, n_facets, code_layer)
    n_components = min(50, codes.shape[1], n_top)
    reduced = PCA(n_components=n_components, random_state=rng.randint(2**31 - 1)).fit_transform(
        codes
    )
    embedding = TSNE(
        n_components=2,
        perplexity=min(perplexity, (n_top - 1) / 3.0),
        init="pca",
        random_state=rng.randint(2**31 - 1),
    ).fit_transform(reduced)
    kmeans = KMeans(n_clusters=n_facets, n_init=10, random_state=rng.randint(2**31 - 1))
    labels = kmeans.fit_predict(embedding)
    nearest = np.array(
        [
            np.argsort(np.linalg.norm(embedding - centre, axis=1), kind="stable")[:n_nearest]
            for centre in kmeans.cluster_centers_
        ]
    )
    starts = np.array([X[top[rows]].mean(axis=0) for rows in nearest])
    if bounds is None and norm is None:
        norm = float(np.max(_row_norms(starts)))
        if not 0.0 < norm < float("inf"):
            raise ValueError(
                f"The facets' starts (means of the nearest top inputs) have a largest norm "
                f"of {norm:g}, which cannot be the default radius of the search (norm=None): "
                "pass norm= (the length of the inputs to search among) or bounds=, or "
                "scale X to values near 1."
            )
    facets, facet_activations = activation_maximization(
        estimator,
        layer,
        np.full(n_facets, units[0]),
        norm=1.0 if norm is None else norm,
        bounds=bounds,
        init=starts,
        max_iter=max_iter,
        center_bias=center_bias,
        image_shape=image_shape,
    )
    return Bunch(
        facets=facets,
        facet_activations=facet_activations,
        starts=starts,
        top_indices=top,
        top_activations=activation[top],
        embedding=embedding,
        labels=labels,
        nearest=nearest,
    )
