"""Write the intersphinx inventories of docs/_intersphinx/ (``python make_inventories.py``).

The documentation is built offline (CI reaches PyPI only), so intersphinx cannot download
the ``objects.inv`` of Python, NumPy, SciPy, scikit-learn, matplotlib and dask. This script
writes an equivalent Sphinx inventory (format version 2) for each of them from the public
names of the installed packages (found by introspection) and the URL scheme of their
documentation sites; ``docs/conf.py`` points ``intersphinx_mapping`` at the files. Run it
again after a dependency adds names that the documentation references: a reference to a
name missing from an inventory fails the ``-W`` build (``nitpicky = True``).

Only the modules listed below are walked, to keep the files small.
"""

import builtins
import importlib
import importlib.util
import inspect
import sys
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: Base URL of each project's documentation (the ``intersphinx_mapping`` URLs in conf.py).
SITES = {
    "python": "https://docs.python.org/3/",
    "numpy": "https://numpy.org/doc/stable/",
    "scipy": "https://docs.scipy.org/doc/scipy/",
    "sklearn": "https://scikit-learn.org/stable/",
    "matplotlib": "https://matplotlib.org/stable/",
    "dask": "https://docs.dask.org/en/stable/",
    "distributed": "https://distributed.dask.org/en/stable/",
}


def _public(obj):
    """Public names of a module or class: ``__all__`` when declared, else no underscore."""
    names = getattr(obj, "__all__", None) if inspect.ismodule(obj) else None
    if names is None:
        names = [n for n in dir(obj) if not n.startswith("_")]
    return sorted(set(names))


def _role(obj):
    if inspect.isclass(obj):
        return "exception" if issubclass(obj, BaseException) else "class"
    if inspect.ismodule(obj):
        return "module"
    if callable(obj):
        return "function"
    return "data"


def _members(cls):
    """``(name, role)`` of the public methods, properties and attributes of ``cls``."""
    out = []
    for name in _public(cls):
        try:
            attr = inspect.getattr_static(cls, name)
        except AttributeError:
            continue
        if isinstance(attr, property) or not callable(attr) and not isinstance(
            attr, (classmethod, staticmethod)
        ):
            out.append((name, "attribute"))
        else:
            out.append((name, "method"))
    return out


def _walk(module_names, page, member_page=None, module_page=None, skip=()):
    """Entries ``(name, py:role, uri)`` of the public objects of ``module_names``.

    ``page(full_name, obj)`` gives an object's URI, ``member_page(class_full_name, member)``
    a method's or attribute's (None: members are not listed), ``module_page(module)`` a
    module's.
    """
    entries = {}
    for module_name in module_names:
        module = importlib.import_module(module_name)
        if module_page is not None:
            entries[module_name] = ("module", module_page(module_name))
        for name in _public(module):
            if name in skip:
                continue
            try:
                obj = getattr(module, name)
            except (AttributeError, ImportError):  # e.g. sklearn's experimental estimators
                continue
            role = _role(obj)
            if role in ("module", "data"):
                continue
            full = f"{module_name}.{name}"
            uri = page(full, obj)
            if uri is None:
                continue
            entries[full] = (role, uri)
            if role in ("class", "exception") and member_page is not None:
                for member, member_role in _members(obj):
                    uri = member_page(full, member)
                    if uri is not None:
                        entries[f"{full}.{member}"] = (member_role, uri)
    return entries


