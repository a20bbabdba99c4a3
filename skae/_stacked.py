"""Stacked sparse autoencoders: greedy layer-wise pretraining, a softmax classifier on the
top code, and end-to-end fine-tuning by backpropagation with L-BFGS."""

import copy
import inspect
import time
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from scipy.special import log_softmax
from sklearn import config_context
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
)
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import check_is_fitted

from . import _dask
from ._array import (
    BufferPool,
    array_device,
    array_namespace,
    astype,
    cast,
    from_numpy,
    to_numpy,
)
from ._network import FineTuneObjective, Layer, NetworkLayout, autoencoder_layer, forward
from ._optimize import FitStage, fit_stage, run_lbfgs
from ._parallel import minibatch_block_rows
from ._sparse_autoencoder import MINI_BATCH_DEFAULTS, SparseAutoencoder, negative_losses
from ._stochastic import (
    AdamOptimizer,
    EpochState,
    SGDOptimizer,
    apply_optimizer_settings,
    make_optimizer,
    mini_batch_rows,
    run_epochs,
)
from ._validation import (
    Interval,
    InvalidParameterError,
    StrOptions,
    check_counts,
    check_fitted_namespace,
    check_input_array,
    check_warm_start_place,
    fit_keeping_state,
    input_namespace,
    validate_input,
)
from ._warnings import warn_at_caller
from .exceptions import ConstantCodesWarning, UnlabelledMarkerWarning

__all__ = ["StackedAutoencoder", "StackedAutoencoderClassifier"]

_SEED_MAX = np.iinfo(np.int32).max
# the advice of a non-finite loss in the softmax and fine-tuning stages
_SUPERVISED_REGULARISATION = "lower softmax_alpha"

# SparseAutoencoder's hyper-parameters that may be given once or once per layer, with
# SparseAutoencoder's own defaults (read from its signature, so the two never drift).
# The mini-batch solvers' parameters are scalars: one solver, with one set of settings,
# runs every stage (each layer gets them as they are).
_NOT_PER_LAYER = {"n_hidden", "warm_start", "random_state", "verbose", *MINI_BATCH_DEFAULTS}
_AE_DEFAULTS = {
    name: p.default
    for name, p in inspect.signature(SparseAutoencoder.__init__).parameters.items()
    if name != "self" and name not in _NOT_PER_LAYER
}
PER_LAYER_PARAMETERS = tuple(_AE_DEFAULTS)


# The solver's parameters, with SparseAutoencoder's constraints and defaults.
SOLVER_PARAMETERS = tuple(MINI_BATCH_DEFAULTS)
_SOLVER_CONSTRAINTS = {
    name: list(SparseAutoencoder._parameter_constraints[name]) for name in SOLVER_PARAMETERS
}


def _copy(obj):
    """``copy.deepcopy(obj)`` with its lists of floats (loss curves, validation scores:
    one entry per epoch of a stream) copied at C speed, which a deepcopy is not: a
    ``partial_fit`` that copies its former state would otherwise cost time growing with
    the stream."""
    memo = {}
    for curve in _float_lists(obj, depth=3):
        memo[id(curve)] = list(curve)
    return copy.deepcopy(obj, memo)


def _float_lists(obj, depth):
    """The lists of Python floats in ``obj``, its attributes, items and values (to
    ``depth`` levels): lists whose first and last entries are floats."""
    if isinstance(obj, list) and obj and type(obj[0]) is type(obj[-1]) is float:
        yield obj  # skae's curves hold floats only: the ends tell
    elif depth == 0:
        return
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from _float_lists(value, depth - 1)
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from _float_lists(value, depth - 1)
    elif hasattr(obj, "__dict__"):
        for value in vars(obj).values():
            yield from _float_lists(value, depth - 1)


def _per_layer_constraints():
    constraints = {}
    for name in PER_LAYER_PARAMETERS:
        constraints[name] = list(SparseAutoencoder._parameter_constraints[name]) + ["array-like"]
    return constraints


