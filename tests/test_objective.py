"""The objective on its own: finite-difference gradients, chunked = one-shot, memory."""

import itertools
import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp

from skae import check_gradient
from skae._base import kl_divergence
from skae._objective import (
    AutoencoderObjective,
    AutoencoderSpec,
    Corruption,
    decode,
    encode,
    reconstruction_error,
)

N_FEATURES, N_HIDDEN = 6, 4


def _valid_combinations():
    for activation, decoder, loss, tied, noise, batch_size in itertools.product(
        ["sigmoid", "tanh"],
        ["sigmoid", "linear"],
        ["squared", "cross_entropy"],
        [False, True],
        [None, "mask", "gaussian"],
        [None, 4],
    ):
        if loss == "cross_entropy" and decoder == "linear":
            continue
        yield activation, decoder, loss, tied, noise, batch_size


COMBINATIONS = list(_valid_combinations())


def _setup(activation, decoder, loss, tied, noise, batch_size, seed=0, m=11):
    rng = np.random.RandomState(seed)
    X = rng.uniform(0.05, 0.95, size=(m, N_FEATURES))
    spec = AutoencoderSpec(
        N_FEATURES, N_HIDDEN, activation, decoder, loss, tied, alpha=0.01, beta=0.7, rho=0.2
    )
    corruption = Corruption(noise, 0.3, seed) if noise else None
    objective = AutoencoderObjective(spec, X, corruption=corruption, batch_size=batch_size)
    theta = spec.layout.initialize(rng)
    theta += rng.normal(scale=0.1, size=theta.shape)  # non-zero biases too
    return spec, X, corruption, objective, theta


@pytest.mark.parametrize("combo", COMBINATIONS, ids=lambda c: "-".join(map(str, c)))
def test_gradient_matches_finite_differences(combo):
    _, _, _, objective, theta = _setup(*combo)
    assert check_gradient(objective, theta) < 1e-8


def _reference_objective(theta, X_clean, X_input, spec):
    """J written straight from DESIGN.md §1, with no buffers and no chunks."""
    W1, b1, W2, b2 = spec.layout.unpack(theta)
    H = encode(X_input, W1, b1, spec.activation)
    Z = H @ W2 + b2
    if spec.loss == "cross_entropy":
        X_hat = 1 / (1 + np.exp(-Z))
        per_sample = -np.sum(X_clean * np.log(X_hat) + (1 - X_clean) * np.log(1 - X_hat), 1)
    else:
        X_hat = decode(H, W2, b2, spec.decoder)
        per_sample = 0.5 * np.sum((X_hat - X_clean) ** 2, axis=1)
    p = H if spec.activation == "sigmoid" else (H + 1) / 2
    rho_hat = p.mean(axis=0)
    decay = np.sum(W1**2) + (0 if spec.tied else np.sum(W2**2))
    return (
        per_sample.mean()
        + spec.alpha / 2 * decay
        + spec.beta * np.sum(kl_divergence(spec.rho, rho_hat))
    )


@pytest.mark.parametrize("combo", COMBINATIONS, ids=lambda c: "-".join(map(str, c)))
def test_value_matches_the_formula(combo):
    spec, X, corruption, objective, theta = _setup(*combo)
    X_input = corruption.apply(X, 0) if corruption else X
    J, _ = objective(theta)
    assert J == pytest.approx(_reference_objective(theta, X, X_input, spec), rel=1e-12)


@pytest.mark.parametrize("combo", COMBINATIONS, ids=lambda c: "-".join(map(str, c)))
def test_two_pass_equals_one_shot(combo):
    *settings, _ = combo
    spec, X, corruption, one_shot, theta = _setup(*settings, None, m=23)
    J1, g1 = one_shot(theta)
    for batch_size in (1, 5, 22, 23, 100):
        J2, g2 = AutoencoderObjective(
            spec, X, corruption=corruption, batch_size=batch_size
        )(theta)
        assert J2 == pytest.approx(J1, rel=1e-10)
        np.testing.assert_allclose(g2, g1, rtol=1e-10, atol=1e-13)


def test_objective_does_not_modify_theta_or_data():
    _, X, _, objective, theta = _setup("sigmoid", "sigmoid", "squared", False, "mask", 3)
    X_before, theta_before = X.copy(), theta.copy()
    objective(theta)
    objective(theta)
    np.testing.assert_array_equal(X, X_before)
    np.testing.assert_array_equal(theta, theta_before)


