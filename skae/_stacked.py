"""Stacked sparse autoencoders: greedy layer-wise pretraining, a softmax classifier on the
top code, and end-to-end fine-tuning by backpropagation with L-BFGS."""

import copy
import inspect
import time
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from scipy.special import log_softmax
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
)
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from . import _dask
from ._array import array_device, array_namespace, astype, cast, from_numpy, to_numpy
from ._network import FineTuneObjective, Layer, autoencoder_layer, forward
from ._optimize import FitStage, fit_stage, run_lbfgs
from ._sparse_autoencoder import MINI_BATCH_DEFAULTS, SparseAutoencoder, negative_losses
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
from ._warnings import warn_at_caller
from .exceptions import ConstantCodesWarning, UnlabelledMarkerWarning

__all__ = ["StackedAutoencoder", "StackedAutoencoderClassifier"]

_SEED_MAX = np.iinfo(np.int32).max

# SparseAutoencoder's hyper-parameters that may be given once or once per layer, with
# SparseAutoencoder's own defaults (read from its signature, so the two never drift).
# The mini-batch solvers' parameters are not (yet) the stacks': their layers are fitted
# with L-BFGS.
_NOT_PER_LAYER = {"n_hidden", "warm_start", "random_state", "verbose", *MINI_BATCH_DEFAULTS}
_AE_DEFAULTS = {
    name: p.default
    for name, p in inspect.signature(SparseAutoencoder.__init__).parameters.items()
    if name != "self" and name not in _NOT_PER_LAYER
}
PER_LAYER_PARAMETERS = tuple(_AE_DEFAULTS)


def _per_layer_constraints():
    constraints = {}
    for name in PER_LAYER_PARAMETERS:
        constraints[name] = list(SparseAutoencoder._parameter_constraints[name]) + [
            "array-like"
        ]
    return constraints


def _is_sequence(value):
    return isinstance(value, (list, tuple, np.ndarray))


def _is_collection(value):
    """Whether ``value`` holds several values (a nested layer size)."""
    if isinstance(value, np.ndarray):
        return value.ndim > 0
    return isinstance(value, (list, tuple, range, set, frozenset, dict))


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def _shown(value):
    """``repr`` of ``value`` with NumPy scalars and arrays (nested too) as Python values,
    for messages: ``[3, 2]``, not ``[np.int64(3), np.int64(2)]``."""
    def plain(v):
        if isinstance(v, np.ndarray):
            return v.tolist()
        if isinstance(v, (list, tuple)):
            return type(v)(plain(item) for item in v)
        return _plain(v)

    if isinstance(value, (set, frozenset)):
        return "{" + ", ".join(repr(plain(v)) for v in value) + "}"
    return repr(plain(value))


# A layer has learned (nearly) constant codes when its reconstruction explains less than
# this share of its input's variance and its firing rates vary, across samples, by less than
# this share of sqrt(rho (1 - rho)), the spread of a unit that fires with probability rho.
_CONSTANT_CODES_R2 = 0.01
_CONSTANT_CODES_SPREAD = 0.05
_CHECK_ROWS = 4096  # rows per block of the check (the input may be a large memmap)


def _column_mean(X):
    total = np.zeros(X.shape[1])
    for start in range(0, X.shape[0], _CHECK_ROWS):
        total += np.sum(X[start : start + _CHECK_ROWS], axis=0, dtype=np.float64)
    return total / max(X.shape[0], 1)


def constant_codes_decay(X, spec, noise=None, noise_level=0.0):
    """The weight decay above which all-zero weights are a local minimum of a layer's fit.

    With ``W1 = W2 = 0`` every code equals ``f(b1) = rho`` (the sparsity penalty is zero),
    the decoder outputs the column means, and the reconstruction error is the input's
    variance. Expanding the objective to second order in the weights around that point
    (the biases re-optimised; the sparsity penalty is of fourth order) gives::

        J ≈ J_0 + (alpha / 2) (‖w‖² + ‖v‖²) − s_f vᵀ M w,     M = D_g Σ

    for each hidden unit's encoder row ``w`` and decoder row ``v``: ``Σ`` is the input's
    covariance (times ``1 − noise_level`` under mask noise), ``s_f`` the encoder's slope
    at ``rho`` (``rho (1 − rho)`` for a sigmoid, ``4 rho (1 − rho)`` for tanh) and
    ``D_g`` the decoder's slopes at the column means (``x̄ (1 − x̄)`` for a sigmoid
    decoder with the squared loss; 1 for a linear decoder or the cross-entropy). The
    point is a local minimum, so a fit from small weights can end there with constant
    codes, when ``alpha`` exceeds ``s_f σ_max(M)`` (``2 s_f λ_max((M + Mᵀ) / 2)`` with
    tied weights, whose decay counts the one matrix once).

    The codes of a sparse sigmoid layer vary little (their mean is ``rho``), so for a
    layer above another this bound is far smaller than for pixels: on scikit-learn's
    digits it is about 0.015 for the pixels and 0.0016 for the codes of a 64-unit first
    layer.

    Parameters
    ----------
    X : ndarray of shape (m, n_features)
        The layer's (dense) input.
    spec : AutoencoderSpec
        The layer's fitted settings (``autoencoder._spec_``).
    noise : {None, "mask", "gaussian"}
    noise_level : float

    Returns
    -------
    alpha_max : float
    """
    mean = _column_mean(X)
    covariance = np.zeros((X.shape[1], X.shape[1]))
    for start in range(0, X.shape[0], _CHECK_ROWS):  # no copy of X (it may be a memmap)
        centred = np.asarray(X[start : start + _CHECK_ROWS], dtype=np.float64) - mean
        covariance += centred.T @ centred
    covariance /= max(X.shape[0], 1)
    if noise == "mask":
        covariance *= 1.0 - noise_level
    rho = spec.rho
    slope = rho * (1.0 - rho) if spec.activation == "sigmoid" else 4.0 * rho * (1.0 - rho)
    if spec.decoder == "sigmoid" and spec.loss == "squared":
        p = np.clip(mean, 0.0, 1.0)
        covariance *= (p * (1.0 - p))[:, None]
    if spec.tied:
        return float(2.0 * slope * np.linalg.eigvalsh((covariance + covariance.T) / 2)[-1])
    return float(slope * np.linalg.norm(covariance, 2))


