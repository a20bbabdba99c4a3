"""Regenerate the persistence fixture of tests/test_persistence.py.

Run ``python tests/data/make_fixture.py`` from the repository root **only** when a change
of the pickled layout of SparseAutoencoder is deliberate and old pickles can no longer be
loaded (and say so in the changelog). For a deliberate change that old pickles survive
(``__setstate__`` fills in what they lack), run it with ``--layout-only``: only the
recorded layout is updated and the stored models of the earlier version stay, so that
loading them stays tested. It writes, next to this script:

- ``sparse_autoencoder_models.pkl``: a dict ``{name: fitted SparseAutoencoder}``;
- ``sparse_autoencoder_expected.npz``: the exact input data and each model's fitted
  parameters, ``transform``, ``inverse_transform`` and ``score`` at generation time;
- ``sparse_autoencoder_layout.json``: the versions used, and each model's pickled state
  layout (attribute names, types, dtypes and shapes) that the tests compare against.
"""

import json
import pickle
import sys
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
MODELS = HERE / "sparse_autoencoder_models.pkl"
EXPECTED = HERE / "sparse_autoencoder_expected.npz"
LAYOUT = HERE / "sparse_autoencoder_layout.json"

# name -> (hyper-parameters, dtype of the training data). The stored models were fitted
# with alpha=3e-3 and beta=3, the defaults of the time; they are given here so that a change
# of the defaults does not read as a change of the objective.
CONFIGURATIONS = {
    "sigmoid_float64": (
        dict(n_hidden=5, alpha=3e-3, beta=3.0, max_iter=25, random_state=0), "float64"
    ),
    "tanh_tied_mask_float32": (
        dict(
            n_hidden=4,
            alpha=3e-3,
            beta=3.0,
            activation="tanh",
            tied_weights=True,
            noise="mask",
            noise_level=0.2,
            batch_size=16,
            max_iter=25,
            random_state=1,
        ),
        "float32",
    ),
    "linear_decoder_float64": (
        dict(n_hidden=3, decoder="linear", alpha=3e-3, beta=0.5, max_iter=25, random_state=2),
        "float64",
    ),
}


def make_data():
    """The training data: 40 × 8 in [0, 1], from NumPy's stable legacy generator."""
    return np.random.RandomState(20240501).uniform(size=(40, 8))


def fit(name, X=None):
    """A freshly fitted model of configuration ``name`` (ConvergenceWarning silenced)."""
    from sklearn.exceptions import ConvergenceWarning

    from skae import SparseAutoencoder

    params, dtype = CONFIGURATIONS[name]
    X = make_data() if X is None else X
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return SparseAutoencoder(**params).fit(X.astype(dtype))


def describe_state(state):
    """The layout of a pickled state: ``{attribute: description}``, values left out.

    Arrays are described by dtype and shape, an attribute that is the same object as an
    earlier one (tied weights) as an alias, anything else by its type.
    """
    layout = {}
    seen = {}
    for key in sorted(state):
        value = state[key]
        if isinstance(value, np.ndarray) and id(value) in seen:
            layout[key] = f"alias of {seen[id(value)]}"
            continue
        if isinstance(value, np.ndarray):
            seen[id(value)] = key
            layout[key] = f"ndarray[{value.dtype}]{list(value.shape)}"
        elif isinstance(value, list):
            kinds = sorted({type(v).__name__ for v in value})
            layout[key] = f"list[{'|'.join(kinds)}]"
        else:
            layout[key] = type(value).__name__
    return layout


def update_layout():
    """Record today's pickled layout, keeping the stored models and expected outputs.

    For a deliberate, backward-compatible change of the layout: the stored models stay
    those pickled by the earlier version, so loading an old pickle stays tested.
    """
    metadata = json.loads(LAYOUT.read_text())
    metadata["layout"] = {
        name: describe_state(fit(name).__getstate__()) for name in CONFIGURATIONS
    }
    LAYOUT.write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    print(f"updated the layout in {LAYOUT.name}")


def main():
    import sklearn

    import skae

    X = make_data()
    models = {name: fit(name, X) for name in CONFIGURATIONS}
    arrays = {"X": X}
    for name, model in models.items():
        Xd = X.astype(CONFIGURATIONS[name][1])
        H = model.transform(Xd)
        arrays[f"{name}.transform"] = H
        arrays[f"{name}.inverse_transform"] = model.inverse_transform(H)
        arrays[f"{name}.score"] = np.array(model.score(Xd))
        for attribute in (
            "components_",
            "intercept_hidden_",
            "decoder_components_",
            "intercept_visible_",
        ):
            arrays[f"{name}.{attribute}"] = getattr(model, attribute)
    with open(MODELS, "wb") as f:
        pickle.dump(models, f, protocol=4)
    np.savez(EXPECTED, **arrays)
    metadata = {
        "skae": skae.__version__,
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "layout": {name: describe_state(m.__getstate__()) for name, m in models.items()},
    }
    LAYOUT.write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    print(f"wrote {MODELS.name}, {EXPECTED.name}, {LAYOUT.name}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--layout-only"]:
        update_layout()
    else:
        main()
