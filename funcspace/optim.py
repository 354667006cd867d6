"""Training methods that find minimizers of different flatness, chosen by name in ``train``.

Each method is a small class that owns its network(s) and takes one epoch of steps at a time;
:func:`funcspace.training.train` builds it, evaluates its :attr:`Method.model` after every epoch
and decides when to stop. Names (see :data:`METHODS`):

``"sgd"``
    Nesterov momentum 0.9, learning rate 0.02 cosine-annealed over the epoch budget: the
    toroids paper's standard minimizers.
``"rsgd"``
    Replicated SGD (:class:`ReplicatedSGD`): ``replicas`` copies, each on its own shuffled
    batches, each pulled toward their center; the center is the result (flat minima by design,
    not yet by measurement on our data: see the class).
``"adv"``
    Adversarial initialization (Liu et al. 2020): pre-train on a copy of the training set with
    random labels and 10% of the inputs zeroed, then SGD without momentum (sharp minima).
``"adam"``, ``"sam"`` (sharpness-aware minimization, Foret et al. 2021), ``"entropy_sgd"``
    (Chaudhari et al. 2017: an inner Langevin loop estimates the local-entropy gradient).

Every method draws its randomness from the run's generators (:class:`Context`), never from
the global RNG, so a run is a function of its seed.
"""

from __future__ import annotations

import copy
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from funcspace.errors import FuncspaceError

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
    """

    inputs: Tensor
    targets: Tensor
    n_classes: int
    epochs: int
    batch_size: int
    generator: torch.Generator
    noise: torch.Generator

    def batches(self) -> list[Tensor]:
        """Index batches of one fresh random permutation (a last batch of one joins its neighbour,
        so BatchNorm never sees a single example)."""
        order = torch.randperm(len(self.inputs), generator=self.generator)
        chunks = list(order.to(self.inputs.device).split(self.batch_size))
        if len(chunks) > 1 and len(chunks[-1]) == 1:
            chunks[-2:] = [torch.cat(chunks[-2:])]
        return chunks


def loss_of(model: nn.Module, inputs: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy of ``model`` on a batch (the training loss of every method)."""
    return F.cross_entropy(model(inputs), targets)


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
    was_training = model.training
    model.eval()
    wrong, total = 0, 0.0
    for x, y in zip(inputs.split(chunk), targets.split(chunk), strict=True):
        out = model(x)
        wrong += int((out.argmax(dim=1) != y).sum())
        total += float(F.cross_entropy(out, y, reduction="sum"))
    model.train(was_training)
    return wrong / len(targets), total / len(targets)


def _annealed(lr: float, schedule: str, epoch: int, epochs: int) -> float:
    if schedule == "constant" or epochs <= 0:
        return lr
    return lr * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


# ------------------------------------------------------------------------ option checks


def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise FuncspaceError(f"option {name} must be a positive number, got {value!r}")
    return float(value)


