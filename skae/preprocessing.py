"""Preprocessing for autoencoders: ZCA whitening.

PCA whitening is scikit-learn's ``PCA(whiten=True)`` and is not repeated here.
"""

import functools
from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from ._validation import Interval, fit_keeping_state, input_namespace

__all__ = ["ZCAWhitening"]

# Eigenvalues below this fraction of the largest are those of a singular covariance (its
# rounding error is a few machine epsilons of the largest, times the number of features).
_RANK_RTOL = 1e-12


def _power_of_two(a):
    """A power of two within a factor of two of the largest ``|a|`` (1.0 for zeros).

    Dividing by it scales ``a`` to magnitudes near 1 without rounding.
    """
    peak = float(np.max(np.abs(a)))
    return 1.0 if peak == 0 else float(np.ldexp(1.0, int(np.frexp(peak)[1]) - 1))


def _numpy_only(X):
    """Refuse arrays of another namespace under array API dispatch, which ZCA does not
    support (scikit-learn's validation would fail on them with an unrelated error)."""
    xp = input_namespace(X)[0]
    if xp is not np:
        raise ValueError(
            f"ZCAWhitening computes with NumPy and does not support array API dispatch; "
            f"X is an array of {xp.__name__}. Pass a NumPy array (e.g. X.cpu().numpy() "
            "for a PyTorch tensor), or whiten before moving the data to the device."
        )


