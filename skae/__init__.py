"""skae: sparse autoencoders for scikit-learn, trained with NumPy and L-BFGS."""

from . import datasets, inspection, preprocessing
from ._base import check_gradient
from ._sparse_autoencoder import SparseAutoencoder
from ._stacked import StackedAutoencoder, StackedAutoencoderClassifier
from .preprocessing import ZCAWhitening

__version__ = "0.1.0"

__all__ = [
    "SparseAutoencoder",
    "StackedAutoencoder",
    "StackedAutoencoderClassifier",
    "ZCAWhitening",
    "check_gradient",
    "datasets",
    "inspection",
    "preprocessing",
    "__version__",
]
