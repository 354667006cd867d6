"""The one batched engine call behind :func:`~funcspace.landscape.line`,
:func:`~funcspace.landscape.plane` and :func:`~funcspace.landscape.interpolate`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from funcspace.data import Dataset, Pair
from funcspace.evaluation import Evaluator, Settings
from funcspace.params import Params


def meta_of(settings: Settings) -> dict[str, Any]:
    """What a slice's ``meta`` records of how it was measured."""
    return {
        "split": settings.split,
        "batchnorm": settings.batchnorm,
        "settings": settings.to_dict(),
    }


def run(
    model: nn.Module,
    origin: Params,
    directions: Sequence[Params],
    columns: Sequence[np.ndarray],
    data: Dataset | Pair,
    settings: Settings,
) -> dict[str, np.ndarray]:
    """Every metric at ``origin + sum_i columns[i][k] * directions[i]``, one engine call."""
    like = next(iter(origin.values()))
    coefficients = torch.as_tensor(np.stack(columns, axis=1), dtype=like.dtype, device=like.device)
    result = Evaluator(model, settings).evaluate_affine(
        origin, list(directions), coefficients, data
    )
    return {
        name: np.asarray(result[name], dtype=np.float64).reshape(len(coefficients))
        for name in settings.metric_names
    }
