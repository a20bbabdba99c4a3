"""scikit-learn's array API dispatch (issue 13): SparseAutoencoder fits, transforms and
scores arrays of other namespaces in that namespace, on their device.

On the CPU: ``array_api_strict`` (a test dependency) and PyTorch (skipped when it is not
installed). GPU tests (PyTorch CUDA, CuPy) skip when there is no GPU.
"""

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

from skae import SparseAutoencoder
from skae import _base as base_module
from skae._lbfgs import minimize_lbfgs
from skae._objective import AutoencoderObjective, AutoencoderSpec, Corruption

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


def _skae_lbfgs_for_numpy(monkeypatch):
    """Make the NumPy path use skae's L-BFGS instead of SciPy's, to compare one optimiser
    on two namespaces (the NumPy path itself keeps SciPy's L-BFGS-B)."""

    def minimize(fun, x0, *, method, jac, callback, options):
        assert method == "L-BFGS-B" and jac is True
        return minimize_lbfgs(
            fun,
            x0,
            maxiter=options["maxiter"],
            gtol=options["gtol"],
            maxfun=options["maxfun"],
            callback=callback,
        )

    monkeypatch.setattr(base_module, "minimize", minimize)


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


@pytest.mark.parametrize("options, corruption, batch_size", OBJECTIVE_OPTIONS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_objective_is_the_same_in_array_api_strict(options, corruption, batch_size, dtype):
    """The one objective on array_api_strict arrays: J and ∇J equal NumPy's to rounding
    (float64: 1e-13 relative; float32 data: 1e-6 relative, 1e-6 absolute on ∇J), and the
    gradient is an array_api_strict float64 array."""
    X = _data(150, dtype)
    spec = AutoencoderSpec(n_features=64, n_hidden=10, **options)
    theta = spec.layout.initialize(np.random.RandomState(0))
    J, grad = AutoencoderObjective(spec, X, corruption=corruption, batch_size=batch_size)(theta)
    objective = AutoencoderObjective(
        spec, xps.asarray(X), corruption=corruption, batch_size=batch_size
    )
    J_x, grad_x = objective(xps.asarray(theta))
    assert isinstance(grad_x, StrictArray) and grad_x.dtype == xps.float64
    rtol, atol = (1e-13, 1e-14) if dtype == np.float64 else (1e-6, 1e-6)
    assert_allclose(J_x, J, rtol=rtol)
    assert_allclose(np.asarray(grad_x), grad, rtol=rtol, atol=atol)


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
def test_fit_equals_the_numpy_fit_with_the_same_optimiser(monkeypatch, params):
    """Stated tolerance: with the same L-BFGS on both sides, 25 iterations of the
    array_api_strict fit give the NumPy fit's parameters to 1e-7 (absolute; they are of
    order 1), its loss curve to 1e-10 relative, and outputs of the input's namespace."""
    X = _data()
    est = SparseAutoencoder(n_hidden=12, max_iter=25, random_state=0, **params)
    with config_context(array_api_dispatch=True):
        fitted = est.fit(xps.asarray(X))
        H = fitted.transform(xps.asarray(X))
        R = fitted.inverse_transform(H)
        score = fitted.score(xps.asarray(X))
    for attribute in _fitted_attributes(fitted):
        assert isinstance(attribute, StrictArray) and attribute.dtype == xps.float64
    assert isinstance(H, StrictArray) and H.shape == (200, 12)
    assert isinstance(R, StrictArray) and R.shape == X.shape
    assert isinstance(score, float)

    _skae_lbfgs_for_numpy(monkeypatch)
    reference = SparseAutoencoder(n_hidden=12, max_iter=25, random_state=0, **params).fit(X)
    assert fitted.n_iter_ == reference.n_iter_ == 25
    assert_allclose(fitted.loss_curve_, reference.loss_curve_, rtol=1e-10)
    for ours, theirs in zip(_fitted_attributes(fitted), _fitted_attributes(reference)):
        assert_allclose(np.asarray(ours), theirs, atol=1e-7)
    assert_allclose(np.asarray(H), reference.transform(X), atol=1e-7)
    assert_allclose(np.asarray(R), reference.inverse_transform(reference.transform(X)), atol=1e-7)
    assert_allclose(score, reference.score(X), rtol=1e-8)
    if params.get("tied_weights"):
        assert fitted.decoder_components_ is fitted.components_


def test_converged_fit_matches_scipys_numpy_fit():
    """Both optimisers to convergence (tol=1e-4): the array_api_strict model's loss is
    within 1% of the NumPy model's (SciPy's L-BFGS-B), and its reconstruction score too."""
    X = _data()
    params = {"n_hidden": 8, "max_iter": 400, "tol": 1e-4, "random_state": 0}
    reference = SparseAutoencoder(**params).fit(X)
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


def test_tags_declare_array_api_support():
    assert SparseAutoencoder().__sklearn_tags__().array_api_support is True


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


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("library", ["torch", "cupy"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_gpu_fit_matches_numpy(monkeypatch, library, dtype):
    """On a CUDA GPU: the fit, with skae's L-BFGS on both sides, equals the NumPy fit to
    1e-6 (float64) or 1e-3 (float32, TF32 off), and everything stays on the GPU."""
    X = _data(500, np.float64)
    if library == "torch":
        torch = _torch_cuda()
        torch.backends.cuda.matmul.allow_tf32 = False
        X_gpu = torch.asarray(X.astype(dtype), device="cuda")

        def on_gpu(a):
            return a.is_cuda

        def to_numpy(a):
            return a.cpu().numpy()
    else:
        cupy = _cupy()
        X_gpu = cupy.asarray(X.astype(dtype))

        def on_gpu(a):
            return isinstance(a, cupy.ndarray)

        def to_numpy(a):
            return cupy.asnumpy(a)

    with config_context(array_api_dispatch=True):
        est = SparseAutoencoder(n_hidden=25, max_iter=20, random_state=0).fit(X_gpu)
        H = est.transform(X_gpu)
    assert on_gpu(est.components_) and on_gpu(H)
    _skae_lbfgs_for_numpy(monkeypatch)
    reference = SparseAutoencoder(n_hidden=25, max_iter=20, random_state=0).fit(
        X.astype(dtype)
    )
    atol = 1e-6 if dtype == "float64" else 1e-3
    assert_allclose(to_numpy(est.components_), reference.components_, atol=atol)
    assert_allclose(to_numpy(H), reference.transform(X.astype(dtype)), atol=atol)


# ------------------------------------------------------------------ the stacks
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_stacked_autoencoder_equals_the_numpy_fit_with_the_same_optimiser(monkeypatch):
    """Stated tolerance as for one layer: parameters of every layer to 1e-7, codes and
    reconstructions to 1e-7, all in the input's namespace."""
    from skae import StackedAutoencoder

    X = _data()
    params = {"hidden_layer_sizes": (12, 6), "max_iter": 20, "random_state": 0}
    with config_context(array_api_dispatch=True):
        fitted = StackedAutoencoder(**params).fit(xps.asarray(X))
        H = fitted.transform(xps.asarray(X))
        R = fitted.inverse_transform(H)
    assert isinstance(H, StrictArray) and H.shape == (200, 6)
    assert isinstance(R, StrictArray) and R.shape == X.shape
    _skae_lbfgs_for_numpy(monkeypatch)
    reference = StackedAutoencoder(**params).fit(X)
    for ours, theirs in zip(fitted.autoencoders_, reference.autoencoders_):
        assert isinstance(ours.components_, StrictArray)
        for a, b in zip(_fitted_attributes(ours), _fitted_attributes(theirs)):
            assert_allclose(np.asarray(a), b, atol=1e-7)
    assert_allclose(np.asarray(H), reference.transform(X), atol=1e-7)
    assert_allclose(np.asarray(R), reference.inverse_transform(reference.transform(X)), atol=1e-7)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize(
    "namespace, device, dtype", list(yield_namespace_device_dtype_combinations())
)
def test_sklearn_array_api_checks_stacked(namespace, device, dtype):
    from skae import StackedAutoencoder

    estimator = StackedAutoencoder((4, 3), max_iter=10, random_state=0)
    check_array_api_input("StackedAutoencoder", estimator, namespace, device, dtype)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_classifier_refuses_device_arrays_with_advice():
    from skae import StackedAutoencoderClassifier

    X, y = load_digits(return_X_y=True)
    X, y = X[:80] / 16.0, y[:80]
    est = StackedAutoencoderClassifier((6,), max_iter=3)
    with config_context(array_api_dispatch=True):
        with pytest.raises(TypeError, match="does not follow.*array API.*NumPy array"):
            est.fit(xps.asarray(X), y)
        est.fit(X, y)  # NumPy input still works with dispatch on
        for method in ("predict", "predict_proba", "transform"):
            with pytest.raises(TypeError, match="does not follow.*array API"):
                getattr(est, method)(xps.asarray(X))
