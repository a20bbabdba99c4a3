"""Shared building blocks: activations, the KL penalty, the flat parameter layout,
the finite-difference gradient check and the L-BFGS driver.

Everything here is a pure function or a small value object. The estimators and the
objectives import from here; this is the only module that reaches into scikit-learn's
private helpers.
"""

import concurrent.futures
import contextlib
import contextvars
import multiprocessing
import os
import sys
import threading
import time
import warnings
from dataclasses import dataclass

import joblib
import numpy as np
import scipy.sparse as sp
import sklearn
from scipy.optimize import minimize
from sklearn.base import _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_array
from sklearn.utils._array_api import (
    _convert_to_numpy,
    _is_numpy_namespace,
    _max_precision_float_dtype,
    get_namespace_and_device,
)
from sklearn.utils._param_validation import Interval, InvalidParameterError, StrOptions
from sklearn.utils.validation import validate_data

from ._lbfgs import array_api_compat, minimize_lbfgs

__all__ = [
    "ACTIVATIONS",
    "FitInterruptedWarning",
    "PickleVersionWarning",
    "SkaeWarning",
    "Interval",
    "InvalidParameterError",
    "StrOptions",
    "_fit_context",
    "ParameterLayout",
    "array_device",
    "array_namespace",
    "check_same_namespace",
    "device_namespace",
    "check_gradient",
    "kl_divergence",
    "check_input_array",
    "check_fitted_namespace",
    "FitStage",
    "STOP_REASONS",
    "fit_stage",
    "run_lbfgs",
    "to_numpy",
    "validate_input",
    "warn_at_caller",
]


# --------------------------------------------------------------------------- input data
# scikit-learn's validation names the problem; these say how to fix it. Each pair is
# (a piece of sklearn's or NumPy's message, or a tuple of the wordings of the supported
# versions, and the advice appended to it).
_INPUT_HINTS = (
    (
        "could not convert string to float",
        "X must be numeric: encode text or categorical columns first, e.g. with "
        "sklearn's OneHotEncoder or OrdinalEncoder in a ColumnTransformer.",
    ),
    (
        "setting an array element with a sequence",
        "X must hold one number per cell: build a 2-D numeric array, e.g. with "
        "numpy.vstack, instead of nesting sequences in an object array.",
    ),
    (
        "Complex data not supported",
        "skae works on real numbers: pass X.real and X.imag side by side "
        "(numpy.hstack) or the magnitude numpy.abs(X).",
    ),
    (
        "contains infinity",
        "Replace or drop the infinite values first, e.g. with numpy.nan_to_num or "
        "numpy.clip, or scale the data so it fits the dtype.",
    ),
    (
        ("while dim <= 2 is required", "expected <= 2"),  # scikit-learn >= 1.7, 1.6
        "Pass a 2-D array of shape (n_samples, n_features); flatten images with "
        "X.reshape(len(X), -1).",
    ),
    (
        "features as input",
        "Pass data with the same columns as the data given to fit.",
    ),
)


def _with_advice(validate, *args, **kwargs):
    try:
        return validate(*args, **kwargs)
    except ValueError as exc:
        message = str(exc)
        for needles, hint in _INPUT_HINTS:
            if any(n in message for n in ((needles,) if isinstance(needles, str) else needles)):
                raise ValueError(f"{message.rstrip()}\n{hint}") from exc
        raise


def validate_input(estimator, X, **kwargs):
    """``sklearn.utils.validation.validate_data`` with advice added to its errors.

    The keyword arguments are passed on unchanged. A ``ValueError`` whose message
    matches one of the known problems (text, nested sequences, complex numbers,
    infinity, more than two dimensions, a wrong number of features) is raised again
    with a sentence saying how to fix it appended; the original message is kept
    first, so code matching sklearn's wording still works.
    """
    return _with_advice(validate_data, estimator, X, **kwargs)


def check_input_array(X, **kwargs):
    """``sklearn.utils.check_array`` with the advice of :func:`validate_input`."""
    return _with_advice(check_array, X, **kwargs)


