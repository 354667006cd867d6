"""Controls every data set takes: subset, label noise, train/test split, flatten, dtype, device.

Each control is a pure function of a :class:`~funcspace.data.Dataset` that returns a new one and
records what it did in ``meta`` as plain data; :func:`funcspace.data.load` applies them in the
order ``flatten``, ``subset``, ``label_noise``, then ``dtype`` and ``device`` (so the data are
moved to the compute device once, at the end).

Randomness comes from :func:`numpy.random.default_rng` seeded with ``(stream, seed)``: each
control draws from its own stream, so changing the subset size never changes which projection a
generated set uses, and the global random state is never touched.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
from torch import Tensor

from funcspace._validate import (
    check_bool,
    check_choice,
    check_fraction,
    check_int,
    check_nonnegative,
    check_seed,
)
from funcspace.data import Dataset, Pair
from funcspace.errors import DataError

__all__ = ["cast", "flatten", "label_noise", "split", "subset"]

# Independent random streams, one per use of the seed.
_SPLIT, _SUBSET, _NOISE, _TEACHER, _SAMPLES, _PROJECTION = 1, 2, 3, 4, 5, 6


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([stream, seed])


# --------------------------------------------------------------------------- validation


# the shared checks of funcspace._validate, raising DataError
_check_int = functools.partial(check_int, error=DataError)
_check_seed = functools.partial(check_seed, error=DataError)
_check_fraction = functools.partial(check_fraction, error=DataError)
_check_positive = functools.partial(check_nonnegative, error=DataError)
_check_bool = functools.partial(check_bool, error=DataError)
_check_choice = functools.partial(check_choice, error=DataError)


def _check_dtype(value: object) -> torch.dtype:
    if not isinstance(value, torch.dtype) or not value.is_floating_point:
        raise DataError(
            f"dtype must be a floating torch dtype such as torch.float32, got {value!r}"
        )
    return value


def _replace(dataset: Dataset, train: Pair, test: Pair, **meta: Any) -> Dataset:
    return Dataset(dataset.name, train, test, dataset.n_classes, {**dataset.meta, **meta})


# --------------------------------------------------------------------------- controls


def split(
    inputs: Tensor, targets: Tensor, test_fraction: float, seed: int = 0
) -> tuple[Pair, Pair]:
    """Split examples at random into a training and a test pair.

    Parameters
    ----------
    inputs, targets : Tensor
        One row per example.
    test_fraction : float in [0, 1)
        Share of the examples put in the test pair (rounded to the nearest count).
    seed : int
        Seed of the shuffle.

    Returns
    -------
    (train, test) : two ``(inputs, targets)`` pairs.

    Raises
    ------
    DataError
        If ``test_fraction`` is outside [0, 1) or leaves no training example.

    Example
    -------
    >>> x, y = torch.arange(10.0)[:, None], torch.arange(10)
    >>> train, test = split(x, y, test_fraction=0.3, seed=0)
    >>> len(train[0]), len(test[0])
    (7, 3)
    """
    test_fraction = _check_fraction("test_fraction", test_fraction)
    seed = _check_seed(seed)
    n = len(inputs)
    n_test = int(round(test_fraction * n))
    if n - n_test < 1:
        raise DataError(f"test_fraction={test_fraction} of {n} examples leaves no training example")
    order = torch.from_numpy(_rng(seed, _SPLIT).permutation(n))
    test, train = order[:n_test], order[n_test:]
    return (inputs[train], targets[train]), (inputs[test], targets[test])


def subset(dataset: Dataset, size: int | float, *, seed: int = 0) -> Dataset:
    """The first ``size`` training examples after a seeded shuffle; the test split is kept.

    Parameters
    ----------
    dataset : Dataset
    size : int or float
        A count (int >= 1, at most the training size) or a fraction of the training set
        (float in (0, 1], rounded to the nearest count, at least one example).
    seed : int
        Seed of the shuffle.

    Returns
    -------
    Dataset
        With ``meta["subset"] = size`` and ``meta["subset_size"]`` the count kept.

    Raises
    ------
    DataError
        If ``size`` is not a valid count or fraction.

    Example
    -------
    >>> from funcspace.data import from_tensors
    >>> data = from_tensors(torch.randn(50, 3), torch.arange(50) % 2)
    >>> len(subset(data, 10).train[0]), len(subset(data, 0.5).train[0])
    (10, 20)
    """
    seed = _check_seed(seed)
    n = len(dataset.train[0])
    if isinstance(size, (float, np.floating)) and not isinstance(size, bool):
        if not 0 < size <= 1:
            raise DataError(f"subset as a fraction must be in (0, 1], got {size!r}")
        count = max(1, int(round(float(size) * n)))
    else:
        count = _check_int("subset", size)
        if count > n:
            raise DataError(f"subset={count} is larger than the {n} training examples")
        size = count
    order = torch.from_numpy(_rng(seed, _SUBSET).permutation(n)[:count])
    inputs, targets = dataset.train
    order = order.to(inputs.device)
    return _replace(
        dataset, (inputs[order], targets[order]), dataset.test, subset=size, subset_size=count
    )


def label_noise(dataset: Dataset, fraction: float, *, seed: int = 0) -> Dataset:
    """Replace exactly ``round(fraction * n_train)`` training labels by a different random class.

    The corrupted examples are drawn without replacement; each new label is uniform over the other
    ``n_classes - 1`` classes, so every chosen label really changes. Test labels are untouched.

    Parameters
    ----------
    dataset : Dataset
    fraction : float in [0, 1)
        Share of training labels to corrupt.
    seed : int
        Seed of the choice of examples and of their new labels.

    Returns
    -------
    Dataset
        With ``meta["label_noise"] = fraction`` and ``meta["noisy_indices"]``, the sorted list of
        corrupted rows of the training split.

    Raises
    ------
    DataError
        If ``fraction`` is outside [0, 1) or the set has fewer than two classes.

    Example
    -------
    >>> from funcspace.data import from_tensors
    >>> data = from_tensors(torch.randn(50, 3), torch.arange(50) % 2)
    >>> noisy = label_noise(data, 0.25, seed=1)
    >>> int((noisy.train[1] != data.train[1]).sum()), len(noisy.meta["noisy_indices"])
    (10, 10)
    """
    fraction = _check_fraction("label_noise", fraction)
    seed = _check_seed(seed)
    inputs, targets = dataset.train
    n = len(targets)
    count = int(round(fraction * n))
    if count and dataset.n_classes < 2:
        raise DataError(f"label_noise needs at least two classes, {dataset.name} has one")
    rng = _rng(seed, _NOISE)
    rows = np.sort(rng.choice(n, size=count, replace=False))
    shift = rng.integers(1, dataset.n_classes, size=count)
    noisy = targets.clone()
    idx = torch.from_numpy(rows).to(targets.device)
    shift_t = torch.from_numpy(shift).to(device=targets.device, dtype=targets.dtype)
    noisy[idx] = (targets[idx] + shift_t) % dataset.n_classes
    return _replace(
        dataset,
        (inputs, noisy),
        dataset.test,
        label_noise=fraction,
        noisy_indices=[int(i) for i in rows],
    )


def flatten(dataset: Dataset) -> Dataset:
    """Inputs reshaped to vectors, ``(N, ...) -> (N, prod(...))``.

    Example
    -------
    >>> from funcspace.data import from_tensors
    >>> data = from_tensors(torch.randn(10, 1, 2, 2), torch.arange(10) % 2)
    >>> flatten(data).input_shape
    (4,)
    """
    (xtr, ytr), (xte, yte) = dataset.train, dataset.test
    return _replace(
        dataset,
        (xtr.reshape(len(xtr), -1), ytr),
        (xte.reshape(len(xte), -1), yte),
        flatten=True,
    )


def cast(
    dataset: Dataset,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Dataset:
    """Floating inputs converted to ``dtype`` and everything moved to ``device``, once.

    Targets stay int64. ``meta`` records ``dtype`` and ``device`` as strings.

    Example
    -------
    >>> from funcspace.data import from_tensors
    >>> data = from_tensors(torch.randn(10, 3), torch.arange(10) % 2)
    >>> cast(data, torch.float64).train[0].dtype
    torch.float64
    """
    dtype = _check_dtype(dtype)
    try:
        device = torch.device(device) if device is not None else dataset.device
    except (RuntimeError, TypeError) as error:
        raise DataError(
            f"device must be a torch device such as 'cpu' or 'cuda', got {device!r}"
        ) from error

    def move(pair: Pair) -> Pair:
        x, y = pair
        x = x.to(device=device, dtype=dtype) if x.is_floating_point() else x.to(device)
        return x, y.to(device=device, dtype=torch.int64)

    return _replace(
        dataset,
        move(dataset.train),
        move(dataset.test),
        dtype=str(dtype).removeprefix("torch."),
        device=str(device),
    )
