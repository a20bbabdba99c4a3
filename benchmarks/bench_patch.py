"""The UFLDL patch exercise in float64 and float32, and where its time goes.

10 000 normalised 8x8 patches of scikit-learn's sample photographs (the same data as
``bench_fit.py``), ``SparseAutoencoder(n_hidden=25, rho=0.01, beta=3, alpha=1e-4,
max_iter=400, tol=0)``. For each dtype it prints the median wall time of ``--repeats``
fits, the GEMM floor of one evaluation (the five products, in the same process) and the
time per evaluation and per iteration as multiples of that floor.

    python benchmarks/bench_patch.py [--repeats 3] [--json benchmarks/results/patch.json]
"""

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_fit import patches  # noqa: E402  (same data as the main benchmark)

from skae import SparseAutoencoder  # noqa: E402
from skae._objective import AutoencoderObjective, AutoencoderSpec  # noqa: E402

PARAMS = dict(n_hidden=25, rho=0.01, beta=3.0, alpha=1e-4, max_iter=400, tol=0.0)


def median_ms(function, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


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
    parser.add_argument("--json", default="benchmarks/results/patch.json")
    args = parser.parse_args(argv)

    X64 = patches()
    blas = [
        f"{i['internal_api']} {i.get('version')} ({i.get('architecture')}, "
        f"{i['num_threads']} threads)"
        for i in threadpool_info()
        if i["user_api"] == "blas"
    ]
    print(f"UFLDL patch exercise {X64.shape} -> 25, 400 iterations; BLAS: {'; '.join(blas)}")
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
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"blas": blas, "results": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
