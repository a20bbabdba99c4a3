"""What a fit records for the researcher running the stacked protocols: the wall time and
the stopping rule of every stage, one verbose line per stage (every iteration at
``verbose=2``), and the classifier's network before fine-tuning, kept by the same fit."""

import pickle
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

from skae import SparseAutoencoder, StackedAutoencoder, StackedAutoencoderClassifier
from skae._optimize import STOP_REASONS, run_lbfgs
from skae.exceptions import FitInterruptedWarning

# Few iterations per stage on purpose; an upper layer's codes may then vary little.
no_constant_codes = pytest.mark.filterwarnings("ignore::skae.exceptions.ConstantCodesWarning")

# Cut short by max_iter in every stage (each stage raises a ConvergenceWarning).
SHORT = dict(max_iter=4, softmax_max_iter=4, fine_tune_max_iter=4, random_state=0)
# Looser tolerances: every stage converges.
LOOSE = dict(
    alpha=[3e-3, 1e-4], max_iter=400, tol=1e-3, softmax_max_iter=400, fine_tune_max_iter=400,
    fine_tune_tol=1e-4, random_state=0,
)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:200] / 16.0, y[:200]


def _timed_fit(model, *data):
    start = time.perf_counter()
    model.fit(*data)
    return time.perf_counter() - start


def _summaries(out):
    return [line for line in out.splitlines() if ", stopped: " in line]


# ------------------------------------------------------------------ stage times and stop reasons
@no_constant_codes
def test_stack_records_each_layers_time_and_stop_reason(digits):
    X = digits[0]
    stack = StackedAutoencoder((8, 4), max_iter=4, random_state=0)
    with pytest.warns(ConvergenceWarning, match="reached max_iter=4"):
        wall = _timed_fit(stack, X)
    assert stack.stage_n_iter_ == {"pretraining": [4, 4]}
    assert stack.stage_stop_reasons_ == {"pretraining": ["max_iter", "max_iter"]}
    assert [ae.stop_reason_ for ae in stack.autoencoders_] == ["max_iter", "max_iter"]
    times = stack.stage_times_["pretraining"]
    assert len(times) == 2 and all(isinstance(t, float) and t > 0 for t in times)
    assert sum(times) <= wall

    stack.set_params(max_iter=400, tol=1e-3, alpha=[3e-3, 1e-4]).fit(X)  # converges
    assert all(r.startswith("converged") for r in stack.stage_stop_reasons_["pretraining"])
    assert all(0 < n < 400 for n in stack.stage_n_iter_["pretraining"])


@no_constant_codes
def test_classifier_records_each_stages_time_and_stop_reason(digits):
    X, y = digits
    model = StackedAutoencoderClassifier((8, 4), **SHORT)
    with pytest.warns(ConvergenceWarning) as record:
        wall = _timed_fit(model, X, y)
    # both layers, the softmax and fine-tuning stopped by max_iter
    assert sum(issubclass(w.category, ConvergenceWarning) for w in record) == 4
    assert model.stage_stop_reasons_ == {
        "pretraining": ["max_iter", "max_iter"], "softmax": "max_iter", "fine_tuning": "max_iter"
    }
    times = model.stage_times_
    assert set(times) == set(model.stage_n_iter_)
    assert len(times["pretraining"]) == 2
    stages = [*times["pretraining"], times["softmax"], times["fine_tuning"]]
    assert all(isinstance(t, float) and t > 0 for t in stages)
    assert sum(stages) <= wall


@no_constant_codes
def test_classifier_stop_reasons_of_a_converged_fit_and_of_stages_not_run(digits):
    X, y = digits
    model = StackedAutoencoderClassifier((8, 4), **LOOSE).fit(X, y)  # no ConvergenceWarning
    reasons = model.stage_stop_reasons_
    assert all(r in STOP_REASONS and r.startswith("converged") for r in reasons["pretraining"])
    assert reasons["softmax"].startswith("converged")
    assert reasons["fine_tuning"].startswith("converged")
    assert model.stage_n_iter_["fine_tuning"] < 400

    none = StackedAutoencoderClassifier((8, 4), fine_tune=None, **LOOSE).fit(X, y)
    assert none.stage_stop_reasons_["fine_tuning"] is None
    assert none.stage_times_["fine_tuning"] == 0.0 and none.stage_times_["softmax"] > 0
    # warm-started: no pretraining nor stage 2 this time
    none.set_params(warm_start=True, fine_tune="all").fit(X, y)
    assert none.stage_times_["pretraining"] == [] and none.stage_times_["softmax"] == 0.0
    assert none.stage_stop_reasons_["pretraining"] == []
    assert none.stage_stop_reasons_["softmax"] is None
    assert none.stage_stop_reasons_["fine_tuning"].startswith("converged")
    assert none.stage_times_["fine_tuning"] > 0


