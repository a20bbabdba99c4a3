"""Test-session set-up shared by the doctests in skae/ and the tests in tests/."""

import os

# scikit-learn's estimator checks include `check_array_api_input`, which only runs when
# SciPy's array API support is switched on before SciPy is first imported. Switch it on
# so that the check runs (and passes) instead of being skipped.
os.environ.setdefault("SCIPY_ARRAY_API", "1")
