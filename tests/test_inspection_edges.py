"""skae.inspection at the edges: degenerate inputs and parameters give clear errors."""

import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

from skae import SparseAutoencoder
from skae.inspection import (
    activation_maximization,
    invert_code,
    multifaceted_visualization,
    plot_filters,
    plot_kl_penalty,
    tile_images,
)

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def digits():
    return load_digits().data[:300] / 16.0


def test_flags_and_the_unit_must_have_their_types(digits):
    from skae.inspection import plot_loss_curve

    pytest.importorskip("matplotlib", reason="matplotlib is an optional extra")
    ae = SparseAutoencoder(n_hidden=4, max_iter=5, random_state=0).fit(digits)
    with pytest.raises(ValueError, match="scale_each must be True or False, got 'no'"):
        tile_images(digits[:4], (8, 8), scale_each="no")
    with pytest.raises(ValueError, match="log_scale must be True or False, got 'x'"):
        plot_loss_curve(ae, log_scale="x")
    with pytest.raises(ValueError, match="unit must be one int, got None"):
        multifaceted_visualization(ae, digits, None, n_facets=2, n_top=30, max_iter=5)
    with pytest.raises(ValueError, match="rows is complex"):
        tile_images(digits[:4] * 1j, (8, 8))
    with pytest.raises(ValueError, match="init is complex"):
        activation_maximization(ae, units=0, init=digits[0] + 1j, max_iter=2)


@pytest.fixture(scope="module")
def autoencoder(digits):
    return SparseAutoencoder(n_hidden=6, max_iter=20, random_state=0).fit(digits)


@pytest.fixture
def agg():
    mpl = pytest.importorskip("matplotlib")
    mpl.use("Agg")
    import matplotlib.pyplot as plt

    yield plt
    plt.close("all")


# --------------------------------------------------------------------------- facets
def test_identical_codes_are_refused_instead_of_crashing_the_process():
    """The rows of zeros have one code; scikit-learn's t-SNE used to crash the process on
    it (a segmentation fault), so the call runs in a child process."""
    code = textwrap.dedent(
        """
        import numpy as np
        from skae import SparseAutoencoder
        from skae.inspection import multifaceted_visualization
        X = np.random.default_rng(0).random((100, 64))
        ae = SparseAutoencoder(n_hidden=4, max_iter=5, random_state=0)
        ae.fit(X)
        try:
            multifaceted_visualization(ae, np.zeros((60, 64)), 0, n_top=60, random_state=0)
        except ValueError as exc:
            print("ValueError:", exc)
        """
    )
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "have 1 distinct code at layer 1" in done.stdout, done.stdout
    assert "n_facets=3" in done.stdout


@pytest.mark.parametrize(
    "rows, n_facets, found",
    [
        (np.zeros((2, 64)), 1, 1),  # one code: nothing to embed, even for one facet
        (np.eye(64)[:2], 3, 2),  # two different codes cannot make three facets
    ],
)
def test_too_few_distinct_codes_are_refused_before_any_embedding(
    autoencoder, monkeypatch, rows, n_facets, found
):
    import sklearn.cluster
    import sklearn.decomposition
    import sklearn.manifold

    def must_not_run(self, *args, **kwargs):
        raise AssertionError(f"{type(self).__name__} ran on degenerate codes")

    monkeypatch.setattr(sklearn.decomposition.PCA, "fit_transform", must_not_run)
    monkeypatch.setattr(sklearn.manifold.TSNE, "fit_transform", must_not_run)
    monkeypatch.setattr(sklearn.cluster.KMeans, "fit_predict", must_not_run)
    X = np.repeat(rows, 30, axis=0)
    with pytest.raises(ValueError, match=f"have {found} distinct codes? at layer 1.*larger n_top"):
        multifaceted_visualization(autoencoder, X, 0, n_facets=n_facets, n_top=60)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_facets": 2.7}, "n_facets must be an int >= 1, got 2.7"),
        ({"n_top": True}, "n_top must be an int >= 1, got True"),
        ({"n_nearest": 0}, "n_nearest must be an int >= 1, got 0"),
        ({"perplexity": np.nan}, "perplexity must be a finite number > 0"),
        ({"code_layer": np.int64(5)}, r"code_layer must be an int from 1 to 1, got 5\."),
        ({"code_layer": True}, "code_layer must be an int from 1 to 1, got True"),
    ],
)
def test_multifaceted_parameters_are_checked(autoencoder, digits, kwargs, message):
    with pytest.raises(ValueError, match=message):
        multifaceted_visualization(autoencoder, digits, 0, **{"n_top": 60, **kwargs})


