"""The objective on its own: finite-difference gradients, an independent reference, known
values, blocks and threads (bitwise), noise and memory."""

import itertools
import tracemalloc
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from skae import check_gradient
from skae._activations import kl_divergence
from skae._objective import (
    AutoencoderObjective,
    AutoencoderSpec,
    Corruption,
    reconstruction_error,
)
from skae._parallel import PARALLEL_MIN_SIZE

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


def _unpack(theta, n, h, tied):
    """The flat layout of the parameters, written out here: W1, b1, [W2], b2."""
    W1 = theta[: h * n].reshape(h, n)
    b1 = theta[h * n : h * n + h]
    rest = theta[h * n + h :]
    W2 = W1 if tied else rest[: h * n].reshape(h, n)
    b2 = rest[-n:]
    return W1, b1, W2, b2


def _reference_objective(theta, X_clean, X_input, spec):
    """J written straight from the user guide's formula with NumPy only (none of skae's
    helpers), no buffers and no chunks."""
    X_clean = np.asarray(X_clean.toarray() if sp.issparse(X_clean) else X_clean, float)
    X_input = np.asarray(X_input.toarray() if sp.issparse(X_input) else X_input, float)
    W1, b1, W2, b2 = _unpack(theta, spec.n_features, spec.n_hidden, spec.tied)
    sigmoid = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
    A = X_input @ W1.T + b1
    H = sigmoid(A) if spec.activation == "sigmoid" else np.tanh(A)
    Z = H @ W2 + b2
    X_hat = Z if spec.decoder == "linear" else sigmoid(Z)
    if spec.loss == "cross_entropy":
        per_sample = -np.sum(X_clean * np.log(X_hat) + (1 - X_clean) * np.log(1 - X_hat), 1)
    else:
        per_sample = 0.5 * np.sum((X_hat - X_clean) ** 2, axis=1)
    p = H if spec.activation == "sigmoid" else (H + 1) / 2
    q = p.mean(axis=0)
    rho = spec.rho
    kl = rho * np.log(rho / q) + (1 - rho) * np.log((1 - rho) / (1 - q))
    decay = np.sum(W1**2) + (0 if spec.tied else np.sum(W2**2))
    return per_sample.mean() + spec.alpha / 2 * decay + spec.beta * np.sum(kl)


def test_kl_divergence_known_value():
    # 0.1 log(0.1/0.2) + 0.9 log(0.9/0.8), by hand: -0.06931472 + 0.10600473 (≈ 0.036691)
    assert kl_divergence(0.1, 0.2) == pytest.approx(0.03669001, abs=1e-8)
    assert kl_divergence(0.3, 0.3) == 0.0


@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
def test_objective_known_value_at_zero_parameters(activation):
    """theta = 0: every hidden unit outputs f(0) and every reconstruction is σ(0) = 0.5,
    so J is known by hand. Guards the signs of every term independently of any fixture."""
    X = np.array([[0.0, 1.0], [0.5, 0.25]])
    spec = AutoencoderSpec(2, 3, activation, "sigmoid", alpha=0.7, beta=2.0, rho=0.1)
    objective = AutoencoderObjective(spec, X)
    J, grad = objective(np.zeros(spec.layout.size))
    # reconstruction: ½((0.5)² + (0.5)²) = 0.25 and ½(0 + 0.25²) = 0.03125; mean 0.140625
    # firing rate: 0.5 for both activations (tanh(0) = 0 fires at (0 + 1)/2)
    # KL(0.1 ‖ 0.5) = 0.1 log 0.2 + 0.9 log 1.8 = 0.368064 per unit, 3 units, beta 2
    assert J == pytest.approx(0.140625 + 2.0 * 3 * 0.3680642071684971, rel=1e-12)
    # Output bias gradient: mean of (x̂ − x) σ'(0) = mean(0.5 − x) / 4
    _, _, _, gb2 = spec.layout.unpack(grad)
    np.testing.assert_allclose(gb2, [(0.5 + 0.0) / 2 / 4, (-0.5 + 0.25) / 2 / 4], rtol=1e-12)
    # Gradient descent lowers J (sign of the whole gradient).
    J_step, _ = objective(-1e-3 * grad)
    assert J_step < J


