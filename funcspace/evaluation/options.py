"""The options of one evaluation, checked once where a user passes them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from funcspace.data import Dataset, Pair
from funcspace.errors import FuncspaceError

#: Metrics :func:`evaluate` computes: fraction misclassified, mean cross-entropy.
METRICS = ("error", "loss")
#: Evaluation strategies.
STRATEGIES = ("auto", "loop", "vmap", "stacked")
#: BatchNorm handling.
BATCHNORM = ("fixed", "recalibrate")
#: Default number of inputs per data batch.
DEFAULT_BATCH = 2048


@dataclass(frozen=True, eq=False)
class Options:
    """How to evaluate: the keyword options of :func:`evaluate`, validated on construction.

    Attributes
    ----------
    metrics : tuple of {"error", "loss"}
        A single name is turned into a one-name tuple.
    split : {"train", "test"}
        Which split of a :class:`~funcspace.data.Dataset` to evaluate on.
    batch_size : int or None
        Inputs per data batch; None: all, up to ``DEFAULT_BATCH``.
    chunk : int or None
        Points per batched pass; None: the strategy's rule.
    batchnorm : {"fixed", "recalibrate"}
    recalibration_data : Dataset or (inputs, targets), optional
    strategy : {"auto", "loop", "vmap", "stacked"}

    Raises
    ------
    FuncspaceError
        For an unknown metric, strategy or BatchNorm mode, or a size that is not a positive
        integer.

    Examples
    --------
    >>> Options(metrics="loss").metrics
    ('loss',)
    """

    metrics: tuple[str, ...] = METRICS
    split: str = "train"
    batch_size: int | None = None
    chunk: int | None = None
    batchnorm: str = "fixed"
    recalibration_data: Dataset | Pair | None = None
    strategy: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "metrics", _check_metrics(self.metrics))
        _check_choice("strategy", self.strategy, STRATEGIES)
        _check_choice("batchnorm", self.batchnorm, BATCHNORM)
        _check_size("chunk", self.chunk)
        _check_size("batch_size", self.batch_size)


def _check_choice(name: str, value: object, choices: Sequence[str]) -> None:
    if value not in choices:
        options = ", ".join(map(repr, choices))
        raise FuncspaceError(f"{name} must be one of {options}; got {value!r}")


def _check_metrics(metrics: object) -> tuple[str, ...]:
    if isinstance(metrics, str):
        metrics = (metrics,)
    metrics = tuple(metrics)  # type: ignore[arg-type]
    if not metrics:
        raise FuncspaceError(f"metrics must name at least one of {METRICS}")
    for m in metrics:
        _check_choice("each metric", m, METRICS)
    return metrics


def _check_size(name: str, value: object) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise FuncspaceError(f"{name} must be a positive integer or None; got {value!r}")
