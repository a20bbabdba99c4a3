"""
Data outside [0, 1]: the linear decoder
=======================================

A sigmoid decoder can only output values in (0, 1). That suits pixel intensities scaled with
:class:`~sklearn.preprocessing.MinMaxScaler`, but not standardised or whitened data, which are
centred at zero and can be negative. For those, the UFLDL notes use a *linear decoder*,
:math:`\\hat X = H W_2 + b_2`. With ``decoder="auto"`` (the default),
:class:`skae.SparseAutoencoder` uses a sigmoid decoder when the training data lie in [0, 1]
and a linear one otherwise, and records its choice in the fitted attribute ``decoder_``.
"""

# %%
# The same digits, scaled two ways
# --------------------------------
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from skae import SparseAutoencoder

X, _ = load_digits(return_X_y=True)
X_train, X_test = train_test_split(X, test_size=0.25, random_state=0)

scalers = {"MinMaxScaler": MinMaxScaler(), "StandardScaler": StandardScaler()}
data = {name: (s.fit_transform(X_train), s.transform(X_test)) for name, s in scalers.items()}
for name, (A, _) in data.items():
    print(f"{name:<15} training data in [{A.min():6.2f}, {A.max():6.2f}]")

# %%
# ``decoder="auto"`` picks the decoder from the data
# --------------------------------------------------
# ``score`` is minus the mean reconstruction error per held-out sample (higher is better). On the
# standardised data we also force a sigmoid decoder, to see what the automatic choice avoids.
models = {}
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    for name, decoder in [
        ("MinMaxScaler", "auto"),
        ("StandardScaler", "auto"),
        ("StandardScaler", "sigmoid"),
    ]:
        A_train, A_test = data[name]
        ae = SparseAutoencoder(n_hidden=100, decoder=decoder, max_iter=200, random_state=0)
        ae.fit(A_train)
        models[name, decoder] = ae
        # relative error: divide by the mean squared norm of the test samples
        rel = -ae.score(A_test) / (0.5 * np.mean(np.sum(A_test**2, axis=1)))
        print(
            f"{name:<15} decoder={decoder!r:<10} -> decoder_={ae.decoder_!r:<10} "
            f"score {ae.score(A_test):8.3f} (relative error {rel:.3f})"
        )

# %%
# With a sigmoid decoder on standardised data every negative value is reconstructed as a
# positive number and large values are cut at 1: the error stays high however long it trains.
# The linear decoder reconstructs the whole range. (A few pixels that are almost always blank
# have standardised values far beyond the plotted range.)
import matplotlib.pyplot as plt

A_test = data["StandardScaler"][1]
fig, axes = plt.subplots(1, 2, figsize=(8, 3.8), sharex=True, sharey=True)
for ax, decoder in zip(axes, ["auto", "sigmoid"]):
    ae = models["StandardScaler", decoder]
    A_hat = ae.inverse_transform(ae.transform(A_test))
    ax.plot(A_test.ravel(), A_hat.ravel(), ".", markersize=1, alpha=0.3)
    ax.plot([-4, 8], [-4, 8], color="gray", linewidth=0.8)
    ax.set_xlim(-4, 8)
    ax.set_ylim(-4, 8)
    ax.set_title(f"decoder={decoder!r} (decoder_={ae.decoder_!r})")
    ax.set_xlabel("standardised pixel value")
axes[0].set_ylabel("reconstruction")
fig.tight_layout()
plt.show()