def test_repeated_evaluations_reuse_buffers_and_agree():
    _, _, _, objective, theta = _setup("tanh", "linear", "squared", True, None, None)
    J1, g1 = objective(theta)
    objective(theta * 0.5)
    J2, g2 = objective(theta)
    assert J1 == J2
    np.testing.assert_array_equal(g1, g2)


@pytest.mark.parametrize("batch_size", [None, 7])
@pytest.mark.parametrize("noise", [None, "mask"])
@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_sparse_input_equals_dense(fmt, noise, batch_size):
    rng = np.random.RandomState(0)
    X = sp.random(30, N_FEATURES, density=0.3, format=fmt, random_state=rng)
    spec = AutoencoderSpec(N_FEATURES, N_HIDDEN)
    theta = spec.layout.initialize(rng)
    corruption = Corruption(noise, 0.25, 3) if noise else None
    Js, gs = AutoencoderObjective(
        spec, X.tocsr(), corruption=corruption, batch_size=batch_size
    )(theta)
    Jd, gd = AutoencoderObjective(
        spec, X.toarray(), corruption=corruption, batch_size=batch_size
    )(theta)
    assert Js == pytest.approx(Jd, rel=1e-12)
    np.testing.assert_allclose(gs, gd, rtol=1e-10, atol=1e-13)


def test_float32_evaluation_stays_close_to_float64():
    spec, X, _, objective64, theta = _setup("sigmoid", "sigmoid", "squared", False, None, None)
    J32, g32 = AutoencoderObjective(spec, X.astype(np.float32))(theta)
    J64, g64 = objective64(theta)
    assert g32.dtype == np.float64  # SciPy always gets float64
    assert J32 == pytest.approx(J64, rel=1e-5)
    np.testing.assert_allclose(g32, g64, rtol=1e-3, atol=1e-5)


def test_corruption_is_independent_of_chunking():
    X = np.random.RandomState(0).rand(700, 5)
    for kind, level in [("mask", 0.4), ("gaussian", 0.2)]:
        c = Corruption(kind, level, seed=9)
        whole = c.apply(X, 0)
        pieces = np.vstack([c.apply(X[s : s + 123], s) for s in range(0, 700, 123)])
        np.testing.assert_array_equal(whole, pieces)
    masked = Corruption("mask", 0.4, seed=9).apply(X, 0)
    assert 0.35 < np.mean(masked == 0) < 0.45
    noisy = Corruption("gaussian", 0.2, seed=9).apply(X, 0)
    assert np.std(noisy - X) == pytest.approx(0.2, rel=0.05)


def test_reconstruction_error_matches_formula():
    spec, X, _, _, theta = _setup("sigmoid", "sigmoid", "cross_entropy", False, None, None)
    W1, b1, W2, b2 = spec.layout.unpack(theta)
    X_hat = decode(encode(X, W1, b1), W2, b2)
    expected = -np.mean(np.sum(X * np.log(X_hat) + (1 - X) * np.log(1 - X_hat), axis=1))
    got = reconstruction_error(
        X, W1, b1, W2, b2, activation="sigmoid", decoder="sigmoid", loss="cross_entropy",
        batch_size=4,
    )
    assert got == pytest.approx(expected, rel=1e-12)


def _peak_bytes(build, evaluate_only):
    tracemalloc.start()
    try:
        objective, theta = build()
        if evaluate_only:
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
        else:
            base = 0
        objective(theta)
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def test_two_pass_memory_does_not_grow_with_rows():
    """Construction + one evaluation with batch_size=50: 10x the rows, same peak.

    Two workers in both cases (each has its own chunk buffers, so memory grows with the
    number of workers, not with the number of rows).

    The data themselves are allocated before tracing starts. The bound is 10% plus 64 KiB
    of slack for Python objects; an evaluation that kept anything per row (m x 40 floats
    = 1.25 MiB more for the larger data) fails it.
    """
    rng = np.random.RandomState(0)
    peaks = []
    for m in (400, 4000):
        X = rng.rand(m, 40)
        spec = AutoencoderSpec(40, 10)
        theta = spec.layout.initialize(rng)
        peaks.append(
            _peak_bytes(
                lambda: (AutoencoderObjective(spec, X, batch_size=50, n_workers=2), theta),
                False,
            )
        )
    assert peaks[1] <= 1.1 * peaks[0] + 65536, peaks


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("loss", ["squared", "cross_entropy"])
def test_one_evaluation_allocates_no_data_sized_temporaries(dtype, loss):
    """After construction, an evaluation allocates only O(n_hidden x n_features).

    The reused buffers (documented in skae._objective) are made once in the
    constructor; the evaluation itself must stay below a quarter of one m x n array.
    """
    rng = np.random.RandomState(0)
    m, n, h = 6000, 60, 8
    X = rng.rand(m, n).astype(dtype)
    spec = AutoencoderSpec(n, h, loss=loss)
    theta = spec.layout.initialize(rng)
    peak = _peak_bytes(lambda: (AutoencoderObjective(spec, X), theta), True)
    assert peak < m * n * X.itemsize / 4, peak


