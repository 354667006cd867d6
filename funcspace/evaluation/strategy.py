"""The contract between the engine and a strategy: the :class:`Job` it runs, the
:class:`Runner` it implements.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from torch import Tensor, nn

from funcspace.data import Pair

from .plan import Plan
from .points import Affine, Buffers, Points
from .settings import Settings


class Runner(Protocol):
    """What a strategy implements: the logits of a chunk of points on one batch of inputs.

    The engine calls :meth:`shared` once per batch (work every point shares: the inputs, and
    for an affine family the first layer's products with the origin and the directions), then
    :meth:`logits` (or :meth:`recalibrate`) once per chunk of points ``start:stop``.
    """

    def __init__(self, job: Job, strategy: str, chunk: int, reuse: bool) -> None: ...

    @property
    def int8_layers(self) -> tuple[str, ...]:
        """The layers whose products ran in int8 at every point and batch (``Settings.int8``)."""

    def shared(self, x: Tensor) -> Any:
        """What every chunk of points reuses on the batch ``x``."""

    def logits(self, shared: Any, start: int, stop: int, buffers: Buffers) -> tuple[Tensor, int]:
        """The outputs of points ``start:stop``, shape (k, N, C) (class axis 2) or (k, C, N)
        (class axis 1), and the class axis."""

    def recalibrate(self, shared: Any, start: int, stop: int, buffers: Buffers, step: int) -> None:
        """One train-mode pass that folds batch ``step``'s statistics into ``buffers``."""


@dataclass(frozen=True, eq=False)
class Job:
    """Everything one evaluation needs.

    Attributes
    ----------
    template : nn.Module
        The architecture; its tensors are not read except through ``buffers``.
    plan : Plan
        The template's trace.
    points : Points
        The K parameter points.
    buffers : Buffers
        Their buffers, shared or stacked.
    batches : list of (inputs, targets)
        The data, on the parameters' device, in batches of ``batch_size``.
    recal_batches : list of (inputs, targets) or None
        The recalibration data when ``settings.batchnorm == "recalibrate"``.
    settings : Settings
    batch_size : int
        Inputs per batch (``settings.batch_size`` resolved).
    affine : Affine or None
        The affine family the points come from, when the first layer may be shared.
    """

    template: nn.Module
    plan: Plan
    points: Points
    buffers: Buffers
    batches: list[Pair]
    recal_batches: list[Pair] | None
    settings: Settings
    batch_size: int
    affine: Affine | None = None
