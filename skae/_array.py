"""Array namespaces: which library an array belongs to, and the primitives that run on all.

The rest of skae computes with NumPy arrays, SciPy sparse matrices, or the arrays of an
array-API library (PyTorch, CuPy, array_api_strict) under scikit-learn's array API
dispatch. This module is where an array's namespace is found (one detector,
:func:`array_namespace`), and it holds the few primitives whose NumPy form differs from
the array API's (``out=``, ``einsum``, functions NumPy 1.26 lacks). The code that calls
them is the same for every namespace; NumPy's in-place and buffered work sits behind
:func:`modify_in_place` and :func:`buffer`. With
:mod:`skae._validation`, it is the only module that reaches into scikit-learn's private
helpers.
"""

import functools

import numpy as np
import scipy.sparse as sp
from scipy.linalg.blas import get_blas_funcs
from sklearn.utils._array_api import _convert_to_numpy, _max_precision_float_dtype

try:  # scikit-learn >= 1.7 vendors it
    from sklearn.externals import array_api_compat
except ImportError:  # older scikit-learn uses the separate package, when it is installed
    try:
        import array_api_compat
    except ImportError:
        array_api_compat = None  # NumPy only

__all__ = [
    "add_scaled",
    "array_api_compat",
    "array_device",
    "array_namespace",
    "astype",
    "buffer",
    "cast",
    "concat",
    "dot",
    "from_numpy",
    "is_dask_collection",
    "matmul",
    "modify_in_place",
    "parameter_dtype",
    "row_dot",
    "row_slice",
    "softplus",
    "subtract",
    "sum_rows",
    "to_numpy",
]

# --------------------------------------------------------------------------- namespaces
# One detector, array_namespace: ``numpy`` itself for NumPy (so that ``xp is np`` is the
# test for NumPy's path), the array-API namespace otherwise. The functions that compute take
# ``xp`` as an argument; given None they ask array_namespace.
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


def is_dask_collection(X):
    """True for a dask collection (array, DataFrame, ...); never imports dask."""
    return callable(getattr(type(X), "__dask_graph__", None))


def array_device(X):
    """The device of an array-API array (``"cpu"`` for NumPy)."""
    if array_namespace(X) is np:  # also SciPy sparse matrices, lists and scalars
        return "cpu"
    return array_api_compat.device(X)


def to_numpy(a):
    """``a`` as a NumPy array on the host (a copy for arrays of another namespace, e.g.
    labels or class indices of a device fit; NumPy arrays and lists as ``np.asarray``)."""
    xp = array_namespace(a)
    if xp is np:
        return np.asarray(a)
    return _convert_to_numpy(a, xp)


def parameter_dtype(xp, device):
    """The dtype of the flat parameter vector on a device: float64 where it exists."""
    return _max_precision_float_dtype(xp, device)



# --------------------------------------------------------------------------- primitives
def modify_in_place(xp, function, *args, out=None):
    """``function(*args)``: written into ``out`` on NumPy, a new array on other namespaces.

    The one place where NumPy's in-place work and the array API's out-of-place work
    differ, so that the code calling it is the same for every namespace. On NumPy the
    result is ``out`` (a reused buffer, or one of the arguments, overwritten; a new array
    when ``out`` is None); the array API has no ``out=``, so elsewhere the result is a new
    array and ``out`` is left alone. Callers use the returned array in both cases.
    """
    if xp is np:
        return function(*args, out=out)
    return function(*args)


@functools.cache
def _axpy(dtype):
    return get_blas_funcs("axpy", dtype=dtype)


def add_scaled(y, a, x, xp=None):
    """``y += a x`` for vectors, returned: in place on NumPy (one pass of BLAS ``axpy``,
    each element rounded once), ``y + a * x`` as a new array on other namespaces.

    ``a`` is a Python float. On NumPy ``x`` and ``y`` are contiguous 1-D arrays of one
    float dtype (the optimiser's vectors); other NumPy arrays take ``y += a * x``.
    """
    xp = xp or array_namespace(y, x)
    if xp is not np:
        return y + a * x
    if (
        y.ndim == x.ndim == 1
        and y.dtype == x.dtype
        and y.dtype in (np.float32, np.float64)
        and y.flags.c_contiguous
        and x.flags.c_contiguous
        and y.flags.writeable
    ):
        return _axpy(y.dtype)(x, y, a=a)
    y += a * x
    return y


def matmul(a, b, out, xp=None):
    """``a @ b``, into ``out`` on NumPy when it is given, else as a new array (``a`` may
    then be a SciPy sparse matrix)."""
    if out is None:
        return a @ b
    xp = xp or array_namespace(a, b)
    return modify_in_place(xp, xp.matmul, a, b, out=out)


def subtract(a, b, out, xp=None):
    """``a - b``, into ``out`` on NumPy when it is given, else as a new array."""
    if out is None:
        return a - b
    xp = xp or array_namespace(a, b)
    return modify_in_place(xp, xp.subtract, a, b, out=out)


def sum_rows(a, axis=None, xp=None):
    """Sum (over ``axis``) accumulated in float64 (where the device has it)."""
    xp = xp or array_namespace(a)
    if xp is np:  # a matrix's own sum: its pairwise summation, as NumPy's ndarray.sum
        return a.sum(axis=axis, dtype=np.float64)
    return xp.sum(a, axis=axis, dtype=parameter_dtype(xp, array_device(a)))