def _check_constant_codes(estimator, k, autoencoder, X, H, settings):
    """Warn when layer ``k`` (0-based) learned constant codes because of its decay."""
    if sp.issparse(X) or _dask.is_dask_collection(X) or _dask.is_dask_collection(H):
        return
    if input_namespace(X)[0] is not np:  # array API dispatch: not diagnosed on devices
        return
    setting = settings[k]
    rho = setting["rho"]
    scale = 1.0 if autoencoder._spec_.activation == "sigmoid" else 0.5  # firing rates
    code_spread = scale * float(np.mean(np.std(H, axis=0, dtype=np.float64)))
    if code_spread >= _CONSTANT_CODES_SPREAD * np.sqrt(rho * (1.0 - rho)):
        return
    # Share of the input's variance the reconstruction explains, a block of rows at a time.
    mean = _column_mean(X)
    spread = residual = 0.0
    for start in range(0, X.shape[0], _CHECK_ROWS):
        rows = np.asarray(X[start : start + _CHECK_ROWS], dtype=np.float64)
        reconstruction = autoencoder.inverse_transform(H[start : start + _CHECK_ROWS])
        residual += float(np.sum((rows - reconstruction) ** 2))
        spread += float(np.sum((rows - mean) ** 2))
    if spread == 0.0:
        return
    explained = 1.0 - residual / spread
    if explained >= _CONSTANT_CODES_R2:
        return
    bound = constant_codes_decay(
        X, autoencoder._spec_, setting["noise"], setting["noise_level"]
    )
    alpha = setting["alpha"]
    if alpha <= bound:
        return  # something else (too few iterations, ...): not this diagnosis
    suggestion = [s["alpha"] for s in settings]
    suggestion[k] = float(f"{10 ** np.floor(np.log10(bound / 3)):.0e}") if bound > 0 else 0.0
    source = "the data" if k == 0 else f"the codes of layer {k}, which vary little"
    warn_at_caller(
        f"Layer {k + 1} of {type(estimator).__name__} learned nearly constant codes (their "
        f"standard deviation across samples is {code_spread:.2g}; its reconstruction "
        f"explains {max(explained, 0.0):.1%} of the variance of its input, {source}). "
        f"Its weight decay alpha={alpha:g} is above {bound:.2g}, the decay at "
        "which all-zero weights (every code equal to rho) are a local minimum for this "
        f"input. Give this layer a smaller decay, e.g. alpha={suggestion} (see 'Weight "
        "decay in the upper layers' in the documentation's page on stacking).",
        ConstantCodesWarning,
    )


class _StackMixin:
    """Parameter handling and greedy pretraining shared by both stacked estimators."""

    def _hidden_sizes(self):
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, (set, frozenset, dict)):
            raise ValueError(
                f"hidden_layer_sizes must be an int or an ordered sequence of ints, bottom "
                f"layer first; got a {type(sizes).__name__}, {_shown(sizes)}, which has no order. "
                "Give a tuple or a list, e.g. hidden_layer_sizes=(200, 100)."
            )
        if isinstance(sizes, Integral):
            sizes = [sizes]
        else:
            sizes = list(sizes)
            if any(_is_collection(size) for size in sizes):
                raise ValueError(
                    "hidden_layer_sizes must be a flat sequence of ints, one per layer, "
                    f"bottom first; got the nested {_shown(self.hidden_layer_sizes)}. Give e.g. "
                    "hidden_layer_sizes=(200, 100) for two layers."
                )
        if not sizes:
            raise ValueError(
                "hidden_layer_sizes is empty; give at least one layer, e.g. "
                "hidden_layer_sizes=(200, 200)."
            )
        for size in sizes:
            if isinstance(size, bool) or not isinstance(size, Integral) or size < 1:
                raise ValueError(
                    "hidden_layer_sizes must hold positive ints, got "
                    f"{_shown(self.hidden_layer_sizes)}."
                )
        return [int(s) for s in sizes]

    def _layer_settings(self):
        """One dict of SparseAutoencoder settings per layer, each validated."""
        sizes = self._hidden_sizes()
        settings = [{"n_hidden": size} for size in sizes]
        for name in PER_LAYER_PARAMETERS:
            value = getattr(self, name)
            if _is_sequence(value):
                values = list(value)
                if len(values) != len(sizes):
                    raise ValueError(
                        f"{name} has {len(values)} values but hidden_layer_sizes has "
                        f"{len(sizes)} layers; give one value for all layers or exactly "
                        f"one per layer."
                    )
            else:
                values = [value] * len(sizes)
            for setting, v in zip(settings, values):
                setting[name] = _plain(v)
        for k, setting in enumerate(settings, start=1):
            autoencoder = SparseAutoencoder(**setting)
            try:
                autoencoder._validate_params()
                autoencoder._check_combinations()
            except ValueError as exc:
                raise type(exc)(f"Layer {k} of {type(self).__name__}: {exc}") from exc
        return settings

    def _pretrain(self, X, seeds, previous=None):
        """Fit one SparseAutoencoder per layer, layer k on the codes of layer k−1.

        Returns the fitted layers and the wall time of each layer's stage (its fit, its
        codes for the next layer and the check of those codes), in seconds.
        """
        settings = self._layer_settings()
        if previous is not None and len(previous) != len(settings):
            raise ValueError(
                f"warm_start=True cannot continue from the previous fit: it had "
                f"{len(previous)} layers, now hidden_layer_sizes has {len(settings)}. Set "
                "warm_start=False to start afresh."
            )
        autoencoders, times, codes = [], [], X
        for k, setting in enumerate(settings):
            start = time.perf_counter()
            if self.verbose >= 2:
                print(
                    f"{type(self).__name__}: pretraining layer {k + 1}/{len(settings)} "
                    f"({codes.shape[1]} -> {setting['n_hidden']} units)",
                    flush=True,
                )
            if previous is not None:
                autoencoder = copy.deepcopy(previous[k])
                autoencoder.set_params(**setting, warm_start=True, verbose=self.verbose)
            else:
                autoencoder = SparseAutoencoder(
                    **setting, random_state=int(seeds[k]), verbose=self.verbose
                )
            # its warnings name the stack, the layer and the per-layer max_iter and tol
            with fit_stage(
                f"{type(self).__name__} (pretraining, layer {k + 1} of {len(settings)})"
            ):
                autoencoder.fit(codes)
            autoencoders.append(autoencoder)
            upper = autoencoder.transform(codes)
            _check_constant_codes(self, k, autoencoder, codes, upper, settings)
            codes = upper
            times.append(time.perf_counter() - start)
        return autoencoders, times

    @property
    def _bottom_weights(self):  # the namespace and device of the fit (array API)
        return self._network_layers()[0].weights

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        tags.array_api_support = True
        return tags


_STACK_CONSTRAINTS = {
    "hidden_layer_sizes": [Interval(Integral, 1, None, closed="left"), "array-like"],
    **_per_layer_constraints(),
    "warm_start": ["boolean"],
    "random_state": ["random_state"],
    "verbose": ["verbose"],
}

_PER_LAYER_DOC = """\
    rho, beta, alpha, activation, decoder, loss, tied_weights, noise, noise_level, \
batch_size, max_iter, tol : scalar or sequence
        The hyper-parameters of :class:`SparseAutoencoder`, with its defaults. A scalar
        applies to every layer; a list or tuple gives one value per layer (its length
        must be ``len(hidden_layer_sizes)``), e.g. ``noise_level=[0.1, 0.2, 0.3]`` for the
        stacked denoising autoencoder's corruption levels."""


