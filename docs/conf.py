"""Sphinx configuration of the funcspace documentation.

Build from the repository root (warnings are errors, as in the tests):

    python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))  # the packages, also without an installed checkout
sys.path.insert(0, str(DOCS / "_ext"))  # fsdocs: the Markdown include and reference helpers

project = "funcspace"
author = "the funcspace developers"
copyright = "the funcspace developers"
release = "0.1.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "fsdocs",
]

root_doc = "index"
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_title = "funcspace"
html_static_path = ["_static"]
html_theme_options = {"page_width": "1100px", "sidebar_width": "230px"}

# Docstrings are numpy style.
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
# Types in Parameters / Returns / Attributes are free text in our docstrings ("Tensor or tuple,
# optional", "dict of str -> Tensor", "{'train', 'test'}"): render them as text, not as
# cross-references. Explicit roles (:func:`...`, :class:`...`) are still checked.
napoleon_use_param = False
napoleon_custom_sections = [("Attributes", "params_style")]

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True}
# Only our own docstrings: an undocumented forward() would otherwise show nn.Module's.
autodoc_inherit_docstrings = False
python_use_unqualified_type_names = True

# Every cross-reference must resolve: a broken one fails the -W build.
nitpicky = True
# Third-party and standard-library types in signatures; the build is offline (no intersphinx).
_THIRD_PARTY = (
    "torch|numpy|np|nn|nx|networkx|matplotlib|geoopt|scipy|sklearn|collections|concurrent|typing|"
    "types|sqlite3|os|pathlib"
)
nitpick_ignore_regex = [("py:.*", rf"({_THIRD_PARTY})(\..*)?")]
# matplotlib types that funcspace.plots imports only under TYPE_CHECKING (so they appear
# unqualified in its signatures); AxesArg is its alias for Axes | Sequence[Axes] | ndarray | None.
nitpick_ignore = [("py:class", "Figure"), ("py:class", "Axes"), ("py:class", "AxesArg")]
