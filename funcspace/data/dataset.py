"""The data every funcspace function takes: :class:`Dataset` (a train and a test split) or a
plain ``(inputs, targets)`` pair, told apart in one place (:func:`as_pair`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from funcspace.errors import DataError

Pair = tuple[Tensor, Tensor]


@dataclass(frozen=True)
class Dataset:
    """A data set: a training and a test split of ``(inputs, targets)``, on one device.

    Attributes
    ----------
    name
        What it is (``"digits"``, ``"mnist1d"``, ``"teacher_student"``, ...).
    train, test
        ``(inputs, targets)`` pairs; targets are class indices (int64).
    n_classes
        Number of classes.
    meta
        The options it was made with (seed, label noise, subset, ...), plain data.
    """

    name: str
    train: Pair
    test: Pair
    n_classes: int
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input (without the batch axis)."""
        return tuple(self.train[0].shape[1:])

    @property
    def device(self) -> torch.device:
        return self.train[0].device

    def to(self, device: torch.device | str) -> Dataset:
        """The same data on another device (moved once, kept there)."""
        train = (self.train[0].to(device), self.train[1].to(device))
        test = (self.test[0].to(device), self.test[1].to(device))
        return Dataset(self.name, train, test, self.n_classes, dict(self.meta))

    def split(self, name: str) -> Pair:
        """The ``"train"`` or ``"test"`` pair."""
        if name not in ("train", "test"):
            raise DataError(f"split must be 'train' or 'test', got {name!r}")
        return self.train if name == "train" else self.test

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, train={len(self.train[0])}, test={len(self.test[0])}, "
            f"input_shape={self.input_shape}, n_classes={self.n_classes})"
        )


def as_pair(data: Dataset | Pair, split: str = "train") -> Pair:
    """The ``(inputs, targets)`` pair behind ``data``, checked.

    Parameters
    ----------
    data : Dataset or (inputs, targets)
        A data set (its ``split`` is taken) or a pair of tensors with one row per example.
    split : {"train", "test"}
        Which split of a :class:`Dataset` to use.

    Raises
    ------
    DataError
        If ``data`` is neither, the two tensors disagree in length, or inputs are not finite.
    """
    if isinstance(data, Dataset):
        return data.split(split)
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise DataError(
            f"data must be a funcspace.data.Dataset or an (inputs, targets) pair of tensors, "
            f"got {type(data).__name__}"
        )
    inputs, targets = data
    if not isinstance(inputs, Tensor) or not isinstance(targets, Tensor):
        raise DataError("data must be an (inputs, targets) pair of torch tensors")
    if len(inputs) != len(targets):
        raise DataError(
            f"data has {len(inputs)} inputs but {len(targets)} targets; they must match"
        )
    if len(inputs) == 0:
        raise DataError("data is empty")
    if inputs.is_floating_point() and not torch.isfinite(inputs).all():
        raise DataError("data inputs contain NaN or inf")
    return inputs, targets
