"""The sparse autoencoder objective: cost and gradient as pure functions of the parameters.

Notation follows the UFLDL notes (the user guide's "The objective"; where this module sits
among the others: ``docs/architecture.rst``); rows of ``X`` are samples::

    H    = f(X̃ W1ᵀ + b1)                encoder (X̃ = X, or X corrupted once per fit)
    X̂    = g(H W2 + b2)                 decoder (W2 = W1 when tied)
    ρ̂_j  = mean_i p(H_ij)               p(a) = a (sigmoid) or (a + 1) / 2 (tanh)
    J    = (1/m) Σ_i L(x̂_i, x_i) + (α/2)(‖W1‖² + ‖W2‖²) + β Σ_j KL(ρ ‖ ρ̂_j)

:class:`AutoencoderObjective` evaluates ``J`` and ``∇J`` for a flat float64 parameter
vector, laid out by :class:`~skae._network.ParameterLayout`. The autoencoder is the
two-layer network encoder, decoder of :mod:`skae._network`, evaluated by its layer map
and :func:`~skae._network.backpropagate`; the sparsity term of δ2, the corrupted input,
the decoder's output unit and loss, and the tied slot are its hooks there. It never
touches an estimator: for fixed data and settings its output depends only on ``theta``.
It keeps a fixed set of work buffers between calls.

Blocks and threads: the rows are cut into a fixed partition of blocks of ``c`` rows
(:func:`skae._parallel.block_rows_for`: 256 rows for 256 or more features, more for
narrower data; ``batch_size`` rows instead when ``batch_size`` is smaller). Each block's
partial sums are computed by whichever worker thread is free (BLAS on one thread in each),
and they are added in block order (:func:`skae._parallel.map_blocks`). The result is
therefore the same, bit for bit, for any number of workers; only the speed changes. This
parallelises the elementwise work too (the sigmoid's ``exp`` is a large share of an
evaluation), which a multi-threaded BLAS alone would leave on one core.

Each worker owns:

==========  ==========  =====================================================
buffer      shape       holds
==========  ==========  =====================================================
``R``       (c, n)      decoder pre-activation, X̂, then g'(X̂)
``D``       (c, n)      X̂ − X, then δ3 (·m); a sparse block densified first
``E``       (c, h)      δ3 W2ᵀ + sparsity term, then δ2 (·m)
``S``       (c, n)      scratch for the cross-entropy value only
``C``       (c, n)      the block's corrupted input, when it is drawn per block
                        into a dense array (two-pass denoising; Gaussian noise
                        on sparse input)
``H``       (c, h)      hidden activations of the block (two-pass only)
``T``       (h, n)      scratch for adding the decoder's product to the encoder's
                        (tied only)
==========  ==========  =====================================================

and two *buffer sets* (one when there are no more blocks than workers) of ``grads``: a
block's gradient sums, ``(gW, gb)`` per layer ((h, n) and (h,), (n,); encoder, decoder; one
``gW`` when tied; the biases' sums in float64). A block's sums stay in its set until they
are added after the earlier blocks' (:func:`skae._parallel.map_blocks`), and meanwhile its
worker goes on with the next block in its other set instead of waiting. The objective
owns the ``totals`` of the same shapes, to which the blocks' sums are added in block
order. When ``batch_size`` is None, all workers also share ``H`` (m, h), the
hidden activations kept from the forward to the backward pass (then overwritten by f'(H));
with denoising and ``batch_size=None`` the corrupted copy of ``X`` is made once per
objective, drawn block by block into its output (a sparse copy, of the stored entries
only, for sparse input with ``"mask"``). No other ``m × n`` array is ever allocated.

With ``batch_size`` the evaluation makes the two passes of the UFLDL notes: pass 1
accumulates ρ̂ block by block, pass 2 recomputes each block's forward pass and accumulates
the gradient; peak memory then does not grow with ``m``. The blocks are the same as with
``batch_size=None`` whenever ``batch_size >= c``, and then so is every floating-point
operation: the objective, and a fitted model, are identical. The heavy work runs in the
data's dtype (float32 stays float32); the gradient is returned as float64 for SciPy.

Other array-API namespaces (PyTorch, CuPy, array_api_strict; skae's array API dispatch):
the same code runs on their arrays, on their device. The buffers above are made by
``skae._array.buffer``, which gives None on those namespaces, and every step that writes
into a buffer goes through ``skae._array.modify_in_place`` (or a primitive built on it),
which there returns a new array instead; the rows form one block (or blocks of
``batch_size`` rows), one thread issues the work, and the sums accumulate in float64 where
the device has it. Sparse input is NumPy/SciPy only.

Pieces (used as they are by the map-reduce over the chunks of a dask array, skae._dask):
an objective built on rows ``row_offset : row_offset + len(X)`` of a larger data set with
that data set's ``block_rows`` cuts its rows at the same global block boundaries and
corrupts them as the whole data set would; :meth:`AutoencoderObjective.hidden_sums` (pass
1) and :meth:`AutoencoderObjective.gradient_sums` (pass 2) return its partial sums;
:func:`sparsity_term` and :func:`assemble` turn the sums over all rows into ``J`` and
``∇J``. ``__call__`` is these four steps on one machine.
"""

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ._activations import ACTIVATIONS, kl_divergence, kl_divergence_derivative
from ._array import (
    array_device,
    array_namespace,
    assign,
    buffer,
    cast,
    concat,
    dot,
    from_numpy,
    modify_in_place,
    parameter_dtype,
    row_slice,
    softplus,
    subtract,
    sum_rows,
    zeros,
)
from ._network import (
    Layer,
    ParameterLayout,
    affine,
    backpropagate,
    layer_forward,
)
from ._network import assemble as assemble_network
from ._parallel import (
    PARALLEL_MIN_SIZE,
    BlockSums,
    available_threads,
    blas_single_threaded,
    block_rows_for,
    map_blocks,
    row_blocks,
    sets_per_worker,
    worker_count,
)

