"""The connectivity study: the top floor, which may import everything and which nothing imports
(``import funcspace`` never loads it).

- :class:`StudyConfig`, :func:`unit_key`: what a study computes and the content-hash keys of its
  work units (``funcspace.study.config``).
- :class:`StudyStore`: the resumable store, an SQLite database and safetensors weight files,
  every finished unit committed atomically (``funcspace.study.store``).
- :func:`select`, :func:`candidates`: which pairs of minima deserve an expensive path, those
  that can still change the minimax tree (``funcspace.study.selection``).
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
from .selection import Selection, SelectionError, Skip, candidates, select
from .store import Edge, Node, StoreError, StudyStore, Unit

__all__ = [
    "BudgetConfig",
    "ConfigError",
    "DataConfig",
    "Edge",
    "EvaluationConfig",
    "ModelConfig",
    "Node",
    "OptimizerConfig",
    "Selection",
    "SelectionError",
    "Skip",
    "StoreError",
    "StudyConfig",
    "StudyStore",
    "Unit",
    "candidates",
    "select",
    "unit_key",
]
