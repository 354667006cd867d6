"""Metrics along a path, measured at many ``t`` in one batched evaluation, and REPAIR (the
BatchNorm statistics that interpolate the ends' channel statistics, Jordan et al. 2022)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from funcspace.data import Dataset, Pair, as_pair
from funcspace.evaluation import Evaluator, Settings
from funcspace.evaluation.settings import DEFAULT_BATCH
from funcspace.params import Stacked

from .path import Path, PathError, check_path, check_times, evenly_spaced

logger = logging.getLogger(__name__)

BatchNormMode = Literal["recalibrate", "interpolate", "fixed", "repair"]
BATCHNORM_MODES = ("recalibrate", "interpolate", "fixed", "repair")


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
    batchnorm : {"recalibrate", "interpolate", "fixed", "repair"}, optional
        How BatchNorm statistics are set at each point of a network that has BatchNorm (one
        without has nothing to set: its profile records ``"none"``). In every mode the ends
        keep their own statistics, so a profile's end values are the end models' own.
        ``"recalibrate"`` (the default): the points strictly between the ends get statistics
        re-estimated on the training data (``settings.recalibration_data`` if given), the
        honest values (peers that interpolate or share statistics report inflated barriers).
        ``"interpolate"``: the ends' statistics interpolated linearly. ``"fixed"``: the start's
        statistics everywhere (refused when the ends' differ: the end value would be wrong).
        ``"repair"``: REPAIR (Jordan et al. 2022), each channel's output mean and standard
        deviation on the same calibration data set to the interpolation of the ends' (see
        :func:`repair`); one point at a time, so slower than the batched modes.
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
    if mode == "repair":
        values = _repaired(path, ts, data, settings)
    else:
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


def _stacked(path: Path, ts: np.ndarray, data, settings: Settings, rows, out, buffers=None):
    """Points ``ts[rows]`` with the given BatchNorm statistics (stacked, one row per point;
    default: the ends' interpolated)."""
    rows = list(rows)
    params = path.params(ts[rows])
    like = next(iter(params.values()))
    original = dict(path.start.named_buffers())
    buffers = path.buffers(ts[rows]) if buffers is None else buffers
    buffers = {n: v.to(device=like.device, dtype=original[n].dtype) for n, v in buffers.items()}
    points = Stacked(path.start, params, buffers, shared_buffers=False)
    result = Evaluator(path.start, replace(settings, batchnorm="fixed")).evaluate(points, data)
    for name in settings.metric_names:
        out[name][rows] = np.asarray(result[name], dtype=np.float64)
    return out


# REPAIR -------------------------------------------------------------------------------------


def repair(
    path: Path,
    data: Dataset | Pair,
    t: float,
    *,
    settings: Settings | None = None,
) -> nn.Module:
    """A new network at ``t`` whose BatchNorm statistics are set by REPAIR.

    REPAIR (Jordan et al. 2022, "REPAIR: REnormalizing Permuted Activations for Interpolation
    Repair") makes every BatchNorm channel's output mean and standard deviation at ``t`` the
    interpolation ``(1 - t) s_a + t s_b`` of the same statistics of the path's ends
    (``path.at(0)`` and ``path.at(1)``, in the path's coordinates: for a geodesic, the aligned
    ends). All statistics are measured on the calibration data: ``settings.recalibration_data``
    if given, else the training split of ``data`` (a plain pair is used whole), as
    ``batchnorm="recalibrate"`` does, in batches of ``settings.batch_size``. The layers are
    corrected one after the other in the order the forward pass calls them, each measured with
    the layers before it already corrected.

    Each channel is solved exactly: with ``gamma``, ``beta`` the layer's affine parameters at
    ``t`` (1 and 0 without them) and ``mu``, ``sigma`` the mean and standard deviation of its
    input, ``running_var = (gamma sigma / std)^2 - eps`` and ``running_mean = mu - (mean -
    beta) sqrt(running_var + eps) / gamma`` give output ``mean`` and ``std``. Where no
    statistics give them the channel keeps the interpolated ends' statistics of
    :meth:`Path.at`, or only its mean is set: a channel whose ``gamma`` is zero up to
    round-off (its output is ``beta`` whatever the statistics), a constant input or a constant
    target (the standard deviation cannot be set), and a target that would need a gain above
    BatchNorm's own ``1 / sqrt(eps)`` (``running_var`` stays at 0). Such channels are logged
    (``logging``, INFO) per layer.

    REPAIR here is for BatchNorm networks: a network without BatchNorm is returned as
    :meth:`Path.at` builds it (there is nothing to set; its profiles record ``"none"``).

    Parameters
    ----------
    path : Path
    data : Dataset or (inputs, targets)
        The calibration data unless ``settings.recalibration_data`` is given.
    t : float in [0, 1]
        At the ends the network is ``path.at(t)``, with the end's own statistics.
    settings : Settings, optional
        Only ``recalibration_data``, ``split`` and ``batch_size`` are read.

    Returns
    -------
    nn.Module
        A new network (eval mode); the path and its ends are left untouched.

    Raises
    ------
    PathError
        For ``t`` outside [0, 1], a BatchNorm layer without running statistics
        (``track_running_stats=False``) or one called more than once per forward pass.

    Examples
    --------
    >>> import torch
    >>> from funcspace.models import MLP
    >>> from paths import linear
    >>> a = MLP(3, [4], 2, batchnorm=True, seed=0).double().eval()
    >>> b = MLP(3, [4], 2, batchnorm=True, seed=1).double().eval()
    >>> x = torch.randn(50, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    >>> mid = repair(linear(a, b), (x, torch.zeros(50, dtype=torch.long)), 0.5)
    >>> def bn_mean(net):  # the BatchNorm layer's output channel means
    ...     return net.layers[:3](x).mean(0)
    >>> bool(torch.allclose(bn_mean(mid), (bn_mean(a) + bn_mean(b)) / 2))
    True
    """
    check_path(path)
    if isinstance(t, bool) or not isinstance(t, (int, float, np.floating, np.integer)):
        raise PathError(f"t must be a number in [0, 1], got {t!r}")
    (t,) = check_times([float(t)]).tolist()
    settings = _checked(settings)
    model = path.at(t)
    if not _has_batchnorm(model) or t in (0.0, 1.0):
        return model
    batches = _calibration(path, data, settings)
    order, stats_a, stats_b = _end_statistics(path, batches)
    _repair(model, t, order, stats_a, stats_b, batches)
    return model


def _checked(settings: Settings | None) -> Settings:
    settings = Settings() if settings is None else settings
    if not isinstance(settings, Settings):
        raise PathError(f"settings must be a funcspace.evaluation.Settings, got {settings!r}")
    return settings


def _repaired(path: Path, ts: np.ndarray, data, settings: Settings) -> dict[str, np.ndarray]:
    """Every point measured with REPAIR's statistics; the ends with their own."""
    out = {name: np.zeros(len(ts)) for name in settings.metric_names}
    inner = [i for i, v in enumerate(ts) if 0.0 < v < 1.0]
    ends = [i for i, v in enumerate(ts) if v in (0.0, 1.0)]
    if ends:
        _stacked(path, ts, data, settings, ends, out)
    if inner:
        batches = _calibration(path, data, settings)
        order, stats_a, stats_b = _end_statistics(path, batches)
        rows = []
        for i in inner:
            model = path.at(float(ts[i]))
            _repair(model, float(ts[i]), order, stats_a, stats_b, batches)
            rows.append(dict(model.named_buffers()))
        stacked = {n: torch.stack([r[n] for r in rows]) for n in rows[0]}
        _stacked(path, ts, data, settings, inner, out, stacked)
    return out


_Statistics = dict[str, tuple[Tensor, Tensor]]


def _calibration(path: Path, data, settings: Settings) -> list[Tensor]:
    """The calibration inputs in batches, where ``batchnorm="recalibrate"`` finds them."""
    source = data if settings.recalibration_data is None else settings.recalibration_data
    x, _ = as_pair(source, "train" if isinstance(source, Dataset) else settings.split)
    like = next(iter(path.origin.values()))
    x = x.to(device=like.device, dtype=like.dtype if x.is_floating_point() else x.dtype)
    size = settings.batch_size or min(len(x), DEFAULT_BATCH)
    return [x[i : i + size] for i in range(0, len(x), size)]


class _Moments:
    """Per-channel mean and population variance over every axis but the channel axis (1),
    summed over batches in float64 around the first batch's mean (no cancellation)."""

    def __init__(self) -> None:
        self.count = 0
        self.shift: Tensor | None = None

    def add(self, x: Tensor) -> None:
        x = x.detach().transpose(0, 1).reshape(x.shape[1], -1).to(torch.float64)
        if self.shift is None:
            self.shift = x.mean(1)
            self.s1 = torch.zeros_like(self.shift)
            self.s2 = torch.zeros_like(self.shift)
        d = x - self.shift[:, None]
        self.count += d.shape[1]
        self.s1 += d.sum(1)
        self.s2 += (d * d).sum(1)

    def result(self) -> tuple[Tensor, Tensor]:
        m = self.s1 / self.count
        return self.shift + m, (self.s2 / self.count - m * m).clamp_min(0)


class _Stop(Exception):
    """Ends a forward pass once the layer being measured has seen its input."""


def _batchnorms(model: nn.Module) -> dict[str, nn.modules.batchnorm._BatchNorm]:
    found = {
        n: m for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
    }
    for name, m in found.items():
        if m.running_mean is None or m.running_var is None:
            raise PathError(
                f"BatchNorm layer {name!r} keeps no running statistics (track_running_stats="
                "False): it normalizes with each batch's own, which REPAIR cannot set; use "
                "batchnorm='recalibrate' or build the layer with running statistics"
            )
    return found


def _outputs(model: nn.Module, batches: list[Tensor]) -> tuple[list[str], _Statistics]:
    """The BatchNorm layers in the order the forward pass calls them, and the mean and
    standard deviation of each one's output channels."""
    layers = _batchnorms(model)
    moments = {n: _Moments() for n in layers}
    order: list[str] = []
    called: set[str] = set()

    def hook(name: str):
        def record(module, inputs, output) -> None:
            if name in called:
                raise PathError(
                    f"BatchNorm layer {name!r} is called more than once per forward pass; "
                    "REPAIR sets one layer's statistics for one use: give each use its own layer"
                )
            called.add(name)
            if name not in order:
                order.append(name)
            moments[name].add(output)

        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in layers.items()]
    try:
        with torch.no_grad():
            for x in batches:
                called.clear()
                model(x)
    finally:
        for handle in handles:
            handle.remove()
    stats = {}
    for name in order:
        mean, var = moments[name].result()
        stats[name] = (mean, var.sqrt())
    return order, stats


