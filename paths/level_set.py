"""Walking a level set of the training loss while a regularizer decreases (Tahir & Katz).

:func:`~paths.level_set` keeps the full-batch training loss at a fixed level ``c`` (near zero,
for a trained network) and moves the parameters to lower a regularizer ``R`` (the squared norm
by default), by predictor-corrector continuation:

- predictor: a step of length ``h`` along ``-grad R`` projected orthogonally to ``grad L`` (the
  steepest descent of ``R`` within the tangent space of the level set);
- corrector: Newton steps on the scalar constraint ``L(theta) - c = 0`` along ``grad L``,
  ``theta <- theta - (L - c) grad L / |grad L|^2``, until ``|L - c| <= tolerance * c``;
- acceptance: the corrected point must lower the Lagrangian merit ``R - mu (L - c)`` (``mu``
  the multiplier of the constraint: it compares points at slightly different drifts fairly);
  a step that fails to correct or to descend is retried at a shorter ``h``;
- step size: from the predictor's drift (which grows as ``h^2``), aiming at a quarter of the
  level, and capped by the secant (Barzilai-Borwein) estimate of the distance to the
  constrained minimum along the last step.

The path ends at a point where ``grad R`` is parallel to ``grad L`` (a constrained minimum of
``R`` on the level set) or when the step budget is spent. :func:`~paths.penalized` gives the
comparison points: the minimizers of ``L + lambda R`` for a range of ``lambda``; for a convex
loss and regularizer they lie on the same curve (the level set's end at level
``L(theta_lambda)`` is ``theta_lambda``).

Both evaluate the network in eval mode (BatchNorm with its running statistics, which stay
fixed; no dropout): the loss is a deterministic function of the parameters. Only the
parameters that require grad move.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call
from tqdm.auto import tqdm

from funcspace._validate import check_int, check_model_data, eval_mode
from funcspace.data import Dataset, Pair
from funcspace.errors import FuncspaceError
from funcspace.metrics import Metric, as_loss
from funcspace.params import Params, unflatten
from funcspace.training import PROGRESS_DELAY_S

from .path import PathError

#: The built-in regularizers: ``"l2"`` is ``sum theta_i^2`` (the weight-decay penalty),
#: ``"l1"`` is ``sum |theta_i|``, both over the parameters that move.
REGULARIZERS = ("l2", "l1")

Regularizer = str | Callable[[Params], Tensor]

_NEWTON = 8  # corrector iterations before a step is declared failed
_DRIFT_TARGET = 0.25  # predictor drift aimed at, as a fraction of the level
_ARMIJO = 1e-4  # the fraction of the predicted decrease of the merit a step must achieve


@dataclass(frozen=True, eq=False)
class LevelSet:
    """A walk along a level set of the training loss, with what was measured at every point.

    Every array has one entry per accepted point, the (corrected) start first.

    Attributes
    ----------
    level : float
        The training loss held fixed.
    tolerance : float
        The drift allowed, relative to the level: every point has
        ``|train_loss - level| <= tolerance * level``.
    regularizer_name, loss : str
        What was lowered, and the training loss's name.
    step : numpy int array
        The point's index along the path.
    regularizer, train_loss : numpy arrays
    drift : numpy array
        ``train_loss - level``.
    train_error : numpy array or None
        The training error (class targets only).
    test_loss, test_error : numpy arrays or None
        On the test split of a :class:`~funcspace.data.Dataset`; ``None`` without one (and
        ``test_error`` for targets that are not classes).
    step_size : numpy array
        The predictor's step length that reached each point (0 at the start).
    arc_length : numpy array
        Distance travelled in parameter space from the start, summed step by step.
    projected_gradient : numpy array
        ``|grad R|`` projected orthogonally to ``grad L``: zero at a constrained minimum.
    multiplier : numpy array
        ``mu = grad R . grad L / |grad L|^2``, the constraint's Lagrange multiplier. At a
        constrained minimum ``grad L + lambda grad R = 0`` with ``lambda = -1 / mu``: the
        point is stationary for :func:`~paths.penalized` at that ``lambda``. The walk lowers the
        merit ``R - mu (L - level)``; ``R`` itself falls by every step up to
        ``|mu| * tolerance * level`` on either side.
    corrections : numpy int array
        Newton iterations each point took.
    evaluations : int
        Full-batch loss-and-gradient evaluations in all.
    rejected : int
        Steps retried at a shorter step size.
    stopped : {"steps", "stationary", "step_size"}
        Why the walk ended: the step budget; a projected gradient below ``1e-10 |grad R|`` (a
        constrained minimum); or a step size at round-off level with no further descent (a
        constrained minimum to the dtype's precision, or a corrector that keeps failing).
    model : nn.Module
        A new network at the last point (eval mode); the input model is never modified.
    points : dict of int -> dict of str -> Tensor
        The moving parameters at the start, the end and every ``save_every`` steps.
    """

    level: float
    tolerance: float
    regularizer_name: str
    loss: str
    step: np.ndarray
    regularizer: np.ndarray
    train_loss: np.ndarray
    drift: np.ndarray
    train_error: np.ndarray | None
    test_loss: np.ndarray | None
    test_error: np.ndarray | None
    step_size: np.ndarray
    arc_length: np.ndarray
    projected_gradient: np.ndarray
    multiplier: np.ndarray
    corrections: np.ndarray
    evaluations: int
    rejected: int
    stopped: str
    model: nn.Module
    points: dict[int, Params]

    @property
    def converged(self) -> bool:
        """Whether the walk ended at a constrained minimum rather than on its step budget."""
        return self.stopped != "steps"

    def to_dict(self) -> dict[str, Any]:
        """Plain data, for JSON (the model and the saved points are left out)."""
        out: dict[str, Any] = {}
        for key in self.__dataclass_fields__:
            if key in ("model", "points"):
                continue
            value = getattr(self, key)
            out[key] = value.tolist() if isinstance(value, np.ndarray) else value
        out["converged"] = self.converged
        return out

    def __repr__(self) -> str:
        return (
            f"LevelSet({self.regularizer_name} {self.regularizer[0]:.4g} -> "
            f"{self.regularizer[-1]:.4g} at {self.loss} {self.level:.4g} "
            f"(+-{self.tolerance * self.level:.2g}); {len(self.step) - 1} steps, "
            f"stopped: {self.stopped})"
        )


class _Value(NamedTuple):
    loss: float
    grad: Tensor
    error: float | None


class _Problem:
    """The model as a function of one flat vector of its moving parameters: full-batch loss,
    regularizer and their gradients, and measurements on a split (eval mode throughout)."""

    def __init__(
        self,
        model: nn.Module,
        data: Dataset | Pair,
        loss: str | Metric | Callable[[Tensor, Tensor], Tensor],
        regularizer: Regularizer,
        batch_size: int | None,
    ) -> None:
        try:
            self.loss_fn = as_loss(loss)
            kind = self.loss_fn.targets if isinstance(self.loss_fn, Metric) else "any"
            model, x, y = check_model_data(model, data, "train", targets=kind)
            test = None
            if isinstance(data, Dataset) and len(data.test[0]):
                _, tx, ty = check_model_data(model, data, "test", targets=kind)
                test = (tx, ty)
        except FuncspaceError as err:
            raise PathError(str(err)) from None
        if batch_size is not None:
            check_int("batch_size", batch_size, 1, PathError)
        self.loss_name = _name(self.loss_fn, "loss")
        self.classes = kind == "class"
        named = dict(model.named_parameters())
        self.names = [n for n, p in named.items() if p.requires_grad and p.is_floating_point()]
        if not self.names:
            raise PathError("the model has no trainable floating-point parameters to move")
        dtypes = {named[n].dtype for n in self.names}
        if len(dtypes) != 1:
            raise PathError(
                f"the moving parameters mix dtypes {sorted(map(str, dtypes))}; convert the model "
                "to one dtype (model.double() for exact work)"
            )
        self.model = model
        self.like = {n: named[n].detach() for n in self.names}
        self.fixed = {n: p.detach() for n, p in named.items() if n not in self.like}
        self.fixed.update({n: b.detach() for n, b in model.named_buffers()})
        size = len(x) if batch_size is None else batch_size
        self.train = [(x[i : i + size], y[i : i + size]) for i in range(0, len(x), size)]
        self.test: Pair | None = test
        self.n = len(x)
        self.reg_fn, self.reg_name = _regularizer(regularizer)
        self.evaluations = 0

    def start(self) -> Tensor:
        return torch.cat([self.like[n].reshape(-1) for n in self.names]).clone()

    def _state(self, theta: Tensor) -> Params:
        return {**self.fixed, **unflatten(theta, self.like)}

    def _outputs(self, theta: Tensor, x: Tensor) -> Tensor:
        return functional_call(self.model, self._state(theta), (x,))

    def _chunk_loss(self, out: Tensor, y: Tensor) -> Tensor:
        value = self.loss_fn(out, y)
        if not isinstance(value, Tensor) or value.numel() != 1:
            raise PathError(
                f"loss {self.loss_name!r} must return a scalar tensor (the mean over the batch)"
            )
        return value.reshape(())

    def loss_grad(self, theta: Tensor) -> _Value:
        """The mean training loss, its gradient and the training error at ``theta``."""
        self.evaluations += 1
        total, grad, wrong = 0.0, torch.zeros_like(theta), 0
        with eval_mode(self.model):
            for x, y in self.train:
                leaf = theta.detach().requires_grad_(True)
                out = self._outputs(leaf, x)
                value = self._chunk_loss(out, y) * (len(x) / self.n)
                (g,) = torch.autograd.grad(value, leaf, allow_unused=True)
                total += float(value.detach())
                grad += 0 if g is None else g
                if self.classes:
                    wrong += int((out.detach().argmax(-1) != y).sum())
        return _Value(total, grad, wrong / self.n if self.classes else None)

    def measure_test(self, theta: Tensor) -> tuple[float | None, float | None]:
        if self.test is None:
            return None, None
        x, y = self.test
        with eval_mode(self.model), torch.no_grad():
            out = self._outputs(theta, x)
            loss = float(self._chunk_loss(out, y))
        return loss, float((out.argmax(-1) != y).double().mean()) if self.classes else None

    def reg_grad(self, theta: Tensor) -> tuple[float, Tensor]:
        """The regularizer and its gradient at ``theta``."""
        if self.reg_fn is None:
            if self.reg_name == "l2":
                return float(theta @ theta), 2 * theta
            return float(theta.abs().sum()), torch.sign(theta)
        leaf = theta.detach().requires_grad_(True)
        value = self.reg_fn({**self.fixed, **unflatten(leaf, self.like)})
        if not isinstance(value, Tensor) or value.numel() != 1 or not value.requires_grad:
            got = (
                type(value).__name__
                if not isinstance(value, Tensor)
                else f"shape {tuple(value.shape)}"
                + ("" if value.requires_grad else ", not depending on the moving parameters")
            )
            raise PathError(
                f"regularizer {self.reg_name!r} must return a scalar tensor that depends on the "
                f"moving parameters; it returned {got}"
            )
        (g,) = torch.autograd.grad(value.reshape(()), leaf)
        return float(value.detach()), g

    def module(self, theta: Tensor) -> nn.Module:
        net = copy.deepcopy(self.model)
        with torch.no_grad():
            named = dict(net.named_parameters())
            for name, value in unflatten(theta, self.like).items():
                named[name].copy_(value)
        return net.eval()


def _name(fn: object, default: str) -> str:
    if isinstance(fn, Metric):
        return fn.name
    name = getattr(fn, "__name__", "")
    return name if name and name != "<lambda>" else default


def _regularizer(value: object) -> tuple[Callable[[Params], Tensor] | None, str]:
    if isinstance(value, str):
        if value not in REGULARIZERS:
            raise PathError(
                f"unknown regularizer {value!r}; choose one of {', '.join(REGULARIZERS)}, or "
                "pass a function params -> scalar tensor"
            )
        return None, value
    if callable(value):
        return value, _name(value, "custom")
    raise PathError(
        f"regularizer must be one of {', '.join(REGULARIZERS)} or a function params -> scalar "
        f"tensor, got {type(value).__name__}"
    )


def _positive(name: str, value: object, *, below_one: bool = False) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.floating))
    if not ok or not math.isfinite(value) or value <= 0 or (below_one and value >= 1):  # type: ignore[arg-type, operator]
        where = "in (0, 1)" if below_one else "> 0"
        raise PathError(f"{name} must be a finite number {where}, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def _progress(progress: object, total: int, desc: str, unit: str) -> tqdm:
    if progress is not None and not isinstance(progress, bool):
        raise PathError(f"progress must be True, False or None, got {progress!r}")
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        disable=progress is False,
        delay=0 if progress else PROGRESS_DELAY_S,
        leave=False,
    )


def _correct(
    problem: _Problem, theta: Tensor, value: _Value, level: float, band: float
) -> tuple[Tensor, _Value, int] | None:
    """Newton steps on ``L - level`` along ``grad L`` until within ``band``; None on failure."""
    for i in range(_NEWTON + 1):
        gap = value.loss - level
        if abs(gap) <= band:
            return theta, value, i
        norm2 = float(value.grad @ value.grad)
        if i == _NEWTON or not math.isfinite(gap) or not norm2 > 0:
            return None
        theta = theta - (gap / norm2) * value.grad
        value = problem.loss_grad(theta)
    return None


def level_set(
    model: nn.Module,
    data: Dataset | Pair,
    *,
    regularizer: Regularizer = "l2",
    level: float | None = None,
    loss: str | Metric | Callable[[Tensor, Tensor], Tensor] = "loss",
    steps: int = 200,
    step_size: float | None = None,
    tolerance: float = 1e-3,
    batch_size: int | None = None,
    save_every: int | None = None,
    progress: bool | None = None,
) -> LevelSet:
    """Lower ``regularizer`` while holding the training loss at ``level`` (Tahir & Katz).

    Predictor-corrector continuation along the level set ``{theta: L(theta) = level}`` of the
    full-batch training loss (see the module docstring). Deterministic: no randomness is used.
    Every recorded point is within ``tolerance * level`` of the level; the regularizer falls
    step by step up to ``|mu| * tolerance * level`` (``mu`` the recorded multiplier). The
    approach to the constrained minimum is steepest descent on the level set: linear, and
    slow when the level set curves sharply (a loss level far below the loss's scale around a
    set of exact minimizers); ``projected_gradient`` says how far from stationary the end is.

    Parameters
    ----------
    model : nn.Module
        The start; never modified. Evaluated in eval mode: BatchNorm layers use (and keep)
        their running statistics, dropout is off. Only parameters that require grad move.
    data : Dataset or (inputs, targets)
        The training split sets the loss; a :class:`~funcspace.data.Dataset`'s test split is
        measured at every point.
    regularizer : {"l2", "l1"} or callable
        ``"l2"``: the squared norm of the moving parameters; ``"l1"``: the sum of their
        absolute values; or a function of the parameters by name (every parameter, the
        moving ones differentiable) returning a scalar tensor.
    level : float, optional
        The training loss to hold (> 0); default the model's own. A start off the level is
        first corrected onto it.
    loss : str, Metric or callable
        A differentiable metric or its name (default ``"loss"``, cross-entropy; ``"mse"`` for
        real targets), or ``loss(outputs, targets) -> scalar`` mean over the batch.
    steps : int
        The budget of accepted steps (>= 1).
    step_size : float, optional
        The first predictor step's length in parameter space; default 1% of the parameters'
        norm (at least 0.01). It adapts from there.
    tolerance : float
        The drift allowed, relative to the level, in (0, 1).
    batch_size : int, optional
        Examples per forward pass (the loss is always the full-batch mean); default all.
    save_every : int, optional
        Keep the parameters every this many steps in ``points`` (the start and
        the end are always kept).
    progress : bool, optional
        A tqdm bar over the steps; ``None`` shows it only for a walk longer than a few seconds.

    Returns
    -------
    LevelSet

    Raises
    ------
    PathError
        For a bad model or data (non-finite weights, empty data, targets the loss cannot
        read), an unknown regularizer, a level that is not a positive number, bad settings,
        or a start the corrector cannot bring onto the level.

    Examples
    --------
    The loss ``((w1 - 3)^2 + (w2 - 4)^2) / 2`` has the circle of radius 2 about ``(3, 4)`` as
    its level set at 2; its point of least norm is ``(3, 4) * (1 - 2 / 5)``:

    >>> import torch
    >>> from torch import nn
    >>> model = nn.Linear(2, 1, bias=False).double()
    >>> with torch.no_grad():
    ...     _ = model.weight.copy_(torch.tensor([[5.0, 4.0]]))
    >>> data = (torch.eye(2, dtype=torch.float64), torch.tensor([3.0, 4.0], dtype=torch.float64))
    >>> walk = level_set(model, data, loss="mse", level=2.0, steps=50, tolerance=1e-8)
    >>> [round(w, 6) for w in walk.model.weight[0].tolist()], walk.converged
    ([1.8, 2.4], True)
    """
    steps = check_int("steps", steps, 1, PathError)
    tolerance = _positive("tolerance", tolerance, below_one=True)
    if save_every is not None:
        check_int("save_every", save_every, 1, PathError)
    if level is not None:
        level = _positive("level", level)
    if step_size is not None:
        step_size = _positive("step_size", step_size)
    problem = _Problem(model, data, loss, regularizer, batch_size)
    theta = problem.start()
    value = problem.loss_grad(theta)
    if not math.isfinite(value.loss):
        raise PathError(f"the model's training loss is {value.loss}; there is no level to hold")
    if level is None:
        if not value.loss > 0:
            raise PathError(
                "the model's training loss is 0 (an exact minimum): there is no level above it "
                "to hold; pass a level > 0"
            )
        level = value.loss
    band = tolerance * level
    corrected = _correct(problem, theta, value, level, band)
    if corrected is None:
        raise PathError(
            f"could not bring the start (training loss {value.loss:.6g}) onto the level "
            f"{level:.6g} in {_NEWTON} Newton steps; start from a model whose loss is near the "
            "level (the default level is the model's own loss)"
        )
    here = _point(problem, *corrected)
    here = here._replace(test=problem.measure_test(here.theta))
    h = step_size or 0.01 * max(float(here.theta.norm()), 1.0)
    eps = torch.finfo(here.theta.dtype).eps
    floor = 4 * eps * max(float(here.theta.norm()), 1.0)
    target = max(_DRIFT_TARGET * level, 2 * band)
    walk = [here]
    sizes = [0.0]
    points = {0: unflatten(here.theta.clone(), problem.like)}
    stopped, rejected = "steps", 0
    with _progress(progress, steps, "level set", "step") as bar:
        while len(walk) <= steps:
            length = float(here.direction.norm())
            if length <= 1e-10 * here.gradient:
                stopped = "stationary"
                break
            merit = here.merit(level)
            noise = 16 * eps * (abs(here.reg) + abs(merit - here.reg))
            while True:
                there, drift = _advance(problem, here, h, level, band)
                if there is not None:
                    gain = merit - there.merit(level)
                    if gain >= _ARMIJO * length * h:
                        break
                    # near the minimum the merit's change is round-off: a shorter projected
                    # gradient is then the evidence of progress
                    if gain >= -noise and float(there.direction.norm()) < length:
                        break
                    # the merit's curvature along the step, from its slope -length at h = 0
                    curvature = (length * h - gain) / h**2
                    best = length / (2 * curvature) if curvature > 0 else math.inf
                    shrink = min(max(best, 0.1 * h), 0.5 * h)
                else:
                    shrink = 0.5 * h
                rejected += 1
                h = shrink
                if h < floor:
                    stopped = "step_size"
                    break
            if stopped == "step_size":
                break
            there = there._replace(test=problem.measure_test(there.theta))
            walk.append(there)
            sizes.append(h)
            if save_every and (len(walk) - 1) % save_every == 0:
                points[len(walk) - 1] = unflatten(there.theta.clone(), problem.like)
            grow = min(max(math.sqrt(target / drift) if drift > 0 else 2.0, 0.5), 2.0)
            h = min(h * grow, _secant(here, there))
            here = there
            bar.update()
    points[len(walk) - 1] = unflatten(here.theta.clone(), problem.like)
    return _result(problem, walk, sizes, level, tolerance, stopped, rejected, points)


class _Point(NamedTuple):
    """A point on the level set with what the next step needs."""

    theta: Tensor
    value: _Value
    corrections: int
    reg: float
    gradient: float  # |grad R|
    direction: Tensor  # -grad R projected orthogonally to grad L
    mu: float  # the multiplier: grad R . grad L / |grad L|^2
    test: tuple[float | None, float | None]  # loss and error on the test split

    def merit(self, level: float) -> float:
        return self.reg - self.mu * (self.value.loss - level)


def _point(problem: _Problem, theta: Tensor, value: _Value, corrections: int) -> _Point:
    reg, grad = problem.reg_grad(theta)
    norm2 = float(value.grad @ value.grad)
    mu = float(grad @ value.grad) / norm2 if norm2 > 0 else 0.0
    direction = -(grad - mu * value.grad)
    return _Point(theta, value, corrections, reg, float(grad.norm()), direction, mu, (None, None))


def _advance(
    problem: _Problem, here: _Point, h: float, level: float, band: float
) -> tuple[_Point | None, float]:
    """The predictor step of length ``h`` and its correction (None if the corrector failed),
    with the predictor's drift."""
    theta = here.theta + h * here.direction / float(here.direction.norm())
    value = problem.loss_grad(theta)
    corrected = _correct(problem, theta, value, level, band)
    drift = abs(value.loss - level)
    return (None if corrected is None else _point(problem, *corrected)), drift


def _secant(here: _Point, there: _Point) -> float:
    """The next step's length (Barzilai-Borwein): ``|s|^2 / (s . y)`` times the projected
    gradient's length, ``s`` the last step and ``y`` the projected gradient's change (inf
    without positive curvature)."""
    step = there.theta - here.theta
    product = float(step @ (here.direction - there.direction))
    if not product > 0:
        return math.inf
    return float(step @ step) / product * float(there.direction.norm())


def _result(
    problem: _Problem,
    walk: list[_Point],
    sizes: list[float],
    level: float,
    tolerance: float,
    stopped: str,
    rejected: int,
    points: dict[int, Params],
) -> LevelSet:
    def array(values: list, dtype: type = np.float64) -> np.ndarray:
        return np.asarray(values, dtype=dtype)

    def optional(values: list) -> np.ndarray | None:
        return None if values[0] is None else array(values)

    train_loss = array([p.value.loss for p in walk])
    steps = [float((b.theta - a.theta).norm()) for a, b in zip(walk, walk[1:], strict=False)]
    return LevelSet(
        level=float(level),
        tolerance=tolerance,
        regularizer_name=problem.reg_name,
        loss=problem.loss_name,
        step=np.arange(len(walk)),
        regularizer=array([p.reg for p in walk]),
        train_loss=train_loss,
        drift=train_loss - level,
        train_error=optional([p.value.error for p in walk]),
        test_loss=optional([p.test[0] for p in walk]),
        test_error=optional([p.test[1] for p in walk]),
        step_size=array(sizes),
        arc_length=np.concatenate([[0.0], np.cumsum(steps)]),
        projected_gradient=array([float(p.direction.norm()) for p in walk]),
        multiplier=array([p.mu for p in walk]),
        corrections=array([p.corrections for p in walk], np.int64),
        evaluations=problem.evaluations,
        rejected=rejected,
        stopped=stopped,
        model=problem.module(walk[-1].theta),
        points=points,
    )
