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

from ._array import BufferPool
from ._objective import AutoencoderObjective, Corruption
from ._optimize import current_stage
from ._parallel import (
    available_threads,
    blas_single_threaded,
    interrupt_deferred,
    map_blocks,
    minibatch_block_rows,
    row_blocks,
)
from ._warnings import warn_at_caller
from .exceptions import FitInterruptedWarning, NonFiniteLossError, SkaeWarning

__all__ = [
    "STOCHASTIC_STOP_REASONS",
    "AdamOptimizer",
    "EpochState",
    "SGDOptimizer",
    "apply_optimizer_settings",
    "autoencoder_rows",
    "make_optimizer",
    "minibatch_objective",
    "run_epochs",
]

#: Why a mini-batch run stopped (``stop_reason_``): the loss (or the validation score with
#: early stopping) did not improve by ``tol`` for ``n_iter_no_change`` epochs; the epoch
#: limit; Ctrl-C; the one epoch of a ``partial_fit`` call.
STOCHASTIC_STOP_REASONS = ("no improvement", "max_iter", "interrupted", "partial_fit")


# A parameter vector with at least this many entries is updated by the worker threads, a
# slice each (the update is elementwise: the result is the same for any split).
_SPLIT_UPDATE_MIN = 1 << 16


def elementwise(part, size):
    """Run ``part(start, stop, worker)`` over ``range(size)``: in slices on the worker
    threads from ``_SPLIT_UPDATE_MIN`` entries on, else in one call here."""
    n = available_threads() if size >= _SPLIT_UPDATE_MIN else 1
    # finish: a Ctrl-C while the slices run lets them all end, so a step is applied whole
    map_blocks(part, row_blocks(size, -(-size // max(n, 1))), n, finish=True)


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
        lr, momentum, nesterov = self.learning_rate, self.momentum, self.nesterov
        velocity = self.velocity

        def part(start, stop, worker):  # elementwise: slices updated at once, same result
            sl = slice(start, stop)
            v, g = velocity[sl], grad[sl]
            v *= momentum
            v -= lr * g
            if nesterov:
                theta[sl] += momentum * v - lr * g
            else:
                theta[sl] += v

        elementwise(part, theta.shape[0])


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
        self.learning_rate = self.learning_rate_init * np.sqrt(1 - b2**self.t) / (1 - b1**self.t)
        step, scale = self._buffers(grad.shape)
        lr, eps, ms, vs = self.learning_rate, self.epsilon, self.ms, self.vs

        # the rule of scikit-learn's AdamOptimizer, operation for operation, in two reused
        # buffers (no temporary vector per step); elementwise, so cut into slices that the
        # worker threads update at once with the same result
        def part(start, stop, worker):
            sl = slice(start, stop)
            g, m, v, st, sc = grad[sl], ms[sl], vs[sl], step[sl], scale[sl]
            m *= b1
            m += np.multiply(g, 1 - b1, out=st)
            v *= b2
            np.multiply(g, g, out=st)
            v += np.multiply(st, 1 - b2, out=st)
            np.sqrt(v, out=sc)
            sc += eps
            np.multiply(m, lr, out=st)
            st /= sc
            theta[sl] -= st

        elementwise(part, theta.shape[0])

    def _buffers(self, shape):
        buffers = getattr(self, "_scratch", None)
        if buffers is None or buffers[0].shape != shape:
            buffers = self._scratch = (np.empty(shape), np.empty(shape))
        return buffers

    def __getstate__(self):  # the scratch buffers are not state
        state = dict(self.__dict__)
        state.pop("_scratch", None)
        return state


def make_optimizer(estimator, size):
    """A new optimiser for ``size`` parameters from an estimator's solver settings
    (``solver``, ``learning_rate_init``, ``beta_1``, ... as the MLPs name them)."""
    if estimator.solver == "adam":
        return AdamOptimizer(
            size,
            estimator.learning_rate_init,
            estimator.beta_1,
            estimator.beta_2,
            estimator.epsilon,
        )
    return SGDOptimizer(
        size,
        estimator.learning_rate_init,
        estimator.learning_rate,
        estimator.momentum,
        estimator.nesterovs_momentum,
        estimator.power_t,
    )


def mini_batch_rows(estimator, n_rows, what):
    """Rows per step: ``mini_batch_size`` (``"auto"``: ``min(200, n_rows)``), clipped to
    the ``n_rows`` rows of ``what`` with a warning, as the MLPs clip ``batch_size``."""
    size = estimator.mini_batch_size
    if size == "auto":
        return max(1, min(200, n_rows))
    if size > n_rows:
        warn_at_caller(
            f"mini_batch_size={size} is larger than {what} ({n_rows} rows): each epoch is "
            f"one step over all {n_rows} (the size is clipped, as the MLPs clip "
            "batch_size).",
            SkaeWarning,
        )
    return max(1, min(size, n_rows))


def apply_optimizer_settings(optimizer, estimator, t):
    """Give a carried-over optimiser an estimator's current solver settings (``set_params``
    between ``partial_fit`` calls); its moments, velocity and step count are kept, and its
    step size too unless ``learning_rate_init`` or the ``learning_rate`` schedule changed
    (a step decayed by ``"invscaling"`` or divided by ``"adaptive"`` is not the step of
    another schedule: it restarts from ``learning_rate_init``). ``t``: the rows seen."""
    restart = float(estimator.learning_rate_init) != optimizer.learning_rate_init
    if isinstance(optimizer, AdamOptimizer):
        optimizer.beta_1, optimizer.beta_2 = float(estimator.beta_1), float(estimator.beta_2)
        optimizer.epsilon = float(estimator.epsilon)
    else:
        restart = restart or optimizer.schedule != estimator.learning_rate
        optimizer.schedule = estimator.learning_rate
        optimizer.momentum = float(estimator.momentum)
        optimizer.nesterov = bool(estimator.nesterovs_momentum)
        optimizer.power_t = float(estimator.power_t)
    if restart:
        optimizer.learning_rate_init = float(estimator.learning_rate_init)
        optimizer.learning_rate = float(estimator.learning_rate_init)
    optimizer.iteration_ends(t)  # "invscaling": the step size at t rows seen


def minibatch_objective(
    spec, X, rows, *, corruption=None, batch_size=None, block_rows=None, buffers=None
):
    """The autoencoder objective on the rows ``rows`` of ``X`` (a slice or an index array).

    Only the selected rows are read (a slice of a memmap is a view; an index array copies
    those rows only). The sparsity penalty's mean activation ρ̂ is the mini-batch's own
    mean: the objective is the full objective with the mini-batch as its data, so for
    ``rows`` covering all of ``X`` in order it is the full objective (bit for bit with
    the same ``block_rows``; the solvers pass :func:`skae._parallel.minibatch_block_rows`,
    two blocks that two workers share, which changes only the rounding of the sums).
    """
    X_rows = X[rows]
    if block_rows is not None and batch_size is not None:
        block_rows = min(block_rows, batch_size)
    return AutoencoderObjective(
        spec,
        X_rows,
        corruption=corruption,
        batch_size=batch_size,
        block_rows=block_rows,
        buffers=buffers,
    )


def autoencoder_rows(spec, X, *, noise=None, batch_size=None):
    """The autoencoder's ``objective_of(rows, random_state)`` for :func:`run_epochs`.

    ``objective_of(rows, random_state)`` is :func:`minibatch_objective` on those rows of
    ``X``; with ``noise`` (``(kind, level)``) a fresh corruption is drawn for it, its seed
    from ``random_state`` (None: the clean rows, no draw).
    """

    pool = BufferPool()  # each mini-batch's objective reuses the previous one's buffers

    def objective_of(rows, random_state):
        pool.rewind()
        corruption = None
        if noise is not None and random_state is not None:
            seed = int(random_state.randint(np.iinfo(np.int32).max))
            corruption = Corruption(noise[0], noise[1], seed)
        n_rows = len(range(X.shape[0])[rows]) if isinstance(rows, slice) else len(rows)
        return minibatch_objective(
            spec,
            X,
            rows,
            corruption=corruption,
            batch_size=batch_size,
            block_rows=minibatch_block_rows(n_rows),
            buffers=pool,
        )

    return objective_of


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
    objective_of,
    n_rows,
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
    validation_score=None,
    incremental=False,
    verbose=0,
    name="model",
    max_iter_name="max_iter",
    tol_name="tol",
    regularisation=None,
):
    """Minimise over mini-batches of ``n_rows`` rows for up to ``max_iter`` epochs.

    One epoch loop for every objective: ``objective_of(rows, random_state)`` returns the
    pure objective ``fun(theta) -> (J, grad)`` of the rows ``rows`` (a slice or an index
    array into ``range(n_rows)``), e.g. :func:`autoencoder_rows` (which draws a fresh
    corruption for every mini-batch from ``random_state``) or the classifier's softmax
    and fine-tuning objectives on a mini-batch of labelled rows. It is called with
    ``random_state`` None for the clean objective of the start (an interruption before
    the first step).

    ``theta`` (float64) is updated in place. ``train_rows`` is None (all rows, in order)
    or an index array. Each epoch visits the training rows once, in a new order drawn from
    ``random_state`` when ``shuffle``, in mini-batches of ``mini_batch_size`` rows (the
    last one smaller). After each epoch the mean mini-batch loss
    is appended to ``state.loss_curve`` and the MLPs' no-improvement rule is applied: on
    ``validation_score(theta)`` (higher is better; appended to
    ``state.validation_scores``) when given, else on the loss. With ``incremental``
    exactly one epoch runs (``partial_fit``).

    The best θ by validation score is returned when early stopping (as the MLPs do). A
    non-finite loss or gradient, or a step that makes θ non-finite, raises
    :class:`NonFiniteLossError` (``regularisation``: its advice on the objective's penalty
    terms, :class:`~skae._optimize.FitStage`'s by default); Ctrl-C keeps the parameters
    after the last completed mini-batch step and warns; ``max_iter`` epochs without the
    stopping rule warn with :class:`~sklearn.exceptions.ConvergenceWarning`.
    """
    stage = current_stage(
        name, max_iter=max_iter_name, tol=tol_name, regularisation=regularisation
    )
    name = stage.name
    n = n_rows if train_rows is None else len(train_rows)
    start_time = time.perf_counter()
    best = {}
    reason = "partial_fit" if incremental else "max_iter"
    interrupted = False
    last_loss = state.loss_curve[-1] if state.loss_curve else None
    if validation_score is None and state.loss_curve and state.best_loss == np.inf:
        # continuing a run that watched validation scores: the best loss so far is the
        # lowest of its curve
        state.best_loss = min(state.loss_curve)
    epoch_loss = 0.0
    seen = 0
    try:
        # BLAS on one thread for the whole run: a mini-batch's products are small, and
        # each objective's own limit is then free (no thread started per mini-batch)
        with blas_single_threaded():
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
                    J, grad = objective_of(rows, random_state)(theta)
                    if not (np.isfinite(J) and np.all(np.isfinite(grad))):
                        what = "loss" if not np.isfinite(J) else "gradient"
                        raise NonFiniteLossError(
                            f"{name}: the {what} became non-finite (loss = {J}) during "
                            "optimisation; no parameters were kept from this fit. Scale the "
                            "input (e.g. MinMaxScaler or StandardScaler), lower "
                            f"learning_rate_init, or {stage.regularisation}."
                        )
                    with interrupt_deferred():  # a step is applied whole, or not at all
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
                if validation_score is not None and not np.isfinite(state.validation_scores[-1]):
                    raise NonFiniteLossError(
                        f"{name}: the validation score became non-finite "
                        f"({state.validation_scores[-1]}): the loss of the held-out rows "
                        "overflows, so early stopping cannot compare epochs; no parameters "
                        "were kept from this fit. Scale the input (e.g. MinMaxScaler or "
                        "StandardScaler)."
                    )
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
            last_loss = float(objective_of(rows, None)(theta)[0])
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
            f"{name}: the mini-batch solver reached {stage.max_iter}={max_iter} epochs and "
            f"the optimisation has not converged yet; increase {stage.max_iter} or "
            f"{stage.tol}.",
            ConvergenceWarning,
        )
    return EpochResult(theta, float(last_loss), reason, interrupted)
