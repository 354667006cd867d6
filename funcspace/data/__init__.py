"""Data sets: embedded ones that need no download, files the user already has, user tensors.

Every function of funcspace that takes ``data`` accepts a :class:`Dataset` (its training split
is used unless the function says otherwise) or a plain ``(inputs, targets)`` pair of tensors;
:func:`as_pair` is the one place that tells them apart.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor

from funcspace.data.dataset import Dataset, Pair, as_pair
from funcspace.errors import DataError


def from_tensors(
    inputs: Tensor,
    targets: Tensor,
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    name: str = "tensors",
    device: torch.device | str | None = None,
) -> Dataset:
    """Wrap user tensors as a :class:`Dataset`, split at random into train and test."""
    inputs, targets = as_pair((inputs, targets))
    if not 0 <= test_fraction < 1:
        raise DataError(f"test_fraction must be in [0, 1), got {test_fraction}")
    if targets.is_floating_point():
        raise DataError("targets must be integer class indices")
    order = torch.randperm(len(inputs), generator=torch.Generator().manual_seed(seed))
    n_test = int(round(test_fraction * len(inputs)))
    test, train = order[:n_test].to(inputs.device), order[n_test:].to(inputs.device)
    dataset = Dataset(
        name,
        (inputs[train], targets[train].long()),
        (inputs[test], targets[test].long()),
        int(targets.max()) + 1,
        {"test_fraction": test_fraction, "seed": seed},
    )
    return dataset.to(device) if device is not None else dataset


def available() -> tuple[str, ...]:
    """Names of the data sets :func:`load` knows.

    Example
    -------
    >>> available()
    ('digits', 'mnist1d', 'teacher_student', 'hidden_manifold', 'mnist', 'fashion_mnist', 'cifar10')
    """
    return tuple(_LOADERS)


# Options every data set takes, applied by load after the set is built, with their defaults.
_CONTROLS: dict[str, Any] = {
    "seed": 0,
    "subset": None,
    "label_noise": 0.0,
    "flatten": False,
    "dtype": torch.float32,
    "device": None,
}
# Other spellings of options, as the papers write them.
_ALIASES = {"hidden_manifold": {"D": "latent_dim", "N": "input_dim"}}


def load(name: str, **options: Any) -> Dataset:
    """A data set by name, with its options and the controls every set takes.

    Embedded sets (no download): ``"digits"``, ``"mnist1d"`` (needs the ``data`` extra),
    ``"teacher_student"``, ``"hidden_manifold"`` (see :mod:`funcspace.data.embedded`). Files
    you have: ``"mnist"``, ``"fashion_mnist"``, ``"cifar10"`` with ``root=<directory>`` (see
    :mod:`funcspace.data.files`).

    Parameters
    ----------
    name : str
        One of :func:`available`.
    **options
        The set's own options (``flat``, ``n_samples``, ``input_dim``, ``root``, ...;
        ``test_fraction`` for sets without a natural split) and the controls, applied in this
        order: ``flatten`` (bool, images to vectors), ``subset`` (int count or float fraction of
        the training split, first examples after a seeded shuffle), ``label_noise`` (fraction of
        training labels replaced by a different random class; the indices go to
        ``meta["noisy_indices"]``), ``dtype`` (floating inputs, default ``torch.float32``),
        ``device`` (data moved there once). ``seed`` (default 0) seeds everything, each use
        from its own random stream.

    Returns
    -------
    Dataset
        ``meta`` holds every option, as plain data.

    Raises
    ------
    DataError
        For an unknown name (the message lists the known ones), an unknown option (it names
        it and lists the set's options), a bad value, or a missing or broken file.

    Example
    -------
    >>> data = load("digits", subset=500, label_noise=0.1, seed=1)
    >>> data.train[0].shape, data.train[0].dtype, len(data.meta["noisy_indices"])
    (torch.Size([500, 64]), torch.float32, 50)
    """
    if not isinstance(name, str) or name not in _LOADERS:
        raise DataError(f"unknown data set {name!r}; known data sets are {', '.join(_LOADERS)}")
    builder = _LOADERS[name]
    options = dict(options)
    for alias, target in _ALIASES.get(name, {}).items():
        if alias in options:
            if target in options:
                raise DataError(f"{name}: give {target} or its alias {alias}, not both")
            options[target] = options.pop(alias)
    own = [p for p in inspect.signature(builder).parameters if p != "seed"]
    controls = {key: options.pop(key, default) for key, default in _CONTROLS.items()}
    unknown = sorted(set(options) - set(own))
    if unknown:
        hint = (
            "; it has a natural train/test split, so no test_fraction"
            if "test_fraction" in unknown
            else ""
        )
        raise DataError(
            f"{name} has no option {', '.join(map(repr, unknown))}{hint}; its options are "
            f"{', '.join(own + list(_CONTROLS))}"
        )
    seed = transforms._check_seed(controls["seed"])
    if "seed" in inspect.signature(builder).parameters:
        options["seed"] = seed
    dataset = builder(**options)
    if transforms._check_bool("flatten", controls["flatten"]):
        dataset = transforms.flatten(dataset)
    if controls["subset"] is not None:
        dataset = transforms.subset(dataset, controls["subset"], seed=seed)
    dataset = transforms.label_noise(dataset, controls["label_noise"], seed=seed)
    dataset = transforms.cast(dataset, controls["dtype"], controls["device"])
    meta = {
        **dataset.meta,
        "seed": seed,
        "flatten": controls["flatten"],
        "subset": controls["subset"],
    }
    return Dataset(dataset.name, dataset.train, dataset.test, dataset.n_classes, meta)


# The submodules build on Dataset above, so they are imported after it.
from funcspace.data import embedded, files, transforms  # noqa: E402
from funcspace.data.embedded import HiddenManifold, hidden_manifold_model, teacher_network  # noqa: E402
from funcspace.data.files import read_idx  # noqa: E402
from funcspace.data.transforms import flatten, label_noise, subset  # noqa: E402

_LOADERS = {
    "digits": embedded.digits,
    "mnist1d": embedded.mnist1d,
    "teacher_student": embedded.teacher_student,
    "hidden_manifold": embedded.hidden_manifold,
    "mnist": files.mnist,
    "fashion_mnist": files.fashion_mnist,
    "cifar10": files.cifar10,
}

__all__ = [
    "Dataset",
    "HiddenManifold",
    "Pair",
    "as_pair",
    "available",
    "embedded",
    "files",
    "flatten",
    "from_tensors",
    "hidden_manifold_model",
    "label_noise",
    "load",
    "read_idx",
    "subset",
    "teacher_network",
    "transforms",
]
