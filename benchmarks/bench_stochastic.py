"""The mini-batch solvers (``solver="adam"``) measured: time to accuracy, per epoch, streams.

Parts (``--parts``, default all; each writes its own section of the results JSON):

a. **Time to accuracy, autoencoder.** Fashion-MNIST (60 000 training / 10 000 test images,
   scaled to [0, 1]), ``SparseAutoencoder(n_hidden=200)`` with its defaults (L-BFGS, 400
   iterations) against ``solver="adam"``, float32 and float64. Accuracy: a logistic
   regression on the codes (``StandardScaler`` then ``LogisticRegression(max_iter=2000)``,
   the same for every row), on the test set. Adam's learning rate is chosen first on a
   validation split of the training set (50 000 / 10 000, never the test set): each
   candidate runs ``--select-epochs`` epochs in float32 and is scored by the validation
   accuracy of the same classifier trained on the codes of 10 000 of the 50 000 rows.
   Adam is then trained with ``partial_fit`` epoch by epoch on all 60 000 rows; its wall
   time is the sum of the ``partial_fit`` calls (the evaluations in between are not
   timed), and the test accuracy is taken after the epochs of ``--checkpoints``, stopping
   at the first that comes within 0.5 point of L-BFGS's accuracy. The float64 L-BFGS
   reference is measured for ``--lbfgs64-iter`` iterations only (a full float64 fit costs
   about 16 minutes on the reference machine) and its time for the iterations of the
   float32 fit is extrapolated from its time per iteration, and said so; its accuracy
   target is the float32 fit's. ``--lbfgs64-iter 400`` measures it in full.
b. **Per epoch against PyTorch.** The same objective (sigmoid encoder and decoder, ½‖x̂−x‖²
   averaged over the mini-batch, α/2(‖W1‖²+‖W2‖²), β Σ KL(ρ‖ρ̂) with ρ̂ the mini-batch
   mean; skae's defaults ρ=0.1, β=1, α=1e-3) trained with ``torch.optim.Adam`` (lr 1e-3, the
   same mini-batch size, shuffled each epoch) in a child process (torch's OpenMP/MKL runtime
   never shares a process with skae's OpenBLAS), on the same number of threads; Fashion
   60 000 × 784 → 200, float32 and float64. Rounds are interleaved (each runs one epoch of
   every configuration); medians. Also: the five matrix products of one mini-batch (the
   GEMM floor) times the number of mini-batches, and a profile of one further skae epoch
   (time spent building each mini-batch's objective, evaluating it, in Adam's update, and
   the rest; and ``cProfile``'s top functions).
c. **Streams.** ``partial_fit`` over chunks of 10 000 jittered Fashion-MNIST images
   (N(0, 0.02²) noise, clipped to [0, 1], float32; the chunk is drawn into a buffer made
   before the baseline), in a fresh process per stream length; the peak anonymous memory
   (``RssAnon`` sampled every 5 ms, above the baseline taken after the first chunk is drawn
   and BLAS is warmed up) and the time per row of the ``partial_fit`` calls.
d. **Stacked fine-tuning per epoch.** ``StackedAutoencoderClassifier((200, 200),
   solver="adam")`` against ``MLPClassifier((200, 200), solver="adam")`` (logistic units,
   same mini-batch size, float32), Fashion-MNIST: the time per fine-tuning epoch is the
   difference of two fits with ``1 + K`` and ``1`` epochs divided by ``K`` (the pretraining
   and setup cost cancels), the same for both; test accuracies of the longer fits.
e. **Time to accuracy, stacked against MLPClassifier**, full MNIST and Fashion-MNIST,
   float32: ``MLPClassifier((200, 200), solver="adam", max_iter=30)`` (relu and logistic)
   against the stacked classifier with stochastic pretraining and fine-tuning (``STACK_E``:
   two epochs per pretraining layer and for the softmax, 20 fine-tuning epochs); wall time
   and test accuracy. Then 1 % and 10 % of the labels (the rest −1), ``--draws`` draws
   (label draws and seeds 1, 2, …): the semi-supervised stack (``STACK_FEW``: 50 softmax
   and 200 fine-tuning epochs over the labelled rows, which are few) against
   ``MLPClassifier`` (relu, ``max_iter=200``: it stops by its own no-improvement rule) on
   the labelled rows only, and against the few-labels page's two baselines: a
   ``LogisticRegression`` (standardised inputs, ``C`` from 0.01 to 100 by 3-fold
   cross-validation on the labelled rows) on the labelled rows' pixels, and the same on
   self-taught features (one ``SparseAutoencoder(200, solver="adam", max_iter=2)`` fitted
   on every training row without labels). The epoch counts were fixed from one preliminary run on
   MNIST with draw 0, which the measured draws leave out.

Usage::

    flock /tmp/bench.lock python benchmarks/bench_stochastic.py          # all parts
    python benchmarks/bench_stochastic.py --quick --json /tmp/stoch.json   # smoke run
    flock /tmp/bench.lock python benchmarks/bench_stochastic.py --parts a,b,c

The results go to ``benchmarks/results/stochastic.json`` (``--json PATH`` elsewhere); an
existing file keeps the sections of the parts not run. ``--quick`` runs every part on
small data (5 000 training rows) with few epochs: a smoke run, not a measurement.
"""

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
from _common import (
    RESULTS,
    add_data_dir_argument,
    blas_summary,
    idx_dataset,
    machine,
    status_kib,
    warm_up_blas,
    write_json,
)

