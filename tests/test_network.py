"""Forward and backward passes through a network of encoders (skae._network)."""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skae import (
    SparseAutoencoder,
    StackedAutoencoder,
    StackedAutoencoderClassifier,
    check_gradient,
)
from skae._network import (
    FineTuneObjective,
    Layer,
    NetworkLayout,
    _top_delta,
    backpropagate,
    estimator_activation,
    forward,
    input_gradient,
    network_layers,
)

SIZES = (6, 5, 4, 3)  # input, then up to three layers


def parameter_gradient(layers, activations, grad_output):
    """Gradient of a scalar objective with respect to every layer's weights and bias,
    given ``dJ/dA_L`` (``grad_output``): one ``(grad_weights, grad_bias)`` pair per layer,
    bottom first. The backward pass of fine-tuning, for any loss on the top layer."""
    acts, delta = _top_delta(layers, activations, grad_output)
    return backpropagate(layers, acts, delta, n_params=len(layers), want_input=False)[0]


def random_layers(activations, rng, sizes=SIZES):
    return [
        Layer(rng.uniform(-0.8, 0.8, (n_out, n_in)), rng.uniform(-0.5, 0.5, n_out), act)
        for n_in, n_out, act in zip(sizes[:-1], sizes[1:], activations)
    ]


def stack_cases():
    """1, 2 and 3 layers; hidden units sigmoid or tanh; top the same unit or a softmax."""
    cases = []
    for depth in (1, 2, 3):
        for hidden in ("sigmoid", "tanh"):
            for top in (hidden, "softmax"):
                cases.append([hidden] * (depth - 1) + [top])
    return cases


@pytest.mark.parametrize("activations", stack_cases(), ids=lambda a: "-".join(a))
def test_input_gradient_matches_finite_differences(activations):
    rng = np.random.RandomState(0)
    layers = random_layers(activations, rng)
    X = rng.uniform(0, 1, (4, SIZES[0]))
    weights = rng.standard_normal((4, layers[-1].n_out))  # objective sum(weights * A_L)

    def objective(x):
        activations_ = forward(layers, x.reshape(X.shape))
        value = float(np.sum(weights * activations_[-1]))
        return value, input_gradient(layers, activations_, weights).ravel()

    assert check_gradient(objective, X.ravel()) < 1e-8


@pytest.mark.parametrize("activations", stack_cases(), ids=lambda a: "-".join(a))
def test_parameter_gradient_matches_finite_differences(activations):
    rng = np.random.RandomState(1)
    layers = random_layers(activations, rng)
    X = rng.uniform(0, 1, (4, SIZES[0]))
    weights = rng.standard_normal((4, layers[-1].n_out))
    layout = NetworkLayout(tuple(layer.weights.shape for layer in layers))

    def objective(theta):
        current = [
            Layer(W, b, layer.activation) for (W, b), layer in zip(layout.unpack(theta), layers)
        ]
        activations_ = forward(current, X)
        value = float(np.sum(weights * activations_[-1]))
        return value, layout.pack(parameter_gradient(current, activations_, weights))

    assert check_gradient(objective, layout.pack(layers)) < 1e-8


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("fine_tune", ["all", "top"])
@pytest.mark.parametrize("hidden", ["sigmoid", "tanh"])
def test_fine_tuning_objective_gradient(depth, fine_tune, hidden):
    rng = np.random.RandomState(2)
    sizes = (SIZES[0],) + tuple(5 - k for k in range(depth)) + (3,)
    layers = random_layers([hidden] * depth + ["softmax"], rng, sizes)
    X = rng.uniform(0, 1, (7, sizes[0]))
    y = np.array([0, 1, 2, 0, 1, 2, 2])
    n_trainable = depth + 1 if fine_tune == "all" else 1
    alphas = [0.0] * (n_trainable - 1) + [0.1]
    objective = FineTuneObjective(layers, X, y, n_trainable=n_trainable, alphas=alphas)
    assert objective.theta0.size == sum(o * i + o for o, i in objective.layout.shapes)
    assert check_gradient(objective, objective.theta0) < 1e-8
    # every trainable layer is decayed when asked to
    decayed = FineTuneObjective(
        layers, X, y, n_trainable=n_trainable, alphas=[0.3] * n_trainable
    )
    assert check_gradient(decayed, decayed.theta0) < 1e-8


