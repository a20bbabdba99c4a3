"""score_samples: minus the reconstruction loss of each row, the per-row term of score.

The values are checked against NumPy formulas written here from the fitted parameters
(not against skae's own reconstruction code), for every encoder, decoder, loss and
tying, float32 and float64, dense, CSR and memory-mapped input; then the stack, the
row-block evaluation's memory, bad input, and array API dispatch. Dask input is tested
on the cluster of tests/test_dask.py.
"""

import tracemalloc
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn import config_context
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning, NotFittedError

from skae import SparseAutoencoder, StackedAutoencoder

short_fit = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _digits(n=120, dtype=np.float64):
    return (load_digits().data[:n] / 16.0).astype(dtype)


def _act(name, z):
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    if name == "tanh":
        return np.tanh(z)
    return z


def _expected_losses(X, layers, loss):
    """Per-row loss in float64 from ``layers``: ``(W1, b1, W2, b2, activation, decoder)``
    of each autoencoder, bottom first; the bottom layer's decoder gives x̂."""
    X = np.asarray(X.toarray() if sp.issparse(X) else X, dtype=np.float64)
    H = X
    for W1, b1, _, _, activation, _ in layers:
        H = _act(activation, H @ W1.astype(np.float64).T + b1)
    for _, _, W2, b2, _, decoder in reversed(layers):
        X_hat = _act(decoder, H @ W2.astype(np.float64) + b2)
        H = X_hat
    if loss == "squared":
        return 0.5 * np.sum((X_hat - X) ** 2, axis=1)
    return -np.sum(X * np.log(X_hat) + (1 - X) * np.log(1 - X_hat), axis=1)


def _layer(ae):
    return (
        ae.components_,
        ae.intercept_hidden_,
        ae.decoder_components_,
        ae.intercept_visible_,
        ae.activation,
        ae.decoder_,
    )


def _as_container(X, container, tmp_path):
    if container == "csr":
        return sp.csr_matrix(X)
    if container == "memmap":
        path = tmp_path / "X.dat"
        out = np.memmap(path, dtype=X.dtype, mode="w+", shape=X.shape)
        out[:] = X
        out.flush()
        return np.memmap(path, dtype=X.dtype, mode="r", shape=X.shape)
    return X


DECODER_LOSS = [("sigmoid", "squared"), ("linear", "squared"), ("sigmoid", "cross_entropy")]


