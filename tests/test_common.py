"""scikit-learn's estimator checks, with no expected failures, for several configurations."""

import pytest
from sklearn.utils.estimator_checks import (
    check_dataframe_column_names_consistency,
    check_param_validation,
    check_set_output_transform_pandas,
    check_transformer_get_feature_names_out,
    check_transformer_get_feature_names_out_pandas,
    parametrize_with_checks,
)

from skae import SparseAutoencoder

pytest.importorskip("pandas", reason="the pandas output checks need pandas")

# The checks are about the API, not convergence: their fits stop early on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

# Small networks and few iterations: the checks are about the API, not about convergence.
CONFIGURATIONS = [
    SparseAutoencoder(n_hidden=5, max_iter=20),
    SparseAutoencoder(n_hidden=4, max_iter=20, activation="tanh", tied_weights=True),
    SparseAutoencoder(n_hidden=4, max_iter=20, decoder="linear", noise="mask", noise_level=0.2),
    SparseAutoencoder(n_hidden=3, max_iter=20, noise="gaussian", noise_level=0.1, batch_size=7),
    SparseAutoencoder(n_hidden=3, max_iter=20, noise="gaussian", noise_level=0.1),
    SparseAutoencoder(n_hidden=6, max_iter=20, batch_size=4, beta=0.0, alpha=0.0),
]


@parametrize_with_checks(CONFIGURATIONS)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


EXTRA_CHECKS = [
    check_param_validation,
    check_set_output_transform_pandas,
    check_transformer_get_feature_names_out,
    check_transformer_get_feature_names_out_pandas,
    check_dataframe_column_names_consistency,
]


# check_set_output_transform_pandas mixes frames and arrays on purpose; scikit-learn's own
# feature-name warnings about it are expected there.
@pytest.mark.filterwarnings("ignore:X (does not have valid|has) feature names:UserWarning")
@pytest.mark.parametrize("check", EXTRA_CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("estimator", CONFIGURATIONS[:2], ids=["default", "tanh-tied"])
def test_checks_outside_the_default_set(estimator, check):
    check(type(estimator).__name__, estimator)
