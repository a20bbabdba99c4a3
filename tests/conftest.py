"""Fixtures shared by the test modules."""

import pytest
from sklearn import config_context


@pytest.fixture
def array_api_dispatch():
    """scikit-learn's array API dispatch, on for the test; the test is skipped, saying why,
    where it cannot be enabled (it needs array_api_compat, and SciPy >= 1.14 with
    scikit-learn < 1.7)."""
    try:
        with config_context(array_api_dispatch=True):
            pass
    except (ImportError, RuntimeError) as exc:
        pytest.skip(f"scikit-learn's array API dispatch cannot be enabled here: {exc}")
    with config_context(array_api_dispatch=True):
        yield