# --------------------------------------------------------------------------- ascent
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"norm": np.inf}, r"norm must be a finite number > 0, got inf\."),
        ({"norm": np.float64(-1.0)}, r"norm must be a finite number > 0, got -1\.0\."),
        ({"bounds": (0, np.inf)}, r"bounds must be \(low, high\) of two finite numbers"),
        ({"bounds": (np.float64(0), np.nan)}, r"two finite numbers.*got \(0\.0, nan\)\."),
        ({"bounds": (0, 1, 2)}, r"bounds must be \(low, high\) of two finite numbers"),
        ({"bounds": 1.0}, r"bounds must be \(low, high\) of two finite numbers"),
        ({"max_iter": -1}, "max_iter must be an int >= 1, got -1"),
        ({"max_iter": 2.5}, "max_iter must be an int >= 1, got 2.5"),
        ({"tol": np.nan}, "tol must be a finite number >= 0"),
        ({"units": np.array([0.5])}, r"units must be an int .*, got \[0\.5\]\."),
    ],
)
def test_activation_maximization_parameters_are_checked(autoencoder, kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        activation_maximization(autoencoder, random_state=0, **kwargs)
    assert "np." not in str(info.value) and "array(" not in str(info.value)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"bounds": (-np.inf, 1)}, r"bounds must be \(low, high\) of two finite numbers"),
        ({"max_iter": 0}, "max_iter must be an int >= 1, got 0"),
        ({"reg": np.inf}, "reg must be a finite number >= 0, got inf"),
        ({"tol": -1.0}, "tol must be a finite number >= 0, got -1.0"),
    ],
)
def test_invert_code_parameters_are_checked(autoencoder, digits, kwargs, message):
    with pytest.raises(ValueError, match=message):
        invert_code(autoencoder, digits[:2], **kwargs)


# --------------------------------------------------------------------------- tiles
@pytest.mark.parametrize(
    "rows, kwargs, message",
    [
        (np.ones((2, 64)), {"image_shape": (8.9, 8)}, r"image_shape must be .*got \(8\.9, 8\)"),
        (np.ones((2, 1)), {"image_shape": True}, "image_shape must be .*got True"),
        (np.ones((2, 4)), {"image_shape": (2, 2), "spacing": 1.5}, "spacing must be an int"),
        (np.ones((2, 4)), {"image_shape": 2, "spacing": -1}, "spacing must be an int >= 0"),
        (
            np.ones((6, 4)),
            {"image_shape": 2, "grid_shape": (2.7, 3)},
            r"grid_shape must be a tuple of 2 positive ints .*, got \(2\.7, 3\)",
        ),
        (np.ones((6, 4)), {"image_shape": 2, "grid_shape": 6}, "grid_shape must be a tuple"),
    ],
)
def test_tile_images_refuses_shapes_that_are_not_ints(rows, kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        tile_images(rows, **kwargs)
    assert "np." not in str(info.value)


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_sparse_rows_are_drawn_as_their_dense_values(fmt, agg):
    rows = np.random.default_rng(0).normal(size=(5, 4)) * (np.arange(4) % 2)
    sparse = sp.random(5, 4, density=0, format=fmt) + sp.csr_matrix(rows)
    sparse = sparse.asformat(fmt)
    np.testing.assert_array_equal(tile_images(sparse, (2, 2)), tile_images(rows, (2, 2)))
    ax = plot_filters(sparse, (2, 2), n_filters=3)
    np.testing.assert_array_equal(ax.images[0].get_array(), tile_images(rows[:3], (2, 2)))


@pytest.mark.parametrize("n_filters", [-1, 0, 2.0, True])
def test_plot_filters_n_filters_must_be_a_positive_int(n_filters, agg):
    with pytest.raises(ValueError, match="n_filters must be an int >= 1"):
        plot_filters(np.ones((4, 4)), (2, 2), n_filters=n_filters)


@pytest.mark.parametrize(
    "rho, kwargs, message",
    [
        (np.nan, {}, r"rho must lie strictly between 0 and 1 .*got nan\."),
        ([0.2, np.nan], {}, "rho must lie strictly between 0 and 1"),
        ([], {}, "rho must lie strictly between 0 and 1"),
        (0.2, {"n_points": -3}, "n_points must be an int >= 1, got -3"),
    ],
)
def test_plot_kl_penalty_checks_its_input_before_drawing(rho, kwargs, message, agg):
    with pytest.raises(ValueError, match=message):
        plot_kl_penalty(rho, **kwargs)


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda ae, X: activation_maximization(ae, layer=np.int64(1), units=[9]),
            r"unit 9 is out of range: layer 1 has 6 units",
        ),
        (
            lambda ae, X: invert_code(ae, X[:2, :3], layer=np.int64(1)),
            r"codes of layer 1 have 6 units\.",
        ),
        (
            lambda ae, X: invert_code(ae, X[:2], given=np.str_("x")),
            r"given must be 'auto', 'inputs' or 'codes', got 'x'\.",
        ),
        (
            lambda ae, X: invert_code(ae, X[:2], given=np.array(["a", "b"])),
            r"given must be .*, got \['a', 'b'\]\.",
        ),
        (
            lambda ae, X: invert_code(ae, X[:2], regularizer=np.str_("l1")),
            r"regularizer must be 'l2' or 'tv', got 'l1'\.",
        ),
    ],
)
def test_errors_print_plain_values(autoencoder, digits, call, message):
    with pytest.raises(ValueError, match=message) as info:
        call(autoencoder, digits)
    assert "np." not in str(info.value)


