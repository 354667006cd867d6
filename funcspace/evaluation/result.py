"""The result of an evaluation: values per point, and how they were computed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from funcspace.errors import FuncspaceError


@dataclass(frozen=True)
class Evaluation:
    """Error and loss of K parameter points, and how they were computed.

    Attributes
    ----------
    values : dict of metric name -> numpy array of shape (K,)
        ``"error"``: fraction of inputs misclassified (argmax of the logits); ``"loss"``: mean
        cross-entropy. Also readable as ``evaluation.error`` / ``evaluation["loss"]``.
    strategy : {"loop", "vmap", "stacked"}
        The strategy that ran (``"auto"`` resolved).
    chunk : int
        Points per batched pass (1 for ``"loop"``).
    batch_size : int
        Inputs per data batch.
    batchnorm : {"fixed", "recalibrate"}
    first_layer_reuse : bool
        Whether the first layer's products were shared across points (:func:`evaluate_affine`).
    n_inputs : int
        Number of inputs evaluated.
    """

    values: dict[str, np.ndarray]
    strategy: str
    chunk: int
    batch_size: int
    batchnorm: str
    n_inputs: int
    first_layer_reuse: bool = False

    def __len__(self) -> int:
        return len(next(iter(self.values.values())))

    def __getitem__(self, metric: str) -> np.ndarray:
        if metric not in self.values:
            raise FuncspaceError(
                f"metric {metric!r} was not computed; this evaluation has {sorted(self.values)}"
            )
        return self.values[metric]

    @property
    def error(self) -> np.ndarray:
        """Fraction misclassified per point, shape (K,)."""
        return self["error"]

    @property
    def loss(self) -> np.ndarray:
        """Mean cross-entropy per point, shape (K,)."""
        return self["loss"]

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists and scalars), for JSON."""
        return {
            **{k: v.tolist() for k, v in self.values.items()},
            "strategy": self.strategy,
            "chunk": self.chunk,
            "batch_size": self.batch_size,
            "batchnorm": self.batchnorm,
            "n_inputs": self.n_inputs,
            "first_layer_reuse": self.first_layer_reuse,
        }

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{k}={np.array2string(v, precision=4, threshold=6)}" for k, v in self.values.items()
        )
        return (
            f"Evaluation({len(self)} points, {shown}, strategy={self.strategy!r}, "
            f"chunk={self.chunk})"
        )
