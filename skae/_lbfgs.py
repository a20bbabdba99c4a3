"""L-BFGS written against the array API: its vectors stay in the namespace and on the device
of the starting point.

:func:`minimize_lbfgs` is a pure function: the two-loop recursion over the last ``m``
steps (Nocedal & Wright, algorithm 7.4) with the initial Hessian scaled by
``sᵀy / yᵀy``, and a line search satisfying the strong Wolfe conditions with cubic
interpolation (Nocedal & Wright, algorithms 3.5 and 3.6, in the form used by minFunc and
``torch.optim.LBFGS``). The vectors ``x``, ``g``, ``d`` and the ``s``/``y`` history are
arrays of the namespace of ``x0`` (NumPy, ``array_api_strict``, PyTorch, CuPy: whatever
``array_api_compat`` recognises), on its device and in its dtype; only scalars (the loss,
directional derivatives, step lengths) come back to Python, one synchronisation per
evaluation. On NumPy the work vectors (the direction, the trial point) are reused by every
iteration, a dropped pair's vectors hold the next pair, and the recursion's updates are BLAS
``axpy`` passes: with ``m`` pairs of ``n`` parameters the history is ``16 m n`` bytes,
larger than the caches at the autoencoder's sizes, so the direction costs what reading it
twice costs. The iterates handed to the callback and returned are never overwritten.

It stops by the rules of SciPy's L-BFGS-B (without bounds), so that
:func:`skae._optimize.run_lbfgs` treats both alike:

- ``status 0``: ``max|g| <= gtol`` (checked at the start and after every iteration), or
  the relative reduction ``(f_k − f_{k+1}) / max(|f_k|, |f_{k+1}|, 1) <= ftol``;
- ``status 1``: ``maxiter`` iterations done, or ``maxfun`` evaluations used;
- ``status 2``: the line search found no decrease along the L-BFGS direction nor, after
  the history is dropped, along ``−g`` (L-BFGS-B's ``ABNORMAL_TERMINATION_IN_LNSRCH``).

``callback(intermediate_result)`` is called after every iteration with an object whose
``x`` (the accepted iterate; do not modify it) and ``fun`` (its loss) are those of
SciPy's ``OptimizeResult``. Exceptions from ``fun`` or ``callback`` (``KeyboardInterrupt``
included) propagate unchanged; ``x0`` is never modified.
"""

from dataclasses import dataclass

import numpy as np

from ._array import add_scaled, array_namespace, astype, buffer, modify_in_place

__all__ = ["LBFGSOutcome", "minimize_lbfgs"]

# SciPy's L-BFGS-B defaults: ftol = factr * eps with factr = 1e7.
FTOL = 2.220446049250313e-09
# L-BFGS-B's messages for the same stops.
_GTOL = "CONVERGENCE: NORM OF PROJECTED GRADIENT <= PGTOL"
_FTOL = "CONVERGENCE: RELATIVE REDUCTION OF F <= FACTR*EPSMCH"
_MAXITER = "STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT"
_MAXFUN = "STOP: TOTAL NO. OF F,G EVALUATIONS EXCEEDS LIMIT"
_ABNORMAL = "ABNORMAL: the line search found no decrease"


@dataclass
class LBFGSOutcome:
    """The result, with the fields of SciPy's ``OptimizeResult`` that skae reads."""

    x: object
    fun: float
    jac: object
    nit: int
    nfev: int
    status: int
    message: str


@dataclass
class _Iterate:
    """What the callback receives (SciPy's ``intermediate_result``: ``x`` and ``fun``)."""

    x: object
    fun: float


def _dot(a, b):
    if a.dtype != b.dtype:  # the gradient with a direction in the pairs' dtype
        b = astype(b, a.dtype, array_namespace(b))
    return float(a @ b)


def _max_abs(a, xp):
    """``max|a|`` from the largest and the smallest entry (no temporary array); NaN when
    ``a`` holds one."""
    if not a.shape[0]:
        return 0.0
    high, low = float(xp.max(a)), float(xp.min(a))
    return max(high, -low) if high == high and low == low else float("nan")


