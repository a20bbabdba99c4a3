"""Weight decay of the upper layers of a StackedAutoencoder.

A layer fitted on the codes of a sparse sigmoid layer sees inputs that vary little (their
mean is ``rho``), and all-zero weights (constant codes) are a local minimum of its objective
once ``alpha`` exceeds :func:`skae._stacked.constant_codes_decay` of its input. This script
measures, on scikit-learn's digits (scaled to [0, 1], 70/30 stratified split, seed 0), for
each stack and ``alpha`` setting (with ``beta=3``, UFLDL's), and for the defaults:

* each layer's bound (computed on the layer's input after the fit) and the standard deviation
  of its codes across the training rows, averaged over units;
* whether ``ConstantCodesWarning`` was raised;
* the test accuracy of ``LogisticRegression(max_iter=2000)`` on the top codes, and on the raw
  pixels for reference.

And, for comparison (``comparisons`` in the JSON): the same logistic regression on one
200-unit layer with the defaults and on 200-200 stacks with ``alpha=[1e-3, a]`` (other
settings the defaults), and ``StackedAutoencoderClassifier((200, 200))`` with every default
and with ``fine_tune=None``, scored on the same split.

L-BFGS runs to ``max_iter`` (400, the default) for every layer; ``ConvergenceWarning`` is
silenced. Usage::

    python benchmarks/bench_stack_decay.py                    # ~3-9 min on 2 shared cores
    python benchmarks/bench_stack_decay.py --json results/stack_decay.json
"""

import argparse
import time
import warnings

from _common import RESULTS, digits, machine, write_json

# (hidden_layer_sizes, alpha); beta=3 (UFLDL) in these rows. "default" is
# StackedAutoencoder((200, 200)) with SparseAutoencoder's defaults for every layer.
SETTINGS = [
    ((200, 200), "default"),
    ((200, 200), 3e-3),
    ((200, 200), 1e-3),
    ((200, 200), [3e-3, 1e-4]),
    ((200, 200), 1e-4),
    ((64, 32), 3e-3),
    ((64, 32), [3e-3, 1e-4]),
]
# The second layer's decays of the comparison stacks (alpha=[1e-3, a], other defaults).
SECOND_LAYER_DECAYS = [1.75e-4, 1e-4, 2e-5]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-iter", type=int, default=400)
    parser.add_argument("--json", default=str(RESULTS / "stack_decay.json"))
    args = parser.parse_args()

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    from skae import SparseAutoencoder, StackedAutoencoderClassifier
    from skae._stacked import ConstantCodesWarning, StackedAutoencoder, constant_codes_decay

    X, y = digits()
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.3, random_state=0, stratify=y
    )

    def accuracy(F_train, F_test):
        clf = LogisticRegression(max_iter=2000).fit(F_train, y_train)
        return float(clf.score(F_test, y_test))

    rows = [{"stack": "raw pixels", "accuracy": accuracy(X_train, X_test)}]
    print(f"raw pixels: accuracy {rows[0]['accuracy']:.3f}", flush=True)
    for sizes, alpha in SETTINGS:
        start = time.perf_counter()
        settings = {} if alpha == "default" else {"alpha": alpha, "beta": 3.0}
        stack = StackedAutoencoder(sizes, **settings, max_iter=args.max_iter, random_state=0)
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("always", ConstantCodesWarning)
            stack.fit(X_train)
        layers, codes = [], X_train
        for ae in stack.autoencoders_:
            H = ae.transform(codes)
            layers.append({
                "bound": constant_codes_decay(codes, ae._spec_),
                "alpha": ae.alpha,
                "code_std": float(H.std(axis=0).mean()),
            })
            codes = H
        row = {
            "stack": "-".join(map(str, sizes)),
            "alpha": alpha,
            "beta": [ae.beta for ae in stack.autoencoders_],
            "layers": layers,
            "constant_codes_warning": [str(w.message)[:40] for w in record
                                       if w.category is ConstantCodesWarning],
            "accuracy": accuracy(stack.transform(X_train), stack.transform(X_test)),
            "seconds": time.perf_counter() - start,
        }
        rows.append(row)
        print(f"{row['stack']} alpha={alpha}: accuracy {row['accuracy']:.3f}; per layer "
              + "; ".join(f"bound {la['bound']:.2g}, code std {la['code_std']:.3g}"
                          for la in layers)
              + f"; warned: {bool(row['constant_codes_warning'])} ({row['seconds']:.0f} s)",
              flush=True)

    comparisons = []

    def compare(name, score):
        comparisons.append({"model": name, "accuracy": float(score)})
        print(f"{name}: accuracy {score:.3f}", flush=True)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        one = SparseAutoencoder(max_iter=args.max_iter, random_state=0).fit(X_train)
        compare("SparseAutoencoder() (defaults)",
                accuracy(one.transform(X_train), one.transform(X_test)))
        for a in SECOND_LAYER_DECAYS:
            stack = StackedAutoencoder((200, 200), alpha=[1e-3, a], max_iter=args.max_iter,
                                       random_state=0).fit(X_train)
            compare(f"StackedAutoencoder((200, 200), alpha=[1e-3, {a:g}])",
                    accuracy(stack.transform(X_train), stack.transform(X_test)))
        for fine_tune in ("all", None):
            # the defaults at --max-iter 400 (softmax 100, fine-tuning 400 iterations)
            clf = StackedAutoencoderClassifier(
                (200, 200), fine_tune=fine_tune, max_iter=args.max_iter,
                softmax_max_iter=min(100, args.max_iter), fine_tune_max_iter=args.max_iter,
                random_state=0,
            ).fit(X_train, y_train)
            compare(f"StackedAutoencoderClassifier((200, 200), fine_tune={fine_tune!r})",
                    clf.score(X_test, y_test))

    result = {"environment": machine(), "args": vars(args), "rows": rows,
              "comparisons": comparisons}
    print(f"written {write_json(args.json, result)}")


if __name__ == "__main__":
    main()
