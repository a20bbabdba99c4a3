"""The sparse autoencoder objective: cost and gradient as pure functions of the parameters.

Notation follows the UFLDL notes (DESIGN.md §1); rows of ``X`` are samples::

    H    = f(X̃ W1ᵀ + b1)                encoder (X̃ = X, or X corrupted once per fit)
    X̂    = g(H W2 + b2)                 decoder (W2 = W1 when tied)
    ρ̂_j  = mean_i p(H_ij)               p(a) = a (sigmoid) or (a + 1) / 2 (tanh)
    J    = (1/m) Σ_i L(x̂_i, x_i) + (α/2)(‖W1‖² + ‖W2‖²) + β Σ_j KL(ρ ‖ ρ̂_j)

:class:`AutoencoderObjective` evaluates ``J`` and ``∇J`` for a flat float64 parameter
vector. It never touches an estimator: for fixed data and settings its output depends
only on ``theta``. It keeps a small set of work buffers between calls, all independent
of the number of rows ``m`` except the hidden activations ``H`` (``m × n_hidden``) kept
when ``batch_size`` is None:

==========  ==================  ==========================================
buffer      shape               holds
==========  ==================  ==========================================
``H``       (m, h) or (c, h)    hidden activations, then δ2 in place
``R``       (c, n)              decoder pre-activation, X̂, then g'(X̂)
``D``       (c, n)              X̂ − X, then δ3 (·m)
``E``       (c, h)              δ3 W2ᵀ + sparsity term
``S``       (c, n)              scratch for the cross-entropy value only
==========  ==================  ==========================================

``c`` is the chunk size: ``batch_size`` when given, otherwise a size chosen so that a
chunk of the reconstruction fits in cache. Rows are processed chunk by chunk, so no
``m × n`` temporary is ever allocated. With ``batch_size`` the evaluation makes the two
passes of the UFLDL notes: pass 1 accumulates ρ̂ over chunks, pass 2 recomputes each
chunk's forward pass and accumulates the gradient; peak memory then does not grow with
``m``. The heavy work runs in the data's dtype (float32 stays float32); the gradient is
returned as float64 for SciPy.
"""

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_info

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
# Elementwise work on fewer elements than this runs in the calling thread.
_PARALLEL_MIN_SIZE = 1 << 16

_POOLS = {}


def _thread_pool(n_threads):
    """A process-wide pool of ``n_threads`` workers (recreated after a fork)."""
    key = (os.getpid(), n_threads)
    if key not in _POOLS:
        _POOLS[key] = ThreadPoolExecutor(n_threads, thread_name_prefix="skae")
    return _POOLS[key]


def _blas_threads():
    """Threads NumPy's BLAS may use now (honours threadpoolctl limits and loky's)."""
    counts = [
        info["num_threads"] for info in threadpool_info() if info.get("user_api") == "blas"
    ]
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


