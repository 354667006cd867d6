"""The connectivity study: the top floor, which may import everything and which nothing imports
(``import funcspace`` never loads it).

- :class:`StudyConfig`, :func:`unit_key`: what a study computes and the content-hash keys of its
  work units (``funcspace.study.config``).
- :class:`StudyStore`: the resumable store, an SQLite database and safetensors weight files,
  every finished unit committed atomically (``funcspace.study.store``).
- :func:`select`, :func:`candidates`: which pairs of minima deserve an expensive path, those
  that can still change the minimax tree (``funcspace.study.selection``).
- :func:`run`, :func:`load`, :class:`StudyResult`: run a study's work units (train, cheap
  paths, selected optimized paths) through any ``concurrent.futures`` Executor into a store,
  resumably; read the result back (``funcspace.study.runner``, units in
  ``funcspace.study.units``).
- :func:`graph_from_store`: the map of minima recorded in a store (``funcspace.study.minima``);
  :func:`write_report`: the self-contained HTML report (``funcspace.study.report``).
  The ``funcspace`` command (``funcspace.study.cli``): ``funcspace study``, ``funcspace
  report``, ``funcspace show``.
"""

from .config import (
    BudgetConfig,
    ConfigError,
    DataConfig,
    EvaluationConfig,
    ModelConfig,
    OptimizerConfig,
    StudyConfig,
    unit_key,
)
from .minima import graph_from_store
from .report import write_report
from .runner import InlineExecutor, StudyError, StudyResult, load, run
from .selection import Selection, SelectionError, Skip, candidates, select
from .store import Edge, Metric, Node, StoreError, StudyStore, Unit

__all__ = [
    "BudgetConfig",
    "ConfigError",
    "DataConfig",
    "Edge",
    "EvaluationConfig",
    "InlineExecutor",
    "Metric",
    "ModelConfig",
    "Node",
    "OptimizerConfig",
    "Selection",
    "SelectionError",
    "Skip",
    "StoreError",
    "StudyError",
    "StudyResult",
    "StudyConfig",
    "StudyStore",
    "Unit",
    "candidates",
    "graph_from_store",
    "load",
    "run",
    "select",
    "unit_key",
    "write_report",
]
