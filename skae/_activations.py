"""Activations and the sparsity penalty: small pure functions in a dict.

Each activation has an in-place forward map and an in-place derivative on NumPy arrays
(no temporaries; on other array namespaces the same operations return new arrays), and
the affine map from its output to a firing rate in [0, 1] for the KL sparsity penalty.
"""

from dataclasses import dataclass

import numpy as np

from ._array import array_namespace

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "clip_rate",
    "kl_divergence",
    "kl_divergence_derivative",
]


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
    """``rho_hat`` clipped into ``[eps, 1 - eps]`` (float64 machine epsilon)."""
    eps = np.finfo(np.float64).eps
    xp = array_namespace(rho_hat)
    if xp is not np:  # in rho_hat's own dtype (float64 unless the device lacks it)
        return xp.clip(rho_hat, float(eps), float(1.0 - eps))
    return np.clip(np.asarray(rho_hat, dtype=np.float64), eps, 1.0 - eps)

