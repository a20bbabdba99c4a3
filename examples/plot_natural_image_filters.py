"""
Edge detectors from natural images (the UFLDL exercise)
=======================================================

The sparse autoencoder exercise of the Stanford UFLDL notes trains a 64-25-64 sparse
autoencoder (``rho=0.01``, ``beta=3``, weight decay ``alpha=1e-4``, 400 L-BFGS iterations) on
10 000 patches of 8×8 pixels cut from whitened photographs of natural scenes, and shows that
its hidden units become *edge detectors*: each responds to an edge at one position and
orientation.

:func:`skae.datasets.load_natural_patches` prepares such patches from the photographs that
ship with scikit-learn and scikit-image (nothing is downloaded): it whitens each grey photograph
with Olshausen and Field's filter, cuts random patches, removes each patch's mean, clips at ±3
standard deviations and squashes the values into [0.1, 0.9], as the exercise's
``sampleIMAGES`` does.
"""

# %%
# The patches
# -----------
# Left: patches of the grey photographs as they are. Right: the same positions after
# whitening and squashing. Whitening removes the slow variations of brightness that dominate
# raw images and leaves the edges and textures. (:func:`~skae.inspection.plot_filters` draws
# each tile scaled by its own largest absolute value, mid grey being zero, so the raw tiles
# are centred first.)
import matplotlib.pyplot as plt

from skae.datasets import load_natural_patches
from skae.inspection import plot_filters

X = load_natural_patches(patch_size=8, n_patches=10000, random_state=0)
raw = load_natural_patches(8, 10000, whiten=False, normalize="center", random_state=0)
print(f"{X.shape[0]} patches of {X.shape[1]} pixels, values in [{X.min():.2f}, {X.max():.2f}]")

fig, axes = plt.subplots(1, 2, figsize=(9, 4.5))
plot_filters(raw[:100], (8, 8), ax=axes[0], title="raw (mean removed)")
plot_filters(X[:100] - 0.5, (8, 8), ax=axes[1], title="whitened, as in the exercise")
fig.tight_layout()

# %%
# Training with the exercise's settings
# -------------------------------------
# The decoder is a sigmoid (the data lie in [0.1, 0.9]); ``tol`` is set very small so that
# L-BFGS runs the exercise's 400 iterations.
import warnings

from sklearn.exceptions import ConvergenceWarning

from skae import SparseAutoencoder

ae = SparseAutoencoder(
    n_hidden=25,
    rho=0.01,
    beta=3.0,
    alpha=1e-4,
    activation="sigmoid",
    decoder="sigmoid",
    max_iter=400,
    tol=1e-12,
    random_state=0,
)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)  # it stops at max_iter on purpose
    ae.fit(X)
H = ae.transform(X)
print(f"{ae.n_iter_} iterations, final objective {ae.loss_:.4f}")
print(f"mean activation of the hidden units: {H.mean():.3f} (target rho = 0.01)")

# %%
# What each hidden unit looks for
# -------------------------------
# The input of norm 1 that activates hidden unit ``i`` most is ``W1_i / ‖W1_i‖``
# (:func:`~skae.inspection.max_activation_inputs`); :func:`~skae.inspection.plot_filters`
# draws the 25 of them, one tile per unit. Most tiles are light and dark bars side by side, an
# edge, each at its own position and width, some filling the patch and some confined to part
# of it. Vertical edges are the most common in this run; there are horizontal and diagonal
# ones too. The test suite checks this with numbers instead of eyes: from each filter's
# power spectrum it measures how much of the power lies along one orientation, and how
# concentrated the filter's energy is in space, and compares both with principal components
# of the same patches and with random filters (``tests/test_datasets.py``).
fig, ax = plt.subplots(figsize=(5, 5.3))
plot_filters(ae, (8, 8), ax=ax, title="25 hidden units: input of norm 1 that excites each most")
fig.tight_layout()

# %%
# How the objective fell during training
# --------------------------------------
from skae.inspection import plot_loss_curve

ax = plot_loss_curve(ae)
ax.set_title("Sparse autoencoder on whitened natural patches")
plt.show()