# --------------------------------------------------------------------------- namespaces
# The mathematics is written once. Its elementwise primitives below, and the objectives'
# products, have two forms of the same operations: in place on NumPy arrays (``out=``, no
# temporaries; what the NumPy path has always done, bit for bit), and out of place on
# arrays of any other array-API namespace (PyTorch, CuPy, array_api_strict), whose
# standard has no ``out=``. Callers use the returned array in both cases.
_NUMPY_LIKE = (np.ndarray, np.generic, float, int)


def array_namespace(*arrays):
    """``numpy`` for NumPy arrays, memmaps, SciPy sparse matrices and Python scalars; the
    array-API namespace (via array_api_compat) for arrays of any other library."""
    for a in arrays:  # the NumPy path's fast exit: no list, no array_api_compat
        if not (isinstance(a, _NUMPY_LIKE) or a is None):
            break
    else:
        return np
    if array_api_compat is None:  # scikit-learn < 1.7 without array_api_compat
        return np
    others = [
        a
        for a in arrays
        if not isinstance(a, _NUMPY_LIKE)
        and a is not None
        and not sp.issparse(a)
        and array_api_compat.is_array_api_obj(a)
    ]
    if not others:
        return np
    xp = array_api_compat.array_namespace(*others)
    return np if array_api_compat.is_numpy_namespace(xp) else xp


def array_device(X):
    """The device of an array-API array (``"cpu"`` for NumPy)."""
    return array_api_compat.device(X)


def to_numpy(a):
    """``a`` as a NumPy array on the host (a copy for arrays of another namespace, e.g.
    labels or class indices of a device fit; NumPy arrays and lists as ``np.asarray``)."""
    xp = array_namespace(a)
    if xp is np:
        return np.asarray(a)
    return _convert_to_numpy(a, xp)


def device_namespace(X):
    """``(xp, device)`` when scikit-learn's array API dispatch is on and ``X`` is an array
    of a namespace other than NumPy; ``(None, None)`` otherwise (the NumPy path)."""
    xp, is_array_api, device = get_namespace_and_device(X)
    if not is_array_api or _is_numpy_namespace(xp):
        return None, None
    return xp, device


try:
    from sklearn.utils._array_api import check_same_namespace
except ImportError:  # scikit-learn < 1.8

    def check_same_namespace(X, estimator, *, attribute, method):
        """The fitted ``attribute`` and ``X`` are of one namespace and device, or an error."""
        if not sklearn.get_config()["array_api_dispatch"]:
            return
        a_xp, _, a_device = get_namespace_and_device(getattr(estimator, attribute))
        x_xp, _, x_device = get_namespace_and_device(X)
        if _is_numpy_namespace(a_xp) and _is_numpy_namespace(x_xp):
            return
        if a_xp != x_xp or a_device != x_device:
            raise ValueError(
                f"Inputs passed to {type(estimator).__name__}.{method}() must use the same "
                f"namespace and the same device as those passed to fit(): fit used "
                f"{a_xp.__name__} on {a_device}, {method} got {x_xp.__name__} on {x_device}. "
                "Convert X, or refit the estimator on X's namespace and device."
            )


def check_fitted_namespace(X, estimator, *, attribute, method):
    """The fitted ``attribute`` can be used with ``X``, or a clear ``ValueError``.

    A model fitted under array API dispatch on arrays of another namespace than NumPy
    keeps its weights there; with dispatch off, its methods cannot compute with them (the
    namespaces' own errors say nothing useful), so this names the two ways out: enable
    dispatch with input of the model's namespace, or move the model to NumPy. With
    dispatch on, it is scikit-learn's ``check_same_namespace``.
    """
    fitted = getattr(estimator, attribute)
    if array_namespace(fitted) is not np and not sklearn.get_config()["array_api_dispatch"]:
        library = type(fitted).__module__.partition(".")[0]  # torch, cupy, array_api_strict
        device = array_device(fitted)
        raise ValueError(
            f"This {type(estimator).__name__} was fitted under scikit-learn's array API "
            f"dispatch on {library} arrays (device {device!r}), and {method} was "
            "called with array API dispatch off, where it cannot use the model's "
            f"weights. Either call {method} inside "
            "sklearn.config_context(array_api_dispatch=True) with X as an array of "
            f"{library} on that device, or move the model to NumPy first (scikit-learn "
            ">= 1.9): 'from sklearn.utils._array_api import move_estimator_to; "
            "model = move_estimator_to(model, numpy, \"cpu\")'."
        )
    check_same_namespace(X, estimator, attribute=attribute, method=method)


