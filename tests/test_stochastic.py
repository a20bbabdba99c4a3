"""The mini-batch solvers (solver="adam"/"sgd"), partial_fit and early stopping."""

import tracemalloc
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

from skae import SparseAutoencoder, check_gradient
from skae._array import BufferPool
from skae._objective import AutoencoderObjective, AutoencoderSpec, Corruption
from skae._parallel import minibatch_block_rows
from skae._stochastic import (
    AdamOptimizer,
    SGDOptimizer,
    autoencoder_rows,
    minibatch_objective,
)
from skae.exceptions import FitInterruptedWarning


@pytest.fixture(scope="module")
def digits():
    return load_digits().data / 16.0


def _fit(X, **params):
    """A fit that may stop at max_iter (its ConvergenceWarning is not the point here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return SparseAutoencoder(**params).fit(X)


def _params(ae):
    return [ae.components_, ae.intercept_hidden_, ae.decoder_components_, ae.intercept_visible_]


def _assert_same_model(a, b):
    for x, y in zip(_params(a), _params(b)):
        np.testing.assert_array_equal(x, y)


# ----------------------------------------------------------------------- the objective
@pytest.mark.parametrize("noise", [None, "mask"])
@pytest.mark.parametrize("rows", ["slice", "indices"])
def test_minibatch_objective_of_all_rows_is_the_full_objective(digits, noise, rows):
    X = digits[:300]
    spec = AutoencoderSpec(64, 16, alpha=1e-3, beta=1.0, rho=0.1)
    theta = spec.layout.initialize(np.random.RandomState(0))
    corruption = None if noise is None else Corruption(noise, 0.3, seed=5)
    selection = slice(None) if rows == "slice" else np.arange(len(X))
    J, grad = minibatch_objective(spec, X, selection, corruption=corruption)(theta)
    J_full, grad_full = AutoencoderObjective(spec, X, corruption=corruption)(theta)
    assert J == J_full
    np.testing.assert_array_equal(grad, grad_full)


@pytest.mark.parametrize("activation,tied", [("sigmoid", False), ("tanh", True)])
def test_minibatch_objective_passes_the_gradient_check(digits, activation, tied):
    """ρ̂ is the mini-batch's mean activation, and the gradient is that objective's."""
    rng = np.random.RandomState(1)
    spec = AutoencoderSpec(64, 6, activation=activation, tied=tied, beta=3.0, rho=0.05)
    theta = spec.layout.initialize(rng)
    rows = rng.permutation(len(digits))[:20]
    fun = minibatch_objective(spec, digits, rows, corruption=Corruption("mask", 0.2, 3))
    assert check_gradient(fun, theta) < 1e-8
    # its sparsity term uses the batch's rows only
    J_batch = fun(theta)[0]
    J_rows = AutoencoderObjective(spec, digits[rows], corruption=Corruption("mask", 0.2, 3))(
        theta
    )[0]
    assert J_batch == J_rows


# ------------------------------------------------------------------------ the solvers
def test_lbfgs_is_the_default_solver():
    ae = SparseAutoencoder()
    assert ae.solver == "lbfgs"
    assert not hasattr(ae, "partial_fit")


@pytest.mark.parametrize(
    "solver,learning_rate_init", [("adam", 0.01), ("sgd", 0.5)]
)
def test_solvers_reduce_the_loss_and_approach_lbfgs(digits, solver, learning_rate_init):
    """60 epochs on all 1797 digits, 32 hidden units, mini-batches of 200: the mean
    reconstruction error comes within 0.35 of L-BFGS's after 400 iterations (about 0.62;
    measured: Adam 0.89, SGD 0.71)."""
    lbfgs = _fit(digits, n_hidden=32, random_state=0)
    ae = _fit(
        digits,
        n_hidden=32,
        solver=solver,
        learning_rate_init=learning_rate_init,
        max_iter=60,
        random_state=0,
    )
    assert ae.n_iter_ == len(ae.loss_curve_) == 60
    assert ae.loss_curve_[-1] < ae.loss_curve_[0] / 4
    assert ae.score(digits) > lbfgs.score(digits) - 0.35
    assert ae.stop_reason_ == "max_iter"
    assert ae.t_ == 60 * len(digits)


def test_max_iter_epochs_warn_convergence(digits):
    ae = SparseAutoencoder(n_hidden=8, solver="adam", max_iter=2, random_state=0)
    with pytest.warns(ConvergenceWarning, match="max_iter=2 epochs"):
        ae.fit(digits[:400])
    assert ae.n_iter_ == 2


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_fits_are_deterministic(digits, solver):
    params = dict(n_hidden=8, solver=solver, max_iter=3, random_state=0, noise="mask",
                  noise_level=0.2, mini_batch_size=50)
    _assert_same_model(_fit(digits[:400], **params), _fit(digits[:400], **params))

    def stream():
        ae = SparseAutoencoder(**params)
        for start in range(0, 400, 130):
            ae.partial_fit(digits[start : start + 130])
        return ae

    a, b = stream(), stream()
    _assert_same_model(a, b)
    assert a.loss_curve_ == b.loss_curve_ and a.n_iter_ == 4


def test_one_epoch_of_fit_equals_partial_fit(digits):
    params = dict(n_hidden=8, solver="adam", shuffle=False, mini_batch_size=64, random_state=3)
    with pytest.warns(ConvergenceWarning):
        fitted = SparseAutoencoder(max_iter=1, **params).fit(digits[:500])
    streamed = SparseAutoencoder(**params).partial_fit(digits[:500])
    _assert_same_model(fitted, streamed)
    assert fitted.loss_curve_ == streamed.loss_curve_
    assert streamed.stop_reason_ == "partial_fit"


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_partial_fit_over_chunks_equals_one_epoch_over_their_concatenation(digits, solver):
    """Chunks of 64, 128 and 192 rows with mini-batches of 32: the same mini-batches, the
    same fresh corruption per mini-batch, the same optimiser state carried over."""
    X = digits[:384]
    params = dict(n_hidden=8, solver=solver, shuffle=False, mini_batch_size=32,
                  noise="mask", noise_level=0.25, random_state=7)
    one = SparseAutoencoder(**params).partial_fit(X)
    chunks = SparseAutoencoder(**params)
    for start, stop in [(0, 64), (64, 192), (192, 384)]:
        chunks.partial_fit(X[start:stop])
    _assert_same_model(one, chunks)
    assert chunks.t_ == 384 and chunks.n_iter_ == 3


def test_warm_start_and_partial_fit_continue(digits):
    X = digits[:300]
    ae = _fit(X, n_hidden=8, solver="adam", max_iter=2, random_state=0)
    ae.partial_fit(X)  # continues from the fit
    assert ae.n_iter_ == 3 and len(ae.loss_curve_) == 3
    ae.set_params(warm_start=True)
    with pytest.warns(ConvergenceWarning):
        ae.fit(X)
    assert ae.n_iter_ == 5
    ae.set_params(warm_start=False)
    with pytest.warns(ConvergenceWarning):
        ae.fit(X)
    assert ae.n_iter_ == 2
    _assert_same_model(ae, _fit(X, n_hidden=8, solver="adam", max_iter=2, random_state=0))


def test_lbfgs_fit_drops_the_mini_batch_progress(digits):
    ae = _fit(digits[:200], n_hidden=4, solver="adam", max_iter=1, random_state=0)
    assert hasattr(ae, "best_loss_") and hasattr(ae, "t_")
    ae.set_params(solver="lbfgs", max_iter=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ae.fit(digits[:200])
    assert not hasattr(ae, "best_loss_") and not hasattr(ae, "t_")
    assert not hasattr(ae, "partial_fit")


# --------------------------------------------------------------------- early stopping
def test_early_stopping_stops_and_records_validation_scores(digits):
    ae = SparseAutoencoder(
        n_hidden=8,
        solver="adam",
        early_stopping=True,
        validation_fraction=0.2,
        n_iter_no_change=2,
        tol=10.0,  # no epoch improves by that much
        max_iter=50,
        random_state=0,
    ).fit(digits[:500])
    # as the MLPs: the first epoch improves on -inf, then more than n_iter_no_change don't
    assert ae.stop_reason_ == "no improvement"
    assert ae.n_iter_ == 4
    assert len(ae.validation_scores_) == 4
    assert ae.best_validation_score_ == max(ae.validation_scores_)
    assert ae.best_loss_ is None


def test_no_improvement_on_the_training_loss(digits):
    ae = SparseAutoencoder(
        n_hidden=8, solver="sgd", n_iter_no_change=1, tol=10.0, max_iter=50, random_state=0
    ).fit(digits[:500])
    assert ae.stop_reason_ == "no improvement" and ae.n_iter_ == 3
    assert ae.validation_scores_ is None
    assert ae.best_loss_ == min(ae.loss_curve_)


def test_best_loss_after_an_early_stopping_fit_is_the_lowest_of_the_curve(digits):
    # partial_fit after a fit that watched validation scores: its best loss starts from
    # the curve so far (an alpha that raises the loss gives no new best)
    ae = SparseAutoencoder(n_hidden=8, solver="adam", max_iter=5, alpha=0.0,
                           early_stopping=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ae.fit(digits[:400])
    assert ae.best_loss_ is None
    ae.set_params(alpha=1.0).partial_fit(digits[:400])
    assert ae.loss_curve_[-1] > min(ae.loss_curve_[:-1])
    assert ae.best_loss_ == min(ae.loss_curve_)


def test_adaptive_learning_rate_divides_by_five(digits):
    ae = SparseAutoencoder(
        n_hidden=8, solver="sgd", learning_rate="adaptive", learning_rate_init=0.1,
        n_iter_no_change=1, tol=10.0, max_iter=6, random_state=0,
    )
    with pytest.warns(ConvergenceWarning):
        ae.fit(digits[:300])
    assert ae._optimizer_.learning_rate == pytest.approx(0.1 / 5**2)


@pytest.mark.parametrize("before", ["invscaling", "adaptive"])
def test_a_new_schedule_between_calls_restarts_the_step_size(digits, before):
    """A step decayed by "invscaling" or divided by "adaptive" is not "constant"'s: after
    set_params(learning_rate="constant") the stream steps with learning_rate_init again
    (the decayed step was once kept for the rest of the stream)."""
    ae = SparseAutoencoder(
        n_hidden=8, solver="sgd", learning_rate=before, learning_rate_init=0.1,
        n_iter_no_change=1, tol=10.0, random_state=0,
    )
    for _ in range(3):
        ae.partial_fit(digits[:200])
    if before == "adaptive":  # partial_fit does not apply the MLPs' adaptive rule itself
        ae._optimizer_.learning_rate = 0.1 / 25
    assert ae._optimizer_.learning_rate < 0.05
    ae.set_params(learning_rate="constant").partial_fit(digits[:200])
    assert ae._optimizer_.learning_rate == 0.1
    # the same schedule again keeps the step (only learning_rate_init restarts it)
    ae._optimizer_.learning_rate = 0.01
    ae.partial_fit(digits[:200])
    assert ae._optimizer_.learning_rate == 0.01


def test_verbose_prints_one_line_per_epoch(digits, capsys):
    ae = SparseAutoencoder(n_hidden=4, solver="adam", max_iter=3, verbose=2, random_state=0)
    with pytest.warns(ConvergenceWarning):
        ae.fit(digits[:200])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4
    assert all("samples/s" in line and line.startswith("Epoch") for line in lines[:3])
    assert lines[3].startswith("SparseAutoencoder: 3 epochs") and "stopped: max_iter" in lines[3]
    ae.set_params(verbose=1)
    with pytest.warns(ConvergenceWarning):
        ae.fit(digits[:200])
    assert len(capsys.readouterr().out.strip().splitlines()) == 1


def test_ctrl_c_keeps_the_last_step_and_warns(digits, monkeypatch):
    steps = []
    update = AdamOptimizer.update_params

    def interrupted_on_the_fourth_step(self, theta, grad):
        if len(steps) == 3:
            raise KeyboardInterrupt
        update(self, theta, grad)
        steps.append(theta.copy())

    monkeypatch.setattr(AdamOptimizer, "update_params", interrupted_on_the_fourth_step)
    ae = SparseAutoencoder(n_hidden=4, solver="adam", mini_batch_size=50, random_state=0)
    with pytest.warns(FitInterruptedWarning, match="interrupted after 0 epochs"):
        ae.fit(digits[:400])
    assert ae.stop_reason_ == "interrupted"
    np.testing.assert_array_equal(ae.intercept_visible_, ae._spec_.layout.unpack(steps[-1])[3])
    assert np.isfinite(ae.loss_)


# ------------------------------------------------------------------- inputs and errors
@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_float32_sparse_and_memmap_inputs(digits, solver, tmp_path):
    params = dict(n_hidden=6, solver=solver, max_iter=2, random_state=0, mini_batch_size=40)
    X = digits[:300]
    dense = _fit(X, **params)
    ae32 = _fit(X.astype(np.float32), **params)
    assert ae32.components_.dtype == np.float32
    assert ae32.transform(X.astype(np.float32)).dtype == np.float32
    np.testing.assert_allclose(ae32.components_, dense.components_, atol=1e-3)
    sparse = _fit(sp.csr_matrix(X), **params)
    np.testing.assert_allclose(sparse.components_, dense.components_, rtol=1e-9, atol=1e-12)
    path = tmp_path / "X.npy"
    np.save(path, X)
    mapped = _fit(np.load(path, mmap_mode="r"), **params)
    _assert_same_model(mapped, dense)


def test_memmap_is_read_by_mini_batch_not_copied(tmp_path):
    m, n = 20000, 64  # 10 MiB of float64
    np.save(tmp_path / "X.npy", np.random.RandomState(0).uniform(size=(m, n)))
    X = np.load(tmp_path / "X.npy", mmap_mode="r")
    ae = SparseAutoencoder(n_hidden=8, solver="adam", mini_batch_size=100, random_state=0)
    tracemalloc.start()
    try:
        ae.partial_fit(X)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < X.nbytes / 8, peak
    assert ae.n_iter_ == 1


def test_partial_fit_needs_a_mini_batch_solver():
    ae = SparseAutoencoder()
    assert not hasattr(ae, "partial_fit")
    with pytest.raises(AttributeError, match="no attribute 'partial_fit'") as error:
        ae.partial_fit(np.zeros((3, 2)))
    # scikit-learn's available_if chains the reason (as for MLPClassifier(solver="lbfgs"))
    assert "Set solver='adam' or 'sgd'" in str(error.value.__cause__)


def test_partial_fit_with_other_features_raises(digits):
    ae = SparseAutoencoder(n_hidden=4, solver="adam", random_state=0).partial_fit(digits[:50])
    with pytest.raises(ValueError, match="expecting 64 features"):
        ae.partial_fit(digits[:50, :10])


@pytest.mark.parametrize(
    "params,match",
    [
        (dict(solver="newton"), "solver"),
        (dict(solver="adam", mini_batch_size=0), "mini_batch_size"),
        (dict(solver="adam", mini_batch_size="all"), "mini_batch_size"),
        (dict(solver="adam", mini_batch_size=True), "must be an int"),
        (dict(solver="sgd", learning_rate="optimal"), "learning_rate"),
        (dict(solver="adam", validation_fraction=1.0), "validation_fraction"),
        (dict(solver="adam", beta_2=1.0), "beta_2"),
        (dict(solver="adam", n_iter_no_change=0), "n_iter_no_change"),
        (dict(solver="sgd", momentum=1.5), "momentum"),
    ],
)
def test_bad_parameters(digits, params, match):
    with pytest.raises(ValueError, match=match):
        SparseAutoencoder(**params).fit(digits[:20])


def test_a_held_out_loss_that_overflows_is_an_error_that_keeps_the_model(digits):
    """A held-out row whose loss overflows makes every validation score -inf, so early
    stopping cannot compare epochs: the fit stops with NonFiniteLossError (as for a
    training row), without NumPy's overflow warnings, and keeps the model it had."""
    from skae.exceptions import NonFiniteLossError

    X = digits[:60].copy()
    X[7, 10] = 1e200  # held out for validation with random_state=0
    ae = _fit(digits[:60], n_hidden=4, max_iter=3, solver="adam", random_state=0)
    before = [p.copy() for p in _params(ae)]
    ae.set_params(early_stopping=True, validation_fraction=0.3, n_iter_no_change=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(NonFiniteLossError, match=r"the validation score became "
                           r"non-finite \(-inf\).*Scale the input"):
            ae.fit(X)
    for kept, fitted in zip(_params(ae), before):  # the model it had
        np.testing.assert_array_equal(kept, fitted)


def test_early_stopping_needs_rows_to_hold_out():
    with pytest.raises(ValueError, match="no training or no validation rows"):
        SparseAutoencoder(solver="adam", early_stopping=True, validation_fraction=0.9).fit(
            np.random.RandomState(0).uniform(size=(2, 3))
        )


def test_dask_input_asks_for_lbfgs(digits):
    da = pytest.importorskip("dask.array")
    with pytest.raises(ValueError, match="does not support dask arrays; use solver='lbfgs'"):
        SparseAutoencoder(solver="adam").fit(da.from_array(digits[:100], chunks=50))


def test_array_api_input_asks_for_lbfgs(digits, array_api_dispatch):
    xps = pytest.importorskip("array_api_strict")
    with pytest.raises(ValueError, match="use solver='lbfgs'"):
        SparseAutoencoder(solver="sgd").fit(xps.asarray(digits[:100]))


@pytest.mark.parametrize(
    "params",
    [
        dict(activation="tanh", tied_weights=True),
        dict(noise="gaussian", noise_level=0.1, loss="cross_entropy"),
        dict(decoder="linear", batch_size=16),
    ],
)
def test_options_work_with_the_mini_batch_solvers(digits, params):
    X = digits[:300]
    ae = _fit(X, n_hidden=8, solver="adam", learning_rate_init=0.01, max_iter=5,
              random_state=0, **params)
    assert ae.loss_curve_[-1] < ae.loss_curve_[0]
    if params.get("tied_weights"):
        assert ae.decoder_components_ is ae.components_


def test_caller_data_unchanged(digits):
    X = digits[:200].copy()
    before = X.copy()
    _fit(X, n_hidden=4, solver="sgd", noise="mask", noise_level=0.3, max_iter=2)
    np.testing.assert_array_equal(X, before)


def test_pickled_model_continues_as_the_original(digits):
    import pickle

    ae = SparseAutoencoder(n_hidden=6, solver="sgd", mini_batch_size=30, random_state=0)
    ae.partial_fit(digits[:90])
    copy = pickle.loads(pickle.dumps(ae))
    ae.partial_fit(digits[90:180])
    copy.partial_fit(digits[90:180])
    _assert_same_model(ae, copy)


def test_user_guide_example_prints_what_the_page_shows():
    """The literal block of the user guide's section on mini-batch solvers."""
    import contextlib
    import io
    import re
    from pathlib import Path

    docs = Path(__file__).resolve().parents[1] / "docs" / "user_guide.rst"
    if not docs.is_file():
        pytest.skip("needs the source checkout (docs/)")
    text = docs.read_text(encoding="utf-8")
    section = text[text.index("Mini-batch solvers and streams\n") :]
    block = re.search(r"::\n\n((?:    .*\n|\n)+)", section).group(1)
    code = "\n".join(line[4:] for line in block.splitlines())
    shown = [line[2:] for line in code.splitlines() if line.startswith("# ")]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "mini_batch_example.py", "exec"), {"__name__": "__main__"})
    printed = out.getvalue().splitlines()
    assert len(printed) == len(shown)
    # Words equal; numbers close (the page shows one machine's run: another BLAS rounds
    # differently, which moves the epoch at which early stopping ends by a few).
    for line, expected in zip(printed, shown):
        got, want = line.split(), expected.split()
        assert len(got) == len(want), (line, expected)
        for g, w in zip(got, want):
            try:
                g_value, w_value = float(g), float(w)
            except ValueError:
                assert g == w, (line, expected)
                continue
            assert g_value == pytest.approx(w_value, rel=0.1, abs=0.02), (line, expected)


