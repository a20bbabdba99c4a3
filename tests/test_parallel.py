"""skae._parallel: the fixed block partition, ordered reduction, process-safe BLAS limits."""

import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from skae._parallel import (
    block_rows_for,
    map_blocks,
    row_blocks,
    sets_per_worker,
    worker_count,
)


def test_row_blocks_cover_the_rows_once_in_order():
    assert row_blocks(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert row_blocks(8, 4) == [(0, 4), (4, 8)]
    assert row_blocks(0, 4) == []


def test_block_rows_depend_on_the_widths_only():
    assert block_rows_for(784) == 256
    assert block_rows_for(784, 10_000) == 256  # never below the minimum
    assert block_rows_for(256) == 256
    assert block_rows_for(200) == 512  # 328 rows rounded up to a multiple of 256
    assert block_rows_for(64, 25) == 1024
    assert block_rows_for(64, 200) == 1024
    assert block_rows_for(1) == 1 << 16
    # capped where a (rows, n_hidden) block would pass 2**20 elements
    assert block_rows_for(1, 200) == 5120
    assert block_rows_for(16, 4096) == 256


def test_worker_count_is_at_least_one_and_at_most_one_per_block():
    assert worker_count(4, 2) == 2
    assert worker_count(2, 9) == 2
    assert worker_count(0, 5) == 1
    assert worker_count(3, 0) == 1


def test_two_buffer_sets_per_worker_only_with_more_blocks_than_workers():
    assert sets_per_worker(2, 20) == 2
    assert sets_per_worker(2, 2) == 1
    assert sets_per_worker(1, 1) == 1


@pytest.mark.parametrize("n_workers", [1, 2, 4])
def test_map_blocks_returns_results_in_block_order(n_workers):
    blocks = row_blocks(100, 7)

    def function(start, stop, worker):
        time.sleep(0.001 * ((start * 7919) % 5))  # finish out of order
        return (start, stop)

    assert map_blocks(function, blocks, n_workers) == blocks


@pytest.mark.parametrize("n_workers", [1, 2, 4])
def test_combine_sees_blocks_in_order_and_buffers_are_safe(n_workers):
    """combine is called in block order while the producing worker waits, so a worker's
    buffer can be handed to combine without a copy."""
    blocks = row_blocks(200, 5)
    buffers = [np.empty(1) for _ in range(n_workers)]
    seen = []

    def function(start, stop, worker):
        buffers[worker][0] = start
        time.sleep(0.0005 * (start % 3))
        return buffers[worker]

    map_blocks(function, blocks, n_workers, combine=lambda b: seen.append(float(b[0])))
    assert seen == [float(start) for start, _ in blocks]


@pytest.mark.parametrize("n_workers", [1, 2, 3])
@pytest.mark.parametrize("sets_per_worker", [1, 2])
def test_buffer_sets_are_never_shared_in_flight_and_stay_with_their_worker(
    n_workers, sets_per_worker
):
    """A buffer set is handed out again only after its block's result was combined, and
    set ``i`` is only used by one thread (the worker ``i % n_workers``): a worker's
    scratch buffers can be shared by its sets."""
    blocks = row_blocks(300, 5)
    n_sets = n_workers * sets_per_worker
    buffers = [np.empty(1) for _ in range(n_sets)]
    lock = threading.Lock()
    in_use, clashes, threads, seen = set(), [], {}, []

    def function(start, stop, buffer_set):
        with lock:
            if buffer_set in in_use:
                clashes.append(buffer_set)
            in_use.add(buffer_set)
            threads.setdefault(buffer_set % n_workers, set()).add(threading.get_ident())
        buffers[buffer_set][0] = start
        time.sleep(0.0003 * ((start * 7919) % 4))  # finish out of order
        return buffer_set

    def combine(buffer_set):
        seen.append(float(buffers[buffer_set][0]))
        with lock:
            in_use.discard(buffer_set)

    map_blocks(function, blocks, n_workers, combine=combine, sets_per_worker=sets_per_worker)
    assert seen == [float(start) for start, _ in blocks]
    assert clashes == []
    assert set(threads) <= set(range(n_workers))
    assert all(len(idents) == 1 for idents in threads.values()), threads


def test_a_worker_with_two_buffer_sets_goes_on_while_its_result_waits():
    """Block 0 waits until block 2 has started. Block 1's result must wait for block 0's,
    so with one buffer set per worker nobody could start block 2; with two, the worker of
    block 1 starts block 2 in its other set, and the run completes in block order."""
    block_2_started = threading.Event()
    waited = []
    seen = []

    def function(start, stop, buffer_set):
        if start == 0:
            waited.append(block_2_started.wait(30))
        if start == 2:
            block_2_started.set()
        return start

    map_blocks(function, row_blocks(6, 1), 2, combine=seen.append, sets_per_worker=2)
    assert waited == [True], "block 2 did not start while block 0's result was pending"
    assert seen == list(range(6))


def test_an_error_in_combine_is_raised_and_stops_the_run():
    calls = []

    def combine(result):
        if result == 3:
            raise ValueError("combine failed at block 3")

    def function(start, stop, buffer_set):
        calls.append(start)
        return start

    with pytest.raises(ValueError, match="combine failed at block 3"):
        map_blocks(function, row_blocks(400, 1), 2, combine=combine, sets_per_worker=2)
    assert len(calls) < 400  # stopped early


def test_floating_point_sums_do_not_depend_on_workers():
    rng = np.random.RandomState(0)
    data = rng.standard_normal((1000, 3)) * 10.0 ** rng.randint(-8, 8, size=(1000, 1))
    blocks = row_blocks(1000, 37)
    totals = {}
    for k in (1, 2, 3, 8):
        total = np.zeros(3)

        def combine(part, total=total):
            total += part

        map_blocks(lambda s, e, w: data[s:e].sum(axis=0), blocks, k, combine=combine)
        totals[k] = total
    for k in (2, 3, 8):
        np.testing.assert_array_equal(totals[k], totals[1])


def test_an_error_in_a_block_stops_the_others_and_is_raised(monkeypatch):
    """The block in flight when another fails finishes, no block starts after the error,
    and the error is raised. (Block 0 returns only once the run is stopped, so that block
    1 fails while it is in flight, at any load.)"""
    from skae import _parallel

    stopped = threading.Event()
    stop_run = _parallel._Run.stop

    def stopping(run):
        stop_run(run)
        stopped.set()

    monkeypatch.setattr(_parallel._Run, "stop", stopping)
    calls = []

    def function(start, stop, worker):
        calls.append(start)
        if start == 10:
            raise ValueError("block 10 failed")
        assert stopped.wait(60), "the error in block 10 did not stop the run"
        return start

    with pytest.raises(ValueError, match="block 10 failed"):
        map_blocks(function, row_blocks(1000, 10), 2, combine=lambda r: None)
    assert sorted(calls) == [0, 10]  # stopped early, not all 100 blocks


def test_nested_call_from_a_worker_runs_in_that_worker():
    def inner(start, stop, worker):
        return threading.current_thread().name

    def outer(start, stop, worker):
        names = map_blocks(inner, row_blocks(4, 1), 2)
        return set(names) == {threading.current_thread().name}

    assert all(map_blocks(outer, row_blocks(4, 1), 2))


_CONCURRENCY_SCRIPT = r"""
import json, threading, warnings
import numpy as np
from threadpoolctl import threadpool_info

def blas():
    return sorted(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")

warnings.simplefilter("ignore")  # short fits; ConvergenceWarning is not the point here
import skae  # loads every BLAS skae uses (SciPy's too)
from skae._parallel import available_threads, blas_single_threaded

out = {"before": blas()}

# Thread A enters, thread B enters, A leaves (B still holds), then B leaves.
a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
def a():
    with blas_single_threaded():
        a_in.set()
        b_in.wait()
    a_out.set()
def b():
    a_in.wait()
    with blas_single_threaded():
        b_in.set()
        a_out.wait()
        out["B alone"] = blas()
        out["available"] = available_threads()
threads = [threading.Thread(target=a), threading.Thread(target=b)]
[t.start() for t in threads]; [t.join() for t in threads]
out["after interleaving"] = blas()

# Two fits at once in threads (data above the parallel threshold), three times.
from skae import SparseAutoencoder
X = np.random.RandomState(0).rand(3000, 40)
def fit():
    SparseAutoencoder(n_hidden=5, max_iter=5, random_state=0).fit(X)
for _ in range(3):
    threads = [threading.Thread(target=fit) for _ in range(2)]
    [t.start() for t in threads]; [t.join() for t in threads]
out["after concurrent fits"] = blas()

# GridSearchCV(n_jobs=2) under joblib's threading backend.
from joblib import parallel_backend
from sklearn.model_selection import GridSearchCV
with parallel_backend("threading"):
    GridSearchCV(SparseAutoencoder(max_iter=5, random_state=0), {"n_hidden": [3, 4]},
                 cv=2, n_jobs=2).fit(X[:1000])
out["after threaded grid search"] = blas()

# The main thread holds the limit, a thread holds it too and leaves last.
inside = threading.Event(); release = threading.Event()
def late():
    with blas_single_threaded():
        inside.set()
        release.wait()
t = threading.Thread(target=late)
with blas_single_threaded():
    t.start(); inside.wait()
release.set()  # the main thread has left: the thread leaves last
t.join()
out["after main and a thread held it"] = blas()

# The user's own limits still work after skae changed the count.
from threadpoolctl import threadpool_limits
with threadpool_limits(1, user_api="blas"):
    out["user's limit after skae"] = blas()
print(json.dumps(out))
"""


def _blas_counts_in_a_fresh_process(script):
    """The JSON that ``script`` prints last, run in a new process with two BLAS threads
    (skipped where threadpoolctl finds no BLAS); its "before" counts are checked."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="2", OMP_NUM_THREADS="2", MKL_NUM_THREADS="2")
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    if not out["before"]:
        pytest.skip("no BLAS library found by threadpoolctl")
    assert set(out["before"]) == {2}, out
    return out


def test_blas_limits_are_restored_after_concurrent_use():
    """Run in a fresh process with two BLAS threads, where no thread has set a limit yet
    (some OpenBLAS builds then honour changes from any thread): after interleaved holders,
    concurrent fits in threads, a threaded GridSearchCV and a limit held by the main thread
    and another thread, BLAS is back at two threads; while held, it was at one; and the
    user's own threadpool_limits still takes effect afterwards."""
    out = _blas_counts_in_a_fresh_process(_CONCURRENCY_SCRIPT)
    assert set(out["B alone"]) == {1}, out
    assert out["available"] == 2
    assert set(out["user's limit after skae"]) == {1}, out
    for key in (
        "after interleaving",
        "after concurrent fits",
        "after threaded grid search",
        "after main and a thread held it",
    ):
        assert out[key] == out["before"], (key, out)


_MAIN_THREAD_LIMIT_SCRIPT = r"""
import json
from threadpoolctl import threadpool_info, threadpool_limits

def blas():
    return sorted(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")

import skae  # loads every BLAS skae uses (SciPy's too)
from skae._parallel import blas_single_threaded

import threading, warnings
import numpy as np
from skae import SparseAutoencoder

warnings.simplefilter("ignore")  # short fits
X = np.random.RandomState(0).rand(3000, 64)  # 3 blocks: two workers


def fit(models, key):
    ae = SparseAutoencoder(n_hidden=25, max_iter=15, random_state=0).fit(X)
    models[key] = ae.components_


def in_a_thread(function, *args):
    thread = threading.Thread(target=function, args=args)
    thread.start()
    thread.join()


models, seen = {}, {}
out = {"before": blas()}
with threadpool_limits(1, user_api="blas"):
    fit(models, "main thread, limit 1")
with threadpool_limits(2, user_api="blas"):  # the main thread controls the count
    with blas_single_threaded():
        out["skae inside the user's limit"] = blas()
    out["after skae, inside the user's limit"] = blas()

    def hold():
        with blas_single_threaded():
            seen["inside"] = blas()

    in_a_thread(hold)
    out["skae in a thread inside the user's limit"] = seen["inside"]
    out["after the thread"] = blas()
    fit(models, "main thread, limit 2")
    in_a_thread(fit, models, "a thread, limit 2")
out["after the user's limit"] = blas()
with blas_single_threaded():
    out["skae later"] = blas()
out["after skae later"] = blas()
reference = models.pop("main thread, limit 1")
out["same models"] = {k: bool(np.array_equal(v, reference)) for k, v in models.items()}
print(json.dumps(out))
"""


def test_blas_limit_holds_inside_a_limit_set_by_the_main_thread():
    """threadpool_limits makes the main thread control OpenBLAS's count (threadpoolctl
    3.8 then ignores other threads' set_num_threads): skae's limit still holds, from the
    main thread and from other threads, inside the user's limit and after it; the user's
    count is restored; and a fit gives the same model in the main thread or another one,
    under a limit of 1 or 2."""
    out = _blas_counts_in_a_fresh_process(_MAIN_THREAD_LIMIT_SCRIPT)
    assert set(out["skae inside the user's limit"]) == {1}, out
    assert set(out["skae in a thread inside the user's limit"]) == {1}, out
    assert set(out["skae later"]) == {1}, out
    for key in ("after skae, inside the user's limit", "after the thread",
                "after the user's limit", "after skae later"):
        assert out[key] == out["before"], (key, out)
    assert out["same models"] == {"main thread, limit 2": True, "a thread, limit 2": True}


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_waits_for_the_blocks_in_flight_and_starts_no_more(ctrl_c, presses):
    """Ctrl-C in the thread that waits: map_blocks raises KeyboardInterrupt only after the
    blocks already running have returned (their buffers are free again), and no further
    block is started; a second Ctrl-C while it waits for them does not cut the wait short.

    The interrupt comes once both blocks are running, and they return only after
    map_blocks has handled it (``ctrl_c``: no signal or timer, so the same at any load)."""
    ctrl_c.second_press = presses == 2
    started, finished = [], []
    lock = threading.Lock()
    both_running = threading.Barrier(2, action=ctrl_c.press, timeout=60)

    def function(start, stop, worker):
        with lock:
            started.append(start)
        both_running.wait()
        assert ctrl_c.wait_handled(), "map_blocks did not wait for the blocks in flight"
        with lock:
            finished.append(start)
        return start

    with pytest.raises(KeyboardInterrupt):
        map_blocks(function, row_blocks(8, 1), 2, combine=lambda result: None)
    finished_when_raised = sorted(finished)
    assert ctrl_c.raised == presses
    assert finished_when_raised == [0, 1]
    assert sorted(started) == [0, 1]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # 3 iterations
def test_the_thread_pool_controller_is_built_once(monkeypatch):
    """Building a ThreadpoolController inspects every loaded library; skae builds it once
    per process, not per fit or per evaluation."""
    import threadpoolctl

    from skae import _parallel

    _parallel._controller()  # built (if not yet) before counting
    built = []
    original = threadpoolctl.ThreadpoolController

    def counting(*args, **kwargs):
        built.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(threadpoolctl, "ThreadpoolController", counting)
    X = np.random.RandomState(0).rand(2000, 40)  # above the parallel threshold
    from skae import SparseAutoencoder

    SparseAutoencoder(n_hidden=3, max_iter=3, tol=0.0, random_state=0).fit(X)
    with _parallel.blas_single_threaded():
        _parallel.available_threads()
    assert built == []


def test_map_blocks_with_finish_runs_every_block_in_the_calling_thread_through_a_ctrl_c():
    """finish=True with one worker (the blocks run in the calling thread): a Ctrl-C in the
    middle of the first block lets it and every other block run, then raises."""
    import _thread

    done = []

    def block(start, stop, worker):
        if start == 0:
            _thread.interrupt_main()  # Ctrl-C in this (the main) thread, mid-block
            time.sleep(0.01)
        done.append(start)

    with pytest.raises(KeyboardInterrupt):
        map_blocks(block, row_blocks(6, 1), 1, finish=True)
    assert done == list(range(6))


def test_map_blocks_with_finish_runs_every_block_through_a_ctrl_c(ctrl_c):
    """finish=True (an in-place update cut into slices): a Ctrl-C while the first blocks
    run lets the blocks not yet started run too, then raises (without it they would be
    dropped: an evaluation is abandoned whole)."""
    done = []

    def block(start, stop, worker):
        if start < 2:  # one block per worker: Ctrl-C arrives while both run
            ctrl_c.press()
            deadline = time.monotonic() + 60
            while not ctrl_c.raised and time.monotonic() < deadline:
                time.sleep(0.001)
        done.append(start)

    with pytest.raises(KeyboardInterrupt):
        map_blocks(block, [(i, i + 1) for i in range(4)], 2, finish=True)
    assert ctrl_c.raised == 1
    assert sorted(done) == [0, 1, 2, 3]


_CTRL_C_WHILE_LIMITING_SCRIPT = r"""
import _thread, json, time
from threadpoolctl import threadpool_info

def blas():
    return sorted(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")

import skae  # loads every BLAS skae uses (SciPy's too)
from skae import _parallel

out = {"before": blas()}
for change in ("_limit_to_one", "_restore"):
    real = getattr(_parallel, change)

    def interrupted(*args, real=real):
        _thread.interrupt_main()  # Ctrl-C in the main thread while the change runs
        time.sleep(0.01)
        return real(*args)

    setattr(_parallel, change, interrupted)
    seen = {"body": None, "raised": False}
    try:
        with _parallel.blas_single_threaded():
            seen["body"] = blas()
    except KeyboardInterrupt:
        seen["raised"] = True
    setattr(_parallel, change, real)
    seen["holders"] = _parallel._STATE["holders"]
    seen["saved"] = _parallel._STATE["saved"]
    seen["lock free"] = _parallel._HOLD.acquire(blocking=False)
    if seen["lock free"]:
        _parallel._HOLD.release()
    seen["after"] = blas()
    with _parallel.blas_single_threaded():
        seen["held again"] = blas()
    seen["after again"] = blas()
    out[change] = seen
print(json.dumps(out))
"""


def test_ctrl_c_while_the_blas_limit_changes_is_raised_once_the_change_is_whole():
    """A Ctrl-C that comes while the first holder sets BLAS to one thread, or while the
    last restores it, is raised once the change has ended: the module lock is free, no
    holder is left counted, the thread counts are back, and the limit works afterwards
    (before, the lock could stay taken, hanging every later fit, or the Ctrl-C was lost).
    In a fresh process with two BLAS threads, so that a count left at 1 shows."""
    out = _blas_counts_in_a_fresh_process(_CTRL_C_WHILE_LIMITING_SCRIPT)
    one = [1] * len(out["before"])
    for change, body in (("_limit_to_one", None), ("_restore", one)):
        seen = out[change]
        assert seen["raised"], (change, out)
        assert seen["body"] == body, (change, out)
        assert seen["holders"] == 0 and seen["saved"] is None, (change, out)
        assert seen["lock free"], (change, out)
        assert seen["after"] == out["before"], (change, out)
        assert seen["held again"] == one, (change, out)
        assert seen["after again"] == out["before"], (change, out)
