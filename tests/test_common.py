"""scikit-learn's estimator checks, for several configurations of each estimator (all of
skae's estimators, ZCAWhitening included: the checks are in this one place).

Every estimator passes every check, except the deviations that ``expected_failed_checks``
declares, each with its reason (and documented in the user guide's stacking page).
"""

import pytest
from sklearn.utils.estimator_checks import (
    check_classifier_data_not_an_array,
    check_classifiers_classes,
    check_classifiers_one_label,
    check_classifiers_one_label_sample_weights,
    check_classifiers_regression_target,
    check_classifiers_train,
    check_dataframe_column_names_consistency,
    check_param_validation,
    check_requires_y_none,
    check_set_output_transform_pandas,
    check_supervised_y_2d,
    check_supervised_y_no_nan,
    check_transformer_get_feature_names_out,
    check_transformer_get_feature_names_out_pandas,
    parametrize_with_checks,
)

from skae import (
    SparseAutoencoder,
    StackedAutoencoder,
    StackedAutoencoderClassifier,
    ZCAWhitening,
)

# The checks are about the API, not convergence: their fits stop early on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
# scikit-learn's checks fit on small arbitrary data (21 blobs) where an upper layer's codes
# can collapse; that diagnosis is tested in test_stacked.py, the checks are about the API.
no_constant_codes = pytest.mark.filterwarnings("ignore::skae.exceptions.ConstantCodesWarning")
# ... and fit on fewer rows than the mini-batch configurations' mini_batch_size: the size is
# clipped with a warning, as scikit-learn's MLPs clip batch_size (tested in test_stochastic.py)
pytestmark = [
    pytestmark,
    pytest.mark.filterwarnings("ignore:mini_batch_size=.* is larger than:UserWarning"),
]

# Small networks and few iterations: the checks are about the API, not about convergence.
CONFIGURATIONS = [
    SparseAutoencoder(n_hidden=5, max_iter=20),
    SparseAutoencoder(n_hidden=4, max_iter=20, activation="tanh", tied_weights=True),
    SparseAutoencoder(n_hidden=4, max_iter=20, decoder="linear", noise="mask", noise_level=0.2),
    SparseAutoencoder(n_hidden=3, max_iter=20, noise="gaussian", noise_level=0.1, batch_size=7),
    SparseAutoencoder(n_hidden=3, max_iter=20, noise="gaussian", noise_level=0.1),
    SparseAutoencoder(n_hidden=6, max_iter=20, batch_size=4, beta=0.0, alpha=0.0),
    # a mini-batch solver (partial_fit, epochs, early stopping on a held-out score)
    SparseAutoencoder(
        n_hidden=4, solver="adam", max_iter=5, mini_batch_size=8, early_stopping=True
    ),
    StackedAutoencoder((5, 3), max_iter=15),
    StackedAutoencoder(
        (4, 3),
        activation="tanh",
        tied_weights=[True, False],
        noise=["mask", None],
        noise_level=[0.2, 0.0],
        max_iter=15,
    ),
    # The classifiers keep the default unlabelled=-1 (scikit-learn's semi-supervised
    # marker); see expected_failed_checks.
    StackedAutoencoderClassifier((6, 4), max_iter=15, softmax_max_iter=30, fine_tune_max_iter=40),
    StackedAutoencoderClassifier(
        (6,),
        activation="tanh",
        max_iter=15,
        softmax_max_iter=30,
        fine_tune="top",
        fine_tune_max_iter=20,
    ),
    # every row labelled: -1 is a class like any other
    StackedAutoencoderClassifier(
        (5,), max_iter=15, softmax_max_iter=30, fine_tune_max_iter=40, unlabelled=None
    ),
    # the mini-batch solvers in every stage (partial_fit; few epochs, small layers)
    StackedAutoencoder((4, 3), solver="sgd", max_iter=5, mini_batch_size=8),
    StackedAutoencoderClassifier(
        (6,),
        solver="adam",
        learning_rate_init=0.05,
        mini_batch_size=16,
        max_iter=5,
        softmax_max_iter=30,
        fine_tune_max_iter=30,
    ),
    ZCAWhitening(),
    ZCAWhitening(epsilon=1e-3),
]

# With unlabelled=-1 the label -1 marks unlabelled rows, so the binary labels {-1, 1} of
# this check leave one class: the fit raises a ValueError that names unlabelled=None.
MINUS_ONE_IS_UNLABELLED = (
    "with unlabelled=-1 (the default) the label -1 marks unlabelled rows, so the check's "
    "labels {-1, 1} leave a single class; the fit raises a ValueError naming "
    "unlabelled=None, which makes -1 a class"
)


def expected_failed_checks(estimator):
    """The declared deviations from scikit-learn's checks, by check name, with the reason."""
    if isinstance(estimator, StackedAutoencoderClassifier) and estimator.unlabelled == -1:
        return {"check_classifiers_classes": MINUS_ONE_IS_UNLABELLED}
    return {}


@no_constant_codes
@parametrize_with_checks(CONFIGURATIONS, expected_failed_checks=expected_failed_checks)
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
@no_constant_codes
@pytest.mark.parametrize("check", EXTRA_CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize(
    "estimator",
    [
        CONFIGURATIONS[0],
        CONFIGURATIONS[1],
        CONFIGURATIONS[6],
        CONFIGURATIONS[7],
        CONFIGURATIONS[9],
        ZCAWhitening(),
    ],
    ids=["default", "tanh-tied", "adam", "stack", "classifier", "zca"],
)
def test_checks_outside_the_default_set(estimator, check):
    pytest.importorskip("pandas", reason="the pandas output checks need pandas")
    check(type(estimator).__name__, estimator)


# The configurations above shorten the fits; the label rules do not depend on the network's
# size or its iterations, but they are what the default unlabelled=-1 changes, so every
# check about labels also runs on the literal default StackedAutoencoderClassifier() (its
# whole check set takes minutes on two cores: each default fit runs up to 900 iterations).
LABEL_CHECKS = [
    check_classifier_data_not_an_array,
    check_classifiers_one_label,
    check_classifiers_one_label_sample_weights,
    check_classifiers_regression_target,
    check_classifiers_train,
    check_supervised_y_2d,
    check_supervised_y_no_nan,
    check_requires_y_none,
]


@no_constant_codes
@pytest.mark.parametrize("check", LABEL_CHECKS, ids=lambda c: c.__name__)
def test_default_classifier_passes_the_label_checks(check):
    check("StackedAutoencoderClassifier", StackedAutoencoderClassifier())


def test_default_classifier_fails_only_the_declared_label_check():
    estimator = StackedAutoencoderClassifier()
    assert set(expected_failed_checks(estimator)) == {"check_classifiers_classes"}
    with pytest.raises(ValueError, match="pass unlabelled=None"):
        check_classifiers_classes("StackedAutoencoderClassifier", estimator)
