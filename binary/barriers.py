"""Barriers along several random Hamming paths between two binary networks: their mean and
spread (the toroids paper's binary barrier), each path measured by :func:`paths.barrier`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import Tensor, nn

from funcspace.evaluation import Settings
from paths import Barrier, barrier

from .distance import aligned_pair
from .errors import BinaryError
from .hamming import _build, _example, _settings


@dataclass(frozen=True)
class HammingBarriers:
    """Barriers along several random Hamming paths between two networks.

    Attributes
    ----------
    heights, peaks : numpy arrays (orders,)
        Each path's :class:`paths.Barrier` height (above the chord of the end values) and peak
        (the highest value: the toroids paper's barrier).
    mean, std : float
        Mean and standard deviation (population) of the heights.
    peak_mean, peak_std : float
        The same for the peaks.
    seeds : tuple of int
        The seed of each order.
    distance : int
        The Hamming distance of the (aligned) ends: every path's length.
    metric : str
    barriers : tuple of paths.Barrier
        Each path's barrier, with its evaluated profile.
    """

    heights: np.ndarray
    peaks: np.ndarray
    mean: float
    std: float
    peak_mean: float
    peak_std: float
    seeds: tuple[int, ...]
    distance: int
    metric: str
    barriers: tuple[Barrier, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain data, for JSON (each barrier with its profile)."""
        return {
            "heights": self.heights.tolist(),
            "peaks": self.peaks.tolist(),
            "mean": self.mean,
            "std": self.std,
            "peak_mean": self.peak_mean,
            "peak_std": self.peak_std,
            "seeds": list(self.seeds),
            "distance": self.distance,
            "metric": self.metric,
            "barriers": [b.to_dict() for b in self.barriers],
        }

    def __repr__(self) -> str:
        return (
            f"HammingBarriers({self.metric} barrier {self.mean:.4g} +- {self.std:.4g} over "
            f"{len(self.seeds)} random orders; peak {self.peak_mean:.4g} +- {self.peak_std:.4g}; "
            f"Hamming distance {self.distance})"
        )


def hamming_barriers(
    a: nn.Module,
    b: nn.Module,
    data: Any,
    orders: int = 8,
    *,
    seed: int = 0,
    metric: str = "auto",
    example_input: Tensor | None = None,
    align: bool = True,
    method: str = "cosine",
    resolution: float | None = None,
    coarse: float = 1 / 32,
    batchnorm: str | None = None,
    settings: Settings | None = None,
) -> HammingBarriers:
    """The barrier along ``orders`` random Hamming paths from ``a`` to the aligned ``b``: each
    path's :func:`paths.barrier`, their mean and spread.

    Parameters
    ----------
    a, b : nn.Module
        Plain binary networks of one architecture; ``b`` is aligned to ``a`` once.
    data : Dataset or (inputs, targets)
        What the barrier is measured on (the training data).
    orders : int
        Number of random orders.
    seed : int
        Seed of the orders' seeds.
    metric : str
        ``"auto"`` (``"sign_error"`` for one output, else ``"error"``) or a metric name.
    example_input, align, method
        As in :func:`hamming_path`.
    resolution : float, optional
        The grid of :func:`paths.barrier`, a power of one half; default one grid point per
        flip (the power of one half at or below ``1 / H``), at most 1025 points.
    coarse, batchnorm, settings
        As in :func:`paths.barrier`.

    Returns
    -------
    HammingBarriers

    Raises
    ------
    BinaryError
        As :func:`hamming_path`, or for ``orders < 1``.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from canonicalize import Sign
    >>> g = torch.Generator().manual_seed(0)
    >>> def net():
    ...     m = nn.Sequential(nn.Linear(5, 1, bias=False), Sign())
    ...     _ = m[0].weight.data.copy_(torch.randint(0, 2, (1, 5), generator=g) * 2.0 - 1)
    ...     return m
    >>> a, b = net(), net()
    >>> x = torch.randn(50, 5, generator=g)
    >>> found = hamming_barriers(a, b, (x, a(x).flatten()), orders=3)
    >>> len(found.heights), found.metric, found.barriers[0].ends[0]
    (3, 'sign_error', 0.0)
    """
    if isinstance(orders, bool) or not isinstance(orders, int) or orders < 1:
        raise BinaryError(f"orders must be a positive integer, got {orders!r}")
    x = _example(a, example_input, data)
    moved, names = aligned_pair(a, b, x, align=align, method=method)
    measured, chosen = _settings(settings, metric, a, x)
    seeds = tuple(int(s) for s in np.random.default_rng(seed).integers(0, 2**31 - 1, orders))
    found, length = [], 0
    for s in seeds:
        path = _build(a, b, moved, names, "random", s)
        length = path.length
        grid = _resolution(path.length) if resolution is None else resolution
        found.append(
            barrier(
                path,
                data,
                measured.metrics[0],
                resolution=grid,
                coarse=coarse,
                batchnorm=batchnorm,
                settings=settings,
            )
        )
    heights = np.array([f.height for f in found])
    peaks = np.array([f.peak for f in found])
    return HammingBarriers(
        heights=heights,
        peaks=peaks,
        mean=float(heights.mean()),
        std=float(heights.std()),
        peak_mean=float(peaks.mean()),
        peak_std=float(peaks.std()),
        seeds=seeds,
        distance=length,
        metric=chosen,
        barriers=tuple(found),
    )


def _resolution(length: int) -> float:
    return 1.0 / min(2 ** math.ceil(math.log2(max(length, 1))), 1024)