def test_noise_is_drawn_afresh_for_every_mini_batch(digits, monkeypatch):
    import skae._stochastic as stochastic

    seeds = []

    def recorded(kind, level, seed):
        seeds.append(seed)
        return Corruption(kind, level, seed)

    monkeypatch.setattr(stochastic, "Corruption", recorded)
    _fit(digits[:300], n_hidden=4, solver="adam", noise="mask", noise_level=0.3,
         mini_batch_size=100, max_iter=2, random_state=0)
    assert len(seeds) == 6 and len(set(seeds)) == 6


# ----------------------------------------------------------------------- the optimisers
# 70 000 parameters: the update is cut into slices for the worker threads
@pytest.mark.parametrize("n", [1000, 70_000])
def test_adam_step_is_scikit_learns_update_bit_for_bit(n):
    # Adam's rule as scikit-learn's AdamOptimizer writes it, with temporaries
    rng = np.random.default_rng(0)
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    optimizer = AdamOptimizer(n, lr, b1, b2, eps)
    theta = rng.random(n)
    expected, ms, vs = theta.copy(), np.zeros(n), np.zeros(n)
    for t in range(1, 21):
        grad = rng.standard_normal(n)
        optimizer.update_params(theta, grad)
        ms = b1 * ms + (1 - b1) * grad
        vs = b2 * vs + (1 - b2) * (grad * grad)
        step_size = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
        expected -= step_size * ms / (np.sqrt(vs) + eps)
    np.testing.assert_array_equal(theta, expected)


