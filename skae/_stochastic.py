"""Mini-batch solvers: the Adam and SGD updates of one flat θ, and the epoch loop.

The optimisers follow scikit-learn's ``sklearn/neural_network/_stochastic_optimizers.py``
(the MLPs' solvers): the same update rules, learning-rate schedules and stopping trigger,
written for one flat float64 parameter vector updated in place. :func:`run_epochs` runs
them over mini-batches of rows as the MLPs' ``_fit_stochastic`` does (epochs, the
no-improvement rule, early stopping on a held-out score), calling a pure objective on the
rows of each mini-batch.
"""

import time
from dataclasses import dataclass, field

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from ._objective import AutoencoderObjective, Corruption
from ._parallel import blas_single_threaded
from ._warnings import warn_at_caller
from .exceptions import FitInterruptedWarning, NonFiniteLossError

__all__ = [
    "STOCHASTIC_STOP_REASONS",
    "AdamOptimizer",
    "EpochState",
    "SGDOptimizer",
    "minibatch_objective",
    "run_epochs",
]

#: Why a mini-batch run stopped (``stop_reason_``): the loss (or the validation score with
#: early stopping) did not improve by ``tol`` for ``n_iter_no_change`` epochs; the epoch
#: limit; Ctrl-C; the one epoch of a ``partial_fit`` call.
STOCHASTIC_STOP_REASONS = ("no improvement", "max_iter", "interrupted", "partial_fit")


class SGDOptimizer:
    """Stochastic gradient descent with momentum (optionally Nesterov's), in place.

    ``learning_rate`` is ``"constant"``, ``"invscaling"`` (``learning_rate_init / (t +
    1) ** power_t`` after each epoch, ``t`` the samples seen) or ``"adaptive"`` (divided
    by 5 each time the no-improvement rule triggers, until it falls below 1e-6), as in
    :class:`~sklearn.neural_network.MLPClassifier`.
    """

    def __init__(
        self,
        size,
        learning_rate_init=0.1,
        learning_rate="constant",
        momentum=0.9,
        nesterov=True,
        power_t=0.5,
    ):
        self.learning_rate_init = float(learning_rate_init)
        self.learning_rate = float(learning_rate_init)
        self.schedule = learning_rate
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.power_t = float(power_t)
        self.velocity = np.zeros(size)

    def iteration_ends(self, time_step):
        """Called at the end of each epoch with the number of samples seen."""
        if self.schedule == "invscaling":
            self.learning_rate = self.learning_rate_init / (time_step + 1) ** self.power_t

    def trigger_stopping(self):
        """The no-improvement rule triggered: True to stop, False to go on (adaptive)."""
        if self.schedule != "adaptive" or self.learning_rate <= 1e-6:
            return True
        self.learning_rate /= 5.0
        return False

    def update_params(self, theta, grad):
        """One step: ``theta`` (float64) is updated in place by one addition."""
        v = self.velocity
        v *= self.momentum
        v -= self.learning_rate * grad
        if self.nesterov:
            theta += self.momentum * v - self.learning_rate * grad
        else:
            theta += v


class AdamOptimizer:
    """Adam (Kingma and Ba, 2014) with bias correction, in place, as scikit-learn's."""

    def __init__(self, size, learning_rate_init=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-8):
        self.learning_rate_init = float(learning_rate_init)
        self.learning_rate = float(learning_rate_init)
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)
        self.t = 0
        self.ms = np.zeros(size)
        self.vs = np.zeros(size)

    def iteration_ends(self, time_step):
        """Called at the end of each epoch (Adam has no schedule)."""

    def trigger_stopping(self):
        """The no-improvement rule triggered: Adam stops."""
        return True

    def update_params(self, theta, grad):
        """One step: ``theta`` (float64) is updated in place by one addition."""
        self.t += 1
        b1, b2 = self.beta_1, self.beta_2
        self.ms *= b1
        self.ms += (1 - b1) * grad
        self.vs *= b2
        self.vs += (1 - b2) * (grad * grad)
        self.learning_rate = self.learning_rate_init * np.sqrt(1 - b2**self.t) / (1 - b1**self.t)
        theta -= self.learning_rate * self.ms / (np.sqrt(self.vs) + self.epsilon)


