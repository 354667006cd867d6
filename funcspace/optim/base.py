"""What every method shares: the run's :class:`Context`, the loss, learning-rate schedules
and the :class:`Method` base classes."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from funcspace._validate import eval_mode
from funcspace.errors import FuncspaceError
from funcspace.metrics import LOSS

SCHEDULES = ("cosine", "constant")


# ----------------------------------------------------------------------------- the run


@dataclass(eq=False)
class Context:
    """What a method needs of the run: the training data (on the device) and its randomness.

    Attributes
    ----------
    inputs, targets : the training pair, on the training device; targets are class indices.
    n_classes : number of classes (random labels of ``"adv"`` are drawn among them).
    epochs : the epoch budget (learning-rate schedules anneal over it).
    batch_size : examples per step.
    generator : CPU generator for shuffling and data corruption.
    noise : generator on the training device for Langevin noise.
    loss : the training loss, ``loss(outputs, targets) -> scalar mean`` (a differentiable
        :class:`~funcspace.metrics.Metric`; cross-entropy by default).
    """

    inputs: Tensor
    targets: Tensor
    n_classes: int
    epochs: int
    batch_size: int
    generator: torch.Generator
    noise: torch.Generator
    loss: Callable[[Tensor, Tensor], Tensor] = LOSS

    def batches(self) -> list[Tensor]:
        """Index batches of one fresh random permutation (a last batch of one joins its neighbour,
        so BatchNorm never sees a single example)."""
        order = torch.randperm(len(self.inputs), generator=self.generator)
        chunks = list(order.to(self.inputs.device).split(self.batch_size))
        if len(chunks) > 1 and len(chunks[-1]) == 1:
            chunks[-2:] = [torch.cat(chunks[-2:])]
        return chunks


def loss_of(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    loss: Callable[[Tensor, Tensor], Tensor] = LOSS,
) -> Tensor:
    """The training loss of ``model`` on a batch (the run's :attr:`Context.loss`; mean
    cross-entropy by default)."""
    return loss(model(inputs), targets)


@torch.no_grad()
def error_and_loss(
    model: nn.Module, inputs: Tensor, targets: Tensor, chunk: int = 8192
) -> tuple[float, float]:
    """Error rate and mean cross-entropy on the whole pair, in eval mode (the mode is restored).

    Examples
    --------
    >>> model = nn.Linear(2, 2)
    >>> error, loss = error_and_loss(model, torch.zeros(4, 2), torch.zeros(4, dtype=torch.long))
    >>> 0 <= error <= 1 and loss > 0
    True
    """
    wrong, total = 0, 0.0
    with eval_mode(model):  # every submodule's own mode is given back, also on an error
        for x, y in zip(inputs.split(chunk), targets.split(chunk), strict=True):
            out = model(x)
            wrong += int((out.argmax(dim=1) != y).sum())
            total += float(F.cross_entropy(out, y, reduction="sum"))
    return wrong / len(targets), total / len(targets)


def _annealed(lr: float, schedule: str, epoch: int, epochs: int) -> float:
    if schedule == "constant" or epochs <= 0:
        return lr
    return lr * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


# ------------------------------------------------------------------------- base classes


def option(default: Any, check: Callable[[str, Any], Any]) -> Any:
    """A field of an :class:`Options` dataclass: its default and the check of a given value."""
    return field(default=default, metadata={"check": check})


@dataclass(frozen=True)
class Options:
    """The options of one training method, validated when built (each method has its own:
    ``SGDOptions``, ``ReplicatedSGDOptions``, ...). ``lr`` is always an option.

    Pass an instance as ``train(model, data, optimizer=SGDOptions(lr=0.05))``; change one field
    with ``dataclasses.replace``.

    Raises
    ------
    FuncspaceError
        For a value outside its range (the message names the option).
    """

    method: ClassVar[str]
    lr: float

    def __post_init__(self) -> None:
        for f in fields(self):
            check = f.metadata.get("check")
            if check is not None:
                object.__setattr__(self, f.name, check(f.name, getattr(self, f.name)))

    def to_dict(self) -> dict[str, Any]:
        """Every option by name (values as they are; no recursion into objects)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


class Method(ABC):
    """One way of training: owns its network(s), takes one epoch of steps at a time.

    Subclasses declare ``name`` and ``Options`` (their :class:`Options` dataclass);
    :meth:`resolve` validates user options at the boundary.
    """

    name: ClassVar[str]
    Options: ClassVar[type[Options]]

    def __init__(self, model: nn.Module, context: Context, **options: Any) -> None:
        self.net = model
        self.context = context
        self.opts = options

    @classmethod
    def resolve(cls, options: dict[str, Any]) -> Options:
        """The method's :class:`Options` from names and values; unknown names are refused."""
        known = [f.name for f in fields(cls.Options)]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise FuncspaceError(
                f"optimizer {cls.name!r} has no option(s) {', '.join(map(repr, unknown))}; "
                f"its options are {', '.join(sorted(known))}"
            )
        return cls.Options(**options)

    def prepare(self) -> dict[str, Any]:
        """Work before the first epoch (``"adv"`` pre-trains here); returns details to record."""
        return {}

    @abstractmethod
    def run_epoch(self, epoch: int) -> None:
        """One pass over the training data (each replica its own pass, for ``"rsgd"``)."""

    @property
    def model(self) -> nn.Module:
        """The network the method has found so far (evaluated after every epoch)."""
        return self.net

    def details(self) -> dict[str, Any]:
        """Method-specific history, plain data, for the training record."""
        return {}


class _Stepper(Method):
    """A method that wraps one ``torch.optim`` optimizer and takes one step per batch."""

    def __init__(self, model: nn.Module, context: Context, **options: Any) -> None:
        super().__init__(model, context, **options)
        self.optimizer = self._make_optimizer()

    @abstractmethod
    def _make_optimizer(self) -> torch.optim.Optimizer: ...

    def run_epoch(self, epoch: int) -> None:
        ctx = self.context
        lr = _annealed(self.opts["lr"], self.opts["schedule"], epoch, ctx.epochs)
        _set_lr(self.optimizer, lr)
        self.net.train()
        for idx in ctx.batches():
            self._step(ctx.inputs[idx], ctx.targets[idx])

    def _step(self, inputs: Tensor, targets: Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss_of(self.net, inputs, targets, self.context.loss).backward()
        self.optimizer.step()


def _sgd(params: Any, lr: float, momentum: float, nesterov: bool, weight_decay: float):
    return torch.optim.SGD(
        params,
        lr=lr,
        momentum=momentum,
        nesterov=nesterov and momentum > 0,
        weight_decay=weight_decay,
    )


__all__ = ["SCHEDULES", "Context", "Method", "error_and_loss", "loss_of"]