@pytest.mark.parametrize("combo", COMBINATIONS, ids=lambda c: "-".join(map(str, c)))
def test_value_matches_the_formula(combo):
    spec, X, corruption, objective, theta = _setup(*combo)
    X_input = corruption.apply(X, 0) if corruption else X
    J, _ = objective(theta)
    assert J == pytest.approx(_reference_objective(theta, X, X_input, spec), rel=1e-12)


@pytest.mark.parametrize("kind", ["mask", "gaussian"])
@pytest.mark.parametrize("batch_size", [None, 7])
def test_sparse_value_with_noise_matches_the_formula(kind, batch_size):
    rng = np.random.RandomState(0)
    X = sp.random(30, N_FEATURES, density=0.3, format="csr", random_state=rng)
    spec = AutoencoderSpec(N_FEATURES, N_HIDDEN, beta=0.5, rho=0.2)
    theta = spec.layout.initialize(rng)
    corruption = Corruption(kind, 0.3, 5)
    J, _ = AutoencoderObjective(spec, X, corruption=corruption, batch_size=batch_size)(theta)
    X_input = corruption.apply(X, 0)
    assert sp.issparse(X_input) == (kind == "mask")  # masking keeps sparse input sparse
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
@pytest.mark.parametrize("noise", [None, "gaussian"])
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
        Xs = sp.csr_matrix(X)
        dense = lambda A: A.toarray() if sp.issparse(A) else A  # noqa: E731
        whole = dense(c.apply(Xs, 0))
        pieces = np.vstack([dense(c.apply(Xs[s : s + 123], s)) for s in range(0, 700, 123)])
        np.testing.assert_array_equal(whole, pieces)
    masked = Corruption("mask", 0.4, seed=9).apply(X, 0)
    assert 0.35 < np.mean(masked == 0) < 0.45
    noisy = Corruption("gaussian", 0.2, seed=9).apply(X, 0)
    assert np.std(noisy - X) == pytest.approx(0.2, rel=0.05)
    masked_sparse = Corruption("mask", 0.4, seed=9).apply(sp.csr_matrix(X), 0)
    assert 0.35 < np.mean(masked_sparse.toarray() == 0) < 0.45
    # Another seed, another mask; the same seed, the same mask.
    other = Corruption("mask", 0.4, seed=10).apply(sp.csr_matrix(X), 0)
    assert np.mean((other.toarray() == 0) != (masked_sparse.toarray() == 0)) > 0.3


def test_sparse_mask_of_an_entry_depends_only_on_its_position():
    """Numbers are drawn for the stored entries only, yet the mask of an entry depends on
    its position only: adding entries elsewhere does not change it."""
    rng = np.random.RandomState(0)
    X = sp.random(50, 40, density=0.05, format="csr", random_state=rng)
    more = (X + sp.random(50, 40, density=0.3, format="csr", random_state=rng)).tocsr()
    corruption = Corruption("mask", 0.5, seed=1)
    kept = corruption.apply(X, 0).toarray() != 0
    kept_more = corruption.apply(more, 0).toarray() != 0
    stored = X.toarray() != 0
    np.testing.assert_array_equal(kept[stored], kept_more[stored])


def test_reconstruction_error_matches_formula():
    spec, X, _, _, theta = _setup("sigmoid", "sigmoid", "cross_entropy", False, None, None)
    W1, b1, W2, b2 = _unpack(theta, N_FEATURES, N_HIDDEN, False)
    H = 1 / (1 + np.exp(-(X @ W1.T + b1)))
    X_hat = 1 / (1 + np.exp(-(H @ W2 + b2)))
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
    with pytest.raises(ValueError, match=r"gradient of shape \(2,\) for theta of shape \(3,\)"):
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


