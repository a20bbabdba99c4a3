"""Dask arrays: fit, transform, inverse_transform and score as map-reduces over row chunks.

The objective is a sum over rows (the documentation's architecture page,
``docs/architecture.rst``), so an L-BFGS evaluation on a dask array is a map-reduce of
the per-chunk pieces of :class:`skae._objective.AutoencoderObjective`; there is no second
copy of the mathematics.

Fit:

1. The array is validated without gathering it: its structure on the client (two
   dimensions, whole rows in each chunk, numeric dtype; unknown row-chunk sizes are
   computed from the persisted chunks), its values on the cluster (each chunk is checked
   with scikit-learn's ``check_array``, whose errors name the problem, and returns its
   minimum and maximum for the decoder choice).
2. Once per fit, each row chunk becomes an ``AutoencoderObjective`` over rows
   ``offset : offset + len(chunk)`` with the whole data set's block size, persisted on the
   worker that holds the chunk (``dask.persist``): its rows are cut at the same global block
   boundaries and corrupted by global row index, exactly as on one machine.
3. Each evaluation submits one graph: ``theta`` (one key, fetched once by each worker),
   pass 1 per chunk (column sums of ``H``, and ``H`` itself unless ``batch_size`` is set),
   a fixed-shape tree that adds the column sums in chunk order, :func:`sparsity_term`,
   pass 2 per chunk (reconstruction and gradient sums), a fixed-shape tree that adds them
   in chunk order. Only the totals, one gradient's worth, come back; :func:`assemble` adds
   the penalties on the client. The tree's shape depends only on the number of chunks, so
   the result does not depend on the scheduler, the workers or the timing; it equals the
   NumPy evaluation to rounding (bit for bit when each chunk is one block of the
   partition).

Tasks never keep state between them (``H`` travels from pass 1 to pass 2 as a task
result), so a chunk lost with a worker is recomputed from its lineage and gives the same
numbers. Whatever scheduler is active runs the graphs (threads, processes, or a
``dask.distributed`` client). dask is imported only when a dask collection is given.
"""

import copy

import numpy as np
import scipy.sparse as sp

from ._array import is_dask_collection
from ._objective import (
    AutoencoderObjective,
    assemble,
    check_overflow,
    decode,
    encode,
    partition_block_rows,
    reconstruction_error,
    sparsity_term,
)
from ._parallel import blas_single_threaded
from ._validation import FLOAT_DTYPES, check_input_array, validate_input

__all__ = ["is_dask_collection"]

_INSTALL = "pip install 'skae[dask]'"
# Partial sums are added in groups of this many, in chunk order, then the groups' sums.
_FAN_IN = 8


def _dask():
    try:
        import dask
        import dask.array as da
    except ImportError as exc:  # pragma: no cover - dask is installed with skae[dask]
        raise ImportError(f"dask arrays need dask and distributed: {_INSTALL}") from exc
    return dask, da


