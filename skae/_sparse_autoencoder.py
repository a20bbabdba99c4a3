"""SparseAutoencoder: the UFLDL sparse autoencoder as a scikit-learn transformer."""

import warnings
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from . import _dask, _version
from ._array import array_namespace, astype, from_numpy, parameter_dtype
from ._objective import (
    AutoencoderObjective,
    AutoencoderSpec,
    Corruption,
    encode,
    reconstruction_losses,
)
from ._objective import decode as _decode
from ._optimize import run_lbfgs
from ._validation import (
    Interval,
    InvalidParameterError,
    StrOptions,
    check_fitted_namespace,
    check_input_array,
    fit_keeping_state,
    input_namespace,
    validate_input,
)
from .exceptions import PickleVersionWarning

__all__ = ["SparseAutoencoder"]

# Data within this many machine epsilons (of X's dtype) of [0, 1] count as in [0, 1]:
# MinMaxScaler can overshoot 1 by one unit in the last place on its own training data.
_RANGE_TOLERANCE_EPS = 4


def _data_range(X):
    if sp.issparse(X) and not X.has_canonical_format:
        X = X.copy()  # duplicate entries add up: check the values X stands for
        X.sum_duplicates()
    values = X.data if sp.issparse(X) else X
    xp = array_namespace(values)
    if 0 in values.shape:  # (a torch tensor's size is a method: the shape it is)
        return 0.0, 0.0
    low, high = float(xp.min(values)), float(xp.max(values))
    if sp.issparse(X) and values.size < X.shape[0] * X.shape[1]:
        low, high = min(low, 0.0), max(high, 0.0)  # implicit zeros
    return low, high


def _autoencoder_losses(X, autoencoders):
    """The reconstruction loss of each row of checked ``X`` through fitted autoencoders.

    ``autoencoders`` is one SparseAutoencoder in a list, or a stack's layers, bottom
    first: ``X`` is encoded up through all of them and decoded back down, and the loss
    is the bottom layer's (after its range check, as in ``fit``).
    """
    bottom, upper = autoencoders[0], autoencoders[1:]
    spec = bottom._spec_
    bottom._check_cross_entropy_range(X, spec.loss)

    def recode(H):  # the bottom codes through the layers above, and back
        for ae in upper:
            H = encode(H, ae.components_, ae.intercept_hidden_, ae._spec_.activation)
        for ae in reversed(upper):
            H = _decode(H, ae.decoder_components_, ae.intercept_visible_, ae._spec_.decoder)
        return H

    return reconstruction_losses(
        X,
        bottom.components_,
        bottom.intercept_hidden_,
        bottom.decoder_components_,
        bottom.intercept_visible_,
        activation=spec.activation,
        decoder=spec.decoder,
        loss=spec.loss,
        batch_size=bottom._batch_size_,
        recode=recode if upper else None,
    )


def negative_losses(X, autoencoders):
    """``score_samples`` of checked rows (e.g. one row chunk of a dask array)."""
    return -_autoencoder_losses(X, autoencoders)


