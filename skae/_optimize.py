"""The optimiser driver: :func:`run_lbfgs` runs an L-BFGS on a pure objective ``fun(θ) ->
(J, ∇J)`` and turns how it stopped into the fit's record, its warnings and its errors.

It drives skae's own array-API L-BFGS (:mod:`skae._lbfgs`), on NumPy parameters and on those
of another namespace alike, and SciPy's L-BFGS-B (which stops by the same rules) on NumPy
parameters when asked. A new solver goes here: it returns the fields of SciPy's
``OptimizeResult`` that :func:`run_lbfgs` reads (``x``, ``fun``, ``nit``, ``nfev``,
``status``, ``message``), and everything else (interruption, non-finite losses, stop
reasons, the stage's name in warnings) is shared.
"""

import contextlib
import contextvars
import math
import time
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from sklearn.exceptions import ConvergenceWarning

from ._array import array_device, array_namespace, astype, cast, parameter_dtype
from ._lbfgs import minimize_lbfgs
from ._parallel import blas_single_threaded
from ._warnings import warn_at_caller
from .exceptions import FitInterruptedWarning, NonFiniteLossError

__all__ = [
    "STOP_REASONS",
    "FitStage",
    "LBFGSResult",
    "current_stage",
    "fit_stage",
    "run_lbfgs",
]


@dataclass(frozen=True)
class FitStage:
    """How the warnings of one L-BFGS run name it and the settings that govern it.

    ``name`` opens every message (``"StackedAutoencoderClassifier (softmax)"``);
    ``max_iter`` and ``tol`` are the names of the estimator's parameters that limit its
    iterations and set its tolerance (``"softmax_max_iter"``, ``"fine_tune_tol"``), so
    that the advice of a warning is a parameter the user can set; ``regularisation`` is
    the advice on the objective's penalty terms when its loss becomes non-finite.
    """

    name: str
    max_iter: str = "max_iter"
    tol: str = "tol"
    regularisation: str = "lower beta or raise alpha"


_FIT_STAGE = contextvars.ContextVar("skae_fit_stage", default=None)


@contextlib.contextmanager
def fit_stage(name, *, max_iter="max_iter", tol="tol"):
    """Within this context, :func:`run_lbfgs` names its warnings by this stage.

    A stacked estimator fits each layer with a :class:`~skae.SparseAutoencoder`; inside
    ``fit_stage("StackedAutoencoder (pretraining, layer 2 of 3)")`` that layer's warnings
    say which layer of which estimator they are about, instead of "SparseAutoencoder".
    The context is per thread (a :class:`contextvars.ContextVar`), so fits running at
    once in other threads are not affected.
    """
    token = _FIT_STAGE.set(FitStage(name, max_iter, tol))
    try:
        yield
    finally:
        _FIT_STAGE.reset(token)


def current_stage(name, *, max_iter="max_iter", tol="tol", regularisation=None):
    """The stage set by an enclosing :func:`fit_stage`, else ``name`` with these parameter
    names and advice (how a solver names its warnings and its progress lines)."""
    return _FIT_STAGE.get() or FitStage(
        name, max_iter, tol, regularisation or FitStage.regularisation
    )


@dataclass
class LBFGSResult:
    """What :func:`run_lbfgs` returns: the parameters and how the run went.

    ``n_iter`` is the number of L-BFGS iterations completed (``len(loss_curve)``; 0 when
    the start already satisfied the stopping rule or an interruption came first).
    ``reason`` says which rule stopped it, one of :data:`STOP_REASONS`.
    """

    theta: np.ndarray
    loss: float
    loss_curve: list
    n_iter: int
    interrupted: bool
    converged: bool
    status: int = 0
    message: str = ""
    reason: str = ""


#: Why an L-BFGS run stopped (``LBFGSResult.reason``): the largest gradient component fell
#: to ``tol``; the loss decreased by a relative 2.2e-9 or less in an iteration (L-BFGS-B's
#: ``factr * eps``); the iteration limit; the limit of 20 objective evaluations per allowed
#: iteration; a line search that found no decrease; Ctrl-C.
STOP_REASONS = (
    "converged (tol)",
    "converged (loss change)",
    "max_iter",
    "evaluation limit",
    "line search",
    "interrupted",
)


