"""skae.datasets: natural image patches as in UFLDL sampleIMAGES, offline."""

import importlib.util
import socket
import sys
import warnings

import numpy as np
import pytest
from sklearn.decomposition import PCA

from skae import SparseAutoencoder
from skae.datasets import _bundled_photographs, load_natural_patches, whiten_image

pytest.importorskip("PIL", reason="scikit-learn's sample images need pillow")


# --------------------------------------------------------------------------- measures
def orientation_selectivity(filters, shape=(8, 8), size=32):
    """How much of each filter's power lies along one orientation, in [0, 1].

    From the power spectrum ``P(f)`` of the filter (zero-padded to ``size``), with ``θ(f)``
    the orientation of frequency ``f``: ``|Σ P e^{2iθ}| / Σ P`` over ``f ≠ 0``. A grating or
    an edge gives a value near 1, an isotropic blob or white noise a value near 0.
    """
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.fftfreq(size)[None, :]
    theta = np.arctan2(fy, fx)
    nonzero = np.hypot(fx, fy) > 0
    values = []
    for w in filters:
        w = w.reshape(shape) - w.mean()
        power = np.abs(np.fft.fft2(w, s=(size, size)))[nonzero] ** 2
        values.append(abs(np.sum(power * np.exp(2j * theta[nonzero]))) / np.sum(power))
    return np.array(values)


def localisation(filters, shape=(8, 8), window=4):
    """Largest fraction of a filter's energy inside one window of ``window``² pixels."""
    values = []
    for w in filters:
        energy = w.reshape(shape) ** 2
        best = max(
            energy[i : i + window, j : j + window].sum()
            for i in range(shape[0] - window + 1)
            for j in range(shape[1] - window + 1)
        )
        values.append(best / energy.sum())
    return np.array(values)


# --------------------------------------------------------------------------- the exercise
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_exercise_settings_learn_localised_oriented_edge_detectors():
    """UFLDL's exercise: 8x8 patches, 64-25, rho=0.01, beta=3, alpha=1e-4, 400 iterations.

    To fit the test budget this uses 5 000 patches instead of the exercise's 10 000 (the
    gallery example uses 10 000). Measured on this seed: median orientation selectivity
    0.66 against 0.41 for the top 25 principal components of the same patches and 0.10 for
    random filters (96% of the units above 0.4); median localisation 0.52 against 0.37
    (PCA) and 0.38 (random). With 10 000 patches: 0.68 / 0.57 and 0.49 / 0.35.
    """
    pytest.importorskip("skimage", reason="the margins were measured with its photographs")
    X = load_natural_patches(patch_size=8, n_patches=5000, random_state=0)
    ae = SparseAutoencoder(
        n_hidden=25,
        rho=0.01,
        beta=3.0,
        alpha=1e-4,
        activation="sigmoid",
        decoder="sigmoid",
        loss="squared",
        max_iter=400,
        tol=1e-12,
        random_state=0,
    ).fit(X)
    filters = ae.components_
    pca = PCA(n_components=25, random_state=0).fit(X).components_
    noise = np.random.default_rng(0).normal(size=(1000, 64))

    osi = orientation_selectivity(filters)
    assert np.median(osi) > 0.55, np.round(np.sort(osi), 2)
    assert np.mean(osi > 0.4) >= 0.8  # nearly every unit prefers one orientation
    assert np.median(osi) > np.median(orientation_selectivity(pca)) + 0.1
    assert np.median(osi) > 4 * np.median(orientation_selectivity(noise))

    local = localisation(filters)
    assert np.median(local) > np.median(localisation(pca)) + 0.1, np.round(np.sort(local), 2)
    assert np.median(local) > np.median(localisation(noise)) + 0.08


# --------------------------------------------------------------------------- loader
def test_defaults_are_squashed_into_the_sigmoid_range():
    X = load_natural_patches(n_patches=2000, random_state=0)
    assert X.shape == (2000, 64) and X.dtype == np.float64
    assert X.min() >= 0.1 and X.max() <= 0.9
    # sampleIMAGES's normalizeData on the centred patches: clip at ±3σ, map onto [0.1, 0.9]
    centred = load_natural_patches(n_patches=2000, normalize="center", random_state=0)
    limit = 3 * centred.std()
    np.testing.assert_allclose(X, (np.clip(centred, -limit, limit) / limit + 1) * 0.4 + 0.1)
    assert np.mean(np.abs(centred) > limit) < 0.05  # clipping touches only the tails


