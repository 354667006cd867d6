"""Run a study: :func:`run` computes it into a store, :func:`load` reads it back.

The stages, each a set of work units (:mod:`funcspace.study.units`) with content-hash keys
(:func:`~funcspace.study.config.unit_key` of the configuration fields they depend on and of
their upstream units' keys):

1. ``train``: one unit per optimizer and seed; a node (optimizer, seed, hyper-parameters,
   errors) and its weights.
2. ``flatness``: one unit per minimum and measure of the configuration; a node metric.
3. cheap: a ``distance`` unit per pair (geodesic distance of the symmetry classes, disagreement
   of the predictions: pair metrics, on every edge of the pair) and a ``pair`` unit per pair
   and cheap path kind (``linear``, ``aligned``, ``geodesic``; ``hamming`` for binary
   models): an edge with the error and loss barriers (height above the chord and peak),
   where, how found, and the path's length. Minima at geodesic distance at most
   :data:`COPY_TOLERANCE` (0 for binary models, :func:`copy_tolerance`) are one function up
   to symmetry: the result's graph merges them (:func:`funcspace.graph.merge_copies`) and
   the optimized paths skip the copies.
4. expensive: ``pair`` units for the optimized kinds (``bent``, ``curve``), only on the pairs
   :func:`~funcspace.study.selection.select` picks, on the error peak (the highest training
   error along a path): a pair's upper bound is its lowest cheap peak, its lower bound the
   higher of its ends' training errors (no path between them can peak lower), with the
   configuration's ``budget.max_pairs`` and ``budget.tolerance``. The selection is itself a
   ``select`` unit whose result lists the measured and the skipped pairs with their reasons.

Execution: every unit goes through a :class:`concurrent.futures.Executor`: in this process
(``workers=1``), a spawn :class:`~concurrent.futures.ProcessPoolExecutor` (``workers > 1``,
one torch thread per worker), or one given (``executor=``; Dask's ``Client.get_executor()``
fits). Workers never touch the store: this process begins each unit, submits it, and
finishes it (one transaction) as its future completes.

Resume: a unit done in the store is not run again; one begun and not finished (a killed run)
or failed is. The selection is replayed: pairs measured before are read from the store, so an
interrupted and a whole run measure the same pairs. The same configuration gives the same
numbers whatever the executor (the units are seeded; the optimized paths are measured one
pair at a time, in the selection's order, so their parallelism is only across the optimized
kinds of one pair).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from funcspace.errors import FuncspaceError

from .config import StudyConfig, unit_key
from .minima import graph_from_store
from .selection import Selection, candidates, select
from .store import DATABASE, Edge, Metric, Node, StudyStore
from .units import (
    CHEAP_KINDS,
    EXPENSIVE_KINDS,
    HAMMING_ORDERS,
    bend_training,
    distance_unit,
    flatness_unit,
    init_worker,
    pair_unit,
    train_unit,
)

__all__ = ["COPY_TOLERANCE", "StudyError", "StudyResult", "load", "run"]

log = logging.getLogger(__name__)

STAGES = ("train", "flatness", "cheap", "expensive")
#: The largest geodesic distance between the symmetry classes of two minima read as zero (one
#: function up to symmetry). Float32 canonical forms put copies near 1e-7 to 1e-6; distinct
#: minima of the default study lie 10 to 20 apart.
COPY_TOLERANCE = 1e-4


def copy_tolerance(config: StudyConfig) -> float:
    """The largest geodesic distance read as zero: :data:`COPY_TOLERANCE`, and 0 for binary
    models (their distance, a fraction of flipped weights, is exactly 0 for copies and may be
    below 1e-4 for distinct minima of large networks)."""
    return 0.0 if config.model.binary else COPY_TOLERANCE


class StudyError(FuncspaceError):
    """A study that could not finish: the message names the failed units and their errors."""


# ----------------------------------------------------------------------------- executors


class InlineExecutor(Executor):
    """An :class:`~concurrent.futures.Executor` that runs each call at once, in this process
    (the ``workers=1`` path: the same code as a pool, without pickling)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as e:  # the future carries it, as a pool's would
            if not isinstance(e, Exception):
                raise
            future.set_exception(e)
        return future


