"""Declared dependencies are honest (issue 8): every package skae imports is declared in
pyproject.toml, and CI's minimum-versions environment pins exactly the declared floors."""

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
MIN_VERSIONS = ROOT / ".ci" / "min-versions.txt"

# Import name -> distribution name, where they differ.
DISTRIBUTION = {"sklearn": "scikit-learn", "skimage": "scikit-image", "PIL": "pillow"}

pytestmark = pytest.mark.skipif(
    not (PYPROJECT.exists() and MIN_VERSIONS.exists()),
    reason="needs the source checkout (pyproject.toml, .ci/min-versions.txt)",
)


def _project():
    tomllib = pytest.importorskip("tomllib", reason="needs Python >= 3.11 to read TOML")
    return tomllib.loads(PYPROJECT.read_text())["project"]


def _name(requirement):
    return re.match(r"[A-Za-z0-9_.-]+", requirement).group(0).lower()


def _guarded(tree):
    """Import nodes inside ``try: ... except ImportError`` (optional, with a fallback)."""
    guarded = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
            isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
            for h in node.handlers
        ):
            for statement in node.body:
                guarded.update(id(n) for n in ast.walk(statement))
    return guarded


def _imported_packages():
    """Top-level names of every module imported anywhere in skae/ (lazy imports too),
    except those imported under ``try``/``except ImportError`` with a fallback."""
    names = set()
    for path in (ROOT / "skae").rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        guarded = _guarded(tree)
        for node in ast.walk(tree):
            if id(node) in guarded:
                continue
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - {"skae"} - set(sys.stdlib_module_names)


def test_every_imported_package_is_declared():
    project = _project()
    required = {_name(r) for r in project["dependencies"]}
    optional = {_name(r) for extra in project["optional-dependencies"].values() for r in extra}
    imported = {DISTRIBUTION.get(name, name).lower() for name in _imported_packages()}
    assert {"numpy", "scipy", "scikit-learn", "threadpoolctl"} <= imported  # parsed at all
    undeclared = imported - required - optional
    assert not undeclared, f"imported by skae but not declared in pyproject.toml: {undeclared}"
    # what the estimators need to fit is required, not only an extra
    assert {"numpy", "scipy", "scikit-learn", "threadpoolctl"} <= required


def test_min_versions_pin_the_declared_floors():
    floors = {}
    for requirement in _project()["dependencies"]:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9.]+)", requirement.strip())
        assert match, f"every dependency declares a floor: {requirement!r}"
        floors[match.group(1).lower()] = match.group(2)
    pins = {}
    for line in MIN_VERSIONS.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = re.fullmatch(r"([A-Za-z0-9_.-]+)==([0-9.*]+)", line).groups()
            pins[name.lower()] = version
    assert set(pins) == set(floors)
    for name, floor in floors.items():
        # numpy==1.26.* pins the floor 1.26; scikit-learn==1.6.0 the floor 1.6
        pinned = pins[name].removesuffix(".*").removesuffix(".0")
        assert pinned == floor.removesuffix(".0"), (name, floor, pins[name])
