"""Reproducing the published results at full size: MNIST and Fashion-MNIST.

Full MNIST and Fashion-MNIST (60 000 training and 10 000 test images from the IDX files,
see README.md "Full-size data"), pixels scaled to [0, 1] in float32. Parts (``--parts``,
cheapest first by default):

``baselines-mnist``, ``baselines-fashion``
    LogisticRegression on the raw pixels, on PCA (95 % of the variance) and on BernoulliRBM
    features (``n_components=200, learning_rate=0.06, n_iter=20``, as docs/quality.rst),
    and ``MLPClassifier((200, 200))`` (adam), trained on the 60 000, scored on the 10 000.
``selftaught``
    The UFLDL self-taught learning exercise (stlExercise.m): features learned from the
    training images of the digits 5 to 9; the training images of 0 to 4, in file order,
    split in two halves (the first ``round(n / 2)`` train the softmax, the others test
    it). Softmax on the codes (UFLDL's λ = 1e-4, 100 iterations: ``LogisticRegression(C =
    1 / (m λ), max_iter=100)``) with the exercise's autoencoder (200 hidden units, rho 0.1,
    beta 3, lambda 3e-3, 400 iterations) and with skae's defaults; the same softmax on the
    raw pixels.
``ufldl-stack``, ``fashion-stack``
    The UFLDL stacked autoencoder exercise (stackedAEExercise.m), 784-200-200-10 on the
    60 000 images: rho 0.1, beta 3, lambda 3e-3, 400 L-BFGS iterations per layer, softmax
    λ 1e-4 for 100 iterations, fine-tuning of every layer for 400. Accuracy of the softmax
    on the pretrained codes (``pretrained_classifier_``) and after fine-tuning, time,
    iterations and stop rule of each stage. ``ufldl-stack`` adds the codes experiment: why
    the pretrained codes alone + softmax lose to the raw pixels (the softmax on the top
    codes, on the first layer's codes, on both, on pixels + codes; the codes' sparsity).
``sda``, ``fashion-sda``
    Vincent et al. (2010), stacked denoising autoencoders, 784-1000-1000-1000-10: sigmoid
    units, tied weights, cross-entropy reconstruction, masking noise 0.25, as one
    ``StackedAutoencoderClassifier`` with the adam solver (mini-batches of 100): each layer
    pretrained, the softmax trained on the top codes, then the whole network fine-tuned;
    against ``MLPClassifier`` of the same shape (logistic units) from a random start with
    as many epochs as the fine-tuning.

Results merge into ``benchmarks/results/papers.json`` row by row (a part's rows replace
that part's earlier rows; other parts are kept), so a partial run is never lost. Each row
has its load average: the 2 cores were shared, the times are under that load.

    python benchmarks/bench_papers.py                       # everything as published (hours)
    python benchmarks/bench_papers.py --parts ufldl-stack --stack-max-iter 100
    python benchmarks/bench_papers.py --quick               # smoke run: 3 000 rows, few iterations
"""

import argparse
import json
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from _common import RESULTS, add_data_dir_argument, idx_dataset, machine, write_json

PARTS = (
    "baselines-mnist",
    "selftaught",
    "ufldl-stack",
    "baselines-fashion",
    "fashion-stack",
    "sda",
    "fashion-sda",
)

SDA_SOFTMAX_EPOCHS = 5

# the UFLDL exercises' settings
UFLDL_AE = {"rho": 0.1, "beta": 3.0, "alpha": 3e-3}
UFLDL_SOFTMAX_LAMBDA = 1e-4

PUBLISHED = {
    "selftaught": {"autoencoder (UFLDL settings)": 0.98, "raw pixels": 0.96},
    "ufldl-stack": {"pretrained codes + softmax": 0.877, "fine-tuned": 0.976},
    "sda": {"SdA-3 fine-tuned": 1 - 0.0128, "SAE-3 fine-tuned": 1 - 0.0140},
    "fashion": {"MLPClassifier 256-128-64": 0.900, "XGBoost": 0.898},
}


