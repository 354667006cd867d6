"""Embedded data sets: bundled or generated on the spot, never downloaded.

- ``digits``: scikit-learn's 8x8 handwritten digits (bundled with scikit-learn).
- ``mnist1d``: MNIST-1D, made locally by the ``mnist1d`` package's generator (extra ``data``).
- ``teacher_student``: Gaussian inputs labelled by the argmax of a random teacher MLP.
- ``hidden_manifold``: the hidden manifold model of Goldt et al. (2020): a one-layer teacher
  labels D-dimensional Gaussian patterns ``c``; the student sees ``x = f(F c / sqrt(D))`` for a
  fixed random projection ``F`` (N x D) and a non-linearity ``f``.

The functions here return the raw set on the CPU (float64 inputs, int64 targets, no controls);
:func:`funcspace.data.load` is the usual entry point and applies subset, label noise, dtype
(float32 by default) and device on top. Every function takes ``seed`` and leaves the global
random state (torch, numpy, random) as it was.
"""

from __future__ import annotations

import math
import random
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from funcspace.data import Dataset
from funcspace.data.transforms import (
    _PROJECTION,
    _SAMPLES,
    _TEACHER,
    _check_bool,
    _check_choice,
    _check_fraction,
    _check_int,
    _check_positive,
    _check_seed,
    _rng,
    split,
)
from funcspace.errors import DataError

__all__ = [
    "HIDDEN_MANIFOLD_NONLINEARITIES",
    "TEACHER_ACTIVATIONS",
    "TEACHER_WEIGHTS",
    "HiddenManifold",
    "digits",
    "hidden_manifold",
    "hidden_manifold_model",
    "mnist1d",
    "teacher_network",
    "teacher_student",
]

#: Activations of :func:`teacher_network`.
TEACHER_ACTIVATIONS = ("tanh", "relu", "leaky_relu", "identity", "sign")
#: Weights of :func:`teacher_network`: Gaussian, or +-1 (a binary teacher).
TEACHER_WEIGHTS = ("gaussian", "binary")
#: Non-linearities ``f`` of the hidden manifold model.
HIDDEN_MANIFOLD_NONLINEARITIES = ("tanh", "sign", "relu", "erf", "identity")


def _standardize(train: Tensor, test: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-feature standardization with training statistics (constant features left centred)."""
    mean = train.mean(0)
    std = train.std(0, unbiased=False)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return (train - mean) / std, (test - mean) / std, mean, std


# --------------------------------------------------------------------------- digits


def digits(*, flat: bool = True, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's handwritten digits: 1797 images of 8x8 pixels, 10 classes.

    Split at random into train and test; each pixel is standardized with the mean and standard
    deviation of the training split (pixels constant in training are only centred).

    Parameters
    ----------
    flat : bool
        Inputs of shape ``(N, 64)`` if True, images ``(N, 1, 8, 8)`` if False.
    test_fraction : float in [0, 1)
        Share of the 1797 examples held out for testing.
    seed : int
        Seed of the split.

    Returns
    -------
    Dataset
        float64 inputs on the CPU; ``meta`` holds the options and the per-pixel ``mean``/``std``.

    Example
    -------
    >>> data = digits()
    >>> data.train[0].shape, data.test[0].shape, data.n_classes
    (torch.Size([1438, 64]), torch.Size([359, 64]), 10)
    """
    from sklearn.datasets import load_digits  # scikit-learn is slow to import

    flat = _check_bool("flat", flat)
    bunch = load_digits()
    x = torch.from_numpy(np.asarray(bunch.data, dtype=np.float64))
    y = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))
    (xtr, ytr), (xte, yte) = split(x, y, test_fraction, seed)
    xtr, xte, mean, std = _standardize(xtr, xte)
    if not flat:
        xtr, xte = xtr.reshape(-1, 1, 8, 8), xte.reshape(-1, 1, 8, 8)
    meta = {
        "flat": flat,
        "test_fraction": float(test_fraction),
        "seed": seed,
        "standardization": "per pixel, training statistics",
        "mean": mean.tolist(),
        "std": std.tolist(),
    }
    return Dataset("digits", (xtr, ytr), (xte, yte), 10, meta)


# --------------------------------------------------------------------------- MNIST-1D


