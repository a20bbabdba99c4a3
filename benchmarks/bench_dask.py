"""Dask benchmark: time per L-BFGS iteration on a LocalCluster, and bytes moved.

The same data are fitted by ``SparseAutoencoder(n_hidden=196, max_iter=K, tol=0)``:

* ``numpy``: an in-memory NumPy array (BLAS on one thread, and on all threads);
* ``dask, W workers``: a ``dask.array`` of the same rows (chunks of ``--chunk`` rows) on a
  ``distributed.LocalCluster`` of W worker processes with one thread each, on loopback.

Per fit it reports the wall time of ``fit`` divided by ``n_iter_`` (everything: validation,
persisting, L-BFGS), the median and mean time per objective evaluation (each timed; the
ratio to NumPy on one BLAS thread uses the medians),
evaluations per iteration, and the bytes moved per evaluation:

* ``stated``: what the design moves per evaluation. ``theta`` (8·P bytes, P parameters) is
  one key of the graph: client to scheduler, scheduler to the worker that holds it first,
  that worker to each other worker (8·P·(1 + W) in all); the sparsity term (8·h) to each
  worker; the partial sums of each chunk whose fold runs on another worker (pass 1: 8·h;
  pass 2: itemsize·P); the totals back to the client (itemsize·P + 8·h). Upper bound used
  here: every chunk's partial sums move once. Not counted: the graph's task messages
  and the cluster's heartbeats (part of ``loopback``).
* ``worker outgoing``: the workers' own counters (``transfer_outgoing_bytes_total``: data
  a worker sent to another worker or to the client), measured;
* ``loopback``: all bytes through the loopback interface during the fit (``/proc/net/dev``;
  client, scheduler and workers, heartbeats included; other processes on the machine
  using loopback would add to it), measured.

The data are persisted on the workers before the timed fit (a fit persists them itself
otherwise, once); the measured bytes include the fit's small set-up (range check, chunk
objectives), spread over its evaluations.

Usage::

    python benchmarks/bench_dask.py                 # 5 000 MNIST rows, K = 10, W = 1 and 2
    python benchmarks/bench_dask.py --rows 20000 --max-iter 20 --json /tmp/dask.json
"""

import argparse
import logging
import time
import warnings

import numpy as np
from _common import RESULTS, machine, mnist_rows, write_json

N_HIDDEN = 196


def load_rows(n_rows):
    return mnist_rows(n_rows, seed=1)


def lo_bytes():
    try:
        with open("/proc/net/dev") as f:
            for line in f:
                if line.strip().startswith("lo:"):
                    fields = line.split(":")[1].split()
                    return int(fields[0])  # received = transmitted on loopback
    except OSError:
        pass
    return None


def timed_objective():
    """Wrap DaskObjective.__call__ and AutoencoderObjective.__call__ to time evaluations."""
    from skae import _dask, _objective

    record = {"n": 0, "seconds": 0.0, "each": []}
    originals = {}
    for cls in (_dask.DaskObjective, _objective.AutoencoderObjective):
        original = cls.__call__
        originals[cls] = original

        def wrapped(self, theta, _original=original):
            start = time.perf_counter()
            try:
                return _original(self, theta)
            finally:
                record["each"].append(time.perf_counter() - start)
                record["seconds"] += record["each"][-1]
                record["n"] += 1

        cls.__call__ = wrapped

    def restore():
        for cls, original in originals.items():
            cls.__call__ = original

    return record, restore