@pytest.mark.parametrize("n", [1000, 70_000])
@pytest.mark.parametrize("nesterov", [True, False])
def test_sgd_step_is_scikit_learns_update_bit_for_bit(n, nesterov):
    # the rule of scikit-learn's SGDOptimizer, with temporaries
    rng = np.random.default_rng(1)
    lr, momentum = 0.05, 0.9
    optimizer = SGDOptimizer(n, lr, "constant", momentum, nesterov)
    theta = rng.random(n)
    expected, velocity = theta.copy(), np.zeros(n)
    for _ in range(10):
        grad = rng.standard_normal(n)
        optimizer.update_params(theta, grad)
        velocity = momentum * velocity - lr * grad
        expected += momentum * velocity - lr * grad if nesterov else velocity
    np.testing.assert_array_equal(theta, expected)


def test_a_mini_batch_is_cut_in_two_blocks_whatever_the_thread_count(digits):
    assert minibatch_block_rows(200) == 100
    assert minibatch_block_rows(201) == 101
    assert minibatch_block_rows(63) == 63  # small: one block
    X = np.ascontiguousarray(digits[:200])
    spec = AutoencoderSpec(64, 32, alpha=1e-3, beta=1.0, rho=0.1)
    theta = spec.layout.initialize(np.random.RandomState(0))
    objectives = [
        AutoencoderObjective(spec, X, block_rows=100, n_workers=workers) for workers in (1, 2)
    ]
    assert objectives[1].blocks == [(0, 100), (100, 200)] and objectives[1].n_workers == 2
    (J1, g1), (J2, g2) = (objective(theta) for objective in objectives)
    assert J1 == J2
    np.testing.assert_array_equal(g1, g2)
    J3, g3 = minibatch_objective(spec, X, slice(None), block_rows=100)(theta)
    assert J3 == J1
    np.testing.assert_array_equal(g3, g1)
    # two blocks change only the rounding of the sums
    J, grad = AutoencoderObjective(spec, X)(theta)
    np.testing.assert_allclose(J1, J, rtol=1e-12)
    np.testing.assert_allclose(g1, grad, rtol=1e-10, atol=1e-15)