# --------------------------------------------------------------------------- extreme values
def test_tile_images_refuses_an_empty_input_and_a_fill_that_is_not_a_number():
    with pytest.raises(ValueError, match=r"rows is empty \(shape \(0,\)\)"):
        tile_images([], (3, 4))
    with pytest.raises(ValueError, match=r"rows is empty \(shape \(0, 12\)\)"):
        tile_images(np.zeros((0, 12)), (3, 4))
    for fill in (None, "x", True, [0.0], np.nan, -np.inf, np.float32("inf"), 10**400):
        with pytest.raises(ValueError, match="fill must be a finite number"):
            tile_images(np.ones((2, 12)), (3, 4), fill=fill)
    from fractions import Fraction

    for fill in (np.float32(0.5), np.array(0.5), Fraction(1, 2)):
        assert np.all(tile_images(np.ones((1, 4)), 2, fill=fill)[0] == 0.5)


def test_plot_filters_draws_one_channel_as_grey_and_refuses_other_channel_counts(agg):
    rows = np.random.default_rng(0).normal(size=(4, 16))
    ax = plot_filters(rows, (4, 4, 1), cmap="gray")
    image = ax.images[0]
    assert image.get_cmap().name == "gray" and image.get_clim() == (-1.0, 1.0)
    np.testing.assert_array_equal(image.get_array(), tile_images(rows, (4, 4)))
    for channels in (2, 5):
        with pytest.raises(ValueError, match=f"has {channels} channels"):
            plot_filters(np.ones((4, 16 * channels)), (4, 4, channels))
    rgba = plot_filters(np.abs(np.ones((4, 64))), (4, 4, 4)).images[0].get_array()
    assert rgba.shape[2] == 4


def test_plot_filters_refuses_complex_rows_and_none(agg):
    with pytest.raises(ValueError, match="estimator_or_array is complex"):
        plot_filters(np.ones((2, 4)) + 1j, 2)
    with pytest.raises(TypeError, match="plot_filters expects a fitted skae estimator"):
        plot_filters(None, 8)


def test_the_inspection_functions_name_one_layer(autoencoder, digits):
    for call in (
        lambda: activation_maximization(autoencoder, layer=None, max_iter=2),
        lambda: invert_code(autoencoder, autoencoder.transform(digits[:2]), layer=None),
        lambda: multifaceted_visualization(autoencoder, digits, 0, layer=None, max_iter=2),
    ):
        with pytest.raises(ValueError, match="layer must be a 1-based int or 'output', got None"):
            call()


@pytest.mark.parametrize("scale", [1e160, 1e-170])
def test_max_activation_inputs_at_extreme_weight_scales(autoencoder, scale):
    """Weights far from 1 in size: the norms are taken without overflow or underflow, so
    each row is still the unit's weight vector of norm 1 (not a row of zeros)."""
    import copy

    from skae.inspection import max_activation_inputs

    scaled = copy.deepcopy(autoencoder)
    scaled.components_ = autoencoder.components_ * scale
    inputs = max_activation_inputs(scaled)  # any warning fails the test
    np.testing.assert_allclose(inputs, max_activation_inputs(autoencoder), rtol=1e-12)


def test_activation_maximization_with_a_huge_norm_reaches_the_sphere(autoencoder):
    """norm=1e200: the maximising inputs of first-layer units lie on the sphere of that
    radius along the closed form (‖x‖² would overflow without scaling)."""
    from skae.inspection import max_activation_inputs

    inputs, _ = activation_maximization(
        autoencoder, units=[0, 1], norm=1e200, random_state=0, max_iter=200
    )
    norms = np.array([np.linalg.norm(row / 1e200) for row in inputs])
    np.testing.assert_allclose(norms, 1.0, rtol=1e-6)
    unit = inputs / 1e200 / norms[:, None]
    closed = max_activation_inputs(autoencoder)[[0, 1]]
    assert np.all(np.sum(unit * closed, axis=1) > 0.99)


def test_invert_code_checks_image_shape_whenever_given(autoencoder, digits):
    codes = autoencoder.transform(digits[:2])
    with pytest.raises(ValueError, match=r"image_shape \(3, 3\) has 9 pixels"):
        invert_code(autoencoder, codes, given="codes", image_shape=(3, 3))
    X, _ = invert_code(autoencoder, codes, given="codes", image_shape=(8, 8), max_iter=5)
    assert X.shape == (2, 64)