def mnist1d(
    *,
    n_samples: int = 5000,
    flat: bool = True,
    test_fraction: float = 0.2,
    seed: int = 0,
    template_len: int = 12,
    padding: Sequence[int] = (36, 60),
    scale_coeff: float = 0.4,
    max_translation: int = 48,
    corr_noise_scale: float = 0.25,
    iid_noise_scale: float = 2e-2,
    shear_scale: float = 0.75,
    shuffle_seq: bool = False,
    final_seq_length: int = 40,
    num_samples: int | None = None,
) -> Dataset:
    """MNIST-1D (Greydanus 2020), generated locally by the ``mnist1d`` package; never downloaded.

    The generator makes ``n_samples // 10`` signals per digit, shuffles them and standardizes
    the whole set with one mean and one standard deviation (its own convention); the last
    ``round(test_fraction * n)`` signals are the test split, as in the reference set. The
    generator options keep the package's defaults; with them and ``seed=42`` it is the
    reference MNIST-1D. The generator uses numpy's global random state: it is saved and restored.

    Parameters
    ----------
    n_samples : int
        Number of signals (rounded down to a multiple of 10).
    flat : bool
        Inputs of shape ``(N, final_seq_length)`` if True, ``(N, 1, final_seq_length)`` if False
        (for 1-D convolutions).
    test_fraction : float in [0, 1)
        Share of the signals held out for testing.
    seed : int
        Seed of the generator.
    template_len, padding, scale_coeff, max_translation, corr_noise_scale, iid_noise_scale,
    shear_scale, shuffle_seq, final_seq_length
        Options of the ``mnist1d`` generator (``mnist1d.data.get_dataset_args``).
    num_samples : int, optional
        The former name of ``n_samples`` (the generator's own): deprecated, removed in the
        next release.

    Returns
    -------
    Dataset
        float64 inputs on the CPU, 10 classes; ``meta`` holds every generator option.

    Raises
    ------
    DataError
        If the ``mnist1d`` package is not installed (``pip install 'funcspace[data]'``).

    Example
    -------
    >>> data = mnist1d(n_samples=100, seed=42)
    >>> data.train[0].shape, data.test[0].shape
    (torch.Size([80, 40]), torch.Size([20, 40]))
    """
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as error:
        raise DataError(
            "the 'mnist1d' data set needs the mnist1d package, which is not installed; "
            "install it with: pip install 'funcspace[data]'"
        ) from error

    if num_samples is not None:
        warnings.warn(
            "mnist1d(num_samples=) is deprecated and will be removed in the next release; pass "
            "n_samples=, as every generated data set does",
            DeprecationWarning,
            stacklevel=3,
        )
        n_samples = num_samples
    n_samples = _check_int("n_samples", n_samples, minimum=10)
    flat = _check_bool("flat", flat)
    test_fraction = _check_fraction("test_fraction", test_fraction)
    seed = _check_seed(seed)
    if (
        isinstance(padding, (str, bytes))
        or not isinstance(padding, Sequence)
        or len(padding) != 2
        or not all(isinstance(p, int) and not isinstance(p, bool) and p >= 0 for p in padding)
        or padding[0] > padding[1]
    ):
        raise DataError(
            f"padding must be a pair (low, high) of integers 0 <= low <= high, got {padding!r}"
        )
    options = {
        "template_len": _check_int("template_len", template_len, minimum=2),
        "padding": [int(padding[0]), int(padding[1])],
        "scale_coeff": _check_positive("scale_coeff", scale_coeff),
        "max_translation": _check_int("max_translation", max_translation),
        "corr_noise_scale": _check_positive("corr_noise_scale", corr_noise_scale),
        "iid_noise_scale": _check_positive("iid_noise_scale", iid_noise_scale),
        "shear_scale": _check_positive("shear_scale", shear_scale),
        "shuffle_seq": _check_bool("shuffle_seq", shuffle_seq),
        "final_seq_length": _check_int("final_seq_length", final_seq_length, minimum=2),
    }
    args = get_dataset_args()
    for key, value in options.items():
        setattr(args, key, value)
    args.num_samples, args.seed, args.train_split = n_samples, seed, 1.0  # we split below
    np_state, py_state = np.random.get_state(), random.getstate()  # noqa: NPY002
    try:
        generated = make_dataset(args)  # make_dataset never downloads (get_dataset may)
    finally:
        np.random.set_state(np_state)  # noqa: NPY002
        random.setstate(py_state)
    x = torch.from_numpy(np.ascontiguousarray(generated["x"], dtype=np.float64))
    y = torch.from_numpy(np.asarray(generated["y"], dtype=np.int64))
    n_test = int(round(test_fraction * len(x)))
    if len(x) - n_test < 1:
        raise DataError(
            f"test_fraction={test_fraction} of {len(x)} signals leaves no training signal"
        )
    if not flat:
        x = x[:, None, :]
    cut = len(x) - n_test
    meta = {
        "n_samples": len(x),
        "flat": flat,
        "test_fraction": test_fraction,
        "seed": seed,
        **options,
    }
    return Dataset("mnist1d", (x[:cut], y[:cut]), (x[cut:], y[cut:]), 10, meta)


