"""The stacked estimators with the mini-batch solvers (solver="adam"/"sgd"): every stage,
early stopping, partial_fit, and the options they support."""

import copy
import re
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import InvalidParameterError

from skae import (
    SparseAutoencoder,
    StackedAutoencoder,
    StackedAutoencoderClassifier,
    check_gradient,
)
from skae._network import FineTuneObjective, Layer, autoencoder_layer, forward
from skae._stacked import labelled_rows
from skae.exceptions import NonFiniteLossError, SkaeWarning

SEED_MAX = np.iinfo(np.int32).max

# A few epochs leave an upper layer's codes nearly constant; that diagnosis is tested in
# test_stacked.py, these tests are about the solvers.
pytestmark = pytest.mark.filterwarnings("ignore::skae.exceptions.ConstantCodesWarning")


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


def _quiet(function, *args, **kwargs):
    """Run a fit whose stages may stop at their epoch limit (not the point here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return function(*args, **kwargs)


def _assert_same_network(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.weights, y.weights)
        np.testing.assert_array_equal(x.bias, y.bias)


def _assert_same_layers(a, b):
    for x, y in zip(a, b):
        for name in ("components_", "intercept_hidden_", "intercept_visible_"):
            np.testing.assert_array_equal(getattr(x, name), getattr(y, name))


# ------------------------------------------------------------------------- parameters
@pytest.mark.parametrize("cls", [StackedAutoencoder, StackedAutoencoderClassifier])
def test_the_solver_parameters_are_sparse_autoencoders(cls):
    ae_params = SparseAutoencoder().get_params()
    params = cls().get_params()
    for name in (
        "solver",
        "mini_batch_size",
        "learning_rate",
        "learning_rate_init",
        "power_t",
        "momentum",
        "nesterovs_momentum",
        "beta_1",
        "beta_2",
        "epsilon",
        "shuffle",
        "early_stopping",
        "validation_fraction",
        "n_iter_no_change",
    ):
        assert params[name] == ae_params[name], name
    assert params["solver"] == "lbfgs"


def test_each_layer_is_the_sparse_autoencoder_with_the_solver_settings(digits):
    X, _ = digits
    settings = dict(
        solver="sgd", mini_batch_size=16, learning_rate_init=0.05, momentum=0.5, max_iter=3
    )
    stack = _quiet(StackedAutoencoder((12, 6), random_state=0, **settings).fit, X[:300])
    codes = X[:300]
    for ae in stack.autoencoders_:
        assert (ae.solver, ae.mini_batch_size, ae.momentum) == ("sgd", 16, 0.5)
        alone = _quiet(
            SparseAutoencoder(ae.n_hidden, random_state=ae.random_state, **settings).fit, codes
        )
        _assert_same_layers([ae], [alone])
        codes = alone.transform(codes)
    assert stack.stage_n_iter_ == {"pretraining": [3, 3]}
    assert stack.stage_stop_reasons_ == {"pretraining": ["max_iter", "max_iter"]}


def test_a_layer_that_reaches_max_iter_warns_naming_the_stack_and_layer(digits):
    X, _ = digits
    with pytest.warns(ConvergenceWarning) as record:
        StackedAutoencoder((8, 4), solver="adam", max_iter=2, random_state=0).fit(X[:200])
    assert [str(w.message).split(":")[0] for w in record] == [
        "StackedAutoencoder (pretraining, layer 1 of 2)",
        "StackedAutoencoder (pretraining, layer 2 of 2)",
    ]
    assert "the mini-batch solver reached max_iter=2 epochs" in str(record[0].message)


# ------------------------------------------------------------------ supervised stages
def _softmax_start(random_state, sizes, n_classes):
    """The softmax layer fit starts from (UFLDL's initialisation, from fit's last seed)."""
    seeds = np.random.RandomState(random_state).randint(SEED_MAX, size=len(sizes) + 1)
    W = 0.005 * np.random.RandomState(seeds[-1]).standard_normal((n_classes, sizes[-1]))
    return Layer(W, np.zeros(n_classes), "softmax")


ONE_STEP = dict(
    solver="sgd",
    momentum=0.0,
    nesterovs_momentum=False,
    learning_rate_init=0.5,
    shuffle=False,
    mini_batch_size=10_000,  # one mini-batch: all the labelled rows
    max_iter=2,
    random_state=0,
)
# ... clipped to the rows, with the warning the MLPs give for a batch_size that large
ONE_BATCH = r"mini_batch_size=10000 is larger than .* each epoch is one step over all"


@pytest.mark.parametrize("unlabelled_rows", [False, True])
def test_one_softmax_epoch_of_one_batch_is_a_gradient_step_on_the_full_objective(
    digits, unlabelled_rows
):
    # SGD without momentum, every labelled row in one mini-batch: the epoch is one step
    # θ − η ∇J(θ) of the stage's full objective (what L-BFGS minimises).
    X, y = digits
    X, y = X[:400], y[:400].copy()
    if unlabelled_rows:
        y[::3] = -1
    with pytest.warns(SkaeWarning, match=ONE_BATCH):
        clf = _quiet(
            StackedAutoencoderClassifier(
                (10,), fine_tune=None, softmax_max_iter=1, softmax_alpha=1e-3, **ONE_STEP
            ).fit,
            X,
            y,
        )
    rows = np.flatnonzero(y != -1)
    y_index = np.searchsorted(clf.classes_, y[rows])
    layers = [autoencoder_layer(clf.autoencoders_[0]), _softmax_start(0, (10,), 10)]
    full = FineTuneObjective(layers, X, y_index, n_trainable=1, alphas=[1e-3], rows=rows)
    J, grad = full(full.theta0)
    expected = full.theta0 - 0.5 * grad
    W, b = clf.layers_[-1].weights, clf.layers_[-1].bias
    np.testing.assert_allclose(np.concatenate([W.ravel(), b]), expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(clf.loss_curves_["softmax"], [J], rtol=1e-12)
    assert clf.stage_n_iter_["softmax"] == 1
    assert clf.stage_stop_reasons_["softmax"] == "max_iter"


def test_one_fine_tuning_epoch_of_one_batch_is_a_gradient_step_on_the_network(digits):
    X, y = digits
    X, y = X[:300], y[:300]
    with pytest.warns(SkaeWarning, match=ONE_BATCH):
        clf = _quiet(
            StackedAutoencoderClassifier(
                (10, 6),
                alpha=[1e-3, 1e-4],
                softmax_max_iter=1,
                fine_tune="all",
                fine_tune_max_iter=1,
                **ONE_STEP,
            ).fit,
            X,
            y,
        )
    start = clf.pretrained_classifier_.layers_
    full = FineTuneObjective(start, X, y, n_trainable=3, alphas=[0.0, 0.0, 1e-4])
    J, grad = full(full.theta0)
    expected = full.theta0 - 0.5 * grad
    got = np.concatenate([a.ravel() for layer in clf.layers_ for a in (layer.weights, layer.bias)])
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(clf.loss_curves_["fine_tuning"], [J], rtol=1e-12)
    assert clf.fine_tuned_layers_ == (1, 2, 3)


@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("n_trainable", [1, 2])
def test_the_mini_batch_objective_is_the_full_objective_on_all_rows_and_passes_the_check(
    digits, activation, sparse, n_trainable
):
    X, y = digits
    X, y = X[:120], y[:120] % 3
    rows = np.arange(0, 120, 2)  # the labelled rows
    rng = np.random.RandomState(0)
    layers = [
        Layer(rng.normal(0, 0.3, (7, 64)), rng.normal(0, 0.1, 7), activation),
        Layer(rng.normal(0, 0.3, (3, 7)), rng.normal(0, 0.1, 3), "softmax"),
    ]
    data = sp.csr_matrix(X) if sparse else X
    trainable = layers[2 - n_trainable :]
    if n_trainable == 1:  # the frozen layer's codes of the labelled rows, as the stage does
        data, data_rows = forward(layers[:1], X[rows])[-1], None
    else:
        data_rows = rows
    alphas = [0.0] * (n_trainable - 1) + [1e-3]
    objective_of = labelled_rows(trainable, data, data_rows, y[rows], alphas=alphas)
    full = FineTuneObjective(
        layers,
        sp.csr_matrix(X) if sparse else X,
        y[rows],
        n_trainable=n_trainable,
        alphas=alphas,
        rows=rows,
    )
    theta = full.theta0
    J, grad = objective_of(slice(0, len(rows)), None)(theta)
    J_full, grad_full = full(theta)
    np.testing.assert_allclose(J, J_full, rtol=1e-12)
    np.testing.assert_allclose(grad, grad_full, rtol=1e-10, atol=1e-14)
    batch = objective_of(np.array([5, 0, 17, 3, 29, 11]), None)
    assert check_gradient(batch, theta) < 1e-6


def test_early_stopping_scores_accuracy_on_a_stratified_held_out_share(digits):
    X, y = digits
    clf = _quiet(
        StackedAutoencoderClassifier(
            (16,),
            solver="adam",
            learning_rate_init=0.01,
            max_iter=5,
            softmax_max_iter=300,
            fine_tune=None,
            early_stopping=True,
            validation_fraction=0.2,
            n_iter_no_change=3,
            random_state=0,
        ).fit,
        X[:600],
        y[:600],
    )
    # stopped by the rule on the held-out accuracy, long before the epoch limit
    assert clf.stage_stop_reasons_["softmax"] == "no improvement"
    assert clf.stage_n_iter_["softmax"] < 300


def test_early_stopping_records_each_stages_held_out_accuracy(digits, monkeypatch):
    """As MLPClassifier's validation_scores_ and best_validation_score_, per supervised
    stage: one held-out accuracy per epoch, and the best of the last stage is the
    returned network's accuracy on the held-out rows (early stopping keeps that epoch)."""
    import skae._stacked as stacked

    X, y = digits[0][:500], digits[1][:500]
    held_out = []
    original = stacked._codes_of_rows

    def spy(layers, data, rows, dtype):
        held_out.append(np.asarray(rows).copy())
        return original(layers, data, rows, dtype)

    monkeypatch.setattr(stacked, "_codes_of_rows", spy)
    params = dict(solver="adam", learning_rate_init=0.02, max_iter=3, softmax_max_iter=40,
                  fine_tune_max_iter=40, n_iter_no_change=3, random_state=0)
    clf = _quiet(StackedAutoencoderClassifier((16,), early_stopping=True, **params).fit, X, y)
    scores = clf.validation_scores_
    for stage in ("softmax", "fine_tuning"):
        assert len(scores[stage]) == clf.stage_n_iter_[stage] > 0
        assert all(0.0 <= s <= 1.0 for s in scores[stage])
    assert clf.best_validation_score_ == max(scores["fine_tuning"])
    rows = held_out[-1]
    assert clf.score(X[rows], y[rows]) == pytest.approx(clf.best_validation_score_)
    # no held-out rows: L-BFGS, no early stopping, partial_fit
    for other in (
        _quiet(StackedAutoencoderClassifier((16,), max_iter=3, softmax_max_iter=5,
                                            fine_tune_max_iter=5).fit, X, y),
        _quiet(StackedAutoencoderClassifier((16,), **params).fit, X, y),
        StackedAutoencoderClassifier((16,), early_stopping=True, **params).partial_fit(
            X, y, classes=np.arange(10)),
    ):
        assert other.validation_scores_ == {"softmax": None, "fine_tuning": None}
        assert other.best_validation_score_ is None


