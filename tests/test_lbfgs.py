"""The array-API L-BFGS (skae._lbfgs, issue 13): it reaches SciPy's optimum, it follows
SciPy's L-BFGS-B on the autoencoder, and skae's driver behaves with it as with SciPy.

The device tests run in every namespace installed: ``array_api_strict`` and PyTorch on the
CPU (skipped, saying so, when PyTorch is not installed)."""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.optimize import minimize
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler

from skae import _optimize as optimize_module
from skae._array import array_api_compat, to_numpy
from skae._lbfgs import minimize_lbfgs
from skae._objective import AutoencoderObjective, AutoencoderSpec
from skae._optimize import run_lbfgs
from skae.exceptions import FitInterruptedWarning, NonFiniteLossError

xps = pytest.importorskip("array_api_strict")
# Other namespaces than NumPy need array_api_compat (vendored by scikit-learn >= 1.7).
needs_compat = pytest.mark.skipif(
    array_api_compat is None, reason="array_api_compat is not available (scikit-learn < 1.7)"
)


def _namespace(name):
    """The array-API namespace ``name``: NumPy, array_api_strict, or PyTorch's (through
    array_api_compat; skipped, saying so, when PyTorch is not installed)."""
    if name == "numpy":
        return np
    if name == "array_api_strict":
        return xps
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    return array_api_compat.array_namespace(torch.zeros(1))


DEVICE_NAMESPACES = [
    pytest.param(name, marks=needs_compat) for name in ("array_api_strict", "torch")
]


@pytest.fixture(params=DEVICE_NAMESPACES)
def xp(request):
    return _namespace(request.param)


def _logistic_problem(xp):
    """L2-regularised logistic regression on the (standardised) breast-cancer data,
    written once against the array API: ``fun(w) -> (J, grad)`` in namespace ``xp``."""
    X, y = load_breast_cancer(return_X_y=True)
    X = np.hstack([StandardScaler().fit_transform(X), np.ones((len(X), 1))])
    Xa, ya = xp.asarray(X, dtype=xp.float64), xp.asarray(y.astype(np.float64))
    lam, m = 1e-2, X.shape[0]

    def fun(w):
        z = Xa @ w
        p = 1.0 / (1.0 + xp.exp(-z))
        loss = xp.sum(xp.logaddexp(xp.zeros_like(z), z) - ya * z) / m + 0.5 * lam * (w @ w)
        return float(loss), (Xa.T @ (p - ya)) / m + lam * w

    return fun, xp.zeros(X.shape[1], dtype=xp.float64)


def _scipy_optimum(fun, w0):
    result = minimize(
        fun, w0, jac=True, method="L-BFGS-B", options={"gtol": 1e-8, "ftol": 0, "maxiter": 1000}
    )
    assert result.status == 0
    return result


ALL_NAMESPACES = [pytest.param("numpy")] + DEVICE_NAMESPACES


@pytest.mark.parametrize("name", ALL_NAMESPACES)
def test_reaches_scipys_optimum_on_logistic_regression(name):
    """Stated tolerance: both stopped at max|g| <= 1e-8, the weights (of order 1) agree
    with SciPy's to 1e-6 absolute and the losses to 1e-12 relative."""
    xp = _namespace(name)
    reference = _scipy_optimum(*_logistic_problem(np))
    fun, w0 = _logistic_problem(xp)
    result = minimize_lbfgs(fun, w0, maxiter=1000, gtol=1e-8, ftol=0)
    assert result.status == 0, result.message
    assert type(result.x) is type(w0)  # stays in the namespace of the start
    assert_allclose(to_numpy(result.x), reference.x, atol=1e-6)
    assert_allclose(result.fun, reference.fun, rtol=1e-12)
    assert float(xp.max(xp.abs(result.jac))) <= 1e-8
    assert_allclose(to_numpy(w0), 0.0)  # x0 untouched


