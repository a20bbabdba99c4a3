"""Edge cases of the mini-batch solvers, score_samples and the stacks' new attributes."""

import pickle
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

from skae import SparseAutoencoder, StackedAutoencoder, _stochastic
from skae.exceptions import NonFiniteLossError


@pytest.fixture(scope="module")
def digits():
    return load_digits().data[:300] / 16.0


def _params(ae):
    return [ae.components_, ae.intercept_hidden_, ae.decoder_components_, ae.intercept_visible_]


def _assert_same_model(a, b):
    for x, y in zip(_params(a), _params(b)):
        np.testing.assert_array_equal(x, y)


def _fail_after(monkeypatch, n_calls):
    """Make the mini-batch objective raise on its call number ``n_calls + 1``."""
    real = _stochastic.minibatch_objective
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) > n_calls:
            raise RuntimeError("simulated failure")
        return real(*args, **kwargs)

    monkeypatch.setattr(_stochastic, "minibatch_objective", failing)


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_failed_partial_fit_leaves_the_stream_as_it_was(digits, solver, monkeypatch):
    # A partial_fit that fails half-way through its epoch must not advance the optimiser
    # (Adam's moments, SGD's velocity) or the random state: the stream then continues as
    # if the failed call had not been made.
    params = dict(n_hidden=8, solver=solver, mini_batch_size=20, random_state=0)
    reference = SparseAutoencoder(**params).partial_fit(digits[:100])
    reference.partial_fit(digits[100:200])

    ae = SparseAutoencoder(**params).partial_fit(digits[:100])
    with monkeypatch.context() as patch:
        _fail_after(patch, 3)
        with pytest.raises(RuntimeError, match="simulated failure"):
            ae.partial_fit(digits[100:200])
    ae.partial_fit(digits[100:200])
    _assert_same_model(ae, reference)
    assert ae.n_iter_ == reference.n_iter_ == 2
    assert ae.loss_curve_ == reference.loss_curve_


