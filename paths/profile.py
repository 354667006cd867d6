"""Metrics along a path, measured at many ``t`` in one batched evaluation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from funcspace.data import Dataset, Pair
from funcspace.evaluation import Evaluator, Settings
from funcspace.params import Stacked

from .path import Path, PathError, check_path, check_times, evenly_spaced

BatchNormMode = Literal["recalibrate", "interpolate", "fixed"]
BATCHNORM_MODES = ("recalibrate", "interpolate", "fixed")


@dataclass(frozen=True)
class Profile:
    """Metrics along a path.

    Attributes
    ----------
    t : numpy array (n,)
        Where the path was measured.
    values : dict of metric name -> numpy array (n,)
    kind : the path's kind.
    batchnorm : how BatchNorm statistics were set at each ``t`` (``"none"`` for a model
        without BatchNorm; see :func:`profile`).
    settings : the evaluation settings.
    """

    t: np.ndarray
    values: dict[str, np.ndarray]
    kind: str
    batchnorm: str
    settings: Settings

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists and strings), for JSON."""
        return {
            "t": self.t.tolist(),
            "values": {k: v.tolist() for k, v in self.values.items()},
            "kind": self.kind,
            "batchnorm": self.batchnorm,
            "settings": self.settings.to_dict(),
        }

    def __repr__(self) -> str:
        shown = ", ".join(f"{k} in [{v.min():.4g}, {v.max():.4g}]" for k, v in self.values.items())
        return f"Profile({self.kind}, {len(self.t)} points, {shown}, batchnorm={self.batchnorm!r})"


def _has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def profile(
    path: Path,
    data: Dataset | Pair,
    n: int = 25,
    *,
    t: Sequence[float] | np.ndarray | Tensor | None = None,
    batchnorm: BatchNormMode | None = None,
    settings: Settings | None = None,
) -> Profile:
    """Metrics at ``n`` evenly spaced ``t`` (or at the given ``t``), in one batched evaluation.

    Parameters
    ----------
    path : Path
    data : Dataset or (inputs, targets)
    n : int
        Number of evenly spaced points (ends included), ignored when ``t`` is given.
    t : sequence of float in [0, 1], optional
    batchnorm : {"recalibrate", "interpolate", "fixed"}, optional
        How BatchNorm statistics are set at each point of a network that has BatchNorm.
        ``"recalibrate"`` (the default): the points strictly between the ends get statistics
        re-estimated on the training data (``settings.recalibration_data`` if given), the
        honest values (peers that interpolate or share statistics report inflated barriers);
        the ends keep their own, so a profile's end values are the end models' own.
        ``"interpolate"``: the ends' statistics interpolated linearly. ``"fixed"``: the start's
        statistics everywhere (refused when the ends' differ: the end value would be wrong).
    settings : Settings, optional
        Metrics, split, batch size, ... (default: error and loss on the training split); its
        ``batchnorm`` field is set by ``batchnorm`` above.

    Returns
    -------
    Profile

    Raises
    ------
    PathError
        For ``t`` outside [0, 1], ``n < 2``, an unknown BatchNorm mode, or ``"fixed"`` with ends
        whose statistics differ.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from paths import linear
    >>> a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    >>> data = (torch.randn(20, 3), torch.randint(0, 2, (20,)))
    >>> p = profile(linear(a, b), data, n=5)
    >>> p.t.tolist(), p.values["loss"].shape
    ([0.0, 0.25, 0.5, 0.75, 1.0], (5,))
    """
    check_path(path)
    ts = evenly_spaced(path, n) if t is None else check_times(t)
    settings = Settings() if settings is None else settings
    if not isinstance(settings, Settings):
        raise PathError(f"settings must be a funcspace.evaluation.Settings, got {settings!r}")
    if batchnorm is not None and batchnorm not in BATCHNORM_MODES:
        raise PathError(f"batchnorm must be one of {BATCHNORM_MODES}, got {batchnorm!r}")
    has_bn = _has_batchnorm(path.start)
    mode = "none" if not has_bn else (batchnorm or "recalibrate")
    if mode == "fixed" and _statistics_differ(path):
        raise PathError(
            "the ends have different BatchNorm statistics: with batchnorm='fixed' the whole "
            "path would use the start's, and the end value would not be the end model's; use "
            "batchnorm='recalibrate' (honest) or 'interpolate'"
        )
    values = _measure(path, ts, data, settings, mode)
    used = replace(settings, batchnorm="recalibrate" if mode == "recalibrate" else "fixed")
    return Profile(ts, values, path.kind, mode, used)


def _statistics_differ(path: Path) -> bool:
    a, b = path._end_buffers()
    return any(
        v.is_floating_point() and not torch.equal(v, b[n].to(v.device)) for n, v in a.items()
    )


def _measure(path: Path, ts: np.ndarray, data, settings: Settings, mode: str):
    names = settings.metric_names
    out = {name: np.zeros(len(ts)) for name in names}
    if mode in ("none", "fixed") and path.straight:
        coefficients = torch.as_tensor(ts[:, None], dtype=next(iter(path.origin.values())).dtype)
        result = Evaluator(path.start, replace(settings, batchnorm="fixed")).evaluate_affine(
            path.origin, [path.direction], coefficients, data
        )
        return {name: np.asarray(result[name], dtype=np.float64) for name in names}
    if mode != "recalibrate":  # statistics interpolated (equal ends: fixed; none: no BatchNorm)
        return _stacked(path, ts, data, settings, range(len(ts)), out)
    inner = [i for i, v in enumerate(ts) if 0.0 < v < 1.0]
    ends = [i for i, v in enumerate(ts) if v in (0.0, 1.0)]
    if ends:  # the ends keep their own statistics: interpolation at 0 and 1 gives exactly those
        _stacked(path, ts, data, settings, ends, out)
    if inner:
        recalibrate = replace(settings, batchnorm="recalibrate")
        if path.straight:
            coefficients = torch.as_tensor(
                ts[inner][:, None], dtype=next(iter(path.origin.values())).dtype
            )
            result = Evaluator(path.start, recalibrate).evaluate_affine(
                path.origin, [path.direction], coefficients, data
            )
        else:
            points = Stacked(path.start, path.params(ts[inner]), path.buffers(ts[inner]), False)
            result = Evaluator(path.start, recalibrate).evaluate(points, data)
        for name in names:
            out[name][inner] = np.asarray(result[name], dtype=np.float64)
    return out


def _stacked(path: Path, ts: np.ndarray, data, settings: Settings, rows, out):
    """Points ``ts[rows]`` with their BatchNorm statistics interpolated between the ends."""
    rows = list(rows)
    params = path.params(ts[rows])
    like = next(iter(params.values()))
    original = dict(path.start.named_buffers())
    buffers = {
        n: v.to(device=like.device, dtype=original[n].dtype)
        for n, v in path.buffers(ts[rows]).items()
    }
    points = Stacked(path.start, params, buffers, shared_buffers=False)
    result = Evaluator(path.start, replace(settings, batchnorm="fixed")).evaluate(points, data)
    for name in settings.metric_names:
        out[name][rows] = np.asarray(result[name], dtype=np.float64)
    return out
