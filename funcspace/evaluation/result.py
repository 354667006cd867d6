"""The result of an evaluation: values per point, and how they were computed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from funcspace.errors import FuncspaceError
from funcspace.metrics import Metric, PerExample

from .settings import Settings


@dataclass(frozen=True)
class Evaluation:
    """Metrics of K parameter points, and how they were computed.

    Attributes
    ----------
    values : dict of metric name -> numpy array of shape (K,)
        The mean of each metric over the inputs (``"error"``: fraction misclassified, argmax
        of the logits; ``"loss"``: mean cross-entropy; see :mod:`funcspace.metrics`). Also
        readable as ``evaluation.error`` / ``evaluation["loss"]``.
    strategy : {"loop", "vmap", "stacked"}
        The strategy that ran (``"auto"`` resolved).
    chunk : int
        Points per batched pass (1 for ``"loop"``).
    batch_size : int
        Inputs per data batch.
    batchnorm : {"fixed", "recalibrate"}
    n_inputs : int
        Number of inputs evaluated.
    first_layer_reuse : bool
        Whether the first layer's products were shared across points (:func:`evaluate_affine`).
    settings : Settings, optional
        The settings it was measured with (split, metrics, ...).
    int8_layers : tuple of str
        The Linear layers whose products ran exactly in int8 with int32 accumulation at every
        point and batch (``Settings.int8``); empty where every product ran in float.
    """

    values: dict[str, np.ndarray]
    strategy: str
    chunk: int
    batch_size: int
    batchnorm: str
    n_inputs: int
    first_layer_reuse: bool = False
    settings: Settings | None = None
    int8_layers: tuple[str, ...] = ()

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

    @property
    def split(self) -> str | None:
        """The data split measured (None when the settings are unknown)."""
        return None if self.settings is None else self.settings.split

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists and scalars), for JSON; :meth:`from_dict` reads it back."""
        return {
            "values": {k: v.tolist() for k, v in self.values.items()},
            "strategy": self.strategy,
            "chunk": self.chunk,
            "batch_size": self.batch_size,
            "batchnorm": self.batchnorm,
            "n_inputs": self.n_inputs,
            "first_layer_reuse": self.first_layer_reuse,
            "settings": None if self.settings is None else self.settings.to_dict(),
            "int8_layers": list(self.int8_layers),
        }

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], *, metrics: Sequence[Metric | PerExample] = ()
    ) -> Evaluation:
        """An evaluation from :meth:`to_dict`'s output (``metrics``: the user metrics its
        settings name; recalibration data are not restored)."""
        settings = data.get("settings")
        if settings is not None:
            settings = Settings.from_dict({**settings, "recalibration_data": None}, metrics=metrics)
        return cls(
            values={k: np.asarray(v, dtype=np.float64) for k, v in data["values"].items()},
            strategy=data["strategy"],
            chunk=data["chunk"],
            batch_size=data["batch_size"],
            batchnorm=data["batchnorm"],
            n_inputs=data["n_inputs"],
            first_layer_reuse=data["first_layer_reuse"],
            settings=settings,
            int8_layers=tuple(data.get("int8_layers", ())),
        )

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{k}={np.array2string(v, precision=4, threshold=6)}" for k, v in self.values.items()
        )
        return (
            f"Evaluation({len(self)} points, {shown}, strategy={self.strategy!r}, "
            f"chunk={self.chunk})"
        )
