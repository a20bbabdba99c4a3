"""Out-of-core benchmark: peak memory and time of one fit on a memmap.

For memory-mapped float64 arrays of growing size (written to a temporary
directory as ``.npy`` and opened read-only with ``np.load(mmap_mode="r")``),
fit ``SparseAutoencoder(n_hidden=196, max_iter=3)`` with ``batch_size=None``
and with ``batch_size=2000``, each fit in a fresh subprocess so that the peak
resident set size belongs to that fit alone.

Reported per fit:

* ``peak RSS``: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of the child
  (includes the pages of the memmap that are resident: they are file-backed
  page-cache pages the kernel can drop, not memory the fit allocated);
* ``RSS before fit``: the RSS after imports and ``np.load`` (the baseline);
* ``peak anon``: peak anonymous (heap) memory during the fit above that
  baseline (taken after a warm-up matmul, so OpenBLAS's own buffers are in it),
  sampled from ``/proc/self/status`` (``RssAnon``) every 2 ms —
  this is the memory the fit itself allocates and what must stay flat
  with ``batch_size``;
* seconds of ``fit``.

Usage::

    python benchmarks/bench_memory.py            # 20k, 80k, 320k rows (2 GB file)
    python benchmarks/bench_memory.py --quick    # 5k, 20k rows
    python benchmarks/bench_memory.py --rows 10000 40000 --batch-size 1000
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np
from _common import RESULTS, machine, mnist_5000, status_kib, warm_up_blas, write_json

N_FEATURES, N_HIDDEN = 784, 196


def child(path, batch_size, max_iter):
    """Run in a fresh process: open the memmap read-only, fit once, report."""
    from sklearn.exceptions import ConvergenceWarning

    import skae

    warm_up_blas()
    X = np.load(path, mmap_mode="r")
    assert isinstance(X, np.memmap) and not X.flags.writeable
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss_before = status_kib("VmRSS")
    anon_before = status_kib("RssAnon")
    peak = {"anon": anon_before or 0, "rss": rss_before or 0}
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            a, r = status_kib("RssAnon"), status_kib("VmRSS")
            if a is not None:
                peak["anon"] = max(peak["anon"], a)
            if r is not None:
                peak["rss"] = max(peak["rss"], r)
            stop.wait(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    est = skae.SparseAutoencoder(n_hidden=N_HIDDEN, max_iter=max_iter, tol=0.0,
                                 batch_size=batch_size, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t0 = time.perf_counter()
        est.fit(X)
        seconds = time.perf_counter() - t0
    stop.set()
    sampler.join()
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "rows": int(X.shape[0]),
        "batch_size": batch_size,
        "seconds": seconds,
        "n_iter": int(est.n_iter_),
        "peak_rss_mib": maxrss / 1024,
        "rss_before_mib": rss_before / 1024 if rss_before else maxrss_before / 1024,
        "peak_rss_minus_before_mib": (maxrss - (rss_before or maxrss_before)) / 1024,
        "peak_anon_minus_before_mib": (peak["anon"] - (anon_before or 0)) / 1024,
    }


def write_memmap(path, rows, block=20000):
    """Write `rows` x 784 float64 in [0, 1] (MNIST tiled, else uniform) block by block."""
    base, _, source = mnist_5000()
    source += " tiled"
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64,
                                    shape=(rows, N_FEATURES))
    for start in range(0, rows, block):
        stop = min(rows, start + block)
        idx = np.arange(start, stop) % len(base)
        out[start:stop] = base[idx]
    out.flush()
    del out
    return source


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--rows", type=int, nargs="+", default=None,
                        help="row counts (default 20000 80000 320000; 5000 20000 with --quick)")
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--max-iter", type=int, default=3)
    parser.add_argument("--json", default=None,
                        help="output JSON (default benchmarks/results/memory.json; "
                             "memory_quick.json with --quick)")
    parser.add_argument("--tmpdir", default=None, help="where to write the memmaps")
    parser.add_argument("--_child", nargs=3, metavar=("PATH", "BATCH", "MAXITER"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args._child:
        path, batch, max_iter = args._child
        batch = None if batch == "None" else int(batch)
        print(json.dumps(child(path, batch, int(max_iter))), flush=True)
        return 0

    rows_list = args.rows or ([5000, 20000] if args.quick else [20000, 80000, 320000])
    json_path = Path(args.json) if args.json else RESULTS / (
        "memory_quick.json" if args.quick else "memory.json")
    settings = [None, args.batch_size]
    environment = machine()
    results = {"meta": {"date": environment["date"],
                        "numpy": np.__version__, "max_iter": args.max_iter,
                        "n_features": N_FEATURES, "n_hidden": N_HIDDEN,
                        "load_average": environment["load_average"][0],
                        "machine": environment},
               "fits": []}
    print(f"# skae out-of-core benchmark: memmap float64 x {N_FEATURES} -> {N_HIDDEN}, "
          f"max_iter={args.max_iter}, each fit in a fresh process", flush=True)
    with tempfile.TemporaryDirectory(dir=args.tmpdir, prefix="skae-bench-") as tmp:
        for rows in rows_list:
            path = os.path.join(tmp, f"X_{rows}.npy")
            source = write_memmap(path, rows)
            results["meta"]["data"] = source
            for batch in settings:
                proc = subprocess.run(
                    [sys.executable, __file__, "--_child", path, str(batch),
                     str(args.max_iter)],
                    capture_output=True, text=True)
                if proc.returncode != 0:
                    err = (proc.stderr.strip().splitlines() or ["?"])[-1]
                    print(f"  rows={rows} batch_size={batch}: failed: {err}", flush=True)
                    results["fits"].append({"rows": rows, "batch_size": batch, "error": err})
                    continue
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                r["file_mib"] = os.path.getsize(path) / 2**20
                results["fits"].append(r)
                print(f"  rows={rows:>7} batch_size={str(batch):>5}: "
                      f"{r['seconds']:6.1f} s, peak RSS {r['peak_rss_mib']:7.0f} MiB, "
                      f"peak anon +{r['peak_anon_minus_before_mib']:6.0f} MiB", flush=True)
            os.remove(path)

    table = report(results, rows_list, settings)
    results["table"] = table
    print()
    print(table)
    write_json(json_path, results)
    print(f"\nJSON written to {json_path}")
    return 0


def report(results, rows_list, settings):
    fits = {(f["rows"], f["batch_size"]): f for f in results["fits"]}
    meta = results["meta"]
    b = settings[1]
    L = [f"Memmap fit, float64, {N_FEATURES} → {N_HIDDEN}, max_iter={meta['max_iter']} "
         f"({meta['date']}, data: {meta.get('data', '?')}). "
         "Peak RSS includes resident pages of the memmap (file-backed, reclaimable); "
         "'heap' is the peak anonymous memory the fit allocated above its baseline.",
         "",
         f"| rows | file MiB | None: peak RSS MiB | None: heap MiB | None: s "
         f"| {b}: peak RSS MiB | {b}: heap MiB | {b}: s |",
         "|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def cells(f):
        if f is None or "error" in f:
            return ["n/a"] * 3
        return [f"{f['peak_rss_mib']:.0f}", f"{f['peak_anon_minus_before_mib']:.0f}",
                f"{f['seconds']:.1f}"]

    for rows in rows_list:
        a, c = fits.get((rows, settings[0])), fits.get((rows, settings[1]))
        size = next((f.get("file_mib") for f in (a, c) if f and "file_mib" in f), None)
        L.append("| " + " | ".join([f"{rows}", "n/a" if size is None else f"{size:.0f}"]
                                   + cells(a) + cells(c)) + " |")
    return "\n".join(L)


if __name__ == "__main__":
    sys.exit(main())
