"""Directions in parameter space, rescaled to the weights as Li et al. (2018) do, so slices of
different networks can be compared."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from funcspace._validate import check_choice, check_generator, check_module
from funcspace.errors import FuncspaceError
from funcspace.params import Params, parameters_of

from ._checks import complete

Normalization = Literal["filter", "layer", "none"]
Ignore = Literal["biasbn", "none"]

_NORMALIZATIONS = ("filter", "layer", "none")
_IGNORES = ("biasbn", "none")
_NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def _norm_parameter_names(model: nn.Module) -> set[str]:
    names = set()
    for prefix, module in model.named_modules():
        if isinstance(module, _NORM_LAYERS):
            names |= {f"{prefix}.{n}" if prefix else n for n, _ in module.named_parameters()}
    return names


def normalize_direction(
    direction: Params,
    weights: nn.Module | Params,
    *,
    normalization: Normalization = "filter",
    ignore: Ignore = "biasbn",
) -> Params:
    """Rescale a direction to the weights' scale (Li et al. 2018); a new dict is returned.

    - ``normalization="filter"``: every row of a weight tensor with two or more axes (a neuron's
      incoming weights of ``nn.Linear``, one output filter of a convolution: index 0 of the
      tensor) is rescaled to the norm of the same row of the weights;
    - ``"layer"``: every tensor is rescaled as a whole to the norm of the weight tensor;
    - ``"none"``: the direction is left as it is (only the ``ignore`` policy applies).

    Biases and normalization-layer parameters (every tensor with at most one axis, and every
    parameter of a BatchNorm, LayerNorm or GroupNorm):

    - ``ignore="biasbn"`` (Li et al.'s default) sets them to zero: the slice never moves them;
    - ``ignore="none"`` keeps them, each 1-D tensor rescaled as one row to the weights' norm
      (under ``"filter"`` and ``"layer"`` alike). Li et al.'s code instead copies the weights
      themselves into the direction; a random rescaled row keeps the direction random.

    A weight row of norm zero gives a zero row: under ``ignore="none"`` a BatchNorm shift
    (beta) or a bias still at its initial zero does not move (as in Li et al.'s code).

    Parameters
    ----------
    direction : dict[str, Tensor]
        One tensor per parameter name; names left out count as zero.
    weights : nn.Module or dict[str, Tensor]
        The model (or its parameters) whose scale the direction takes.
    normalization : {"filter", "layer", "none"}
    ignore : {"biasbn", "none"}

    Returns
    -------
    dict[str, Tensor]
        The rescaled direction over every parameter name.

    Examples
    --------
    >>> import torch
    >>> w = {"weight": torch.tensor([[3.0, 4.0], [0.0, 2.0]]), "bias": torch.ones(2)}
    >>> d = normalize_direction({"weight": torch.ones(2, 2), "bias": torch.ones(2)}, w)
    >>> d["weight"].norm(dim=1).round(decimals=4).tolist(), d["bias"].tolist()
    ([5.0, 2.0], [0.0, 0.0])
    """
    check_choice("normalization", normalization, _NORMALIZATIONS)
    check_choice("ignore", ignore, _IGNORES)
    if isinstance(weights, nn.Module):
        params, norm_names = parameters_of(weights), _norm_parameter_names(weights)
    elif isinstance(weights, dict):
        params, norm_names = {n: w.detach() for n, w in weights.items()}, set()
    else:
        raise FuncspaceError(
            f"weights must be an nn.Module or a dict of tensors, got {type(weights).__name__}"
        )
    full = complete(direction, params, "direction")
    out = {}
    for name, d in full.items():
        w = params[name]
        flat_like = d.ndim <= 1 or name in norm_names
        if flat_like and ignore == "biasbn":
            out[name] = torch.zeros_like(d)
        elif normalization == "none":
            out[name] = d.clone()
        elif normalization == "layer" or flat_like:
            out[name] = d * (w.norm() / d.norm().clamp_min(torch.finfo(d.dtype).tiny))
        else:
            rows_d, rows_w = d.reshape(len(d), -1), w.reshape(len(w), -1)
            scale = rows_w.norm(dim=1) / rows_d.norm(dim=1).clamp_min(torch.finfo(d.dtype).tiny)
            out[name] = (rows_d * scale[:, None]).reshape(d.shape)
    return out


def random_direction(
    model: nn.Module,
    *,
    seed: int | torch.Generator,
    normalization: Normalization = "filter",
    ignore: Ignore = "biasbn",
) -> Params:
    """A Gaussian direction in parameter space, normalized as Li et al. (2018) do.

    Every entry is drawn from N(0, 1) (on the CPU from ``seed``, so the direction does not
    depend on the device), then :func:`normalize_direction` rescales it: with the defaults each
    neuron row or convolution filter gets the norm of the same row of the weights, and biases
    and BatchNorm parameters are zero (left out of the slice); ``ignore="none"`` includes them,
    each rescaled as one row.

    Parameters
    ----------
    model : nn.Module
        The model (left untouched).
    seed : int or torch.Generator
        Where the draw comes from (a generator lets several directions share one stream).
    normalization : {"filter", "layer", "none"}
    ignore : {"biasbn", "none"}

    Returns
    -------
    dict[str, Tensor]
        One tensor per parameter name, on the parameters' device and dtype.

    Examples
    --------
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> d = random_direction(net, seed=0)
    >>> bool(torch.allclose(d["0.weight"].norm(dim=1), net[0].weight.norm(dim=1)))
    True
    >>> float(d["0.bias"].abs().sum())
    0.0
    """
    check_module("model", model, parameters=True)
    gen = check_generator(seed)
    params = parameters_of(model)
    draw = {}
    for name, w in params.items():
        dtype = w.dtype if w.is_floating_point() else torch.float32
        draw[name] = torch.randn(w.shape, generator=gen, dtype=dtype).to(w.device)
    return normalize_direction(draw, model, normalization=normalization, ignore=ignore)
