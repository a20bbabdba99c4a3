"""The sparse autoencoder objective: cost and gradient as pure functions of the parameters.

Notation follows the UFLDL notes (DESIGN.md §1); rows of ``X`` are samples::

    H    = f(X̃ W1ᵀ + b1)                encoder (X̃ = X, or X corrupted once per fit)
    X̂    = g(H W2 + b2)                 decoder (W2 = W1 when tied)
    ρ̂_j  = mean_i p(H_ij)               p(a) = a (sigmoid) or (a + 1) / 2 (tanh)
    J    = (1/m) Σ_i L(x̂_i, x_i) + (α/2)(‖W1‖² + ‖W2‖²) + β Σ_j KL(ρ ‖ ρ̂_j)

:class:`AutoencoderObjective` evaluates ``J`` and ``∇J`` for a flat float64 parameter
vector. It never touches an estimator: for fixed data and settings its output depends
only on ``theta``. It keeps a fixed set of work buffers between calls. Each worker thread
(one per BLAS thread; see below) owns:

==========  ==========  =====================================================
buffer      shape       holds
==========  ==========  =====================================================
``R``       (c, n)      decoder pre-activation, X̂, then g'(X̂)
``D``       (c, n)      X̂ − X, then δ3 (·m); a sparse chunk densified first
``E``       (c, h)      δ3 W2ᵀ + sparsity term, then δ2 (·m)
``S``       (c, n)      scratch for the cross-entropy value only
``H``       (c, h)      hidden activations of the chunk (two-pass only)
``gW1/gW2`` (h, n)      the worker's weight-gradient sums (one when tied)
``T``       (h, n)      scratch for adding a chunk's product to them
==========  ==========  =====================================================

and, when ``batch_size`` is None, all workers share ``H`` (m, h), the hidden activations
kept from the forward to the backward pass (then overwritten by f'(H)); with denoising
and ``batch_size=None`` the corrupted copy of ``X`` is made once per objective. No other
``m × n`` array is ever allocated.

``c`` is the chunk size: ``batch_size`` when given, otherwise a size chosen so that a
chunk of the reconstruction stays in cache. With ``batch_size`` the evaluation makes the
two passes of the UFLDL notes: pass 1 accumulates ρ̂ over chunks, pass 2 recomputes each
chunk's forward pass and accumulates the gradient; peak memory then does not grow with
``m``. The heavy work runs in the data's dtype (float32 stays float32); the gradient is
returned as float64 for SciPy.

Threads: the rows are split into one contiguous range per worker; the workers run both
passes on their ranges at once (NumPy releases the GIL in BLAS and in ufuncs), with
BLAS limited to one thread meanwhile, and their sums are added in a fixed order, so the
result is reproducible for a given number of workers. This parallelises the elementwise
work too (the sigmoid's ``exp`` is a large share of an evaluation), which a
multi-threaded BLAS alone would leave on one core.
"""

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from threadpoolctl import ThreadpoolController

from ._base import ACTIVATIONS, ParameterLayout, kl_divergence, kl_divergence_derivative

__all__ = [
    "AutoencoderObjective",
    "AutoencoderSpec",
    "Corruption",
    "decode",
    "encode",
    "reconstruction_error",
]

# Rows per chunk when batch_size is None: about this many bytes per (chunk, n) buffer.
_CHUNK_BYTES = 1 << 23
# Rows per block of the corruption's random stream; fixed so that the corruption of a row
# does not depend on how rows are chunked.
_NOISE_BLOCK = 256
# Data with fewer elements than this are evaluated by one worker.
_PARALLEL_MIN_SIZE = 1 << 16

_POOLS = {}


def _thread_pool(n_threads):
    """A process-wide pool of ``n_threads`` workers (recreated after a fork)."""
    key = (os.getpid(), n_threads)
    if key not in _POOLS:
        _POOLS[key] = ThreadPoolExecutor(n_threads, thread_name_prefix="skae")
    return _POOLS[key]