class SparseAutoencoder(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Sparse autoencoder (UFLDL) trained full-batch with L-BFGS.

    One hidden layer learns a code ``H = f(X W1ᵀ + b1)`` from which the input is
    reconstructed as ``X̂ = g(H W2 + b2)``. The objective is the mean reconstruction
    loss, plus weight decay ``(alpha/2)(‖W1‖² + ‖W2‖²)``, plus ``beta`` times the KL
    divergence between the target firing rate ``rho`` and each unit's mean activation
    (see the user guide for the exact formula and its gradient). ``transform`` returns
    ``H``: put the autoencoder in a :class:`~sklearn.pipeline.Pipeline` ahead of a
    classifier for unsupervised pretraining.

    The defaults suit data scaled to [0, 1], e.g. by
    :class:`~sklearn.preprocessing.MinMaxScaler` (the decoder is then a sigmoid). They
    were chosen on measured accuracies of features learned without labels; the
    documentation page "Does pretraining help?" shows the measurements. With them L-BFGS
    usually stops at ``max_iter`` (a ConvergenceWarning): the features are what was
    measured, not a minimum of the objective.

    Parameters
    ----------
    n_hidden : int, default=200
        Number of hidden units (the width of the code).
    rho : float in (0, 1), default=0.1
        Target mean firing rate of each hidden unit (the sparsity target ρ).
    beta : float >= 0, default=1.0
        Weight of the KL sparsity penalty; 0 gives a plain autoencoder.
    alpha : float >= 0, default=1e-3
        Weight decay (L2 penalty on the weights; biases are not decayed).
    activation : {"sigmoid", "tanh"}, default="sigmoid"
        Hidden unit. For ``"tanh"`` the firing rate of the sparsity penalty is
        ``(a + 1) / 2``, so ``rho`` keeps its meaning ("off" is -1).
    decoder : {"auto", "sigmoid", "linear"}, default="auto"
        Output unit. A sigmoid decoder can only produce values in (0, 1); ``"auto"``
        picks ``"sigmoid"`` when the training data lie in [0, 1] and ``"linear"`` (the
        UFLDL linear decoder, for whitened or standardised data) otherwise. The choice
        is stored in ``decoder_``.
    loss : {"squared", "cross_entropy"}, default="squared"
        Reconstruction loss per sample: ``½‖x̂ − x‖²``, or the cross-entropy
        ``−Σ_k x_k log x̂_k + (1 − x_k) log(1 − x̂_k)`` (data in [0, 1] and a sigmoid
        decoder; the deeplearning.net denoising autoencoder's loss).
    tied_weights : bool, default=False
        Decode with the encoder's weights (``W2 = W1``), as in the deeplearning.net
        denoising autoencoder: half the parameters, and weight decay counts them once.
    noise : {None, "mask", "gaussian"}, default=None
        Denoising: corrupt the input and learn to reconstruct the clean data.
        ``"mask"`` zeroes each input with probability ``noise_level`` (on sparse input
        only the stored entries are drawn, so it stays sparse);
        ``"gaussian"`` adds N(0, noise_level²) noise (on sparse input it is drawn chunk by
        chunk, so the matrix is never densified whole). Because
        L-BFGS needs the same objective at every evaluation, the corruption is drawn
        once per fit from ``random_state``; ``transform`` never corrupts.
    noise_level : float, default=0.0
        Masking probability in (0, 1) for ``"mask"``, standard deviation > 0 for
        ``"gaussian"``. Must be 0 when ``noise`` is None.
    batch_size : int or None, default=None
        None evaluates the objective with all hidden activations in memory. An int
        evaluates it in chunks of that many rows with the two-pass scheme of the UFLDL
        notes, so memory no longer grows with the number of samples (fit a read-only
        :class:`numpy.memmap` larger than RAM). Sums run over fixed blocks of rows (256 for
        64 or more features): with ``batch_size`` of at least one block the fitted model is
        identical to ``batch_size=None``; a smaller one gives the same objective to
        rounding. The number of threads never changes the model.
    max_iter : int, default=400
        Maximum number of L-BFGS iterations.
    tol : float, default=1e-5
        L-BFGS stops when the largest projected gradient component is below ``tol``.
    warm_start : bool, default=False
        Start from the previous fit's parameters instead of a new initialisation.
    random_state : int, RandomState instance or None, default=None
        Seeds the weight initialisation and the corruption.
    verbose : int, default=0
        0 prints nothing. 1 prints one line when the fit ends: the iterations, the final
        loss, the time and the rule that stopped L-BFGS (``stop_reason_``). 2 or more
        also prints one line per L-BFGS iteration: loss, reconstruction error, mean
        firing rate, elapsed time.

    Attributes
    ----------
    components_ : ndarray of shape (n_hidden, n_features)
        Encoder weights ``W1``. Row ``j`` reshaped to the image shape is what unit
        ``j`` looks for.
    intercept_hidden_ : ndarray of shape (n_hidden,)
        Encoder bias ``b1``.
    decoder_components_ : ndarray of shape (n_hidden, n_features)
        Decoder weights ``W2``; the same object as ``components_`` when tied.
    intercept_visible_ : ndarray of shape (n_features,)
        Decoder bias ``b2``.
    decoder_ : str
        The decoder used, ``"sigmoid"`` or ``"linear"``.
    loss_ : float
        The objective ``J`` at the fitted parameters.
    loss_curve_ : list of float
        ``J`` after each L-BFGS iteration.
    n_iter_ : int
        Number of L-BFGS iterations completed, ``len(loss_curve_)`` (0 when the start
        already met ``tol``).
    stop_reason_ : str
        The rule that stopped L-BFGS: ``"converged (tol)"`` (the largest gradient
        component fell to ``tol``), ``"converged (loss change)"`` (an iteration lowered
        the loss by a relative 2.2e-9 or less), ``"max_iter"``, ``"evaluation limit"``
        (20 objective evaluations per allowed iteration used up), ``"line search"`` (no
        decrease found along the search direction) or ``"interrupted"`` (Ctrl-C). The
        last four also raise a warning. None for a model pickled by an earlier version of
        skae, which did not record it.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when ``X`` has string column names.

    See Also
    --------
    sklearn.neural_network.BernoulliRBM : Another one-layer unsupervised feature learner.
    sklearn.decomposition.PCA : Linear codes; a linear autoencoder's optimum.

    Notes
    -----
    On NumPy input (and SciPy sparse matrices) the fit minimises with SciPy's L-BFGS-B;
    under scikit-learn's array API dispatch, on arrays of another namespace (a PyTorch
    tensor, a CuPy array), with skae's own L-BFGS, whose vectors stay on the device. Both
    minimise the same objective from the same start and stop by the same rules, but they
    take different steps: with the same ``random_state`` the two fits give different
    weights, by far more than rounding after a few iterations, and closer ones as both
    converge (see the documentation's array API page).

    References
    ----------
    A. Ng, "Sparse autoencoder", CS294A lecture notes (UFLDL), Stanford.
    P. Vincent et al., "Extracting and composing robust features with denoising
    autoencoders", ICML 2008.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skae import SparseAutoencoder
    >>> X = load_digits().data[:500] / 16.0
    >>> ae = SparseAutoencoder(n_hidden=32, tol=1e-3, random_state=0).fit(X)
    >>> ae.transform(X).shape
    (500, 32)
    >>> ae.components_.shape
    (32, 64)
    >>> ae.inverse_transform(ae.transform(X[:5])).shape
    (5, 64)
    >>> ae.decoder_
    'sigmoid'
    """

    _parameter_constraints: dict = {
        "n_hidden": [Interval(Integral, 1, None, closed="left")],
        "rho": [Interval(Real, 0, 1, closed="neither")],
        "beta": [Interval(Real, 0, None, closed="left")],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "activation": [StrOptions({"sigmoid", "tanh"})],
        "decoder": [StrOptions({"auto", "sigmoid", "linear"})],
        "loss": [StrOptions({"squared", "cross_entropy"})],
        "tied_weights": ["boolean"],
        "noise": [None, StrOptions({"mask", "gaussian"})],
        "noise_level": [Interval(Real, 0, None, closed="left")],
        "batch_size": [None, Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "warm_start": ["boolean"],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        n_hidden=200,
        *,
        rho=0.1,
        beta=1.0,
        alpha=1e-3,
        activation="sigmoid",
        decoder="auto",
        loss="squared",
        tied_weights=False,
        noise=None,
        noise_level=0.0,
        batch_size=None,
        max_iter=400,
        tol=1e-5,
        warm_start=False,
        random_state=None,
        verbose=0,
    ):
        self.n_hidden = n_hidden
        self.rho = rho
        self.beta = beta
        self.alpha = alpha
        self.activation = activation
        self.decoder = decoder
        self.loss = loss
        self.tied_weights = tied_weights
        self.noise = noise
        self.noise_level = noise_level
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.tol = tol
        self.warm_start = warm_start
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ validation
    def _check_combinations(self):
        """Errors for hyper-parameters that are valid alone but not together."""
        for name in ("n_hidden", "max_iter", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, (bool, np.bool_)):
                raise InvalidParameterError(
                    f"The {name!r} parameter of {type(self).__name__} must be an int, "
                    f"got the bool {value!r}; pass a count, e.g. {name}=100."
                )
        if self.noise is None and self.noise_level != 0:
            raise ValueError(
                f"noise_level={self.noise_level!r} has no effect with noise=None; "
                "set noise='mask' or noise='gaussian', or leave noise_level at 0."
            )
        if self.noise is not None and self.noise_level == 0:
            raise ValueError(
                f"noise={self.noise!r} needs a noise_level > 0 (got 0); e.g. "
                "noise_level=0.3 masks 30% of the inputs."
            )
        if self.noise == "mask" and self.noise_level >= 1:
            raise ValueError(
                f"noise_level={self.noise_level!r} is a masking probability and must be "
                "below 1 for noise='mask' (1 would zero every input)."
            )
        if self.loss == "cross_entropy" and self.decoder == "linear":
            raise ValueError(
                "loss='cross_entropy' needs a sigmoid decoder (outputs in (0, 1)); "
                "use decoder='sigmoid' or 'auto', or loss='squared' with decoder='linear'."
            )

    @staticmethod
    def _in_unit_range(X):
        """``(low, high, in_unit_range)``, with a few ulps of tolerance (MinMaxScaler)."""
        low, high = _data_range(X)
        slack = _RANGE_TOLERANCE_EPS * array_namespace(X).finfo(X.dtype).eps
        return low, high, bool(low >= -slack and high <= 1.0 + slack)

    def _check_cross_entropy_range(self, X, loss):
        low, high, in_unit_range = self._in_unit_range(X)
        if loss == "cross_entropy" and not in_unit_range:
            raise ValueError(
                "loss='cross_entropy' needs data in [0, 1], but X ranges over "
                f"[{low!r}, {high!r}]. Scale it (e.g. sklearn's MinMaxScaler) or "
                "use loss='squared'."
            )
        return in_unit_range

    def _resolve_decoder(self, X):
        in_unit_range = self._check_cross_entropy_range(X, self.loss)
        if self.decoder != "auto":
            return self.decoder
        return "sigmoid" if in_unit_range else "linear"

    # ------------------------------------------------------------------ fitting
    @fit_keeping_state
    def fit(self, X, y=None):
        """Learn the encoder and decoder from ``X`` with L-BFGS.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data; float32 stays float32, other dtypes become float64. CSR
            matrices and read-only memory maps of a float dtype are used in place, never
            densified or copied whole (CSC and other sparse formats are converted to CSR
            once); with ``batch_size`` the memory of an evaluation does not grow with
            the number of rows.
        y : None
            Ignored.

        Returns
        -------
        self : SparseAutoencoder
            The fitted estimator. If fitting fails with an error, the estimator keeps
            the state it had before the call.
        """
        self._check_combinations()
        previous = self._previous_parameters()
        xp, device = np, None
        if _dask.is_dask_collection(X):  # map-reduce over its row chunks (skae._dask)
            X, decoder, make_objective = _dask.fit_inputs(self, X)
        else:
            # array API dispatch: an array of another namespace is fitted in it, on its
            # device (xp is numpy on the NumPy path)
            xp, device, dtypes = input_namespace(X)
            X = validate_input(
                self,
                X,
                accept_sparse="csr",
                dtype=dtypes,
                ensure_min_samples=2,
                reset=True,
            )
            decoder = self._resolve_decoder(X)
            make_objective = AutoencoderObjective
        n_features = X.shape[1]
        spec = AutoencoderSpec(
            n_features=n_features,
            n_hidden=self.n_hidden,
            activation=self.activation,
            decoder=decoder,
            loss=self.loss,
            tied=bool(self.tied_weights),
            alpha=float(self.alpha),
            beta=float(self.beta),
            rho=float(self.rho),
        )
        layout = spec.layout
        random_state = check_random_state(self.random_state)
        if previous is not None:
            if previous[0] != layout:
                raise ValueError(
                    "warm_start=True cannot continue from the previous fit: it had "
                    f"n_features={previous[0].n_features}, n_hidden={previous[0].n_hidden}, "
                    f"tied_weights={previous[0].tied}, now n_features={n_features}, "
                    f"n_hidden={self.n_hidden}, tied_weights={bool(self.tied_weights)}. "
                    "Set warm_start=False to start afresh."
                )
            theta0 = previous[1]
            if (xp is np) != (array_namespace(theta0) is np):
                raise ValueError(
                    "warm_start=True cannot continue from the previous fit: it was fitted "
                    "in another array namespace than X's. Fit X in the namespace of the "
                    "previous fit, or set warm_start=False to start afresh."
                )
        else:
            theta0 = layout.initialize(random_state)
            # the same start in every namespace, on X's device
            theta0 = from_numpy(theta0, parameter_dtype(xp, device), xp, device)
        corruption = None
        if self.noise is not None:
            seed = int(random_state.randint(np.iinfo(np.int32).max))
            corruption = Corruption(self.noise, float(self.noise_level), seed)

        objective = make_objective(spec, X, corruption=corruption, batch_size=self.batch_size)

        def report(intermediate_result):
            terms = objective.last_terms
            if terms is None or terms[0] != intermediate_result.fun:
                return ""
            return f", reconstruction = {terms[1]:.6g}, mean activation = {terms[2]:.4f}"

        result = run_lbfgs(
            objective,
            theta0,
            max_iter=self.max_iter,
            tol=self.tol,
            verbose=self.verbose,
            report=report,
            name=type(self).__name__,
        )

        dtype = X.dtype
        W1, b1, W2, b2 = layout.unpack(result.theta)
        # fitted attributes: copies in X's dtype, namespace and device
        W1, b1, W2, b2 = (astype(a, dtype, xp) for a in (W1, b1, W2, b2))
        self.components_ = W1
        self.intercept_hidden_ = b1
        self.decoder_components_ = self.components_ if spec.tied else W2
        self.intercept_visible_ = b2
        self.decoder_ = decoder
        self._spec_ = spec  # what transform, inverse_transform and score use
        self._batch_size_ = self.batch_size
        self.loss_ = float(result.loss)
        self.loss_curve_ = list(result.loss_curve)
        self.n_iter_ = int(result.n_iter)
        self.stop_reason_ = result.reason
        return self

    def _previous_parameters(self):
        """``(layout, theta)`` of the current fit when warm starting, else None."""
        if not (self.warm_start and hasattr(self, "components_")):
            return None
        layout = self._spec_.layout
        theta = layout.pack(
            self.components_,
            self.intercept_hidden_,
            self.decoder_components_,
            self.intercept_visible_,
        )
        return layout, theta

    # ------------------------------------------------------------------ transforming
    def transform(self, X):
        """Encode ``X``: the hidden activations ``f(X W1ᵀ + b1)``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Data to encode.

        Returns
        -------
        H : ndarray of shape (n_samples, n_hidden)
            The code, in (0, 1) for sigmoid units, (-1, 1) for tanh; float32 for
            float32 input.
        """
        check_is_fitted(self)
        if _dask.is_dask_collection(X):
            return _dask.transform(self, X)  # lazy
        check_fitted_namespace(X, self, attribute="components_", method="transform")
        dtypes = input_namespace(X)[2]
        X = validate_input(self, X, accept_sparse="csr", dtype=dtypes, reset=False)
        return encode(X, self.components_, self.intercept_hidden_, self._spec_.activation)

    def inverse_transform(self, X):
        """Decode codes back to the input space: ``g(H W2 + b2)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_hidden)
            Codes, e.g. the output of :meth:`transform`.

        Returns
        -------
        X_reconstructed : ndarray of shape (n_samples, n_features)
            The reconstruction.
        """
        check_is_fitted(self)
        if _dask.is_dask_collection(X):
            return _dask.inverse_transform(self, X)  # lazy
        check_fitted_namespace(X, self, attribute="components_", method="inverse_transform")
        H = check_input_array(X, dtype=input_namespace(X)[2], input_name="H")
        n_hidden = self.components_.shape[0]
        if H.shape[1] != n_hidden:
            raise ValueError(
                f"inverse_transform expects codes with n_hidden={n_hidden} columns, got "
                f"{H.shape[1]}; pass the output of transform."
            )
        return _decode(
            H, self.decoder_components_, self.intercept_visible_, self._spec_.decoder
        )

    def _reconstruction_losses(self, X, method):
        """Checked ``X`` (as ``transform`` checks it, plus the loss's range check of
        ``fit``) and the reconstruction loss of each of its rows."""
        check_fitted_namespace(X, self, attribute="components_", method=method)
        dtypes = input_namespace(X)[2]
        X = validate_input(self, X, accept_sparse="csr", dtype=dtypes, reset=False)
        return _autoencoder_losses(X, [self])

    def score(self, X, y=None):
        """Minus the mean reconstruction loss per sample (higher is better).

        This makes :class:`~sklearn.model_selection.GridSearchCV` on the autoencoder
        alone select by reconstruction. The penalties are not included, and the input
        is not corrupted. It is the mean of :meth:`score_samples`.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Data to reconstruct.
        y : None
            Ignored.

        Returns
        -------
        score : float
            ``-(1/m) Σ_i L(x̂_i, x_i)``.
        """
        check_is_fitted(self)
        if _dask.is_dask_collection(X):
            return _dask.score(self, X)  # computed on the cluster
        losses = self._reconstruction_losses(X, "score")
        xp = array_namespace(losses)
        return -float(xp.mean(losses))

    def score_samples(self, X):
        """Minus the reconstruction loss of each sample (higher is more typical).

        The per-sample term of :meth:`score`, which is its mean: ``−½‖x̂_i − x_i‖²``
        for ``loss="squared"``, ``Σ_k x_ik log x̂_ik + (1 − x_ik) log(1 − x̂_ik)`` for
        ``loss="cross_entropy"``, with ``x̂_i`` the reconstruction of the clean row (no
        noise, no penalties). The sign follows scikit-learn's outlier detectors
        (:class:`~sklearn.ensemble.IsolationForest`,
        :class:`~sklearn.svm.OneClassSVM`): rows the autoencoder reconstructs badly,
        unlike those it was trained on, score low, so ``-score_samples(X)`` is a
        novelty score (e.g. for :func:`~sklearn.metrics.roc_auc_score`). The rows are
        evaluated in blocks (of ``batch_size`` rows if set), so the memory beyond the
        returned vector does not grow with the number of rows.

        With the cross-entropy loss a perfect reconstruction scores minus the row's own
        entropy ``Σ_k H(x_ik)``, not 0, so rows with many intermediate values score
        lower whatever their reconstruction; the squared loss has no such offset (see
        the user guide's section on novelty detection).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Data to reconstruct.

        Returns
        -------
        scores : ndarray of shape (n_samples,)
            ``−L(x̂_i, x_i)``, float64 (each row's loss is accumulated in float64, also
            for float32 input). A dask array for a dask ``X`` (lazy, one task per row
            chunk); under array API dispatch an array of ``X``'s namespace and device.

        Examples
        --------
        >>> from sklearn.datasets import load_digits
        >>> from skae import SparseAutoencoder
        >>> X = load_digits().data / 16.0
        >>> ae = SparseAutoencoder(n_hidden=32, tol=1e-3, random_state=0).fit(X[:500])
        >>> scores = ae.score_samples(X[500:510])
        >>> scores.shape
        (10,)
        >>> bool(abs(scores.mean() - ae.score(X[500:510])) < 1e-12)
        True
        >>> import numpy as np
        >>> noise = np.random.RandomState(0).uniform(size=(10, 64))
        >>> bool(ae.score_samples(noise).max() < scores.min())
        True
        """
        check_is_fitted(self)
        if _dask.is_dask_collection(X):
            return _dask.map_rows(self, X, negative_losses, [self])  # lazy
        return -self._reconstruction_losses(X, "score_samples")

    def __getstate__(self):
        state = dict(super().__getstate__())  # object.__getstate__ may return __dict__
        state["_skae_version"] = _version.__version__
        if "components_" in state and state["decoder_components_"] is state["components_"]:
            # Tied weights: store W1 once and re-tie on load. joblib pickles arrays one by
            # one and would otherwise load two independent copies.
            state["decoder_components_"] = None
        return state

    def __setstate__(self, state):
        state = dict(state)
        saved_version = state.pop("_skae_version", "unknown")
        if saved_version != _version.__version__:
            warnings.warn(
                f"This {type(self).__name__} was pickled with skae {saved_version} and is "
                f"loaded with skae {_version.__version__}; it may not work the same. Refit it, "
                "or load it with the version that saved it.",
                PickleVersionWarning,
                stacklevel=2,
            )
        if "components_" in state and state.get("decoder_components_") is None:
            state["decoder_components_"] = state["components_"]
        if "components_" in state and "_spec_" not in state:
            # Pickled before the fitted settings were stored (skae <= 0.1): the
            # hyper-parameters saved with the model are the best record of its fit.
            W1 = state["components_"]
            state["_spec_"] = AutoencoderSpec(
                n_features=W1.shape[1],
                n_hidden=W1.shape[0],
                activation=state["activation"],
                decoder=state["decoder_"],
                loss=state["loss"],
                tied=state["decoder_components_"] is W1,
                alpha=float(state["alpha"]),
                beta=float(state["beta"]),
                rho=float(state["rho"]),
            )
            state.setdefault("_batch_size_", state.get("batch_size"))
        if "components_" in state:  # pickled before the stopping rule was recorded
            state.setdefault("stop_reason_", None)
        super().__setstate__(state)

    @property
    def _n_features_out(self):
        return self.components_.shape[0]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        tags.array_api_support = True
        return tags
