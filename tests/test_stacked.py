"""StackedAutoencoder and StackedAutoencoderClassifier (scikit-learn's estimator checks on
them are in test_common.py)."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline

from skae import SparseAutoencoder, StackedAutoencoder, StackedAutoencoderClassifier
from skae._objective import AutoencoderSpec
from skae._stacked import ConstantCodesWarning, constant_codes_decay

no_convergence = pytest.mark.filterwarnings(
    "ignore::sklearn.exceptions.ConvergenceWarning"
)
# Short fits whose upper layer's codes can collapse; that diagnosis is tested below.
no_constant_codes = pytest.mark.filterwarnings("ignore::skae.exceptions.ConstantCodesWarning")


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


# --------------------------------------------------------------------------- stacking
@no_constant_codes  # a few iterations: the structure is tested, not the codes
@no_convergence
def test_greedy_pretraining_equals_separate_autoencoders(digits):
    X = digits[0][:400]
    stack = StackedAutoencoder(
        (12, 8, 5),
        rho=[0.1, 0.05, 0.2],
        beta=[3.0, 1.0, 0.5],
        noise=["mask", None, "gaussian"],
        noise_level=[0.1, 0.0, 0.05],
        tied_weights=[False, True, False],
        max_iter=[12, 10, 8],
        random_state=42,
    ).fit(X)
    assert stack.n_iter_ == sum(ae.n_iter_ for ae in stack.autoencoders_)
    seeds = [ae.random_state for ae in stack.autoencoders_]
    assert len(set(seeds)) == 3  # one seed per layer
    # the seeds come from random_state
    again = clone(stack).fit(X)
    assert [ae.random_state for ae in again.autoencoders_] == seeds
    codes = X
    settings = [
        dict(n_hidden=12, rho=0.1, beta=3.0, noise="mask", noise_level=0.1, max_iter=12),
        dict(n_hidden=8, rho=0.05, beta=1.0, tied_weights=True, max_iter=10),
        dict(n_hidden=5, rho=0.2, beta=0.5, noise="gaussian", noise_level=0.05, max_iter=8),
    ]
    for k, (setting, fitted) in enumerate(zip(settings, stack.autoencoders_)):
        alone = SparseAutoencoder(**setting, random_state=seeds[k]).fit(codes)
        np.testing.assert_array_equal(fitted.components_, alone.components_)
        np.testing.assert_array_equal(fitted.decoder_components_, alone.decoder_components_)
        np.testing.assert_array_equal(fitted.intercept_visible_, alone.intercept_visible_)
        assert fitted.n_iter_ == alone.n_iter_
        codes = alone.transform(codes)
    np.testing.assert_array_equal(stack.transform(X), codes)
    decoded = codes
    for ae in reversed(stack.autoencoders_):
        decoded = ae.inverse_transform(decoded)
    np.testing.assert_array_equal(stack.inverse_transform(codes), decoded)
    assert list(stack.get_feature_names_out()) == [f"stackedautoencoder{i}" for i in range(5)]


@pytest.mark.parametrize("Estimator", [StackedAutoencoder, StackedAutoencoderClassifier])
def test_bad_layer_parameters(Estimator, digits):
    X, y = digits[0][:50], digits[1][:50]
    with pytest.raises(ValueError, match="hidden_layer_sizes is empty"):
        Estimator(()).fit(X, y)
    with pytest.raises(ValueError, match="rho has 3 values but hidden_layer_sizes has 2"):
        Estimator((4, 3), rho=[0.1, 0.1, 0.1]).fit(X, y)
    with pytest.raises(ValueError, match="Layer 2 of .*'rho' parameter"):
        Estimator((4, 3), rho=[0.1, 1.5]).fit(X, y)
    with pytest.raises(ValueError, match="Layer 2 of .*noise_level=0.2 has no effect"):
        Estimator((4, 3), noise=["mask", None], noise_level=0.2).fit(X, y)
    with pytest.raises(ValueError, match="positive ints"):
        Estimator((4, 0)).fit(X, y)
    # a tanh layer's codes lie in (-1, 1): no layer above it can take cross-entropy,
    # refused before any layer is fitted (a per-layer loss, or sigmoid units, is the fix)
    bad = Estimator((4, 3, 2), activation=["sigmoid", "tanh", "sigmoid"], loss="cross_entropy")
    with pytest.raises(ValueError, match=r"Layer 3 of .*codes of layer 2, whose tanh"):
        bad.fit(X, y)
    assert not hasattr(bad, "layers_")
    with pytest.raises(ValueError, match=r"Layer 3 of .*codes of layer 2, whose tanh"):
        bad.set_params(solver="adam").partial_fit(X, y, **(
            {"classes": np.unique(y)} if Estimator is StackedAutoencoderClassifier else {}
        ))


@no_constant_codes  # a few iterations: the structure is tested, not the codes
@no_convergence
def test_float32_sparse_and_verbose(digits, capsys):
    X = digits[0][:200]
    stack = StackedAutoencoder((6, 4), max_iter=5, random_state=0, verbose=2)
    H32 = stack.fit(X.astype(np.float32)).transform(X.astype(np.float32))
    assert H32.dtype == np.float32
    out = capsys.readouterr().out
    assert "pretraining layer 1/2 (64 -> 6 units)" in out
    assert "pretraining layer 2/2 (6 -> 4 units)" in out
    assert out.count("Iteration") == 10
    stack.set_params(verbose=0)
    dense = stack.fit(X).transform(X)
    sparse = clone(stack).fit(sp.csr_matrix(X)).transform(sp.csr_matrix(X))
    np.testing.assert_allclose(sparse, dense, rtol=1e-10, atol=1e-12)


@no_constant_codes  # a few iterations: the structure is tested, not the codes
@no_convergence
def test_warm_start_continues_each_layer(digits):
    X = digits[0][:200]
    stack = StackedAutoencoder((6, 4), max_iter=5, random_state=0).fit(X)
    before = [ae.components_.copy() for ae in stack.autoencoders_]
    old_objects = list(stack.autoencoders_)
    stack.set_params(warm_start=True, max_iter=1).fit(X)
    for ae, W in zip(stack.autoencoders_, before):
        # one more iteration from the previous weights, not a new initialisation
        assert np.abs(ae.components_ - W).max() < 0.5 * np.abs(W).max()
        assert not np.array_equal(ae.components_, W)
    # the previous layers were not modified in place
    for ae, W in zip(old_objects, before):
        np.testing.assert_array_equal(ae.components_, W)
    with pytest.raises(ValueError, match="warm_start=True cannot continue"):
        stack.set_params(hidden_layer_sizes=(6, 4, 2)).fit(X)
    assert len(stack.autoencoders_) == 2  # the failed refit kept the model


@no_convergence
def test_pipeline_grid_search_over_per_layer_rho(digits):
    X, y = digits[0][:300], digits[1][:300]
    pipe = make_pipeline(
        # the default weight decay (3e-3) flattens the second layer of so small a stack
        StackedAutoencoder((16, 8), alpha=1e-4, beta=0.3, max_iter=30, random_state=0),
        LogisticRegression(max_iter=300),
    )
    grid = GridSearchCV(
        pipe, {"stackedautoencoder__rho": [[0.1, 0.05], [0.05, 0.2]]}, cv=2
    ).fit(X, y)
    assert grid.best_params_["stackedautoencoder__rho"] in ([0.1, 0.05], [0.05, 0.2])
    rhos = [ae.rho for ae in grid.best_estimator_[0].autoencoders_]
    assert rhos == grid.best_params_["stackedautoencoder__rho"]
    assert grid.best_score_ > 0.6  # measured 0.75; chance is 0.1


# --------------------------------------------------------------------------- upper layers
def test_constant_codes_decay_by_hand():
    """Covariance diag(4, 1) (rows (±2, ±1), every sign pattern): sigma_max = 4."""
    X = np.array([[2.0, 1.0], [2.0, -1.0], [-2.0, 1.0], [-2.0, -1.0]]) + 0.5
    spec = AutoencoderSpec(2, 3, "sigmoid", "linear", rho=0.1)
    assert constant_codes_decay(X, spec) == pytest.approx(0.09 * 4.0, rel=1e-12)
    tied = AutoencoderSpec(2, 3, "sigmoid", "linear", tied=True, rho=0.1)
    assert constant_codes_decay(X, tied) == pytest.approx(2 * 0.09 * 4.0, rel=1e-12)
    tanh = AutoencoderSpec(2, 3, "tanh", "linear", rho=0.1)
    assert constant_codes_decay(X, tanh) == pytest.approx(4 * 0.09 * 4.0, rel=1e-12)
    assert constant_codes_decay(X, spec, "mask", 0.25) == pytest.approx(0.75 * 0.36)
    assert constant_codes_decay(X, spec, "gaussian", 0.25) == pytest.approx(0.36)
    # [0, 1] data, mean 0.5 and variance 0.25 per column: the sigmoid decoder's slope at
    # the mean, 0.25, scales the covariance for the squared loss, not for cross-entropy.
    B = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    squared = AutoencoderSpec(2, 3, "sigmoid", "sigmoid", rho=0.2)
    assert constant_codes_decay(B, squared) == pytest.approx(0.16 * 0.25 * 0.25)
    entropy = AutoencoderSpec(2, 3, "sigmoid", "sigmoid", "cross_entropy", rho=0.2)
    assert constant_codes_decay(B, entropy) == pytest.approx(0.16 * 0.25)


@pytest.fixture(scope="module")
def first_layer_codes(digits):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        layer = SparseAutoencoder(64, alpha=3e-3, max_iter=150, random_state=0).fit(digits[0])
    return layer.transform(digits[0])


def _explained(ae, X):
    return 1.0 - np.sum((X - ae.inverse_transform(ae.transform(X))) ** 2) / np.sum(
        (X - X.mean(axis=0)) ** 2
    )


@no_convergence
def test_the_bound_predicts_which_decay_flattens_a_layer_on_codes(first_layer_codes):
    """Above the bound the second layer ends at all-zero weights (constant codes), below
    it it learns. Measured on these codes: bound 0.0016; 1.25x collapses, 0.63x explains
    64% of the variance."""
    H = first_layer_codes
    probe = SparseAutoencoder(32, max_iter=1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        bound = constant_codes_decay(H, probe.fit(H)._spec_)
    assert 5e-4 < bound < 1e-2  # far below the pixels' (0.015), so the default matters
    above = SparseAutoencoder(32, alpha=1.5 * bound, max_iter=150, random_state=0).fit(H)
    below = SparseAutoencoder(32, alpha=0.5 * bound, max_iter=150, random_state=0).fit(H)
    assert np.abs(above.components_).max() < 1e-2
    assert above.transform(H).std(axis=0).mean() < 1e-3
    assert _explained(above, H) < 0.01
    assert below.transform(H).std(axis=0).mean() > 0.05
    assert _explained(below, H) > 0.3


@no_convergence
def test_upper_layer_with_too_much_decay_warns_and_per_layer_decay_learns(digits):
    X, y = digits
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.3, random_state=0, stratify=y
    )
    flat = StackedAutoencoder((64, 32), alpha=3e-3, max_iter=150, random_state=0)
    with pytest.warns(ConstantCodesWarning, match=r"Layer 2 of StackedAutoencoder .*"
                      r"alpha=0.003 is above 0\.00[12].*alpha=\[0.003, 0.0001\]") as record:
        flat.fit(X_train)
    (warning,) = [w for w in record if w.category is ConstantCodesWarning]
    assert warning.filename == __file__  # at the caller's line
    per_layer = StackedAutoencoder((64, 32), alpha=[3e-3, 1e-4], max_iter=150, random_state=0)
    per_layer.fit(X_train)  # no ConstantCodesWarning: an error in the tests
    accuracy = {}
    for name, stack in (("flat", flat), ("per layer", per_layer)):
        clf = LogisticRegression(max_iter=2000).fit(stack.transform(X_train), y_train)
        accuracy[name] = clf.score(stack.transform(X_test), y_test)
    # measured: 0.10 (chance) and 0.89
    assert accuracy["flat"] < 0.2
    assert accuracy["per layer"] > 0.8
    # the classifier pretrains the same way and says so too
    with pytest.warns(ConstantCodesWarning, match="Layer 2 of StackedAutoencoderClassifier"):
        StackedAutoencoderClassifier(
            (64, 32), alpha=3e-3, max_iter=150, fine_tune=None, random_state=0
        ).fit(X_train, y_train)


def test_the_constant_codes_check_does_not_copy_the_data():
    """The check reads its input a block of rows at a time (it may be a large memmap):
    its peak memory stays far below one copy of the input."""
    import tracemalloc

    from skae._stacked import _check_constant_codes

    rng = np.random.RandomState(0)
    X = rng.uniform(0.0, 0.2, (50_000, 64))  # 25.6 MB, small spread: flattened by 1e-1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        layer = SparseAutoencoder(8, alpha=0.1, max_iter=50, random_state=0).fit(X[:500])
    H = layer.transform(X)
    settings = [dict(alpha=0.1, rho=layer.rho, noise=None, noise_level=0.0)]
    tracemalloc.start()
    try:
        with pytest.warns(ConstantCodesWarning, match="Layer 1 of StackedAutoencoder"):
            _check_constant_codes(StackedAutoencoder(), 0, layer, X, H, settings)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 0.3 * X.nbytes, peak / X.nbytes


# --------------------------------------------------------------------------- classifier
@pytest.fixture(scope="module")
def split(digits):
    X, y = digits
    return train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)


@no_convergence
def test_fine_tuning_all_beats_no_fine_tuning(split):
    X_train, X_test, y_train, y_test = split
    # UFLDL's settings, given explicitly so that the measured figures below do not move
    # with SparseAutoencoder's defaults
    common = dict(alpha=3e-3, beta=3.0, max_iter=60, softmax_max_iter=100,
                  fine_tune_max_iter=60, random_state=0)
    scores, models = {}, {}
    for fine_tune in (None, "top", "all"):
        model = StackedAutoencoderClassifier((32,), fine_tune=fine_tune, **common)
        models[fine_tune] = model.fit(X_train, y_train)
        scores[fine_tune] = model.score(X_test, y_test)
    # measured: None 0.911, "top" 0.911, "all" 0.981 (held-out, 540 rows)
    assert scores["all"] > scores[None] + 0.03
    assert models[None].fine_tuned_layers_ == ()
    assert models["top"].fine_tuned_layers_ == (2,)
    assert models["all"].fine_tuned_layers_ == (1, 2)
    # "top" and None keep the pretrained encoder; "all" changed it
    for key in (None, "top"):
        np.testing.assert_array_equal(
            models[key].layers_[0].weights, models[key].autoencoders_[0].components_
        )
    assert not np.allclose(models["all"].layers_[0].weights,
                           models["all"].autoencoders_[0].components_)
    model = models["all"]
    assert model.stage_n_iter_["pretraining"] == [model.autoencoders_[0].n_iter_]
    assert model.stage_n_iter_["fine_tuning"] == len(model.loss_curves_["fine_tuning"])
    assert model.n_iter_ == (sum(model.stage_n_iter_["pretraining"])
                             + model.stage_n_iter_["softmax"]
                             + model.stage_n_iter_["fine_tuning"])
    assert model.loss_ == pytest.approx(model.loss_curves_["fine_tuning"][-1])
    assert model.loss_curves_["fine_tuning"][-1] < model.loss_curves_["softmax"][-1]
    proba = model.predict_proba(X_test)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(np.log(proba), model.predict_log_proba(X_test), rtol=1e-10)
    np.testing.assert_array_equal(model.classes_[proba.argmax(axis=1)], model.predict(X_test))
    np.testing.assert_array_equal(
        model.decision_function(X_test).argmax(axis=1), proba.argmax(axis=1)
    )
    assert model.transform(X_test).shape == (len(X_test), 32)


def test_every_stage_uses_skaes_lbfgs_on_numpy(digits, monkeypatch):
    """Pretraining (SparseAutoencoder), the softmax and fine-tuning stages minimise with
    skae's L-BFGS, as under array API dispatch, never SciPy's L-BFGS-B. The fine-tuned
    parameters are what minimize_lbfgs reaches on the objective from the
    network the softmax stage left."""
    import skae._optimize as base
    from skae._lbfgs import minimize_lbfgs
    from skae._network import FineTuneObjective

    X, y = digits[0][:300], digits[1][:300]
    calls = []
    scipy_minimize, own = base.minimize, base.minimize_lbfgs

    def spy(name, function):
        def wrapper(*args, **kwargs):
            calls.append(name)
            return function(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(base, "minimize", spy("scipy", scipy_minimize))
    monkeypatch.setattr(base, "minimize_lbfgs", spy("skae", own))
    settings = dict(max_iter=20, softmax_max_iter=30, fine_tune_max_iter=15, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = StackedAutoencoderClassifier((8, 6), **settings).fit(X, y)
        before = clone(model).set_params(fine_tune=None).fit(X, y)
    # two pretrained layers, softmax, fine-tuning; then without the fine-tuning stage
    assert calls == ["skae", "skae", "skae", "skae"] + ["skae", "skae", "skae"]
    objective = FineTuneObjective(
        before.layers_, X, y, n_trainable=3, alphas=[0.0, 0.0, model.softmax_alpha]
    )
    reached = minimize_lbfgs(objective, objective.theta0, maxiter=15, gtol=model.fine_tune_tol,
                             maxfun=20 * 15)
    for layer, (W, b) in zip(model.layers_, objective.layout.unpack(reached.x)):
        np.testing.assert_array_equal(layer.weights, W)
        np.testing.assert_array_equal(layer.bias, b)


def _interrupt_evaluation(monkeypatch, cls, at, when=lambda objective: True):
    """Raise KeyboardInterrupt (once) from evaluation number ``at`` of ``cls`` objectives
    for which ``when(objective)`` holds."""
    original, calls = cls.__call__, {"n": 0}

    def interrupting(self, theta):
        if when(self):
            calls["n"] += 1
            if calls["n"] == at:
                raise KeyboardInterrupt
        return original(self, theta)

    monkeypatch.setattr(cls, "__call__", interrupting)


@no_constant_codes  # three iterations of layer 1 give codes that vary little
def test_ctrl_c_ends_the_interrupted_layer_and_pretraining_goes_on(digits, monkeypatch):
    """Ctrl-C during a layer's pretraining ends that layer as it ends a SparseAutoencoder
    fit (last accepted parameters, FitInterruptedWarning); the next layer is then
    pretrained, greedily, on the codes of the layer as it was kept."""
    from skae._objective import AutoencoderObjective
    from skae.exceptions import FitInterruptedWarning

    X = digits[0][:300]
    _interrupt_evaluation(monkeypatch, AutoencoderObjective, at=4)
    stack = StackedAutoencoder((12, 6), max_iter=15, random_state=0)
    with pytest.warns(FitInterruptedWarning, match="interrupted after"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            stack.fit(X)
    first, second = stack.autoencoders_
    assert 1 <= first.n_iter_ < 4
    assert second.n_iter_ == 15
    monkeypatch.undo()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        alone = SparseAutoencoder(6, max_iter=15, random_state=second.random_state).fit(
            first.transform(X)
        )
    np.testing.assert_array_equal(second.components_, alone.components_)
    assert stack.n_iter_ == first.n_iter_ + 15
    assert np.all(np.isfinite(stack.transform(X)))


def test_ctrl_c_during_fine_tuning_keeps_the_last_accepted_network(digits, monkeypatch):
    from skae._network import FineTuneObjective
    from skae.exceptions import FitInterruptedWarning

    X, y = digits[0][:300], digits[1][:300]
    _interrupt_evaluation(
        monkeypatch, FineTuneObjective, at=5, when=lambda objective: len(objective.trainable) > 1
    )
    model = StackedAutoencoderClassifier((8,), max_iter=10, softmax_max_iter=20,
                                         fine_tune_max_iter=30, random_state=0)
    with pytest.warns(FitInterruptedWarning, match=r"\(fine-tuning\): training was interr"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X, y)
    done = model.stage_n_iter_["fine_tuning"]
    assert 1 <= done < 5
    assert len(model.loss_curves_["fine_tuning"]) == done
    assert model.loss_ == model.loss_curves_["fine_tuning"][-1]
    assert model.loss_ < model.loss_curves_["softmax"][-1]
    assert set(model.predict(X)) <= set(model.classes_)


@no_convergence
def test_semi_supervised_with_ten_percent_of_the_labels(split):
    X_train, X_test, y_train, y_test = split
    rng = np.random.RandomState(0)
    labelled = np.zeros(len(y_train), dtype=bool)
    labelled[rng.permutation(len(y_train))[: len(y_train) // 10]] = True
    y_partial = np.where(labelled, y_train, -1)
    y_saved = y_partial.copy()
    raw = LogisticRegression(max_iter=1000).fit(X_train[labelled], y_train[labelled])
    model = StackedAutoencoderClassifier(
        (100,), loss="cross_entropy", alpha=3e-3, beta=3.0, max_iter=150,
        fine_tune_max_iter=100, random_state=0,
    ).fit(X_train, y_partial)
    np.testing.assert_array_equal(y_partial, y_saved)
    np.testing.assert_array_equal(model.classes_, np.arange(10))
    predicted = model.predict(X_test)
    assert set(np.unique(predicted)) <= set(range(10))
    # measured: stacked 0.922, logistic regression on the 125 labelled rows 0.894
    assert model.score(X_test, y_test) > raw.score(X_test, y_test) + 0.015


def _supervised_loss(model, X, y):
    """The supervised objective of a fitted classifier on rows ``X`` labelled ``y``: the
    mean cross-entropy plus (softmax_alpha / 2) ||W_softmax||^2, from predict_proba."""
    proba = model.predict_proba(X)
    column = {label: k for k, label in enumerate(model.classes_.tolist())}
    picked = proba[np.arange(len(y)), [column[label] for label in y.tolist()]]
    W = model.layers_[-1].weights
    return -np.mean(np.log(picked)) + 0.5 * model.softmax_alpha * np.sum(W * W)


@no_convergence
def test_unlabelled_rows_only_pretrain(digits):
    """Rows marked -1 change the pretraining only, never the supervised stages' data: the
    final loss is the supervised objective of the labelled rows, wherever they are."""
    X, y = digits[0][:300], digits[1][:300]
    y_partial = y.copy()
    unlabelled = np.random.RandomState(0).permutation(300)[:150]  # scattered, not a suffix
    y_partial[unlabelled] = -1
    labelled = y_partial != -1
    settings = dict(max_iter=5, softmax_max_iter=10, fine_tune_max_iter=10, random_state=0)
    semi = StackedAutoencoderClassifier((8,), **settings).fit(X, y_partial)
    pretrained = clone(semi).set_params(fine_tune=None).fit(X, y_partial)
    np.testing.assert_array_equal(
        pretrained.autoencoders_[0].components_, semi.autoencoders_[0].components_
    )
    for model in (semi, pretrained):  # after fine-tuning; after the softmax stage
        expected = _supervised_loss(model, X[labelled], y[labelled])
        assert model.loss_ == pytest.approx(expected, rel=1e-10)
        # the first 150 rows are not the labelled ones
        assert model.loss_ != pytest.approx(
            _supervised_loss(model, X[:150], y_partial[labelled]), rel=1e-3
        )
    string_labels = np.array([f"digit {v}" for v in y], dtype=object)
    string_labels[unlabelled] = -1
    named = StackedAutoencoderClassifier((8,), **settings).fit(X, string_labels)
    assert list(named.classes_) == [f"digit {v}" for v in range(10)]
    np.testing.assert_array_equal(named.layers_[0].weights, semi.layers_[0].weights)
    assert set(named.predict(X)) <= set(named.classes_)


@no_constant_codes  # a few iterations: the structure is tested, not the codes
@no_convergence
def test_classifier_float32_sparse_verbose_and_warm_start(digits, capsys):
    X, y = digits[0][:200], digits[1][:200]
    settings = dict(max_iter=5, softmax_max_iter=5, fine_tune_max_iter=5, random_state=0)
    model = StackedAutoencoderClassifier((8, 6), verbose=2, **settings)
    model.fit(X.astype(np.float32), y)
    out = capsys.readouterr().out
    assert "pretraining layer 2/2" in out and "softmax on 200 labelled rows" in out
    assert "fine-tuning ('all') on 200 labelled rows" in out
    assert out.count("Iteration") == sum(model.stage_n_iter_["pretraining"]) + 10
    assert all(layer.weights.dtype == np.float32 for layer in model.layers_)
    assert model.predict_proba(X.astype(np.float32)).dtype == np.float32
    dense = StackedAutoencoderClassifier((8, 6), **settings).fit(X, y)
    sparse = StackedAutoencoderClassifier((8, 6), **settings).fit(sp.csr_matrix(X), y)
    np.testing.assert_allclose(
        sparse.predict_proba(sp.csr_matrix(X)), dense.predict_proba(X), rtol=1e-6, atol=1e-9
    )
    # warm start: no pretraining, fine-tuning continues from the previous network
    autoencoders = dense.autoencoders_
    loss = dense.loss_
    dense.set_params(warm_start=True).fit(X, y)
    assert dense.autoencoders_ is autoencoders
    assert dense.stage_n_iter_["pretraining"] == [] and dense.stage_n_iter_["softmax"] == 0
    assert dense.loss_ < loss
    with pytest.raises(ValueError, match="warm_start=True cannot continue"):
        dense.fit(X[y < 5], y[y < 5])
    assert len(dense.classes_) == 10  # the failed refit kept the model


def test_classifier_label_errors(digits):
    X, y = digits[0][:60], digits[1][:60]
    model = StackedAutoencoderClassifier((4,), max_iter=3)
    with pytest.raises(ValueError, match="every label is -1"):
        model.fit(X, np.full(60, -1))
    with pytest.raises(ValueError, match="only one class"):
        model.fit(X, np.where(y < 5, 3, -1))
    names = np.where(y < 5, "small", "-1")
    with pytest.raises(ValueError, match="contains '-1'"):
        model.fit(X, names)
    with pytest.raises(ValueError, match="contains '-1'"):
        model.fit(X, names.astype(object))
    assert not hasattr(model, "classes_")


@no_convergence
def test_unlabelled_none_makes_minus_one_a_class(digits):
    X, y = digits[0][:200], digits[1][:200]
    signs = np.where(y < 5, -1, 1)
    settings = dict(max_iter=10, softmax_max_iter=20, fine_tune_max_iter=20, random_state=0)
    model = StackedAutoencoderClassifier((8,), unlabelled=None, **settings).fit(X, signs)
    np.testing.assert_array_equal(model.classes_, [-1, 1])
    assert model.decision_function(X).shape == (200,)
    assert model.score(X, signs) > 0.8
    # a string marker marks unlabelled rows in string labels
    names = np.where(y < 5, "small", "large")
    names[100:] = "?"
    marked = StackedAutoencoderClassifier((8,), unlabelled="?", **settings).fit(X, names)
    assert list(marked.classes_) == ["large", "small"]


@pytest.mark.parametrize("solver", ["lbfgs", "adam"])
def test_global_pandas_output_changes_only_what_the_stack_returns(solver):
    """sklearn.set_config(transform_output="pandas") makes the stacks' own transform
    return DataFrames; the layers inside still pass arrays to each other, so fit,
    partial_fit and the model are as with the default output, without warnings."""
    import sklearn

    pd = pytest.importorskip("pandas")
    X, y = load_digits(return_X_y=True)
    X, y = X[:300] / 16.0, y[:300]
    params = dict(solver=solver, max_iter=3, alpha=[1e-3, 1e-6], random_state=0)
    made = {}
    for output in ("default", "pandas"):
        with sklearn.config_context(transform_output=output), warnings.catch_warnings():
            warnings.simplefilter("error")
            warnings.simplefilter("ignore", ConvergenceWarning)  # 3 iterations on purpose
            stack = StackedAutoencoder((8, 4), **params).fit(X)
            classifier = StackedAutoencoderClassifier(
                (8, 4), softmax_max_iter=3, fine_tune_max_iter=3, **params
            ).fit(X, y)
            codes = stack.transform(X)
            back = stack.inverse_transform(codes)
            made[output] = (stack, classifier, codes, back, classifier.transform(X))
    stack, classifier, codes, back, top = made["pandas"]
    assert isinstance(codes, pd.DataFrame) and isinstance(top, pd.DataFrame)
    assert list(codes.columns) == [f"stackedautoencoder{i}" for i in range(4)]
    default_stack, default_classifier, default_codes, default_back, _ = made["default"]
    np.testing.assert_array_equal(codes.to_numpy(), default_codes)
    np.testing.assert_array_equal(back, default_back)
    for a, b in zip(stack.autoencoders_, default_stack.autoencoders_):
        np.testing.assert_array_equal(a.components_, b.components_)
    np.testing.assert_array_equal(classifier.predict_proba(X), default_classifier.predict_proba(X))
    assert not any(hasattr(ae, "feature_names_in_") for ae in stack.autoencoders_)
    if solver == "adam":
        with sklearn.config_context(transform_output="pandas"):
            streamed = StackedAutoencoder((8, 4), solver="adam", random_state=0).partial_fit(X)
        assert not hasattr(streamed.autoencoders_[1], "feature_names_in_")


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_per_layer_values_from_any_one_dimensional_array_like():
    """A pandas Series or a range gives one value per layer, as a list does."""
    pd = pytest.importorskip("pandas")
    X = load_digits().data[:100] / 16.0
    settings = dict(alpha=[1e-3, 1e-6], random_state=0)
    as_list = StackedAutoencoder((6, 3), rho=[0.1, 0.2], max_iter=[2, 3], **settings).fit(X)
    other = StackedAutoencoder(
        (6, 3), rho=pd.Series([0.1, 0.2]), max_iter=range(2, 4), **settings
    ).fit(X)
    for a, b in zip(as_list.autoencoders_, other.autoencoders_):
        assert (a.rho, a.max_iter) == (b.rho, b.max_iter)
        np.testing.assert_array_equal(a.components_, b.components_)
    with pytest.raises(ValueError, match="rho has 3 values but hidden_layer_sizes has 2"):
        StackedAutoencoder((6, 3), rho=pd.Series([0.1, 0.2, 0.3])).fit(X)