def _blas_threads(controller):
    """Threads BLAS may use now (honours threadpoolctl limits and loky's)."""
    counts = [lib.num_threads for lib in controller.select(user_api="blas").lib_controllers]
    return max(1, min(counts)) if counts else 1


@dataclass(frozen=True)
class AutoencoderSpec:
    """The settings of one autoencoder objective (all validated by the estimator)."""

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
@dataclass(frozen=True)
class Corruption:
    """Input corruption of a denoising autoencoder, drawn deterministically per row block.

    ``kind="mask"`` zeroes each input with probability ``level``; ``kind="gaussian"``
    adds N(0, level²). The random numbers for rows ``[k B, (k+1) B)`` come from
    ``numpy.random.default_rng([seed, k])``, so a row is corrupted the same way whether
    the data are processed whole or in chunks, and in every evaluation of one fit.
    """

    kind: str
    level: float
    seed: int

    def _uniform_or_normal(self, start, stop, n_features, dtype):
        B = _NOISE_BLOCK
        first, last = start // B, (stop - 1) // B
        blocks = []
        for k in range(first, last + 1):
            rng = np.random.default_rng([self.seed, k])
            if self.kind == "mask":
                block = rng.random((B, n_features), dtype=np.float64)
            else:
                block = rng.standard_normal((B, n_features), dtype=np.float64)
            blocks.append(block)
        noise = np.concatenate(blocks) if len(blocks) > 1 else blocks[0]
        offset = start - first * B
        return noise[offset : offset + stop - start].astype(dtype, copy=False)

    def apply(self, X, start=0):
        """Return a corrupted copy of rows ``start : start + len(X)``; X is not modified."""
        m, n = X.shape
        if m == 0:
            return X.copy()
        dtype = X.dtype
        noise = self._uniform_or_normal(start, start + m, n, dtype)
        if sp.issparse(X):
            if self.kind != "mask":  # Gaussian noise makes the rows dense
                noise *= self.level
                noise += X
                return noise
            X = X.tocsr(copy=True)
            rows = np.repeat(np.arange(m), np.diff(X.indptr))
            X.data *= noise[rows, X.indices] >= self.level
            X.eliminate_zeros()
            return X
        if self.kind == "mask":
            return np.where(noise >= self.level, X, 0).astype(dtype, copy=False)
        noise *= self.level
        noise += X
        return noise


# --------------------------------------------------------------------------- forward maps
def _cast(a, dtype):
    return np.asarray(a, dtype=dtype)


def encode(X, W1, b1, activation="sigmoid"):
    """Hidden activations ``f(X W1ᵀ + b1)`` in the dtype of ``X`` (dense or sparse X)."""
    dtype = X.dtype
    Z = X @ _cast(W1, dtype).T
    Z = np.asarray(Z, dtype=dtype)
    Z += _cast(b1, dtype)
    return ACTIVATIONS[activation].forward(Z)


def decode(H, W2, b2, decoder="sigmoid"):
    """Reconstruction ``g(H W2 + b2)`` in the dtype of ``H``."""
    dtype = H.dtype
    Z = H @ _cast(W2, dtype)
    Z += _cast(b2, dtype)
    return ACTIVATIONS[decoder].forward(Z)


def _dot(a, b):
    """Sum of ``a * b`` over all elements of two matrices (no BLAS threads involved)."""
    return float(np.einsum("ij,ij->", a, b))