N_HIDDEN = 200
MINI_BATCH = 200  # the MLPs' "auto" (min(200, n_samples)); skae's default too
LEARNING_RATES = (1e-3, 3e-3, 1e-2)  # candidates of part a, chosen on a validation split
RHO, BETA, ALPHA = 0.1, 1.0, 1e-3  # SparseAutoencoder's defaults
TARGET_GAP = 0.5  # percentage points below L-BFGS's accuracy that count as reached
STACK_E = {  # part e's stack, every label: epochs of each pretraining layer, the softmax and
    # fine-tuning
    "max_iter": 2,
    "softmax_max_iter": 2,
    "fine_tune_max_iter": 20,
}
# With 1 % or 10 % of the labels an epoch of the supervised stages is 3 or 30 mini-batches:
# they get more epochs (the pretraining layers still see every row)
STACK_FEW = dict(STACK_E, softmax_max_iter=50, fine_tune_max_iter=200)
MLP_FEW_EPOCHS = 200


def load(name, data_dir, n_train=None, dtype=np.float32):
    d = idx_dataset(name, data_dir)
    X, y = d["X_train"], d["y_train"].astype(np.int64)
    if n_train is not None:
        X, y = X[:n_train], y[:n_train]
    Xt, yt = d["X_test"], d["y_test"].astype(np.int64)
    if n_train is not None:
        Xt, yt = Xt[: max(1000, n_train // 5)], yt[: max(1000, n_train // 5)]
    return {
        "X": (X / 255.0).astype(dtype),
        "y": y,
        "X_test": (Xt / 255.0).astype(dtype),
        "y_test": yt,
        "source": d["source"],
        "sha256": d["sha256"],
    }


def quiet():
    """A context that hides the ConvergenceWarnings of fits stopped on purpose."""
    from sklearn.exceptions import ConvergenceWarning

    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.simplefilter("ignore", ConvergenceWarning)
    return ctx


def adam_autoencoder(learning_rate_init=1e-3):
    """The autoencoder of parts a to c: N_HIDDEN units, Adam on mini-batches of MINI_BATCH."""
    from skae import SparseAutoencoder

    return SparseAutoencoder(
        n_hidden=N_HIDDEN,
        solver="adam",
        mini_batch_size=MINI_BATCH,
        learning_rate_init=learning_rate_init,
        random_state=0,
    )


def classifier():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))