# ----------------------------------------------------------------------------- the result


@dataclass(frozen=True, eq=False)
class StudyResult:
    """What a study computed, read back from its store.

    Attributes
    ----------
    path : pathlib.Path
        The store directory.
    config : StudyConfig
        The configuration the result was read under.
    graph : funcspace.graph.MinimaGraph
        The minimizers of the configuration and the paths measured between them, copies of
        one function merged into one node (its ``merged`` attribute names them).
    selection : Selection or None
        The pair selection for the optimized paths (indices into ``graph.names``); None
        when the configuration has no optimized path kind.
    copies : tuple of (str, str, float)
        Each copy, the minimum it copies and their geodesic distance.
    measured : tuple of (str, str)
        The pairs given optimized paths, in the order measured.
    skipped : tuple of (str, str, str)
        The other pairs and why (``"lower bound 0 + tolerance 0.02 >= tree path max 0.012"``,
        or that the budget was spent).
    pairs : int
        All pairs, ``N (N - 1) / 2``.
    timings : mapping of str -> float
        Seconds per stage (``train``, ``flatness``, ``cheap``, ``expensive``): wall time of
        this :func:`run`; for :func:`load`, the stored compute seconds of the units, summed.
    ran : mapping of str -> int
        Units run by this call per stage (0 everywhere for :func:`load` and a finished store).
    notes : tuple of str
        What the result does not hold and why (e.g. flatness measures not computed).
    """

    path: Path
    config: StudyConfig
    graph: Any
    selection: Selection | None
    copies: tuple[tuple[str, str, float], ...]
    measured: tuple[tuple[str, str], ...]
    skipped: tuple[tuple[str, str, str], ...]
    pairs: int
    timings: Mapping[str, float] = field(default_factory=dict)
    ran: Mapping[str, int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def table(self) -> str:
        """The minimizers, every pair's barriers by path kind, the selection, the timings."""
        g = self.graph
        lines = [f"study in {self.path}: {len(g)} minima, {self.pairs} pairs"]
        for name in g.names:
            n = g.node(name)
            test = "-" if n["test_error"] is None else f"{n['test_error']:.4f}"
            measures = n["flatness"] or {}
            flat = "".join(
                f", {k} {measures[k]:.4g}"
                for k in self.config.flatness
                if isinstance(measures.get(k), (int, float))
            )

            lines.append(
                f"  {name:<12} {n['optimizer']:<5} seed {n['seed']:<3} "
                f"{n['hyperparameters']['epochs']:>4} epochs, train error "
                f"{n['train_error']:.4f}, test error {test}{flat}"
            )
        lines += [f"  {c} is a copy of {o} (geodesic distance {d:.2g})" for c, o, d in self.copies]

        kinds = [k for k in self.config.paths if k in g.kinds]
        lines += ["", "training-error barrier (height above the chord of the ends)"]
        lines.append(f"  {'pair':<26}" + "".join(f"{k:>10}" for k in kinds))
        values: dict[frozenset, dict[str, float]] = {}
        for e in g.edges():
            values.setdefault(frozenset((e["a"], e["b"])), {})[e["kind"]] = e["error_barrier"]
        names = g.names
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                row = values.get(frozenset((a, b)), {})
                cells = "".join(f"{row[k]:>10.4f}" if k in row else f"{'-':>10}" for k in kinds)
                lines.append(f"  {a + ' - ' + b:<26}{cells}")
        if self.selection is not None:
            lines += [
                "",
                f"optimized paths: {len(self.measured)} of {self.pairs} pairs measured, "
                f"{len(self.skipped)} skipped",
            ]
            lines += [f"  measured {a} - {b}" for a, b in self.measured]
            lines += [f"  skipped  {a} - {b}: {why}" for a, b, why in self.skipped]
        lines.append("")
        lines.append(
            "seconds: "
            + ", ".join(f"{s} {self.timings.get(s, 0.0):.1f}" for s in STAGES)
            + "; units run: "
            + ", ".join(f"{s} {self.ran.get(s, 0)}" for s in STAGES)
        )
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"StudyResult({str(self.path)!r}: {len(self.graph)} minima, "
            f"{len(self.graph.edges())} paths, {len(self.measured)} of {self.pairs} pairs "
            "optimized)"
        )


