"""The package's structure: public warnings and errors in skae.exceptions, no module
importing another's private names, nothing importing back up from the package, and a
version that packaging reads without importing skae."""

import ast
import inspect
import warnings
from pathlib import Path

import pytest

import skae
from skae import exceptions

SKAE = Path(skae.__file__).resolve().parent
MODULES = sorted(SKAE.glob("*.py"))
PUBLIC_EXCEPTIONS = {
    "SkaeWarning",
    "FitInterruptedWarning",
    "PickleVersionWarning",
    "ConstantCodesWarning",
    "UnlabelledMarkerWarning",
    "NonFiniteLossError",
}


def _relative_imports():
    """``(module file name, imported module or None, imported name)`` for every relative
    import in skae/, lazy ones inside functions included."""
    found = []
    for path in MODULES:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level:
                found.extend((path.name, node.module, alias.name) for alias in node.names)
    return found


def test_every_warning_and_error_class_is_defined_in_skae_exceptions():
    defined_elsewhere = []
    for path in MODULES:
        if path.name == "exceptions.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef) and node.name.endswith(("Warning", "Error")):
                defined_elsewhere.append(f"{path.name}: {node.name}")
    assert defined_elsewhere == []
    assert set(exceptions.__all__) == PUBLIC_EXCEPTIONS
    for name in PUBLIC_EXCEPTIONS:
        cls = getattr(exceptions, name)
        assert cls.__module__ == "skae.exceptions"
        assert issubclass(cls, exceptions.SkaeWarning) or name == "NonFiniteLossError"
    assert issubclass(exceptions.SkaeWarning, UserWarning)
    assert issubclass(exceptions.NonFiniteLossError, (FloatingPointError, ValueError))
    assert skae.exceptions is exceptions


def test_old_import_paths_of_the_warnings_still_work():
    """Filters written as ``skae._base.FitInterruptedWarning`` or
    ``skae._stacked.ConstantCodesWarning`` name the same classes."""
    from skae import _base, _stacked

    assert _base.FitInterruptedWarning is exceptions.FitInterruptedWarning
    assert _base.PickleVersionWarning is exceptions.PickleVersionWarning
    assert _base.SkaeWarning is exceptions.SkaeWarning
    assert _base.NonFiniteLossError is exceptions.NonFiniteLossError
    assert _stacked.ConstantCodesWarning is exceptions.ConstantCodesWarning
    assert _stacked.UnlabelledMarkerWarning is exceptions.UnlabelledMarkerWarning
    with warnings.catch_warnings():
        warnings.filterwarnings("error", category=_base.FitInterruptedWarning)
        with pytest.raises(exceptions.FitInterruptedWarning):
            warnings.warn("interrupted", exceptions.FitInterruptedWarning)


def test_no_module_imports_another_modules_private_names():
    private = [
        f"{where}: from .{module} import {name}"
        for where, module, name in _relative_imports()
        if module is not None and name.startswith("_") and not name.startswith("__")
    ]
    assert private == []


def test_nothing_imports_back_up_from_the_package():
    """``from . import name`` only imports sibling modules, never a name the package's
    ``__init__`` defines (which would make a module depend on the package importing it)."""
    modules = {path.stem for path in MODULES}
    upward = [
        f"{where}: from . import {name}"
        for where, module, name in _relative_imports()
        if module is None and name not in modules and where != "__init__.py"
    ]
    assert upward == []
    for path in MODULES:
        if path.name in ("__init__.py", "__main__.py"):  # the demonstration is a user
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                assert node.module != "skae", f"{path.name} imports from skae"


def test_version_is_read_without_importing_skae():
    """pyproject.toml's dynamic version names an attribute that setuptools reads from the
    source (no import, so building needs none of skae's dependencies)."""
    tomllib = pytest.importorskip("tomllib", reason="needs Python >= 3.11 to read TOML")
    expand = pytest.importorskip("setuptools.config.expand")
    pyproject = SKAE.parent / "pyproject.toml"
    if not pyproject.exists():
        pytest.skip("needs the source checkout")
    attr = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["dynamic"]["version"]
    module_name, _, name = attr["attr"].rpartition(".")
    source = (SKAE.parent / (module_name.replace(".", "/") + ".py")).read_text()
    values = [
        node.value.value
        for node in ast.parse(source).body
        if isinstance(node, ast.Assign)
        and [getattr(t, "id", None) for t in node.targets] == [name]
        and isinstance(node.value, ast.Constant)
    ]
    assert values == [skae.__version__]
    assert expand.read_attr(attr["attr"], root_dir=SKAE.parent) == skae.__version__


def test_dead_code_is_gone():
    from skae import _lbfgs, _network

    assert not hasattr(_lbfgs.LBFGSOutcome, "success")
    assert not hasattr(_network, "parameter_gradient")
    assert "parameter_gradient" not in _network.__all__


def test_estimator_docstrings_hold_no_benchmark_tables():
    """Measurements belong on the documentation's pages, not in docstrings."""
    doc = inspect.getdoc(skae.SparseAutoencoder)
    assert "points of accuracy" not in doc and "alpha=3e-3" not in doc


def _module_map_order():
    """The module files of docs/architecture.rst's module map, top row first."""
    import re

    text = (SKAE.parent / "docs" / "architecture.rst").read_text()
    table = text[text.index("Module map") :].split("Rules")[0]
    order = []
    for row in re.findall(r"^   \* - (.+)$", table, flags=re.M):
        order.extend(Path(name).name for name in re.findall(r"``([^`]+\.py)``", row))
    return order


def test_every_module_imports_only_from_rows_below_it_in_the_module_map():
    """The architecture page's claim, checked: a module's relative imports (lazy ones
    included) name modules of lower rows; __init__ and __main__ sit on top."""
    order = _module_map_order()
    assert sorted(order) == sorted(path.name for path in MODULES)
    upward = []
    for importer, module, name in _relative_imports():
        imported = f"{module or name}.py".split(".")[0] + ".py"
        if importer in ("__init__.py", "__main__.py") or imported == importer:
            continue
        if order.index(imported) <= order.index(importer):
            upward.append(f"{importer} imports {imported}")
    assert not upward, upward

