"""Every notebook runs top to bottom, so that none of them rots.

The code cells of each notebook run in order in one namespace (no Jupyter kernel needed), with
matplotlib drawing off screen and the working directory in a temporary folder; a notebook's own
assertions (its checks of the paper's findings) fail the test like any other. The stored outputs
(what each cell printed, for readers who do not run it) are refreshed with
``python -m tests.test_notebooks notebooks/NAME.ipynb``.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def execute(path: Path) -> list[str]:
    """Run the code cells of the notebook at ``path`` in order; what each printed."""
    import matplotlib

    matplotlib.use("Agg")
    notebook = json.loads(path.read_text())
    if notebook.get("nbformat") != 4:
        raise ValueError(f"{path.name} is not an nbformat 4 notebook")
    namespace: dict = {"__name__": "__main__"}
    printed = []
    for index, cell in enumerate(c for c in notebook["cells"] if c["cell_type"] == "code"):
        source = "".join(cell["source"])
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(source, f"{path.name}, code cell {index + 1}", "exec"), namespace)  # noqa: S102
        printed.append(out.getvalue())
    return printed


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no notebook"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    printed = execute(path)
    assert printed and any(printed), f"{path.name} shows nothing"


def _store_outputs(path: Path) -> None:
    printed = iter(execute(path))
    notebook = json.loads(path.read_text())
    count = 0
    for cell in notebook["cells"]:
        if cell["cell_type"] != "code":
            continue
        count += 1
        text = next(printed)
        cell["execution_count"] = count
        cell["outputs"] = (
            [{"name": "stdout", "output_type": "stream", "text": text.splitlines(keepends=True)}]
            if text
            else []
        )
    path.write_text(json.dumps(notebook, indent=1) + "\n")


if __name__ == "__main__":
    for name in sys.argv[1:]:
        _store_outputs(Path(name).resolve())
