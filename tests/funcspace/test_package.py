"""The package's surface: a version, and an import that loads only what it needs."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

import canonicalize
import funcspace


def test_version_is_the_distribution_version():
    assert funcspace.__version__ == version("funcspace") == canonicalize.__version__


def test_import_funcspace_loads_neither_the_study_nor_heavy_optional_modules():
    """geoopt and scipy.optimize (~1 s together), matplotlib and scikit-learn load on first use;
    the study is never loaded by ``import funcspace``."""
    heavy = ["geoopt", "scipy.optimize", "matplotlib", "sklearn", "funcspace.study"]
    code = f"import sys, funcspace; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
