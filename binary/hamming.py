"""Hamming paths between binary networks: the differing weights flipped one at a time.

A :class:`HammingPath` is a :class:`paths.Path` (kind ``"hamming"``), so :func:`paths.profile`
and :func:`paths.barrier` measure it like any other path, all its points in one batched
evaluation. Its points are the ``H + 1`` networks met when the ``H`` weights on which ``a``
and the aligned ``b`` differ are flipped in some order: every point is binary and each step
changes one weight, so its length is the Hamming distance. ``t`` in ``[0, 1]`` maps to step
``k = floor(t * H + 1/2)`` (rounding half up): ``t = 0`` is ``a``, ``t = 1`` the aligned ``b``,
and ``t = k / H`` is the point after ``k`` flips.

Only the trainable binary weights flip (:func:`binary.binary_weights`): fixed layers (a
committee's vote and readout, :func:`binary.fixed_weights`) are equal at both ends and stay so.
Real-valued parameters (biases, BatchNorm parameters; equal ends leave them fixed) and
BatchNorm statistics move linearly with the fraction of flips done, ``k / H``, so a point is
determined by its step alone; ``t = 0`` and ``t = 1`` hold the ends' values exactly. A
network with one sign output and +-1 targets is measured with
``settings=Settings(metrics="sign_error")`` (``paths.profile`` defaults to class error and loss);
the functions here that take ``metric="auto"`` choose it themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from funcspace.evaluation import Evaluator, Settings
from funcspace.params import Params, Stacked, buffers_of, parameters_of
from paths import Path
from paths.path import check_times

from .distance import aligned_pair
from .errors import BinaryError
from .symmetry import default_metric, infer_example_input

ORDERS = ("random", "greedy")
# Stacked parameters of one block of candidate flips, in bytes.
_BLOCK_BYTES = 64 * 2**20


@dataclass(frozen=True, eq=False)
class HammingPath(Path):
    """A path that flips the differing binary weights of two networks one at a time.

    It has the attributes of :class:`paths.Path` and these.

    Attributes
    ----------
    aligned : nn.Module
        The end as the path reaches it: ``b`` aligned to ``a`` (``b`` itself without
        alignment); the same function as ``b``.
    names : tuple of str
        The binary tensors, in the order of the flat index.
    flips : Tensor
        The flat indices (into the binary tensors concatenated) in the order they are flipped.
    order : {"random", "greedy"}
    seed : int
    values : numpy array or None
        For a greedy path, the metric after each step (``H`` values), as the search found it.
    metric : str or None
        The metric the greedy order minimized.
    """

    aligned: Any = None
    names: tuple[str, ...] = ()
    flips: Any = None
    order: str = "random"
    seed: int = 0
    values: Any = None
    metric: str | None = None

    @property
    def length(self) -> int:
        """The number of flips, the Hamming distance of the ends."""
        return len(self.flips)

    def steps(self, t: Sequence[float] | np.ndarray | Tensor) -> np.ndarray:
        """The step ``k = floor(t * H + 1/2)`` of every ``t``."""
        ts = check_times(t)
        return np.floor(ts * self.length + 0.5).astype(np.int64)

    def _fractions(self, ts: np.ndarray) -> np.ndarray:
        h = self.length
        return self.steps(ts) / h if h else ts

    def params(self, t: Sequence[float] | np.ndarray | Tensor) -> Params:
        """The parameters at every ``t``, stacked along a leading axis of ``len(t)``."""
        ts = check_times(t)
        k = torch.as_tensor(self.steps(ts))
        like = self.origin[self.names[0]]
        start = torch.cat([self.origin[n].reshape(-1) for n in self.names])
        rank = torch.full((len(start),), self.length, dtype=torch.long)
        rank[self.flips] = torch.arange(self.length)
        flipped = rank.unsqueeze(0) < k.unsqueeze(1)
        points = torch.where(flipped.to(like.device), -start, start)
        out, offset = {}, 0
        for name in self.names:
            size = self.origin[name].numel()
            out[name] = points[:, offset : offset + size].reshape(len(ts), *self.origin[name].shape)
            offset += size
        s = torch.as_tensor(self._fractions(ts), dtype=like.dtype, device=like.device)
        end = self._end_params()
        for name, value in self.origin.items():
            if name not in out:
                weight = s.reshape(-1, *([1] * value.ndim))
                out[name] = torch.lerp(value.unsqueeze(0), end[name].unsqueeze(0), weight)
        return {name: out[name] for name in self.origin}

    def _end_params(self) -> Params:
        """The end's parameters (the aligned ``b``'s), in the origin's dtype and device: where
        the real-valued ones arrive exactly (``torch.lerp`` at weight 1 returns its end, where
        ``origin + 1 * direction`` can miss it by a rounding step)."""
        end = parameters_of(self.aligned)
        return {name: end[name].to(value) for name, value in self.origin.items()}

    def buffers(self, t: Sequence[float] | np.ndarray | Tensor) -> Params:
        """The BatchNorm statistics at every ``t``: the ends' interpolated at ``k / H``."""
        return Path.buffers(self, self._fractions(check_times(t)))

    def _end_buffers(self) -> tuple[Params, Params]:
        return buffers_of(self.start), buffers_of(self.aligned)

    def to_dict(self) -> dict[str, Any]:
        """Plain data: the kind, the order and its seed, the Hamming distance."""
        total = sum(self.origin[n].numel() for n in self.names)
        return {
            **super().to_dict(),
            "order": self.order,
            "seed": self.seed,
            "hamming_distance": self.length,
            "binary_weights": total,
            "metric": self.metric,
        }

    def __repr__(self) -> str:
        total = sum(self.origin[n].numel() for n in self.names)
        return (
            f"HammingPath({self.order}, {type(self.start).__name__}, {self.length} flips of "
            f"{total} binary weights)"
        )