class ZCAWhitening(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """ZCA whitening: decorrelate the features while staying close to the original data.

    With the feature means ``μ`` and the covariance ``Σ = U diag(λ) Uᵀ`` of the training
    data, the transform is ``x ↦ W (x − μ)`` with ``W = U diag(1 / sqrt(λ + ε)) Uᵀ``
    (UFLDL's ``x_ZCAwhite``). Of all whitening matrices this rotation back into the input
    space changes the data least, so whitened image patches still look like images.
    ``epsilon`` regularises small eigenvalues: it low-pass filters the data and keeps noise
    in low-variance directions from being blown up. The whitened training data have
    covariance ``U diag(λ / (λ + ε)) Uᵀ``, the identity when ``ε = 0``.

    The whitening is scale-equivariant: for a constant ``c``, ``ZCAWhitening(epsilon=ε *
    c**2)`` fitted on ``c * X`` whitens ``c * X`` as ``ZCAWhitening(epsilon=ε)`` fitted on
    ``X`` whitens ``X``. The covariance is computed from the data scaled by a power of two
    to magnitudes near 1, so that tiny or huge values neither underflow nor overflow, and
    the means from the data less their first row, so that a constant feature has a
    variance of exactly 0 however large it is; data whose variance (or whose whitening
    matrix) does not fit in their dtype are refused with a message.

    Parameters
    ----------
    epsilon : float, default=0.1
        Added to each eigenvalue of the covariance before the inverse square root. It is
        in the units of the data's variance: compare it with ``explained_variance_``.
        ``epsilon=0`` requires a covariance of full rank: every eigenvalue above
        ``1e-12`` times the largest, whatever the scale of the data.

    Attributes
    ----------
    mean_ : ndarray of shape (n_features,)
        Feature means of the training data.
    explained_variance_ : ndarray of shape (n_features,)
        Eigenvalues of the training covariance (``1/n`` normalisation), largest first.
    eigenvectors_ : ndarray of shape (n_features, n_features)
        The matching eigenvectors as columns.
    components_ : ndarray of shape (n_features, n_features)
        The symmetric whitening matrix ``W``; ``transform(X) = (X − mean_) @ components_``.
    inverse_components_ : ndarray of shape (n_features, n_features)
        ``W⁻¹ = U diag(sqrt(λ + ε)) Uᵀ``; ``inverse_transform(Z) = Z @ inverse_components_
        + mean_``.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of the features, when ``X`` has string column names.

    See Also
    --------
    sklearn.decomposition.PCA : ``PCA(whiten=True)`` for PCA whitening (rotated into the
        principal axes, optionally with fewer components).

    Examples
    --------
    >>> import numpy as np
    >>> from skae import ZCAWhitening
    >>> X = np.random.default_rng(0).normal(size=(500, 3)) @ [[2, 1, 0], [0, 1, 0], [0, 0, 3]]
    >>> zca = ZCAWhitening(epsilon=0.0).fit(X)
    >>> Z = zca.transform(X)
    >>> bool(np.allclose(np.cov(Z, rowvar=False, bias=True), np.eye(3)))
    True
    >>> bool(np.allclose(zca.inverse_transform(Z), X))
    True
    """

    _parameter_constraints = {"epsilon": [Interval(Real, 0, None, closed="left")]}

    def __init__(self, epsilon=0.1):
        self.epsilon = epsilon

    @functools.partial(fit_keeping_state, one_blas_thread=False)
    def fit(self, X, y=None):
        """Compute the mean and the whitening matrix of ``X``.

        A fit that fails (singular covariance, a variance that does not fit in the dtype)
        leaves the transformer as it was.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data, one sample per row.
        y : None
            Ignored.

        Returns
        -------
        self : ZCAWhitening
        """
        _numpy_only(X)
        X = validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=2)
        # In units of powers of two (exact): the sums neither overflow nor underflow.
        data_unit = _power_of_two(X)
        centred = X.astype(np.float64)  # a copy: the caller's X is not modified
        centred /= data_unit
        # The mean of the data less their first row, plus that row: a constant feature
        # then has exactly its value as mean and a variance of exactly 0, however large
        # it is beside the others (a mean rounded from large values leaves a residual).
        first = centred[0].copy()
        centred -= first
        mean = centred.mean(axis=0)
        centred -= mean
        mean += first
        spread_unit = _power_of_two(centred)
        centred /= spread_unit
        unit = data_unit * spread_unit
        covariance = centred.T @ centred / X.shape[0]
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)
        order = np.argsort(eigenvalues)[::-1]
        eigenvalues = np.clip(eigenvalues[order], 0.0, None)  # in units of unit ** 2
        eigenvectors = eigenvectors[:, order]
        with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
            std = unit * np.sqrt(eigenvalues)  # standard deviation along each axis
            root = np.hypot(std, np.sqrt(self.epsilon))  # sqrt(λ + ε) without overflow
            if np.any(root <= np.sqrt(_RANK_RTOL) * std[0]):  # λ + ε <= rtol * λ_max
                raise ValueError(
                    f"The covariance of X is singular (some features are constant or "
                    f"linearly dependent), so ZCA whitening with epsilon={self.epsilon:g} "
                    "would divide by (nearly) zero. Use a larger epsilon (e.g. 0.1 or a "
                    "small fraction of the largest eigenvalue in explained_variance_)."
                )
            attributes = {
                "mean_": mean * data_unit,
                "explained_variance_": std * std,
                "eigenvectors_": eigenvectors,
                "components_": (eigenvectors / root) @ eigenvectors.T,
                "inverse_components_": (eigenvectors * root) @ eigenvectors.T,
            }
            attributes = {name: a.astype(X.dtype) for name, a in attributes.items()}
        variance = attributes["explained_variance_"]
        if std[0] > 0 and not variance[0] >= np.finfo(X.dtype).tiny:
            raise ValueError(
                f"The variance of X does not fit in {X.dtype.name}: X's standard deviations "
                f"along the principal axes are at most {float(std[0]):.3g}, so their squares "
                "(explained_variance_) underflow to zero or lose their precision. Multiply "
                "X by a constant c first (a power of ten that brings its values near 1): its "
                "whitening with epsilon is that of X with epsilon / c**2."
            )
        finite = {name: bool(np.all(np.isfinite(a))) for name, a in attributes.items()}
        largest = float(np.finfo(X.dtype).max)
        if not finite["inverse_components_"] and finite["explained_variance_"] and (
            np.sqrt(self.epsilon) >= std[0]
        ):
            raise ValueError(
                f"epsilon={self.epsilon:g} is too large for {X.dtype.name}: the whitening's "
                f"inverse scales by sqrt(variance + epsilon), up to {float(root[0]):.3g}, "
                f"beyond {X.dtype.name}'s largest value {largest:.3g}. epsilon is in the units "
                f"of X's variance (explained_variance_, here at most "
                f"{float(std[0]) ** 2:.3g}): use a smaller epsilon, or float64 data."
            )
        if not all(finite.values()):
            raise ValueError(
                f"The whitening of X does not fit in {X.dtype.name}: X's values reach "
                f"{float(np.max(np.abs(X))):.3g} and its standard deviations along the "
                f"principal axes range from {float(std[-1]):.3g} to {float(std[0]):.3g}, "
                f"so the variances or the whitening matrix overflow. Divide X by a constant "
                f"c first (and epsilon by c**2): the whitened data are the same."
            )
        for name, value in attributes.items():
            setattr(self, name, value)
        return self

    def transform(self, X):
        """Whiten ``X``: ``(X − mean_) @ components_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        X_white : ndarray of shape (n_samples, n_features)
            In the dtype of ``X`` (float32 stays float32).
        """
        check_is_fitted(self)
        _numpy_only(X)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        return (X - self.mean_.astype(X.dtype)) @ self.components_.astype(X.dtype)

    def inverse_transform(self, X):
        """Undo the whitening: ``X @ inverse_components_ + mean_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Whitened data.

        Returns
        -------
        X_original : ndarray of shape (n_samples, n_features)
        """
        check_is_fitted(self)
        _numpy_only(X)
        X = check_array(X, dtype=[np.float64, np.float32])
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but ZCAWhitening was fitted on "
                f"{self.n_features_in_}; pass whitened data from this transformer."
            )
        return X @ self.inverse_components_.astype(X.dtype) + self.mean_.astype(X.dtype)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
