"""Activations and the sparsity penalty: small pure functions in a dict.

Each activation has an in-place forward map and an in-place derivative on NumPy arrays
(no temporaries; on other array namespaces the same operations return new arrays), and
the affine map from its output to a firing rate in [0, 1] for the KL sparsity penalty.
"""

from dataclasses import dataclass

import numpy as np

from ._array import array_namespace, modify_in_place

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "clip_rate",
    "kl_divergence",
    "kl_divergence_derivative",
]


def sigmoid_(z, xp=None):
    """Logistic sigmoid ``1 / (1 + exp(-z))``, in place on ``z`` on NumPy.

    No temporaries and no overflow warning: ``exp`` may overflow to ``inf`` for very
    negative ``z``, where ``1 / inf`` is the exact limit 0, so the flag is silenced. On
    another namespace the same operations make a new array.
    """
    xp = xp or array_namespace(z)
    with np.errstate(over="ignore"):
        z = modify_in_place(xp, xp.negative, z, out=z)
        z = modify_in_place(xp, xp.exp, z, out=z)
        z = modify_in_place(xp, xp.add, z, 1.0, out=z)
        return modify_in_place(xp, xp.divide, 1.0, z, out=z)


def tanh_(z, xp=None):
    """Hyperbolic tangent, in place on ``z`` on NumPy (a new array on other namespaces)."""
    xp = xp or array_namespace(z)
    return modify_in_place(xp, xp.tanh, z, out=z)


def identity_(z, xp=None):
    """Identity (linear decoder): nothing to do."""
    return z


def sigmoid_derivative_(a, out, xp=None):
    """``out * a (1 - a)`` where ``a = sigmoid(z)``.

    On NumPy two in-place passes and no temporary: ``out`` is multiplied in place and
    ``a`` is overwritten by ``1 - a`` (the caller no longer needs it). On other
    namespaces the result is a new array.
    """
    xp = xp or array_namespace(a, out)
    out = modify_in_place(xp, xp.multiply, out, a, out=out)
    a = modify_in_place(xp, xp.subtract, 1.0, a, out=a)
    return modify_in_place(xp, xp.multiply, out, a, out=out)


def tanh_derivative_(a, out, xp=None):
    """``out * (1 - a²)`` where ``a = tanh(z)``; on NumPy in place on ``out``, with ``a``
    overwritten by ``1 - a²`` (on other namespaces a new array)."""
    xp = xp or array_namespace(a, out)
    a = modify_in_place(xp, xp.multiply, a, a, out=a)
    a = modify_in_place(xp, xp.subtract, 1.0, a, out=a)
    return modify_in_place(xp, xp.multiply, out, a, out=out)


def identity_derivative_(a, out, xp=None):
    """Linear unit: the derivative is 1, ``out`` is unchanged."""
    return out


@dataclass(frozen=True)
class Activation:
    """An activation with its forward map and derivative (in place on NumPy).

    ``forward(z, xp)`` returns ``f(z)``; ``derivative(a, out, xp)`` returns
    ``out * f'(z)`` from ``a = f(z)``. On NumPy both work in place (``a`` is consumed).

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
def kl_divergence(rho, rho_hat, xp=None):
    """KL divergence between Bernoulli(``rho``) and Bernoulli(``rho_hat``), elementwise.

    ``rho_hat`` is clipped into ``[eps, 1 - eps]`` (float64 machine epsilon) so that a
    unit that is always off or always on gives a large finite penalty, not ``inf``.
    """
    xp = xp or array_namespace(rho_hat)
    q = clip_rate(rho_hat, xp)
    return rho * xp.log(rho / q) + (1.0 - rho) * xp.log((1.0 - rho) / (1.0 - q))


def kl_divergence_derivative(rho, rho_hat, xp=None):
    """Derivative of :func:`kl_divergence` with respect to ``rho_hat``."""
    q = clip_rate(rho_hat, xp)
    return -rho / q + (1.0 - rho) / (1.0 - q)


def clip_rate(rho_hat, xp=None):
    """``rho_hat`` clipped into ``[eps, 1 - eps]`` (float64 machine epsilon), as a new
    array in float64 (where the device has it: in ``rho_hat``'s own dtype elsewhere)."""
    xp = xp or array_namespace(rho_hat)
    eps = float(np.finfo(np.float64).eps)
    if xp is np:  # also for lists and scalars
        rho_hat = np.asarray(rho_hat, dtype=np.float64)
    return xp.clip(rho_hat, eps, 1.0 - eps)