def test_objectives_of_successive_mini_batches_reuse_buffers_with_the_same_results(digits):
    X = np.ascontiguousarray(digits[:300])
    spec = AutoencoderSpec(64, 16, alpha=1e-3, beta=3.0, rho=0.1)
    theta = spec.layout.initialize(np.random.RandomState(0))
    objective_of = autoencoder_rows(spec, X)

    def arrays(objective):
        pairs = objective.totals + [g for grads in objective.block_grads for g in grads]
        return {id(a) for pair in pairs for a in pair} | {id(objective.H)}

    first = objective_of(slice(0, 100), None)
    J, grad = first(theta)
    second = objective_of(slice(100, 200), None)
    assert arrays(second) == arrays(first)  # reused, not new arrays
    J2, grad2 = second(theta)
    fresh = [
        minibatch_objective(spec, X, rows, block_rows=50)
        for rows in (slice(0, 100), slice(100, 200))
    ]
    assert J == fresh[0](theta)[0] and J2 == fresh[1](theta)[0]
    np.testing.assert_array_equal(grad2, fresh[1](theta)[1])


def test_buffer_pool_hands_out_each_array_once_until_rewound():
    pool = BufferPool()
    a, b = pool.take((3, 4), np.float32), pool.take((3, 4), np.float32)
    assert a is not b and a.shape == (3, 4) and a.dtype == np.float32
    c = pool.take(5, np.float64)
    pool.rewind()
    again = [pool.take((3, 4), np.float32), pool.take((3, 4), np.float32)]
    assert {id(x) for x in again} == {id(a), id(b)}
    assert pool.take(5, np.float64) is c
    assert pool.take(5, np.float32) is not c  # another dtype: another array


