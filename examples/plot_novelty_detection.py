"""
Novelty detection with per-sample reconstruction scores
=======================================================

An autoencoder trained on one kind of data reconstructs that kind well and other data
worse. :meth:`~skae.SparseAutoencoder.score_samples` returns minus the reconstruction loss
of each row, in scikit-learn's sign convention (higher is more typical, as for
:class:`~sklearn.ensemble.IsolationForest` and :class:`~sklearn.svm.OneClassSVM`), so
``-score_samples(X)`` is a novelty score.

The task: learn what the digits 0-4 of scikit-learn's 8x8 digits look like, from 70% of
them; then tell the held-out 30% of the digits 0-4 (normal) from all the digits 5-9
(novel, never seen in training). No labels are used for training; the ROC AUC of each
detector's novelty score on the test rows measures how well it ranks novel above normal
(1 is perfect, 0.5 is chance). Three random splits of the digits 0-4 (and three seeds for
the models) give the spread.
"""

# %%
# Data: three splits
# ------------------
import time
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.svm import OneClassSVM

from skae import SparseAutoencoder

X, y = load_digits(return_X_y=True)
X = X / 16.0  # pixel intensities in [0, 1]
normal = y < 5
seeds = [0, 1, 2]
splits = []
for seed in seeds:
    X_train, X_held_out = train_test_split(X[normal], test_size=0.3, random_state=seed)
    X_test = np.vstack([X_held_out, X[~normal]])
    is_novel = np.r_[np.zeros(len(X_held_out)), np.ones(np.sum(~normal))]
    splits.append((X_train, X_test, is_novel))
print(
    f"train: {len(X_train)} digits 0-4; test: {len(X_held_out)} held-out digits 0-4 "
    f"and {np.sum(~normal)} digits 5-9"
)

# %%
# The detectors
# -------------
# Each entry fits a detector on the training rows and returns a function giving the
# novelty score of rows (higher is more novel). The autoencoders use squared loss and
# otherwise skae's defaults, with 16 hidden units (a bottleneck, four times narrower than
# the 64 pixels) and with the default 200 (wider than the input; the sparsity penalty keeps
# it from copying). PCA's reconstruction error uses as many components as the narrow
# autoencoder has hidden units. ``OneClassSVM`` uses scikit-learn's default
# ``gamma="scale"``; a second row uses ``gamma=1``, which was picked by looking at these
# test labels (see the reading below).


def autoencoder(**params):
    def fit(X_train, seed):
        ae = SparseAutoencoder(random_state=seed, **params).fit(X_train)
        return lambda X: -ae.score_samples(X)

    return fit


def pca_error(X_train, seed):
    pca = PCA(n_components=16, random_state=seed).fit(X_train)
    return lambda X: np.sum((pca.inverse_transform(pca.transform(X)) - X) ** 2, axis=1)


def isolation_forest(X_train, seed):
    forest = IsolationForest(random_state=seed).fit(X_train)
    return lambda X: -forest.score_samples(X)


def one_class_svm(gamma):
    def fit(X_train, seed):
        svm = OneClassSVM(gamma=gamma).fit(X_train)
        return lambda X: -svm.score_samples(X)

    return fit


detectors = {
    "SparseAutoencoder, 16 units": autoencoder(n_hidden=16),
    "SparseAutoencoder, 200 units": autoencoder(n_hidden=200),
    "SparseAutoencoder, 16 units, cross-entropy": autoencoder(n_hidden=16, loss="cross_entropy"),
    "PCA error, 16 components": pca_error,
    "IsolationForest": isolation_forest,
    "OneClassSVM, gamma='scale'": one_class_svm("scale"),
    "OneClassSVM, gamma=1 (tuned on test)": one_class_svm(1.0),
}

# %%
# ROC AUC, normal against novel
# -----------------------------
aucs = {name: [] for name in detectors}
times = {name: [] for name in detectors}
novelty_scores = {}  # split 0, for the figures
for (X_train, X_test, is_novel), seed in zip(splits, seeds):
    for name, fit in detectors.items():
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # stops at max_iter
            novelty = fit(X_train, seed)
        times[name].append(time.perf_counter() - start)
        scores = novelty(X_test)
        aucs[name].append(roc_auc_score(is_novel, scores))
        if seed == seeds[0]:
            novelty_scores[name] = scores

print(f"{'detector':<44} {'ROC AUC mean ± sd':>17} {'min-max':>12} {'fit (s)':>8}")
for name in detectors:
    a = np.array(aucs[name])
    print(
        f"{name:<44} {a.mean():>10.3f} ± {a.std():.3f} {a.min():>6.3f}-{a.max():.3f} "
        f"{np.mean(times[name]):>8.2f}"
    )

# %%
# OneClassSVM's kernel width, on the first split: ``gamma="scale"`` is
# ``1 / (n_features * X.var())``.
X_train, X_test, is_novel = splits[0]
print(f"gamma='scale' is {1 / (X_train.shape[1] * X_train.var()):.3f} here")
for gamma in [0.01, 0.03, 0.1, 0.3, 1.0, 3.0]:
    svm = OneClassSVM(gamma=gamma).fit(X_train)
    print(f"gamma={gamma:<5} AUC {roc_auc_score(is_novel, -svm.score_samples(X_test)):.3f}")

