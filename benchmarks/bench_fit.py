"""Speed benchmark of skae's SparseAutoencoder.fit.

Measures, in one run and one machine:

* ms per L-BFGS iteration (and per objective evaluation) of
  ``SparseAutoencoder(n_hidden=196).fit`` at the UFLDL MNIST shape
  (784 -> 196, m = 5 000 and 10 000 rows) in float64 and float32;
* the floor: the five GEMMs of one evaluation timed in the same process,
  and skae's ratio to it;
* the same for iterations K+1 to 3K of a fit (a 3K-iteration fit less the
  K-iteration one): past the first line search and the set-up, what each
  further iteration of a long fit costs, and how much of it is spent outside
  the objective (the optimiser);
* PyTorch on CPU (autograd + ``torch.optim.LBFGS``, strong Wolfe) on the
  identical objective, in a child process (when torch is importable);
* ``MLPRegressor(solver="lbfgs")`` used as an autoencoder (X -> X);
* the UFLDL patch exercise (10 000 x 64 -> 25, 400 iterations), wall time;
* the cost per iteration of each option (tied weights, masking noise,
  batch_size, tanh, sparse CSR input);
* the BLAS (threadpoolctl), thread counts, versions, CPU, date.

Every figure is the median of ``--repeats`` runs.  The design goals are
checked at the end.  Usage::

    python benchmarks/bench_fit.py              # full run (10-16 min on 2 shared cores)
    python benchmarks/bench_fit.py --quick      # smoke run (~2 min)
    python benchmarks/bench_fit.py --repeats 3 --json /tmp/out.json
    python benchmarks/bench_fit.py --whole-fit  # whole default fits (5 to 7 min a round)
    python benchmarks/bench_fit.py --trace      # where an evaluation's time goes (~1 min)

``--whole-fit`` times instead whole fits of ``max_iter=400`` (the default; ``--max-iter``
changes it), one per size and dtype in each of ``--repeats`` rounds (default 3), with the
GEMM floor measured inside each fit every 1.5 s (its time left out): the cost per iteration
a user pays for a whole fit, first line search and set-up included, as the median of the
rounds' ratios (``benchmarks/results/whole_fit.json``).
"""

import argparse
import contextlib
import functools
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from _common import RESULTS, blas_summary, machine, median, mnist_rows, patches, write_json

N_FEATURES, N_HIDDEN = 784, 196
# UFLDL MNIST exercise hyper-parameters (sparsityParam, beta, lambda).
RHO, BETA, ALPHA = 0.1, 3.0, 3e-3
# UFLDL patch exercise.
PATCH_RHO, PATCH_BETA, PATCH_ALPHA = 0.01, 3.0, 1e-4


# ----------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------


def fmt(value, digits=1, suffix=""):
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}{suffix}"


def mark(ok):
    if ok is None:
        return "n/a"
    return "✔" if ok else "✘"


# ----------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------


@functools.cache
def mnist(m):
    """Real MNIST digits scaled to [0, 1]; m > 5000 appends jittered copies."""
    return mnist_rows(m, seed=42)


def data(m, dtype):
    X, _ = mnist(m)
    return np.ascontiguousarray(X, dtype=dtype)


# ----------------------------------------------------------------------------
# GEMM floor
# ----------------------------------------------------------------------------