@pytest.mark.parametrize("name", ALL_NAMESPACES)
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("n_iter", [10, 40])
def test_follows_scipy_on_the_autoencoder(name, seed, n_iter):
    """After the same number of iterations, the loss is within 2% of SciPy's L-BFGS-B's
    (measured: within 0.5% at 10, 30 and 100 iterations on these data); on a device
    namespace the objective, the iterates and the L-BFGS history are its arrays."""
    xp = _namespace(name)
    X = load_digits().data[:300] / 16.0
    spec = AutoencoderSpec(n_features=64, n_hidden=25)
    objective = AutoencoderObjective(spec, X, n_workers=1)
    theta0 = spec.layout.initialize(np.random.RandomState(seed))
    options = {"maxiter": n_iter, "gtol": 1e-12, "ftol": 0}
    reference = minimize(objective, theta0, jac=True, method="L-BFGS-B", options=options)
    device_objective = AutoencoderObjective(spec, xp.asarray(X), n_workers=1)
    start = xp.asarray(theta0)
    result = minimize_lbfgs(device_objective, start, maxiter=n_iter, gtol=1e-12, ftol=0)
    assert type(result.x) is type(start)
    assert reference.nit == result.nit == n_iter
    start = objective(theta0)[0]
    assert result.fun < start - 0.5 * (start - reference.fun)  # it does descend
    assert abs(result.fun - reference.fun) <= 0.02 * reference.fun
    # same accounting as SciPy: about one evaluation per iteration
    assert result.nfev <= 1.5 * n_iter


def test_stopping_rules_are_scipys():
    fun, w0 = _logistic_problem(np)
    # gradient already small at the start: no iteration
    result = minimize_lbfgs(fun, w0, maxiter=10, gtol=1.0)
    assert (result.status, result.nit) == (0, 0) and "PGTOL" in result.message
    # iteration limit
    result = minimize_lbfgs(fun, w0, maxiter=3, gtol=1e-12)
    assert (result.status, result.nit) == (1, 3) and "ITERATIONS" in result.message
    # evaluation limit
    result = minimize_lbfgs(fun, w0, maxiter=100, maxfun=4, gtol=1e-12)
    assert result.status == 1 and result.nfev <= 4 and "EVALUATIONS" in result.message
    # relative reduction (SciPy's default ftol) before the gradient test at tol 0
    result = minimize_lbfgs(fun, w0, maxiter=1000, gtol=0.0)
    reference = minimize(fun, w0, jac=True, method="L-BFGS-B", options={"gtol": 0.0})
    assert result.status == 0 and "FACTR" in result.message and "FACTR" in reference.message
    assert_allclose(result.fun, reference.fun, rtol=1e-7)


def test_callback_sees_every_accepted_iterate():
    fun, w0 = _logistic_problem(np)
    seen = []
    result = minimize_lbfgs(
        fun, w0, maxiter=5, gtol=1e-12, callback=lambda r: seen.append((r.x.copy(), r.fun))
    )
    assert len(seen) == result.nit == 5
    assert all(b[1] < a[1] for a, b in zip(seen, seen[1:]))  # accepted steps decrease
    for x, f in seen:
        assert fun(x)[0] == f
    assert_allclose(seen[-1][0], result.x)


@pytest.mark.parametrize("history_dtype", [None, np.float32])
def test_accepted_iterates_are_the_points_evaluated(history_dtype):
    """Each accepted iterate is, bit for bit, a point the objective was evaluated at, with
    that loss: the line search's point is kept rather than formed again (float64 pairs;
    float32 pairs, where the line search runs along the direction widened)."""
    fun, w0 = _logistic_problem(np)
    evaluated = []

    def recorded(w):
        f, g = fun(w)
        evaluated.append((w.copy(), f))
        return f, g

    accepted = []
    result = minimize_lbfgs(
        recorded, w0, maxiter=60, gtol=1e-10, ftol=0, history_dtype=history_dtype,
        callback=lambda r: accepted.append((r.x, r.fun)),
    )
    assert result.nit == len(accepted) > 10
    for x, f in accepted:
        assert any(np.array_equal(x, point) and f == loss for point, loss in evaluated)


