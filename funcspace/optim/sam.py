"""Sharpness-aware minimization (Foret et al. 2021)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from funcspace.optim.base import loss_of, option
from funcspace.optim.checks import _flag, _positive
from funcspace.optim.sgd import SGD, SGDOptions


@dataclass(frozen=True)
class SAMOptions(SGDOptions):
    """Options of ``"sam"``: those of SGD, the radius ``rho`` and adaptive (ASAM) scaling."""

    method: ClassVar[str] = "sam"
    rho: float = option(0.05, _positive)
    adaptive: bool = option(False, _flag)


class SAM(SGD):
    """Sharpness-aware minimization (Foret et al. 2021) over Nesterov SGD.

    Each step takes two forward-backward passes: the gradient at ``w`` gives the ascent
    ``e = rho g / |g|`` (``adaptive=True``: ASAM, ``e = rho w^2 g / |w g|``), and the gradient
    at ``w + e`` updates ``w``. BatchNorm statistics are those of the first pass only. Options:
    SGD's plus ``rho`` (0.05) and ``adaptive`` (False).
    """

    name = "sam"
    Options = SAMOptions

    def _step(self, inputs: Tensor, targets: Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss_of(self.net, inputs, targets, self.context.loss).backward()
        params = [p for p in self.net.parameters() if p.grad is not None]
        with torch.no_grad():
            if self.opts["adaptive"]:
                scaled = [p.abs() * p.grad for p in params]
                norm = torch.linalg.vector_norm(torch.stack([s.norm() for s in scaled]))
                ascent = [p.abs() * s for p, s in zip(params, scaled, strict=True)]
            else:
                ascent = [p.grad for p in params]
                norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in ascent]))
            scale = self.opts["rho"] / (norm + 1e-12)
            ascent = [a * scale for a in ascent]
            for p, a in zip(params, ascent, strict=True):
                p.add_(a)
        saved = [b.clone() for b in self.net.buffers()]
        self.optimizer.zero_grad(set_to_none=True)
        loss_of(self.net, inputs, targets, self.context.loss).backward()
        with torch.no_grad():
            for p, a in zip(params, ascent, strict=True):
                p.sub_(a)
            for b, s in zip(self.net.buffers(), saved, strict=True):
                b.copy_(s)
        self.optimizer.step()


__all__ = ["SAM", "SAMOptions"]
