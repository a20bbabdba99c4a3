"""scikit-learn's array API dispatch (issue 13): SparseAutoencoder, StackedAutoencoder and
StackedAutoencoderClassifier fit arrays of other namespaces in that namespace, on their
device, and return outputs of the input's namespace.

On the CPU: ``array_api_strict`` (a test dependency) and PyTorch (the ``ns`` fixture and
scikit-learn's checks skip it, saying so, when it is not installed). GPU tests (PyTorch
CUDA, CuPy) skip when there is no GPU.
"""

import copy
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal
from sklearn import config_context
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._array_api import yield_namespace_device_dtype_combinations
from sklearn.utils.estimator_checks import check_array_api_input

from skae import SparseAutoencoder, StackedAutoencoder, StackedAutoencoderClassifier
from skae._array import to_numpy
from skae._network import FineTuneObjective, Layer
from skae._objective import AutoencoderObjective, AutoencoderSpec, Corruption

try:  # scikit-learn >= 1.9
    from sklearn.utils._array_api import yield_mixed_namespace_input_permutations
    from sklearn.utils.estimator_checks import (
        check_array_api_mixed_inputs,
        check_array_api_same_namespace,
    )
except ImportError:
    check_array_api_same_namespace = check_array_api_mixed_inputs = None

    def yield_mixed_namespace_input_permutations():
        return iter(())

xps = pytest.importorskip("array_api_strict")
StrictArray = type(xps.asarray(0.0))
try:  # needs array_api_compat, and SciPy >= 1.14 (scikit-learn < 1.7 checks both)
    with config_context(array_api_dispatch=True):
        pass
except (ImportError, RuntimeError) as exc:
    pytest.skip(
        f"scikit-learn's array API dispatch cannot be enabled here: {exc}",
        allow_module_level=True,
    )


def _data(n=200, dtype=np.float64):
    return (load_digits().data[:n] / 16.0).astype(dtype)


class _Namespace:
    """A namespace tested on the CPU: array_api_strict, or PyTorch (skipped, saying so,
    when it is not installed). Arrays are copies of the NumPy data."""

    def __init__(self, name):
        self.name = name
        if name == "torch":
            torch = pytest.importorskip("torch", reason="PyTorch is not installed")
            self.array_type = torch.Tensor
            self.float64, self.float32 = torch.float64, torch.float32
            self.asarray = lambda a: torch.asarray(np.array(a), device="cpu")
        else:
            self.array_type = StrictArray
            self.float64, self.float32 = xps.float64, xps.float32
            self.asarray = lambda a: xps.asarray(np.array(a))


@pytest.fixture(params=["array_api_strict", "torch"])
def ns(request):
    return _Namespace(request.param)


def _fitted_attributes(est):
    return [
        est.components_,
        est.intercept_hidden_,
        est.decoder_components_,
        est.intercept_visible_,
    ]


# ------------------------------------------------------------------ the objective
OBJECTIVE_OPTIONS = [
    ({}, None, None),
    ({"tied": True}, None, None),
    ({"loss": "cross_entropy"}, None, 64),
    ({"activation": "tanh", "decoder": "linear"}, Corruption("mask", 0.3, 5), None),
    ({}, Corruption("gaussian", 0.1, 5), 100),
]


# Rounding of the namespaces' own products against NumPy's: array_api_strict wraps NumPy;
# PyTorch sums in another order (measured on the objective: 4e-13 relative, 3e-15 absolute
# in float64; 1.2e-6 relative on J and 1e-6 absolute on ∇J in float32).
OBJECTIVE_TOLERANCES = {
    ("array_api_strict", np.float64): (1e-13, 1e-14, 1e-13),
    ("array_api_strict", np.float32): (1e-6, 1e-6, 1e-6),
    ("torch", np.float64): (1e-13, 1e-13, 1e-13),
    ("torch", np.float32): (1e-5, 1e-6, 3e-6),
}


