"""Sphinx configuration of the skae documentation.

Build with ``sphinx-build -b html docs docs/_build/html`` (``pip install ".[docs]"`` first).
The build works offline: the intersphinx inventories are the files of docs/_intersphinx/
(written by its make_inventories.py) and MathJax is a local copy.
"""

import importlib.util
import os
import re
import shutil
import sys
from pathlib import Path

from sphinx_gallery.sorting import ExplicitOrder

sys.path.insert(0, os.path.abspath(".."))

import skae  # noqa: E402

try:  # a dependency of scikit-learn
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    pass
else:
    # The examples multiply small matrices, where extra BLAS threads only add overhead (and
    # on a busy machine oversubscribed BLAS threads slow them down many times over).
    threadpool_limits(limits=1, user_api="blas")

project = "skae"
author = "skae developers"
copyright = "2026, skae developers"
release = skae.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "matplotlib.sphinxext.plot_directive",
]

templates_path = ["_templates"]
# The "On this page" sidebar of an API page lists methods as fit(), not
# StackedAutoencoderClassifier.fit() (which that narrow column would cut).
toc_object_entries_show_parents = "hide"

# Links to the documentation of Python, NumPy, SciPy, scikit-learn, matplotlib and dask. The
# inventories are read from docs/_intersphinx/ (no download: the build runs offline);
# _intersphinx/make_inventories.py writes them from the installed packages.
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "_intersphinx"))
from make_inventories import SITES as _SITES  # noqa: E402  (one list of the sites)

intersphinx_mapping = {
    name: (url, os.path.join("_intersphinx", f"{name}.inv")) for name, url in _SITES.items()
}
# Every reference must resolve: a broken one is a warning, and CI builds with -W.
nitpicky = True
nitpick_ignore = []
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "auto_examples/*.ipynb", "_intersphinx"]

# Figures drawn at build time by the scripts of docs/_plots (``.. plot::``): one PNG each,
# without links to their source or other formats.
plot_formats = [("png", 100)]
plot_html_show_source_link = False
plot_html_show_formats = False
plot_rcparams = {"figure.autolayout": False}
default_role = "literal"

autosummary_generate = True
autodoc_default_options = {
    "members": True,
    "inherited-members": True,
    # scikit-learn's generated metadata-routing setters link to its glossary, which is not
    # part of these docs.
    "exclude-members": "set_fit_request,set_score_request,set_predict_request,"
    "set_transform_request,set_inverse_transform_request,set_partial_fit_request",
}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
# Types in the Parameters / Returns sections link to their documentation.
numpydoc_xref_param_type = True
numpydoc_xref_aliases = {
    "ndarray": "numpy.ndarray",
    "dtype": "numpy.dtype",
    "Generator": "numpy.random.Generator",
    "RandomState": "numpy.random.RandomState",
    "Axes": "matplotlib.axes.Axes",
    "Figure": "matplotlib.figure.Figure",
    "Bunch": "sklearn.utils.Bunch",
    "SparseAutoencoder": "skae.SparseAutoencoder",
    "StackedAutoencoder": "skae.StackedAutoencoder",
    "StackedAutoencoderClassifier": "skae.StackedAutoencoderClassifier",
}
# Only the names above and numpydoc's own (int, float, array-like, ...) are links: the other
# words of a type ("of shape (n_samples, n_features)", "default=...") are text.
numpydoc_xref_ignore = "all"

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    # From first steps to advanced; an example not listed here comes last.
    "within_subsection_order": ExplicitOrder(
        [
            "plot_digits_pipeline.py",
            "plot_digit_filters.py",
            "plot_check_gradient.py",
            "plot_denoising.py",
            "plot_novelty_detection.py",
            "plot_linear_decoder.py",
            "plot_natural_image_filters.py",
            "plot_stacked_mnist.py",
            "plot_activation_maximization.py",
            "plot_multifaceted.py",
            "*",
        ]
    ),
    "doc_module": ("skae",),
    "backreferences_dir": "generated/backreferences",
}

# Formulas: MathJax 3 from a local copy, so that they render without a network. The copy
# comes from the PyPI package django-static-mathjax (MathJax's own files, no dependency on
# Django), installed by the docs extra; setup() below copies the SVG build (the fonts are
# inside its one script) and the TeX extensions it may load into _static/mathjax.
_MATHJAX_SPEC = importlib.util.find_spec("mathjax")
if _MATHJAX_SPEC is None or _MATHJAX_SPEC.submodule_search_locations is None:
    raise ImportError(
        "The documentation renders its formulas with a local copy of MathJax from the "
        "package django-static-mathjax, which is not installed: pip install \".[docs]\""
    )
_MATHJAX_DIR = Path(_MATHJAX_SPEC.submodule_search_locations[0]) / "static" / "mathjax" / "es5"
_MATHJAX_FILES = ["tex-svg.js", "input/tex/extensions", "ui", "a11y"]
mathjax_path = "mathjax/tex-svg.js"

html_theme = "pydata_sphinx_theme"
html_title = f"skae {release}"
html_static_path = ["_static"]
html_css_files = ["skae.css"]
# The narrative pages have no sub-pages: the left "Section Navigation" sidebar would be empty
# and only narrow the content column.
html_sidebars = {"**": []}
html_theme_options = {
    "navigation_with_keys": False,
    # Install, Examples, User guide and API in the top bar; the other pages under "More".
    "header_links_before_dropdown": 4,
}


# Methods inherited from scikit-learn's mixins (set_output, get_metadata_routing, ...) keep
# their docstrings, whose :ref: roles point to labels of scikit-learn's own pages; the
# offline inventories in _intersphinx/ hold Python objects only, so those labels cannot
# resolve: show their text instead, and name a gallery example by its file
# (sphx_glr_auto_examples_miscellaneous_plot_set_output.py -> plot_set_output.py).
_REF_WITH_TITLE = re.compile(r":ref:`([^`<]+?)\s*<[^`>]+>`")
_REF_EXAMPLE = re.compile(r":ref:`sphx_glr_auto_examples_\w*?(plot_\w+\.py)`")
_REF_BARE = re.compile(r":ref:`([^`]+)`")


def _plain_sklearn_refs(app, what, name, obj, options, lines):
    if not getattr(obj, "__module__", "").startswith("sklearn"):
        return
    for i, line in enumerate(lines):
        line = _REF_WITH_TITLE.sub(r"\1", line)
        line = _REF_EXAMPLE.sub(r"scikit-learn's example ``\1``", line)
        lines[i] = _REF_BARE.sub(r"``\1``", line)


def _copy_mathjax(app, exception):
    """Copy the local MathJax files that ``mathjax_path`` names into the HTML output."""
    if exception is not None or app.builder.format != "html":
        return
    target = Path(app.outdir) / "_static" / "mathjax"
    for name in _MATHJAX_FILES:
        source = _MATHJAX_DIR / name
        if source.is_dir():
            shutil.copytree(source, target / name, dirs_exist_ok=True)
        else:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def setup(app):
    app.connect("autodoc-process-docstring", _plain_sklearn_refs)
    app.connect("build-finished", _copy_mathjax)
