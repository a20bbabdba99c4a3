"""
Multifaceted visualisation of a class unit
==========================================

A unit of a network can respond to several different kinds of input: the class unit for
"1" fires for a straight stroke, a slanted one, a 1 with a flag at the top or a base at the
bottom. Activation maximisation from a random start shows at most one of these facets.
:func:`~skae.inspection.multifaceted_visualization` (Nguyen, Yosinski and Clune, 2016) finds
several: it takes the inputs that excite the unit most, embeds their codes in 2-D with
PCA and t-SNE, clusters the embedding with k-means, and starts activation maximisation from
the mean of the 15 inputs nearest each cluster centre.
"""

# %%
# A stacked autoencoder classifier on digits
# ------------------------------------------
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

from skae import StackedAutoencoderClassifier

X, y = load_digits(return_X_y=True)
X = X / 16.0
clf = StackedAutoencoderClassifier(
    (49, 25),
    rho=0.1,
    beta=(3.0, 0.5),
    alpha=(3e-3, 1e-4),
    max_iter=200,
    fine_tune="all",
    fine_tune_max_iter=200,
    random_state=0,
)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    clf.fit(X, y)

# %%
# Facets of the class unit "1"
# ----------------------------
# The 150 digits with the highest probability of being a 1 are clustered by their codes at
# the layer below the class units (the 25 second-layer units). The ascent runs 10 L-BFGS-B
# iterations inside the box [0, 1] from each cluster's mean image, so each facet stays
# near its start.
from skae.inspection import activation_maximization, multifaceted_visualization

unit = 1
result = multifaceted_visualization(
    clf,
    X,
    unit,
    layer="output",
    n_facets=3,
    n_top=150,
    bounds=(0, 1),
    max_iter=10,
    random_state=0,
)
print("labels of the 150 digits used:", np.bincount(y[result.top_indices], minlength=10))
print("digits per facet:", np.bincount(result.labels))
start_proba = clf.predict_proba(result.starts)[:, unit]
for k in range(3):
    print(
        f"facet {k}: p(1) {start_proba[k]:.3f} at the mean image -> "
        f"{result.facet_activations[k]:.3f} after the ascent"
    )

single, p_single = activation_maximization(
    clf, layer="output", units=unit, bounds=(0, 1), random_state=0
)
print(f"plain activation maximisation from a random start: p(1) = {p_single[0]:.3f}")

# %%
# Left: the t-SNE embedding of the 150 digits, coloured by facet, with the 15 digits
# averaged for each facet circled. Right: for each facet, its mean image (top) and the
# result of the ascent (bottom); last column, plain activation maximisation from a random
# start.
fig = plt.figure(figsize=(11, 4.2))
grid = fig.add_gridspec(2, 6, width_ratios=[3.2, 1, 1, 1, 0.3, 1])
ax = fig.add_subplot(grid[:, 0])
colours = plt.cm.tab10(np.arange(3))
for k in range(3):
    members = result.labels == k
    ax.scatter(*result.embedding[members].T, s=12, color=colours[k], label=f"facet {k}")
    circled = result.embedding[result.nearest[k]]
    ax.scatter(*circled.T, s=60, facecolors="none", edgecolors="k", lw=0.6)
ax.set_xticks([])
ax.set_yticks([])
ax.set_title("t-SNE of the codes of the top 150 inputs")
ax.legend(fontsize=8)
for k in range(3):
    for row, (image, label) in enumerate(
        [(result.starts[k], "mean of 15"), (result.facets[k], "after ascent")]
    ):
        ax = fig.add_subplot(grid[row, 1 + k])
        ax.imshow(image.reshape(8, 8), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"facet {k}" if row == 0 else "", color=colours[k])
        if k == 0:
            ax.set_ylabel(label, fontsize=8)
ax = fig.add_subplot(grid[0, 5])
ax.imshow(single[0].reshape(8, 8), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
ax.set_xticks([])
ax.set_yticks([])
ax.set_title("random start", fontsize=9)
fig.tight_layout()
plt.show()

# %%
# All 150 digits are 1s, and t-SNE spreads their codes into elongated groups. The three
# facets are three ways of writing a 1: with a base at the bottom (facet 0), a straight
# vertical bar (facet 1), and a slanted bar with a flag at the top (facet 2). The class
# probability is already about 0.999 at every mean image, so the short ascent changes them
# only a little: a few pixels brighten or darken, and each facet keeps its own shape. The
# ascent from a random start (right) reaches the same probability with an input that looks
# like none of them.