# --------------------------------------------------------------------------- input checks
def _rows_chunked(estimator, X, *, reset=None, input_name="X", n_columns=None):
    """A 2-D dask array of float64/float32 with whole rows in each chunk.

    ``reset`` (True/False) also checks or records ``n_features_in_`` and the feature
    names with scikit-learn's ``validate_data`` (without converting ``X``); None skips it
    (codes given to ``inverse_transform``, whose width is ``n_columns``).
    """
    dask, da = _dask()
    name = type(estimator).__name__
    # a dask DataFrame (asked of the type: a Delayed answers every attribute)
    frame = hasattr(type(X), "to_dask_array")
    if not (frame or isinstance(X, da.Array)):
        raise TypeError(
            f"{name} accepts dask arrays and dask DataFrames, got a {type(X).__name__}; "
            "convert it to a dask array first (e.g. bag.to_dataframe().to_dask_array(), "
            "or da.from_delayed(value, shape, dtype) for a Delayed)."
        )
    if not frame:
        _check_two_dimensional(X, input_name)
    if reset is not None:
        # Feature names and count, read from the (empty pandas) meta of a DataFrame.
        validate_input(estimator, X._meta if frame else X, skip_check_array=True, reset=reset)
    if frame:
        X = X.to_dask_array(lengths=True)  # counts the partitions' lengths
        _check_two_dimensional(X, input_name)
    if not isinstance(X._meta, np.ndarray):
        raise TypeError(
            f"{name} needs dask arrays of NumPy chunks, got chunks of "
            f"{type(X._meta).__module__}.{type(X._meta).__name__}; convert them, e.g. "
            f"{input_name}.map_blocks(lambda b: b.toarray()) for scipy.sparse chunks."
        )
    if len(X.chunks[1]) != 1 or np.isnan(X.shape[1]):
        raise ValueError(
            f"{input_name} is chunked along its columns ({len(X.chunks[1])} column chunks) "
            f"or has an unknown number of columns; {name} needs whole rows in each chunk. "
            f"Rechunk it: {input_name} = {input_name}.rechunk({{1: -1}})."
        )
    kind = X.dtype.kind
    if kind == "c":
        raise ValueError(
            f"Complex data not supported: {input_name} has dtype {X.dtype}. skae works on "
            "real numbers: pass the real and imaginary parts side by side (da.hstack) or "
            "the magnitude abs(X)."
        )
    if kind not in "biuf":
        raise ValueError(
            f"{input_name} has dtype {X.dtype}; {name} needs numbers. Encode text or "
            "categorical columns first."
        )
    if n_columns is not None and X.shape[1] != n_columns:
        raise ValueError(
            f"inverse_transform expects codes with n_hidden={n_columns} columns, got "
            f"{X.shape[1]}; pass the output of transform."
        )
    if reset is not True and X.shape[0] == 0:  # as the NumPy path (fit checks its own)
        raise ValueError(
            f"Found array with 0 sample(s) (shape={X.shape}) while a minimum of 1 is "
            f"required by {name}."
        )
    if X.dtype not in FLOAT_DTYPES:
        X = X.astype(np.float64)
    return X


def _check_two_dimensional(X, input_name):
    if X.ndim != 2:
        if X.ndim == 0:
            how = "one value is not a data set"
        elif X.ndim == 1:
            how = (
                f"reshape it with {input_name}.reshape(-1, 1) if it holds one feature, or "
                f"{input_name}.reshape(1, -1) if it is one sample"
            )
        else:
            how = f"flatten images with {input_name}.reshape({input_name}.shape[0], -1)"
        raise ValueError(
            f"Expected a 2-D dask array {input_name}, got {X.ndim} dimensions. Pass a 2-D "
            f"array of shape (n_samples, n_features): {how}."
        )


def _checked_chunk(block, name, input_name):
    """``block`` as checked by scikit-learn (finite values; run on the cluster)."""
    return check_input_array(
        block, dtype=FLOAT_DTYPES, estimator=name, input_name=input_name, copy=False,
        ensure_min_samples=0,
    )


def _chunk_range(block, name):
    block = _checked_chunk(block, name, "X")
    if block.size == 0:
        return np.inf, -np.inf
    return float(block.min()), float(block.max())


def _tree(parts, add):
    """Sum of ``parts`` (dask Delayed) as a fixed tree: groups of ``_FAN_IN`` in order."""
    from dask import delayed

    add_group = delayed(_fold, pure=True)
    while len(parts) > 1:
        parts = [add_group(add, *parts[i : i + _FAN_IN]) for i in range(0, len(parts), _FAN_IN)]
    return parts[0]


def _fold(add, *parts):
    total = parts[0]
    for part in parts[1:]:
        total = add(total, part)
    return total


def _add_arrays(a, b):
    return a + b


def _add_sums(a, b):
    """Add pass 2's ``(recon, totals)`` (or fine-tuning's ``(loss, totals)``) of two
    groups of rows."""
    return a[0] + b[0], _add_pairs(a[1], b[1])


# --------------------------------------------------------------------------- the objective
class _Chunk:
    """The objective of one persisted chunk, with its true size for dask's scheduler
    (``sys.getsizeof``, which dask uses, would count a few bytes and let the scheduler
    move the chunk between workers as if it were free)."""

    def __init__(self, objective):
        self.objective = objective

    def __sizeof__(self):
        return 64 + _nbytes(self.objective, set())


