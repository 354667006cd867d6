"""Metrics and losses: what is measured of a network's outputs against the targets, per example.

A :class:`Metric` is a name and a function ``(outputs, targets) -> per-example values``. The
engine (:func:`funcspace.evaluate`) sums it over the data for many parameter points at once and
divides by the number of examples; called on a batch, a metric returns that mean, so a
differentiable metric is a loss: the Hessian operators (:mod:`funcspace.hessian`), local energy
and training take the same objects. The built-ins are instances:

- ``"error"``: fraction misclassified, ``argmax(outputs) != target`` (class-index targets);
- ``"loss"``: cross-entropy of the logits (class-index targets);
- ``"mse"``: mean squared error, averaged over the output's entries (real targets of the
  output's shape: teacher-student regression);
- ``"sign_error"``: ``sign(output) != target`` for one output and +-1 targets (binary networks;
  an output of exactly 0 counts as wrong).

A user metric is any function of one network's outputs ``(N, ...)`` and targets ``(N, ...)``
returning ``(N,)`` values, wrapped with :class:`Metric` (or passed as it is: its ``__name__``
names it, and it reads the targets as they are). The engine calls it once per parameter point
on each batch.

Examples
--------
>>> import torch
>>> hinge = Metric("hinge", lambda out, y: torch.relu(1 - out.squeeze(-1) * y), targets="sign")
>>> round(float(hinge(torch.tensor([[2.0], [0.5]]), torch.tensor([1.0, 1.0]))), 2)
0.25
>>> as_metric("loss").name, as_metric("sign_error").targets
('loss', 'sign')
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from funcspace.errors import FuncspaceError

Targets = Literal["class", "sign", "real", "any"]
PerExample = Callable[[Tensor, Tensor], Tensor]
#: ``(outputs, targets, class_dim) -> (k,)`` sums over the examples of a chunk of ``k`` points,
#: ``outputs`` of shape ``(k, N, C)`` (``class_dim`` 2) or ``(k, C, N)`` (``class_dim`` 1).
BatchedSum = Callable[[Tensor, Tensor, int], Tensor]

TARGETS: tuple[str, ...] = ("class", "sign", "real", "any")


@dataclass(frozen=True)
class Metric:
    """A named per-example measure of outputs against targets.

    Attributes
    ----------
    name : str
        The key of its values in an :class:`~funcspace.evaluation.Evaluation`.
    per_example : callable
        ``(outputs (N, ...), targets (N, ...)) -> (N,)`` values for one network.
    targets : {"any", "class", "sign", "real"}
        What it reads: class indices below the number of outputs (integer tensors), +-1
        labels of a single output, real values of the output's shape (cast to its dtype), or
        (the default) anything, passed as it is.
    differentiable : bool
        Whether it can serve as a loss (training, Hessians); ``"error"`` cannot.
    batched_sum : callable, optional
        A fast path the engine uses for a chunk of points at once (see :data:`BatchedSum`);
        without it the engine applies ``per_example`` point by point.

    Raises
    ------
    FuncspaceError
        For an empty name, a ``per_example`` that is not callable, or unknown ``targets``.
    """

    name: str
    per_example: PerExample
    targets: Targets = "any"
    differentiable: bool = True
    batched_sum: BatchedSum | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise FuncspaceError(f"a metric needs a non-empty name; got {self.name!r}")
        if not callable(self.per_example):
            raise FuncspaceError(f"metric {self.name!r}: per_example must be callable")
        if self.targets not in TARGETS:
            raise FuncspaceError(
                f"metric {self.name!r}: targets must be one of {TARGETS}; got {self.targets!r}"
            )

    def __call__(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """The mean over the batch (a scalar tensor): the loss, for a differentiable metric."""
        return self.values(outputs, targets).mean()

    def values(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """``per_example`` with its result checked: one value per example."""
        values = self.per_example(outputs, targets)
        if not isinstance(values, Tensor) or values.shape != (len(outputs),):
            shape = tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__
            raise FuncspaceError(
                f"metric {self.name!r} must return one value per example, shape "
                f"({len(outputs)},); it returned {shape}"
            )
        return values

    def sums(self, outputs: Tensor, targets: Tensor, class_dim: int) -> Tensor:
        """Per-point sums over the examples of a chunk, float64 of shape (k,)."""
        if self.batched_sum is not None:
            return self.batched_sum(outputs, targets, class_dim).to(torch.float64)
        rows = outputs if class_dim != 1 else outputs.transpose(1, 2)
        return torch.stack([self.values(z, targets).sum(dtype=torch.float64) for z in rows])

    def to_dict(self) -> dict[str, object]:
        """What a stored result records of the metric (the function itself is not stored)."""
        return {"name": self.name, "targets": self.targets}


def _error(outputs: Tensor, targets: Tensor) -> Tensor:
    return (outputs.argmax(-1) != targets).to(torch.get_default_dtype())


def _error_sums(outputs: Tensor, targets: Tensor, class_dim: int) -> Tensor:
    # max(...).indices is the first maximal index, as argmax, and faster across the middle
    # axis of (k, C, N)
    return (outputs.max(class_dim).indices != targets).sum(-1)


def _cross_entropy(outputs: Tensor, targets: Tensor) -> Tensor:
    return F.cross_entropy(outputs, targets, reduction="none")


def _cross_entropy_sums(outputs: Tensor, targets: Tensor, class_dim: int) -> Tensor:
    # cross_entropy reduces over the class axis of a (k, C, N) view (a transposed view for
    # row-major logits) fastest: 2x its time on (N, C) rows (measured)
    z = outputs if class_dim == 1 else outputs.transpose(1, 2)
    losses = F.cross_entropy(z, targets.expand(len(z), -1), reduction="none")
    return losses.sum(-1, dtype=torch.float64)


def _squared_error(outputs: Tensor, targets: Tensor) -> Tensor:
    diff = outputs - targets.reshape(outputs.shape)
    return (diff * diff).reshape(len(outputs), -1).mean(1)


def _sign_error(outputs: Tensor, targets: Tensor) -> Tensor:
    return (torch.sign(outputs.reshape(len(outputs))) != targets).to(torch.get_default_dtype())


ERROR = Metric("error", _error, "class", differentiable=False, batched_sum=_error_sums)
LOSS = Metric("loss", _cross_entropy, "class", batched_sum=_cross_entropy_sums)
MSE = Metric("mse", _squared_error, "real")
SIGN_ERROR = Metric("sign_error", _sign_error, "sign", differentiable=False)

#: The built-in metrics by name.
BUILT_IN: dict[str, Metric] = {m.name: m for m in (ERROR, LOSS, MSE, SIGN_ERROR)}
#: What :func:`funcspace.evaluate` measures unless told otherwise.
DEFAULT_METRICS: tuple[str, ...] = ("error", "loss")


def as_metric(metric: str | Metric | PerExample) -> Metric:
    """A built-in metric by name, a :class:`Metric` as it is, or a function wrapped as one.

    Raises
    ------
    FuncspaceError
        For an unknown name or something that is neither a name nor callable.
    """
    if isinstance(metric, Metric):
        return metric
    if isinstance(metric, str):
        if metric not in BUILT_IN:
            raise FuncspaceError(
                f"unknown metric {metric!r}; the built-in ones are {sorted(BUILT_IN)}, or pass "
                "a funcspace.metrics.Metric"
            )
        return BUILT_IN[metric]
    if callable(metric):
        name = getattr(metric, "__name__", "")
        if not name or name == "<lambda>":
            raise FuncspaceError(
                "a metric function needs a name: wrap it as Metric('name', fn, targets=...)"
            )
        return Metric(name, metric)
    raise FuncspaceError(
        f"a metric is a name, a funcspace.metrics.Metric or a function; got {type(metric).__name__}"
    )


def as_metrics(metrics: str | Metric | Sequence[str | Metric | PerExample]) -> tuple[Metric, ...]:
    """One metric or several, as a tuple of :class:`Metric` with distinct names.

    Raises
    ------
    FuncspaceError
        For no metric, two with one name, or metrics that read different kinds of targets.
    """
    if isinstance(metrics, (str, Metric)) or callable(metrics):
        metrics = (metrics,)  # type: ignore[assignment]
    if not isinstance(metrics, Sequence) or not metrics:
        raise FuncspaceError(f"metrics must name at least one metric; got {metrics!r}")
    found = tuple(as_metric(m) for m in metrics)
    names = [m.name for m in found]
    if len(set(names)) != len(names):
        raise FuncspaceError(f"two metrics share a name: {names}")
    kinds = {m.targets for m in found} - {"any"}
    if len(kinds) > 1:
        raise FuncspaceError(
            f"metrics {names} read different kinds of targets ({sorted(kinds)}); evaluate them "
            "in separate calls"
        )
    return found


def target_kind(metrics: Sequence[Metric]) -> Targets:
    """The kind of targets a set of metrics reads (``"any"`` if none of them says)."""
    kinds = [m.targets for m in metrics if m.targets != "any"]
    return kinds[0] if kinds else "any"


def as_loss(loss: str | Metric | Callable[[Tensor, Tensor], Tensor] | None) -> Callable:
    """A loss ``(outputs, targets) -> scalar mean``: a differentiable metric, or a function.

    ``None`` is cross-entropy. A plain function is used as it is (it must return the mean over
    the batch).

    Raises
    ------
    FuncspaceError
        For a metric that is not differentiable (``"error"``) or an unknown name.
    """
    if loss is None:
        return LOSS
    if isinstance(loss, str):
        loss = as_metric(loss)
    if isinstance(loss, Metric):
        if not loss.differentiable:
            raise FuncspaceError(
                f"metric {loss.name!r} is not differentiable and cannot serve as a loss; use "
                f"one of {sorted(n for n, m in BUILT_IN.items() if m.differentiable)} or your own"
            )
        return loss
    if not callable(loss):
        raise FuncspaceError(
            "loss must be a metric name, a funcspace.metrics.Metric or a callable "
            f"loss(outputs, targets) -> scalar; got {type(loss).__name__}"
        )
    return loss
