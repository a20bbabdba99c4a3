"""Dask arrays on a dask cluster: the fit is a map-reduce of the NumPy
objective's per-chunk pieces, so it equals the NumPy fit; transforms are lazy.

One LocalCluster (2 worker processes, 1 thread each, loopback, no dashboard) serves the
module. The row chunks are deliberately not multiples of the objective's blocks (1 024
rows for the digits; the last chunk is short), so chunk offsets, global block boundaries and the
per-row corruption are all exercised; each evaluation then agrees with NumPy's to
rounding, which L-BFGS amplifies over the iterations (plain settings: about 1e-13 relative
in the parameters after 20 iterations, 6e-9 after 60, 4e-5 after 100), so the fits here
stop after at most 20 iterations per stage, well inside the 1e-8 asked for; single
evaluations are compared to 1e-12.
"""

import logging
import os
import signal
import subprocess
import sys
import types

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV

from skae import SparseAutoencoder, StackedAutoencoder, StackedAutoencoderClassifier
from skae._network import Layer
from skae._parallel import block_rows_for

dask = pytest.importorskip("dask", reason="needs dask: pip install 'skae[dask]'")
da = pytest.importorskip("dask.array", reason="needs dask: pip install 'skae[dask]'")
distributed = pytest.importorskip("distributed", reason="needs distributed: skae[dask]")

RTOL = 1e-8
CHUNKS = 170  # rows per chunk: not a multiple of the blocks; 510 = 3 chunks
PARAMS = ("components_", "intercept_hidden_", "decoder_components_", "intercept_visible_")
short_fit = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        silence_logs=logging.CRITICAL,
    )
    client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


@pytest.fixture(scope="module")
def X():
    return load_digits().data[:510] / 16.0