def _chunk_rows(n_features, itemsize):
    return max(32, _CHUNK_BYTES // max(1, n_features * itemsize))


def reconstruction_error(X, W1, b1, W2, b2, *, activation, decoder, loss, batch_size=None):
    """Mean reconstruction loss per sample, ``(1/m) Σ_i L(x̂_i, x_i)``, chunk by chunk.

    The cross-entropy is computed from the decoder's pre-activation ``z`` as
    ``log(1 + e^z) − x z``, which equals ``−x log σ(z) − (1 − x) log(1 − σ(z))`` and
    stays finite when ``σ(z)`` rounds to 0 or 1.
    """
    m, n = X.shape
    dtype = X.dtype
    chunk = batch_size or _chunk_rows(n, dtype.itemsize)
    total = 0.0
    W2c, b2c = _cast(W2, dtype), _cast(b2, dtype)
    for start in range(0, m, chunk):
        Xc = X[start : start + chunk]
        Xd = Xc.toarray() if sp.issparse(Xc) else np.asarray(Xc)
        Z = encode(Xc, W1, b1, activation) @ W2c
        Z += b2c
        if loss == "cross_entropy":
            total += float(np.logaddexp(0.0, Z).sum(dtype=np.float64))
            total -= _dot(Xd, Z)
        else:
            ACTIVATIONS[decoder].forward(Z)
            Z -= Xd
            total += 0.5 * _dot(Z, Z)
    return total / m


# --------------------------------------------------------------------------- objective
def _accumulate_product(target, a, b, first, scratch):
    """``target += aᵀ b`` (``target = aᵀ b`` when ``first``), without a new allocation.

    NumPy's matmul hands the transposed view to BLAS (no copy). It has no ``beta``, so
    later chunks go through ``scratch`` (shape of ``target``). Only NumPy's BLAS is used:
    mixing it with SciPy's separately bundled OpenBLAS makes two thread pools spin
    against each other.
    """
    if first:
        np.matmul(a.T, b, out=target)
    else:
        np.matmul(a.T, b, out=scratch)
        target += scratch


@dataclass
class _Workspace:
    """One worker's reused buffers (see the module docstring for what each holds)."""

    H: np.ndarray
    R: np.ndarray
    D: np.ndarray
    E: np.ndarray
    S: np.ndarray | None
    gW1: np.ndarray
    gW2: np.ndarray
    T: np.ndarray


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
        uses the two-pass chunked evaluation of the UFLDL notes.
    n_workers : int or None
        Threads that evaluate contiguous row ranges in parallel, each with its own
        buffers, BLAS limited to one thread meanwhile. None uses as many as BLAS would
        (which honours threadpoolctl limits and joblib's), and 1 for small data.

    Calling the object with a flat float64 ``theta`` returns ``(J, grad)``; the parts of
    the last evaluation are in :attr:`last_terms` (for progress reports).
    """

    def __init__(self, spec, X, *, corruption=None, batch_size=None, n_workers=None):
        self.spec = spec
        self.layout = spec.layout
        self.X = X
        self.sparse = sp.issparse(X)
        self.dtype = dt = np.dtype(X.dtype)
        self.m = m = X.shape[0]
        self.corruption = corruption
        self.two_pass = batch_size is not None
        h, n = spec.n_hidden, spec.n_features
        self.threadpools = ThreadpoolController()
        if n_workers is None:
            n_workers = _blas_threads(self.threadpools) if m * n >= _PARALLEL_MIN_SIZE else 1
        self.n_workers = k = max(1, min(n_workers, m))
        # Worker w evaluates rows bounds[w]:bounds[w + 1], in chunks of `chunk` rows.
        self.bounds = [m * w // k for w in range(k + 1)]
        rows = max(self.bounds[w + 1] - self.bounds[w] for w in range(k))
        self.chunk = c = max(1, min(rows, batch_size or _chunk_rows(n, dt.itemsize)))
        # The encoder's input: corrupted once here when everything is in memory; per
        # chunk (deterministically, the same in every evaluation) in the two-pass
        # evaluation, and for Gaussian noise on sparse input, which would make it dense.
        self.corrupt_per_chunk = corruption is not None and (
            self.two_pass or (self.sparse and corruption.kind == "gaussian")
        )
        if corruption is not None and not self.corrupt_per_chunk:
            self.X_input = corruption.apply(X, 0)
        else:
            self.X_input = X
        self.H = None if self.two_pass else np.empty((m, h), dtype=dt)
        self.workspaces = []
        for _ in range(k):
            gW1 = np.empty((h, n), dtype=dt)
            self.workspaces.append(
                _Workspace(
                    H=np.empty((c, h), dtype=dt) if self.two_pass else None,
                    R=np.empty((c, n), dtype=dt),
                    D=np.empty((c, n), dtype=dt),
                    E=np.empty((c, h), dtype=dt),
                    S=np.empty((c, n), dtype=dt) if spec.loss == "cross_entropy" else None,
                    gW1=gW1,
                    gW2=gW1 if spec.tied else np.empty((h, n), dtype=dt),
                    T=np.empty((h, n), dtype=dt),
                )
            )
        self.f = ACTIVATIONS[spec.activation]
        self.g = ACTIVATIONS[spec.decoder]
        self.last_terms = None

    # -- pieces -------------------------------------------------------------------------
    def _input_rows(self, start, stop):
        Xc = self.X_input[start:stop]
        if self.corrupt_per_chunk:
            Xc = self.corruption.apply(Xc, start)
        return Xc

    def _chunks(self, worker):
        lo, hi = self.bounds[worker], self.bounds[worker + 1]
        for start in range(lo, hi, self.chunk):
            yield start, min(start + self.chunk, hi)

    def _map(self, function, *args):
        """``[function(w, *args) for w in workers]``, on the workers' threads."""
        if self.n_workers == 1:
            return [function(0, *args)]
        pool = _thread_pool(self.n_workers)
        return list(pool.map(lambda w: function(w, *args), range(self.n_workers)))

    def _encode_into(self, Xc, W1, b1, out):
        """``out = f(Xc W1ᵀ + b1)``; returns the column sums of ``out`` (float64)."""
        if sp.issparse(Xc):
            out[...] = Xc @ W1.T
        else:
            np.matmul(Xc, W1.T, out=out)
        out += b1
        self.f.forward(out)
        return out.sum(axis=0, dtype=np.float64)

    def _hidden(self, worker, start, stop, W1, b1):
        """The hidden activations of rows start:stop: kept from pass 1, or recomputed."""
        if self.two_pass:
            Hc = self.workspaces[worker].H[: stop - start]
            self._encode_into(self._input_rows(start, stop), W1, b1, Hc)
            return Hc
        return self.H[start:stop]

    def _weights(self, theta):
        W1, b1, W2, b2 = self.layout.unpack(theta)
        if self.dtype != np.float64:
            W1, b1, b2 = (_cast(a, self.dtype) for a in (W1, b1, b2))
            W2 = W1 if self.spec.tied else _cast(W2, self.dtype)
        return W1, b1, W2, b2

    # -- the two passes -----------------------------------------------------------------
    def _forward(self, worker, W1, b1):
        """Pass 1 over the worker's rows: column sums of H (and H itself when kept)."""
        col_sum = 0.0
        for start, stop in self._chunks(worker):
            ws = self.workspaces[worker]
            out = ws.H[: stop - start] if self.two_pass else self.H[start:stop]
            col_sum = col_sum + self._encode_into(self._input_rows(start, stop), W1, b1, out)
        return col_sum

    def _backward(self, worker, W1, b1, W2, b2, sparsity):
        """Pass 2 over the worker's rows: loss sum, bias gradients, weight gradients.

        The weight gradients (times m) are accumulated in the worker's ``gW1``/``gW2``.
        """
        spec, g, ws = self.spec, self.g, self.workspaces[worker]
        recon, gb1, gb2 = 0.0, 0.0, 0.0
        first = True
        for start, stop in self._chunks(worker):
            k = stop - start
            R, D, E = ws.R[:k], ws.D[:k], ws.E[:k]
            Xin = self._input_rows(start, stop)
            Hc = self._hidden(worker, start, stop, W1, b1)
            Xc = self.X[start:stop]
            if self.sparse:
                Xc = Xc.toarray(out=D)  # densify this chunk only, into D
            np.matmul(Hc, W2, out=R)
            R += b2
            if spec.loss == "cross_entropy":
                # log(1 + e^z) − x z, from the pre-activation: finite when σ(z) is 0 or 1
                S = ws.S[:k]
                np.logaddexp(0.0, R, out=S)
                recon += float(S.sum(dtype=np.float64)) - _dot(Xc, R)
                g.forward(R)
                np.subtract(R, Xc, out=D)  # sigmoid + cross-entropy: δ3 · m = X̂ − X
            else:
                g.forward(R)
                np.subtract(R, Xc, out=D)
                recon += 0.5 * _dot(D, D)
                g.derivative(R, D)  # δ3 · m = (X̂ − X) ⊙ g'(X̂)
            gb2 = gb2 + D.sum(axis=0, dtype=np.float64)
            _accumulate_product(ws.gW2, Hc, D, first, ws.T)
            np.matmul(D, W2.T, out=E)
            E += sparsity
            self.f.derivative(Hc, E)  # δ2 · m, in E; Hc now holds f'(H)
            gb1 = gb1 + E.sum(axis=0, dtype=np.float64)
            if sp.issparse(Xin):
                contribution = (Xin.T @ E).T
                if first and not spec.tied:
                    ws.gW1[...] = contribution
                else:
                    ws.gW1 += contribution
            else:
                _accumulate_product(ws.gW1, E, Xin, first and not spec.tied, ws.T)
            first = False
        return recon, gb1, gb2, not first

    # -- evaluation ---------------------------------------------------------------------
    def __call__(self, theta):
        theta = np.asarray(theta, dtype=np.float64)
        if self.n_workers == 1:
            return self._evaluate(theta)
        # The workers' products run at once, one BLAS thread each.
        with self.threadpools.limit(limits=1, user_api="blas"):
            return self._evaluate(theta)

    def _evaluate(self, theta):
        spec, m = self.spec, self.m
        W1, b1, W2, b2 = self._weights(theta)
        f = self.f

        # Pass 1: hidden activations (kept, or only summed) and the firing rates ρ̂.
        col_sum = np.zeros(spec.n_hidden)
        for part in self._map(self._forward, W1, b1):
            col_sum += part
        rho_hat = f.firing_scale * (col_sum / m) + f.firing_shift
        # Sparsity term of δ2 (times m): β KL'(ρ, ρ̂) p'.
        sparsity = (spec.beta * f.firing_scale) * kl_divergence_derivative(spec.rho, rho_hat)
        sparsity = sparsity.astype(self.dtype)

        # Pass 2: reconstruction and gradient, chunk by chunk, summed over the workers.
        results = self._map(self._backward, W1, b1, W2, b2, sparsity)
        recon = sum(r[0] for r in results)
        gb1 = sum(r[1] for r in results)
        gb2 = sum(r[2] for r in results)
        busy = [ws for ws, r in zip(self.workspaces, results) if r[3]]
        gW1_sum, gW2_sum = busy[0].gW1, busy[0].gW2
        for ws in busy[1:]:
            gW1_sum += ws.gW1
            if not spec.tied:
                gW2_sum += ws.gW2

        # Assemble J and the float64 gradient.
        tW1, _, tW2, _ = self.layout.unpack(theta)
        decay = _dot(tW1, tW1) + (0.0 if spec.tied else _dot(tW2, tW2))
        kl = float(np.sum(kl_divergence(spec.rho, rho_hat))) if spec.beta else 0.0
        J = recon / m + 0.5 * spec.alpha * decay + spec.beta * kl

        grad = np.empty(self.layout.size)
        gW1, gbias1, gW2, gbias2 = self.layout.unpack(grad)
        np.multiply(gW1_sum, 1.0 / m, out=gW1)
        gW1 += spec.alpha * tW1
        gbias1[...] = gb1 / m
        if not spec.tied:
            np.multiply(gW2_sum, 1.0 / m, out=gW2)
            gW2 += spec.alpha * tW2
        gbias2[...] = gb2 / m
        self.last_terms = (J, recon / m, float(np.mean(rho_hat)))
        return J, grad
