"""skae.inspection: tiles, plots, activation maximisation, code inversion, facets."""

import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning, NotFittedError

from skae import (
    SparseAutoencoder,
    StackedAutoencoder,
    StackedAutoencoderClassifier,
    check_gradient,
)
from skae._network import Layer, forward, network_layers
from skae.inspection import (
    _inversion_objective,
    _unit_score,
    activation_maximization,
    invert_code,
    max_activation_inputs,
    multifaceted_visualization,
    plot_filters,
    plot_kl_penalty,
    plot_loss_curve,
    tile_images,
)

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:600] / 16.0, y[:600]


@pytest.fixture(scope="module")
def autoencoder(digits):
    X, _ = digits
    return SparseAutoencoder(
        n_hidden=16, rho=0.1, beta=3.0, alpha=1e-3, max_iter=150, random_state=0
    ).fit(X)


@pytest.fixture(scope="module")
def stacked(digits):
    X, _ = digits
    # (with beta=3 and alpha=1e-3 the second layer's codes barely vary on these data)
    return StackedAutoencoder(
        (16, 8), rho=0.1, beta=0.5, alpha=1e-4, max_iter=200, random_state=0
    ).fit(X)


@pytest.fixture(scope="module")
def classifier(digits):
    X, y = digits
    return StackedAutoencoderClassifier(
        (16,), max_iter=60, fine_tune="all", fine_tune_max_iter=60, random_state=0
    ).fit(X, y)


def cosine(a, b):
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def activations_of(estimator, layer, X, units):
    """The activation of ``units[k]`` at ``X[k]``, computed straight from forward()."""
    A = forward(network_layers(estimator, layer), X)[-1]
    return A[np.arange(len(X)), units]


# --------------------------------------------------------------------------- tiles
def test_tile_images_shape_grid_and_spacing():
    rows = np.random.default_rng(0).normal(size=(10, 12))
    # 10 tiles of 3 x 4 pixels: ceil(sqrt(10)) = 4 columns, 3 rows, 1-pixel spacing
    assert tile_images(rows, (3, 4)).shape == (3 * (3 + 1) + 1, 4 * (4 + 1) + 1)
    assert tile_images(rows, (3, 4), grid_shape=(2, 5), spacing=0).shape == (6, 20)
    assert tile_images(rows, (3, 4), grid_shape=(2, 5), spacing=2).shape == (2 * 5 + 2, 5 * 6 + 2)
    rgb = tile_images(np.ones((4, 3 * 2 * 3)), (3, 2, 3))
    assert rgb.shape == (2 * 4 + 1, 2 * 3 + 1, 3)


def test_tile_images_places_each_row_and_scales_by_its_largest_absolute_value():
    rows = np.array([[1.0, -4.0, 2.0, 0.5], [0.0, 0.0, 0.0, 0.0], [3.0, 6.0, -1.5, 0.0]])
    tiles = tile_images(rows, (2, 2), grid_shape=(1, 3), spacing=1, fill=-7.0)
    np.testing.assert_array_equal(tiles[1:3, 1:3], [[0.25, -1.0], [0.5, 0.125]])
    np.testing.assert_array_equal(tiles[1:3, 4:6], 0.0)  # an all-zero tile stays zero
    np.testing.assert_array_equal(tiles[1:3, 7:9], [[0.5, 1.0], [-0.25, 0.0]])
    assert np.all(tiles[0] == -7.0) and np.all(tiles[:, 3] == -7.0)  # spacing
    raw = tile_images(rows, (2, 2), grid_shape=(1, 3), scale_each=False)
    np.testing.assert_array_equal(raw[1:3, 7:9], [[3.0, 6.0], [-1.5, 0.0]])


def test_tile_images_bad_input():
    rows = np.zeros((5, 64))
    with pytest.raises(ValueError, match=r"image_shape \(10, 10\) has 100 pixels.*64 features"):
        tile_images(rows, (10, 10))
    with pytest.raises(ValueError, match="room for 4 tiles but there are 5"):
        tile_images(rows, (8, 8), grid_shape=(2, 2))
    with pytest.raises(ValueError, match="NaN"):
        tile_images(np.full((2, 4), np.nan), (2, 2))


