"""Where a study keeps what it has done: :class:`StudyStore`, a directory that survives SIGKILL.

Layout of a store directory::

    study.sqlite        the database (WAL mode, foreign keys on)
    study.lock          held (flock) by the one process that writes
    weights/<name>.safetensors

The database holds the configurations used (:class:`~funcspace.study.config.StudyConfig`,
JSON), the state of every work unit (``pending``, ``running``, ``done``, ``failed``; attempts,
error, result JSON), the nodes and edges of the map (attributes JSON), the metrics measured
later of a node or a pair of nodes (a flatness of a minimum, a distance between two; JSON) and
the weight files (name, file, sha256, size). Nothing is pickled: results are JSON, tensors are
safetensors.

Writing: only the coordinating process writes (workers return results to it); a writable
:meth:`StudyStore.open` takes an exclusive lock on ``study.lock`` and refuses a second writer.
:meth:`StudyStore.finish` commits everything of one unit at once: its weight files are
written first (a temporary name, fsync, rename), then its result, nodes, edges and weight rows
in one transaction. A kill before the commit leaves files no row refers to: they are deleted
by the next writable open, and the unit, left ``running``, becomes ``pending`` again (its
attempt counted). A kill after the commit leaves the unit done. So the database never refers
to a weight file that is not whole, and no unit is half recorded.

Reading: :meth:`StudyStore.open` refuses a directory that is not a store, a file that is not
an SQLite database, missing tables, another schema version, a configuration incompatible with
the stored ones (the message lists the differences), and a missing, truncated or altered
weight file (checked against the recorded size and sha256; the message names the file).

Example
-------
>>> import tempfile, torch
>>> from funcspace.study.config import StudyConfig, unit_key
>>> folder = tempfile.mkdtemp()
>>> with StudyStore.create(folder, StudyConfig()) as store:
...     key = unit_key("train", optimizer="sgd", seed=0)
...     attempt = store.begin(key, "train", {"optimizer": "sgd", "seed": 0})
...     store.finish(key, result={"epochs": 12}, nodes=[Node("sgd0", {"seed": 0}, "sgd0")],
...                  weights={"sgd0": {"w": torch.zeros(2)}})
>>> with StudyStore.open(folder) as store:
...     store.done(key), store.result(key), store.load_weights("sgd0")["w"].shape
(True, {'epochs': 12}, torch.Size([2]))
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sqlite3
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import Tensor

from funcspace._store import write_atomic
from funcspace.errors import FuncspaceError

from .config import StudyConfig

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock (one writer is then up to the user)
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "SCHEMA_VERSION",
    "UNIT_STATES",
    "Edge",
    "Metric",
    "Node",
    "StoreError",
    "StudyStore",
    "Unit",
]

log = logging.getLogger(__name__)

#: The database layout written; a store of another version is refused.
SCHEMA_VERSION = 2
UNIT_STATES = ("pending", "running", "done", "failed")
DATABASE = "study.sqlite"
LOCK = "study.lock"
WEIGHTS = "weights"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}\Z")
_TABLES = ("meta", "configs", "units", "weights", "nodes", "edges", "metrics")

_SCHEMA = f"""
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE configs (
    key TEXT PRIMARY KEY, config TEXT NOT NULL, added REAL NOT NULL
);
CREATE TABLE units (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    inputs TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN {UNIT_STATES}),
    attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    error TEXT,
    result TEXT,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    CHECK ((state = 'done') = (result IS NOT NULL))
);
CREATE TABLE weights (
    name TEXT PRIMARY KEY,
    unit TEXT NOT NULL REFERENCES units(key),
    file TEXT NOT NULL UNIQUE,
    sha256 TEXT NOT NULL,
    bytes INTEGER NOT NULL
);
CREATE TABLE nodes (
    name TEXT PRIMARY KEY,
    unit TEXT NOT NULL REFERENCES units(key),
    attributes TEXT NOT NULL,
    weights TEXT REFERENCES weights(name)
);
CREATE TABLE edges (
    id INTEGER PRIMARY KEY,
    a TEXT NOT NULL REFERENCES nodes(name),
    b TEXT NOT NULL REFERENCES nodes(name),
    kind TEXT NOT NULL,
    unit TEXT NOT NULL REFERENCES units(key),
    attributes TEXT NOT NULL,
    UNIQUE (a, b, kind),
    CHECK (a != b)
);
CREATE UNIQUE INDEX edges_unordered ON edges (min(a, b), max(a, b), kind);
CREATE TABLE metrics (
    id INTEGER PRIMARY KEY,
    a TEXT NOT NULL REFERENCES nodes(name),
    b TEXT REFERENCES nodes(name),
    name TEXT NOT NULL,
    unit TEXT NOT NULL REFERENCES units(key),
    value TEXT NOT NULL,
    CHECK (b IS NULL OR a < b)
);
CREATE UNIQUE INDEX metrics_subject ON metrics (a, coalesce(b, ''), name);
CREATE INDEX units_state ON units (state);
"""


class StoreError(FuncspaceError):
    """A study store that cannot be used as asked: damaged, mismatched, in use, or a call out
    of order. The message names the file or unit and what to do."""


@dataclass(frozen=True)
class Unit:
    """A work unit as stored: its key, kind, inputs, state, attempts, last error and result
    (None unless done)."""

    key: str
    kind: str
    inputs: dict[str, Any]
    state: str
    attempts: int
    error: str | None = None
    result: Any = None


@dataclass(frozen=True)
class Node:
    """A minimizer on the map: its name, attributes (JSON data) and the name of its weights
    in the store (None: none stored)."""

    name: str
    attributes: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None


@dataclass(frozen=True)
class Edge:
    """A measured path between nodes ``a`` and ``b`` of one ``kind``, with its attributes.
    One edge per unordered pair and kind."""

    a: str
    b: str
    kind: str
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Metric:
    """A measurement of node ``a`` (``b`` None: a flatness measure of a minimum) or of the
    pair ``a``, ``b`` (a distance between two minima), named ``name``, with a JSON ``value``.
    One metric per subject and name; a pair's ends are stored in name order."""

    a: str
    b: str | None
    name: str
    value: Any