def test_blas_is_limited_once_per_run_not_per_mini_batch(digits, monkeypatch):
    import skae._parallel as parallel

    calls = []
    original = parallel._in_limiter_thread

    def counting(function):
        calls.append(function)
        return original(function)

    monkeypatch.setattr(parallel, "_in_limiter_thread", counting)
    ae = SparseAutoencoder(n_hidden=8, solver="adam", mini_batch_size=50, random_state=0)
    ae.partial_fit(digits)  # 36 mini-batches
    assert len(calls) == 2  # limited once, restored once


def test_continuing_a_linear_decoder_with_cross_entropy_is_refused(digits):
    """decoder='auto' chose a linear decoder for standardised data at the start of a
    stream; switching to the cross-entropy loss cannot continue that stream (the loss
    needs a sigmoid decoder), as the same settings given explicitly cannot start one; the
    model stays as it was."""
    from sklearn.preprocessing import StandardScaler

    Z = StandardScaler().fit_transform(digits[:200])
    ae = SparseAutoencoder(8, solver="adam", max_iter=2, random_state=0)
    ae.partial_fit(Z)
    assert ae.decoder_ == "linear"
    before = ae.components_.copy()
    ae.set_params(loss="cross_entropy")
    with pytest.raises(ValueError, match=r"needs a sigmoid decoder.*decoder_='linear'"):
        ae.partial_fit(digits[:200])
    np.testing.assert_array_equal(ae.components_, before)
    assert ae._spec_.loss == "squared" and ae.decoder_ == "linear"


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # short fits
@pytest.mark.parametrize("solver", ["lbfgs", "adam", "sgd"])
def test_a_warm_started_fit_chooses_the_decoder_for_its_data(digits, solver):
    """decoder='auto' looks at the data of every fit, warm-started ones included, for
    every solver (the mini-batch solvers kept the first fit's sigmoid decoder, which
    cannot reconstruct data in [-1, 3]); a stream of partial_fit calls keeps the decoder
    its first call chose."""
    X = digits[:200]
    wide = 4.0 * X - 1.0  # in [-1, 3]
    ae = SparseAutoencoder(8, solver=solver, max_iter=3, warm_start=True, random_state=0)
    assert ae.fit(X).decoder_ == "sigmoid"
    assert ae.fit(wide).decoder_ == "linear"
    assert ae.inverse_transform(ae.transform(wide)).min() < 0.0  # not a sigmoid
    assert ae.fit(X).decoder_ == "sigmoid"  # and back, with loss='cross_entropy' too
    assert ae.set_params(loss="cross_entropy").fit(X).decoder_ == "sigmoid"
    if solver != "lbfgs":
        stream = SparseAutoencoder(8, solver=solver, random_state=0).partial_fit(X)
        assert stream.partial_fit(wide).decoder_ == "sigmoid"


