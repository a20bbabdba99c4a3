"""Property tests (hypothesis) of SparseAutoencoder over random shapes, dtypes, value ranges
and option sets. Examples are few and small so the file runs in well under a minute."""

import io
import pickle
import warnings

import joblib
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

from skae import SparseAutoencoder

SETTINGS = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)

RANGES = {
    "unit": lambda rng, shape: rng.uniform(0.0, 1.0, shape),
    "binary": lambda rng, shape: (rng.uniform(size=shape) < 0.3).astype(float),
    "standardized": lambda rng, shape: rng.standard_normal(shape),
    "large": lambda rng, shape: rng.uniform(-1e4, 1e4, shape),
    "small": lambda rng, shape: rng.uniform(0.0, 1e-6, shape),
}
ACTIVATION_RANGE = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}


@st.composite
def problems(draw):
    """(X, hyper-parameters) for a valid fit."""
    n_samples = draw(st.integers(2, 30))
    n_features = draw(st.integers(1, 8))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    value_range = draw(st.sampled_from(sorted(RANGES)))
    seed = draw(st.integers(0, 2**16))
    X = RANGES[value_range](np.random.RandomState(seed), (n_samples, n_features)).astype(dtype)
    in_unit = bool(X.min() >= 0 and X.max() <= 1)

    decoder = draw(st.sampled_from(["auto", "sigmoid", "linear"]))
    losses = ["squared"] + (["cross_entropy"] if in_unit and decoder != "linear" else [])
    noise = draw(st.sampled_from([None, "mask", "gaussian"]))
    if noise == "mask":
        noise_level = draw(st.floats(0.05, 0.9))
    elif noise == "gaussian":
        noise_level = draw(st.floats(0.01, 1.0))
    else:
        noise_level = 0.0
    params = dict(
        n_hidden=draw(st.integers(1, 6)),
        activation=draw(st.sampled_from(["sigmoid", "tanh"])),
        decoder=decoder,
        loss=draw(st.sampled_from(losses)),
        tied_weights=draw(st.booleans()),
        noise=noise,
        noise_level=noise_level,
        batch_size=draw(st.one_of(st.none(), st.integers(1, n_samples + 3))),
        rho=draw(st.floats(0.01, 0.99)),
        beta=draw(st.sampled_from([0.0, 0.5, 3.0])),
        alpha=draw(st.sampled_from([0.0, 1e-4, 3e-3])),
        max_iter=draw(st.integers(1, 8)),
        random_state=draw(st.integers(0, 1000)),
    )
    return X, params


def _fit(X, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return SparseAutoencoder(**params).fit(X)


def _fitted_arrays(estimator):
    return (
        estimator.components_,
        estimator.intercept_hidden_,
        estimator.decoder_components_,
        estimator.intercept_visible_,
    )


def _assert_same_model(a, b):
    for pa, pb in zip(_fitted_arrays(a), _fitted_arrays(b), strict=True):
        assert pa.dtype == pb.dtype
        assert_array_equal(pa, pb)
    assert a.loss_ == b.loss_
    assert a.loss_curve_ == b.loss_curve_
    assert a.n_iter_ == b.n_iter_
    assert a.decoder_ == b.decoder_


@SETTINGS
@given(problems())
def test_shapes_finite_range_and_dtype(problem):
    X, params = problem
    m, n = X.shape
    h = params["n_hidden"]
    estimator = _fit(X, **params)

    H = estimator.transform(X)
    R = estimator.inverse_transform(H)
    assert H.shape == (m, h) and R.shape == (m, n)
    assert estimator.components_.shape == estimator.decoder_components_.shape == (h, n)
    assert estimator.intercept_hidden_.shape == (h,)
    assert estimator.intercept_visible_.shape == (n,)
    assert estimator.n_features_in_ == n
    assert estimator.get_feature_names_out().shape == (h,)
    if params["tied_weights"]:
        assert estimator.decoder_components_ is estimator.components_

    for array in (H, R, *_fitted_arrays(estimator)):
        assert array.dtype == X.dtype  # float32 kept, float64 kept
        assert np.all(np.isfinite(array))
    assert np.isfinite(estimator.loss_) and np.isfinite(estimator.score(X))
    assert 0 <= estimator.n_iter_ <= params["max_iter"]
    assert len(estimator.loss_curve_) == estimator.n_iter_
    assert len(estimator.loss_curve_) >= 1 and np.all(np.isfinite(estimator.loss_curve_))

    low, high = ACTIVATION_RANGE[params["activation"]]
    assert H.min() >= low and H.max() <= high
    if estimator.decoder_ == "sigmoid":
        assert R.min() >= 0.0 and R.max() <= 1.0
    in_unit = X.min() >= 0 and X.max() <= 1
    if params["decoder"] == "auto":
        assert estimator.decoder_ == ("sigmoid" if in_unit else "linear")
    else:
        assert estimator.decoder_ == params["decoder"]

    # fit_transform is fit then transform.
    assert_allclose(_fit_transform(X, params), H, rtol=1e-5, atol=1e-6)


def _fit_transform(X, params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return SparseAutoencoder(**params).fit_transform(X)


@SETTINGS
@given(problems())
def test_same_seed_and_clone_give_the_same_model(problem):
    X, params = problem
    first = _fit(X, **params)
    again = _fit(X, **params)
    _assert_same_model(first, again)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        cloned = clone(first).fit(X)
    _assert_same_model(first, cloned)
    assert_array_equal(cloned.transform(X), first.transform(X))


@SETTINGS
@given(problems(), st.integers(1, 40))
def test_batch_size_gives_the_same_model(problem, batch_size):
    X, params = problem
    params = dict(params, max_iter=min(params["max_iter"], 4))
    whole = _fit(X, **dict(params, batch_size=None))
    chunked = _fit(X, **dict(params, batch_size=batch_size))
    if batch_size >= X.shape[0]:  # one block either way: the identical model
        _assert_same_model(whole, chunked)
    # The chunked evaluation equals the one-shot one to rounding; a few L-BFGS
    # iterations amplify rounding only slightly.
    if X.dtype == np.float64:
        tolerance = dict(rtol=1e-6, atol=1e-8)
    else:
        tolerance = dict(rtol=2e-2, atol=2e-3)
    for a, b in zip(_fitted_arrays(whole), _fitted_arrays(chunked), strict=True):
        assert_allclose(a, b, **tolerance)
    assert_allclose(whole.loss_, chunked.loss_, **tolerance)
    assert whole.n_iter_ == chunked.n_iter_ or X.dtype == np.float32


@SETTINGS
@given(problems())
def test_pickle_and_joblib_round_trips_give_identical_outputs(problem):
    X, params = problem
    estimator = _fit(X, **params)
    H = estimator.transform(X)
    R = estimator.inverse_transform(H)
    score = estimator.score(X)

    buffer = io.BytesIO()
    joblib.dump(estimator, buffer)
    buffer.seek(0)
    copies = [pickle.loads(pickle.dumps(estimator)), joblib.load(buffer)]
    for copy in copies:
        assert copy is not estimator
        _assert_same_model(copy, estimator)
        assert copy.get_params() == estimator.get_params()
        assert (copy.decoder_components_ is copy.components_) == params["tied_weights"]
        assert_array_equal(copy.transform(X), H)
        assert_array_equal(copy.inverse_transform(H), R)
        assert copy.score(X) == score
