"""The evaluation keywords that :func:`~funcspace.landscape.line`,
:func:`~funcspace.landscape.plane` and :func:`~funcspace.landscape.interpolate` share (they
are documented once, in the package docstring), and their one batched engine call."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch
from torch import nn

from funcspace.data import Dataset, Pair
from funcspace.evaluation import evaluate_affine
from funcspace.params import Params

from ._checks import check_metrics


@dataclass(frozen=True)
class EvaluationKeywords:
    """How every point of a slice is measured: the shared keywords, checked once.

    Attributes
    ----------
    metrics, split, batch_size, chunk, batchnorm
        As in :func:`funcspace.evaluation.evaluate_affine`, with the landscape's defaults.
    options : dict
        Any other keyword, passed on to :func:`~funcspace.evaluation.evaluate_affine` as it is
        (so an unknown one fails there, naming itself).
    """

    metrics: tuple[str, ...] = ("error", "loss")
    split: str = "train"
    batch_size: int | None = None
    chunk: int | None = None
    batchnorm: str = "fixed"
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_keywords(cls, keywords: dict[str, Any]) -> EvaluationKeywords:
        """Split a public function's ``**keywords`` into the shared fields and the rest."""
        named = {f.name for f in fields(cls)} - {"options"}
        chosen = {k: v for k, v in keywords.items() if k in named}
        if "metrics" in chosen:
            chosen["metrics"] = check_metrics(chosen["metrics"])
        rest = {k: v for k, v in keywords.items() if k not in named}
        return cls(**chosen, options=rest)

    @property
    def meta(self) -> dict[str, Any]:
        """What a result's ``meta`` records of the evaluation."""
        return {"split": self.split, "batchnorm": self.batchnorm}

    def run(
        self,
        model: nn.Module,
        origin: Params,
        directions: Sequence[Params],
        columns: Sequence[np.ndarray],
        data: Dataset | Pair,
    ) -> dict[str, np.ndarray]:
        """Every metric at ``origin + sum_i columns[i][k] * directions[i]``, one engine call."""
        like = next(iter(origin.values()))
        coefficients = torch.as_tensor(
            np.stack(columns, axis=1), dtype=like.dtype, device=like.device
        )
        result = evaluate_affine(
            model,
            origin,
            list(directions),
            coefficients,
            data,
            metrics=self.metrics,
            split=self.split,
            batch_size=self.batch_size,
            chunk=self.chunk,
            batchnorm=self.batchnorm,
            **self.options,
        )
        return {
            metric: np.asarray(result[metric], dtype=np.float64).reshape(len(coefficients))
            for metric in self.metrics
        }
