"""The finite-difference gradient check (public as :func:`skae.check_gradient`)."""

from numbers import Real

import numpy as np

from ._validation import as_real_floats

__all__ = ["check_gradient"]


def check_gradient(fun, theta, *, epsilon=1e-4):
    """Compare an analytic gradient with central finite differences.

    This is the gradient check of the UFLDL notes: each coordinate ``i`` of ``theta`` is
    moved by ``±epsilon`` and ``(J(θ + ε e_i) − J(θ − ε e_i)) / (2ε)`` is compared with
    the gradient returned by ``fun``.

    Parameters
    ----------
    fun : callable
        ``fun(theta) -> (J, grad)``: the objective value (a float) and its gradient
        (an array with the shape of ``theta``).
    theta : array-like of shape (n_params,)
        The point at which to check. It is not modified.
    epsilon : float, default=1e-4
        The finite-difference step.

    Returns
    -------
    relative_difference : float
        ``‖num − ana‖ / ‖num + ana‖``, where ``num`` is the numerical and ``ana`` the
        analytic gradient. A correct float64 gradient gives about 1e-9 or less; a
        wrong one gives a value near 1. It is 0.0 when both gradients are exactly zero,
        and ``inf`` when one is exactly minus the other.

    Raises
    ------
    ValueError
        If ``epsilon`` is not a positive finite number, or ``fun`` returns a gradient of
        the wrong shape, complex or non-finite values.

    Examples
    --------
    >>> import numpy as np
    >>> from skae import check_gradient
    >>> def fun(theta):
    ...     return np.sum(theta ** 3), 3 * theta ** 2
    >>> check_gradient(fun, np.array([1.0, -2.0, 0.5])) < 1e-8
    True
    >>> def wrong(theta):
    ...     return np.sum(theta ** 3), 2 * theta ** 2
    >>> check_gradient(wrong, np.array([1.0, -2.0, 0.5])) > 0.1
    True
    """
    if not (
        isinstance(epsilon, Real)
        and not isinstance(epsilon, bool)
        and np.isfinite(epsilon)
        and epsilon > 0
    ):
        raise ValueError(f"epsilon must be a positive finite step, got {epsilon!r}.")
    theta = as_real_floats(theta, "theta").ravel()
    _, analytic = fun(theta.copy())
    analytic = as_real_floats(analytic, "the gradient fun returned").ravel()
    if analytic.shape != theta.shape:
        raise ValueError(
            f"fun returned a gradient of shape {analytic.shape} for theta of shape "
            f"{theta.shape}; the gradient must have one entry per parameter."
        )
    if not np.all(np.isfinite(analytic)):
        raise ValueError(
            "fun returned a gradient with NaN or infinite entries; the check compares "
            "finite gradients (check fun at this theta)."
        )
    numeric = np.empty_like(theta)
    for i in range(theta.size):
        old = theta[i]
        theta[i] = old + epsilon
        j_plus = fun(theta.copy())[0]
        theta[i] = old - epsilon
        j_minus = fun(theta.copy())[0]
        theta[i] = old
        if not (np.isfinite(j_plus) and np.isfinite(j_minus)):
            raise ValueError(
                f"fun returned a non-finite objective ({j_plus!r} at theta[{i}] + epsilon, "
                f"{j_minus!r} at theta[{i}] - epsilon); the check compares finite values "
                "(check fun there, or use a smaller epsilon)."
            )
        numeric[i] = (j_plus - j_minus) / (2.0 * epsilon)
    difference = np.linalg.norm(numeric - analytic)
    denominator = np.linalg.norm(numeric + analytic)
    if denominator == 0.0:  # both zero (correct), or one exactly minus the other
        return 0.0 if difference == 0.0 else float("inf")
    return float(difference / denominator)