# %%
# The reading
# -----------
# On this run (the numbers above; another machine's may differ in the third decimal), the
# autoencoders with squared loss rank novel digits best among the detectors whose settings
# were fixed in advance: ROC AUC 0.979 with the default 200 units and 0.967 with 16,
# against 0.955 for PCA's reconstruction error with the same 16 components, 0.79 for
# IsolationForest and 0.65 for OneClassSVM with ``gamma="scale"``. The spread between the
# three splits (a standard deviation of 0.002-0.003 for the autoencoders and PCA) is below
# each of these gaps. The non-linear code buys one to two and a half points of AUC over
# PCA's linear one; the 200-unit autoencoder takes a few seconds to fit (the last column),
# the 16-unit ones about a second, the other detectors a fraction of a second.
#
# IsolationForest isolates rows by splits on single pixels, and a digit is novel in its
# shape (which pixels go together), not in the range of any one pixel. OneClassSVM's
# result hangs on its kernel width: ``gamma="scale"`` (0.109 here) makes the RBF kernel so
# wide that the boundary barely follows the digits (AUC 0.55-0.65 for gamma from 0.01 to
# 0.1), while a narrow kernel ranks best of all: 0.989 with ``gamma=1`` over the three
# splits, 0.996 with ``gamma=3`` on the first. With so narrow a kernel the one-class SVM
# scores a row by its closeness to its nearest training digits, and with 630 training
# digits of 64 pixels that is a very good novelty score. But the width was found by trying
# widths against the very test labels a novelty detector does not have; with only normal
# data to tune on there is no such check, and the default is far off. So the honest
# summary is: on these small images a well-chosen kernel method beats the autoencoder, the
# autoencoder comes close at its default settings (and changes little between 16 and 200
# units), and it beats PCA, IsolationForest and the default one-class SVM.
#
# The cross-entropy loss ranks worse (0.899 over the three splits). Its value for a row is
# not zero at a perfect reconstruction: it is the row's own entropy ``Σ_k H(x_k)`` (large
# for grey pixels, 0 for black and white ones) plus the mismatch. As a novelty score the
# first part is noise, unrelated to how typical the digit is. Subtracting it
# (``score_samples`` plus the row's entropy) leaves the mismatch, which ranks as well as the
# squared loss; on the first split (the printed lines below) it lifts the AUC from 0.900 to
# 0.972, as high as the squared loss with 16 units reaches on any split:
from scipy.special import xlogy

entropy = -np.sum(xlogy(X_test, X_test) + xlogy(1 - X_test, 1 - X_test), axis=1)
cross_entropy = novelty_scores["SparseAutoencoder, 16 units, cross-entropy"]
print(f"cross-entropy:           AUC {roc_auc_score(is_novel, cross_entropy):.3f}")
print(f"cross-entropy − entropy: AUC {roc_auc_score(is_novel, cross_entropy - entropy):.3f}")

# %%
# Scores of normal and novel digits
# ---------------------------------
# The novelty scores of the 200-unit autoencoder on the first split: the held-out digits
# 0-4 concentrate at small reconstruction errors, the digits 5-9 spread to large ones, and
# the overlap is where the ranking errs.
import matplotlib.pyplot as plt

scores = novelty_scores["SparseAutoencoder, 200 units"]
fig, ax = plt.subplots(figsize=(7, 3.5))
bins = np.linspace(0, np.quantile(scores, 0.99), 40)
ax.hist(scores[is_novel == 0], bins=bins, alpha=0.6, label="held-out digits 0-4 (normal)")
ax.hist(scores[is_novel == 1], bins=bins, alpha=0.6, label="digits 5-9 (novel)")
ax.set_xlabel("-score_samples: reconstruction loss ½‖x̂ − x‖²")
ax.set_ylabel("test digits")
ax.legend()
fig.tight_layout()

# %%
# Where it errs: the novel digits it finds most typical (mostly 8s, whose strokes the 0s
# and 3s share), and the normal digits it finds least typical (unusual strokes of 0-4).
# Above each image: its class and its reconstruction loss.
n_show = 8
order_novel = np.flatnonzero(is_novel == 1)[np.argsort(scores[is_novel == 1])[:n_show]]
order_normal = np.flatnonzero(is_novel == 0)[np.argsort(scores[is_novel == 0])[-n_show:]]
test_labels = np.r_[
    train_test_split(y[normal], test_size=0.3, random_state=seeds[0])[1], y[~normal]
]
fig, axes = plt.subplots(2, n_show, figsize=(1.2 * n_show, 3.2))
for row_axes, rows, title in [
    (axes[0], order_novel, "novel, most typical"),
    (axes[1], order_normal, "normal, least typical"),
]:
    for ax, i in zip(row_axes, rows):
        ax.imshow(X_test[i].reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(f"{test_labels[i]}: {scores[i]:.2f}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    row_axes[0].set_ylabel(title, fontsize=9)
fig.tight_layout()
plt.show()