def _large(dtype=np.float64, sparse=False, seed=0):
    """Data above the parallel threshold: 12 000 x 40, 7 blocks of 1 792 rows."""
    rng = np.random.RandomState(seed)
    if sparse:
        X = sp.random(12_000, 40, density=0.3, format="csr", random_state=rng, dtype=dtype)
    else:
        X = rng.uniform(0.05, 0.95, size=(12_000, 40)).astype(dtype)
    assert X.shape[0] * X.shape[1] >= PARALLEL_MIN_SIZE
    return X


@pytest.mark.parametrize(
    ("dtype", "sparse", "noise", "tied", "loss"),
    [
        (np.float64, False, None, False, "squared"),
        (np.float32, False, None, False, "squared"),
        (np.float64, False, "mask", True, "cross_entropy"),
        (np.float32, False, "gaussian", False, "squared"),
        (np.float64, True, None, True, "squared"),
        (np.float64, True, "mask", False, "cross_entropy"),
    ],
)
@pytest.mark.parametrize("batch_size", [None, 600, 100])
def test_result_is_bitwise_independent_of_the_number_of_workers(
    dtype, sparse, noise, tied, loss, batch_size
):
    """Above the parallel threshold: 1, 2, 3 and 5 workers give the same bits."""
    X = _large(dtype, sparse)
    spec = AutoencoderSpec(40, 7, loss=loss, tied=tied, beta=0.5)
    corruption = Corruption(noise, 0.3, 2) if noise else None
    theta = spec.layout.initialize(np.random.RandomState(1))
    results = {}
    for k in (1, 2, 3, 5):
        objective = AutoencoderObjective(
            spec, X, corruption=corruption, batch_size=batch_size, n_workers=k
        )
        assert objective.n_workers == k and len(objective.blocks) > 5
        results[k] = objective(theta)
    for k in (2, 3, 5):
        assert results[k][0] == results[1][0]
        np.testing.assert_array_equal(results[k][1], results[1][1])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("noise", [None, "mask"])
def test_batch_size_at_least_a_block_is_bitwise_the_same(dtype, noise):
    """The documented rule: batch_size >= the block size (1 792 rows here) changes memory,
    not one bit of the objective; a smaller batch_size agrees to rounding."""
    X = _large(dtype)
    spec = AutoencoderSpec(40, 7)
    corruption = Corruption(noise, 0.3, 2) if noise else None
    theta = spec.layout.initialize(np.random.RandomState(1))
    J, g = AutoencoderObjective(spec, X, corruption=corruption, n_workers=2)(theta)
    for batch_size in (1792, 5000, 10**6):
        objective = AutoencoderObjective(
            spec, X, corruption=corruption, batch_size=batch_size, n_workers=2
        )
        assert objective.block_rows == 1792
        Jb, gb = objective(theta)
        assert Jb == J
        np.testing.assert_array_equal(gb, g)
    small = AutoencoderObjective(spec, X, corruption=corruption, batch_size=100, n_workers=2)
    assert small.block_rows == 100
    Js, gs = small(theta)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    assert Js == pytest.approx(J, rel=rtol)
    np.testing.assert_allclose(gs, g, rtol=100 * rtol, atol=100 * rtol * np.abs(g).max())


@pytest.mark.parametrize("combo", COMBINATIONS[::5], ids=lambda c: "-".join(map(str, c)))
def test_parallel_workers_give_an_exact_gradient(combo):
    """Blocks on 3 worker threads: the same J and gradient as 1, and an exact gradient."""
    *settings, batch_size = combo
    spec, X, corruption, _, theta = _setup(*settings, batch_size, m=17)
    serial = AutoencoderObjective(spec, X, corruption=corruption, batch_size=batch_size or 2,
                                  n_workers=1)
    threaded = AutoencoderObjective(spec, X, corruption=corruption, batch_size=batch_size or 2,
                                    n_workers=3)
    assert threaded.n_workers == 3
    J1, g1 = serial(theta)
    J3, g3 = threaded(theta)
    assert J3 == J1
    np.testing.assert_array_equal(g3, g1)
    assert check_gradient(threaded, theta) < 1e-8