def parameter_dtype(xp, device):
    """The dtype of the flat parameter vector on a device: float64 where it exists."""
    return _max_precision_float_dtype(xp, device)


def check_dense_on_device(X, xp, *, what="X"):
    """A clear error for sparse arrays of a device namespace (PyTorch sparse tensors)."""
    layout = getattr(X, "layout", None)
    if getattr(X, "is_sparse", False) or (layout is not None and "sparse" in str(layout)):
        raise TypeError(
            f"{what} is a sparse {xp.__name__} array; skae computes on a device only with "
            f"dense arrays. Pass a dense array (e.g. {what}.to_dense()), or a SciPy sparse "
            "matrix with array API dispatch off (the NumPy path)."
        )


# --------------------------------------------------------------------------- activations
def sigmoid_(z):
    """Logistic sigmoid computed in place on ``z`` (no temporaries, no overflow).

    ``1 / (1 + exp(-z))``; ``exp`` may overflow to ``inf`` for very negative ``z``,
    where ``1 / inf`` is the exact limit 0, so the overflow flag is silenced. On
    another namespace than NumPy the same operations make a new array.
    """
    xp = array_namespace(z)
    if xp is not np:
        return 1.0 / (xp.exp(-z) + 1.0)
    with np.errstate(over="ignore"):
        np.negative(z, out=z)
        np.exp(z, out=z)
        np.add(z, 1.0, out=z)
        np.reciprocal(z, out=z)
    return z


def tanh_(z):
    """Hyperbolic tangent computed in place on ``z`` (a new array on other namespaces)."""
    xp = array_namespace(z)
    if xp is not np:
        return xp.tanh(z)
    return np.tanh(z, out=z)


def identity_(z):
    """Identity (linear decoder): nothing to do."""
    return z


def sigmoid_derivative_(a, out):
    """``out *= a (1 - a)`` where ``a = sigmoid(z)``; ``a`` is overwritten by ``1 - a``.

    Two in-place passes and no temporary: the caller no longer needs ``a``. On other
    namespaces than NumPy, ``out * a * (1 - a)`` is returned as a new array.
    """
    xp = array_namespace(a, out)
    if xp is not np:
        return out * a * (1.0 - a)
    np.multiply(out, a, out=out)
    np.subtract(1.0, a, out=a)
    np.multiply(out, a, out=out)
    return out


def tanh_derivative_(a, out):
    """``out *= 1 - a**2`` where ``a = tanh(z)``; ``a`` is overwritten by ``1 - a**2``
    (on other namespaces than NumPy, ``out * (1 - a²)`` is returned as a new array)."""
    xp = array_namespace(a, out)
    if xp is not np:
        return out * (1.0 - a * a)
    np.multiply(a, a, out=a)
    np.subtract(1.0, a, out=a)
    np.multiply(out, a, out=out)
    return out


def identity_derivative_(a, out):
    """Linear unit: the derivative is 1, ``out`` is unchanged."""
    return out


@dataclass(frozen=True)
class Activation:
    """An activation with its in-place forward map and in-place derivative.

    ``firing_scale`` and ``firing_shift`` map the activation to a firing rate in [0, 1]
    for the sparsity penalty: ``p(a) = firing_scale * a + firing_shift``.
    """

    name: str
    forward: object
    derivative: object
    firing_scale: float
    firing_shift: float
    low: float
    high: float


