"""Reference binary networks: perceptron, committee machine, deep binary MLP, small binary CNN.

Every model is an ``nn.Sequential`` of ``binary.layers`` and standard layers (``Flatten``,
``BatchNorm``, average pooling): +-1 weights (signs of latent real weights), sign activations
with sign(0) = +1, no biases (a BatchNorm before the sign supplies the thresholds), and a
binary output layer. :func:`binary.export` turns one into a plain model with weights exactly
+-1; :func:`funcspace.train` trains them BinaryNet-style.

Without BatchNorm, pre-activations are sums of many +-1 terms, so each sign's straight-through
window is ``sqrt(fan_in)`` of the layer before it (:class:`~binary.layers.BinarySign`); with
BatchNorm it is 1 (BinaryNet's). Pooling is average pooling of the pre-activations (before the
sign): a linear map, so every hidden unit keeps its sign-reversal symmetry (max pooling would
break it, as ``max(-z) = -min(z)``).

Every constructor takes ``seed``: latent weights are drawn uniformly in ``[-1, 1]`` (each
binary weight a fair coin) from a local generator and the global random state is left as it
was; ``None`` draws from the global RNG, as plain PyTorch does.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from funcspace._validate import check_bool, check_choice, check_int, check_seed

from .errors import BinaryError
from .layers import BinaryConv2d, BinaryLinear, BinarySign, SumUnits, TwoClassReadout, _Binary

__all__ = ["OUTPUTS", "binary_cnn", "binary_mlp", "committee", "perceptron"]

#: How a committee machine combines its hidden units.
OUTPUTS = ("sum", "majority")


@contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    """Build with the global RNG untouched when seeded (layers draw on construction)."""
    if seed is None:
        yield
    else:
        with torch.random.fork_rng(devices=[]):
            yield


def _initialize(model: nn.Sequential, seed: int | None) -> nn.Sequential:
    """Redraw the latent weights from a generator seeded ``seed``, in module order."""
    if seed is not None:
        generator = torch.Generator().manual_seed(seed)
        for module in model.modules():
            if isinstance(module, _Binary):
                module.reset_parameters(generator=generator)
    return model


def _widths(name: str, widths: object) -> tuple[int, ...]:
    if isinstance(widths, (int, str)) or not isinstance(widths, Sequence):
        raise BinaryError(f"{name} must be a sequence of positive integers, got {widths!r}")
    return tuple(check_int(f"{name}[{i}]", w, error=BinaryError) for i, w in enumerate(widths))


def _sign(fan_in: int, batchnorm: bool) -> BinarySign:
    return BinarySign(1.0 if batchnorm else math.sqrt(fan_in))


def perceptron(in_features: int, *, seed: int | None = None) -> nn.Sequential:
    """The binary perceptron: class 1 where ``w . x > 0``, ``w`` in ``{-1, +1}^N``.

    ``Flatten -> BinaryLinear(N, 1) -> TwoClassReadout``: two logits ``(-w.x, w.x)``, so it
    trains with cross-entropy on class indices 0/1 like any classifier.

    Parameters
    ----------
    in_features : int
        N, the number of inputs (after flattening).
    seed : int, optional
        Seed of the latent weights; ``None`` uses the global RNG.

    Returns
    -------
    nn.Sequential

    Raises
    ------
    BinaryError
        For a size that is not a positive integer or a bad seed.

    Examples
    --------
    >>> model = perceptron(5, seed=0)
    >>> model(torch.randn(3, 5)).shape
    torch.Size([3, 2])
    """
    n = check_int("in_features", in_features, error=BinaryError)
    seed = check_seed(seed, optional=True, error=BinaryError)
    with _seeded(seed):
        model = nn.Sequential(nn.Flatten(), BinaryLinear(n, 1), TwoClassReadout())
    return _initialize(model, seed)


def committee(
    in_features: int,
    units: int = 3,
    *,
    tree: bool = False,
    output: str = "sum",
    seed: int | None = None,
) -> nn.Sequential:
    """A binary committee machine: ``units`` hidden sign units vote, class 1 if most say +1.

    Fully connected (``tree=False``): every hidden unit sees all inputs,
    ``Flatten -> BinaryLinear(N, K) -> BinarySign -> SumUnits -> [BinarySign] ->
    TwoClassReadout``. Tree (``tree=True``): unit ``k`` sees only the ``k``-th block of ``N/K``
    consecutive inputs, written as a grouped 1x1 convolution,
    ``Flatten -> Unflatten(N, 1, 1) -> BinaryConv2d(N, K, 1, groups=K) -> BinarySign ->
    Flatten -> SumUnits -> ...`` (a tree has no symmetry: each hidden unit reads its own inputs,
    and the fixed vote forbids sign flips, so alignment returns it unchanged).

    ``output="sum"``: the logits are ``(-s, s)`` with ``s`` the sum of the hidden signs;
    ``"majority"``: ``s`` goes through one more sign first (the logits are +-1). Both classify
    alike; they differ in the loss and its gradient. ``units`` must be odd so that the vote is
    never tied.

    Parameters
    ----------
    in_features : int
        N, the number of inputs (after flattening); a multiple of ``units`` for a tree.
    units : int
        K, the number of hidden units, odd.
    tree : bool
        Tree (disjoint input blocks) or fully connected.
    output : {"sum", "majority"}
    seed : int, optional
        Seed of the latent weights; ``None`` uses the global RNG.

    Returns
    -------
    nn.Sequential

    Raises
    ------
    BinaryError
        For an even ``units``, a tree whose ``in_features`` is not a multiple of ``units``, an
        unknown output or a bad size or seed.

    Examples
    --------
    >>> model = committee(12, 3, tree=True, seed=0)
    >>> model(torch.randn(4, 12)).shape
    torch.Size([4, 2])
    """
    n = check_int("in_features", in_features, error=BinaryError)
    k = check_int("units", units, error=BinaryError)
    tree = check_bool("tree", tree, error=BinaryError)
    output = check_choice("output", output, OUTPUTS, error=BinaryError)
    seed = check_seed(seed, optional=True, error=BinaryError)
    if k % 2 == 0:
        raise BinaryError(f"units must be odd so that the vote is never tied, got {k}")
    if tree and n % k:
        raise BinaryError(
            f"a tree committee splits the {n} inputs into {k} equal blocks: in_features must "
            f"be a multiple of units (use {n - n % k} or {n + k - n % k} inputs, or tree=False)"
        )
    fan_in = n // k if tree else n
    with _seeded(seed):
        if tree:
            hidden: list[nn.Module] = [
                nn.Unflatten(1, (n, 1, 1)),
                BinaryConv2d(n, k, 1, groups=k),
                _sign(fan_in, False),
                nn.Flatten(),
            ]
        else:
            hidden = [BinaryLinear(n, k), _sign(fan_in, False)]
        vote: list[nn.Module] = [SumUnits(k)]
        if output == "majority":
            vote.append(_sign(k, False))
        model = nn.Sequential(nn.Flatten(), *hidden, *vote, TwoClassReadout())
    return _initialize(model, seed)


def binary_mlp(
    in_features: int,
    widths: Sequence[int],
    n_classes: int,
    *,
    batchnorm: bool = True,
    seed: int | None = None,
) -> nn.Sequential:
    """A deep binary MLP with a binary output layer (the toroids paper uses 3 x 1001).

    ``Flatten -> (BinaryLinear -> [BatchNorm1d] -> BinarySign)* -> BinaryLinear``: the logits
    are the output layer's integer sums.

    Parameters
    ----------
    in_features : int
        Number of inputs after flattening.
    widths : sequence of int
        Hidden widths (at least one).
    n_classes : int
        Number of outputs, at least 2.
    batchnorm : bool
        A ``BatchNorm1d`` before each sign (BinaryNet's); without it the thresholds are 0.
    seed : int, optional
        Seed of the latent weights; ``None`` uses the global RNG.

    Returns
    -------
    nn.Sequential

    Raises
    ------
    BinaryError
        For sizes that are not positive integers, no hidden layer, or a bad seed.

    Examples
    --------
    >>> model = binary_mlp(64, (32, 32, 32), 10, seed=0)
    >>> model(torch.randn(5, 64)).shape
    torch.Size([5, 10])
    """
    n = check_int("in_features", in_features, error=BinaryError)
    hidden = _widths("widths", widths)
    if not hidden:
        raise BinaryError("widths must name at least one hidden layer; use perceptron() for none")
    classes = check_int("n_classes", n_classes, minimum=2, error=BinaryError)
    batchnorm = check_bool("batchnorm", batchnorm, error=BinaryError)
    seed = check_seed(seed, optional=True, error=BinaryError)
    with _seeded(seed):
        layers: list[nn.Module] = [nn.Flatten()]
        fan_in = n
        for width in hidden:
            layers.append(BinaryLinear(fan_in, width))
            if batchnorm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(_sign(fan_in, batchnorm))
            fan_in = width
        layers.append(BinaryLinear(fan_in, classes))
        model = nn.Sequential(*layers)
    return _initialize(model, seed)


def binary_cnn(
    in_channels: int,
    image_size: int,
    n_classes: int = 10,
    *,
    channels: Sequence[int] = (16, 32),
    kernel_size: int = 3,
    batchnorm: bool = True,
    seed: int | None = None,
) -> nn.Sequential:
    """A small binary CNN: binary convolution stages, then a binary output layer.

    Each stage is ``BinaryConv2d(k, padding=k//2) -> AvgPool2d(2) -> [BatchNorm2d] ->
    BinarySign`` (pooling before the sign keeps activations +-1 and units sign-symmetric),
    then ``Flatten -> BinaryLinear(features, n_classes)``.

    Parameters
    ----------
    in_channels : int
        Channels of the input images.
    image_size : int
        Height and width of the (square) inputs.
    n_classes : int
        Number of outputs, at least 2.
    channels : sequence of int
        Output channels of each stage.
    kernel_size : int
        Odd kernel size (``padding = kernel_size // 2`` keeps the size before pooling).
    batchnorm : bool
        A ``BatchNorm2d`` before each sign.
    seed : int, optional
        Seed of the latent weights; ``None`` uses the global RNG.

    Returns
    -------
    nn.Sequential

    Raises
    ------
    BinaryError
        For bad sizes, an even kernel, or images too small for the number of stages.

    Examples
    --------
    >>> model = binary_cnn(1, 8, 10, channels=(4, 8), seed=0)
    >>> model(torch.randn(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    """
    c_in = check_int("in_channels", in_channels, error=BinaryError)
    size = check_int("image_size", image_size, error=BinaryError)
    classes = check_int("n_classes", n_classes, minimum=2, error=BinaryError)
    stages = _widths("channels", channels)
    kernel = check_int("kernel_size", kernel_size, error=BinaryError)
    batchnorm = check_bool("batchnorm", batchnorm, error=BinaryError)
    seed = check_seed(seed, optional=True, error=BinaryError)
    if kernel % 2 == 0:
        raise BinaryError(f"kernel_size must be odd (same-size padding), got {kernel}")
    if size >> len(stages) < 1:
        raise BinaryError(
            f"image_size={size} is too small for {len(stages)} stages: each halves it; use "
            f"larger images or at most {size.bit_length() - 1} stages"
        )
    with _seeded(seed):
        layers: list[nn.Module] = []
        for c_out in stages:
            layers.append(BinaryConv2d(c_in, c_out, kernel, padding=kernel // 2))
            layers.append(nn.AvgPool2d(2))
            if batchnorm:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(_sign(c_in * kernel * kernel, batchnorm))
            c_in, size = c_out, size // 2
        layers += [nn.Flatten(), BinaryLinear(c_in * size * size, classes)]
        model = nn.Sequential(*layers)
    return _initialize(model, seed)