def test_random_state_and_options():
    a = load_natural_patches(patch_size=6, n_patches=500, random_state=1)
    np.testing.assert_array_equal(a, load_natural_patches(6, 500, random_state=1))
    assert not np.array_equal(a, load_natural_patches(6, 500, random_state=2))
    centred = load_natural_patches(6, 500, normalize="center", random_state=1)
    np.testing.assert_allclose(centred.mean(axis=1), 0.0, atol=1e-12)
    assert centred.max() > 1.0  # not squashed: whitened images have unit variance
    raw = load_natural_patches(6, 500, whiten=False, normalize=None, random_state=1)
    assert raw.shape == (500, 36) and raw.min() >= 0.0 and raw.max() <= 1.0


def test_patches_are_cut_from_the_given_images():
    image = np.arange(30 * 40, dtype=float).reshape(30, 40)
    patches = load_natural_patches(
        5, 50, images=[image / image.max()], whiten=False, normalize=None, random_state=0
    )
    for patch in patches.reshape(-1, 5, 5) * image.max():
        i, j = divmod(int(round(patch[0, 0])), 40)
        np.testing.assert_allclose(patch, image[i : i + 5, j : j + 5])


def spectral_slope(image):
    """Slope of log power against log frequency (0.01 to 0.3 cycles per pixel)."""
    power = np.abs(np.fft.rfft2(image - image.mean())) ** 2
    fy = np.fft.fftfreq(image.shape[0])[:, None]
    fx = np.fft.rfftfreq(image.shape[1])[None, :]
    edges = np.geomspace(0.01, 0.3, 12)
    band = np.digitize(np.hypot(fx, fy), edges)
    means = [power[band == k].mean() for k in range(1, len(edges))]
    return np.polyfit(np.log(np.sqrt(edges[1:] * edges[:-1])), np.log(means), 1)[0]


def test_whitening_flattens_the_spectrum_of_every_photograph():
    """Natural images have power ~ 1/f^2 (slope about -2); whitened ones are nearly flat.

    Measured slopes: -1.3 to -2.9 before, -1.0 to 0.6 after.
    """
    for photo in _bundled_photographs():
        white = whiten_image(photo)
        assert spectral_slope(photo) < -1.2
        assert abs(spectral_slope(white)) < 1.1
        assert abs(white.mean()) < 1e-12 and abs(white.std() - 1.0) < 1e-12


def test_photographs_come_from_installed_packages_without_the_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("load_natural_patches tried to open a network connection")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    _bundled_photographs.cache_clear()
    photographs = _bundled_photographs()
    # scikit-learn's two, plus scikit-image's nine when it is installed
    expected = 2 + 9 if importlib.util.find_spec("skimage") is not None else 2
    assert len(photographs) == expected
    assert all(p.ndim == 2 and 0 <= p.min() and p.max() <= 1 for p in photographs)
    monkeypatch.setitem(sys.modules, "skimage", None)  # as if not installed
    _bundled_photographs.cache_clear()
    try:
        assert len(_bundled_photographs()) == 2
    finally:
        _bundled_photographs.cache_clear()


def test_bad_input():
    with pytest.raises(ValueError, match="smaller than patch_size=600"):
        load_natural_patches(patch_size=600, n_patches=10)
    with pytest.raises(ValueError, match="n_patches must be a positive integer"):
        load_natural_patches(n_patches=0)
    with pytest.raises(ValueError, match="patch_size must be a positive integer"):
        load_natural_patches(patch_size=2.5)
    with pytest.raises(ValueError, match="normalize must be one of"):
        load_natural_patches(normalize="squashed")
    with pytest.raises(ValueError, match="images is empty"):
        load_natural_patches(images=[])


def test_fewer_patch_positions_than_patches_is_a_clear_error():
    image = np.random.default_rng(0).random((6, 6))
    with pytest.raises(ValueError, match="have 9 positions for a 4x4 patch.*n_patches=1000"):
        load_natural_patches(4, 1000, images=[image])