def fit_classifier(codes, y):
    """The classifier fitted on one thread: not timed, and OpenBLAS's threads on small
    products collapse on a loaded machine (63 s against 1.5 s for 5 000 codes at load 8)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return classifier().fit(codes, y)


def codes_accuracy(ae, X, y, X_test, y_test):
    """Test accuracy (%) of the classifier on the codes, its iterations, and seconds."""
    t0 = time.perf_counter()
    clf = fit_classifier(ae.transform(X), y)
    acc = 100.0 * clf.score(ae.transform(X_test), y_test)
    n_iter = int(np.max(clf[-1].n_iter_))
    return acc, {
        "classifier_iter": n_iter,
        "classifier_converged": n_iter < 2000,
        "eval_s": time.perf_counter() - t0,
    }


# ----------------------------------------------------------------------------
# a. time to accuracy
# ----------------------------------------------------------------------------


def part_a(args, log):
    from skae import SparseAutoencoder

    out = {"data": None, "selection": {}, "lbfgs": {}, "adam": {}, "goals": {}}
    data64 = load("fashion-mnist", args.data_dir, args.n_train, np.float64)
    out["data"] = {
        "name": "fashion-mnist",
        "source": data64["source"],
        "sha256": data64["sha256"],
        "n_train": len(data64["X"]),
        "n_test": len(data64["X_test"]),
    }
    # -- the learning rate, on a validation split of the training set
    X32 = data64["X"].astype(np.float32)
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(X32))
    n_val = len(X32) // 6
    val, fit_rows = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    clf_rows = fit_rows[: min(10000, len(fit_rows))]
    scores = {}
    for lr in LEARNING_RATES:
        ae = adam_autoencoder(lr)
        for _ in range(args.select_epochs):
            ae.partial_fit(X32[fit_rows])
        clf = fit_classifier(ae.transform(X32[clf_rows]), data64["y"][clf_rows])
        scores[lr] = 100.0 * clf.score(ae.transform(X32[val]), data64["y"][val])
        log(
            f"  a/select: learning_rate_init={lr:g}: validation accuracy {scores[lr]:.2f} % "
            f"after {args.select_epochs} epochs"
        )
    lr = max(scores, key=scores.get)
    out["selection"] = {
        "rule": f"highest validation accuracy after {args.select_epochs} epochs (float32, "
        f"mini_batch_size={MINI_BATCH}); classifier trained on the codes of "
        f"{len(clf_rows)} of the {len(fit_rows)} fitting rows, scored on "
        f"{len(val)} held-out training rows",
        "validation_accuracy": {f"{k:g}": v for k, v in scores.items()},
        "learning_rate_init": lr,
        "mini_batch_size": MINI_BATCH,
    }
    # -- L-BFGS, the reference
    for dtype in (np.float32, np.float64):
        name = np.dtype(dtype).name
        X, Xt = data64["X"].astype(dtype), data64["X_test"].astype(dtype)
        max_iter = args.lbfgs_iter if dtype == np.float32 else args.lbfgs64_iter
        ae = SparseAutoencoder(n_hidden=N_HIDDEN, random_state=0, max_iter=max_iter)
        ctx = quiet()
        t0 = time.perf_counter()
        ae.fit(X)
        wall = time.perf_counter() - t0
        ctx.__exit__(None, None, None)
        row = {
            "max_iter": max_iter,
            "n_iter": ae.n_iter_,
            "wall_s": wall,
            "s_per_iter": wall / max(ae.n_iter_, 1),
            "loss": ae.loss_,
            "stop_reason": ae.stop_reason_,
        }
        full = max_iter == args.lbfgs_iter
        if full:
            row["accuracy"], info = codes_accuracy(ae, X, data64["y"], Xt, data64["y_test"])
            row.update(info)
            row["time_s"] = wall
            row["time_is"] = "measured"
        else:
            n_ref = out["lbfgs"]["float32"]["n_iter"]
            row["time_s"] = row["s_per_iter"] * n_ref
            row["time_is"] = (
                f"extrapolated: {max_iter} iterations measured, time per "
                f"iteration x the float32 fit's {n_ref} iterations"
            )
            row["accuracy"] = out["lbfgs"]["float32"]["accuracy"]
            row["accuracy_is"] = "the float32 fit's (this fit was cut short)"
        out["lbfgs"][name] = row
        log(
            f"  a/lbfgs {name}: {row['n_iter']} iterations, {wall:.1f} s "
            f"({row['time_is'].split(':')[0]} time {row['time_s']:.1f} s), "
            f"accuracy {row['accuracy']:.2f} %"
        )
    # -- Adam, epoch by epoch
    for dtype in (np.float32, np.float64):
        name = np.dtype(dtype).name
        X, Xt = data64["X"].astype(dtype), data64["X_test"].astype(dtype)
        ref = out["lbfgs"][name]
        target = ref["accuracy"] - TARGET_GAP
        ae = adam_autoencoder(lr)
        fit_time, points, reached = 0.0, [], None
        for epoch in range(1, max(args.checkpoints) + 1):
            t0 = time.perf_counter()
            ae.partial_fit(X)
            fit_time += time.perf_counter() - t0
            if epoch in args.checkpoints:
                acc, info = codes_accuracy(ae, X, data64["y"], Xt, data64["y_test"])
                points.append(
                    {
                        "epoch": epoch,
                        "fit_s": fit_time,
                        "accuracy": acc,
                        "loss": ae.loss_curve_[-1],
                        **info,
                    }
                )
                log(f"  a/adam {name}: epoch {epoch}: {fit_time:.1f} s, accuracy {acc:.2f} %")
                if acc >= target:
                    reached = points[-1]
                    break
        out["adam"][name] = {
            "learning_rate_init": lr,
            "mini_batch_size": MINI_BATCH,
            "points": points,
            "target_accuracy": target,
            "reached": reached is not None,
            "time_to_target_s": reached["fit_s"] if reached else None,
            "epochs_to_target": reached["epoch"] if reached else None,
            "ratio_to_lbfgs": reached["fit_s"] / ref["time_s"] if reached else None,
        }
        ratio = out["adam"][name]["ratio_to_lbfgs"]
        out["goals"][f"adam {name} time to within {TARGET_GAP} pt of L-BFGS <= 1/3"] = (
            ratio is not None and ratio <= 1 / 3
        )
    return out


# ----------------------------------------------------------------------------
# b. per epoch against PyTorch
# ----------------------------------------------------------------------------


def torch_worker():
    """Child loop: a JSON request per line, one epoch of the model of that dtype, a JSON line."""
    import torch

    models = {}
    for line in sys.stdin:
        req = json.loads(line)
        torch.set_num_threads(req["threads"])
        key = req["dtype"]
        if key not in models:
            tdt = {"float32": torch.float32, "float64": torch.float64}[key]
            data = load("fashion-mnist", req["data_dir"], req["n_train"], np.float64)
            X = torch.from_numpy(data["X"]).to(tdt).contiguous()
            m, n = X.shape
            g = torch.Generator().manual_seed(0)
            r = (6.0 / (n + N_HIDDEN + 1)) ** 0.5
            W1 = (torch.rand(N_HIDDEN, n, dtype=tdt, generator=g) * 2 - 1) * r
            W2 = (torch.rand(N_HIDDEN, n, dtype=tdt, generator=g) * 2 - 1) * r
            params = [
                W1.requires_grad_(),
                torch.zeros(N_HIDDEN, dtype=tdt).requires_grad_(),
                W2.requires_grad_(),
                torch.zeros(n, dtype=tdt).requires_grad_(),
            ]
            models[key] = (X, params, torch.optim.Adam(params, lr=1e-3), g)
        X, (W1, b1, W2, b2), opt, g = models[key]
        m, mb = X.shape[0], req["mini_batch"]
        t0 = time.perf_counter()
        perm = torch.randperm(m, generator=g)
        total = torch.zeros((), dtype=X.dtype)
        for start in range(0, m, mb):
            xb = X[perm[start : start + mb]]
            opt.zero_grad()
            H = torch.sigmoid(torch.addmm(b1, xb, W1.t()))
            Xh = torch.sigmoid(torch.addmm(b2, H, W2))
            rec = 0.5 * (Xh - xb).pow(2).sum() / xb.shape[0]
            wd = 0.5 * ALPHA * (W1.pow(2).sum() + W2.pow(2).sum())
            q = H.mean(dim=0)
            kl = (RHO * torch.log(RHO / q) + (1 - RHO) * torch.log((1 - RHO) / (1 - q))).sum()
            J = rec + wd + BETA * kl
            J.backward()
            opt.step()
            total += J.detach() * xb.shape[0]
        wall = time.perf_counter() - t0
        print(
            json.dumps(
                {
                    "epoch_s": wall,
                    "loss": float(total) / m,
                    "torch": torch.__version__,
                    "threads": torch.get_num_threads(),
                    "blas": "mkl" if torch.backends.mkl.is_available() else "other",
                }
            ),
            flush=True,
        )


class TorchClient:
    def __init__(self):
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--_torch-worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def epoch(self, **request):
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the torch worker died")
        return json.loads(line)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def torch_version():
    proc = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.__version__)"],
        capture_output=True,
        text=True,
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def gemm_floor_epoch(X, mb, repeats=3):
    """The five products of one mini-batch evaluation, times the number of mini-batches."""
    m, n = X.shape
    rng = np.random.default_rng(0)
    W = rng.random((N_HIDDEN, n)).astype(X.dtype)
    W2 = rng.random((N_HIDDEN, n)).astype(X.dtype)
    Xb = np.ascontiguousarray(X[:mb])
    H, R = np.empty((mb, N_HIDDEN), X.dtype), np.empty((mb, n), X.dtype)
    G = np.empty((N_HIDDEN, n), X.dtype)

    def once():
        np.matmul(Xb, W.T, out=H)
        np.matmul(H, W2, out=R)
        np.matmul(H.T, R, out=G)
        np.matmul(R, W2.T, out=H)
        np.matmul(H.T, Xb, out=G)

    once()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(50):
            once()
        times.append((time.perf_counter() - t0) / 50)
    return statistics.median(times) * -(-m // mb)


def profile_epoch(X, lr=1e-3):
    """One skae epoch with its parts timed (objective construction, evaluation, update)."""
    import skae._stochastic as stochastic

    spent = {"build_s": 0.0, "evaluate_s": 0.0, "update_s": 0.0, "batches": 0}
    original_build = stochastic.minibatch_objective
    original_update = stochastic.AdamOptimizer.update_params

    class Timed:
        def __init__(self, fun):
            self.fun = fun

        def __call__(self, theta):
            t0 = time.perf_counter()
            out = self.fun(theta)
            spent["evaluate_s"] += time.perf_counter() - t0
            return out

    def build(*a, **k):
        t0 = time.perf_counter()
        fun = original_build(*a, **k)
        spent["build_s"] += time.perf_counter() - t0
        spent["batches"] += 1
        return Timed(fun)

    def update(self, theta, grad):
        t0 = time.perf_counter()
        original_update(self, theta, grad)
        spent["update_s"] += time.perf_counter() - t0

    ae = adam_autoencoder(lr)
    ae.partial_fit(X)  # warm-up epoch
    stochastic.minibatch_objective = build
    stochastic.AdamOptimizer.update_params = update
    try:
        t0 = time.perf_counter()
        ae.partial_fit(X)
        spent["epoch_s"] = time.perf_counter() - t0
    finally:
        stochastic.minibatch_objective = original_build
        stochastic.AdamOptimizer.update_params = original_update
    spent["other_s"] = (
        spent["epoch_s"] - spent["build_s"] - spent["evaluate_s"] - spent["update_s"]
    )
    prof = cProfile.Profile()
    prof.enable()
    ae.partial_fit(X)
    prof.disable()
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(15)
    spent["cprofile_top15_tottime"] = text.getvalue().strip().splitlines()[-20:]
    return spent


def part_b(args, log):
    from threadpoolctl import threadpool_info, threadpool_limits

    if args.threads is not None:  # skae's BLAS and torch both limited to this many
        with threadpool_limits(args.threads):
            return _part_b(args, log, args.threads)
    threads = max(
        p.get("num_threads", 1) for p in threadpool_info() if p.get("user_api") == "blas"
    )
    return _part_b(args, log, threads)


def _part_b(args, log, threads):
    from threadpoolctl import threadpool_limits

    from skae import SparseAutoencoder

    data = load("fashion-mnist", args.data_dir, args.n_train, np.float64)
    tv = None if args.no_torch else torch_version()
    out = {
        "threads": threads,
        "mini_batch_size": MINI_BATCH,
        "rounds": args.rounds,
        "torch": tv,
        "rows": len(data["X"]),
        "skae": {},
        "pytorch": {},
        "floor": {},
        "profile": {},
        "ratio_skae_to_torch": {},
        "goals": {},
    }
    client = TorchClient() if tv else None
    models = {}
    runs = {("skae", d): [] for d in ("float32", "float64")}
    runs.update({("torch", d): [] for d in ("float32", "float64")})
    for r in range(args.rounds):
        for dtype in (np.float32, np.float64):
            name = np.dtype(dtype).name
            if name not in models:
                models[name] = (
                    data["X"].astype(dtype),
                    SparseAutoencoder(
                        n_hidden=N_HIDDEN,
                        solver="adam",
                        mini_batch_size=MINI_BATCH,
                        random_state=0,
                    ),
                )
            X, ae = models[name]
            t0 = time.perf_counter()
            ae.partial_fit(X)
            runs[("skae", name)].append(
                {"epoch_s": time.perf_counter() - t0, "loss": ae.loss_curve_[-1]}
            )
            if client is not None:
                runs[("torch", name)].append(
                    client.epoch(
                        dtype=name,
                        threads=threads,
                        mini_batch=MINI_BATCH,
                        data_dir=args.data_dir,
                        n_train=args.n_train,
                    )
                )
            log(
                f"  b round {r + 1}: {name}: skae {runs[('skae', name)][-1]['epoch_s']:.2f} s"
                + (f", torch {runs[('torch', name)][-1]['epoch_s']:.2f} s" if client else "")
            )
    if client is not None:
        client.close()
    for name in ("float32", "float64"):
        out["skae"][name] = {
            "median_epoch_s": statistics.median(x["epoch_s"] for x in runs[("skae", name)]),
            "runs": runs[("skae", name)],
        }
        if client is not None:
            t = runs[("torch", name)]
            out["pytorch"][name] = {
                "median_epoch_s": statistics.median(x["epoch_s"] for x in t),
                "runs": t,
                "threads": t[0]["threads"],
                "blas": t[0]["blas"],
            }
            ratio = out["skae"][name]["median_epoch_s"] / out["pytorch"][name]["median_epoch_s"]
            out["ratio_skae_to_torch"][name] = ratio
            out["goals"][f"skae <= 1.0x PyTorch per epoch, {name}"] = ratio <= 1.0
        X = models[name][0]
        with threadpool_limits(1):  # a 200-row mini-batch is one block: one skae worker
            floor_1 = gemm_floor_epoch(X, MINI_BATCH)
        out["floor"][name] = {
            "epoch_s": gemm_floor_epoch(X, MINI_BATCH),
            "epoch_s_1_thread": floor_1,
        }
        out["profile"][name] = profile_epoch(X)
        p = out["profile"][name]
        log(
            f"  b profile {name}: epoch {p['epoch_s']:.2f} s = build {p['build_s']:.2f} + "
            f"evaluate {p['evaluate_s']:.2f} + update {p['update_s']:.2f} + other "
            f"{p['other_s']:.2f}; GEMM floor {out['floor'][name]['epoch_s']:.2f} s "
            f"({out['floor'][name]['epoch_s_1_thread']:.2f} s on one thread)"
        )
    return out


# ----------------------------------------------------------------------------
# c. streams
# ----------------------------------------------------------------------------


def stream_child(rows, chunk, data_dir, n_train):

    base = load("fashion-mnist", data_dir, n_train, np.float32)["X"]
    warm_up_blas()
    rng = np.random.default_rng(0)
    buf = np.empty((chunk, base.shape[1]), np.float32)
    noise = np.empty_like(buf)

    def draw(size):
        idx = rng.integers(0, len(base), size)
        np.take(base, idx, axis=0, out=buf[:size])
        rng.standard_normal(out=noise[:size], dtype=np.float32)
        noise[:size] *= 0.02
        buf[:size] += noise[:size]
        np.clip(buf[:size], 0.0, 1.0, out=buf[:size])
        return buf[:size]

    draw(chunk)
    anon_before = status_kib("RssAnon")
    peak = {"anon": anon_before}
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak["anon"] = max(peak["anon"], status_kib("RssAnon"))
            stop.wait(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    ae = adam_autoencoder()
    fit_s, done, first = 0.0, 0, None
    while done < rows:
        size = min(chunk, rows - done)
        Xc = draw(size)
        t0 = time.perf_counter()
        ae.partial_fit(Xc)
        fit_s += time.perf_counter() - t0
        first = fit_s if first is None else first
        done += size
    stop.set()
    sampler.join()
    return {
        "rows": rows,
        "chunk": chunk,
        "fit_s": fit_s,
        "us_per_row": 1e6 * fit_s / rows,
        "first_call_s": first,
        "anon_before_mib": anon_before / 1024,
        "peak_anon_minus_before_mib": (peak["anon"] - anon_before) / 1024,
        "chunk_buffers_mib": 2 * buf.nbytes / 2**20,
        "loss": ae.loss_curve_[-1],
        "n_iter": ae.n_iter_,
    }


def part_c(args, log):
    out = {"chunk": args.chunk, "dtype": "float32", "jitter": 0.02, "streams": []}
    for rows in args.stream_rows:
        cmd = [sys.executable, __file__, "--_stream-child", str(rows), str(args.chunk)]
        if args.data_dir:
            cmd += ["--data-dir", args.data_dir]
        if args.n_train:
            cmd += ["--n-train", str(args.n_train)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            err = (proc.stderr.strip().splitlines() or ["?"])[-1]
            out["streams"].append({"rows": rows, "error": err})
            log(f"  c {rows} rows: failed: {err}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        out["streams"].append(r)
        log(
            f"  c {rows} rows: {r['fit_s']:.1f} s ({r['us_per_row']:.1f} us/row), peak heap "
            f"+{r['peak_anon_minus_before_mib']:.1f} MiB"
        )
    peaks = [s["peak_anon_minus_before_mib"] for s in out["streams"] if "error" not in s]
    if len(peaks) > 1:
        out["peak_spread_mib"] = max(peaks) - min(peaks)
        out["goals"] = {
            "peak heap flat in the rows (spread <= 10 MiB)": out["peak_spread_mib"] <= 10
        }
    return out


# ----------------------------------------------------------------------------
# d, e. stacked estimators against MLPClassifier
# ----------------------------------------------------------------------------


def mlp(activation, max_iter, seed=0, **extra):
    from sklearn.neural_network import MLPClassifier

    return MLPClassifier(
        (200, 200),
        activation=activation,
        solver="adam",
        batch_size=MINI_BATCH,
        max_iter=max_iter,
        random_state=seed,
        **extra,
    )


def stack(seed=0, **params):
    from skae import StackedAutoencoderClassifier

    return StackedAutoencoderClassifier(
        (200, 200), solver="adam", mini_batch_size=MINI_BATCH, random_state=seed, **params
    )


def few_label_lr():
    """The few-label baselines' classifier: standardised inputs, LogisticRegression with C
    chosen from 0.01 to 100 by 3-fold cross-validation on the labelled rows."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        StandardScaler(),
        LogisticRegressionCV(Cs=[0.01, 0.1, 1.0, 10.0, 100.0], cv=3, max_iter=2000),
    )


