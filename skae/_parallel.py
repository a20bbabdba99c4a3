"""Deterministic row-block parallelism and process-safe BLAS thread limits.

The objectives of skae are sums over the rows of the data. To make their value independent
of the number of threads, the rows are cut into a fixed partition of blocks
(:func:`row_blocks`, whose block size depends only on the data's shape), every block's
partial result is computed by whichever worker thread is free, and the partial results are
combined **in block order** (:func:`map_blocks`). The floating-point operations, and so the
rounding, are then the same for 1 or 16 threads; only the speed changes.

API
---
``row_blocks(n_rows, block_rows) -> list[tuple[int, int]]``
    The half-open row ranges ``[(0, b), (b, 2b), …, (…, n_rows)]``.
``block_rows_for(n_features, n_hidden=1, minimum=256) -> int``
    A block size that depends only on the layer's widths: a multiple of ``minimum`` rows
    with at least about 65 536 elements per ``(rows, n_features)`` block (enough work to
    hide a block's fixed cost), unless that would put more than about 2**20 elements in a
    ``(rows, n_hidden)`` block.
``minibatch_block_rows(n_rows) -> int``
    The block size of a mini-batch's objective: half its rows (rounded up) from 64 rows
    on, so that two workers share every mini-batch step; it too depends on the row count
    only.
``map_blocks(function, blocks, n_workers, *, combine=None, sets_per_worker=1)``
    Calls ``function(start, stop, buffer_set)`` for every block; ``buffer_set`` in
    ``range(n_workers * sets_per_worker)`` names the caller's buffers the block may use (no
    two blocks in flight share one; set ``i`` belongs to worker thread ``i % n_workers``).
    Without ``combine`` it returns the results as a list in block order. With ``combine``
    it calls ``combine(result)`` for each block's result in block order, and the block's
    buffer set is not handed out again before that, so a result may be a view of its
    buffers; it then returns None. With two sets per worker, a worker whose result waits
    for an earlier block's goes on with its next block. ``n_workers=1``, a single block, or
    a call from inside a worker runs everything in the calling thread. Worker threads run
    BLAS on one thread. A ``KeyboardInterrupt`` (or any error) stops the remaining blocks;
    the call waits for the blocks in flight to finish before raising, so no thread is still
    writing the callers' buffers afterwards.
``worker_count(n_workers, n_blocks) -> int``
    The threads ``map_blocks`` uses: at most one per block.
``blas_single_threaded()``
    A context manager that limits BLAS to one thread while it is held, reference-counted
    across threads: concurrent holders share one limit, and the limits in force before the
    first holder entered are restored by whichever holder leaves last. A Ctrl-C that comes
    while a holder enters or leaves is raised once its entry or exit is whole.
``available_threads() -> int``
    The number of threads BLAS may use (honouring ``threadpoolctl`` limits and joblib's),
    as it was before skae limited it.
"""

import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as _wait_futures
from contextlib import contextmanager

from ._array import assign, modify_in_place

__all__ = [
    "PARALLEL_MIN_SIZE",
    "available_threads",
    "blas_single_threaded",
    "block_rows_for",
    "interrupt_deferred",
    "map_blocks",
    "minibatch_block_rows",
    "row_blocks",
    "sets_per_worker",
    "worker_count",
]

# An objective on data with fewer elements than this is evaluated by one worker: threads
# would cost more than they save (the result is the same either way).
PARALLEL_MIN_SIZE = 1 << 16

_LOCK = threading.Lock()
_STATE = {"pid": None, "controller": None, "pools": {}}
_HOLD = threading.Lock()
_LOCAL = threading.local()


# --------------------------------------------------------------------------- partition
def row_blocks(n_rows, block_rows):
    """Half-open row ranges ``(start, stop)`` of ``block_rows`` rows covering ``n_rows``."""
    block_rows = max(1, int(block_rows))
    return [(start, min(start + block_rows, n_rows)) for start in range(0, n_rows, block_rows)]