def _nbytes(value, seen):
    """Bytes of the arrays reachable from ``value`` (lists, attributes of skae's own
    objects), each array counted once."""
    if id(value) in seen:
        return 0
    seen.add(id(value))
    if isinstance(value, np.ndarray):
        return value.nbytes
    if sp.issparse(value):
        return sum(getattr(value, name).nbytes for name in ("data", "indices", "indptr"))
    if isinstance(value, (list, tuple)):
        return sum(_nbytes(item, seen) for item in value)
    if type(value).__module__.startswith("skae.") and hasattr(value, "__dict__"):
        return sum(_nbytes(item, seen) for item in vars(value).values())
    return 0


def _chunk_objective(block, offset, spec, corruption, batch_size, block_rows):
    """The objective of one persisted chunk (rows ``offset : offset + len(block)``)."""
    return _Chunk(AutoencoderObjective(
        spec, block, corruption=corruption, batch_size=batch_size, n_workers=1,
        row_offset=offset, block_rows=block_rows,
    ))


def _pass1(chunk, theta):
    chunk = chunk.objective
    with blas_single_threaded():
        col_sum = chunk.hidden_sums(chunk.network(theta))
    return col_sum, (None if chunk.two_pass else chunk.H.copy())


def _pass2(chunk, forward, theta, sparsity):
    chunk = chunk.objective
    H = forward[1]
    if H is not None:
        np.copyto(chunk.H, H)  # the task's input is never modified
    with blas_single_threaded():
        recon, totals = chunk.gradient_sums(chunk.network(theta), sparsity[1])
    return recon, _copy_pairs(totals)


def _copy_pairs(pairs):
    """Copies of ``(Σ ∇W, Σ ∇b)`` pairs (a shared layer's ``Σ ∇W`` stays None)."""
    return [(None if W is None else W.copy(), b.copy()) for W, b in pairs]


def _add_pairs(a, b):
    return [(None if aW is None else aW + bW, ab + bb) for (aW, ab), (bW, bb) in zip(a, b)]


def _first(pair):
    return pair[0]


def _with_known_rows(X, name):
    """The persisted ``X`` with its chunk sizes known, checked to hold at least 2 rows."""
    if np.isnan(X.shape[0]):
        X = X.compute_chunk_sizes()  # from the persisted chunks
    if X.shape[0] < 2:
        raise ValueError(
            f"Found array with {X.shape[0]} sample(s) (shape={X.shape}) while a minimum of "
            f"2 is required by {name}."
        )
    return X


class _ChunkedObjective:
    """What the dask objectives share: one per-chunk objective per chunk, built and
    persisted once per fit on the worker that holds the chunk, and ``theta`` sent once
    per evaluation."""

    def _persist(self, dask, chunks):
        self.chunks = list(dask.persist(*chunks))
        self.n_chunks = len(self.chunks)
        self.last_terms = None

    @staticmethod
    def _theta(theta):
        """``theta`` as float64 and as one dask key (each worker fetches it once)."""
        from dask import delayed

        theta = np.asarray(theta, dtype=np.float64)
        return theta, delayed(theta, pure=True)


class DaskObjective(_ChunkedObjective):
    """``theta -> (J, grad)`` of a SparseAutoencoder on a row-chunked dask array.

    Same interface as :class:`~skae._objective.AutoencoderObjective` (``__call__``,
    ``last_terms``); ``X`` has been validated and persisted by :func:`fit_inputs`.
    """

    def __init__(self, spec, X, *, corruption=None, batch_size=None):
        dask, _ = _dask()
        from dask import delayed

        self.spec = spec
        self.dtype = np.dtype(X.dtype)
        sizes = [int(size) for size in X.chunks[0]]
        self.m = m = int(sum(sizes))
        block_rows = partition_block_rows(m, spec.n_features, batch_size, spec.n_hidden)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int)
        make = delayed(_chunk_objective, pure=False)  # this fit's own buffers (mutated)
        chunks = [
            make(block, int(offset), spec, corruption, batch_size, block_rows)
            for block, offset, size in zip(X.to_delayed().ravel(), offsets, sizes)
            if size > 0
        ]
        self._persist(dask, chunks)

    def __call__(self, theta):
        dask, _ = _dask()
        from dask import delayed

        theta, theta_key = self._theta(theta)
        spec = self.spec
        forward = [delayed(_pass1, pure=True)(c, theta_key) for c in self.chunks]
        col_sum = _tree([delayed(_first, pure=True)(f) for f in forward], _add_arrays)
        sparsity = delayed(sparsity_term, pure=True)(spec, col_sum, self.m, self.dtype)
        backward = [
            delayed(_pass2, pure=True)(c, f, theta_key, sparsity)
            for c, f in zip(self.chunks, forward)
        ]
        sums, (rho_hat, _) = _compute(dask, _tree(backward, _add_sums), sparsity)
        recon, totals = sums
        J, grad, self.last_terms = assemble(spec, theta, self.m, rho_hat, recon, totals)
        return J, grad


