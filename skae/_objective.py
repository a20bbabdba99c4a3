"""The sparse autoencoder objective: cost and gradient as pure functions of the parameters.

Notation follows the UFLDL notes (the user guide's "The objective"; where this module sits
among the others: ``docs/architecture.rst``); rows of ``X`` are samples::

    H    = f(X̃ W1ᵀ + b1)                encoder (X̃ = X, or X corrupted once per fit)
    X̂    = g(H W2 + b2)                 decoder (W2 = W1 when tied)
    ρ̂_j  = mean_i p(H_ij)               p(a) = a (sigmoid) or (a + 1) / 2 (tanh)
    J    = (1/m) Σ_i L(x̂_i, x_i) + (α/2)(‖W1‖² + ‖W2‖²) + β Σ_j KL(ρ ‖ ρ̂_j)

:class:`AutoencoderObjective` evaluates ``J`` and ``∇J`` for a flat float64 parameter
vector. It never touches an estimator: for fixed data and settings its output depends
only on ``theta``. It keeps a fixed set of work buffers between calls.

Blocks and threads: the rows are cut into a fixed partition of blocks of ``c`` rows
(:func:`skae._parallel.block_rows_for`: 256 rows for 64 or more features, more for
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
``gW1/gW2`` (h, n)      the block's weight-gradient sums (one when tied)
``T``       (h, n)      scratch for adding a product to them (tied only)
==========  ==========  =====================================================

and the objective owns ``gW1``/``gW2`` totals (h, n) to which the blocks' sums are added
in block order. When ``batch_size`` is None, all workers also share ``H`` (m, h), the
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
    matmul,
    modify_in_place,
    parameter_dtype,
    row_slice,
    softplus,
    subtract,
    sum_rows,
    zeros,
)
from ._parallel import (
    PARALLEL_MIN_SIZE,
    BlockSums,
    available_threads,
    blas_single_threaded,
    block_rows_for,
    map_blocks,
    row_blocks,
)

__all__ = [
    "AutoencoderObjective",
    "ParameterLayout",
    "AutoencoderSpec",
    "Corruption",
    "assemble",
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

        ``theta`` may be an array of any array-API namespace (views where it has them);
        None (no buffer, see :func:`skae._array.buffer`) gives four Nones.
        """
        if theta is None:
            return None, None, None, None
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
        parts = [W1, b1] + ([] if self.tied else [W2]) + [b2]
        dtype = parameter_dtype(xp, array_device(W1))
        return concat([xp.reshape(cast(p, dtype, xp), (-1,)) for p in parts], xp)

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


# --------------------------------------------------------------------------- forward maps
def encode(X, W1, b1, activation="sigmoid"):
    """Hidden activations ``f(X W1ᵀ + b1)`` in the dtype of ``X`` (dense or sparse X)."""
    dtype = X.dtype
    Z = cast(X @ cast(W1, dtype).T, dtype)  # (a sparse product may widen)
    Z += cast(b1, dtype)
    return ACTIVATIONS[activation].forward(Z)


def decode(H, W2, b2, decoder="sigmoid"):
    """Reconstruction ``g(H W2 + b2)`` in the dtype of ``H``."""
    dtype = H.dtype
    Z = H @ cast(W2, dtype)
    Z += cast(b2, dtype)
    return ACTIVATIONS[decoder].forward(Z)


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
    W2c, b2c = cast(W2, dtype), cast(b2, dtype)
    out = buffer(xp, (m,), np.float64)  # NumPy: filled chunk by chunk
    parts = []
    for start in range(0, m, chunk):
        stop = min(start + chunk, m)
        Xc = row_slice(X, start, stop)
        Xd = Xc.toarray() if sp.issparse(Xc) else Xc
        H = encode(Xc, W1, b1, activation)
        if recode is not None:
            H = recode(H)
        Z = H @ W2c
        Z += b2c
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
def _accumulate_product(target, a, b, first, scratch):
    """``target += aᵀ b`` (``target = aᵀ b`` when ``first``), without a new allocation.

    NumPy's matmul hands the transposed view to BLAS (no copy). It has no ``beta``, so
    a second product goes through ``scratch`` (shape of ``target``). Only NumPy's BLAS is
    used: mixing it with SciPy's separately bundled OpenBLAS makes two thread pools spin
    against each other. On other namespaces ``target`` is the previous value (None when
    ``first``) and the sum is returned as a new array.
    """
    xp = array_namespace(a, b)
    if first:
        return matmul(a.T, b, target, xp)
    return modify_in_place(xp, xp.add, target, matmul(a.T, b, scratch, xp), out=target)