def _nonnegative(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise FuncspaceError(f"option {name} must be a number >= 0, got {value!r}")
    return float(value)


def _unit(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise FuncspaceError(f"option {name} must be a number in [0, 1), got {value!r}")
    return float(value)


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise FuncspaceError(f"option {name} must be an integer >= 0, got {value!r}")
    return value


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise FuncspaceError(f"option {name} must be True or False, got {value!r}")
    return value


def _choice(*choices: str) -> Callable[[str, Any], str]:
    def check(name: str, value: Any) -> str:
        if value not in choices:
            raise FuncspaceError(f"option {name} must be one of {choices}, got {value!r}")
        return value

    return check


def _betas(name: str, value: Any) -> tuple[float, float]:
    if not (isinstance(value, (tuple, list)) and len(value) == 2):
        raise FuncspaceError(f"option {name} must be a pair of numbers in [0, 1), got {value!r}")
    return (_unit(name, value[0]), _unit(name, value[1]))


# ------------------------------------------------------------------------- base classes


class Method(ABC):
    """One way of training: owns its network(s), takes one epoch of steps at a time.

    Subclasses declare ``name`` and ``options`` (option name -> (default, check)); ``lr`` is
    always an option. :meth:`resolve` validates user options at the boundary.
    """

    name: ClassVar[str]
    options: ClassVar[dict[str, tuple[Any, Callable[[str, Any], Any]]]]

    def __init__(self, model: nn.Module, context: Context, **options: Any) -> None:
        self.net = model
        self.context = context
        self.opts = options

    @classmethod
    def resolve(cls, options: dict[str, Any]) -> dict[str, Any]:
        """All options with defaults filled in, each checked; unknown names are refused."""
        unknown = sorted(set(options) - set(cls.options))
        if unknown:
            raise FuncspaceError(
                f"optimizer {cls.name!r} has no option(s) {', '.join(map(repr, unknown))}; "
                f"its options are {', '.join(sorted(cls.options))}"
            )
        resolved = {}
        for key, (default, check) in cls.options.items():
            resolved[key] = check(key, options[key]) if key in options else default
        return resolved

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
        loss_of(self.net, inputs, targets).backward()
        self.optimizer.step()


def _sgd(params: Any, lr: float, momentum: float, nesterov: bool, weight_decay: float):
    return torch.optim.SGD(
        params,
        lr=lr,
        momentum=momentum,
        nesterov=nesterov and momentum > 0,
        weight_decay=weight_decay,
    )


# ---------------------------------------------------------------------------- the methods


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


class Adversarial(SGD):
    """ADV (Liu et al. 2020): pre-train on a corrupted copy with random labels, then plain SGD.

    The copy has every input entry zeroed with probability ``corrupt_fraction`` (0.1) and labels
    drawn uniformly among the classes; pre-training runs Nesterov SGD (``adv_lr`` 0.02,
    ``adv_momentum`` 0.9, constant) for ``adv_epochs`` (100) epochs or until the random labels
    are fitted. The main phase is SGD *without* momentum (``lr`` 0.02, cosine). The record's
    ``init`` is the adversarial initialization (where the main phase starts).
    """

    name = "adv"
    options = {
        **SGD.options,
        "momentum": (0.0, _unit),
        "nesterov": (False, _flag),
        "adv_epochs": (100, _count),
        "adv_lr": (0.02, _positive),
        "adv_momentum": (0.9, _unit),
        "corrupt_fraction": (0.1, _unit),
    }

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
                loss_of(self.net, inputs[idx], labels[idx]).backward()
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


class SAM(SGD):
    """Sharpness-aware minimization (Foret et al. 2021) over Nesterov SGD.

    Each step takes two forward-backward passes: the gradient at ``w`` gives the ascent
    ``e = rho g / |g|`` (``adaptive=True``: ASAM, ``e = rho w^2 g / |w g|``), and the gradient
    at ``w + e`` updates ``w``. BatchNorm statistics are those of the first pass only. Options:
    SGD's plus ``rho`` (0.05) and ``adaptive`` (False).
    """

    name = "sam"
    options = {**SGD.options, "rho": (0.05, _positive), "adaptive": (False, _flag)}

    def _step(self, inputs: Tensor, targets: Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss_of(self.net, inputs, targets).backward()
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
        loss_of(self.net, inputs, targets).backward()
        with torch.no_grad():
            for p, a in zip(params, ascent, strict=True):
                p.sub_(a)
            for b, s in zip(self.net.buffers(), saved, strict=True):
                b.copy_(s)
        self.optimizer.step()


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
    options = {
        "lr": (1.0, _positive),
        "momentum": (0.9, _unit),
        "nesterov": (True, _flag),
        "weight_decay": (0.0, _nonnegative),
        "schedule": ("constant", _choice(*SCHEDULES)),
        "L": (5, _count),
        "inner_lr": (0.1, _positive),
        "gamma": (0.03, _nonnegative),
        "scoping": (1e-3, _nonnegative),
        "noise": (1e-4, _nonnegative),
        "alpha": (0.75, _unit),
    }

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
                loss_of(self.net, ctx.inputs[idx], ctx.targets[idx]).backward()
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


# -------------------------------------------------------------------- replicated SGD


@dataclass(frozen=True)
class Geometric:
    """Coupling ``g0 * growth**epoch`` from the first epoch: the toroids paper's schedule.

    With the paper's (1e-3, 1.05) the coupling is ~1e-3 while the replicas still learn, so they
    reach zero error as independent SGD runs and the center is their plain average.

    Examples
    --------
    >>> Geometric(1e-3, 2.0)(epoch=3, replica_errors=[0.9, 0.5, 0.1, 0.0])
    0.008
    """

    g0: float
    growth: float

    def __call__(self, epoch: int, replica_errors: Sequence[float]) -> float:
        return self.g0 * self.growth**epoch


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


Coupling = Callable[[int, Sequence[float]], float]


def _coupling(name: str, value: Any) -> Coupling:
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return Geometric(_nonnegative(name, value[0]), _positive(name, value[1]))
    if callable(value):
        return value
    raise FuncspaceError(
        f"option {name} must be a pair (g0, growth) for a geometric schedule, a "
        f"funcspace.optim.Gated(...) or a callable (epoch, replica_errors) -> float; got {value!r}"
    )


class ReplicatedSGD(Method):
    """Replicated SGD: ``replicas`` networks, each on its own batches, coupled to their center.

    Replica ``a`` minimizes ``loss_a + g/2 |w_a - c|^2``. ``center="mean"``: ``c`` is the
    replicas' mean, detached, recomputed every step. ``center="elastic"``: ``c`` is a variable
    of its own (elastic averaging), moved by ``lr * g * sum_a (w_a - c)`` after every step; it
    stays at the initialization while ``g`` is 0. The result (:attr:`model`) is the center, so
    ``stop_at_zero_error`` stops when the *center* fits the training set.

    ``coupling`` sets ``g`` per epoch: a pair ``(g0, growth)`` is :class:`Geometric` (the paper:
    ``(1e-3, 1.05)``); the default :class:`Gated` (``g = 0`` until the replicas' mean training
    error reaches 0.02, then ``0.1 * 1.5**k`` up to 1) lets the replicas explore apart while they
    learn and pulls them together only once they have converged; any callable
    ``(epoch, replica_errors) -> g`` works (``replica_errors[0]`` is at the start, one more per
    finished epoch). ``init_noise`` starts each replica at ``w0 (1 + s z)`` instead of ``w0``.

    Measured on digits (``benchmarks/flat_minima.py``): no schedule made the center flatter
    than SGD at the same learning rate. Replicas that start together spread only as far as SGD
    noise takes them (mean squared distance ~1e-6 per parameter at lr 0.05), so whether the
    coupling is felt (gated, grown to 1) or not (the paper's, ~1e-3 before zero error:
    averaged SGD) the center is SGD's minimizer; replicas started apart (``init_noise``
    0.1-0.3) or left uncoupled give a *sharper* average. The default is the gated schedule
    because it is bounded and reaches a collapsed, consistent center whatever the budget, not
    because it was measured flatter.

    Options: ``lr`` (0.05), ``replicas`` (5), ``coupling``, ``center`` ("mean"),
    ``init_noise`` (0), ``momentum`` (0.9), ``nesterov`` (True), ``weight_decay`` (0),
    ``schedule`` ("cosine").

    Examples
    --------
    >>> from funcspace.models import MLP
    >>> from funcspace.training import train
    >>> x = torch.randn(64, 5, generator=torch.Generator().manual_seed(0))
    >>> y = (x[:, 0] > 0).long()
    >>> result = train(MLP(5, [16], 2, seed=0), (x, y), "rsgd", epochs=3, replicas=3,
    ...                coupling=Gated(target_error=0.2), progress=False)
    >>> len(result.record.details["replica_error"]) == result.record.epochs + 1
    True
    """

    name = "rsgd"
    options = {
        "lr": (0.05, _positive),
        "replicas": (5, _count),
        "coupling": (Gated(), _coupling),
        "center": ("mean", _choice("mean", "elastic")),
        "init_noise": (0.0, _nonnegative),
        "momentum": (0.9, _unit),
        "nesterov": (True, _flag),
        "weight_decay": (0.0, _nonnegative),
        "schedule": ("cosine", _choice(*SCHEDULES)),
    }

    def __init__(self, model: nn.Module, context: Context, **options: Any) -> None:
        super().__init__(model, context, **options)
        o = self.opts
        if o["replicas"] < 1:
            raise FuncspaceError("option replicas of 'rsgd' must be >= 1")
        self.replicas = [copy.deepcopy(model) for _ in range(o["replicas"])]
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
        self.history: dict[str, list[float]] = {"coupling": [], "replica_error": [], "spread": []}

    def prepare(self) -> dict[str, Any]:
        self._measure()
        return {}

    def _center(self) -> list[Tensor]:
        if self.opts["center"] == "elastic":
            return self.elastic
        per_replica = [list(r.parameters()) for r in self.replicas]
        return [torch.stack(ps).mean(dim=0).detach() for ps in zip(*per_replica, strict=True)]

    def run_epoch(self, epoch: int) -> None:
        ctx, o = self.context, self.opts
        g = float(o["coupling"](epoch, self.history["replica_error"]))
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
                loss_of(replica, ctx.inputs[plan[step]], ctx.targets[plan[step]]).backward()
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
    def _measure(self) -> None:
        ctx = self.context
        errors = [error_and_loss(r, ctx.inputs, ctx.targets)[0] for r in self.replicas]
        self.history["replica_error"].append(sum(errors) / len(errors))
        center = self._center()
        count = sum(c.numel() for c in center)
        squared = sum(
            float(((p - c) ** 2).sum())
            for r in self.replicas
            for p, c in zip(r.parameters(), center, strict=True)
        )
        self.history["spread"].append(squared / (len(self.replicas) * count))

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


#: The methods by name, as ``train(..., optimizer=name)`` accepts them.
METHODS: dict[str, type[Method]] = {
    cls.name: cls for cls in (SGD, ReplicatedSGD, Adversarial, Adam, SAM, EntropySGD)
}


def method_class(name: str) -> type[Method]:
    """The method registered under ``name``.

    Raises
    ------
    FuncspaceError
        If no method has that name (the message lists them).

    Examples
    --------
    >>> method_class("sgd").options["lr"][0]
    0.02
    """
    if not isinstance(name, str) or name not in METHODS:
        raise FuncspaceError(
            f"unknown optimizer {name!r}; choose one of {', '.join(sorted(METHODS))}"
        )
    return METHODS[name]


__all__ = [
    "METHODS",
    "SAM",
    "SGD",
    "Adam",
    "Adversarial",
    "Context",
    "Coupling",
    "EntropySGD",
    "Gated",
    "Geometric",
    "Method",
    "ReplicatedSGD",
    "error_and_loss",
    "loss_of",
    "method_class",
]