def timed_fit(est, X, y):
    ctx = quiet()
    t0 = time.perf_counter()
    est.fit(X, y)
    wall = time.perf_counter() - t0
    ctx.__exit__(None, None, None)
    return wall


def part_d(args, log):
    data = load("fashion-mnist", args.data_dir, args.n_train, np.float32)
    X, y, Xt, yt = data["X"], data["y"], data["X_test"], data["y_test"]
    K = args.epochs_d
    out = {"K": K, "rows": len(X), "dtype": "float32", "mini_batch_size": MINI_BATCH}
    pre = {"max_iter": 1, "softmax_max_iter": 1}
    for label, make in (
        ("stacked", lambda e: stack(fine_tune_max_iter=e, tol=0.0, **pre)),
        ("mlp_logistic", lambda e: mlp("logistic", e, tol=0.0)),
    ):
        short, long_ = make(1), make(1 + K)
        t1 = timed_fit(short, X, y)
        t2 = timed_fit(long_, X, y)
        coef = getattr(long_, "coefs_", None)
        out[label] = {
            "fit_1_s": t1,
            f"fit_{1 + K}_s": t2,
            "per_epoch_s": (t2 - t1) / K,
            "accuracy": 100.0 * long_.score(Xt, yt),
            "dtype_kept": None if coef is None else str(coef[0].dtype),
        }
        log(
            f"  d {label}: {out[label]['per_epoch_s']:.2f} s per epoch, accuracy "
            f"{out[label]['accuracy']:.2f} %"
        )
    out["speedup"] = out["mlp_logistic"]["per_epoch_s"] / out["stacked"]["per_epoch_s"]
    out["goals"] = {
        "stacked fine-tuning >= 2x faster per epoch than MLPClassifier": out["speedup"] >= 2.0
    }
    return out