def test_more_workers_than_blocks_and_sparse_workers():
    X = sp.random(5, N_FEATURES, density=0.5, format="csr", random_state=0)
    spec = AutoencoderSpec(N_FEATURES, N_HIDDEN)
    theta = spec.layout.initialize(np.random.RandomState(0))
    many = AutoencoderObjective(spec, X, batch_size=1, n_workers=8)
    assert many.n_workers == 5  # one block per row
    J1, g1 = AutoencoderObjective(spec, X.toarray(), batch_size=1, n_workers=1)(theta)
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


# ----------------------------------------------------------------------- noise memory
def _construct_and_evaluate_peak(spec, X, corruption, batch_size):
    theta = spec.layout.initialize(np.random.RandomState(0))
    tracemalloc.start()
    try:
        AutoencoderObjective(spec, X, corruption=corruption, batch_size=batch_size,
                             n_workers=1)(theta)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("batch_size", [None, 1000])
def test_sparse_mask_noise_stays_sparse_in_memory(batch_size):
    """4000 x 4000 CSR with 10 entries per row: a dense noise draw alone would be 128 MB.

    Bound: the worker's two (256, 4000) float64 buffers (16 MB) plus 8 MB for the sparse
    copy, code matrices and Python objects -- 24 MB, well below one dense draw."""
    m = n = 4000
    rng = np.random.RandomState(0)
    indices = rng.randint(0, n, size=m * 10)
    X = sp.csr_matrix(
        (rng.rand(m * 10), indices, np.arange(0, m * 10 + 1, 10)), shape=(m, n)
    )
    spec = AutoencoderSpec(n, 4)
    peak = _construct_and_evaluate_peak(spec, X, Corruption("mask", 0.3, 1), batch_size)
    assert peak < 24 * 2**20, peak / 2**20