# --------------------------------------------------------------------------- teacher-student


def _widths(hidden: object) -> list[int]:
    if isinstance(hidden, (int, np.integer)) and not isinstance(hidden, bool):
        hidden = [hidden]
    if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence):
        raise DataError(f"hidden must be an integer or a sequence of integers, got {hidden!r}")
    return [_check_int(f"hidden[{i}]", h) for i, h in enumerate(hidden)]


def _activation(name: str) -> nn.Module:
    if name == "sign":
        from canonicalize import Sign  # the sign activation canonicalize knows

        return Sign()
    return {"tanh": nn.Tanh, "relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "identity": nn.Identity}[
        name
    ]()


def teacher_network(
    input_dim: int = 32,
    hidden: int | Sequence[int] = (64,),
    n_classes: int = 10,
    *,
    activation: str = "tanh",
    weights: str = "gaussian",
    seed: int = 0,
) -> nn.Sequential:
    """The random teacher of :func:`teacher_student`: an MLP without biases, Gaussian weights.

    Each weight is drawn from N(0, 1/fan_in) (so pre-activations stay of order one) and rounded
    to float32, so the float32 module and its float64 copy hold the same numbers. The default
    ``tanh`` keeps hidden features centred, which keeps the argmax classes roughly balanced.

    ``weights="binary"`` draws every weight as +-1 with equal odds instead (a binary teacher, for
    binary students; use ``activation="sign"``). With two classes its output is then one unit
    ``z`` read out as the logits ``(-z, z)`` by a last ``Linear(1, 2)`` with fixed weights
    ``(-1, +1)``: class 1 where ``z > 0``, the function of a binary perceptron (``hidden=()``)
    or committee-like network, which two free +-1 output rows could not express.

    Parameters
    ----------
    input_dim : int
        Input dimension.
    hidden : int or sequence of int
        Hidden widths; ``()`` gives a linear teacher.
    n_classes : int
        Number of outputs (classes), at least 2.
    activation : {"tanh", "relu", "leaky_relu", "identity", "sign"}
    weights : {"gaussian", "binary"}
        Gaussian weights, or +-1 weights (a binary teacher).
    seed : int
        Seed of the weights; the global random state is not used.

    Returns
    -------
    nn.Sequential
        float32, on the CPU.

    Example
    -------
    >>> teacher = teacher_network(4, (8,), 3, seed=0)
    >>> teacher(torch.zeros(2, 4)).shape
    torch.Size([2, 3])
    """
    input_dim = _check_int("input_dim", input_dim)
    widths = [input_dim, *_widths(hidden), _check_int("n_classes", n_classes, minimum=2)]
    activation = _check_choice("activation", activation, TEACHER_ACTIVATIONS)
    binary = _check_choice("weights", weights, TEACHER_WEIGHTS) == "binary"
    if binary and widths[-1] == 2:
        widths[-1] = 1  # one output unit, read out as (-z, z) below
    rng = _rng(_check_seed(seed), _TEACHER)
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        # skip_init: no draw from torch's global generator
        linear = nn.utils.skip_init(nn.Linear, fan_in, fan_out, bias=False)
        if binary:
            weight = rng.integers(0, 2, (fan_out, fan_in)) * 2.0 - 1.0
        else:
            weight = rng.standard_normal((fan_out, fan_in)) / math.sqrt(fan_in)
        linear.weight.data = torch.from_numpy(weight.astype(np.float32))
        layers.append(linear)
        if i < len(widths) - 2:
            layers.append(_activation(activation))
    if binary and widths[-1] == 1:
        readout = nn.utils.skip_init(nn.Linear, 1, 2, bias=False)
        readout.weight.data = torch.tensor([[-1.0], [1.0]])
        layers.append(readout)
    return nn.Sequential(*layers)