@pytest.mark.parametrize("rho", ["0.2", ["0.1", "0.2"], True, [0.1, None]])
def test_plot_kl_penalty_refuses_rho_that_is_not_a_number(rho, agg):
    with pytest.raises(ValueError, match="rho must be a number or a sequence of numbers"):
        plot_kl_penalty(rho)


def test_plot_kl_penalty_takes_numbers_of_any_kind(agg):
    from decimal import Decimal
    from fractions import Fraction

    for rho in (Fraction(1, 5), Decimal("0.2"), np.array([0.1, 0.2], dtype=object)):
        _, ax = agg.subplots()
        assert len(plot_kl_penalty(rho, ax).lines) == np.size(rho)


def test_row_norms_of_infinite_rows_are_infinite():
    from skae.inspection import _row_norms

    X = np.array([[np.inf, 1.0], [3e200, 4e200], [3.0, 4.0]])
    norms = _row_norms(X)
    assert norms[0] == np.inf
    np.testing.assert_allclose(norms[1:], [5e200, 5.0], rtol=1e-15)


def test_an_objective_that_is_not_finite_at_the_start_is_an_error(autoencoder, digits):
    """invert_code returned its start when the objective overflowed there, from which
    L-BFGS-B cannot move; now an error with the fix."""
    kwargs = {"init": np.full((3, 64), 1e200)}
    with pytest.raises(ValueError, match="invert_code: the objective or its gradient is not "
                       "finite at the start.*a smaller reg, and an init and bounds of "
                       "magnitudes near 1"):
        invert_code(autoencoder, digits[:3], **kwargs)
    with pytest.raises(ValueError, match="activation_maximization: the objective or its "
                       "gradient is not finite.*Give bounds and an init of magnitudes near 1"):
        activation_maximization(autoencoder, 1, [0], bounds=(-1.7e308, 1.7e308),
                                init=np.full((1, 64), 1.7e308))


@pytest.mark.parametrize(
    "kwargs",
    [dict(reg=1e305, init=np.full(64, 0.1)), dict(reg=1e-4, init=np.full(64, 1e100)),
     dict(reg=1e300, init="data")],
    ids=["gradient-norm-overflows", "huge-start", "huge-reg"],
)
def test_a_start_l_bfgs_b_cannot_leave_is_an_error(autoencoder, digits, kwargs):
    """A finite start from which L-BFGS-B's first line search finds no decrease (a
    gradient whose norm overflows, a start of 1e100, a huge reg) returned the start
    silently (with a code_error of 0 when the start was the data)."""
    if isinstance(kwargs["init"], str):
        kwargs = {**kwargs, "init": digits[:2]}
    with pytest.raises(ValueError, match="invert_code: L-BFGS-B could not take a step from "
                       "the start.*the result would be the start. Use codes within"):
        invert_code(autoencoder, digits[:2], given="inputs", **kwargs)


def test_multifaceted_default_radius_of_zero_starts_names_norm_and_bounds():
    """Starts of norm 0 (here symmetric tanh data) cannot give the default radius: the
    error says so and what to pass (it blamed a norm the caller never gave)."""
    X = load_digits().data[:300] / 16.0
    tanh = SparseAutoencoder(n_hidden=6, activation="tanh", max_iter=20, random_state=0).fit(X)
    A = np.random.RandomState(0).randint(-3, 4, (50, 64)).astype(float)
    with pytest.raises(ValueError, match=r"largest norm of 0, which cannot be the default "
                       r"radius of the search \(norm=None\): pass norm="):
        multifaceted_visualization(tanh, np.vstack([A, -A]), 0, n_top=100, n_facets=1,
                                   n_nearest=100)


def test_plot_loss_curve_refuses_other_estimators(digits, agg):
    """An MLPClassifier has a loss_curve_ (by epochs) that skae's axis would mislabel."""
    from sklearn.neural_network import MLPClassifier

    from skae.inspection import plot_loss_curve

    mlp = MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp.fit(digits, np.arange(len(digits)) % 3)
    with pytest.raises(TypeError, match="plots the loss curves of skae's estimators.*got "
                       "MLPClassifier"):
        plot_loss_curve(mlp)


def test_nan_inputs_are_named(autoencoder, digits):
    """NaN in the rows is refused with the argument's name (scikit-learn's bare message
    did not say which argument)."""
    rows = digits[:5].copy()
    rows[0, 0] = np.nan
    with pytest.raises(ValueError, match="Input X_or_codes contains NaN"):
        invert_code(autoencoder, rows)
    with pytest.raises(ValueError, match="Input X contains NaN"):
        multifaceted_visualization(autoencoder, np.vstack([rows, digits[:100]]), 0)