def _cubic_minimum(x1, f1, g1, x2, f2, g2, bounds=None):
    """Minimiser of the cubic through ``(x1, f1, g1)`` and ``(x2, f2, g2)``, clipped to
    ``bounds`` (default: the interval between ``x1`` and ``x2``); the midpoint when the
    cubic has no minimum."""
    low, high = bounds if bounds is not None else (min(x1, x2), max(x1, x2))
    d1 = g1 + g2 - 3.0 * (f1 - f2) / (x1 - x2)
    d2_square = d1 * d1 - g1 * g2
    if d2_square >= 0.0:
        d2 = d2_square**0.5
        if x1 <= x2:
            t = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2.0 * d2))
        else:
            t = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2.0 * d2))
        if t == t:  # not NaN (0/0 when the two points coincide)
            return min(max(t, low), high)
    return 0.5 * (low + high)


def _strong_wolfe(evaluate, t, d, f, g, gtd, max_evaluations, c1=1e-4, c2=0.9, xtol=1e-9):
    """Step ``t`` along ``d`` satisfying the strong Wolfe conditions.

    ``evaluate(t) -> (f, g)`` at ``x + t d``. Returns ``(t, f, g, n_evaluations)`` of the
    best point found: ``t = 0`` (with the given ``f`` and ``g``) when no point with a
    sufficient decrease was found within ``max_evaluations``.
    """
    d_norm = None  # max|d|, computed when the zoom needs it
    f_new, g_new = evaluate(t)
    n_eval = 1
    gtd_new = _dot(g_new, d)
    t_prev, f_prev, g_prev, gtd_prev = 0.0, f, g, gtd
    done = False
    bracket = None
    # Bracketing phase: grow the step until the interval contains a Wolfe point.
    while True:
        if f_new > f + c1 * t * gtd or (n_eval > 1 and f_new >= f_prev):
            bracket = [(t_prev, f_prev, g_prev, gtd_prev), (t, f_new, g_new, gtd_new)]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket = [(t, f_new, g_new, gtd_new)]
            done = True
            break
        if gtd_new >= 0.0:
            bracket = [(t_prev, f_prev, g_prev, gtd_prev), (t, f_new, g_new, gtd_new)]
            break
        if n_eval >= max_evaluations:
            break
        t_next = _cubic_minimum(
            t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=(t + 0.01 * (t - t_prev), 10 * t)
        )
        t_prev, f_prev, g_prev, gtd_prev = t, f_new, g_new, gtd_new
        t = t_next
        f_new, g_new = evaluate(t)
        n_eval += 1
        gtd_new = _dot(g_new, d)
    if bracket is None:  # the evaluations ran out while the loss kept decreasing
        best = (t, f_new, g_new) if f_new <= f + c1 * t * gtd else (0.0, f, g)
        return (*best, n_eval)
    if done:
        t, f_new, g_new, _ = bracket[0]
        return t, f_new, g_new, n_eval

    # Zoom phase: shrink the bracket [low, high] by safeguarded cubic interpolation.
    low, high = (0, 1) if bracket[0][1] <= bracket[1][1] else (1, 0)
    insufficient_progress = False
    while n_eval < max_evaluations:
        (t0, f0, _, gtd0), (t1, f1, _, gtd1) = bracket
        if d_norm is None:
            xp = array_namespace(d)
            d_norm = _max_abs(d, xp)
        if abs(t1 - t0) * d_norm < xtol:
            break
        t = _cubic_minimum(t0, f0, gtd0, t1, f1, gtd1)
        top, bottom = max(t0, t1), min(t0, t1)
        eps = 0.1 * (top - bottom)
        if min(top - t, t - bottom) < eps:
            # Too close to an end: unless the last step made progress there, move inward.
            if insufficient_progress or t >= top or t <= bottom:
                t = top - eps if abs(t - top) < abs(t - bottom) else bottom + eps
                insufficient_progress = False
            else:
                insufficient_progress = True
        else:
            insufficient_progress = False
        f_new, g_new = evaluate(t)
        n_eval += 1
        gtd_new = _dot(g_new, d)
        point = (t, f_new, g_new, gtd_new)
        if f_new > f + c1 * t * gtd or f_new >= bracket[low][1]:
            bracket[high] = point
            low, high = (0, 1) if bracket[0][1] <= bracket[1][1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high][0] - bracket[low][0]) >= 0.0:
                bracket[high] = bracket[low]
            bracket[low] = point
            if done:
                break
    t, f_new, g_new, _ = bracket[low]
    if t > 0.0 and f_new <= f + c1 * t * gtd:
        return t, f_new, g_new, n_eval
    return 0.0, f, g, n_eval