def test_a_small_image_chosen_more_often_than_it_has_patches_repeats_them():
    rng = np.random.default_rng(0)
    large, small = rng.random((40, 40)), np.arange(36.0).reshape(6, 6) / 36.0
    X = load_natural_patches(
        4, 400, images=[large, small], whiten=False, normalize=None, random_state=0
    )
    assert X.shape == (400, 16)
    from_small = {tuple(p) for p in X if np.isin(p, small).all()}
    everything = {tuple(small[i : i + 4, j : j + 4].ravel()) for i in range(3) for j in range(3)}
    assert from_small == everything  # about 200 draws among its 9 positions
    assert len(np.unique(X, axis=0)) < 400


def test_images_with_one_three_or_four_channels():
    rng = np.random.default_rng(0)
    grey = rng.random((10, 12))
    rgb = rng.random((10, 12, 3))
    rgba = np.concatenate([rgb, rng.random((10, 12, 1))], axis=2)
    options = dict(whiten=False, normalize=None, random_state=0)
    for image, expected in [(grey[..., None], grey), (rgba, rgb)]:
        np.testing.assert_array_equal(
            load_natural_patches(3, 20, images=[image], **options),
            load_natural_patches(3, 20, images=[expected], **options),
        )
    with pytest.raises(ValueError, match=r"1 \(grey\), 3 \(RGB\) or 4 \(RGBA\).*\(10, 12, 2\)"):
        load_natural_patches(3, 20, images=[rgb[..., :2]])
    # one photograph passed as the list itself: its rows are not taken for images
    for image in (grey, grey[..., None], rgb, rgba):
        with pytest.raises(ValueError, match=r"images is one array .*pass images=\[image\]"):
            load_natural_patches(3, 20, images=image, **options)
    stack = rng.random((3, 10, 12))  # a stack of grey images is a sequence of images
    np.testing.assert_array_equal(
        load_natural_patches(3, 20, images=stack, **options),
        load_natural_patches(3, 20, images=list(stack), **options),
    )


@pytest.mark.parametrize(
    "image, message",
    [
        (np.ones((0, 5)), r"no pixels \(shape \(0, 5\)\)"),
        (np.full((8, 8), np.nan), "NaN or infinite"),
    ],
)
def test_images_without_pixels_or_with_nan_are_refused(image, message):
    with pytest.raises(ValueError, match=message):
        whiten_image(image)
    with pytest.raises(ValueError, match=message):
        load_natural_patches(1, 1, images=[image])


@pytest.mark.parametrize(
    "image, message",
    [
        (np.full((8, 8), 65535, dtype=np.uint16), r"values in \[65535, 65535\].*65535\)"),
        (np.linspace(-0.5, 0.5, 64).reshape(8, 8), r"values in \[-0.5, 0.5\]; pass pixel"),
    ],
    ids=["16-bit", "negative"],
)
def test_images_outside_the_pixel_ranges_are_refused(image, message):
    """Patches keep grey values in [0, 1]: an image outside [0, 1] and [0, 255] (a 16-bit
    photograph, negative values) is refused instead of giving patches outside it."""
    with pytest.raises(ValueError, match=message):
        load_natural_patches(2, 4, images=[image], whiten=False, normalize=None)


@pytest.mark.parametrize(
    "roll_off, message",
    [
        (0, "roll_off must be a positive number.*got 0"),
        (-0.4, "roll_off must be a positive number.*got -0.4"),
        (np.float64(np.nan), r"roll_off must be a positive number.*got nan\."),
        (1e-3, r"roll_off=0.001 removes every frequency of a \(32, 48\) image"),
    ],
)
def test_whiten_image_refuses_a_roll_off_that_removes_everything(roll_off, message):
    image = np.random.default_rng(0).random((32, 48))
    with pytest.raises(ValueError, match=message):
        whiten_image(image, roll_off=roll_off)


def test_errors_print_plain_numbers():
    with pytest.raises(ValueError, match=r"patch_size must be a positive integer, got -1\.$"):
        load_natural_patches(patch_size=np.int64(-1))
    with pytest.raises(ValueError, match=r"n_patches must be a positive integer, got 0\.$"):
        load_natural_patches(n_patches=np.int64(0))
    with pytest.raises(ValueError, match=r"normalize must be one of .*, got 'squashed'\.$"):
        load_natural_patches(normalize=np.str_("squashed"))