@short_fit
@pytest.mark.parametrize("container", ["dense", "csr", "memmap"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
@pytest.mark.parametrize("decoder, loss", DECODER_LOSS)
def test_values_match_the_formula_and_score_is_their_mean(
    decoder, loss, activation, tied, dtype, container, tmp_path
):
    X = _digits(dtype=dtype)
    ae = SparseAutoencoder(
        n_hidden=7, activation=activation, decoder=decoder, loss=loss, tied_weights=tied,
        max_iter=5, random_state=0,
    ).fit(X[:80])
    X_test = _as_container(X[80:], container, tmp_path)
    before = X[80:].copy()

    scores = ae.score_samples(X_test)

    assert isinstance(scores, np.ndarray) and scores.shape == (40,)
    assert scores.dtype == np.float64
    assert np.all(np.isfinite(scores)) and np.all(scores <= 0)
    expected = -_expected_losses(X[80:], [_layer(ae)], loss)
    rtol = 1e-10 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(scores, expected, rtol=rtol)
    # score is the mean of score_samples, to rounding
    assert ae.score(X_test) == pytest.approx(scores.mean(), rel=1e-12, abs=0)
    # the caller's data are not modified
    X_after = X_test.toarray() if sp.issparse(X_test) else np.asarray(X_test)
    np.testing.assert_array_equal(X_after, before)


@short_fit
@pytest.mark.parametrize("batch_size", [1, 7, 64, 1000])
def test_row_blocks_give_the_same_scores(batch_size):
    X = _digits(150)
    reference = SparseAutoencoder(n_hidden=6, max_iter=5, random_state=0).fit(X)
    blocked = SparseAutoencoder(
        n_hidden=6, max_iter=5, random_state=0, batch_size=batch_size
    ).fit(X)
    np.testing.assert_allclose(
        blocked.score_samples(X), reference.score_samples(X), rtol=1e-12
    )


@short_fit
def test_memory_beyond_the_output_does_not_grow_with_the_rows(tmp_path):
    rng = np.random.RandomState(0)
    ae = SparseAutoencoder(n_hidden=16, max_iter=3, random_state=0, batch_size=500)
    ae.fit(rng.uniform(size=(600, 64)))
    peaks = []
    for m in (20_000, 80_000):
        path = tmp_path / f"X{m}.dat"
        X = np.memmap(path, dtype=np.float64, mode="w+", shape=(m, 64))
        X[:] = rng.uniform(size=(m, 64))
        X.flush()
        X = np.memmap(path, dtype=np.float64, mode="r", shape=(m, 64))
        tracemalloc.start()
        try:
            scores = ae.score_samples(X)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert scores.shape == (m,)
        peaks.append(peak - scores.nbytes)
    # The data are 10 MB and 41 MB; beyond the output vector the evaluation holds a
    # few 500-row blocks (256 kB each), whatever the number of rows.
    assert peaks[1] < 2_000_000
    assert peaks[1] < peaks[0] + 200_000


@short_fit
def test_higher_is_more_typical():
    digits = load_digits()
    X, y = digits.data / 16.0, digits.target
    ae = SparseAutoencoder(n_hidden=32, max_iter=100, random_state=0).fit(X[y < 5][:600])
    normal = ae.score_samples(X[y < 5][600:])
    noise = ae.score_samples(np.random.RandomState(0).uniform(size=(50, 64)))
    assert normal.min() > noise.max()
    assert ae.score(X[y < 5][600:]) > ae.score(X[y >= 5])


@short_fit
def test_a_pipeline_ending_with_the_autoencoder_scores_samples():
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler

    X = load_digits().data[:100]
    pipeline = make_pipeline(MinMaxScaler(), SparseAutoencoder(6, max_iter=5, random_state=0))
    pipeline.fit(X)
    scaler, ae = pipeline[0], pipeline[-1]
    np.testing.assert_array_equal(
        pipeline.score_samples(X), ae.score_samples(scaler.transform(X))
    )


# --------------------------------------------------------------------------- stacks
@short_fit
@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"loss": "cross_entropy"},
        {"activation": "tanh", "tied_weights": True},
        {"decoder": ["linear", "sigmoid", "linear"]},
    ],
    ids=["squared", "cross_entropy", "tanh-tied", "linear-decoders"],
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_stack_values_match_the_formula(settings, dtype):
    X = _digits(dtype=dtype)
    stack = StackedAutoencoder(
        (12, 8, 5), alpha=[1e-3, 0.0, 0.0], max_iter=5, random_state=0, **settings
    ).fit(X[:80])
    scores = stack.score_samples(sp.csr_matrix(X[80:]))
    assert scores.shape == (40,) and scores.dtype == np.float64
    layers = [_layer(ae) for ae in stack.autoencoders_]
    expected = -_expected_losses(X[80:], layers, settings.get("loss", "squared"))
    np.testing.assert_allclose(scores, expected, rtol=1e-10 if dtype == np.float64 else 1e-4)
    np.testing.assert_allclose(stack.score_samples(X[80:]), scores, rtol=1e-6)


@short_fit
def test_stack_squared_scores_are_those_of_its_round_trip():
    X = _digits()
    stack = StackedAutoencoder((10, 6), alpha=[1e-3, 0.0], max_iter=5, random_state=0).fit(X)
    X_hat = stack.inverse_transform(stack.transform(X))
    np.testing.assert_allclose(
        stack.score_samples(X), -0.5 * np.sum((X_hat - X) ** 2, axis=1), rtol=1e-12
    )


@short_fit
def test_one_layer_stack_equals_its_autoencoder():
    X = _digits()
    stack = StackedAutoencoder((9,), loss="cross_entropy", max_iter=5, random_state=0).fit(X)
    np.testing.assert_array_equal(
        stack.score_samples(X), stack.autoencoders_[0].score_samples(X)
    )


# --------------------------------------------------------------------------- bad input
def _fitted(make):
    return make().fit(_digits(60))


ESTIMATORS = [
    lambda: SparseAutoencoder(n_hidden=4, max_iter=3, random_state=0),
    lambda: StackedAutoencoder((4, 3), alpha=[1e-3, 0.0], max_iter=3, random_state=0),
]


@short_fit
@pytest.mark.parametrize("make", ESTIMATORS, ids=["SparseAutoencoder", "StackedAutoencoder"])
def test_bad_input_is_a_clear_error(make):
    with pytest.raises(NotFittedError, match="not fitted yet"):
        make().score_samples(_digits(10))
    est = _fitted(make)
    X = _digits(10)
    with pytest.raises(ValueError, match="X has 10 features, but .* expecting 64 features"):
        est.score_samples(X[:, :10])
    with pytest.raises(ValueError, match="Input X contains NaN"):
        est.score_samples(np.where(X > 0.5, np.nan, X))
    with pytest.raises(ValueError, match="Input X contains infinity"):
        est.score_samples(np.where(X > 0.5, np.inf, X))
    with pytest.raises(ValueError, match="Expected 2D array, got 1D array"):
        est.score_samples(X[0])
    with pytest.raises(ValueError, match="minimum of 1 is required"):
        est.score_samples(X[:0])


