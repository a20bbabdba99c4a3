"""The finite-difference gradient check (public as :func:`skae.check_gradient`)."""

from numbers import Real

import numpy as np

from ._validation import as_real_floats

__all__ = ["check_gradient"]


def _objective_value(J, where):
    """``J`` as a float: a real number (a Python or NumPy scalar, or a 0-d array)."""
    value = np.asarray(J)
    if value.ndim != 0 or not (
        np.issubdtype(value.dtype, np.floating) or np.issubdtype(value.dtype, np.integer)
    ):
        raise ValueError(
            f"fun must return (J, grad) with J a real number (a float); got "
            f"{type(J).__name__} {J!r} {where}."
        )
    return float(value)


def check_gradient(fun, theta, *, epsilon=1e-4):
    """Compare an analytic gradient with central finite differences.

    This is the gradient check of the UFLDL notes: each coordinate ``i`` of ``theta`` is
    moved by ``±epsilon`` and ``(J(θ + ε e_i) − J(θ − ε e_i)) / (2ε)`` is compared with
    the gradient returned by ``fun``.

    Parameters
    ----------
    fun : callable
        ``fun(theta) -> (J, grad)``: the objective value (a float) and its gradient
        (an array with the shape of ``theta``). ``fun`` receives ``theta`` flattened.
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
        If ``epsilon`` is not a positive finite number or too small to move ``theta``,
        or ``fun`` returns an objective that is not a real number, or a gradient of the
        wrong shape, complex or non-finite values.

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
    # as a float64 (a NumPy float32 step would make the differences float32; a Fraction
    # has no isfinite)
    step = float(epsilon) if isinstance(epsilon, Real) and not isinstance(epsilon, bool) else 0
    if not (np.isfinite(step) and step > 0):
        raise ValueError(f"epsilon must be a positive finite step, got {epsilon!r}.")
    epsilon = step
    given_shape = np.shape(theta)
    theta = as_real_floats(theta, "theta").ravel()
    J, analytic = fun(theta.copy())
    _objective_value(J, "at theta")
    analytic = as_real_floats(analytic, "the gradient fun returned")
    if analytic.shape not in (theta.shape, given_shape):
        raise ValueError(
            f"fun returned a gradient of shape {analytic.shape} for theta of shape "
            f"{given_shape} (fun receives it flattened, {theta.shape}); return the "
            "gradient in one of those shapes."
        )
    analytic = analytic.ravel()
    if not np.all(np.isfinite(analytic)):
        raise ValueError(
            "fun returned a gradient with NaN or infinite entries; the check compares "
            "finite gradients (check fun at this theta)."
        )
    numeric = np.empty_like(theta)
    for i in range(theta.size):
        old = theta[i]
        if old + epsilon == old or old - epsilon == old:
            raise ValueError(
                f"epsilon={epsilon!r} does not move theta[{i}] = {float(old)!r} (theta ± "
                "epsilon == theta in float64); use an epsilon of about 1e-4 times the "
                "size of theta's entries."
            )
        theta[i] = old + epsilon
        j_plus = _objective_value(fun(theta.copy())[0], f"at theta[{i}] + epsilon")
        theta[i] = old - epsilon
        j_minus = _objective_value(fun(theta.copy())[0], f"at theta[{i}] - epsilon")
        theta[i] = old
        if not (np.isfinite(j_plus) and np.isfinite(j_minus)):
            raise ValueError(
                f"fun returned a non-finite objective ({j_plus!r} at theta[{i}] + epsilon, "
                f"{j_minus!r} at theta[{i}] - epsilon); the check compares finite values "
                "(check fun there, or use a smaller epsilon)."
            )
        numeric[i] = (j_plus - j_minus) / (2.0 * epsilon)
    # Both divided by their largest entry when it is far from 1, so that the norms'
    # squares neither overflow nor underflow (the ratio does not change).
    scale = max(float(np.max(np.abs(numeric), initial=0.0)),
                float(np.max(np.abs(analytic), initial=0.0)))
    if scale == 0.0:
        return 0.0
    if not 1e-150 <= scale <= 1e150:
        numeric, analytic = numeric / scale, analytic / scale
    difference = np.linalg.norm(numeric - analytic)
    denominator = np.linalg.norm(numeric + analytic)
    if denominator == 0.0:  # both zero (correct), or one exactly minus the other
        return 0.0 if difference == 0.0 else float("inf")
    return float(difference / denominator)

