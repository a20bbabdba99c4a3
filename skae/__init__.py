"""skae: sparse autoencoders for scikit-learn, trained with NumPy and L-BFGS."""

from . import datasets, exceptions, inspection, preprocessing
from ._gradient_check import check_gradient
from ._sparse_autoencoder import SparseAutoencoder
from ._stacked import StackedAutoencoder, StackedAutoencoderClassifier
from ._version import __version__
from .preprocessing import ZCAWhitening

__all__ = [
    "SparseAutoencoder",
    "StackedAutoencoder",
    "StackedAutoencoderClassifier",
    "ZCAWhitening",
    "check_gradient",
    "datasets",
    "exceptions",
    "inspection",
    "preprocessing",
    "__version__",
]