ACTIVATIONS = {
    "sigmoid": Activation("sigmoid", sigmoid_, sigmoid_derivative_, 1.0, 0.0, 0.0, 1.0),
    "tanh": Activation("tanh", tanh_, tanh_derivative_, 0.5, 0.5, -1.0, 1.0),
    "linear": Activation("linear", identity_, identity_derivative_, 1.0, 0.0, -np.inf, np.inf),
}


# --------------------------------------------------------------------------- sparsity
def kl_divergence(rho, rho_hat):
    """KL divergence between Bernoulli(``rho``) and Bernoulli(``rho_hat``), elementwise.

    ``rho_hat`` is clipped into ``[eps, 1 - eps]`` (float64 machine epsilon) so that a
    unit that is always off or always on gives a large finite penalty, not ``inf``.
    """
    q = clip_rate(rho_hat)
    xp = array_namespace(q)
    return rho * xp.log(rho / q) + (1.0 - rho) * xp.log((1.0 - rho) / (1.0 - q))


def kl_divergence_derivative(rho, rho_hat):
    """Derivative of :func:`kl_divergence` with respect to ``rho_hat``."""
    q = clip_rate(rho_hat)
    return -rho / q + (1.0 - rho) / (1.0 - q)


def clip_rate(rho_hat):
    eps = np.finfo(np.float64).eps
    xp = array_namespace(rho_hat)
    if xp is not np:  # in rho_hat's own dtype (float64 unless the device lacks it)
        return xp.clip(rho_hat, float(eps), float(1.0 - eps))
    return np.clip(np.asarray(rho_hat, dtype=np.float64), eps, 1.0 - eps)


# --------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class ParameterLayout:
    """Where each weight lives in the flat float64 parameter vector.

    The order is ``W1 (n_hidden, n_features), b1 (n_hidden,), [W2 (n_hidden,
    n_features)], b2 (n_features,)``; ``W2`` is absent when the weights are tied.
    :meth:`unpack` returns views, never copies.
    """

    n_features: int
    n_hidden: int
    tied: bool = False

    @property
    def size(self):
        h, n = self.n_hidden, self.n_features
        return h * n + h + (0 if self.tied else h * n) + n

    def unpack(self, theta):
        """Return ``(W1, b1, W2, b2)`` as views into ``theta`` (``W2 is W1`` when tied).

        ``theta`` may be an array of any array-API namespace (views where it has them).
        """
        h, n = self.n_hidden, self.n_features
        xp = array_namespace(theta)
        W1 = xp.reshape(theta[: h * n], (h, n))
        b1 = theta[h * n : h * n + h]
        start = h * n + h
        if self.tied:
            W2 = W1
        else:
            W2 = xp.reshape(theta[start : start + h * n], (h, n))
            start += h * n
        b2 = theta[start : start + n]
        return W1, b1, W2, b2

    def pack(self, W1, b1, W2, b2):
        """Concatenate parameters into a new flat float64 vector (the inverse of unpack).

        Arrays of another namespace give a vector of that namespace, on their device, in
        :func:`parameter_dtype`.
        """
        xp = array_namespace(W1, b1, W2, b2)
        if xp is not np:
            parts = [W1, b1] + ([] if self.tied else [W2]) + [b2]
            dtype = parameter_dtype(xp, array_api_compat.device(W1))
            return xp.concat([xp.reshape(xp.astype(p, dtype), (-1,)) for p in parts])
        parts = [W1.ravel(), b1] + ([] if self.tied else [W2.ravel()]) + [b2]
        return np.concatenate([np.asarray(p, dtype=np.float64).ravel() for p in parts])

    def initialize(self, random_state):
        """UFLDL initialisation: weights uniform in ±sqrt(6 / (n_in + n_out + 1)), biases 0."""
        h, n = self.n_hidden, self.n_features
        r = np.sqrt(6.0 / (n + h + 1))
        theta = np.zeros(self.size)
        W1, _, W2, _ = self.unpack(theta)
        W1[...] = random_state.uniform(-r, r, size=(h, n))
        if not self.tied:
            W2[...] = random_state.uniform(-r, r, size=(h, n))
        return theta


