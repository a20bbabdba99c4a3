"""Look at what an autoencoder learned: filters, activation maximisation, code inversion.

The plotting functions import matplotlib only when they are called; everything else here
needs NumPy, SciPy and scikit-learn only. Install matplotlib with ``pip install "skae[plot]"``.
"""

import numbers

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from ._base import kl_divergence

__all__ = [
    "tile_images",
    "plot_filters",
    "max_activation_inputs",
    "plot_loss_curve",
    "plot_kl_penalty",
]

_PLOT_INSTALL = 'pip install "skae[plot]"'


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


# --------------------------------------------------------------------------- tiles
def _check_image_shape(image_shape, n_features):
    if isinstance(image_shape, numbers.Integral):
        image_shape = (int(image_shape), int(image_shape))
    image_shape = tuple(int(s) for s in image_shape)
    if len(image_shape) not in (2, 3) or min(image_shape) < 1:
        raise ValueError(
            f"image_shape must be (height, width) or (height, width, channels) of positive "
            f"integers, got {image_shape}."
        )
    if int(np.prod(image_shape)) != n_features:
        raise ValueError(
            f"image_shape {image_shape} has {int(np.prod(image_shape))} pixels but each row "
            f"has {n_features} features; pass the shape the rows were flattened from "
            f"(e.g. (8, 8) for 64 features)."
        )
    return image_shape


def tile_images(rows, image_shape, *, grid_shape=None, spacing=1, scale_each=True, fill=-1.0):
    """Arrange flattened images as tiles of one 2-D array (UFLDL ``display_network``).

    Parameters
    ----------
    rows : array-like of shape (n_images, n_features)
        One flattened image per row (C order), e.g. ``components_`` of an autoencoder.
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
    rows = np.asarray(rows, dtype=np.float64)
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
    spacing = int(spacing)
    if spacing < 0:
        raise ValueError(f"spacing must be >= 0, got {spacing}.")
    if grid_shape is None:
        n_cols = int(np.ceil(np.sqrt(n_images)))
        n_rows = int(np.ceil(n_images / n_cols))
    else:
        n_rows, n_cols = (int(g) for g in grid_shape)
        if n_rows < 1 or n_cols < 1 or n_rows * n_cols < n_images:
            raise ValueError(
                f"grid_shape {tuple(grid_shape)} has room for {max(n_rows, 0) * max(n_cols, 0)}"
                f" tiles but there are {n_images} images; use a larger grid or fewer rows."
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
def _first_layer_weights(estimator):
    """``W1`` of a fitted skae estimator, or the array itself."""
    if isinstance(estimator, BaseEstimator):
        check_is_fitted(estimator)
        if hasattr(estimator, "components_"):
            return np.asarray(estimator.components_)
        if hasattr(estimator, "autoencoders_"):
            return np.asarray(estimator.autoencoders_[0].components_)
        raise TypeError(
            f"{type(estimator).__name__} has no first-layer weights; pass a fitted "
            "SparseAutoencoder, StackedAutoencoder or StackedAutoencoderClassifier, "
            "or an array of filters."
        )
    return np.asarray(estimator)


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
    norms = np.linalg.norm(W, axis=1, keepdims=True)
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
    estimator_or_array : estimator or array-like of shape (n_filters, n_features)
        A fitted :class:`~skae.SparseAutoencoder` (its ``components_``), a fitted stacked
        estimator (the first layer's weights), or rows to draw.
    image_shape : int or tuple of int
        Shape of one image, see :func:`tile_images`.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when None.
    n_filters : int, default=None
        Draw only the first ``n_filters`` rows.
    grid_shape, spacing :
        Passed to :func:`tile_images`.
    cmap : str, default="gray"
        Colour map for one-channel images (ignored for RGB tiles).
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
    rows = _first_layer_weights(estimator_or_array)
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim == 1:
        rows = rows[np.newaxis, :]
    if n_filters is not None:
        rows = rows[: int(n_filters)]
    tiles = tile_images(rows, image_shape, grid_shape=grid_shape, spacing=spacing)
    ax = _axes(ax, "plot_filters")
    if tiles.ndim == 3:  # RGB tiles in [-1, 1] -> [0, 1]
        ax.imshow((tiles + 1.0) / 2.0, interpolation="nearest")
    else:
        ax.imshow(tiles, cmap=cmap, vmin=-1.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title)
    return ax


def plot_loss_curve(estimator, ax=None, *, log_scale=True):
    """Draw the training objective against the L-BFGS iteration.

    Parameters
    ----------
    estimator : fitted skae estimator
        A :class:`~skae.SparseAutoencoder` (its ``loss_curve_``) or a stacked estimator
        (one curve per pretrained layer from ``autoencoders_``, plus the fine-tuning
        curve ``fine_tune_loss_curve_`` when the estimator has one).
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
    check_is_fitted(estimator)
    curves = []
    if hasattr(estimator, "loss_curve_"):
        curves.append(("objective", estimator.loss_curve_))
    for k, ae in enumerate(getattr(estimator, "autoencoders_", []), start=1):
        curves.append((f"layer {k}", ae.loss_curve_))
    fine_tune = getattr(estimator, "fine_tune_loss_curve_", None)
    if fine_tune is not None and len(fine_tune):
        curves.append(("fine-tuning", fine_tune))
    if not curves:
        raise TypeError(
            f"{type(estimator).__name__} records no loss curve; pass a fitted skae estimator."
        )
    ax = _axes(ax, "plot_loss_curve")
    for label, curve in curves:
        curve = np.asarray(curve, dtype=np.float64)
        ax.plot(np.arange(1, len(curve) + 1), curve, label=label)
    if log_scale and all(np.all(np.asarray(c) > 0) for _, c in curves):
        ax.set_yscale("log")
    ax.set_xlabel("L-BFGS iteration")
    ax.set_ylabel("objective J")
    if len(curves) > 1:
        ax.legend()
    return ax


def plot_kl_penalty(rho=0.2, ax=None, *, n_points=500):
    """Draw the sparsity penalty ``KL(ρ ‖ ρ̂)`` against the mean activation ``ρ̂``.

    This is the figure of the UFLDL notes: zero at ``ρ̂ = ρ``, growing without bound as
    ``ρ̂`` approaches 0 or 1.

    Parameters
    ----------
    rho : float or sequence of float, default=0.2
        Sparsity target(s) in (0, 1); one curve each.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when None.
    n_points : int, default=500
        Number of values of ``ρ̂`` in (0, 1).

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
    rhos = np.atleast_1d(np.asarray(rho, dtype=np.float64))
    if rhos.ndim != 1 or np.any((rhos <= 0) | (rhos >= 1)):
        raise ValueError(f"rho must lie strictly between 0 and 1, got {rho!r}.")
    ax = _axes(ax, "plot_kl_penalty")
    rho_hat = np.linspace(0.0, 1.0, int(n_points) + 2)[1:-1]
    for r in rhos:
        ax.plot(rho_hat, kl_divergence(r, rho_hat), label=f"ρ = {r:g}")
    ax.set_xlabel("mean activation ρ̂")
    ax.set_ylabel("KL(ρ ‖ ρ̂)")
    ax.set_xlim(0, 1)
    top = max(float(kl_divergence(r, rho_hat[[0, -1]]).min()) for r in rhos)
    ax.set_ylim(0, min(top, 5.0))
    ax.legend()
    return ax
