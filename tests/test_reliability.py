"""Reliability of SparseAutoencoder (issue 5): bad input, numerical safety, interruption,
read-only and shared inputs, concurrency.

Every expected message below was written from what a user needs to read (the problem and
how to fix it), not copied from the implementation.
"""

import pickle
import re
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from joblib import parallel_backend
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.validation import check_is_fitted

import skae
import skae._optimize as optimize_module
from skae import SparseAutoencoder
from skae._activations import ACTIVATIONS, kl_divergence, kl_divergence_derivative
from skae._objective import (
    AutoencoderObjective,
    AutoencoderSpec,
    ParameterLayout,
)
from skae._parallel import PARALLEL_MIN_SIZE, block_rows_for

N_SAMPLES, N_FEATURES, N_HIDDEN = 20, 5, 3


def _data(n_samples=N_SAMPLES, n_features=N_FEATURES, seed=0):
    return np.random.RandomState(seed).uniform(0.05, 0.95, size=(n_samples, n_features))


def _fit_quietly(estimator, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(X)


def _model(**params):
    defaults = dict(n_hidden=N_HIDDEN, max_iter=5, random_state=0)
    defaults.update(params)
    return SparseAutoencoder(**defaults)


def _parameters(estimator):
    return (
        estimator.components_,
        estimator.intercept_hidden_,
        estimator.decoder_components_,
        estimator.intercept_visible_,
    )


def _assert_same_parameters(a, b, **tolerance):
    for pa, pb in zip(_parameters(a), _parameters(b), strict=True):
        if tolerance:
            assert_allclose(pa, pb, **tolerance)
        else:
            assert_array_equal(pa, pb)


# =========================================================================== bad inputs
def _with(value, X=None):
    X = _data() if X is None else X.copy()
    X[3, 2] = value
    return X


def _object_array(rows):
    out = np.empty((len(rows), len(rows[0])), dtype=object)
    for i, row in enumerate(rows):
        for j, v in enumerate(row):
            out[i, j] = v
    return out


def _frame(columns):
    return pd.DataFrame(_data(), columns=columns)


_COLUMNS = ["a", "b", "c", "d", "e"]

# Regex fragments shared by rows.
_NAN = r"(?s)contains NaN.*(imputer|drop samples)"
_INF = r"(?s)contains infinity.*(nan_to_num|clip)"
_TEXT = r"(?s)could not convert string to float.*(OneHotEncoder|OrdinalEncoder)"
_COMPLEX = r"(?s)Complex data not supported.*(X\.real|numpy\.abs)"
_N_FEATURES = r"(?s)X has {got} features, but SparseAutoencoder is expecting 5.*same columns"


def _param_row(name, value, expected, id_=None):
    """A row for an invalid hyper-parameter: sklearn's message names the parameter, its
    valid values (the fix) and the value given. ``expected`` is a regex."""
    message = (
        rf"'{name}' parameter of SparseAutoencoder must be {expected}.*\. "
        rf"Got {re.escape(repr(value))} instead"
    )
    return pytest.param(
        "fit", {name: value}, _data, InvalidParameterError, message, id=id_ or f"{name}={value!r}"
    )


_INT_FROM_1 = r"an int in the range \[1, inf\)"
_FLOAT_FROM_0 = r"a float in the range \[0\.0, inf\)"
_OPEN_UNIT = r"a float in the range \(0\.0, 1\.0\)"
# NumPy 1.x names the type numpy.bool_, NumPy 2 numpy.bool.
_BOOL = r"an instance of 'bool' or an instance of 'numpy\.bool_?'"


def _among(*options):
    # sklearn prints the options of a set, in no fixed order.
    return r"a str among \{(" + "|".join(f"'{o}'" for o in options) + r"|, )+\}"


# Inputs of the wrong number of dimensions, wrong for fit and transform alike:
# (input builder, message regex, id).
_WRONG_DIMENSIONS = (
    (lambda: _data()[0], r"(?s)Expected 2D array, got 1D array.*Reshape your data", "1-D"),
    (
        lambda: _data().reshape(N_SAMPLES, N_FEATURES, 1),
        r"(?s)dim 3.*2-D array of shape \(n_samples, n_features\).*reshape\(len\(X\), -1\)",
        "3-D",
    ),
)

# Each row: (method, hyper-parameters, input builder, exception type, message regex).
# method: "fit" on a fresh model; "transform"/"inverse_transform"/"score" on a model fitted
# on _data() (or on a DataFrame with _COLUMNS for "transform_df"); "refit" refits a model
# first fitted with warm_start=True after set_params(**hyper-parameters).
BAD_INPUT = [
    # ---- values
    pytest.param("fit", {}, lambda: _with(np.nan), ValueError, _NAN, id="NaN"),
    pytest.param("fit", {}, lambda: _with(np.inf), ValueError, _INF, id="+inf"),
    pytest.param("fit", {}, lambda: _with(-np.inf), ValueError, _INF, id="-inf"),
    pytest.param(
        "fit",
        {},
        lambda: _with(np.nan).astype(np.float32),
        ValueError,
        _NAN,
        id="NaN-float32",
    ),
    pytest.param("transform", {}, lambda: _with(np.nan), ValueError, _NAN, id="NaN-transform"),
    pytest.param("transform", {}, lambda: _with(np.inf), ValueError, _INF, id="inf-transform"),
    pytest.param("score", {}, lambda: _with(-np.inf), ValueError, _INF, id="-inf-score"),
    pytest.param(
        "inverse_transform",
        {},
        lambda: np.full((4, N_HIDDEN), np.nan),
        ValueError,
        r"(?s)Input H contains NaN",
        id="NaN-codes",
    ),
    pytest.param(
        "inverse_transform",
        {},
        lambda: np.full((4, N_HIDDEN), np.inf),
        ValueError,
        r"(?s)Input H contains infinity.*(nan_to_num|clip)",
        id="inf-codes",
    ),
    # ---- kinds of data
    pytest.param(
        "fit",
        {},
        lambda: np.array([["a", "b"], ["c", "d"], ["e", "f"]]),
        ValueError,
        _TEXT,
        id="strings",
    ),
    pytest.param(
        "fit",
        {},
        lambda: pd.DataFrame({"x": [0.1, 0.2, 0.3], "y": ["red", "green", "blue"]}),
        ValueError,
        _TEXT,
        id="DataFrame-text-column",
    ),
    pytest.param(
        "fit",
        {},
        lambda: _object_array([[0.1, "high"], [0.2, "low"], [0.3, "low"]]),
        ValueError,
        _TEXT,
        id="object-array-strings",
    ),
    pytest.param(
        "fit",
        {},
        lambda: _object_array([[0.1, None], [0.2, 0.5], [0.3, 0.4]]),
        ValueError,
        _NAN,
        id="object-array-None",
    ),
    pytest.param(
        "fit",
        {},
        lambda: _object_array([[0.1, [0.5, 0.6]], [0.2, 0.5], [0.3, 0.4]]),
        ValueError,
        r"(?s)sequence.*one number per cell",
        id="object-array-nested",
    ),
    pytest.param("fit", {}, lambda: _data() + 1j, ValueError, _COMPLEX, id="complex"),
    pytest.param(
        "transform", {}, lambda: _data() + 0j, ValueError, _COMPLEX, id="complex-transform"
    ),
    # ---- shapes
    pytest.param(
        "fit",
        {},
        lambda: np.empty((0, N_FEATURES)),
        ValueError,
        r"0 sample\(s\).*minimum of 2 is required",
        id="0-rows",
    ),
    pytest.param(
        "fit",
        {},
        lambda: np.empty((N_SAMPLES, 0)),
        ValueError,
        r"0 feature\(s\).*minimum of 1 is required",
        id="0-columns",
    ),
    pytest.param(
        "fit",
        {},
        lambda: _data()[:1],
        ValueError,
        r"1 sample\(s\).*minimum of 2 is required",
        id="1-row",
    ),
    *(
        pytest.param(method, {}, make, ValueError, message, id=name + suffix)
        for method, suffix in (("fit", ""), ("transform", "-transform"))
        for make, message, name in _WRONG_DIMENSIONS
    ),
    pytest.param(
        "transform",
        {},
        lambda: np.empty((0, N_FEATURES)),
        ValueError,
        r"0 sample\(s\).*minimum of 1 is required",
        id="0-rows-transform",
    ),
    pytest.param(
        "transform",
        {},
        lambda: _data()[:, :4],
        ValueError,
        _N_FEATURES.format(got=4),
        id="too-few-features-transform",
    ),
    pytest.param(
        "transform",
        {},
        lambda: _data(n_features=7),
        ValueError,
        _N_FEATURES.format(got=7),
        id="too-many-features-transform",
    ),
    pytest.param(
        "score",
        {},
        lambda: _data()[:, :4],
        ValueError,
        _N_FEATURES.format(got=4),
        id="wrong-features-score",
    ),
    pytest.param(
        "inverse_transform",
        {},
        lambda: _data(),
        ValueError,
        r"n_hidden=3 columns, got 5.*pass the output of transform",
        id="features-instead-of-codes-inverse",
    ),
    pytest.param(
        "inverse_transform",
        {},
        lambda: np.full((4, N_HIDDEN + 1), 0.5),
        ValueError,
        r"n_hidden=3 columns, got 4.*pass the output of transform",
        id="code-too-wide-inverse",
    ),
    pytest.param(
        "inverse_transform",
        {},
        lambda: np.full(N_HIDDEN, 0.5),
        ValueError,
        r"(?s)Expected 2D array, got 1D array.*Reshape your data",
        id="1-D-codes-inverse",
    ),
    pytest.param(
        "inverse_transform",
        {},
        lambda: np.full((4, N_HIDDEN, 1), 0.5),
        ValueError,
        r"(?s)dim 3.*2-D array",
        id="3-D-codes-inverse",
    ),
    # ---- pandas column names
    pytest.param(
        "transform_df",
        {},
        lambda: _frame(["a", "b", "c", "d", "z"]),
        ValueError,
        r"(?s)feature names should match those that were passed during fit.*unseen at fit"
        r".*- z.*missing.*- e",
        id="DataFrame-renamed-column",
    ),
    pytest.param(
        "transform_df",
        {},
        lambda: _frame(["b", "a", "c", "d", "e"]),
        ValueError,
        r"(?s)feature names should match.*same order as they were in fit",
        id="DataFrame-reordered-columns",
    ),
    pytest.param(
        "score_df",
        {},
        lambda: _frame(["v", "w", "x", "y", "z"]),
        ValueError,
        r"(?s)feature names should match.*unseen at fit",
        id="DataFrame-other-columns-score",
    ),
    # ---- not fitted
    pytest.param(
        "transform_unfitted",
        {},
        _data,
        NotFittedError,
        r"not fitted yet\. Call 'fit'",
        id="transform-before-fit",
    ),
    pytest.param(
        "inverse_unfitted",
        {},
        lambda: np.full((4, N_HIDDEN), 0.5),
        NotFittedError,
        r"not fitted yet\. Call 'fit'",
        id="inverse-transform-before-fit",
    ),
    # ---- invalid hyper-parameters (sklearn's validation names the valid range)
    _param_row("n_hidden", 0, _INT_FROM_1),
    _param_row("n_hidden", -5, _INT_FROM_1),
    _param_row("n_hidden", 2.5, _INT_FROM_1),
    _param_row("rho", 0, _OPEN_UNIT),
    _param_row("rho", 1, _OPEN_UNIT),
    _param_row("rho", -0.1, _OPEN_UNIT),
    _param_row("rho", 1.5, _OPEN_UNIT),
    _param_row("beta", -1.0, _FLOAT_FROM_0),
    _param_row("alpha", -1e-3, _FLOAT_FROM_0),
    _param_row("activation", "relu", _among("sigmoid", "tanh")),
    _param_row("decoder", "tanh", _among("auto", "sigmoid", "linear")),
    _param_row("loss", "l1", _among("squared", "cross_entropy")),
    _param_row("tied_weights", "yes", _BOOL),
    _param_row("noise", "salt", "None or " + _among("mask", "gaussian")),
    _param_row("noise_level", -0.1, _FLOAT_FROM_0),
    _param_row("batch_size", 0, "None or " + _INT_FROM_1),
    _param_row("batch_size", 2.5, "None or " + _INT_FROM_1),
    _param_row("max_iter", 0, _INT_FROM_1),
    _param_row("tol", -1e-5, _FLOAT_FROM_0),
    _param_row("warm_start", "no", _BOOL),
    _param_row("random_state", "seed", r"an int in the range \[0, 4294967295\]"),
    _param_row("verbose", -1, r"an int in the range \[0, inf\)"),
    _param_row("solver", "newton", _among("lbfgs", "adam", "sgd")),
    _param_row("mini_batch_size", 0, _among("auto") + " or " + _INT_FROM_1),
    _param_row("mini_batch_size", "all", _among("auto") + " or " + _INT_FROM_1),
    _param_row("learning_rate", "optimal", _among("constant", "invscaling", "adaptive")),
    _param_row("learning_rate_init", 0.0, r"a float in the range \(0\.0, inf\)"),
    _param_row("power_t", -1.0, _FLOAT_FROM_0),
    _param_row("momentum", 1.5, r"a float in the range \[0\.0, 1\.0\]"),
    _param_row("nesterovs_momentum", "yes", _BOOL),
    _param_row("beta_1", 1.0, r"a float in the range \[0\.0, 1\.0\)"),
    _param_row("beta_2", -0.1, r"a float in the range \[0\.0, 1\.0\)"),
    _param_row("epsilon", 0.0, r"a float in the range \(0\.0, inf\)"),
    _param_row("shuffle", "no", _BOOL),
    _param_row("early_stopping", "no", _BOOL),
    _param_row("validation_fraction", 1.0, _OPEN_UNIT),
    _param_row("n_iter_no_change", 0, _INT_FROM_1),
    # ---- invalid combinations (each names both parameters and what to change)
    pytest.param(
        "fit",
        {"noise": "mask"},
        _data,
        ValueError,
        r"noise='mask' needs a noise_level > 0.*noise_level=0\.3",
        id="noise-without-level",
    ),
    pytest.param(
        "fit",
        {"noise": "gaussian"},
        _data,
        ValueError,
        r"noise='gaussian' needs a noise_level > 0",
        id="gaussian-noise-without-level",
    ),
    pytest.param(
        "fit",
        {"noise_level": 0.3},
        _data,
        ValueError,
        r"noise_level=0\.3 has no effect with noise=None.*set noise='mask' or noise='gaussian'",
        id="level-without-noise",
    ),
    pytest.param(
        "fit",
        {"noise": "mask", "noise_level": 1.0},
        _data,
        ValueError,
        r"noise_level=1\.0 is a masking probability and must be below 1 for noise='mask'",
        id="mask-level-1",
    ),
    pytest.param(
        "fit",
        {"noise": "mask", "noise_level": 2.5},
        _data,
        ValueError,
        r"noise_level=2\.5 is a masking probability and must be below 1",
        id="mask-level-above-1",
    ),
    pytest.param(
        "fit",
        {"loss": "cross_entropy", "decoder": "linear"},
        _data,
        ValueError,
        r"loss='cross_entropy' needs a sigmoid decoder.*decoder='sigmoid'.*loss='squared'",
        id="cross-entropy-linear-decoder",
    ),
    pytest.param(
        "fit",
        {"loss": "cross_entropy"},
        lambda: _data() * 4 - 2,
        ValueError,
        r"loss='cross_entropy' needs data in \[0, 1\].*MinMaxScaler.*loss='squared'",
        id="cross-entropy-data-outside-0-1",
    ),
    pytest.param(
        "fit",
        {"loss": "cross_entropy", "decoder": "sigmoid"},
        lambda: _with(1.5),
        ValueError,
        r"loss='cross_entropy' needs data in \[0, 1\], but X ranges over \[.*, 1\.5\]",
        id="cross-entropy-one-value-above-1",
    ),
    pytest.param(
        "refit",
        {"n_hidden": N_HIDDEN + 1},
        _data,
        ValueError,
        r"warm_start=True cannot continue.*n_hidden=3.*n_hidden=4.*warm_start=False",
        id="warm-start-changed-n-hidden",
    ),
    pytest.param(
        "refit",
        {"tied_weights": True},
        _data,
        ValueError,
        r"warm_start=True cannot continue.*tied_weights=False.*tied_weights=True"
        r".*warm_start=False",
        id="warm-start-changed-tied-weights",
    ),
    pytest.param(
        "refit",
        {},
        lambda: _data(n_features=4),
        ValueError,
        r"warm_start=True cannot continue.*n_features=5.*n_features=4.*warm_start=False",
        id="warm-start-changed-n-features",
    ),
]


def _fitted(frame=False, **params):
    X = _frame(_COLUMNS) if frame else _data()
    return _fit_quietly(_model(**params), X)


@pytest.mark.parametrize("method, params, make_input, error, message", BAD_INPUT)
def test_bad_input_raises_a_clear_error(method, params, make_input, error, message):
    X = make_input()
    if method == "fit":
        estimator = _model(**params)
        with pytest.raises(error, match=message):
            estimator.fit(X)
        # A failed fit leaves no half-fitted estimator behind.
        with pytest.raises(NotFittedError):
            check_is_fitted(estimator)
        return
    if method == "refit":
        estimator = _fitted(warm_start=True)
        before = pickle.dumps(estimator)
        estimator.set_params(**params)
        with pytest.raises(error, match=message):
            estimator.fit(X)
        # The previous model is intact and still works.
        kept = pickle.loads(before)
        _assert_same_parameters(estimator, kept)
        assert estimator.n_iter_ == kept.n_iter_
        assert_array_equal(estimator.transform(_data()), kept.transform(_data()))
        return
    if method.endswith("_unfitted"):
        estimator = _model(**params)
        call = (
            estimator.transform
            if method == "transform_unfitted"
            else (estimator.inverse_transform)
        )
        with pytest.raises(error, match=message):
            call(X)
        return
    estimator = _fitted(frame=method.endswith("_df"), **params)
    call = getattr(estimator, method.removesuffix("_df"))
    with pytest.raises(error, match=message):
        call(X)


def test_bad_input_table_covers_every_hyper_parameter():
    """Every constrained hyper-parameter has at least one invalid-value row."""
    covered = {next(iter(p.values[1])) for p in BAD_INPUT if p.values[3] is InvalidParameterError}
    assert covered == set(SparseAutoencoder._parameter_constraints)


def test_column_names_warning_when_fitted_without_names():
    """Fitted on an array, transformed with a DataFrame: warned, not an error."""
    estimator = _fitted()
    with pytest.warns(UserWarning, match="was fitted without feature names"):
        estimator.transform(_frame(_COLUMNS))


# =========================================================================== numerical safety
_rng = np.random.RandomState(1)
EXTREME_DATA = {
    "large-1e6": _rng.uniform(0, 1e6, size=(30, 6)),
    "large-signed-1e6": _rng.standard_normal((30, 6)) * 1e6,
    "tiny-1e-12": _rng.uniform(0, 1e-12, size=(30, 6)),
    "constant-columns": np.hstack(
        [_rng.uniform(size=(30, 3)), np.full((30, 2), 0.7), np.zeros((30, 1))]
    ),
    "duplicate-rows": np.repeat(_rng.uniform(size=(3, 6)), 10, axis=0),
    "all-zero": np.zeros((30, 6)),
    "all-one": np.ones((30, 6)),
}
OPTION_SETS = {
    "default": {},
    "tanh": {"activation": "tanh"},
    "tied": {"tied_weights": True},
    "batch": {"batch_size": 7},
    "linear": {"decoder": "linear"},
    "cross-entropy": {"loss": "cross_entropy"},
    "mask-noise": {"noise": "mask", "noise_level": 0.3},
    "gaussian-noise": {"noise": "gaussian", "noise_level": 0.1},
    "no-penalties": {"alpha": 0.0, "beta": 0.0},
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("options", list(OPTION_SETS), ids=str)
@pytest.mark.parametrize("data", list(EXTREME_DATA), ids=str)
def test_extreme_data_no_runtime_warning_and_finite(data, options, dtype):
    X = EXTREME_DATA[data].astype(dtype)
    params = OPTION_SETS[options]
    if params.get("loss") == "cross_entropy" and not (X.min() >= 0 and X.max() <= 1):
        params = {**params, "loss": "squared"}  # refused with a clear error, tested above
    estimator = _model(n_hidden=4, max_iter=30, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        estimator.fit(X)
        H = estimator.transform(X)
        R = estimator.inverse_transform(H)
        score = estimator.score(X)
        scores = estimator.score_samples(X)
        H_scaled = estimator.transform(X * dtype(1e3))  # far outside the training range
    f = ACTIVATIONS[estimator.activation]
    for array in (*_parameters(estimator), H, R, H_scaled):
        assert np.all(np.isfinite(array))
        assert array.dtype == dtype
    assert np.all(np.isfinite(scores)) and scores.dtype == np.float64
    assert np.isfinite(score) and np.isfinite(estimator.loss_)
    assert np.all(np.isfinite(estimator.loss_curve_))
    assert H.min() >= f.low and H.max() <= f.high
    assert H_scaled.min() >= f.low and H_scaled.max() <= f.high


def test_sigmoid_is_stable_at_extremes():
    z = np.array([-1e308, -1e4, -745.0, -40.0, 0.0, 40.0, 745.0, 1e4, 1e308])
    z32 = np.array([-3e38, -1e4, -745.0, -40.0, 0.0, 40.0, 745.0, 1e4, 3e38], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        a = ACTIVATIONS["sigmoid"].forward(z.copy())
        a32 = ACTIVATIONS["sigmoid"].forward(z32)
    assert np.all(np.isfinite(a)) and np.all(np.isfinite(a32))
    assert a[0] == 0.0 and a[-1] == 1.0 and a[4] == 0.5
    assert a32[0] == 0.0 and a32[-1] == 1.0 and a32[4] == 0.5
    assert np.all(np.diff(a) >= 0) and np.all(np.diff(a32) >= 0)
    assert_allclose(a[3], 1 / (1 + np.exp(40.0)))


@pytest.mark.parametrize("rho_hat", [0.0, 1.0, 1e-300, 1 - 1e-17])
def test_kl_penalty_is_guarded_when_firing_rate_saturates(rho_hat):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        value = kl_divergence(0.1, np.array([rho_hat]))
        slope = kl_divergence_derivative(0.1, np.array([rho_hat]))
    assert np.all(np.isfinite(value)) and np.all(np.isfinite(slope))
    # Large: a saturated unit is far from the target rate of 0.1.
    assert value[0] > 1.0
    # And pushes back towards the target.
    assert (slope[0] < 0) if rho_hat < 0.1 else (slope[0] > 0)


def _poison_objective(monkeypatch, after, what="loss"):
    """Make the objective return a non-finite value from evaluation ``after`` on."""
    original = AutoencoderObjective.__call__
    calls = {"n": 0}

    def poisoned(self, theta):
        J, grad = original(self, theta)
        calls["n"] += 1
        if calls["n"] > after:
            if what == "loss":
                return np.nan, grad
            grad = grad.copy()
            grad[0] = np.inf
        return J, grad

    monkeypatch.setattr(AutoencoderObjective, "__call__", poisoned)
    return calls


@pytest.mark.parametrize("after", [0, 5])
@pytest.mark.parametrize("what", ["loss", "gradient"])
def test_non_finite_objective_raises_and_keeps_unfitted(monkeypatch, after, what):
    _poison_objective(monkeypatch, after, what)
    estimator = _model(max_iter=50)
    with pytest.raises(ValueError, match=rf"{what} became non-finite.*Scale the input"):
        estimator.fit(_data())
    with pytest.raises(NotFittedError):
        check_is_fitted(estimator)


@pytest.mark.parametrize("warm_start", [False, True])
def test_non_finite_objective_keeps_previous_model(monkeypatch, warm_start):
    estimator = _fitted(warm_start=warm_start, max_iter=10)
    before = pickle.dumps(estimator)
    H_before = estimator.transform(_data())
    _poison_objective(monkeypatch, after=3)
    with pytest.raises(FloatingPointError, match="became non-finite"):
        estimator.fit(_data(seed=1))
    kept = pickle.loads(before)
    _assert_same_parameters(estimator, kept)
    assert estimator.loss_ == kept.loss_
    assert estimator.loss_curve_ == kept.loss_curve_
    assert estimator.n_iter_ == kept.n_iter_
    assert_array_equal(estimator.transform(_data()), H_before)


# =========================================================================== interruption
def _wrap_the_callback(monkeypatch, wrap):
    """Make each L-BFGS the driver can call (SciPy's ``minimize`` and skae's
    ``minimize_lbfgs``) run with ``wrap(callback)`` instead of the driver's ``callback``."""
    for name in ("minimize", "minimize_lbfgs"):

        def wrapped(*args, callback, original=getattr(optimize_module, name), **kwargs):
            return original(*args, callback=wrap(callback), **kwargs)

        monkeypatch.setattr(optimize_module, name, wrapped)


def _interrupt_in_callback(monkeypatch, after_iterations):
    """Raise KeyboardInterrupt from L-BFGS's callback once ``after_iterations`` are done,
    recording the iterates L-BFGS accepted."""
    accepted = []

    def wrap(callback):
        def interrupting(intermediate_result):
            callback(intermediate_result)
            accepted.append(np.array(intermediate_result.x))
            if len(accepted) == after_iterations:
                raise KeyboardInterrupt

        return interrupting

    _wrap_the_callback(monkeypatch, wrap)
    return accepted


def _interrupt_in_objective(monkeypatch, at_evaluation):
    """Raise KeyboardInterrupt (once) from the objective's evaluation number ``at_evaluation``,
    and record the iterates L-BFGS accepted before it."""
    original_call = AutoencoderObjective.__call__
    calls = {"n": 0}
    accepted = []

    def interrupting(self, theta):
        calls["n"] += 1
        if calls["n"] == at_evaluation:
            raise KeyboardInterrupt
        return original_call(self, theta)

    def wrap(callback):
        def recording(intermediate_result):
            accepted.append(np.array(intermediate_result.x))
            callback(intermediate_result)

        return recording

    monkeypatch.setattr(AutoencoderObjective, "__call__", interrupting)
    _wrap_the_callback(monkeypatch, wrap)
    return accepted


def _flat(estimator):
    layout = ParameterLayout(
        estimator.n_features_in_, estimator.components_.shape[0], estimator.tied_weights
    )
    return layout.pack(*_parameters(estimator))


@pytest.mark.parametrize("options", ["default", "tied", "batch", "mask-noise"])
@pytest.mark.parametrize("k", [1, 4])
def test_interrupt_from_callback_keeps_last_accepted_parameters(monkeypatch, options, k):
    params = dict(OPTION_SETS[options], max_iter=50)
    X = _data(40, 6)
    accepted = _interrupt_in_callback(monkeypatch, k)
    estimator = _model(**params)
    with pytest.warns(UserWarning, match=rf"interrupted after {k} iterations"):
        estimator.fit(X)
    check_is_fitted(estimator)
    assert estimator.n_iter_ == k
    assert len(estimator.loss_curve_) == k
    assert len(accepted) == k
    assert_array_equal(_flat(estimator), accepted[-1])
    # The same as stopping L-BFGS after k iterations on purpose.
    monkeypatch.undo()
    with pytest.warns(ConvergenceWarning):
        reference = _model(**dict(params, max_iter=k)).fit(X)
    _assert_same_parameters(estimator, reference)
    assert estimator.loss_ == pytest.approx(reference.loss_, rel=1e-12)
    assert estimator.loss_curve_ == pytest.approx(reference.loss_curve_, rel=1e-12)
    assert np.all(np.isfinite(estimator.transform(X)))


@pytest.mark.parametrize("at_evaluation", [4, 9])
def test_interrupt_from_objective_keeps_last_accepted_parameters(monkeypatch, at_evaluation):
    """Ctrl-C in a line search after the first iteration (whose line search takes one
    evaluation with SciPy's L-BFGS-B, two with skae's, on these data)."""
    X = _data(40, 6)
    accepted = _interrupt_in_objective(monkeypatch, at_evaluation)
    estimator = _model(max_iter=50)
    with pytest.warns(UserWarning, match="training was interrupted"):
        estimator.fit(X)
    done = len(accepted)
    assert 1 <= done < at_evaluation
    assert estimator.n_iter_ == done
    assert len(estimator.loss_curve_) == done
    assert_array_equal(_flat(estimator), accepted[-1])
    monkeypatch.undo()
    with pytest.warns(ConvergenceWarning):
        reference = _model(max_iter=done).fit(X)
    _assert_same_parameters(estimator, reference)


def test_interrupt_before_first_iteration_keeps_initial_parameters(monkeypatch):
    X = _data(40, 6)
    _interrupt_in_objective(monkeypatch, at_evaluation=1)
    estimator = _model(max_iter=50, random_state=3)
    with pytest.warns(UserWarning, match="interrupted after 0 iterations"):
        estimator.fit(X)
    assert estimator.n_iter_ == 0
    assert estimator.loss_curve_ == []
    # UFLDL initialisation from the seed: weights uniform in ±sqrt(6/(n+h+1)), biases 0.
    r = np.sqrt(6.0 / (6 + N_HIDDEN + 1))
    assert np.all(np.abs(estimator.components_) <= r)
    assert np.all(np.abs(estimator.decoder_components_) <= r)
    assert_array_equal(estimator.intercept_hidden_, 0.0)
    assert_array_equal(estimator.intercept_visible_, 0.0)
    expected = ParameterLayout(6, N_HIDDEN).initialize(np.random.RandomState(3))
    assert_array_equal(_flat(estimator), expected)
    assert np.isfinite(estimator.loss_)
    assert np.all(np.isfinite(estimator.transform(X)))


def test_interrupt_during_warm_start_keeps_previous_parameters(monkeypatch):
    X = _data(40, 6)
    estimator = _fitted(warm_start=True, max_iter=5)
    previous = _flat(estimator)
    _interrupt_in_objective(monkeypatch, at_evaluation=1)
    with pytest.warns(UserWarning, match="interrupted"):
        estimator.fit(X[:, :N_FEATURES])
    assert_array_equal(_flat(estimator), previous)
    assert estimator.n_iter_ == 0


# =========================================================================== shared inputs
def _layouts(tmp_path, X):
    """(name, array to pass, base object(s) whose bytes must not change)."""
    read_only = X.copy()
    read_only.flags.writeable = False
    np.save(tmp_path / "X.npy", X)
    memmap = np.load(tmp_path / "X.npy", mmap_mode="r")
    raw = np.memmap(tmp_path / "X.raw", dtype=X.dtype, mode="w+", shape=X.shape)
    raw[...] = X
    raw.flush()
    del raw
    raw_r = np.memmap(tmp_path / "X.raw", dtype=X.dtype, mode="r", shape=X.shape)
    wide = np.repeat(np.repeat(X, 2, axis=0), 3, axis=1)
    strided = wide[::2, ::3]
    assert not strided.flags.c_contiguous and not strided.flags.f_contiguous
    fortran = np.asfortranarray(X)
    fortran_ro = np.asfortranarray(X)
    fortran_ro.flags.writeable = False
    wide_ro = wide.copy()
    wide_ro.flags.writeable = False
    csr = sp.csr_matrix(X)
    for part in (csr.data, csr.indices, csr.indptr):
        part.flags.writeable = False
    return {
        "read-only": (read_only, [read_only]),
        "npy-memmap-r": (memmap, [memmap]),
        "raw-memmap-r": (raw_r, [raw_r]),
        "non-contiguous-slice": (strided, [wide]),
        "read-only-non-contiguous": (wide_ro[::2, ::3], [wide_ro]),
        "fortran": (fortran, [fortran]),
        "read-only-fortran": (fortran_ro, [fortran_ro]),
        "read-only-csr": (csr, [csr.data, csr.indices, csr.indptr]),
    }


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("options", ["default", "tied", "batch", "mask-noise", "cross-entropy"])
@pytest.mark.parametrize(
    "layout",
    [
        "read-only",
        "npy-memmap-r",
        "raw-memmap-r",
        "non-contiguous-slice",
        "read-only-non-contiguous",
        "fortran",
        "read-only-fortran",
        "read-only-csr",
    ],
)
def test_shared_inputs_are_never_modified(tmp_path, layout, options, dtype):
    X = _data(30, 6).astype(dtype)
    X[X < 0.2] = 0.0  # some zeros, for the sparse layout
    given, bases = _layouts(tmp_path, X)[layout]
    snapshots = [np.array(b, copy=True) for b in bases]
    flags = [b.flags.writeable for b in bases]
    files = {p: p.read_bytes() for p in tmp_path.iterdir()}

    estimator = _model(max_iter=10, **OPTION_SETS[options])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        estimator.fit(given)
        H = estimator.transform(given)
        score = estimator.score(given)
        scores = estimator.score_samples(given)
        H_again = estimator.fit_transform(given)
    # Codes handed back in shared layouts too.
    H_ro = np.asfortranarray(H)
    H_ro.flags.writeable = False
    H_snapshot = H_ro.copy()
    R = estimator.inverse_transform(H_ro)
    R_strided = estimator.inverse_transform(np.repeat(H, 2, axis=0)[::2])

    for b, snapshot, writeable in zip(bases, snapshots, flags, strict=True):
        assert b.tobytes() == snapshot.tobytes()
        assert b.flags.writeable == writeable
    assert H_ro.tobytes() == H_snapshot.tobytes()
    for p, content in files.items():
        assert p.read_bytes() == content
    # And the results are those of an ordinary (writable) array of the same kind: sparse
    # input draws its mask noise for the stored entries only, so it is compared with a
    # writable CSR matrix.
    ordinary = sp.csr_matrix(X) if layout == "read-only-csr" else X.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        plain = _model(max_iter=10, **OPTION_SETS[options]).fit(ordinary)
    # Sparse and strided products sum in another order: equal to rounding, amplified a
    # little by 10 L-BFGS iterations (in float32 up to 2e-4 with NumPy 1.26's OpenBLAS).
    tolerance = dict(rtol=2e-3, atol=1e-3) if dtype == np.float32 else dict(rtol=1e-7, atol=1e-9)
    _assert_same_parameters(estimator, plain, **tolerance)
    assert_allclose(H, plain.transform(X), **tolerance)
    assert_allclose(H_again, H)
    assert_allclose(R, R_strided)
    assert np.isfinite(score)
    assert score == np.mean(scores)
    assert H.dtype == R.dtype == dtype


# =========================================================================== concurrency
def _concurrency_data():
    return np.random.RandomState(7).uniform(size=(60, 8))


def _grid_search(n_jobs):
    search = GridSearchCV(
        SparseAutoencoder(n_hidden=4, max_iter=15, random_state=0),
        {"rho": [0.05, 0.2], "beta": [0.0, 3.0]},
        cv=KFold(3),
        n_jobs=n_jobs,
    )
    with warnings.catch_warnings(), parallel_backend("loky"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(_concurrency_data())
    return search


def test_grid_search_n_jobs_2_gives_the_same_scores_as_n_jobs_1():
    serial, parallel = _grid_search(1), _grid_search(2)
    for key in ["mean_test_score", *(f"split{i}_test_score" for i in range(3))]:
        assert_allclose(parallel.cv_results_[key], serial.cv_results_[key], rtol=1e-10)
    assert parallel.best_params_ == serial.best_params_
    _assert_same_parameters(parallel.best_estimator_, serial.best_estimator_, rtol=1e-10)


def test_cross_val_score_n_jobs_2_gives_the_same_scores_as_n_jobs_1():
    """Above the parallel threshold, with two BLAS threads here (two workers per fit) and
    loky's cap of one in its workers (one worker per fit): the very same scores."""
    from threadpoolctl import threadpool_limits

    estimator = SparseAutoencoder(n_hidden=4, max_iter=15, random_state=0, tied_weights=True)
    X = np.vstack([_digits()] * 2)  # folds of 2 696 rows stay above the threshold
    scores = {}
    for n_jobs in (1, 2):
        with warnings.catch_warnings(), parallel_backend("loky"):
            warnings.simplefilter("ignore", ConvergenceWarning)
            with threadpool_limits(2, user_api="blas"):
                scores[n_jobs] = cross_val_score(clone(estimator), X, cv=KFold(4), n_jobs=n_jobs)
    assert np.all(np.isfinite(scores[1]))
    assert len(set(scores[1].tolist())) > 1  # the folds differ: the comparison means something
    assert_array_equal(scores[2], scores[1])


def test_fit_under_threadpool_limits_gives_the_same_model():
    """The documented way to avoid oversubscription (threadpool_limits(1)) changes nothing
    but speed."""
    from threadpoolctl import threadpool_limits

    free = _fitted(max_iter=15)
    with threadpool_limits(1):
        limited = _fitted(max_iter=15)
    _assert_same_parameters(free, limited, rtol=1e-9, atol=1e-12)


# =========================================================================== issue 8
def _digits():
    from sklearn.datasets import load_digits

    X = load_digits().data / 16.0  # 1797 x 64: above the parallel threshold
    assert X.size >= PARALLEL_MIN_SIZE
    return X


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_model_is_bitwise_independent_of_the_blas_thread_count():
    """Data above the parallel threshold: one worker under threadpool_limits(1), two under
    threadpool_limits(2); the fitted models are identical to the last bit."""
    from threadpoolctl import threadpool_limits

    X = _digits()
    spec = AutoencoderSpec(64, 20)
    models, workers = {}, {}
    for threads in (1, 2):
        with threadpool_limits(threads, user_api="blas"):
            workers[threads] = AutoencoderObjective(spec, X).n_workers
            models[threads] = SparseAutoencoder(n_hidden=20, max_iter=30, random_state=0).fit(X)
    if workers[2] != 2:
        pytest.skip("this BLAS cannot be set to two threads")
    assert workers[1] == 1
    _assert_same_parameters(models[1], models[2])
    assert models[1].loss_curve_ == models[2].loss_curve_


def _stack_parameters(model):
    """Every array a stacked model predicts or reconstructs with."""
    from skae._network import network_layers

    arrays = [a for ae in model.autoencoders_ for a in (ae.components_, ae.decoder_components_)]
    if hasattr(model, "layers_"):
        arrays += [array for layer in model.layers_ for array in (layer.weights, layer.bias)]
    return arrays + [layer.weights for layer in network_layers(model)]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize(
    "make",
    [
        lambda: skae.StackedAutoencoder(
            (20, 10), solver="adam", max_iter=2, mini_batch_size=7, random_state=0
        ),
        lambda: skae.StackedAutoencoderClassifier(
            (20,), max_iter=3, softmax_max_iter=3, fine_tune=None, random_state=0
        ),
        lambda: skae.StackedAutoencoderClassifier(
            (20, 8), solver="adam", max_iter=2, softmax_max_iter=2, fine_tune_max_iter=2,
            random_state=0,
        ),
    ],
    ids=["stack-adam", "classifier-lbfgs", "classifier-adam"],
)
def test_stacked_models_are_bitwise_independent_of_the_blas_thread_count(make):
    """The codes a stack computes between its stages (each layer's input, the frozen
    layers' codes of the softmax) are products too, and OpenBLAS rounds a product
    differently on one thread and on two: they are computed on one BLAS thread during a
    fit, so the model is the same to the last bit whatever BLAS's thread count, and when
    another fit runs at the same time."""
    import concurrent.futures
    import threading

    from sklearn.datasets import load_digits
    from threadpoolctl import threadpool_info, threadpool_limits

    def set_blas_threads(n):
        # from a short-lived thread, as a program's start-up setting would be: a change
        # made by the main thread would make OpenBLAS ignore skae's own later changes
        # (skae._parallel._in_limiter_thread)
        thread = threading.Thread(target=threadpool_limits, args=(n,), kwargs={"user_api": "blas"})
        thread.start()
        thread.join()

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    before = min(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")
    models = {}
    try:
        for threads in (1, 2):
            set_blas_threads(threads)
            models[threads] = make().fit(X, y)
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            other = pool.submit(SparseAutoencoder(n_hidden=30, max_iter=40, random_state=1).fit, X)
            models["concurrent"] = pool.submit(lambda: make().fit(X, y)).result()
            other.result()
    finally:
        set_blas_threads(before)
    for name in (2, "concurrent"):
        for a, b in zip(_stack_parameters(models[1]), _stack_parameters(models[name])):
            assert_array_equal(a, b)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_cross_val_score_under_threads_is_exactly_reproducible():
    """joblib's threading backend runs fits at once in threads (sharing skae's BLAS
    limit, also inside the main thread's threadpool_limits): the scores equal n_jobs=1
    exactly, above the parallel threshold."""
    from threadpoolctl import threadpool_limits

    X = np.vstack([_digits()] * 2)
    estimator = SparseAutoencoder(n_hidden=10, max_iter=10, random_state=0)
    with threadpool_limits(2, user_api="blas"):
        serial = cross_val_score(estimator, X, cv=KFold(3))
        with parallel_backend("threading"):
            threaded = cross_val_score(estimator, X, cv=KFold(3), n_jobs=3)
    assert len(set(serial.tolist())) == 3
    assert_array_equal(threaded, serial)


def test_lbfgs_abnormal_line_search_warns_with_the_reason():
    """A gradient that is not the objective's (here its opposite) makes the line search
    fail: status 2, which must not pass silently."""

    def wrong(theta):
        return float(theta @ theta), -2.0 * theta

    with pytest.warns(ConvergenceWarning, match=r"status 2: ABNORMAL.*line search"):
        result = optimize_module.run_lbfgs(wrong, np.ones(3), max_iter=50, tol=1e-8)
    assert result.status == 2 and not result.converged


def test_lbfgs_evaluation_limit_is_not_blamed_on_max_iter(monkeypatch):
    monkeypatch.setattr(optimize_module, "_EVALUATIONS_PER_ITERATION", 1)
    X = _data(40, 6)
    with pytest.warns(ConvergenceWarning, match="limit of 50 objective evaluations") as record:
        _model(max_iter=50).fit(X)
    assert "increase max_iter" not in str(record[0].message)


def test_max_iter_warning_names_max_iter():
    with pytest.warns(ConvergenceWarning, match=r"max_iter=3; increase max_iter"):
        _model(max_iter=3).fit(_data(40, 6))


def test_warnings_point_at_the_callers_line():
    """Filtering by module or file works: the warning is attributed to this file, not to
    scikit-learn's _fit_context, also through a Pipeline."""
    from sklearn.pipeline import make_pipeline

    with pytest.warns(ConvergenceWarning) as record:
        _model(max_iter=2).fit(_data())
    assert record[0].filename == __file__
    with pytest.warns(ConvergenceWarning) as record:
        make_pipeline(_model(max_iter=2)).fit(_data())
    assert record[0].filename == __file__


def test_n_iter_counts_completed_iterations_in_every_case(monkeypatch):
    """One rule: n_iter_ == len(loss_curve_) == iterations completed, 0 included."""
    X = _data(40, 6)
    at_start = _model(max_iter=50, tol=1e10).fit(X)  # the start satisfies the tolerance
    assert at_start.n_iter_ == 0 == len(at_start.loss_curve_)
    _interrupt_in_objective(monkeypatch, at_evaluation=1)
    with pytest.warns(UserWarning, match="interrupted after 0 iterations"):
        interrupted = _model(max_iter=50).fit(X)
    assert interrupted.n_iter_ == 0 == len(interrupted.loss_curve_)


def test_tol_has_an_effect():
    X = _data(60, 6)
    loose = _model(max_iter=2000, tol=1e-2).fit(X)
    tight = _model(max_iter=2000, tol=1e-7).fit(X)
    assert loose.n_iter_ < tight.n_iter_
    assert tight.loss_ < loose.loss_


def _interrupt_from_a_worker(monkeypatch, ctrl_c, at_call):
    """Ctrl-C while a worker's block is in flight: the block of pass 1 that makes the
    ``at_call``-th encoding presses Ctrl-C (``ctrl_c``), then keeps computing until the
    thread that waits for the workers has caught the interrupt and waits for the blocks in
    flight. Returns the record of the encodings."""
    import threading

    original = AutoencoderObjective._encode_into
    record = {"calls": 0, "running": 0, "held": None, "interrupted_block_done": False}
    lock = threading.Lock()

    def in_flight(self, Xc, W1, b1, out):
        with lock:
            record["calls"] += 1
            record["running"] += 1
            fire = record["calls"] == at_call
        try:
            if fire:
                ctrl_c.press()
                record["held"] = ctrl_c.wait_handled()
            return original(self, Xc, W1, b1, out)
        finally:
            with lock:
                record["running"] -= 1
                record["interrupted_block_done"] |= fire

    monkeypatch.setattr(AutoencoderObjective, "_encode_into", in_flight)
    return record


@pytest.mark.parametrize("at_call", [2, 40])  # in the first evaluation, or later
def test_interrupt_with_several_workers_waits_for_in_flight_blocks(monkeypatch, ctrl_c, at_call):
    """Ctrl-C while worker threads run: no block is still running when fit returns, and
    loss_ is the objective at the kept parameters exactly."""
    from threadpoolctl import threadpool_limits

    X = _digits()
    record = _interrupt_from_a_worker(monkeypatch, ctrl_c, at_call)
    with threadpool_limits(2, user_api="blas"):
        if AutoencoderObjective(AutoencoderSpec(64, 8), X).n_workers != 2:
            pytest.skip("this BLAS cannot be set to two threads")
        estimator = SparseAutoencoder(n_hidden=8, max_iter=50, random_state=0)
        with pytest.warns(UserWarning, match="interrupted"):
            estimator.fit(X)
        # read now: a block still running after fit returned would change them later
        running, interrupted_block_done = record["running"], record["interrupted_block_done"]
    assert ctrl_c.raised == 1
    assert record["held"], "the interrupted block was not in flight when Ctrl-C was handled"
    assert interrupted_block_done, "fit returned while a block was in flight"
    assert running == 0
    monkeypatch.undo()
    spec = estimator._spec_
    theta = spec.layout.pack(*_parameters(estimator))
    assert estimator.loss_ == AutoencoderObjective(spec, X, n_workers=1)(theta)[0]


def test_interrupt_returns_without_finishing_the_evaluation(monkeypatch, ctrl_c):
    """Later blocks of an interrupted evaluation are not started: Ctrl-C comes from the
    first block of the evaluation after the first iteration, and every block of that
    evaluation is held until the interrupt is caught; of its 8 blocks only those in flight
    (at most one per worker) ran, and fit keeps the first iteration's model."""
    import threading

    from threadpoolctl import threadpool_limits

    X = np.tile(_digits(), (5, 1))[: 8 * block_rows_for(64, 8)]  # 8 blocks
    armed = threading.Event()
    started = []
    lock = threading.Lock()
    original = AutoencoderObjective._encode_into

    def held(self, Xc, W1, b1, out):
        if armed.is_set():
            with lock:
                started.append(len(started))
                first = len(started) == 1
            if first:
                ctrl_c.press()
            assert ctrl_c.wait_handled(), "map_blocks did not wait for the blocks in flight"
        return original(self, Xc, W1, b1, out)

    def arm_after_the_first_iteration(callback):
        def wrapped(intermediate_result):
            callback(intermediate_result)
            armed.set()

        return wrapped

    monkeypatch.setattr(AutoencoderObjective, "_encode_into", held)
    _wrap_the_callback(monkeypatch, arm_after_the_first_iteration)
    with threadpool_limits(2, user_api="blas"):
        objective = AutoencoderObjective(AutoencoderSpec(64, 8), X)
        if objective.n_workers != 2:
            pytest.skip("this BLAS cannot be set to two threads")
        estimator = SparseAutoencoder(n_hidden=8, max_iter=50, random_state=0)
        with pytest.warns(UserWarning, match="interrupted after 1 iterations"):
            estimator.fit(X)
    assert ctrl_c.raised == 1
    assert len(objective.blocks) == 8
    assert 1 <= len(started) <= 2
    assert estimator.n_iter_ == 1
