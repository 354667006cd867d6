"""Adversarial initialization (Liu et al. 2020): sharp minima on purpose."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from funcspace.optim.base import _sgd, error_and_loss, loss_of, option
from funcspace.optim.checks import _count, _flag, _positive, _unit
from funcspace.optim.sgd import SGD, SGDOptions


@dataclass(frozen=True)
class AdversarialOptions(SGDOptions):
    """Options of ``"adv"``: SGD without momentum after the adversarial pre-training."""

    method: ClassVar[str] = "adv"
    momentum: float = option(0.0, _unit)
    nesterov: bool = option(False, _flag)
    adv_epochs: int = option(100, _count)
    adv_lr: float = option(0.02, _positive)
    adv_momentum: float = option(0.9, _unit)
    corrupt_fraction: float = option(0.1, _unit)


class Adversarial(SGD):
    """ADV (Liu et al. 2020): pre-train on a corrupted copy with random labels, then plain SGD.

    The copy has every input entry zeroed with probability ``corrupt_fraction`` (0.1) and labels
    drawn uniformly among the classes; pre-training runs Nesterov SGD (``adv_lr`` 0.02,
    ``adv_momentum`` 0.9, constant) for ``adv_epochs`` (100) epochs or until the random labels
    are fitted. The main phase is SGD *without* momentum (``lr`` 0.02, cosine). The record's
    ``init`` is the adversarial initialization (where the main phase starts).
    """

    name = "adv"
    Options = AdversarialOptions

    def prepare(self) -> dict[str, Any]:
        ctx, o = self.context, self.opts
        mask = torch.rand(ctx.inputs.shape, generator=ctx.generator) < o["corrupt_fraction"]
        inputs = ctx.inputs.masked_fill(mask.to(ctx.inputs.device), 0)
        labels = torch.randint(ctx.n_classes, (len(inputs),), generator=ctx.generator)
        labels = labels.to(ctx.targets.device)
        pre = _sgd(self.net.parameters(), o["adv_lr"], o["adv_momentum"], True, o["weight_decay"])
        self.net.train()
        epochs_run, random_error = 0, 1.0
        for _ in range(o["adv_epochs"]):
            for idx in ctx.batches():
                pre.zero_grad(set_to_none=True)
                loss_of(self.net, inputs[idx], labels[idx], ctx.loss).backward()
                pre.step()
            epochs_run += 1
            random_error = error_and_loss(self.net, inputs, labels)[0]
            if random_error == 0:
                break
        true_error = error_and_loss(self.net, ctx.inputs, ctx.targets)[0]
        return {
            "adv_epochs_run": epochs_run,
            "adv_random_label_error": random_error,
            "adv_init_train_error": true_error,
        }


__all__ = ["Adversarial", "AdversarialOptions"]