def _direction(g, history, xp, out=None):
    """``−H g`` by the two-loop recursion over ``history`` = [(s, y, 1/yᵀs), …].

    On NumPy the result is written into ``out`` and each ``q += c v`` is one BLAS
    ``axpy`` pass (:func:`skae._array.add_scaled`), so that no vector is allocated and
    each history vector is read once per loop.
    """
    q = modify_in_place(xp, xp.negative, g, out=out)  # in out's dtype on NumPy
    if history:
        q = _rounded(q, history[0][0].dtype, xp)
    alphas = []
    for s, y, rho in reversed(history):
        a = rho * _dot(s, q)
        alphas.append(a)
        q = add_scaled(q, -a, y, xp)
    if history:
        s, y, _ = history[-1]
        q *= _dot(s, y) / _dot(y, y)
    for (s, y, rho), a in zip(history, reversed(alphas)):
        b = rho * _dot(y, q)
        q = add_scaled(q, a - b, s, xp)
    return q


def _rounded(a, dtype, xp):
    """``a`` in ``dtype`` (written into a NumPy buffer of that dtype, it already is)."""
    return a if a.dtype == dtype else astype(a, dtype, xp)


def _along(x, step, d, xp, out=None):
    """The point ``x + step d`` in ``x``'s dtype, ``step d`` formed in ``d``'s (into
    ``out`` on NumPy; the same rounding as the expression)."""
    point = modify_in_place(xp, xp.multiply, d, step, out=out)
    if out is None:  # other namespaces: a new array (d may be float32, x float64)
        return x + point
    point += x
    return point


