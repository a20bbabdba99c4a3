"""``python -m skae``: does unsupervised pretraining help? A demonstration in under a minute.

Learns features from all 1 797 images of :func:`sklearn.datasets.load_digits` without their
labels (a :class:`~skae.SparseAutoencoder` with skae's defaults and, as the peer,
scikit-learn's :class:`~sklearn.neural_network.BernoulliRBM`), then trains a logistic
regression on a few labelled training images and on all of them, and prints the accuracy on
held-out images for the raw pixels and for each set of learned features. The learned filters
are saved as a PNG when matplotlib is installed.
"""

import argparse
import io
import os
import sys
import time
import warnings
from contextlib import nullcontext, redirect_stdout
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.neural_network import BernoulliRBM

from skae import SparseAutoencoder, __version__

#: Seed of the train/test split and of the labelled subsets: fixed, so that runs differ
#: only by ``--random-state``.
SPLIT_SEED = 0
#: Fraction of the digits held out for the accuracy.
TEST_SIZE = 0.25
#: Random draws of the few labelled images; the table shows the mean accuracy.
N_DRAWS = 5
#: The logistic regression's C is chosen from these by 3-fold CV on the labelled images.
C_GRID = (0.1, 1.0, 10.0, 100.0)
LR_MAX_ITER = 5000
#: Without ``--verbose``, one L-BFGS iteration line in this many is shown.
PROGRESS_EVERY = 50
DEFAULT_FILTERS = "skae_filters.png"
_DEFAULTS = SparseAutoencoder().get_params()


def _integer(low, high=None):
    """argparse type: an int in [low, high], with an error that names the range."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value

    return parse


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m skae",
        description=(
            "Does unsupervised pretraining help? Learns features from all 1797 images of "
            "scikit-learn's 8x8 digits WITHOUT their labels (bundled with scikit-learn: no "
            "download), with a SparseAutoencoder (skae's defaults) and with scikit-learn's "
            "BernoulliRBM, then trains LogisticRegression (C by 3-fold CV on the labelled "
            "images) on a few labelled training images and on all of them, and prints the "
            "accuracy on the 25% held-out images for raw pixels and for each set of "
            "learned features. The held-out images' labels are never used for training."
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
        type=_integer(1),
        default=_DEFAULTS["n_hidden"],
        metavar="N",
        help="hidden units of the autoencoder and of the RBM, i.e. learned features "
        f"(default: {_DEFAULTS['n_hidden']}, the SparseAutoencoder default)",
    )
    parser.add_argument(
        "--max-iter",
        type=_integer(1),
        default=_DEFAULTS["max_iter"],
        metavar="N",
        help="maximum number of L-BFGS iterations of the autoencoder "
        f"(default: {_DEFAULTS['max_iter']}, the SparseAutoencoder default)",
    )
    parser.add_argument(
        "--labels-per-class",
        type=_integer(3, 100),
        default=10,
        metavar="K",
        help=f"labelled training images per class in the few-labels column, {N_DRAWS} "
        "random draws averaged (default: 10)",
    )
    parser.add_argument(
        "--random-state",
        type=_integer(0, 2**32 - 1),
        default=0,
        metavar="SEED",
        help="seed of the autoencoder's and the RBM's initialisation (default: 0); the "
        f"train/test split and the labelled subsets always use seed {SPLIT_SEED}",
    )
    parser.add_argument(
        "--filters",
        default=DEFAULT_FILTERS,
        metavar="PATH",
        help="where to save the autoencoder's learned filters as a PNG when matplotlib is "
        f"installed (default: {DEFAULT_FILTERS} in the current directory)",
    )
    parser.add_argument(
        "--no-filters", action="store_true", help="do not save the filter image"
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


def _parse(argv):
    """Parse and check every argument before anything is fitted."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.no_filters:
        path = Path(args.filters)
        if path.suffix.lower() != ".png":
            parser.error(f"--filters must name a .png file, got {args.filters!r}")
        if not path.parent.is_dir():
            parser.error(
                f"--filters: the directory {str(path.parent)!r} does not exist; create it "
                "or choose another path (--no-filters saves nothing)"
            )
        if path.is_dir():
            parser.error(f"--filters: {args.filters!r} is a directory, not a file name")
        try:  # a link is written through: the file checked (and removed) is its target
            target = path.resolve() if path.is_symlink() else path
            existed = target.exists()
            with open(target, "ab"):  # can it be written? (asked now, not after the fits)
                pass
        except (OSError, RuntimeError) as exc:  # RuntimeError: a loop of links
            parser.error(
                f"--filters: {args.filters!r} cannot be written "
                f"({getattr(exc, 'strerror', None) or exc}); choose another path "
                "(--no-filters saves nothing)"
            )
        if not existed:
            target.unlink(missing_ok=True)
    return args


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