@pytest.mark.parametrize("own_lbfgs", [False, True])
def test_stop_reason_tells_the_gradient_rule_from_the_loss_change_rule(own_lbfgs):
    def quadratic(x):  # its gradient falls to any tolerance in a few iterations
        return float(x @ x), 2 * x

    def quartic(x):  # the loss flattens long before a gradient of 1e-300
        return float(np.sum(x**4)), 4 * x**3

    start = np.ones(3)
    gradient = run_lbfgs(quadratic, start, max_iter=100, tol=1e-5, own_lbfgs=own_lbfgs)
    assert gradient.reason == "converged (tol)"
    flat = run_lbfgs(quartic, start, max_iter=1000, tol=1e-300, own_lbfgs=own_lbfgs)
    assert flat.reason == "converged (loss change)" and flat.n_iter < 1000
    with pytest.warns(ConvergenceWarning, match="reached max_iter=2"):
        short = run_lbfgs(quartic, start, max_iter=2, tol=1e-300, own_lbfgs=own_lbfgs)
    assert short.reason == "max_iter"


def test_stop_reason_of_an_interrupted_fit():
    calls = []

    def interrupted(x):
        calls.append(1)
        if len(calls) > 3:
            raise KeyboardInterrupt
        return float(np.sum(x**4)), 4 * x**3

    with pytest.warns(FitInterruptedWarning):
        result = run_lbfgs(interrupted, np.ones(3), max_iter=100, tol=1e-300)
    assert result.reason == "interrupted" and result.interrupted


# ------------------------------------------------------------------ verbose levels
def test_sparse_autoencoder_verbose_levels(digits, capsys):
    X = digits[0]
    with pytest.warns(ConvergenceWarning):
        SparseAutoencoder(n_hidden=5, max_iter=4, verbose=1, random_state=0).fit(X)
    lines = capsys.readouterr().out.splitlines()
    assert lines == [lines[0]]
    assert lines[0].startswith("SparseAutoencoder: 4 iterations, loss = ")
    assert lines[0].endswith(", stopped: max_iter") and "time = " in lines[0]
    with pytest.warns(ConvergenceWarning):
        SparseAutoencoder(n_hidden=5, max_iter=4, verbose=2, random_state=0).fit(X)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5 and all(line.startswith("Iteration") for line in lines[:4])
    assert lines[4].startswith("SparseAutoencoder: 4 iterations")


@no_constant_codes
def test_stack_verbose_one_line_per_layer_every_iteration_at_two(digits, capsys):
    X = digits[0]
    with pytest.warns(ConvergenceWarning):
        StackedAutoencoder((8, 4), max_iter=4, random_state=0, verbose=1).fit(X)
    lines = capsys.readouterr().out.splitlines()
    assert lines == _summaries("\n".join(lines))  # nothing but the two summaries
    assert [line.split(":")[0] for line in lines] == [
        "StackedAutoencoder (pretraining, layer 1 of 2)",
        "StackedAutoencoder (pretraining, layer 2 of 2)",
    ]
    with pytest.warns(ConvergenceWarning):
        StackedAutoencoder((8, 4), max_iter=4, random_state=0, verbose=2).fit(X)
    out = capsys.readouterr().out
    assert len(_summaries(out)) == 2
    assert out.count("Iteration") == 8
    assert len(out.splitlines()) == 2 + 8 + 2  # a heading per layer, iterations, summaries