def part_e(args, log):
    from skae import SparseAutoencoder

    out = {
        "settings": dict(STACK_E),
        "settings_few_labels": dict(STACK_FEW),
        "mlp_max_iter": args.mlp_epochs,
        "mlp_max_iter_few_labels": args.mlp_few_epochs,
        "datasets": {},
        "goals": {},
    }
    for name in ("mnist", "fashion-mnist"):
        data = load(name, args.data_dir, args.n_train, np.float32)
        X, y, Xt, yt = data["X"], data["y"], data["X_test"], data["y_test"]
        res = {"source": data["source"], "full": {}, "few_labels": {}}
        for label, est in (
            ("mlp_relu", mlp("relu", args.mlp_epochs)),
            ("mlp_logistic", mlp("logistic", args.mlp_epochs)),
            ("stacked", stack(**STACK_E)),
        ):
            wall = timed_fit(est, X, y)
            res["full"][label] = {"wall_s": wall, "accuracy": 100.0 * est.score(Xt, yt)}
            log(
                f"  e {name} {label}: {wall:.1f} s, "
                f"accuracy {res['full'][label]['accuracy']:.2f} %"
            )
        best_mlp = max(
            (res["full"][k] for k in ("mlp_relu", "mlp_logistic")), key=lambda r: r["accuracy"]
        )
        s = res["full"]["stacked"]
        out["goals"][f"{name}: stack >= MLP accuracy in <= its wall time"] = bool(
            s["accuracy"] >= best_mlp["accuracy"] and s["wall_s"] <= best_mlp["wall_s"]
        )
        # self-taught features: one autoencoder on every training row (no labels), as the
        # stack's first layer is pretrained
        selftaught = SparseAutoencoder(
            200, solver="adam", mini_batch_size=MINI_BATCH, max_iter=2, random_state=0
        )
        selftaught_wall = timed_fit(selftaught, X, None)
        codes, codes_test = selftaught.transform(X), selftaught.transform(Xt)
        res["selftaught_autoencoder_s"] = selftaught_wall
        for fraction in args.fractions:
            rows = {"stacked": [], "mlp_relu": [], "lr_pixels": [], "lr_selftaught": []}
            for draw in range(1, args.draws + 1):  # draw 0 fixed STACK_FEW: left out
                rng = np.random.default_rng(draw)
                labelled = np.sort(rng.choice(len(X), int(fraction * len(X)), replace=False))
                y_semi = np.full_like(y, -1)
                y_semi[labelled] = y[labelled]
                est = stack(seed=draw, **STACK_FEW)
                wall = timed_fit(est, X, y_semi)
                rows["stacked"].append({"wall_s": wall, "accuracy": 100.0 * est.score(Xt, yt)})
                est = mlp("relu", args.mlp_few_epochs, seed=draw)
                wall = timed_fit(est, X[labelled], y[labelled])
                rows["mlp_relu"].append({"wall_s": wall, "accuracy": 100.0 * est.score(Xt, yt)})
                for key, train, test in (
                    ("lr_pixels", X, Xt),
                    ("lr_selftaught", codes, codes_test),
                ):
                    est = few_label_lr()
                    wall = timed_fit(est, train[labelled], y[labelled])
                    rows[key].append(
                        {
                            "wall_s": wall,
                            "accuracy": 100.0 * est.score(test, yt),
                            "C": float(est[-1].C_[0]),
                        }
                    )
            summary = {}
            for k, v in rows.items():
                accs = [r["accuracy"] for r in v]
                summary[k] = {"mean": float(np.mean(accs)), "std": float(np.std(accs)), "runs": v}
            res["few_labels"][f"{fraction:g}"] = summary
            margin = summary["stacked"]["mean"] - summary["mlp_relu"]["mean"]
            spread = max(summary["stacked"]["std"], summary["mlp_relu"]["std"])
            out["goals"][
                f"{name} {fraction:.0%} labels: stack beats MLP by more than the spread"
            ] = bool(margin > spread)
            out["goals"][f"{name} {fraction:.0%} labels: stack beats both LR baselines"] = bool(
                summary["stacked"]["mean"]
                > max(summary["lr_pixels"]["mean"], summary["lr_selftaught"]["mean"])
            )
            log(
                f"  e {name} {fraction:.0%} labels: "
                + ", ".join(f"{k} {v['mean']:.2f} ± {v['std']:.2f} %" for k, v in summary.items())
            )
        out["datasets"][name] = res
    return out