@pytest.mark.parametrize("kind", ["mask", "gaussian"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_dense_denoising_draws_its_copy_block_by_block(kind, dtype):
    """batch_size=None keeps one corrupted copy of X (1x the data); the noise is drawn 256
    rows at a time into it. Bound: the copy plus a quarter of the data for everything
    else (H is 20000 x 4, the blocks' noise 256 x 100 float64)."""
    X = np.random.RandomState(0).rand(20000, 100).astype(dtype)
    spec = AutoencoderSpec(100, 4)
    peak = _construct_and_evaluate_peak(spec, X, Corruption(kind, 0.3, 1), None)
    assert peak < 1.25 * X.nbytes, peak / X.nbytes


def test_check_gradient_calls_an_opposite_gradient_wrong_at_any_scale():
    """A gradient of the wrong sign makes num + ana exactly zero: that is infinitely
    wrong, not an absolute difference that a tiny scale would make look correct."""
    from skae import check_gradient

    scale = 2.0**-40

    def opposite(theta):
        return scale * float(np.sum(theta)), -scale * np.ones_like(theta)

    assert check_gradient(opposite, np.array([1.0, 2.0, 3.0]), epsilon=2.0**-10) == np.inf
    assert check_gradient(lambda t: (0.0, np.zeros_like(t)), np.ones(3)) == 0.0
    for epsilon in (0.0, -1e-4, np.nan, np.inf, "small", True):
        with pytest.raises(ValueError, match="epsilon must be a positive finite step"):
            check_gradient(lambda t: (float(t @ t), 2 * t), np.ones(2), epsilon=epsilon)
    # complex values are refused, not cast with their imaginary parts dropped
    with pytest.raises(ValueError, match="theta is complex"):
        check_gradient(lambda t: (float(t @ t), 2 * t), np.ones(2) + 1j)
    with pytest.raises(ValueError, match="the gradient fun returned is complex"):
        check_gradient(lambda t: (float(t @ t), 2 * t + 1j), np.ones(2))
    # non-finite values are refused, not turned into a NaN that is neither small nor large
    with pytest.raises(ValueError, match=r"non-finite objective \(nan at theta\[0\]"):
        check_gradient(lambda t: (float("nan"), 2 * t), np.ones(2))
    with pytest.raises(ValueError, match=r"non-finite objective .* at theta\[1\]"):
        check_gradient(
            lambda t: (float("inf") if t[1] > 1.0 else float(t @ t), 2 * t), np.array([0.0, 1.0])
        )
    with pytest.raises(ValueError, match="gradient with NaN or infinite entries"):
        check_gradient(lambda t: (float(t @ t), np.full_like(t, np.inf)), np.ones(2))


def test_check_gradient_at_extreme_scales_and_with_bad_returns():
    """Gradients near 1e200 or 1e-200: the norms of the ratio are taken without overflow
    or underflow, so a correct gradient is about 0 and an opposite one inf (not NaN)."""
    from skae import check_gradient

    theta = np.array([1.0, -2.0, 0.5])
    for size in (2.0**600, 2.0**-600):  # powers of two: the differences are exact

        def linear(t, size=size):
            return size * float(np.sum(t)), np.full(3, size)

        def opposite(t, size=size):
            return size * float(np.sum(t)), np.full(3, -size)

        assert check_gradient(linear, theta, epsilon=2.0**-10) == 0.0
        assert check_gradient(opposite, theta, epsilon=2.0**-10) == np.inf
        assert check_gradient(lambda t, s=size: (s * float(t @ t), 2 * s * t), theta) < 1e-9
    # the objective must be a real number, the gradient exactly theta's shape
    for J in (np.array([1.0]), None, "1.0", 1.0 + 0j):
        with pytest.raises(ValueError, match="J a real number"):
            check_gradient(lambda t, J=J: (J, 2 * t), theta)
    with pytest.raises(ValueError, match=r"gradient of shape \(3, 1\) for theta of shape"):
        check_gradient(lambda t: (float(t @ t), 2 * t[:, None]), theta)
    # the shape of the theta given is accepted too (fun receives it flattened)
    square = np.arange(1.0, 7.0).reshape(2, 3)
    assert check_gradient(lambda t: (float(t @ t), 2 * t.reshape(2, 3)), square) < 1e-9
    for J in (np.float32(1.0), np.array(2.0), 3):  # real scalars of any kind
        assert check_gradient(lambda t, J=J: (J + 0 * float(t @ t), 0 * t), theta) == 0.0
    # a step that does not move theta is refused, not turned into a "wrong" gradient
    with pytest.raises(ValueError, match=r"epsilon=1e-300 does not move theta\[0\] = 1\.0"):
        check_gradient(lambda t: (float(t @ t), 2 * t), theta, epsilon=1e-300)


def test_check_gradient_takes_a_numpy_float32_epsilon_as_its_float64_value():
    """A NumPy float32 step is the same step as its float64 value: the differences are
    not formed in float32 (which gave NaN near 1e200 and 20 times the error elsewhere)."""
    from skae import check_gradient

    step = np.float32(1e-4)

    def huge(t):
        return 1e200 * float(t @ t), 2e200 * t

    def wavy(t):
        return float(np.sum(np.sin(t))), np.cos(t)

    for fun, theta in ((huge, np.array([1.0, 2.0])), (wavy, np.array([0.3, 1.1]))):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ratio = check_gradient(fun, theta, epsilon=step)
        assert ratio == check_gradient(fun, theta, epsilon=float(step))
        assert ratio < 1e-9
    # any real number, as its float64 value (a Fraction raised a bare TypeError)
    from fractions import Fraction

    theta = np.array([0.3, 1.1])
    assert check_gradient(wavy, theta, epsilon=Fraction(1, 10_000)) == check_gradient(
        wavy, theta, epsilon=1e-4)
    for bad in (Fraction(-1, 2), True, "1e-4", np.inf):
        with pytest.raises(ValueError, match="epsilon must be a positive finite step"):
            check_gradient(wavy, theta, epsilon=bad)