class StackedAutoencoder(
    _StackMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator
):
    """Stack of sparse autoencoders trained greedily, layer by layer.

    Layer 1 is a :class:`SparseAutoencoder` fitted on ``X``; layer ``k`` is a
    SparseAutoencoder fitted on the codes of layer ``k − 1``. ``transform`` returns the
    codes of the top layer, so the stack plugs into a
    :class:`~sklearn.pipeline.Pipeline` ahead of any classifier.

    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default=(200, 200)
        Number of hidden units of each layer, bottom first (the UFLDL stacked
        autoencoder exercise uses 200 and 200 on MNIST). A set (it has no order) or a
        nested sequence is an error.
    {per_layer}
    warm_start : bool, default=False
        Start each layer from its previous fit's parameters (the number and sizes of
        the layers must not change) instead of a new initialisation.
    random_state : int, RandomState instance or None, default=None
        One seed per layer is drawn from it; layer ``k`` is fitted with
        ``random_state=seed_k`` (``autoencoders_[k].random_state``).
    verbose : int, default=0
        0 prints nothing; 1 prints one line per layer when its fit ends: the stage
        ("StackedAutoencoder (pretraining, layer 2 of 3)"), the iterations, the final
        loss, the time and the rule that stopped it; 2 or more also prints a heading per
        layer and a line per L-BFGS iteration.

    Attributes
    ----------
    autoencoders_ : list of SparseAutoencoder
        The fitted layers, bottom first.
    n_iter_ : int
        Total number of L-BFGS iterations over all layers (each layer's is in
        ``autoencoders_[k].n_iter_``, its loss curve in ``autoencoders_[k].loss_curve_``).
    stage_n_iter_ : dict
        ``{"pretraining": [iterations of each layer]}``, the key of
        :class:`StackedAutoencoderClassifier`'s ``stage_n_iter_``.
    stage_times_ : dict
        ``{"pretraining": [seconds of each layer]}``: the wall time of each layer's
        stage (its fit, and its codes for the layer above).
    stage_stop_reasons_ : dict
        ``{"pretraining": [reason of each layer]}``: the rule that stopped each layer's
        L-BFGS, ``autoencoders_[k].stop_reason_`` (its values are listed in
        :class:`SparseAutoencoder`'s attributes).
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when ``X`` has string column names.

    See Also
    --------
    SparseAutoencoder : One layer.
    StackedAutoencoderClassifier : The stack with a softmax layer, fine-tuned.

    Notes
    -----
    The codes of a sparse layer vary little (their mean is ``rho``), and a layer fitted on
    them ends at all-zero weights, with constant codes, once its ``alpha`` exceeds a bound
    proportional to the spread of its input (``skae._stacked.constant_codes_decay``):
    on scikit-learn's digits about 0.015 for the pixels but 0.002 for the codes of a first
    layer, below UFLDL's 3e-3. Give the upper layers a smaller decay, e.g.
    ``alpha=[3e-3, 1e-4]``. A layer that learned constant codes for that reason raises a
    ``ConstantCodesWarning`` (a ``UserWarning``) naming the bound.

    A layer's ``ConvergenceWarning`` or ``FitInterruptedWarning`` opens with the stack and
    the layer, e.g. "StackedAutoencoder (pretraining, layer 2 of 3): ...", and its advice
    names that layer's ``max_iter`` and ``tol`` (a scalar, or one value per layer).

    The layers are fitted as :class:`SparseAutoencoder` fits them: with skae's own L-BFGS,
    on NumPy input and under array API dispatch on arrays of another namespace alike (see
    the Notes of :class:`SparseAutoencoder`).

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skae import StackedAutoencoder
    >>> X = load_digits().data[:500] / 16.0
    >>> stack = StackedAutoencoder((32, 16), rho=[0.1, 0.05], alpha=[3e-3, 1e-4],
    ...                            tol=1e-3, random_state=0).fit(X)
    >>> stack.transform(X).shape
    (500, 16)
    >>> [ae.n_hidden for ae in stack.autoencoders_]
    [32, 16]
    >>> stack.inverse_transform(stack.transform(X[:3])).shape
    (3, 64)
    """

    _parameter_constraints: dict = dict(_STACK_CONSTRAINTS)

    def __init__(
        self,
        hidden_layer_sizes=(200, 200),
        *,
        rho=_AE_DEFAULTS["rho"],
        beta=_AE_DEFAULTS["beta"],
        alpha=_AE_DEFAULTS["alpha"],
        activation=_AE_DEFAULTS["activation"],
        decoder=_AE_DEFAULTS["decoder"],
        loss=_AE_DEFAULTS["loss"],
        tied_weights=_AE_DEFAULTS["tied_weights"],
        noise=_AE_DEFAULTS["noise"],
        noise_level=_AE_DEFAULTS["noise_level"],
        batch_size=_AE_DEFAULTS["batch_size"],
        max_iter=_AE_DEFAULTS["max_iter"],
        tol=_AE_DEFAULTS["tol"],
        warm_start=False,
        random_state=None,
        verbose=0,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
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

    @fit_keeping_state
    def fit(self, X, y=None):
        """Pretrain the layers greedily on ``X``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data (sparse input is used by the first layer as is).
        y : None
            Ignored.

        Returns
        -------
        self : StackedAutoencoder
            The fitted estimator; on an error it keeps the state it had before.
        """
        self._layer_settings()  # validate every layer before any work
        previous = (
            self.autoencoders_ if self.warm_start and hasattr(self, "autoencoders_") else None
        )
        if _dask.is_dask_collection(X):  # persisted once; each layer fits on the cluster
            X = _dask.stack_inputs(self, X, reset=True)
        else:  # under array API dispatch, in X's namespace and on its device
            dtypes = input_namespace(X)[2]
            X = validate_input(
                self, X, accept_sparse="csr", dtype=dtypes, ensure_min_samples=2, reset=True
            )
        random_state = check_random_state(self.random_state)
        seeds = random_state.randint(_SEED_MAX, size=len(self._hidden_sizes()))
        self.autoencoders_, times = self._pretrain(X, seeds, previous)
        self.n_iter_ = int(sum(ae.n_iter_ for ae in self.autoencoders_))
        self.stage_n_iter_ = {"pretraining": [int(ae.n_iter_) for ae in self.autoencoders_]}
        self.stage_times_ = {"pretraining": times}
        self.stage_stop_reasons_ = {
            "pretraining": [ae.stop_reason_ for ae in self.autoencoders_]
        }
        return self

    def transform(self, X):
        """Codes of the top layer.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        H : ndarray of shape (n_samples, hidden_layer_sizes[-1])
            float32 for float32 input.
        """
        check_is_fitted(self)
        if _dask.is_dask_collection(X):
            X = _dask.stack_inputs(self, X, reset=False)  # lazy codes
        else:
            check_fitted_namespace(X, self, attribute="_bottom_weights", method="transform")
            dtypes = input_namespace(X)[2]
            X = validate_input(self, X, accept_sparse="csr", dtype=dtypes, reset=False)
        for autoencoder in self.autoencoders_:
            X = autoencoder.transform(X)
        return X

    def inverse_transform(self, X):
        """Decode top-layer codes down the stack to the input space.

        Parameters
        ----------
        X : array-like of shape (n_samples, hidden_layer_sizes[-1])
            Codes, e.g. the output of :meth:`transform`.

        Returns
        -------
        X_reconstructed : ndarray of shape (n_samples, n_features)
        """
        check_is_fitted(self)
        if _dask.is_dask_collection(X):
            H = _dask.stack_codes(self, X)  # lazy reconstruction
        else:
            check_fitted_namespace(X, self, attribute="_top_weights", method="inverse_transform")
            H = check_input_array(X, dtype=input_namespace(X)[2], input_name="H")
        for autoencoder in reversed(self.autoencoders_):
            H = autoencoder.inverse_transform(H)
        return H

    def score_samples(self, X):
        """Minus the reconstruction loss of each sample through the whole stack.

        ``X`` is encoded up through every layer and the top codes decoded back down
        (``inverse_transform(transform(X))``), and each row's reconstruction is
        compared with the row by the bottom layer's loss: ``−½‖x̂_i − x_i‖²`` for
        ``loss="squared"``, minus the cross-entropy for ``"cross_entropy"`` (computed
        from the bottom decoder's pre-activation, so it stays finite). Higher is more
        typical, as for scikit-learn's outlier detectors; no noise and no penalties are
        applied. For a one-layer stack it equals that layer's
        :meth:`SparseAutoencoder.score_samples`. The rows are evaluated in blocks (of
        the bottom layer's ``batch_size`` rows if set), so the memory beyond the
        returned vector does not grow with the number of rows. As there, a row whose loss
        overflows scores ``-inf`` and input that overflows the reconstruction to NaN
        raises a ``ValueError``. The stack has no ``score`` method;
        ``score_samples(X).mean()`` is its mean reconstruction score.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Data to reconstruct.

        Returns
        -------
        scores : ndarray of shape (n_samples,)
            ``−L(x̂_i, x_i)``, float64 (accumulated in float64 also for float32 input).
            A dask array for a dask ``X`` (lazy, one task per row chunk); under array
            API dispatch an array of ``X``'s namespace and device.

        Examples
        --------
        >>> from sklearn.datasets import load_digits
        >>> from skae import StackedAutoencoder
        >>> X = load_digits().data / 16.0
        >>> stack = StackedAutoencoder((32, 16), alpha=[3e-3, 1e-4], tol=1e-3,
        ...                            random_state=0).fit(X[:500])
        >>> stack.score_samples(X[500:505]).shape
        (5,)
        """
        check_is_fitted(self)
        if _dask.is_dask_collection(X):
            return _dask.map_rows(self, X, negative_losses, self.autoencoders_)  # lazy
        check_fitted_namespace(X, self, attribute="_bottom_weights", method="score_samples")
        dtypes = input_namespace(X)[2]
        X = validate_input(self, X, accept_sparse="csr", dtype=dtypes, reset=False)
        return negative_losses(X, self.autoencoders_)

    def _network_layers(self):
        check_is_fitted(self)
        return [autoencoder_layer(ae) for ae in self.autoencoders_]

    @property
    def _top_weights(self):
        return self.autoencoders_[-1].components_

    @property
    def _n_features_out(self):
        return self.autoencoders_[-1].n_hidden


StackedAutoencoder.__doc__ = StackedAutoencoder.__doc__.replace(
    "    {per_layer}", _PER_LAYER_DOC
)


# --------------------------------------------------------------------------- classifier
def _split_unlabelled(y, marker):
    """Mask of the labelled rows: rows whose label is ``marker`` are unlabelled."""
    if marker is None:
        return np.ones(len(y), dtype=bool)
    is_text = np.array([isinstance(v, str) for v in y.tolist()], dtype=bool)
    if not isinstance(marker, str) and np.any(y[is_text] == str(marker)):
        raise ValueError(
            f"y has string labels and contains {str(marker)!r}, but unlabelled rows are "
            f"marked with the integer {marker}. Mark them with the integer {marker} (an "
            f"object array, e.g. np.array(['cat', {marker}], dtype=object)), rename the "
            f"class {str(marker)!r}, or set unlabelled={str(marker)!r} if that string marks "
            "unlabelled rows."
        )
    if y.dtype.kind == "b":
        return np.ones(len(y), dtype=bool)
    comparable = is_text if isinstance(marker, str) else ~is_text
    unlabelled = np.zeros(len(y), dtype=bool)
    unlabelled[comparable] = y[comparable] == marker
    return ~unlabelled


def _check_marker(marker, estimator):
    """A bool is no label marker (it would mark the rows of class 1 or 0)."""
    if isinstance(marker, (bool, np.bool_)):
        raise InvalidParameterError(
            f"The 'unlabelled' parameter of {type(estimator).__name__} must be an int, a "
            f"str or None, got {marker!r}: a bool would mark the rows labelled "
            f"{int(marker)} as unlabelled. Pass the label of the unlabelled rows (-1, "
            "scikit-learn's semi-supervised convention), or None when every row is labelled."
        )


def _is_marker(value, marker):
    """Whether the label ``value`` (a Python object) is the unlabelled ``marker``."""
    if isinstance(marker, str):
        return isinstance(value, str) and value == marker
    return marker is not None and isinstance(value, Real) and value == marker


def _check_label_types(y, marker):
    """A TypeError when the labels of ``y`` (its ``marker`` rows aside) mix strings and
    numbers, as scikit-learn's classifiers give; checked on the labels as passed, before
    a list becomes a string array."""
    dtype = getattr(y, "dtype", None)
    if not isinstance(y, (list, tuple)) and not (
        isinstance(dtype, np.dtype) and dtype.kind == "O"
    ):
        return  # a list, or an object array or Series, may mix types; others cannot
    values = np.asarray(y, dtype=object)
    if values.ndim != 1:
        return  # the checks of y's shape report it
    text = numbers = None
    for value in values.tolist():
        if _is_marker(value, marker):
            continue
        if isinstance(value, str):
            text = value if text is None else text
        else:
            numbers = value if numbers is None else numbers
        if text is not None and numbers is not None:
            raise TypeError(
                f"y mixes string and numeric labels (e.g. {text!r} and {_plain(numbers)!r}). "
                "Labels of both types cannot be ordered together, and turning the numbers "
                "into strings would make 1 and '1' one class. Give every class label the "
                "same type, e.g. y = np.asarray(y, dtype=str) for string classes (with "
                "string labels, unlabelled rows are marked with the integer -1 in an "
                "object array)."
            )


def _labelled_classes(y, marker):
    """The labelled rows of ``y`` (a mask), their classes and the class index of each.

    Rows labelled ``marker`` are unlabelled. When the marker is of the classes' kind (a
    number among numeric labels, a string among strings) it might be a class that the
    user did not mean to drop: if removing it leaves one class, a ValueError; if its rows
    are no more than those of the largest class, an :class:`UnlabelledMarkerWarning`.
    Both name ``unlabelled=None``.
    """
    labelled = _split_unlabelled(y, marker)
    if not labelled.any():
        raise ValueError(
            f"y has no labelled rows: every label is {_plain(marker)!r} (unlabelled). Give "
            "at least one labelled row of each of two classes, or use StackedAutoencoder "
            "for unsupervised pretraining alone."
        )
    y_labelled = y[labelled]
    if y_labelled.dtype == object:
        y_labelled = np.array(y_labelled.tolist())
    check_classification_targets(y_labelled)
    classes, y_index = np.unique(y_labelled, return_inverse=True)
    n_marked = len(y) - len(y_labelled)
    like_a_class = n_marked > 0 and isinstance(marker, str) == (classes.dtype.kind in "US")
    shown = repr(_plain(marker))
    if len(classes) < 2 and like_a_class:
        raise ValueError(
            "Classifier can't train when only one class is present: y holds two "
            f"labels, {shown} and {_plain(classes[0])!r}, and with unlabelled={shown} the "
            f"{n_marked} rows labelled {shown} are unlabelled, which leaves a single "
            f"class. If {shown} is a class (e.g. the labels "
            "{-1, 1}), pass unlabelled=None; otherwise give labelled rows of at least two "
            "classes."
        )
    if len(classes) < 2:
        raise ValueError(
            "Classifier can't train when only one class is present: every labelled "
            f"row has class {_plain(classes[0])!r}. Give labelled rows of at least two "
            "classes."
        )
    counts = np.bincount(y_index)
    if like_a_class and n_marked <= counts.max():
        largest = _plain(classes[np.argmax(counts)])
        warn_at_caller(
            f"y has {n_marked} rows labelled {shown}, the marker of unlabelled rows "
            f"(unlabelled={shown}): they are fitted as unlabelled, used for pretraining "
            f"only, and {shown} is not in classes_. But they are no more than the "
            f"{counts.max()} rows of the largest class, {largest!r}, so {shown} looks "
            "like a class (semi-supervised data have more unlabelled rows than rows of "
            f"any class). If {shown} is a class, pass unlabelled=None. If these rows are "
            "unlabelled, silence this warning with warnings.filterwarnings('ignore', "
            "category=skae.exceptions.UnlabelledMarkerWarning).",
            UnlabelledMarkerWarning,
        )
    return labelled, classes, y_index


class StackedAutoencoderClassifier(
    _StackMixin, ClassNamePrefixFeaturesOutMixin, ClassifierMixin, TransformerMixin, BaseEstimator
):
    """Stacked sparse autoencoders with a softmax output layer, fine-tuned end to end.

    ``fit(X, y)`` runs three stages (the UFLDL stacked autoencoder exercise):

    1. **Pretraining** on every row of ``X``: greedy, as :class:`StackedAutoencoder`.
       Rows whose label is ``-1`` are unlabelled (scikit-learn's semi-supervised
       convention) and are used only here (see ``unlabelled`` for when ``-1`` looks
       like a class).
    2. **Softmax**: a softmax layer on the top codes of the labelled rows, trained with
       L-BFGS on the cross-entropy plus ``(softmax_alpha / 2) ‖W‖²``.
    3. **Fine-tuning** by backpropagation with L-BFGS on the labelled rows:
       ``"all"`` trains every layer end to end, ``"top"`` trains only the softmax on the
       frozen features, None stops after stage 2. ``"top"`` minimises stage 2's
       objective again, from where stage 2 stopped, for up to ``fine_tune_max_iter``
       more iterations: when stage 2 has converged (its largest gradient component is
       at most ``fine_tune_tol``) it runs 0 iterations and the network is that of
       ``fine_tune=None``. It can change the softmax only when stage 2 stopped for
       another reason: ``softmax_max_iter`` or the evaluation limit reached, or a
       relative decrease of the loss below 2.2e-9 in an iteration.

    The fine-tuning objective is ``−(1/m) Σ_i log P(y_i | x_i) + (softmax_alpha / 2)
    ‖W_softmax‖²``: as in UFLDL only the softmax weights are decayed. The encoders
    start from their pretrained values and move only as far as ``fine_tune_max_iter``
    L-BFGS iterations take them; decaying them towards zero with the autoencoders'
    ``alpha`` (a setting on the scale of a reconstruction error, not of a per-sample
    cross-entropy) would pull them away from the pretrained features they are meant
    to refine. Inputs are never corrupted during stages 2 and 3 (the denoising noise
    applies to pretraining only). Every stage minimises with skae's own L-BFGS (the
    two-loop recursion with a strong-Wolfe line search): with hundreds of thousands of
    parameters SciPy's L-BFGS-B spends a large share of each iteration on its own vector
    work (see the documentation's performance page).

    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default=(200, 200)
        Number of hidden units of each encoder layer, bottom first. A set (it has no
        order) or a nested sequence is an error.
    {per_layer}
    softmax_alpha : float >= 0, default=1e-4
        Weight decay of the softmax weights (UFLDL's λ), in stage 2 and in fine-tuning.
        One value serves both stages on purpose. Fine-tuning minimises stage 2's
        objective ``J(encoders, W) = −(1/m) Σ log P(y_i | x_i) + (λ / 2) ‖W‖²`` over more
        parameters: its decay term is the same term on the same weights ``W``, which
        read codes in the same bounded range, so it bounds the logits alike. Fine-tuning
        thus continues one minimisation: it starts at ``pretrained_classifier_.loss_``
        and ends with ``loss_`` at most that (to rounding); after a converged stage 2,
        ``∂J/∂W = 0`` at its start and only the encoders' gradient moves it. With a decay
        ``λ'`` of its own, the softmax's gradient at its start would be ``(λ' − λ) W``:
        its first iterations would rescale the softmax that stage 2 fitted to another
        objective, the losses before and after fine-tuning would not be comparable, and
        ``fine_tune="top"`` would no longer continue stage 2. To regularise more or less,
        change ``softmax_alpha``: both stages follow.
    softmax_max_iter : int, default=100
        L-BFGS iterations of stage 2.
    fine_tune : {"all", "top"} or None, default="all"
        What stage 3 trains: every layer, the softmax only (a continuation of stage 2,
        which changes nothing after a stage 2 that converged), or nothing.
    fine_tune_max_iter : int, default=400
        L-BFGS iterations of stage 3.
    fine_tune_tol : float, default=1e-5
        L-BFGS tolerance of stages 2 and 3 (largest gradient component).
    unlabelled : int, str or None, default=-1
        The label that marks an unlabelled row (scikit-learn's semi-supervised
        convention is -1; a bool is not a marker). None: every row is labelled, e.g.
        for the classes {{-1, 1}}. With string labels, the integer -1 in an object array
        marks unlabelled rows; a string ``"-1"`` among them is an error (ambiguous).

        The marker is never a class, but a fit whose labels make it look like one says
        so, when the marker is of the classes' kind (a number among numeric labels, a
        string among string labels) and some rows carry it: if removing them leaves a
        single class (SVM-style labels {{-1, 1}}), ``fit`` raises a ValueError; if they
        are no more numerous than the rows of the largest class (e.g. ``[-1, 0, 1] *
        20``), it fits them as unlabelled and raises an
        :class:`~skae.exceptions.UnlabelledMarkerWarning` (a ``UserWarning``). Both name
        ``unlabelled=None``. The
        reason: semi-supervised data have more unlabelled rows than rows of any one
        class (unlabelled rows are the cheap ones), while a real class labelled -1 is,
        like the other classes, about as frequent as they are, or rarer. A fit with few
        unlabelled rows among few classes (a quarter of the rows unlabelled, three
        balanced classes) warns too: silence the warning if those rows are unlabelled.
    warm_start : bool, default=False
        When fitted before: skip pretraining and the softmax initialisation and continue
        the supervised stage (fine-tuning, or stage 2 when ``fine_tune=None``) from the
        previous fit's network ``layers_``. The layer sizes, the number of features and
        the classes must not change.
    random_state : int, RandomState instance or None, default=None
        One seed per layer and one for the softmax initialisation are drawn from it.
    verbose : int, default=0
        0 prints nothing; 1 prints one line per stage when it ends (each pretrained
        layer, the softmax, fine-tuning): its name as in its warnings
        ("StackedAutoencoderClassifier (fine-tuning)"), the iterations, the final loss,
        the time and the rule that stopped it (as ``stage_stop_reasons_``); 2 or more
        also prints a heading per stage and a line per L-BFGS iteration.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels (the ``unlabelled`` marker excluded); under array API dispatch
        an array of ``y``'s namespace and device, as in scikit-learn's classifiers.
    autoencoders_ : list of SparseAutoencoder
        The pretrained layers, as pretraining left them (fine-tuning does not change
        them).
    layers_ : list of Layer
        The final network, bottom first: one layer per encoder (weights of shape
        (n_out, n_in), as ``components_``) and the softmax output layer.
    fine_tuned_layers_ : tuple of int
        1-based indices of the layers stage 3 trained: every layer for ``"all"``
        (``len(hidden_layer_sizes) + 1`` is the softmax), only the softmax for
        ``"top"``, none for None.
    n_iter_ : int
        Total L-BFGS iterations over all stages.
    stage_n_iter_ : dict
        ``{{"pretraining": [per layer], "softmax": int, "fine_tuning": int}}``.
    stage_times_ : dict
        The wall time of each stage in seconds, with the keys of ``stage_n_iter_``: a list
        for pretraining (each layer's fit and its codes for the layer above), a float for
        the softmax and for fine-tuning (the stage's set-up and its L-BFGS run). A stage
        this fit did not run has 0.0 (an empty list for pretraining).
    stage_stop_reasons_ : dict
        The rule that stopped each stage's L-BFGS, with the keys of ``stage_n_iter_``:
        ``"converged (tol)"`` (the largest gradient component fell to the stage's
        tolerance: the layer's ``tol``, or ``fine_tune_tol``), ``"converged (loss
        change)"`` (an iteration lowered the loss by a relative 2.2e-9 or less),
        ``"max_iter"`` (the layer's ``max_iter``, ``softmax_max_iter`` or
        ``fine_tune_max_iter``), ``"evaluation limit"``, ``"line search"`` or
        ``"interrupted"``; the last four also raise a warning. None for a stage this fit
        did not run (an empty list for pretraining).
    pretrained_classifier_ : StackedAutoencoderClassifier
        The network as stage 2 left it, before fine-tuning, as a fitted classifier: the
        fitted attributes of this estimator with ``fine_tune=None`` and the same other
        parameters and ``random_state`` (the same ``layers_``, bit for bit).
        ``clf.pretrained_classifier_.score(X_test, y_test)`` is the accuracy of the
        softmax on the pretrained codes, and ``clf.score(X_test, y_test)`` that after
        fine-tuning, from one fit. Its encoder layers are the arrays of
        ``autoencoders_``; only its softmax layer is an extra copy. A warm-started fit
        keeps the record of the fit it continues (it runs no stage 2).
    loss_curves_ : dict
        The loss after each L-BFGS iteration, with the keys of ``stage_n_iter_``
        (a list of curves for pretraining).
    loss_ : float
        The supervised objective at the end (stage 3, or stage 2 for None).
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when ``X`` has string column names.

    See Also
    --------
    StackedAutoencoder : The unsupervised stack alone.
    sklearn.neural_network.MLPClassifier : The same network without pretraining.

    Notes
    -----
    Each stage's ``ConvergenceWarning`` or ``FitInterruptedWarning`` opens with the stage:
    "StackedAutoencoderClassifier (pretraining, layer 2 of 3)", "(softmax)" or
    "(fine-tuning)", and its advice names the parameters that govern that stage: the
    layer's ``max_iter`` and ``tol`` for pretraining, ``softmax_max_iter`` and
    ``fine_tune_tol`` for the softmax, ``fine_tune_max_iter`` and ``fine_tune_tol`` for
    fine-tuning.

    Under array API dispatch, on arrays of another namespace than NumPy, every stage
    minimises with the same L-BFGS as on NumPy input, so with the same ``random_state``
    the fit in another namespace gives the NumPy fit's network and probabilities to
    rounding in float64 (see the documentation's array API page).

    The classifier has no ``score_samples``: its ``score`` is accuracy, and fine-tuning
    changes the encoders of ``layers_`` but no decoder, so the network it predicts with
    does not reconstruct its input. For per-sample reconstruction scores (novelty
    detection) use a :class:`StackedAutoencoder` or :class:`SparseAutoencoder`.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skae import StackedAutoencoderClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> X = X / 16.0
    >>> clf = StackedAutoencoderClassifier(
    ...     (32,), tol=1e-3, fine_tune="all", fine_tune_tol=1e-3,
    ...     random_state=0).fit(X[:1500], y[:1500])
    >>> clf.fine_tuned_layers_
    (1, 2)
    >>> bool(clf.score(X[1500:], y[1500:]) > 0.8)
    True
    """

    _parameter_constraints: dict = {
        **_STACK_CONSTRAINTS,
        "softmax_alpha": [Interval(Real, 0, None, closed="left")],
        "softmax_max_iter": [Interval(Integral, 1, None, closed="left")],
        "fine_tune": [None, StrOptions({"all", "top"})],
        "fine_tune_max_iter": [Interval(Integral, 1, None, closed="left")],
        "fine_tune_tol": [Interval(Real, 0, None, closed="left")],
        "unlabelled": [None, Integral, str],
    }

    def __init__(
        self,
        hidden_layer_sizes=(200, 200),
        *,
        rho=_AE_DEFAULTS["rho"],
        beta=_AE_DEFAULTS["beta"],
        alpha=_AE_DEFAULTS["alpha"],
        activation=_AE_DEFAULTS["activation"],
        decoder=_AE_DEFAULTS["decoder"],
        loss=_AE_DEFAULTS["loss"],
        tied_weights=_AE_DEFAULTS["tied_weights"],
        noise=_AE_DEFAULTS["noise"],
        noise_level=_AE_DEFAULTS["noise_level"],
        batch_size=_AE_DEFAULTS["batch_size"],
        max_iter=_AE_DEFAULTS["max_iter"],
        tol=_AE_DEFAULTS["tol"],
        softmax_alpha=1e-4,
        softmax_max_iter=100,
        fine_tune="all",
        fine_tune_max_iter=400,
        fine_tune_tol=1e-5,
        unlabelled=-1,
        warm_start=False,
        random_state=None,
        verbose=0,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
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
        self.softmax_alpha = softmax_alpha
        self.softmax_max_iter = softmax_max_iter
        self.fine_tune = fine_tune
        self.fine_tune_max_iter = fine_tune_max_iter
        self.fine_tune_tol = fine_tune_tol
        self.unlabelled = unlabelled
        self.warm_start = warm_start
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ fitting
    @fit_keeping_state
    def fit(self, X, y):
        """Pretrain on all rows, fit the softmax and fine-tune on the labelled rows.

        Parameters
        ----------
        X : {array-like, sparse matrix, dask array} of shape (n_samples, n_features)
            Training data; float32 stays float32; sparse input is used by the first
            layer as is. A dask array chunked by rows is fitted on the dask cluster, all
            three stages (user guide, "Scaling out"); ``predict`` and the other methods
            then return lazy dask arrays for dask input. Under scikit-learn's array API
            dispatch an array of another namespace (a PyTorch tensor, a CuPy array) is
            fitted in that namespace, on its device, and the fitted network lives there.
        y : array-like of shape (n_samples,)
            Class labels; ``unlabelled`` (default -1) marks an unlabelled row (for string
            labels use an object array holding the integer -1). Labels that mix strings
            and numbers (the marker aside) raise a TypeError, as in scikit-learn's
            classifiers. A dask array is computed on the client (one label per row);
            under array API dispatch ``y`` may be an array of any namespace
            (``classes_`` is then of that namespace).

        Returns
        -------
        self : StackedAutoencoderClassifier
            The fitted estimator; on an error it keeps the state it had before.
        """
        sizes = self._hidden_sizes()
        self._layer_settings()  # validate every layer before any work
        _check_marker(self.unlabelled, self)
        if _dask.is_dask_collection(y):  # one label per row, on the client
            y = _dask.compute_labels(y)
        _check_label_types(y, self.unlabelled)
        on_cluster = _dask.is_dask_collection(X)
        xp, device = np, None  # X's array namespace and device
        if on_cluster:  # X persisted on the workers; y (one label per row) on the client
            X, y = _dask.classifier_inputs(self, X, y)
        else:
            # array API dispatch: an array of another namespace is fitted in it, on its
            # device (xp is numpy on the NumPy path)
            xp, device, dtypes = input_namespace(X)
            X, y = validate_input(
                self,
                X,
                y=y,
                accept_sparse="csr",
                dtype=dtypes,
                ensure_min_samples=2,
                reset=True,
            )
        # The labels are bookkept on the host (one per row); classes_ is returned in y's
        # namespace and on its device, as scikit-learn's array API classifiers do.
        y_xp, y_device, _ = (np, None, None) if on_cluster else input_namespace(y)
        y = to_numpy(y)
        labelled, classes, y_index = _labelled_classes(y, self.unlabelled)
        if on_cluster:  # a map-reduce over the chunks' labelled rows (skae._dask)
            def objective_of(layers, y_index, **settings):
                return _dask.DaskFineTuneObjective(layers, X, labelled, y_index, **settings)
        else:  # the labelled rows are gathered block by block: X is not copied
            rows = None if labelled.all() else np.flatnonzero(labelled)

            def objective_of(layers, y_index, **settings):
                return FineTuneObjective(layers, X, y_index, rows=rows, **settings)

        warm = self.warm_start and hasattr(self, "layers_")
        random_state = check_random_state(self.random_state)
        seeds = random_state.randint(_SEED_MAX, size=len(sizes) + 1)
        curves = {"pretraining": [], "softmax": [], "fine_tuning": []}
        n_iter = {"pretraining": [], "softmax": 0, "fine_tuning": 0}
        times = {"pretraining": [], "softmax": 0.0, "fine_tuning": 0.0}
        reasons = {"pretraining": [], "softmax": None, "fine_tuning": None}
        if warm:
            self._check_warm_start(sizes, classes, X.shape[1], xp)
            autoencoders = self.autoencoders_
            layers = [_cast_layer(layer, X.dtype) for layer in self.layers_]
        else:
            autoencoders, times["pretraining"] = self._pretrain(X, seeds)
            curves["pretraining"] = [list(ae.loss_curve_) for ae in autoencoders]
            n_iter["pretraining"] = [int(ae.n_iter_) for ae in autoencoders]
            reasons["pretraining"] = [ae.stop_reason_ for ae in autoencoders]
            layers = [autoencoder_layer(ae) for ae in autoencoders]
            rng = np.random.RandomState(seeds[-1])
            # UFLDL's softmax initialisation: small Gaussian weights, zero bias.
            W = 0.005 * rng.standard_normal((len(classes), sizes[-1]))
            b = np.zeros(len(classes))
            # the same start in every namespace, on X's device in X's dtype
            W, b = (from_numpy(a, X.dtype, xp, device) for a in (W, b))
            layers.append(Layer(W, b, "softmax"))

        k = len(layers)
        loss = pretrained = None  # pretrained: stage 2's network and loss
        if not warm:
            # Stage 2: the softmax on the frozen top codes of the labelled rows.
            start = time.perf_counter()
            self._say(f"softmax on {len(y_index)} labelled rows")
            objective = objective_of(
                layers, y_index, n_trainable=1, alphas=[self.softmax_alpha]
            )
            result = self._minimise(objective, "softmax")
            # the encoders are the autoencoders' own arrays: this network costs no copy
            # beyond its softmax layer
            layers = layers[:-1] + _layers_from(objective, result.theta)
            curves["softmax"], n_iter["softmax"] = list(result.loss_curve), result.n_iter
            reasons["softmax"] = result.reason
            loss = result.loss
            times["softmax"] = time.perf_counter() - start
            pretrained = list(layers), loss
        # Stage 3 (or, warm-started with fine_tune=None, more of stage 2).
        stage, fine_tuned = None, ()
        if self.fine_tune == "all":
            stage, fine_tuned, n_trainable = "fine_tuning", tuple(range(1, k + 1)), k
        elif self.fine_tune == "top":
            stage, fine_tuned, n_trainable = "fine_tuning", (k,), 1
        elif warm:
            stage, n_trainable = "softmax", 1
        if stage is not None:
            start = time.perf_counter()
            self._say(f"{stage.replace('_', '-')} ({self.fine_tune!r}) on {len(y_index)} "
                      "labelled rows")
            objective = objective_of(
                layers,
                y_index,
                n_trainable=n_trainable,
                alphas=[0.0] * (n_trainable - 1) + [self.softmax_alpha],
            )
            result = self._minimise(objective, stage)
            layers = layers[: k - n_trainable] + _layers_from(objective, result.theta)
            curves[stage], n_iter[stage] = list(result.loss_curve), result.n_iter
            reasons[stage] = result.reason
            loss = result.loss
            times[stage] = time.perf_counter() - start

        if y_xp is not np:
            classes = y_xp.asarray(classes, device=y_device)
        self.classes_ = classes
        self.autoencoders_ = autoencoders
        self.layers_ = layers
        self.fine_tuned_layers_ = fine_tuned
        self.loss_curves_ = curves
        self.stage_n_iter_ = n_iter
        self.stage_times_ = times
        self.stage_stop_reasons_ = reasons
        self.n_iter_ = int(sum(n_iter["pretraining"]) + n_iter["softmax"] + n_iter["fine_tuning"])
        self.loss_ = float(loss)
        if pretrained is not None:  # a warm start keeps the record of the fit before it
            self.pretrained_classifier_ = self._pretrained_record(
                *pretrained, curves, n_iter, times, reasons
            )
        return self

    def _pretrained_record(self, layers, loss, curves, n_iter, times, reasons):
        """The network as stage 2 left it, as a fitted classifier: the fitted attributes of
        ``fine_tune=None`` with these settings (its arrays shared, not copied)."""
        record = type(self)(**{**self.get_params(deep=False), "fine_tune": None})
        record.classes_ = self.classes_
        record.autoencoders_ = self.autoencoders_
        record.layers_ = layers
        record.fine_tuned_layers_ = ()
        # its own dicts and lists (the classifier's may be changed by the caller)
        record.loss_curves_ = copy.deepcopy({**curves, "fine_tuning": []})
        record.stage_n_iter_ = copy.deepcopy({**n_iter, "fine_tuning": 0})
        record.stage_times_ = copy.deepcopy({**times, "fine_tuning": 0.0})
        record.stage_stop_reasons_ = copy.deepcopy({**reasons, "fine_tuning": None})
        record.n_iter_ = int(sum(n_iter["pretraining"]) + n_iter["softmax"])
        record.loss_ = float(loss)
        record.n_features_in_ = self.n_features_in_
        if hasattr(self, "feature_names_in_"):
            record.feature_names_in_ = self.feature_names_in_
        return record

    def _say(self, message):
        if self.verbose >= 2:
            print(f"{type(self).__name__}: {message}", flush=True)

    def _minimise(self, objective, stage):
        """Run L-BFGS on a supervised stage (``"softmax"`` or ``"fine_tuning"``), its
        warnings naming the stage and the parameters that govern it."""
        if stage == "softmax":
            label, max_iter, max_iter_name = "softmax", self.softmax_max_iter, "softmax_max_iter"
        else:
            label, max_iter = "fine-tuning", self.fine_tune_max_iter
            max_iter_name = "fine_tune_max_iter"

        def report(intermediate_result):
            terms = objective.last_terms
            if terms is None or terms[0] != intermediate_result.fun:
                return ""
            return f", cross-entropy = {terms[1]:.6g}"

        return run_lbfgs(
            objective,
            objective.theta0,
            max_iter=max_iter,
            tol=self.fine_tune_tol,
            verbose=self.verbose,
            report=report,
            stage=FitStage(
                f"{type(self).__name__} ({label})", max_iter=max_iter_name, tol="fine_tune_tol"
            ),
            own_lbfgs=True,
        )

    def _check_warm_start(self, sizes, classes, n_features, xp):
        if array_namespace(self.layers_[0].weights) is not xp:
            raise ValueError(
                "warm_start=True cannot continue from the previous fit: it was fitted in "
                "another array namespace than X's. Fit X in the namespace of the previous "
                "fit, or set warm_start=False to start afresh."
            )
        if self.layers_[0].n_in != n_features:
            raise ValueError(
                "warm_start=True cannot continue from the previous fit: it had "
                f"n_features={self.layers_[0].n_in}, now X has {n_features} features. "
                "Set warm_start=False to start afresh."
            )
        previous = [layer.n_out for layer in self.layers_[:-1]]
        before = to_numpy(self.classes_)
        if previous != sizes or not np.array_equal(classes, before):
            raise ValueError(
                "warm_start=True cannot continue from the previous fit: it had "
                f"hidden_layer_sizes={tuple(previous)} and classes {before.tolist()}, "
                f"now {tuple(sizes)} and {classes.tolist()}. Set warm_start=False to start "
                "afresh."
            )

    # ------------------------------------------------------------------ predicting
    def _apply(self, X, function, method):
        """``function(X, layers_, classes_)`` on checked rows; lazily per row chunk of a
        dask array (a dask array is returned, nothing is computed). Under array API
        dispatch X must be of the fit's namespace and device."""
        check_is_fitted(self)
        if _dask.is_dask_collection(X):
            return _dask.map_rows(self, X, function, self.layers_, self.classes_)
        check_fitted_namespace(X, self, attribute="_bottom_weights", method=method)
        dtypes = input_namespace(X)[2]
        X = validate_input(self, X, accept_sparse="csr", dtype=dtypes, reset=False)
        return function(X, self.layers_, self.classes_)

    def decision_function(self, X):
        """The softmax layer's input (logits); their difference for two classes.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples, n_classes), or (n_samples,) for two classes
            For two classes, ``z_1 − z_0``: positive means ``classes_[1]``.
        """
        return self._apply(X, _decision, "decision_function")

    def predict_proba(self, X):
        """Class probabilities (the softmax output).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Columns in the order of ``classes_``.
        """
        return self._apply(X, _proba, "predict_proba")

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`, computed without underflow.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
        """
        return self._apply(X, _log_proba, "predict_log_proba")

    def predict(self, X):
        """The most probable class of each row.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Labels from ``classes_``.
        """
        return self._apply(X, _predict, "predict")

    def transform(self, X):
        """Codes of the top hidden layer of the (fine-tuned) encoder.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        H : ndarray of shape (n_samples, hidden_layer_sizes[-1])
        """
        return self._apply(X, _codes, "transform")

    def _network_layers(self):
        check_is_fitted(self)
        return list(self.layers_)

    @property
    def _n_features_out(self):
        return self.layers_[-2].n_out


StackedAutoencoderClassifier.__doc__ = StackedAutoencoderClassifier.__doc__.replace(
    "    {per_layer}", _PER_LAYER_DOC
).replace("{{", "{").replace("}}", "}")


# What the classifier computes from checked rows X (NumPy, sparse, or an array of the
# fit's namespace under array API dispatch), its layers and classes; on a dask array, the
# same functions run on each row chunk (lazily).
def _codes(X, layers, classes):
    return forward(layers[:-1], X)[-1]


def _logits(X, layers, classes):
    top = layers[-1]
    linear = Layer(top.weights, top.bias, "identity")
    return forward([linear], _codes(X, layers, classes))[-1]


def _decision(X, layers, classes):
    Z = _logits(X, layers, classes)
    if Z.shape[1] == 2:
        return Z[:, 1] - Z[:, 0]
    return Z


def _proba(X, layers, classes):
    return forward(layers, X)[-1]


def _log_proba(X, layers, classes):
    Z = _logits(X, layers, classes)
    xp = array_namespace(Z)
    if xp is np:
        return log_softmax(Z, axis=1)
    # SciPy's log_softmax, step by step, in Z's namespace
    Z = Z - xp.max(Z, axis=1, keepdims=True)
    return Z - xp.log(xp.sum(xp.exp(Z), axis=1, keepdims=True))


def _predict(X, layers, classes):
    Z = _logits(X, layers, classes)
    xp = array_namespace(Z)
    if xp is np and array_namespace(classes) is np:
        return classes[np.argmax(Z, axis=1)]
    # array API dispatch (scikit-learn's convention): classes_ is in y's namespace; the
    # labels come back in X's namespace and on its device, string labels as NumPy.
    indices = xp.argmax(Z, axis=1)
    if array_namespace(classes) is xp and array_device(classes) == array_device(Z):
        return xp.take(classes, indices, axis=0)
    labels = to_numpy(classes)[to_numpy(indices)]
    if xp is np or labels.dtype.kind not in "biuf":
        return labels
    return xp.asarray(labels, device=array_device(Z))


def _cast_layer(layer, dtype):
    return Layer(cast(layer.weights, dtype), cast(layer.bias, dtype), layer.activation)


def _copy_as(a, dtype):
    """A copy of ``a`` in ``dtype``, in its own namespace."""
    return astype(a, dtype, array_namespace(a))


def _layers_from(objective, theta):
    """The trainable layers of ``objective`` at ``theta``, in the data's dtype."""
    return [
        Layer(_copy_as(W, objective.dtype), _copy_as(b, objective.dtype), layer.activation)
        for (W, b), layer in zip(objective.layout.unpack(theta), objective.trainable)
    ]

