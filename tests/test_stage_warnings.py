"""What the fit's warnings and errors tell the user: which stage of a stacked fit a warning
is about and which parameters govern it, the user's line as its location (also inside
GridSearchCV), a clear error for a model fitted under array API dispatch and used outside
it, and the documented behaviour of ``fine_tune="top"``."""

import os
import re
from types import SimpleNamespace

import numpy as np
import pytest
import sklearn
from numpy.testing import assert_allclose, assert_array_equal
from sklearn import config_context
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV

from skae import SparseAutoencoder, StackedAutoencoder, StackedAutoencoderClassifier
from skae import _optimize as optimize_module
from skae._array import to_numpy
from skae._network import FineTuneObjective
from skae._objective import AutoencoderObjective
from skae._optimize import run_lbfgs
from skae.exceptions import FitInterruptedWarning

# Few iterations per stage on purpose: these tests are about the warnings, and an upper
# layer's codes may vary little after so few (its ConstantCodesWarning is tested elsewhere).
no_constant_codes = pytest.mark.filterwarnings("ignore::skae.exceptions.ConstantCodesWarning")


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:200] / 16.0, y[:200]


def _messages(record, category):
    return [str(w.message) for w in record if issubclass(w.category, category)]


def _one(messages, stage):
    found = [m for m in messages if m.startswith(stage + ":")]
    assert len(found) == 1, (stage, messages)
    return found[0]


def _names_only_the_stage_parameters(message):
    """No bare ``max_iter`` or ``tol``: only prefixed names (``softmax_max_iter``, ...)."""
    return not re.search(r"(?<![a-z_])(max_iter|tol)\b", message)


_STAGE_PARAMETERS = {"max_iter": "softmax_max_iter", "tol": "fine_tune_tol"}


# ------------------------------------------------------------------ which stage, which setting
@no_constant_codes
def test_each_stage_warning_names_the_parameters_that_govern_it(digits):
    """A ConvergenceWarning says which stage stopped early and advises on that stage's
    parameters: softmax_max_iter for the softmax, fine_tune_max_iter for fine-tuning (both
    with fine_tune_tol), the per-layer max_iter and tol for pretraining, with the layer."""
    X, y = digits
    model = StackedAutoencoderClassifier(
        (6, 5, 4), max_iter=[30, 2, 30], softmax_max_iter=3, fine_tune_max_iter=4,
        random_state=0,
    )
    with pytest.warns(ConvergenceWarning) as record:
        model.fit(X, y)
    messages = _messages(record, ConvergenceWarning)
    name = "StackedAutoencoderClassifier"

    pretraining = _one(messages, f"{name} (pretraining, layer 2 of 3)")
    assert "it reached max_iter=2; increase max_iter or tol." in pretraining
    softmax = _one(messages, f"{name} (softmax)")
    assert "it reached softmax_max_iter=3; increase softmax_max_iter or fine_tune_tol." in (
        softmax
    )
    fine_tuning = _one(messages, f"{name} (fine-tuning)")
    assert (
        "it reached fine_tune_max_iter=4; increase fine_tune_max_iter or fine_tune_tol."
        in fine_tuning
    )
    # the supervised stages never send the user to the pretraining settings
    for message in (softmax, fine_tuning):
        assert _names_only_the_stage_parameters(message), message
    # nothing is attributed to a SparseAutoencoder the user never made
    assert not any(m.startswith("SparseAutoencoder") for m in messages)


@no_constant_codes
def test_the_unsupervised_stack_names_the_layer(digits):
    X, _ = digits
    with pytest.warns(ConvergenceWarning) as record:
        StackedAutoencoder((6, 5, 4), max_iter=[2, 30, 30], random_state=0).fit(X)
    message = _one(
        _messages(record, ConvergenceWarning), "StackedAutoencoder (pretraining, layer 1 of 3)"
    )
    assert "it reached max_iter=2; increase max_iter or tol." in message
    assert record[0].filename == __file__