# ----------------------------------------------------------------------------


def git_state():
    """The commit measured, and whether the working tree differed from it."""
    run = {"capture_output": True, "text": True, "cwd": Path(__file__).resolve().parent}
    head = subprocess.run(["git", "rev-parse", "HEAD"], **run).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "../skae"], **run).stdout
    return {"commit": head or None, "skae_modified": bool(dirty.strip())}


PARTS = {"a": part_a, "b": part_b, "c": part_c, "d": part_d, "e": part_e}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--parts", default="a,b,c,d,e", help="comma-separated parts among a,b,c,d,e (default: all)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 5 000 training rows, few epochs (not a measurement)",
    )
    parser.add_argument(
        "--json",
        default=None,
        help="output JSON (default benchmarks/results/stochastic.json; "
        "stochastic_quick.json with --quick)",
    )
    add_data_dir_argument(parser)
    parser.add_argument("--n-train", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch in part b")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="part b only: limit skae's BLAS and torch to this many threads (the section "
        "is then written as b_threadsN)",
    )
    parser.add_argument(
        "--lbfgs64-iter",
        type=int,
        default=None,
        help="iterations of the float64 L-BFGS reference (default 40; 400 measures the full fit)",
    )
    parser.add_argument(
        "--_torch-worker", dest="torch_worker", action="store_true", help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--_stream-child", dest="stream_child", nargs=2, type=int, help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.torch_worker:
        torch_worker()
        return 0
    if args.stream_child:
        print(
            json.dumps(stream_child(*args.stream_child, args.data_dir, args.n_train)), flush=True
        )
        return 0

    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; expected some of {sorted(PARTS)}")
    if args.quick:
        args.n_train = args.n_train or 5000
        args.lbfgs_iter, args.select_epochs, args.checkpoints = 20, 1, [1, 2]
        args.lbfgs64_iter = args.lbfgs64_iter or 5
        args.rounds, args.stream_rows, args.chunk = 1, [5000, 20000], 2000
        args.epochs_d, args.mlp_epochs, args.fractions, args.draws = 1, 3, [0.1], 1
        args.mlp_few_epochs = 3
        STACK_E.update(fine_tune_max_iter=3)
        STACK_FEW.update(softmax_max_iter=3, fine_tune_max_iter=3)
    else:
        args.lbfgs_iter, args.select_epochs, args.checkpoints = 400, 2, [1, 2, 3, 5, 8, 12]
        args.lbfgs64_iter = args.lbfgs64_iter or 40
        args.rounds, args.stream_rows, args.chunk = 3, [100000, 300000, 1000000], 10000
        args.epochs_d, args.mlp_epochs, args.fractions, args.draws = 3, 30, [0.01, 0.1], 3
        args.mlp_few_epochs = MLP_FEW_EPOCHS
    json_path = Path(args.json) if args.json else RESULTS / (
        "stochastic_quick.json" if args.quick else "stochastic.json"
    )
    results = {}
    if json_path.exists():
        try:
            results = json.loads(json_path.read_text())
        except ValueError:
            results = {}
    env = machine()
    print(
        f"# skae mini-batch solvers benchmark: parts {','.join(parts)}"
        f"{' (quick)' if args.quick else ''}; BLAS: {blas_summary(env['threadpools'])}; "
        f"load average {env['load_average'][0]:.2f}",
        flush=True,
    )

    def log(text):
        print(text, flush=True)

    for part in parts:
        start = time.perf_counter()
        env, measured = machine(), git_state()
        section = PARTS[part](args, log)
        section["machine"] = env
        section["git"] = measured
        section["load_average_after"] = list(os.getloadavg())
        section["quick"] = bool(args.quick)
        section["part_wall_s"] = time.perf_counter() - start
        section["threads_option"] = args.threads
        key = f"b_threads{args.threads}" if part == "b" and args.threads else part
        results[key] = section
        write_json(json_path, results)
        log(
            f"part {part}: {section['part_wall_s']:.0f} s; goals: "
            f"{json.dumps(section.get('goals', {}))}"
        )
    print(f"JSON written to {json_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