def test_interrupt_deferred_holds_ctrl_c_until_its_block_has_ended():
    import _thread

    from skae._parallel import interrupt_deferred

    done = []
    with pytest.raises(KeyboardInterrupt):
        with interrupt_deferred():
            _thread.interrupt_main()  # Ctrl-C now; without the deferral it raises here
            done.append("rest of the block")
    assert done == ["rest of the block"]
    with interrupt_deferred():  # no Ctrl-C: nothing raised, the handler is restored
        done.append("quiet")
    import signal

    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_inside_a_parameter_update_keeps_the_whole_step(digits, monkeypatch):
    """Ctrl-C while an Adam step is being applied (in place, slice by slice): the step is
    finished, then the fit stops and keeps it; never half of it."""
    import _thread

    import skae._stochastic as stochastic

    real = stochastic.elementwise
    calls = []

    def fit(update):
        monkeypatch.setattr(stochastic, "elementwise", update)
        calls.clear()
        ae = SparseAutoencoder(n_hidden=4, solver="adam", mini_batch_size=50, random_state=0)
        with pytest.warns(FitInterruptedWarning):
            ae.fit(digits[:400])
        return ae

    def ctrl_c_midway_through_the_fourth_step(part, size):
        calls.append(size)
        if len(calls) != 4:
            return real(part, size)

        def halves(start, stop, worker):
            middle = (start + stop) // 2
            part(start, middle, worker)
            _thread.interrupt_main()
            part(middle, stop, worker)

        return real(halves, size)

    midway = fit(ctrl_c_midway_through_the_fourth_step)
    update = AdamOptimizer.update_params

    def ctrl_c_before_the_fifth_step(self, theta, grad):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        update(self, theta, grad)

    monkeypatch.setattr(AdamOptimizer, "update_params", ctrl_c_before_the_fifth_step)
    after_four_steps = fit(real)
    assert midway.stop_reason_ == after_four_steps.stop_reason_ == "interrupted"
    np.testing.assert_array_equal(midway.components_, after_four_steps.components_)
    np.testing.assert_array_equal(midway.intercept_visible_, after_four_steps.intercept_visible_)
    assert midway._optimizer_.t == after_four_steps._optimizer_.t == 4