def test_fine_tuning_objective_value_is_the_mean_cross_entropy():
    rng = np.random.RandomState(3)
    layers = random_layers(["sigmoid", "softmax"], rng, (6, 5, 3))
    X = rng.uniform(0, 1, (9, 6))
    y = rng.randint(0, 3, 9)
    objective = FineTuneObjective(layers, X, y, n_trainable=2, alphas=[0.0, 0.2])
    J, _ = objective(objective.theta0)
    P = forward(layers, X)[-1]
    expected = -np.mean(np.log(P[np.arange(9), y])) + 0.1 * np.sum(layers[1].weights ** 2)
    assert J == pytest.approx(expected, rel=1e-12)


def test_fine_tuning_objective_sparse_float32_and_data_untouched():
    rng = np.random.RandomState(4)
    layers = random_layers(["tanh", "softmax"], rng, (6, 5, 3))
    X = rng.uniform(0, 1, (9, 6))
    X[X < 0.5] = 0.0
    X_copy = X.copy()
    y = rng.randint(0, 3, 9)
    dense = FineTuneObjective(layers, X, y, n_trainable=2, alphas=[0.0, 0.1])
    J, grad = dense(dense.theta0)
    sparse = FineTuneObjective(layers, sp.csr_matrix(X), y, n_trainable=2, alphas=[0.0, 0.1])
    J_sparse, grad_sparse = sparse(dense.theta0)
    np.testing.assert_allclose(J_sparse, J, rtol=1e-12)
    np.testing.assert_allclose(grad_sparse, grad, rtol=1e-10, atol=1e-14)
    assert check_gradient(sparse, sparse.theta0) < 1e-8
    single = FineTuneObjective(
        layers, X.astype(np.float32), y, n_trainable=2, alphas=[0.0, 0.1]
    )
    J32, grad32 = single(dense.theta0)
    assert single.workspaces[0].A[0].dtype == np.float32 and grad32.dtype == np.float64
    np.testing.assert_allclose(J32, J, rtol=1e-5)
    np.testing.assert_allclose(grad32, grad, rtol=1e-3, atol=1e-6)
    # repeated evaluations reuse buffers and give the same result
    np.testing.assert_array_equal(dense(dense.theta0)[1], grad)
    np.testing.assert_array_equal(X, X_copy)


def test_fine_tuning_blocks_hold_enough_work():
    """A block holds at least 2**29 flops of products (6 per weight and row) in a multiple
    of 256 rows, unless a (rows, n_out) buffer would pass 2**20 elements."""
    from skae._network import fine_tune_block_rows

    ufldl = ((200, 784), (200, 200), (10, 200))
    assert fine_tune_block_rows(ufldl) == 512  # 6 * 198 800 * 512 >= 2**29 > ... * 256
    assert 6 * 198_800 * 256 < 2**29 <= 6 * 198_800 * 512
    assert fine_tune_block_rows(((10, 200),)) == 44_800  # a softmax: one block of most data
    assert fine_tune_block_rows(((4096, 4096),)) == 256  # big layers: the smallest block
    assert fine_tune_block_rows(((4000, 10), (10, 4000))) == 256  # buffer cap 2**20 / 4000
    rng = np.random.RandomState(0)
    layers = random_layers(["sigmoid", "sigmoid", "softmax"], rng, (784, 200, 200, 10))
    objective = FineTuneObjective(layers, rng.uniform(0, 1, (1200, 784)),
                                  rng.randint(0, 10, 1200), n_trainable=3, alphas=[0, 0, 0])
    assert objective.blocks == [(0, 512), (512, 1024), (1024, 1200)]


@pytest.mark.parametrize("fine_tune", ["all", "top"])
def test_fine_tuning_objective_does_not_depend_on_the_thread_count(fine_tune, monkeypatch):
    import skae._network

    monkeypatch.setattr(skae._network, "_BLOCK_FLOPS", 1 << 16)  # small blocks, many of them
    rng = np.random.RandomState(7)
    layers = random_layers(["sigmoid", "tanh", "softmax"], rng, (40, 12, 8, 4))
    X = rng.uniform(0, 1, (5000, 40))  # several row blocks
    y = rng.randint(0, 4, 5000)
    n_trainable = 3 if fine_tune == "all" else 1
    alphas = [0.0] * (n_trainable - 1) + [0.01]
    serial = FineTuneObjective(layers, X, y, n_trainable=n_trainable, alphas=alphas,
                               n_workers=1)
    assert len(serial.blocks) > 2
    theta = serial.theta0 + 0.01 * rng.standard_normal(serial.theta0.size)
    J1, g1 = serial(theta)
    for n_workers in (2, 3):
        threaded = FineTuneObjective(
            layers, X, y, n_trainable=n_trainable, alphas=alphas, n_workers=n_workers
        )
        assert threaded.n_workers == n_workers
        J, g = threaded(theta)
        assert J == J1
        np.testing.assert_array_equal(g, g1)
    # and the blocks add up to the one-shot formula
    P = forward([*serial.frozen, *serial._layers(theta)], X)[-1]
    expected = -np.mean(np.log(P[np.arange(5000), y]))
    expected += 0.005 * np.sum(serial.layout.unpack(theta)[-1][0] ** 2)
    assert J1 == pytest.approx(expected, rel=1e-12)