def _compute(dask, *collections):
    """``dask.compute`` with an error that says what happened when the cluster fails."""
    try:
        return dask.compute(*collections)
    except Exception as exc:
        if type(exc).__name__ not in {"KilledWorker", "CommClosedError", "FutureCancelledError",
                                      "CancelledError"}:
            raise
        try:
            detail = f"{type(exc).__name__}: {exc}"
        except Exception:  # some distributed errors cannot format themselves
            detail = type(exc).__name__
        raise RuntimeError(
            f"The dask cluster failed during the computation ({detail}). "
            "A fit leaves the estimator as it was before the call. Check the workers (memory "
            "limits, restarts) and call fit again."
        ) from exc


def fit_inputs(estimator, X):
    """``(X, decoder, DaskObjective)`` for ``SparseAutoencoder.fit`` from a dask ``X``.

    ``X`` is returned row-chunked, float32 or float64, persisted, with known chunk sizes;
    it is checked as ``validate_data`` would check a NumPy array (on the cluster).
    """
    dask, _ = _dask()
    from dask import delayed

    name = type(estimator).__name__
    X = _rows_chunked(estimator, X, reset=True)
    (X,) = dask.persist(X)
    X = _with_known_rows(X, name)
    ranges = [delayed(_chunk_range, pure=True)(b, name) for b in X.to_delayed().ravel()]
    ranges = _compute(dask, *ranges)
    low, high = min(r[0] for r in ranges), max(r[1] for r in ranges)
    # The estimator's own range checks and messages, on a 1x2 array with X's extremes.
    decoder = estimator._resolve_decoder(np.array([[low, high]], dtype=X.dtype))
    return X, decoder, DaskObjective


# --------------------------------------------------------------------------- predicting
def _encode_chunk(block, W1, b1, activation, name):
    block = _checked_chunk(block, name, "X")
    return check_overflow(encode(block, W1, b1, activation), block, "code")


def _decode_chunk(block, W2, b2, decoder, name):
    return decode(_checked_chunk(block, name, "H"), W2, b2, decoder)


def transform(estimator, X):
    """Lazy codes of a dask ``X`` (one task per chunk)."""
    X = _rows_chunked(estimator, X, reset=False)
    h = estimator.components_.shape[0]
    return X.map_blocks(
        _encode_chunk,
        _param(estimator.components_),
        _param(estimator.intercept_hidden_),
        estimator._spec_.activation,
        type(estimator).__name__,
        chunks=(X.chunks[0], (h,)),
        dtype=X.dtype,
    )


def inverse_transform(estimator, H):
    """Lazy reconstruction of dask codes ``H`` (one task per chunk)."""
    W2 = estimator.decoder_components_
    H = _rows_chunked(estimator, H, input_name="H", n_columns=W2.shape[0])
    return H.map_blocks(
        _decode_chunk,
        _param(W2),
        _param(estimator.intercept_visible_),
        estimator._spec_.decoder,
        type(estimator).__name__,
        chunks=(H.chunks[0], (W2.shape[1],)),
        dtype=H.dtype,
    )


def _param(array):
    """A fitted parameter as one dask key, shared by the tasks that use it."""
    from dask import delayed

    return delayed(np.asarray(array), pure=True)


def _score_chunk(block, estimator_parts, name):
    W1, b1, W2, b2, spec = estimator_parts
    block = _checked_chunk(block, name, "X")
    m = block.shape[0]
    if m == 0:
        return np.array([[0.0, np.inf, -np.inf, 0.0]])
    with np.errstate(over="ignore"):  # an overflowing loss is inf, as in score_samples
        recon = reconstruction_error(
            block, W1, b1, W2, b2, activation=spec.activation, decoder=spec.decoder,
            loss=spec.loss,
        )
    return np.array([[recon * m, float(block.min()), float(block.max()), m]])


