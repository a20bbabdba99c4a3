"""Offline data for the examples: patches of natural photographs (UFLDL ``sampleIMAGES``).

Nothing is downloaded. The photographs are the two JPEGs that ship with scikit-learn
(:func:`sklearn.datasets.load_sample_images`, which needs pillow) and, when scikit-image is
installed, the natural photographs bundled in its wheel (``pip install "skae[images]"``).
"""

import functools
from importlib import resources
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.image import extract_patches_2d
from sklearn.utils import check_random_state

from ._validation import as_real_floats

__all__ = ["load_natural_patches", "whiten_image"]

_INSTALL_IMAGES = 'pip install "skae[images]"'

# Photographs (not drawings, charts or microscopy) bundled inside scikit-image's wheel.
_SKIMAGE_PHOTOGRAPHS = (
    "astronaut.png",
    "brick.png",
    "camera.png",
    "chelsea.png",
    "coffee.png",
    "grass.png",
    "gravel.png",
    "motorcycle_left.png",
    "rocket.jpg",
)

# Olshausen & Field's whitening filter R(f) = f exp(-(f / f0)^4) with the roll-off at
# f0 = 0.4 cycles per pixel (0.4 N cycles per N-pixel image in their code).
_ROLL_OFF = 0.4
# Pixels dropped at each side of a whitened photograph.
_MARGIN = 4
_NORMALIZE = ("squash", "center", None)
# ITU-R 601 luma weights of R, G and B.
_LUMA = np.array([0.299, 0.587, 0.114])


def _plain(value):
    """``value`` as error messages show it (``-1``, not ``np.int64(-1)``)."""
    return value.tolist() if isinstance(value, (np.generic, np.ndarray)) else value


def _check_pixels(image, what):
    """Refuse an image without pixels or with NaN or infinite values."""
    if image.size == 0:
        raise ValueError(f"{what} has no pixels (shape {image.shape}); pass a non-empty image.")
    if not np.all(np.isfinite(image)):
        raise ValueError(f"{what} contains NaN or infinite values; pass finite pixel values.")


# How to turn image files into the arrays the loader takes.
_READ_FILES = (
    "read image files first (e.g. with skimage.io.imread or "
    "numpy.asarray(PIL.Image.open(path)))"
)


def _grey(image):
    """A photograph as a float64 grey image in [0, 1] (ITU-R 601 luma for RGB).

    A third axis of length 1 is grey, 3 is RGB and 4 is RGBA (the alpha channel is
    ignored).
    """
    if isinstance(image, (str, bytes)) or sp.issparse(image):
        raise ValueError(
            f"each image must be an array of pixels, got a value of type "
            f"{type(image).__name__}; {_READ_FILES}, and densify sparse ones (.toarray())."
        )
    image = np.asarray(image)
    integer = np.issubdtype(image.dtype, np.integer)
    image = as_real_floats(image, "an image")
    if image.ndim == 3 and image.shape[2] in (1, 3, 4):
        image = image[..., 0] if image.shape[2] == 1 else image[..., :3] @ _LUMA
    elif image.ndim != 2:
        raise ValueError(
            f"each image must be 2-D (grey) or 3-D with 1 (grey), 3 (RGB) or 4 (RGBA) "
            f"channels, got shape {image.shape}; for grey with alpha, pass image[..., 0]."
        )
    _check_pixels(image, "an image")
    low, high = float(image.min()), float(image.max())
    if low < 0.0 or high > 255.0:
        raise ValueError(
            f"an image has values in [{low:g}, {high:g}]; pass pixel values in [0, 1] or "
            "[0, 255] (e.g. divide a 16-bit photograph by 65535)."
        )
    if integer or high > 1.0:
        image = image / 255.0
    return image


@functools.lru_cache(maxsize=1)
def _bundled_photographs():
    """Grey versions of the photographs shipped in installed packages (never downloaded).

    A tuple of read-only arrays, read once per process.
    """
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - pillow ships with the test extras
        raise ImportError(
            "load_natural_patches reads the photographs bundled with scikit-learn and "
            f"scikit-image, which needs pillow. Install it with: {_INSTALL_IMAGES}"
        ) from exc
    from sklearn.datasets import load_sample_images

    images = [_grey(image) for image in load_sample_images().images]
    try:
        data = resources.files("skimage") / "data"
    except ModuleNotFoundError:
        data = None
    for name in _SKIMAGE_PHOTOGRAPHS if data is not None else ():
        path = data / name
        if path.is_file():
            with path.open("rb") as handle, Image.open(handle) as picture:
                images.append(_grey(np.asarray(picture)))
    for image in images:
        image.flags.writeable = False
    return tuple(images)