def cast(a, dtype, xp=None):
    """``a`` in ``dtype`` (``a`` itself when it already has it)."""
    xp = xp or array_namespace(a)
    if xp is np:  # also for lists and NumPy scalars
        return np.asarray(a, dtype=dtype)
    return a if a.dtype == dtype else xp.astype(a, dtype)


def dot(a, b, xp=None):
    """Sum of ``a * b`` over all elements of two matrices.

    On NumPy one pass and no temporary: for two C-contiguous float64 arrays BLAS's dot
    product of their flat views (a quarter of ``einsum``'s time on a block of
    256 × 784), else ``einsum`` (for float32 it keeps the rounding of skae's pinned
    objective values, ``tests/data/objective_reference.npz``). BLAS splits a long dot
    product between its threads, so the callers hold BLAS on one thread (the objectives
    do) for a sum that does not depend on a thread count.
    """
    xp = xp or array_namespace(a, b)
    if xp is np:
        if (
            a.dtype == b.dtype == np.float64
            and a.flags.c_contiguous
            and b.flags.c_contiguous
        ):
            # an overflow gives inf, as einsum's does, for the callers' finiteness checks
            # (NonFiniteLossError), without NumPy's warning about the product
            with np.errstate(over="ignore", invalid="ignore"):
                return float(np.dot(a.reshape(-1), b.reshape(-1)))
        return float(np.einsum("ij,ij->", a, b))
    return float(xp.vecdot(xp.reshape(a, (-1,)), xp.reshape(b, (-1,))))


def buffer(xp, shape, dtype, pool=None):
    """A reused work buffer: a new uninitialised NumPy array on NumPy (or one from
    ``pool``, a :class:`BufferPool`); None on other namespaces, whose functions make their
    results (see :func:`modify_in_place`)."""
    if xp is np:
        if pool is not None:
            return pool.take(shape, dtype)
        return np.empty(shape, dtype=dtype)
    return None


class BufferPool:
    """Work buffers handed to one objective after another: the mini-batches of a run.

    A mini-batch solver builds a new objective for every mini-batch step; fresh buffers
    would cost the operating system's page faults on their first touch each time (for
    784-200-200-10 about a quarter of a fine-tuning epoch). ``take`` hands out an
    uninitialised array of the shape and dtype asked for; :meth:`rewind` makes every
    array handed out since the last rewind available again, so the objective built after
    a rewind reuses the previous one's buffers (which must then no longer be used).
    """

    def __init__(self):
        self._free, self._taken = {}, {}

    def take(self, shape, dtype):
        shape = (shape,) if isinstance(shape, int) else tuple(int(d) for d in shape)
        key = (shape, np.dtype(dtype))
        free = self._free.get(key)
        array = free.pop() if free else np.empty(shape, dtype=dtype)
        self._taken.setdefault(key, []).append(array)
        return array

    def rewind(self):
        for key, arrays in self._taken.items():
            self._free.setdefault(key, []).extend(arrays)
        self._taken = {}


def concat(arrays, xp, axis=0):
    """``arrays`` joined along ``axis`` (NumPy 1.26 has no ``np.concat``)."""
    if xp is np:
        return np.concatenate(arrays, axis=axis)
    return xp.concat(arrays, axis=axis)


def astype(a, dtype, xp):
    """A copy of ``a`` in ``dtype``, which the caller may overwrite."""
    if xp is np:  # also for lists and NumPy scalars
        return np.array(a, dtype=dtype)
    return xp.astype(a, dtype, copy=True)


def row_dot(a, b, xp):
    """``Σ_j a_ij b_ij`` for each row ``i`` of two matrices (no temporary on NumPy)."""
    if xp is np:
        return np.einsum("ij,ij->i", a, b)
    return xp.sum(a * b, axis=1)


def softplus(z, xp, out=None):
    """``log(1 + e^z)`` elementwise without overflow, into ``out`` on NumPy when given."""
    if xp is np:
        return np.logaddexp(0.0, z, out=out)
    return xp.logaddexp(xp.zeros_like(z), z)


def assign(value, out, xp):
    """``value`` copied into ``out`` on NumPy when it is given (``out`` returned), else
    ``value`` itself (as :func:`modify_in_place`, other namespaces ignore ``out``)."""
    if xp is not np or out is None:
        return value
    np.copyto(out, value)
    return out


def zeros(xp, shape, dtype, device=None):
    """Zeros of ``shape`` in ``dtype``, on ``device`` for namespaces that have devices."""
    if xp is np:  # NumPy < 2 has no device argument
        return np.zeros(shape, dtype=dtype)
    return xp.zeros(shape, dtype=dtype, device=device)


def from_numpy(a, dtype, xp, device=None):
    """The NumPy array ``a`` in ``dtype`` (a float dtype of ``xp``), on ``device``."""
    if xp is np:
        return np.asarray(a, dtype=dtype)
    host = np.float64 if dtype == xp.float64 else np.float32
    return xp.asarray(a.astype(host), device=device)


def row_slice(X, start, stop):
    """Rows ``start:stop`` of a 2-D array or SciPy sparse matrix (the array API needs the
    trailing ``...``, which SciPy sparse matrices do not take)."""
    if isinstance(X, np.ndarray) or sp.issparse(X):
        return X[start:stop]
    return X[start:stop, ...]
