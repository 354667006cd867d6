"""The barrier on a path: the highest metric above the straight line between the ends' values,
found adaptively.

Definitions (all three are reported; the first is the headline):

- ``height`` (ours): ``max_t [f(t) - ((1 - t) f(0) + t f(1))]``, how far the path rises above
  the chord between its end values; zero for a path that never rises above it.
- ``peak`` (the toroids paper): ``max_t f(t)``, the highest value itself.
- ``above_mean`` (git re-basin): ``max_t f(t) - (f(0) + f(1)) / 2``.

With equal end values the three differ only by that value; with unequal ends the chord is the
fair reference (a path from a worse to a better minimizer that only descends has no barrier).

The search (:func:`adaptive_max`) works on the grid ``t = k * resolution`` (resolution a power
of one half): a coarse grid first, then, round after round in one batched evaluation each, the
midpoints of the intervals whose bound ``(g_i + g_j) / 2 + L (t_j - t_i) / 2`` can still exceed
the best value found, ``L`` being ``safety`` times the steepest slope seen between evaluated
neighbours. It returns the grid's maximum whenever the profile is no steeper between grid points
than ``safety`` times what the evaluated points show (true for profiles whose features are
wider than the coarse spacing); ``upper_bound`` is the highest bound left on any interval not
refined, the evidence for that claim.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from funcspace.data import Dataset, Pair
from funcspace.evaluation import Settings
from funcspace.metrics import as_metric

from .path import Path, PathError
from .profile import BatchNormMode, profile


@dataclass(frozen=True)
class Barrier:
    """The barrier of a path for one metric, with how it was found.

    Attributes
    ----------
    height : float
        ``max_t [f(t) - chord(t)]``, the headline (see the module docstring).
    t : float
        Where it is.
    peak, above_mean : float
        The toroids paper's and git re-basin's definitions, on the evaluated points.
    ends : (float, float)
        ``f(0)`` and ``f(1)``.
    resolution : float
        The grid spacing in ``t`` the maximum is found on.
    upper_bound : float
        The highest the height can be between evaluated points under the search's slope
        estimate (equal to ``height`` when every candidate interval was refined to the grid).
    evaluations : int
        Points evaluated (a uniform grid would take ``1 / resolution + 1``).
    metric, kind, batchnorm : what was measured, on which path, with which BatchNorm handling.
    profile_t, profile_values : numpy arrays
        Every evaluated point, sorted by ``t``.
    """

    height: float
    t: float
    peak: float
    above_mean: float
    ends: tuple[float, float]
    resolution: float
    upper_bound: float
    evaluations: int
    metric: str
    kind: str
    batchnorm: str
    profile_t: np.ndarray
    profile_values: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """Plain data, for JSON."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["ends"] = list(self.ends)
        out["profile_t"] = self.profile_t.tolist()
        out["profile_values"] = self.profile_values.tolist()
        return out

    def __repr__(self) -> str:
        return (
            f"Barrier({self.metric} {self.height:.4g} at t={self.t:.4g} on a {self.kind} path; "
            f"peak {self.peak:.4g}, above mean {self.above_mean:.4g}; {self.evaluations} "
            f"evaluations at resolution {self.resolution:g})"
        )