@no_constant_codes
def test_classifier_verbose_one_line_per_stage_every_iteration_at_two(digits, capsys):
    X, y = digits
    with pytest.warns(ConvergenceWarning):
        StackedAutoencoderClassifier((8, 4), verbose=1, **SHORT).fit(X, y)
    lines = capsys.readouterr().out.splitlines()
    name = "StackedAutoencoderClassifier"
    assert [line.split(":")[0] for line in lines] == [
        f"{name} (pretraining, layer 1 of 2)",
        f"{name} (pretraining, layer 2 of 2)",
        f"{name} (softmax)",
        f"{name} (fine-tuning)",
    ]
    assert all(", stopped: max_iter" in line and " 4 iterations" in line for line in lines)
    with pytest.warns(ConvergenceWarning):
        StackedAutoencoderClassifier((8, 4), verbose=2, **SHORT).fit(X, y)
    out = capsys.readouterr().out
    assert len(_summaries(out)) == 4
    assert out.count("Iteration") == 16
    assert len(out.splitlines()) == 4 + 16 + 4  # a heading per stage


# ------------------------------------------------------------------ the network before fine-tuning
def _assert_same_network(a, b):
    assert len(a) == len(b)
    for left, right in zip(a, b):
        np.testing.assert_array_equal(left.weights, right.weights)
        np.testing.assert_array_equal(left.bias, right.bias)
        assert left.activation == right.activation


@no_constant_codes
@pytest.mark.parametrize("fine_tune", ["all", "top"])
def test_pretrained_classifier_is_the_fit_without_fine_tuning(digits, fine_tune):
    X, y = digits
    model = StackedAutoencoderClassifier((8, 4), fine_tune=fine_tune, **LOOSE).fit(X, y)
    alone = StackedAutoencoderClassifier((8, 4), fine_tune=None, **LOOSE).fit(X, y)
    record = model.pretrained_classifier_
    assert isinstance(record, StackedAutoencoderClassifier) and record.fine_tune is None
    _assert_same_network(record.layers_, alone.layers_)
    for name in ("fine_tuned_layers_", "stage_n_iter_", "stage_stop_reasons_", "loss_curves_",
                 "n_iter_", "loss_", "n_features_in_"):
        assert getattr(record, name) == getattr(alone, name), name
    np.testing.assert_array_equal(record.classes_, alone.classes_)
    np.testing.assert_array_equal(record.predict_proba(X), alone.predict_proba(X))
    assert record.score(X, y) == alone.score(X, y)
    # the same fit's fine-tuned network is another one, with a lower objective ("top"
    # continues a converged stage 2: 0 iterations)
    assert model.loss_ < record.loss_ if fine_tune == "all" else model.loss_ == record.loss_
    # the encoders are the pretrained autoencoders' own arrays: only the softmax is extra
    for layer, autoencoder in zip(record.layers_, model.autoencoders_):
        assert layer.weights is autoencoder.components_
    assert not np.shares_memory(record.layers_[-1].weights, model.layers_[-1].weights)


@no_constant_codes
def test_pretrained_classifier_kept_by_warm_start_and_pickle(digits):
    X, y = digits
    model = StackedAutoencoderClassifier((8, 4), fine_tune=None, **LOOSE).fit(X, y)
    record = model.pretrained_classifier_
    assert record is not model
    _assert_same_network(record.layers_, model.layers_)  # fine_tune=None: the final network
    model.set_params(warm_start=True, fine_tune="all").fit(X, y)
    assert model.pretrained_classifier_ is record  # the warm start ran no stage 2
    assert model.loss_ <= record.loss_
    loaded = pickle.loads(pickle.dumps(model))
    _assert_same_network(loaded.pretrained_classifier_.layers_, record.layers_)
    assert loaded.pretrained_classifier_.score(X, y) == record.score(X, y)


def test_a_sparse_autoencoder_pickled_before_stop_reason_loads_without_one(digits):
    fixture = Path(__file__).resolve().parent / "data" / "sparse_autoencoder_models.pkl"
    with open(fixture, "rb") as f, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pickled by another skae and scikit-learn version
        stored = pickle.load(f)
    for model in stored.values():
        assert model.stop_reason_ is None
    with pytest.warns(ConvergenceWarning):
        fresh = SparseAutoencoder(n_hidden=3, max_iter=2, random_state=0).fit(digits[0])
    assert pickle.loads(pickle.dumps(fresh)).stop_reason_ == "max_iter"