# ----------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class _Unit:
    key: str
    kind: str
    inputs: dict[str, Any]
    stage: str
    label: str


def _train_units(config: StudyConfig) -> list[tuple[str, _Unit, dict[str, Any]]]:
    data, model = config.data.to_dict(), config.model.to_dict()
    out = []
    for o in config.optimizers:
        for seed in o.seeds:
            inputs = {
                "data": data,
                "model": model,
                "optimizer": o.name,
                "options": o.to_dict()["options"],
                "epochs": o.epochs,
                "seed": seed,
            }
            name = f"{o.name}-{seed}"
            out.append(
                (name, _Unit(unit_key("train", **inputs), "train", inputs, "train", name), inputs)
            )
    return out


def _pair_unit(
    config: StudyConfig, kind: str, a: str, b: str, keys: Mapping[str, str], stage: str
) -> _Unit:
    evaluation = config.evaluation.to_dict()
    evaluation.pop("batch_size")  # memory only: results do not depend on it
    inputs: dict[str, Any] = {
        "path": kind,
        "a": keys[a],
        "b": keys[b],
        "evaluation": evaluation,
    }
    if kind in EXPENSIVE_KINDS:
        inputs["path_epochs"] = config.budget.path_epochs
        inputs["seed"] = 0
    if kind == "hamming":
        inputs["orders"] = HAMMING_ORDERS
        inputs["seed"] = 0
    elif kind == "bent" and config.model.binary:
        inputs["bend"] = bend_training()
    return _Unit(unit_key("pair", **inputs), "pair", inputs, stage, f"{a} - {b} {kind}")


def _distance_unit(config: StudyConfig, a: str, b: str, keys: Mapping[str, str]) -> _Unit:
    inputs = {
        "a": keys[a],
        "b": keys[b],
        "align_examples": config.evaluation.align_examples,
    }
    return _Unit(unit_key("distance", **inputs), "distance", inputs, "cheap", f"{a} - {b}")


def _copies(
    names: Sequence[str],
    distance: Mapping[tuple[str, str], float],
    tolerance: float = COPY_TOLERANCE,
) -> list[tuple[str, str, float]]:
    """(copy, original, distance) for every minimum at most COPY_TOLERANCE from an earlier
    one, chains followed to the first minimum of their group."""
    original: dict[str, str] = {}
    out = []
    for j, b in enumerate(names):
        for a in names[:j]:
            d = distance[_ordered(a, b)]
            if d <= tolerance:
                original[b] = original.get(a, a)
                out.append((b, original[b], d))
                break
    return out


def _ordered(a: str, b: str) -> tuple[str, str]:

    # edges run from the lower name to the higher: the same edge whatever the config's order
    return (a, b) if a < b else (b, a)


# ----------------------------------------------------------------------------- running


