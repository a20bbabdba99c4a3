"""The UFLDL patch exercise in float64 and float32, and where its time goes.

10 000 normalised 8x8 patches of scikit-learn's sample photographs (the same data as
``bench_fit.py``), ``SparseAutoencoder(n_hidden=25, rho=0.01, beta=3, alpha=1e-4,
max_iter=400, tol=0)``. For each dtype it prints the median wall time of ``--repeats``
fits, the GEMM floor of one evaluation (the five products, in the same process) and the
time per evaluation and per iteration as multiples of that floor.

    python benchmarks/bench_patch.py [--repeats 3] [--json benchmarks/results/patch.json]
"""

import argparse
import time
import warnings

import numpy as np
from _common import RESULTS, blas_summary, machine, median_time, patches, write_json

from skae import SparseAutoencoder
from skae._objective import AutoencoderObjective, AutoencoderSpec

PARAMS = dict(n_hidden=25, rho=0.01, beta=3.0, alpha=1e-4, max_iter=400, tol=0.0)


def median_ms(function, repeats):
    return 1e3 * median_time(function, repeats)


def gemm_floor_ms(X, n_hidden, repeats=21):
    rng = np.random.default_rng(0)
    m, n = X.shape
    W = rng.random((n_hidden, n)).astype(X.dtype)
    H = rng.random((m, n_hidden)).astype(X.dtype)
    D = rng.random((m, n)).astype(X.dtype)
    return median_ms(lambda: (X @ W.T, H @ W, H.T @ D, D @ W.T, H.T @ X), repeats)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=str(RESULTS / "patch.json"))
    args = parser.parse_args(argv)

    X64 = patches()
    blas = blas_summary()
    print(f"UFLDL patch exercise {X64.shape} -> 25, 400 iterations; BLAS: {blas}")
    rows = {}
    for dtype in ("float64", "float32"):
        X = X64.astype(dtype)
        spec = AutoencoderSpec(X.shape[1], 25, rho=0.01, beta=3.0, alpha=1e-4)
        objective = AutoencoderObjective(spec, X)
        theta = spec.layout.initialize(np.random.RandomState(0))
        objective(theta)
        per_eval = median_ms(lambda: objective(theta), 50)
        floor = gemm_floor_ms(X, 25)
        walls, iters = [], []
        for seed in range(args.repeats):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                start = time.perf_counter()
                ae = SparseAutoencoder(random_state=seed, **PARAMS).fit(X)
            walls.append(time.perf_counter() - start)
            iters.append(ae.n_iter_)
        wall = float(np.median(walls))
        per_iter = 1e3 * wall / float(np.median(iters))
        rows[dtype] = dict(
            wall_s=wall,
            walls=walls,
            n_iter=iters,
            floor_ms=floor,
            ms_per_eval=per_eval,
            ms_per_iter=per_iter,
            workers=objective.n_workers,
        )
        print(
            f"{dtype}: {wall:.2f} s for 400 iterations (median of {args.repeats}); "
            f"GEMM floor {floor:.2f} ms, evaluation {per_eval:.2f} ms "
            f"({per_eval / floor:.2f}x), iteration {per_iter:.2f} ms "
            f"({per_iter / floor:.2f}x), {objective.n_workers} workers; "
            f"target < 3 s: {'met' if wall < 3 else 'not met'}"
        )
    write_json(args.json, {"machine": machine(), "blas": blas, "results": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