__all__ = [
    "AutoencoderObjective",
    "ParameterLayout",
    "AutoencoderSpec",
    "Corruption",
    "assemble",
    "check_overflow",
    "data_range",
    "decode",
    "encode",
    "partition_block_rows",
    "reconstruction_error",
    "reconstruction_losses",
    "sparsity_term",
]

# Rows per chunk of reconstruction_error when batch_size is None: about this many bytes
# per (chunk, n) array.
_CHUNK_BYTES = 1 << 23
# Rows per block of the corruption's random stream; fixed so that the corruption of a row
# does not depend on how rows are chunked. Blocks of the objective are multiples of it.
_NOISE_BLOCK = 256


# --------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class AutoencoderSpec:
    """The settings of one autoencoder objective (all validated by the estimator).

    A fitted :class:`~skae.SparseAutoencoder` keeps the spec its fit used as ``_spec_``;
    ``transform``, ``inverse_transform`` and ``score`` read it, not the hyper-parameters.
    """

    n_features: int
    n_hidden: int
    activation: str = "sigmoid"
    decoder: str = "sigmoid"
    loss: str = "squared"
    tied: bool = False
    alpha: float = 3e-3
    beta: float = 3.0
    rho: float = 0.1

    @property
    def layout(self):
        return ParameterLayout(self.n_features, self.n_hidden, self.tied)


# --------------------------------------------------------------------------- corruption
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _hash_uniform(seed, index):
    """Uniform numbers in [0, 1), one per uint64 ``index``: SplitMix64 of (seed, index).

    A counter-based generator: the number for an entry depends only on the seed and the
    entry's position, so any subset of entries (the stored entries of a sparse block) is
    drawn without drawing the others.
    """
    key = np.uint64((int(seed) + 1) * int(_GOLDEN) % (1 << 64))
    z = np.asarray(index, dtype=np.uint64) + key
    z ^= z >> np.uint64(30)
    z *= _MIX1
    z ^= z >> np.uint64(27)
    z *= _MIX2
    z ^= z >> np.uint64(31)
    z >>= np.uint64(11)
    return z.astype(np.float64) * (1.0 / (1 << 53))