def minibatch_objective(spec, X, rows, *, corruption=None, batch_size=None):
    """The autoencoder objective on the rows ``rows`` of ``X`` (a slice or an index array).

    Only the selected rows are read (a slice of a memmap is a view; an index array copies
    those rows only). The sparsity penalty's mean activation ρ̂ is the mini-batch's own
    mean: the objective is the full objective with the mini-batch as its data, so for
    ``rows`` covering all of ``X`` in order it is the full objective.
    """
    return AutoencoderObjective(spec, X[rows], corruption=corruption, batch_size=batch_size)


@dataclass
class EpochState:
    """The progress of the mini-batch solver, kept between ``partial_fit`` calls."""

    loss_curve: list = field(default_factory=list)
    validation_scores: list = None
    best_loss: float = np.inf
    best_validation_score: float = -np.inf
    no_improvement_count: int = 0
    n_iter: int = 0
    t: int = 0


@dataclass
class EpochResult:
    """How a call of :func:`run_epochs` ended."""

    theta: np.ndarray
    loss: float
    reason: str
    interrupted: bool


def _update_no_improvement(state, tol, validation_score, theta, best):
    """The MLPs' ``_update_no_improvement_count``; ``best`` keeps the best θ (early stopping)."""
    if validation_score is not None:
        score = validation_score(theta)
        state.validation_scores.append(score)
        if score < state.best_validation_score + tol:
            state.no_improvement_count += 1
        else:
            state.no_improvement_count = 0
        if score > state.best_validation_score:
            state.best_validation_score = score
            best["theta"] = theta.copy()
    else:
        loss = state.loss_curve[-1]
        if loss > state.best_loss - tol:
            state.no_improvement_count += 1
        else:
            state.no_improvement_count = 0
        if loss < state.best_loss:
            state.best_loss = loss


