"""
Denoising autoencoder: reconstructing corrupted digits
======================================================

A denoising autoencoder is trained to reconstruct the *clean* input from a *corrupted* copy of
it. Here the corruption is masking noise: each pixel is set to 0 with probability 0.3. As in the
deeplearning.net denoising autoencoder tutorial, both autoencoders use the cross-entropy loss
and tied weights (the decoder reuses the encoder's weights); they keep skae's default sparsity
penalty. We train a plain autoencoder and a denoising one (``noise="mask"``) on the same digits,
corrupt held-out digits the same way, and measure how well each reconstructs the clean images
from the corrupted ones.

With full-batch L-BFGS, the corruption of the training set is drawn once per fit from
``random_state`` (see the user guide); ``transform`` never corrupts.
"""

# %%
# Data and models
# ---------------
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from skae import SparseAutoencoder

X, _ = load_digits(return_X_y=True)
X = X / 16.0  # pixel intensities in [0, 1]
X_train, X_test = train_test_split(X, test_size=0.25, random_state=0)

noise_level = 0.3
common = dict(n_hidden=100, loss="cross_entropy", tied_weights=True, max_iter=200, random_state=0)
plain = SparseAutoencoder(**common)
denoising = SparseAutoencoder(noise="mask", noise_level=noise_level, **common)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    plain.fit(X_train)
    denoising.fit(X_train)

# %%
# Reconstructing corrupted held-out digits
# ----------------------------------------
# The held-out digits are masked with their own random numbers (not those of the fit). The error
# is the mean over images of the squared error summed over the 64 pixels, measured against the
# *clean* image.
rng = np.random.default_rng(42)
X_corrupted = X_test * (rng.random(X_test.shape) >= noise_level)


def reconstruction_error(model, X_in, X_clean):
    X_hat = model.inverse_transform(model.transform(X_in))
    return np.mean(np.sum((X_hat - X_clean) ** 2, axis=1))


print(f"{'model':<12} {'clean input':>12} {'corrupted input':>16}")
for name, model in [("plain", plain), ("denoising", denoising)]:
    clean_err = reconstruction_error(model, X_test, X_test)
    corrupt_err = reconstruction_error(model, X_corrupted, X_test)
    print(f"{name:<12} {clean_err:>12.3f} {corrupt_err:>16.3f}")
print(
    f"(doing nothing, i.e. returning the corrupted input: "
    f"{np.mean(np.sum((X_corrupted - X_test) ** 2, axis=1)):.3f})"
)

# %%
# The denoising autoencoder had to learn to fill in missing pixels from the others, so it
# reconstructs corrupted digits much better; the plain one, which only ever saw clean digits,
# tends to reproduce the holes. The price is a less exact reconstruction of clean digits: the
# denoising autoencoder learned what digits look like rather than to copy its input.
#
# Some examples: clean digit, corrupted digit, and the two reconstructions of the corrupted one.
import matplotlib.pyplot as plt

n_show = 8
rows = [
    ("clean", X_test[:n_show]),
    ("corrupted", X_corrupted[:n_show]),
    ("plain", plain.inverse_transform(plain.transform(X_corrupted[:n_show]))),
    ("denoising", denoising.inverse_transform(denoising.transform(X_corrupted[:n_show]))),
]
fig, axes = plt.subplots(len(rows), n_show, figsize=(1.1 * n_show, 1.25 * len(rows)))
for (label, images), row_axes in zip(rows, axes):
    for image, ax in zip(images, row_axes):
        ax.imshow(image.reshape(8, 8), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
    row_axes[0].set_ylabel(label)
fig.suptitle(f"Masking noise ({noise_level:.0%} of pixels set to 0)")
fig.tight_layout()
plt.show()
