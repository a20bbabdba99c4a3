"""L-BFGS written against the array API: its vectors stay in the namespace and on the device
of the starting point.

:func:`minimize_lbfgs` is a pure function: the two-loop recursion over the last ``m``
steps (Nocedal & Wright, algorithm 7.4) with the initial Hessian scaled by
``sᵀy / yᵀy``, and a line search satisfying the strong Wolfe conditions with cubic
interpolation (Nocedal & Wright, algorithms 3.5 and 3.6, in the form used by minFunc and
``torch.optim.LBFGS``). The vectors ``x``, ``g``, ``d`` and the ``s``/``y`` history are
arrays of the namespace of ``x0`` (NumPy, ``array_api_strict``, PyTorch, CuPy: whatever
``array_api_compat`` recognises), on its device and in its dtype, except that the pairs and
the two-loop recursion may be kept in float32 (``history_dtype``; the line search then runs
along the direction widened to ``x0``'s dtype once per iteration); only scalars (the loss,
directional derivatives, step lengths) come back to Python, one synchronisation per
evaluation. On NumPy the direction's buffer is reused by every iteration, the trial
point's becomes the new iterate when the step taken is the last one tried (the usual single
evaluation; a new trial buffer is then made, as a new iterate would be), a dropped pair's
vectors hold the next pair, and the recursion's updates are BLAS
``axpy`` passes: with ``m`` pairs of ``n`` parameters the history is ``2 m n`` values
(16 m n bytes in float64), larger than the caches at the autoencoder's sizes, so the
direction costs what reading it twice costs. The iterates handed to the callback and
returned are never overwritten.

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

from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np

from ._array import add_scaled, array_namespace, assign, astype, buffer, modify_in_place

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
            num, den = g2 + d2 - d1, g2 - g1 + 2.0 * d2
            t = x2 - (x2 - x1) * (num / den) if den else float("nan")
        else:
            num, den = g1 + d2 - d1, g1 - g2 + 2.0 * d2
            t = x1 - (x1 - x2) * (num / den) if den else float("nan")
        if t == t:  # not NaN (0/0 when the two points coincide; a zero denominator)
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


def _direction(g, history, xp, dtype, out=None, narrow=False):
    """``−H g`` in ``dtype`` (the pairs') by the two-loop recursion over ``history`` =
    [(s, y, 1/yᵀs), …]; with no history ``−g`` rounded to ``dtype``.

    On NumPy the result is written into ``out`` and each ``q += c v`` is one BLAS
    ``axpy`` pass (:func:`skae._array.add_scaled`), so that no vector is allocated and
    each history vector is read once per loop. ``narrow``: the pairs are narrower than
    the gradient (float32), and None is returned when a product overflows them.
    """
    with _quiet_overflow(narrow):
        q = _rounded(modify_in_place(xp, xp.negative, g, out=out), dtype, xp)
        products = []
        alphas = []
        for s, y, rho in reversed(history):
            a = rho * _dot(s, q)
            alphas.append(a)
            q = add_scaled(q, -a, y, xp)
        if history:
            s, y, _ = history[-1]
            yy = _dot(y, y)
            products.append(yy)
            q *= _dot(s, y) / yy
        for (s, y, rho), a in zip(history, reversed(alphas)):
            b = rho * _dot(y, q)
            products.append(b)
            q = add_scaled(q, a - b, s, xp)
    if narrow:
        values = alphas + products if history else [_max_abs(q, xp)]
        if not all(abs(v) < float("inf") for v in values):
            return None
    return q


def _quiet_overflow(narrow):
    """Float32 pairs may overflow (handled by the caller): no NumPy warning then; float64
    pairs warn as any NumPy arithmetic does."""
    return np.errstate(over="ignore", invalid="ignore") if narrow else nullcontext()


def _rounded(a, dtype, xp):
    """``a`` in ``dtype`` (written into a NumPy buffer of that dtype, it already is)."""
    return a if a.dtype == dtype else astype(a, dtype, xp)


def _along(x, step, d, xp, out=None):
    """The point ``x + step d`` (into ``out`` on NumPy, else a new array; the same
    rounding as the expression)."""
    point = modify_in_place(xp, xp.multiply, d, step, out=out)
    point += x
    return point


def _pair_dtype(history_dtype, dtype, xp):
    """The dtype of the pairs: ``dtype`` (x's) when None, else a real floating dtype of
    32 or 64 bits no wider than it."""
    if history_dtype is None:
        return dtype
    try:
        bits, x_bits = xp.finfo(history_dtype).bits, xp.finfo(dtype).bits
    except (TypeError, ValueError):
        bits, x_bits = None, None
    if bits not in (32, 64) or bits > x_bits:
        raise ValueError(
            f"history_dtype must be float32 or float64 and no wider than the start's "
            f"dtype {dtype}; got {history_dtype!r}."
        )
    return history_dtype


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
    pair_dtype = _pair_dtype(history_dtype, dtype, xp)
    mixed = pair_dtype != dtype
    # the direction in the pairs' dtype; with narrower pairs, a copy of it in x's dtype
    # for the line search (made once per direction, so no evaluation converts it)
    direction, trial = buffer(xp, n, pair_dtype), buffer(xp, n, dtype)
    wide = buffer(xp, n, dtype) if mixed else None
    spare = (None, None)  # vectors for the next (s, y): None makes new ones

    last = {"step": None, "point": None}  # the line search's last point and its step

    def evaluate_at(step, point):
        last["step"], last["point"] = step, point
        return evaluate(point)

    def along_minus_g():
        history.clear()
        return new_direction()

    def pairs_in_x_dtype():
        # The pairs' dtype cannot hold the products of this problem's pairs (float32 and
        # gradients of about 1e19 or more): go on with the pairs in x's dtype.
        nonlocal mixed, pair_dtype, direction, wide, spare
        history[:] = [(astype(s, dtype, xp), astype(y, dtype, xp), r) for s, y, r in history]
        mixed, pair_dtype = False, dtype
        direction, wide, spare = buffer(xp, n, dtype), None, (None, None)

    def new_direction():
        d = _direction(g, history, xp, pair_dtype, out=direction, narrow=mixed)
        if d is None:
            pairs_in_x_dtype()
            d = _direction(g, history, xp, pair_dtype, out=direction)
        # in x's dtype for the line search (into one reused buffer on NumPy)
        return _rounded(d, dtype, xp) if wide is None else assign(d, wide, xp)

    while True:
        d = new_direction()
        gtd = _dot(g, d)
        if not gtd < 0.0:  # not a descent direction (rounding): restart from −g
            d = along_minus_g()
            gtd = _dot(g, d)
        while True:
            # First step of a run or after a restart: length 1/‖g‖₁ at most (minFunc's
            # and torch's choice); afterwards the quasi-Newton step 1.
            t = min(1.0, 1.0 / float(xp.sum(xp.abs(g)))) if not history else 1.0
            budget = min(max_line_search, maxfun - nfev)
            if budget <= 0:
                return LBFGSOutcome(x, f, g, nit, nfev, 1, _MAXFUN)
            t, f_new, g_new, n_eval = _strong_wolfe(
                lambda step, d=d: evaluate_at(step, _along(x, step, d, xp, out=trial)),
                t, d, f, g, gtd, budget,
            )
            nfev += n_eval
            if t > 0.0:
                break
            if nfev >= maxfun:
                return LBFGSOutcome(x, f, g, nit, nfev, 1, _MAXFUN)
            if not history:  # already along −g
                return LBFGSOutcome(x, f, g, nit, nfev, 2, _ABNORMAL)
            # L-BFGS-B's response: drop the memory, retry along −g
            d = along_minus_g()
            gtd = _dot(g, d)

        with _quiet_overflow(mixed):  # float32 pairs that overflow are handled below
            s = modify_in_place(xp, xp.multiply, d, t, out=spare[0])
            y = modify_in_place(xp, xp.subtract, g_new, g, out=spare[1])
            # a new array: the callback and the result may keep x. x + t d as the line
            # search formed it: its last point when that is the step taken (one
            # evaluation per iteration, as usual), whose buffer x then keeps
            if t == last["step"]:
                x_new = last["point"]
                if x_new is trial:
                    trial = buffer(xp, n, dtype)
            else:
                x_new = _along(x, t, d, xp) if mixed else s + x
            s, y = _rounded(s, pair_dtype, xp), _rounded(y, pair_dtype, xp)
            ys = _dot(y, s)
        if mixed and not ys < float("inf"):
            pairs_in_x_dtype()
            s = modify_in_place(xp, xp.multiply, d, t)  # d: the direction in x's dtype
            y = modify_in_place(xp, xp.subtract, g_new, g)
            ys = _dot(y, s)
        if 1e-10 < ys < float("inf"):  # keep the pair where the curvature condition holds
            # (and its products are finite: float32 pairs of huge gradients overflow)
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