@dataclass(frozen=True)
class Corruption:
    """Input corruption of a denoising autoencoder, drawn deterministically per row block.

    ``kind="mask"`` zeroes each input with probability ``level``; ``kind="gaussian"``
    adds N(0, level²). On dense input the random numbers for rows ``[k B, (k+1) B)``
    (``B = 256``) come from ``numpy.random.default_rng([seed, k])``, so a row is corrupted
    the same way whether the data are processed whole or in blocks, and in every
    evaluation of one fit. On sparse input ``"mask"`` draws a number only for each stored
    entry, from a counter-based hash of ``(seed, row, column)`` (again the same in any
    chunking), and the result stays sparse; ``"gaussian"`` noise makes rows dense and is
    drawn as for dense input.
    """

    kind: str
    level: float
    seed: int

    def _dense_noise(self, start, stop, n_features, out=None):
        """The float64 noise of rows ``start:stop``, drawn block by block into ``out``."""
        B = _NOISE_BLOCK
        if out is None:
            out = np.empty((stop - start, n_features))
        for k in range(start // B, (stop - 1) // B + 1):
            lo, hi = max(start, k * B), min(stop, (k + 1) * B)
            rng = np.random.default_rng([self.seed, k])
            # The stream fills rows in order: drawing the block's first hi - k B rows and
            # keeping the last ones gives the same numbers as drawing the whole block.
            shape = (hi - k * B, n_features)
            if self.kind == "mask":
                block = rng.random(shape, dtype=np.float64)
            else:
                block = rng.standard_normal(shape, dtype=np.float64)
            out[lo - start : hi - start] = block[lo - k * B :]
        return out

    def _sparse_mask(self, X, start):
        X = X.tocsr(copy=True)
        rows = np.repeat(np.arange(start, start + X.shape[0], dtype=np.uint64), np.diff(X.indptr))
        index = rows * np.uint64(X.shape[1]) + X.indices.astype(np.uint64)
        X.data *= _hash_uniform(self.seed, index) >= self.level
        return X

    def apply(self, X, start=0, out=None):
        """Corrupted copy of ``X``, which holds rows ``start : start + len(X)`` of the data.

        ``X`` is not modified. For dense output, ``out`` (an array of the shape of ``X``
        and its dtype) receives the result; the noise is drawn 256 rows at a time, so no
        temporary larger than 256 rows is made. Sparse input with ``"mask"`` gives a
        sparse copy (zeroed entries stay stored as explicit zeros).
        """
        m, n = X.shape
        if sp.issparse(X) and self.kind == "mask":
            return self._sparse_mask(X, start)
        xp = array_namespace(X)
        device = array_device(X)
        wide = parameter_dtype(xp, device)
        if out is None:
            out = buffer(xp, (m, n), X.dtype)  # NumPy: filled block by block
        B = _NOISE_BLOCK
        parts = []
        lo = 0
        while lo < m:  # one noise block (or the part of it in X) at a time
            hi = min(m, ((start + lo) // B + 1) * B - start)
            rows = row_slice(X, lo, hi)
            rows = rows.toarray() if sp.issparse(rows) else rows
            noise = self._dense_noise(start + lo, start + hi, n)
            noise = from_numpy(noise, wide, xp, device)  # drawn by NumPy, on X's device
            block = None if out is None else out[lo:hi]
            if self.kind == "mask":
                keep = cast(noise >= self.level, X.dtype, xp)
                parts.append(modify_in_place(xp, xp.multiply, rows, keep, out=block))
            else:
                noise *= self.level
                noise += cast(rows, wide, xp)
                parts.append(assign(cast(noise, X.dtype, xp), block, xp))
            lo = hi
        if out is not None:
            return out
        return concat(parts, xp) if parts else X[:0, ...]


def _softplus_sum(z, out=None):
    """``Σ log(1 + e^z)`` over all elements, as a float (``out``: NumPy scratch)."""
    xp = array_namespace(z)
    return float(sum_rows(softplus(z, xp, out), xp=xp))


def _itemsize(dtype):
    return np.dtype(dtype).itemsize if isinstance(dtype, np.dtype) else 8


def data_range(X):
    """``(min, max)`` of the values ``X`` stands for (a sparse matrix's implicit zeros
    included), as Python floats."""
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


def check_overflow(out, X, what):
    """``out``, computed from finite ``X``; a ValueError if it holds NaN, which finite
    values so large that the products overflow (``inf - inf``) give."""
    xp = array_namespace(out)
    if bool(xp.any(xp.isnan(out))):
        low, high = data_range(X)
        raise ValueError(
            f"X ranges over [{low!r}, {high!r}]: values this large overflow the {what} to "
            "NaN in float arithmetic. Scale X as the training data were scaled (e.g. with "
            "the MinMaxScaler or StandardScaler fitted on them)."
        )
    return out


# --------------------------------------------------------------------------- forward maps
def encode(X, W1, b1, activation="sigmoid"):
    """Hidden activations ``f(X W1ᵀ + b1)`` in the dtype of ``X`` (dense or sparse X):
    the encoder layer's forward map."""
    return layer_forward(X, Layer(W1, b1, activation), X.dtype)


def decode(H, W2, b2, decoder="sigmoid"):
    """Reconstruction ``g(H W2 + b2)`` in the dtype of ``H``: the decoder layer's forward
    map (its weights are ``W2ᵀ``)."""
    return layer_forward(H, Layer(W2.T, b2, decoder), H.dtype)


def _chunk_rows(n_features, itemsize):
    return max(32, _CHUNK_BYTES // max(1, n_features * itemsize))


def _row_losses(Z, Xd, decoder, loss):
    """The loss of each row from the decoder's pre-activation ``Z`` (overwritten on
    NumPy) and the dense target ``Xd`` (never modified), summed in float64 (where the
    device has it)."""
    xp = array_namespace(Z)
    if loss == "cross_entropy":
        # log(1 + e^z) − x z, from the pre-activation: finite when σ(z) is 0 or 1
        S = softplus(Z, xp)
        S -= modify_in_place(xp, xp.multiply, Xd, Z, out=Z)
        return sum_rows(S, axis=1, xp=xp)
    R = ACTIVATIONS[decoder].forward(Z)
    R = subtract(R, Xd, R, xp)
    wide = parameter_dtype(xp, array_device(R))
    if R.dtype != wide:  # squared in float64: a float32 residual's square can overflow
        R = cast(R, wide, xp)
    losses = sum_rows(modify_in_place(xp, xp.square, R, out=R), axis=1, xp=xp)
    losses *= 0.5
    return losses


def reconstruction_losses(
    X, W1, b1, W2, b2, *, activation, decoder, loss, batch_size=None, recode=None
):
    """The reconstruction loss of each sample, ``L(x̂_i, x_i)``, computed chunk by chunk.

    ``½‖x̂_i − x_i‖²`` for ``loss="squared"``; for ``"cross_entropy"`` it is computed from
    the decoder's pre-activation ``z`` as ``Σ_k log(1 + e^z_k) − x_k z_k``, which equals
    ``−Σ_k x_k log σ(z_k) + (1 − x_k) log(1 − σ(z_k))`` and stays finite when ``σ(z)``
    rounds to 0 or 1. No corruption is applied. ``recode``, if given, maps the hidden
    codes ``H`` of a chunk to the codes the decoder reads (a stack's upper layers,
    encoding up and decoding back); None decodes ``H`` itself.

    The rows are processed in chunks of ``batch_size`` rows (None: about 8 MiB per
    chunk-sized array), so the memory beyond the returned vector does not grow with the
    number of rows. The vector is float64 (the widest float of the device under array
    API dispatch); each row's sum over the features is accumulated in it.
    """
    m, n = X.shape
    dtype = X.dtype
    xp = array_namespace(X)
    chunk = batch_size or _chunk_rows(n, _itemsize(dtype))
    decoder_layer = Layer(cast(W2, dtype).T, cast(b2, dtype), decoder)
    out = buffer(xp, (m,), np.float64)  # NumPy: filled chunk by chunk
    parts = []
    for start in range(0, m, chunk):
        stop = min(start + chunk, m)
        Xc = row_slice(X, start, stop)
        Xd = Xc.toarray() if sp.issparse(Xc) else Xc
        H = encode(Xc, W1, b1, activation)
        if recode is not None:
            H = recode(H)
        Z = affine(H, decoder_layer, dtype)
        block = None if out is None else out[start:stop]
        parts.append(assign(_row_losses(Z, Xd, decoder, loss), block, xp))
    if out is not None:
        return out
    if not parts:
        device = array_device(X)
        return zeros(xp, (0,), parameter_dtype(xp, device), device)
    return concat(parts, xp) if len(parts) > 1 else parts[0]


def reconstruction_error(X, W1, b1, W2, b2, *, activation, decoder, loss, batch_size=None):
    """Mean reconstruction loss per sample, ``(1/m) Σ_i L(x̂_i, x_i)``: the mean of
    :func:`reconstruction_losses` (see there), as a float."""
    losses = reconstruction_losses(
        X, W1, b1, W2, b2, activation=activation, decoder=decoder, loss=loss,
        batch_size=batch_size,
    )
    return float(array_namespace(losses).mean(losses))


# --------------------------------------------------------------------------- objective
def _reconstruction_delta(Z, target, out, scratch, decoder, loss):
    """The output unit and the loss of a block: ``(loss sum, δ3 · m)`` from the decoder's
    pre-activation ``Z`` (overwritten by ``X̂`` on NumPy) and the dense ``target``.

    ``δ3 · m`` is written into ``out`` (which may be ``target`` itself: a sparse block
    densified there); ``scratch`` (shape of ``Z``) is used for the cross-entropy value.
    """
    g = ACTIVATIONS[decoder]
    if loss == "cross_entropy":
        # log(1 + e^z) − x z, from the pre-activation: finite when σ(z) is 0 or 1
        value = _softplus_sum(Z, scratch) - dot(target, Z)
        Z = g.forward(Z)
        return value, subtract(Z, target, out)  # sigmoid + cross-entropy: δ3 · m = X̂ − X
    Z = g.forward(Z)
    D = subtract(Z, target, out)
    value = 0.5 * dot(D, D)
    return value, g.derivative(Z, D)  # δ3 · m = (X̂ − X) ⊙ g'(X̂)


@dataclass
class _Workspace:
    """One worker's reused buffers (see the module docstring for what each holds)."""

    H: np.ndarray | None
    R: np.ndarray
    D: np.ndarray
    E: np.ndarray
    S: np.ndarray | None
    C: np.ndarray | None
    T: np.ndarray | None


def _gradient_buffers(layout, xp, dtype, pool=None):
    """``(gW, gb)`` buffers per layer of ``layout`` (a shared slot's ``gW`` is its
    owner's buffer; bias sums in float64)."""
    pairs = []
    for k in range(len(layout.shapes)):
        owner = layout.owner(k)
        if owner is not None:
            gW = pairs[owner][0]
        else:
            gW = buffer(xp, layout.stored_shape(k), dtype, pool)
        pairs.append((gW, buffer(xp, layout.shapes[k][0], np.float64, pool)))
    return pairs


class AutoencoderObjective:
    """Cost and gradient of one sparse autoencoder on fixed data.

    The autoencoder is the two-layer network (encoder, decoder) of ``spec.layout`` (a
    :class:`~skae._network.ParameterLayout`), run through :mod:`skae._network`'s layer
    forward map and :func:`~skae._network.backpropagate`; what makes it an autoencoder
    is added there: the corrupted input rows, the decoder's output unit and loss
    (:func:`_reconstruction_delta`), the sparsity term added to ``dJ/dH`` and the tied
    slot.

    Parameters
    ----------
    spec : AutoencoderSpec
        The settings.
    X : ndarray, memmap or CSR matrix of shape (m, n_features)
        The clean data (the reconstruction target). Never modified or copied whole.
    corruption : Corruption or None
        Denoising: the encoder sees the corrupted data, the loss compares with ``X``.
    batch_size : int or None
        None evaluates with the hidden activations of all rows kept in memory; an int
        uses the two-pass evaluation of the UFLDL notes, in blocks of at most
        ``batch_size`` rows.
    n_workers : int or None
        Threads that evaluate blocks of rows in parallel, each with its own buffers and
        BLAS on one thread. None uses as many as BLAS may use (which honours
        threadpoolctl limits and joblib's), and 1 for small data. The result does not
        depend on it.
    row_offset, block_rows : int and int or None
        For rows of a larger data set (a dask chunk): where they start in it, and its
        block size, so that the blocks are cut at its boundaries. The mini-batch solvers
        pass ``block_rows`` (:func:`skae._parallel.minibatch_block_rows`) alone.
    buffers : BufferPool or None
        Where the work buffers come from (NumPy): a mini-batch solver's pool, so that
        the objectives of successive mini-batches reuse them; None: new arrays.

    Calling the object with a flat float64 ``theta`` returns ``(J, grad)``; the parts of
    the last evaluation are in :attr:`last_terms` (for progress reports).
    """

    def __init__(
        self, spec, X, *, corruption=None, batch_size=None, n_workers=None, row_offset=0,
        block_rows=None,
        buffers=None,
    ):
        self.spec = spec
        self.layout = spec.layout
        self.X = X
        self.sparse = sp.issparse(X)
        self.xp = xp = array_namespace(X)
        # NumPy: reused buffers and worker threads; other namespaces: the device runs the
        # work (no buffers, one block unless batch_size cuts it, one thread issuing it)
        threaded = xp is np
        self.dtype = dt = X.dtype
        self.parameter_dtype = parameter_dtype(xp, array_device(X))
        self.m = m = X.shape[0]
        self.corruption = corruption
        self.two_pass = batch_size is not None
        h, n = spec.n_hidden, spec.n_features
        # The fixed partition: it depends on the data's shape and on batch_size only. Rows
        # of a larger data set (row_offset, block_rows given) are cut at its boundaries.
        if block_rows is None and not threaded:
            block_rows = max(1, min(m, batch_size or m))  # one block without batch_size
        if block_rows is None:
            block_rows = partition_block_rows(m, n, batch_size, h)
        self.block_rows = c = int(block_rows)
        self.row_offset = int(row_offset)
        head = min(m, (c - self.row_offset % c) % c)
        self.blocks = [(0, head)] * bool(head) + [
            (start + head, stop + head) for start, stop in row_blocks(m - head, c)
        ]
        if not threaded:
            n_workers = 1
        if n_workers is None:
            n_workers = available_threads() if m * n >= PARALLEL_MIN_SIZE else 1
        self.n_workers = k = worker_count(n_workers, len(self.blocks))
        # The encoder's input: corrupted once here when everything is in memory; per
        # block (deterministically, the same in every evaluation) in the two-pass
        # evaluation, and for Gaussian noise on sparse input, which would make it dense.
        self.corrupt_per_block = corruption is not None and (
            self.two_pass or (self.sparse and corruption.kind == "gaussian")
        )
        dense_corrupted_blocks = self.corrupt_per_block and not (
            self.sparse and corruption.kind == "mask"
        )
        if corruption is not None and not self.corrupt_per_block:
            self.X_input = corruption.apply(X, self.row_offset)
        else:
            self.X_input = X
        self.activations = (spec.activation, spec.decoder)
        self.last_terms = None
        # Buffers (None on other namespaces than NumPy: every step makes its result).
        pool = buffers
        self.H = None if self.two_pass else buffer(xp, (m, h), dt, pool)
        self.totals = _gradient_buffers(self.layout, xp, dt, pool)
        self.workspaces = [
            _Workspace(
                H=buffer(xp, (c, h), dt, pool) if self.two_pass else None,
                R=buffer(xp, (c, n), dt, pool),
                D=buffer(xp, (c, n), dt, pool),
                E=buffer(xp, (c, h), dt, pool),
                S=buffer(xp, (c, n), dt, pool) if spec.loss == "cross_entropy" else None,
                C=buffer(xp, (c, n), dt, pool) if dense_corrupted_blocks else None,
                T=buffer(xp, (h, n), dt, pool) if spec.tied else None,
            )
            for _ in range(k)
        ]
        # A block's gradient sums stay in its buffer set until they are added to the
        # totals: two sets per worker when there are more blocks than workers
        self.sets_per_worker = sets_per_worker(k, len(self.blocks))
        self.block_grads = [
            _gradient_buffers(self.layout, xp, dt, pool)
            for _ in range(k * self.sets_per_worker)
        ]

    # -- pieces -------------------------------------------------------------------------
    def _input_rows(self, buffer_set, start, stop):
        Xc = row_slice(self.X_input, start, stop)
        if self.corrupt_per_block:
            C = self.workspaces[buffer_set % self.n_workers].C
            out = None if C is None else C[: stop - start]
            Xc = self.corruption.apply(Xc, self.row_offset + start, out=out)
        return Xc

    def _encode_into(self, Xc, W1, b1, out):
        """``out = f(Xc W1ᵀ + b1)``, the encoder layer's forward map, returned (a new
        array when ``out`` is None)."""
        return layer_forward(Xc, Layer(W1, b1, self.spec.activation), self.dtype, out)

    def network(self, theta):
        """The encoder and decoder layers of ``theta``, in the data's dtype (views of
        ``theta`` when it has that dtype; the decoder's weights are ``W2ᵀ``)."""
        return self.layout.network(theta, self.activations, self.dtype)

    # -- the two passes, one block at a time -------------------------------------------
    def _forward(self, start, stop, buffer_set, encoder_weights):
        """Pass 1 on one block: column sums of H (and H itself when kept)."""
        ws = self.workspaces[buffer_set % self.n_workers]
        if self.two_pass:
            out = None if ws.H is None else ws.H[: stop - start]
        else:
            out = None if self.H is None else row_slice(self.H, start, stop)
        H = self._encode_into(self._input_rows(buffer_set, start, stop), *encoder_weights, out)
        if not self.two_pass and H is not out:  # no buffer: one block of all rows, kept
            self.H = H
        return sum_rows(H, axis=0)

    def _backward(self, start, stop, buffer_set, layers, sparsity):
        """Pass 2 on one block: loss sum and the gradient sums (times m), in the layout's
        order, in the buffer set's ``grads`` (untouched until added to the totals)."""
        ws, k = self.workspaces[buffer_set % self.n_workers], stop - start
        R, D, E, S = (None if b is None else b[:k] for b in (ws.R, ws.D, ws.E, ws.S))
        Xin = self._input_rows(buffer_set, start, stop)
        if self.two_pass:  # recomputed
            out = None if ws.H is None else ws.H[:k]
            Hc = self._encode_into(Xin, layers[0].weights, layers[0].bias, out)
        else:  # kept from pass 1
            Hc = row_slice(self.H, start, stop)
        target = row_slice(self.X, start, stop)
        if self.sparse:
            target = target.toarray(out=D)  # densify this block only, into D
        Z = affine(Hc, layers[1], self.dtype, out=R)
        recon, D = _reconstruction_delta(Z, target, D, S, self.spec.decoder, self.spec.loss)
        grads, _ = backpropagate(
            layers, [Xin, Hc, Z], D, n_params=2, want_input=False,
            out=self.block_grads[buffer_set],
            scratch=[E], wide_bias_sums=True, layout=self.layout,
            hidden_terms={1: sparsity}, weight_scratch=ws.T,
        )  # Hc now holds f'(H) (NumPy)
        return [recon] + self.layout.flatten(grads)

    # -- evaluation ---------------------------------------------------------------------
    def __call__(self, theta):
        theta = cast(theta, self.parameter_dtype, self.xp)
        # BLAS on one thread: the workers' products run at once, and the rounding of a
        # product does not depend on a thread count.
        with blas_single_threaded():
            return self._evaluate(theta)

    def _evaluate(self, theta):
        layers = self.network(theta)
        rho_hat, sparsity = sparsity_term(self.spec, self.hidden_sums(layers), self.m, self.dtype)
        recon, totals = self.gradient_sums(layers, sparsity)
        J, grad, self.last_terms = assemble(self.spec, theta, self.m, rho_hat, recon, totals)
        return J, grad

    def hidden_sums(self, layers):
        """Pass 1: the column sums of ``H`` over this object's rows (float64, (h,)).

        ``layers`` is ``self.network(theta)``. With ``batch_size=None`` ``H`` is kept in
        ``self.H`` for pass 2.
        """
        encoder_weights = (layers[0].weights, layers[0].bias)
        device = array_device(layers[0].weights)
        col_sum = zeros(self.xp, self.spec.n_hidden, self.parameter_dtype, device)
        for part in map_blocks(
            lambda start, stop, i: self._forward(start, stop, i, encoder_weights),
            self.blocks,
            self.n_workers,
        ):
            col_sum += part
        return col_sum

    def gradient_sums(self, layers, sparsity):
        """Pass 2: ``(recon, totals)`` summed over this object's rows, block by block in
        block order (all times ``m``): ``totals`` are ``(Σ ∇W, Σ ∇b)`` per layer
        (encoder, decoder; the decoder's ``∇W`` as stored, ``(h, n)``, None when tied),
        this object's buffers. ``sparsity`` comes from :func:`sparsity_term`.
        """
        flat_totals = self.layout.flatten(self.totals)
        sums = BlockSums([None] + flat_totals, self.xp)
        map_blocks(
            lambda start, stop, i: self._backward(start, stop, i, layers, sparsity),
            self.blocks,
            self.n_workers,
            combine=sums,
            sets_per_worker=self.sets_per_worker,
        )
        if sums.empty:  # no rows: nothing was added
            for total in flat_totals:
                total.fill(0.0)
            return 0.0, self.layout.unflatten(flat_totals)
        recon, *flat = sums.totals
        return recon, self.layout.unflatten(flat)


def partition_block_rows(n_rows, n_features, batch_size, n_hidden=1):
    """Rows per block of the fixed partition of an objective on ``n_rows`` rows."""
    rows = block_rows_for(n_features, n_hidden, _NOISE_BLOCK)
    return min(rows, batch_size or n_rows, max(n_rows, 1))


def sparsity_term(spec, col_sum, m, dtype):
    """``(ρ̂, β KL'(ρ, ρ̂) p')`` from the column sums of ``H`` over all ``m`` rows.

    The second is the sparsity term of δ2 (times m), in ``dtype``.
    """
    f = ACTIVATIONS[spec.activation]
    rho_hat = f.firing_scale * (col_sum / m) + f.firing_shift
    sparsity = (spec.beta * f.firing_scale) * kl_divergence_derivative(spec.rho, rho_hat)
    return rho_hat, cast(sparsity, dtype)


def assemble(spec, theta, m, rho_hat, recon, totals):
    """``(J, grad, terms)`` from pass 2's sums over all ``m`` rows: the network's
    :func:`~skae._network.assemble` (weight decay, the gradient) with the KL penalty
    added to ``J``; ``grad`` is float64, ``terms`` is ``(J, reconstruction, mean ρ̂)``.
    ``totals`` are the ``(Σ ∇W, Σ ∇b)`` pairs of :meth:`AutoencoderObjective.gradient_sums`.
    """
    xp = array_namespace(theta)
    kl = float(xp.sum(kl_divergence(spec.rho, rho_hat))) if spec.beta else 0.0
    alphas = (spec.alpha, spec.alpha)
    J, grad, recon_mean = assemble_network(
        spec.layout, alphas, theta, m, recon, totals, penalty=spec.beta * kl,
        divide_biases=True,
    )
    return J, grad, (J, recon_mean, float(xp.mean(rho_hat)))
