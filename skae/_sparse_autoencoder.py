"""SparseAutoencoder: the UFLDL sparse autoencoder as a scikit-learn transformer."""

import copy
import dataclasses
import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from . import _dask, _version
from ._array import array_namespace, astype, from_numpy, parameter_dtype
from ._objective import (
    AutoencoderObjective,
    AutoencoderSpec,
    Corruption,
    check_overflow,
    data_range,
    encode,
    reconstruction_losses,
)
from ._objective import decode as _decode
from ._optimize import run_lbfgs
from ._stochastic import (
    AdamOptimizer,
    EpochState,
    SGDOptimizer,
    apply_optimizer_settings,
    autoencoder_rows,
    make_optimizer,
    mini_batch_rows,
    run_epochs,
)
from ._validation import (
    Interval,
    StrOptions,
    check_counts,
    check_fitted_namespace,
    check_input_array,
    check_warm_start_place,
    fit_keeping_state,
    input_namespace,
    validate_input,
)
from .exceptions import PickleVersionWarning

__all__ = ["SparseAutoencoder"]

# The hyper-parameters of the mini-batch solvers, with their defaults (for old pickles).
MINI_BATCH_DEFAULTS = {
    "solver": "lbfgs",
    "mini_batch_size": "auto",
    "learning_rate": "constant",
    "learning_rate_init": 0.001,
    "power_t": 0.5,
    "momentum": 0.9,
    "nesterovs_momentum": True,
    "beta_1": 0.9,
    "beta_2": 0.999,
    "epsilon": 1e-8,
    "shuffle": True,
    "early_stopping": False,
    "validation_fraction": 0.1,
    "n_iter_no_change": 10,
}

# Which L-BFGS minimises the NumPy path of solver="lbfgs": skae's own
# (skae._lbfgs.minimize_lbfgs, as under array API dispatch) when True, SciPy's L-BFGS-B when
# False. Private: benchmarks/bench_quality.py sets it to compare the two.
_OWN_LBFGS = True

# The fitted attributes of a mini-batch fit only (an L-BFGS fit removes them).
_STOCHASTIC_ATTRIBUTES = (
    "best_loss_",
    "validation_scores_",
    "best_validation_score_",
    "t_",
    "_optimizer_",
    "_epoch_state_",
    "_random_state_",
)

