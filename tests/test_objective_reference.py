"""The sparse autoencoder objective computes today what it computed when
tests/data/objective_reference.npz was made (tests/data/make_objective_reference.py): the
value and the gradient at a random θ, to 1e-12 relative, for every combination of the
options (tied, tanh, noise, sparse input, float32, batch_size, worker threads)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parent / "data"


def _maker():
    spec = importlib.util.spec_from_file_location(
        "make_objective_reference", DATA / "make_objective_reference.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MAKER = _maker()
CASES = MAKER.combinations()


def _reference():
    with np.load(DATA / "objective_reference.npz") as stored:
        names, values = list(stored["names"]), stored["values"]
        gradients = np.split(stored["gradients"], np.cumsum(stored["sizes"])[:-1])
    return {name: (J, grad) for name, J, grad in zip(names, values, gradients)}


REFERENCE = _reference()


def test_every_case_is_pinned():
    assert sorted(REFERENCE) == sorted(name for name, _ in CASES)
    assert len(CASES) == 208


@pytest.mark.parametrize("name, case", CASES, ids=[name for name, _ in CASES])
def test_objective_value_and_gradient_are_unchanged(name, case):
    J_expected, grad_expected = REFERENCE[name]
    _, J, grad = MAKER.evaluate(case)
    assert J == pytest.approx(J_expected, rel=1e-12, abs=0.0)
    scale = np.abs(grad_expected).max()
    np.testing.assert_allclose(grad, grad_expected, rtol=1e-12, atol=1e-12 * scale)