def test_warm_started_softmax_names_softmax_max_iter(digits):
    """Warm-started with fine_tune=None, the classifier continues stage 2: its warning
    names softmax_max_iter, the parameter that limits that run."""
    X, y = digits
    model = StackedAutoencoderClassifier(
        (8,), max_iter=30, tol=1e-2, softmax_max_iter=200, fine_tune=None, random_state=0
    ).fit(X, y)
    model.set_params(warm_start=True, softmax_max_iter=1, fine_tune_tol=0.0)
    with pytest.warns(ConvergenceWarning) as record:
        model.fit(X, y)
    (message,) = _messages(record, ConvergenceWarning)
    assert message.startswith("StackedAutoencoderClassifier (softmax):")
    assert "softmax_max_iter=1; increase softmax_max_iter or fine_tune_tol." in message


def _wrong_gradient(theta):  # of the wrong sign: the line search finds no decrease
    return float(theta @ theta), -2.0 * theta


def _cosh(theta):
    return float(np.sum(np.cosh(theta))), np.sinh(theta)


@pytest.mark.parametrize(
    "fun, max_iter, advice",
    [
        (_cosh, 2, "it reached softmax_max_iter=2; increase softmax_max_iter or fine_tune_tol"),
        (_wrong_gradient, 50, "Scale the input, raise fine_tune_tol, or use float64."),
    ],
    ids=["max_iter", "line_search"],
)
def test_run_lbfgs_advises_on_the_stage_parameters(fun, max_iter, advice):
    """max_iter reached and a failed line search advise on the parameters of the stage
    given to run_lbfgs, under the stage's name."""
    stage = optimize_module.FitStage("Stage", **_STAGE_PARAMETERS)
    with pytest.warns(ConvergenceWarning) as record:
        run_lbfgs(fun, np.linspace(1.0, 3.0, 4), max_iter=max_iter, tol=1e-12, stage=stage)
    (message,) = _messages(record, ConvergenceWarning)
    assert message.startswith("Stage: ")
    assert advice in message
    assert _names_only_the_stage_parameters(message), message


def test_the_evaluation_limit_advises_on_the_stage_parameters():
    """The evaluation limit reached before max_iter (status 1) names the stage's
    iteration parameter, whose value sets the limit, and its tolerance."""
    stage = optimize_module.FitStage("Stage", **_STAGE_PARAMETERS)
    result = SimpleNamespace(status=1, nfev=1000, nit=30, message="STOP: EVALUATIONS")
    message = optimize_module._status_message(result, 50, 1000, stage)
    assert "(softmax_max_iter=50 allows 20 per iteration)" in message
    assert "raise fine_tune_tol" in message
    assert _names_only_the_stage_parameters(message), message


# ------------------------------------------------------------------ two interrupts
def _interrupt_each(monkeypatch, cls, at):
    """Raise KeyboardInterrupt from evaluation ``at`` of every ``cls`` objective (once per
    objective: each layer or stage is interrupted once)."""
    original = cls.__call__
    calls = {}
    seen = []  # keeps the objectives alive, so that their ids stay theirs

    def interrupting(self, theta):
        if id(self) not in calls:
            seen.append(self)
        calls[id(self)] = calls.get(id(self), 0) + 1
        if calls[id(self)] == at:
            raise KeyboardInterrupt
        return original(self, theta)

    monkeypatch.setattr(cls, "__call__", interrupting)