def run_epochs(
    spec,
    X,
    theta,
    *,
    optimizer,
    state,
    train_rows,
    mini_batch_size,
    max_iter,
    tol,
    n_iter_no_change,
    shuffle,
    random_state,
    noise=None,
    batch_size=None,
    validation_score=None,
    incremental=False,
    verbose=0,
    name="model",
):
    """Minimise over mini-batches of ``X``'s rows for up to ``max_iter`` epochs.

    ``theta`` (float64) is updated in place. ``train_rows`` is None (all rows, in order)
    or an index array. Each epoch visits the training rows once, in a new order drawn from
    ``random_state`` when ``shuffle``, in mini-batches of ``mini_batch_size`` rows (the
    last one smaller); ``noise`` (``(kind, level)``) draws a fresh corruption for every
    mini-batch (its seed from ``random_state``). After each epoch the mean mini-batch loss
    is appended to ``state.loss_curve`` and the MLPs' no-improvement rule is applied: on
    ``validation_score(theta)`` (higher is better; appended to
    ``state.validation_scores``) when given, else on the loss. With ``incremental``
    exactly one epoch runs (``partial_fit``).

    The best θ by validation score is returned when early stopping (as the MLPs do). A
    non-finite loss or gradient, or a step that makes θ non-finite, raises
    :class:`NonFiniteLossError`; Ctrl-C keeps the parameters after the last completed
    mini-batch step and warns; ``max_iter`` epochs without the stopping rule warn with
    :class:`~sklearn.exceptions.ConvergenceWarning`.
    """
    n = X.shape[0] if train_rows is None else len(train_rows)
    start_time = time.perf_counter()
    best = {}
    reason = "partial_fit" if incremental else "max_iter"
    interrupted = False
    last_loss = state.loss_curve[-1] if state.loss_curve else None
    epoch_loss = 0.0
    seen = 0
    # BLAS on one thread for the whole run, as in run_lbfgs: each objective would otherwise
    # limit it and restore it, from two short-lived threads, at every mini-batch step.
    one_thread = blas_single_threaded()
    one_thread.__enter__()
    try:
        for _ in range(1 if incremental else max_iter):
            epoch_start = time.perf_counter()
            if shuffle:
                order = random_state.permutation(n)
                if train_rows is not None:
                    order = train_rows[order]
            else:
                order = train_rows
            epoch_loss, seen = 0.0, 0
            for start in range(0, n, mini_batch_size):
                stop = min(start + mini_batch_size, n)
                rows = slice(start, stop) if order is None else order[start:stop]
                corruption = None
                if noise is not None:
                    seed = int(random_state.randint(np.iinfo(np.int32).max))
                    corruption = Corruption(noise[0], noise[1], seed)
                fun = minibatch_objective(
                    spec, X, rows, corruption=corruption, batch_size=batch_size
                )
                J, grad = fun(theta)
                if not (np.isfinite(J) and np.all(np.isfinite(grad))):
                    what = "loss" if not np.isfinite(J) else "gradient"
                    raise NonFiniteLossError(
                        f"{name}: the {what} became non-finite (loss = {J}) during "
                        "optimisation; no parameters were kept from this fit. Scale the "
                        "input (e.g. MinMaxScaler or StandardScaler), or lower "
                        "learning_rate_init, lower beta or raise alpha."
                    )
                optimizer.update_params(theta, grad)
                if not np.all(np.isfinite(theta)):  # a step too large for float64
                    raise NonFiniteLossError(
                        f"{name}: the parameters became non-finite after a mini-batch "
                        "step (the step overflowed); no parameters were kept from this "
                        "fit. Lower "
                        "learning_rate_init, or scale the input (e.g. MinMaxScaler)."
                    )
                epoch_loss += float(J) * (stop - start)
                seen += stop - start
            state.n_iter += 1
            state.t += n
            last_loss = epoch_loss / n
            state.loss_curve.append(last_loss)
            _update_no_improvement(state, tol, validation_score, theta, best)
            optimizer.iteration_ends(state.t)
            if verbose >= 2:
                now = time.perf_counter()
                line = f"Epoch {state.n_iter:4d}, loss = {last_loss:.8g}"
                if validation_score is not None:
                    line += f", validation score = {state.validation_scores[-1]:.8g}"
                rate = n / max(now - epoch_start, 1e-12)
                line += f", time = {now - start_time:.2f}s, {rate:.0f} samples/s"
                print(line, flush=True)
            if state.no_improvement_count > n_iter_no_change:
                if optimizer.trigger_stopping():
                    if not incremental:
                        reason = "no improvement"
                        break
                else:
                    state.no_improvement_count = 0
    except KeyboardInterrupt:
        interrupted = True
        reason = "interrupted"
        warn_at_caller(
            f"{name}: training was interrupted after {state.n_iter} epochs; keeping the "
            "parameters of the last completed mini-batch step.",
            FitInterruptedWarning,
        )
        if seen:
            last_loss = epoch_loss / seen
        elif last_loss is None:  # no step completed: the loss of the kept start
            rows = slice(0, min(n, mini_batch_size))
            if train_rows is not None:
                rows = train_rows[rows]
            last_loss = float(minibatch_objective(spec, X, rows, batch_size=batch_size)(theta)[0])
    finally:
        one_thread.__exit__(None, None, None)
    if "theta" in best and not interrupted:
        theta[...] = best["theta"]
    if verbose:
        elapsed = time.perf_counter() - start_time
        print(
            f"{name}: {state.n_iter} epochs, loss = {last_loss:.8g}, time = {elapsed:.2f}s, "
            f"stopped: {reason}",
            flush=True,
        )
    if reason == "max_iter":
        warn_at_caller(
            f"{name}: the mini-batch solver reached max_iter={max_iter} epochs and the "
            "optimisation has not converged yet; increase max_iter or tol.",
            ConvergenceWarning,
        )
    return EpochResult(theta, float(last_loss), reason, interrupted)
