"""The documentation builds with warnings as errors: a broken reference or docstring fails here.

The same command as the README's, into a temporary folder, in a subprocess (Sphinx imports
every package and sets up its own warning filters). About 15-20 s on the project's CPU.
"""

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip(
    "sphinx", reason="Sphinx is not installed (pip install -c constraints.txt -e '.[docs]')"
)

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_docs_build_without_warnings(tmp_path):
    out = tmp_path / "html"
    run = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-E", "-b", "html"]
        + ["-d", str(tmp_path / "doctrees"), str(DOCS), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, f"sphinx-build failed:\n{run.stderr}\n{run.stdout}"
    for page in ("index", "getting-started", "canonicalize", "evaluation", "curvature"):
        assert (out / f"{page}.html").is_file()
    assert (out / "api" / "canonicalize.html").is_file()
    benchmarks = (out / "benchmarks.html").read_text(encoding="utf-8")
    assert "<table" in benchmarks  # the README's Markdown tables render as tables
