"""The standard steppers: Nesterov SGD (the paper's) and Adam."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from funcspace.optim.base import SCHEDULES, Options, _sgd, _Stepper, option
from funcspace.optim.checks import _betas, _choice, _flag, _nonnegative, _positive, _unit


@dataclass(frozen=True)
class SGDOptions(Options):
    """Options of ``"sgd"``: Nesterov momentum 0.9, lr 0.02 cosine-annealed (the standard)."""

    method: ClassVar[str] = "sgd"
    lr: float = option(0.02, _positive)
    momentum: float = option(0.9, _unit)
    nesterov: bool = option(True, _flag)
    weight_decay: float = option(0.0, _nonnegative)
    schedule: str = option("cosine", _choice(*SCHEDULES))


@dataclass(frozen=True)
class AdamOptions(Options):
    """Options of ``"adam"``: constant lr 1e-3."""

    method: ClassVar[str] = "adam"
    lr: float = option(1e-3, _positive)
    betas: tuple[float, float] = option((0.9, 0.999), _betas)
    weight_decay: float = option(0.0, _nonnegative)
    schedule: str = option("constant", _choice(*SCHEDULES))


class SGD(_Stepper):
    """SGD with Nesterov momentum 0.9, lr 0.02 cosine-annealed over the budget (the standard).

    Options: :class:`SGDOptions`.
    """

    name = "sgd"
    Options = SGDOptions

    def _make_optimizer(self) -> torch.optim.Optimizer:
        o = self.opts
        return _sgd(self.net.parameters(), o["lr"], o["momentum"], o["nesterov"], o["weight_decay"])


class Adam(_Stepper):
    """Adam (constant lr 1e-3 by default). Options: :class:`AdamOptions`."""

    name = "adam"
    Options = AdamOptions

    def _make_optimizer(self) -> torch.optim.Optimizer:
        o = self.opts
        return torch.optim.Adam(
            self.net.parameters(), lr=o["lr"], betas=o["betas"], weight_decay=o["weight_decay"]
        )


__all__ = ["SGD", "Adam", "AdamOptions", "SGDOptions"]