def _stop_reason(status, message, nfev, maxfun):
    """The :data:`STOP_REASONS` entry of an L-BFGS(-B) ``status`` and ``message``."""
    if status == 0:
        return STOP_REASONS[1] if "REDUCTION" in str(message).upper() else STOP_REASONS[0]
    if status == 1:
        return STOP_REASONS[3] if nfev >= maxfun else STOP_REASONS[2]
    return STOP_REASONS[4]


# L-BFGS stops after at most this many evaluations per allowed iteration (line searches
# take about 1.1 on average; 20 is L-BFGS-B's own limit per line search).
_EVALUATIONS_PER_ITERATION = 20


def _status_message(result, max_iter, maxfun, stage=None):
    """Why L-BFGS stopped, in words, for a non-zero ``status``; the advice names the
    parameters of ``stage`` (a :class:`FitStage`; ``max_iter`` and ``tol`` by default)."""
    stage = stage if stage is not None else FitStage("model")
    reason = result.message
    if isinstance(reason, bytes):
        reason = reason.decode("latin1")
    reason = str(reason).strip()
    it, tol = stage.max_iter, stage.tol
    if result.status == 1 and result.nfev >= maxfun:
        advice = (
            f"it reached the limit of {maxfun} objective evaluations ({it}={max_iter} "
            "allows 20 per iteration); the line searches are struggling: scale the input "
            f"or raise {tol}."
        )
    elif result.status == 1:
        advice = f"it reached {it}={max_iter}; increase {it} or {tol}."
    else:
        advice = (
            "the line search could not decrease the loss (often rounding: the model may "
            "be as good as this precision allows; float32 data stop earlier than float64). "
            f"Scale the input, raise {tol}, or use float64."
        )
    return (
        f"L-BFGS stopped after {result.nit} iterations without converging (status "
        f"{result.status}: {reason}); {advice}"
    )