def test_check_gradient_detects_a_wrong_gradient():
    _, _, _, objective, theta = _setup("sigmoid", "sigmoid", "squared", False, None, None)

    def off_by_a_bit(t):
        J, g = objective(t)
        g = g.copy()
        g[3] += 1e-3
        return J, g

    assert check_gradient(off_by_a_bit, theta) > 1e-6
    with pytest.raises(ValueError, match="one entry per parameter"):
        check_gradient(lambda t: (0.0, np.zeros(2)), np.zeros(3))


def test_check_gradient_does_not_modify_theta():
    theta = np.array([0.5, -1.0])
    check_gradient(lambda t: (float(t @ t), 2 * t), theta)
    np.testing.assert_array_equal(theta, [0.5, -1.0])


@pytest.mark.parametrize("batch_size", [None, 7])
def test_sparse_input_with_gaussian_noise_equals_dense(batch_size):
    rng = np.random.RandomState(1)
    X = sp.random(30, N_FEATURES, density=0.3, format="csr", random_state=rng)
    spec = AutoencoderSpec(N_FEATURES, N_HIDDEN)
    theta = spec.layout.initialize(rng)
    corruption = Corruption("gaussian", 0.1, 4)
    sparse = AutoencoderObjective(spec, X, corruption=corruption, batch_size=batch_size)
    dense = AutoencoderObjective(spec, X.toarray(), corruption=corruption)
    assert not hasattr(sparse.X_input, "toarray") or sparse.X_input is X  # never densified
    Js, gs = sparse(theta)
    Jd, gd = dense(theta)
    assert Js == pytest.approx(Jd, rel=1e-12)
    np.testing.assert_allclose(gs, gd, rtol=1e-10, atol=1e-13)
    assert check_gradient(sparse, theta) < 1e-8


@pytest.mark.parametrize("combo", COMBINATIONS[::5], ids=lambda c: "-".join(map(str, c)))
def test_parallel_workers_equal_one_worker(combo):
    """Row ranges on 3 worker threads: the same J and gradient, and an exact gradient."""
    spec, X, corruption, _, theta = _setup(*combo, m=17)
    batch_size = combo[-1]
    serial = AutoencoderObjective(spec, X, corruption=corruption, batch_size=batch_size,
                                  n_workers=1)
    threaded = AutoencoderObjective(spec, X, corruption=corruption, batch_size=batch_size,
                                    n_workers=3)
    assert threaded.n_workers == 3
    J1, g1 = serial(theta)
    J3, g3 = threaded(theta)
    assert J3 == pytest.approx(J1, rel=1e-12)
    np.testing.assert_allclose(g3, g1, rtol=1e-10, atol=1e-14)
    assert check_gradient(threaded, theta) < 1e-8


def test_more_workers_than_rows_and_sparse_workers():
    X = sp.random(5, N_FEATURES, density=0.5, format="csr", random_state=0)
    spec = AutoencoderSpec(N_FEATURES, N_HIDDEN)
    theta = spec.layout.initialize(np.random.RandomState(0))
    many = AutoencoderObjective(spec, X, n_workers=8)
    assert many.n_workers == 5
    J1, g1 = AutoencoderObjective(spec, X.toarray(), n_workers=1)(theta)
    J2, g2 = many(theta)
    assert J2 == pytest.approx(J1, rel=1e-12)
    np.testing.assert_allclose(g2, g1, rtol=1e-10, atol=1e-14)


def test_worker_count_follows_threadpoolctl_limits():
    threadpoolctl = pytest.importorskip("threadpoolctl", reason="needs threadpoolctl")
    X = np.random.RandomState(0).rand(2000, 40)  # large enough to be split
    spec = AutoencoderSpec(40, 5)
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        assert AutoencoderObjective(spec, X).n_workers == 1
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        assert AutoencoderObjective(spec, X).n_workers == 2
    assert AutoencoderObjective(spec, X[:20]).n_workers == 1  # small data: one worker
