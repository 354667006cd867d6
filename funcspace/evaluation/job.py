"""One evaluation, resolved and validated: what the strategy rule and the runners read."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from funcspace.data import Pair

from .plan import Plan
from .points import Affine, Buffers, Points
from .settings import Settings


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