def score(estimator, X):
    """Minus the mean reconstruction loss of a dask ``X``, computed on the cluster."""
    dask, da = _dask()
    name = type(estimator).__name__
    X = _rows_chunked(estimator, X, reset=False)
    from dask import delayed

    parts = delayed(
        (
            estimator.components_,
            estimator.intercept_hidden_,
            estimator.decoder_components_,
            estimator.intercept_visible_,
            estimator._spec_,
        ),
        pure=True,
    )
    per_chunk = X.map_blocks(_score_chunk, parts, name, chunks=(1, 4), dtype=np.float64)
    total, low, high, m = _compute(
        dask, per_chunk[:, 0].sum(), per_chunk[:, 1].min(), per_chunk[:, 2].max(),
        per_chunk[:, 3].sum(),
    )
    if m < 1:
        raise ValueError(f"X has no rows; {name}.score needs at least one sample.")
    estimator._check_cross_entropy_range(
        np.array([[low, high]], dtype=X.dtype), estimator._spec_.loss
    )
    return -float(total) / int(m)


# --------------------------------------------------------------------------- stacks
def stack_inputs(estimator, X, *, reset):
    """A dask ``X`` for a stacked estimator: checked, row-chunked; for fit persisted, and
    its values checked on the cluster.

    Fitting persists it once, so every layer's pretraining reads the same chunks
    (layer k fits on the lazy codes of layer k−1, computed from them).
    """
    dask, _ = _dask()
    X = _rows_chunked(estimator, X, reset=reset)
    if reset:
        from dask import delayed

        (X,) = dask.persist(X)
        # the values checked on the cluster in the stack's name (as validate_data does on
        # NumPy input; its first layer's fit checks them again, in its own)
        name = type(estimator).__name__
        _compute(dask, *[delayed(_chunk_range, pure=True)(b, name)
                         for b in X.to_delayed().ravel()])
    return X


def stack_codes(estimator, H):
    """Dask codes given to a StackedAutoencoder's ``inverse_transform``, checked."""
    n_hidden = estimator.autoencoders_[-1].components_.shape[0]
    return _rows_chunked(estimator, H, input_name="H", n_columns=n_hidden)


# --------------------------------------------------------------------------- classifier
def classifier_inputs(estimator, X, y):
    """``(X, y)`` for ``StackedAutoencoderClassifier.fit`` from a dask ``X``.

    ``X`` is checked and persisted as for a StackedAutoencoder, with known chunk sizes
    (its values are checked on the cluster, in the classifier's name). ``y`` (NumPy, or a
    dask array or Series, computed here: one label per row) is checked as scikit-learn
    checks a target and returned as a 1-D NumPy array of X's length.
    """
    from sklearn.utils import check_consistent_length
    from sklearn.utils.validation import column_or_1d

    X = _with_known_rows(stack_inputs(estimator, X, reset=True), type(estimator).__name__)
    if y is None:
        raise ValueError(
            f"This {type(estimator).__name__} estimator requires y to be passed, but the "
            "target y is None."
        )
    if is_dask_collection(y):
        y = compute_labels(y)
    y = column_or_1d(y, warn=True)
    y = check_input_array(y, ensure_2d=False, dtype=None, input_name="y",
                          estimator=type(estimator).__name__)
    check_consistent_length(X, y)
    return X, y


def compute_all(*values):
    """The values computed where they are dask collections (others pass through)."""
    dask, _ = _dask()
    return _compute(dask, *values)


def compute_labels(y):
    """A dask ``y`` (array or Series) computed: the labels, one per row, on the client."""
    (y,) = compute_all(y)
    return y


def _finetune_chunk(block, rows, y, layers, n_trainable, alphas):
    """The fine-tuning objective of the labelled ``rows`` of one chunk (all if None)."""
    from ._network import FineTuneObjective

    if rows is not None:
        block = block[rows]
    with blas_single_threaded():  # the frozen layers' forward pass, once per fit
        return _Chunk(FineTuneObjective(
            layers, block, y, n_trainable=n_trainable, alphas=alphas, n_workers=1
        ))


def _finetune_sums(chunk, theta):
    loss, totals = chunk.objective.sums(theta)
    return loss, _copy_pairs(totals)


