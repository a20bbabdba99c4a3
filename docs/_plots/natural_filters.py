"""The filters of the inspection page's snippet: 25 units fitted on 10 000 patches of natural
photographs (drawn when the documentation is built, in a few seconds)."""

import warnings

import matplotlib.pyplot as plt
from sklearn.exceptions import ConvergenceWarning

from skae import SparseAutoencoder
from skae.datasets import load_natural_patches
from skae.inspection import plot_filters

X = load_natural_patches(patch_size=8, n_patches=10000, random_state=0)
ae = SparseAutoencoder(25, rho=0.01, beta=3.0, alpha=1e-4, max_iter=400, random_state=0)
with warnings.catch_warnings():
    # 400 iterations, as in the UFLDL exercise: L-BFGS has not converged, the edges are there.
    warnings.simplefilter("ignore", ConvergenceWarning)
    ae.fit(X)
fig, ax = plt.subplots(figsize=(3.2, 3.4), layout="constrained")
plot_filters(ae, (8, 8), ax=ax, title="25 filters (rows of components_)")