@pytest.mark.parametrize("options, corruption, batch_size", OBJECTIVE_OPTIONS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_objective_is_the_same_in_the_namespace(ns, options, corruption, batch_size, dtype):
    """The one objective on the namespace's arrays: J and ∇J equal NumPy's to rounding
    (OBJECTIVE_TOLERANCES: J relative, ∇J relative and absolute), and the gradient is a
    float64 array of the namespace."""
    X = _data(150, dtype)
    spec = AutoencoderSpec(n_features=64, n_hidden=10, **options)
    theta = spec.layout.initialize(np.random.RandomState(0))
    J, grad = AutoencoderObjective(spec, X, corruption=corruption, batch_size=batch_size)(theta)
    objective = AutoencoderObjective(
        spec, ns.asarray(X), corruption=corruption, batch_size=batch_size
    )
    J_x, grad_x = objective(ns.asarray(theta))
    assert isinstance(grad_x, ns.array_type) and grad_x.dtype == ns.float64
    rtol_J, rtol, atol = OBJECTIVE_TOLERANCES[ns.name, dtype]
    assert_allclose(J_x, J, rtol=rtol_J)
    assert_allclose(to_numpy(grad_x), grad, rtol=rtol, atol=atol)


def test_objective_gradient_check_in_array_api_strict():
    from skae import check_gradient

    X = _data(40)
    spec = AutoencoderSpec(n_features=64, n_hidden=3, tied=True)
    objective = AutoencoderObjective(spec, xps.asarray(X), corruption=Corruption("mask", 0.2, 1))

    def fun(theta):  # check_gradient works in NumPy; the objective runs in the namespace
        J, grad = objective(xps.asarray(theta))
        return J, np.asarray(grad)

    theta = spec.layout.initialize(np.random.RandomState(1))
    assert check_gradient(fun, theta) < 1e-8


# ------------------------------------------------------------------ the estimator
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize(
    "params",
    [{}, {"tied_weights": True, "loss": "cross_entropy"}, {"noise": "mask", "noise_level": 0.2}],
)
def test_fit_equals_the_numpy_fit_with_the_same_optimiser(ns, params):
    """Stated tolerance: with the same L-BFGS on both sides, 25 iterations of the fit on
    the namespace's arrays (array_api_strict, PyTorch on the CPU) give the NumPy fit's
    parameters to 1e-7 (absolute; they are of order 1), its loss curve to 1e-10
    relative, and outputs of the input's namespace."""
    X = _data()
    est = SparseAutoencoder(n_hidden=12, max_iter=25, random_state=0, **params)
    with config_context(array_api_dispatch=True):
        fitted = est.fit(ns.asarray(X))
        H = fitted.transform(ns.asarray(X))
        R = fitted.inverse_transform(H)
        score = fitted.score(ns.asarray(X))
    for attribute in _fitted_attributes(fitted):
        assert isinstance(attribute, ns.array_type) and attribute.dtype == ns.float64
    assert isinstance(H, ns.array_type) and tuple(H.shape) == (200, 12)
    assert isinstance(R, ns.array_type) and tuple(R.shape) == X.shape
    assert isinstance(score, float)

    reference = SparseAutoencoder(n_hidden=12, max_iter=25, random_state=0, **params).fit(X)
    assert fitted.n_iter_ == reference.n_iter_ == 25
    assert_allclose(fitted.loss_curve_, reference.loss_curve_, rtol=1e-10)
    for ours, theirs in zip(_fitted_attributes(fitted), _fitted_attributes(reference)):
        assert_allclose(to_numpy(ours), theirs, atol=1e-7)
    assert_allclose(to_numpy(H), reference.transform(X), atol=1e-7)
    assert_allclose(to_numpy(R), reference.inverse_transform(reference.transform(X)), atol=1e-7)
    assert_allclose(score, reference.score(X), rtol=1e-8)
    if params.get("tied_weights"):
        assert fitted.decoder_components_ is fitted.components_


def test_converged_fit_matches_scipys_numpy_fit(monkeypatch):
    """Both optimisers to convergence (tol=1e-4): the array_api_strict model's loss (skae's
    L-BFGS) is within 1% of that of a NumPy model fitted with SciPy's L-BFGS-B (the
    estimator's private switch, which the quality benchmark compares the two by), and its
    reconstruction score too."""
    from skae import _sparse_autoencoder

    X = _data()
    params = {"n_hidden": 8, "max_iter": 400, "tol": 1e-4, "random_state": 0}
    monkeypatch.setattr(_sparse_autoencoder, "_OWN_LBFGS", False)
    reference = SparseAutoencoder(**params).fit(X)
    monkeypatch.undo()
    with config_context(array_api_dispatch=True):
        fitted = SparseAutoencoder(**params).fit(xps.asarray(X))
        score = fitted.score(xps.asarray(X))
    assert reference.n_iter_ < 400 and fitted.n_iter_ < 400  # both converged
    assert abs(fitted.loss_ - reference.loss_) <= 0.01 * reference.loss_
    assert abs(score - reference.score(X)) <= 0.01 * abs(reference.score(X))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_float32_stays_float32():
    X = _data(100, np.float32)
    with config_context(array_api_dispatch=True):
        est = SparseAutoencoder(n_hidden=5, max_iter=5, random_state=0).fit(xps.asarray(X))
        H = est.transform(xps.asarray(X))
    assert est.components_.dtype == xps.float32 and H.dtype == xps.float32


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("make", [np.asarray, sp.csr_matrix], ids=["dense", "csr"])
def test_numpy_input_with_dispatch_on_is_bitwise_unchanged(make):
    X = make(_data(100))
    est = SparseAutoencoder(n_hidden=6, max_iter=10, random_state=0)
    off = est.fit(X)
    off_attributes = [a.copy() for a in _fitted_attributes(off)]
    off_H = off.transform(X)
    with config_context(array_api_dispatch=True):
        on = SparseAutoencoder(n_hidden=6, max_iter=10, random_state=0).fit(X)
        on_H = on.transform(X)
        on_score = on.score(X)
    for a, b in zip(_fitted_attributes(on), off_attributes):
        assert type(a) is np.ndarray
        assert_array_equal(a, b)
    assert_array_equal(on_H, off_H)
    assert on_score == off.score(X)
    assert on.loss_curve_ == off.loss_curve_


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_other_namespace_or_sparse_after_a_device_fit_is_a_clear_error():
    X = _data(60)
    with config_context(array_api_dispatch=True):
        est = SparseAutoencoder(n_hidden=4, max_iter=3, random_state=0).fit(xps.asarray(X))
        for method in ("transform", "score"):
            with pytest.raises(ValueError, match="same namespace"):
                getattr(est, method)(sp.csr_matrix(X))
            with pytest.raises(ValueError, match="same namespace"):
                getattr(est, method)(X)
        with pytest.raises(ValueError, match="same namespace"):
            est.inverse_transform(np.zeros((2, 4)))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("dispatch", [True, False])
def test_a_dask_array_after_a_device_fit_is_a_clear_error(dispatch):
    """A dask array's chunks are computed with NumPy: a model whose weights are in
    another namespace says so for every method (it gave an AttributeError, or codes
    computed with NumPy), and names the ways out."""
    da = pytest.importorskip("dask.array", reason="needs dask: pip install 'skae[dask]'")
    X, y = _labelled_digits(80)
    Xd = da.from_array(X, chunks=(40, -1))
    small = dict(max_iter=3, random_state=0)
    with config_context(array_api_dispatch=True):
        models = [
            SparseAutoencoder(n_hidden=4, **small).fit(xps.asarray(X)),
            StackedAutoencoder((4,), **small).fit(xps.asarray(X)),
            StackedAutoencoderClassifier(**dict(CLASSIFIER, hidden_layer_sizes=(4,),
                                                max_iter=3)).fit(xps.asarray(X), y),
        ]
    codes = da.zeros((4, 4), chunks=2)
    calls = [  # (estimator, call, the method the message names)
        (models[0], lambda est: est.transform(Xd), "transform"),
        (models[0], lambda est: est.inverse_transform(codes), "inverse_transform"),
        (models[0], lambda est: est.score(Xd), "score"),
        (models[0], lambda est: est.score_samples(Xd), "score_samples"),
        (models[1], lambda est: est.transform(Xd), "transform"),
        (models[1], lambda est: est.inverse_transform(codes), "inverse_transform"),
        (models[1], lambda est: est.score_samples(Xd), "score_samples"),
        (models[2], lambda est: est.transform(Xd), "transform"),
        (models[2], lambda est: est.predict(Xd), "predict"),
        (models[2], lambda est: est.predict_proba(Xd), "predict_proba"),
        (models[2], lambda est: est.score(Xd, y), "score"),
    ]
    with config_context(array_api_dispatch=dispatch):
        for est, call, method in calls:
            with pytest.raises(ValueError, match=(
                rf"{type(est).__name__} was fitted .* on array_api_strict arrays .*, and "
                rf"{method} was given a dask array.*move_estimator_to"
            )):
                call(est)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_warm_start_across_devices_is_a_clear_error():
    """A warm start on X of another device of the same namespace names both places (it
    gave the namespace's own error about combining devices); the model is kept."""
    X, y = _labelled_digits(80)
    here, there = xps.asarray(X), xps.asarray(X, device=xps.Device("device1"))
    small = dict(max_iter=3, random_state=0, warm_start=True)
    models = [
        (SparseAutoencoder(n_hidden=4, **small), ()),
        (StackedAutoencoder((4,), **small), ()),
        (StackedAutoencoderClassifier(**dict(CLASSIFIER, hidden_layer_sizes=(4,), **small)),
         (y,)),
    ]
    with config_context(array_api_dispatch=True):
        for est, labels in models:
            est.fit(here, *labels)
            codes = to_numpy(est.transform(here))
            with pytest.raises(ValueError, match=(
                r"cannot continue from the previous fit: it was fitted in another array "
                r"namespace or on another device than X's \(array_api_strict on "
                r".*CPU_DEVICE.*; X: array_api_strict on .*device1.*\)"
            )):
                est.fit(there, *labels)
            assert_array_equal(to_numpy(est.transform(here)), codes)  # the model is kept


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_warm_start_across_namespaces_is_a_clear_error():
    X = _data(60)
    est = SparseAutoencoder(n_hidden=4, max_iter=3, random_state=0, warm_start=True).fit(X)
    with config_context(array_api_dispatch=True):
        with pytest.raises(ValueError, match="another array namespace"):
            est.fit(xps.asarray(X))
    assert type(est.components_) is np.ndarray  # the previous model is kept


def test_max_iter_warns_and_non_finite_raises_on_the_device():
    X = _data(60)
    with config_context(array_api_dispatch=True):
        with pytest.warns(ConvergenceWarning, match="max_iter=2"):
            SparseAutoencoder(n_hidden=4, max_iter=2, random_state=0).fit(xps.asarray(X))
        huge = xps.asarray(X * 1e200)
        with pytest.raises(FloatingPointError, match="non-finite"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                SparseAutoencoder(n_hidden=4, max_iter=5, random_state=0).fit(huge)


@pytest.mark.parametrize(
    "estimator", [SparseAutoencoder, StackedAutoencoder, StackedAutoencoderClassifier]
)
def test_tags_declare_array_api_support(estimator):
    assert estimator().__sklearn_tags__().array_api_support is True


# ------------------------------------------------------------------ scikit-learn's checks
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize(
    "namespace, device, dtype", list(yield_namespace_device_dtype_combinations())
)
@pytest.mark.parametrize("check", [check_array_api_input], ids=lambda c: c.__name__)
def test_sklearn_array_api_checks(check, namespace, device, dtype):
    """scikit-learn's array API estimator check for each namespace it knows (it skips,
    saying why, the ones that are not installed or have no device here)."""
    estimator = SparseAutoencoder(n_hidden=4, max_iter=20, random_state=0)
    # positional: the keyword for the device changed name in scikit-learn 1.7
    check("SparseAutoencoder", estimator, namespace, device, dtype)


# ------------------------------------------------------------------ GPU
def _torch_cuda():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU available to PyTorch")
    return torch


def _cupy():
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed")
    try:
        if cupy.cuda.runtime.getDeviceCount() == 0:
            pytest.skip("no CUDA GPU available to CuPy")
    except cupy.cuda.runtime.CUDARuntimeError:
        pytest.skip("no CUDA GPU available to CuPy")
    return cupy


def _gpu_arrays(library):
    """``(to_gpu, on_gpu)`` for PyTorch on CUDA (TF32 off) or CuPy; skips without a GPU."""
    if library == "torch":
        torch = _torch_cuda()
        torch.backends.cuda.matmul.allow_tf32 = False
        return (lambda a: torch.asarray(a, device="cuda")), (lambda a: a.is_cuda)
    cupy = _cupy()
    return cupy.asarray, (lambda a: isinstance(a, cupy.ndarray))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("library", ["torch", "cupy"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_gpu_fit_matches_numpy(library, dtype):
    """On a CUDA GPU: the fit, with skae's L-BFGS on both sides, equals the NumPy fit to
    1e-6 in float64, and everything stays on the GPU. In float32 (TF32 off) the libraries'
    rounding differs and L-BFGS's line search amplifies it (measured with PyTorch's CPU
    build: the first iteration's loss 37% apart, the weights 0.1 apart after 20
    iterations, the loss 8e-4 apart), so there the stated tolerance is 1% on the loss."""
    X = _data(500, np.float64)
    to_gpu, on_gpu = _gpu_arrays(library)
    X_gpu = to_gpu(X.astype(dtype))
    with config_context(array_api_dispatch=True):
        est = SparseAutoencoder(n_hidden=25, max_iter=20, random_state=0).fit(X_gpu)
        H = est.transform(X_gpu)
    assert on_gpu(est.components_) and on_gpu(H)
    reference = SparseAutoencoder(n_hidden=25, max_iter=20, random_state=0).fit(
        X.astype(dtype)
    )
    if dtype == "float32":
        assert est.loss_ == pytest.approx(reference.loss_, rel=0.01)
        return
    assert_allclose(to_numpy(est.components_), reference.components_, atol=1e-6)
    assert_allclose(to_numpy(H), reference.transform(X.astype(dtype)), atol=1e-6)


# ------------------------------------------------------------------ the stacks
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_stacked_autoencoder_equals_the_numpy_fit_with_the_same_optimiser(ns):
    """Stated tolerance as for one layer: parameters of every layer to 1e-7, codes and
    reconstructions to 1e-7, all in the input's namespace."""
    X = _data()
    params = {"hidden_layer_sizes": (12, 6), "max_iter": 20, "random_state": 0}
    with config_context(array_api_dispatch=True):
        fitted = StackedAutoencoder(**params).fit(ns.asarray(X))
        H = fitted.transform(ns.asarray(X))
        R = fitted.inverse_transform(H)
    assert isinstance(H, ns.array_type) and tuple(H.shape) == (200, 6)
    assert isinstance(R, ns.array_type) and tuple(R.shape) == X.shape
    reference = StackedAutoencoder(**params).fit(X)
    for ours, theirs in zip(fitted.autoencoders_, reference.autoencoders_):
        assert isinstance(ours.components_, ns.array_type)
        for a, b in zip(_fitted_attributes(ours), _fitted_attributes(theirs)):
            assert_allclose(to_numpy(a), b, atol=1e-7)
    assert_allclose(to_numpy(H), reference.transform(X), atol=1e-7)
    assert_allclose(to_numpy(R), reference.inverse_transform(reference.transform(X)), atol=1e-7)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize(
    "namespace, device, dtype", list(yield_namespace_device_dtype_combinations())
)
def test_sklearn_array_api_checks_stacked(namespace, device, dtype):
    estimator = StackedAutoencoder((4, 3), max_iter=10, random_state=0)
    check_array_api_input("StackedAutoencoder", estimator, namespace, device, dtype)



# ------------------------------------------------------------------ the classifier
FINE_TUNE_NETWORKS = [
    (["sigmoid", "softmax"], 1),
    (["sigmoid", "softmax"], 2),
    (["tanh", "sigmoid", "softmax"], 1),
    (["tanh", "sigmoid", "softmax"], 3),
]


@pytest.mark.parametrize("activations, n_trainable", FINE_TUNE_NETWORKS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fine_tune_objective_is_the_same_in_the_namespace(ns, activations, n_trainable, dtype):
    """The one fine-tuning objective on the namespace's arrays (layers and data there, the
    labels NumPy): J and ∇J equal NumPy's to rounding (float64: 1e-13 relative on J,
    1e-13 absolute on ∇J; float32 data: 1e-6 and 1e-6; measured 2e-16 / 8e-17 and 5e-9 /
    4e-8); ∇J is a float64 array of the namespace."""
    rng = np.random.RandomState(0)
    sizes = [64, 20, 15][: len(activations)] + [10]
    layers = [
        Layer(rng.uniform(-0.5, 0.5, (o, i)).astype(dtype),
              rng.uniform(-0.3, 0.3, o).astype(dtype), a)
        for i, o, a in zip(sizes[:-1], sizes[1:], activations)
    ]
    X, y = _data(300, dtype), load_digits().target[:300]
    alphas = [0.0] * (n_trainable - 1) + [1e-2]
    numpy_objective = FineTuneObjective(layers, X, y, n_trainable=n_trainable, alphas=alphas)
    theta = numpy_objective.theta0 + 0.01 * rng.standard_normal(numpy_objective.theta0.size)
    J, grad = numpy_objective(theta)
    device_layers = [Layer(ns.asarray(la.weights), ns.asarray(la.bias), la.activation)
                     for la in layers]
    objective = FineTuneObjective(
        device_layers, ns.asarray(X), y, n_trainable=n_trainable, alphas=alphas
    )
    assert_allclose(to_numpy(objective.theta0), numpy_objective.theta0, rtol=0, atol=0)
    J_x, grad_x = objective(ns.asarray(theta))
    assert isinstance(grad_x, ns.array_type) and grad_x.dtype == ns.float64
    tolerance = 1e-13 if dtype == np.float64 else 1e-6
    assert_allclose(J_x, J, rtol=tolerance)
    assert_allclose(to_numpy(grad_x), grad, rtol=0, atol=tolerance)


def test_fine_tune_objective_gradient_check_in_the_namespace(ns):
    from skae import check_gradient

    rng = np.random.RandomState(1)
    layers = [Layer(ns.asarray(rng.uniform(-0.5, 0.5, (4, 6))), ns.asarray(np.zeros(4)), "tanh"),
              Layer(ns.asarray(rng.uniform(-0.5, 0.5, (3, 4))), ns.asarray(np.zeros(3)),
                    "softmax")]
    objective = FineTuneObjective(layers, ns.asarray(rng.uniform(0, 1, (9, 6))),
                                  rng.randint(0, 3, 9), n_trainable=2, alphas=[0.1, 0.2])

    def fun(theta):  # check_gradient works in NumPy; the objective runs in the namespace
        J, grad = objective(ns.asarray(theta))
        return J, to_numpy(grad)

    assert check_gradient(fun, to_numpy(objective.theta0)) < 1e-8


def _labelled_digits(n=240):
    """Digits in [0, 1]; every fourth row unlabelled (-1, used for pretraining only)."""
    X, y = load_digits(return_X_y=True)
    y = y[:n].copy()
    y[::4] = -1
    return X[:n] / 16.0, y


CLASSIFIER = {
    "hidden_layer_sizes": (12, 8),
    "max_iter": 15,
    "softmax_max_iter": 15,
    "fine_tune_max_iter": 15,
    "random_state": 0,
}
CLASSIFIER_OUTPUTS = ("predict_proba", "predict_log_proba", "decision_function", "transform")


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("fine_tune", ["all", "top", None])
def test_classifier_equals_the_numpy_fit_with_the_same_optimiser(ns, fine_tune):
    """Stated tolerance: with skae's L-BFGS in every stage on both sides (the NumPy
    classifier uses it in every stage too), the fit on the namespace's float64 arrays, with
    unlabelled rows, makes as many iterations in every stage, its loss curves equal NumPy's
    to 1e-10 relative, its network to 1e-9 and its outputs to 1e-9 (measured: 7e-12 and
    below); the outputs are arrays of the input's namespace, the predictions the same
    labels."""
    X, y = _labelled_digits()
    labelled = y != -1
    with config_context(array_api_dispatch=True):
        fitted = StackedAutoencoderClassifier(fine_tune=fine_tune, **CLASSIFIER).fit(
            ns.asarray(X), y
        )
        outputs = {name: getattr(fitted, name)(ns.asarray(X)) for name in CLASSIFIER_OUTPUTS}
        predicted = fitted.predict(ns.asarray(X))
        score = fitted.score(ns.asarray(X[labelled]), y[labelled])

    reference = StackedAutoencoderClassifier(fine_tune=fine_tune, **CLASSIFIER).fit(X, y)
    assert fitted.stage_n_iter_ == reference.stage_n_iter_
    for stage in ("softmax", "fine_tuning"):
        assert_allclose(fitted.loss_curves_[stage], reference.loss_curves_[stage], rtol=1e-10)
    assert fitted.loss_ == pytest.approx(reference.loss_, rel=1e-10)
    for ours, theirs in zip(fitted.layers_, reference.layers_):
        assert isinstance(ours.weights, ns.array_type) and ours.weights.dtype == ns.float64
        assert isinstance(ours.bias, ns.array_type)
        assert_allclose(to_numpy(ours.weights), theirs.weights, atol=1e-9)
        assert_allclose(to_numpy(ours.bias), theirs.bias, atol=1e-9)
    assert type(fitted.classes_) is np.ndarray  # y was NumPy
    assert_array_equal(fitted.classes_, np.arange(10))
    for name, output in outputs.items():
        assert isinstance(output, ns.array_type), name
        assert_allclose(to_numpy(output), getattr(reference, name)(X), atol=1e-9, err_msg=name)
    assert isinstance(predicted, ns.array_type)
    assert_array_equal(to_numpy(predicted), reference.predict(X))
    # scikit-learn's accuracy_score counts in the namespace's default float (float32 in
    # PyTorch): the same accuracy to 1e-6
    assert isinstance(score, float)
    assert score == pytest.approx(reference.score(X[labelled], y[labelled]), rel=1e-6)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_classifier_float32_stays_float32(ns):
    """float32 data: the network and every output stay float32 in the namespace. The
    libraries round float32 products differently and 45 L-BFGS iterations amplify it, so
    the stated tolerance is loose: the loss within 1% of the NumPy float32 fit's with the
    same optimiser, probabilities within 0.02 (measured: 7e-4 relative, 6e-3)."""
    X, y = _labelled_digits()
    X = X.astype(np.float32)
    with config_context(array_api_dispatch=True):
        fitted = StackedAutoencoderClassifier(**CLASSIFIER).fit(ns.asarray(X), y)
        outputs = {name: getattr(fitted, name)(ns.asarray(X)) for name in CLASSIFIER_OUTPUTS}
    for layer in fitted.layers_:
        assert layer.weights.dtype == ns.float32 and layer.bias.dtype == ns.float32
    for name, output in outputs.items():
        assert isinstance(output, ns.array_type) and output.dtype == ns.float32, name
    reference = StackedAutoencoderClassifier(**CLASSIFIER).fit(X, y)
    assert fitted.loss_ == pytest.approx(reference.loss_, rel=0.01)
    assert_allclose(to_numpy(outputs["predict_proba"]), reference.predict_proba(X), atol=0.02)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_classifier_labels_of_the_namespace_and_string_labels(ns):
    """``y`` of the namespace (with -1 rows): ``classes_`` is an array of y's namespace
    (scikit-learn's convention), predictions are in X's namespace, and the model is, bit
    for bit, the one fitted with the same labels in NumPy (labels are bookkept on the
    host). String labels, with the integer -1 for unlabelled rows in an object array:
    ``classes_`` and the predictions are NumPy strings, those of the integer fit."""
    X, y = _labelled_digits(160)
    names = np.array([f"digit {k}" for k in range(10)], dtype=object)  # sorted as 0-9
    y_names = np.array([names[k] if k >= 0 else -1 for k in y], dtype=object)
    params = dict(CLASSIFIER, hidden_layer_sizes=(6,), max_iter=5)
    Xd = ns.asarray(X)
    with config_context(array_api_dispatch=True):
        numpy_labels = StackedAutoencoderClassifier(**params).fit(Xd, y)
        device_labels = StackedAutoencoderClassifier(**params).fit(Xd, ns.asarray(y))
        string_labels = StackedAutoencoderClassifier(**params).fit(Xd, y_names)
        predicted = {
            "numpy": numpy_labels.predict(Xd),
            "device": device_labels.predict(Xd),
            "strings": string_labels.predict(Xd),
        }
        string_score = string_labels.score(ns.asarray(X[y != -1]), y_names[y != -1])
    assert isinstance(device_labels.classes_, ns.array_type)
    assert_array_equal(to_numpy(device_labels.classes_), np.arange(10))
    for a, b in zip(numpy_labels.layers_, device_labels.layers_):
        assert_array_equal(to_numpy(a.weights), to_numpy(b.weights))
    assert isinstance(predicted["device"], ns.array_type)
    assert_array_equal(to_numpy(predicted["device"]), to_numpy(predicted["numpy"]))
    assert type(string_labels.classes_) is np.ndarray
    assert_array_equal(string_labels.classes_, names)
    assert type(predicted["strings"]) is np.ndarray
    assert_array_equal(predicted["strings"], names[to_numpy(predicted["numpy"])])
    expected = np.mean(names[to_numpy(predicted["numpy"])][y != -1] == y_names[y != -1])
    assert string_score == pytest.approx(expected)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_classifier_other_namespace_after_a_device_fit_is_a_clear_error(ns):
    X, y = _labelled_digits(80)
    params = dict(CLASSIFIER, hidden_layer_sizes=(4,), max_iter=3)
    with config_context(array_api_dispatch=True):
        est = StackedAutoencoderClassifier(**params).fit(ns.asarray(X), y)
        for method in ("predict", "predict_proba", "predict_log_proba", "decision_function",
                       "transform"):
            for other in (X, sp.csr_matrix(X)):
                with pytest.raises(ValueError, match=f"same namespace.*{method}"):
                    getattr(est, method)(other)
        with pytest.raises(ValueError, match="same namespace"):
            est.score(X, y)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_classifier_warm_start_across_namespaces_is_a_clear_error(ns):
    X, y = _labelled_digits(80)
    params = dict(CLASSIFIER, hidden_layer_sizes=(4,), max_iter=3, warm_start=True)
    est = StackedAutoencoderClassifier(**params).fit(X, y)
    layers = est.layers_
    with config_context(array_api_dispatch=True):
        with pytest.raises(ValueError, match="another array namespace"):
            est.fit(ns.asarray(X), y)
    assert est.layers_ is layers  # the previous model is kept
    with config_context(array_api_dispatch=True):  # on the device it continues there
        device = StackedAutoencoderClassifier(**params).fit(ns.asarray(X), y)
        device.fit(ns.asarray(X), y)
    assert device.stage_n_iter_["pretraining"] == []  # warm: supervised stage only
    assert isinstance(device.layers_[0].weights, ns.array_type)


def test_sparse_tensors_are_a_clear_error():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    X, y = _labelled_digits(40)
    sparse = torch.asarray(X).to_sparse()
    with config_context(array_api_dispatch=True):
        for estimator in (SparseAutoencoder(n_hidden=3), StackedAutoencoder((3,))):
            with pytest.raises(TypeError, match="sparse.*dense array"):
                estimator.fit(sparse)
        with pytest.raises(TypeError, match="sparse.*dense array"):
            StackedAutoencoderClassifier((3,)).fit(sparse, y)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("make", [np.asarray, sp.csr_matrix], ids=["dense", "csr"])
def test_classifier_numpy_input_with_dispatch_on_is_bitwise_unchanged(make):
    X, y = _labelled_digits(120)
    X = make(X)
    params = dict(CLASSIFIER, hidden_layer_sizes=(6,), max_iter=5)
    off = StackedAutoencoderClassifier(**params).fit(X, y)
    with config_context(array_api_dispatch=True):
        on = StackedAutoencoderClassifier(**params).fit(X, y)
        on_proba = on.predict_proba(X)
    for a, b in zip(on.layers_, off.layers_):
        assert type(a.weights) is np.ndarray
        assert_array_equal(a.weights, b.weights)
        assert_array_equal(a.bias, b.bias)
    assert on.loss_curves_ == off.loss_curves_
    assert_array_equal(on_proba, off.predict_proba(X))


CLASSIFIER_FOR_CHECKS = StackedAutoencoderClassifier(
    (4, 3), max_iter=10, softmax_max_iter=10, fine_tune_max_iter=10, random_state=0
)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize(
    "namespace, device, dtype", list(yield_namespace_device_dtype_combinations())
)
def test_sklearn_array_api_checks_classifier(namespace, device, dtype):
    check_array_api_input(
        "StackedAutoencoderClassifier", CLASSIFIER_FOR_CHECKS, namespace, device, dtype
    )


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize(
    "namespace, device",
    sorted({(n, d) for n, d, _ in yield_namespace_device_dtype_combinations(False)}, key=str),
)
@pytest.mark.parametrize(
    "estimator",
    [SparseAutoencoder(n_hidden=4, max_iter=10, random_state=0),
     StackedAutoencoder((4, 3), max_iter=10, random_state=0),
     CLASSIFIER_FOR_CHECKS],
    ids=lambda e: type(e).__name__,
)
def test_sklearn_same_namespace_check(estimator, namespace, device):
    """scikit-learn's check that predict/transform refuse another namespace than the
    fit's (scikit-learn >= 1.9)."""
    if check_array_api_same_namespace is None:
        pytest.skip("check_array_api_same_namespace needs scikit-learn >= 1.9")
    check_array_api_same_namespace(type(estimator).__name__, estimator, namespace, device)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize(
    "X_namespace, y_namespace",
    [pytest.param(a, b, id=name) for a, b, name in yield_mixed_namespace_input_permutations()],
)
def test_sklearn_mixed_inputs_check_classifier(X_namespace, y_namespace):
    """X of one namespace and device, y of another (scikit-learn >= 1.9)."""
    check_array_api_mixed_inputs(
        "StackedAutoencoderClassifier", CLASSIFIER_FOR_CHECKS, X_namespace, y_namespace
    )


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("library", ["torch", "cupy"])
def test_gpu_classifier_matches_numpy(library):
    """On a CUDA GPU, float64, a quarter of the rows unlabelled: the classifier, with skae's
    L-BFGS in every stage on both sides, gives the NumPy classifier's probabilities to
    1e-6 and its predictions on at least 99% of the rows; the network and the outputs are
    on the GPU (run on the CPU with PyTorch's CPU build only: no GPU was available)."""
    to_gpu, on_gpu = _gpu_arrays(library)
    X, y = _labelled_digits()
    with config_context(array_api_dispatch=True):
        fitted = StackedAutoencoderClassifier(**CLASSIFIER).fit(to_gpu(X), y)
        proba = fitted.predict_proba(to_gpu(X))
        predicted = fitted.predict(to_gpu(X))
    assert all(on_gpu(layer.weights) for layer in fitted.layers_)
    assert on_gpu(proba) and on_gpu(predicted)
    reference = StackedAutoencoderClassifier(**CLASSIFIER).fit(X, y)
    assert_allclose(to_numpy(proba), reference.predict_proba(X), atol=1e-6)
    assert np.mean(to_numpy(predicted) == reference.predict(X)) >= 0.99


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_inspection_of_a_device_fit_runs_on_the_host(ns):
    """skae.inspection copies a device model's weights, and inputs of its namespace, to
    NumPy: every function gives NumPy results equal to those of the same network held in
    NumPy arrays."""
    from skae import inspection

    X, y = _labelled_digits()
    with config_context(array_api_dispatch=True):
        fitted = StackedAutoencoderClassifier(**CLASSIFIER).fit(ns.asarray(X), y)
        host = copy.deepcopy(fitted)
        host.layers_ = [
            Layer(to_numpy(layer.weights), to_numpy(layer.bias), layer.activation)
            for layer in fitted.layers_
        ]
        calls = {
            "max_activation_inputs": lambda m, data: inspection.max_activation_inputs(m),
            "activation_maximization": lambda m, data: inspection.activation_maximization(
                m, layer="output", max_iter=5, random_state=0
            )[0],
            "invert_code": lambda m, data: inspection.invert_code(
                m, data[:3, ...], layer=1, max_iter=5, random_state=0
            )[0],
            "multifaceted_visualization": lambda m, data: inspection.multifaceted_visualization(
                m, data, unit=1, layer="output", n_facets=2, n_top=40, n_nearest=5,
                max_iter=5, random_state=0,
            ).facets,
        }
        for name, call in calls.items():
            ours = call(fitted, ns.asarray(X))
            assert type(ours) is np.ndarray, name
            assert_allclose(ours, call(host, X), rtol=1e-12, atol=1e-12, err_msg=name)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.filterwarnings("ignore::skae.exceptions.ConstantCodesWarning")  # 5 iterations
@pytest.mark.parametrize("make", [
    lambda: StackedAutoencoder((8, 4), max_iter=5, random_state=0),
    lambda: StackedAutoencoderClassifier((8,), max_iter=5, fine_tune_max_iter=5,
                                         random_state=0),
])
def test_move_estimator_to_moves_the_stacks_layers(ns, make):
    """scikit-learn's move_estimator_to (the advice of its same-namespace error) moves a
    stack fitted on NumPy, its autoencoders and its network's layers, to the namespace:
    its outputs are then arrays of it, equal to the NumPy model's."""
    try:
        from sklearn.utils._array_api import get_namespace_and_device, move_estimator_to
    except ImportError:
        pytest.skip("scikit-learn has no move_estimator_to (it came with 1.9)")
    X, y = load_digits(return_X_y=True)
    X, y = X[:200] / 16.0, y[:200]
    fitted = make().fit(X, y)
    with config_context(array_api_dispatch=True):
        X_ns = ns.asarray(X)
        xp, _, device = get_namespace_and_device(X_ns)
        moved = move_estimator_to(fitted, xp, device)
        methods = ["transform"] + (
            ["predict_proba"] if hasattr(fitted, "predict_proba") else ["inverse_transform"]
        )
        for method in methods:
            data = X if method != "inverse_transform" else fitted.transform(X)
            data_ns = X_ns if method != "inverse_transform" else ns.asarray(data)
            ours = getattr(moved, method)(data_ns)
            assert isinstance(ours, ns.array_type), method
            assert_allclose(to_numpy(ours), getattr(fitted, method)(data), atol=1e-12)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_a_tensor_that_records_gradients_is_fitted_detached():
    """Data that is part of an autograd graph (requires_grad): the fit uses it detached,
    so the fitted arrays are plain tensors (no graph kept alive, copyable) with the values
    of a fit on the same data without gradients."""
    import copy

    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    X = torch.asarray(_data(100))
    with config_context(array_api_dispatch=True):
        plain = SparseAutoencoder(n_hidden=6, max_iter=5, random_state=0).fit(X)
        recorded = SparseAutoencoder(n_hidden=6, max_iter=5, random_state=0)
        recorded.fit(X.clone().requires_grad_())
        codes = recorded.transform(X.clone().requires_grad_())
    assert not recorded.components_.requires_grad and recorded.components_.grad_fn is None
    assert not codes.requires_grad
    assert torch.equal(recorded.components_, plain.components_)
    copy.deepcopy(recorded)  # fails for tensors inside a graph