class Recorder:
    """Rows of the results JSON, written after each row (merged into the existing file)."""

    def __init__(self, path):
        self.path = path
        self.parts = {}  # the parts this run has started: they replace the file's
        self.results = {}

    def _merged(self):
        """The file's results with this run's parts replaced (other runs' parts kept)."""
        try:
            with open(self.path) as f:
                results = json.load(f)
        except (OSError, ValueError):
            results = {}
        results.setdefault("parts", {}).update(self.parts)
        results["parts"] = {p: results["parts"][p] for p in PARTS if p in results["parts"]}
        return results

    def start(self, part, data):
        self.parts[part] = {"machine": {**machine(), "data": data}, "rows": []}
        self.write()

    def add(self, part, row):
        row["load_average"] = [round(v, 2) for v in os.getloadavg()]
        self.parts[part]["rows"].append(row)
        acc = row.get("accuracy")
        acc = "" if acc is None else f"accuracy {acc:.4f}"
        print(
            f"[{part}] {row['dataset']} | {row['method']}: {acc} "
            f"time {row.get('seconds', 0):.1f} s, load {row['load_average']}",
            flush=True,
        )
        self.write()

    def write(self):
        """Merge into the file; a lock file lets runs of other parts write the same file."""
        import fcntl

        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        lock_path = Path(tempfile.gettempdir()) / f"skae-{Path(self.path).name}.lock"
        with open(lock_path, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.results = self._merged()
            self.results["table"] = table(self.results)
            write_json(self.path, self.results)


def table(results):
    lines = [
        "| part | data | method | test accuracy | published | seconds | stages (s) | load |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for part in PARTS:
        for row in results["parts"].get(part, {}).get("rows", []):
            if row.get("accuracy") is None:
                continue
            stages = "; ".join(f"{k} {v}" for k, v in (row.get("stage_seconds") or {}).items())
            published = row.get("published")
            lines.append(
                f"| {part} | {row['dataset']} | {row['method']} | {row['accuracy']:.4f} "
                f"| {'' if published is None else f'{published:.3f}'} "
                f"| {row.get('seconds', 0):.0f} | {stages} | {row['load_average'][0]:.1f} |"
            )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- data


def load(name, data_dir, quick):
    d = idx_dataset(name, data_dir)
    out = {
        "X_train": (d["X_train"] / np.float32(255.0)).astype(np.float32),
        "y_train": d["y_train"].astype(np.int64),
        "X_test": (d["X_test"] / np.float32(255.0)).astype(np.float32),
        "y_test": d["y_test"].astype(np.int64),
        "description": f"{name} from {d['source']} (sha256 {d['sha256'][:16]}…), float32 in "
        "[0, 1]",
    }
    if quick:  # a smoke run: the first rows only
        for key, n in (("X_train", 3000), ("y_train", 3000), ("X_test", 1000), ("y_test", 1000)):
            out[key] = out[key][:n]
        out["description"] += ", first 3000 / 1000 rows (--quick)"
    return out


def fit_timed(estimator, *args):
    """Fit, return (seconds, warnings raised)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        estimator.fit(*args)
        seconds = time.perf_counter() - start
    return seconds, sorted({f"{w.category.__name__}: {str(w.message)[:160]}" for w in caught})


def softmax(m, max_iter=100):
    """UFLDL's softmax (λ = 1e-4, 100 iterations) as a LogisticRegression: UFLDL minimises
    (1/m) Σ loss + (λ/2) ‖W‖², LogisticRegression C Σ loss + ½ ‖W‖²; equal for C = 1/(mλ)."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=1.0 / (m * UFLDL_SOFTMAX_LAMBDA), max_iter=max_iter)


def lr_row(
    rec,
    part,
    dataset,
    method,
    F_train,
    y_train,
    F_test,
    y_test,
    extra_seconds=0.0,
    max_iter=100,
    **extra,
):
    clf = softmax(len(F_train), max_iter)
    seconds, warned = fit_timed(clf, F_train, y_train)
    rec.add(
        part,
        {
            "dataset": dataset,
            "method": method,
            "accuracy": float(clf.score(F_test, y_test)),
            "seconds": round(extra_seconds + seconds, 1),
            "stage_seconds": {"features": round(extra_seconds, 1), "softmax": round(seconds, 1)},
            "n_iter": {"softmax": int(np.max(clf.n_iter_))},
            "n_features": int(F_train.shape[1]),
            "warnings": warned,
            **extra,
        },
    )
    return clf


def stacked_row(rec, part, dataset, clf, X_test, y_test, published=None, settings=None):
    pre = clf.pretrained_classifier_
    stages = {
        "pretraining": [round(t, 1) for t in clf.stage_times_["pretraining"]],
        "softmax": round(clf.stage_times_["softmax"], 1),
        "fine_tuning": round(clf.stage_times_["fine_tuning"], 1),
    }
    common = {
        "dataset": dataset,
        "settings": settings,
        "stage_n_iter": clf.stage_n_iter_,
        "stage_stop_reasons": clf.stage_stop_reasons_,
    }
    t_pre = sum(stages["pretraining"]) + stages["softmax"]
    rec.add(
        part,
        {
            **common,
            "method": "pretrained codes + softmax",
            "accuracy": float(pre.score(X_test, y_test)),
            "published": (published or {}).get("pretrained codes + softmax"),
            "seconds": round(t_pre, 1),
            "stage_seconds": {"pretraining": stages["pretraining"], "softmax": stages["softmax"]},
        },
    )
    rec.add(
        part,
        {
            **common,
            "method": "fine-tuned (all layers)",
            "accuracy": float(clf.score(X_test, y_test)),
            "published": (published or {}).get("fine-tuned"),
            "seconds": round(t_pre + stages["fine_tuning"], 1),
            "stage_seconds": stages,
        },
    )


# ----------------------------------------------------------------------------- parts


def features_row(features, method, data):
    """Fit ``features`` on the training images (no labels), then LogisticRegression on
    their transform: the table row (accuracy, seconds of each stage, warnings)."""
    from sklearn.linear_model import LogisticRegression

    seconds_f, _ = fit_timed(features, data["X_train"])
    lr = LogisticRegression(max_iter=200)
    seconds, warned = fit_timed(lr, features.transform(data["X_train"]), data["y_train"])
    return {
        "dataset": data["name"],
        "method": method,
        "accuracy": float(lr.score(features.transform(data["X_test"]), data["y_test"])),
        "seconds": round(seconds_f + seconds, 1),
        "stage_seconds": {"features": round(seconds_f, 1), "classifier": round(seconds, 1)},
        "warnings": warned,
    }


def baselines(rec, part, data, quick):
    from sklearn.decomposition import PCA
    from sklearn.neural_network import BernoulliRBM, MLPClassifier

    name = data["name"]
    Xtr, ytr, Xte, yte = data["X_train"], data["y_train"], data["X_test"], data["y_test"]
    # raw pixels: LogisticRegression's defaults but for max_iter
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(max_iter=200)
    seconds, warned = fit_timed(lr, Xtr, ytr)
    rec.add(
        part,
        {
            "dataset": name,
            "method": "LogisticRegression, raw pixels",
            "accuracy": float(lr.score(Xte, yte)),
            "seconds": round(seconds, 1),
            "n_iter": int(np.max(lr.n_iter_)),
            "warnings": warned,
            "settings": "LogisticRegression(C=1, max_iter=200)",
        },
    )

    pca = PCA(n_components=0.95, random_state=0)
    row = features_row(pca, "PCA (95 % variance) + LogisticRegression", data)
    rec.add(part, {**row, "n_features": int(pca.n_components_)})

    mlp = MLPClassifier(
        (200, 200),
        solver="adam",
        early_stopping=True,
        max_iter=5 if quick else 200,
        random_state=0,
    )
    seconds, warned = fit_timed(mlp, Xtr, ytr)
    rec.add(
        part,
        {
            "dataset": name,
            "method": "MLPClassifier 784-200-200-10 (relu, adam)",
            "accuracy": float(mlp.score(Xte, yte)),
            "seconds": round(seconds, 1),
            "n_iter": int(mlp.n_iter_),
            "warnings": warned,
            "settings": "MLPClassifier((200, 200), solver='adam', early_stopping=True)",
        },
    )

    rbm = BernoulliRBM(
        n_components=200, learning_rate=0.06, n_iter=2 if quick else 20, random_state=0
    )
    row = features_row(rbm, "BernoulliRBM (200) + LogisticRegression", data)
    rec.add(part, {**row, "settings": "n_components=200, learning_rate=0.06, n_iter=20"})


def selftaught(rec, part, data, quick):
    from skae import SparseAutoencoder

    X, y = data["X_train"], data["y_train"]
    labelled = np.flatnonzero(y <= 4)  # file order, as find() in stlExercise.m
    unlabelled = np.flatnonzero(y >= 5)
    n_train = int(round(len(labelled) / 2))
    train, test = labelled[:n_train], labelled[n_train:]
    X_u = X[unlabelled]
    split = {
        "features_rows": len(unlabelled),
        "softmax_train_rows": len(train),
        "test_rows": len(test),
    }
    print(f"[{part}] {split}", flush=True)
    lr_row(
        rec,
        part,
        "mnist (UFLDL self-taught split)",
        "softmax on raw pixels",
        X[train],
        y[train],
        X[test],
        y[test],
        published=PUBLISHED["selftaught"]["raw pixels"],
        split=split,
    )
    iters = 10 if quick else 400
    for method, ae in (
        (
            "autoencoder (UFLDL settings: 200 hidden, rho 0.1, beta 3, lambda 3e-3) + softmax",
            SparseAutoencoder(200, **UFLDL_AE, max_iter=iters, random_state=0),
        ),
        (
            "autoencoder (skae defaults: 200 hidden, rho 0.1, beta 1, alpha 1e-3) + softmax",
            SparseAutoencoder(max_iter=iters, random_state=0),
        ),
    ):
        seconds, warned = fit_timed(ae, X_u)
        codes = ae.transform(X)
        lr_row(
            rec,
            part,
            "mnist (UFLDL self-taught split)",
            method,
            codes[train],
            y[train],
            codes[test],
            y[test],
            extra_seconds=seconds,
            published=PUBLISHED["selftaught"]["autoencoder (UFLDL settings)"]
            if "UFLDL" in method
            else None,
            autoencoder={
                "n_iter": int(ae.n_iter_),
                "warnings": warned,
                "mean_activation": float(codes[test].mean()),
            },
            split=split,
        )


def ufldl_stack(rec, part, data, quick, codes_experiment, max_iter=400, fine_tune_max_iter=400):
    from skae import StackedAutoencoderClassifier

    Xtr, ytr, Xte, yte = data["X_train"], data["y_train"], data["X_test"], data["y_test"]
    settings = (
        "StackedAutoencoderClassifier((200, 200), rho=0.1, beta=3, alpha=3e-3, "
        f"max_iter={max_iter}, softmax_alpha=1e-4, softmax_max_iter=100, fine_tune='all', "
        f"fine_tune_max_iter={fine_tune_max_iter}, random_state=0)"
    )
    clf = StackedAutoencoderClassifier(
        (200, 200),
        **UFLDL_AE,
        max_iter=10 if quick else max_iter,
        softmax_alpha=1e-4,
        softmax_max_iter=100,
        fine_tune="all",
        fine_tune_max_iter=10 if quick else fine_tune_max_iter,
        random_state=0,
        verbose=1,
    )
    seconds, warned = fit_timed(clf, Xtr, ytr)
    print(f"[{part}] fit {seconds:.0f} s; warnings: {warned}", flush=True)
    stacked_row(
        rec,
        part,
        data["name"],
        clf,
        Xte,
        yte,
        published=PUBLISHED["ufldl-stack"] if data["name"] == "mnist" else None,
        settings=settings,
    )
    if codes_experiment:
        codes(rec, part, data, clf)


def codes(rec, part, data, clf):
    """Why the pretrained codes + softmax lose to the raw pixels."""
    Xtr, ytr, Xte, yte = data["X_train"], data["y_train"], data["X_test"], data["y_test"]
    ae1, ae2 = clf.autoencoders_
    H1tr, H1te = ae1.transform(Xtr), ae1.transform(Xte)
    H2tr, H2te = ae2.transform(H1tr), ae2.transform(H1te)
    stats = {}
    for name, H in (("layer 1", H1te), ("layer 2", H2te)):
        mean_unit = H.mean(axis=0)
        stats[name] = {
            "mean_activation": float(H.mean()),
            "fraction_below_0.05": float(np.mean(H < 0.05)),
            "fraction_above_0.95": float(np.mean(H > 0.95)),
            "units_mean_below_0.01": int(np.sum(mean_unit < 0.01)),
            "units_with_std_below_0.01": int(np.sum(H.std(axis=0) < 0.01)),
            "effective_rank_99": int(
                np.searchsorted(
                    np.cumsum(s2 := np.linalg.svd(H - H.mean(0), compute_uv=False) ** 2)
                    / s2.sum(),
                    0.99,
                )
                + 1
            ),
        }
    print(f"[{part}] code statistics (test images): {stats}", flush=True)
    name = data["name"] + " (codes of the UFLDL stack, before fine-tuning)"
    for method, Ftr, Fte in (
        ("softmax on raw pixels", Xtr, Xte),
        ("softmax on layer 1 codes (200)", H1tr, H1te),
        ("softmax on layer 2 codes (200, the stack's top)", H2tr, H2te),
        (
            "softmax on layer 1 + layer 2 codes (400)",
            np.hstack([H1tr, H2tr]),
            np.hstack([H1te, H2te]),
        ),
        (
            "softmax on raw pixels + both layers' codes (1184)",
            np.hstack([Xtr, H1tr, H2tr]),
            np.hstack([Xte, H1te, H2te]),
        ),
    ):
        lr_row(
            rec,
            part,
            name,
            method,
            Ftr,
            ytr,
            Fte,
            yte,
            settings="LogisticRegression(C=1/(m·1e-4), max_iter=100): UFLDL's softmax",
            code_statistics=stats if "layer 2 codes (200" in method else None,
        )


def sda(rec, part, data, quick, noise_level, pretrain_epochs, fine_tune_epochs, width):
    """Vincent et al. (2010): SdA-3 as one StackedAutoencoderClassifier with the adam solver
    (every layer pretrained, then the softmax, then the whole network fine-tuned), and
    MLPClassifier of the same shape from a random start, with as many epochs."""
    from sklearn.neural_network import MLPClassifier

    from skae import StackedAutoencoderClassifier

    Xtr, ytr, Xte, yte = data["X_train"], data["y_train"], data["X_test"], data["y_test"]
    sizes = (width,) * 3
    settings = {
        "beta": 0.0,
        "alpha": 0.0,
        "loss": "cross_entropy",
        "tied_weights": True,
        "noise": "mask",
        "noise_level": noise_level,
        "solver": "adam",
        "learning_rate_init": 1e-3,
        "mini_batch_size": 100,
        "max_iter": pretrain_epochs,
        "softmax_max_iter": SDA_SOFTMAX_EPOCHS,
        "softmax_alpha": 1e-4,
        "fine_tune_max_iter": fine_tune_epochs,
    }
    stack = StackedAutoencoderClassifier(sizes, random_state=0, verbose=1, **settings)
    seconds, warned = fit_timed(stack, Xtr, ytr)
    times = stack.stage_times_
    described = ", ".join(f"{k}={v!r}" for k, v in settings.items())
    rec.add(
        part,
        {
            "dataset": data["name"],
            "method": f"SdA-3 ({width} units per layer, masking {noise_level}), fine-tuned",
            "settings": f"StackedAutoencoderClassifier({sizes}, {described})",
            "accuracy": float(stack.score(Xte, yte)),
            "published": (
                PUBLISHED["sda"]["SdA-3 fine-tuned"]
                if data["name"] == "mnist"
                else PUBLISHED["fashion"]["MLPClassifier 256-128-64"]
            ),
            "seconds": round(seconds, 1),
            "stage_seconds": {
                "pretraining": [round(t, 1) for t in times["pretraining"]],
                "softmax": round(times["softmax"], 1),
                "fine_tuning": round(times["fine_tuning"], 1),
            },
            "stage_n_iter": stack.stage_n_iter_,
            "warnings": warned,
        },
    )
    base = MLPClassifier(
        sizes,
        activation="logistic",
        solver="adam",
        alpha=1e-4,
        batch_size=100,
        learning_rate_init=1e-3,
        max_iter=fine_tune_epochs,
        random_state=0,
    )
    seconds, warned = fit_timed(base, Xtr, ytr)
    rec.add(
        part,
        {
            "dataset": data["name"],
            "method": f"MLPClassifier 784-{width}x3-10 (logistic, adam), random start",
            "accuracy": float(base.score(Xte, yte)),
            "seconds": round(seconds, 1),
            "n_iter": int(base.n_iter_),
            "warnings": warned,
        },
    )


# ----------------------------------------------------------------------------- main


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=PARTS,
        default=list(PARTS),
        help="which parts to run, in this order (default: all, cheapest first)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 3 000 training rows, few iterations; writes "
        "results/papers_quick.json unless --json is given",
    )
    parser.add_argument(
        "--json", default=None, help="results file (default: benchmarks/results/papers.json)"
    )
    parser.add_argument(
        "--stack-max-iter",
        type=int,
        default=400,
        help="L-BFGS iterations per layer of the UFLDL stack (the exercise: 400)",
    )
    parser.add_argument(
        "--stack-fine-tune-max-iter",
        type=int,
        default=400,
        help="L-BFGS iterations of its fine-tuning (the exercise: 400)",
    )
    parser.add_argument("--sda-width", type=int, default=1000)
    parser.add_argument("--sda-noise", type=float, default=0.25)
    parser.add_argument("--sda-pretrain-epochs", type=int, default=5)
    parser.add_argument("--sda-fine-tune-epochs", type=int, default=15)
    add_data_dir_argument(parser)
    args = parser.parse_args(argv)
    path = args.json or str(RESULTS / ("papers_quick.json" if args.quick else "papers.json"))
    parts = list(dict.fromkeys(args.parts))  # in the order given
    rec = Recorder(path)
    cache = {}

    def dataset(name):
        if name not in cache:
            cache[name] = {**load(name, args.data_dir, args.quick), "name": name}
        return cache[name]

    for part in parts:
        data = dataset("fashion-mnist" if "fashion" in part else "mnist")
        rec.start(part, data["description"])
        print(f"== {part}: {data['description']}", flush=True)
        if part.startswith("baselines"):
            baselines(rec, part, data, args.quick)
        elif part == "selftaught":
            selftaught(rec, part, data, args.quick)
        elif part in ("ufldl-stack", "fashion-stack"):
            ufldl_stack(
                rec,
                part,
                data,
                args.quick,
                codes_experiment=part == "ufldl-stack",
                max_iter=args.stack_max_iter,
                fine_tune_max_iter=args.stack_fine_tune_max_iter,
            )
        elif part in ("sda", "fashion-sda"):
            epochs = (
                (1, 1) if args.quick else (args.sda_pretrain_epochs, args.sda_fine_tune_epochs)
            )
            sda(
                rec,
                part,
                data,
                args.quick,
                args.sda_noise,
                *epochs,
                width=100 if args.quick else args.sda_width,
            )
    print(f"\n{rec.results['table']}\n\nwritten: {path}")


if __name__ == "__main__":
    main()
