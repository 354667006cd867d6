"""The standard steppers: Nesterov SGD (the paper's) and Adam."""

from __future__ import annotations

import torch

from funcspace.optim.base import SCHEDULES, _sgd, _Stepper
from funcspace.optim.checks import _betas, _choice, _flag, _nonnegative, _positive, _unit


class SGD(_Stepper):
    """SGD with Nesterov momentum 0.9, lr 0.02 cosine-annealed over the budget (the standard).

    Options: ``lr`` (0.02), ``momentum`` (0.9), ``nesterov`` (True), ``weight_decay`` (0),
    ``schedule`` ("cosine" or "constant").
    """

    name = "sgd"
    options = {
        "lr": (0.02, _positive),
        "momentum": (0.9, _unit),
        "nesterov": (True, _flag),
        "weight_decay": (0.0, _nonnegative),
        "schedule": ("cosine", _choice(*SCHEDULES)),
    }

    def _make_optimizer(self) -> torch.optim.Optimizer:
        o = self.opts
        return _sgd(self.net.parameters(), o["lr"], o["momentum"], o["nesterov"], o["weight_decay"])


class Adam(_Stepper):
    """Adam (constant lr 1e-3 by default). Options: ``lr``, ``betas``, ``weight_decay``,
    ``schedule``."""

    name = "adam"
    options = {
        "lr": (1e-3, _positive),
        "betas": ((0.9, 0.999), _betas),
        "weight_decay": (0.0, _nonnegative),
        "schedule": ("constant", _choice(*SCHEDULES)),
    }

    def _make_optimizer(self) -> torch.optim.Optimizer:
        o = self.opts
        return torch.optim.Adam(
            self.net.parameters(), lr=o["lr"], betas=o["betas"], weight_decay=o["weight_decay"]
        )


__all__ = ["SGD", "Adam"]