def test_failed_warm_start_fit_leaves_the_progress_as_it_was(digits, monkeypatch):
    # A warm-started fit that fails after some epochs must not leave those epochs in the
    # progress that a later partial_fit continues (n_iter_, t_, loss_curve_).
    params = dict(n_hidden=8, solver="adam", max_iter=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ae = SparseAutoencoder(**params).fit(digits)
    ae.set_params(warm_start=True)
    with monkeypatch.context() as patch:
        _fail_after(patch, 4)  # two epochs of two mini-batches, then a failure
        with pytest.raises(RuntimeError, match="simulated failure"):
            ae.fit(digits)
    ae.partial_fit(digits)
    assert ae.n_iter_ == 4
    assert len(ae.loss_curve_) == 4
    assert ae.t_ == 4 * len(digits)


def test_solver_changed_between_partial_fit_calls_is_used(digits):
    # set_params(solver="sgd") between partial_fit calls must take effect, not keep
    # stepping with the Adam state of the earlier calls. A tiny SGD step barely moves
    # the parameters; Adam's normalised step (learning_rate_init=1e-3) would move them
    # by about 1e-3.
    ae = SparseAutoencoder(n_hidden=8, solver="adam", shuffle=False, random_state=0)
    ae.partial_fit(digits)
    before = [p.copy() for p in _params(ae)]
    ae.set_params(solver="sgd", learning_rate_init=1e-12, momentum=0.0)
    ae.partial_fit(digits)
    for old, new in zip(before, _params(ae)):
        np.testing.assert_allclose(new, old, rtol=0, atol=1e-9)
    assert ae.n_iter_ == 2


def test_step_that_overflows_raises_and_keeps_the_model(digits):
    # An SGD step so large that the parameters overflow to inf must raise, not leave a
    # model whose transform and score_samples return NaN.
    X = load_digits().data[:300]  # unscaled: large gradients
    ae = SparseAutoencoder(
        n_hidden=5, solver="sgd", learning_rate_init=1e308, mini_batch_size=300, random_state=0
    )
    with np.errstate(all="ignore"), pytest.raises(NonFiniteLossError, match="non-finite"):
        ae.partial_fit(X)
    assert not hasattr(ae, "components_")

    fitted = SparseAutoencoder(n_hidden=5, solver="sgd", mini_batch_size=300, random_state=0)
    fitted.partial_fit(X)
    kept = pickle.loads(pickle.dumps(fitted))
    fitted._optimizer_.learning_rate = 1e308  # as after a schedule gone wrong
    with np.errstate(all="ignore"), pytest.raises(NonFiniteLossError, match="non-finite"):
        fitted.partial_fit(X)
    _assert_same_model(fitted, kept)
    assert np.all(np.isfinite(fitted.score_samples(X)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_score_samples_of_overflowing_input_raises_instead_of_nan(digits, dtype):
    # Finite values near the largest float overflow the products of the reconstruction
    # to +inf and -inf, whose sum is NaN; score_samples and score must say so rather than
    # return NaN. Weights of +2 and -2 on two pixels give +inf and -inf products; a CSR
    # row sums its stored entries in order (a BLAS may skip the NaN by blocking).
    X = digits.astype(dtype)
    ae = SparseAutoencoder(n_hidden=16, max_iter=30, random_state=0)
    stack = StackedAutoencoder((16, 8), max_iter=20, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ae.fit(X)
        stack.fit(X)
    for W1 in (ae.components_, stack.autoencoders_[0].components_):
        W1[0, :2] = [2.0, -2.0]
    huge = np.zeros((3, 64), dtype=dtype)
    huge[1, :2] = np.finfo(dtype).max
    huge = sp.csr_matrix(huge)
    with np.errstate(all="ignore"):
        for method in (ae.score_samples, ae.score, stack.score_samples):
            with pytest.raises(ValueError, match="overflow the reconstruction"):
                method(huge)
    # large values that do not overflow still score (very low, not NaN)
    assert np.all(ae.score_samples(X[:3] * 1e3) < ae.score_samples(X[:3]))


def test_transform_of_overflowing_input_raises_instead_of_nan(digits):
    # transform's products overflow to +inf and -inf as score_samples' do: an error,
    # not a NaN code. (CSR: its rows sum their stored entries in order; a BLAS's fused
    # multiply-adds may not overflow.)
    ae = SparseAutoencoder(n_hidden=16, max_iter=30, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ae.fit(digits)
    ae.components_[0, :2] = [2.0, -2.0]
    huge = np.zeros((3, 64))
    huge[1, :2] = np.finfo(np.float64).max
    huge = sp.csr_matrix(huge)
    with np.errstate(all="ignore"):
        with pytest.raises(ValueError, match="overflow the code to NaN"):
            ae.transform(huge)
    assert np.all(np.isfinite(ae.transform(huge[[0, 2]])))


@pytest.mark.parametrize(
    "solver, change",
    [
        ("adam", {"learning_rate_init": 1e-12}),
        ("sgd", {"learning_rate_init": 1e-12, "momentum": 0.0}),
    ],
)
def test_solver_settings_changed_between_partial_fit_calls_are_used(digits, solver, change):
    # set_params(learning_rate_init=...) (and, for SGD, momentum) between partial_fit
    # calls must change the next steps: with a tiny step and no momentum the parameters
    # barely move, where the settings of the first call would move them by about 1e-3.
    ae = SparseAutoencoder(n_hidden=8, solver=solver, shuffle=False, random_state=0)
    ae.partial_fit(digits)
    before = [p.copy() for p in _params(ae)]
    ae.set_params(**change)
    ae.partial_fit(digits)
    for old, new in zip(before, _params(ae)):
        np.testing.assert_allclose(new, old, rtol=0, atol=1e-9)


@pytest.mark.parametrize("solver", ["lbfgs", "adam", "sgd"])
def test_an_overflowing_loss_raises_without_numpy_warnings(solver):
    """Data so large that the squared loss overflows: NonFiniteLossError names the fix,
    and no RuntimeWarning from the loss's dot product comes before it."""
    import warnings

    X = load_digits().data[:100] * 1e200
    ae = SparseAutoencoder(n_hidden=4, solver=solver, max_iter=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(NonFiniteLossError, match="Scale the input"):
            ae.fit(X)
    assert not hasattr(ae, "components_")