@no_constant_codes
def test_two_interrupts_give_two_warnings_told_apart(digits, monkeypatch):
    """Ctrl-C in two layers after as many iterations, and in the two supervised stages:
    each FitInterruptedWarning names its own layer or stage."""
    X, y = digits
    _interrupt_each(monkeypatch, AutoencoderObjective, at=3)
    _interrupt_each(monkeypatch, FineTuneObjective, at=3)
    model = StackedAutoencoderClassifier(
        (8, 6), max_iter=20, softmax_max_iter=20, fine_tune_max_iter=20, random_state=0
    )
    with pytest.warns(FitInterruptedWarning) as record:
        model.fit(X, y)
    messages = _messages(record, FitInterruptedWarning)
    assert len(messages) == 4
    assert len(set(messages)) == 4, messages
    name = "StackedAutoencoderClassifier"
    for stage in ("pretraining, layer 1 of 2", "pretraining, layer 2 of 2", "softmax",
                  "fine-tuning"):
        assert "training was interrupted after" in _one(messages, f"{name} ({stage})")
    # the two layers stopped after as many iterations: only the layer tells them apart
    assert model.stage_n_iter_["pretraining"][0] == model.stage_n_iter_["pretraining"][1]
    assert all(w.filename == __file__ for w in record)


# ------------------------------------------------------------------ where the warning points
@no_constant_codes
@pytest.mark.parametrize(
    "make",
    [
        lambda: SparseAutoencoder(8, max_iter=2, random_state=0),
        lambda: StackedAutoencoderClassifier(
            (8,), max_iter=2, softmax_max_iter=2, fine_tune_max_iter=2, random_state=0
        ),
    ],
    ids=["SparseAutoencoder", "StackedAutoencoderClassifier"],
)
def test_warnings_inside_grid_search_point_at_the_users_line(digits, make):
    """GridSearchCV runs the fits through joblib (in sequence with n_jobs=1): the warnings
    name the line that called GridSearchCV.fit, as they do outside it; scikit-learn's own
    warnings name a line inside scikit-learn."""
    X, y = digits
    search = GridSearchCV(make(), {"alpha": [1e-3, 1e-2]}, cv=2, n_jobs=1)
    with pytest.warns(ConvergenceWarning) as record:
        search.fit(X, y)
    assert len(record) >= 4
    assert {w.filename for w in record} == {__file__}


def test_warnings_in_a_worker_thread_name_a_real_file(digits):
    """In a thread of a pool the user's line is not on the stack: the warning names the
    scikit-learn code that called fit (a file, not the interpreter's 'sys')."""
    from joblib import parallel_backend

    X, _ = digits
    search = GridSearchCV(SparseAutoencoder(8, max_iter=2, random_state=0),
                          {"alpha": [1e-3, 1e-2]}, cv=2, n_jobs=2)
    with pytest.warns(ConvergenceWarning) as record:
        with parallel_backend("threading", n_jobs=2):
            search.fit(X)
    sklearn_dir = os.path.dirname(sklearn.__file__)
    for w in record:
        assert os.path.isfile(w.filename), w.filename
        assert w.filename == __file__ or w.filename.startswith(sklearn_dir), w.filename


# ------------------------------------------------------------------ used outside dispatch
def _dispatch_available():
    try:
        with config_context(array_api_dispatch=True):
            return True
    except (ImportError, RuntimeError):
        return False


def _namespace(name):
    if name == "torch":
        torch = pytest.importorskip("torch", reason="PyTorch is not installed")
        return lambda a: torch.asarray(np.array(a), device="cpu")
    xps = pytest.importorskip("array_api_strict", reason="array_api_strict is not installed")
    return lambda a: xps.asarray(np.array(a))


MODELS = {
    "SparseAutoencoder": lambda: SparseAutoencoder(8, max_iter=5, random_state=0),
    "StackedAutoencoder": lambda: StackedAutoencoder((8, 6), max_iter=5, random_state=0),
    "StackedAutoencoderClassifier": lambda: StackedAutoencoderClassifier(
        (8,), max_iter=5, softmax_max_iter=5, fine_tune_max_iter=5, random_state=0
    ),
}