# --------------------------------------------------------------------------- gradient check
def check_gradient(fun, theta, *, epsilon=1e-4):
    """Compare an analytic gradient with central finite differences.

    This is the gradient check of the UFLDL notes: each coordinate ``i`` of ``theta`` is
    moved by ``±epsilon`` and ``(J(θ + ε e_i) − J(θ − ε e_i)) / (2ε)`` is compared with
    the gradient returned by ``fun``.

    Parameters
    ----------
    fun : callable
        ``fun(theta) -> (J, grad)``: the objective value (a float) and its gradient
        (an array with the shape of ``theta``).
    theta : array-like of shape (n_params,)
        The point at which to check. It is not modified.
    epsilon : float, default=1e-4
        The finite-difference step.

    Returns
    -------
    relative_difference : float
        ``‖num − ana‖ / ‖num + ana‖``, where ``num`` is the numerical and ``ana`` the
        analytic gradient. A correct float64 gradient gives about 1e-9 or less; a
        wrong one gives a value near 1. It is 0.0 when both gradients are exactly zero.

    Examples
    --------
    >>> import numpy as np
    >>> from skae import check_gradient
    >>> def fun(theta):
    ...     return np.sum(theta ** 3), 3 * theta ** 2
    >>> check_gradient(fun, np.array([1.0, -2.0, 0.5])) < 1e-8
    True
    >>> def wrong(theta):
    ...     return np.sum(theta ** 3), 2 * theta ** 2
    >>> check_gradient(wrong, np.array([1.0, -2.0, 0.5])) > 0.1
    True
    """
    theta = np.array(theta, dtype=np.float64).ravel()
    _, analytic = fun(theta.copy())
    analytic = np.asarray(analytic, dtype=np.float64).ravel()
    if analytic.shape != theta.shape:
        raise ValueError(
            f"fun returned a gradient of shape {analytic.shape} for theta of shape "
            f"{theta.shape}; the gradient must have one entry per parameter."
        )
    numeric = np.empty_like(theta)
    for i in range(theta.size):
        old = theta[i]
        theta[i] = old + epsilon
        j_plus = fun(theta.copy())[0]
        theta[i] = old - epsilon
        j_minus = fun(theta.copy())[0]
        theta[i] = old
        numeric[i] = (j_plus - j_minus) / (2.0 * epsilon)
    denominator = np.linalg.norm(numeric + analytic)
    if denominator == 0.0:
        return float(np.linalg.norm(numeric - analytic))
    return float(np.linalg.norm(numeric - analytic) / denominator)


# --------------------------------------------------------------------------- warnings
class SkaeWarning(UserWarning):
    """Base class of skae's own warnings (not-converged fits use sklearn's
    ``ConvergenceWarning``). A subclass of ``UserWarning``, so existing filters apply."""


class FitInterruptedWarning(SkaeWarning):
    """A fit was interrupted (Ctrl-C); the last accepted parameters were kept."""


class PickleVersionWarning(SkaeWarning):
    """A model is loaded with another skae version than the one that pickled it."""


def _directory(module):
    return os.path.dirname(os.path.abspath(module.__file__)) + os.sep


_SKAE_DIR = _directory(sys.modules[__name__])
# Frames between the user's line and skae's: scikit-learn (its _fit_context, Pipeline,
# GridSearchCV), joblib (which runs GridSearchCV's fits, in sequence with n_jobs=1) and the
# standard library's thread and process pools.
_INTERNAL_PATHS = (
    _SKAE_DIR,
    _directory(sklearn),
    _directory(joblib),
    _directory(concurrent.futures),
    _directory(multiprocessing),
    os.path.abspath(threading.__file__),
)


