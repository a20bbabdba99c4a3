"""Sphinx configuration of the skae documentation.

Build with ``sphinx-build -b html docs docs/_build/html`` (``pip install ".[docs]"`` first).
The build works offline: no intersphinx inventories are fetched.
"""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

import skae  # noqa: E402

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
autodoc_default_options = {"members": True, "inherited-members": True}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
}

html_theme = "pydata_sphinx_theme"
html_title = f"skae {release}"
html_static_path = ["_static"]
html_theme_options = {"navigation_with_keys": False}