def _check_order(order: object, data: object) -> None:
    if order not in ORDERS:
        raise BinaryError(f"order must be one of {ORDERS}, got {order!r}")
    if order == "greedy" and data is None:
        raise BinaryError("order='greedy' needs data (the training set whose error it keeps low)")


def _check_candidates(candidates: object) -> None:
    if candidates is not None and (
        isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 1
    ):
        raise BinaryError(f"candidates must be a positive integer or None, got {candidates!r}")


def _settings(
    settings: Settings | None, metric: str, model: nn.Module, x: Tensor
) -> tuple[Settings, str]:
    base = Settings() if settings is None else settings
    if not isinstance(base, Settings):
        raise BinaryError(f"settings must be a funcspace.evaluation.Settings, got {base!r}")
    chosen = default_metric(model, x) if metric == "auto" else metric
    measured = replace(base, metrics=(chosen,))
    return measured, measured.metric_names[0]


def hamming_path(
    a: nn.Module,
    b: nn.Module,
    order: str = "random",
    *,
    seed: int = 0,
    data: Any = None,
    example_input: Tensor | None = None,
    align: bool = True,
    method: str = "cosine",
    metric: str = "auto",
    candidates: int | None = None,
    settings: Settings | None = None,
) -> HammingPath:
    """The path from ``a`` to (the aligned) ``b`` that flips their differing weights one at a
    time (see the module docstring for ``t``).

    Parameters
    ----------
    a, b : nn.Module
        Plain binary networks of one architecture (left untouched).
    order : {"random", "greedy"}
        ``"random"``: a uniformly random order (the binary geodesic; average the barriers of
        several with :func:`hamming_barriers`). ``"greedy"``: at each step the flip that keeps
        ``metric`` on ``data`` lowest (ties broken at random), every candidate flip of a step
        evaluated in one batched pass: about ``H^2 / 2`` network evaluations in all.
    seed : int
        Seed of the random order, or of the greedy tie-breaking and candidate draws.
    data : Dataset or (inputs, targets), optional
        Needed for ``"greedy"``; its inputs also serve as example inputs.
    example_input : Tensor, optional
        Inputs to trace the models for alignment (default: from ``data``, or 16 seeded normal
        inputs for a Linear first layer).
    align : bool
        Align ``b`` to ``a`` first (:func:`binary.align`).
    method : {"cosine", "weights"}
        The alignment method.
    metric : str
        What greedy minimizes: ``"auto"`` (``"sign_error"`` for one output, else ``"error"``)
        or a metric name or :class:`funcspace.metrics.Metric`.
    candidates : int, optional
        Greedy only: evaluate at most this many randomly drawn remaining flips per step
        (``None``: all of them), which makes each step cost ``candidates`` evaluations.
    settings : Settings, optional
        Greedy only: how the candidates are evaluated (batch size, ...; the metric above).

    Returns
    -------
    HammingPath

    Raises
    ------
    BinaryError
        For real-valued weights, two architectures, an unknown order, or greedy without data.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> a, b = nn.Linear(5, 1, bias=False), nn.Linear(5, 1, bias=False)
    >>> _ = a.weight.data.copy_(torch.tensor([[1.0, 1.0, 1.0, -1.0, 1.0]]))
    >>> _ = b.weight.data.copy_(torch.tensor([[1.0, -1.0, 1.0, 1.0, -1.0]]))
    >>> path = hamming_path(a, b, seed=0)
    >>> path.length, path.params([0.0, 1 / 3, 1.0])["weight"].abs().sum(-1).flatten().tolist()
    (3, [5.0, 5.0, 5.0])
    """
    _check_order(order, data)
    _check_candidates(candidates)
    x = example_input if not align and order == "random" else _example(a, example_input, data)
    moved, names = aligned_pair(a, b, x, align=align, method=method)
    path = _build(a, b, moved, names, order, int(seed))
    if order == "random":
        return path
    settings, chosen = _settings(settings, metric, a, _example(a, example_input, data))
    flips, values = _greedy(path, data, settings, candidates, int(seed))
    return replace(path, flips=flips, values=values, metric=chosen)