class _Runner:
    def __init__(
        self,
        config: StudyConfig,
        store: StudyStore,
        executor: Executor,
        progress: bool | None,
        ahead: int = 1,
    ) -> None:
        self.config = config
        self.store = store
        self.executor = executor
        self.ahead = ahead  # optimized paths in flight at once
        self.disable = (progress is False) or (None if progress is None else False)
        self.ran = dict.fromkeys(STAGES, 0)
        self.timings = dict.fromkeys(STAGES, 0.0)
        self.weights: dict[str, Any] = {}

    def _state(self, name: str) -> Any:
        if name not in self.weights:
            self.weights[name] = self.store.load_weights(name)
        return self.weights[name]

    def execute(
        self,
        jobs: Iterable[tuple[_Unit, Callable[[dict], dict], Callable[[], dict], Callable]],
        desc: str,
    ) -> None:
        """Run the jobs not done: (unit, function, spec maker, finisher(result)). Every
        future is finished or failed in the store; then failures raise."""
        todo = [j for j in jobs if not self.store.done(j[0].key)]
        if not todo:
            return
        futures: dict[Future, tuple[_Unit, Callable]] = {}
        failures: list[str] = []
        with tqdm(total=len(todo), desc=desc, disable=self.disable) as bar:
            try:
                for job in todo:
                    future, unit, finisher = self.submit(job)
                    if future.done():  # run at once (in this process): commit it at once
                        failed = self.complete(future, unit, finisher)
                        if failed is not None:
                            failures.append(failed)
                        bar.update()
                    else:
                        futures[future] = (unit, finisher)

                for future in as_completed(futures):
                    failed = self.complete(future, *futures[future])
                    if failed is not None:
                        failures.append(failed)
                    bar.update()
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        self.raise_failures(failures)

    def submit(self, job: tuple) -> tuple[Future, _Unit, Callable]:
        """Begin a job's unit in the store and submit it: (future, unit, finisher)."""
        unit, fn, spec, finisher = job
        self.store.begin(unit.key, unit.kind, unit.inputs)
        return self.executor.submit(fn, spec()), unit, finisher

    def complete(self, future: Future, unit: _Unit, finisher: Callable) -> str | None:
        """Wait for a submitted unit; finish it in the store, or record it as failed and
        say how (None when it finished)."""
        error = future.exception()
        if error is None:
            finisher(unit, future.result())
            self.ran[unit.stage] += 1
            return None
        text = f"{type(error).__name__}: {error}"
        log.error("unit %s (%s) failed: %s", unit.label, unit.key, text)
        self.store.fail(unit.key, text)
        return f"{unit.label} ({unit.key}): {text}"

    def raise_failures(self, failures: Sequence[str]) -> None:
        if failures:
            raise StudyError(
                f"{len(failures)} unit(s) failed, recorded as failed in {self.store.path}; "
                "the others are stored. Fix the cause and run again to finish: "
                + "; ".join(failures)
            )

    # ------------------------------------------------------------------ stages

    def train(self) -> tuple[list[str], dict[str, str]]:
        plan = _train_units(self.config)

        def finisher(name: str, inputs: dict[str, Any]) -> Callable:
            def finish(unit: _Unit, result: dict[str, Any]) -> None:
                state = result.pop("state")
                attributes = {
                    "optimizer": inputs["optimizer"],
                    "seed": inputs["seed"],
                    "hyperparameters": {
                        "options": inputs["options"],
                        "epochs": result["epochs"],
                        "max_epochs": inputs["epochs"],
                    },
                    "train_error": result["train_error"],
                    "test_error": result["test_error"],
                }
                self.store.finish(
                    unit.key,
                    result=result,
                    nodes=[Node(name, attributes, name)],
                    weights={name: state},
                )
                self.weights[name] = state

            return finish

        spec = {"data": self.config.data.to_dict(), "model": self.config.model.to_dict()}
        jobs = [
            (unit, train_unit, (lambda i=inputs: {**spec, **i}), finisher(name, inputs))
            for name, unit, inputs in plan
        ]
        started = time.perf_counter()
        self.execute(jobs, "train")
        self.timings["train"] = time.perf_counter() - started
        return [name for name, _, _ in plan], {name: unit.key for name, unit, _ in plan}

    def flatness(self, names: list[str], keys: Mapping[str, str]) -> None:
        jobs = []
        for name in names:
            for measure in self.config.flatness:
                inputs = {"node": keys[name], "measure": measure, "seed": 0}
                unit = _Unit(unit_key("flatness", **inputs), "flatness", inputs, "flatness", name)
                jobs.append(
                    (
                        unit,
                        flatness_unit,
                        self._node_spec(name, measure),
                        self._metric(name, measure),
                    )
                )
        started = time.perf_counter()
        self.execute(jobs, "flatness")
        self.timings["flatness"] = time.perf_counter() - started

    def _metric(self, name: str, measure: str) -> Callable[[_Unit, dict[str, Any]], None]:
        def finish(unit: _Unit, result: dict[str, Any]) -> None:
            metric = Metric(name, None, measure, result["value"])
            self.store.finish(unit.key, result=result, metrics=[metric])

        return finish

    def _node_spec(self, name: str, measure: str) -> Callable[[], dict[str, Any]]:
        def spec() -> dict[str, Any]:
            return {
                "data": self.config.data.to_dict(),
                "model": self.config.model.to_dict(),
                "evaluation": self.config.evaluation.to_dict(),
                "state": self._state(name),
                "measure": measure,
                "seed": 0,
            }

        return spec

    def _spec(self, a: str, b: str, **extra: Any) -> Callable[[], dict[str, Any]]:
        def spec() -> dict[str, Any]:
            return {
                "data": self.config.data.to_dict(),
                "model": self.config.model.to_dict(),
                "evaluation": self.config.evaluation.to_dict(),
                "budget": self.config.budget.to_dict(),
                "a": self._state(a),
                "b": self._state(b),
                **extra,
            }

        return spec

    def _distance_job(self, a: str, b: str, keys: Mapping[str, str]) -> tuple:
        unit = _distance_unit(self.config, a, b, keys)

        def finish(unit: _Unit, result: dict[str, Any]) -> None:
            metrics = [
                Metric(a, b, name, result[name])
                for name in ("geodesic_distance", "function_distance")
            ]
            self.store.finish(unit.key, result=result, metrics=metrics)

        return unit, distance_unit, self._spec(a, b), finish

    def _pair_job(self, kind: str, a: str, b: str, keys: Mapping[str, str], stage: str) -> tuple:
        unit = _pair_unit(self.config, kind, a, b, keys, stage)

        def finish(unit: _Unit, result: dict[str, Any]) -> None:
            self.store.finish(unit.key, result=result, edges=[Edge(a, b, kind, _edge(result))])

        return unit, pair_unit, self._spec(a, b, kind=kind, seed=0), finish

    def cheap(
        self, names: list[str], keys: Mapping[str, str]
    ) -> tuple[dict[tuple[str, str], float], list[tuple[str, str, float]]]:
        """The distances and cheap paths of every pair; each pair's lowest cheap error peak,
        and the copies (copy, original, geodesic distance)."""
        kinds = [k for k in self.config.paths if k in CHEAP_KINDS]
        pairs = [_ordered(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
        jobs = [self._distance_job(a, b, keys) for a, b in pairs]
        jobs += [self._pair_job(k, a, b, keys, "cheap") for a, b in pairs for k in kinds]
        started = time.perf_counter()
        self.execute(jobs, "distances and cheap paths")
        self.timings["cheap"] = time.perf_counter() - started
        best = {}
        for a, b in pairs:
            peaks = [
                self.store.result(_pair_unit(self.config, k, a, b, keys, "cheap").key)["error"][
                    "peak"
                ]
                for k in kinds
            ]
            best[(a, b)] = min(peaks, default=math.inf)
        distance = {
            (a, b): self.store.result(_distance_unit(self.config, a, b, keys).key)[
                "geodesic_distance"
            ]
            for a, b in pairs
        }
        return best, _copies(names, distance, copy_tolerance(self.config))

    def expensive(
        self,
        names: list[str],
        keys: Mapping[str, str],
        upper: Mapping[tuple[str, str], float],
        lower: Sequence[float],
    ) -> Selection | None:
        kinds = [k for k in self.config.paths if k in EXPENSIVE_KINDS]
        if not kinds:
            return None
        budget = self.config.budget
        inputs = {
            "nodes": [keys[n] for n in names],
            "upper": [
                _finite_or_none(upper[_ordered(a, b)])
                for i, a in enumerate(names)
                for b in names[i + 1 :]
            ],
            "lower": list(lower),
            "kinds": kinds,
            "path_epochs": budget.path_epochs,
            "max_pairs": budget.max_pairs,
            "tolerance": budget.tolerance,
        }
        key = unit_key("select", **inputs)
        if self.store.done(key):
            return Selection.from_dict(_selection_data(self.store.result(key)["selection"]))
        started = time.perf_counter()
        n = len(names)
        matrix = [[0.0] * n for _ in range(n)]
        for i, a in enumerate(names):
            for j, b in enumerate(names):
                if i != j:
                    matrix[i][j] = upper[_ordered(a, b)]
        self.store.begin(key, "select", inputs)
        # The selection measures one pair at a time, in its order. With more than one worker,
        # the next candidates in that order (as the selection stands) run ahead, side by side;
        # the selection itself is the one-worker selection, and a pair it then skips was
        # measured for nothing (stored, not shown).
        current = np.array(matrix, dtype=np.float64)
        done: set[tuple[int, int]] = set()
        flying: dict[tuple[int, int], list[tuple[Future, _Unit, Callable]]] = {}

        def jobs(i: int, j: int) -> list[tuple]:
            a, b = _ordered(names[i], names[j])
            return [self._pair_job(k, a, b, keys, "expensive") for k in kinds]

        def launch(pair: tuple[int, int]) -> None:
            flying[pair] = [self.submit(j) for j in jobs(*pair) if not self.store.done(j[0].key)]

        with tqdm(desc="optimized paths", disable=self.disable) as bar:

            def measure(i: int, j: int) -> float:
                ahead = [(i, j)]
                if self.ahead > 1:
                    left = self.ahead
                    if budget.max_pairs is not None:
                        left = min(left, budget.max_pairs - len(done))
                    order = candidates(
                        current, list(lower), measured=done, tolerance=budget.tolerance
                    )
                    ahead += order[:left]
                for pair in ahead:
                    if pair not in flying and pair not in done:
                        launch(pair)
                failures = [self.complete(*f) for f in flying.pop((i, j))]
                self.raise_failures([f for f in failures if f is not None])
                done.add((i, j))
                bar.update()
                value = min(self.store.result(job[0].key)["error"]["peak"] for job in jobs(i, j))
                current[i, j] = current[j, i] = min(current[i, j], value)
                return value

            try:
                selection = select(
                    matrix,
                    list(lower),
                    measure,
                    budget=budget.max_pairs,
                    tolerance=budget.tolerance,
                )
            except BaseException as e:
                for submitted in flying.values():
                    for future, _, _ in submitted:
                        future.cancel()
                self.store.fail(key, f"{type(e).__name__}: {e}")
                raise
            for submitted in flying.values():  # run ahead, then skipped: kept in the store
                for future, unit, finisher in submitted:
                    self.complete(future, unit, finisher)

        self.store.finish(
            key,
            result={"names": names, "selection": _plain(selection.to_dict())},
        )
        self.timings["expensive"] = time.perf_counter() - started
        return selection


def _edge(result: Mapping[str, Any]) -> dict[str, Any]:
    error, loss = result["error"], result["loss"]
    return {
        "error_barrier": error["height"],
        "loss_barrier": loss["height"],
        "error_peak": error["peak"],
        "loss_peak": loss["peak"],
        "t": error["t"],
        "length": result["length"],
        "found": {
            "method": "adaptive",
            "resolution": error["resolution"],
            "evaluations": error["evaluations"] + loss["evaluations"],
            "upper_bound": error["upper_bound"],
            "ends": error["ends"],
            **result.get("found", {}),  # binary paths: orders and spread, or the bend
        },
    }


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _plain(data: Any) -> Any:
    # JSON in the store keeps no inf reliably across readers: None stands for it
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, list):
        return [_plain(v) for v in data]
    if isinstance(data, dict):
        return {k: _plain(v) for k, v in data.items()}
    return data


def _unplain(data: Any) -> Any:
    if data is None:
        return math.inf
    if isinstance(data, list):
        return [_unplain(v) for v in data]
    return data


# ----------------------------------------------------------------------------- public


def run(
    config: StudyConfig,
    out: str | Path,
    *,
    workers: int = 1,
    executor: Executor | None = None,
    progress: bool | None = None,
) -> StudyResult:
    """Run a study into the store directory ``out``, or finish one begun there.

    Parameters
    ----------
    config : StudyConfig
        What to compute. An existing store must have been made with a compatible
        configuration (:meth:`StudyConfig.compatible_with`).
    out : str or Path
        The store directory (made if missing; reopened and continued if it holds a store).
    workers : int
        1: run the units in this process; more: a spawn process pool of that many workers,
        one torch thread each. Also how many optimized paths run at once: the selection
        measures one pair at a time, and with ``workers > 1`` the next candidates in its order
        run ahead (a pair it then skips was measured for nothing; its unit is stored, its
        path is not shown). The results do not depend on it.
    executor : concurrent.futures.Executor, optional
        Run the units there instead of a pool of ``workers`` (give ``workers`` too, as the
        number of optimized paths to run at once); it is not shut down. The unit functions
        are top-level and take and return plain data with CPU tensors.

    progress : bool, optional
        Progress bars per stage; None: only on a terminal.

    Returns
    -------
    StudyResult

    Raises
    ------
    StoreError
        For a store that cannot be used (damaged, made with an incompatible configuration, in
        use by another run): the message says why.
    StudyError
        When units failed: every other unit of their stage is stored, the failed ones are
        recorded as failed, and a later run retries them.

    Example
    -------
    >>> import tempfile
    >>> config = StudyConfig.from_dict({
    ...     "data": {"name": "digits", "n_samples": 200}, "model": {"hidden": [8]},
    ...     "optimizers": [{"name": "sgd", "seeds": [0, 1], "epochs": 2}],
    ...     "paths": ["linear"], "flatness": []})
    >>> result = run(config, tempfile.mkdtemp(), progress=False)
    >>> len(result.graph), len(result.graph.edges())
    (2, 1)
    """
    if not isinstance(config, StudyConfig):
        raise StudyError(f"config must be a StudyConfig, got {type(config).__name__}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise StudyError(f"workers must be a positive integer, got {workers!r}")
    if executor is not None and not isinstance(executor, Executor):
        raise StudyError(
            f"executor must be a concurrent.futures.Executor (e.g. Dask's "
            f"Client.get_executor()), got {type(executor).__name__}"
        )
    folder = Path(out)
    if (folder / DATABASE).exists():
        store = StudyStore.open(folder, config)
    else:
        store = StudyStore.create(folder, config)
    own: Executor | None = None
    if executor is None:
        if workers == 1:
            executor = InlineExecutor()
        else:
            own = executor = ProcessPoolExecutor(
                max_workers=workers, mp_context=get_context("spawn"), initializer=init_worker
            )
    try:
        with store:
            runner = _Runner(config, store, executor, progress, ahead=workers)
            names, keys = runner.train()
            runner.flatness(names, keys)
            upper, copies = runner.cheap(names, keys)
            copied = {c for c, _, _ in copies}
            distinct = [n for n in names if n not in copied]
            errors = {n.name: n.attributes["train_error"] for n in store.nodes()}
            selection = runner.expensive(distinct, keys, upper, [errors[n] for n in distinct])
            return _result(store, config, names, copies, selection, runner.timings, runner.ran)
    finally:
        if own is not None:
            own.shutdown(wait=True, cancel_futures=True)


def load(out: str | Path) -> StudyResult:
    """The result of the study stored in ``out``, read without running anything (under the
    configuration recorded last; units it lacks are simply absent from the result).

    Raises
    ------
    StoreError
        For a directory without a readable store.
    """
    with StudyStore.open(out, readonly=True) as store:
        config = store.config
        plan = _train_units(config)
        names = [name for name, unit, _ in plan if store.done(unit.key)]
        keys = {name: unit.key for name, unit, _ in plan}
        distance = {}
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                unit = _distance_unit(config, *_ordered(a, b), keys)
                if store.done(unit.key):
                    distance[_ordered(a, b)] = store.result(unit.key)["geodesic_distance"]
        complete = len(distance) == len(names) * (len(names) - 1) // 2
        copies = _copies(names, distance, copy_tolerance(config)) if complete else []
        copied = {c for c, _, _ in copies}
        distinct = [n for n in names if n not in copied]
        selection = None
        timings = dict.fromkeys(STAGES, 0.0)
        for u in store.units(state="done"):
            if u.kind == "select" and u.result.get("names") == distinct:
                selection = Selection.from_dict(_selection_data(u.result["selection"]))
            elif u.kind in ("train", "flatness", "distance", "pair") and isinstance(u.result, dict):
                timings[_stage(u)] += float(u.result.get("seconds", 0.0))
        return _result(store, config, names, copies, selection, timings, dict.fromkeys(STAGES, 0))


def _stage(unit: Any) -> str:
    if unit.kind in ("train", "flatness"):
        return unit.kind
    if unit.kind == "pair" and unit.inputs.get("path") in EXPENSIVE_KINDS:
        return "expensive"
    return "cheap"


def _selection_data(data: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(data)
    for name in ("weights", "minimax"):
        out[name] = _unplain(out[name])
    out["skipped"] = [
        {**s, "tree_max": math.inf if s["tree_max"] is None else s["tree_max"]}
        for s in out["skipped"]
    ]
    return out


def _result(
    store: StudyStore,
    config: StudyConfig,
    names: list[str],
    copies: Sequence[tuple[str, str, float]],
    selection: Selection | None,
    timings: Mapping[str, float],
    ran: Mapping[str, int],
) -> StudyResult:
    from funcspace.graph import merge_copies

    copied = {c: o for c, o, _ in copies}
    distinct = [n for n in names if n not in copied]
    measured: tuple[tuple[str, str], ...] = ()
    skipped: list[tuple[str, str, str]] = []
    keep = None
    if selection is not None:
        measured = tuple(_ordered(distinct[i], distinct[j]) for i, j in selection.measured)
        chosen = {frozenset(p) for p in measured}

        def keep(edge: Edge) -> bool:  # optimized paths: the selection's (not those run ahead)
            return edge.kind not in EXPENSIVE_KINDS or frozenset((edge.a, edge.b)) in chosen

    graph = graph_from_store(store, names=names, kinds=set(config.paths), keep=keep)
    notes = []
    if copies:
        if graph.edges():
            graph = merge_copies(graph, tolerance=copy_tolerance(config))
        else:
            notes.append("copies found but no path measured: the graph keeps every minimum")
    if selection is not None:
        skipped = [
            (*_ordered(distinct[s.pair[0]], distinct[s.pair[1]]), s.reason)
            for s in selection.skipped
        ]
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                copy = b if b in copied else (a if a in copied else None)
                if copy is not None:
                    why = f"{copy} is a copy of {copied[copy]}: its paths are {copied[copy]}'s"
                    skipped.append((*_ordered(a, b), why))
    missing = [
        m
        for m in config.flatness
        if names and not any(m in (graph.node(n)["flatness"] or {}) for n in graph.names)
    ]
    if missing:
        notes.append(f"flatness measures {', '.join(missing)} not computed yet")
    return StudyResult(
        path=store.path,
        config=config,
        graph=graph,
        selection=selection,
        copies=tuple(copies),
        measured=measured,
        skipped=tuple(skipped),
        pairs=len(names) * (len(names) - 1) // 2,
        timings=MappingProxyType(dict(timings)),
        ran=MappingProxyType(dict(ran)),
        notes=tuple(notes),
    )
