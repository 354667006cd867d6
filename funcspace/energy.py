"""Local energy: how much training error and loss rise when a minimizer's weights are perturbed.

The flatness measure of the toroids paper (Pittorino et al. 2022),

    dE(w, sigma) = E_z[ E(w + sigma z * w) ] - E(w),   z ~ N(0, 1) elementwise,

a curve over sigma, averaged over ``samples`` noise draws, with its spread. Two kinds here:

- ``"multiplicative"``: the formula above on the parameters (all, or only weight matrices
  and filters, leaving biases and BatchNorm parameters alone);
- ``"geodesic"``: the same on the network's toroidal coordinates (:func:`canonicalize.to_torus`):
  every sphere row (one per hidden unit, plus the output layer) is rotated by the exponential
  map of a random tangent vector whose length (the rotation angle) has root-mean-square sigma,
  so every row stays on its sphere; the free coordinates get the multiplicative noise. The
  energies are measured relative to the network in toroidal coordinates, which has the
  original's error (and its loss too with ``output="preserve"``).

A third kind, ``"flip"``, is the binary counterpart (:func:`binary.local_energy`): there sigma is
the fraction ``p`` of a binary network's +-1 weights flipped at random. All three return one
result type, :class:`LocalEnergy`, so curves of real and binary networks are stored, loaded and
plotted (:func:`funcspace.plots.plot_local_energy`) the same way.

Noise uses common random numbers: draw ``s`` is the same ``z`` at every sigma (scaled), so the
curve is smooth in sigma; draws come from a CPU generator seeded with ``seed``, so the result
does not depend on the device or on how the points are batched. All perturbed points (every
sample at every sigma) go through :func:`funcspace.evaluation.evaluate` in blocks of stacked
parameters.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from canonicalize import TorusPoint, to_torus
from funcspace._store import PathLike, Stored
from funcspace.data import Dataset, Pair, as_pair
from funcspace.errors import FuncspaceError
from funcspace.evaluation import Evaluator, Settings
from funcspace.evaluation.settings import settings_or_legacy
from funcspace.metrics import Metric, PerExample
from funcspace.params import Params, Stacked

__all__ = ["DEFAULT_SIGMAS", "LocalEnergy", "local_energy", "perturb_on_torus"]

#: Default noise levels (the paper's MLP range).
DEFAULT_SIGMAS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5)
# Stacked parameters of one block of perturbed points, in bytes.
_BLOCK_BYTES = 128 * 2**20


@dataclass(frozen=True)
class LocalEnergy(Stored):
    """A local-energy curve.

    :meth:`save` stores all of it (:meth:`to_dict`) as JSON, with no tensor file.

    Attributes
    ----------
    sigmas : numpy array (S,)
        Noise levels: the relative noise sigma (``"multiplicative"``, ``"geodesic"``), or the
        fraction ``p`` of flipped weights (``"flip"``).
    mean : dict of metric -> numpy array (S,)
        Mean increase ``E_z[E(w')] - E(w)`` over the noise draws.
    std : dict of metric -> numpy array (S,)
        Standard deviation of ``E(w')`` over the draws (population, ``ddof=0``).
    base : dict of metric -> float
        ``E(w)`` of the unperturbed network (in toroidal coordinates for ``"geodesic"``).
    perturbed : dict of metric -> numpy array (S, samples)
        Every perturbed value.
    samples, seed : int
    kind : {"multiplicative", "geodesic", "flip"}
    parameters : {"all", "weights"}
    settings : Settings, optional
        How the points were measured.
    flips : numpy array (S,) of int, optional
        ``"flip"`` only: the number ``m`` of weights flipped at each fraction.
    total : int, optional
        ``"flip"`` only: the number ``N`` of binary weights that may flip.
    """

    sigmas: np.ndarray
    mean: dict[str, np.ndarray]
    std: dict[str, np.ndarray]
    base: dict[str, float]
    perturbed: dict[str, np.ndarray]
    samples: int
    seed: int
    kind: str
    parameters: str
    settings: Settings | None = None
    flips: np.ndarray | None = None
    total: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists and scalars), for JSON: all of it; :meth:`from_dict` reads it back."""
        return {
            "sigmas": self.sigmas.tolist(),
            "mean": {k: v.tolist() for k, v in self.mean.items()},
            "std": {k: v.tolist() for k, v in self.std.items()},
            "base": {k: float(v) for k, v in self.base.items()},
            "perturbed": {k: v.tolist() for k, v in self.perturbed.items()},
            "samples": int(self.samples),
            "seed": int(self.seed),
            "kind": self.kind,
            "parameters": self.parameters,
            "settings": None if self.settings is None else self.settings.to_dict(),
            "flips": None if self.flips is None else self.flips.tolist(),
            "total": None if self.total is None else int(self.total),
        }

    @classmethod
    def from_dict(
        cls,
        data: dict[str, Any],
        *,
        metrics: Sequence[Metric | PerExample] = (),
        recalibration_data: Dataset | Pair | None = None,
    ) -> LocalEnergy:
        """A curve from :meth:`to_dict`'s output (arrays come back as float64).

        Parameters
        ----------
        data : dict
            :meth:`to_dict`'s output.
        metrics : sequence of Metric
            The user metrics the stored settings name (built-in names need nothing).
        recalibration_data : Dataset or (inputs, targets), optional
            The BatchNorm recalibration data the settings were stored with; when not given,
            the settings come back without them.

        Returns
        -------
        LocalEnergy

        Raises
        ------
        FuncspaceError
            For stored settings naming a metric that is neither built in nor given.
        """
        settings = data["settings"]
        if settings is not None:
            if settings.get("recalibration_data") is None or recalibration_data is None:
                settings, recalibration_data = {**settings, "recalibration_data": None}, None
            settings = Settings.from_dict(
                settings, metrics=metrics, recalibration_data=recalibration_data
            )

        def arrays(group: dict[str, Any]) -> dict[str, np.ndarray]:
            return {k: np.asarray(v, dtype=np.float64) for k, v in group.items()}

        samples = data["samples"]
        return cls(
            sigmas=np.asarray(data["sigmas"], dtype=np.float64),
            mean=arrays(data["mean"]),
            std=arrays(data["std"]),
            base={k: float(v) for k, v in data["base"].items()},
            perturbed={k: v.reshape(-1, samples) for k, v in arrays(data["perturbed"]).items()},
            samples=samples,
            seed=data["seed"],
            kind=data["kind"],
            parameters=data["parameters"],
            settings=settings,
            flips=None if data.get("flips") is None else np.asarray(data["flips"], dtype=np.int64),
            total=None if data.get("total") is None else int(data["total"]),
        )

    @classmethod
    def load(
        cls,
        path: PathLike,
        *,
        metrics: Sequence[Metric | PerExample] = (),
        recalibration_data: Dataset | Pair | None = None,
    ) -> LocalEnergy:
        """The curve :meth:`save` wrote at ``path`` (``metrics``, ``recalibration_data``: as
        :meth:`from_dict`).

        Raises
        ------
        DataError
            For a missing, truncated or corrupted file (named).
        FuncspaceError
            For a file of another result type, or settings naming an unknown metric.
        """
        return cls._load(path, metrics=metrics, recalibration_data=recalibration_data)

    def __repr__(self) -> str:
        curves = ", ".join(
            f"{k}={np.array2string(v, precision=4, threshold=8)}" for k, v in self.mean.items()
        )
        size = "" if self.total is None else f", N={self.total}"
        return (
            f"LocalEnergy({self.kind}, sigmas={np.array2string(self.sigmas, precision=3)}, "
            f"{curves}, samples={self.samples}{size})"
        )



# ---------------------------------------------------------------------------- the torus


def _torus_noise(point: TorusPoint, selected: Sequence[str], generator: torch.Generator):
    spheres = {
        n: torch.randn(s.shape, generator=generator, dtype=s.dtype)
        for n, s in point.spheres.items()
    }
    free = {
        n: torch.randn(point.free[n].shape, generator=generator, dtype=point.free[n].dtype)
        for n in selected
    }
    return spheres, free


def _perturbed_torus(point: TorusPoint, noise, sigma: float) -> TorusPoint:
    import geoopt  # imported on first use: it loads scipy.optimize (~0.6 s)

    sphere = geoopt.Sphere()
    sphere_noise, free_noise = noise
    spheres = {}
    for name, rows in point.spheres.items():
        d = rows.shape[-1]
        if d < 2:  # a 0-sphere (two points) has no tangent direction
            spheres[name] = rows
            continue
        g = sphere_noise[name].to(rows.device)
        tangent = sphere.proju(rows, g) * (sigma / math.sqrt(d - 1))
        spheres[name] = sphere.projx(sphere.expmap(rows, tangent))
    free = dict(point.free)
    for name, z in free_noise.items():
        w = point.free[name]
        free[name] = w + sigma * z.to(w.device) * w
    return dataclasses.replace(point, spheres=spheres, free=free)


def perturb_on_torus(
    point: TorusPoint, sigma: float, *, seed: int = 0, parameters: str = "all"
) -> TorusPoint:
    """One random perturbation of a network in toroidal coordinates.

    Each sphere row ``u`` (a unit vector of dimension ``d``) moves to ``expmap_u(v)`` with ``v
    = sigma * P_u(g) / sqrt(d - 1)``, ``g ~ N(0, I)`` and ``P_u`` the projection on the tangent
    space, so it stays on its sphere and turns by an angle of root-mean-square ``sigma``. Free
    coordinates get multiplicative noise ``w + sigma z * w`` (only those of two or more
    dimensions with ``parameters="weights"``).

    Parameters
    ----------
    point : canonicalize.TorusPoint
    sigma : float
        Noise level (>= 0).
    seed : int
        Seed of the CPU generator drawing the noise.
    parameters : {"all", "weights"}

    Returns
    -------
    TorusPoint
        A new point; ``point`` is left as it is.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from canonicalize import to_torus
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> moved = perturb_on_torus(to_torus(net, torch.randn(8, 3)), 0.1, seed=1)
    >>> bool(torch.allclose(moved.spheres["0"].norm(dim=1), torch.ones(4, dtype=torch.float64)))
    True
    """
    if not isinstance(point, TorusPoint):
        raise FuncspaceError(f"point must be a canonicalize.TorusPoint; got {type(point).__name__}")
    _check_sigma(sigma)
    selected = _selected(point.free, parameters)
    generator = torch.Generator().manual_seed(seed)
    return _perturbed_torus(point, _torus_noise(point, selected, generator), float(sigma))


# ------------------------------------------------------------------------------ helpers


def _check_sigma(sigma: object) -> None:
    if (
        isinstance(sigma, bool)
        or not isinstance(sigma, (int, float))
        or not (math.isfinite(sigma) and sigma >= 0)
    ):
        raise FuncspaceError(f"every sigma must be a finite number >= 0; got {sigma!r}")


def _selected(params: Params, parameters: str) -> list[str]:
    if parameters not in ("all", "weights"):
        raise FuncspaceError(f"parameters must be 'all' or 'weights'; got {parameters!r}")
    return [n for n, p in params.items() if parameters == "all" or p.ndim >= 2]


def _multiplicative_blocks(params, selected, sigmas, samples, generator, block):
    """Yield stacked parameter blocks (b * S points, sample-major) with common random numbers."""
    scale = torch.tensor(sigmas, dtype=next(iter(params.values())).dtype)
    for start in range(0, samples, block):
        b = min(block, samples - start)
        noise = {
            n: torch.randn((b, *params[n].shape), generator=generator, dtype=params[n].dtype)
            for n in selected
        }
        out = {}
        for name, p in params.items():
            if name not in noise:
                out[name] = p.expand(b * len(sigmas), *p.shape)
                continue
            z = noise[name].to(p.device)
            s = scale.to(p.device).view(1, -1, *([1] * p.ndim))
            out[name] = (p + s * z.unsqueeze(1) * p).reshape(b * len(sigmas), *p.shape)
        yield out


def _geodesic_blocks(point, template, selected, sigmas, samples, generator, block):
    names = [n for n, _ in template.named_parameters()]
    dtypes = {n: p.dtype for n, p in template.named_parameters()}
    device = next(template.parameters()).device
    for start in range(0, samples, block):
        b = min(block, samples - start)
        states = []
        for _ in range(b):
            noise = _torus_noise(point, selected, generator)
            for sigma in sigmas:
                states.append(_perturbed_torus(point, noise, sigma).state())
        yield {
            n: torch.stack([s[n] for s in states]).to(device=device, dtype=dtypes[n]) for n in names
        }


def local_energy(
    model: nn.Module,
    data: Dataset | Pair,
    sigmas: Sequence[float] = DEFAULT_SIGMAS,
    samples: int = 100,
    *,
    seed: int = 0,
    kind: str = "multiplicative",
    example_input: Tensor | None = None,
    parameters: str = "all",
    output: str = "normalize",
    settings: Settings | None = None,
    **deprecated: Any,
) -> LocalEnergy:
    """Local energy curve ``dE(sigma)`` of a network (flatness; larger is sharper).

    Parameters
    ----------
    model : nn.Module
        The network (left untouched).
    data : Dataset or (inputs, targets)
        Usually the training data (``split="train"`` of a Dataset).
    sigmas : sequence of float
        Noise levels >= 0; sigma 0 gives exactly 0 (nothing is evaluated for it).
    samples : int
        Noise draws per sigma (the paper uses 100).
    seed : int
        Seed of the noise: the same seed gives the same result.
    kind : {"multiplicative", "geodesic"}
        See the module docstring.
    example_input : Tensor, optional
        Inputs for :func:`canonicalize.to_torus` (geodesic kind); default: the first 64 inputs.
    parameters : {"all", "weights"}
        Perturb every parameter, or only tensors of two or more dimensions (weight matrices
        and filters: biases and BatchNorm parameters stay fixed). For ``"geodesic"`` it
        selects the free coordinates; sphere rows always move.
    output : {"normalize", "preserve"}
        Geodesic kind: the output layer is a sphere of radius ``sqrt(n_outputs)`` (the paper),
        or free coordinates with multiplicative noise (keeps the loss of the original).
    settings : Settings, optional
        How every point is measured (:class:`funcspace.evaluation.Settings`: metrics,
        split, batch size, BatchNorm handling, ...); default error and loss on the training
        split. With ``batchnorm="recalibrate"`` and no recalibration data, the statistics are
        recomputed on the training split of ``data``.
    **deprecated
        ``metrics``, ``split``, ``batchnorm``, ``batch_size``, ``chunk``, ``strategy`` as
        separate keywords: deprecated, use ``settings``.

    Returns
    -------
    LocalEnergy

    Raises
    ------
    FuncspaceError
        For bad sigmas, samples or options; see also :func:`~funcspace.evaluation.evaluate`.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    >>> x = torch.randn(64, 4)
    >>> y = net(x).argmax(1)  # a perfect fit: error 0 at the minimizer
    >>> curve = local_energy(net, (x, y), sigmas=(0.0, 0.5), samples=20)
    >>> float(curve.mean["error"][0]), bool(curve.mean["error"][1] > 0)
    (0.0, True)
    """
    if not isinstance(model, nn.Module) or not any(True for _ in model.parameters()):
        raise FuncspaceError("model must be an nn.Module with parameters")
    sigmas = list(np.atleast_1d(np.asarray(sigmas, dtype=float)).tolist())
    if not sigmas:
        raise FuncspaceError("sigmas must hold at least one noise level")
    for sigma in sigmas:
        _check_sigma(sigma)
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise FuncspaceError(f"samples must be a positive integer; got {samples!r}")
    if kind not in ("multiplicative", "geodesic"):
        raise FuncspaceError(f"kind must be 'multiplicative' or 'geodesic'; got {kind!r}")
    settings = settings_or_legacy(settings, deprecated, "local_energy")
    metrics = settings.metric_names

    params = {n: p.detach() for n, p in model.named_parameters()}
    device = next(iter(params.values())).device
    x, y = as_pair(data, settings.split)
    pair = (x.to(device), y.to(device))
    if settings.batchnorm == "recalibrate" and settings.recalibration_data is None:
        source = data if isinstance(data, Dataset) else pair
        settings = dataclasses.replace(settings, recalibration_data=source)
    moving = [s for s in sigmas if s > 0]
    generator = torch.Generator().manual_seed(seed)
    n_params = sum(p.numel() * p.element_size() for p in params.values())
    block = max(1, _BLOCK_BYTES // max(1, n_params * max(1, len(moving))))

    if kind == "multiplicative":
        template, buffers = model, {n: b.detach() for n, b in model.named_buffers()}
        base_params = {n: p.unsqueeze(0) for n, p in params.items()}
        blocks = _multiplicative_blocks(
            params, _selected(params, parameters), moving, samples, generator, block
        )
    else:
        if example_input is None:
            example_input = x[:64]
        point = to_torus(model, example_input.to(device), output=output)
        dtypes = {n: p.dtype for n, p in params.items()}
        state = point.state()
        template = model
        base_params = {n: state[n].to(device=device, dtype=dtypes[n]).unsqueeze(0) for n in params}
        buffers = {
            n: b.to(device=device, dtype=model.get_buffer(n).dtype)
            for n, b in point.buffers.items()
        }
        blocks = _geodesic_blocks(
            point, model, _selected(point.free, parameters), moving, samples, generator, block
        )

    evaluator = Evaluator(template, settings)  # traced once for the base and every block

    def run(stacked_params: Params) -> dict[str, np.ndarray]:
        stacked = Stacked(template, stacked_params, buffers, shared_buffers=True)
        return evaluator.evaluate(stacked, pair).values

    base = {m: float(v[0]) for m, v in run(base_params).items()}
    parts: dict[str, list[np.ndarray]] = {m: [] for m in metrics}
    if moving:
        for stacked_params in blocks:
            for m, v in run(stacked_params).items():
                parts[m].append(v.reshape(-1, len(moving)))
    perturbed, mean, std = {}, {}, {}
    for m in metrics:
        values = np.full((len(sigmas), samples), base[m])
        if moving:
            drawn = np.concatenate(parts[m]).T  # (moving sigmas, samples)
            values[[i for i, s in enumerate(sigmas) if s > 0]] = drawn
        perturbed[m] = values
        mean[m] = values.mean(axis=1) - base[m]
        std[m] = values.std(axis=1)
        still = [i for i, s in enumerate(sigmas) if s == 0]
        mean[m][still] = 0.0
        std[m][still] = 0.0
    return LocalEnergy(
        np.asarray(sigmas), mean, std, base, perturbed, samples, seed, kind, parameters, settings
    )
