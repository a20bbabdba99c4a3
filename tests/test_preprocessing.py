"""ZCAWhitening: whitening, its inverse, dtypes, bad input (scikit-learn's estimator
checks are in test_common.py)."""

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from skae import ZCAWhitening


def correlated_data(n_samples=2000, n_features=6, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(n_features, n_features))
    X = rng.normal(size=(n_samples, n_features)) @ mixing + rng.normal(size=n_features) * 5
    return X.astype(dtype)


def test_epsilon_zero_gives_identity_covariance():
    X = correlated_data()
    Z = ZCAWhitening(epsilon=0.0).fit_transform(X)
    np.testing.assert_allclose(Z.mean(axis=0), 0.0, atol=1e-10)
    np.testing.assert_allclose(np.cov(Z, rowvar=False, bias=True), np.eye(6), atol=1e-10)


@pytest.mark.parametrize("epsilon", [0.01, 0.1, 1.0])
def test_covariance_shrinks_by_exactly_epsilons_effect(epsilon):
    """cov(Z) = U diag(λ/(λ+ε)) Uᵀ, computed here from NumPy's own eigen-decomposition."""
    X = correlated_data()
    Z = ZCAWhitening(epsilon=epsilon).fit_transform(X)
    lam, U = np.linalg.eigh(np.cov(X, rowvar=False, bias=True))
    expected = (U * (lam / (lam + epsilon))) @ U.T
    np.testing.assert_allclose(np.cov(Z, rowvar=False, bias=True), expected, atol=1e-10)
    # the off-diagonal correlations are gone only when epsilon is small against λ
    assert np.all(np.diag(np.cov(Z, rowvar=False)) < 1.0)


def test_zca_is_the_symmetric_whitening_closest_to_the_data():
    """ZCA's matrix is symmetric, and of whitening transforms it moves the data least."""
    X = correlated_data()
    zca = ZCAWhitening(epsilon=0.0).fit(X)
    np.testing.assert_allclose(zca.components_, zca.components_.T, atol=1e-12)
    centred = X - X.mean(axis=0)
    Z = zca.transform(X)
    rotation = np.linalg.qr(np.random.default_rng(1).normal(size=(6, 6)))[0]

    # Z @ rotation is white too, but further from the centred data (Z is scale-free, so
    # compare correlations between each whitened feature and its own input feature)
    def agreement(W):
        return np.mean([np.corrcoef(W[:, j], centred[:, j])[0, 1] for j in range(6)])

    assert agreement(Z) > agreement(Z @ rotation)


@pytest.mark.parametrize("epsilon", [0.0, 0.1])
def test_inverse_transform_round_trips(epsilon):
    X = correlated_data()
    zca = ZCAWhitening(epsilon=epsilon).fit(X)
    np.testing.assert_allclose(zca.inverse_transform(zca.transform(X)), X, atol=1e-9)
    np.testing.assert_allclose(zca.components_ @ zca.inverse_components_, np.eye(6), atol=1e-10)


def test_float32_stays_float32():
    X = correlated_data(dtype=np.float32)
    zca = ZCAWhitening(epsilon=0.1).fit(X)
    Z = zca.transform(X)
    assert Z.dtype == np.float32
    assert zca.inverse_transform(Z).dtype == np.float32
    Z64 = ZCAWhitening(epsilon=0.1).fit_transform(X.astype(np.float64))
    np.testing.assert_allclose(Z, Z64, rtol=1e-4, atol=1e-4)


def test_input_is_not_modified():
    X = correlated_data()
    before = X.copy()
    zca = ZCAWhitening().fit(X)
    zca.inverse_transform(zca.transform(X))
    np.testing.assert_array_equal(X, before)


def test_singular_covariance_with_epsilon_zero_is_a_clear_error():
    X = correlated_data()
    X[:, 2] = 3.0  # a constant feature
    with pytest.raises(ValueError, match="singular.*epsilon=0 .*Use a larger epsilon"):
        ZCAWhitening(epsilon=0.0).fit(X)
    # an epsilon above 0 but too small to regularise gets the same advice
    with pytest.raises(ValueError, match="singular.*epsilon=1e-300 .*Use a larger epsilon"):
        ZCAWhitening(epsilon=1e-300).fit(X)
    Z = ZCAWhitening(epsilon=0.1).fit_transform(X)  # regularised: fine
    assert np.all(np.isfinite(Z))


def test_bad_input():
    with pytest.raises(NotFittedError):
        ZCAWhitening().transform(np.ones((3, 2)))
    with pytest.raises(ValueError, match="epsilon"):
        ZCAWhitening(epsilon=-1.0).fit(correlated_data())
    zca = ZCAWhitening().fit(correlated_data())
    with pytest.raises(ValueError, match="6 features"):
        zca.transform(np.ones((3, 4)))
    with pytest.raises(ValueError, match="fitted on 6"):
        zca.inverse_transform(np.ones((3, 4)))


def test_arrays_of_another_namespace_are_refused_clearly():
    """Under array API dispatch ZCAWhitening (NumPy only, its tags say so) names the
    problem and the fix for a device array, instead of scikit-learn's dtype TypeError;
    NumPy input is whitened as without dispatch."""
    xps = pytest.importorskip("array_api_strict", reason="needs array_api_strict")
    import sklearn

    try:  # needs array_api_compat, and SciPy >= 1.14 (scikit-learn < 1.7 checks both)
        with sklearn.config_context(array_api_dispatch=True):
            pass
    except (ImportError, RuntimeError) as exc:
        pytest.skip(f"scikit-learn's array API dispatch cannot be enabled here: {exc}")
    X = correlated_data(200)
    zca = ZCAWhitening().fit(X)
    with sklearn.config_context(array_api_dispatch=True):
        for method in (ZCAWhitening().fit, zca.transform, zca.inverse_transform):
            with pytest.raises(ValueError, match="does not support array API dispatch.*"
                                                 "array_api_strict. Pass a NumPy array"):
                method(xps.asarray(X))
        np.testing.assert_array_equal(zca.transform(X), ZCAWhitening().fit(X).transform(X))
