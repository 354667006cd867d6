"""Local energy of a binary network: how much the training error rises when a random fraction
of its weights is flipped (the binary counterpart of :func:`funcspace.local_energy`).

For a fraction ``p``, ``m = floor(p * N + 1/2)`` of the ``N`` binary weights (the +-1 weights of
every Linear and Conv layer but the fixed ones, :func:`binary.binary_weights`), drawn uniformly
without replacement, are flipped; biases, BatchNorm parameters and fixed layers (a committee's
vote and readout) stay. The curve is ``dE(p) = E_flips[E(w')] - E(w)``, averaged over
``samples`` draws. Draws use common random numbers: draw ``s`` is one random order of the
weights, and fraction ``p`` flips its first ``m`` weights, so the flipped sets are nested and the
curve is smooth in ``p``. All perturbed networks go through the batched evaluation
(:class:`funcspace.evaluation.Evaluator`) in blocks of stacked parameters; ``p = 0`` (``m = 0``)
is the network itself and is not evaluated again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from funcspace.energy import LocalEnergy
from funcspace.evaluation import Evaluator, Settings
from funcspace.params import Params, from_params, parameters_of

from .errors import BinaryError
from .symmetry import binary_weights, default_metric, infer_example_input

#: Default fractions of flipped weights.
DEFAULT_FRACTIONS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2)
# Stacked parameters of one block of perturbed networks, in bytes.
_BLOCK_BYTES = 64 * 2**20


def _check_fractions(fractions: object) -> np.ndarray:
    values = np.atleast_1d(np.asarray(fractions, dtype=np.float64))
    if values.ndim != 1 or values.size == 0:
        raise BinaryError("fractions must be a non-empty sequence of numbers in [0, 1]")
    if not np.isfinite(values).all() or values.min() < 0 or values.max() > 1:
        raise BinaryError(f"every fraction must lie in [0, 1], got {values.tolist()}")
    return values


def _blocks(
    params: Params, names: tuple[str, ...], flips: np.ndarray, samples: int, seed: int, size: int
):
    """Yield stacked parameters, ``b * P`` networks per block (sample-major)."""
    start = torch.cat([params[n].reshape(-1) for n in names])
    total = len(start)
    generator = torch.Generator().manual_seed(seed)
    counts = torch.as_tensor(flips, dtype=torch.long)
    for first in range(0, samples, size):
        b = min(size, samples - first)
        # a random permutation read as ranks: weight i is flipped once m > ranks[i]
        ranks = torch.stack([torch.randperm(total, generator=generator) for _ in range(b)])
        flipped = ranks.unsqueeze(1) < counts.view(1, -1, 1)  # (b, P, N)
        points = torch.where(flipped.to(start.device), -start, start).reshape(-1, total)
        out, offset = {}, 0
        for name in names:
            n = params[name].numel()
            out[name] = points[:, offset : offset + n].reshape(-1, *params[name].shape)
            offset += n
        for name, value in params.items():
            if name not in out:
                out[name] = value.unsqueeze(0).expand(len(points), *value.shape)
        yield b, {name: out[name] for name in params}


def local_energy(
    model: nn.Module,
    data: Any,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    samples: int = 100,
    *,
    seed: int = 0,
    metric: str = "auto",
    settings: Settings | None = None,
    example_input: Tensor | None = None,
) -> LocalEnergy:
    """The local energy of a binary network as a curve over the fraction of flipped weights.

    Parameters
    ----------
    model : nn.Module
        A plain binary network (left untouched).
    data : Dataset or (inputs, targets)
        Usually the training data.
    fractions : sequence of float in [0, 1]
        Fractions ``p`` of weights to flip (see the module docstring for the count).
    samples : int
        Random draws per fraction.
    seed : int
        Seed of the draws: the same seed gives the same result.
    metric : str
        ``"auto"`` (``"sign_error"`` for a model with one output, else ``"error"``), a metric
        name or a :class:`funcspace.metrics.Metric`; ignored when ``settings`` is given.
    settings : Settings, optional
        How every network is measured (metrics, split, batch size, ...).
    example_input : Tensor, optional
        Inputs to tell the model's output width for ``"auto"`` (default: from ``data``).

    Returns
    -------
    funcspace.energy.LocalEnergy
        Of kind ``"flip"``: ``sigmas`` are the fractions ``p``, ``flips`` the counts ``m`` and
        ``total`` the number ``N`` of binary weights; ``parameters`` is ``"weights"``.

    Raises
    ------
    BinaryError
        For real-valued weights, fractions outside [0, 1] or a bad ``samples``.

    Examples
    --------
    Flipping every weight of a perceptron flips every prediction:

    >>> import torch
    >>> from torch import nn
    >>> from canonicalize import Sign
    >>> g = torch.Generator().manual_seed(0)
    >>> net = nn.Sequential(nn.Linear(5, 1, bias=False), Sign())
    >>> _ = net[0].weight.data.copy_(torch.randint(0, 2, (1, 5), generator=g) * 2.0 - 1)
    >>> x = torch.randn(40, 5, generator=g)
    >>> curve = local_energy(net, (x, net(x).flatten()), fractions=(0.0, 1.0), samples=4)
    >>> curve.base["sign_error"], curve.mean["sign_error"].tolist()
    (0.0, [0.0, 1.0])
    """
    names = binary_weights(model)
    values = _check_fractions(fractions)
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise BinaryError(f"samples must be a positive integer, got {samples!r}")
    if settings is None:
        chosen = (
            default_metric(model, _example(model, example_input, data))
            if metric == "auto"
            else metric
        )
        settings = Settings(metrics=(chosen,))
    elif not isinstance(settings, Settings):
        raise BinaryError(f"settings must be a funcspace.evaluation.Settings, got {settings!r}")
    params = parameters_of(model)
    total = sum(params[n].numel() for n in names)
    flips = np.floor(values * total + 0.5).astype(np.int64)
    evaluator = Evaluator(model, settings)
    metrics = settings.metric_names
    base_eval = evaluator.evaluate(model, data)
    base = {m: float(base_eval[m][0]) for m in metrics}
    perturbed = {m: np.tile(np.full(len(values), base[m])[:, None], (1, samples)) for m in metrics}
    moving = np.flatnonzero(flips > 0)
    if len(moving):
        size = max(1, _BLOCK_BYTES // max(1, len(moving) * total * 8))
        done = 0
        for b, block in _blocks(params, names, flips[moving], samples, seed, size):
            result = evaluator.evaluate(from_params(model, block), data)
            for m in metrics:
                got = np.asarray(result[m], dtype=np.float64).reshape(b, len(moving))
                perturbed[m][moving, done : done + b] = got.T
            done += b
    return LocalEnergy(
        sigmas=values,
        mean={m: perturbed[m].mean(axis=1) - base[m] for m in metrics},
        std={m: perturbed[m].std(axis=1) for m in metrics},
        base=base,
        perturbed=perturbed,
        samples=samples,
        seed=int(seed),
        kind="flip",
        parameters="weights",
        settings=settings,
        flips=flips,
        total=total,
    )


def _example(model: nn.Module, example: Tensor | None, data: Any) -> Tensor:
    return infer_example_input(model, example, data)
