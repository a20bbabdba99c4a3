"""Validation: of parameters, of input data (with advice on how to fix it), and of the
namespace and device of the input against those of a fitted model.

scikit-learn's validation names the problem; the functions here add how to fix it. With
:mod:`skae._array`, this is the only module that reaches into scikit-learn's private
helpers: the estimators import scikit-learn's parameter validation from here.
"""

import contextlib
import functools

import numpy as np
import sklearn
from sklearn.base import _fit_context as fit_context
from sklearn.utils import check_array
from sklearn.utils._param_validation import Interval, InvalidParameterError, StrOptions
from sklearn.utils.validation import validate_data

from ._array import array_device, array_namespace, is_dask_collection, parameter_dtype
from ._parallel import blas_single_threaded

__all__ = [
    "FLOAT_DTYPES",
    "Interval",
    "InvalidParameterError",
    "StrOptions",
    "as_real_floats",
    "check_counts",
    "check_dense_on_device",
    "check_fitted_namespace",
    "check_input_array",
    "check_same_namespace",
    "check_warm_start_place",
    "fit_context",
    "fit_keeping_state",
    "input_namespace",
    "validate_input",
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


def as_real_floats(values, what):
    """``values`` as a float64 NumPy array; complex values are refused, as the estimators
    refuse them (a cast would drop their imaginary parts with a mere warning)."""
    array = np.asarray(values)
    if np.iscomplexobj(array):
        raise ValueError(
            f"{what} is complex; skae works on real numbers: pass its real part "
            f"(numpy.real) or its magnitude (numpy.abs)."
        )
    return array.astype(np.float64)


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
    return _with_advice(validate_data, estimator, _detached(X), **kwargs)


def check_input_array(X, **kwargs):
    """``sklearn.utils.check_array`` with the advice of :func:`validate_input`."""
    return _with_advice(check_array, _detached(X), **kwargs)


def _detached(X):
    """A PyTorch tensor that records gradients, detached: skae never backpropagates into
    its input, and fitted arrays must not keep the autograd graph of a fit alive."""
    if getattr(X, "requires_grad", False) and callable(getattr(X, "detach", None)):
        return X.detach()
    return X


try:
    from sklearn.utils._array_api import check_same_namespace
except ImportError:  # scikit-learn < 1.8

    def check_same_namespace(X, estimator, *, attribute, method):
        """The fitted ``attribute`` and ``X`` are of one namespace and device, or an error."""
        if not sklearn.get_config()["array_api_dispatch"]:
            return
        fitted = getattr(estimator, attribute)
        a_xp, x_xp = array_namespace(fitted), array_namespace(X)
        if a_xp is np and x_xp is np:
            return
        a_device, x_device = array_device(fitted), array_device(X)
        if a_xp != x_xp or a_device != x_device:
            raise ValueError(
                f"Inputs passed to {type(estimator).__name__}.{method}() must use the same "
                f"namespace and the same device as those passed to fit(): fit used "
                f"{a_xp.__name__} on {a_device}, {method} got {x_xp.__name__} on {x_device}. "
                "Convert X, or refit the estimator on X's namespace and device."
            )


def check_counts(estimator, names):
    """An ``InvalidParameterError`` for a bool given as one of the counts ``names``:
    ``Interval(Integral, ...)`` lets ``True`` through as 1."""
    for name in names:
        value = getattr(estimator, name)
        if isinstance(value, (bool, np.bool_)):
            raise InvalidParameterError(
                f"The {name!r} parameter of {type(estimator).__name__} must be an int, "
                f"got the bool {value!r}; pass a count, e.g. {name}=100."
            )


def check_fitted_namespace(X, estimator, *, attribute, method):
    """The fitted ``attribute`` can be used with ``X``, or a clear ``ValueError``.

    A model fitted under array API dispatch on arrays of another namespace than NumPy
    keeps its weights there; with dispatch off, its methods cannot compute with them (the
    namespaces' own errors say nothing useful), so this names the two ways out: enable
    dispatch with input of the model's namespace, or move the model to NumPy. A dask
    ``X`` is computed chunk by chunk with NumPy, so it needs a model with NumPy weights.
    Otherwise, with dispatch on, it is scikit-learn's ``check_same_namespace``.
    """
    fitted = getattr(estimator, attribute)
    dask_input = is_dask_collection(X)
    dispatch = sklearn.get_config()["array_api_dispatch"]
    if array_namespace(fitted) is not np and (dask_input or not dispatch):
        library = type(fitted).__module__.partition(".")[0]  # torch, cupy, array_api_strict
        fitted_on = (
            f"This {type(estimator).__name__} was fitted under scikit-learn's array API "
            f"dispatch on {library} arrays (device {array_device(fitted)!r})"
        )
        to_numpy_hint = (
            "move the model to NumPy first (scikit-learn >= 1.9): 'from "
            "sklearn.utils._array_api import move_estimator_to; model = "
            "move_estimator_to(model, numpy, \"cpu\")'."
        )
        if dask_input:
            raise ValueError(
                f"{fitted_on}, and {method} was given a dask array, whose chunks are "
                f"computed with NumPy and cannot use the model's weights. Either pass X "
                f"as an array of {library} on that device (under array API dispatch), or "
                f"{to_numpy_hint}"
            )
        raise ValueError(
            f"{fitted_on}, and {method} was called with array API dispatch off, where it "
            f"cannot use the model's weights. Either call {method} inside "
            "sklearn.config_context(array_api_dispatch=True) with X as an array of "
            f"{library} on that device, or {to_numpy_hint}"
        )
    if not dask_input:
        check_same_namespace(X, estimator, attribute=attribute, method=method)


def check_warm_start_place(fitted, xp, device):
    """A clear ``ValueError`` when ``warm_start`` would continue a fit whose parameters
    (``fitted``) are in another array namespace or on another device than X's (``xp``,
    ``device`` from :func:`input_namespace`)."""
    fitted_xp, fitted_device = array_namespace(fitted), array_device(fitted)
    device = "cpu" if xp is np else device
    if fitted_xp is not xp or fitted_device != device:
        raise ValueError(
            "warm_start=True cannot continue from the previous fit: it was fitted in "
            "another array namespace or on another device than X's "
            f"({fitted_xp.__name__} on {fitted_device!r}; X: {xp.__name__} on {device!r}). "
            "Fit X in the namespace and on the device of the previous fit, or set "
            "warm_start=False to start afresh."
        )


def check_dense_on_device(X, xp, *, what="X"):
    """A clear error for sparse arrays of a device namespace (PyTorch sparse tensors)."""
    layout = getattr(X, "layout", None)
    if getattr(X, "is_sparse", False) or (layout is not None and "sparse" in str(layout)):
        raise TypeError(
            f"{what} is a sparse {xp.__name__} array; skae computes on a device only with "
            f"dense arrays. Pass a dense array (e.g. {what}.to_dense()), or a SciPy sparse "
            "matrix with array API dispatch off (the NumPy path)."
        )



def fit_keeping_state(fit, *, one_blas_thread=True):
    """Decorate an estimator's ``fit``: parameters validated, and on failure no change.

    The decorated ``fit`` runs inside scikit-learn's ``_fit_context`` (the parameters are
    validated first; nested estimators skip their own validation); a ``partial_fit``
    validates them on every call, not on the first only as the context does. If it raises
    anything, an error or ``KeyboardInterrupt`` outside the optimiser (which handles its
    own), the estimator's attributes are restored to what they were before the call, so a
    failed ``fit`` leaves a fitted model fitted and an unfitted one unfitted.

    BLAS runs on one thread for the whole call
    (:func:`skae._parallel.blas_single_threaded`): the objectives use skae's worker threads,
    and every other product of a fit (a stack's codes between its stages, the frozen
    layers' codes of a supervised stage) is then rounded the same way whatever the BLAS
    thread count, or another fit running at the same time, so the model does not depend on
    either. ``one_blas_thread=False`` leaves BLAS's threads alone (a fit that is one
    product, as :class:`~skae.ZCAWhitening`'s covariance).
    """
    fit_in_context = fit_context(prefer_skip_nested_validation=True)(fit)
    # scikit-learn's context validates partial_fit's parameters on the first call only;
    # settings changed with set_params between calls apply from the next call, so they
    # are validated on every call (unless validation is skipped, as for nested estimators)
    every_call = fit.__name__ == "partial_fit"

    @functools.wraps(fit)
    def fit_or_keep_state(estimator, *args, **kwargs):
        saved = dict(estimator.__dict__)
        try:
            with blas_single_threaded() if one_blas_thread else contextlib.nullcontext():
                if every_call and not sklearn.get_config()["skip_parameter_validation"]:
                    estimator._validate_params()
                return fit_in_context(estimator, *args, **kwargs)
        except BaseException:  # an error, or Ctrl-C outside the optimiser
            estimator.__dict__.clear()
            estimator.__dict__.update(saved)
            raise

    return fit_or_keep_state


# The dtypes NumPy data keep (others become float64).
FLOAT_DTYPES = (np.float64, np.float32)


def _float_dtypes(xp, device):
    """The dtypes data keep: NumPy's, or those of a device namespace (array API dispatch)."""
    if xp is np:
        return FLOAT_DTYPES
    if parameter_dtype(xp, device) == xp.float64:
        return (xp.float64, xp.float32)
    return (xp.float32,)


def input_namespace(X):
    """``(xp, device, dtypes)`` of the input: ``numpy``, None and NumPy's float dtypes on
    the NumPy path.

    An array of another namespace than NumPy is computed with in its namespace, on its
    device, when scikit-learn's array API dispatch is on; with dispatch off (or for lists,
    DataFrames, SciPy sparse matrices) the input takes the NumPy path, where scikit-learn's
    validation converts it. ``dtypes`` are the floating dtypes the estimators keep (others
    are converted to the first); a sparse array of a device namespace raises a clear error.
    """
    xp = array_namespace(X) if sklearn.get_config()["array_api_dispatch"] else np
    if xp is np:
        return np, None, FLOAT_DTYPES
    check_dense_on_device(X, xp)
    device = array_device(X)
    return xp, device, _float_dtypes(xp, device)