def _relative(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _tasks_run(client, prefix):
    """How many tasks of a key prefix (the function's name without leading underscores)
    the cluster has computed."""
    return client.run_on_scheduler(lambda dask_scheduler: sum(
        p.state_counts["memory"]
        for name, p in dask_scheduler.task_prefixes.items()
        if name.startswith(prefix)
    ))


def _assert_same_model(dask_ae, numpy_ae, rtol=RTOL):
    assert dask_ae.n_iter_ == numpy_ae.n_iter_
    assert dask_ae.decoder_ == numpy_ae.decoder_
    assert abs(dask_ae.loss_ - numpy_ae.loss_) <= rtol * abs(numpy_ae.loss_)
    np.testing.assert_allclose(dask_ae.loss_curve_, numpy_ae.loss_curve_, rtol=rtol)
    for name in PARAMS:
        value = getattr(dask_ae, name)
        assert type(value) is np.ndarray, name  # fitted attributes are NumPy arrays
        assert _relative(value, getattr(numpy_ae, name)) < rtol, name
    assert (dask_ae.decoder_components_ is dask_ae.components_) == dask_ae.tied_weights


def test_import_skae_does_not_import_dask():
    code = (
        "import sys, skae; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@short_fit
@pytest.mark.parametrize(
    "params",
    [
        {},
        {"tied_weights": True},
        {"noise": "mask", "noise_level": 0.3},
        {"noise": "gaussian", "noise_level": 0.1, "batch_size": 100, "activation": "tanh"},
    ],
    ids=["plain", "tied", "denoising", "denoising-gaussian-two-pass-tanh"],
)
def test_fit_on_cluster_equals_numpy_fit(client, X, params):
    settings = dict(n_hidden=12, max_iter=12, random_state=0, **params)
    expected = SparseAutoencoder(**settings).fit(X)
    Xd = da.from_array(X, chunks=(CHUNKS, -1))
    before = _tasks_run(client, "pass2")
    fitted = SparseAutoencoder(**settings).fit(Xd)
    # on the workers: pass 2 of each of the 3 chunks, at least once per iteration
    assert _tasks_run(client, "pass2") - before >= 3 * fitted.n_iter_
    _assert_same_model(fitted, expected)
    assert fitted.n_features_in_ == X.shape[1]


@short_fit
def test_one_evaluation_equals_the_numpy_objective(client, X, y):
    # The map-reduces themselves, at one theta, without L-BFGS: equal to rounding.
    from skae._dask import DaskFineTuneObjective, DaskObjective
    from skae._network import FineTuneObjective
    from skae._objective import AutoencoderObjective

    rng = np.random.default_rng(0)
    Xd = da.from_array(X, chunks=(CHUNKS, -1)).persist()
    ae = SparseAutoencoder(n_hidden=12, max_iter=3, random_state=0).fit(X)
    theta = rng.normal(scale=0.3, size=ae._spec_.layout.size)
    for batch_size in (None, 100):
        expected = AutoencoderObjective(ae._spec_, X, batch_size=batch_size)(theta)
        got = DaskObjective(ae._spec_, Xd, batch_size=batch_size)(theta)
        assert got[0] == pytest.approx(expected[0], rel=1e-13)
        assert _relative(got[1], expected[1]) < 1e-12

    clf = StackedAutoencoderClassifier((16, 8), alpha=[3e-3, 1e-5], max_iter=3,
                                       softmax_max_iter=3, fine_tune=None, random_state=0)
    clf.fit(X, y)
    labelled = rng.random(len(X)) < 0.7
    labelled[:CHUNKS] = False  # a chunk without labelled rows
    y_index = y[labelled]
    for n_trainable in (1, 3):
        alphas = [0.0] * (n_trainable - 1) + [1e-4]
        numpy_objective = FineTuneObjective(clf.layers_, X[labelled], y_index,
                                            n_trainable=n_trainable, alphas=alphas)
        dask_objective = DaskFineTuneObjective(clf.layers_, Xd, labelled, y_index,
                                               n_trainable=n_trainable, alphas=alphas)
        assert dask_objective.n_chunks == 2
        np.testing.assert_array_equal(dask_objective.theta0, numpy_objective.theta0)
        theta = numpy_objective.theta0 + rng.normal(scale=0.1, size=len(numpy_objective.theta0))
        expected, got = numpy_objective(theta), dask_objective(theta)
        assert got[0] == pytest.approx(expected[0], rel=1e-13)
        assert _relative(got[1], expected[1]) < 1e-12
        assert dask_objective.last_terms == pytest.approx(numpy_objective.last_terms, rel=1e-13)


@pytest.mark.parametrize("batch_size", [None, 300])
def test_chunks_across_block_boundaries_evaluate_as_numpy(client, batch_size):
    # Chunks of 700 rows over 2 100: the blocks' boundaries fall inside chunks, which cut
    # their rows there, and each row is corrupted as its global index says.
    from skae._dask import DaskObjective
    from skae._objective import AutoencoderObjective, AutoencoderSpec, Corruption

    X = _digits_rows(2100)
    assert 700 % DIGITS_BLOCK and DIGITS_BLOCK < 2100
    spec = AutoencoderSpec(64, 12)
    corruption = Corruption("mask", 0.3, seed=7)
    theta = np.random.default_rng(0).normal(scale=0.3, size=spec.layout.size)
    Xd = da.from_array(X, chunks=(700, -1)).persist()
    expected = AutoencoderObjective(spec, X, corruption=corruption, batch_size=batch_size)
    got = DaskObjective(spec, Xd, corruption=corruption, batch_size=batch_size)(theta)
    assert got[0] == pytest.approx(expected(theta)[0], rel=1e-13)
    assert _relative(got[1], expected(theta)[1]) < 1e-12


def test_chunk_objectives_tell_the_scheduler_their_size(X, y):
    # dask's sizeof of a persisted chunk objective counts its arrays, so the scheduler
    # does not move a chunk between workers as if it cost nothing.
    from dask.sizeof import sizeof

    from skae._dask import _chunk_objective, _finetune_chunk

    ae = SparseAutoencoder(n_hidden=12, max_iter=200, tol=1e-3).fit(X)
    chunk = _chunk_objective(X, 0, ae._spec_, None, None, 256)
    assert sizeof(chunk) >= X.nbytes + len(X) * 12 * 8  # data and hidden activations
    layers = [Layer(ae.components_, ae.intercept_hidden_, "sigmoid"),
              Layer(np.zeros((10, 12)), np.zeros(10), "softmax")]
    chunk = _finetune_chunk(X, None, y, layers, 2, (0.0, 0.0))
    assert sizeof(chunk) >= X.nbytes


def _digits_rows(n_rows):
    """``n_rows`` rows of the digits, repeated as often as needed."""
    X = load_digits().data / 16.0
    return np.tile(X, (-(-n_rows // len(X)), 1))[:n_rows]


# The rows per block of the partition for the digits' 64 features and 12 hidden units.
DIGITS_BLOCK = block_rows_for(64, 12)


@short_fit
def test_chunks_of_whole_blocks_give_the_numpy_fit_bit_for_bit():
    # One block per chunk and at most 8 chunks: the same additions in the same order as
    # on one machine. Any scheduler gives the same result: here dask's threads.
    X = _digits_rows(2 * DIGITS_BLOCK - 300)
    settings = dict(n_hidden=12, max_iter=15, random_state=0, noise="mask", noise_level=0.2)
    expected = SparseAutoencoder(**settings).fit(X)
    Xd = da.from_array(X, chunks=(DIGITS_BLOCK, -1))
    assert Xd.numblocks[0] == 2
    with dask.config.set(scheduler="threads"):
        fitted = SparseAutoencoder(**settings).fit(Xd)
    for name in PARAMS:
        np.testing.assert_array_equal(getattr(fitted, name), getattr(expected, name))
    assert fitted.loss_ == expected.loss_


@short_fit
@pytest.mark.parametrize("n_blocks", [3.5, 4])
def test_three_or_more_chunks_of_whole_blocks_give_the_numpy_fit_bit_for_bit(n_blocks):
    # Two partial sums can be added in either order with the same result; three or more
    # cannot: only the NumPy order, chunk after chunk, gives the NumPy fit bit for bit
    # (3.5: three whole blocks and a short one; 4: four whole blocks).
    X = _digits_rows(int(n_blocks * DIGITS_BLOCK))
    settings = dict(n_hidden=12, max_iter=15, random_state=0, noise="mask", noise_level=0.2)
    expected = SparseAutoencoder(**settings).fit(X)
    Xd = da.from_array(X, chunks=(DIGITS_BLOCK, -1))
    assert Xd.numblocks[0] >= 3
    with dask.config.set(scheduler="threads"):
        fitted = SparseAutoencoder(**settings).fit(Xd)
    for name in PARAMS:
        np.testing.assert_array_equal(getattr(fitted, name), getattr(expected, name))
    assert fitted.loss_ == expected.loss_
    np.testing.assert_array_equal(fitted.loss_curve_, expected.loss_curve_)


@short_fit
def test_the_result_does_not_depend_on_the_scheduler(client, X):
    settings = dict(n_hidden=8, max_iter=8, random_state=1)
    Xd = da.from_array(X, chunks=(CHUNKS, -1))
    on_cluster = SparseAutoencoder(**settings).fit(Xd)
    for scheduler in ("threads", "synchronous"):
        with dask.config.set(scheduler=scheduler):
            local = SparseAutoencoder(**settings).fit(Xd)
        for name in PARAMS:
            np.testing.assert_array_equal(getattr(local, name), getattr(on_cluster, name))


@short_fit
def test_float32_stays_float32(X):
    X32 = X.astype(np.float32)
    settings = dict(n_hidden=8, max_iter=10, random_state=0)
    with dask.config.set(scheduler="threads"):
        fitted = SparseAutoencoder(**settings).fit(da.from_array(X32, chunks=(CHUNKS, -1)))
        H = fitted.transform(da.from_array(X32, chunks=(CHUNKS, -1)))
        assert H.dtype == np.float32 and H.compute().dtype == np.float32
    expected = SparseAutoencoder(**settings).fit(X32)
    for name in PARAMS:
        assert getattr(fitted, name).dtype == np.float32
        np.testing.assert_allclose(getattr(fitted, name), getattr(expected, name), rtol=1e-3,
                                   atol=1e-5)


@short_fit
def test_transform_is_lazy_and_equals_numpy(client, X):
    ae = SparseAutoencoder(n_hidden=12, max_iter=20, random_state=0).fit(X)
    Xd = da.from_array(X, chunks=(CHUNKS, -1))
    H = ae.transform(Xd)
    assert isinstance(H, da.Array)  # nothing computed yet
    assert H.chunks == (Xd.chunks[0], (12,))
    np.testing.assert_allclose(H.compute(), ae.transform(X), rtol=1e-12)
    R = ae.inverse_transform(H)
    assert isinstance(R, da.Array)
    np.testing.assert_allclose(R.compute(), ae.inverse_transform(ae.transform(X)), rtol=1e-12)
    assert ae.score(Xd) == pytest.approx(ae.score(X), rel=1e-12)
    # Fitted on the cluster, used on NumPy arrays: an ordinary estimator.
    fitted = SparseAutoencoder(n_hidden=12, max_iter=5, random_state=0).fit(Xd)
    assert fitted.transform(X).shape == (len(X), 12)


@short_fit
def test_stacked_autoencoder_on_cluster_equals_numpy(client, X):
    settings = dict(hidden_layer_sizes=(16, 8), max_iter=10, random_state=0)
    expected = StackedAutoencoder(**settings).fit(X)
    Xd = da.from_array(X, chunks=(CHUNKS, -1))
    fitted = StackedAutoencoder(**settings).fit(Xd)
    for dask_layer, numpy_layer in zip(fitted.autoencoders_, expected.autoencoders_):
        _assert_same_model(dask_layer, numpy_layer)
    codes = fitted.transform(Xd)
    assert isinstance(codes, da.Array)
    np.testing.assert_allclose(codes.compute(), expected.transform(X), rtol=1e-7)
    back = fitted.inverse_transform(codes)
    assert isinstance(back, da.Array)
    np.testing.assert_allclose(back.compute(), expected.inverse_transform(expected.transform(X)),
                               rtol=1e-7)


@pytest.fixture(scope="module")
def y():
    return load_digits().target[:510]


def _assert_same_classifier(fitted, expected, rtol=RTOL):
    assert fitted.stage_n_iter_ == expected.stage_n_iter_
    np.testing.assert_array_equal(fitted.classes_, expected.classes_)
    assert abs(fitted.loss_ - expected.loss_) <= rtol * abs(expected.loss_)
    for stage in ("softmax", "fine_tuning"):
        np.testing.assert_allclose(fitted.loss_curves_[stage], expected.loss_curves_[stage],
                                   rtol=rtol)
    for k, (got, want) in enumerate(zip(fitted.layers_, expected.layers_)):
        assert type(got.weights) is np.ndarray, k
        assert _relative(got.weights, want.weights) < rtol, k
        assert _relative(got.bias, want.bias) < rtol, k


@short_fit
@pytest.mark.parametrize(
    "fine_tune, unlabelled",
    [("all", True), ("top", False)],
    ids=["all-semi-supervised-dask-labels", "top"],
)
def test_classifier_fine_tuning_on_cluster_equals_numpy(client, X, y, fine_tune, unlabelled):
    # Fine-tuning amplifies rounding differences faster than pretraining (about 10x per
    # 5 iterations here), so it stops after 12 iterations, well inside 1e-8.
    # softmax_max_iter=4 stops stage 2 early, so that "top" has iterations to do.
    y = y.copy()
    if unlabelled:
        y[:CHUNKS] = -1  # the first chunk has no labelled row: it is not used by stages 2-3
        y[200::3] = -1
    settings = dict(hidden_layer_sizes=(16, 8), alpha=[3e-3, 1e-5], max_iter=6,
                    softmax_max_iter=4, fine_tune=fine_tune, fine_tune_max_iter=12,
                    random_state=0)
    expected = StackedAutoencoderClassifier(**settings).fit(X, y)
    Xd = da.from_array(X, chunks=(CHUNKS, -1))
    labels = da.from_array(y, chunks=CHUNKS) if unlabelled else y  # dask or NumPy labels
    before = _tasks_run(client, "finetune_sums")
    fitted = StackedAutoencoderClassifier(**settings).fit(Xd, labels)
    assert fitted.stage_n_iter_["fine_tuning"] > 0
    supervised_iterations = fitted.stage_n_iter_["softmax"] + fitted.stage_n_iter_["fine_tuning"]
    n_chunks = 2 if unlabelled else 3  # a chunk without labelled rows takes no part
    assert _tasks_run(client, "finetune_sums") - before >= n_chunks * supervised_iterations
    _assert_same_classifier(fitted, expected)
    for dask_layer, numpy_layer in zip(fitted.autoencoders_, expected.autoencoders_):
        _assert_same_model(dask_layer, numpy_layer)  # pretrained on every row
    assert fitted.n_features_in_ == X.shape[1]


@short_fit
def test_classifier_predictions_on_dask_arrays_are_lazy_and_equal_numpy(client, X, y):
    labels = np.array(["even", "odd"], dtype=object)[y % 2]  # predict returns these
    clf = StackedAutoencoderClassifier((16,), max_iter=15, fine_tune_max_iter=15,
                                       random_state=0).fit(X, labels)
    Xd = da.from_array(X, chunks=(CHUNKS, -1))
    for method in ("predict", "predict_proba", "predict_log_proba", "decision_function",
                   "transform"):
        lazy = getattr(clf, method)(Xd)
        assert isinstance(lazy, da.Array), method  # nothing computed yet
        assert lazy.chunks[0] == Xd.chunks[0], method
        expected = getattr(clf, method)(X)
        assert lazy.shape == expected.shape and lazy.dtype == expected.dtype, method
        computed = lazy.compute()
        if method == "predict":
            np.testing.assert_array_equal(computed, expected)
        else:
            np.testing.assert_allclose(computed, expected, rtol=1e-12, atol=1e-14)
    assert clf.score(Xd, labels) == clf.score(X, labels)


@short_fit
def test_classifier_cluster_failure_in_fine_tuning_keeps_the_model(X, y, monkeypatch):
    from skae._dask import DaskFineTuneObjective

    settings = dict(hidden_layer_sizes=(8,), max_iter=5, softmax_max_iter=5,
                    fine_tune_max_iter=5)
    clf = StackedAutoencoderClassifier(**settings, random_state=0).fit(X, y)
    before = [(layer.weights.copy(), layer.bias.copy()) for layer in clf.layers_]
    evaluate, compute, calls = DaskFineTuneObjective.__call__, dask.compute, []

    def fail_in_fine_tuning(self, theta):  # what distributed raises when workers keep dying
        calls.append(1)
        if len(calls) == 8:  # mid-fit, in the supervised stages
            worker = types.SimpleNamespace(address="tcp://127.0.0.1:1")
            error = distributed.KilledWorker("finetune_sums-abc", worker, 3)
            monkeypatch.setattr(dask, "compute", lambda *a, **k: (_ for _ in ()).throw(error))
        try:
            return evaluate(self, theta)
        finally:
            monkeypatch.setattr(dask, "compute", compute)

    monkeypatch.setattr(DaskFineTuneObjective, "__call__", fail_in_fine_tuning)
    with dask.config.set(scheduler="threads"):
        with pytest.raises(RuntimeError, match="cluster failed.*KilledWorker"):
            clf.set_params(random_state=5).fit(da.from_array(X, chunks=(CHUNKS, -1)), y)
    assert len(calls) == 8
    for (W, b), layer in zip(before, clf.layers_):
        np.testing.assert_array_equal(layer.weights, W)
        np.testing.assert_array_equal(layer.bias, b)


def test_classifier_labels_must_match_the_rows(X, y):
    Xd = da.from_array(X, chunks=(CHUNKS, -1))
    with dask.config.set(scheduler="threads"):
        with pytest.raises(ValueError, match="inconsistent numbers of samples"):
            StackedAutoencoderClassifier((4,)).fit(Xd, y[:-1])
        with pytest.raises(ValueError, match="requires y"):
            StackedAutoencoderClassifier((4,)).fit(Xd, None)
        with pytest.raises(ValueError, match="no labelled rows"):
            StackedAutoencoderClassifier((4,), max_iter=5).fit(Xd, np.full(len(X), -1))


@short_fit
def test_grid_search_under_dask_joblib_backend(client, X):
    import joblib

    ae = SparseAutoencoder(n_hidden=8, max_iter=15, random_state=0)
    grid = {"rho": [0.05, 0.2], "beta": [0.0, 3.0]}
    serial = GridSearchCV(ae, grid, cv=2, n_jobs=1).fit(X)

    def batches_run_on_the_cluster():
        return client.run_on_scheduler(lambda dask_scheduler: sum(
            prefix.state_counts["memory"]
            for name, prefix in dask_scheduler.task_prefixes.items()
            if name.startswith("batch_of__fit_and_score")
        ))

    before = batches_run_on_the_cluster()
    with joblib.parallel_backend("dask"):
        on_cluster = GridSearchCV(ae, grid, cv=2, n_jobs=-1).fit(X)
    assert batches_run_on_the_cluster() > before  # the fits ran on the workers
    assert on_cluster.best_params_ == serial.best_params_
    np.testing.assert_allclose(
        on_cluster.cv_results_["mean_test_score"], serial.cv_results_["mean_test_score"],
        rtol=1e-12,
    )


@short_fit
def test_dask_ml_grid_search_works_unchanged(client, X, y):
    # dask-ml is not a dependency of skae[dask]; this documents that its search runs a
    # skae pipeline as it is, on NumPy and on dask arrays.
    dms = pytest.importorskip(
        "dask_ml.model_selection", reason="dask-ml is not installed (pip install dask-ml)"
    )
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    pipe = make_pipeline(SparseAutoencoder(n_hidden=8, max_iter=15, random_state=0),
                         LogisticRegression(max_iter=50))
    grid = {"sparseautoencoder__rho": [0.05, 0.2], "sparseautoencoder__beta": [0.0, 3.0]}
    serial = GridSearchCV(pipe, grid, cv=2).fit(X, y)
    for data in [(X, y), (da.from_array(X, chunks=(CHUNKS, -1)), da.from_array(y, CHUNKS))]:
        search = dms.GridSearchCV(pipe, grid, cv=2).fit(*data)
        assert search.best_params_ == serial.best_params_
        np.testing.assert_allclose(search.cv_results_["mean_test_score"],
                                   serial.cv_results_["mean_test_score"], rtol=1e-12)


@short_fit
def test_worker_killed_mid_fit_the_fit_completes_on_the_rest(client, X, monkeypatch):
    from skae._dask import DaskObjective

    settings = dict(n_hidden=12, max_iter=10, random_state=0)
    expected = SparseAutoencoder(**settings).fit(X)
    ae = SparseAutoencoder(**settings)
    evaluate, calls = DaskObjective.__call__, []

    def kill_before_third_evaluation(self, theta):
        calls.append(1)
        if len(calls) == 3:  # the chunks on that worker are lost and recomputed
            pids = client.run(os.getpid)
            os.kill(sorted(pids.values())[0], signal.SIGKILL)
        return evaluate(self, theta)

    monkeypatch.setattr(DaskObjective, "__call__", kill_before_third_evaluation)
    ae.fit(da.from_array(X, chunks=(CHUNKS, -1)))
    assert len(calls) > 3
    _assert_same_model(ae, expected)
    client.wait_for_workers(2, timeout=60)  # the nanny restarts it for the next tests


@short_fit
def test_cluster_failure_raises_a_clear_error_and_keeps_the_model(client, X, monkeypatch):
    import skae._dask as skae_dask

    Xd = da.from_array(X, chunks=(CHUNKS, -1))
    ae = SparseAutoencoder(n_hidden=12, max_iter=10, random_state=0).fit(Xd)
    before = {name: getattr(ae, name).copy() for name in PARAMS}
    compute, calls = dask.compute, []

    def failing_compute(*args, **kwargs):  # what distributed raises when workers keep dying
        calls.append(1)
        if len(calls) == 4:
            worker = types.SimpleNamespace(address="tcp://127.0.0.1:1")
            raise distributed.KilledWorker("_pass2-abc", worker, 3)
        return compute(*args, **kwargs)

    monkeypatch.setattr(skae_dask._dask()[0], "compute", failing_compute)
    with pytest.raises(RuntimeError, match="cluster failed.*KilledWorker.*fit again"):
        ae.set_params(random_state=5).fit(Xd)
    for name in PARAMS:
        np.testing.assert_array_equal(getattr(ae, name), before[name])


# --------------------------------------------------------------------------- bad input
@short_fit
def test_column_chunks_are_refused_with_the_fix(X):
    Xd = da.from_array(X, chunks=(CHUNKS, 32))
    with pytest.raises(ValueError, match=r"chunked along its columns.*rechunk\(\{1: -1\}\)"):
        SparseAutoencoder(n_hidden=4).fit(Xd)
    ae = SparseAutoencoder(n_hidden=4, max_iter=200, tol=1e-3).fit(X)
    with pytest.raises(ValueError, match="rechunk"):
        ae.transform(Xd)


@short_fit
def test_unknown_chunk_sizes_are_computed(X):
    Xd = da.from_array(X, chunks=(CHUNKS, -1))
    keep = X[:, 20] > 0.2
    Xnan = Xd[Xd[:, 20] > 0.2]
    assert np.isnan(Xnan.shape[0])
    settings = dict(n_hidden=8, max_iter=10, random_state=0)
    with dask.config.set(scheduler="threads"):
        fitted = SparseAutoencoder(**settings).fit(Xnan)
        H = fitted.transform(Xnan)
        score = fitted.score(Xnan)
    expected = SparseAutoencoder(**settings).fit(X[keep])
    _assert_same_model(fitted, expected)
    np.testing.assert_allclose(H.compute(scheduler="threads"), expected.transform(X[keep]),
                               rtol=1e-7)
    assert score == pytest.approx(expected.score(X[keep]), rel=1e-7)


@short_fit
def test_classifier_score_computes_unknown_chunk_sizes(X, y):
    """The classifier's score, with X and y filtered lazily (chunk sizes unknown): the
    predictions and labels are computed first, as accuracy needs their lengths."""
    Xd, yd = da.from_array(X, chunks=(CHUNKS, -1)), da.from_array(y, chunks=CHUNKS)
    keep = X[:, 20] > 0.2
    Xnan, ynan = Xd[Xd[:, 20] > 0.2], yd[Xd[:, 20] > 0.2]
    assert np.isnan(Xnan.shape[0]) and np.isnan(ynan.shape[0])
    clf = StackedAutoencoderClassifier(
        (8,), max_iter=5, softmax_max_iter=5, fine_tune_max_iter=5, random_state=0
    ).fit(X, y)
    with dask.config.set(scheduler="threads"):
        for labels in (ynan, y[keep]):
            assert clf.score(Xnan, labels) == clf.score(X[keep], y[keep])
        weights = da.from_array(np.linspace(0.5, 1.5, len(y)), chunks=CHUNKS)
        expected = clf.score(X, y, sample_weight=np.linspace(0.5, 1.5, len(y)))
        assert clf.score(Xd, yd, sample_weight=weights) == pytest.approx(expected, rel=1e-12)


@short_fit
@pytest.mark.parametrize(
    "bad, message",
    [
        (np.nan, "Input X contains NaN"),
        (np.inf, "(?s)contains infinity.*Replace or drop"),
    ],
)
def test_non_finite_values_are_found_on_the_cluster(client, X, bad, message):
    X_bad = X.copy()
    X_bad[400, 3] = bad  # in the third chunk
    ae = SparseAutoencoder(n_hidden=4, max_iter=200, tol=1e-3).fit(X)
    W1 = ae.components_.copy()
    Xd = da.from_array(X_bad, chunks=(CHUNKS, -1))
    with pytest.raises(ValueError, match=message):
        ae.fit(Xd)
    np.testing.assert_array_equal(ae.components_, W1)  # the previous model is intact
    with pytest.raises(ValueError, match=message):
        ae.score(Xd)
    with pytest.raises(ValueError, match=message):
        ae.transform(Xd).compute()
    # a stack names itself, as on NumPy input (its first layer's message named that layer)
    small = X_bad[300:450]  # 150 rows, the bad one (row 400) in the last chunk
    Xs = da.from_array(small, chunks=(50, -1))
    y = np.arange(len(small)) % 3
    for stack, labels in ((StackedAutoencoder((4,), max_iter=2), ()),
                          (StackedAutoencoderClassifier((4,), max_iter=2), (y,))):
        named = rf"(?s){message}.*{type(stack).__name__} does not" if np.isnan(bad) else message
        with pytest.raises(ValueError, match=named):
            stack.fit(Xs, *labels)


@short_fit
def test_input_errors_match_the_numpy_ones(X):
    with dask.config.set(scheduler="threads"):
        with pytest.raises(ValueError, match="cross_entropy' needs data in \\[0, 1\\]"):
            SparseAutoencoder(n_hidden=4, loss="cross_entropy").fit(da.from_array(X * 2))
        with pytest.raises(ValueError, match="2-D"):
            SparseAutoencoder(n_hidden=4).fit(da.zeros((10, 4, 4)))
        with pytest.raises(ValueError, match="minimum of 2"):
            SparseAutoencoder(n_hidden=4).fit(da.from_array(X[:1]))
        with pytest.raises(TypeError, match="NumPy chunks"):
            sparse = pytest.importorskip("scipy.sparse")
            Xs = da.from_array(X).map_blocks(sparse.csr_matrix)
            SparseAutoencoder(n_hidden=4).fit(Xs)
        ae = SparseAutoencoder(n_hidden=4, max_iter=200, tol=1e-3).fit(X)
        with pytest.raises(ValueError, match="is expecting 64 features"):
            ae.transform(da.from_array(X[:, :10]))
        with pytest.raises(ValueError, match="n_hidden=4 columns"):
            ae.inverse_transform(da.zeros((5, 3)))
        # other dask collections, and arrays of other ranks, in every method: skae's
        # messages (a Delayed answered every attribute, and the feature count was
        # checked before the rank)
        one_d = da.from_array(X[:, 0], chunks=40)
        bag = pytest.importorskip("dask.bag", reason="dask.bag is not installed")
        for call in (ae.fit, ae.transform, ae.score, ae.score_samples):
            with pytest.raises(TypeError, match=r"accepts dask arrays and dask DataFrames, "
                               r"got a Delayed\w*; .*da.from_delayed"):
                call(dask.delayed(X))
            with pytest.raises(TypeError, match="got a Bag"):
                call(bag.from_sequence([1, 2, 3]))
            with pytest.raises(ValueError, match=r"2-D dask array X, got 1 dimensions.*"
                               r"X.reshape\(-1, 1\) if it holds one feature"):
                call(one_d)
        with pytest.raises(ValueError, match="got 0 dimensions.*one value is not a data set"):
            ae.transform(da.from_array(np.float64(1.0)))
        # no rows: the NumPy path's message (lazy results of no rows, before)
        empty = da.from_array(X[:0], chunks=(10, -1))
        for call in (ae.transform, ae.score, ae.score_samples):
            with pytest.raises(ValueError, match=r"0 sample\(s\) \(shape=\(0, 64\)\) while "
                               "a minimum of 1 is required by SparseAutoencoder"):
                call(empty)
        with pytest.raises(ValueError, match="0 sample.*minimum of 1"):
            ae.inverse_transform(da.zeros((0, 4)))


@short_fit
def test_dask_dataframe_is_accepted_with_feature_names(X):
    pytest.importorskip("pyarrow", reason="dask.dataframe needs pyarrow")
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(X, columns=[f"pixel{i}" for i in range(X.shape[1])])
    ddf = dd.from_pandas(frame, npartitions=3)
    settings = dict(n_hidden=8, max_iter=10, random_state=0)
    with dask.config.set(scheduler="threads"):
        fitted = SparseAutoencoder(**settings).fit(ddf)
        H = fitted.transform(ddf).compute()
    expected = SparseAutoencoder(**settings).fit(frame)
    _assert_same_model(fitted, expected)
    assert list(fitted.feature_names_in_) == list(frame.columns)
    np.testing.assert_allclose(H, expected.transform(frame), rtol=1e-7)


@short_fit
@pytest.mark.parametrize("loss", ["squared", "cross_entropy"])
def test_score_samples_is_lazy_and_equals_numpy(client, X, loss):
    ae = SparseAutoencoder(n_hidden=12, loss=loss, max_iter=20, random_state=0).fit(X)
    stack = StackedAutoencoder((12, 6), alpha=[1e-3, 0.0], loss=loss, max_iter=10,
                               random_state=0).fit(X)
    Xd = da.from_array(X, chunks=(CHUNKS, -1))
    for est in (ae, stack):
        scores = est.score_samples(Xd)
        assert isinstance(scores, da.Array)  # nothing computed yet
        assert scores.chunks == (Xd.chunks[0],) and scores.dtype == np.float64
        computed = scores.compute()
        assert isinstance(computed, np.ndarray) and computed.shape == (len(X),)
        np.testing.assert_allclose(computed, est.score_samples(X), rtol=1e-12)
    assert ae.score(Xd) == pytest.approx(ae.score_samples(Xd).mean().compute(), rel=1e-12)
    # bad input: the checks of transform, on the cluster when the values are needed
    with pytest.raises(ValueError, match="is expecting 64 features"):
        ae.score_samples(da.from_array(X[:, :10]))
    with pytest.raises(ValueError, match="Input X contains NaN"):
        stack.score_samples(da.from_array(np.where(X > 0.5, np.nan, X))).compute()
    if loss == "cross_entropy":
        with pytest.raises(ValueError, match=r"needs data in \[0, 1\]"):
            ae.score_samples(da.from_array(X * 3, chunks=(CHUNKS, -1))).compute()


@short_fit
def test_lazy_results_keep_the_parameters_of_the_call(X):
    """A lazy score_samples (as transform, inverse_transform and the stack's scores) is
    computed with the parameters the model had when it was called: a refit in between
    used to change the scores of the earlier graph."""
    ae = SparseAutoencoder(n_hidden=12, max_iter=10, random_state=0).fit(X)
    Xd = da.from_array(X, chunks=(CHUNKS, -1))
    lazy = {"score_samples": ae.score_samples(Xd), "transform": ae.transform(Xd)}
    expected = {"score_samples": ae.score_samples(X), "transform": ae.transform(X)}
    ae.set_params(random_state=1).fit(X[::-1])
    for name, graph in lazy.items():
        np.testing.assert_allclose(graph.compute(scheduler="sync"), expected[name], rtol=1e-12)


@short_fit
def test_lazy_stack_results_keep_the_layers_of_the_call(X):
    """The stacks' lazy scores and predictions use the layers they had when called, even
    when a layer is changed or replaced before compute."""
    y = load_digits().target[: len(X)]
    Xd = da.from_array(X, chunks=(CHUNKS, -1))
    stack = StackedAutoencoder((8, 4), alpha=[1e-3, 0.0], max_iter=5, random_state=0).fit(X)
    clf = StackedAutoencoderClassifier((8,), max_iter=5, softmax_max_iter=5,
                                       fine_tune_max_iter=5, random_state=0).fit(X, y)
    lazy = [stack.score_samples(Xd), clf.predict_proba(Xd)]
    expected = [stack.score_samples(X), clf.predict_proba(X)]
    other = StackedAutoencoder((8, 4), alpha=[1e-3, 0.0], max_iter=5, random_state=1).fit(
        X[::-1])
    stack.autoencoders_[0] = other.autoencoders_[0]
    clf.layers_[0] = Layer(clf.layers_[0].weights * 2.0, clf.layers_[0].bias, "sigmoid")
    for graph, values in zip(lazy, expected):
        np.testing.assert_allclose(graph.compute(scheduler="sync"), values, rtol=1e-12)
