"""Replicated SGD (Baldassi et al. 2020, Pittorino et al. 2021): coupled replicas, flat center."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from funcspace.errors import FuncspaceError
from funcspace.optim.base import (
    SCHEDULES,
    Context,
    Method,
    Options,
    _annealed,
    _set_lr,
    _sgd,
    error_and_loss,
    loss_of,
    option,
)
from funcspace.optim.checks import _choice, _count, _flag, _nonnegative, _positive, _unit
from funcspace.optim.coupling import Balanced, Coupling, Geometric, _coupling


@dataclass(frozen=True)
class ReplicatedSGDOptions(Options):
    """Options of ``"rsgd"`` (see :class:`ReplicatedSGD`)."""

    method: ClassVar[str] = "rsgd"
    lr: float = option(0.05, _positive)
    replicas: int = option(3, _count)
    coupling: Coupling = option(Balanced(), _coupling)
    init: str = option("independent", _choice("independent", "shared"))
    center: str = option("mean", _choice("mean", "elastic"))
    init_noise: float = option(0.0, _nonnegative)
    momentum: float = option(0.9, _unit)
    nesterov: bool = option(True, _flag)
    weight_decay: float = option(0.0, _nonnegative)
    schedule: str = option("cosine", _choice(*SCHEDULES))


class ReplicatedSGD(Method):
    """Replicated SGD: ``replicas`` networks, each on its own batches, coupled to their center.

    Replica ``a`` minimizes ``loss_a + g/2 |w_a - c|^2``. ``center="mean"``: ``c`` is the
    replicas' mean, detached, recomputed every step. ``center="elastic"``: ``c`` is a variable
    of its own (elastic averaging), moved by ``lr * g * sum_a (w_a - c)`` after every step; it
    starts at the model's initialization. The result (:attr:`model`) is the center, so
    ``stop_at_zero_error`` stops when the *center* fits the training set.

    ``init="independent"`` (default, as in the authors' code, where every replica is a freshly
    built network): replica 0 starts at the model's parameters, every other one at a new draw
    of the model's own initializer (``reset_parameters`` of each submodule, seeded from the
    run); ``"shared"``: all start at the model's parameters. ``init_noise`` then multiplies
    every replica's parameters by ``1 + s z``.

    ``coupling`` sets ``g`` per epoch: the default :class:`~funcspace.optim.Balanced` starts
    where the coupling is 0.1 x the data loss (``g0 = 0.1 * 2 L0 / D0``, the authors' balance
    point scaled down) and grows it by 1e4 over the budget, capped at ``lr * g <= 1``; a pair
    ``(g0, growth)`` is :class:`~funcspace.optim.Geometric` (the toroids paper's text:
    ``(1e-3, 1.05)``); :class:`~funcspace.optim.Gated` couples only once the replicas fit the
    data; any callable ``(epoch, replica_errors) -> g`` works (``replica_errors[0]`` is at the
    start, one more per finished epoch).

    Why these defaults: replicas that start together spread only as far as SGD noise takes
    them, so with any schedule the center stays SGD's minimizer; started apart and coupled from
    the first step they learn apart, merge into one basin, and the center is flatter than SGD
    at the same learning rate (the gain is the coupled exploration, not the center's smaller
    initial norm). The measurements are in ``benchmarks/README.md`` (``flat_minima.py``).

    Options: :class:`ReplicatedSGDOptions` (``lr`` 0.05, the toroids paper's; ``replicas`` 3,
    the authors' code).

    Examples
    --------
    >>> from funcspace.models import MLP
    >>> from funcspace.training import train
    >>> x = torch.randn(64, 5, generator=torch.Generator().manual_seed(0))
    >>> y = (x[:, 0] > 0).long()
    >>> result = train(MLP(5, [16], 2, seed=0), (x, y), "rsgd", epochs=3, progress=False)
    >>> len(result.record.details["replica_error"]) == result.record.epochs + 1
    True
    """

    name = "rsgd"
    Options = ReplicatedSGDOptions

    def __init__(self, model: nn.Module, context: Context, **options: Any) -> None:
        super().__init__(model, context, **options)
        o = self.opts
        if o["replicas"] < 1:
            raise FuncspaceError("option replicas of 'rsgd' must be >= 1")
        self.replicas = [copy.deepcopy(model)]
        for _ in range(o["replicas"] - 1):
            replica = copy.deepcopy(model)
            if o["init"] == "independent":
                _redraw(replica, int(torch.randint(2**62, (), generator=context.generator)))
            self.replicas.append(replica)
        if o["init_noise"] > 0:
            with torch.no_grad():
                for replica in self.replicas:
                    for p in replica.parameters():
                        z = torch.randn(p.shape, generator=context.generator, dtype=p.dtype)
                        p.mul_(1 + o["init_noise"] * z.to(p.device))
        self.optimizers = [
            _sgd(r.parameters(), o["lr"], o["momentum"], o["nesterov"], o["weight_decay"])
            for r in self.replicas
        ]
        self.elastic = [p.detach().clone() for p in model.parameters()]
        self.schedule = o["coupling"]
        self.history: dict[str, list[float]] = {"coupling": [], "replica_error": [], "spread": []}

    def prepare(self) -> dict[str, Any]:
        loss = self._measure()
        if isinstance(self.schedule, Balanced):
            if len(self.replicas) == 1:  # nothing to couple
                self.schedule = Geometric(0.0, 1.0)
            else:
                center = self._center()
                distance = self.history["spread"][-1] * sum(c.numel() for c in center)
                if distance <= 1e-10 * sum(float((c**2).sum()) for c in center):
                    distance = 0.0  # copies of one network, up to the rounding of the mean
                self.schedule = self.schedule.calibrate(
                    loss, distance, self.context.epochs, self.opts["lr"]
                )
            return {"coupling_g0": self.schedule.g0, "coupling_growth": self.schedule.growth}
        return {}

    def _center(self) -> list[Tensor]:
        if self.opts["center"] == "elastic":
            return self.elastic
        per_replica = [list(r.parameters()) for r in self.replicas]
        return [torch.stack(ps).mean(dim=0).detach() for ps in zip(*per_replica, strict=True)]

    def run_epoch(self, epoch: int) -> None:
        ctx, o = self.context, self.opts
        g = float(self.schedule(epoch, self.history["replica_error"]))
        lr = _annealed(o["lr"], o["schedule"], epoch, ctx.epochs)
        for opt in self.optimizers:
            _set_lr(opt, lr)
        plans = [ctx.batches() for _ in self.replicas]
        for replica in self.replicas:
            replica.train()
        for step in range(len(plans[0])):
            center = self._center() if g > 0 else None
            for replica, opt, plan in zip(self.replicas, self.optimizers, plans, strict=True):
                opt.zero_grad(set_to_none=True)
                loss_of(
                    replica, ctx.inputs[plan[step]], ctx.targets[plan[step]], ctx.loss
                ).backward()
                if center is not None:
                    with torch.no_grad():
                        for p, c in zip(replica.parameters(), center, strict=True):
                            if p.grad is not None:
                                p.grad.add_(p - c, alpha=g)
                opt.step()
            if o["center"] == "elastic" and g > 0:
                with torch.no_grad():
                    pull = [torch.zeros_like(c) for c in self.elastic]
                    for replica in self.replicas:
                        for s, p, c in zip(pull, replica.parameters(), self.elastic, strict=True):
                            s.add_(p - c)
                    for c, s in zip(self.elastic, pull, strict=True):
                        c.add_(s, alpha=lr * g)
        self.history["coupling"].append(g)
        self._measure()

    @torch.no_grad()
    def _measure(self) -> float:
        """Record the replicas' mean train error and spread; return their mean train loss."""
        ctx = self.context
        measured = [error_and_loss(r, ctx.inputs, ctx.targets) for r in self.replicas]
        self.history["replica_error"].append(sum(e for e, _ in measured) / len(measured))
        center = self._center()
        count = sum(c.numel() for c in center)
        squared = sum(
            float(((p - c) ** 2).sum())
            for r in self.replicas
            for p, c in zip(r.parameters(), center, strict=True)
        )
        self.history["spread"].append(squared / (len(self.replicas) * count))
        return sum(loss for _, loss in measured) / len(measured)

    @property
    def model(self) -> nn.Module:
        """The center as a network; float buffers (BatchNorm statistics) are the replicas' mean."""
        center = copy.deepcopy(self.replicas[0])
        with torch.no_grad():
            for p, c in zip(center.parameters(), self._center(), strict=True):
                p.copy_(c)
            buffers = [list(r.buffers()) for r in self.replicas]
            for b, bs in zip(center.buffers(), zip(*buffers, strict=True), strict=True):
                if b.is_floating_point():
                    b.copy_(torch.stack(bs).mean(dim=0))
        return center

    def details(self) -> dict[str, Any]:
        """``coupling`` per epoch; ``replica_error`` (mean train error of the replicas) and
        ``spread`` (mean squared replica-center distance per parameter) at the start and after
        every epoch."""
        return {key: list(values) for key, values in self.history.items()}


def _redraw(model: nn.Module, seed: int) -> None:
    """Re-initialize ``model`` in place with its modules' own ``reset_parameters``, seeded."""
    owners = [m for m in model.modules() if callable(getattr(m, "reset_parameters", None))]
    covered = {id(p) for m in owners for p in m.parameters(recurse=False)}
    missing = [n for n, p in model.named_parameters() if id(p) not in covered]
    if missing:
        raise FuncspaceError(
            f"rsgd init='independent' re-draws parameters with their module's reset_parameters, "
            f"but {', '.join(missing[:5])} belong to modules without one; use init='shared' "
            "(with init_noise > 0 to start the replicas apart) or give those modules a "
            "reset_parameters method"
        )
    device = next(model.parameters()).device
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), torch.no_grad():
        torch.manual_seed(seed)
        for module in owners:
            module.reset_parameters()


__all__ = ["ReplicatedSGD", "ReplicatedSGDOptions"]
