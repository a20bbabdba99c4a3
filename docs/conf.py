"""Sphinx configuration of the skae documentation.

Build with ``sphinx-build -b html docs docs/_build/html`` (``pip install ".[docs]"`` first).
The build works offline: no intersphinx inventories are fetched.
"""

import os
import re
import sys

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
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "auto_examples/*.ipynb"]
default_role = "literal"

autosummary_generate = True
autodoc_default_options = {
    "members": True,
    "inherited-members": True,
    # scikit-learn's generated metadata-routing setters link to its glossary, which is not
    # part of these docs.
    "exclude-members": "set_fit_request,set_score_request,set_predict_request,"
    "set_transform_request,set_inverse_transform_request",
}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "doc_module": ("skae",),
    "backreferences_dir": "generated/backreferences",
}

html_theme = "pydata_sphinx_theme"
html_title = f"skae {release}"
html_static_path = ["_static"]
html_theme_options = {"navigation_with_keys": False}


# Methods inherited from scikit-learn's mixins (set_output, get_metadata_routing, ...) keep
# their docstrings, whose :ref: roles point into scikit-learn's own documentation. Without
# intersphinx (this build is offline) those labels cannot resolve: show their text instead.
_REF_WITH_TITLE = re.compile(r":ref:`([^`<]+?)\s*<[^`>]+>`")
_REF_BARE = re.compile(r":ref:`([^`]+)`")


def _plain_sklearn_refs(app, what, name, obj, options, lines):
    if not getattr(obj, "__module__", "").startswith("sklearn"):
        return
    for i, line in enumerate(lines):
        line = _REF_WITH_TITLE.sub(r"\1", line)
        lines[i] = _REF_BARE.sub(r"``\1``", line)


def setup(app):
    app.connect("autodoc-process-docstring", _plain_sklearn_refs)