def python():
    stdtypes = {"dict", "list", "str", "tuple", "set", "frozenset", "bytes", "range",
                "memoryview", "bytearray"}  # fmt: skip
    entries = {}
    for name in dir(builtins):
        obj = getattr(builtins, name)
        if name.startswith("_"):
            continue
        if name in ("None", "True", "False", "Ellipsis", "NotImplemented"):
            entries[name] = ("data", f"library/constants.html#{name}")
        elif inspect.isclass(obj) and issubclass(obj, BaseException):
            entries[name] = ("exception", f"library/exceptions.html#{name}")
        elif name in stdtypes:
            entries[name] = ("class", f"library/stdtypes.html#{name}")
        elif inspect.isclass(obj):
            entries[name] = ("class", f"library/functions.html#{name}")
        elif callable(obj):
            entries[name] = ("function", f"library/functions.html#{name}")
    # The glossary terms and labels that numpydoc's type links point to.
    for term in ("iterable", "sequence", "generator"):
        entries[term] = ("std:term", f"glossary.html#term-{term}")
    entries["bltin-boolean-values"] = ("std:label", "library/stdtypes.html#boolean-type-bool")
    for module in ("os", "pathlib", "tracemalloc", "warnings", "numbers", "typing", "time",
                   "multiprocessing", "concurrent.futures", "functools", "io"):  # fmt: skip
        page = f"library/{module}.html"
        entries.update(
            _walk(
                [module],
                lambda full, obj, page=page: f"{page}#{full}",
                module_page=lambda m, page=page: f"{page}#module-{m}",
            )
        )
    return entries


def numpy():
    import numpy as np

    def page(full, obj):
        short = full.removeprefix("numpy.")
        if short.startswith("random."):
            name = short.removeprefix("random.")
            if name in ("Generator", "default_rng"):
                return f"reference/random/generator.html#{full}"
            if name == "RandomState":
                return f"reference/random/legacy.html#{full}"
            if name in ("BitGenerator", "SeedSequence"):
                return f"reference/random/bit_generators/generated/{full}.html#{full}"
            if name in ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64"):
                return f"reference/random/bit_generators/{name.lower()}.html#{full}"
            return f"reference/random/generated/{full}.html#{full}"
        if short.startswith("typing."):
            return f"reference/typing.html#{full}"
        if inspect.isclass(obj) and issubclass(obj, np.generic):
            return f"reference/arrays.scalars.html#{full}"
        return f"reference/generated/{full}.html#{full}"

    def member_page(cls, member):
        if cls in ("numpy.random.Generator", "numpy.random.RandomState"):
            return f"reference/random/generated/{cls}.{member}.html#{cls}.{member}"
        if cls in ("numpy.ndarray", "numpy.dtype", "numpy.memmap"):
            return f"reference/generated/{cls}.{member}.html#{cls}.{member}"
        return None

    modules = {
        "numpy": "reference/index.html#module-numpy",
        "numpy.random": "reference/random/index.html#module-numpy.random",
        "numpy.linalg": "reference/routines.linalg.html#module-numpy.linalg",
        "numpy.typing": "reference/typing.html#module-numpy.typing",
    }
    entries = _walk(modules, page, member_page, module_page=modules.get)
    for name in ("inf", "nan", "newaxis", "pi", "e"):
        entries[f"numpy.{name}"] = ("data", f"reference/constants.html#numpy.{name}")
    # The glossary term and label that numpydoc's type links point to.
    entries["array_like"] = ("std:term", "glossary.html#term-array_like")
    entries["arrays.scalars"] = ("std:label", "reference/arrays.scalars.html")
    return entries


def scipy():
    def page(full, obj):
        return f"reference/generated/{full}.html#{full}"

    def member_page(cls, member):
        return f"reference/generated/{cls}.{member}.html#{cls}.{member}"

    modules = ["scipy.optimize", "scipy.sparse", "scipy.linalg", "scipy.special",
               "scipy.ndimage", "scipy.signal", "scipy.stats"]  # fmt: skip
    return _walk(
        modules,
        page,
        member_page,
        module_page=lambda m: f"reference/{m.removeprefix('scipy.')}.html#module-{m}",
    )


