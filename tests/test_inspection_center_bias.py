"""Center-biased regularisation of activation maximisation and multifaceted visualisation."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from skae import StackedAutoencoder, check_gradient, inspection
from skae._network import network_layers
from skae.inspection import (
    _unit_score,
    activation_maximization,
    multifaceted_visualization,
)

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

SHAPE = (8, 8)
# the central 4 x 4 pixels of an 8 x 8 image
CENTRE = np.zeros(SHAPE, dtype=bool)
CENTRE[2:6, 2:6] = True
CENTRE = CENTRE.ravel()


def centre_fraction(inputs):
    """Share of each row's energy (sum of squares) in the central 4 x 4 pixels."""
    energy = inputs**2
    return energy[:, CENTRE].sum(axis=1) / energy.sum(axis=1)


def roughness(inputs):
    """Sum of squared differences between neighbouring pixels over the energy, per row."""
    images = inputs.reshape((-1,) + SHAPE)
    diffs = np.sum(np.diff(images, axis=1) ** 2, axis=(1, 2)) + np.sum(
        np.diff(images, axis=2) ** 2, axis=(1, 2)
    )
    return diffs / np.sum(inputs**2, axis=1)


@pytest.fixture(scope="module")
def digits():
    X, _ = load_digits(return_X_y=True)
    return X[:600] / 16.0


@pytest.fixture(scope="module")
def stacked(digits):
    return StackedAutoencoder(
        (16, 8), rho=0.1, beta=0.5, alpha=1e-4, max_iter=200, random_state=0
    ).fit(digits)


@pytest.mark.parametrize("layer", [1, 2])
def test_center_bias_puts_the_energy_in_the_centre_of_the_ball(stacked, layer):
    plain, _ = activation_maximization(stacked, layer=layer, norm=3.0, random_state=0)
    biased, act = activation_maximization(
        stacked, layer=layer, norm=3.0, center_bias=True, image_shape=SHAPE, random_state=0
    )
    # the central quarter of the pixels holds most of the energy, far more than without
    assert centre_fraction(biased).min() > 0.55
    assert centre_fraction(biased).mean() > centre_fraction(plain).mean() + 0.25
    assert np.all(np.linalg.norm(biased, axis=1) <= 3.0 + 1e-9)
    assert np.all(np.isfinite(biased)) and np.all((act > 0) & (act < 1))


def test_center_bias_in_a_box_stays_in_the_box_and_darkens_the_border(stacked):
    plain, _ = activation_maximization(stacked, layer=2, bounds=(0, 1), random_state=0)
    biased, _ = activation_maximization(
        stacked, layer=2, bounds=(0, 1), center_bias=True, image_shape=SHAPE, random_state=0
    )
    assert biased.min() >= 0.0 and biased.max() <= 1.0
    # without the bias the ascent ends on the box's corners, bright pixels anywhere
    assert centre_fraction(biased).mean() > centre_fraction(plain).mean() + 0.2
    corners = np.zeros(SHAPE, dtype=bool)
    corners[[0, 0, -1, -1], [0, -1, 0, -1]] = True
    assert biased[:, corners.ravel()].max() < 0.5


def test_center_bias_first_layer_reaches_the_window_weighted_closed_form(stacked):
    # A first-layer unit's score W_i . x + b_i is linear: with x = c * u and ||u|| <= r the
    # maximiser is x = r c^2 W_i / ||c W_i||, c being the last stage's window.
    inputs, _ = activation_maximization(
        stacked, layer=1, norm=2.0, center_bias=True, image_shape=SHAPE, max_iter=2000,
        random_state=0,
    )
    W = network_layers(stacked, 1)[0].weights
    c = inspection._center_window(SHAPE, 1 / 3)
    expected = 2.0 * c**2 * W / np.linalg.norm(c * W, axis=1, keepdims=True)
    cosine = np.sum(inputs * expected, axis=1) / (
        np.linalg.norm(inputs, axis=1) * np.linalg.norm(expected, axis=1)
    )
    assert cosine.min() > 0.999
    np.testing.assert_allclose(
        np.linalg.norm(inputs, axis=1), np.linalg.norm(expected, axis=1), rtol=1e-3
    )


def test_center_bias_first_stage_grows_a_smooth_object(stacked, monkeypatch):
    # only the first (most blurred) stage: its iterates are smooth images
    monkeypatch.setattr(inspection, "_CENTER_STAGES", inspection._CENTER_STAGES[:1])
    plain, _ = activation_maximization(stacked, layer=2, max_iter=50, random_state=0)
    biased, _ = activation_maximization(
        stacked, layer=2, max_iter=50, center_bias=True, image_shape=SHAPE, random_state=0
    )
    assert roughness(biased).max() < roughness(plain).min()
    assert roughness(biased).mean() < 0.6 * roughness(plain).mean()


def test_center_bias_gradient_through_the_window_matches_finite_differences(stacked):
    # the ascent optimises u with x = c * u + offset: the same network, and the score's
    # gradient with respect to u
    layers = network_layers(stacked, 2)
    c = inspection._center_window(SHAPE, 2 / 5)
    offset = 0.3 * (1.0 - c)
    windowed = inspection._windowed_layers(layers, c, offset)
    units = np.array([0, 3, 5])
    U = np.random.default_rng(0).uniform(0, 1, (3, 64))
    np.testing.assert_allclose(
        _unit_score(windowed, U, units)[0], _unit_score(layers, c * U + offset, units)[0]
    )

    def fun(theta):
        score, grad, _ = _unit_score(windowed, theta.reshape(3, 64), units)
        return float(np.sum(score)), grad.ravel()

    assert check_gradient(fun, U.ravel()) < 1e-7


def test_multifaceted_center_bias_centres_every_facet(stacked, digits):
    kwargs = dict(layer=2, n_facets=3, n_top=120, max_iter=20, random_state=0)
    plain = multifaceted_visualization(stacked, digits, 1, **kwargs)
    biased = multifaceted_visualization(
        stacked, digits, 1, center_bias=True, image_shape=SHAPE, **kwargs
    )
    # the clustering does not depend on the option: same starts
    np.testing.assert_array_equal(plain.starts, biased.starts)
    radius = np.max(np.linalg.norm(plain.starts, axis=1))
    assert np.all(np.linalg.norm(biased.facets, axis=1) <= radius + 1e-9)
    assert centre_fraction(biased.facets).min() > centre_fraction(plain.facets).max() + 0.2


def test_center_bias_does_not_modify_the_callers_start(stacked):
    start = np.random.default_rng(0).uniform(0, 1, (2, 64))
    kept = start.copy()
    activation_maximization(
        stacked, layer=2, units=[0, 1], init=start, bounds=(0, 1), max_iter=5,
        center_bias=True, image_shape=SHAPE,
    )
    np.testing.assert_array_equal(start, kept)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"center_bias": True}, "pass image_shape"),
        ({"center_bias": True, "image_shape": (7, 7)}, "has 49 pixels"),
        ({"image_shape": (7, 7)}, "has 49 pixels"),  # checked even when center_bias is off
        ({"center_bias": "yes", "image_shape": SHAPE}, "center_bias must be True or False"),
    ],
)
def test_center_bias_bad_arguments_are_named(stacked, digits, kwargs, message):
    with pytest.raises(ValueError, match=message):
        activation_maximization(stacked, layer=2, **kwargs)
    with pytest.raises(ValueError, match=message):
        multifaceted_visualization(stacked, digits, 0, layer=2, n_top=50, **kwargs)
