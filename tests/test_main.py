"""``python -m skae``: the command line demonstration."""

import os
import re
import subprocess
import sys

import pytest

import skae.__main__ as demo
from skae.__main__ import main

ROW = re.compile(
    r"^(?P<name>raw pixels|BernoulliRBM|SparseAutoencoder)\s+(?P<few>\d\.\d{4})\s+"
    r"(?P<all>\d\.\d{4})\s+(?P<seconds>\d+\.\d)$"
)
ROWS = {"raw pixels", "BernoulliRBM", "SparseAutoencoder"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _table(output):
    rows = {}
    for line in output.splitlines():
        match = ROW.match(line)
        if match:
            rows[match["name"]] = (
                float(match["few"]),
                float(match["all"]),
                float(match["seconds"]),
            )
    return rows


@pytest.fixture
def cheap_classifier(monkeypatch):
    """Fewer label draws and candidate C values: the logistic regressions dominate the
    run time of a small demonstration; what they print is the same kind of table."""
    monkeypatch.setattr(demo, "N_DRAWS", 2)
    monkeypatch.setattr(demo, "C_GRID", (1.0, 10.0))


def test_main_end_to_end_table_progress_and_filters(tmp_path, capsys, cheap_classifier):
    pytest.importorskip("matplotlib")
    png = tmp_path / "filters.png"
    argv = ["--n-hidden", "40", "--max-iter", "60", "--random-state", "0", "--filters", str(png)]
    assert main(argv) == 0
    output = capsys.readouterr().out

    rows = _table(output)
    assert set(rows) == ROWS
    for few, every, seconds in rows.values():
        assert 0.0 <= few <= 1.0 and 0.0 <= every <= 1.0
        assert seconds >= 0.0
    # logistic regression on the raw pixels: about 0.90 with 10 labels per class and
    # 0.97 with all 1347 on this split; every set of features is far above chance (0.1)
    assert rows["raw pixels"][1] > 0.95
    assert rows["raw pixels"][0] > 0.8
    for few, every, _ in rows.values():
        assert every > few > 0.5
    assert rows["raw pixels"][2] == 0.0  # nothing to learn

    # the columns and the verdict lines
    assert "10 labels/class" in output
    assert "all 1347 labels" in output
    assert len(re.findall(r"^With .* raw pixels \(\d\.\d{4} vs \d\.\d{4}, [+-]\d\.\d{4}\)\.$",
                          output, flags=re.MULTILINE)) == 2

    # progress while training: stage lines and (thinned) L-BFGS iteration lines
    assert "[1/3] SparseAutoencoder(n_hidden=40, max_iter=60)" in output
    assert "[2/3] BernoulliRBM(n_components=40" in output
    assert "[3/3]" in output
    iterations = [line for line in output.splitlines() if line.startswith("Iteration")]
    assert 1 <= len(iterations) < 60

    # the filters: a PNG at the printed path
    assert f"Learned filters saved to {png}" in output
    assert png.read_bytes()[:8] == PNG_MAGIC


def test_main_labels_per_class_sets_the_column(tmp_path, capsys, cheap_classifier):
    argv = ["--n-hidden", "8", "--max-iter", "5", "--labels-per-class", "20", "--no-filters"]
    assert main(argv) == 0
    output = capsys.readouterr().out
    assert "20 labels/class" in output
    assert "20 labelled images per class" in output


def test_main_quiet_prints_only_table(tmp_path, monkeypatch, capsys, cheap_classifier):
    monkeypatch.chdir(tmp_path)
    assert main(["--max-iter", "5", "--n-hidden", "8", "--quiet", "--no-filters"]) == 0
    output = capsys.readouterr().out
    assert "Iteration" not in output
    assert "[1/3]" not in output
    assert "Note:" not in output
    assert set(_table(output)) == ROWS
    assert list(tmp_path.iterdir()) == []  # --no-filters: nothing written


def test_main_verbose_prints_every_iteration(capsys, cheap_classifier):
    assert main(["--max-iter", "5", "--n-hidden", "8", "--verbose", "--no-filters"]) == 0
    output = capsys.readouterr().out
    iterations = [line for line in output.splitlines() if line.startswith("Iteration")]
    assert 1 <= len(iterations) <= 5
    assert len(iterations) == len(set(iterations))
    # 5 iterations cannot converge: the demonstration says so instead of a warning
    assert "stopped at --max-iter=5" in output


def test_main_default_filter_path_in_working_directory(tmp_path, monkeypatch, capsys,
                                                        cheap_classifier):
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    assert main(["--max-iter", "5", "--n-hidden", "8", "--quiet"]) == 0
    assert f"saved to {demo.DEFAULT_FILTERS}" in capsys.readouterr().out
    assert (tmp_path / demo.DEFAULT_FILTERS).read_bytes()[:8] == PNG_MAGIC


def test_main_without_matplotlib_says_how_to_install(tmp_path, monkeypatch, capsys,
                                                      cheap_classifier):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails
    png = tmp_path / "filters.png"
    assert main(["--max-iter", "5", "--n-hidden", "8", "--quiet", "--filters", str(png)]) == 0
    output = capsys.readouterr().out
    assert "pip install matplotlib" in output
    assert not png.exists()
    assert set(_table(output)) == ROWS


def test_main_help_lists_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    output = capsys.readouterr().out
    for option in (
        "--n-hidden",
        "--max-iter",
        "--labels-per-class",
        "--random-state",
        "--filters",
        "--no-filters",
        "--quiet",
        "--verbose",
    ):
        assert option in output


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--n-hidden", "0"], "argument --n-hidden: must be at least 1, got 0"),
        (["--max-iter", "0"], "argument --max-iter: must be at least 1, got 0"),
        (["--max-iter", "ten"], "argument --max-iter: expected an integer, got 'ten'"),
        (["--random-state", "-1"], "argument --random-state: must be between 0 and 4294967295"),
        (["--random-state", str(2**32)], "argument --random-state: must be between 0 and"),
        (["--labels-per-class", "0"], "argument --labels-per-class: must be between 3 and 100"),
        (["--filters", "filters.jpg"], "--filters must name a .png file"),
        (["--filters", "no/such/dir/f.png"], "the directory 'no/such/dir' does not exist"),
        (["--filters", "/proc/skae-filters.png"], "'/proc/skae-filters.png' cannot be written"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_main_rejects_bad_options_before_fitting(argv, message, monkeypatch, capsys):
    def must_not_run(*args, **kwargs):
        raise AssertionError("data loaded or a model fitted before the arguments were checked")

    monkeypatch.setattr(demo, "load_digits", must_not_run)
    monkeypatch.setattr(demo.SparseAutoencoder, "fit", must_not_run)
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert captured.out == ""


def test_python_dash_m_skae_help():
    result = subprocess.run(
        [sys.executable, "-m", "skae", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "--max-iter" in result.stdout


def test_python_dash_m_skae_bad_seed_is_an_argparse_error():
    result = subprocess.run(
        [sys.executable, "-m", "skae", "--random-state", "-1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stdout == ""  # nothing was run
    assert "usage: python -m skae" in result.stderr
    assert "argument --random-state: must be between 0 and 4294967295, got -1" in result.stderr
    assert "Traceback" not in result.stderr


def test_filters_through_a_link_checks_its_target_and_keeps_the_link(tmp_path, monkeypatch):
    """A --filters link to a file not yet written is written through: the write check
    creates and removes the target, not the link (it removed the link and left an empty
    target); a loop of links cannot be written."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "link.png").symlink_to(tmp_path / "out" / "target.png")
    assert demo._parse(["--filters", "link.png"]).filters == "link.png"
    assert (tmp_path / "link.png").is_symlink()
    assert not (tmp_path / "out" / "target.png").exists()
    (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")
    with pytest.raises(SystemExit):
        demo._parse(["--filters", "loop.png"])
    assert (tmp_path / "loop.png").is_symlink()


@pytest.mark.parametrize("quiet", [False, True])
def test_python_dash_m_skae_into_a_closed_pipe_stops_quietly(quiet):
    """`python -m skae | head -1`: once the reader has gone, the demo stops with exit code
    1 and no BrokenPipeError traceback, also when the output is buffered until the end
    (--quiet prints only the table, flushed at exit)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    process = subprocess.Popen(
        [sys.executable, "-m", "skae", "--max-iter", "1", "--no-filters"]
        + ["--quiet"] * quiet,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    if not quiet:
        assert process.stdout.readline().startswith("skae ")
    process.stdout.close()  # as head does after its line
    _, err = process.communicate(timeout=120)
    assert process.returncode == 1, err
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
