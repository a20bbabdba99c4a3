"""Test-session set-up shared by the doctests in skae/ and the tests in tests/."""

import os
import threading

import pytest

# scikit-learn's estimator checks include `check_array_api_input`, which only runs when
# SciPy's array API support is switched on before SciPy is first imported. Switch it on
# so that the check runs (and passes) instead of being skipped.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

# The tests fit many small models. On a shared or busy machine, multi-threaded BLAS on
# small matrices can be 100x slower than one thread (threads spin waiting for a core),
# so the suite runs BLAS on one thread unless the caller sets the variable. Results do
# not depend on it; the threaded elementwise path of the objective is tested explicitly
# (tests/test_objective.py forces several threads).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")


# The slowest tests, marked ``slow`` so that ``pytest -m "not slow"`` is a quick run (see
# README.md). Measured with ``pytest --durations``: together they take about 60 % of
# the suite's time. A whole file is named by its path; a test by ``path::function`` (all its
# parametrizations). A name here that no longer exists is an error, so the list stays true.
_SLOW = (
    "tests/test_dask.py",  # a dask cluster of two worker processes
    "tests/test_quality.py",  # accuracy margins on digits
    "tests/test_main.py",  # `python -m skae` end to end, some in subprocesses
    "tests/test_array_api.py::test_inspection_of_a_device_fit_runs_on_the_host",
    "tests/test_common.py::test_default_classifier_passes_the_label_checks",  # default fits
    "tests/test_array_api.py::test_objective_gradient_check_in_array_api_strict",
    "tests/test_datasets.py::test_exercise_settings_learn_localised_oriented_edge_detectors",
    "tests/test_inspection.py::test_modules_import_without_matplotlib",  # a subprocess
    "tests/test_parallel.py::test_blas_limits_are_restored_after_concurrent_use",  # a subprocess
    "tests/test_reliability.py::test_grid_search_n_jobs_2_gives_the_same_scores_as_n_jobs_1",
    "tests/test_sparse_autoencoder.py::test_pipeline_grid_search_on_digits",
    "tests/test_sparse_autoencoder.py::test_denoising_reconstructs_corrupted_digits_better",
    "tests/test_stacked.py::test_fine_tuning_all_beats_no_fine_tuning",
    "tests/test_stacked.py::test_upper_layer_with_too_much_decay_warns_and_per_layer_decay_learns",
    "tests/test_stacked.py::test_semi_supervised_with_ten_percent_of_the_labels",
    "tests/test_stacked.py::test_the_bound_predicts_which_decay_flattens_a_layer_on_codes",
    "tests/test_stacked.py::test_the_constant_codes_check_does_not_copy_the_data",
)


@pytest.hookimpl(tryfirst=True)  # before -m deselects
def pytest_collection_modifyitems(config, items):
    slow_files = {name for name in _SLOW if "::" not in name}
    slow_tests = {}
    for name in _SLOW:
        if "::" in name:
            path, function = name.split("::")
            slow_tests.setdefault(path, set()).add(function)
    checked = set()
    for item in items:
        if not item.path.is_relative_to(config.rootpath):
            continue
        path = item.path.relative_to(config.rootpath).as_posix()
        module = getattr(item, "module", None)  # None for a doctest
        if path in slow_tests and path not in checked and module is not None:
            checked.add(path)
            missing = sorted(f for f in slow_tests[path] if not hasattr(module, f))
            if missing:
                raise pytest.UsageError(
                    f"conftest.py marks {path}::{missing[0]} slow, but {path} has no such "
                    "test: update the _SLOW list in conftest.py."
                )
        function = getattr(item, "originalname", None)
        if path in slow_files or function in slow_tests.get(path, ()):
            item.add_marker(pytest.mark.slow)


def pytest_configure(config):
    # Resolved per test, after pytest has put this checkout first on sys.path, so that the
    # class is the one the doctests and tests import (see pyproject.toml).
    config.addinivalue_line("filterwarnings", "error::skae.exceptions.SkaeWarning")


class _CtrlC:
    """Ctrl-C delivered where a test chooses: see the ``ctrl_c`` fixture."""

    def __init__(self):
        from concurrent.futures import Future

        self._pressed = Future()
        self._lock = threading.Lock()
        self.raised = 0  # KeyboardInterrupts raised in the waiting thread so far
        self.handled = threading.Event()
        self.second_press = False

    def press(self):
        """Ask the thread waiting in ``map_blocks`` to raise ``KeyboardInterrupt`` there."""
        with self._lock:
            if not self._pressed.done():
                self._pressed.set_result(None)

    def wait_handled(self, timeout=60.0):
        """Block (a worker's block) until map_blocks waits for the blocks in flight after
        the interrupt; False if it never does within ``timeout`` seconds (a bug)."""
        return self.handled.wait(timeout)


@pytest.fixture
def ctrl_c(monkeypatch):
    """Ctrl-C at a point the test controls, the same at any load on the machine.

    ``ctrl_c.press()``, called from a block running in a worker thread, makes the thread
    that waits for the workers in :func:`skae._parallel.map_blocks` raise
    ``KeyboardInterrupt`` from that wait, as a real Ctrl-C in that thread does (once: a
    later wait, such as the evaluation after the interrupt, is not interrupted).
    ``ctrl_c.handled`` is set when map_blocks, having caught the interrupt, starts waiting
    for the blocks in flight: a block that waits for it (``ctrl_c.wait_handled()``) is
    certainly still in flight when the interrupt is handled. ``ctrl_c.raised`` counts the
    interrupts raised. With ``ctrl_c.second_press = True`` a second Ctrl-C arrives while
    map_blocks waits for the blocks in flight.

    No signal and no timer is involved, so the outcome does not depend on how the
    threads are scheduled.
    """
    from concurrent.futures import FIRST_COMPLETED

    from skae import _parallel

    ctrl = _CtrlC()
    wait_futures = _parallel._wait_futures
    wait_idle = _parallel._Run.wait_idle

    def waiting(futures, *args, **kwargs):
        if ctrl.raised:
            return wait_futures(futures, *args, **kwargs)
        pending = set(futures) | {ctrl._pressed}
        while pending != {ctrl._pressed}:
            done, pending = wait_futures(pending, return_when=FIRST_COMPLETED)
            if ctrl._pressed in done:
                ctrl.raised += 1
                raise KeyboardInterrupt
        return wait_futures(futures)

    def waiting_for_blocks_in_flight(run):
        if ctrl.second_press and ctrl.raised == 1:
            ctrl.raised += 1
            raise KeyboardInterrupt
        ctrl.handled.set()
        return wait_idle(run)

    monkeypatch.setattr(_parallel, "_wait_futures", waiting)
    monkeypatch.setattr(_parallel._Run, "wait_idle", waiting_for_blocks_in_flight)
    try:
        yield ctrl
    finally:
        ctrl.handled.set()  # a block still waiting (the code under test failed) ends


@pytest.fixture
def array_api_dispatch():
    """scikit-learn's array API dispatch, on for the test; the test is skipped, saying why,
    where it cannot be enabled (it needs array_api_compat, and SciPy >= 1.14 with
    scikit-learn < 1.7)."""
    from sklearn import config_context  # here: SciPy must not be imported before the top

    try:
        with config_context(array_api_dispatch=True):
            pass
    except (ImportError, RuntimeError) as exc:
        pytest.skip(f"scikit-learn's array API dispatch cannot be enabled here: {exc}")
    with config_context(array_api_dispatch=True):
        yield