def warn_at_caller(message, category):
    """``warnings.warn`` attributed to the user's line: the first frame outside skae,
    scikit-learn, joblib and the standard library's thread and process pools.

    Warnings then name the user's own line (``est.fit(X)``, ``pipeline.fit(X)`` or
    ``GridSearchCV(...).fit(X)``), not a line inside scikit-learn's ``_fit_context``
    wrapper or joblib's loop, so filters by module work. In a worker thread, whose stack
    does not reach the user's code, the warning names the line that called skae (the
    scikit-learn or joblib code that called the estimator's method).
    """
    frame, level = sys._getframe(1), 2
    caller_of_skae = None  # the level of the frame that called skae's outermost frame
    while frame is not None and frame.f_code.co_filename.startswith(_INTERNAL_PATHS):
        in_skae = frame.f_code.co_filename.startswith(_SKAE_DIR)
        frame, level = frame.f_back, level + 1
        if in_skae and frame is not None and not frame.f_code.co_filename.startswith(_SKAE_DIR):
            caller_of_skae = level
    if frame is None:  # every frame is internal: a worker thread's stack
        level = caller_of_skae if caller_of_skae is not None else 2
    warnings.warn(message, category, stacklevel=level)


@dataclass(frozen=True)
class FitStage:
    """How the warnings of one L-BFGS run name it and the settings that govern it.

    ``name`` opens every message (``"StackedAutoencoderClassifier (softmax)"``);
    ``max_iter`` and ``tol`` are the names of the estimator's parameters that limit its
    iterations and set its tolerance (``"softmax_max_iter"``, ``"fine_tune_tol"``), so
    that the advice of a warning is a parameter the user can set.
    """

    name: str
    max_iter: str = "max_iter"
    tol: str = "tol"


_FIT_STAGE = contextvars.ContextVar("skae_fit_stage", default=None)


@contextlib.contextmanager
def fit_stage(name, *, max_iter="max_iter", tol="tol"):
    """Within this context, :func:`run_lbfgs` names its warnings by this stage.

    A stacked estimator fits each layer with a :class:`~skae.SparseAutoencoder`; inside
    ``fit_stage("StackedAutoencoder (pretraining, layer 2 of 3)")`` that layer's warnings
    say which layer of which estimator they are about, instead of "SparseAutoencoder".
    The context is per thread (a :class:`contextvars.ContextVar`), so fits running at
    once in other threads are not affected.
    """
    token = _FIT_STAGE.set(FitStage(name, max_iter, tol))
    try:
        yield
    finally:
        _FIT_STAGE.reset(token)


# --------------------------------------------------------------------------- L-BFGS driver
@dataclass
class LBFGSResult:
    """What :func:`run_lbfgs` returns: the parameters and how the run went.

    ``n_iter`` is the number of L-BFGS iterations completed (``len(loss_curve)``; 0 when
    the start already satisfied the stopping rule or an interruption came first).
    ``reason`` says which rule stopped it, one of :data:`STOP_REASONS`.
    """

    theta: np.ndarray
    loss: float
    loss_curve: list
    n_iter: int
    interrupted: bool
    converged: bool
    status: int = 0
    message: str = ""
    reason: str = ""


#: Why an L-BFGS run stopped (``LBFGSResult.reason``): the largest gradient component fell
#: to ``tol``; the loss decreased by a relative 2.2e-9 or less in an iteration (L-BFGS-B's
#: ``factr * eps``); the iteration limit; the limit of 20 objective evaluations per allowed
#: iteration; a line search that found no decrease; Ctrl-C.
STOP_REASONS = (
    "converged (tol)",
    "converged (loss change)",
    "max_iter",
    "evaluation limit",
    "line search",
    "interrupted",
)


def _stop_reason(status, message, nfev, maxfun):
    """The :data:`STOP_REASONS` entry of an L-BFGS(-B) ``status`` and ``message``."""
    if status == 0:
        return STOP_REASONS[1] if "REDUCTION" in str(message).upper() else STOP_REASONS[0]
    if status == 1:
        return STOP_REASONS[3] if nfev >= maxfun else STOP_REASONS[2]
    return STOP_REASONS[4]


class NonFiniteLossError(FloatingPointError, ValueError):
    """The objective became NaN or infinite during optimisation."""


# L-BFGS-B stops after at most this many evaluations per allowed iteration (line searches
# take about 1.1 on average; 20 is L-BFGS-B's own limit per line search).
_EVALUATIONS_PER_ITERATION = 20