# Data within this many machine epsilons (of X's dtype) of [0, 1] count as in [0, 1]:
# MinMaxScaler can overshoot 1 by one unit in the last place on its own training data.
_RANGE_TOLERANCE_EPS = 4


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

    # A loss beyond float64's range is inf, the row's documented score -inf, and float32
    # products may overflow on the way to finite scores: neither is worth NumPy's warning.
    # (fit's early stopping scores its held-out rows itself: a non-finite score is an
    # error there.)
    with np.errstate(over="ignore"):
        losses = reconstruction_losses(
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
    return check_overflow(losses, X, "reconstruction")


def negative_losses(X, autoencoders):
    """``score_samples`` of checked rows (e.g. one row chunk of a dask array)."""
    return -_autoencoder_losses(X, autoencoders)


class SparseAutoencoder(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Sparse autoencoder (UFLDL) trained with L-BFGS or a mini-batch solver.

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
        UFLDL linear decoder, for whitened or standardised data) otherwise: on the data
        of every ``fit``, warm-started ones included, and on the first ``partial_fit``
        of a stream, whose decoder the later calls keep. The choice is stored in
        ``decoder_``.
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
        once per fit from ``random_state``; the mini-batch solvers draw a fresh
        corruption for every mini-batch. ``transform`` never corrupts.
    noise_level : float, default=0.0
        Masking probability in (0, 1) for ``"mask"``, standard deviation > 0 for
        ``"gaussian"``. Must be 0 when ``noise`` is None.
    batch_size : int or None, default=None
        None evaluates the objective with all hidden activations in memory. An int
        evaluates it in chunks of that many rows with the two-pass scheme of the UFLDL
        notes, so memory no longer grows with the number of samples (fit a read-only
        :class:`numpy.memmap` larger than RAM). Sums run over fixed blocks of rows (256
        for 256 or more features, 1 024 for 64 unless ``n_hidden`` exceeds 1 024; see the
        user guide): with ``batch_size`` of at least one block
        the fitted model is identical to ``batch_size=None``; a smaller one gives the same
        objective to rounding. The number of threads never changes the model. It is a
        memory setting, not a mini-batch: with the mini-batch solvers it blocks the
        evaluation of each mini-batch (see ``mini_batch_size``).
    solver : {"lbfgs", "adam", "sgd"}, default="lbfgs"
        ``"lbfgs"`` minimises the objective on all rows at every iteration (skae's L-BFGS,
        stopped by the rules of SciPy's L-BFGS-B). ``"adam"`` and ``"sgd"`` (with momentum,
        optionally Nesterov's) take one step per mini-batch of rows, as
        :class:`~sklearn.neural_network.MLPRegressor`'s solvers; they read each row once per
        epoch and offer :meth:`partial_fit`. They take NumPy arrays, memory maps and CSR
        matrices (dask arrays and array API dispatch: use ``"lbfgs"``). The sparsity penalty
        of a mini-batch uses that mini-batch's mean activation ρ̂ (the objective with the
        mini-batch as its data).
    mini_batch_size : int or "auto", default="auto"
        Rows per step of the mini-batch solvers; ``"auto"`` is ``min(200, n_samples)``
        (the MLPs' ``batch_size``). A larger size than the rows (the training rows with
        ``early_stopping``) is clipped to them, with a warning (as the MLPs). Ignored by
        ``"lbfgs"``.
    learning_rate : {"constant", "invscaling", "adaptive"}, default="constant"
        Step-size schedule of ``solver="sgd"``, as in the MLPs: ``"constant"`` keeps
        ``learning_rate_init``; ``"invscaling"`` uses ``learning_rate_init / (t + 1) **
        power_t`` after each epoch, ``t`` the samples seen; ``"adaptive"`` divides it by
        5 each time ``n_iter_no_change`` epochs fail to improve by ``tol``, and stops once
        it is below 1e-6.
    learning_rate_init : float > 0, default=0.001
        Initial step size of ``"adam"`` and ``"sgd"``.
    power_t : float >= 0, default=0.5
        Exponent of ``learning_rate="invscaling"``.
    momentum : float in [0, 1], default=0.9
        Momentum of ``solver="sgd"``.
    nesterovs_momentum : bool, default=True
        Nesterov's momentum for ``solver="sgd"`` (with ``momentum > 0``).
    beta_1 : float in [0, 1), default=0.9
        Adam's decay rate of the first-moment estimate.
    beta_2 : float in [0, 1), default=0.999
        Adam's decay rate of the second-moment estimate.
    epsilon : float > 0, default=1e-8
        Adam's numerical-stability term.
    shuffle : bool, default=True
        Whether the mini-batch solvers visit the rows in a new random order each epoch
        (from ``random_state``); False takes them in order.
    early_stopping : bool, default=False
        For the mini-batch solvers' ``fit``: hold out ``validation_fraction`` of the rows
        (drawn from ``random_state``), score their reconstruction after each epoch
        (:meth:`score`, recorded in ``validation_scores_``), stop when it has not
        improved by ``tol`` for more than ``n_iter_no_change`` epochs, and keep the
        parameters of the best epoch. A held-out loss that overflows raises
        :class:`~skae.exceptions.NonFiniteLossError`. Not used by ``partial_fit`` or
        ``"lbfgs"``.
    validation_fraction : float in (0, 1), default=0.1
        Share of the rows held out by ``early_stopping``.
    n_iter_no_change : int, default=10
        The mini-batch solvers stop when more than this many consecutive epochs fail to
        improve the training loss (or the validation score with ``early_stopping``) by
        ``tol``, as the MLPs do.
    max_iter : int, default=400
        Maximum number of L-BFGS iterations; for the mini-batch solvers, of epochs
        (passes over the rows).
    tol : float, default=1e-5
        L-BFGS stops when the largest projected gradient component is below ``tol``.
        For the mini-batch solvers, the least improvement of the loss (or validation
        score) per epoch that counts as one (see ``n_iter_no_change``).
    warm_start : bool, default=False
        Start from the previous fit's parameters instead of a new initialisation. With a
        mini-batch solver the fit also continues the ``loss_curve_`` and ``n_iter_`` of an
        earlier mini-batch fit, with a new optimiser state (as the MLPs; :meth:`partial_fit`
        always continues); after an L-BFGS fit they start anew (epochs and iterations are
        not counted together). Unlike the MLPs, whose ``n_iter_`` counts the last fit's
        epochs only, ``n_iter_`` counts the epochs of all the fits continued.
    random_state : int, RandomState instance or None, default=None
        Seeds the weight initialisation and the corruption, and for the mini-batch
        solvers the order of the rows and the held-out rows.
    verbose : int, default=0
        0 prints nothing. 1 prints one line when the fit ends: the iterations (epochs),
        the final loss, the time and the rule that stopped the solver
        (``stop_reason_``). 2 or more also prints one line per L-BFGS iteration (loss,
        reconstruction error, mean firing rate, elapsed time) or per epoch (mean
        mini-batch loss, validation score, elapsed time, samples per second).

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
        The objective ``J`` at the fitted parameters; for the mini-batch solvers the
        last epoch's mean mini-batch objective (weighted by rows).
    loss_curve_ : list of float
        ``J`` after each L-BFGS iteration, or each epoch's mean mini-batch ``J``.
    n_iter_ : int
        Number of L-BFGS iterations completed, ``len(loss_curve_)`` (0 when the start
        already met ``tol``); for the mini-batch solvers, of epochs (over all calls of
        :meth:`partial_fit` and warm-started fits since the last L-BFGS fit).
    best_loss_ : float or None
        Mini-batch solvers only: the lowest ``loss_curve_`` entry; None with
        ``early_stopping``.
    validation_scores_ : list of float or None
        Mini-batch solvers only: the held-out score after each epoch of the last fit
        with ``early_stopping``, else None.
    best_validation_score_ : float or None
        Mini-batch solvers only: the best of ``validation_scores_`` (None without
        ``early_stopping``).
    t_ : int
        Mini-batch solvers only: the number of training rows seen (summed over epochs).
    stop_reason_ : str
        The rule that stopped L-BFGS: ``"converged (tol)"`` (the largest gradient
        component fell to ``tol``), ``"converged (loss change)"`` (an iteration lowered
        the loss by a relative 2.2e-9 or less), ``"max_iter"``, ``"evaluation limit"``
        (20 objective evaluations per allowed iteration used up), ``"line search"`` (no
        decrease found along the search direction) or ``"interrupted"`` (Ctrl-C). The
        last four also raise a warning. The mini-batch solvers stop with ``"no
        improvement"`` (``n_iter_no_change``), ``"max_iter"`` (with a warning),
        ``"interrupted"`` (Ctrl-C keeps the parameters of the last completed step, with a
        warning) or, after :meth:`partial_fit`, ``"partial_fit"``. None for a model
        pickled by an earlier version of skae, which did not record it.
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
    ``solver="lbfgs"`` minimises with skae's own L-BFGS (the two-loop recursion with a
    strong-Wolfe line search, stopped by the rules of SciPy's L-BFGS-B) on every input: NumPy
    arrays, SciPy sparse matrices, dask arrays, and under array API dispatch arrays of
    another namespace (a PyTorch tensor, a CuPy array), whose vectors stay on their device.
    With the same ``random_state`` a fit on another namespace therefore takes the NumPy
    fit's steps and gives its weights to rounding in float64 (see the documentation's
    array API page). It replaced SciPy's L-BFGS-B on NumPy input after the accuracy of the
    defaults' features was measured with both (the documentation's quality page).

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
        "solver": [StrOptions({"lbfgs", "adam", "sgd"})],
        "mini_batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "shuffle": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
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
        solver="lbfgs",
        mini_batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        momentum=0.9,
        nesterovs_momentum=True,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        shuffle=True,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
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
        self.solver = solver
        self.mini_batch_size = mini_batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.shuffle = shuffle
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.max_iter = max_iter
        self.tol = tol
        self.warm_start = warm_start
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ validation
    def _check_combinations(self):
        """Errors for hyper-parameters that are valid alone but not together."""
        check_counts(
            self, ("n_hidden", "max_iter", "batch_size", "mini_batch_size", "n_iter_no_change")
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
        low, high = data_range(X)
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
        """Learn the encoder and decoder from ``X`` with the ``solver``.

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
        if self.solver != "lbfgs":
            return self._fit_stochastic(X, incremental=False)
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
        spec = self._make_spec(n_features, decoder)
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
            check_warm_start_place(theta0, xp, device)
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
            own_lbfgs=_OWN_LBFGS,
            history_dtype=X.dtype,  # float32 data: float32 pairs (skae._lbfgs)
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
        for name in _STOCHASTIC_ATTRIBUTES:  # a former mini-batch fit's progress
            self.__dict__.pop(name, None)
        return self

    def _check_solver(self):
        if self.solver not in ("adam", "sgd"):
            raise AttributeError(
                f"partial_fit is only available for the mini-batch solvers 'adam' and "
                f"'sgd'; solver={self.solver!r} is not one. Set solver='adam' or 'sgd'."
            )
        return True

    @available_if(_check_solver)
    @fit_keeping_state
    def partial_fit(self, X, y=None):
        """Update the model with one pass over ``X`` in mini-batches.

        Only for ``solver="adam"`` or ``"sgd"`` (as the MLPs' ``partial_fit``). The first
        call (on an unfitted model) initialises the parameters from ``random_state`` and
        resolves ``decoder="auto"`` on its data; every call then runs one epoch over
        ``X``: its rows in mini-batches of ``mini_batch_size`` (shuffled when ``shuffle``),
        one optimiser step per mini-batch. The optimiser's state (Adam's moments, SGD's
        velocity and learning rate), ``loss_curve_``, ``n_iter_`` and the random state
        carry over from call to call, so a sequence of calls is deterministic for a given
        ``random_state``; with ``shuffle=False`` and chunks whose sizes are multiples of
        an integer ``mini_batch_size``, the calls over consecutive chunks give the model
        of one epoch over their concatenation (float64 data; float32 parameters are
        rounded to float32 between calls; not with ``learning_rate="invscaling"``, whose
        step size decays after each call, an epoch, nor with ``"adaptive"``, whose rule
        may divide the step by 5 after a call, as in the MLPs). ``early_stopping`` does not
        apply: a call holds no rows out (recent versions of scikit-learn's MLPs refuse
        ``partial_fit`` with ``early_stopping=True`` instead).
        Settings changed with ``set_params`` between calls apply from the next call: a
        new ``solver`` starts a new optimiser state; the other solver settings keep it
        (a new ``learning_rate_init`` or ``learning_rate`` schedule restarts the step size
        from ``learning_rate_init``). ``random_state`` seeds the first call only: later
        calls go on with the random state the stream has reached.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            One chunk of training data, with the ``n_features`` of the first call.
        y : None
            Ignored.

        Returns
        -------
        self : SparseAutoencoder
            The updated estimator. If the call fails with an error, the estimator keeps
            the state it had before the call.

        Examples
        --------
        >>> from sklearn.datasets import load_digits
        >>> from skae import SparseAutoencoder
        >>> X = load_digits().data / 16.0
        >>> ae = SparseAutoencoder(n_hidden=16, solver="adam", random_state=0)
        >>> for start in range(0, 1200, 400):  # a stream of three chunks
        ...     ae = ae.partial_fit(X[start : start + 400])
        >>> ae.n_iter_, ae.t_, ae.stop_reason_
        (3, 1200, 'partial_fit')
        """
        self._check_combinations()
        return self._fit_stochastic(X, incremental=True)

    def _make_spec(self, n_features, decoder):
        """The objective's settings from this estimator's hyper-parameters."""
        return AutoencoderSpec(
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

    def _fit_stochastic(self, X, incremental):
        """``fit`` (one run of up to ``max_iter`` epochs) or ``partial_fit`` (one epoch)
        with the mini-batch solver ``self.solver``."""
        if _dask.is_dask_collection(X):
            raise ValueError(
                f"solver={self.solver!r} does not support dask arrays; use "
                "solver='lbfgs' (which fits a dask array chunk by chunk), or pass a NumPy "
                "array, a memmap or a CSR matrix."
            )
        xp = input_namespace(X)[0]
        if xp is not np:
            raise ValueError(
                f"solver={self.solver!r} does not support arrays of the namespace "
                f"{xp.__name__} under array API dispatch; use solver='lbfgs', or pass "
                "a NumPy array."
            )
        fitted = hasattr(self, "components_")
        continuing = fitted and (incremental or self.warm_start)
        X = validate_input(
            self,
            X,
            accept_sparse="csr",
            dtype=(np.float64, np.float32),
            ensure_min_samples=1 if incremental else 2,
            reset=not (incremental and fitted),
        )
        n_samples, n_features = X.shape
        if continuing and incremental:  # a stream keeps the decoder its start chose
            decoder = self.decoder_ if self.decoder == "auto" else self.decoder
            if self.loss == "cross_entropy" and decoder == "linear":
                raise ValueError(
                    "loss='cross_entropy' needs a sigmoid decoder (outputs in (0, 1)), and "
                    "the model to continue has decoder_='linear' (decoder='auto' chose it "
                    "for data outside [0, 1]); continue with loss='squared', or fit a new "
                    "model (warm_start=False) on data in [0, 1]."
                )
            self._check_cross_entropy_range(X, self.loss)
        else:
            decoder = self._resolve_decoder(X)
        spec = self._make_spec(n_features, decoder)
        layout = spec.layout
        if continuing:
            previous = self._spec_.layout
            if previous != layout:
                raise ValueError(
                    "The model cannot continue from its previous fit: it had "
                    f"n_features={previous.n_features}, n_hidden={previous.n_hidden}, "
                    f"tied_weights={previous.tied}, now n_features={n_features}, "
                    f"n_hidden={self.n_hidden}, tied_weights={bool(self.tied_weights)}. "
                    "Set warm_start=False (fit) or refit from scratch."
                )
            theta = np.asarray(self._previous_parameters_always(), dtype=np.float64)
        if incremental and fitted and hasattr(self, "_random_state_"):
            # copies: a call that fails leaves the stored progress as it was
            random_state = copy.deepcopy(self._random_state_)
        else:
            random_state = check_random_state(self.random_state)
        if not continuing:
            theta = layout.initialize(random_state)
        theta = np.array(theta, dtype=np.float64)  # the caller's arrays stay untouched
        # The optimiser and the progress carry over between partial_fit calls only, as in
        # the MLPs (a warm-started fit continues the parameters with a new optimiser).
        carried = False
        optimizer_class = AdamOptimizer if self.solver == "adam" else SGDOptimizer
        if (
            incremental
            and fitted
            and isinstance(getattr(self, "_optimizer_", None), optimizer_class)
        ):
            optimizer = copy.deepcopy(self._optimizer_)
            carried = True
        else:
            optimizer = make_optimizer(self, layout.size)
        if continuing and hasattr(self, "_epoch_state_"):
            # a copy, its list copied at C speed (a deepcopy costs far more per entry)
            saved = self._epoch_state_
            state = dataclasses.replace(saved, loss_curve=list(saved.loss_curve))
        else:
            state = EpochState()
        if carried:
            self._apply_optimizer_settings(optimizer, state)
        early_stopping = self.early_stopping and not incremental
        train_rows = None
        validation_score = None
        state.validation_scores = [] if early_stopping else None
        state.best_validation_score = -np.inf
        if early_stopping:
            n_validation = int(np.ceil(self.validation_fraction * n_samples))
            if n_validation < 1 or n_samples - n_validation < 1:
                raise ValueError(
                    f"early_stopping with validation_fraction={self.validation_fraction} "
                    f"leaves no training or no validation rows of the {n_samples} given; "
                    "pass more rows or change validation_fraction."
                )
            permutation = random_state.permutation(n_samples)
            validation_rows = np.sort(permutation[:n_validation])
            train_rows = np.sort(permutation[n_validation:])

            def validation_score(theta):
                W1, b1, W2, b2 = layout.unpack(theta)
                total = 0.0
                for start in range(0, n_validation, 1024):  # a few rows at a time
                    rows = validation_rows[start : start + 1024]
                    # an overflow gives an infinite score, which the solver reports
                    with np.errstate(over="ignore"):
                        losses = reconstruction_losses(
                            X[rows],
                            W1,
                            b1,
                            W2,
                            b2,
                            activation=spec.activation,
                            decoder=spec.decoder,
                            loss=spec.loss,
                            batch_size=self.batch_size,
                        )
                        total += float(np.sum(losses))
                return -total / n_validation

        if early_stopping:  # the steps run over the training rows, as in the MLPs
            mini_batch_size = mini_batch_rows(
                self, len(train_rows), "the training rows of X left by early_stopping"
            )
        else:
            mini_batch_size = mini_batch_rows(self, n_samples, "X")
        noise = None if self.noise is None else (self.noise, float(self.noise_level))
        objective_of = autoencoder_rows(spec, X, noise=noise, batch_size=self.batch_size)
        result = run_epochs(
            objective_of,
            n_samples,
            theta,
            optimizer=optimizer,
            state=state,
            train_rows=train_rows,
            mini_batch_size=mini_batch_size,
            max_iter=self.max_iter,
            tol=float(self.tol),
            n_iter_no_change=self.n_iter_no_change,
            shuffle=self.shuffle,
            random_state=random_state,
            validation_score=validation_score,
            incremental=incremental,
            verbose=self.verbose,
            name=type(self).__name__,
        )
        dtype = X.dtype
        W1, b1, W2, b2 = (a.astype(dtype) for a in layout.unpack(result.theta))
        self.components_ = W1
        self.intercept_hidden_ = b1
        self.decoder_components_ = self.components_ if spec.tied else W2
        self.intercept_visible_ = b2
        self.decoder_ = decoder
        self._spec_ = spec
        self._batch_size_ = self.batch_size
        self.loss_ = result.loss
        self.loss_curve_ = list(state.loss_curve)
        self.best_loss_ = None if early_stopping else float(state.best_loss)
        self.validation_scores_ = (
            None if state.validation_scores is None else list(state.validation_scores)
        )
        self.best_validation_score_ = (
            float(state.best_validation_score) if early_stopping else None
        )
        self.n_iter_ = state.n_iter
        self.t_ = state.t
        self.stop_reason_ = result.reason
        self._optimizer_ = optimizer
        self._epoch_state_ = state
        self._random_state_ = random_state
        return self

    def _apply_optimizer_settings(self, optimizer, state):
        """Give a carried-over optimiser the current hyper-parameters (``set_params``
        between ``partial_fit`` calls): :func:`skae._stochastic.apply_optimizer_settings`."""
        apply_optimizer_settings(optimizer, self, state.t)

    def _previous_parameters_always(self):
        return self._spec_.layout.pack(
            self.components_,
            self.intercept_hidden_,
            self.decoder_components_,
            self.intercept_visible_,
        )

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
        check_fitted_namespace(X, self, attribute="components_", method="transform")
        if _dask.is_dask_collection(X):
            return _dask.transform(self, X)  # lazy
        dtypes = input_namespace(X)[2]
        X = validate_input(self, X, accept_sparse="csr", dtype=dtypes, reset=False)
        H = encode(X, self.components_, self.intercept_hidden_, self._spec_.activation)
        return check_overflow(H, X, "code")

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
        check_fitted_namespace(X, self, attribute="components_", method="inverse_transform")
        if _dask.is_dask_collection(X):
            return _dask.inverse_transform(self, X)  # lazy
        H = check_input_array(X, dtype=input_namespace(X)[2], input_name="H")
        n_hidden = self.components_.shape[0]
        if H.shape[1] != n_hidden:
            raise ValueError(
                f"inverse_transform expects codes with n_hidden={n_hidden} columns, got "
                f"{H.shape[1]}; pass the output of transform."
            )
        return _decode(H, self.decoder_components_, self.intercept_visible_, self._spec_.decoder)

    def _reconstruction_losses(self, X):
        """Checked ``X`` (as ``transform`` checks it, plus the loss's range check of
        ``fit``) and the reconstruction loss of each of its rows."""
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
        check_fitted_namespace(X, self, attribute="components_", method="score")
        if _dask.is_dask_collection(X):
            return _dask.score(self, X)  # computed on the cluster
        losses = self._reconstruction_losses(X)
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
        returned vector does not grow with the number of rows. A row whose loss overflows
        scores ``-inf``; values so large that the reconstruction itself overflows to NaN
        raise a ``ValueError`` (no score is NaN).

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
        check_fitted_namespace(X, self, attribute="components_", method="score_samples")
        if _dask.is_dask_collection(X):
            return _dask.map_rows(self, X, negative_losses, [self])  # lazy
        return -self._reconstruction_losses(X)

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
        # pickled before the mini-batch solvers existed: their defaults (L-BFGS, unused)
        for name, default in MINI_BATCH_DEFAULTS.items():
            state.setdefault(name, default)
        super().__setstate__(state)

    @property
    def _n_features_out(self):
        return self.components_.shape[0]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        tags.array_api_support = self.solver == "lbfgs"  # the mini-batch solvers: NumPy
        return tags
