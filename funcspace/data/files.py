"""Image data sets from files the user has: MNIST, Fashion-MNIST (IDX), CIFAR-10 (binary).

Nothing is downloaded and nothing is unpickled: files are read as bytes and parsed with numpy,
after checking their header and their length. Pixels are scaled to [0, 1], then standardized per
channel with the mean and standard deviation of the training split (computed exactly from the
histogram of pixel values); ``meta`` records both, and the files read.

Where the files may be (``root`` is the directory passed by the user):

- MNIST: ``root`` or ``root/MNIST/raw`` (torchvision's layout); Fashion-MNIST: ``root`` or
  ``root/FashionMNIST/raw``. Files ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
  ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each gzipped (``.gz``) or not.
- CIFAR-10: ``root`` or ``root/cifar-10-batches-bin`` (what ``cifar-10-binary.tar.gz``
  extracts to): ``data_batch_1.bin`` ... ``data_batch_5.bin`` and ``test_batch.bin``.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from funcspace.data import Dataset
from funcspace.errors import DataError

__all__ = [
    "CIFAR10_CLASSES",
    "FASHION_MNIST_CLASSES",
    "cifar10",
    "fashion_mnist",
    "mnist",
    "read_idx",
]

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip

_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_CIFAR_RECORD = 1 + 3 * 32 * 32
_CIFAR_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
_CIFAR_TEST = ("test_batch.bin",)


def _read_bytes(path: Path) -> tuple[bytes, bool]:
    """The file's bytes, decompressed if gzipped, and whether it was."""
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":  # not gzip, whatever the name says
        return raw, False
    try:
        return gzip.decompress(raw), True
    except (EOFError, OSError, zlib.error) as error:
        raise DataError(
            f"{path} is truncated or corrupt: it could not be decompressed ({error}); "
            "download it again"
        ) from error


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not, checking header and length.

    Parameters
    ----------
    path : str or Path
        The file. Gzip is recognized by its magic bytes, whatever the file name.

    Returns
    -------
    numpy.ndarray
        Shape given by the header, native byte order.

    Raises
    ------
    DataError
        If the file is missing, its magic number is not an IDX one, or its length is not the
        header plus the product of the dimensions (a truncated file): the message names the
        file and the expected and actual numbers of bytes.

    Example
    -------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "labels-idx1-ubyte"
    >>> _ = path.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 1]))
    >>> read_idx(path)
    array([7, 2, 1], dtype=uint8)
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"IDX file {path} does not exist")
    raw, compressed = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES or raw[3] == 0:
        raise DataError(
            f"{path} is not an IDX file: its magic number is 0x{raw[:4].hex() or 'empty'}, "
            "expected two zero bytes, a type code and a number of dimensions "
            "(MNIST images 0x00000803, labels 0x00000801)"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(
            f"{path} is truncated: expected at least {header} bytes of header for {ndim} "
            f"dimensions, found {len(raw)} bytes; download it again"
        )
    dims = [int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4)]
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    expected = header + math.prod(dims) * dtype.itemsize
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "too long"
        shape = " x ".join(map(str, dims))
        raise DataError(
            f"{path} is {what}: expected {expected} bytes ({header}-byte header + {shape} "
            f"values of {dtype.itemsize} byte(s)), found {len(raw)} bytes"
            + (" after decompression" if compressed else "")
            + "; download it again"
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _check_root(name: str, root: object) -> Path:
    if root is None:
        raise DataError(
            f"{name} is read from files you already have: pass root=<directory with the files>; "
            "funcspace never downloads data"
        )
    if not isinstance(root, (str, Path)):
        raise DataError(f"root must be a directory path, got {root!r}")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataError(f"{name}: root {path} is not a directory")
    return path


def _find(name: str, directories: list[Path], base: str, suffixes: tuple[str, ...]) -> Path:
    for directory in directories:
        for suffix in suffixes:
            if (directory / (base + suffix)).is_file():
                return directory / (base + suffix)
    looked = ", ".join(str(d) for d in directories)
    expected = " or ".join(repr(base + s) for s in suffixes)
    raise DataError(
        f"{name}: missing file {directories[0] / base}: expected {expected} in {looked}"
    )


def _standardize(train: np.ndarray, test: np.ndarray) -> tuple[Tensor, Tensor, list, list]:
    """uint8 images ``(N, C, H, W)`` -> float32, ``x / 255`` standardized per channel."""
    values = np.arange(256) / 255.0
    mean, std = [], []
    for channel in range(train.shape[1]):
        counts = np.bincount(train[:, channel].ravel(), minlength=256)
        m = float(counts @ values / counts.sum())
        s = float(np.sqrt(counts @ (values - m) ** 2 / counts.sum()))
        mean.append(m)
        std.append(s if s > 0 else 1.0)
    shift = torch.tensor(mean, dtype=torch.float32)[:, None, None]
    scale = torch.tensor(std, dtype=torch.float32)[:, None, None]

    def convert(images: np.ndarray) -> Tensor:
        return torch.from_numpy(images).to(torch.float32).div_(255).sub_(shift).div_(scale)

    return convert(train), convert(test), mean, std


def _idx_set(name: str, root: object, subdirectory: str, classes: tuple[str, ...]) -> Dataset:
    root = _check_root(name, root)
    directories = [root, root / subdirectory / "raw"]
    pairs, read = {}, []
    for split, (image_base, label_base) in _IDX_FILES.items():
        image_path = _find(name, directories, image_base, ("", ".gz"))
        label_path = _find(name, directories, label_base, ("", ".gz"))
        images, labels = read_idx(image_path), read_idx(label_path)
        if images.ndim != 3 or images.dtype != np.uint8:
            raise DataError(
                f"{image_path}: expected unsigned-byte images of 3 dimensions (N, H, W), "
                f"got {images.dtype} of shape {images.shape}"
            )
        if labels.ndim != 1 or len(labels) != len(images):
            raise DataError(
                f"{label_path}: expected {len(images)} labels (one per image of "
                f"{image_path.name}), got shape {labels.shape}"
            )
        if len(labels) and labels.max() >= len(classes):
            raise DataError(
                f"{label_path}: label {labels.max()} is not a class 0..{len(classes) - 1}"
            )
        pairs[split] = (images[:, None], torch.from_numpy(labels.astype(np.int64)))
        read += [str(image_path), str(label_path)]
    if pairs["train"][0].shape[2:] != pairs["test"][0].shape[2:]:
        raise DataError(
            f"{name}: training images are {pairs['train'][0].shape[2:]} but test images are "
            f"{pairs['test'][0].shape[2:]}"
        )
    xtr, xte, mean, std = _standardize(pairs["train"][0], pairs["test"][0])
    meta = {
        "root": str(root),
        "files": read,
        "classes": list(classes),
        "standardization": "pixels / 255, then per channel (x - mean) / std, training statistics",
        "mean": mean,
        "std": std,
    }
    return Dataset(name, (xtr, pairs["train"][1]), (xte, pairs["test"][1]), len(classes), meta)


def mnist(*, root: str | Path | None = None) -> Dataset:
    """MNIST from its four IDX files in ``root`` (or ``root/MNIST/raw``), gzipped or not.

    Parameters
    ----------
    root : str or Path
        Directory holding ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
        ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` (each optionally ``.gz``).

    Returns
    -------
    Dataset
        float32 images ``(N, 1, 28, 28)`` standardized with the training mean and std (in
        ``meta``), int64 labels, the official 60000/10000 split.

    Raises
    ------
    DataError
        If ``root`` is missing, a file is missing (the message names the path and the expected
        file name), truncated (it says which file, expected and actual bytes) or malformed.

    Example
    -------
    >>> data = mnist(root="~/data")  # doctest: +SKIP
    >>> data.train[0].shape  # doctest: +SKIP
    torch.Size([60000, 1, 28, 28])
    """
    return _idx_set("mnist", root, "MNIST", tuple(str(i) for i in range(10)))


def fashion_mnist(*, root: str | Path | None = None) -> Dataset:
    """Fashion-MNIST from its four IDX files in ``root`` (or ``root/FashionMNIST/raw``).

    Same file names, format, checks and standardization as :func:`mnist`; ``meta["classes"]``
    names the ten kinds of clothing.

    Example
    -------
    >>> data = fashion_mnist(root="~/data/fashion")  # doctest: +SKIP
    >>> data.meta["classes"][0]  # doctest: +SKIP
    'T-shirt/top'
    """
    return _idx_set("fashion_mnist", root, "FashionMNIST", FASHION_MNIST_CLASSES)


def _read_cifar(path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = path.read_bytes()
    if len(raw) == 0 or len(raw) % _CIFAR_RECORD:
        raise DataError(
            f"{path} is truncated or not a CIFAR-10 binary batch: expected a multiple of "
            f"{_CIFAR_RECORD} bytes (1 label byte + 3072 pixel bytes per image; 30730000 bytes for "
            f"10000 images), found {len(raw)} bytes ({len(raw) // _CIFAR_RECORD} whole records "
            f"and {len(raw) % _CIFAR_RECORD} bytes over)"
        )
    records = np.frombuffer(raw, np.uint8).reshape(-1, _CIFAR_RECORD)
    labels = records[:, 0]
    bad = np.flatnonzero(labels >= 10)
    if len(bad):
        raise DataError(
            f"{path}: byte {labels[bad[0]]} at the start of record {bad[0]} is not a class 0..9, "
            "so this is not the CIFAR-10 binary version; use the binary version "
            "(cifar-10-binary.tar.gz), funcspace never unpickles the python version"
        )
    return records[:, 1:].reshape(-1, 3, 32, 32), labels.astype(np.int64)


def cifar10(*, root: str | Path | None = None) -> Dataset:
    """CIFAR-10, binary version, from ``root`` (or ``root/cifar-10-batches-bin``).

    Each of ``data_batch_1.bin`` ... ``data_batch_5.bin`` and ``test_batch.bin`` is a sequence
    of 3073-byte records (a label byte, then 1024 red, 1024 green, 1024 blue pixel bytes, row
    by row). The python version (``cifar-10-batches-py``, pickled) is refused: unpickling a file
    can run arbitrary code.

    Parameters
    ----------
    root : str or Path
        Directory holding the binary batches.

    Returns
    -------
    Dataset
        float32 images ``(N, 3, 32, 32)`` standardized per channel with training statistics (in
        ``meta``), int64 labels, the official 50000/10000 split.

    Raises
    ------
    DataError
        If a batch is missing, truncated (length not a multiple of 3073 bytes: the message says
        which file, expected and actual bytes), not the binary version, or if only the pickled
        python version is found.

    Example
    -------
    >>> data = cifar10(root="~/data")  # doctest: +SKIP
    >>> data.train[0].shape  # doctest: +SKIP
    torch.Size([50000, 3, 32, 32])
    """
    root = _check_root("cifar10", root)
    directories = [root, root / "cifar-10-batches-bin"]
    has_binary = any((d / f).is_file() for d in directories for f in _CIFAR_TRAIN + _CIFAR_TEST)
    if not has_binary:
        for pickled in (root / "cifar-10-batches-py", root / "data_batch_1", root / "test_batch"):
            if pickled.exists():
                raise DataError(
                    f"cifar10: found the python (pickled) version of CIFAR-10 at {pickled}; "
                    "funcspace never unpickles files: download the binary version "
                    "(cifar-10-binary.tar.gz, which extracts to cifar-10-batches-bin/ with "
                    "data_batch_1.bin ... test_batch.bin) and pass its directory as root"
                )
    splits, read = {}, []
    for split, names in (("train", _CIFAR_TRAIN), ("test", _CIFAR_TEST)):
        parts = []
        for base in names:
            path = _find("cifar10", directories, base, ("",))
            parts.append(_read_cifar(path))
            read.append(str(path))
        splits[split] = (
            np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts]),
        )
    xtr, xte, mean, std = _standardize(splits["train"][0], splits["test"][0])
    meta = {
        "root": str(root),
        "files": read,
        "classes": list(CIFAR10_CLASSES),
        "standardization": "pixels / 255, then per channel (x - mean) / std, training statistics",
        "mean": mean,
        "std": std,
    }
    ytr, yte = torch.from_numpy(splits["train"][1]), torch.from_numpy(splits["test"][1])
    return Dataset("cifar10", (xtr, ytr), (xte, yte), 10, meta)