@dataclass
class _Workspace:
    """One worker's reused buffers (see the module docstring for what each holds)."""

    H: np.ndarray | None
    R: np.ndarray
    D: np.ndarray
    E: np.ndarray
    S: np.ndarray | None
    C: np.ndarray | None
    gW1: np.ndarray
    gW2: np.ndarray
    T: np.ndarray | None


class AutoencoderObjective:
    """Cost and gradient of one sparse autoencoder on fixed data.

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

    Calling the object with a flat float64 ``theta`` returns ``(J, grad)``; the parts of
    the last evaluation are in :attr:`last_terms` (for progress reports).
    """

    def __init__(
        self, spec, X, *, corruption=None, batch_size=None, n_workers=None, row_offset=0,
        block_rows=None,
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
            block_rows = partition_block_rows(m, n, batch_size)
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
        self.n_workers = k = max(1, min(int(n_workers), len(self.blocks)))
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
        self.f = ACTIVATIONS[spec.activation]
        self.g = ACTIVATIONS[spec.decoder]
        self.last_terms = None
        # Buffers (None on other namespaces than NumPy: every step makes its result).
        self.H = None if self.two_pass else buffer(xp, (m, h), dt)
        self.gW1 = buffer(xp, (h, n), dt)
        self.gW2 = self.gW1 if spec.tied else buffer(xp, (h, n), dt)
        self.workspaces = []
        for _ in range(k):
            gW1 = buffer(xp, (h, n), dt)
            self.workspaces.append(
                _Workspace(
                    H=buffer(xp, (c, h), dt) if self.two_pass else None,
                    R=buffer(xp, (c, n), dt),
                    D=buffer(xp, (c, n), dt),
                    E=buffer(xp, (c, h), dt),
                    S=buffer(xp, (c, n), dt) if spec.loss == "cross_entropy" else None,
                    C=buffer(xp, (c, n), dt) if dense_corrupted_blocks else None,
                    gW1=gW1,
                    gW2=gW1 if spec.tied else buffer(xp, (h, n), dt),
                    T=buffer(xp, (h, n), dt) if spec.tied else None,
                )
            )

    # -- pieces -------------------------------------------------------------------------
    def _input_rows(self, worker, start, stop):
        Xc = row_slice(self.X_input, start, stop)
        if self.corrupt_per_block:
            C = self.workspaces[worker].C
            out = None if C is None else C[: stop - start]
            Xc = self.corruption.apply(Xc, self.row_offset + start, out=out)
        return Xc

    def _encode_into(self, Xc, W1, b1, out):
        """``out = f(Xc W1ᵀ + b1)``, returned (a new array when ``out`` is None)."""
        if sp.issparse(Xc):
            out[...] = Xc @ W1.T
        else:
            out = matmul(Xc, W1.T, out)
        out += b1
        return self.f.forward(out)

    def _hidden(self, worker, start, stop, W1, b1):
        """The hidden activations of rows start:stop: kept from pass 1, or recomputed."""
        if self.two_pass:
            H = self.workspaces[worker].H
            Hc = None if H is None else H[: stop - start]
            return self._encode_into(self._input_rows(worker, start, stop), W1, b1, Hc)
        return row_slice(self.H, start, stop)

    def _weights(self, theta):
        W1, b1, W2, b2 = self.layout.unpack(theta)
        if theta.dtype != self.dtype:
            W1, b1, b2 = (cast(a, self.dtype) for a in (W1, b1, b2))
            W2 = W1 if self.spec.tied else cast(W2, self.dtype)
        return W1, b1, W2, b2

    # -- the two passes, one block at a time -------------------------------------------
    def _forward(self, start, stop, worker, W1, b1):
        """Pass 1 on one block: column sums of H (and H itself when kept)."""
        ws = self.workspaces[worker]
        if self.two_pass:
            out = None if ws.H is None else ws.H[: stop - start]
        else:
            out = None if self.H is None else row_slice(self.H, start, stop)
        H = self._encode_into(self._input_rows(worker, start, stop), W1, b1, out)
        if not self.two_pass and H is not out:  # no buffer: one block of all rows, kept
            self.H = H
        return sum_rows(H, axis=0)

    def _backward(self, start, stop, worker, W1, b1, W2, b2, sparsity):
        """Pass 2 on one block: loss sum, bias gradients and weight gradients (times m).

        The weight gradients are written to the worker's ``gW1``/``gW2``, which stay
        untouched until the block's sums have been added to the totals.
        """
        spec, g, ws = self.spec, self.g, self.workspaces[worker]
        k = stop - start
        R, D, E, S = (None if b is None else b[:k] for b in (ws.R, ws.D, ws.E, ws.S))
        Xin = self._input_rows(worker, start, stop)
        Hc = self._hidden(worker, start, stop, W1, b1)
        Xc = row_slice(self.X, start, stop)
        if self.sparse:
            Xc = Xc.toarray(out=D)  # densify this block only, into D
        R = matmul(Hc, W2, R)
        R += b2
        if spec.loss == "cross_entropy":
            # log(1 + e^z) − x z, from the pre-activation: finite when σ(z) is 0 or 1
            recon = _softplus_sum(R, S) - dot(Xc, R)
            R = g.forward(R)
            D = subtract(R, Xc, D)  # sigmoid + cross-entropy: δ3 · m = X̂ − X
        else:
            R = g.forward(R)
            D = subtract(R, Xc, D)
            recon = 0.5 * dot(D, D)
            D = g.derivative(R, D)  # δ3 · m = (X̂ − X) ⊙ g'(X̂)
        gb2 = sum_rows(D, axis=0)
        gW2 = matmul(Hc.T, D, ws.gW2)
        E = matmul(D, W2.T, E)
        E += sparsity
        E = self.f.derivative(Hc, E)  # δ2 · m, in E; Hc now holds f'(H) (NumPy)
        gb1 = sum_rows(E, axis=0)
        if sp.issparse(Xin):
            contribution = (Xin.T @ E).T
            if spec.tied:
                ws.gW1 += contribution
            else:
                ws.gW1[...] = contribution
            gW1 = ws.gW1
        else:
            # NumPy: into ws.gW1 (which is ws.gW2, holding Hᵀδ3, when tied)
            previous = gW2 if spec.tied else ws.gW1
            gW1 = _accumulate_product(previous, E, Xin, not spec.tied, ws.T)
        return (recon, gb1, gb2, gW1) + (() if spec.tied else (gW2,))

    # -- evaluation ---------------------------------------------------------------------
    def __call__(self, theta):
        theta = cast(theta, self.parameter_dtype, self.xp)
        # BLAS on one thread: the workers' products run at once, and the rounding of a
        # product does not depend on a thread count.
        with blas_single_threaded():
            return self._evaluate(theta)

    def _evaluate(self, theta):
        weights = self._weights(theta)
        rho_hat, sparsity = sparsity_term(self.spec, self.hidden_sums(weights), self.m, self.dtype)
        parts = self.gradient_sums(weights, sparsity)
        J, grad, self.last_terms = assemble(self.spec, theta, self.m, rho_hat, *parts)
        return J, grad

    def hidden_sums(self, weights):
        """Pass 1: the column sums of ``H`` over this object's rows (float64, (h,)).

        ``weights`` is ``self._weights(theta)``. With ``batch_size=None`` ``H`` is kept
        in ``self.H`` for pass 2.
        """
        W1, b1, _, _ = weights
        col_sum = zeros(self.xp, self.spec.n_hidden, self.parameter_dtype, array_device(W1))
        for part in map_blocks(
            lambda start, stop, w: self._forward(start, stop, w, W1, b1),
            self.blocks,
            self.n_workers,
        ):
            col_sum += part
        return col_sum

    def gradient_sums(self, weights, sparsity):
        """Pass 2: ``(recon, gb1, gb2, gW1, gW2)`` summed over this object's rows, block
        by block in block order (all times ``m``; ``gW1``/``gW2`` are this object's
        buffers, ``gW2 is gW1`` when tied). ``sparsity`` comes from :func:`sparsity_term`.
        """
        W1, b1, W2, b2 = weights
        tied = self.spec.tied
        # recon, gb1, gb2, gW1[, gW2]: one total per part (gW2 is gW1 when tied)
        sums = BlockSums([None, None, None, self.gW1] + ([] if tied else [self.gW2]), self.xp)
        map_blocks(
            lambda start, stop, w: self._backward(start, stop, w, W1, b1, W2, b2, sparsity),
            self.blocks,
            self.n_workers,
            combine=sums,
        )
        if sums.empty:  # no rows: nothing was added
            self.gW1.fill(0.0)
            self.gW2.fill(0.0)
            return 0.0, 0.0, 0.0, self.gW1, self.gW2
        recon, gb1, gb2, gW1, *gW2 = sums.totals
        return recon, gb1, gb2, gW1, gW1 if tied else gW2[0]


def partition_block_rows(n_rows, n_features, batch_size):
    """Rows per block of the fixed partition of an objective on ``n_rows`` rows."""
    return min(block_rows_for(n_features, _NOISE_BLOCK), batch_size or n_rows, max(n_rows, 1))


def sparsity_term(spec, col_sum, m, dtype):
    """``(ρ̂, β KL'(ρ, ρ̂) p')`` from the column sums of ``H`` over all ``m`` rows.

    The second is the sparsity term of δ2 (times m), in ``dtype``.
    """
    f = ACTIVATIONS[spec.activation]
    rho_hat = f.firing_scale * (col_sum / m) + f.firing_shift
    sparsity = (spec.beta * f.firing_scale) * kl_divergence_derivative(spec.rho, rho_hat)
    return rho_hat, cast(sparsity, dtype)


def assemble(spec, theta, m, rho_hat, recon, gb1, gb2, gW1_sum, gW2_sum):
    """``(J, grad, terms)`` from pass 2's sums over all ``m`` rows: adds weight decay and
    the KL penalty; ``grad`` is float64, ``terms`` is ``(J, reconstruction, mean ρ̂)``."""
    layout = spec.layout
    xp = array_namespace(theta)
    tW1, _, tW2, _ = layout.unpack(theta)
    decay = dot(tW1, tW1) + (0.0 if spec.tied else dot(tW2, tW2))
    kl = float(xp.sum(kl_divergence(spec.rho, rho_hat))) if spec.beta else 0.0
    J = recon / m + 0.5 * spec.alpha * decay + spec.beta * kl
    dtype = theta.dtype
    # NumPy: each term written into its view of a new float64 vector; other namespaces:
    # the same terms as new arrays, concatenated in the layout's order
    grad = buffer(xp, (layout.size,), dtype)
    out_W1, out_b1, out_W2, out_b2 = layout.unpack(grad)
    parts = [
        _weight_gradient(gW1_sum, m, spec.alpha, tW1, out_W1, xp),
        assign(gb1 / m, out_b1, xp),
    ]
    if not spec.tied:
        parts.append(_weight_gradient(gW2_sum, m, spec.alpha, tW2, out_W2, xp))
    parts.append(assign(gb2 / m, out_b2, xp))
    if grad is None:
        grad = concat([xp.reshape(cast(p, dtype, xp), (-1,)) for p in parts], xp)
    return J, grad, (J, recon / m, float(xp.mean(rho_hat)))


def _weight_gradient(g_sum, m, alpha, weights, out, xp):
    """``g_sum / m + alpha * weights`` in the weights' dtype (into ``out`` on NumPy)."""
    g = cast(modify_in_place(xp, xp.multiply, g_sum, 1.0 / m, out=out), weights.dtype, xp)
    return modify_in_place(xp, xp.add, g, alpha * weights, out=g)