def _dense_rows(X, start, stop):
    return X[start:stop]


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
            total -= float(np.vdot(Xd, Z))
        else:
            ACTIVATIONS[decoder].forward(Z)
            Z -= Xd
            total += 0.5 * float(np.vdot(Z, Z))
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

    Calling the object with a flat float64 ``theta`` returns ``(J, grad)``; the parts of
    the last evaluation are in :attr:`last_terms` (for progress reports).
    """

    def __init__(self, spec, X, *, corruption=None, batch_size=None):
        self.spec = spec
        self.layout = spec.layout
        self.X = X
        self.sparse = sp.issparse(X)
        self.dtype = np.dtype(X.dtype)
        self.m = X.shape[0]
        self.corruption = corruption
        self.two_pass = batch_size is not None
        h, n = spec.n_hidden, spec.n_features
        self.chunk = min(self.m, batch_size or _chunk_rows(n, self.dtype.itemsize))
        self.chunk = max(self.chunk, 1)
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
        dt, c = self.dtype, self.chunk
        self.H = np.empty((c if self.two_pass else self.m, h), dtype=dt)
        self.R = np.empty((c, n), dtype=dt)
        self.D = np.empty((c, n), dtype=dt)
        self.E = np.empty((c, h), dtype=dt)
        self.S = np.empty((c, n), dtype=dt) if spec.loss == "cross_entropy" else None
        self.gW1 = np.empty((h, n), dtype=dt)
        self.gW2 = self.gW1 if spec.tied else np.empty((h, n), dtype=dt)
        self.T = np.empty((h, n), dtype=dt) if self.chunk < self.m or spec.tied else None
        self.f = ACTIVATIONS[spec.activation]
        self.g = ACTIVATIONS[spec.decoder]
        self.n_threads = _blas_threads()
        self.last_terms = None

    # -- pieces -------------------------------------------------------------------------
    def _input_rows(self, start, stop):
        Xc = self.X_input[start:stop]
        if self.corrupt_per_chunk:
            Xc = self.corruption.apply(Xc, start)
        return Xc

    def _rowwise(self, block, *arrays):
        """Run ``block`` on row slices of ``arrays``; return the sum of its results.

        NumPy's ufuncs release the GIL, so the elementwise work runs on as many threads
        as BLAS uses for the products, instead of on one core while the others idle.
        The blocks and the order of the sum are fixed, so results are reproducible.
        """
        rows = arrays[0].shape[0]
        k = min(self.n_threads, rows)
        if k <= 1 or arrays[0].size < _PARALLEL_MIN_SIZE:
            return block(*arrays)
        edges = [rows * i // k for i in range(k + 1)]
        parts = [tuple(a[edges[i] : edges[i + 1]] for a in arrays) for i in range(k)]
        results = list(_thread_pool(k).map(lambda part: block(*part), parts))
        total = results[0]
        for r in results[1:]:
            total = tuple(a + b for a, b in zip(total, r))
        return total

    def _encode_into(self, Xc, W1, b1, out):
        """``out = f(Xc W1ᵀ + b1)``; returns the column sums of ``out`` (float64)."""
        if sp.issparse(Xc):
            out[...] = Xc @ W1.T
        else:
            np.matmul(Xc, W1.T, out=out)
        forward = self.f.forward

        def block(Z):
            Z += b1
            forward(Z)
            return (Z.sum(axis=0, dtype=np.float64),)

        return self._rowwise(block, out)[0]

    def _reconstruct(self, R, Xc, D, S, b2):
        """Decoder elementwise work on one chunk: R = X̂, D = δ3 · m, the loss sum.

        Returns ``(loss sum, column sums of D)``. ``S`` is scratch for cross-entropy.
        """
        g, cross_entropy = self.g, self.spec.loss == "cross_entropy"

        def block(R, Xc, D, S):
            R += b2
            if cross_entropy:
                # log(1 + e^z) − x z, from the pre-activation: finite when σ(z) is 0 or 1
                np.logaddexp(0.0, R, out=S)
                part = float(S.sum(dtype=np.float64)) - float(np.vdot(Xc, R))
                g.forward(R)
                np.subtract(R, Xc, out=D)  # sigmoid + cross-entropy: δ3 · m = X̂ − X
            else:
                g.forward(R)
                np.subtract(R, Xc, out=D)
                part = 0.5 * float(np.vdot(D, D))
                g.derivative(R, D)  # δ3 · m = (X̂ − X) ⊙ g'(X̂)
            return part, D.sum(axis=0, dtype=np.float64)

        return self._rowwise(block, R, Xc, D, R if S is None else S)

    def _backpropagate(self, E, Hc, sparsity):
        """``E = (E + sparsity) ⊙ f'(H)`` in place (δ2 · m); returns its column sums."""
        derivative = self.f.derivative

        def block(E, Hc):
            E += sparsity
            derivative(Hc, E)
            return (E.sum(axis=0, dtype=np.float64),)

        return self._rowwise(block, E, Hc)[0]

    def _weights(self, theta):
        W1, b1, W2, b2 = self.layout.unpack(theta)
        if self.dtype != np.float64:
            W1, b1, b2 = (_cast(a, self.dtype) for a in (W1, b1, b2))
            W2 = W1 if self.spec.tied else _cast(W2, self.dtype)
        return W1, b1, W2, b2

    # -- evaluation ---------------------------------------------------------------------
    def __call__(self, theta):
        spec, m, c = self.spec, self.m, self.chunk
        W1, b1, W2, b2 = self._weights(np.asarray(theta, dtype=np.float64))
        f = self.f

        # Pass 1: hidden activations (kept, or only summed) and the firing rates ρ̂.
        col_sum = np.zeros(spec.n_hidden)
        if self.two_pass or self.corrupt_per_chunk:
            for start in range(0, m, c):
                stop = min(start + c, m)
                H = self.H[: stop - start] if self.two_pass else self.H[start:stop]
                col_sum += self._encode_into(self._input_rows(start, stop), W1, b1, H)
        else:
            col_sum += self._encode_into(self.X_input, W1, b1, self.H)
        rho_hat = f.firing_scale * (col_sum / m) + f.firing_shift
        # Sparsity term of δ2 (times m): β KL'(ρ, ρ̂) p'.
        sparsity = (spec.beta * f.firing_scale) * kl_divergence_derivative(spec.rho, rho_hat)
        sparsity = sparsity.astype(self.dtype)

        # Pass 2: reconstruction and gradient, chunk by chunk.
        recon = 0.0
        gb1 = np.zeros(spec.n_hidden)
        gb2 = np.zeros(spec.n_features)
        first = True
        for start in range(0, m, c):
            stop = min(start + c, m)
            k = stop - start
            R, D, E = self.R[:k], self.D[:k], self.E[:k]
            S = None if self.S is None else self.S[:k]
            Xin = self._input_rows(start, stop)
            if self.two_pass:
                Hc = self.H[:k]
                self._encode_into(Xin, W1, b1, Hc)
            else:
                Hc = self.H[start:stop]
            Xc = self.X[start:stop]
            if self.sparse:
                Xc = Xc.toarray(out=D)  # densify this chunk only, into D
            np.matmul(Hc, W2, out=R)
            part, d_sum = self._reconstruct(R, Xc, D, S, b2)
            recon += part
            gb2 += d_sum
            _accumulate_product(self.gW2, Hc, D, first, self.T)
            np.matmul(D, W2.T, out=E)
            gb1 += self._backpropagate(E, Hc, sparsity)  # E = δ2 · m; Hc is now f'(H)
            if sp.issparse(Xin):
                contribution = (Xin.T @ E).T
                if first and not spec.tied:
                    self.gW1[...] = contribution
                else:
                    self.gW1 += contribution
            else:
                _accumulate_product(self.gW1, E, Xin, first and not spec.tied, self.T)
            first = False

        # Assemble J and the float64 gradient.
        theta = np.asarray(theta, dtype=np.float64)
        tW1, _, tW2, _ = self.layout.unpack(theta)
        decay = float(np.vdot(tW1, tW1)) + (0.0 if spec.tied else float(np.vdot(tW2, tW2)))
        kl = float(np.sum(kl_divergence(spec.rho, rho_hat))) if spec.beta else 0.0
        J = recon / m + 0.5 * spec.alpha * decay + spec.beta * kl

        grad = np.empty(self.layout.size)
        gW1, gbias1, gW2, gbias2 = self.layout.unpack(grad)
        np.multiply(self.gW1, 1.0 / m, out=gW1)
        gW1 += spec.alpha * tW1
        gbias1[...] = gb1 / m
        if not spec.tied:
            np.multiply(self.gW2, 1.0 / m, out=gW2)
            gW2 += spec.alpha * tW2
        gbias2[...] = gb2 / m
        self.last_terms = (J, recon / m, float(np.mean(rho_hat)))
        return J, grad
