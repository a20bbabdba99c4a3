"""Array namespaces: which library an array belongs to, and the primitives that run on all.

The rest of skae computes with NumPy arrays, SciPy sparse matrices, or the arrays of an
array-API library (PyTorch, CuPy, array_api_strict) under scikit-learn's array API
dispatch. This module is where an array's namespace is found, and it holds the few
primitives whose NumPy form differs from the array API's (``out=``, ``einsum``). With
:mod:`skae._validation`, it is the only module that reaches into scikit-learn's private
helpers.
"""

import numpy as np
import scipy.sparse as sp
from sklearn.utils._array_api import (
    _convert_to_numpy,
    _is_numpy_namespace,
    _max_precision_float_dtype,
    get_namespace_and_device,
)

try:  # scikit-learn >= 1.7 vendors it
    from sklearn.externals import array_api_compat
except ImportError:  # older scikit-learn uses the separate package, when it is installed
    try:
        import array_api_compat
    except ImportError:
        array_api_compat = None  # NumPy only

__all__ = [
    "array_api_compat",
    "array_device",
    "array_namespace",
    "cast",
    "device_namespace",
    "dot",
    "matmul",
    "parameter_dtype",
    "subtract",
    "sum_rows",
    "to_numpy",
]

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


def parameter_dtype(xp, device):
    """The dtype of the flat parameter vector on a device: float64 where it exists."""
    return _max_precision_float_dtype(xp, device)



# --------------------------------------------------------------------------- primitives
# NumPy: into ``out`` (a reused buffer). Other namespaces: ``out`` is None, a new array.
def matmul(a, b, out):
    """``a @ b``, into ``out`` when it is given (NumPy), else as a new array."""
    if out is None:
        return a @ b
    return np.matmul(a, b, out=out)


def subtract(a, b, out):
    """``a - b``, into ``out`` when it is given (NumPy), else as a new array."""
    if out is None:
        return a - b
    return np.subtract(a, b, out=out)


def sum_rows(a, axis=None):
    """Sum (over ``axis``) accumulated in float64 (where the device has it)."""
    xp = array_namespace(a)
    if xp is np:
        return a.sum(axis=axis, dtype=np.float64)
    return xp.sum(a, axis=axis, dtype=parameter_dtype(xp, array_device(a)))


def cast(a, dtype):
    """``a`` in ``dtype`` (``a`` itself when it already has it)."""
    xp = array_namespace(a)
    if xp is not np:
        return a if a.dtype == dtype else xp.astype(a, dtype)
    return np.asarray(a, dtype=dtype)


def dot(a, b):
    """Sum of ``a * b`` over all elements of two matrices (no BLAS threads involved)."""
    xp = array_namespace(a, b)
    if xp is not np:
        return float(xp.vecdot(xp.reshape(a, (-1,)), xp.reshape(b, (-1,))))
    return float(np.einsum("ij,ij->", a, b))