def test_gradients_leave_activations_unchanged():
    rng = np.random.RandomState(5)
    layers = random_layers(["sigmoid", "tanh", "softmax"], rng)
    X = rng.uniform(0, 1, (4, SIZES[0]))
    activations = forward(layers, X)
    saved = [a.copy() for a in activations]
    g = rng.standard_normal(activations[-1].shape)
    g_saved = g.copy()
    input_gradient(layers, activations, g)
    parameter_gradient(layers, activations, g)
    for a, b in zip(activations, saved):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(g, g_saved)


def test_forward_shapes_and_softmax_rows():
    rng = np.random.RandomState(6)
    layers = random_layers(["sigmoid", "tanh", "softmax"], rng)
    X = rng.uniform(0, 1, (4, SIZES[0]))
    activations = forward(layers, X)
    assert activations[0] is X
    assert [a.shape for a in activations] == [(4, 6), (4, 5), (4, 4), (4, 3)]
    np.testing.assert_allclose(activations[-1].sum(axis=1), 1.0)
    assert forward(layers, X.astype(np.float32))[-1].dtype == np.float32
    with pytest.raises(ValueError, match="grad_output must have the shape"):
        input_gradient(layers, activations, np.ones((4, 2)))
    with pytest.raises(ValueError, match="output of forward"):
        input_gradient(layers, activations[:-1], np.ones((4, 3)))


def test_layer_validation():
    with pytest.raises(ValueError, match="activation must be one of"):
        Layer(np.ones((2, 3)), np.zeros(2), "relu")
    with pytest.raises(ValueError, match=r"\(n_out, n_in\)"):
        Layer(np.ones((2, 3)), np.zeros(3), "sigmoid")


# --------------------------------------------------------------------------- estimators
@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:300] / 16.0, y[:300]


def test_network_layers_of_a_sparse_autoencoder(digits):
    X, _ = digits
    ae = SparseAutoencoder(n_hidden=8, activation="tanh", max_iter=5, random_state=0)
    with pytest.raises(NotFittedError):
        network_layers(ae)
    with pytest.warns(Warning):  # ConvergenceWarning: 5 iterations only
        ae.fit(X)
    (layer,) = network_layers(ae)
    assert layer.weights is ae.components_ and layer.bias is ae.intercept_hidden_
    assert layer.activation == "tanh"
    np.testing.assert_allclose(forward([layer], X)[-1], ae.transform(X), rtol=1e-12)
    assert network_layers(ae, 1)[0].weights is ae.components_
    with pytest.raises(ValueError, match="out of range"):
        network_layers(ae, 2)
    with pytest.raises(ValueError, match="not a layer"):
        network_layers(ae, "output")
    with pytest.raises(ValueError, match="expected a fitted skae .*got LogisticRegression.$"):
        network_layers(LogisticRegression())
    # a pipeline that holds an autoencoder: the message says to pass the step itself
    with pytest.raises(ValueError, match=r"got Pipeline; pass its step, e.g\. pipeline\.named"
                       r"_steps\['sparseautoencoder'\] \(which reads"):
        network_layers(make_pipeline(StandardScaler(), ae))
    with pytest.raises(ValueError, match=r"got Pipeline\.$"):  # no skae step: no hint
        network_layers(make_pipeline(StandardScaler()))


