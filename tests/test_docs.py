"""The documentation's runnable snippets print what the pages say they print."""

import contextlib
import io
import re
from pathlib import Path

import pytest
from sklearn.exceptions import ConvergenceWarning

DOCS = Path(__file__).resolve().parents[1] / "docs"

pytestmark = pytest.mark.skipif(not DOCS.is_dir(), reason="needs the source checkout (docs/)")


def _blocks(text, language):
    """The bodies of the ``.. code-block:: language`` directives of ``text``, in order."""
    pattern = rf"^\.\. code-block:: {language}\n\n((?:   .*\n|\n)+)"
    return [
        "\n".join(line[3:] for line in body.rstrip("\n").splitlines())
        for body in re.findall(pattern, text, flags=re.MULTILINE)
    ]


def test_user_guide_walkthrough_prints_what_the_page_shows():
    text = (DOCS / "user_guide.rst").read_text(encoding="utf-8")
    start = text.index("a first run\n")
    code = _blocks(text[start:], "python")[0]
    shown = _blocks(text[start:], "text")[0]
    # The page shows the warnings too; what the script prints is the other lines.
    printed_lines = [line for line in shown.splitlines() if line.startswith(("(", "-", "0", "1"))]

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.warns(ConvergenceWarning, match="max_iter"):
        exec(compile(code, "walkthrough.py", "exec"), {"__name__": "__main__"})

    # The same text, the numbers to the last printed digit give or take 2 (the BLAS
    # differs slightly between the supported versions).
    printed = out.getvalue().splitlines()
    assert len(printed) == len(printed_lines), (printed, printed_lines)
    number = r"-?\d+\.\d+"
    for got, expected in zip(printed, printed_lines):
        assert re.sub(number, "#", got) == re.sub(number, "#", expected), (got, expected)
        got_numbers = [float(x) for x in re.findall(number, got)]
        expected_numbers = [float(x) for x in re.findall(number, expected)]
        assert got_numbers == pytest.approx(expected_numbers, abs=0.002), (got, expected)
    assert shown.count("ConvergenceWarning") == 2


def _fenced(text, language):
    """The bodies of the ```language fenced blocks of a Markdown text, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def test_readme_main_command_installs_what_its_shown_output_needs():
    """The README's one command prints the output it shows, filter image included: the
    image needs matplotlib, so the command installs the ``plot`` extra (matplotlib stays
    optional: not a dependency of skae itself)."""
    tomllib = pytest.importorskip("tomllib", reason="needs Python >= 3.11 to read TOML")
    root = DOCS.parent
    readme = (root / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Set up a fresh machine") :]
    command = _fenced(section, "bash")[0]
    shown = _fenced(section, "text")[0]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]

    assert "python -m skae" in command
    assert "Learned filters saved to skae_filters.png" in shown
    assert re.search(r"""pip install ["']\.\[plot\]["']""", command), command
    assert "matplotlib" in project["optional-dependencies"]["plot"]
    assert not any(dep.startswith("matplotlib") for dep in project["dependencies"])
