"""``python -m skae``: unsupervised pretraining on scikit-learn's digits, in under a minute.

Fits ``Pipeline(MinMaxScaler, SparseAutoencoder, LogisticRegression)`` on a stratified
training split of :func:`sklearn.datasets.load_digits` and the same logistic regression on the
min-max scaled pixels, then prints the held-out accuracy and fit time of both.
"""

import argparse
import io
import sys
import time
import warnings
from contextlib import nullcontext, redirect_stdout

from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler

from skae import SparseAutoencoder, __version__

#: Seed of the train/test split: fixed, so that runs differ only by ``--random-state``.
SPLIT_SEED = 0
#: Fraction of the digits held out for the accuracy.
TEST_SIZE = 0.25
#: Without ``--verbose``, one L-BFGS iteration line in this many is shown.
PROGRESS_EVERY = 25


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m skae",
        description=(
            "Unsupervised feature learning with a sparse autoencoder on scikit-learn's "
            "8x8 digits (1797 images, bundled with scikit-learn: no download). Fits "
            "MinMaxScaler -> SparseAutoencoder -> LogisticRegression on a stratified 75% "
            "training split and, for comparison, the same LogisticRegression on the scaled "
            "raw pixels; prints the held-out accuracy and the fit time of each."
        ),
        epilog=(
            f"Progress: by default one L-BFGS iteration of the autoencoder in {PROGRESS_EVERY} "
            "is shown (iteration, loss, reconstruction error, mean hidden activation, elapsed "
            "time); --verbose shows every iteration, --quiet only the final table. BLAS runs "
            "on one thread: on matrices this small, more threads only add overhead."
        ),
    )
    parser.add_argument(
        "--n-hidden",
        type=int,
        default=100,
        metavar="N",
        help="number of hidden units of the autoencoder, i.e. learned features (default: 100)",
    )
    parser.add_argument(
        "--max-iter",
        type=int,
        default=400,
        metavar="N",
        help="maximum number of L-BFGS iterations of the autoencoder (default: 400)",
    )
    parser.add_argument(
        "--random-state",
        type=int,
        default=0,
        metavar="SEED",
        help="seed of the autoencoder's weight initialisation (default: 0); the "
        f"train/test split always uses seed {SPLIT_SEED}",
    )
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument("-q", "--quiet", action="store_true", help="print only the final table")
    loudness.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="print every L-BFGS iteration of the autoencoder",
    )
    parser.add_argument("--version", action="version", version=f"skae {__version__}")
    return parser


class _EveryNthIteration(io.TextIOBase):
    """Forward to ``stream`` every line, except that only one ``Iteration`` line in ``n``
    is kept (the first one always is)."""

    def __init__(self, stream, n):
        self.stream = stream
        self.n = n
        self.count = 0
        self.buffer_ = ""

    def writable(self):
        return True

    def write(self, text):
        self.buffer_ += text
        *lines, self.buffer_ = self.buffer_.split("\n")
        for line in lines:
            if line.lstrip().startswith("Iteration"):
                self.count += 1
                if self.count != 1 and self.count % self.n != 0:
                    continue
            self.stream.write(line + "\n")
        return len(text)

    def flush(self):
        self.stream.flush()


def _single_threaded_blas():
    """Limit BLAS to one thread: on matrices as small as the digits, more threads only add
    overhead, and on a busy machine oversubscribed BLAS threads can be 100x slower.
    threadpoolctl is a dependency of scikit-learn; without it, nothing is limited."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        return nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _fit_timed(model, X, y):
    """Fit ``model``; return the fit time in seconds and the ConvergenceWarnings raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        with _single_threaded_blas():
            start = time.perf_counter()
            model.fit(X, y)
            seconds = time.perf_counter() - start
    not_converged = []
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            not_converged.append(str(w.message))
        else:  # not ours to swallow
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return seconds, not_converged


def main(argv=None):
    """Run the demonstration; ``argv`` defaults to ``sys.argv[1:]``. Returns the exit code."""
    args = _parser().parse_args(argv)
    if args.n_hidden < 1:
        _parser().error(f"--n-hidden must be at least 1, got {args.n_hidden}")
    if args.max_iter < 1:
        _parser().error(f"--max-iter must be at least 1, got {args.max_iter}")

    def say(message):
        if not args.quiet:
            print(message, flush=True)

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=TEST_SIZE, stratify=y, random_state=SPLIT_SEED
    )
    say(
        f"skae {__version__}: digits, {X.shape[1]} pixels, {len(X_train)} training and "
        f"{len(X_test)} held-out images"
    )

    raw = Pipeline([("scale", MinMaxScaler()), ("clf", LogisticRegression(max_iter=2000))])
    autoencoder = SparseAutoencoder(
        n_hidden=args.n_hidden,
        max_iter=args.max_iter,
        random_state=args.random_state,
        verbose=0 if args.quiet else 1,
    )
    pretrained = Pipeline(
        [
            ("scale", MinMaxScaler()),
            ("ae", autoencoder),
            ("clf", LogisticRegression(max_iter=2000)),
        ]
    )

    say("[1/2] LogisticRegression on the min-max scaled pixels ...")
    raw_seconds, raw_warnings = _fit_timed(raw, X_train, y_train)
    say(f"      done in {raw_seconds:.1f} s")

    say(
        f"[2/2] SparseAutoencoder(n_hidden={args.n_hidden}, max_iter={args.max_iter}) "
        "+ LogisticRegression on its codes ..."
    )
    if args.verbose or args.quiet:
        ae_seconds, ae_warnings = _fit_timed(pretrained, X_train, y_train)
    else:
        with redirect_stdout(_EveryNthIteration(sys.stdout, PROGRESS_EVERY)):
            ae_seconds, ae_warnings = _fit_timed(pretrained, X_train, y_train)
    fitted_ae = pretrained.named_steps["ae"]
    say(
        f"      done in {ae_seconds:.1f} s ({fitted_ae.n_iter_} L-BFGS iterations, "
        f"final loss {fitted_ae.loss_:.4f})"
    )

    rows = [
        ("raw pixels + LogisticRegression", raw.score(X_test, y_test), raw_seconds),
        (
            "SparseAutoencoder + LogisticRegression",
            pretrained.score(X_test, y_test),
            ae_seconds,
        ),
    ]
    width = max(len(name) for name, _, _ in rows)
    print()
    print(f"{'model':<{width}}  {'held-out accuracy':>17}  {'fit seconds':>11}")
    print(f"{'-' * width}  {'-' * 17}  {'-' * 11}")
    for name, accuracy, seconds in rows:
        print(f"{name:<{width}}  {accuracy:>17.4f}  {seconds:>11.1f}")

    ae_stopped = fitted_ae.n_iter_ >= args.max_iter and bool(ae_warnings)
    lr_stopped = bool(raw_warnings) or len(ae_warnings) > int(ae_stopped)
    if ae_stopped and not args.quiet:
        print(
            f"\nNote: the autoencoder stopped at --max-iter={args.max_iter} before L-BFGS "
            "converged;\nits features are usable, raise --max-iter for a tighter fit."
        )
    if lr_stopped and not args.quiet:
        print("\nNote: a LogisticRegression stopped before converging.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