def test_a_mini_batch_larger_than_the_data_is_clipped_with_a_warning(digits):
    """As the MLPs clip batch_size: one step over all the rows per epoch, and a warning
    that says so (the classifier's supervised stages name their stage); "auto" and a size
    no larger than the rows give none."""
    from skae import StackedAutoencoderClassifier
    from skae.exceptions import SkaeWarning

    X = digits[:150]
    params = dict(n_hidden=4, solver="sgd", shuffle=False, max_iter=2, random_state=0)
    with pytest.warns(SkaeWarning, match=r"mini_batch_size=500 is larger than X \(150 rows\)"):
        clipped = _fit(X, mini_batch_size=500, **params)
    exact = _fit(X, mini_batch_size=150, **params)
    _assert_same_model(clipped, exact)
    assert clipped.t_ == exact.t_ == 300
    with warnings.catch_warnings():
        warnings.simplefilter("error", SkaeWarning)
        _fit(X, mini_batch_size="auto", **params)
        stream = SparseAutoencoder(mini_batch_size=100, **params).partial_fit(X[:100])
    with pytest.warns(SkaeWarning, match=r"larger than X \(50 rows\)"):
        stream.partial_fit(X[100:])  # a last, shorter chunk
    # early_stopping holds 15 of the 150 rows out: the steps run over the other 135
    held_out = dict(params, early_stopping=True, validation_fraction=0.1)
    with pytest.warns(SkaeWarning, match=r"=140 is larger than the training rows of X .*135"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            _fit(X, mini_batch_size=140, **held_out)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SkaeWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        _fit(X, mini_batch_size=135, **held_out)
    y = np.arange(150) % 3
    # the pretraining layer holds out rows too (early_stopping): both say so
    pretraining = pytest.warns(SkaeWarning, match=r"=140 is larger than the training rows of X")
    with pytest.warns(SkaeWarning, match=r"=140 is larger than the softmax stage.s .* \(135"):
        with pretraining, warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            StackedAutoencoderClassifier(
                (4,), solver="adam", mini_batch_size=140, max_iter=1, softmax_max_iter=1,
                fine_tune=None, early_stopping=True, random_state=0,
            ).fit(X, y)