def whiten_image(image, roll_off=_ROLL_OFF):
    """Whiten one grey image in the frequency domain (Olshausen & Field, 1997).

    The amplitude spectrum of natural images falls roughly as ``1/f``; multiplying the
    Fourier transform by ``f`` flattens it (decorrelates neighbouring pixels) and
    ``exp(-(f / f0)^4)`` rolls off the highest frequencies, where noise and aliasing
    dominate. This is how the ``IMAGES`` of the UFLDL sparse autoencoder exercise were made.
    The result has mean zero and unit variance (a flat image gives zeros).

    Parameters
    ----------
    image : array-like of shape (height, width)
        A grey image with at least one pixel, finite values.
    roll_off : float, default=0.4
        ``f0`` in cycles per pixel (0.5 is the Nyquist frequency), positive; ``np.inf``
        keeps every frequency. A value so small that the filter removes every frequency of
        the image is refused.

    Returns
    -------
    whitened : ndarray of shape (height, width)

    Examples
    --------
    >>> import numpy as np
    >>> from skae.datasets import whiten_image
    >>> white = whiten_image(np.random.default_rng(0).random((32, 48)))
    >>> white.shape, round(float(white.std()), 6), abs(float(white.mean())) < 1e-12
    ((32, 48), 1.0, True)
    """
    image = as_real_floats(image, "image")
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D (grey), got shape {image.shape}.")
    _check_pixels(image, "image")
    real = isinstance(roll_off, Real) and not isinstance(roll_off, (bool, np.bool_))
    if not (real and roll_off > 0):
        raise ValueError(
            f"roll_off must be a positive number of cycles per pixel (0.4 by default), got "
            f"{_plain(roll_off)!r}."
        )
    fy = np.fft.fftfreq(image.shape[0])[:, np.newaxis]
    fx = np.fft.rfftfreq(image.shape[1])[np.newaxis, :]
    f = np.hypot(fx, fy)
    with np.errstate(over="ignore"):
        response = f * np.exp(-((f / roll_off) ** 4))
    if np.any(f > 0) and not np.any(response > 0):
        raise ValueError(
            f"roll_off={_plain(roll_off)!r} removes every frequency of a {image.shape} image "
            f"(its lowest is {float(np.min(f[f > 0])):.3g} cycles per pixel); use a larger "
            "roll_off."
        )
    # The result does not depend on the image's scale: filter it scaled to [-1, 1], so
    # that neither tiny nor huge values underflow or overflow on the way.
    scale = float(np.max(np.abs(image)))
    if scale == 0.0:
        return np.zeros_like(image)
    whitened = np.fft.irfft2(np.fft.rfft2(image / scale) * response, s=image.shape)
    whitened -= whitened.mean()
    std = whitened.std()
    # a flat image leaves only rounding residue (about 1e-16): it stays zero rather than
    # being blown up to unit variance
    if std <= 1e-12:
        return np.zeros_like(whitened)
    return whitened / std


def _cut(photo, patch_size, k, n_positions, rng):
    """``k`` patches of ``photo`` at random positions, drawn with replacement.

    :func:`~sklearn.feature_extraction.image.extract_patches_2d` draws positions with
    replacement too, but returns every patch once when asked for as many as there are
    positions or more; beyond that number the patches are drawn here.
    """
    if k <= n_positions:
        return extract_patches_2d(photo, (patch_size, patch_size), max_patches=k, random_state=rng)
    every = extract_patches_2d(photo, (patch_size, patch_size))
    return every[rng.randint(n_positions, size=k)]


