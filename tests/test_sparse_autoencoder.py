"""SparseAutoencoder as a scikit-learn estimator: behaviour, options and errors."""

import pickle
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

from skae import SparseAutoencoder
from skae._objective import AutoencoderObjective, AutoencoderSpec


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


def _quiet_fit(estimator, X, y=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(X, y)


# ----------------------------------------------------------------------- the model
@pytest.mark.parametrize(
    "params",
    [
        {},
        {"loss": "cross_entropy"},
        {"decoder": "linear"},
        {"activation": "tanh", "tied_weights": True},
    ],
)
def test_loss_equals_objective_at_fitted_attributes(digits, params):
    X = digits[0][:300]
    ae = _quiet_fit(SparseAutoencoder(n_hidden=12, max_iter=15, random_state=0, **params), X)
    spec = AutoencoderSpec(
        64, 12, ae.activation, ae.decoder_, ae.loss, ae.tied_weights, ae.alpha, ae.beta, ae.rho
    )
    theta = spec.layout.pack(
        ae.components_, ae.intercept_hidden_, ae.decoder_components_, ae.intercept_visible_
    )
    J, _ = AutoencoderObjective(spec, X)(theta)
    assert ae.loss_ == pytest.approx(J, rel=1e-12)
    assert ae.loss_curve_[-1] == pytest.approx(ae.loss_, rel=1e-12)
    assert len(ae.loss_curve_) == ae.n_iter_


def test_transform_and_inverse_transform_are_the_formulas(digits):
    X = digits[0][:200]
    ae = _quiet_fit(SparseAutoencoder(n_hidden=10, max_iter=10, random_state=0), X)
    H = _sigmoid(X @ ae.components_.T + ae.intercept_hidden_)
    np.testing.assert_allclose(ae.transform(X), H, rtol=1e-12)
    X_hat = _sigmoid(H @ ae.decoder_components_ + ae.intercept_visible_)
    np.testing.assert_allclose(ae.inverse_transform(H), X_hat, rtol=1e-12)
    # score is minus the mean squared reconstruction term
    expected = -np.mean(0.5 * np.sum((X_hat - X) ** 2, axis=1))
    assert ae.score(X) == pytest.approx(expected, rel=1e-12)


def test_tanh_linear_formulas_and_range():
    X = np.random.RandomState(0).normal(size=(80, 5))
    ae = _quiet_fit(SparseAutoencoder(n_hidden=4, activation="tanh", max_iter=10), X)
    assert ae.decoder_ == "linear"
    H = ae.transform(X)
    np.testing.assert_allclose(H, np.tanh(X @ ae.components_.T + ae.intercept_hidden_))
    assert H.min() > -1 and H.max() < 1 and H.min() < 0
    np.testing.assert_allclose(
        ae.inverse_transform(H), H @ ae.decoder_components_ + ae.intercept_visible_
    )


def test_fitting_reduces_the_loss_and_learns_sparse_codes(digits):
    X = digits[0]
    ae = _quiet_fit(SparseAutoencoder(n_hidden=25, rho=0.05, max_iter=100, random_state=0), X)
    assert ae.loss_curve_[-1] < 0.5 * ae.loss_curve_[0]
    assert np.all(np.diff(ae.loss_curve_) <= 1e-12)  # L-BFGS only accepts descent
    # mean activation near the target rho (the KL penalty at work)
    assert ae.transform(X).mean() == pytest.approx(0.05, abs=0.02)


def test_initialisation_follows_ufldl(digits):
    X = digits[0][:50]
    ae = SparseAutoencoder(n_hidden=30, max_iter=1, random_state=0)
    from skae._objective import ParameterLayout

    theta = ParameterLayout(64, 30).initialize(np.random.RandomState(0))
    W1, b1, W2, b2 = ParameterLayout(64, 30).unpack(theta)
    r = np.sqrt(6 / (64 + 30 + 1))
    assert np.abs(W1).max() <= r and np.abs(W1).max() > 0.9 * r
    assert np.all(b1 == 0) and np.all(b2 == 0)
    assert not np.array_equal(W1, W2)
    _quiet_fit(ae, X)  # runs with that initialisation


def test_decoder_auto_follows_the_data_range(digits):
    X = digits[0][:100]
    assert _quiet_fit(SparseAutoencoder(n_hidden=3, max_iter=2), X).decoder_ == "sigmoid"
    Xs = StandardScaler().fit_transform(X)
    assert _quiet_fit(SparseAutoencoder(n_hidden=3, max_iter=2), Xs).decoder_ == "linear"
    forced = SparseAutoencoder(n_hidden=3, max_iter=2, decoder="linear")
    assert _quiet_fit(forced, X).decoder_ == "linear"


def test_convergence_warning_at_max_iter(digits):
    with pytest.warns(ConvergenceWarning, match="max_iter=3"):
        ae = SparseAutoencoder(n_hidden=5, max_iter=3, random_state=0).fit(digits[0])
    assert ae.n_iter_ == 3


def test_converged_fit_does_not_warn():
    X = np.random.RandomState(0).rand(30, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        ae = SparseAutoencoder(n_hidden=2, max_iter=2000, tol=1e-3, random_state=0).fit(X)
    assert 1 <= ae.n_iter_ < 2000


def test_verbose_prints_one_line_per_iteration(digits, capsys):
    _quiet_fit(SparseAutoencoder(n_hidden=5, max_iter=4, verbose=2, random_state=0), digits[0])
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("Iteration")]
    assert len(lines) == 4
    for word in ("loss", "reconstruction", "mean activation", "time"):
        assert word in lines[-1]


def test_non_finite_loss_raises_a_clear_error_and_keeps_the_model(digits, monkeypatch):
    X = digits[0][:100]
    ae = _quiet_fit(SparseAutoencoder(n_hidden=4, max_iter=3, random_state=0), X)
    before = ae.components_.copy()
    monkeypatch.setattr(AutoencoderObjective, "__call__", lambda self, t: (np.nan, t * 0))
    with pytest.raises(FloatingPointError, match="loss became non-finite"):
        ae.fit(X)
    np.testing.assert_array_equal(ae.components_, before)


# ----------------------------------------------------------------------- sklearn use
def test_pipeline_grid_search_on_digits(digits):
    """Autoencoder features + logistic regression: at least 90% held-out accuracy."""
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0, stratify=y)
    pipe = Pipeline(
        [
            ("scale", MinMaxScaler()),
            ("ae", SparseAutoencoder(n_hidden=64, max_iter=40, random_state=0)),
            ("clf", LogisticRegression(max_iter=500)),
        ]
    )
    search = GridSearchCV(pipe, {"ae__rho": [0.05, 0.2], "ae__beta": [0.5, 3.0]}, cv=3, n_jobs=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(X_train, y_train)
    assert search.score(X_test, y_test) >= 0.90


def test_grid_search_on_the_autoencoder_alone_selects_by_reconstruction(digits):
    X = digits[0][:400]
    search = GridSearchCV(
        SparseAutoencoder(max_iter=30, random_state=0), {"n_hidden": [2, 30]}, cv=2
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(X)
    assert search.best_params_ == {"n_hidden": 30}  # more units reconstruct better


def test_feature_names_and_pandas_output(digits):
    pd = pytest.importorskip("pandas", reason="pandas output needs pandas")
    X = pd.DataFrame(digits[0][:60], columns=[f"px{i}" for i in range(64)])
    ae = _quiet_fit(SparseAutoencoder(n_hidden=3, max_iter=3).set_output(transform="pandas"), X)
    out = ae.transform(X)
    assert list(out.columns) == ["sparseautoencoder0", "sparseautoencoder1", "sparseautoencoder2"]
    assert list(ae.feature_names_in_) == list(X.columns)


# ----------------------------------------------------------------------- dtypes, state
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # 5 iterations
@pytest.mark.parametrize("params", [{}, {"tied_weights": True}, {"batch_size": 7}])
def test_float32_is_preserved(digits, params):
    X = digits[0][:80].astype(np.float32)
    ae = _quiet_fit(SparseAutoencoder(n_hidden=6, max_iter=5, random_state=0, **params), X)
    for name in ("components_", "intercept_hidden_", "decoder_components_", "intercept_visible_"):
        assert getattr(ae, name).dtype == np.float32, name
    H = ae.transform(X)
    assert H.dtype == np.float32
    assert ae.inverse_transform(H).dtype == np.float32
    assert ae.fit_transform(X).dtype == np.float32


@pytest.mark.parametrize("dtype", [np.int64, np.float16, np.uint8])
def test_other_dtypes_become_float64(dtype):
    X = (np.random.RandomState(0).rand(20, 4) * 2).astype(dtype)
    ae = _quiet_fit(SparseAutoencoder(n_hidden=2, max_iter=3), X)
    assert ae.components_.dtype == np.float64
    assert ae.transform(X).dtype == np.float64


def test_same_random_state_gives_identical_results(digits):
    X = digits[0][:150]
    a = _quiet_fit(SparseAutoencoder(n_hidden=7, max_iter=10, random_state=3), X)
    b = _quiet_fit(SparseAutoencoder(n_hidden=7, max_iter=10, random_state=3), X)
    c = _quiet_fit(SparseAutoencoder(n_hidden=7, max_iter=10, random_state=4), X)
    np.testing.assert_array_equal(a.transform(X), b.transform(X))
    assert a.loss_curve_ == b.loss_curve_
    assert not np.array_equal(a.components_, c.components_)


def test_pickle_round_trip(digits):
    X = digits[0][:100]
    ae = _quiet_fit(SparseAutoencoder(n_hidden=5, max_iter=5, random_state=0), X)
    clone = pickle.loads(pickle.dumps(ae))
    np.testing.assert_array_equal(clone.transform(X), ae.transform(X))
    tied = _quiet_fit(SparseAutoencoder(n_hidden=5, max_iter=5, tied_weights=True), X)
    restored = pickle.loads(pickle.dumps(tied))
    assert restored.decoder_components_ is restored.components_


def test_warm_start_continues_from_the_previous_parameters(digits):
    X = digits[0][:300]
    ae = _quiet_fit(SparseAutoencoder(n_hidden=10, max_iter=10, random_state=0), X)
    first_loss = ae.loss_
    ae.set_params(warm_start=True)
    _quiet_fit(ae, X)
    # The second fit starts where the first ended: its first iterate is already below
    # the first fit's end, and far below a cold start's first iterate.
    assert ae.loss_curve_[0] <= first_loss
    assert ae.loss_ < first_loss
    cold = _quiet_fit(SparseAutoencoder(n_hidden=10, max_iter=1, random_state=0), X)
    assert ae.loss_curve_[0] < cold.loss_curve_[0]


def test_warm_start_with_a_new_shape_is_refused(digits):
    X = digits[0][:50]
    ae = _quiet_fit(SparseAutoencoder(n_hidden=4, max_iter=2, warm_start=True), X)
    ae.set_params(n_hidden=5)
    with pytest.raises(ValueError, match="warm_start=False"):
        ae.fit(X)
    assert ae.components_.shape == (4, 64)  # the fitted model is kept
    ae.set_params(n_hidden=4, tied_weights=True)
    with pytest.raises(ValueError, match="tied_weights"):
        ae.fit(X)


# ----------------------------------------------------------------------- variants
def test_tied_weights_share_one_matrix(digits):
    X = digits[0][:100]
    ae = _quiet_fit(SparseAutoencoder(n_hidden=6, max_iter=5, tied_weights=True), X)
    assert ae.decoder_components_ is ae.components_


def test_denoising_reconstructs_corrupted_digits_better(digits):
    """Masking noise: the denoising autoencoder repairs masked held-out digits better.

    Measured on 600 held-out digits with 30% of the pixels zeroed: the squared error to
    the clean digits must be at least 25% lower than the plain autoencoder's (it is about
    half on this seed: 1.6 against 3.2). Light weight decay lets the denoiser use its
    capacity; with the default alpha both models are limited by the decay.
    """
    X, _ = digits
    X_train, X_test = X[:1197], X[1197:]
    mask = np.random.RandomState(1).rand(*X_test.shape) >= 0.3
    corrupted = X_test * mask
    errors = {}
    for noise, level in ((None, 0.0), ("mask", 0.3)):
        ae = _quiet_fit(
            SparseAutoencoder(
                n_hidden=100,
                beta=0.5,
                alpha=1e-4,
                max_iter=150,
                noise=noise,
                noise_level=level,
                random_state=0,
            ),
            X_train,
        )
        repaired = ae.inverse_transform(ae.transform(corrupted))
        errors[noise] = np.mean(np.sum((repaired - X_test) ** 2, axis=1))
    assert errors["mask"] < 0.75 * errors[None], errors


def test_transform_never_corrupts(digits):
    X = digits[0][:100]
    ae = _quiet_fit(SparseAutoencoder(n_hidden=5, max_iter=3, noise="mask", noise_level=0.5), X)
    np.testing.assert_allclose(
        ae.transform(X), _sigmoid(X @ ae.components_.T + ae.intercept_hidden_), rtol=1e-12
    )


@pytest.mark.parametrize("noise", [None, "mask"])
def test_batch_size_gives_the_same_model(digits, noise):
    """The documented rule: batch_size of at least one block (1 024 rows for 64 features)
    gives the identical model, to the last bit, after many iterations; a smaller one the
    same objective to rounding, so a short fit stays close."""
    X = digits[0]
    params = dict(n_hidden=8, max_iter=60, random_state=0, noise=noise)
    params["noise_level"] = 0.2 if noise else 0.0
    one_shot = _quiet_fit(SparseAutoencoder(**params), X)
    for batch_size in (1024, 1500):
        chunked = _quiet_fit(SparseAutoencoder(batch_size=batch_size, **params), X)
        assert chunked.loss_curve_ == one_shot.loss_curve_
        np.testing.assert_array_equal(chunked.components_, one_shot.components_)
    short = dict(params, max_iter=10)
    small = _quiet_fit(SparseAutoencoder(batch_size=64, **short), X)
    reference = _quiet_fit(SparseAutoencoder(**short), X)
    np.testing.assert_allclose(small.loss_curve_, reference.loss_curve_, rtol=1e-9)
    np.testing.assert_allclose(small.components_, reference.components_, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_sparse_input_gives_the_same_model_as_dense(fmt):
    X = sp.random(120, 30, density=0.1, format=fmt, random_state=0)
    dense = _quiet_fit(SparseAutoencoder(n_hidden=5, max_iter=10, random_state=0), X.toarray())
    sparse = _quiet_fit(SparseAutoencoder(n_hidden=5, max_iter=10, random_state=0), X)
    np.testing.assert_allclose(sparse.components_, dense.components_, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(sparse.transform(X), dense.transform(X.toarray()), rtol=1e-6)
    assert sparse.score(X) == pytest.approx(dense.score(X.toarray()), rel=1e-10)


def test_read_only_memmap_fits_in_chunks(tmp_path, digits):
    X = digits[0]
    path = tmp_path / "X.npy"
    np.save(path, X)
    mm = np.load(path, mmap_mode="r")
    ae = _quiet_fit(SparseAutoencoder(n_hidden=6, max_iter=5, batch_size=100, random_state=0), mm)
    ref = _quiet_fit(SparseAutoencoder(n_hidden=6, max_iter=5, batch_size=100, random_state=0), X)
    np.testing.assert_allclose(ae.components_, ref.components_)
    np.testing.assert_array_equal(np.load(path), X)


# ----------------------------------------------------------------------- bad input
BAD_PARAMS = [
    ({"n_hidden": 0}, InvalidParameterError, "n_hidden"),
    ({"rho": 0.0}, InvalidParameterError, "rho"),
    ({"rho": 1.0}, InvalidParameterError, "rho"),
    ({"rho": 1.5}, InvalidParameterError, "rho"),
    ({"beta": -1.0}, InvalidParameterError, "beta"),
    ({"alpha": -1e-3}, InvalidParameterError, "alpha"),
    ({"batch_size": 0}, InvalidParameterError, "batch_size"),
    ({"noise_level": -0.1, "noise": "mask"}, InvalidParameterError, "noise_level"),
    ({"noise": "mask"}, ValueError, "noise_level > 0"),
    ({"noise_level": 0.3}, ValueError, "noise='mask' or noise='gaussian'"),
    ({"noise": "mask", "noise_level": 1.0}, ValueError, "below 1"),
    ({"loss": "cross_entropy", "decoder": "linear"}, ValueError, "sigmoid decoder"),
]


@pytest.mark.parametrize(("params", "error", "match"), BAD_PARAMS)
def test_bad_hyper_parameters_are_named(params, error, match):
    X = np.random.RandomState(0).rand(10, 3)
    with pytest.raises(error, match=match):
        SparseAutoencoder(**params).fit(X)


BAD_X = [
    (np.array([[0.1, np.nan], [0.2, 0.3]]), "NaN"),
    (np.array([[0.1, np.inf], [0.2, 0.3]]), "infinity"),
    (np.array([["a", "b"], ["c", "d"]]), "convert"),
    (np.array([[1 + 1j, 0], [0, 1]]), "[Cc]omplex"),
    (np.empty((0, 3)), "0 sample"),
]


@pytest.mark.parametrize(("X", "match"), BAD_X)
def test_bad_data_is_named(X, match):
    with pytest.raises(ValueError, match=match):
        SparseAutoencoder(n_hidden=2).fit(X)


def test_wrong_feature_count_and_code_width(digits):
    X = digits[0][:50]
    ae = _quiet_fit(SparseAutoencoder(n_hidden=4, max_iter=2), X)
    with pytest.raises(ValueError, match="64 features"):
        ae.transform(X[:, :10])
    with pytest.raises(ValueError, match="n_hidden=4"):
        ae.inverse_transform(np.zeros((3, 5)))


def test_cross_entropy_needs_data_in_unit_range():
    X = np.random.RandomState(0).normal(size=(20, 3))
    with pytest.raises(ValueError, match=r"needs data in \[0, 1\].*MinMaxScaler"):
        SparseAutoencoder(loss="cross_entropy").fit(X)


def test_loading_a_pickle_from_another_version_warns(digits, monkeypatch):
    from skae import _version

    ae = _quiet_fit(SparseAutoencoder(n_hidden=3, max_iter=2), digits[0][:40])
    data = pickle.dumps(ae)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same = pickle.loads(data)  # same version: silent
    assert not hasattr(same, "_skae_version")
    monkeypatch.setattr(_version, "__version__", "99.0")
    with pytest.warns(UserWarning, match=r"pickled with skae .* loaded with skae 99\.0"):
        pickle.loads(data)


# ----------------------------------------------------------------------- issue 8: edges
def test_min_max_scaled_data_get_the_sigmoid_decoder():
    """MinMaxScaler overshoots 1 by an ulp on breast_cancer's own training data; that is
    still data in [0, 1] (tolerance: 4 machine epsilons)."""
    from sklearn.datasets import load_breast_cancer

    X = MinMaxScaler().fit_transform(load_breast_cancer().data)
    assert X.max() > 1.0 and X.max() - 1.0 <= 4 * np.finfo(X.dtype).eps  # the overshoot
    ae = _quiet_fit(SparseAutoencoder(n_hidden=4, max_iter=3, random_state=0), X)
    assert ae.decoder_ == "sigmoid"
    ce = _quiet_fit(SparseAutoencoder(n_hidden=4, max_iter=3, loss="cross_entropy"), X)
    assert np.isfinite(ce.score(X))
    # Beyond the tolerance it is not [0, 1] data, and the message shows the real bounds.
    X[0, 0] = 1.0 + 1e-9
    assert _quiet_fit(SparseAutoencoder(n_hidden=4, max_iter=1), X).decoder_ == "linear"
    with pytest.raises(ValueError, match=r"ranges over \[0\.0, 1\.000000001\]"):
        SparseAutoencoder(loss="cross_entropy").fit(X)


def test_csr_duplicate_entries_are_summed_before_the_range_check():
    # Two stored 0.75 at the same place stand for 1.5.
    X = sp.csr_matrix((np.array([0.75, 0.75, 0.5]), np.array([0, 0, 1]), np.array([0, 2, 3])),
                      shape=(2, 2))
    assert X.toarray().max() == 1.5 and X.data.max() <= 1.0
    with pytest.raises(ValueError, match="needs data in"):
        SparseAutoencoder(n_hidden=2, loss="cross_entropy").fit(X)
    ae = _quiet_fit(SparseAutoencoder(n_hidden=2, max_iter=2), X)
    assert ae.decoder_ == "linear"
    assert X.data.tolist() == [0.75, 0.75, 0.5]  # the caller's matrix is untouched


@pytest.mark.parametrize(
    "change",
    [
        {"activation": "tanh"},
        {"loss": "cross_entropy"},
        {"decoder": "linear"},
        {"batch_size": 7},
        {"tied_weights": True},
    ],
)
def test_transform_and_score_use_what_the_fit_used(digits, change):
    X = digits[0][:200]
    ae = _quiet_fit(SparseAutoencoder(n_hidden=6, max_iter=5, random_state=0), X)
    H, R, score = ae.transform(X), ae.inverse_transform(ae.transform(X)), ae.score(X)
    ae.set_params(**change)
    np.testing.assert_array_equal(ae.transform(X), H)
    np.testing.assert_array_equal(ae.inverse_transform(H), R)
    assert ae.score(X) == score
    assert ae._spec_.activation == "sigmoid" and ae._spec_.loss == "squared"


def test_invalid_hyper_parameters_set_after_fit_do_not_change_transform(digits):
    """Mutating attributes directly (no validation) must not reach transform or score."""
    X = digits[0][:200]
    ae = _quiet_fit(SparseAutoencoder(n_hidden=6, max_iter=5, random_state=0), X)
    H, score = ae.transform(X), ae.score(X)
    ae.batch_size, ae.loss, ae.activation = -1, "bogus", "bogus"
    np.testing.assert_array_equal(ae.transform(X), H)
    assert ae.score(X) == score != -0.0


@pytest.mark.parametrize("name", ["n_hidden", "max_iter", "batch_size"])
def test_bool_counts_are_rejected(name):
    X = np.random.RandomState(0).rand(10, 3)
    with pytest.raises(InvalidParameterError, match=rf"{name}.*bool"):
        SparseAutoencoder(**{name: True}).fit(X)