def test_iterates_handed_out_are_never_overwritten():
    """The optimiser reuses its work vectors between iterations, never the iterates it
    hands out: each callback's ``x``, kept without a copy, still holds that iterate at
    the end, and the pairs recycled through a short history still reach the optimum."""
    fun, w0 = _logistic_problem(np)
    kept = []
    result = minimize_lbfgs(
        fun, w0, maxiter=200, gtol=1e-8, ftol=0, history_size=2,
        callback=lambda r: kept.append((r.x, r.x.copy())),
    )
    assert result.status == 0 and len(kept) == result.nit > 4
    assert len({id(x) for x, _ in kept}) == len(kept)
    for reference, copy in kept:
        assert np.array_equal(reference, copy)
    assert_allclose(result.x, _scipy_optimum(fun, w0).x, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", ALL_NAMESPACES)
def test_float32_pairs_reach_the_optimum_and_accept_evaluated_points(name):
    """history_dtype=float32 (a float32 objective's pairs): the iterates stay float64, each
    accepted iterate is a point the objective was evaluated at, bit for bit, with that
    loss, and the run reaches SciPy's optimum as closely as with float64 pairs."""
    xp = _namespace(name)
    fun, w0 = _logistic_problem(xp)
    evaluated = []

    def recorded(w):
        f, g = fun(w)
        evaluated.append((to_numpy(w).copy(), f))
        return f, g

    accepted = []
    result = minimize_lbfgs(
        recorded, w0, maxiter=200, gtol=1e-8, ftol=0, history_dtype=xp.float32,
        callback=lambda r: accepted.append((to_numpy(r.x).copy(), r.fun)),
    )
    assert result.status == 0 and result.x.dtype == xp.float64
    for x, f in accepted:
        assert any(np.array_equal(x, point) and f == loss for point, loss in evaluated)
    optimum = _scipy_optimum(*_logistic_problem(np))
    assert_allclose(to_numpy(result.x), optimum.x, rtol=1e-5, atol=1e-7)


def test_float32_pairs_convert_the_direction_once_per_iteration(monkeypatch):
    """The line search runs along one copy of the float32 direction in float64, made once
    per direction: no evaluation converts a vector (here 60 iterations, 60-odd
    evaluations: conversions only while the history fills)."""
    import skae._lbfgs as lbfgs

    calls = []
    original = lbfgs.astype

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(lbfgs, "astype", counted)
    scales = np.linspace(1.0, 50.0, 2000)
    result = minimize_lbfgs(
        lambda w: (0.5 * float(w @ (scales * w)) - float(w.sum()), scales * w - 1.0),
        np.zeros(2000), maxiter=60, gtol=0.0, ftol=0.0, history_dtype=np.float32,
    )
    assert result.nit == 60 and result.nfev >= 60
    # x0's copy, s and y while the 10 pairs fill (and refill): not one per evaluation
    assert len(calls) < result.nit // 2


def test_float32_pairs_of_huge_gradients_go_on_in_float64():
    """Gradients of 1e25 overflow float32 products of the pairs: the run goes on with
    float64 pairs and ends where float64 pairs end, without warnings."""
    rng = np.random.default_rng(0)
    curvature = np.exp(rng.uniform(0, 3, 20))
    c = rng.standard_normal(20) * 1e25

    def fun(w):
        return 0.5 * float(w @ (curvature * w)) - float(c @ w), curvature * w - c

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        wide = minimize_lbfgs(fun, np.zeros(20), maxiter=200, gtol=1e20)
        narrow = minimize_lbfgs(fun, np.zeros(20), maxiter=200, gtol=1e20,
                                history_dtype=np.float32)
    assert narrow.nit == wide.nit > 5
    assert_allclose(narrow.x, wide.x, rtol=1e-6)


@pytest.mark.parametrize("history_dtype", [np.float16, np.int64, bool, "float128"])
def test_history_dtype_is_float32_or_float64(history_dtype):
    fun, w0 = _logistic_problem(np)
    with pytest.raises(ValueError, match="history_dtype must be float32 or float64"):
        minimize_lbfgs(fun, w0, maxiter=2, gtol=0.0, history_dtype=history_dtype)
    with pytest.raises(ValueError, match="no wider than the start's dtype float32"):
        minimize_lbfgs(fun, w0.astype(np.float32), maxiter=2, gtol=0.0,
                       history_dtype=np.float64)


def test_cubic_step_with_a_zero_denominator_is_the_midpoint():
    from skae._lbfgs import _cubic_minimum

    # g2 - g1 + 2 d2 == 0: the cubic's formula divides by zero
    assert _cubic_minimum(0.0, 0.0, -3.0, 1.0, -1.0, -3.0) == 0.5


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_fits_keep_their_pairs_in_the_datas_dtype(monkeypatch):
    from skae import SparseAutoencoder, StackedAutoencoderClassifier

    seen = []
    original = optimize_module.minimize_lbfgs

    def spy(*args, **kwargs):
        seen.append(np.dtype(kwargs["history_dtype"]).name)
        return original(*args, **kwargs)

    monkeypatch.setattr(optimize_module, "minimize_lbfgs", spy)
    X, y = load_digits(return_X_y=True)
    X = X[:200] / 16.0
    for dtype in (np.float32, np.float64):
        SparseAutoencoder(n_hidden=3, max_iter=2).fit(X.astype(dtype))
        StackedAutoencoderClassifier(
            (3,), max_iter=2, softmax_max_iter=2, fine_tune_max_iter=2
        ).fit(X.astype(dtype), y[:200])
    assert seen == ["float32"] * 4 + ["float64"] * 4  # autoencoder, layer, softmax, tuning


@pytest.mark.parametrize("n_pairs", [0, 1, 4])
def test_direction_is_minus_the_bfgs_inverse_hessian_times_g(n_pairs):
    """The two-loop recursion, into reused buffers, equals ``−H g`` with ``H`` built as a
    matrix by the BFGS update over the pairs, oldest first, from ``H0 = (sᵀy / yᵀy) I``
    of the newest pair (Nocedal & Wright, eq. 6.17 and 7.20)."""
    from skae._lbfgs import _direction

    rng = np.random.default_rng(n_pairs)
    n = 6
    B = rng.standard_normal((n, n))
    A = B @ B.T + n * np.eye(n)  # positive definite: every pair has sᵀy > 0
    history = []
    for _ in range(n_pairs):
        s = rng.standard_normal(n)
        y = A @ s
        history.append((s, y, 1.0 / (y @ s)))
    g = rng.standard_normal(n)
    H = np.eye(n)
    if history:
        s, y, _ = history[-1]
        H *= (s @ y) / (y @ y)
    for s, y, rho in history:
        V = np.eye(n) - rho * np.outer(y, s)
        H = V.T @ H @ V + rho * np.outer(s, s)
    out = np.empty(n)
    before = g.copy()
    d = _direction(g, history, np, np.float64, out=out)
    assert d is out
    assert_allclose(d, -H @ g, rtol=1e-10, atol=1e-12)
    assert np.array_equal(g, before)
    # the same recursion on another namespace (new arrays instead of buffers)
    strict = [(xps.asarray(s), xps.asarray(y), float(rho)) for s, y, rho in history]
    d_strict = _direction(xps.asarray(g), strict, xps, xps.float64)
    assert isinstance(d_strict, type(xps.asarray(g)))
    assert_allclose(np.asarray(d_strict), -H @ g, rtol=1e-10, atol=1e-12)


def test_wrong_gradient_ends_with_status_2():
    """A gradient pointing uphill: no step decreases the loss, as L-BFGS-B's status 2."""
    result = minimize_lbfgs(lambda t: (float(t @ t), -2.0 * t), np.ones(3), maxiter=50, gtol=0)
    assert result.status == 2 and result.nit == 0 and "ABNORMAL" in result.message
    assert_allclose(result.x, 1.0)


# ------------------------------------------------------------------ through run_lbfgs
def _quadratic(xp, scale=1.0):
    target = xp.asarray(np.linspace(-1.0, 1.0, 5), dtype=xp.float64)

    def fun(theta):
        r = theta - target
        return float(scale * (r @ r)), 2.0 * scale * r

    return fun


def test_run_lbfgs_on_array_api_input_stays_in_the_namespace(xp):
    fun = _quadratic(xp)
    theta0 = xp.zeros(5, dtype=xp.float64)
    result = run_lbfgs(fun, theta0, max_iter=50, tol=1e-10)
    assert result.converged and result.status == 0
    assert isinstance(result.theta, type(theta0))
    assert_allclose(to_numpy(result.theta), np.linspace(-1, 1, 5), atol=1e-9)
    assert result.n_iter == len(result.loss_curve) >= 1
    assert_allclose(to_numpy(theta0), 0.0)


def test_run_lbfgs_max_iter_warns_like_scipy(xp):
    fun, w0 = _logistic_problem(xp)
    with pytest.warns(ConvergenceWarning, match=r"max_iter=3; increase max_iter"):
        result = run_lbfgs(fun, w0, max_iter=3, tol=1e-12)
    assert result.n_iter == 3 and result.status == 1 and not result.converged


def test_run_lbfgs_wrong_gradient_warns_with_the_reason(xp):
    with pytest.warns(ConvergenceWarning, match=r"status 2: ABNORMAL.*line search"):
        result = run_lbfgs(
            lambda t: (float(t @ t), -2.0 * t), xp.ones(3, dtype=xp.float64), max_iter=50,
            tol=1e-8,
        )
    assert result.status == 2 and not result.converged


@pytest.mark.parametrize("at_evaluation", [1, 3])
def test_run_lbfgs_non_finite_loss_raises(xp, at_evaluation):
    good = _quadratic(xp)
    calls = {"n": 0}

    def fun(theta):
        calls["n"] += 1
        J, grad = good(theta)
        return (float("nan"), grad) if calls["n"] == at_evaluation else (J, grad)

    with pytest.raises(NonFiniteLossError, match="loss became non-finite"):
        run_lbfgs(fun, xp.zeros(5, dtype=xp.float64), max_iter=50, tol=1e-10)


def test_run_lbfgs_non_finite_gradient_raises(xp):
    def fun(theta):
        return 1.0, theta * float("inf")

    with pytest.raises(NonFiniteLossError, match="gradient became non-finite"):
        run_lbfgs(fun, xp.ones(2, dtype=xp.float64), max_iter=5, tol=0)


@pytest.mark.parametrize("entry", [1e200, float("inf"), float("nan")])
def test_run_lbfgs_tests_each_entry_when_the_squared_norm_overflows(xp, entry):
    """Gradient entries of 1e200 overflow ‖g‖², the quick test of finiteness, but are
    finite: the entries are then tested one by one and the run goes on (here it stops at
    once, max_iter=0); an infinite or NaN entry is refused."""

    def fun(theta):
        return 1.0, xp.ones_like(theta) * entry

    theta0 = xp.ones(3, dtype=xp.float64)
    if entry == 1e200:
        with pytest.warns(ConvergenceWarning, match=r"status 1"):
            result = run_lbfgs(fun, theta0, max_iter=0, tol=0)
        assert result.n_iter == 0 and result.loss == 1.0
    else:
        with pytest.raises(NonFiniteLossError, match="gradient became non-finite"):
            run_lbfgs(fun, theta0, max_iter=0, tol=0)


@pytest.mark.parametrize("where", ["callback", "objective"])
def test_run_lbfgs_interrupt_keeps_the_last_accepted_parameters(monkeypatch, xp, where):
    fun, w0 = _logistic_problem(xp)
    accepted = []
    original = optimize_module.minimize_lbfgs

    def recording(*args, callback, **kwargs):
        def record(intermediate_result):
            callback(intermediate_result)
            accepted.append((to_numpy(intermediate_result.x).copy(), intermediate_result.fun))
            if where == "callback" and len(accepted) == 4:
                raise KeyboardInterrupt

        return original(*args, callback=record, **kwargs)

    calls = {"n": 0}

    def interrupting(theta):
        calls["n"] += 1
        if where == "objective" and len(accepted) == 4:
            raise KeyboardInterrupt
        return fun(theta)

    monkeypatch.setattr(optimize_module, "minimize_lbfgs", recording)
    with pytest.warns(FitInterruptedWarning, match="interrupted after 4 iterations"):
        result = run_lbfgs(interrupting, w0, max_iter=100, tol=1e-12)
    assert result.interrupted and not result.converged and result.n_iter == 4
    assert isinstance(result.theta, type(w0))
    assert_allclose(to_numpy(result.theta), accepted[-1][0], rtol=0, atol=0)
    assert result.loss == accepted[-1][1]


def test_run_lbfgs_interrupt_in_the_first_evaluation_keeps_the_start(xp):
    good = _quadratic(xp)
    calls = {"n": 0}

    def fun(theta):
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt
        return good(theta)

    theta0 = xp.asarray([0.5, -0.5, 0.0, 1.0, 2.0], dtype=xp.float64)
    with pytest.warns(FitInterruptedWarning, match="interrupted after 0 iterations"):
        result = run_lbfgs(fun, theta0, max_iter=5, tol=0)
    assert result.interrupted and result.n_iter == 0
    assert_allclose(to_numpy(result.theta), to_numpy(theta0), rtol=0, atol=0)
    assert result.loss == good(theta0)[0]


def test_arguments_scipy_accepts_are_accepted_and_bad_ones_named():
    fun, w0 = _logistic_problem(np)
    start = minimize_lbfgs(fun, w0, maxiter=0, gtol=1e-12)  # the start, evaluated once
    assert (start.nit, start.nfev, start.status) == (0, 1, 1)
    assert "ITERATIONS REACHED LIMIT" in start.message
    assert_allclose(start.x, w0)

    def quadratic(x):
        return float(x @ x), 2.0 * x

    from_integers = minimize_lbfgs(quadratic, np.array([3, -4]), maxiter=20, gtol=1e-10)
    from_floats = minimize_lbfgs(quadratic, np.array([3.0, -4.0]), maxiter=20, gtol=1e-10)
    assert from_integers.x.dtype == np.float64
    assert np.array_equal(from_integers.x, from_floats.x)
    with pytest.raises(ValueError, match="history_size must be at least 1.*history_size=0"):
        minimize_lbfgs(quadratic, np.ones(2), maxiter=5, gtol=0.0, history_size=0)
    with pytest.raises(ValueError, match="maxiter at least 0.*maxiter=-1"):
        minimize_lbfgs(quadratic, np.ones(2), maxiter=-1, gtol=0.0)