# --------------------------------------------------------------------------- plots
def test_plots_return_axes_under_agg(autoencoder, stacked, classifier, digits):
    mpl = pytest.importorskip("matplotlib")
    mpl.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.axes import Axes

    try:
        ax = plot_filters(autoencoder, (8, 8), title="filters")
        assert isinstance(ax, Axes) and ax.get_title() == "filters"
        shown = ax.images[0].get_array()
        np.testing.assert_array_equal(shown, tile_images(autoencoder.components_, (8, 8)))
        for estimator in (stacked, classifier):  # first-layer weights of stacks
            first = network_layers(estimator, 1)[0].weights
            shown = plot_filters(estimator, 8).images[0].get_array()
            np.testing.assert_array_equal(shown, tile_images(first, (8, 8)))
        _, given = plt.subplots()
        assert plot_filters(np.eye(4), (2, 2), ax=given, n_filters=2) is given

        assert len(plot_loss_curve(autoencoder).lines) == 1
        assert len(plot_loss_curve(stacked).lines) == 2  # one per layer
        assert len(plot_loss_curve(classifier).lines) == 3  # layer 1, softmax, fine-tuning
        assert plot_loss_curve(autoencoder).get_xlabel() == "L-BFGS iteration"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # 3 epochs on purpose
            by_epoch = SparseAutoencoder(4, solver="adam", max_iter=3, random_state=0)
            by_epoch.fit(digits[0])
        ax = plot_loss_curve(by_epoch)
        assert ax.get_xlabel() == "epoch (adam)" and len(ax.lines[0].get_xdata()) == 3
        # the unit is the fit's, not the solver set since
        by_epoch.set_params(solver="lbfgs")
        assert plot_loss_curve(by_epoch).get_xlabel() == "epoch (adam)"
        relabelled = clone(autoencoder).set_params(max_iter=5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            relabelled.fit(digits[0])
        relabelled.set_params(solver="sgd")
        assert plot_loss_curve(relabelled).get_xlabel() == "L-BFGS iteration"
        assert plot_loss_curve(classifier).get_xlabel() == "L-BFGS iteration"
        # curves of both kinds in one figure: each legend entry says its unit
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            streamed = StackedAutoencoderClassifier((4,), solver="sgd", random_state=0)
            streamed.partial_fit(digits[0][:100], digits[1][:100], classes=np.arange(10))
        streamed.autoencoders_ = [relabelled]  # a layer fitted by L-BFGS
        ax = plot_loss_curve(streamed)
        assert ax.get_xlabel() == "L-BFGS iteration or epoch"
        assert [t.get_text() for t in ax.get_legend().get_texts()] == [
            "layer 1, by L-BFGS iteration", "fine-tuning, by epoch (sgd)"]

        ax = plot_kl_penalty([0.2, 0.05])
        for line, rho in zip(ax.lines, [0.2, 0.05]):
            x, y = line.get_xdata(), line.get_ydata()
            assert abs(x[np.argmin(y)] - rho) < 0.01 and y.min() < 1e-4
        # a target near 1: the axis reaches the far (left) end, with no degenerate limits
        from skae._activations import kl_divergence

        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ax = plot_kl_penalty(0.95)
        assert ax.get_ylim() == pytest.approx((0.0, float(kl_divergence(0.95, 0.05))))
    finally:
        plt.close("all")


def test_plot_bad_input(autoencoder):
    pytest.importorskip("matplotlib").use("Agg")
    with pytest.raises(ValueError, match=r"image_shape \(7, 7\) has 49 pixels.*64 features"):
        plot_filters(autoencoder, (7, 7))
    with pytest.raises(NotFittedError):
        plot_filters(SparseAutoencoder(), (8, 8))
    with pytest.raises(NotFittedError):
        plot_loss_curve(SparseAutoencoder())
    with pytest.raises(ValueError, match="rho must lie strictly between 0 and 1"):
        plot_kl_penalty(1.5)


def test_plots_say_how_to_install_matplotlib(monkeypatch, autoencoder):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    for plot, args in [
        (plot_filters, (autoencoder, (8, 8))),
        (plot_loss_curve, (autoencoder,)),
        (plot_kl_penalty, (0.1,)),
    ]:
        with pytest.raises(ImportError, match=r'pip install "skae\[plot\]"'):
            plot(*args)
    # everything that does not draw still works
    assert tile_images(autoencoder.components_, (8, 8)).shape == (4 * 9 + 1, 4 * 9 + 1)


def test_modules_import_without_matplotlib():
    """With matplotlib uninstallable, skae and its submodules import; plots say what to do."""
    code = textwrap.dedent(
        """
        import sys
        sys.modules["matplotlib"] = None  # any import of matplotlib now fails
        import numpy as np
        import skae, skae.datasets, skae.inspection, skae.preprocessing
        skae.inspection.tile_images(np.ones((2, 4)), (2, 2))
        try:
            skae.inspection.plot_kl_penalty(0.1)
        except ImportError as exc:
            assert 'pip install "skae[plot]"' in str(exc), exc
        else:
            raise AssertionError("plot_kl_penalty did not raise ImportError")
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- gradients
def random_network(activations, sizes, seed=0):
    rng = np.random.default_rng(seed)
    return [
        Layer(rng.normal(size=(n_out, n_in)), rng.normal(size=n_out) * 0.1, act)
        for act, n_in, n_out in zip(activations, sizes[:-1], sizes[1:])
    ]


NETWORKS = [
    ("sigmoid",),
    ("tanh",),
    ("identity",),
    ("sigmoid", "sigmoid"),
    ("tanh", "softmax"),
    ("sigmoid", "tanh", "sigmoid"),
    ("sigmoid", "sigmoid", "softmax"),
]


@pytest.mark.parametrize("activations", NETWORKS, ids="-".join)
def test_unit_score_gradient(activations):
    layers = random_network(activations, [6, 5, 4, 3][: len(activations) + 1])
    units = np.array([0, 2, 1])

    def fun(theta):
        score, grad, _ = _unit_score(layers, theta.reshape(3, 6), units)
        return float(np.sum(score)), grad.ravel()

    theta = np.random.default_rng(1).normal(size=18) * 0.5
    assert check_gradient(fun, theta) < 1e-8
    # the score increases with the activation returned beside it
    _, _, act = _unit_score(layers, theta.reshape(3, 6), units)
    top = forward(layers, theta.reshape(3, 6))[-1]
    np.testing.assert_allclose(act, top[np.arange(3), units], rtol=1e-12)


@pytest.mark.parametrize("activations", NETWORKS, ids="-".join)
@pytest.mark.parametrize("regularizer,reg", [("l2", 0.0), ("l2", 0.3), ("tv", 0.3)])
def test_inversion_objective_gradient(activations, regularizer, reg):
    sizes = [6, 5, 4, 3][: len(activations) + 1]
    layers = random_network(activations, sizes)
    codes = np.random.default_rng(2).random((2, sizes[-1]))
    fun = _inversion_objective(layers, codes, reg, regularizer, image_shape=(2, 3))
    theta = np.random.default_rng(3).normal(size=12) * 0.5
    assert check_gradient(fun, theta) < 1e-8


# --------------------------------------------------------------------------- maximisation
def test_max_activation_inputs_is_the_normalised_weight(autoencoder):
    inputs = max_activation_inputs(autoencoder)
    W = autoencoder.components_
    np.testing.assert_allclose(inputs * np.linalg.norm(W, axis=1, keepdims=True), W)
    np.testing.assert_allclose(np.linalg.norm(inputs, axis=1), 1.0)


@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
def test_ascent_agrees_with_the_closed_form_on_the_first_layer(digits, autoencoder, activation):
    ae = autoencoder
    if activation == "tanh":
        ae = SparseAutoencoder(n_hidden=6, activation="tanh", max_iter=30, random_state=0).fit(
            digits[0]
        )
    inputs, act = activation_maximization(ae, layer=1, random_state=0)
    closed_form = max_activation_inputs(ae)
    assert np.all(cosine(inputs, closed_form) > 0.99)
    np.testing.assert_allclose(np.linalg.norm(inputs, axis=1), 1.0, rtol=1e-6)
    units = np.arange(ae.n_hidden)
    np.testing.assert_allclose(act, activations_of(ae, 1, inputs, units))
    # no input of norm 1 does better than the closed form (up to the ascent's tolerance)
    assert np.all(act <= activations_of(ae, 1, closed_form, units) + 1e-6)


@pytest.mark.parametrize(
    "name,layer,units",
    [
        ("autoencoder", 1, [0, 5, 11]),
        ("stacked", 2, [0, 3, 7]),
        ("classifier", "output", list(range(10))),  # every class
    ],
)
def test_maximisation_beats_every_training_input_of_the_same_norm(
    request, digits, name, layer, units
):
    estimator = request.getfixturevalue(name)
    X, _ = digits
    units = np.array(units)
    radius = float(np.median(np.linalg.norm(X, axis=1)))
    inputs, act = activation_maximization(
        estimator, layer=layer, units=units, norm=radius, random_state=0
    )
    assert np.all(np.linalg.norm(inputs, axis=1) <= radius * (1 + 1e-9))
    scaled = X * (radius / np.linalg.norm(X, axis=1, keepdims=True))
    best_training = forward(network_layers(estimator, layer), scaled)[-1][:, units].max(axis=0)
    assert np.all(act > best_training), (act, best_training)
    # the same in the box [0, 1], against the training inputs themselves (L-BFGS-B), a
    # local ascent: from a random start past all but the best 1 % of them (the best may
    # lie on a higher hill: for a class of the classifier, 0.99838 against 0.99852 after
    # a change in the last bits of the fit), and past the best one when started from it
    training = forward(network_layers(estimator, layer), X)[-1][:, units]
    boxed, act_box = activation_maximization(
        estimator, layer=layer, units=units, bounds=(0, 1), random_state=0
    )
    assert boxed.min() >= 0 and boxed.max() <= 1
    top_percent = np.quantile(training, 0.99, axis=0)
    assert np.all(act_box > top_percent), (act_box, top_percent)
    best = training.argmax(axis=0)
    from_best, act_from_best = activation_maximization(
        estimator, layer=layer, units=units, bounds=(0, 1), init=X[best]
    )
    assert from_best.min() >= 0 and from_best.max() <= 1
    best_training = training[best, np.arange(len(units))]
    assert np.all(act_from_best > best_training), (act_from_best, best_training)


def test_maximisation_from_a_given_start(stacked, digits):
    X, _ = digits
    start = X[:2]
    units = np.array([1, 4])
    before = activations_of(stacked, 2, start, units)
    inputs, act = activation_maximization(
        stacked, layer=2, units=units, bounds=(0, 1), init=start, max_iter=5
    )
    assert np.all(act > before)
    assert np.all(act == activations_of(stacked, 2, inputs, units))


# --------------------------------------------------------------------------- inversion
@pytest.mark.parametrize("layer", [1, 2])
def test_inversion_recovers_a_code_closer_than_the_mean_input(stacked, digits, layer):
    X, _ = digits
    targets = X[100:105]
    inputs, code_error = invert_code(stacked, targets, layer=layer, reg=1e-5, random_state=0)
    layers = network_layers(stacked, layer)
    codes = forward(layers, targets)[-1]
    achieved = forward(layers, inputs)[-1]
    np.testing.assert_allclose(code_error, np.linalg.norm(achieved - codes, axis=1))
    # tolerance: 5% of the target code's norm
    assert np.all(code_error < 0.05 * np.linalg.norm(codes, axis=1)), code_error
    mean_code = forward(layers, X.mean(axis=0, keepdims=True))[-1]
    assert np.all(code_error < np.linalg.norm(mean_code - codes, axis=1) / 5)
    # the same result from the codes themselves
    _, from_codes = invert_code(
        stacked, codes, layer=layer, given="codes", reg=1e-5, random_state=0
    )
    np.testing.assert_allclose(from_codes, code_error, rtol=1e-6, atol=1e-9)


def test_inversion_regularisers_and_box(autoencoder, digits):
    X, _ = digits
    targets = X[:4]
    tv = {}
    for regularizer in ("l2", "tv"):
        inputs, err = invert_code(
            autoencoder,
            targets,
            reg=1e-2,
            regularizer=regularizer,
            image_shape=(8, 8),
            random_state=0,
        )
        images = inputs.reshape(-1, 8, 8)
        tv[regularizer] = np.sum(np.diff(images, axis=1) ** 2) + np.sum(
            np.diff(images, axis=2) ** 2
        )
    assert tv["tv"] < tv["l2"]
    boxed, _ = invert_code(autoencoder, targets, bounds=(0, 1), random_state=0)
    assert boxed.min() >= 0 and boxed.max() <= 1


# --------------------------------------------------------------------------- facets
def test_multifaceted_visualization(stacked, digits):
    X, _ = digits
    unit = 3
    result = multifaceted_visualization(
        stacked,
        X,
        unit,
        layer=2,
        n_facets=3,
        n_top=120,
        bounds=(0, 1),
        max_iter=10,
        random_state=0,
    )
    assert result.facets.shape == result.starts.shape == (3, 64)
    assert result.embedding.shape == (120, 2)
    assert set(result.labels) == {0, 1, 2}
    # the most activating inputs, best first
    all_act = activations_of(stacked, 2, X, np.full(len(X), unit))
    np.testing.assert_allclose(result.top_activations, np.sort(all_act)[::-1][:120])
    np.testing.assert_array_equal(result.top_activations, all_act[result.top_indices])
    # each start is the mean of the 15 inputs nearest its cluster's centre in the embedding
    assert result.nearest.shape == (3, 15)
    for k, start in enumerate(result.starts):
        np.testing.assert_allclose(start, X[result.top_indices[result.nearest[k]]].mean(axis=0))
        centre = result.embedding[result.labels == k].mean(axis=0)  # the k-means centre
        distance = np.linalg.norm(result.embedding - centre, axis=1)
        assert (
            distance[result.nearest[k]].max()
            <= np.delete(distance, result.nearest[k]).min() + 1e-6
        )
    # the ascent raised the unit from every start, and the facets differ
    start_act = activations_of(stacked, 2, result.starts, np.full(3, unit))
    assert np.all(result.facet_activations >= start_act)
    assert (
        np.min(
            np.linalg.norm(result.facets[:, None] - result.facets[None], axis=2) + np.eye(3) * 1e9
        )
        > 0.1
    )


# --------------------------------------------------------------------------- bad input
def test_bad_input(autoencoder, stacked, classifier, digits):
    X, _ = digits
    with pytest.raises(ValueError, match="layer=3 is out of range.*layers 1 to 2"):
        activation_maximization(stacked, layer=3)
    with pytest.raises(ValueError, match="layer=2 is out of range"):
        invert_code(autoencoder, X[:2], layer=2)
    with pytest.raises(ValueError, match="'output'"):
        activation_maximization(stacked, layer="output")
    with pytest.raises(ValueError, match=r"unit 8 is out of range: layer 2 has 8 units"):
        activation_maximization(stacked, layer=2, units=[0, 8])
    with pytest.raises(ValueError, match=r"unit 10 is out of range.*10 units"):
        multifaceted_visualization(classifier, X, 10, layer="output")
    with pytest.raises(ValueError, match="unit -1 is out of range"):
        activation_maximization(autoencoder, units=-1)
    for function, args in [
        (activation_maximization, ()),
        (invert_code, (X[:2],)),
        (multifaceted_visualization, (X, 0)),
        (max_activation_inputs, ()),
    ]:
        with pytest.raises(NotFittedError):
            function(SparseAutoencoder(), *args)
        with pytest.raises(NotFittedError):
            function(StackedAutoencoder((4,)), *args)
    with pytest.raises(ValueError, match="X_or_codes has 5 columns.*64 features.*16 units"):
        invert_code(autoencoder, np.ones((2, 5)))
    with pytest.raises(ValueError, match="given='inputs' or given='codes'"):
        invert_code(SparseAutoencoder(n_hidden=64, max_iter=2).fit(X), X[:2])
    with pytest.raises(ValueError, match="needs image_shape"):
        invert_code(autoencoder, X[:2], regularizer="tv")
    with pytest.raises(ValueError, match="init must have shape"):
        activation_maximization(autoencoder, units=[0, 1], init=np.ones((3, 64)))
    with pytest.raises(ValueError, match="bounds must be"):
        activation_maximization(autoencoder, bounds=(1, 0))
    with pytest.raises(ValueError, match="X has 5 features"):
        multifaceted_visualization(autoencoder, np.ones((50, 5)), 0)