def _calls(model, X, y, H):
    calls = {"transform": lambda: model.transform(X)}
    if hasattr(model, "inverse_transform"):
        calls["inverse_transform"] = lambda: model.inverse_transform(H)
    if hasattr(model, "predict"):
        for method in ("predict", "predict_proba", "predict_log_proba", "decision_function"):
            calls[method] = lambda method=method: getattr(model, method)(X)
        calls["score"] = lambda: model.score(X, y)
    elif hasattr(model, "score"):
        calls["score"] = lambda: model.score(X)
    if hasattr(model, "score_samples"):
        calls["score_samples"] = lambda: model.score_samples(X)
    return calls


@pytest.mark.skipif(not _dispatch_available(), reason="array API dispatch is unavailable")
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # 5 iterations
@no_constant_codes
@pytest.mark.parametrize("name", ["array_api_strict", "torch"])
@pytest.mark.parametrize("model_name", list(MODELS))
def test_a_model_fitted_under_dispatch_used_outside_it_says_what_to_do(digits, name,
                                                                       model_name):
    """Fitted under array API dispatch, used with dispatch off on NumPy input: a ValueError
    naming the two remedies, each of which then works."""
    asarray = _namespace(name)
    X, y = digits
    with config_context(array_api_dispatch=True):
        model = MODELS[model_name]().fit(asarray(X), y)
    H = np.full((3, 6 if model_name == "StackedAutoencoder" else 8), 0.1)
    for method, call in _calls(model, X, y, H).items():
        with pytest.raises(ValueError, match="fitted under scikit-learn's array API") as info:
            call()
        message = str(info.value)
        assert f"This {model_name} was fitted" in message, method
        assert f"and {method} was called with array API dispatch off" in message
        assert "sklearn.config_context(array_api_dispatch=True)" in message
        assert "move_estimator_to(model, numpy" in message
        assert name in message  # the model's namespace
    # The first remedy: dispatch on, with input of the model's namespace.
    with config_context(array_api_dispatch=True):
        on_device = to_numpy(model.transform(asarray(X)))
    # The second: the model moved to NumPy (scikit-learn >= 1.9).
    try:
        from sklearn.utils._array_api import move_estimator_to
    except ImportError:
        return
    moved = move_estimator_to(model, np, "cpu")
    assert_allclose(moved.transform(X), on_device, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------ fine_tune="top"
def test_top_after_a_converged_softmax_is_fine_tune_none(digits):
    """fine_tune="top" minimises stage 2's objective again from where stage 2 stopped:
    after a softmax that converged it runs 0 iterations and gives fine_tune=None's model;
    when stage 2 stopped at softmax_max_iter it goes on and lowers the same loss."""
    X, y = digits
    settings = dict(max_iter=30, tol=1e-2, fine_tune_tol=1e-3, random_state=0)
    none = StackedAutoencoderClassifier((8,), fine_tune=None, softmax_max_iter=500,
                                        **settings).fit(X, y)
    top = StackedAutoencoderClassifier((8,), fine_tune="top", softmax_max_iter=500,
                                       **settings).fit(X, y)
    assert 0 < none.stage_n_iter_["softmax"] < 500  # converged
    assert top.stage_n_iter_["fine_tuning"] == 0
    assert top.fine_tuned_layers_ == (2,) and none.fine_tuned_layers_ == ()
    assert_array_equal(top.predict_proba(X), none.predict_proba(X))
    assert top.loss_ == none.loss_

    with pytest.warns(ConvergenceWarning, match="softmax_max_iter=3"):
        short = StackedAutoencoderClassifier((8,), fine_tune=None, softmax_max_iter=3,
                                             **settings).fit(X, y)
    with pytest.warns(ConvergenceWarning, match="softmax_max_iter=3"):
        more = StackedAutoencoderClassifier((8,), fine_tune="top", softmax_max_iter=3,
                                            **settings).fit(X, y)
    assert more.stage_n_iter_["fine_tuning"] > 0
    assert more.loss_ < short.loss_
    assert_array_equal(more.layers_[0].weights, short.layers_[0].weights)  # frozen
