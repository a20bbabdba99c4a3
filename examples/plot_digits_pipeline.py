"""
Sparse autoencoder features for digit classification
====================================================

A :class:`skae.SparseAutoencoder` learns features from the pixels of scikit-learn's 8x8 digits
without looking at the labels; a logistic regression is then trained on those features. The
autoencoder is one step of a :class:`~sklearn.pipeline.Pipeline`, so its sparsity target ``rho``
and penalty weight ``beta`` are searched with :class:`~sklearn.model_selection.GridSearchCV` like
any other hyper-parameter, and the learned filters are drawn at the end.
"""

# %%
# The pipeline and the search
# ---------------------------
# The defaults of the autoencoder are meant for data in [0, 1], hence the
# :class:`~sklearn.preprocessing.MinMaxScaler`. A bounded ``max_iter`` keeps the example fast;
# L-BFGS may stop before converging (a ``ConvergenceWarning``), the features are good anyway.
import warnings

import pandas as pd
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler

from skae import SparseAutoencoder

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.25, stratify=y, random_state=0
)

pipe = Pipeline(
    [
        ("scale", MinMaxScaler()),
        ("ae", SparseAutoencoder(n_hidden=100, max_iter=100, random_state=0)),
        ("clf", LogisticRegression(max_iter=2000)),
    ]
)
param_grid = {"ae__rho": [0.05, 0.2], "ae__beta": [0.5, 3.0]}
search = GridSearchCV(pipe, param_grid, cv=3, n_jobs=2)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    search.fit(X_train, y_train)

# %%
# Cross-validated accuracy of each setting, best first:
results = pd.DataFrame(search.cv_results_)
table = results[["param_ae__rho", "param_ae__beta", "mean_test_score", "std_test_score"]]
table = table.sort_values("mean_test_score", ascending=False).reset_index(drop=True)
print(table.to_string(float_format=lambda v: f"{v:.4f}"))

# %%
# Held-out accuracy of the best pipeline, refitted on the whole training split, next to the
# same logistic regression on the scaled pixels:
raw = Pipeline([("scale", MinMaxScaler()), ("clf", LogisticRegression(max_iter=2000))])
raw.fit(X_train, y_train)
print(f"best parameters: {search.best_params_}")
print(f"sparse autoencoder + logistic regression: {search.score(X_test, y_test):.4f}")
print(f"raw pixels + logistic regression:         {raw.score(X_test, y_test):.4f}")

# %%
# What the hidden units learned
# -----------------------------
# Row :math:`j` of ``components_`` holds the weights from the 64 pixels to hidden unit
# :math:`j`; the unit-norm input that activates the unit most is that row divided by its norm.
# Reshaped to 8x8, each row is an image of what the unit looks for: on these tiny, coarse
# images, mostly blobs and fragments of strokes at different places. Each tile has its own
# grey scale (black is negative, white positive).
import matplotlib.pyplot as plt
import numpy as np

ae = search.best_estimator_.named_steps["ae"]
W1 = ae.components_
print(
    f"components_: {W1.shape}, mean hidden activation on the test set: "
    f"{search.best_estimator_[:-1].transform(X_test).mean():.3f}"
)

fig, axes = plt.subplots(10, 10, figsize=(7, 7))
for filt, ax in zip(W1, axes.ravel()):
    image = (filt / np.linalg.norm(filt)).reshape(8, 8)
    limit = np.abs(image).max()
    ax.imshow(image, cmap="gray", vmin=-limit, vmax=limit, interpolation="nearest")
    ax.set_axis_off()
fig.suptitle("Learned filters (rows of components_)")
fig.tight_layout()
plt.show()

# %%
# How the loss went down
# ----------------------
# ``loss_curve_`` holds the objective after each L-BFGS iteration.
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(np.arange(1, len(ae.loss_curve_) + 1), ae.loss_curve_)
ax.set_xlabel("L-BFGS iteration")
ax.set_ylabel("objective J")
ax.set_yscale("log")
ax.set_title("loss_curve_ of the best autoencoder")
fig.tight_layout()
plt.show()