def teacher_student(
    *,
    input_dim: int = 32,
    hidden: int | Sequence[int] = (64,),
    n_classes: int = 10,
    n_samples: int = 6000,
    activation: str = "tanh",
    weights: str = "gaussian",
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Dataset:
    """Standard Gaussian inputs labelled by the argmax of a random teacher MLP.

    The teacher is ``teacher_network(input_dim, hidden, n_classes, activation=activation,
    weights=weights, seed=seed)``; inputs are rounded to float32 and labelled in float64, so
    ``teacher.double()(x.double()).argmax(1)`` gives back the labels. Label noise is the
    ``label_noise`` control of :func:`funcspace.data.load` (training labels only).

    Parameters
    ----------
    input_dim : int
        Input dimension.
    hidden : int or sequence of int
        Teacher hidden widths.
    n_classes : int
        Number of classes (teacher outputs).
    n_samples : int
        Number of examples, before the train/test split.
    activation : {"tanh", "relu", "leaky_relu", "identity", "sign"}
        Teacher activation.
    weights : {"gaussian", "binary"}
        Teacher weights: Gaussian, or +-1 (a binary teacher: with ``hidden=()`` and two
        classes, a binary perceptron; see :func:`teacher_network`).
    test_fraction : float in [0, 1)
        Share of examples held out for testing.
    seed : int
        Seed of the teacher, the inputs and the split (independent streams).

    Returns
    -------
    Dataset
        float64 inputs on the CPU; ``meta`` holds the options and the ``class_counts`` of all
        examples (a random teacher's classes are not balanced).

    Example
    -------
    >>> data = teacher_student(input_dim=5, hidden=(8,), n_classes=3, n_samples=100)
    >>> data.train[0].shape, data.n_classes
    (torch.Size([80, 5]), 3)
    """
    teacher = teacher_network(
        input_dim, hidden, n_classes, activation=activation, weights=weights, seed=seed
    )
    n_samples = _check_int("n_samples", n_samples, minimum=2)
    x = _rng(seed, _SAMPLES).standard_normal((n_samples, input_dim))
    x = torch.from_numpy(x.astype(np.float32).astype(np.float64))
    with torch.no_grad():
        y = teacher.double()(x).argmax(1)
    train, test = split(x, y, test_fraction, seed)
    meta = {
        "input_dim": input_dim,
        "hidden": _widths(hidden),
        "n_classes": n_classes,
        "n_samples": n_samples,
        "activation": activation,
        "weights": weights,
        "test_fraction": float(test_fraction),
        "seed": seed,
        "class_counts": torch.bincount(y, minlength=n_classes).tolist(),
    }
    return Dataset("teacher_student", train, test, n_classes, meta)


# --------------------------------------------------------------------------- hidden manifold


def _nonlinearity(name: str, z: Tensor) -> Tensor:
    if name == "tanh":
        return torch.tanh(z)
    if name == "sign":
        return torch.sign(z)
    if name == "relu":
        return torch.relu(z)
    if name == "erf":
        return torch.erf(z)
    return z


@dataclass(frozen=True, repr=False)
class HiddenManifold:
    """A hidden manifold model: latent Gaussian patterns, their teacher, their projection.

    Attributes
    ----------
    projection : Tensor
        ``F``, shape ``(input_dim, latent_dim)``, i.i.d. N(0, 1), float64.
    teacher : Tensor
        Teacher weights on the latent patterns, ``(1, latent_dim)`` for two classes (label
        ``1`` where ``w . c > 0``), else ``(n_classes, latent_dim)`` (label ``argmax W c``).
    nonlinearity : str
        ``f``, one of :data:`HIDDEN_MANIFOLD_NONLINEARITIES`.
    """

    projection: Tensor
    teacher: Tensor
    nonlinearity: str

    @property
    def latent_dim(self) -> int:
        return self.projection.shape[1]

    @property
    def input_dim(self) -> int:
        return self.projection.shape[0]

    @property
    def n_classes(self) -> int:
        return max(2, self.teacher.shape[0])

    def inputs(self, latents: Tensor) -> Tensor:
        """What the student sees: ``f(latents @ F.T / sqrt(latent_dim))``."""
        return _nonlinearity(
            self.nonlinearity, latents @ self.projection.T / math.sqrt(self.latent_dim)
        )

    def labels(self, latents: Tensor) -> Tensor:
        """The teacher's classes of the latent patterns (int64)."""
        scores = latents @ self.teacher.T
        if self.teacher.shape[0] == 1:
            return (scores[:, 0] > 0).long()
        return scores.argmax(1)

    def sample(self, n: int, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
        """``n`` latent patterns ``c ~ N(0, I)`` with their inputs and labels, float64.

        Example
        -------
        >>> model = hidden_manifold_model(latent_dim=3, input_dim=6, seed=0)
        >>> [t.shape for t in model.sample(4)]
        [torch.Size([4, 3]), torch.Size([4, 6]), torch.Size([4])]
        """
        n = _check_int("n", n)
        latents = torch.from_numpy(
            _rng(_check_seed(seed), _SAMPLES).standard_normal((n, self.latent_dim))
        )
        return latents, self.inputs(latents), self.labels(latents)

    def __repr__(self) -> str:
        return (
            f"HiddenManifold(latent_dim={self.latent_dim}, input_dim={self.input_dim}, "
            f"n_classes={self.n_classes}, nonlinearity={self.nonlinearity!r})"
        )


def hidden_manifold_model(
    latent_dim: int = 10,
    input_dim: int = 500,
    n_classes: int = 2,
    *,
    nonlinearity: str = "tanh",
    seed: int = 0,
) -> HiddenManifold:
    """The fixed parts of a hidden manifold model: projection ``F`` and teacher, from ``seed``.

    ``F`` comes from its own random stream and depends only on ``seed``, ``latent_dim`` and
    ``input_dim``: the number of samples or classes never changes it.

    Parameters
    ----------
    latent_dim : int
        D, dimension of the latent patterns.
    input_dim : int
        N, dimension of what the student sees.
    n_classes : int
        2 for the sign teacher, more for an argmax teacher.
    nonlinearity : {"tanh", "sign", "relu", "erf", "identity"}
        ``f``.
    seed : int

    Returns
    -------
    HiddenManifold

    Example
    -------
    >>> hidden_manifold_model(latent_dim=3, input_dim=6, seed=0).projection.shape
    torch.Size([6, 3])
    """
    latent_dim = _check_int("latent_dim", latent_dim)
    input_dim = _check_int("input_dim", input_dim)
    n_classes = _check_int("n_classes", n_classes, minimum=2)
    nonlinearity = _check_choice("nonlinearity", nonlinearity, HIDDEN_MANIFOLD_NONLINEARITIES)
    seed = _check_seed(seed)
    projection = _rng(seed, _PROJECTION).standard_normal((input_dim, latent_dim))
    teacher = _rng(seed, _TEACHER).standard_normal((1 if n_classes == 2 else n_classes, latent_dim))
    return HiddenManifold(torch.from_numpy(projection), torch.from_numpy(teacher), nonlinearity)


def hidden_manifold(
    *,
    latent_dim: int = 10,
    input_dim: int = 500,
    n_samples: int = 6000,
    n_classes: int = 2,
    nonlinearity: str = "tanh",
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Dataset:
    """The hidden manifold model (Goldt, Mezard, Krzakala, Zdeborova 2020) as a data set.

    Latent patterns ``c ~ N(0, I_D)`` are labelled by a one-layer teacher (``sign(w . c)``
    as classes 0/1, or ``argmax W c`` for more classes); the student sees
    ``x = f(F c / sqrt(D))`` with the fixed projection ``F`` of
    :func:`hidden_manifold_model` (same ``seed``, same ``F`` whatever ``n_samples``).
    :func:`funcspace.data.load` also takes ``D`` and ``N`` for ``latent_dim`` and ``input_dim``.

    Parameters
    ----------
    latent_dim : int
        D.
    input_dim : int
        N.
    n_samples : int
        Number of examples before the train/test split.
    n_classes : int
        Number of classes.
    nonlinearity : {"tanh", "sign", "relu", "erf", "identity"}
        ``f``.
    test_fraction : float in [0, 1)
        Share of examples held out for testing.
    seed : int
        Seed of projection, teacher, patterns and split (independent streams).

    Returns
    -------
    Dataset
        float64 inputs ``(N_examples, input_dim)`` on the CPU.

    Example
    -------
    >>> data = hidden_manifold(latent_dim=4, input_dim=20, n_samples=50)
    >>> data.train[0].shape, data.n_classes
    (torch.Size([40, 20]), 2)
    """
    model = hidden_manifold_model(
        latent_dim, input_dim, n_classes, nonlinearity=nonlinearity, seed=seed
    )
    n_samples = _check_int("n_samples", n_samples, minimum=2)
    _, x, y = model.sample(n_samples, seed=seed)
    train, test = split(x, y, test_fraction, seed)
    meta = {
        "latent_dim": latent_dim,
        "input_dim": input_dim,
        "n_samples": n_samples,
        "n_classes": n_classes,
        "nonlinearity": nonlinearity,
        "test_fraction": float(test_fraction),
        "seed": seed,
        "class_counts": torch.bincount(y, minlength=n_classes).tolist(),
    }
    return Dataset("hidden_manifold", train, test, n_classes, meta)
