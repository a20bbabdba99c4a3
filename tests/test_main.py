"""``python -m skae``: the command line demonstration."""

import re
import subprocess
import sys

import pytest

from skae.__main__ import main

ROW = re.compile(r"^(?P<name>.+?)\s+(?P<accuracy>\d\.\d{4})\s+(?P<seconds>\d+\.\d)$")


def _table(output):
    rows = {}
    for line in output.splitlines():
        match = ROW.match(line)
        if match:
            rows[match["name"]] = (float(match["accuracy"]), float(match["seconds"]))
    return rows


def test_main_prints_table_with_sensible_accuracies(capsys):
    # 100 L-BFGS iterations take about a second and already give features on which
    # logistic regression classifies held-out digits well: 0.91-0.92 over random_state
    # 0-4 (0.94 with the default 400 iterations).
    assert main(["--max-iter", "100", "--n-hidden", "100", "--random-state", "0"]) == 0
    output = capsys.readouterr().out

    rows = _table(output)
    assert set(rows) == {
        "raw pixels + LogisticRegression",
        "SparseAutoencoder + LogisticRegression",
    }
    for accuracy, seconds in rows.values():
        assert 0.0 <= accuracy <= 1.0
        assert seconds >= 0.0
    # The raw-pixel baseline is 0.97 on this split.
    assert rows["raw pixels + LogisticRegression"][0] > 0.9
    assert rows["SparseAutoencoder + LogisticRegression"][0] > 0.85

    # progress while training: stage lines and (thinned) L-BFGS iteration lines
    assert "[2/2] SparseAutoencoder(n_hidden=100, max_iter=100)" in output
    assert "Iteration" in output
    assert "held-out accuracy" in output


def test_main_quiet_prints_only_table(capsys):
    assert main(["--max-iter", "5", "--n-hidden", "8", "--quiet"]) == 0
    output = capsys.readouterr().out
    assert "Iteration" not in output
    assert "[1/2]" not in output
    assert len(_table(output)) == 2


def test_main_verbose_prints_every_iteration(capsys):
    assert main(["--max-iter", "5", "--n-hidden", "8", "--verbose"]) == 0
    output = capsys.readouterr().out
    iterations = [line for line in output.splitlines() if line.startswith("Iteration")]
    assert 1 <= len(iterations) <= 5
    assert len(iterations) == len(set(iterations))


def test_main_help_lists_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    output = capsys.readouterr().out
    for option in ("--n-hidden", "--max-iter", "--random-state", "--quiet", "--verbose"):
        assert option in output


@pytest.mark.parametrize("argv", [["--n-hidden", "0"], ["--max-iter", "0"], ["--bogus"]])
def test_main_rejects_bad_options(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "error" in capsys.readouterr().err


def test_python_dash_m_skae_help():
    result = subprocess.run(
        [sys.executable, "-m", "skae", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "--max-iter" in result.stdout
