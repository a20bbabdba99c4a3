"""Test-session set-up shared by the doctests in skae/ and the tests in tests/."""

import os

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


def pytest_configure(config):
    # Resolved per test, after pytest has put this checkout first on sys.path, so that the
    # class is the one the doctests and tests import (see pyproject.toml).
    config.addinivalue_line("filterwarnings", "error::skae._base.SkaeWarning")