class StudyStore:
    """A study's store directory: work units, nodes, edges and weights (see the module).

    Make one with :meth:`create`, reopen it with :meth:`open`; close it (or use ``with``).
    Every method that writes commits before it returns.
    """

    def __init__(self, path: Path, connection: sqlite3.Connection, *, readonly: bool) -> None:
        # private: use create or open
        self.path = path
        self.readonly = readonly
        self._db = connection
        self._lock: int | None = None

    # ------------------------------------------------------------------ opening

    @classmethod
    def create(cls, path: str | os.PathLike[str], config: StudyConfig) -> StudyStore:
        """A new, empty store in the directory ``path`` (made if missing), for ``config``.

        Raises
        ------
        StoreError
            If ``path`` already holds a store (open it instead) or is not a directory.
        """
        if not isinstance(config, StudyConfig):
            raise StoreError(f"config must be a StudyConfig, got {type(config).__name__}")
        folder = Path(path)
        if folder.exists() and not folder.is_dir():
            raise StoreError(f"{folder} is a file, not a directory for a study store")
        if (folder / DATABASE).exists():
            raise StoreError(f"{folder} already holds a study store; open it with StudyStore.open")
        (folder / WEIGHTS).mkdir(parents=True, exist_ok=True)
        store = cls(folder, _connect(folder / DATABASE, readonly=False), readonly=False)
        try:
            store._take_lock()
            with store._transaction():
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        store._db.execute(statement)
                store._db.execute(
                    "INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                )
                store._record(config)
        except BaseException:
            store.close()
            raise
        return store

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        config: StudyConfig | None = None,
        *,
        readonly: bool = False,
        verify: bool = True,
    ) -> StudyStore:
        """The store in the directory ``path``, checked, ready to continue.

        A writable open takes the store's lock, turns units left ``running`` by an interrupted
        run back into ``pending`` (attempts kept), deletes weight files that no row refers to
        (left by a kill between writing and committing) and records ``config``.

        Parameters
        ----------
        path : str or PathLike
            The store directory.
        config : StudyConfig, optional
            The configuration to continue with; refused unless compatible with every
            configuration the store was used with. None: the last one recorded.
        readonly : bool
            Open without the lock, write nothing (reading while a run writes is safe).
        verify : bool
            Check the sha256 of every weight file (default); sizes are always checked.

        Raises
        ------
        StoreError
            For a directory without a store, a damaged database (not SQLite, missing tables,
            another schema version), an incompatible ``config`` (the differences listed), a
            missing, truncated or altered weight file (named), or a store another process
            holds open for writing.
        """
        folder = Path(path)
        db_file = folder / DATABASE
        if not db_file.is_file():
            raise StoreError(
                f"{folder}: no study store here ({DATABASE} missing); run `funcspace study "
                "--out DIR` (or StudyStore.create) to make one"
            )
        if config is not None and not isinstance(config, StudyConfig):
            raise StoreError(f"config must be a StudyConfig or None, got {type(config).__name__}")
        try:
            connection = _connect(db_file, readonly=readonly)
        except sqlite3.Error as e:
            raise StoreError(f"{db_file}: cannot be opened as a database: {e}") from e
        store = cls(folder, connection, readonly=readonly)
        try:
            if not readonly:
                store._take_lock()
            store._check_database(db_file)
            store._check_configs(config)
            store._check_weights(verify=verify)
            if not readonly:
                with store._transaction():
                    store._db.execute("UPDATE units SET state = 'pending' WHERE state = 'running'")
                    if config is not None:
                        store._record(config)
                store._clean_orphans()
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        """Close the database and release the lock (closing twice is harmless)."""
        if self._db is not None:
            self._db.close()
            self._db = None  # type: ignore[assignment]
        if self._lock is not None:
            os.close(self._lock)  # releases the flock
            self._lock = None

    def __enter__(self) -> StudyStore:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._db is None else ("read-only" if self.readonly else "open")
        return f"StudyStore({str(self.path)!r}, {state})"

    # ------------------------------------------------------------------ configuration

    @property
    def config(self) -> StudyConfig:
        """The configuration recorded last."""
        key = self._one("SELECT value FROM meta WHERE key = 'config_key'")[0]
        text = self._one("SELECT config FROM configs WHERE key = ?", (key,))[0]
        return StudyConfig.from_dict(json.loads(text))

    # ------------------------------------------------------------------ units

    def add(self, key: str, kind: str, inputs: Mapping[str, Any]) -> None:
        """Register a planned unit as ``pending`` (nothing happens if it is known already
        with the same kind and inputs).

        Raises
        ------
        StoreError
            If ``key`` is known with another kind or other inputs.
        """
        self._writable()
        with self._transaction():
            self._ensure(key, kind, inputs)

    def begin(self, key: str, kind: str, inputs: Mapping[str, Any]) -> int:
        """Mark a unit ``running`` (registering it if new) and count the attempt.

        Returns
        -------
        int
            The attempt number, from 1.

        Raises
        ------
        StoreError
            If the unit is done already, or known with another kind or other inputs.
        """
        self._writable()
        with self._transaction():
            state = self._ensure(key, kind, inputs)
            if state == "done":
                raise StoreError(f"unit {key} is done already; check store.done(key) first")
            self._db.execute(
                "UPDATE units SET state = 'running', attempts = attempts + 1, started = ? "
                "WHERE key = ?",
                (time.time(), key),
            )
            return int(self._one("SELECT attempts FROM units WHERE key = ?", (key,))[0])

    def finish(
        self,
        key: str,
        *,
        result: Any = None,
        nodes: Iterable[Node | Mapping[str, Any]] = (),
        edges: Iterable[Edge | Mapping[str, Any]] = (),
        metrics: Iterable[Metric | Mapping[str, Any]] = (),
        weights: Mapping[str, Mapping[str, Tensor]] | None = None,
    ) -> None:
        """Record a running unit as done, with everything it produced, all or nothing.

        The weight files are written first (whole, under a temporary name, then renamed);
        then the result, the nodes, the edges, the metrics and the weight rows are committed
        in one transaction. Finishing a unit twice is refused (a done unit is never rewritten).

        Parameters
        ----------
        key : str
            A unit marked ``running`` by :meth:`begin`.
        result : JSON data
            The unit's result (None is stored as JSON null).
        nodes : iterable of Node (or mappings with its fields)
            New nodes; their ``weights`` name weights of this unit or of an earlier one.
        edges : iterable of Edge (or mappings with its fields)
            New edges, between nodes of this unit or earlier ones.
        metrics : iterable of Metric (or mappings with its fields)
            New metrics, of nodes of this unit or earlier ones.
        weights : mapping of name -> (mapping of str -> Tensor), optional
            State dicts to store, each as ``weights/<name>.safetensors`` (names of letters,
            digits and ``_.+-``). Tensors are copied to the CPU.

        Raises
        ------
        StoreError
            For a unit that is not running, a node, edge or weights name that exists already
            or is repeated, an edge or metric of an unknown node, data that JSON cannot hold,
            or a value that is not a tensor. Nothing is recorded then.
        """
        self._writable()
        row = self._db.execute("SELECT state FROM units WHERE key = ?", (key,)).fetchone()
        if row is None or row[0] != "running":
            state = "unknown" if row is None else row[0]
            hint = "it is done already" if state == "done" else "call store.begin(key, ...) first"
            raise StoreError(f"cannot finish unit {key}: it is {state}; {hint}")
        result_json = _json(f"unit {key}: result", result)
        node_rows = [_node(n) for n in nodes]
        edge_rows = [_edge(e) for e in edges]
        metric_rows = [_metric(m) for m in metrics]
        blobs = self._serialize(key, weights or {})
        self._check_new(key, node_rows, edge_rows, blobs)
        self._check_metrics(key, node_rows, metric_rows)

        written: list[Path] = []
        try:
            rows = []
            for name, data in blobs.items():
                file = self._weights_dir / f"{name}.safetensors"
                write_atomic(file, data)
                written.append(file)
                rows.append((name, key, file.name, hashlib.sha256(data).hexdigest(), len(data)))
            _sync_directory(self._weights_dir)
            with self._transaction():
                self._db.executemany("INSERT INTO weights VALUES (?, ?, ?, ?, ?)", rows)
                self._db.executemany(
                    "INSERT INTO nodes VALUES (?, ?, ?, ?)",
                    [
                        (n.name, key, _json(f"node {n.name}", n.attributes), n.weights)
                        for n in node_rows
                    ],
                )
                self._db.executemany(
                    "INSERT INTO edges (a, b, kind, unit, attributes) VALUES (?, ?, ?, ?, ?)",
                    [
                        (e.a, e.b, e.kind, key, _json(f"edge {e.a}-{e.b}", e.attributes))
                        for e in edge_rows
                    ],
                )
                self._db.executemany(
                    "INSERT INTO metrics (a, b, name, unit, value) VALUES (?, ?, ?, ?, ?)",
                    [
                        (m.a, m.b, m.name, key, _json(f"metric {m.name} of {m.a}", m.value))
                        for m in metric_rows
                    ],
                )
                self._db.execute(
                    "UPDATE units SET state = 'done', result = ?, error = NULL, finished = ? "
                    "WHERE key = ?",
                    (result_json, time.time(), key),
                )
        except sqlite3.IntegrityError as e:
            for file in written:
                file.unlink(missing_ok=True)
            raise StoreError(f"cannot finish unit {key}: {e}; nothing was recorded") from e
        except BaseException:
            for file in written:
                file.unlink(missing_ok=True)
            raise

    def fail(self, key: str, error: str) -> None:
        """Record that a running unit failed, with the error (text); it may be begun again."""
        self._writable()
        with self._transaction():
            row = self._db.execute("SELECT state FROM units WHERE key = ?", (key,)).fetchone()
            if row is None or row[0] != "running":
                state = "unknown" if row is None else row[0]
                raise StoreError(f"cannot mark unit {key} failed: it is {state}, not running")
            self._db.execute(
                "UPDATE units SET state = 'failed', error = ?, finished = ? WHERE key = ?",
                (str(error), time.time(), key),
            )

    def done(self, key: str) -> bool:
        """Whether the unit is done."""
        row = self._db.execute("SELECT state FROM units WHERE key = ?", (key,)).fetchone()
        return row is not None and row[0] == "done"

    def result(self, key: str) -> Any:
        """The result of a done unit.

        Raises
        ------
        StoreError
            If the unit is unknown or not done.
        """
        row = self._db.execute("SELECT state, result FROM units WHERE key = ?", (key,)).fetchone()
        if row is None or row[0] != "done":
            raise StoreError(
                f"unit {key} has no result: it is {'unknown' if row is None else row[0]}"
            )
        return json.loads(row[1])

    def unit(self, key: str) -> Unit | None:
        """The unit stored under ``key``, or None."""
        row = self._db.execute(
            f"SELECT {_UNIT_COLUMNS} FROM units WHERE key = ?", (key,)
        ).fetchone()
        return None if row is None else _unit(row)

    def units(self, state: str | None = None, kind: str | None = None) -> tuple[Unit, ...]:
        """The units, in the order they were registered, optionally of one state and kind."""
        if state is not None and state not in UNIT_STATES:
            raise StoreError(f"unknown unit state {state!r}; states are {', '.join(UNIT_STATES)}")
        rows = self._db.execute(
            f"SELECT {_UNIT_COLUMNS} FROM units WHERE (?1 IS NULL OR state = ?1) "
            "AND (?2 IS NULL OR kind = ?2) ORDER BY rowid",
            (state, kind),
        )
        return tuple(_unit(r) for r in rows)

    def pending(self) -> tuple[Unit, ...]:
        """Units registered or interrupted but not done nor failed (see :meth:`units` for the
        failed ones)."""
        return self.units("pending")

    # ------------------------------------------------------------------ the map

    def nodes(self) -> tuple[Node, ...]:
        """Every node, in the order recorded."""
        rows = self._db.execute("SELECT name, attributes, weights FROM nodes ORDER BY rowid")
        return tuple(Node(name, json.loads(attributes), w) for name, attributes, w in rows)

    def edges(self) -> tuple[Edge, ...]:
        """Every edge, in the order recorded."""
        rows = self._db.execute("SELECT a, b, kind, attributes FROM edges ORDER BY id")
        return tuple(Edge(a, b, kind, json.loads(attributes)) for a, b, kind, attributes in rows)

    def metrics(self, name: str | None = None) -> tuple[Metric, ...]:
        """Every metric (or those named ``name``), in the order recorded; a pair's ends in
        name order."""
        rows = self._db.execute(
            "SELECT a, b, name, value FROM metrics WHERE (?1 IS NULL OR name = ?1) ORDER BY id",
            (name,),
        )
        return tuple(Metric(a, b, n, json.loads(value)) for a, b, n, value in rows)

    def weight_names(self) -> tuple[str, ...]:
        """The names of the stored weights, in the order recorded."""
        return tuple(r[0] for r in self._db.execute("SELECT name FROM weights ORDER BY rowid"))

    def load_weights(self, name: str) -> dict[str, Tensor]:
        """The tensors stored under ``name`` (on the CPU), after checking the file's sha256.

        Raises
        ------
        StoreError
            For an unknown name (the known ones listed), or a missing, truncated or altered
            file (named).
        """
        row = self._db.execute("SELECT file, sha256, bytes FROM weights WHERE name = ?", (name,))
        found = row.fetchone()
        if found is None:
            known = ", ".join(self.weight_names()[:10]) or "none"
            raise StoreError(f"no weights named {name!r} in {self.path}; stored: {known}")
        file = self._weights_dir / found[0]
        data = _read_checked(file, found[1], found[2])
        try:
            return load_safetensors(data)
        except Exception as e:  # safetensors raises its own error types for a bad header
            raise StoreError(f"{file}: not a valid safetensors file: {e}") from e

    # ------------------------------------------------------------------ internals

    @property
    def _weights_dir(self) -> Path:
        return self.path / WEIGHTS

    def _one(self, sql: str, args: tuple = ()) -> tuple:
        row = self._db.execute(sql, args).fetchone()
        if row is None:
            raise StoreError(f"{self.path / DATABASE}: damaged (no row for {sql!r})")
        return row

    def _writable(self) -> None:
        if self._db is None:
            raise StoreError(f"{self.path}: the store is closed")
        if self.readonly:
            raise StoreError(f"{self.path}: opened read-only; open it with readonly=False to write")

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    def _take_lock(self) -> None:
        if fcntl is None:  # pragma: no cover
            return
        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            raise StoreError(
                f"{self.path}: another process has this store open for writing (only the "
                "coordinating process writes); wait for it, or open with readonly=True"
            ) from e
        self._lock = fd

    def _record(self, config: StudyConfig) -> None:
        key = config.key()
        self._db.execute(
            "INSERT OR IGNORE INTO configs VALUES (?, ?, ?)",
            (key, json.dumps(config.to_dict(), sort_keys=True), time.time()),
        )
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('config_key', ?)", (key,))

    def _check_database(self, file: Path) -> None:
        try:
            tables = {
                r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            missing = [t for t in _TABLES if t not in tables]
            if missing:
                raise StoreError(
                    f"{file}: not a funcspace study database (tables {', '.join(missing)} "
                    "missing); was it made by StudyStore.create?"
                )
            row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None or row[0] != str(SCHEMA_VERSION):
                found = "none" if row is None else row[0]
                raise StoreError(
                    f"{file}: schema version {found}; this funcspace reads version "
                    f"{SCHEMA_VERSION} (a store of another funcspace version: use that one, or "
                    "start a new store)"
                )
            problems = [r[0] for r in self._db.execute("PRAGMA quick_check")]
            if problems != ["ok"]:
                raise StoreError(f"{file}: the database is damaged: {'; '.join(problems[:3])}")
        except sqlite3.DatabaseError as e:
            raise StoreError(
                f"{file}: not a readable SQLite database ({e}): damaged or not a study store"
            ) from e

    def _check_configs(self, config: StudyConfig | None) -> None:
        stored = []
        for key, text in self._db.execute("SELECT key, config FROM configs ORDER BY rowid"):
            try:
                stored.append(StudyConfig.from_dict(json.loads(text)))
            except (ValueError, TypeError) as e:
                raise StoreError(
                    f"{self.path / DATABASE}: stored config {key} unreadable: {e}"
                ) from e
        if not stored:
            raise StoreError(f"{self.path / DATABASE}: damaged (no configuration recorded)")
        if config is None:
            return
        for old in stored:
            differences = old.incompatibilities(config)
            if differences:
                raise StoreError(
                    f"{self.path}: the configuration is incompatible with one this store was "
                    f"used with (stored != given): {'; '.join(differences)}. Use another "
                    "output directory, "
                    "or go back to those settings (seeds, optimizers, path kinds, flatness "
                    "measures, batch size and budget may change)"
                )

    def _check_weights(self, *, verify: bool) -> None:
        for name, file, sha256, size in self._db.execute(
            "SELECT name, file, sha256, bytes FROM weights ORDER BY rowid"
        ):
            path = self._weights_dir / file
            if verify:
                _read_checked(path, sha256, size)
                continue
            try:
                actual = path.stat().st_size
            except FileNotFoundError as e:
                raise StoreError(f"{path}: missing (weights {name!r} are recorded there)") from e
            if actual != size:
                raise StoreError(f"{path}: {actual} bytes, {size} recorded: truncated or replaced")

    def _clean_orphans(self) -> None:
        known = {r[0] for r in self._db.execute("SELECT file FROM weights")}
        for entry in self._weights_dir.iterdir():
            temporary = entry.name.startswith(".") and entry.name.endswith(".tmp")
            orphan = entry.suffix == ".safetensors" and entry.name not in known
            if entry.is_file() and (temporary or orphan):
                log.info("removing %s, left by an interrupted run", entry)
                entry.unlink(missing_ok=True)

    def _ensure(self, key: str, kind: str, inputs: Mapping[str, Any]) -> str:
        if not isinstance(key, str) or not key:
            raise StoreError(f"a unit key must be a non-empty string, got {key!r}")
        if not isinstance(kind, str) or not kind:
            raise StoreError(f"unit {key}: kind must be a non-empty string, got {kind!r}")
        if not isinstance(inputs, Mapping):
            raise StoreError(f"unit {key}: inputs must be a mapping, got {type(inputs).__name__}")
        text = json.dumps(
            inputs, sort_keys=True, separators=(",", ":"), allow_nan=False, default=_no
        )
        row = self._db.execute("SELECT kind, inputs, state FROM units WHERE key = ?", (key,))
        found = row.fetchone()
        if found is None:
            self._db.execute(
                "INSERT INTO units (key, kind, inputs, state, created) "
                "VALUES (?, ?, ?, 'pending', ?)",
                (key, kind, text, time.time()),
            )
            return "pending"
        if (found[0], found[1]) != (kind, text):
            raise StoreError(
                f"unit {key} is stored as a {found[0]!r} unit with inputs {found[1]}, not a "
                f"{kind!r} unit with {text}: derive keys from the inputs (unit_key)"
            )
        return found[2]

    def _serialize(self, key: str, weights: Mapping[str, Mapping[str, Tensor]]) -> dict[str, bytes]:
        if not isinstance(weights, Mapping):
            raise StoreError(f"unit {key}: weights must map names to state dicts")
        out = {}
        for name, state in weights.items():
            if not isinstance(name, str) or not _NAME.match(name):
                raise StoreError(
                    f"unit {key}: weights name {name!r} must be 1-128 letters, digits or _.+- "
                    "(not starting with punctuation): it names a file"
                )
            if not isinstance(state, Mapping) or not state:
                raise StoreError(f"unit {key}: weights {name!r} must be a non-empty state dict")
            tensors = {}
            for k, t in state.items():
                if not isinstance(t, Tensor) or t.layout != torch.strided:
                    raise StoreError(
                        f"unit {key}: weights {name!r}, {k!r} is not a dense tensor "
                        f"({type(t).__name__})"
                    )
                # a copy: safetensors refuses tensors that share memory (tied weights, views)
                tensors[str(k)] = t.detach().to("cpu", copy=True).contiguous()
            out[name] = save_safetensors(tensors, metadata={"unit": key, "name": name})
        return out

    def _check_new(
        self, key: str, nodes: list[Node], edges: list[Edge], blobs: Mapping[str, bytes]
    ) -> None:
        def taken(table: str, column: str, value: str) -> bool:
            sql = f"SELECT 1 FROM {table} WHERE {column} = ?"
            return self._db.execute(sql, (value,)).fetchone() is not None

        for name in blobs:
            if taken("weights", "name", name):
                raise StoreError(f"unit {key}: weights {name!r} exist already; choose a new name")
        names = [n.name for n in nodes]
        for name in names:
            if names.count(name) > 1 or taken("nodes", "name", name):
                raise StoreError(f"unit {key}: node {name!r} exists already or is repeated")
        for n in nodes:
            if (
                n.weights is not None
                and n.weights not in blobs
                and not taken("weights", "name", n.weights)
            ):
                raise StoreError(
                    f"unit {key}: node {n.name!r} refers to weights {n.weights!r}, which are "
                    "neither given in this unit nor stored"
                )
        pairs = [(min(e.a, e.b), max(e.a, e.b), e.kind) for e in edges]
        for e, pair in zip(edges, pairs, strict=True):
            for end in (e.a, e.b):
                if end not in names and not taken("nodes", "name", end):
                    raise StoreError(f"unit {key}: edge {e.a}-{e.b} ({e.kind}): no node {end!r}")
            exists = self._db.execute(
                "SELECT 1 FROM edges WHERE min(a, b) = ? AND max(a, b) = ? AND kind = ?", pair
            ).fetchone()
            if pairs.count(pair) > 1 or exists:
                raise StoreError(
                    f"unit {key}: edge {e.a}-{e.b} ({e.kind}) exists already or is repeated"
                )

    def _check_metrics(self, key: str, nodes: list[Node], metrics: list[Metric]) -> None:
        names = {n.name for n in nodes}
        seen: set[tuple[str, str, str]] = set()
        for m in metrics:
            subject = m.a if m.b is None else f"{m.a}-{m.b}"
            for end in (m.a, m.b):
                if end is None or end in names:
                    continue
                row = self._db.execute("SELECT 1 FROM nodes WHERE name = ?", (end,)).fetchone()
                if row is None:
                    raise StoreError(f"unit {key}: metric {m.name} of {subject}: no node {end!r}")
            ident = (m.a, m.b or "", m.name)
            exists = self._db.execute(
                "SELECT 1 FROM metrics WHERE a = ? AND coalesce(b, '') = ? AND name = ?", ident
            ).fetchone()
            if ident in seen or exists:
                raise StoreError(
                    f"unit {key}: metric {m.name} of {subject} exists already or is repeated"
                )
            seen.add(ident)


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, or ``ROLLBACK`` on any exception."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: Any, error: Any, trace: Any) -> None:
        if kind is None:
            try:
                self._db.execute("COMMIT")
                return
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        if self._db.in_transaction:  # some errors (disk full) roll back by themselves
            self._db.execute("ROLLBACK")


_UNIT_COLUMNS = "key, kind, inputs, state, attempts, error, result"


def _unit(row: tuple) -> Unit:
    key, kind, inputs, state, attempts, error, result = row
    return Unit(
        key,
        kind,
        json.loads(inputs),
        state,
        attempts,
        error,
        None if result is None else json.loads(result),
    )


def _connect(file: Path, *, readonly: bool) -> sqlite3.Connection:
    if readonly:
        db = sqlite3.connect(f"{file.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
    else:
        db = sqlite3.connect(file, isolation_level=None)  # transactions are explicit
    db.execute("PRAGMA foreign_keys = ON")
    db.execute("PRAGMA busy_timeout = 10000")
    if not readonly:
        try:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
        except sqlite3.DatabaseError:
            pass  # not a database: reported by the checks that follow
    return db


def _json(where: str, value: Any) -> str:
    try:
        return json.dumps(value, default=_no)
    except (TypeError, ValueError) as e:
        raise StoreError(f"{where} holds data that JSON cannot store: {e}") from e


def _no(value: Any) -> Any:
    raise TypeError(f"a {type(value).__name__} is not JSON data")


def _node(value: Node | Mapping[str, Any]) -> Node:
    node = value if isinstance(value, Node) else _record_of(Node, value)
    if not isinstance(node.name, str) or not node.name:
        raise StoreError(f"a node name must be a non-empty string, got {node.name!r}")
    if not isinstance(node.attributes, Mapping):
        raise StoreError(f"node {node.name!r}: attributes must be a mapping")
    if node.weights is not None and not isinstance(node.weights, str):
        raise StoreError(f"node {node.name!r}: weights must be a weights name or None")
    return node


def _edge(value: Edge | Mapping[str, Any]) -> Edge:
    edge = value if isinstance(value, Edge) else _record_of(Edge, value)
    for end in (edge.a, edge.b, edge.kind):
        if not isinstance(end, str) or not end:
            raise StoreError(f"an edge's a, b and kind must be non-empty strings, got {edge}")
    if edge.a == edge.b:
        raise StoreError(f"edge {edge.a}-{edge.b} ({edge.kind}) joins a node to itself")
    if not isinstance(edge.attributes, Mapping):
        raise StoreError(f"edge {edge.a}-{edge.b}: attributes must be a mapping")
    return edge


def _metric(value: Metric | Mapping[str, Any]) -> Metric:
    metric = value if isinstance(value, Metric) else _record_of(Metric, value)
    for part in (metric.a, metric.name):
        if not isinstance(part, str) or not part:
            raise StoreError(f"a metric's a and name must be non-empty strings, got {metric}")
    if metric.b is None:
        return metric
    if not isinstance(metric.b, str) or not metric.b or metric.b == metric.a:
        raise StoreError(f"a metric's b must be None or another node's name, got {metric}")
    a, b = sorted((metric.a, metric.b))
    return Metric(a, b, metric.name, metric.value)


def _record_of(cls: type, value: Any) -> Any:
    if not isinstance(value, Mapping):
        raise StoreError(f"expected a {cls.__name__} or a mapping of its fields, got {value!r}")
    try:
        return cls(**value)
    except TypeError as e:
        raise StoreError(f"not a {cls.__name__}: {e}") from e


def _read_checked(file: Path, sha256: str, size: int) -> bytes:
    try:
        data = file.read_bytes()
    except FileNotFoundError as e:
        raise StoreError(f"{file}: missing; the study store records weights there") from e
    except OSError as e:
        raise StoreError(f"{file}: cannot be read: {e}") from e
    if len(data) != size:
        raise StoreError(f"{file}: {len(data)} bytes, {size} recorded: truncated or replaced")
    if hashlib.sha256(data).hexdigest() != sha256:
        raise StoreError(f"{file}: its sha256 is not the one recorded: corrupted or replaced")
    return data


def _sync_directory(folder: Path) -> None:
    """Make the renames in ``folder`` durable before the database refers to them."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - Windows cannot open a directory
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)