def test_whiten_image_leaves_a_flat_image_flat():
    """The filter leaves a flat image with rounding residue only; it is not blown up to
    unit variance."""
    for value, shape in ((0.3, (10, 10)), (1.0, (4, 4)), (200.0, (7, 9))):
        np.testing.assert_array_equal(whiten_image(np.full(shape, value)), np.zeros(shape))
    white = whiten_image(np.random.default_rng(0).random((10, 10)))
    assert abs(float(white.std()) - 1.0) < 1e-12


@pytest.mark.parametrize("scale", [1e-11, 1e-200, 1e200, 1e307])
def test_whiten_image_does_not_depend_on_the_scale(scale):
    """The filter is linear and the result scaled to unit variance: tiny and huge images
    give the same result as at scale 1, neither zeros (underflow) nor NaN (overflow)."""
    image = np.random.default_rng(0).random((32, 40))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow or underflow warnings
        np.testing.assert_allclose(whiten_image(image * scale), whiten_image(image),
                                   rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(whiten_image(np.full((5, 6), scale)), np.zeros((5, 6)))


def test_complex_images_and_a_non_bool_whiten_are_refused():
    image = np.random.default_rng(0).random((20, 20))
    with pytest.raises(ValueError, match="image is complex"):
        whiten_image(image + 1j)
    with pytest.raises(ValueError, match="an image is complex"):
        load_natural_patches(patch_size=2, n_patches=3, images=[image + 1j])
    with pytest.raises(ValueError, match="whiten must be True or False, got 'no'"):
        load_natural_patches(patch_size=2, n_patches=3, images=[image], whiten="no")


def test_the_whitening_border_is_named_when_positions_run_short():
    """A 20 × 20 photograph has 169 positions for an 8 × 8 patch, but whitening drops a
    border of 4 pixels from each side (the FFT's wrap-around): the error says so and
    names whiten=False, which keeps them all."""
    image = np.random.default_rng(0).random((20, 20))
    assert load_natural_patches(8, 169, images=[image], whiten=False).shape == (169, 64)
    with pytest.raises(ValueError, match=r"have 25 positions for a 8x8 patch once whitening "
                                         r"has dropped a border of 4 pixels.*whiten=False"):
        load_natural_patches(8, 169, images=[image])


def test_images_too_small_to_crop_are_not_said_to_lose_a_border():
    """A photograph under patch_size + 8 pixels keeps its border: the error does not
    blame the whitening nor suggest whiten=False, which would not help."""
    image = np.random.default_rng(0).random((10, 10))
    with pytest.raises(ValueError, match=r"have 9 positions for a 8x8 patch, fewer") as caught:
        load_natural_patches(8, 10, images=[image])
    assert "border" not in str(caught.value) and "whiten=False" not in str(caught.value)


def test_numpy_integer_sizes_give_the_plain_int_result():
    """np.int16 sizes are used as ints (their products wrapped around: a wrong count of
    patch positions, or an OverflowError)."""
    image = np.random.default_rng(0).random((300, 300))
    plain = load_natural_patches(8, 30000, images=[image], whiten=False, random_state=0)
    small = load_natural_patches(np.int16(8), np.int32(30000), images=[image], whiten=False,
                                 random_state=0)
    np.testing.assert_array_equal(small, plain)


@pytest.mark.parametrize(
    "images, message",
    [("photo.png", r"images must be .*of type str; pass images=\[image\] .*read image files"),
     (5, "images must be a list of photographs .*got a value of type int"),
     ({"a": np.ones((20, 20))}, "images must be a list of photographs .*of type dict"),
     (["photo.png"], "each image must be an array of pixels, got a value of type str; read"),
     ([pytest.importorskip("scipy.sparse").csr_matrix(np.ones((20, 20)))],
      r"each image must be an array of pixels, got a value of type csr_matrix.*\.toarray\(\)")],
)
def test_images_that_are_not_arrays_of_pixels_are_named(images, message):
    with pytest.raises(ValueError, match=message):
        load_natural_patches(4, 10, images=images, whiten=False)


@pytest.mark.parametrize("random_state", [-1, "seed", 1.5])
def test_a_bad_random_state_names_the_parameter(random_state):
    with pytest.raises(ValueError, match="random_state must be None, an int in"):
        load_natural_patches(4, 10, random_state=random_state)
