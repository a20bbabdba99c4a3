"""ZCAWhitening at the edges of float64: tiny and huge data, singular covariances."""

import warnings

import numpy as np
import pytest

from skae import ZCAWhitening


def uniform_data(seed=0):
    return np.random.RandomState(seed).rand(50, 4)


@pytest.mark.parametrize("scale", [1e-7, 1e-150])
def test_epsilon_zero_whitens_full_rank_data_however_small_their_variance(scale):
    X = uniform_data() * scale
    Z = ZCAWhitening(epsilon=0.0).fit_transform(X)
    np.testing.assert_allclose(np.cov(Z, rowvar=False, bias=True), np.eye(4), atol=1e-10)
    # a covariance that is singular at this scale is still called singular
    X[:, 3] = X[:, 0] + X[:, 1]
    with pytest.raises(ValueError, match="singular.*Use a larger epsilon"):
        ZCAWhitening(epsilon=0.0).fit(X)


@pytest.mark.parametrize("scale", [1e-150, 1e-7, 1e154])
@pytest.mark.parametrize("epsilon", [0.0, 0.1])
def test_whitening_is_scale_equivariant(scale, epsilon):
    """ZCAWhitening(epsilon=ε c²) on c X whitens c X as ZCAWhitening(epsilon=ε) does X,
    down to variances near the smallest normal float64 and up to sums of squares that
    overflow it (50 rows of 1e154² exceed 1.8e308)."""
    X = uniform_data()
    reference = ZCAWhitening(epsilon=epsilon).fit(X)
    scaled = ZCAWhitening(epsilon=epsilon * scale**2).fit(X * scale)
    np.testing.assert_allclose(scaled.transform(X * scale), reference.transform(X), atol=1e-12)
    np.testing.assert_allclose(
        scaled.explained_variance_, reference.explained_variance_ * scale**2, rtol=1e-12
    )
    np.testing.assert_allclose(scaled.mean_, reference.mean_ * scale, rtol=1e-12)
    np.testing.assert_allclose(
        scaled.inverse_transform(reference.transform(X)), X * scale, rtol=1e-12
    )


@pytest.mark.parametrize(
    "scale, dtype", [(1e200, np.float64), (1e300, np.float64), (1e20, np.float32)]
)
def test_variances_beyond_the_dtype_are_a_clear_error(scale, dtype):
    X = (uniform_data() * scale).astype(dtype)
    with pytest.raises(
        ValueError, match=rf"does not fit in {np.dtype(dtype).name}.*Divide X by a constant c"
    ):
        ZCAWhitening().fit(X)
    ZCAWhitening().fit(X / scale)  # rescaled as the message says: fine


@pytest.mark.parametrize(
    "scale, dtype", [(1e-170, np.float64), (1e-310, np.float64), (1e-25, np.float32),
                     (1e-20, np.float32)]
)
def test_variances_below_the_dtype_are_a_clear_error(scale, dtype):
    """Squares of standard deviations that underflow (to zero, or to subnormal numbers
    that lose precision) are refused as overflowing ones are: explained_variance_ was
    silently zero. No NumPy warning comes before the message."""
    X = (uniform_data() * scale).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(
            ValueError,
            match=rf"variance of X does not fit in {np.dtype(dtype).name}.*Multiply X by a "
                  r"constant c",
        ):
            ZCAWhitening().fit(X)
    fitted = ZCAWhitening().fit(X / scale)  # times c = 1 / scale, as the message says
    assert np.all(fitted.explained_variance_ > 0)


def test_a_failed_refit_keeps_the_fitted_transformer():
    """A refit refused (singular covariance) leaves the transformer fitted on its former
    data: n_features_in_ was reset first, which broke transform for old and new data."""
    X = uniform_data()
    zca = ZCAWhitening(epsilon=0.0).fit(X)
    before = {k: v.copy() for k, v in vars(zca).items() if isinstance(v, np.ndarray)}
    with pytest.raises(ValueError, match="singular"):
        zca.fit(np.ones((10, 3)))
    assert zca.n_features_in_ == 4
    for name, value in before.items():
        np.testing.assert_array_equal(getattr(zca, name), value)
    np.testing.assert_allclose(
        np.cov(zca.transform(X), rowvar=False, bias=True), np.eye(4), atol=1e-10
    )


@pytest.mark.parametrize("value", [3.0, 1e20, -7.3e15])
def test_a_constant_feature_has_a_variance_of_exactly_zero(value):
    """A constant feature, however large beside the others, adds an eigenvalue of exactly
    0 and leaves the other features' eigenvalues as they are: a mean rounded from large
    values used to leave a residual whose square posed as a variance (about 2.6e8 for a
    feature of 1e20 beside N(0, 1) features)."""
    X = np.random.default_rng(0).standard_normal((200, 3))
    with_constant = np.column_stack([X, np.full(200, value)])
    zca = ZCAWhitening(epsilon=0.1).fit(with_constant)
    assert zca.explained_variance_[-1] == 0.0
    np.testing.assert_allclose(
        zca.explained_variance_[:3], ZCAWhitening().fit(X).explained_variance_, rtol=1e-10
    )
    assert zca.mean_[-1] == value
    np.testing.assert_allclose(
        zca.transform(with_constant)[:, :3], ZCAWhitening(epsilon=0.1).fit_transform(X),
        rtol=1e-8, atol=1e-12,
    )


def test_an_epsilon_too_large_for_float32_is_named():
    """sqrt(epsilon) beyond float32's largest value overflows the inverse whitening: the
    error names epsilon and its units (it used to blame X's values); float64 data or a
    smaller epsilon fit."""
    X = np.random.default_rng(1).standard_normal((50, 4))
    with pytest.raises(
        ValueError, match=r"epsilon=1e\+78 is too large for float32.*up to 1e\+39.*"
        r"explained_variance_, here at most .*use a smaller epsilon, or float64 data"
    ):
        ZCAWhitening(epsilon=1e78).fit(X.astype(np.float32))
    ZCAWhitening(epsilon=1e78).fit(X)
    ZCAWhitening(epsilon=1e70).fit(X.astype(np.float32))