def _example(a: nn.Module, example: Tensor | None, data: Any) -> Tensor:
    return infer_example_input(a, example, data)


def _differing(path: HammingPath) -> tuple[Tensor, Tensor]:
    """The binary vector of the start and the flat indices where the end differs."""
    end = parameters_of(path.aligned)
    start = torch.cat([path.origin[n].reshape(-1) for n in path.names])
    stop = torch.cat([end[n].reshape(-1).to(start) for n in path.names])
    return start, torch.nonzero(start != stop).flatten()


def _build(
    a: nn.Module, b: nn.Module, moved: nn.Module, names: tuple[str, ...], order: str, seed: int
) -> HammingPath:
    origin, end = parameters_of(a), parameters_of(moved)
    direction = {n: end[n].to(v) - v for n, v in origin.items()}
    path = HammingPath(
        start=a,
        end=b,
        kind="hamming",
        origin=origin,
        direction=direction,
        aligned=moved,
        names=names,
        flips=torch.zeros(0, dtype=torch.long),
        order=order,
        seed=seed,
    )
    _, differing = _differing(path)
    generator = torch.Generator().manual_seed(seed)
    flips = differing[torch.randperm(len(differing), generator=generator)]
    return replace(path, flips=flips)


def _greedy(
    path: HammingPath, data: Any, settings: Settings, candidates: int | None, seed: int
) -> tuple[Tensor, np.ndarray]:
    current, differing = _differing(path)
    h = len(differing)
    evaluator = Evaluator(path.start, settings)
    metric = settings.metric_names[0]
    generator = torch.Generator().manual_seed(seed)
    remaining = torch.ones(h, dtype=torch.bool)
    chosen: list[int] = []
    values: list[float] = []
    block = max(1, _BLOCK_BYTES // max(1, current.numel() * current.element_size()))
    for step in range(h):
        pool = torch.nonzero(remaining).flatten()
        pool = pool[torch.randperm(len(pool), generator=generator)]
        if candidates is not None:
            pool = pool[:candidates]
        fraction = (step + 1) / h
        found = []
        for i in range(0, len(pool), block):
            flips = differing[pool[i : i + block]]
            points = _flipped(path, current, flips, fraction)
            found.append(np.asarray(evaluator.evaluate(points, data)[metric]))
        scores = np.concatenate(found)
        best = int(np.argmin(scores))  # the first minimum: ties go to the random draw
        pick = int(pool[best])
        remaining[pick] = False
        current[differing[pick]] = -current[differing[pick]]
        chosen.append(int(differing[pick]))
        values.append(float(scores[best]))
    return torch.as_tensor(chosen, dtype=torch.long), np.asarray(values)


def _flipped(path: HammingPath, current: Tensor, flips: Tensor, fraction: float) -> Stacked:
    """The networks ``current`` with one of ``flips`` flipped each, the real parameters and
    statistics at ``fraction`` of the path."""
    n = len(flips)
    points = current.unsqueeze(0).repeat(n, 1)
    rows = torch.arange(n)
    points[rows, flips] = -points[rows, flips]
    params, offset = {}, 0
    for name in path.names:
        size = path.origin[name].numel()
        params[name] = points[:, offset : offset + size].reshape(n, *path.origin[name].shape)
        offset += size
    end = path._end_params()
    for name, value in path.origin.items():
        if name not in params:
            moved = torch.lerp(value, end[name], fraction)
            params[name] = moved.unsqueeze(0).expand(n, *value.shape)
    params = {name: params[name] for name in path.origin}
    buffers = Path.buffers(path, [fraction])
    if not buffers:
        return Stacked(path.start, params, {}, shared_buffers=True)
    stacked = {k: v.expand(n, *v.shape[1:]) for k, v in buffers.items()}
    return Stacked(path.start, params, stacked, shared_buffers=False)