def _status_message(result, max_iter, maxfun, stage=None):
    """Why L-BFGS-B stopped, in words, for a non-zero ``status``; the advice names the
    parameters of ``stage`` (a :class:`FitStage`; ``max_iter`` and ``tol`` by default)."""
    stage = stage if stage is not None else FitStage("model")
    reason = result.message
    if isinstance(reason, bytes):
        reason = reason.decode("latin1")
    reason = str(reason).strip()
    it, tol = stage.max_iter, stage.tol
    if result.status == 1 and result.nfev >= maxfun:
        advice = (
            f"it reached the limit of {maxfun} objective evaluations ({it}={max_iter} "
            "allows 20 per iteration); the line searches are struggling: scale the input "
            f"or raise {tol}."
        )
    elif result.status == 1:
        advice = f"it reached {it}={max_iter}; increase {it} or {tol}."
    else:
        advice = (
            "the line search could not decrease the loss (often rounding: the model may "
            "be as good as this precision allows; float32 data stop earlier than float64). "
            f"Scale the input, raise {tol}, or use float64."
        )
    return (
        f"L-BFGS stopped after {result.nit} iterations without converging (status "
        f"{result.status}: {reason}); {advice}"
    )


def _device_namespace(theta):
    """The array-API namespace of ``theta`` when it is not a NumPy array, else None."""
    if (
        isinstance(theta, np.ndarray)
        or array_api_compat is None
        or not array_api_compat.is_array_api_obj(theta)
    ):
        return None
    xp = array_api_compat.array_namespace(theta)
    return None if array_api_compat.is_numpy_namespace(xp) else xp


def _numpy_copy(theta):
    return np.array(theta, dtype=np.float64)


def _device_copy(theta):
    return array_api_compat.array_namespace(theta).asarray(theta, copy=True)