# A block should hold enough work to hide its fixed cost, about 0.1 ms of Python and of
# NumPy calls on a block whatever its size: at least this many elements of the input...
_BLOCK_ELEMENTS = 1 << 16
# ...but not so many rows that a (rows, n_hidden) buffer would exceed this many elements.
_BLOCK_HIDDEN_ELEMENTS = 1 << 20


def block_rows_for(n_features, n_hidden=1, minimum=256):
    """Rows per block: a multiple of ``minimum`` with at least ``2**16`` elements in a
    ``(rows, n_features)`` block, capped where a ``(rows, n_hidden)`` block would exceed
    ``2**20`` elements (never below ``minimum``).

    256 rows for 256 or more features (MNIST's 784), 1 024 for 64 (8 × 8 patches). Smaller
    blocks of narrow data cost more than their products: at 10 000 × 64 → 25 an evaluation
    took 13.5 ms in blocks of 256 rows and 9.5 ms in blocks of 1 024 (float32: 12.0 and
    5.5 ms; two workers).
    """
    per_block = -(-_BLOCK_ELEMENTS // max(1, int(n_features)))
    rows = minimum * max(1, -(-per_block // minimum))
    cap = _BLOCK_HIDDEN_ELEMENTS // max(1, int(n_hidden)) // minimum * minimum
    return min(rows, max(minimum, cap))


# A mini-batch's objective is cut in two blocks from this many rows on.
MINIBATCH_SPLIT_MIN_ROWS = 64


def minibatch_block_rows(n_rows):
    """Rows per block of one mini-batch's objective: ``ceil(n_rows / 2)`` from
    ``MINIBATCH_SPLIT_MIN_ROWS`` rows on, else ``n_rows`` (one block).

    A mini-batch (200 rows by default) is smaller than one block of the full-batch
    partition, and one BLAS call on 200 rows barely uses a second core; two blocks let two
    workers share each step. The size depends on ``n_rows`` only, so the result does not
    depend on the thread count.
    """
    n_rows = max(1, int(n_rows))
    if n_rows < MINIBATCH_SPLIT_MIN_ROWS:
        return n_rows
    return -(-n_rows // 2)


# --------------------------------------------------------------------------- BLAS limits
def _controller():
    """The process-wide ThreadpoolController, built once per process (rebuilt after fork)."""
    pid = os.getpid()
    if _STATE["pid"] != pid:
        with _LOCK:
            if _STATE["pid"] != pid:
                from threadpoolctl import ThreadpoolController

                _STATE.update(
                    pid=pid,
                    controller=ThreadpoolController(),
                    pools={},
                    holders=0,
                    saved=None,
                )
    return _STATE["controller"]


def _blas_controllers():
    return [lc for lc in _controller().lib_controllers if lc.user_api == "blas"]


def available_threads():
    """Threads BLAS may use now, or before skae limited it (at least 1)."""
    _controller()
    with _HOLD:
        saved = _STATE["saved"]
        counts = list(saved.values()) if saved else None
    if counts is None:
        counts = [lc.num_threads for lc in _blas_controllers()]
    return max(1, min(counts)) if counts else 1


def _in_limiter_thread(function):
    """Run ``function()`` in a new short-lived thread, wait for it to end, return its result.

    A thread that changes an OpenBLAS count may become the one thread allowed to change it
    while it lives (see :func:`_set_num_threads`); this one ends at once.
    """
    result = {}

    def run():
        try:
            result["value"] = function()
        except BaseException as exc:  # handed to the caller below
            result["error"] = exc

    thread = threading.Thread(target=run, name="skae-blas-limit")
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result.get("value")


def _set_num_threads(lc, n):
    """Set ``lc``'s thread count to ``n``, whichever thread asks.

    threadpoolctl 3.8 lets one "controlling" thread at a time change a process-wide
    OpenBLAS pool: the first to change it, while it lives (the main thread inside the
    user's ``threadpool_limits``); another thread's ``set_num_threads`` then does nothing.
    skae's limit is a process-wide hold of its own, counted over its holders and undone by
    the last, so it calls the controller's underlying setter where there is one (earlier
    threadpoolctl versions have no such rule).
    """
    getattr(lc, "_real_set_num_threads", lc.set_num_threads)(n)


def _limit_to_one():
    saved = {id(lc): lc.num_threads for lc in _blas_controllers()}
    for lc in _blas_controllers():
        if lc.num_threads != 1:
            _set_num_threads(lc, 1)
    return saved


def _restore(saved):
    for lc in _blas_controllers():
        if id(lc) in saved and lc.num_threads != saved[id(lc)]:
            _set_num_threads(lc, saved[id(lc)])


@contextmanager
def blas_single_threaded():
    """Limit BLAS to one thread while held; safe when several threads hold it at once.

    The first holder records each BLAS library's thread count and sets it to 1; the last
    holder to leave restores the recorded counts, whichever threads they are (see
    :func:`_set_num_threads`); both changes are made from a short-lived thread.
    A library whose limit is per thread (OpenMP) is also limited in each of skae's worker
    threads (see :func:`map_blocks`).

    A Ctrl-C that arrives while the count of holders changes is held until the change is
    whole (:func:`interrupt_deferred`): the lock is never left taken, and a holder counted
    is a holder that leaves.
    """
    _controller()
    held = False
    try:
        with interrupt_deferred(), _HOLD:
            if _STATE["holders"] == 0:
                _STATE["saved"] = _in_limiter_thread(_limit_to_one)
            _STATE["holders"] += 1
            held = True
        yield
    finally:
        if held:
            with interrupt_deferred(), _HOLD:
                _STATE["holders"] -= 1
                if _STATE["holders"] == 0:
                    saved, _STATE["saved"] = _STATE["saved"], None
                    _in_limiter_thread(lambda: _restore(saved))


def _init_worker():
    """Runs once in each worker thread: mark it, and limit per-thread (OpenMP) BLAS."""
    _LOCAL.is_worker = True
    for lc in _controller().lib_controllers:
        per_thread = lc.user_api == "openmp" or getattr(lc, "threading_layer", "") == "openmp"
        if per_thread:
            lc.set_num_threads(1)


def _pool(n_workers):
    _controller()
    with _LOCK:
        pools = _STATE["pools"]
        if n_workers not in pools:
            pools[n_workers] = ThreadPoolExecutor(
                n_workers, thread_name_prefix="skae", initializer=_init_worker
            )
        return pools[n_workers]


# --------------------------------------------------------------------------- map / reduce
class _Run:
    """Shared state of one :func:`map_blocks` call.

    A block is taken together with a free buffer set of the taking worker's. With
    ``combine``, a block's result waits among the pending results until every earlier
    block has been combined; whichever thread delivers the next block to combine combines
    it and the pending ones that follow it, outside the lock, and each combined block's
    set is free again. A worker whose result waits goes on with its other set, so the
    workers do not run in lockstep. As blocks are taken with their set in block order, the
    earliest block not yet combined always holds a set: a run cannot deadlock.
    """

    def __init__(self, blocks, combine, n_workers, sets_per_worker):
        self.blocks = blocks
        self.combine = combine
        self.results = [None] * len(blocks)
        self.next_block = 0
        self.next_combine = 0
        # worker w's sets are w, w + n_workers, ...; popped from the end: w first
        self.free_sets = [
            [w + j * n_workers for j in range(sets_per_worker - 1, -1, -1)]
            for w in range(n_workers)
        ]
        self.pending = {}  # block index -> (worker, set, result), not yet combined
        self.combining = False  # a thread is combining (outside the lock)
        self.stopped = False
        self.active = 0  # blocks taken and not yet finished (delivered or failed)
        self.condition = threading.Condition()

    def take(self, worker):
        """``(index, buffer_set)`` of the next block for ``worker``, or None when none is left
        (or the run stopped)."""
        free = self.free_sets[worker]
        with self.condition:
            while not free and not self.stopped:
                self.condition.wait()
            if self.stopped or self.next_block >= len(self.blocks):
                return None
            index = self.next_block
            self.next_block += 1
            self.active += 1
            return index, free.pop()

    def finished(self):
        with self.condition:
            self.active -= 1
            self.condition.notify_all()

    def wait_idle(self):
        """Return once no block is running (none starts after :meth:`stop`)."""
        with self.condition:
            while self.active:
                self.condition.wait()

    def deliver(self, worker, index, buffer_set, result):
        if self.combine is None:
            self.results[index] = result
            with self.condition:
                self.free_sets[worker].append(buffer_set)
                self.condition.notify_all()
            return
        with self.condition:
            self.pending[index] = (worker, buffer_set, result)
            if self.combining or self.stopped or index != self.next_combine:
                return  # combined later by the thread that delivers the block before it
            self.combining = True
            worker, buffer_set, result = self.pending.pop(index)
        while True:  # this thread combines: this block and the delivered ones after it
            try:
                self.combine(result)
            except BaseException:
                with self.condition:
                    self.combining = False
                raise
            with self.condition:
                self.next_combine += 1
                self.free_sets[worker].append(buffer_set)
                self.condition.notify_all()
                if self.stopped or self.next_combine not in self.pending:
                    self.combining = False
                    return
                worker, buffer_set, result = self.pending.pop(self.next_combine)

    def stop(self):
        with self.condition:
            self.stopped = True
            self.condition.notify_all()


def _work(run, function, worker):
    try:
        while (taken := run.take(worker)) is not None:
            index, buffer_set = taken
            try:
                start, stop = run.blocks[index]
                run.deliver(worker, index, buffer_set, function(start, stop, buffer_set))
            finally:
                run.finished()
    except BaseException:
        run.stop()
        raise


@contextmanager
def interrupt_deferred():
    """Hold a Ctrl-C that arrives inside the block until the block has ended, then raise
    it: for work that must be applied whole (an in-place parameter update, a change of the
    holders of the BLAS limit). Signals reach the main thread only; in another thread, or
    where Python cannot set the handler, nothing changes."""
    pressed = []
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.getsignal(signal.SIGINT)
    if previous is not None:  # None: a handler not set from Python, left alone
        try:
            signal.signal(signal.SIGINT, lambda signum, frame: pressed.append(frame))
        except ValueError:  # the main thread of a subinterpreter
            previous = None
    if previous is None:
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if pressed and previous is not signal.SIG_IGN:
        if callable(previous):
            previous(signal.SIGINT, pressed[0])  # Python's handler raises KeyboardInterrupt
        else:
            raise KeyboardInterrupt


def map_blocks(
    function, blocks, n_workers, *, combine=None, finish=False, sets_per_worker=1
):
    """Evaluate ``function(start, stop, buffer_set)`` on every block; see the module
    docstring.

    Parameters
    ----------
    function : callable
        ``function(start, stop, buffer_set) -> result`` for the rows ``start:stop``.
        ``buffer_set``, in ``range(n_workers * sets_per_worker)``, names a set of the
        caller's buffers that no other block in flight uses; set ``i`` is only ever used
        by the worker thread ``i % n_workers``, so the buffers a block needs only while
        it runs can be the worker's.
    blocks : list of (int, int)
        The row ranges, e.g. from :func:`row_blocks`. Their order is the order of the
        results and of the calls to ``combine``.
    n_workers : int
        Threads to use (at most ``len(blocks)``; the caller's buffers must be made for the
        same number, see :func:`worker_count`).
    combine : callable or None
        ``combine(result)``, called once per block in block order; until then the block's
        buffer set stays in use, so its result may be a view of that set's buffers.
    finish : bool
        What a Ctrl-C in the waiting thread does: False stops the blocks not yet started
        (an evaluation is abandoned whole); True lets every block run, then raises it
        (work done in place, such as a parameter update, is then applied whole), also when
        it comes while the blocks are handed out or while the calling thread runs them.
    sets_per_worker : int
        With ``combine``, 2 lets a worker whose result waits for an earlier block's go
        on with the next block in its other set; with 1 it waits.

    Returns
    -------
    results : list or None
        The results in block order, or None when ``combine`` is given.
    """
    blocks = list(blocks)
    n_workers = worker_count(n_workers, len(blocks))
    run = _Run(blocks, combine, n_workers, max(1, int(sets_per_worker)))
    if finish:  # a Ctrl-C, even while the tasks are handed out or in an inline block, waits
        with interrupt_deferred():
            _run_blocks(run, function, n_workers, finish)
    else:
        _run_blocks(run, function, n_workers, finish)
    return None if combine is not None else run.results


def _run_blocks(run, function, n_workers, finish):
    if n_workers == 1 or getattr(_LOCAL, "is_worker", False):
        _work(run, function, 0)
    else:
        pool = _pool(n_workers)
        futures = []
        try:
            # submitting is inside the try: Ctrl-C can come while the first workers run
            for worker in range(n_workers):
                futures.append(pool.submit(_work, run, function, worker))
            if finish:
                _wait_through_interrupts(futures)
            else:
                _wait_futures(futures)
        except BaseException:  # Ctrl-C in the waiting thread: stop, then wait for the rest
            # Wait for the blocks in flight, not only for the futures in `futures`: Ctrl-C
            # can come inside pool.submit after a worker has already started a block.
            run.stop()
            while True:
                try:
                    run.wait_idle()
                    break
                except KeyboardInterrupt:
                    continue
            raise
        for future in futures:
            future.result()  # re-raise a worker's error


def sets_per_worker(n_workers, n_blocks):
    """Buffer sets per worker for :func:`map_blocks` with ``combine``: 2 when there are
    more blocks than workers (a worker then goes on while its last result waits), else 1."""
    return 2 if n_blocks > n_workers else 1


def worker_count(n_workers, n_blocks):
    """The threads :func:`map_blocks` uses for ``n_blocks`` blocks: ``n_workers``, at
    least 1 and at most one per block."""
    return max(1, min(int(n_workers), int(n_blocks)))


def _wait_through_interrupts(futures):
    """Wait until every future is done, even through Ctrl-C; then raise the Ctrl-C (a
    worker's error first)."""
    interrupted = False
    while True:
        try:
            _wait_futures(futures)
            break
        except KeyboardInterrupt:
            interrupted = True
    if interrupted:
        for future in futures:
            future.result()
        raise KeyboardInterrupt


class BlockSums:
    """The sums over row blocks, added in block order: ``map_blocks``' ``combine``.

    Each block's result is a sequence of parts (floats or arrays). ``buffers`` holds, for
    each part, the array its total is written into (NumPy: the objective's buffer, which
    the first block's part is copied into and the others are added to in place) or None
    (a float, or an array of another namespace: a new total is made). :attr:`totals` are
    the sums after the last block; :attr:`empty` is True while no block was added.
    """

    def __init__(self, buffers, xp):
        self.totals = list(buffers)
        self.xp = xp
        self.empty = True

    def _add(self, total, part):
        if self.empty:
            return assign(part, total, self.xp)
        if isinstance(total, float):
            return total + part
        return modify_in_place(self.xp, self.xp.add, total, part, out=total)

    def __call__(self, parts):
        self.totals = [self._add(t, p) for t, p in zip(self.totals, parts)]
        self.empty = False