def _fit_timed(model, X):
    """Fit ``model`` on ``X`` (no labels); return the fit time and the ConvergenceWarnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        start = time.perf_counter()
        model.fit(X)
        seconds = time.perf_counter() - start
    not_converged = []
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            not_converged.append(str(w.message))
        else:  # not ours to swallow
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return seconds, not_converged


def _labelled_subsets(y, per_class):
    """``N_DRAWS`` random choices of ``per_class`` indices of each class (seeded)."""
    rng = np.random.RandomState(SPLIT_SEED)
    return [
        np.concatenate(
            [rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in np.unique(y)]
        )
        for _ in range(N_DRAWS)
    ]


def _accuracy(F_train, y_train, F_test, y_test):
    """Held-out accuracy of LogisticRegression, C by 3-fold CV on the training rows."""
    search = GridSearchCV(
        LogisticRegression(max_iter=LR_MAX_ITER), {"C": list(C_GRID)}, cv=3, n_jobs=1
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # it converges: fail loudly if not
        search.fit(F_train, y_train)
    return search.score(F_test, y_test)


def _save_filters(autoencoder, path):
    """Draw the rows of ``components_`` as 8x8 tiles into ``path``; None without matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return None
    from skae.inspection import plot_filters

    figure = Figure(figsize=(6, 6 * 0.9), layout="constrained")
    plot_filters(
        autoencoder,
        (8, 8),
        ax=figure.add_subplot(),
        title=f"{autoencoder.n_hidden} filters learned from digits without labels "
        "(rows of components_)",
    )
    figure.savefig(path, dpi=100)
    return path


def main(argv=None):
    """Run the demonstration; ``argv`` defaults to ``sys.argv[1:]``. Returns the exit code."""
    args = _parse(argv)

    def say(message=""):
        if not args.quiet:
            print(message, flush=True)

    X, y = load_digits(return_X_y=True)
    X = X / 16.0  # pixel intensities 0..16 -> [0, 1], the range the defaults are made for
    train, test = train_test_split(
        np.arange(len(y)), test_size=TEST_SIZE, stratify=y, random_state=SPLIT_SEED
    )
    k = args.labels_per_class
    say(
        f"skae {__version__}: digits, {X.shape[1]} pixels; features learned from all "
        f"{len(X)} images without labels,\nthen LogisticRegression trained on {k} labelled "
        f"images per class ({N_DRAWS} draws) or on all {len(train)}, scored on "
        f"{len(test)} held-out images"
    )

    autoencoder = SparseAutoencoder(
        n_hidden=args.n_hidden,
        max_iter=args.max_iter,
        random_state=args.random_state,
        verbose=0 if args.quiet else 2,
    )
    rbm = BernoulliRBM(
        n_components=args.n_hidden, learning_rate=0.06, n_iter=20, random_state=args.random_state
    )
    with _single_threaded_blas():
        say(f"[1/3] SparseAutoencoder(n_hidden={args.n_hidden}, max_iter={args.max_iter}) ...")
        progress = (
            nullcontext()
            if args.verbose or args.quiet
            else redirect_stdout(_EveryNthIteration(sys.stdout, PROGRESS_EVERY))
        )
        with progress:
            ae_seconds, ae_warnings = _fit_timed(autoencoder, X)
        say(
            f"      done in {ae_seconds:.1f} s ({autoencoder.n_iter_} L-BFGS iterations, "
            f"final loss {autoencoder.loss_:.4f})"
        )
        say(f"[2/3] BernoulliRBM(n_components={args.n_hidden}, n_iter=20) ...")
        rbm_seconds, _ = _fit_timed(rbm, X)
        say(f"      done in {rbm_seconds:.1f} s")

        say("[3/3] LogisticRegression on each set of features ...")
        subsets = _labelled_subsets(y[train], k)
        features = [
            ("raw pixels", X, 0.0),
            ("BernoulliRBM", rbm.transform(X), rbm_seconds),
            ("SparseAutoencoder", autoencoder.transform(X), ae_seconds),
        ]
        rows = []
        for name, F, seconds in features:
            few = np.mean(
                [
                    _accuracy(F[train][s], y[train][s], F[test], y[test])
                    for s in subsets
                ]
            )
            rows.append((name, few, _accuracy(F[train], y[train], F[test], y[test]), seconds))

    few_title = f"{k} labels/class"
    all_title = f"all {len(train)} labels"
    width = max(len(row[0]) for row in rows)
    print()
    print(f"held-out accuracy ({len(test)} images)")
    print(f"{'features':<{width}}  {few_title:>15}  {all_title:>15}  {'fit seconds':>11}")
    print(f"{'-' * width}  {'-' * 15}  {'-' * 15}  {'-' * 11}")
    for name, few, every, seconds in rows:
        print(f"{name:<{width}}  {few:>15.4f}  {every:>15.4f}  {seconds:>11.1f}")

    raw, ae = rows[0], rows[-1]
    print()
    for column, index in ((few_title, 1), (all_title, 2)):
        gain = ae[index] - raw[index]
        verdict = "beat" if gain > 0 else "do NOT beat"
        print(
            f"With {column}, the learned features {verdict} raw pixels "
            f"({ae[index]:.4f} vs {raw[index]:.4f}, {gain:+.4f})."
        )

    if not args.no_filters:
        saved = _save_filters(autoencoder, args.filters)
        if saved is None:
            print("matplotlib is not installed: no filter image (pip install matplotlib).")
        else:
            print(f"Learned filters saved to {saved}")
    if ae_warnings and not args.quiet:
        print(
            f"\nNote: the autoencoder stopped at --max-iter={args.max_iter} before L-BFGS "
            "converged;\nits features are usable, raise --max-iter for a tighter fit."
        )
    return 0


def _main_piped():
    """:func:`main`, quiet when the reader of the output goes away (``| head``): the rest of
    the output is dropped, as other command-line tools do, with exit code 1."""
    try:
        code = main()
        sys.stdout.flush()  # what is still buffered (with --quiet, the whole table)
        return code
    except BrokenPipeError:
        # Python would report the broken pipe again when it flushes stdout at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(_main_piped())