def run_lbfgs(
    fun,
    theta0,
    *,
    max_iter,
    tol,
    verbose=0,
    report=None,
    name="model",
    stage=None,
    own_lbfgs=False,
):
    """Minimise ``fun(theta) -> (J, grad)`` with SciPy's L-BFGS-B, robustly.

    - Progress comes from ``minimize``'s ``callback(intermediate_result)``. With
      ``verbose >= 1`` the run ends with one line: the stage's name, the iterations, the
      final loss, the time and the rule that stopped it (:data:`STOP_REASONS`); with
      ``verbose >= 2`` each iteration also prints a line with ``report(intermediate_result)``
      (a string).
    - Every non-zero L-BFGS-B status (``max_iter`` reached, the evaluation limit of 20
      per iteration reached, an abnormal line search) warns with ``ConvergenceWarning``
      saying which; warnings point at the first caller outside skae and scikit-learn.
    - A NaN or infinite loss raises :class:`NonFiniteLossError`.
    - ``KeyboardInterrupt`` keeps the last parameters L-BFGS accepted (the start if none)
      and warns; the result says ``interrupted=True`` and its ``loss`` is the objective at
      the kept parameters.
    - The warnings open with the stage's name and advise on the stage's parameters:
      ``stage`` (a :class:`FitStage`) when given, else the stage set by an enclosing
      :func:`fit_stage` (a layer of a stack), else ``name`` with ``max_iter`` and
      ``tol``.
    - BLAS is limited to one thread meanwhile, process-wide but safely when several fits
      run at once (:func:`skae._parallel.blas_single_threaded`).

    ``theta0`` is not modified. A ``theta0`` of another array-API namespace than NumPy
    (a PyTorch tensor, a CuPy array) is minimised by :func:`skae._lbfgs.minimize_lbfgs`
    instead, whose vectors stay in that namespace and on its device; it stops by the same
    rules, and everything above holds for it too (the result's ``theta`` is then an array
    of that namespace). ``own_lbfgs=True`` uses :func:`~skae._lbfgs.minimize_lbfgs` for a
    NumPy ``theta0`` too: with hundreds of thousands of parameters its vector work costs a
    quarter of L-BFGS-B's (``benchmarks/bench_finetune.py``).
    """
    from ._parallel import blas_single_threaded

    if stage is None:
        stage = _FIT_STAGE.get() or FitStage(name)
    name = stage.name
    xp = _device_namespace(theta0)
    if xp is not None:
        theta0 = xp.asarray(theta0, copy=True)
        copy = _device_copy
    else:
        theta0 = np.array(theta0, dtype=np.float64)
        copy = _numpy_copy
    state = {"theta": copy(theta0), "loss": None, "curve": [], "start": time.perf_counter()}
    first = {}  # the objective at theta0, once evaluated

    def all_finite(grad):
        if xp is None:
            return bool(np.all(np.isfinite(grad)))
        return bool(xp.all(xp.isfinite(grad)))

    def at_start(theta):
        if xp is None:
            return np.array_equal(theta, theta0)
        return theta.shape == theta0.shape and bool(xp.all(theta == theta0))

    def guarded(theta):
        J, grad = fun(theta)
        if not (np.isfinite(J) and all_finite(grad)):
            what = "loss" if not np.isfinite(J) else "gradient"
            raise NonFiniteLossError(
                f"{name}: the {what} became non-finite (loss = {J}) during "
                "optimisation; no parameters were kept from this fit. Scale the "
                "input (e.g. MinMaxScaler or StandardScaler), or lower beta / raise "
                "alpha."
            )
        if not first and at_start(theta):
            first["loss"] = float(J)
        return J, grad

    def callback(intermediate_result):
        state["theta"] = copy(intermediate_result.x)
        state["loss"] = float(intermediate_result.fun)
        state["curve"].append(state["loss"])
        if verbose >= 2:
            elapsed = time.perf_counter() - state["start"]
            line = report(intermediate_result) if report is not None else ""
            print(
                f"Iteration {len(state['curve']):4d}, loss = {state['loss']:.8g}"
                f"{line}, time = {elapsed:.2f}s",
                flush=True,
            )

    maxfun = _EVALUATIONS_PER_ITERATION * max_iter

    def summary(n_iter, loss, reason):
        if verbose:
            elapsed = time.perf_counter() - state["start"]
            print(
                f"{name}: {n_iter} iterations, loss = {loss:.8g}, time = {elapsed:.2f}s, "
                f"stopped: {reason}",
                flush=True,
            )

    try:
        # L-BFGS-B's own linear algebra is vector work on which BLAS threads only add
        # synchronisation; the objective runs its products on its own worker threads.
        with blas_single_threaded():
            if xp is not None or own_lbfgs:
                result = minimize_lbfgs(
                    guarded, theta0, maxiter=max_iter, gtol=tol, maxfun=maxfun, callback=callback
                )
            else:
                result = minimize(
                    guarded,
                    theta0,
                    method="L-BFGS-B",
                    jac=True,
                    callback=callback,
                    options={"maxiter": max_iter, "maxfun": maxfun, "gtol": tol},
                )
    except KeyboardInterrupt:
        n_iter = len(state["curve"])
        warn_at_caller(
            f"{name}: training was interrupted after {n_iter} iterations; keeping the "
            "last parameters L-BFGS accepted.",
            FitInterruptedWarning,
        )
        theta = state["theta"]
        if state["loss"] is not None:
            loss = state["loss"]
        elif "loss" in first:
            loss = first["loss"]
        else:  # interrupted during the first evaluation: evaluate the kept start once
            loss = float(fun(theta)[0])
        summary(n_iter, loss, "interrupted")
        return LBFGSResult(
            theta, loss, state["curve"], n_iter, True, False, -1, "interrupted", "interrupted"
        )

    curve = state["curve"]
    reason = _stop_reason(result.status, result.message, result.nfev, maxfun)
    summary(len(curve), float(result.fun), reason)
    if result.status != 0:
        warn_at_caller(
            f"{name}: {_status_message(result, max_iter, maxfun, stage)}", ConvergenceWarning
        )
    return LBFGSResult(
        result.x if xp is not None else np.asarray(result.x, dtype=np.float64),
        float(result.fun),
        curve,
        len(curve),
        False,
        result.status == 0,
        int(result.status),
        str(result.message),
        reason,
    )