def gemm_floor(m, dtype, n=N_FEATURES, h=N_HIDDEN, inner=3):
    """The five products of one evaluation with numpy matmul on C-contiguous
    arrays (transposed views, no copies, preallocated outputs).

    Returns one run: the median over `inner` back-to-back repetitions (ms),
    and the per-product medians.
    """
    key = (m, np.dtype(dtype).name, n, h)
    if key not in _FLOOR_ARRAYS:
        rng = np.random.default_rng(0)
        _FLOOR_ARRAYS.clear()
        _FLOOR_ARRAYS[key] = (
            rng.random((m, n)).astype(dtype),
            (rng.standard_normal((h, n)) * 0.05).astype(dtype),
            (rng.standard_normal((h, n)) * 0.05).astype(dtype),
            np.empty((m, h), dtype), np.empty((m, n), dtype), np.empty((m, h), dtype),
            np.empty((h, n), dtype), np.empty((h, n), dtype),
        )
    X, W1, W2, A2, A3, D2, G1, G2 = _FLOOR_ARRAYS[key]
    np.matmul(X, W1.T, out=A2)  # warm-up
    names = ("X W1T", "H W2", "HT d3", "d3 W2T", "d2T X")
    per_product = {k: [] for k in names}
    totals = []
    for _ in range(inner):
        t0 = time.perf_counter()
        np.matmul(X, W1.T, out=A2)  # (m,n)(n,h)
        t1 = time.perf_counter()
        np.matmul(A2, W2, out=A3)  # (m,h)(h,n)
        t2 = time.perf_counter()
        np.matmul(A2.T, A3, out=G2)  # (h,m)(m,n)
        t3 = time.perf_counter()
        np.matmul(A3, W2.T, out=D2)  # (m,n)(n,h)
        t4 = time.perf_counter()
        np.matmul(D2.T, X, out=G1)  # (h,m)(m,n)
        t5 = time.perf_counter()
        for k, dt in zip(names, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            per_product[k].append(dt * 1e3)
        totals.append((t5 - t0) * 1e3)
    ms = median(totals)
    return {"ms": ms, "gflops": 5 * 2 * m * n * h / (ms * 1e-3) / 1e9,
            "per_product_ms": {k: median(v) for k, v in per_product.items()}}


_FLOOR_ARRAYS = {}


def exp_floor(m, dtype, n=N_FEATURES, h=N_HIDDEN, rows=256):
    """One core's time (ms) for the exponentials of one evaluation: ``numpy.exp`` of the
    m × (n + h) pre-activations of the decoder's and the encoder's sigmoids, in blocks of
    ``rows`` rows as the objective takes them (values drawn once, as pre-activations)."""
    key = ("exp", np.dtype(dtype).name, n, h, rows)
    if key not in _EXP_ARRAYS:
        rng = np.random.default_rng(1)
        _EXP_ARRAYS[key] = [(a, np.empty_like(a)) for a in (
            (2.0 * rng.standard_normal((rows, n))).astype(dtype),
            (2.0 * rng.standard_normal((rows, h))).astype(dtype))]
    pairs = _EXP_ARRAYS[key]
    t0 = time.perf_counter()
    for start in range(0, m, rows):
        k = min(rows, m - start)
        for a, out in pairs:
            np.exp(a[:k], out=out[:k])
    return (time.perf_counter() - t0) * 1e3


_EXP_ARRAYS = {}


# ----------------------------------------------------------------------------
# skae, with evaluation counting
# ----------------------------------------------------------------------------

_FIT_STATS = []


# Set by whole_fits: ``(every_s, measure)``; ``measure()`` times the GEMM floor inside a fit
# and returns the seconds it took, which the fit's time then leaves out.
_INTERLEAVE = {}


def _counting(orig):
    """``orig(fun, x0, ...)`` with ``fun`` wrapped to count its evaluations and time (and,
    when ``_INTERLEAVE`` is set, to measure the GEMM floor between evaluations)."""

    def counting_minimize(fun, x0, *args, **kwargs):
        stats = {"nfev": 0, "fun_s": 0.0, "floor_s": 0.0}
        last = [time.perf_counter()]

        def counted(*a, **kw):
            if _INTERLEAVE and time.perf_counter() - last[0] >= _INTERLEAVE["every_s"]:
                stats["floor_s"] += _INTERLEAVE["measure"]()
                last[0] = time.perf_counter()
            t0 = time.perf_counter()
            try:
                return fun(*a, **kw)
            finally:
                stats["fun_s"] += time.perf_counter() - t0
                stats["nfev"] += 1

        res = orig(counted, x0, *args, **kwargs)
        stats["nit"] = int(getattr(res, "nit", -1))
        _FIT_STATS.append(stats)
        return res

    counting_minimize._skae_bench_orig = orig
    return counting_minimize


def _install_counting_minimize():
    """Wrap the optimisers skae may call (scipy.optimize.minimize and skae's own L-BFGS,
    ``skae._lbfgs.minimize_lbfgs``), wherever skae imported them, to count objective
    evaluations and the time spent inside the objective."""
    import scipy.optimize

    from skae import _lbfgs

    for owner, attr in ((scipy.optimize, "minimize"), (_lbfgs, "minimize_lbfgs")):
        current = getattr(owner, attr)
        orig = getattr(current, "_skae_bench_orig", current)
        wrapped = _counting(orig)
        setattr(owner, attr, wrapped)
        for name, mod in list(sys.modules.items()):
            if name == "skae" or name.startswith("skae."):
                if getattr(mod, attr, None) in (orig, current):
                    setattr(mod, attr, wrapped)


def skae_run(X, max_iter, **params):
    """One timed fit: wall time, iterations, evaluations, time in objective."""
    from sklearn.exceptions import ConvergenceWarning

    import skae

    _install_counting_minimize()
    kwargs = dict(n_hidden=N_HIDDEN, rho=RHO, beta=BETA, alpha=ALPHA,
                  max_iter=max_iter, tol=0.0, random_state=0)
    kwargs.update(params)
    est = skae.SparseAutoencoder(**kwargs)
    del _FIT_STATS[:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t0 = time.perf_counter()
        est.fit(X)
        wall = time.perf_counter() - t0
    if len(_FIT_STATS) == 1:  # less the GEMM floors measured inside the fit (whole_fits)
        wall -= _FIT_STATS[0]["floor_s"]
    n_iter = int(est.n_iter_)
    run = {"wall_s": wall, "n_iter": n_iter,
           "ms_per_iter": wall * 1e3 / max(n_iter, 1),
           "loss": float(getattr(est, "loss_", float("nan")))}
    if len(_FIT_STATS) == 1:
        s = _FIT_STATS[0]
        run.update(nfev=s["nfev"], fun_s=s["fun_s"],
                   ms_per_eval=s["fun_s"] * 1e3 / max(s["nfev"], 1),
                   overhead_s=wall - s["fun_s"])
    return run


# ----------------------------------------------------------------------------
# MLPRegressor (in process)
# ----------------------------------------------------------------------------


def mlp_run(X, max_iter):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPRegressor

    m = X.shape[0]
    # sklearn's penalty is alpha/(2 m) ||W||^2 on a loss averaged over m,
    # so alpha * m reproduces UFLDL's alpha/2 ||W||^2.  Its output layer is
    # linear (identity), the only difference from the skae objective.
    est = MLPRegressor(hidden_layer_sizes=(N_HIDDEN,), activation="logistic",
                       solver="lbfgs", alpha=ALPHA * m, max_iter=max_iter,
                       tol=0.0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t0 = time.perf_counter()
        est.fit(X, X)
        wall = time.perf_counter() - t0
    return {"wall_s": wall, "n_iter": est.n_iter_,
            "ms_per_iter": wall * 1e3 / max(est.n_iter_, 1)}


# ----------------------------------------------------------------------------
# PyTorch baseline: a persistent child process, so that torch's OpenMP/MKL
# runtime never shares a process with the OpenBLAS that skae uses.
# ----------------------------------------------------------------------------


def torch_worker():
    """Child loop: read a JSON spec per line, run one timed fit, answer a line."""
    import torch

    cache = {}
    for line in sys.stdin:
        spec = json.loads(line)
        m, dtype_name, max_iter = spec["m"], spec["dtype"], spec["max_iter"]
        tdtype = {"float64": torch.float64, "float32": torch.float32}[dtype_name]
        if (m, dtype_name) not in cache:
            cache.clear()
            cache[(m, dtype_name)] = torch.from_numpy(data(m, np.float64)).to(tdtype).contiguous()
        X = cache[(m, dtype_name)]
        print(json.dumps(torch_run(torch, X, max_iter, spec.get("seed", 0))), flush=True)


def torch_run(torch, X, max_iter, seed=0):
    m, n = X.shape
    h, rho, beta, alpha = N_HIDDEN, RHO, BETA, ALPHA
    tdtype = X.dtype
    g = torch.Generator().manual_seed(seed)
    r = (6.0 / (n + h + 1)) ** 0.5
    W1 = ((torch.rand(h, n, dtype=tdtype, generator=g) * 2 - 1) * r).requires_grad_()
    W2 = ((torch.rand(h, n, dtype=tdtype, generator=g) * 2 - 1) * r).requires_grad_()
    b1 = torch.zeros(h, dtype=tdtype, requires_grad=True)
    b2 = torch.zeros(n, dtype=tdtype, requires_grad=True)
    opt = torch.optim.LBFGS([W1, b1, W2, b2], lr=1, max_iter=max_iter,
                            max_eval=max_iter * 10, history_size=10,
                            tolerance_grad=0, tolerance_change=0,
                            line_search_fn="strong_wolfe")
    nfev = [0]

    def closure():
        nfev[0] += 1
        opt.zero_grad()
        H = torch.sigmoid(torch.addmm(b1, X, W1.t()))
        Xh = torch.sigmoid(torch.addmm(b2, H, W2))
        rec = 0.5 * (Xh - X).pow(2).sum() / m
        wd = 0.5 * alpha * (W1.pow(2).sum() + W2.pow(2).sum())
        q = H.mean(dim=0)
        kl = (rho * torch.log(rho / q) + (1 - rho) * torch.log((1 - rho) / (1 - q))).sum()
        J = rec + wd + beta * kl
        J.backward()
        return J

    t0 = time.perf_counter()
    loss = opt.step(closure)
    wall = time.perf_counter() - t0
    n_iter = int(opt.state[opt._params[0]]["n_iter"])
    return {"wall_s": wall, "n_iter": n_iter, "nfev": nfev[0],
            "ms_per_iter": wall * 1e3 / max(n_iter, 1),
            "ms_per_eval": wall * 1e3 / max(nfev[0], 1), "loss": float(loss.detach()),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "torch_blas": "mkl" if torch.backends.mkl.is_available() else "other"}


class TorchClient:
    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, __file__, "--_torch-worker"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)

    def run(self, m, dtype_name, max_iter):
        self.proc.stdin.write(json.dumps({"m": m, "dtype": dtype_name,
                                          "max_iter": max_iter}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("torch worker died")
        return json.loads(line)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def torch_available():
    proc = subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__)"],
                          capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def aggregate(runs):
    """Median of every numeric field over the runs (errors propagate)."""
    runs = [r for r in runs if r is not None]
    if not runs:
        return {"error": "not run"}
    errors = [r for r in runs if "error" in r]
    if errors:
        return {"error": errors[0]["error"]}
    out = {}
    for k in runs[0]:
        vals = [r.get(k) for r in runs]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            out[k] = median(vals)
        elif k in ("torch", "torch_threads", "torch_blas"):
            out[k] = vals[0]
    out["runs"] = runs
    out["n_runs"] = len(runs)
    return out


# ----------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------


def low_ratio_warning(names):
    """What a ratio to the GEMM floor below 1 means, for the ratios ``names``."""
    return (f"WARNING: a ratio to the GEMM floor below 1 ({'; '.join(names)}): the floor, on "
            "BLAS's own threads, was slowed more than skae's fit by other load on the "
            "machine; these ratios do not measure skae. Run again on a quiet machine.")


def ratio(a, b):
    if a is None or b is None or not b:
        return None
    return a / b


def steady(first, longer, K):
    """Iterations K+1 to 3K of a fit: the 3K-iteration fit less the K-iteration one (the
    same start, so the same first K iterations), per iteration. Past the first line search
    and the fit's set-up, this is what each further iteration of a long fit costs."""
    if "error" in first or "error" in longer or "wall_s" not in longer:
        return {"error": first.get("error") or longer.get("error") or "no run"}
    n = longer["n_iter"] - first["n_iter"]
    if n <= 0:
        return {"error": "the longer fit stopped before the shorter one"}
    out = {"n_iter": n, "ms_per_iter": (longer["wall_s"] - first["wall_s"]) * 1e3 / n,
           "runs_of_3K": longer.get("n_runs")}
    if "nfev" in first and "nfev" in longer:
        evals = longer["nfev"] - first["nfev"]
        outside = longer["overhead_s"] - first["overhead_s"]
        out.update(evals_per_iter=evals / n, optimiser_ms_per_iter=outside * 1e3 / n,
                   ms_per_eval=(longer["fun_s"] - first["fun_s"]) * 1e3 / max(evals, 1))
    return out


# Whole fits: the floor is measured every FLOOR_EVERY_S seconds of a fit, between two
# evaluations; after it the fit waits FLOOR_SETTLE_S, until OpenBLAS's own threads, which
# spin for about 0.1 s after a multi-threaded product, have stopped (else the next
# evaluation would share the cores with them).
FLOOR_EVERY_S, FLOOR_SETTLE_S = 1.5, 0.15


def _interleaved_floor(m, dt, threads, samples, exp_samples):
    """``measure()`` for ``_INTERLEAVE``: the GEMM floor on ``threads`` BLAS threads (the
    count before the fit; skae holds BLAS on one thread while it fits), appended to
    ``samples`` (ms), and one core's time for the evaluation's exponentials
    (:func:`exp_floor`), appended to ``exp_samples``; returns the seconds taken, settling
    included."""
    from skae._parallel import _blas_controllers, _set_num_threads

    def measure():
        t0 = time.perf_counter()
        controllers = _blas_controllers()
        held = [lc.num_threads for lc in controllers]
        for lc in controllers:
            _set_num_threads(lc, threads)
        try:
            samples.append(gemm_floor(m, dt, inner=1)["ms"])
        finally:
            for lc, n in zip(controllers, held):
                _set_num_threads(lc, n)
        time.sleep(FLOOR_SETTLE_S)
        exp_samples.append(exp_floor(m, dt))
        return time.perf_counter() - t0

    return measure


@contextlib.contextmanager
def _timing_directions(stats):
    """Add the seconds skae's L-BFGS spends in its two-loop recursion
    (``skae._lbfgs._direction``, which reads every stored pair twice) to
    ``stats["direction_s"]`` while the block runs."""
    from skae import _lbfgs

    orig = _lbfgs._direction

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return orig(*args, **kwargs)
        finally:
            stats["direction_s"] += time.perf_counter() - t0

    _lbfgs._direction = timed
    try:
        yield stats
    finally:
        _lbfgs._direction = orig


def numpy_bound(run, threads):
    """What a fit's iteration cannot go below with NumPy on this machine at that moment,
    over the floor: per evaluation the floor plus the exponentials of the sigmoids spread
    perfectly over ``threads`` workers, times the evaluations per iteration, plus the
    two-loop recursion. Everything else (the other elementwise passes, the sums, the
    optimiser's other vector work) counted as free, so the true cost is above it."""
    evals = run["nfev"] / max(run["n_iter"], 1)
    direction_ms = run["direction_s"] * 1e3 / max(run["n_iter"], 1)
    return (evals * (run["floor_ms"] + run["exp_ms"] / threads) + direction_ms) / run["floor_ms"]


def whole_fits(json_path=None, max_iter=400, sizes=(5000, 10000), repeats=3):
    """Whole fits of ``max_iter`` iterations per size and dtype, in ``repeats`` interleaved
    rounds. The GEMM floor of each fit is measured inside it, every ``FLOOR_EVERY_S``
    seconds between two evaluations (its time is left out of the fit's), so that the floor
    and the fit see the same machine: on a shared machine whose speed drifts within
    seconds, a floor measured before the fit is not the floor of the fit. Per round the
    ratio per iteration to the mean of the fit's floor samples; the median over rounds; a
    table, the goal, the JSON. The evaluation after each floor starts from caches the floor
    has filled with its own arrays, which can only make the ratio larger."""
    from skae._parallel import available_threads

    env = machine()
    threads = available_threads()
    configs = [(m, dname, dt) for m in sizes
               for dname, dt in (("float64", np.float64), ("float32", np.float32))]
    runs = {f"{m}/{dname}": [] for m, dname, _ in configs}
    for rnd in range(repeats):
        print(f"round {rnd + 1}/{repeats} (load average {os.getloadavg()[0]:.2f})",
              flush=True)
        for m, dname, dt in configs:
            X = data(m, dt)
            gemm_floor(m, dt, inner=1)  # the floor's arrays, made before the fit
            time.sleep(FLOOR_SETTLE_S)
            samples, exp_samples = [], []
            _INTERLEAVE.update(
                every_s=FLOOR_EVERY_S,
                measure=_interleaved_floor(m, dt, threads, samples, exp_samples))
            try:
                with _timing_directions({"direction_s": 0.0}) as directions:
                    run = skae_run(X, max_iter)
            finally:
                _INTERLEAVE.clear()
            floor = sum(samples) / len(samples) if samples else gemm_floor(m, dt)["ms"]
            exp_ms = (sum(exp_samples) / len(exp_samples)) if exp_samples else exp_floor(m, dt)
            run.update(floor_ms=floor, floor_samples=len(samples),
                       floor_median_ms=median(samples) if samples else floor,
                       exp_ms=exp_ms, direction_s=directions["direction_s"],
                       ratio=run["ms_per_iter"] / floor)
            run["bound"] = numpy_bound(run, threads)
            runs[f"{m}/{dname}"].append(run)
            print(f"  {m} {dname}: floor {floor:.1f} ms (mean of {len(samples)} inside the "
                  f"fit), {run['ms_per_iter']:.1f} ms per iteration, "
                  f"{run.get('nfev', 0) / max(run['n_iter'], 1):.2f} evaluations per "
                  f"iteration, ratio {run['ratio']:.3f}; exp {exp_ms:.1f} ms of one core "
                  f"per evaluation, two-loop {run['direction_s'] * 1e3 / run['n_iter']:.1f} "
                  f"ms per iteration, NumPy bound {run['bound']:.3f}", flush=True)
    results = {}
    lines = ["| rows | dtype | GEMM floor | /iter | evals/iter | exp (one core) "
             "| two-loop | NumPy bound | /iter ÷ floor (rounds) | median |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---|---:|"]
    for key, rounds in runs.items():
        m, dname = key.split("/")
        summary = aggregate(rounds)
        results[key] = summary
        ratios = [r["ratio"] for r in rounds]
        lines.append(
            f"| {m} | {dname} | {fmt(summary['floor_ms'])} | {fmt(summary['ms_per_iter'])} "
            f"| {fmt(summary.get('nfev', 0) / max(summary['n_iter'], 1), 2)} "
            f"| {fmt(summary['exp_ms'])} "
            f"| {fmt(summary['direction_s'] * 1e3 / max(summary['n_iter'], 1))} "
            f"| {fmt(summary['bound'], 2)} "
            f"| {', '.join(fmt(r, 2) for r in ratios)} "
            f"| {fmt(summary['ratio'], 2)} {mark(summary['ratio'] <= 1.35)} |")
    print("\n".join([f"Whole fits of max_iter={max_iter}, median of {repeats} rounds "
                     f"(BLAS: {blas_summary()})"] + lines))
    low = sorted({key for key, rounds in runs.items() for r in rounds if r["ratio"] < 1.0})
    if low:
        print(low_ratio_warning(low))
    write_json(Path(json_path) if json_path else RESULTS / "whole_fit.json",
               {"meta": env, "max_iter": max_iter, "repeats": repeats, "results": results,
                "table": "\n".join(lines)})
    return 0


@contextlib.contextmanager
def _tracing_evaluations(events):
    """Record ``(thread, kind, t0, t1)`` in ``events`` for each block of each pass of the
    autoencoder objective (``"forward"``, ``"backward"``), each addition of a block's sums
    to the totals (``"combine"``), each pass as a whole (``"pass1"``, ``"pass2"``) and each
    evaluation (``"evaluation"``), while the block runs."""
    import threading

    from skae import _objective, _parallel

    targets = [(_objective.AutoencoderObjective, "_forward", "forward"),
               (_objective.AutoencoderObjective, "_backward", "backward"),
               (_objective.AutoencoderObjective, "hidden_sums", "pass1"),
               (_objective.AutoencoderObjective, "gradient_sums", "pass2"),
               (_objective.AutoencoderObjective, "__call__", "evaluation"),
               (_parallel.BlockSums, "__call__", "combine")]
    originals = [(owner, attr, getattr(owner, attr)) for owner, attr, _ in targets]

    def traced(orig, kind):
        def method(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return orig(*args, **kwargs)
            finally:
                events.append((threading.get_ident(), kind, t0, time.perf_counter()))
        return method

    for (owner, attr, kind), (_, _, orig) in zip(targets, originals):
        setattr(owner, attr, traced(orig, kind))
    try:
        yield events
    finally:
        for owner, attr, orig in originals:
            setattr(owner, attr, orig)


def _evaluation_breakdown(events, skip):
    """Per evaluation (ms, the mean over the evaluations after the first ``skip``): its
    wall time, each pass's, the time the calling thread ran alone, and, summed over the
    worker threads, their time in blocks, in adding sums and idle inside each pass."""
    evaluations = sorted((e for e in events if e[1] == "evaluation"), key=lambda e: e[2])
    evaluations = evaluations[skip:]
    keys = ("evaluation", "pass1", "pass2", "calling thread alone", "pass1 blocks",
            "pass1 idle", "pass2 blocks", "pass2 combine", "pass2 idle")
    total = dict.fromkeys(keys, 0.0)
    for _, _, e0, e1 in evaluations:
        inside = [e for e in events if e0 <= e[2] and e[3] <= e1]
        passes = {e[1]: e for e in inside if e[1] in ("pass1", "pass2")}
        total["evaluation"] += e1 - e0
        for name, blocks in (("pass1", ("forward",)), ("pass2", ("backward", "combine"))):
            _, _, p0, p1 = passes[name]
            total[name] += p1 - p0
            busy, workers = 0.0, set()
            for thread, kind, t0, t1 in inside:
                if kind in blocks:
                    busy += t1 - t0
                    workers.add(thread)
                    if kind == "combine":
                        total["pass2 combine"] += t1 - t0
                    else:
                        total[f"{name} blocks"] += t1 - t0
            total[f"{name} idle"] += len(workers) * (p1 - p0) - busy
        total["calling thread alone"] += (e1 - e0) - sum(p[3] - p[2] for p in passes.values())
    n = max(len(evaluations), 1)
    return {k: v * 1e3 / n for k, v in total.items()} | {"evaluations": len(evaluations)}


def trace_fits(json_path=None, max_iter=40, m=5000, skip=10):
    """Where an evaluation's time goes across the worker threads: one fit of ``max_iter``
    iterations per dtype at ``m`` rows with every block, every addition of a block's sums
    and every pass timed; the evaluations after the first ``skip`` (past the set-up and
    the first line search). A worker is idle inside a pass when it has no block left while
    the other still runs one (the end of each pass), or waits for a buffer set."""
    from sklearn.exceptions import ConvergenceWarning

    import skae

    env = machine()
    results = {}
    for dname, dt in (("float64", np.float64), ("float32", np.float32)):
        X = data(m, dt)
        events = []
        est = skae.SparseAutoencoder(n_hidden=N_HIDDEN, rho=RHO, beta=BETA, alpha=ALPHA,
                                     max_iter=max_iter, tol=0.0, random_state=0)
        with warnings.catch_warnings(), _tracing_evaluations(events):
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X)
        results[f"{m}/{dname}"] = row = _evaluation_breakdown(events, skip)
        row["blocks"] = sum(e[1] == "backward" for e in events) // max(
            sum(e[1] == "pass2" for e in events), 1)
        print(f"{m} {dname}, ms per evaluation (mean of {row['evaluations']}; {row['blocks']} "
              "blocks a pass; blocks, combine and idle summed over the workers):", flush=True)
        for key, value in row.items():
            if key not in ("evaluations", "blocks"):
                print(f"  {key:22s} {value:8.2f}", flush=True)
    write_json(Path(json_path) if json_path else RESULTS / "trace.json",
               {"meta": env, "max_iter": max_iter, "skip": skip, "results": results})
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: few iterations, one repeat")
    parser.add_argument("--repeats", type=int, default=None,
                        help="rounds of measurements, medians quoted (default 5; 1 with --quick)")
    parser.add_argument("--max-iter", type=int, default=None,
                        help="L-BFGS iterations per timed fit (default 20; 5 with --quick)")
    parser.add_argument("--json", default=None,
                        help="output JSON (default benchmarks/results/latest.json; "
                             "benchmarks/results/quick.json with --quick)")
    parser.add_argument("--task-cap", type=float, default=90.0,
                        help="a configuration whose run took longer than this many seconds "
                             "is not repeated in later rounds (default 90; keeps a run on a "
                             "loaded machine bounded; the JSON records the number of runs)")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch baseline")
    parser.add_argument("--no-mlp", action="store_true", help="skip MLPRegressor")
    parser.add_argument("--whole-fit", action="store_true",
                        help="time one whole default fit (max_iter=400) per size and dtype "
                             "in each of --repeats rounds (default 3); takes --max-iter, "
                             "--repeats and --json, and no other option")
    parser.add_argument("--trace", action="store_true",
                        help="where an evaluation's time goes across the worker threads: one "
                             "fit of --max-iter (default 40) iterations per dtype at 5 000 "
                             "rows, every block and pass timed; takes --max-iter and --json")
    parser.add_argument("--_torch-worker", dest="torch_worker", action="store_true",
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.torch_worker:
        torch_worker()
        return 0
    if args.trace:
        return trace_fits(args.json, max_iter=args.max_iter or 40)
    if args.whole_fit:
        ignored = [name for name in ("quick", "no_torch", "no_mlp") if getattr(args, name)]
        if ignored or args.task_cap != parser.get_default("task_cap"):
            parser.error("--whole-fit takes --max-iter, --repeats and --json only")
        return whole_fits(args.json, max_iter=args.max_iter or 400, repeats=args.repeats or 3)

    quick = args.quick
    repeats = args.repeats or (1 if quick else 5)
    K = args.max_iter or (5 if quick else 20)
    patch_iter = 50 if quick else 400
    mlp_repeats = max(1, min(repeats, 3))
    steady_repeats = max(1, min(repeats, 3))
    sizes = (5000, 10000)
    dtypes = (("float64", np.float64), ("float32", np.float32))
    json_path = Path(args.json) if args.json else RESULTS / (
        "quick.json" if quick else "latest.json")

    env = machine()
    _, source = mnist(max(sizes))
    print(f"# skae benchmark  ({'quick' if quick else 'full'}; median of {repeats}; "
          f"{K} L-BFGS iterations per fit)", flush=True)
    print(f"date {env['date']} | CPU {env['cpu']} x{env['n_cpus']} | "
          f"numpy {env['numpy']} scipy {env['scipy']} sklearn {env['sklearn']} "
          f"skae {env['skae']}", flush=True)
    print(f"BLAS: {blas_summary(env['threadpools'])}", flush=True)
    if env["env"]:
        print(f"environment: {env['env']}", flush=True)
    print(f"data: {source}", flush=True)
    t_start = time.perf_counter()

    tv = None if args.no_torch else torch_available()
    if tv is None:
        print("PyTorch baseline skipped: "
              + ("--no-torch" if args.no_torch else "torch is not importable"), flush=True)
    torch_client = TorchClient() if tv else None

    import scipy.sparse as sp

    X5 = data(5000, np.float64)
    Xp = patches()
    nnz = np.count_nonzero(X5) / X5.size

    # (group, key, callable, max rounds)
    tasks = []
    for m in sizes:
        for dname, dt in dtypes:
            key = f"{m}/{dname}"
            tasks.append(("floor", key, functools.partial(gemm_floor, m, dt), repeats))
            tasks.append(("skae", key, lambda m=m, dt=dt: skae_run(data(m, dt), K), repeats))
            tasks.append(("steady", key, lambda m=m, dt=dt: skae_run(data(m, dt), 3 * K),
                          steady_repeats))
            if torch_client is not None:
                tasks.append(("torch", key, functools.partial(torch_client.run, m, dname, K),
                              repeats))
            if not args.no_mlp:
                tasks.append(("mlp", key, lambda m=m, dt=dt: mlp_run(data(m, dt), K),
                              mlp_repeats))
    option_specs = [
        ("tied_weights=True", X5, {"tied_weights": True}),
        ('noise="mask", noise_level=0.3', X5, {"noise": "mask", "noise_level": 0.3}),
        ("batch_size=1000", X5, {"batch_size": 1000}),
        ('activation="tanh"', X5, {"activation": "tanh"}),
        (f"sparse CSR input (MNIST, {nnz:.0%} nonzero)", sp.csr_matrix(X5), {}),
    ]
    for label, Xo, params in option_specs:
        tasks.append(("options", label,
                      lambda Xo=Xo, params=params: skae_run(Xo, K, **params), repeats))
    tasks.append(("patch", "patch", lambda: skae_run(
        Xp, patch_iter, n_hidden=25, rho=PATCH_RHO, beta=PATCH_BETA, alpha=PATCH_ALPHA),
        repeats))

    runs = {(g, k): [] for g, k, _, _ in tasks}
    failed = set()
    capped = set()
    loads = []
    def collect(rounds_done):
        """Aggregate the runs so far, build the table, write the JSON."""
        results = {"meta": {**env, "quick": quick, "repeats": repeats, "max_iter": K,
                            "patch_max_iter": patch_iter, "mlp_repeats": mlp_repeats,
                            "steady_repeats": steady_repeats,
                            "data": source, "torch": tv,
                            "hyper": {"rho": RHO, "beta": BETA, "alpha": ALPHA},
                            "load_average_per_round": loads},
                   "mnist": {}, "options": {}, "patch": None, "mlp": {}, "torch": {}}
        for m in sizes:
            for dname, _ in dtypes:
                key = f"{m}/{dname}"
                fl = aggregate(runs[("floor", key)])
                fl["per_product_ms"] = {
                    k: median([r["per_product_ms"][k] for r in fl["runs"]])
                    for k in fl["runs"][0]["per_product_ms"]}
                results["mnist"][key] = {"floor": fl, "skae": aggregate(runs[("skae", key)])}
                results["mnist"][key]["steady"] = steady(
                    results["mnist"][key]["skae"], aggregate(runs[("steady", key)]), K)
                if ("torch", key) in runs:
                    results["torch"][key] = aggregate(runs[("torch", key)])
                if ("mlp", key) in runs:
                    results["mlp"][key] = aggregate(runs[("mlp", key)])
        results["options"]["default (reference)"] = results["mnist"]["5000/float64"]["skae"]
        for label, _, _ in option_specs:
            results["options"][label] = aggregate(runs[("options", label)])
        results["patch"] = aggregate(runs[("patch", "patch")])
        results["patch"]["shape"] = list(Xp.shape)

        results["meta"]["bench_seconds"] = time.perf_counter() - t_start
        results["meta"]["rounds_done"] = rounds_done
        table, summary = report(results, sizes, dtypes)
        results["table"] = table
        results["targets"] = summary
        write_json(json_path, results, default=str)
        return results, table

    for rnd in range(repeats):
        loads.append(os.getloadavg()[0])
        print(f"round {rnd + 1}/{repeats} (load average {loads[-1]:.2f})", flush=True)
        for group, key, fn, max_rounds in tasks:
            if rnd >= max_rounds:
                continue
            if (group, key) in failed or (group, key) in capped:
                continue
            t0 = time.perf_counter()
            try:
                run = fn()
            except Exception as exc:
                run = {"error": f"{type(exc).__name__}: {exc}"}
                failed.add((group, key))
                print(f"  {group:7s} {key:40s} n/a: {run['error']}", flush=True)
            else:
                took = time.perf_counter() - t0
                print(f"  {group:7s} {key:40s} {took:6.1f} s", flush=True)
                if took > args.task_cap and rnd + 1 < repeats:
                    capped.add((group, key))
                    print(f"  {group:7s} {key:40s} took > {args.task_cap:.0f} s: "
                          "not repeated", flush=True)
            runs[(group, key)].append(run)
        collect(rounds_done=rnd + 1)  # partial results after every round
    if torch_client is not None:
        torch_client.close()
    loads.append(os.getloadavg()[0])
    results, table = collect(rounds_done=repeats)
    print()
    print(table)
    print(f"\nJSON written to {json_path} "
          f"(benchmark took {results['meta']['bench_seconds']:.0f} s)")
    return 0


def report(results, sizes, dtypes):
    L = []
    meta = results["meta"]
    K = meta["max_iter"]
    L.append(f"skae benchmark — {meta['date']}, {meta['cpu']} ({meta['n_cpus']} cores), "
             f"{blas_summary(meta['threadpools'])}")
    L.append(f"numpy {meta['numpy']}, scipy {meta['scipy']}, scikit-learn {meta['sklearn']}, "
             f"torch {meta.get('torch') or 'n/a'}, skae {meta['skae']}; "
             f"median of {meta.get('rounds_done', meta['repeats'])} interleaved rounds "
             f"(MLPRegressor: "
             f"{meta['mlp_repeats']}), {K} L-BFGS iterations per fit; "
             f"load average {min(meta['load_average_per_round']):.1f}–"
             f"{max(meta['load_average_per_round']):.1f}; data: {meta['data']}")
    if meta["env"]:
        L.append(f"environment: {meta['env']}")
    L.append("")
    L.append("MNIST shape 784 -> 196 (rho=0.1, beta=3, alpha=3e-3). Times in ms.")
    L.append("")
    L.append("| rows | dtype | GEMM floor | skae /iter | skae /eval | evals/iter "
             "| /iter ÷ floor | /eval ÷ floor | PyTorch /iter | skae ÷ torch "
             "| MLPRegressor /iter | MLP ÷ skae |")
    L.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    steady_rows = []
    targets = []
    for m in sizes:
        for dname, _ in dtypes:
            key = f"{m}/{dname}"
            r = results["mnist"][key]
            floor, sk = r["floor"]["ms"], r["skae"]
            it, ev = sk.get("ms_per_iter"), sk.get("ms_per_eval")
            epi = ratio(sk.get("nfev"), sk.get("n_iter"))
            tr = results["torch"].get(key, {})
            ml = results["mlp"].get(key, {})
            L.append(
                f"| {m} | {dname} | {fmt(floor)} | {fmt(it)} | {fmt(ev)} | {fmt(epi, 2)} "
                f"| {fmt(ratio(it, floor), 2)} | {fmt(ratio(ev, floor), 2)} "
                f"| {fmt(tr.get('ms_per_iter'))} | {fmt(ratio(it, tr.get('ms_per_iter')), 2)} "
                f"| {fmt(ml.get('ms_per_iter'))} | {fmt(ratio(ml.get('ms_per_iter'), it), 1)} |")
            rr = ratio(it, floor)
            targets.append((f"/iter ≤ 1.35× GEMM floor ({m}, {dname})", rr,
                            None if rr is None else rr <= 1.35))
            st = r.get("steady", {})
            sr = ratio(st.get("ms_per_iter"), floor)
            steady_rows.append(
                f"| {m} | {dname} | {fmt(floor)} | {fmt(st.get('ms_per_iter'))} "
                f"| {fmt(st.get('ms_per_eval'))} | {fmt(st.get('evals_per_iter'), 2)} "
                f"| {fmt(st.get('optimiser_ms_per_iter'))} | {fmt(sr, 2)} "
                f"| {fmt(ratio(st.get('ms_per_eval'), floor), 2)} |")
            targets.append((f"iterations {K + 1}-{3 * K}: /iter ≤ 1.35× GEMM floor "
                            f"({m}, {dname})", sr, None if sr is None else sr <= 1.35))
    for m in sizes:
        for dname, _ in dtypes:
            key = f"{m}/{dname}"
            rr = ratio(results["mnist"][key]["skae"].get("ms_per_iter"),
                       results["torch"].get(key, {}).get("ms_per_iter"))
            targets.append((f"≤ 1.0× PyTorch ({m}, {dname})", rr,
                            None if rr is None else rr <= 1.0))
    for m in sizes:
        for dname, _ in dtypes:
            key = f"{m}/{dname}"
            rr = ratio(results["mlp"].get(key, {}).get("ms_per_iter"),
                       results["mnist"][key]["skae"].get("ms_per_iter"))
            targets.append((f"≥ 5× faster than MLPRegressor ({m}, {dname})", rr,
                            None if rr is None else rr >= 5))
    for m in sizes:
        rr = ratio(results["mnist"][f"{m}/float64"]["skae"].get("ms_per_iter"),
                   results["mnist"][f"{m}/float32"]["skae"].get("ms_per_iter"))
        targets.append((f"float32 ≥ 1.7× faster than float64 ({m})", rr,
                        None if rr is None else rr >= 1.7))

    L.append("")
    L.append(f"Iterations {K + 1} to {3 * K} of a fit (a {3 * K}-iteration fit less the "
             f"{K}-iteration one, medians of {meta.get('steady_repeats', '?')}). Times in ms.")
    L.append("")
    L.append("| rows | dtype | GEMM floor | /iter | /eval | evals/iter "
             "| outside the objective /iter | /iter ÷ floor | /eval ÷ floor |")
    L.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    L.extend(steady_rows)
    L.append("")
    L.append("Evaluation = one call of the objective (cost and gradient); "
             "L-BFGS makes one per iteration plus the initial one and line-search extras. "
             "GEMM floor = X W1ᵀ, H W2, Hᵀδ3, δ3 W2ᵀ, δ2ᵀX with numpy matmul, no copies.")
    L.append("")
    L.append(f"Options (m=5000, float64, {K} iterations). Times in ms.")
    L.append("")
    L.append("| option | /iter | /eval | ÷ default /iter |")
    L.append("|---|---:|---:|---:|")
    ref = results["options"].get("default (reference)", {}).get("ms_per_iter")
    for label, r in results["options"].items():
        if "error" in r:
            L.append(f"| {label} | n/a | n/a | n/a |")
        else:
            L.append(f"| {label} | {fmt(r.get('ms_per_iter'))} | {fmt(r.get('ms_per_eval'))} "
                     f"| {fmt(ratio(r.get('ms_per_iter'), ref), 2)} |")
    L.append("")
    p = results["patch"] or {}
    shape = p.get("shape", ["?", "?"])
    if "error" in p:
        L.append(f"UFLDL patch exercise ({shape[0]}×{shape[1]} → 25): n/a ({p['error']})")
        ok_patch, patch_400 = None, None
    else:
        n_it = p.get("n_iter") or 0
        patch_400 = p["wall_s"] * meta["patch_max_iter"] / max(n_it, 1) \
            if meta["patch_max_iter"] != 400 else p["wall_s"]
        L.append(f"UFLDL patch exercise ({shape[0]}×{shape[1]} → 25, rho=0.01, beta=3, "
                 f"alpha=1e-4, max_iter={meta['patch_max_iter']}): "
                 f"{fmt(p.get('wall_s'), 2)} s for {fmt(p.get('n_iter'), 0)} iterations "
                 f"({fmt(p.get('ms_per_iter'), 2)} ms/iter, {fmt(p.get('ms_per_eval'), 2)} "
                 f"ms/eval, {fmt(p.get('overhead_s'), 2)} s outside the objective)")
        # If it stopped before 400 iterations, extrapolate to 400 for the target.
        if n_it and n_it < 400:
            patch_400 = p["ms_per_iter"] * 400 / 1e3
        ok_patch = patch_400 < 3.0
    targets.append(("UFLDL patch exercise (400 iterations) < 3 s", patch_400, ok_patch))

    short = [f"{g} {k}" for g, sect in (("skae", results["mnist"]),) for k, v in sect.items()
             if v["skae"].get("n_runs", meta["repeats"]) < meta["repeats"]]
    sections = (("options", results["options"]), ("torch", results["torch"]))
    short += [f"{g} {k}" for g, sect in sections
              for k, v in sect.items() if v.get("n_runs", meta["repeats"]) < meta["repeats"]]
    if p.get("n_runs", meta["repeats"]) < meta["repeats"]:
        short.append("patch exercise")
    if short:
        L.append("")
        L.append(f"Fewer than {meta['repeats']} runs (a run exceeded --task-cap): "
                 + ", ".join(short) + ".")
    L.append("")
    L.append("Design goals:")
    L.append("")
    L.append("| target | value | met |")
    L.append("|---|---:|:-:|")
    summary = []
    for name, value, ok in targets:
        L.append(f"| {name} | {fmt(value, 2)} | {mark(ok)} |")
        summary.append({"target": name, "value": value, "met": ok})
    low = [name for name, value, _ in targets if "GEMM floor" in name and value is not None
           and value < 1.0]
    if low:
        L.append("")
        L.append(low_ratio_warning(low))
    return "\n".join(L), summary


if __name__ == "__main__":
    sys.exit(main())
