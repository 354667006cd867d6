"""Entropy-SGD (Chaudhari et al. 2017): SGD on the local entropy, estimated by Langevin steps."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from funcspace.errors import FuncspaceError
from funcspace.optim.base import (
    SCHEDULES,
    Context,
    Method,
    Options,
    _annealed,
    _set_lr,
    _sgd,
    loss_of,
    option,
)
from funcspace.optim.checks import _choice, _count, _flag, _nonnegative, _positive, _unit


@dataclass(frozen=True)
class EntropySGDOptions(Options):
    """Options of ``"entropy_sgd"`` (the authors' defaults: outer lr 1, ``L`` 5 inner steps)."""

    method: ClassVar[str] = "entropy_sgd"
    lr: float = option(1.0, _positive)
    momentum: float = option(0.9, _unit)
    nesterov: bool = option(True, _flag)
    weight_decay: float = option(0.0, _nonnegative)
    schedule: str = option("constant", _choice(*SCHEDULES))
    L: int = option(5, _count)
    inner_lr: float = option(0.1, _positive)
    gamma: float = option(0.03, _nonnegative)
    scoping: float = option(1e-3, _nonnegative)
    noise: float = option(1e-4, _nonnegative)
    alpha: float = option(0.75, _unit)


class EntropySGD(Method):
    """Entropy-SGD (Chaudhari et al. 2017): outer steps on the local-entropy gradient.

    Each outer step starts ``x' = mu = x`` and runs ``L`` Langevin steps, one batch each:
    ``x' <- x' - inner_lr (grad f(x') + gamma_t (x' - x)) + noise sqrt(inner_lr) N(0, 1)``,
    ``mu <- alpha mu + (1 - alpha) x'``; then ``x`` takes a Nesterov SGD step (``lr`` 1,
    ``momentum`` 0.9, as in the authors' code) along ``x - mu`` (the local-entropy gradient
    over ``gamma_t``). Scoping:
    ``gamma_t = gamma (1 + scoping)^t`` over outer steps ``t``. An epoch is one pass of the
    inner loop over the data, so ``n_batches / L`` outer steps. Options: ``lr``, ``momentum``,
    ``nesterov``, ``weight_decay``, ``schedule`` ("constant"), ``L`` (5), ``inner_lr`` (0.1),
    ``gamma`` (0.03), ``scoping`` (1e-3), ``noise`` (1e-4), ``alpha`` (0.75).
    """

    name = "entropy_sgd"
    Options = EntropySGDOptions

    def __init__(self, model: nn.Module, context: Context, **options: Any) -> None:
        super().__init__(model, context, **options)
        if self.opts["L"] < 1:
            raise FuncspaceError("option L of 'entropy_sgd' must be >= 1 (Langevin steps)")
        o = self.opts
        self.outer = _sgd(model.parameters(), o["lr"], o["momentum"], o["nesterov"], 0.0)
        self.steps = 0

    def run_epoch(self, epoch: int) -> None:
        ctx, o = self.context, self.opts
        _set_lr(self.outer, _annealed(o["lr"], o["schedule"], epoch, ctx.epochs))
        params = [p for p in self.net.parameters() if p.requires_grad]
        batches = ctx.batches()
        step_noise = o["noise"] * math.sqrt(o["inner_lr"])
        self.net.train()
        for start in range(0, len(batches), o["L"]):
            gamma = o["gamma"] * (1 + o["scoping"]) ** self.steps
            anchor = [p.detach().clone() for p in params]
            mu = [p.detach().clone() for p in params]
            for idx in batches[start : start + o["L"]]:
                for p in params:
                    p.grad = None
                loss_of(self.net, ctx.inputs[idx], ctx.targets[idx], ctx.loss).backward()
                with torch.no_grad():
                    for p, x, m in zip(params, anchor, mu, strict=True):
                        drift = p.grad + gamma * (p - x) + o["weight_decay"] * p
                        p.sub_(o["inner_lr"] * drift)
                        if step_noise > 0:
                            p.add_(
                                torch.randn(
                                    p.shape, generator=ctx.noise, device=p.device, dtype=p.dtype
                                ),
                                alpha=step_noise,
                            )
                        m.mul_(o["alpha"]).add_(p, alpha=1 - o["alpha"])
            with torch.no_grad():
                for p, x, m in zip(params, anchor, mu, strict=True):
                    p.copy_(x)
                    p.grad = x - m
            self.outer.step()
            self.steps += 1

    def details(self) -> dict[str, Any]:
        return {"outer_steps": self.steps}


__all__ = ["EntropySGD", "EntropySGDOptions"]