def test_early_stopping_needs_two_rows_of_each_class_to_stratify(digits):
    X, y = digits
    y = y[:100].copy()
    y[y == 3] = 4
    y[np.flatnonzero(y == 4)[0]] = 3  # class 3: one row
    clf = StackedAutoencoderClassifier(
        (8,), solver="adam", max_iter=2, fine_tune=None, early_stopping=True
    )
    with pytest.raises(ValueError, match="stratified validation_fraction=0.1"):
        _quiet(clf.fit, X[:100], y)


def test_a_supervised_stage_at_its_epoch_limit_names_its_parameters(digits):
    X, y = digits
    clf = StackedAutoencoderClassifier(
        (8,), solver="adam", max_iter=30, softmax_max_iter=2, fine_tune=None, random_state=0
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf.fit(X[:200], y[:200])
    messages = [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert any(
        m.startswith(
            "StackedAutoencoderClassifier (softmax): the mini-batch solver reached "
            "softmax_max_iter=2"
        )
        and "fine_tune_tol" in m
        for m in messages
    ), messages


def test_verbose_1_prints_a_line_per_stage(digits, capsys):
    X, y = digits
    _quiet(
        StackedAutoencoderClassifier(
            (8, 4),
            solver="sgd",
            max_iter=2,
            softmax_max_iter=2,
            fine_tune_max_iter=2,
            verbose=1,
            random_state=0,
        ).fit,
        X[:100],
        y[:100],
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4
    assert lines[0].startswith(
        "StackedAutoencoderClassifier (pretraining, layer 1 of 2): 2 epochs"
    )
    assert lines[1].startswith(
        "StackedAutoencoderClassifier (pretraining, layer 2 of 2): 2 epochs"
    )
    assert lines[2].startswith("StackedAutoencoderClassifier (softmax): 2 epochs")
    assert lines[3].startswith("StackedAutoencoderClassifier (fine-tuning): 2 epochs")


def test_the_mini_batch_fit_is_reproducible_and_learns(digits):
    X, y = digits
    params = dict(
        solver="adam",
        learning_rate_init=0.01,
        max_iter=20,
        softmax_max_iter=30,
        fine_tune_max_iter=30,
        random_state=0,
    )
    a = _quiet(StackedAutoencoderClassifier((32,), **params).fit, X[:1200], y[:1200])
    b = _quiet(StackedAutoencoderClassifier((32,), **params).fit, X[:1200], y[:1200])
    _assert_same_network(a.layers_, b.layers_)
    assert a.score(X[1200:], y[1200:]) > 0.85
    assert a.score(X[1200:], y[1200:]) > a.pretrained_classifier_.score(X[1200:], y[1200:])


def test_lbfgs_fit_keeps_no_mini_batch_state(digits):
    X, y = digits
    clf = _quiet(
        StackedAutoencoderClassifier((8,), max_iter=5, softmax_max_iter=5, fine_tune=None).fit,
        X[:100],
        y[:100],
    )
    assert not hasattr(clf, "_stage_solver_")
    assert not hasattr(clf, "partial_fit")
    assert not hasattr(StackedAutoencoder((8,)), "partial_fit")


# ------------------------------------------------------------------------- partial_fit
def _stream(estimator, X, y=None, chunk=100, **kwargs):
    for start in range(0, len(X), chunk):
        if y is None:
            estimator.partial_fit(X[start : start + chunk])
        else:
            estimator.partial_fit(X[start : start + chunk], y[start : start + chunk], **kwargs)
    return estimator


def test_a_one_layer_stream_is_one_epoch_of_fit_over_the_concatenation(digits):
    X, _ = digits
    params = dict(solver="sgd", mini_batch_size=20, shuffle=False, random_state=3)
    stream = _stream(StackedAutoencoder((10,), **params), X[:400], chunk=100)
    with pytest.warns(ConvergenceWarning, match="max_iter=1"):
        whole = StackedAutoencoder((10,), max_iter=1, **params).fit(X[:400])
    _assert_same_layers(stream.autoencoders_, whole.autoencoders_)
    assert stream.stage_n_iter_ == {"pretraining": [4]}  # one epoch per call
    assert stream.stage_stop_reasons_ == {"pretraining": ["partial_fit"]}


def test_a_two_layer_stream_is_not_fit_above_the_first_layer(digits):
    # What the docstring says: layer 2 of a stream learns from codes that change chunk by
    # chunk, so it differs from fit's layer 2 (its layer 1 is the same).
    X, _ = digits
    params = dict(solver="sgd", mini_batch_size=20, shuffle=False, random_state=3)
    stream = _stream(StackedAutoencoder((10, 5), **params), X[:400], chunk=100)
    whole = _quiet(StackedAutoencoder((10, 5), max_iter=1, **params).fit, X[:400])
    _assert_same_layers(stream.autoencoders_[:1], whole.autoencoders_[:1])
    assert not np.allclose(stream.autoencoders_[1].components_, whole.autoencoders_[1].components_)


@pytest.mark.parametrize("fine_tune", ["all", "top", None])
def test_a_stream_is_deterministic_for_a_random_state(digits, fine_tune):
    X, y = digits
    y = y.copy()
    y[::4] = -1
    params = dict(solver="adam", fine_tune=fine_tune, random_state=0, mini_batch_size=32)
    a = _stream(
        StackedAutoencoderClassifier((12, 6), **params), X[:600], y[:600], classes=np.arange(10)
    )
    b = _stream(
        StackedAutoencoderClassifier((12, 6), **params), X[:600], y[:600], classes=np.arange(10)
    )
    _assert_same_network(a.layers_, b.layers_)
    _assert_same_layers(a.autoencoders_, b.autoencoders_)
    stage = "softmax" if fine_tune is None else "fine_tuning"
    other = "fine_tuning" if fine_tune is None else "softmax"
    assert a.stage_n_iter_ == {"pretraining": [6, 6], stage: 6, other: 0}
    assert len(a.loss_curves_[stage]) == 6
    assert a.stage_stop_reasons_[stage] == "partial_fit"
    assert a.n_iter_ == 18
    k = len(a.layers_)
    assert a.fine_tuned_layers_ == {"all": (1, 2, 3), "top": (k,), None: ()}[fine_tune]
    if fine_tune != "all":  # frozen encoders: the autoencoders' own
        for layer, ae in zip(a.layers_[:-1], a.autoencoders_):
            assert layer.weights is ae.components_


def test_a_stream_learns_to_classify(digits):
    X, y = digits
    clf = StackedAutoencoderClassifier(
        (32,), solver="adam", learning_rate_init=0.01, random_state=0
    )
    for _ in range(10):
        _stream(clf, X[:1500], y[:1500], chunk=500, classes=np.arange(10))
    assert clf.score(X[1500:], y[1500:]) > 0.8


def test_partial_fit_with_the_classes_of_the_first_call(digits):
    X, y = digits
    clf = StackedAutoencoderClassifier((8,), solver="adam", random_state=0)
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        clf.partial_fit(X[:50], y[:50])
    assert not hasattr(clf, "classes_")
    clf.partial_fit(X[:50], y[:50], classes=list(range(10)))
    np.testing.assert_array_equal(clf.classes_, np.arange(10))
    clf.partial_fit(X[50:100], y[50:100])  # later calls may leave classes out
    clf.partial_fit(X[50:100], y[50:100], classes=np.arange(10)[::-1])  # the same set
    with pytest.raises(ValueError, match="is not the classes of the first call"):
        clf.partial_fit(X[:50], y[:50], classes=np.arange(11))
    with pytest.raises(ValueError, match=r"labels that are not in classes: \[11\]"):
        clf.partial_fit(X[:3], np.array([1, 11, 2]))
    with pytest.raises(ValueError, match="marker of unlabelled rows"):
        StackedAutoencoderClassifier((8,), solver="adam").partial_fit(
            X[:10], y[:10], classes=[-1, 0, 1]
        )


@pytest.mark.parametrize(
    "classes, message",
    [
        ([0, 1, 2, np.nan], "Input contains NaN"),
        ([[0, 1, 2]], "a 1-D list of the class labels"),
        (["a", 1], "Mix of label input types"),
        ([0, 1, None], "Unknown label type"),
        ([0.5, 1.5], "Unknown label type"),
    ],
)
def test_partial_fit_refuses_classes_that_are_not_labels(digits, classes, message):
    # as MLPClassifier.partial_fit does (NaN in classes was kept, then refused as "not
    # the classes of the first call" on the next call)
    X, y = digits
    clf = StackedAutoencoderClassifier((4,), solver="adam", random_state=0)
    with pytest.raises(ValueError, match=message):
        clf.partial_fit(X[:30], y[:30] % 3, classes=classes)
    assert not hasattr(clf, "classes_")


def test_a_chunk_without_labels_just_pretrains(digits):
    X, y = digits
    clf = StackedAutoencoderClassifier((8,), solver="sgd", random_state=0)
    clf.partial_fit(X[:100], y[:100], classes=np.arange(10))
    softmax = clf.layers_[-1]
    curves = list(clf.loss_curves_["fine_tuning"])
    clf.partial_fit(X[100:200], np.full(100, -1))
    assert clf.stage_n_iter_["pretraining"] == [2]
    assert clf.stage_n_iter_["fine_tuning"] == 1
    assert clf.loss_curves_["fine_tuning"] == curves
    np.testing.assert_array_equal(clf.layers_[-1].weights, softmax.weights)


def test_an_unlabelled_first_chunk_gives_a_network_that_predicts(digits):
    X, _ = digits
    clf = StackedAutoencoderClassifier((8,), solver="adam", random_state=0)
    clf.partial_fit(X[:100], np.full(100, -1), classes=[0, 1])
    assert clf.loss_ is None
    assert set(clf.predict(X[:10])) <= {0, 1}


def test_partial_fit_after_fit_continues_the_fitted_network(digits):
    X, y = digits
    clf = _quiet(
        StackedAutoencoderClassifier(
            (8,),
            solver="adam",
            max_iter=3,
            softmax_max_iter=3,
            fine_tune_max_iter=3,
            random_state=0,
        ).fit,
        X[:200],
        y[:200],
    )
    before = [layer.weights.copy() for layer in clf.layers_]
    clf.partial_fit(X[200:300], y[200:300])  # classes_ known from fit
    assert clf.stage_n_iter_ == {"pretraining": [4], "softmax": 3, "fine_tuning": 4}
    assert len(clf.loss_curves_["fine_tuning"]) == 4
    assert not hasattr(clf, "pretrained_classifier_")
    assert all(not np.array_equal(a, layer.weights) for a, layer in zip(before, clf.layers_))


def test_fine_tuning_owns_the_encoders_once_it_has_run(digits):
    X, y = digits
    clf = StackedAutoencoderClassifier((8,), solver="adam", fine_tune="all", random_state=0)
    clf.partial_fit(X[:100], np.full(100, -1), classes=np.arange(10))
    # no fine-tuning yet: the network's encoder is the autoencoder's
    assert clf.layers_[0].weights is clf.autoencoders_[0].components_
    clf.partial_fit(X[100:200], y[100:200])
    encoder = clf.layers_[0].weights.copy()
    clf.partial_fit(X[200:300], np.full(100, -1))  # pretraining only
    np.testing.assert_array_equal(clf.layers_[0].weights, encoder)
    assert not np.array_equal(clf.autoencoders_[0].components_, encoder)


def _fine_tuned_classifier(X, y):
    """A small mini-batch classifier fitted with fine_tune="all"."""
    return _quiet(
        StackedAutoencoderClassifier(
            (8,), solver="adam", learning_rate_init=0.01, max_iter=3, softmax_max_iter=3,
            fine_tune_max_iter=10, random_state=0,
        ).fit,
        X,
        y,
    )


@pytest.mark.parametrize("then", ["top", None])
@pytest.mark.parametrize("warm_fit_first", [False, True])
def test_fine_tuned_encoders_stay_when_fine_tune_changes(digits, then, warm_fit_first):
    """After fine-tuning with "all", a call with "top" or None keeps the fine-tuned
    encoders (the softmax was trained on their codes) and trains the softmax alone; they
    are not replaced by the autoencoders' encoders. The same after a warm-started fit
    with that setting, which keeps them too; "all" later goes on from them."""
    X, y = digits
    clf = _fine_tuned_classifier(X[:600], y[:600])
    fine_tuned = clf.layers_[0].weights.copy()
    accuracy = clf.score(X[1200:], y[1200:])
    assert not np.array_equal(fine_tuned, clf.autoencoders_[0].components_)
    clf.set_params(fine_tune=then)
    if warm_fit_first:
        _quiet(clf.set_params(warm_start=True, max_iter=1).fit, X[:600], y[:600])
        np.testing.assert_array_equal(clf.layers_[0].weights, fine_tuned)
    softmax = clf.layers_[-1].weights.copy()
    clf.partial_fit(X[600:700], y[600:700])
    np.testing.assert_array_equal(clf.layers_[0].weights, fine_tuned)
    assert not np.array_equal(clf.layers_[-1].weights, softmax)  # the softmax trained
    assert not np.array_equal(clf.autoencoders_[0].components_, fine_tuned)
    assert clf.score(X[1200:], y[1200:]) > accuracy - 0.05
    clf.set_params(fine_tune="all").partial_fit(X[700:800], y[700:800])
    moved = clf.layers_[0].weights - fine_tuned  # fine-tuning goes on from them
    assert 0 < np.abs(moved).max() < 0.5 * np.abs(fine_tuned).max()


def test_fine_tuned_encoders_are_recognised_without_the_record(digits):
    """A model saved without the record that fine-tuning owns its encoders (or with a wrong
    one): encoders that differ from the autoencoders' are kept all the same."""
    X, y = digits
    clf = _fine_tuned_classifier(X[:600], y[:600])
    fine_tuned = clf.layers_[0].weights.copy()
    for record in (False, None):
        model = copy.deepcopy(clf)
        if record is None:
            del model._fine_tuned_encoders_
        else:
            model._fine_tuned_encoders_ = record
        model.set_params(fine_tune="top").partial_fit(X[600:700], y[600:700])
        np.testing.assert_array_equal(model.layers_[0].weights, fine_tuned)
        assert model._fine_tuned_encoders_


def test_a_failed_partial_fit_leaves_the_stream_as_it_was(digits, monkeypatch):
    X, y = digits
    params = dict(solver="adam", random_state=0, mini_batch_size=20)
    reference = StackedAutoencoderClassifier((8, 4), **params)
    _stream(reference, X[:300], y[:300], classes=np.arange(10))

    clf = StackedAutoencoderClassifier((8, 4), **params)
    _stream(clf, X[:200], y[:200], classes=np.arange(10))
    import skae._stacked

    calls = []
    real = skae._stacked.FineTuneObjective

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) > 2:
            raise RuntimeError("simulated failure")
        return real(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(skae._stacked, "FineTuneObjective", failing)
        with pytest.raises(RuntimeError, match="simulated failure"):
            clf.partial_fit(X[200:300], y[200:300])
    clf.partial_fit(X[200:300], y[200:300])
    _assert_same_network(clf.layers_, reference.layers_)
    _assert_same_layers(clf.autoencoders_, reference.autoencoders_)
    assert clf.stage_n_iter_ == reference.stage_n_iter_


def test_a_stream_of_changed_layers_is_refused(digits):
    X, _ = digits
    stack = StackedAutoencoder((8, 4), solver="adam").partial_fit(X[:50])
    stack.set_params(hidden_layer_sizes=(8, 4, 2))
    with pytest.raises(ValueError, match="it had 2 layers, now hidden_layer_sizes has 3"):
        stack.partial_fit(X[:50])
    assert len(stack.autoencoders_) == 2
    stack.set_params(hidden_layer_sizes=(8, 3))
    with pytest.raises(ValueError, match="its layer 2 had 4 units, now hidden_layer_sizes"):
        stack.partial_fit(X[:50])
    assert stack.autoencoders_[1].components_.shape == (4, 8)


# --------------------------------------------------------------------------- options
@pytest.mark.parametrize(
    "params",
    [
        dict(tied_weights=True),
        dict(activation="tanh"),
        dict(noise="mask", noise_level=0.2),
        dict(noise=["gaussian", None], noise_level=[0.1, 0.0], solver="sgd"),
    ],
    ids=["tied", "tanh", "mask", "gaussian-sgd"],
)
def test_options_fit_and_stream(digits, params):
    X, y = digits
    params = {"solver": "adam", "random_state": 0, **params}
    clf = _quiet(
        StackedAutoencoderClassifier(
            (10, 6), max_iter=2, softmax_max_iter=2, fine_tune_max_iter=2, **params
        ).fit,
        X[:200],
        y[:200],
    )
    assert clf.predict(X[:5]).shape == (5,)
    stream = _stream(
        StackedAutoencoderClassifier((10, 6), **params), X[:200], y[:200], classes=np.arange(10)
    )
    assert np.all(np.isfinite(stream.predict_proba(X[:5])))


@pytest.mark.parametrize("kind", ["csr", "memmap"])
def test_sparse_and_memmap_input_give_the_dense_model(digits, kind, tmp_path):
    X, y = digits
    X, y = X[:200], y[:200]
    if kind == "csr":
        data = sp.csr_matrix(X)
    else:
        path = tmp_path / "X.npy"
        np.save(path, X)
        data = np.load(path, mmap_mode="r")
    params = dict(
        solver="adam", max_iter=2, softmax_max_iter=2, fine_tune_max_iter=2, random_state=0
    )
    dense = _quiet(StackedAutoencoderClassifier((8,), **params).fit, X, y)
    other = _quiet(StackedAutoencoderClassifier((8,), **params).fit, data, y)
    for a, b in zip(dense.layers_, other.layers_):
        np.testing.assert_allclose(a.weights, b.weights, rtol=1e-9, atol=1e-12)
    stream = StackedAutoencoderClassifier((8,), solver="sgd", random_state=0)
    stream.partial_fit(data[:100], y[:100], classes=np.arange(10))
    stream.partial_fit(data[100:], y[100:])
    assert stream.stage_n_iter_["fine_tuning"] == 2


def test_float32_stays_float32(digits):
    X, y = digits
    X32 = X[:200].astype(np.float32)
    clf = _quiet(
        StackedAutoencoderClassifier(
            (8, 4), solver="adam", max_iter=2, softmax_max_iter=2, fine_tune_max_iter=2
        ).fit,
        X32,
        y[:200],
    )
    assert all(layer.weights.dtype == np.float32 for layer in clf.layers_)
    assert clf.transform(X32).dtype == np.float32
    stream = StackedAutoencoderClassifier((8, 4), solver="adam").partial_fit(
        X32, y[:200], classes=np.arange(10)
    )
    assert all(layer.weights.dtype == np.float32 for layer in stream.layers_)
    stack = StackedAutoencoder((8, 4), solver="sgd").partial_fit(X32)
    assert stack.transform(X32).dtype == np.float32


@pytest.mark.parametrize("cls", [StackedAutoencoder, StackedAutoencoderClassifier])
def test_dask_input_asks_for_lbfgs(digits, cls):
    da = pytest.importorskip("dask.array")
    X, y = digits
    with pytest.raises(ValueError, match="does not support dask arrays; use solver='lbfgs'"):
        cls((4,), solver="adam").fit(da.from_array(X[:100], chunks=50), y[:100])


@pytest.mark.parametrize("cls", [StackedAutoencoder, StackedAutoencoderClassifier])
def test_array_api_input_asks_for_lbfgs(digits, cls, array_api_dispatch):
    xps = pytest.importorskip("array_api_strict")
    X, y = digits
    with pytest.raises(ValueError, match="use solver='lbfgs'"):
        cls((4,), solver="sgd").fit(xps.asarray(X[:100]), y[:100])
    assert cls(solver="adam").__sklearn_tags__().array_api_support is False
    assert cls().__sklearn_tags__().array_api_support is True


def test_ctrl_c_in_a_supervised_stage_keeps_its_last_step_and_goes_on(digits, monkeypatch):
    import skae._stacked
    from skae.exceptions import FitInterruptedWarning

    X, y = digits
    real = skae._stacked.FineTuneObjective
    calls = []

    def interrupted_once(layers, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # the softmax stage's third mini-batch
            raise KeyboardInterrupt
        return real(layers, *args, **kwargs)

    monkeypatch.setattr(skae._stacked, "FineTuneObjective", interrupted_once)
    clf = StackedAutoencoderClassifier(
        (8,),
        solver="sgd",
        mini_batch_size=20,
        max_iter=2,
        softmax_max_iter=2,
        fine_tune_max_iter=2,
        random_state=0,
    )
    with pytest.warns(FitInterruptedWarning, match=r"\(softmax\): training was interrupted"):
        _quiet(clf.fit, X[:200], y[:200])
    assert clf.stage_stop_reasons_["softmax"] == "interrupted"
    assert clf.stage_stop_reasons_["fine_tuning"] == "max_iter"
    assert clf.stage_n_iter_["fine_tuning"] == 2


def test_a_pickled_stream_continues_as_the_original(digits):
    import pickle

    X, y = digits
    clf = StackedAutoencoderClassifier((8, 4), solver="adam", random_state=0)
    clf.partial_fit(X[:100], y[:100], classes=np.arange(10))
    copy = pickle.loads(pickle.dumps(clf))
    clf.partial_fit(X[100:200], y[100:200])
    copy.partial_fit(X[100:200], y[100:200])
    _assert_same_network(clf.layers_, copy.layers_)
    _assert_same_layers(clf.autoencoders_, copy.autoencoders_)


def test_a_warm_started_mini_batch_fit_continues_the_network(digits):
    # As the MLPs: warm_start continues the parameters (here: fine-tuning from layers_,
    # no pretraining, no softmax stage) with a new optimiser.
    X, y = digits
    params = dict(solver="adam", max_iter=2, softmax_max_iter=2, fine_tune_max_iter=2)
    clf = _quiet(
        StackedAutoencoderClassifier((8,), random_state=0, **params).fit, X[:200], y[:200]
    )
    autoencoders, before = clf.autoencoders_, [layer.weights for layer in clf.layers_]
    clf.set_params(warm_start=True, fine_tune_max_iter=3)
    _quiet(clf.fit, X[:200], y[:200])
    assert clf.autoencoders_ is autoencoders
    assert clf.stage_n_iter_ == {"pretraining": [], "softmax": 0, "fine_tuning": 3}
    assert all(not np.array_equal(a, layer.weights) for a, layer in zip(before, clf.layers_))


def test_partial_fit_after_an_lbfgs_fit_counts_epochs_from_zero(digits):
    """The records of an L-BFGS fit count iterations; the stream's count epochs. After
    an L-BFGS fit, partial_fit starts every stage's record again (as a layer's
    SparseAutoencoder.partial_fit does), so no count or curve mixes the two units; the
    fitted network itself is continued."""
    X, y = digits
    clf = _quiet(
        StackedAutoencoderClassifier(
            (8,), max_iter=2, softmax_max_iter=5, fine_tune_max_iter=5, random_state=0
        ).fit,
        X[:300],
        y[:300],
    )
    assert clf.stage_n_iter_ == {"pretraining": [2], "softmax": 5, "fine_tuning": 5}
    fitted = clf.layers_[-1].weights.copy()
    clf.set_params(solver="adam")
    clf.partial_fit(X[:300], y[:300])
    assert clf.stage_n_iter_ == {"pretraining": [1], "softmax": 0, "fine_tuning": 1}
    assert clf.n_iter_ == 2
    assert [len(c) for c in clf.loss_curves_["pretraining"]] == [1]
    assert len(clf.loss_curves_["softmax"]) == 0 and len(clf.loss_curves_["fine_tuning"]) == 1
    assert clf.stage_stop_reasons_["softmax"] is None
    assert clf.stage_stop_reasons_["fine_tuning"] == "partial_fit"
    # continued, not restarted: one small epoch away from the fitted softmax
    moved = np.linalg.norm(clf.layers_[-1].weights - fitted) / np.linalg.norm(fitted)
    assert 0 < moved < 0.5
    clf.partial_fit(X[300:600], y[300:600])  # later calls carry on counting
    assert clf.stage_n_iter_ == {"pretraining": [2], "softmax": 0, "fine_tuning": 2}


def test_early_stopping_split_failure_is_one_readable_message(digits):
    X, y = digits
    clf = StackedAutoencoderClassifier((4,), solver="adam", early_stopping=True, max_iter=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # before the pretraining: not after its warning
        with pytest.raises(ValueError) as info:
            clf.fit(X[:30], y[:30])
    message = str(info.value)
    assert "early_stopping (softmax) holds out a stratified validation_fraction=0.1" in message
    pattern = r"which fails \(.*number of classes = 10\)\. Pass more labelled rows"
    assert re.search(pattern, message)


def test_stream_state_copies_share_no_list_or_array():
    """partial_fit continues copies of its former state, made with the curves copied at C
    speed: the copy shares no list or array with the original."""
    from skae._stacked import _copy
    from skae._stochastic import EpochState

    ae = StackedAutoencoderClassifier((4,), solver="adam", random_state=0)
    state = EpochState()
    state.loss_curve = [3.0, 2.0, 1.5]
    original = {"curves": {"pretraining": [[1.0, 0.5]], "softmax": [2.0]},
                "state": state, "weights": np.ones(3), "model": ae}
    copied = _copy(original)
    copied["curves"]["pretraining"][0].append(0.25)
    copied["curves"]["softmax"].append(1.0)
    copied["state"].loss_curve.append(1.0)
    copied["weights"][0] = 5.0
    assert original["curves"] == {"pretraining": [[1.0, 0.5]], "softmax": [2.0]}
    assert original["state"].loss_curve == [3.0, 2.0, 1.5]
    np.testing.assert_array_equal(original["weights"], np.ones(3))
    assert copied["model"] is not ae and copied["model"].get_params() == ae.get_params()



def test_the_pretrained_record_continues_as_a_fine_tune_none_fit(digits):
    """``pretrained_classifier_`` of a mini-batch fit with early stopping holds what the
    ``fine_tune=None`` fit holds: its held-out scores, and the optimiser and random state
    that ``partial_fit`` continues (the record once had neither: its ``partial_fit``
    started a new optimiser and drew other rows)."""
    X, y = digits[0][:300], digits[1][:300]
    settings = dict(
        solver="adam", early_stopping=True, max_iter=3, softmax_max_iter=5,
        fine_tune_max_iter=5, learning_rate_init=0.01, random_state=0,
    )
    tuned = _quiet(StackedAutoencoderClassifier((8,), fine_tune="all", **settings).fit, X, y)
    plain = _quiet(StackedAutoencoderClassifier((8,), fine_tune=None, **settings).fit, X, y)
    record = tuned.pretrained_classifier_
    assert record.validation_scores_ == plain.validation_scores_
    assert record.validation_scores_["softmax"]  # early stopping scored each epoch
    assert record.best_validation_score_ == plain.best_validation_score_
    record.partial_fit(X[:100], y[:100])
    plain.partial_fit(X[:100], y[:100])
    _assert_same_network(record.layers_, plain.layers_)
    assert record.stage_n_iter_ == plain.stage_n_iter_
    # the record's state is its own: the fine-tuned classifier goes on from its own
    before = [layer.weights.copy() for layer in tuned.layers_]
    tuned.partial_fit(X[:100], y[:100])
    assert tuned.stage_n_iter_["fine_tuning"] == len(tuned.loss_curves_["fine_tuning"])
    assert not np.array_equal(before[-1], tuned.layers_[-1].weights)


def test_a_non_finite_supervised_stage_names_its_own_parameters(digits):
    """The softmax and fine-tuning objectives have no beta and no alpha: the advice
    names softmax_alpha."""
    X, y = digits[0][:300], digits[1][:300]
    clf = StackedAutoencoderClassifier(
        (16,), solver="sgd", learning_rate_init=1e8, max_iter=2, softmax_max_iter=50,
        fine_tune_max_iter=50, random_state=0,
    )
    with pytest.raises(NonFiniteLossError, match=r"\((softmax|fine-tuning)\).*") as caught:
        _quiet(clf.fit, X, y)
    message = str(caught.value)
    assert message.endswith("lower learning_rate_init, or lower softmax_alpha.")
    assert "beta" not in message


def test_a_non_finite_lbfgs_supervised_stage_names_softmax_alpha(digits, monkeypatch):
    """The same advice from the default solver: an objective made to overflow."""
    evaluate = FineTuneObjective.__call__

    def overflowing(self, theta):
        return np.inf, evaluate(self, theta)[1]

    monkeypatch.setattr(FineTuneObjective, "__call__", overflowing)
    clf = StackedAutoencoderClassifier((8,), max_iter=3, random_state=0)
    with pytest.raises(NonFiniteLossError, match=r"\(softmax\): the loss became non-finite"
                                                 r".* or lower softmax_alpha\.$"):
        _quiet(clf.fit, digits[0][:200], digits[1][:200])


@pytest.mark.parametrize("kind", ["autoencoder", "stack", "classifier"])
@pytest.mark.parametrize(
    "bad, name",
    [(dict(learning_rate_init=-0.01), "learning_rate_init"), (dict(batch_size=0), "batch_size"),
     (dict(verbose="x"), "verbose")],
)
def test_partial_fit_validates_parameters_set_between_calls(digits, kind, bad, name):
    """Settings changed with set_params between partial_fit calls apply from the next
    call, so every call validates them (scikit-learn's fit context checks only the first:
    a negative step size used to train uphill, batch_size=0 gave a ZeroDivisionError)
    and a refused call leaves the model as it was."""
    X, y = digits
    common = dict(solver="sgd", random_state=0)
    if kind == "autoencoder":
        model = SparseAutoencoder(n_hidden=6, **common).partial_fit(X[:100])
    elif kind == "stack":
        model = StackedAutoencoder((6, 4), **common).partial_fit(X[:100])
    else:
        model = StackedAutoencoderClassifier((6,), **common).partial_fit(
            X[:100], y[:100], classes=np.arange(10))
    before = model.transform(X[:20])
    model.set_params(**bad)
    message = f"'{name}' parameter of {type(model).__name__}"
    with pytest.raises(InvalidParameterError, match=message):
        model.partial_fit(X[100:200], *([y[100:200]] if kind == "classifier" else []))
    np.testing.assert_array_equal(model.transform(X[:20]), before)


def test_warm_start_with_other_layer_sizes_names_the_layer_before_refitting(
    digits, monkeypatch
):
    """A warm start whose second layer changed size names that layer and its units before
    any layer is refitted (the first layer used to be refitted, then the second layer's
    own message spoke of n_features and n_hidden)."""
    X, _ = digits
    stack = StackedAutoencoder((6, 4), max_iter=5, warm_start=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        stack.fit(X[:200])
    fits = []
    monkeypatch.setattr(SparseAutoencoder, "fit", lambda self, *a, **k: fits.append(1))
    stack.set_params(hidden_layer_sizes=(6, 3))
    with pytest.raises(ValueError, match=r"its layer 2 had 4 units \(tied_weights=False\), "
                       r"now hidden_layer_sizes and tied_weights give it 3"):
        stack.fit(X[:200])
    assert fits == []
