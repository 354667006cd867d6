"""Linear interpolation between two models (Vlaar & Frankle 2022), optionally of some layers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from funcspace._validate import check_int, check_module, check_span
from funcspace.data import Dataset, Pair
from funcspace.errors import FuncspaceError
from funcspace.evaluation import Settings
from funcspace.evaluation.settings import settings_or_legacy
from funcspace.params import buffers_of, difference

from ._engine import meta_of, run
from .results import Slice1D


def interpolate(
    a: nn.Module,
    b: nn.Module,
    data: Dataset | Pair,
    points: int = 21,
    *,
    layers: Sequence[str] | None = None,
    span: tuple[float, float] = (0.0, 1.0),
    settings: Settings | None = None,
    **deprecated: Any,
) -> Slice1D:
    """Metrics along the straight path ``(1 - t) a + t b`` (Vlaar & Frankle 2022).

    With ``layers``, only the parameters of those modules (names or name prefixes as in
    ``named_parameters``) move from ``a`` to ``b``; every other parameter stays at ``a``.
    ``span=(0, 1)`` gives the path between the two; a wider span extrapolates.

    Parameters
    ----------
    a, b : nn.Module
        Two networks of one architecture (left untouched); ``a`` is ``t = 0``.
    data : Dataset or (inputs, targets)
        Where the metrics are measured (``split`` of a data set).
    points : int
        Number of values of ``t`` (>= 2), endpoints included.
    layers : sequence of str or None
        The modules or parameters to interpolate; None for all.
    span : (float, float)
        Range of ``t``.
    settings : Settings, optional
        How every point is measured (:class:`funcspace.evaluation.Settings`: metrics, split,
        batch size, BatchNorm handling, ...); default error and loss on the training split.
    **deprecated
        The evaluation keywords of earlier versions (``metrics=``, ``split=``, ...): use
        ``settings``.

    Returns
    -------
    Slice1D
        ``coordinates`` are the ``t``; ``directions[0]`` is ``b - a`` (zero outside ``layers``).

    Raises
    ------
    FuncspaceError
        If the architectures differ, a layer name matches nothing, or the two models carry
        different BatchNorm statistics under ``batchnorm="fixed"`` (the whole path would use
        ``a``'s: pass ``batchnorm="recalibrate"``).

    Examples
    --------
    >>> from funcspace.models import MLP
    >>> a, b = MLP(4, [8], 3, seed=0), MLP(4, [8], 3, seed=1)
    >>> data = (torch.randn(32, 4), torch.randint(0, 3, (32,)))
    >>> path = interpolate(a, b, data, points=5, layers=["layers.1"])
    >>> path.coordinates.tolist(), float(path.directions[0]["layers.3.weight"].abs().sum())
    ([0.0, 0.25, 0.5, 0.75, 1.0], 0.0)
    """
    check_module("a", a, parameters=True)
    check_module("b", b, parameters=True)
    check_int("points", points, 2)
    low, high = check_span("span", span)
    settings = settings_or_legacy(settings, deprecated, "interpolate")
    pa, direction = difference(a, b, layers)
    if settings.batchnorm == "fixed":
        ba, bb = buffers_of(a), buffers_of(b)
        differ = [
            n
            for n in ba
            if ba[n].is_floating_point() and not torch.equal(ba[n], bb[n].to(ba[n].device))
        ]
        if differ:
            raise FuncspaceError(
                f"a and b have different BatchNorm statistics ({differ[0]!r}, ...); with "
                "batchnorm='fixed' the whole path would use a's. Pass "
                "settings=Settings(batchnorm='recalibrate')"
            )
    ts = np.linspace(low, high, points)
    values = run(a, pa, [direction], [ts], data, settings)
    meta = {"kind": "interpolation", "layers": None if layers is None else list(layers)}
    return Slice1D(ts, values, (direction,), meta | meta_of(settings))
