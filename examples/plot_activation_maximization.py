"""
Activation maximisation and code inversion in a stacked autoencoder
===================================================================

For a first-layer unit, the input of norm 1 that excites it most is its normalised weight
vector. Deeper units have no such formula: :func:`~skae.inspection.activation_maximization`
finds the input by gradient ascent on the unit's activation, backpropagated through the
encoders to the input (Erhan et al., 2009). :func:`~skae.inspection.invert_code` goes the
other way: given the code of a digit at some layer, it searches for an input with that code
(Mahendran and Vedaldi, 2015), which shows what the code still knows about the digit.

Both work on any layer of :class:`~skae.SparseAutoencoder`,
:class:`~skae.StackedAutoencoder` and :class:`~skae.StackedAutoencoderClassifier`,
including the classifier's class units.
"""

# %%
# A stacked autoencoder classifier on digits
# ------------------------------------------
# Two sparse autoencoders (64-49-25) pretrained greedily on scikit-learn's 8×8 digits, a
# softmax on top, then the whole network fine-tuned. The second layer gets a weaker sparsity
# penalty and weight decay than the first (per-layer values).
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from skae import StackedAutoencoderClassifier

X, y = load_digits(return_X_y=True)
X = X / 16.0
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
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
    clf.fit(X_train, y_train)
print(f"held-out accuracy: {clf.score(X_test, y_test):.3f}")

# %%
# The input that excites each unit most
# -------------------------------------
# Inputs are constrained to the ball ``‖x‖ ≤ r`` with ``r`` the median norm of the training
# digits. For the first layer the ascent is checked against the closed form
# ``W1_i / ‖W1_i‖`` (same direction at any radius).
from skae.inspection import activation_maximization, max_activation_inputs, plot_filters

radius = float(np.median(np.linalg.norm(X_train, axis=1)))
maxima = {
    layer: activation_maximization(clf, layer=layer, norm=radius, random_state=0)
    for layer in (1, 2, "output")
}
inputs = maxima[1][0]
closed = max_activation_inputs(clf)
cosines = np.sum(inputs * closed, axis=1) / np.linalg.norm(inputs, axis=1)
print(f"layer 1: cosine between ascent and closed form >= {cosines.min():.4f}")
for layer, (inputs, act) in maxima.items():
    print(f"layer {layer!s:>6}: {len(inputs)} units, activation reached: min {act.min():.3f}")

fig, axes = plt.subplots(1, 2, figsize=(10, 5.2))
plot_filters(maxima[1][0], (8, 8), ax=axes[0], title="layer 1 (49 units)")
plot_filters(maxima[2][0], (8, 8), ax=axes[1], title="layer 2 (25 units)")
fig.suptitle(f"Inputs of norm ≤ {radius:.2f} that maximise each hidden unit")
fig.tight_layout()

# %%
# Each tile is drawn with mid grey at 0, white positive and black negative. On 8×8 digits
# the first-layer units look for a few bright pixels next to dark ones, a short piece of
# stroke with its border, spread across the image; second-layer tiles are busier,
# combinations of several first-layer patterns. The images are small and noisy: activation
# maximisation shows what drives a unit, not a natural-looking digit.
#
# For the class units, the maximising input (top) is set against the training digit that
# the network finds most probable for that class, scaled to the same norm (bottom).
proba_best, best = [], []
scaled = X_train * (radius / np.linalg.norm(X_train, axis=1, keepdims=True))
proba = clf.predict_proba(scaled)
for k in range(10):
    i = int(np.argmax(proba[:, k]))
    best.append(scaled[i])
    proba_best.append(proba[i, k])
inputs, act = maxima["output"]
fig, axes = plt.subplots(2, 10, figsize=(11, 2.8))
for k in range(10):
    for ax, image, p in [(axes[0, k], inputs[k], act[k]), (axes[1, k], best[k], proba_best[k])]:
        ax.imshow(image.reshape(8, 8), cmap="gray", interpolation="nearest")
        ax.set_title(f"p({k})={p:.3f}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
axes[0, 0].set_ylabel("maximised", fontsize=8)
axes[1, 0].set_ylabel("best digit", fontsize=8)
fig.tight_layout()

# %%
# Both reach the same probability to three decimals: the class units are saturated and the
# most convincing real digits are already at the ceiling. The maximised inputs are ahead only
# by a hair (the log-probability gains printed below are between about 1e-7 and 1e-4).
# Some carry strokes of their digit; most look like noise to us: without a prior on what
# inputs look like, activation maximisation finds what the network responds to, which is
# not the same as what a digit looks like.
print("log-probability gain of the maximised input over the best digit, per class:")
print(", ".join(f"{gain:.1e}" for gain in np.log(act) - np.log(proba_best)))

# %%
# Code inversion: what each layer's code still knows
# --------------------------------------------------
# For six held-out digits we take the code at layer 1, layer 2 and the class probabilities,
# and search for inputs in [0, 1] with the same code, starting from a black image, with a
# small penalty ``1e-4 ‖x‖²`` (of the many inputs that share a code, it prefers dim ones).
# ``code error`` is the distance between the achieved and the target code (codes lie in
# [0, 1]; there are 49, 25 and 10 numbers per layer). We also ask the classifier what it
# makes of each inversion.
from skae.inspection import invert_code

digits = X_test[:6]
rows = [("held-out digits", digits)]
for layer in (1, 2, "output"):
    inputs, error = invert_code(
        clf,
        digits,
        layer=layer,
        reg=1e-4,
        bounds=(0, 1),
    )
    same = np.mean(clf.predict(inputs) == clf.predict(digits))
    print(
        f"layer {layer!s:>6}: code error median {np.median(error):.4f}, max "
        f"{error.max():.4f}; classified like the digit: {same:.0%}"
    )
    rows.append((f"from layer {layer}", inputs))

fig, axes = plt.subplots(len(rows), len(digits), figsize=(1.3 * len(digits), 1.4 * len(rows)))
for (label, images), row_axes in zip(rows, axes):
    for image, ax in zip(images, row_axes):
        ax.imshow(image.reshape(8, 8), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
    row_axes[0].set_ylabel(label, fontsize=8)
fig.suptitle("Inputs whose code matches that of each digit")
fig.tight_layout()
plt.show()

# %%
# All inversions match their target code closely and are classified like the digit. The
# layer-1 code (49 numbers for 64 pixels) keeps the digit's shape: its inversion is a blurred,
# darker copy of the digit. The layer-2 code (25 numbers) keeps much less: its inversions
# are faint, with only traces of the strokes (the 8, the loops of the sixes). The class
# probabilities keep only the class: their inversions are dim images that barely resemble
# the digit, yet the network is as sure of their class as of the digit's.