def adaptive_max(
    values: Callable[[np.ndarray], np.ndarray],
    resolution: float = 1 / 256,
    *,
    coarse: float = 1 / 32,
    safety: float = 2.0,
) -> tuple[dict[int, float], float]:
    """The maximum of ``values`` over the grid ``k * resolution``, evaluating few of its points.

    Parameters
    ----------
    values : callable
        ``t -> values`` for an array of ``t`` at once (one batched evaluation per round).
    resolution, coarse : float
        Powers of one half: the grid searched, and the first grid evaluated.
    safety : float
        The slope allowed between grid points, as a multiple of the steepest one seen.

    Returns
    -------
    (evaluated, upper_bound)
        Grid index -> value of every evaluated point, and the highest bound left on an
        unrefined interval (at most the best value when the search refined everything).

    Examples
    --------
    >>> found, bound = adaptive_max(lambda t: -(t - 0.3) ** 2, 1 / 64, coarse=1 / 8)
    >>> best = max(found, key=found.get)
    >>> best / 64, len(found) < 65
    (0.296875, True)
    """
    n = _power_of_half("resolution", resolution)
    step = _power_of_half("coarse", coarse)
    if step > n:
        raise PathError(f"coarse ({coarse}) must not be finer than resolution ({resolution})")
    if not safety >= 1:
        raise PathError(f"safety must be >= 1, got {safety!r}")
    found: dict[int, float] = {}

    def run(indices: list[int]) -> None:
        got = np.asarray(values(np.asarray(indices, dtype=np.float64) / n), dtype=np.float64)
        found.update(zip(indices, got.tolist(), strict=True))

    run(list(range(0, n + 1, n // step)))
    while True:
        keys = sorted(found)
        pairs = list(zip(keys, keys[1:], strict=False))
        slopes = [abs(found[j] - found[i]) * n / (j - i) for i, j in pairs]
        best = max(found.values())
        bounds = []
        for p, (i, j) in enumerate(pairs):
            # the steepest slope of this interval and its two neighbours, times safety
            local = safety * max(slopes[max(p - 1, 0) : p + 2])
            bounds.append((found[i] + found[j]) / 2 + local * (j - i) / (2 * n))
        open_ = [p for p, (i, j) in enumerate(pairs) if j - i > 1]
        wanted = [(pairs[p][0] + pairs[p][1]) // 2 for p in open_ if bounds[p] > best]
        if not wanted:
            return found, max([best, *(bounds[p] for p in open_)])
        run(wanted)


def _power_of_half(name: str, value: float) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise PathError(f"{name} must be a power of one half in (0, 1], got {value!r}")
    n = round(1 / value)
    if n & (n - 1) or abs(n * value - 1) > 1e-12:
        raise PathError(f"{name} must be a power of one half (1/2, 1/4, ..., 1/256), got {value!r}")
    return n


def barrier(
    path: Path,
    data: Dataset | Pair,
    metric: str = "error",
    *,
    resolution: float = 1 / 256,
    coarse: float = 1 / 32,
    batchnorm: BatchNormMode | None = None,
    settings: Settings | None = None,
) -> Barrier:
    """The barrier of ``metric`` on ``path``, found adaptively to ``resolution`` in ``t``.

    Each round of the search is one batched evaluation of the path (:func:`paths.profile`, with
    its BatchNorm handling). See the module docstring for the definitions and for what the
    search guarantees.

    Parameters
    ----------
    path : Path
    data : Dataset or (inputs, targets)
    metric : str
        A metric name or :class:`~funcspace.metrics.Metric` (default the error).
    resolution : float
        A power of one half (default 1/256: the grid of 257 points).
    coarse : float
        The first grid evaluated (a power of one half, default 1/32): features of the profile
        narrower than it can be missed; make it finer for spiky profiles.
    batchnorm, settings
        As in :func:`paths.profile` (the settings' metrics are replaced by ``metric``).

    Returns
    -------
    Barrier

    Raises
    ------
    PathError
        For a resolution that is not a power of one half, or what :func:`paths.profile` refuses.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from paths import linear
    >>> g = torch.Generator().manual_seed(0)
    >>> a = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2)).double()
    >>> data = (torch.randn(30, 3, generator=g).double(), torch.randint(0, 2, (30,), generator=g))
    >>> flat = barrier(linear(a, a), data, "loss", resolution=1 / 64)
    >>> flat.height, flat.evaluations   # a flat profile: the coarse grid, nothing refined
    (0.0, 33)
    """
    chosen = as_metric(metric)
    base = Settings() if settings is None else settings
    if not isinstance(base, Settings):
        raise PathError(f"settings must be a funcspace.evaluation.Settings, got {base!r}")
    measured = replace(base, metrics=(chosen,))  # profile sets the BatchNorm handling
    modes: list[str] = []
    raw: dict[float, float] = {}

    def values(ts: np.ndarray) -> np.ndarray:
        prof = profile(path, data, t=ts, batchnorm=batchnorm, settings=measured)
        modes.append(prof.batchnorm)
        got = prof.values[chosen.name]
        raw.update(zip(ts.tolist(), got.tolist(), strict=True))
        return got

    # the ends first: the chord is known before the search, which runs on f - chord
    ends = values(np.array([0.0, 1.0]))
    f0, f1 = float(ends[0]), float(ends[1])

    def height(ts: np.ndarray) -> np.ndarray:
        inner = ts[(ts > 0) & (ts < 1)]
        got = values(inner) if len(inner) else np.zeros(0)
        out = np.zeros(len(ts))
        out[(ts > 0) & (ts < 1)] = got - ((1 - inner) * f0 + inner * f1)
        return out

    found, bound = adaptive_max(height, resolution, coarse=max(resolution, coarse))
    n = round(1 / resolution)
    best = max(found, key=found.get)
    ts = np.array(sorted(raw))
    fs = np.array([raw[t] for t in ts])
    return Barrier(
        height=float(found[best]),
        t=best / n,
        peak=float(fs.max()),
        above_mean=float(fs.max() - (f0 + f1) / 2),
        ends=(f0, f1),
        resolution=1 / n,
        upper_bound=float(bound),
        evaluations=len(raw),
        metric=chosen.name,
        kind=path.kind,
        batchnorm=modes[0],
        profile_t=ts,
        profile_values=fs,
    )
