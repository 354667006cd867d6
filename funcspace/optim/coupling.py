"""Coupling schedules of replicated SGD: how strongly the replicas are pulled to their center."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from funcspace.errors import FuncspaceError
from funcspace.optim.checks import _nonnegative, _positive


@dataclass(frozen=True)
class Geometric:
    """Coupling ``min(g_max, g0 * growth**epoch)`` from the first epoch.

    With the toroids paper's (1e-3, 1.05) and replicas that start together the coupling is
    ~1e-3 while the replicas still learn, so they reach zero error as independent SGD runs and
    the center is their plain average; with replicas that start apart (``init="independent"``)
    it is too weak to bring them into one basin in 100 epochs (on digits the center kept 0.5%
    train error and was 3x sharper than SGD).

    Examples
    --------
    >>> Geometric(1e-3, 2.0)(epoch=3, replica_errors=[0.9, 0.5, 0.1, 0.0])
    0.008
    >>> Geometric(1e-3, 2.0, g_max=0.005)(epoch=3, replica_errors=[])
    0.005
    """

    g0: float
    growth: float
    g_max: float = math.inf

    def __call__(self, epoch: int, replica_errors: Sequence[float]) -> float:
        try:
            value = self.g0 * self.growth**epoch
        except OverflowError:  # a fast growth over a long budget
            value = math.inf if self.g0 > 0 else 0.0
        return min(self.g_max, value)


@dataclass(frozen=True)
class Balanced:
    """The authors' default: start where coupling and data loss balance, grow by a fixed factor.

    Calibrated once, on the replicas as they start (:meth:`calibrate`): in the notation of
    Pittorino et al. (2021, code of the paper), the coupling term ``g' mean_a |w_a - c|^2``
    starts equal to the replicas' mean training loss ``L0`` and grows geometrically by a total
    factor ``total_growth`` (their ``gmax``, 1e4) over the epoch budget. With replica losses
    averaged and the learning rate multiplied by the number of replicas (as their code does),
    each replica follows ``grad L_a + 2 g' (w_a - c)``, so ``g0 = scale * 2 L0 / D0`` in our
    convention (``D0``: mean squared replica-center distance, summed over parameters).
    ``scale`` 0.1 (the authors': 1) was flatter on digits (see
    :class:`~funcspace.optim.ReplicatedSGD`). The coupling is capped at ``lr_g_max / lr``
    (base learning rate): with Nesterov momentum 0.9 the pull alone is unstable beyond
    ``lr * g`` of about 1.4. Needs replicas that start apart (``D0 > 0``).

    Examples
    --------
    >>> schedule = Balanced(scale=0.1, total_growth=100.0).calibrate(
    ...     loss=2.0, distance=40.0, epochs=2, lr=0.05)
    >>> [round(schedule(e, []), 4) for e in range(3)]
    [0.01, 0.1, 1.0]
    """

    scale: float = 0.1
    total_growth: float = 1e4
    lr_g_max: float = 1.0

    def calibrate(self, loss: float, distance: float, epochs: int, lr: float) -> Geometric:
        """The geometric schedule for replicas with mean training loss ``loss`` and mean
        squared distance ``distance`` (summed over parameters) to their center."""
        if not distance > 0:
            raise FuncspaceError(
                "the Balanced coupling is calibrated on the replicas' initial distance, which "
                "is 0: start the replicas apart (init='independent' or init_noise > 0) or give "
                "a schedule that needs no calibration, e.g. coupling=(g0, growth) or Gated()"
            )
        growth = self.total_growth ** (1.0 / max(epochs, 1))
        return Geometric(self.scale * 2.0 * loss / distance, growth, self.lr_g_max / lr)


@dataclass(frozen=True)
class Gated:
    """No coupling until the replicas converge, then a geometric pull: ``g0 * growth**k``.

    The gate opens at the end of the first epoch whose mean training error of the replicas is
    at most ``target_error``; the next epoch has ``g0`` and ``k`` counts the epochs since; the
    coupling stops growing at ``g_max``. Replicas explore apart while they learn and are pulled
    together only once they sit in low-error regions. Keep ``lr * g_max`` well below 1: with
    Nesterov momentum 0.9 the coupling alone is unstable beyond ``lr * g`` of about 1.4 (on
    digits, lr 0.2 with ``g_max`` 10 diverged, ``g_max`` 1 does not).

    Examples
    --------
    >>> schedule = Gated(target_error=0.1, g0=0.5, growth=2.0)
    >>> [schedule(e, [0.9, 0.3, 0.05, 0.0][: e + 1]) for e in range(4)]
    [0.0, 0.0, 0.5, 1.0]
    """

    target_error: float = 0.02
    g0: float = 0.1
    growth: float = 1.5
    g_max: float = 1.0

    def __call__(self, epoch: int, replica_errors: Sequence[float]) -> float:
        opened = next((i for i, e in enumerate(replica_errors) if e <= self.target_error), None)
        if opened is None or opened >= epoch + 1:
            return 0.0
        # growth**k overflows long before a budget ends; log space keeps it finite
        k = math.log(self.g_max / self.g0) / math.log(self.growth) if self.growth > 1 else 0.0
        return min(self.g_max, self.g0 * self.growth ** min(epoch - opened, k + 1))


Coupling = Callable[[int, Sequence[float]], float] | Balanced


def _coupling(name: str, value: Any) -> Coupling:
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return Geometric(_nonnegative(name, value[0]), _positive(name, value[1]))
    if callable(value) or isinstance(value, Balanced):
        return value
    raise FuncspaceError(
        f"option {name} must be a pair (g0, growth) for a geometric schedule, a "
        f"funcspace.optim.Balanced(...), a funcspace.optim.Gated(...) or a callable "
        f"(epoch, replica_errors) -> float; got {value!r}"
    )


__all__ = ["Balanced", "Coupling", "Gated", "Geometric"]
