"""Tests for funcspace.study.cli: the ``funcspace`` command's subcommands, help, and one-line
errors."""

from __future__ import annotations

import sys

import pytest

from funcspace.study.cli import main
from funcspace.study.config import StudyConfig
from funcspace.study.report import REPORT
from funcspace.study.store import StudyStore

from .test_study_report import CONFIG, make_store


@pytest.mark.parametrize(
    "argv", [["--help"], ["study", "--help"], ["report", "-h"], ["show", "-h"]]
)
def test_help(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: funcspace")


def test_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as stop:
        main([])
    assert stop.value.code == 2
    assert "required" in capsys.readouterr().err


def test_show(tmp_path, capsys):
    make_store(tmp_path)
    assert main(["show", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert CONFIG.key() in captured.out
    assert "minimizers 3" in captured.out and "7 done" in captured.out
    assert captured.err == ""


def test_report(tmp_path, capsys):
    make_store(tmp_path)
    assert main(["report", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / REPORT)
    assert (tmp_path / REPORT).is_file()


@pytest.mark.parametrize("command", ["show", "report"])
def test_missing_store_is_one_line(command, tmp_path, capsys):
    assert main([command, str(tmp_path / "nothing")]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("funcspace: error:")
    assert "no study store" in lines[0]


def test_damaged_store_is_one_line(tmp_path, capsys):
    StudyStore.create(tmp_path, CONFIG).close()
    (tmp_path / "study.sqlite").write_bytes(b"not a database at all" * 100)
    for name in ("study.sqlite-wal", "study.sqlite-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    assert main(["show", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "study.sqlite" in err[0]


def test_bad_config_is_one_line(tmp_path, capsys):
    config = tmp_path / "study.toml"
    config.write_text('paths = ["sideways"]\n')
    assert main(["study", str(config), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sideways" in err[0]
    assert not (tmp_path / "out").exists()


def test_missing_config_file_is_one_line(tmp_path, capsys):
    assert main(["study", str(tmp_path / "none.toml"), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "none.toml" in err[0]


def test_workers_must_be_positive(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["study", "--out", str(tmp_path), "--workers", "0"])
    assert stop.value.code == 2
    assert "--workers" in capsys.readouterr().err


def test_scheduler_without_dask(tmp_path, capsys, monkeypatch):
    # None in sys.modules makes the import fail, whether dask is installed or not
    monkeypatch.setitem(sys.modules, "dask", None)
    monkeypatch.setitem(sys.modules, "dask.distributed", None)
    argv = ["study", "--out", str(tmp_path / "out"), "--scheduler", "tcp://127.0.0.1:8786"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'dask[distributed]'" in err[0]
    assert not (tmp_path / "out").exists()


TINY = """
paths = ["linear"]
flatness = []

[data]
name = "mnist1d"
n_samples = 300

[model]
hidden = [8]

[evaluation]
align_examples = 64

[[optimizers]]
name = "sgd"
seeds = [0, 1]
epochs = 3
options = { lr = 0.1 }
"""


def test_study_runs_a_tiny_config(tmp_path, capsys):
    pytest.importorskip("funcspace.study.runner")
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    out = tmp_path / "out"
    assert main(["study", str(config), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"report: {out / REPORT}" in printed
    assert (out / REPORT).is_file()
    with StudyStore.open(out, readonly=True) as store:
        assert store.config == StudyConfig.from_toml(config)
        assert len(store.nodes()) == 2 and len(store.edges()) == 1
    # again: nothing left to do, same store
    assert main(["study", str(config), "--out", str(out)]) == 0
    assert main(["show", str(out)]) == 0
    assert "2 minima" in capsys.readouterr().out