def sklearn():
    import sklearn as sk

    # The public submodules (sklearn.__all__ also names functions), and a few more.
    modules = [
        f"sklearn.{name}"
        for name in sk.__all__
        if name not in ("externals", "experimental", "callback")
        and importlib.util.find_spec(f"sklearn.{name}") is not None
    ]
    modules += ["sklearn.utils", "sklearn.utils.validation", "sklearn.utils.metadata_routing",
                "sklearn.base", "sklearn.feature_extraction.image",
                "sklearn.feature_extraction.text"]  # fmt: skip

    def page(full, obj):
        return f"modules/generated/{full}.html#{full}"

    def member_page(cls, member):
        return f"modules/generated/{cls}.html#{cls}.{member}"

    entries = _walk(
        modules,
        page,
        member_page,
        module_page=lambda m: f"api/{m}.html#module-{m}",
    )
    entries["sklearn"] = ("module", "api/index.html")
    return entries


def matplotlib():
    def page(full, obj):
        if full == "matplotlib.axes.Axes":
            return f"api/axes_api.html#{full}"
        if full.startswith("matplotlib.image."):
            return f"api/image_api.html#{full}"
        return f"api/_as_gen/{full}.html#{full}"

    def member_page(cls, member):
        if cls == "matplotlib.axes.Axes":
            return f"api/_as_gen/{cls}.{member}.html#{cls}.{member}"
        if cls == "matplotlib.figure.Figure":
            return f"api/_as_gen/{cls}.html#{cls}.{member}"
        return None

    pages = {
        "matplotlib.pyplot": "api/pyplot_summary.html#module-matplotlib.pyplot",
        "matplotlib.axes": "api/axes_api.html#module-matplotlib.axes",
        "matplotlib.figure": "api/figure_api.html#module-matplotlib.figure",
        "matplotlib.image": "api/image_api.html#module-matplotlib.image",
    }
    entries = _walk(
        ["matplotlib.pyplot"], page, module_page=pages.get, skip=("Axes", "Figure")
    )
    entries.update(
        _walk(
            ["matplotlib.axes", "matplotlib.figure", "matplotlib.image"],
            page,
            member_page,
            module_page=pages.get,
        )
    )
    entries["matplotlib"] = ("module", "api/index.html")
    return entries


def dask():
    entries = _walk(
        ["dask.array"],
        lambda full, obj: f"generated/{full}.html#{full}",
        lambda cls, member: f"generated/{cls}.{member}.html#{cls}.{member}",
        module_page=lambda m: "array-api.html#module-dask.array",
    )
    entries["dask"] = ("module", "index.html")
    return entries


def distributed():
    names = ["Client", "LocalCluster", "Future", "wait", "as_completed", "get_client",
             "get_worker", "performance_report"]  # fmt: skip
    import distributed as d

    entries = {"distributed": ("module", "api.html#module-distributed")}
    for name in names:
        obj = getattr(d, name)
        full = f"distributed.{name}"
        entries[full] = (_role(obj), f"api.html#{full}")
        if name == "Client":
            for member, role in _members(obj):
                entries[f"{full}.{member}"] = (role, f"api.html#{full}.{member}")
    return entries


def write(project, entries, path):
    """Write ``entries`` ``{name: (role, uri)}`` as a version-2 Sphinx inventory; ``role``
    is a Python role (``class``, ``function``, ...) or a ``std:term`` / ``std:label``."""
    lines = []
    for name in sorted(entries):
        role, uri = entries[name]
        if role.startswith("std:"):  # a glossary term or a label (shown as its name)
            lines.append(f"{name} {role} -1 {uri} {name}\n")
            continue
        if uri.endswith("#" + name):
            uri = uri[: -len(name)] + "$"
        lines.append(f"{name} py:{role} 1 {uri} -\n")
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {project}\n"
        "# Version: stable\n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    path.write_bytes(header.encode() + zlib.compress("".join(lines).encode(), 9))
    return len(lines)


def main():
    for project, make in [
        ("python", python),
        ("numpy", numpy),
        ("scipy", scipy),
        ("sklearn", sklearn),
        ("matplotlib", matplotlib),
        ("dask", dask),
        ("distributed", distributed),
    ]:
        path = HERE / f"{project}.inv"
        n = write(project, make(), path)
        print(f"{path.name}: {n} names, {path.stat().st_size} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