def load_natural_patches(
    patch_size=8,
    n_patches=10000,
    *,
    whiten=True,
    normalize="squash",
    images=None,
    random_state=None,
):
    """Random square patches of natural photographs, prepared as in UFLDL ``sampleIMAGES``.

    With the defaults this reproduces the data of the UFLDL sparse autoencoder exercise on
    photographs that ship inside installed packages (nothing is downloaded):

    1. each photograph is converted to grey and whitened in the frequency domain with
       Olshausen & Field's filter (:func:`whiten_image`); the FFT treats it as periodic,
       so a border of 4 pixels, where the opposite edge leaks in, is dropped from each
       side when the photograph is at least ``patch_size + 8`` pixels on each side;
    2. ``n_patches`` patches are cut at random positions of randomly chosen photographs
       (:func:`sklearn.feature_extraction.image.extract_patches_2d`);
    3. ``normalize="squash"``: each patch's mean is removed, values are clipped at ±3
       standard deviations (of all patch values together) and mapped linearly onto
       [0.1, 0.9], the range a sigmoid decoder can reproduce.

    Parameters
    ----------
    patch_size : int, default=8
        Side of the square patches.
    n_patches : int, default=10000
        Number of patches.
    whiten : bool, default=True
        Whiten each photograph first (step 1). False keeps grey values in [0, 1].
    normalize : {"squash", "center"} or None, default="squash"
        ``"squash"`` applies step 3; ``"center"`` only removes each patch's mean (for a
        linear decoder, or before :class:`~skae.ZCAWhitening`); None returns the patches
        as cut.
    images : list of array-like, default=None
        Photographs to cut from (2-D grey, or 3-D with 1 grey, 3 RGB or 4 RGBA channels;
        values in [0, 1] or [0, 255], others are refused: an image of integers, or of
        floats above 1, is divided by 255); one photograph is passed as ``[image]``.
        Together they must have at least ``n_patches`` patch positions (with ``whiten``,
        inside the borders that step 1 drops).
        Positions are drawn with replacement, so a small image chosen more often than it
        has positions gives some patches twice.
        By default: scikit-learn's two sample images and, when scikit-image is installed
        (``pip install "skae[images]"``), the nine photographs bundled with it.
    random_state : int, RandomState instance or None, default=None
        Seed for the choice of photographs and patch positions.

    Returns
    -------
    patches : ndarray of shape (n_patches, patch_size ** 2)
        One flattened patch per row (C order: reshape a row to ``(patch_size, patch_size)``).

    Examples
    --------
    >>> from skae.datasets import load_natural_patches
    >>> X = load_natural_patches(patch_size=8, n_patches=1000, random_state=0)
    >>> X.shape, float(X.min()) >= 0.1, float(X.max()) <= 0.9
    ((1000, 64), True, True)
    """
    if not isinstance(patch_size, Integral) or isinstance(patch_size, bool) or patch_size < 1:
        raise ValueError(f"patch_size must be a positive integer, got {_plain(patch_size)!r}.")
    if not isinstance(n_patches, Integral) or isinstance(n_patches, bool) or n_patches < 1:
        raise ValueError(f"n_patches must be a positive integer, got {_plain(n_patches)!r}.")
    if not (normalize is None or isinstance(normalize, str) and normalize in _NORMALIZE):
        raise ValueError(f"normalize must be one of {_NORMALIZE}, got {_plain(normalize)!r}.")
    if not isinstance(whiten, (bool, np.bool_)):
        raise ValueError(f"whiten must be True or False, got {_plain(whiten)!r}.")
    patch_size, n_patches = int(patch_size), int(n_patches)  # np.int16 would wrap around
    try:
        rng = check_random_state(random_state)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"random_state must be None, an int in [0, 2**32 - 1] or a "
            f"numpy.random.RandomState (not a numpy.random.Generator), got "
            f"{_plain(random_state)!r}."
        ) from exc
    if images is not None and (
        isinstance(images, (str, bytes, dict)) or not hasattr(images, "__iter__")
    ):
        raise ValueError(
            f"images must be a list of photographs (arrays of pixels), got a value of type "
            f"{type(images).__name__}; pass images=[image] for one photograph, and "
            f"{_READ_FILES}."
        )
    shape = None if isinstance(images, (list, tuple)) else getattr(images, "shape", None)
    if shape is not None and (len(shape) == 2 or (len(shape) == 3 and shape[2] in (1, 3, 4))):
        # one array (NumPy, PyTorch, ...) whose rows would be taken for images
        raise ValueError(
            f"images is one array of shape {tuple(shape)}; images takes a list of "
            "photographs: pass images=[image] for one photograph (or list(images) for a "
            "stack of grey images)."
        )
    photographs = _bundled_photographs() if images is None else [_grey(i) for i in images]
    if len(photographs) == 0:
        raise ValueError("images is empty; pass at least one photograph.")
    for photo in photographs:
        if min(photo.shape) < patch_size:
            raise ValueError(
                f"an image of shape {photo.shape} is smaller than patch_size={patch_size}; "
                "use a smaller patch_size or larger images."
            )
    if whiten:
        # The FFT treats each photograph as periodic; drop a margin where the wrap-around
        # edge leaks in (when the photograph is large enough to spare it).
        m = _MARGIN
        whitened = [whiten_image(photograph) for photograph in photographs]
        photographs = [
            white[m:-m, m:-m] if min(white.shape) >= patch_size + 2 * m else white
            for white in whitened
        ]
        cropped = any(w.shape != white.shape for w, white in zip(photographs, whitened))
    else:
        cropped = False

    side = patch_size - 1
    positions = [(h - side) * (w - side) for h, w in map(np.shape, photographs)]
    if sum(positions) < n_patches:
        border = (
            f" once whitening has dropped a border of {_MARGIN} pixels from each side"
            if cropped else ""
        )
        raise ValueError(
            f"the images have {sum(positions)} positions for a {patch_size}x{patch_size} "
            f"patch{border}, fewer than n_patches={int(n_patches)}; pass more or larger "
            "images, a smaller patch_size or a smaller n_patches"
            + (", or whiten=False." if cropped else ".")
        )

    counts = np.bincount(rng.randint(len(photographs), size=n_patches), minlength=len(photographs))
    patches = [
        _cut(photo, patch_size, int(k), n, rng)
        for photo, k, n in zip(photographs, counts, positions)
        if k > 0
    ]
    X = np.concatenate(patches).reshape(n_patches, patch_size * patch_size)
    X = X[rng.permutation(n_patches)]

    if normalize is not None:
        X = X - X.mean(axis=1, keepdims=True)
    if normalize == "squash":
        limit = 3.0 * X.std()
        if limit > 0:
            X = np.clip(X, -limit, limit) / limit
        X = (X + 1.0) * 0.4 + 0.1
    return X