def minimize_lbfgs(
    fun,
    x0,
    *,
    maxiter,
    gtol,
    maxfun=None,
    ftol=FTOL,
    history_size=10,
    max_line_search=20,
    callback=None,
    history_dtype=None,
):
    """Minimise ``fun(x) -> (f, g)`` by L-BFGS with a strong-Wolfe line search.

    Parameters
    ----------
    fun : callable
        ``fun(x) -> (f, g)``: the loss (a Python float, or a 0-d array) and its gradient,
        an array of the namespace, device, dtype and shape of ``x``. ``fun`` must not
        keep or modify ``x``, and each call must return a new gradient array that it
        does not change later (the optimiser keeps gradients to form its pairs).
    x0 : array of shape (n,)
        The start, in any array-API namespace; it is not modified.
    maxiter : int
        Iterations allowed.
    gtol : float
        Stop when ``max|g| <= gtol``.
    maxfun : int or None
        Evaluations allowed (None: ``20 * maxiter``, SciPy's ratio in skae).
    ftol : float
        Stop when the relative reduction of the loss in an iteration is at most ``ftol``.
    history_size : int
        Pairs ``(s, y)`` kept (L-BFGS-B's ``maxcor`` default, 10).
    max_line_search : int
        Evaluations allowed per line search (L-BFGS-B's limit, 20).
    callback : callable or None
        ``callback(intermediate_result)`` after every iteration.
    history_dtype : dtype or None
        The dtype of the stored pairs ``(s, y)`` and of the two-loop recursion that
        computes the direction; None: that of ``x0``. A float32 objective's gradient is
        exact to float32 only, so its pairs lose nothing in float32, and the recursion,
        which reads every pair twice per iteration, reads half the memory. The iterate,
        the gradient, the line search and the stopping tests keep ``x0``'s dtype.

    Returns
    -------
    LBFGSOutcome
        ``x``, ``fun``, ``jac``, ``nit``, ``nfev``, ``status``, ``message``.
    """
    if history_size < 1 or maxiter < 0:
        raise ValueError(
            f"history_size must be at least 1 and maxiter at least 0; got "
            f"history_size={history_size}, maxiter={maxiter}."
        )
    xp = array_namespace(x0)
    if maxfun is None:
        maxfun = 20 * maxiter
    dtype = getattr(x0, "dtype", None)
    if xp is np and not np.issubdtype(np.asarray(x0).dtype, np.floating):
        dtype = np.float64  # integers as SciPy takes them
    x = astype(x0, dtype, xp)  # a copy: x0 is never modified

    def evaluate(point):
        f, g = fun(point)
        return float(f), g

    f, g = evaluate(x)
    nfev = 1
    nit = 0
    history = []
    if _max_abs(g, xp) <= gtol:
        return LBFGSOutcome(x, f, g, 0, nfev, 0, _GTOL)
    if maxiter == 0:
        return LBFGSOutcome(x, f, g, 0, nfev, 1, _MAXITER)
    # Work vectors reused by every iteration (NumPy; None elsewhere: each step then makes
    # its result). ``fun`` never keeps the point it is given, so one buffer holds them all.
    n, dtype = x.shape, x.dtype
    pair_dtype = dtype if history_dtype is None else history_dtype
    direction, trial = buffer(xp, n, pair_dtype), buffer(xp, n, dtype)
    spare = (None, None)  # vectors for the next (s, y): None makes new ones

    while True:
        d = _direction(g, history, xp, out=direction)
        gtd = _dot(g, d)
        if not gtd < 0.0:  # not a descent direction (rounding): restart from −g
            history.clear()
            d = modify_in_place(xp, xp.negative, g, out=direction)
            gtd = _dot(g, d)
        while True:
            # First step of a run or after a restart: length 1/‖g‖₁ at most (minFunc's
            # and torch's choice); afterwards the quasi-Newton step 1.
            t = min(1.0, 1.0 / float(xp.sum(xp.abs(g)))) if not history else 1.0
            budget = min(max_line_search, maxfun - nfev)
            if budget <= 0:
                return LBFGSOutcome(x, f, g, nit, nfev, 1, _MAXFUN)
            t, f_new, g_new, n_eval = _strong_wolfe(
                lambda step, d=d: evaluate(_along(x, step, d, xp, out=trial)),
                t, d, f, g, gtd, budget,
            )
            nfev += n_eval
            if t > 0.0:
                break
            if nfev >= maxfun:
                return LBFGSOutcome(x, f, g, nit, nfev, 1, _MAXFUN)
            if not history:  # already along −g
                return LBFGSOutcome(x, f, g, nit, nfev, 2, _ABNORMAL)
            history.clear()  # L-BFGS-B's response: drop the memory, retry along −g
            d = modify_in_place(xp, xp.negative, g, out=direction)
            gtd = _dot(g, d)

        # t d in d's dtype, as the line search formed its points
        s = modify_in_place(xp, xp.multiply, d, t, out=spare[0])
        x_new = x + s  # a new array in x's dtype: the callback and the result may keep x
        s = _rounded(s, pair_dtype, xp)
        y = _rounded(modify_in_place(xp, xp.subtract, g_new, g, out=spare[1]), pair_dtype, xp)
        ys = _dot(y, s)
        if ys > 1e-10:  # keep the pair only where the curvature condition holds
            # the dropped pair's vectors hold the next pair (NumPy)
            spare = history.pop(0)[:2] if len(history) == history_size else (None, None)
            history.append((s, y, 1.0 / ys))
        f_old = f
        x, f, g = x_new, f_new, g_new
        nit += 1
        if callback is not None:
            callback(_Iterate(x, f))
        if nit >= maxiter:
            return LBFGSOutcome(x, f, g, nit, nfev, 1, _MAXITER)
        if nfev >= maxfun:
            return LBFGSOutcome(x, f, g, nit, nfev, 1, _MAXFUN)
        if _max_abs(g, xp) <= gtol:
            return LBFGSOutcome(x, f, g, nit, nfev, 0, _GTOL)
        if (f_old - f) <= ftol * max(abs(f_old), abs(f), 1.0):
            return LBFGSOutcome(x, f, g, nit, nfev, 0, _FTOL)
