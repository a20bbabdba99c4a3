"""Regenerate tests/data/objective_reference.npz, the pinned values and gradients of the
sparse autoencoder objective (tests/test_objective_reference.py).

Run ``python tests/data/make_objective_reference.py`` from the repository root **only** when
a change of the objective's mathematics is deliberate. A change of how the objective is
computed (its modules, its array layer, its network code) must leave these numbers
unchanged to 1e-12 (relative), so do not regenerate the file for such a change.

For every combination of the options (tied weights; sigmoid or tanh units; no noise,
masking or Gaussian noise; dense or sparse input; float64 or float32; ``batch_size`` None
or 16; one or three worker threads) plus the linear decoder and the cross-entropy loss, it
stores the objective ``J`` and its gradient at one random θ.
"""

import itertools
from pathlib import Path

import numpy as np
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "objective_reference.npz"
N_SAMPLES, N_FEATURES, N_HIDDEN = 1100, 16, 5
# Rows per block, given to the objective so that the cases cover more than one block
# (and the float32 sums keep their order) whatever the default partition of 16 features.
BLOCK_ROWS = 1024


def data(sparse, dtype):
    """The data in [0, 1], about 30 % zeros, from NumPy's stable legacy generator."""
    rng = np.random.RandomState(0)
    X = rng.uniform(0.0, 1.0, (N_SAMPLES, N_FEATURES))
    X[rng.uniform(size=X.shape) < 0.3] = 0.0
    X = X.astype(dtype)
    return sp.csr_matrix(X) if sparse else X


def combinations():
    """``(name, settings)`` of every pinned case."""
    cases = []
    for tied, activation, noise, sparse, dtype, batch_size, workers in itertools.product(
        (False, True),
        ("sigmoid", "tanh"),
        (None, "mask", "gaussian"),
        (False, True),
        ("float64", "float32"),
        (None, 16),
        (1, 3),
    ):
        cases.append(
            dict(
                tied=tied, activation=activation, decoder="sigmoid", loss="squared",
                noise=noise, sparse=sparse, dtype=dtype, batch_size=batch_size,
                workers=workers,
            )
        )
    for decoder, loss in (("linear", "squared"), ("sigmoid", "cross_entropy")):
        options = itertools.product((False, True), (False, True), (None, 16))
        for tied, sparse, batch_size in options:
            cases.append(
                dict(
                    tied=tied, activation="sigmoid", decoder=decoder, loss=loss, noise="mask",
                    sparse=sparse, dtype="float64", batch_size=batch_size, workers=3,
                )
            )
    return [(_name(case), case) for case in cases]


def _name(case):
    return "-".join(f"{key}={value}" for key, value in case.items())


def evaluate(case):
    """``(θ, J, ∇J)`` of one case, with the objective of the code being run."""
    from skae._objective import AutoencoderObjective, AutoencoderSpec, Corruption

    spec = AutoencoderSpec(
        N_FEATURES, N_HIDDEN, activation=case["activation"], decoder=case["decoder"],
        loss=case["loss"], tied=case["tied"], alpha=3e-3, beta=3.0, rho=0.1,
    )
    noise = case["noise"]
    corruption = Corruption(noise, 0.2 if noise == "mask" else 0.1, 7) if noise else None
    objective = AutoencoderObjective(
        spec, data(case["sparse"], case["dtype"]), corruption=corruption,
        batch_size=case["batch_size"], n_workers=case["workers"],
        block_rows=case["batch_size"] or BLOCK_ROWS,
    )
    theta = np.random.RandomState(1).uniform(-0.5, 0.5, spec.layout.size)
    J, grad = objective(theta.copy())
    return theta, float(J), np.array(grad, dtype=np.float64)


def main():
    values, gradients, names = [], [], []
    for name, case in combinations():
        _, J, grad = evaluate(case)
        names.append(name)
        values.append(J)
        gradients.append(grad)
    np.savez_compressed(
        OUTPUT,
        names=np.array(names),
        values=np.array(values),
        gradients=np.concatenate(gradients),  # one after the other
        sizes=np.array([g.size for g in gradients]),
    )
    print(f"wrote {OUTPUT} ({len(names)} cases)")


if __name__ == "__main__":
    main()