def fit_once(X, max_iter):
    from skae import SparseAutoencoder

    record, restore = timed_objective()
    try:
        ae = SparseAutoencoder(n_hidden=N_HIDDEN, max_iter=max_iter, tol=0.0, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # max_iter is reached on purpose
            start = time.perf_counter()
            ae.fit(X)
            seconds = time.perf_counter() - start
    finally:
        restore()
    return ae, {
        "fit_s": seconds,
        "n_iter": ae.n_iter_,
        "per_iter_s": seconds / ae.n_iter_,
        "evaluations": record["n"],
        "per_eval_s": record["seconds"] / record["n"],
        "median_eval_s": float(np.median(record["each"])),
        "evals_per_iter": record["n"] / ae.n_iter_,
    }


def run_numpy(X, max_iter, threads):
    from threadpoolctl import threadpool_limits

    with threadpool_limits(threads):
        ae, result = fit_once(X, max_iter)
    return ae, result


def run_dask(X, max_iter, n_workers, chunk):
    import dask.array as da
    from distributed import Client, LocalCluster
    from distributed import wait as distributed_wait

    with LocalCluster(
        n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None, silence_logs=logging.ERROR,
    ) as cluster, Client(cluster) as client:
        # The data are put on the workers first, so that the bytes counted during the fit
        # are those of the evaluations (and of the fit's small set-up: range check, chunk
        # objectives), not the one-off transfer of the data.
        Xd = client.persist(da.from_array(X, chunks=(chunk, -1)))
        distributed_wait(Xd)
        fit_once(Xd[: 4 * chunk], 2)  # warm the workers up (imports, first BLAS calls)

        def counters():
            out = client.run(lambda dask_worker: dask_worker.transfer_outgoing_bytes_total)
            return sum(out.values())

        w0, l0 = counters(), lo_bytes()
        ae, result = fit_once(Xd, max_iter)
        w1, l1 = counters(), lo_bytes()
        n = result["evaluations"]
        n_chunks = len(Xd.chunks[0])
        P = ae._spec_.layout.size
        h, itemsize = N_HIDDEN, X.dtype.itemsize
        stated = (
            8 * P * (1 + n_workers)  # theta: client -> scheduler -> worker -> the others
            + n_workers * 8 * h  # the sparsity term to each worker
            + n_chunks * (8 * h + itemsize * P)  # partial sums (upper bound: all move)
            + itemsize * P + 8 * h  # totals to the client
        )
        result.update(
            n_workers=n_workers,
            n_chunks=n_chunks,
            n_parameters=P,
            theta_bytes=8 * P,
            stated_bytes_per_eval=stated,
            worker_outgoing_bytes_per_eval=(w1 - w0) / n,
            loopback_bytes_per_eval=None if l0 is None else (l1 - l0) / n,
        )
    return ae, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--max-iter", type=int, default=10)
    parser.add_argument("--chunk", type=int, default=1280, help="rows per dask chunk")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--json", default=str(RESULTS / "dask.json"))
    args = parser.parse_args()

    X, source = load_rows(args.rows)
    print(f"data: {X.shape[0]} x {X.shape[1]} float64 ({X.nbytes / 1e6:.1f} MB), {source}")
    print(f"SparseAutoencoder(n_hidden={N_HIDDEN}, max_iter={args.max_iter}, tol=0)")
    environment = machine()
    print(f"BLAS: {environment['blas']}; CPUs: {environment['n_cpus']}; "
          f"load: {environment['load_average']}")

    rows, models = [], {}
    for threads in (1, None):
        label = f"numpy, BLAS {threads or 'all'} thread{'s' if threads != 1 else ''}"
        models[label], result = run_numpy(X, args.max_iter, threads)
        rows.append({"setup": label, **result})
    for w in args.workers:
        label = f"dask, LocalCluster {w} worker{'s' if w > 1 else ''} x 1 thread"
        models[label], result = run_dask(X, args.max_iter, w, args.chunk)
        rows.append({"setup": label, **result})

    reference = rows[0]
    first = next(iter(models.values()))
    print()
    print("| setup | s / iteration | median s / evaluation | evals / iter | "
          "vs numpy 1 thread (median eval) | bytes / eval: stated | worker outgoing | "
          "loopback |")
    print("|---|---|---|---|---|---|---|---|")
    for row, model in zip(rows, models.values()):
        ratio = row["median_eval_s"] / reference["median_eval_s"]
        row["median_eval_vs_numpy_1_thread"] = ratio
        stated = row.get("stated_bytes_per_eval")
        fmt = lambda b: "" if b is None else f"{b / 1e6:.2f} MB"  # noqa: E731
        print(
            f"| {row['setup']} | {row['per_iter_s']:.3f} | {row['median_eval_s']:.3f} | "
            f"{row['evals_per_iter']:.2f} | {ratio:.2f}x | {fmt(stated)} | "
            f"{fmt(row.get('worker_outgoing_bytes_per_eval'))} | "
            f"{fmt(row.get('loopback_bytes_per_eval'))} |"
        )
        row["max_rel_diff_components_vs_numpy"] = float(
            np.max(np.abs(model.components_ - first.components_))
            / np.max(np.abs(first.components_))
        )
    P = rows[-1].get("n_parameters", 0)
    print(f"\ndata: {X.nbytes / 1e6:.1f} MB, put on the workers once (persist, before the "
          f"timed fit); parameters: {P} ({8 * P / 1e6:.2f} MB in float64)")
    print("max relative difference of components_ from the NumPy fit: "
          + ", ".join(f"{r['max_rel_diff_components_vs_numpy']:.1e}" for r in rows))
    out = {
        "date": environment["date"],
        "machine": environment,
        "cpus": environment["n_cpus"],
        "blas": environment["blas"],
        "load_average_at_start": environment["load_average"],
        "skae": environment["skae"],
        "data": {"rows": X.shape[0], "features": X.shape[1], "source": source},
        "max_iter": args.max_iter,
        "chunk_rows": args.chunk,
        "rows": rows,
    }
    print(f"written to {write_json(args.json, out, indent=2)}")


if __name__ == "__main__":
    main()