def test_activation_accessor_prefers_the_fitted_spec():
    class Fitted:
        activation = "sigmoid"

    est = Fitted()
    assert estimator_activation(est) == "sigmoid"
    est._spec_ = type("Spec", (), {"activation": "tanh"})()
    assert estimator_activation(est) == "tanh"


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.filterwarnings("ignore::skae.exceptions.ConstantCodesWarning")  # 5 iterations
def test_network_layers_of_stacked_estimators(digits):
    X, y = digits
    stack = StackedAutoencoder((8, 5, 4), max_iter=5, random_state=0)
    with pytest.raises(NotFittedError):
        network_layers(stack)
    stack.fit(X)
    layers = network_layers(stack)
    assert [layer.weights.shape for layer in layers] == [(8, 64), (5, 8), (4, 5)]
    np.testing.assert_allclose(forward(layers, X)[-1], stack.transform(X), rtol=1e-12)
    assert len(network_layers(stack, 2)) == 2
    for bad in (0, 4, "output", 1.5):
        with pytest.raises(ValueError):
            network_layers(stack, bad)

    clf = StackedAutoencoderClassifier(
        (8, 5), max_iter=5, softmax_max_iter=5, fine_tune_max_iter=5, random_state=0
    )
    with pytest.raises(NotFittedError):
        network_layers(clf, "output")
    clf.fit(X, y)
    layers = network_layers(clf)
    assert [layer.activation for layer in layers] == ["sigmoid", "sigmoid", "softmax"]
    assert layers[-1].weights.shape == (10, 5)
    assert len(network_layers(clf, "output")) == len(network_layers(clf, 3)) == 3
    np.testing.assert_allclose(forward(layers, X)[-1], clf.predict_proba(X), rtol=1e-12)
    np.testing.assert_allclose(
        forward(network_layers(clf, 2), X)[-1], clf.transform(X), rtol=1e-12
    )
    with pytest.raises(ValueError, match="3 is the output layer"):
        network_layers(clf, 4)


def _tied_autoencoder_network(X, layout, offsets):
    """``fun(θ)`` of an autoencoder written as a network (tied: the decoder reads the
    encoder's slot transposed); ``J = ½‖X̂ − X‖² + offsets · Σ_i H_i`` (a term on the
    hidden activations, added to dJ/dH by the hidden_terms hook, as the sparsity term is)."""

    def fun(theta):
        layers = layout.network(theta, ("sigmoid", "linear"), np.float64)
        _, H, X_hat = forward(layers, X)
        J = 0.5 * np.sum((X_hat - X) ** 2) + offsets @ H.sum(axis=0)
        grads, _ = backpropagate(
            layers, [X, H.copy(), X_hat], X_hat - X, n_params=2, want_input=False,
            layout=layout, hidden_terms={1: offsets},
        )
        return J, np.concatenate([a.ravel() for a in layout.flatten(grads)])

    return fun


def test_backpropagate_sums_a_shared_transposed_slot_and_adds_hidden_terms():
    rng = np.random.default_rng(0)
    n, h = 5, 3
    X = rng.random((7, n))
    layout = NetworkLayout(((h, n), (n, h)), transposed=(False, True), shared=(None, 0))
    assert layout.size == h * n + h + n  # one weight slot, two biases
    theta = rng.uniform(-0.5, 0.5, layout.size)
    (W1, b1), (W2, b2) = layout.unpack(theta)
    assert W2 is W1 and W1.shape == (h, n) and b2.shape == (n,)
    layers = layout.network(theta, ("sigmoid", "linear"), np.float64)
    np.testing.assert_array_equal(layers[1].weights, W1.T)
    np.testing.assert_array_equal(layout.pack(layers), theta)
    fun = _tied_autoencoder_network(X, layout, rng.standard_normal(h))
    assert check_gradient(fun, theta) < 1e-8


def test_a_slot_stored_transposed_keeps_its_orientation():
    rng = np.random.default_rng(1)
    n, h = 5, 3
    layout = NetworkLayout(((h, n), (n, h)), transposed=(False, True))
    theta = rng.uniform(-0.5, 0.5, layout.size)
    (_, _), (W2, _) = layout.unpack(theta)
    assert W2.shape == (h, n) and layout.stored_shape(1) == (h, n)
    assert np.shares_memory(W2, theta)
    unpacked = layout.unpack(theta)
    flat = layout.flatten(unpacked)
    assert [a.shape for a in flat] == [(h, n), (h,), (h, n), (n,)]
    for (a, b), (c, d) in zip(layout.unflatten(flat), unpacked):
        assert a is c or (a is None and c is None)
        assert b is d
    fun = _tied_autoencoder_network(rng.random((7, n)), layout, rng.standard_normal(h))
    assert check_gradient(fun, theta) < 1e-8