def _is_sequence(value):
    """Whether a parameter value is one value per layer: a list, a tuple, or any other
    one-dimensional array-like (an ndarray, a pandas Series, a range), strings excepted."""
    if isinstance(value, (list, tuple, np.ndarray, range)):
        return True
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        return False
    return np.ndim(value) == 1


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
    bound = constant_codes_decay(X, autoencoder._spec_, setting["noise"], setting["noise_level"])
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

    # counts of the estimator's own, beyond the layers' (which refuse a bool given as one)
    _own_counts = ()

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
        for setting in settings:  # one solver, with one set of settings, for every layer
            setting.update({name: getattr(self, name) for name in SOLVER_PARAMETERS})
        for k, setting in enumerate(settings, start=1):
            autoencoder = SparseAutoencoder(**setting)
            try:
                autoencoder._validate_params()
                autoencoder._check_combinations()
            except ValueError as exc:
                raise type(exc)(f"Layer {k} of {type(self).__name__}: {exc}") from exc
        check_counts(self, self._own_counts)
        for k, (below, setting) in enumerate(zip(settings, settings[1:]), start=2):
            if below["activation"] == "tanh" and setting["loss"] == "cross_entropy":
                raise ValueError(
                    f"Layer {k} of {type(self).__name__}: loss='cross_entropy' needs "
                    f"inputs in [0, 1], but this layer is fitted on the codes of layer "
                    f"{k - 1}, whose tanh units lie in (-1, 1). Give layer {k} "
                    f"loss='squared' (one loss per layer, e.g. loss=['cross_entropy', "
                    f"'squared']) or layer {k - 1} activation='sigmoid'."
                )
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
        for k, (former, setting) in enumerate(zip(previous or (), settings)):
            had = (former.components_.shape[0], bool(former.tied_weights))
            now = (setting["n_hidden"], bool(setting["tied_weights"]))
            if had != now:  # found before any layer is refitted
                raise ValueError(
                    f"warm_start=True cannot continue from the previous fit: its layer "
                    f"{k + 1} had {had[0]} units (tied_weights={had[1]}), now "
                    f"hidden_layer_sizes and tied_weights give it {now[0]} "
                    f"(tied_weights={now[1]}). Set warm_start=False to start afresh."
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
            upper = _layer_codes(autoencoder, codes)
            _check_constant_codes(self, k, autoencoder, codes, upper, settings)
            codes = upper
            times.append(time.perf_counter() - start)
        return autoencoders, times

    def _partial_pretrain(self, X, seeds):
        """One epoch of each layer's autoencoder (``partial_fit``) on ``X`` in turn, layer
        ``k`` on the codes of the layers below after their update; ``seeds``: the layers'
        seeds on the first call (None later). Returns the layers (new objects: the former
        ones are left as they were) and the wall time of each."""
        settings = self._layer_settings()
        previous = getattr(self, "autoencoders_", None)
        if previous is not None and len(previous) != len(settings):
            raise ValueError(
                f"partial_fit cannot continue the previous fit: it had {len(previous)} "
                f"layers, now hidden_layer_sizes has {len(settings)}. Fit from scratch "
                "(a new estimator, or fit) to change the layers."
            )
        for k, (former, setting) in enumerate(zip(previous or (), settings)):
            if former.components_.shape[0] != setting["n_hidden"]:
                raise ValueError(
                    f"partial_fit cannot continue the previous fit: its layer {k + 1} had "
                    f"{former.components_.shape[0]} units, now hidden_layer_sizes gives it "
                    f"{setting['n_hidden']}. Fit from scratch (a new estimator, or fit) to "
                    "change the layers."
                )
        autoencoders, times, codes = [], [], X
        for k, setting in enumerate(settings):
            start = time.perf_counter()
            if previous is not None:
                autoencoder = _copy(previous[k])
                autoencoder.set_params(**setting, verbose=self.verbose)
            else:
                autoencoder = SparseAutoencoder(
                    **setting, random_state=int(seeds[k]), verbose=self.verbose
                )
            with fit_stage(
                f"{type(self).__name__} (pretraining, layer {k + 1} of {len(settings)})"
            ):
                autoencoder.partial_fit(codes)
            autoencoders.append(autoencoder)
            if k + 1 < len(settings):
                codes = _layer_codes(autoencoder, codes)
            times.append(time.perf_counter() - start)
        return autoencoders, times

    @property
    def _bottom_weights(self):  # the namespace and device of the fit (array API)
        return self._network_layers()[0].weights

    def _check_stochastic_input(self, X):
        """The mini-batch solvers take NumPy arrays, memory maps and CSR matrices only."""
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

    def _check_solver(self):
        if self.solver not in ("adam", "sgd"):
            raise AttributeError(
                f"partial_fit is only available for the mini-batch solvers 'adam' and "
                f"'sgd'; solver={self.solver!r} is not one. Set solver='adam' or 'sgd'."
            )
        return True

    def __setstate__(self, state):
        # pickled before the mini-batch solvers existed: their defaults (L-BFGS)
        state = dict(state)
        for name, default in MINI_BATCH_DEFAULTS.items():
            state.setdefault(name, default)
        super().__setstate__(state)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        tags.array_api_support = self.solver == "lbfgs"  # the mini-batch solvers: NumPy
        return tags


_STACK_CONSTRAINTS = {
    "hidden_layer_sizes": [Interval(Integral, 1, None, closed="left"), "array-like"],
    **_per_layer_constraints(),
    **_SOLVER_CONSTRAINTS,
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
        stacked denoising autoencoder's corruption levels. With a mini-batch ``solver``,
        ``max_iter`` counts epochs (passes over the rows) and ``tol`` is the least
        improvement per epoch, as in :class:`SparseAutoencoder`.
    solver : {{"lbfgs", "adam", "sgd"}}, default="lbfgs"
        The solver of every stage. ``"lbfgs"`` minimises each stage's objective on all
        its rows at every iteration. ``"adam"`` and ``"sgd"`` take one step per
        mini-batch of rows, as :class:`SparseAutoencoder`'s mini-batch solvers (each
        layer is fitted by a SparseAutoencoder with these settings), read each row once
        per epoch and offer ``partial_fit``. They take NumPy arrays, memory maps and CSR
        matrices (dask arrays and array API dispatch: use ``"lbfgs"``).
    mini_batch_size, learning_rate, learning_rate_init, power_t, momentum, \
nesterovs_momentum, beta_1, beta_2, epsilon, shuffle, early_stopping, \
validation_fraction, n_iter_no_change : scalars
        The mini-batch solvers' settings, with :class:`SparseAutoencoder`'s names,
        defaults and meanings (ignored by ``"lbfgs"``); one value for every stage (not
        one per layer). ``mini_batch_size`` (rows per optimiser step) is not
        ``batch_size`` (rows per block of an evaluation, a memory setting)."""


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
        layer and a line per L-BFGS iteration (per epoch with a mini-batch ``solver``).

    Attributes
    ----------
    autoencoders_ : list of SparseAutoencoder
        The fitted layers, bottom first.
    n_iter_ : int
        Total number of L-BFGS iterations over all layers (each layer's is in
        ``autoencoders_[k].n_iter_``, its loss curve in ``autoencoders_[k].loss_curve_``);
        of epochs with a mini-batch ``solver`` (over all :meth:`partial_fit` calls).
    stage_n_iter_ : dict
        ``{"pretraining": [iterations of each layer]}``, the key of
        :class:`StackedAutoencoderClassifier`'s ``stage_n_iter_`` (epochs with a
        mini-batch ``solver``).
    stage_times_ : dict
        ``{"pretraining": [seconds of each layer]}``: the wall time of each layer's
        stage (its fit, and its codes for the layer above) in the last ``fit`` or
        :meth:`partial_fit` call.
    stage_stop_reasons_ : dict
        ``{"pretraining": [reason of each layer]}``: the rule that stopped each layer's
        solver, ``autoencoders_[k].stop_reason_`` (its values are listed in
        :class:`SparseAutoencoder`'s attributes; ``"partial_fit"`` after
        :meth:`partial_fit`).
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
        solver=MINI_BATCH_DEFAULTS["solver"],
        mini_batch_size=MINI_BATCH_DEFAULTS["mini_batch_size"],
        learning_rate=MINI_BATCH_DEFAULTS["learning_rate"],
        learning_rate_init=MINI_BATCH_DEFAULTS["learning_rate_init"],
        power_t=MINI_BATCH_DEFAULTS["power_t"],
        momentum=MINI_BATCH_DEFAULTS["momentum"],
        nesterovs_momentum=MINI_BATCH_DEFAULTS["nesterovs_momentum"],
        beta_1=MINI_BATCH_DEFAULTS["beta_1"],
        beta_2=MINI_BATCH_DEFAULTS["beta_2"],
        epsilon=MINI_BATCH_DEFAULTS["epsilon"],
        shuffle=MINI_BATCH_DEFAULTS["shuffle"],
        early_stopping=MINI_BATCH_DEFAULTS["early_stopping"],
        validation_fraction=MINI_BATCH_DEFAULTS["validation_fraction"],
        n_iter_no_change=MINI_BATCH_DEFAULTS["n_iter_no_change"],
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
        if self.solver != "lbfgs":
            self._check_stochastic_input(X)
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
        self._set_pretraining_record(times)
        return self

    @available_if(_StackMixin._check_solver)
    @fit_keeping_state
    def partial_fit(self, X, y=None):
        """Update every layer with one epoch of the mini-batch solver on the chunk ``X``.

        Only for ``solver="adam"`` or ``"sgd"``. One call is one epoch of each layer's
        autoencoder in turn (:meth:`SparseAutoencoder.partial_fit`): layer 1 on ``X``,
        then layer ``k`` on the codes of the layers below ``k`` after their update in this
        call. The first call (on an unfitted stack) creates the layers with the seeds
        ``fit`` would give them (from ``random_state``); each layer's optimiser state,
        loss curve, epoch count and random state carry over from call to call, so a
        sequence of calls is deterministic for a given ``random_state``. A call after
        ``fit`` continues the fitted layers (and their optimisers, for a mini-batch fit),
        whatever ``warm_start``, as in the MLPs.

        For a one-layer stack the calls are that layer's ``partial_fit``: with
        ``shuffle=False``, no noise and chunks whose sizes are multiples of an integer
        ``mini_batch_size``, calls over consecutive chunks give the model of one epoch of
        ``fit`` (``max_iter=1``) over their concatenation (not with the ``"invscaling"``
        and ``"adaptive"`` schedules of ``solver="sgd"``, which act after each call).
        With several layers they do not: ``fit`` trains layer 2 on the codes of the
        finished layer 1, while a stream interleaves the layers chunk by chunk, so layer
        2 learns from codes that change as layer 1 learns. ``early_stopping`` does not
        apply: a call holds no rows out (recent versions of scikit-learn's MLPs refuse
        ``partial_fit`` with ``early_stopping=True`` instead).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            One chunk of training data (NumPy, a memmap or CSR), with the
            ``n_features`` of the first call.
        y : None
            Ignored.

        Returns
        -------
        self : StackedAutoencoder
            The updated estimator; on an error it keeps the state it had before.

        Examples
        --------
        >>> from sklearn.datasets import load_digits
        >>> from skae import StackedAutoencoder
        >>> X = load_digits().data / 16.0
        >>> stack = StackedAutoencoder((32, 16), alpha=[3e-3, 1e-4], solver="adam",
        ...                            learning_rate_init=0.01, random_state=0)
        >>> for start in range(0, 1200, 400):  # a stream of three chunks
        ...     stack = stack.partial_fit(X[start : start + 400])
        >>> stack.stage_n_iter_, stack.stage_stop_reasons_
        ({'pretraining': [3, 3]}, {'pretraining': ['partial_fit', 'partial_fit']})
        >>> stack.transform(X[:2]).shape
        (2, 16)
        """
        self._layer_settings()  # validate every layer before any work
        self._check_stochastic_input(X)
        first = not hasattr(self, "autoencoders_")
        X = validate_input(
            self,
            X,
            accept_sparse="csr",
            dtype=(np.float64, np.float32),
            ensure_min_samples=1,
            reset=first,
        )
        seeds = None
        if first:
            random_state = check_random_state(self.random_state)
            seeds = random_state.randint(_SEED_MAX, size=len(self._hidden_sizes()))
        self.autoencoders_, times = self._partial_pretrain(X, seeds)
        self._set_pretraining_record(times)
        return self

    def _set_pretraining_record(self, times):
        self.n_iter_ = int(sum(ae.n_iter_ for ae in self.autoencoders_))
        self.stage_n_iter_ = {"pretraining": [int(ae.n_iter_) for ae in self.autoencoders_]}
        self.stage_times_ = {"pretraining": times}
        self.stage_stop_reasons_ = {"pretraining": [ae.stop_reason_ for ae in self.autoencoders_]}

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
        check_fitted_namespace(X, self, attribute="_bottom_weights", method="transform")
        if _dask.is_dask_collection(X):
            X = _dask.stack_inputs(self, X, reset=False)  # lazy codes
        else:
            dtypes = input_namespace(X)[2]
            X = validate_input(self, X, accept_sparse="csr", dtype=dtypes, reset=False)
        for autoencoder in self.autoencoders_:
            X = _layer_codes(autoencoder, X)
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
        check_fitted_namespace(X, self, attribute="_top_weights", method="inverse_transform")
        if _dask.is_dask_collection(X):
            H = _dask.stack_codes(self, X)  # lazy reconstruction
        else:
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
        check_fitted_namespace(X, self, attribute="_bottom_weights", method="score_samples")
        if _dask.is_dask_collection(X):
            return _dask.map_rows(self, X, negative_losses, self.autoencoders_)  # lazy
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


StackedAutoencoder.__doc__ = (
    StackedAutoencoder.__doc__.replace("    {per_layer}", _PER_LAYER_DOC)
    .replace("{{", "{")
    .replace("}}", "}")
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
            f"class {str(marker)!r}, set unlabelled=None if {str(marker)!r} is a class "
            f"and every row is labelled (e.g. the labels {{{str(marker)!r}, '1'}} read as "
            f"text), or set unlabelled={str(marker)!r} if that string marks unlabelled rows."
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


def _is_missing(value):
    """Whether a label is a missing value: None, NaN or pandas' NA."""
    if value is None or type(value).__name__ == "NAType":
        return True
    return isinstance(value, Real) and value != value


def _missing_label_error(marker):
    if marker is None:
        advice = "drop those rows, or set unlabelled to a marker (e.g. -1) and mark them with it."
    else:
        advice = (
            f"mark the rows without a label with {_plain(marker)!r}, the unlabelled "
            "parameter (they are then used for pretraining only), or drop them."
        )
    return ValueError(
        f"y contains missing labels (NaN, None or NA). A missing label is not a class: {advice}"
    )


def _checked_labels(y, marker):
    """``y``, checked on the labels as passed, before a list becomes a string array: a
    TypeError when its labels (its ``marker`` rows aside) mix strings and numbers, as
    scikit-learn's classifiers give. A list or tuple whose ``marker`` is not of its
    labels' type (string labels and the integer -1, numeric labels and a string marker)
    comes back as an object array, so that both keep their types (a string array would
    turn -1 into the string ``'-1'``, and numeric classes into strings)."""
    isna = getattr(y, "isna", None)  # pandas: NaN, None and NA in any of its dtypes
    if callable(isna) and bool(np.asarray(isna()).any()):
        raise _missing_label_error(marker)
    dtype = getattr(y, "dtype", None)
    if not isinstance(y, (list, tuple)) and not (
        isinstance(dtype, np.dtype) and dtype.kind == "O"
    ):
        return y  # a list, or an object array or Series, may mix types; others cannot
    values = np.asarray(y, dtype=object)
    column = values.ndim == 2 and values.shape[1] == 1  # scikit-learn ravels it, warning
    if values.ndim != 1 and not column:
        return y  # the checks of y's shape report it
    text = numbers = None
    marked = False
    for value in values.reshape(-1).tolist():
        if _is_marker(value, marker):
            marked = True
            continue
        if _is_missing(value):
            raise _missing_label_error(marker)
        if isinstance(value, str):
            text = value if text is None else text
        else:
            numbers = value if numbers is None else numbers
        if text is not None and numbers is not None:
            raise TypeError(
                f"y mixes string and numeric labels (e.g. {_plain(text)!r} and "
                f"{_plain(numbers)!r}). "
                "Labels of both types cannot be ordered together, and turning the numbers "
                "into strings would make 1 and '1' one class. Give every class label the "
                "same type, e.g. y = np.asarray(y, dtype=str) for string classes (with "
                "string labels, unlabelled rows are marked with the integer -1 in an "
                "object array)."
            )
    other_kind = numbers if isinstance(marker, str) else text
    if isinstance(y, (list, tuple)) and marked and other_kind is not None:
        return values
    return y


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
    if len(classes) < 2 and like_a_class and n_marked > len(y_labelled):
        which = (
            "the only labelled row has" if len(y_labelled) == 1
            else f"the {len(y_labelled)} labelled rows all have"
        )
        raise ValueError(
            f"Classifier can't train when only one class is present: {which} class "
            f"{_plain(classes[0])!r} (the other {n_marked} rows are labelled {shown}, "
            "unlabelled). Give labelled rows of at least two classes (or, if "
            f"{shown} is itself a class, pass unlabelled=None)."
        )
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


def _labels_of_chunk(y, marker, classes):
    """The labelled rows of a ``partial_fit`` chunk (a mask) and their class indices in
    ``classes``; a label that is not one of ``classes`` is an error."""
    labelled = _split_unlabelled(y, marker)
    y_labelled = y[labelled]
    if y_labelled.dtype == object:
        y_labelled = np.array(y_labelled.tolist())
    if y_labelled.size:
        check_classification_targets(y_labelled)
    classes = to_numpy(classes)
    unknown = np.setdiff1d(y_labelled, classes)
    if unknown.size:
        raise ValueError(
            f"y holds labels that are not in classes: {unknown.tolist()[:5]} (classes "
            f"{classes.tolist()}). Every class of the stream must be given in classes on "
            "the first call of partial_fit; unlabelled rows are marked "
            f"{_plain(marker)!r}."
        )
    return labelled, np.searchsorted(classes, y_labelled)


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
    work (see the documentation's performance page). With ``solver="adam"`` or
    ``"sgd"`` every stage uses that mini-batch solver instead: each layer's
    SparseAutoencoder, and stages 2 and 3 on mini-batches of the labelled rows (the same
    objectives, ``softmax_max_iter`` and ``fine_tune_max_iter`` counting epochs); and
    :meth:`partial_fit` learns from a stream.

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
        L-BFGS iterations of stage 2 (epochs with a mini-batch ``solver``).
    fine_tune : {"all", "top"} or None, default="all"
        What stage 3 trains: every layer, the softmax only (a continuation of stage 2,
        which changes nothing after a stage 2 that converged), or nothing.
    fine_tune_max_iter : int, default=400
        L-BFGS iterations of stage 3 (epochs with a mini-batch ``solver``).
    fine_tune_tol : float, default=1e-5
        L-BFGS tolerance of stages 2 and 3 (largest gradient component); with a
        mini-batch ``solver`` the least improvement per epoch, as the MLPs' ``tol``.
    unlabelled : int, str or None, default=-1
        The label that marks an unlabelled row (scikit-learn's semi-supervised
        convention is -1; a bool is not a marker). None: every row is labelled, e.g.
        for the classes {{-1, 1}}. With string labels, the integer -1 in an object array
        marks unlabelled rows; a string ``"-1"`` among them is an error (ambiguous).

        The marker is never a class, but a fit whose labels make it look like one says
        so, when the marker is of the classes' kind (a number among numeric labels, a
        string among string labels) and some rows carry it: if removing them leaves a
        single class (SVM-style labels {{-1, 1}}), ``fit`` raises a ValueError (which
        names ``unlabelled=None`` unless the marked rows outnumber the labelled ones); if
        they are no more numerous than the rows of the largest class (e.g. ``[-1, 0, 1]
        * 20``), it fits them as unlabelled and raises an
        :class:`~skae.exceptions.UnlabelledMarkerWarning` (a ``UserWarning``) that names
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
        also prints a heading per stage and a line per L-BFGS iteration (per epoch with
        a mini-batch ``solver``).

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
        Total L-BFGS iterations over all stages (epochs with a mini-batch ``solver``).
    stage_n_iter_ : dict
        ``{{"pretraining": [per layer], "softmax": int, "fine_tuning": int}}``: L-BFGS
        iterations, or epochs with a mini-batch ``solver`` (over all :meth:`partial_fit`
        calls, each one epoch of each stage it runs).
    stage_times_ : dict
        The wall time of each stage in seconds, with the keys of ``stage_n_iter_``: a list
        for pretraining (each layer's fit and its codes for the layer above), a float for
        the softmax and for fine-tuning (the stage's set-up and its solver's run). A
        stage this fit (or :meth:`partial_fit` call) did not run has 0.0 (an empty list
        for pretraining).
    stage_stop_reasons_ : dict
        The rule that stopped each stage's L-BFGS, with the keys of ``stage_n_iter_``:
        ``"converged (tol)"`` (the largest gradient component fell to the stage's
        tolerance: the layer's ``tol``, or ``fine_tune_tol``), ``"converged (loss
        change)"`` (an iteration lowered the loss by a relative 2.2e-9 or less),
        ``"max_iter"`` (the layer's ``max_iter``, ``softmax_max_iter`` or
        ``fine_tune_max_iter``), ``"evaluation limit"``, ``"line search"`` or
        ``"interrupted"``; the last four also raise a warning. With a mini-batch
        ``solver``: ``"no improvement"`` (``n_iter_no_change``), ``"max_iter"`` (with a
        warning), ``"interrupted"`` or ``"partial_fit"``. None for a stage that has not
        run (an empty list for pretraining).
    pretrained_classifier_ : StackedAutoencoderClassifier
        The network as stage 2 left it, before fine-tuning, as a fitted classifier: the
        fitted attributes of this estimator with ``fine_tune=None`` and the same other
        parameters and ``random_state`` (the same ``layers_``, bit for bit).
        ``clf.pretrained_classifier_.score(X_test, y_test)`` is the accuracy of the
        softmax on the pretrained codes, and ``clf.score(X_test, y_test)`` that after
        fine-tuning, from one fit. Its encoder layers are the arrays of
        ``autoencoders_``; only its softmax layer is an extra copy (with a mini-batch
        ``solver`` also stage 2's optimiser state, which is of the softmax's size, and its
        random state, so that its :meth:`partial_fit` goes on as that of a
        ``fine_tune=None`` fit). A
        warm-started fit keeps the record of the fit it continues (it runs no stage 2);
        :meth:`partial_fit` records none and removes this one.
    loss_curves_ : dict
        The loss after each L-BFGS iteration (each epoch's mean mini-batch loss with a
        mini-batch ``solver``), with the keys of ``stage_n_iter_`` (a list of curves for
        pretraining).
    validation_scores_ : dict
        With a mini-batch ``solver`` and ``early_stopping``: the accuracy on the held-out
        labelled rows after each epoch of ``"softmax"`` and ``"fine_tuning"`` (lists, as
        ``MLPClassifier.validation_scores_``), None for a stage that held no rows out or did
        not run (L-BFGS, :meth:`partial_fit`).
    best_validation_score_ : float or None
        The best of the last supervised stage's ``validation_scores_``, the held-out
        accuracy of the returned network (early stopping keeps that epoch's parameters);
        None without held-out rows.
    loss_ : float or None
        The supervised objective at the end (stage 3, or stage 2 for None); with a
        mini-batch ``solver`` the last epoch's mean mini-batch objective. None after
        :meth:`partial_fit` calls that have not yet seen a labelled row.
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

    _own_counts = ("softmax_max_iter", "fine_tune_max_iter")
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
        solver=MINI_BATCH_DEFAULTS["solver"],
        mini_batch_size=MINI_BATCH_DEFAULTS["mini_batch_size"],
        learning_rate=MINI_BATCH_DEFAULTS["learning_rate"],
        learning_rate_init=MINI_BATCH_DEFAULTS["learning_rate_init"],
        power_t=MINI_BATCH_DEFAULTS["power_t"],
        momentum=MINI_BATCH_DEFAULTS["momentum"],
        nesterovs_momentum=MINI_BATCH_DEFAULTS["nesterovs_momentum"],
        beta_1=MINI_BATCH_DEFAULTS["beta_1"],
        beta_2=MINI_BATCH_DEFAULTS["beta_2"],
        epsilon=MINI_BATCH_DEFAULTS["epsilon"],
        shuffle=MINI_BATCH_DEFAULTS["shuffle"],
        early_stopping=MINI_BATCH_DEFAULTS["early_stopping"],
        validation_fraction=MINI_BATCH_DEFAULTS["validation_fraction"],
        n_iter_no_change=MINI_BATCH_DEFAULTS["n_iter_no_change"],
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
            (``classes_`` is then of that namespace). A missing label (NaN, None,
            pandas' NA) is not a class: a ValueError asks to mark such rows with
            ``unlabelled`` or to drop them.

        Returns
        -------
        self : StackedAutoencoderClassifier
            The fitted estimator; on an error it keeps the state it had before.

        Notes
        -----
        ``fit`` and ``partial_fit`` take no ``sample_weight`` (scikit-learn's
        :class:`~sklearn.neural_network.MLPClassifier` takes one since version 1.7):
        every labelled row weighs the same in the supervised stages, and every row in
        the pretraining. To weight rows, repeat them; ``score`` takes a ``sample_weight``.
        """
        sizes = self._hidden_sizes()
        self._layer_settings()  # validate every layer before any work
        if self.solver != "lbfgs":
            self._check_stochastic_input(X)
        _check_marker(self.unlabelled, self)
        if _dask.is_dask_collection(y):  # one label per row, on the client
            y = _dask.compute_labels(y)
        y = _checked_labels(y, self.unlabelled)
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

        if self.early_stopping and self.solver != "lbfgs":
            # the supervised stages will hold out labelled rows: say now, before the
            # pretraining, if they cannot (the split's feasibility needs no random state)
            _stratified_split(y_index, self.validation_fraction, 0, "softmax")
        warm = self.warm_start and hasattr(self, "layers_")
        # a warm start keeps the encoders of layers_, fine-tuned ones included
        kept_fine_tuned = warm and getattr(self, "_fine_tuned_encoders_", False)
        random_state = check_random_state(self.random_state)
        seeds = random_state.randint(_SEED_MAX, size=len(sizes) + 1)
        # the softmax initialisation, then (mini-batch solvers) the supervised stages'
        # orders of rows and held-out rows
        rng = np.random.RandomState(seeds[-1])
        curves = {"pretraining": [], "softmax": [], "fine_tuning": []}
        n_iter = {"pretraining": [], "softmax": 0, "fine_tuning": 0}
        times = {"pretraining": [], "softmax": 0.0, "fine_tuning": 0.0}
        reasons = {"pretraining": [], "softmax": None, "fine_tuning": None}
        scores = {"softmax": None, "fine_tuning": None}  # held-out accuracies per epoch
        last_stage = None  # the last supervised stage run: its network is the result
        if warm:
            self._check_warm_start(sizes, classes, X.shape[1], xp, device)
            autoencoders = self.autoencoders_
            layers = [_cast_layer(layer, X.dtype) for layer in self.layers_]
        else:
            autoencoders, times["pretraining"] = self._pretrain(X, seeds)
            curves["pretraining"] = [list(ae.loss_curve_) for ae in autoencoders]
            n_iter["pretraining"] = [int(ae.n_iter_) for ae in autoencoders]
            reasons["pretraining"] = [ae.stop_reason_ for ae in autoencoders]
            layers = [autoencoder_layer(ae) for ae in autoencoders]
            layers.append(_initial_softmax(rng, len(classes), sizes[-1], X.dtype, xp, device))

        def run(stage, layers, n_trainable):
            nonlocal last_stage
            start = time.perf_counter()
            if self.solver == "lbfgs":
                objective = objective_of(
                    layers,
                    y_index,
                    n_trainable=n_trainable,
                    alphas=[0.0] * (n_trainable - 1) + [self.softmax_alpha],
                )
                result = self._minimise(objective, stage)
                # the frozen encoders are the autoencoders' own arrays: no copy
                layers = layers[: k - n_trainable] + _layers_from(objective, result.theta)
            else:
                layers, result, self._stage_solver_ = self._stochastic_stage(
                    X,
                    rows,
                    y_index,
                    layers,
                    n_trainable=n_trainable,
                    stage=stage,
                    random_state=rng,
                )
            curves[stage], n_iter[stage] = list(result.loss_curve), result.n_iter
            reasons[stage] = result.reason
            times[stage] = time.perf_counter() - start
            scores[stage] = getattr(result, "validation_scores", None)
            last_stage = stage
            return layers, result.loss

        k = len(layers)
        loss = pretrained = None  # pretrained: stage 2's network and loss
        if not warm:
            # Stage 2: the softmax on the frozen top codes of the labelled rows.
            self._say(f"softmax on {len(y_index)} labelled rows")
            layers, loss = run("softmax", layers, 1)
            # what fine_tune=None would keep: its network, and for the mini-batch solvers
            # the optimiser and random state that its partial_fit continues (copies: stage
            # 3 goes on with them)
            carried = (
                None if self.solver == "lbfgs"
                else copy.deepcopy((self._stage_solver_, rng))
            )
            pretrained = list(layers), loss, carried
        # Stage 3 (or, warm-started with fine_tune=None, more of stage 2).
        stage, fine_tuned = None, ()
        if self.fine_tune == "all":
            stage, fine_tuned, n_trainable = "fine_tuning", tuple(range(1, k + 1)), k
        elif self.fine_tune == "top":
            stage, fine_tuned, n_trainable = "fine_tuning", (k,), 1
        elif warm:
            stage, n_trainable = "softmax", 1
        if stage is not None:
            self._say(
                f"{stage.replace('_', '-')} ({self.fine_tune!r}) on {len(y_index)} labelled rows"
            )
            layers, loss = run(stage, layers, n_trainable)

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
        self.validation_scores_ = scores
        last = scores[last_stage] if last_stage is not None else None
        self.best_validation_score_ = max(last) if last else None
        self.n_iter_ = int(sum(n_iter["pretraining"]) + n_iter["softmax"] + n_iter["fine_tuning"])
        self.loss_ = float(loss)
        if self.solver == "lbfgs":  # a former mini-batch fit's progress
            self.__dict__.pop("_stage_solver_", None)
            self.__dict__.pop("_random_state_", None)
        else:
            self._random_state_ = rng
        # partial_fit: whether fine-tuning owns the encoders of layers_ (else they are
        # the autoencoders' encoders)
        self._fine_tuned_encoders_ = self.fine_tune == "all" or kept_fine_tuned
        if pretrained is not None:  # a warm start keeps the record of the fit before it
            self.pretrained_classifier_ = self._pretrained_record(
                *pretrained, curves, n_iter, times, reasons, scores
            )
        return self

    @available_if(_StackMixin._check_solver)
    @fit_keeping_state
    def partial_fit(self, X, y, classes=None):
        """Update the network with one epoch of the mini-batch solver on the chunk ``X, y``.

        Only for ``solver="adam"`` or ``"sgd"``. One call is:

        1. one epoch of each layer's autoencoder in turn on every row of the chunk,
           labelled or not (:meth:`SparseAutoencoder.partial_fit`; layer ``k`` learns
           from the codes of the layers below ``k`` after their update in this call), as
           :meth:`StackedAutoencoder.partial_fit`;
        2. then one epoch of the supervised stage on the labelled rows of the chunk:
           fine-tuning with the softmax when ``fine_tune`` is not None (``"all"``: every
           layer of ``layers_``; ``"top"``: the softmax only), else the softmax alone. A
           chunk with no labelled rows just pretrains.

        The encoders of ``layers_`` are the autoencoders' encoders after this call's
        pretraining until a fine-tuning epoch with ``fine_tune="all"`` has run (in the
        stream, or in the ``fit`` it continues): fine-tuning then owns them, and in every
        later call, whatever ``fine_tune`` says then, pretraining changes
        ``autoencoders_`` (what the stack reconstructs with) but not the fine-tuned
        encoders ``layers_`` predicts with (as after ``fit``, where fine-tuning starts
        from pretraining and does not go back to it); ``"top"`` and None then train the
        softmax on the fine-tuned encoders' codes. The first call creates the layers and
        the softmax with the seeds ``fit`` would use; the optimisers' states, the loss
        curves, the epoch counts and the random states carry over from call to call, so
        a sequence of calls is deterministic for a given ``random_state``. A call after ``fit``
        continues the fitted network (and the optimiser of its last supervised stage,
        for a mini-batch fit), whatever ``warm_start``, as in the MLPs; after an L-BFGS
        ``fit`` the records (loss curves, epoch counts) of every stage start again from
        zero, since they count epochs and the fit's counted iterations. The stream is
        not ``fit``: the softmax of a call learns from the codes of this call's
        encoders, while ``fit`` pretrains on every row before the softmax sees a label.
        ``early_stopping`` does not apply. ``pretrained_classifier_`` is not recorded
        (there is no separate stage 2) and one from an earlier ``fit`` is removed.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            One chunk of training data (NumPy, a memmap or CSR), with the
            ``n_features`` of the first call.
        y : array-like of shape (n_samples,)
            Its labels; ``unlabelled`` (default -1) marks an unlabelled row. Every other
            label must be one of ``classes``.
        classes : array-like of shape (n_classes,), default=None
            Every class of the stream (the ``unlabelled`` marker excluded), as in
            scikit-learn's classifiers: required on the first call (the softmax needs
            one output per class), and if given later it must be the same classes.

        Returns
        -------
        self : StackedAutoencoderClassifier
            The updated estimator; on an error it keeps the state it had before.

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn.datasets import load_digits
        >>> from skae import StackedAutoencoderClassifier
        >>> X, y = load_digits(return_X_y=True)
        >>> X = X / 16.0
        >>> clf = StackedAutoencoderClassifier((32,), solver="adam",
        ...                                    learning_rate_init=0.01, random_state=0)
        >>> for epoch in range(10):
        ...     for start in range(0, 1500, 500):  # a stream of chunks, 10 passes
        ...         chunk = slice(start, start + 500)
        ...         clf = clf.partial_fit(X[chunk], y[chunk], classes=np.arange(10))
        >>> clf.stage_n_iter_["fine_tuning"], clf.stage_stop_reasons_["fine_tuning"]
        (30, 'partial_fit')
        >>> bool(clf.score(X[1500:], y[1500:]) > 0.8)
        True
        """
        sizes = self._hidden_sizes()
        self._layer_settings()  # validate every layer before any work
        self._check_stochastic_input(X)
        _check_marker(self.unlabelled, self)
        y = _checked_labels(y, self.unlabelled)
        first = not hasattr(self, "layers_")
        X, y = validate_input(
            self,
            X,
            y=y,
            accept_sparse="csr",
            dtype=(np.float64, np.float32),
            ensure_min_samples=1,
            reset=first,
        )
        classes_ = self._stream_classes(classes, first)
        labelled, y_index = _labels_of_chunk(to_numpy(y), self.unlabelled, classes_)
        seeds = check_random_state(self.random_state).randint(_SEED_MAX, size=len(sizes) + 1)
        if not first and self.layers_[0].n_in != X.shape[1]:
            raise ValueError(
                f"X has {X.shape[1]} features, but partial_fit continues a network of "
                f"{self.layers_[0].n_in}; pass chunks with the features of the first call."
            )
        # Once fine-tuned, the encoders of layers_ stay those that fine-tuning left,
        # whatever fine_tune now says: the softmax was trained on their codes. Encoders
        # that differ from the autoencoders' are fine-tuned ones too (a model saved by a
        # version that did not record it).
        owned = not first and (
            getattr(self, "_fine_tuned_encoders_", False)
            or any(
                not np.array_equal(to_numpy(layer.weights), to_numpy(ae.components_))
                for layer, ae in zip(self.layers_[:-1], getattr(self, "autoencoders_", []))
            )
        )
        autoencoders, pretraining_times = self._partial_pretrain(
            X, None if hasattr(self, "autoencoders_") else seeds
        )
        if first:
            rng = np.random.RandomState(seeds[-1])
            softmax = _initial_softmax(rng, len(classes_), sizes[-1], X.dtype)
        else:
            rng = copy.deepcopy(getattr(self, "_random_state_", None))
            if rng is None:  # after an L-BFGS fit
                rng = np.random.RandomState(seeds[-1])
            softmax = _cast_layer(self.layers_[-1], X.dtype)
        if owned:
            encoders = [_cast_layer(layer, X.dtype) for layer in self.layers_[:-1]]
        else:
            encoders = [autoencoder_layer(ae) for ae in autoencoders]
        layers = encoders + [softmax]
        k = len(layers)
        record = self._stream_record(first, autoencoders, pretraining_times)
        curves, n_iter, times, reasons = record
        stage = "softmax" if self.fine_tune is None else "fine_tuning"
        n_trainable = k if self.fine_tune == "all" else 1
        loss = getattr(self, "loss_", None)
        if labelled.any():
            start = time.perf_counter()
            rows = None if labelled.all() else np.flatnonzero(labelled)
            layers, result, self._stage_solver_ = self._stochastic_stage(
                X,
                rows,
                y_index,
                layers,
                n_trainable=n_trainable,
                stage=stage,
                random_state=rng,
                incremental=True,
                carried=getattr(self, "_stage_solver_", None),
            )
            curves[stage].append(result.loss)
            n_iter[stage] += 1
            reasons[stage] = result.reason
            times[stage] = time.perf_counter() - start
            loss = result.loss
            owned = owned or self.fine_tune == "all"
        self.classes_ = classes_
        self.autoencoders_ = autoencoders
        self.layers_ = layers
        self.fine_tuned_layers_ = {"all": tuple(range(1, k + 1)), "top": (k,)}.get(
            self.fine_tune, ()
        )
        self.loss_curves_ = curves
        self.stage_n_iter_ = n_iter
        self.stage_times_ = times
        self.stage_stop_reasons_ = reasons
        # partial_fit holds no rows out (early_stopping is ignored there)
        self.validation_scores_ = {"softmax": None, "fine_tuning": None}
        self.best_validation_score_ = None
        self.n_iter_ = int(sum(n_iter["pretraining"]) + n_iter["softmax"] + n_iter["fine_tuning"])
        self.loss_ = None if loss is None else float(loss)
        self._random_state_ = rng
        self._fine_tuned_encoders_ = owned
        self.__dict__.pop("pretrained_classifier_", None)
        return self

    def _stream_classes(self, classes, first):
        """``classes_`` of a ``partial_fit`` call (scikit-learn's convention)."""
        if classes is None:
            if first:
                raise ValueError(
                    "classes must be passed on the first call to partial_fit: every class "
                    "the stream will hold (the unlabelled marker excluded), e.g. "
                    "classes=np.arange(10); the softmax needs one output per class."
                )
            return self.classes_
        given = classes if isinstance(classes, (list, tuple)) else to_numpy(classes)
        if np.ndim(given) != 1:
            raise ValueError(
                f"classes must be a 1-D list of the class labels, got a "
                f"{type(classes).__name__} of shape {np.shape(given)}."
            )
        try:  # MLPClassifier.partial_fit's check: one kind of label, finite, discrete
            with np.errstate(invalid="ignore"):  # NaN is refused below, not warned about
                classes = unique_labels(given)
        except ValueError as error:
            raise ValueError(
                f"classes must be labels of one kind (integers or strings, no NaN): {error}"
            ) from None
        if first:
            marked = [c for c in classes.tolist() if _is_marker(c, self.unlabelled)]
            if marked:
                raise ValueError(
                    f"classes holds {_plain(marked[0])!r}, the marker of unlabelled rows "
                    f"(unlabelled={_plain(self.unlabelled)!r}). Leave the marker out of "
                    "classes, or pass unlabelled=None if it is a class."
                )
            if len(classes) < 2:
                raise ValueError(
                    f"classes must hold at least two classes, got {classes.tolist()}."
                )
            return classes
        before = to_numpy(self.classes_)
        if not np.array_equal(classes, before):
            raise ValueError(
                f"classes={classes.tolist()} is not the classes of the first call, "
                f"{before.tolist()}. Pass the same classes (or leave classes out after the "
                "first call); fit from scratch to change them."
            )
        return self.classes_

    def _stream_record(self, first, autoencoders, pretraining_times):
        """The stage records of a ``partial_fit`` call: the former ones continued."""
        if first or not hasattr(self, "loss_curves_"):
            curves = {"pretraining": [], "softmax": [], "fine_tuning": []}
            n_iter = {"pretraining": [], "softmax": 0, "fine_tuning": 0}
            reasons = {"pretraining": [], "softmax": None, "fine_tuning": None}
        else:
            curves = _copy(self.loss_curves_)
            n_iter = copy.deepcopy(self.stage_n_iter_)
            reasons = copy.deepcopy(self.stage_stop_reasons_)
            if not hasattr(self, "_stage_solver_"):
                # the supervised stages ran L-BFGS (or never ran): their records count
                # iterations; the stream's count epochs, from zero (as each layer's
                # SparseAutoencoder.partial_fit does after an L-BFGS fit)
                for stage in ("softmax", "fine_tuning"):
                    curves[stage], n_iter[stage], reasons[stage] = [], 0, None
        curves["pretraining"] = [list(ae.loss_curve_) for ae in autoencoders]
        n_iter["pretraining"] = [int(ae.n_iter_) for ae in autoencoders]
        reasons["pretraining"] = [ae.stop_reason_ for ae in autoencoders]
        times = {"pretraining": pretraining_times, "softmax": 0.0, "fine_tuning": 0.0}
        return curves, n_iter, times, reasons

    def _pretrained_record(self, layers, loss, carried, curves, n_iter, times, reasons, scores):
        """The network as stage 2 left it, as a fitted classifier: the fitted attributes of
        ``fine_tune=None`` with these settings (its arrays shared, not copied), and for the
        mini-batch solvers ``carried``, stage 2's ``(optimiser, random state)``, which its
        ``partial_fit`` continues."""
        record = type(self)(**{**self.get_params(deep=False), "fine_tune": None})
        record.classes_ = self.classes_
        record.autoencoders_ = self.autoencoders_
        record.layers_ = layers
        record.fine_tuned_layers_ = ()
        # its own dicts and lists (the classifier's may be changed by the caller)
        record.loss_curves_ = _copy({**curves, "fine_tuning": []})
        record.stage_n_iter_ = copy.deepcopy({**n_iter, "fine_tuning": 0})
        record.stage_times_ = copy.deepcopy({**times, "fine_tuning": 0.0})
        record.stage_stop_reasons_ = copy.deepcopy({**reasons, "fine_tuning": None})
        record.validation_scores_ = copy.deepcopy({**scores, "fine_tuning": None})
        softmax_scores = scores["softmax"]
        record.best_validation_score_ = max(softmax_scores) if softmax_scores else None
        if carried is not None:
            record._stage_solver_, record._random_state_ = carried
        record.n_iter_ = int(sum(n_iter["pretraining"]) + n_iter["softmax"])
        record.loss_ = float(loss)
        record.n_features_in_ = self.n_features_in_
        if hasattr(self, "feature_names_in_"):
            record.feature_names_in_ = self.feature_names_in_
        return record

    def _stochastic_stage(
        self,
        X,
        rows,
        y_index,
        layers,
        *,
        n_trainable,
        stage,
        random_state,
        incremental=False,
        carried=None,
    ):
        """A supervised stage (``"softmax"`` or ``"fine_tuning"``) with the mini-batch
        solver: the top ``n_trainable`` of ``layers`` learn from the labelled rows ``rows``
        of ``X`` (None: every row), ``y_index`` their class indices.

        The frozen layers' codes of the labelled rows are computed once; each mini-batch
        is then a :class:`FineTuneObjective` on those rows (the trainable layers only),
        whose construction costs a few small buffers. With ``early_stopping`` (not in
        ``partial_fit``) a stratified ``validation_fraction`` of the labelled rows is held
        out and scored by accuracy after each epoch, as in
        :class:`~sklearn.neural_network.MLPClassifier`. ``carried`` is a former call's
        ``(optimizer, state)`` (``partial_fit``). Returns the new layers, the
        :class:`_StageResult` and the ``(optimizer, state)`` to carry on.
        """
        if stage == "softmax":
            label, max_iter, max_iter_name = "softmax", self.softmax_max_iter, "softmax_max_iter"
        else:
            label, max_iter = "fine-tuning", self.fine_tune_max_iter
            max_iter_name = "fine_tune_max_iter"
        k = len(layers)
        frozen, trainable = list(layers[: k - n_trainable]), list(layers[k - n_trainable :])
        trainable = [_cast_layer(layer, X.dtype) for layer in trainable]
        alphas = [0.0] * (n_trainable - 1) + [self.softmax_alpha]
        if frozen:  # their codes of the labelled rows, once
            data, data_rows = _codes_of_rows(frozen, X, rows, X.dtype), None
        else:
            data, data_rows = X, rows
        m = len(y_index)
        layout = NetworkLayout(tuple(tuple(layer.weights.shape) for layer in trainable))
        theta = np.array(layout.pack(trainable), dtype=np.float64)
        objective_of = labelled_rows(trainable, data, data_rows, y_index, alphas=alphas)

        train_rows = validation_score = None
        early_stopping = self.early_stopping and not incremental
        if early_stopping:
            train_rows, held_out = _stratified_split(
                y_index, self.validation_fraction, random_state, label
            )

            def validation_score(theta):
                network = [
                    Layer(W.astype(X.dtype), b.astype(X.dtype), layer.activation)
                    for (W, b), layer in zip(layout.unpack(theta), trainable)
                ]
                selected = held_out if data_rows is None else data_rows[held_out]
                codes = _codes_of_rows(network, data, selected, X.dtype)
                return float(np.mean(np.argmax(codes, axis=1) == y_index[held_out]))

        if (
            carried is not None
            and isinstance(carried[0], _OPTIMIZERS[self.solver])
            and len(_moments(carried[0])) == layout.size
        ):
            optimizer, state = copy.deepcopy(carried[0]), _copy(carried[1])
            apply_optimizer_settings(optimizer, self, state.t)
        else:
            optimizer, state = make_optimizer(self, layout.size), EpochState()
        state.validation_scores = [] if early_stopping else None
        state.best_validation_score = -np.inf
        n_train = m if train_rows is None else len(train_rows)
        size = mini_batch_rows(self, n_train, f"the {label} stage's training rows")
        result = run_epochs(
            objective_of,
            m,
            theta,
            optimizer=optimizer,
            state=state,
            train_rows=train_rows,
            mini_batch_size=size,
            max_iter=max_iter,
            tol=float(self.fine_tune_tol),
            n_iter_no_change=self.n_iter_no_change,
            shuffle=self.shuffle,
            random_state=random_state,
            validation_score=validation_score,
            incremental=incremental,
            verbose=self.verbose,
            name=f"{type(self).__name__} ({label})",
            max_iter_name=max_iter_name,
            tol_name="fine_tune_tol",
            regularisation=_SUPERVISED_REGULARISATION,
        )
        trained = [
            Layer(W.astype(X.dtype), b.astype(X.dtype), layer.activation)
            for (W, b), layer in zip(layout.unpack(result.theta), trainable)
        ]
        record = _StageResult(
            loss=result.loss,
            loss_curve=list(state.loss_curve),
            n_iter=state.n_iter,
            reason=result.reason,
            validation_scores=state.validation_scores,
        )
        return frozen + trained, record, (optimizer, state)

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
                f"{type(self).__name__} ({label})", max_iter=max_iter_name, tol="fine_tune_tol",
                regularisation=_SUPERVISED_REGULARISATION,
            ),
            own_lbfgs=True,
            history_dtype=objective.dtype,  # float32 data: float32 pairs (skae._lbfgs)
        )

    def _check_warm_start(self, sizes, classes, n_features, xp, device):
        check_warm_start_place(self.layers_[0].weights, xp, device)
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
        check_fitted_namespace(X, self, attribute="_bottom_weights", method=method)
        if _dask.is_dask_collection(X):
            return _dask.map_rows(self, X, function, self.layers_, self.classes_)
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

    def score(self, X, y, sample_weight=None):
        """Mean accuracy of :meth:`predict` on ``X`` against ``y``.

        scikit-learn's :meth:`~sklearn.base.ClassifierMixin.score`; with a dask ``X``,
        ``y`` or ``sample_weight`` the predictions and the labels are computed first (so
        chunk sizes left unknown, e.g. by boolean indexing, are no obstacle).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            True labels.
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        score : float

        Examples
        --------
        >>> from sklearn.datasets import load_digits
        >>> from skae import StackedAutoencoderClassifier
        >>> X, y = load_digits(return_X_y=True)
        >>> clf = StackedAutoencoderClassifier(
        ...     (16,), tol=1e-3, fine_tune_tol=1e-3, random_state=0
        ... ).fit(X[:1200] / 16.0, y[:1200])
        >>> bool(clf.score(X[1200:] / 16.0, y[1200:]) > 0.8)
        True
        """
        check_is_fitted(self)
        check_fitted_namespace(X, self, attribute="_bottom_weights", method="score")
        if any(_dask.is_dask_collection(a) for a in (X, y, sample_weight)):
            predicted, y, sample_weight = _dask.compute_all(self.predict(X), y, sample_weight)
            return float(accuracy_score(y, predicted, sample_weight=sample_weight))
        return super().score(X, y, sample_weight=sample_weight)

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


StackedAutoencoderClassifier.__doc__ = (
    StackedAutoencoderClassifier.__doc__.replace("    {per_layer}", _PER_LAYER_DOC)
    .replace("{{", "{")
    .replace("}}", "}")
)


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


_OPTIMIZERS = {"adam": AdamOptimizer, "sgd": SGDOptimizer}


def _moments(optimizer):
    """The optimiser's per-parameter state (its size is the number of parameters)."""
    return optimizer.ms if isinstance(optimizer, AdamOptimizer) else optimizer.velocity


@dataclass
class _StageResult:
    """How a supervised stage of the mini-batch solver ended (as :class:`LBFGSResult`)."""

    loss: float
    loss_curve: list
    n_iter: int
    reason: str
    validation_scores: list = None


def _initial_softmax(rng, n_classes, n_in, dtype, xp=np, device=None):
    """UFLDL's softmax initialisation: small Gaussian weights, zero bias, in ``dtype`` in
    the namespace ``xp`` on ``device`` (the same start in every namespace)."""
    W = 0.005 * rng.standard_normal((n_classes, n_in))
    b = np.zeros(n_classes)
    W, b = (from_numpy(a, dtype, xp, device) for a in (W, b))
    return Layer(W, b, "softmax")


def labelled_rows(layers, X, rows, y_index, *, alphas):
    """The supervised stages' ``objective_of(positions, random_state)`` for
    :func:`skae._stochastic.run_epochs`.

    ``layers`` are the trainable layers (the softmax on top), ``X`` their input (the
    data, or the frozen layers' codes of the labelled rows), ``rows`` the rows of ``X``
    that are the labelled rows (None: every row, in order) and ``y_index`` their class
    indices. ``objective_of(positions, random_state)`` is the :class:`FineTuneObjective`
    of the labelled rows at ``positions`` (a slice or an index array into
    ``range(len(y_index))``; ``random_state`` is not used: no noise in these stages).
    Each mini-batch's rows are gathered block by block, so ``X`` is never copied; the
    construction costs a few buffers of the mini-batch's size. For ``positions`` covering
    every labelled row in order it is the stage's full objective.
    """
    everything = np.arange(len(y_index))
    pool = BufferPool()  # each mini-batch's objective reuses the previous one's buffers

    def objective_of(positions, random_state):
        pool.rewind()
        positions = everything[positions]  # a slice: a view
        selected = positions if rows is None else rows[positions]
        return FineTuneObjective(
            layers,
            X,
            y_index[positions],
            n_trainable=len(layers),
            alphas=alphas,
            rows=selected,
            block_rows=minibatch_block_rows(len(selected)),
            buffers=pool,
        )

    return objective_of


_CODE_ROWS = 4096  # rows per step of _codes_of_rows


def _layer_codes(autoencoder, X):
    """A layer's codes of ``X`` as an array: inside a stack a layer never returns a
    DataFrame, whatever scikit-learn's ``transform_output`` setting (the stack's own
    ``transform`` follows it)."""
    with config_context(transform_output="default"):
        return autoencoder.transform(X)


def _codes_of_rows(layers, X, rows, dtype):
    """The top activations of ``X[rows]`` (``rows`` None: every row), a block of rows at a
    time, so that ``X[rows]`` is never copied whole (X may be a memmap or CSR)."""
    m = X.shape[0] if rows is None else len(rows)
    out = np.empty((m, layers[-1].n_out), dtype=dtype)
    for start in range(0, m, _CODE_ROWS):
        stop = min(start + _CODE_ROWS, m)
        block = X[start:stop] if rows is None else X[rows[start:stop]]
        out[start:stop] = forward(layers, block)[-1]
    return out


def _stratified_split(y_index, fraction, random_state, label):
    """``(train, held_out)`` positions: a stratified ``fraction`` of the labelled rows held
    out (as :class:`~sklearn.neural_network.MLPClassifier`'s early stopping), sorted."""
    positions = np.arange(len(y_index))
    try:
        train, held_out = train_test_split(
            positions, test_size=fraction, stratify=y_index, random_state=random_state
        )
    except ValueError as exc:
        raise ValueError(
            f"early_stopping ({label}) holds out a stratified validation_fraction="
            f"{fraction} of the {len(y_index)} labelled rows, which fails "
            f"({str(exc).rstrip('.')}). Pass more labelled rows, change "
            "validation_fraction, or set early_stopping=False."
        ) from exc
    return np.sort(train), np.sort(held_out)


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