def run_lbfgs(
    fun,
    theta0,
    *,
    max_iter,
    tol,
    verbose=0,
    report=None,
    name="model",
    stage=None,
    own_lbfgs=True,
    history_dtype=None,
):
    """Minimise ``fun(theta) -> (J, grad)`` with skae's L-BFGS, robustly.

    - Progress comes from the optimiser's ``callback(intermediate_result)``. With
      ``verbose >= 1`` the run ends with one line: the stage's name, the iterations, the
      final loss, the time and the rule that stopped it (:data:`STOP_REASONS`); with
      ``verbose >= 2`` each iteration also prints a line with ``report(intermediate_result)``
      (a string).
    - Every non-zero status (``max_iter`` reached, the evaluation limit of 20 per
      iteration reached, an abnormal line search) warns with ``ConvergenceWarning``
      saying which; warnings point at the first caller outside skae and scikit-learn.
    - A NaN or infinite loss raises :class:`NonFiniteLossError`.
    - ``KeyboardInterrupt`` keeps the last parameters L-BFGS accepted (the start if none)
      and warns; the result says ``interrupted=True`` and its ``loss`` is the objective at
      the kept parameters.
    - The warnings open with the stage's name and advise on the stage's parameters:
      ``stage`` (a :class:`FitStage`) when given, else the stage set by an enclosing
      :func:`fit_stage` (a layer of a stack), else ``name`` with ``max_iter`` and
      ``tol``.
    - BLAS is limited to one thread meanwhile, process-wide but safely when several fits
      run at once (:func:`skae._parallel.blas_single_threaded`).

    ``theta0`` is not modified. It is minimised by :func:`skae._lbfgs.minimize_lbfgs`,
    whose vectors stay in the namespace of ``theta0`` (NumPy, a PyTorch tensor, a CuPy
    array) and on its device, and which stops by the rules of SciPy's L-BFGS-B (the
    result's ``theta`` is an array of that namespace). With hundreds of thousands of
    parameters its vector work costs a quarter of L-BFGS-B's
    (``benchmarks/bench_finetune.py``); ``history_dtype`` is the dtype of its stored pairs
    (the data's: float32 for a float32 objective). ``own_lbfgs=False`` minimises a NumPy ``theta0``
    with SciPy's L-BFGS-B instead (``benchmarks/bench_quality.py --lbfgs-compare`` compares
    the two); everything above holds for both.
    """
    if stage is None:
        stage = _FIT_STAGE.get() or FitStage(name)
    name = stage.name
    xp = array_namespace(theta0)
    dtype = parameter_dtype(xp, array_device(theta0))  # float64 where the device has it

    def copy(theta):
        return astype(theta, dtype, xp)

    theta0 = copy(theta0)

    state = {"theta": copy(theta0), "loss": None, "curve": [], "start": time.perf_counter()}
    first = {}  # the objective at theta0, once evaluated

    def all_finite(grad):
        # ‖g‖² is finite when every entry is: one pass, no temporary; only when it is not
        # (an entry is not finite, or above about 1e154) are the entries tested
        with np.errstate(over="ignore"):  # NumPy's and array_api_strict's products
            squares = float(grad @ grad)
        return math.isfinite(squares) or bool(xp.all(xp.isfinite(grad)))

    def at_start(theta):
        return theta.shape == theta0.shape and bool(xp.all(theta == theta0))

    def guarded(theta):
        J, grad = fun(theta)
        if not (np.isfinite(J) and all_finite(grad)):
            what = "loss" if not np.isfinite(J) else "gradient"
            raise NonFiniteLossError(
                f"{name}: the {what} became non-finite (loss = {J}) during "
                "optimisation; no parameters were kept from this fit. Scale the "
                f"input (e.g. MinMaxScaler or StandardScaler), or {stage.regularisation}."
            )
        if not first and at_start(theta):
            first["loss"] = float(J)
        return J, grad

    own = xp is not np or own_lbfgs

    def callback(intermediate_result):
        # skae's L-BFGS never overwrites an iterate it hands out; SciPy's may
        state["theta"] = intermediate_result.x if own else copy(intermediate_result.x)
        state["loss"] = float(intermediate_result.fun)
        state["curve"].append(state["loss"])
        if verbose >= 2:
            elapsed = time.perf_counter() - state["start"]
            line = report(intermediate_result) if report is not None else ""
            print(
                f"Iteration {len(state['curve']):4d}, loss = {state['loss']:.8g}"
                f"{line}, time = {elapsed:.2f}s",
                flush=True,
            )

    maxfun = _EVALUATIONS_PER_ITERATION * max_iter

    def summary(n_iter, loss, reason):
        if verbose:
            elapsed = time.perf_counter() - state["start"]
            print(
                f"{name}: {n_iter} iterations, loss = {loss:.8g}, time = {elapsed:.2f}s, "
                f"stopped: {reason}",
                flush=True,
            )

    try:
        # The optimiser's own linear algebra is vector work on which BLAS threads only add
        # synchronisation; the objective runs its products on its own worker threads.
        with blas_single_threaded():
            if own:
                result = minimize_lbfgs(
                    guarded, theta0, maxiter=max_iter, gtol=tol, maxfun=maxfun,
                    callback=callback, history_dtype=history_dtype,
                )
            else:
                result = minimize(
                    guarded,
                    theta0,
                    method="L-BFGS-B",
                    jac=True,
                    callback=callback,
                    options={"maxiter": max_iter, "maxfun": maxfun, "gtol": tol},
                )
    except KeyboardInterrupt:
        n_iter = len(state["curve"])
        warn_at_caller(
            f"{name}: training was interrupted after {n_iter} iterations; keeping the "
            "last parameters L-BFGS accepted.",
            FitInterruptedWarning,
        )
        theta = state["theta"]
        if state["loss"] is not None:
            loss = state["loss"]
        elif "loss" in first:
            loss = first["loss"]
        else:  # interrupted during the first evaluation: evaluate the kept start once,
            # on one BLAS thread as in the fit (skae._array.dot)
            with blas_single_threaded():
                loss = float(fun(theta)[0])
        summary(n_iter, loss, "interrupted")
        return LBFGSResult(
            theta, loss, state["curve"], n_iter, True, False, -1, "interrupted", "interrupted"
        )

    curve = state["curve"]
    reason = _stop_reason(result.status, result.message, result.nfev, maxfun)
    summary(len(curve), float(result.fun), reason)
    if result.status != 0:
        warn_at_caller(
            f"{name}: {_status_message(result, max_iter, maxfun, stage)}", ConvergenceWarning
        )
    return LBFGSResult(
        cast(result.x, dtype, xp),
        float(result.fun),
        curve,
        len(curve),
        False,
        result.status == 0,
        int(result.status),
        str(result.message),
        reason,
    )