class DaskFineTuneObjective(_ChunkedObjective):
    """The fine-tuning objective of a StackedAutoencoderClassifier on a dask array.

    The labelled rows (``labelled``, a NumPy mask over all rows of the row-chunked,
    persisted ``X``) are the data; ``y`` holds their class indices in row order. Once
    per fit, each chunk with labelled rows becomes a
    :class:`~skae._network.FineTuneObjective` of those rows on the worker that holds
    the chunk (the frozen layers' output computed there, once); each evaluation maps
    :meth:`~skae._network.FineTuneObjective.sums` over the chunks, adds the sums in a
    fixed tree in chunk order, and :func:`~skae._network.assemble` finishes
    on the client: the mathematics of the NumPy objective, summed over other row
    groups, so equal to it to rounding. Same interface as FineTuneObjective
    (``__call__``, ``theta0``, ``layout``, ``trainable``, ``dtype``, ``last_terms``).
    """

    def __init__(self, layers, X, labelled, y, *, n_trainable, alphas):
        from dask import delayed

        from ._network import NetworkLayout

        dask, _ = _dask()
        L = len(layers)
        self.dtype = np.dtype(X.dtype)
        self.trainable = list(layers[L - n_trainable :])
        self.layout = NetworkLayout(tuple(layer.weights.shape for layer in self.trainable))
        self.theta0 = self.layout.pack(self.trainable)
        self.alphas = tuple(float(a) for a in alphas)
        self.m = int(np.count_nonzero(labelled))
        layers_key = delayed(list(layers), pure=False)  # one key, fetched once per worker
        make = delayed(_finetune_chunk, pure=False)  # this fit's own buffers
        chunks, offset, position = [], 0, 0
        for block, size in zip(X.to_delayed().ravel(), X.chunks[0]):
            mask = labelled[offset : offset + size]
            offset += size
            k = int(np.count_nonzero(mask))
            if k == 0:
                continue  # no labelled rows: nothing of this chunk is needed
            rows = None if k == size else np.flatnonzero(mask)
            chunks.append(make(block, rows, y[position : position + k], layers_key,
                               n_trainable, self.alphas))
            position += k
        self._persist(dask, chunks)

    def __call__(self, theta):
        from dask import delayed

        from ._network import assemble as assemble_network

        dask, _ = _dask()
        theta, theta_key = self._theta(theta)
        parts = [delayed(_finetune_sums, pure=True)(c, theta_key) for c in self.chunks]
        ((loss, totals),) = _compute(dask, _tree(parts, _add_sums))
        J, grad, data_loss = assemble_network(
            self.layout, self.alphas, theta, self.m, loss, totals
        )
        self.last_terms = (J, data_loss)
        return J, grad


def _checked_apply(block, function, name, *args):
    return function(_checked_chunk(block, name, "X"), *args)


def _as_of_now(arg):
    """A shallow copy of a fitted object (or of each in a list): the fits that follow make
    new arrays and objects, so a graph holding the copy keeps the values of the call."""
    if isinstance(arg, list):
        return [copy.copy(a) for a in arg]
    return copy.copy(arg)


def map_rows(estimator, X, function, *args):
    """``function(X_chunk, *args)`` on each row chunk of a dask ``X``: a lazy dask array.

    ``function`` maps a NumPy array of rows to one row (or one value) per input row;
    its output's shape and dtype are read from a call on zero rows. ``args`` (fitted
    objects, or lists of them) are taken as they are now, so that a refit before the
    result is computed does not change it; they travel once per worker.
    """
    from dask import delayed

    X = _rows_chunked(estimator, X, reset=False)
    args = [_as_of_now(arg) for arg in args]
    meta = function(np.empty((0, X.shape[1]), dtype=X.dtype), *args)
    keys = [delayed(arg, pure=False) for arg in args]
    name = type(estimator).__name__
    if meta.ndim == 1:
        return X.map_blocks(_checked_apply, function, name, *keys, drop_axis=1,
                            chunks=(X.chunks[0],), dtype=meta.dtype, meta=meta)
    return X.map_blocks(_checked_apply, function, name, *keys,
                        chunks=(X.chunks[0], (meta.shape[1],)), dtype=meta.dtype, meta=meta)