def _end_statistics(
    path: Path, batches: list[Tensor]
) -> tuple[list[str], _Statistics, _Statistics]:
    order, stats_a = _outputs(path.at(0.0), batches)
    _, stats_b = _outputs(path.at(1.0), batches)
    return order, stats_a, stats_b


def _repair(
    model: nn.Module,
    t: float,
    order: list[str],
    stats_a: _Statistics,
    stats_b: _Statistics,
    batches: list[Tensor],
) -> None:
    """Sets ``model``'s BatchNorm statistics (a network of our own), layer by layer."""
    modules = dict(model.named_modules())
    for name in order:
        module = modules[name]
        moments = _Moments()

        def measure(_module, inputs, moments=moments) -> None:
            moments.add(inputs[0])
            raise _Stop

        handle = module.register_forward_pre_hook(measure)
        try:
            with torch.no_grad():
                for x in batches:
                    try:
                        model(x)
                    except _Stop:
                        pass
        finally:
            handle.remove()
        mu, var = moments.result()
        (mean_a, std_a), (mean_b, std_b) = stats_a[name], stats_b[name]
        _solve(name, module, mu, var, (1 - t) * mean_a + t * mean_b, (1 - t) * std_a + t * std_b)


def _solve(
    name: str,
    module: nn.modules.batchnorm._BatchNorm,
    mu: Tensor,
    var: Tensor,
    mean: Tensor,
    std: Tensor,
) -> None:
    """The running statistics that give output ``mean`` and ``std`` from input ``mu``,
    ``var``, per channel (in float64; see :func:`repair` for the channels that cannot)."""
    dtype = module.running_mean.dtype
    old_mean, old_var = module.running_mean.double(), module.running_var.double()
    if module.affine:
        gamma, beta = module.weight.detach().double(), module.bias.detach().double()
    else:
        gamma, beta = torch.ones_like(mu), torch.zeros_like(mu)
    eps = float(module.eps)
    sigma = var.sqrt()
    dead = gamma.abs() <= torch.finfo(dtype).eps * max(1.0, float(gamma.abs().max()))
    gamma = torch.where(dead, torch.ones_like(gamma), gamma)
    scalable = (sigma > 0) & (std > 0)
    needed = (gamma * sigma / torch.where(scalable, std, torch.ones_like(std))) ** 2 - eps
    running_var = torch.where(scalable, needed.clamp_min(0.0), old_var)
    running_mean = mu - (mean - beta) * torch.sqrt(running_var + eps) / gamma
    keep = dead | ~torch.isfinite(running_mean.to(dtype)) | ~torch.isfinite(running_var.to(dtype))
    module.running_mean.copy_(torch.where(keep, old_mean, running_mean).to(dtype))
    module.running_var.copy_(torch.where(keep, old_var, running_var).to(dtype))
    unmatched = keep | ~scalable | (needed < 0)
    if bool(unmatched.any()):
        logger.info(
            "REPAIR: %d of %d channels of BatchNorm layer %r keep a standard deviation or mean "
            "other than the target (gamma zero, constant input or target, or a gain above "
            "1/sqrt(eps))",
            int(unmatched.sum()),
            len(unmatched),
            name,
        )