@short_fit
@pytest.mark.parametrize(
    "make",
    [
        lambda: SparseAutoencoder(n_hidden=4, loss="cross_entropy", max_iter=3),
        lambda: StackedAutoencoder((4, 3), alpha=[1e-3, 0.0], loss="cross_entropy", max_iter=3),
    ],
    ids=["SparseAutoencoder", "StackedAutoencoder"],
)
def test_cross_entropy_outside_the_unit_range_is_a_clear_error(make):
    est = _fitted(make)
    with pytest.raises(ValueError, match=r"needs data in \[0, 1\].*MinMaxScaler"):
        est.score_samples(_digits(10) * 3)


# --------------------------------------------------------------------------- array API
def _namespace(name):
    """``(asarray, array type, float64 dtype, to_numpy)`` of a CPU array namespace."""
    try:  # needs array_api_compat, and SciPy >= 1.14 (scikit-learn < 1.7 checks both)
        with config_context(array_api_dispatch=True):
            pass
    except (ImportError, RuntimeError) as exc:
        pytest.skip(f"scikit-learn's array API dispatch cannot be enabled here: {exc}")
    if name == "torch":
        torch = pytest.importorskip("torch", reason="PyTorch is not installed")
        return (
            lambda a: torch.asarray(np.array(a), device="cpu"),
            torch.Tensor,
            torch.float64,
            lambda a: a.numpy(),
        )
    xps = pytest.importorskip("array_api_strict")
    return xps.asarray, type(xps.asarray(0.0)), xps.float64, lambda a: np.asarray(a)


@short_fit
@pytest.mark.parametrize("namespace", ["array_api_strict", "torch"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    "make",
    [
        lambda: SparseAutoencoder(n_hidden=4, loss="cross_entropy", max_iter=3, random_state=0),
        ESTIMATORS[1],
    ],
    ids=["SparseAutoencoder-cross_entropy", "StackedAutoencoder"],
)
def test_array_api_dispatch_scores_in_the_namespace(make, dtype, namespace):
    from skae._array import to_numpy

    asarray, array_type, float64, as_numpy = _namespace(namespace)
    X = _digits(80, dtype)
    with config_context(array_api_dispatch=True):
        est = make().fit(asarray(X[:60]))
        scores = est.score_samples(asarray(X[60:]))
        score = est.score(asarray(X[60:])) if hasattr(est, "score") else None
        with pytest.raises(ValueError, match="same namespace"):
            est.score_samples(X[60:])
    assert isinstance(scores, array_type)
    assert tuple(scores.shape) == (20,) and scores.dtype == float64
    autoencoders = getattr(est, "autoencoders_", [est])
    layers = [tuple(to_numpy(a) for a in _layer(ae)[:4]) + _layer(ae)[4:] for ae in autoencoders]
    expected = -_expected_losses(X[60:], layers, autoencoders[0].loss)
    np.testing.assert_allclose(
        as_numpy(scores), expected, rtol=1e-10 if dtype == np.float64 else 1e-4
    )
    if score is not None:
        assert score == pytest.approx(float(np.mean(as_numpy(scores))), rel=1e-12)


@short_fit
def test_float32_residuals_are_squared_in_float64():
    """A residual of 1e20 squares to 1e40, past float32's range: the loss is formed in
    float64 (as its row sum is), so float32 input scores as float64 input does; only a
    loss beyond float64's range scores -inf."""
    ae = SparseAutoencoder(n_hidden=8, decoder="linear", max_iter=5, random_state=0)
    ae.fit(_digits())
    far = _digits(2)
    far[0, 0] = 1e20
    wide, narrow = ae.score_samples(far), ae.score_samples(far.astype(np.float32))
    assert narrow.dtype == np.float64 and np.all(np.isfinite(narrow))
    np.testing.assert_allclose(narrow, wide, rtol=1e-6)
    assert wide[0] == pytest.approx(-0.5e40, rel=1e-6)
    far[0, 0] = 1e200
    with warnings.catch_warnings():  # no NumPy warning on the square: -inf is the score
        warnings.simplefilter("error")
        assert ae.score_samples(far)[0] == -np.inf
        assert ae.score_samples(sp.csr_matrix(far))[0] == -np.inf  # as for sparse input
        far[0, 0] = -1.7e308  # the residual itself beyond float64's range
        assert ae.score_samples(far)[0] == -np.inf
        assert ae.score(far) == -np.inf
        far[0, :2] = 1.2e154  # each square finite (1.44e308), their sum not
        assert ae.score_samples(far)[0] == -np.inf
        assert ae.score_samples(sp.csr_matrix(far))[0] == -np.inf
        stack = StackedAutoencoder((4,), decoder="linear", max_iter=5, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            stack.fit(_digits())
        assert stack.score_samples(far)[0] == -np.inf
