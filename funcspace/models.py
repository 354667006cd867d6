"""Reference architectures used throughout funcspace.

Every model here is a plain :class:`torch.nn.Module` built only from standard layers
(``nn.Linear``, ``nn.Conv2d``, ``nn.BatchNorm1d/2d``, pooling, ``nn.Flatten``, elementwise
activations) plus residual additions written as ``x + f(x)`` in ``forward``. There is no
data-dependent control flow and no in-place operation on activations, so every model can be
traced by :func:`torch.fx.symbolic_trace`, which is what the symmetry detector in
``canonicalize`` does.

Every constructor takes ``seed``. When it is given, the parameters are drawn from a local
:class:`torch.Generator` with the same scheme as PyTorch's default initialisation
(Kaiming-uniform weights with ``a=sqrt(5)``, uniform biases in ``±1/sqrt(fan_in)``, BatchNorm
affine parameters at one and zero), and the global random state is left exactly as it was.
When ``seed`` is ``None`` the global RNG is used, as in plain PyTorch.
"""

import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import MappingProxyType

import torch
from torch import nn

from funcspace._validate import check_choice, check_fraction, check_int
from funcspace.errors import FuncspaceError

__all__ = [
    "ACTIVATIONS",
    "CNN",
    "MLP",
    "BasicBlock",
    "ResNet",
    "ResidualBlock",
    "ResidualMLP",
    "build",
    "lenet",
    "vgg_small",
]

#: Names accepted by every ``activation`` argument.
ACTIVATIONS = ("relu", "leaky_relu", "tanh", "identity", "sign")
_POOLS = ("max", "avg")


# --------------------------------------------------------------------------- validation


def _check_widths(name: str, widths: object) -> tuple[int, ...]:
    if isinstance(widths, (int, str)) or not isinstance(widths, Sequence):
        raise FuncspaceError(f"{name} must be a sequence of positive integers, got {widths!r}")
    for i, w in enumerate(widths):
        if isinstance(w, bool) or not isinstance(w, int) or w < 1:
            raise FuncspaceError(
                f"{name}[{i}] must be a positive integer, got {w!r} (in {name}={widths!r})"
            )
    return tuple(widths)


def _check_seed(seed: object) -> int | None:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise FuncspaceError(f"seed must be an integer or None, got {seed!r}")
    return seed


# ------------------------------------------------------------------------ layer helpers


def _renamed(batchnorm: bool, batch_norm: bool | None, where: str) -> bool:
    """``batch_norm=``, the former spelling of ``batchnorm=`` (one name per concept)."""
    if batch_norm is None:
        return batchnorm
    warnings.warn(
        f"{where}(batch_norm=) is deprecated and will be removed in the next release; pass "
        "batchnorm=",
        DeprecationWarning,
        stacklevel=3,
    )
    return batch_norm


def _activation(name: str) -> nn.Module:
    """Build a fresh activation module; raise FuncspaceError for unknown names."""
    check_choice("activation", name, ACTIVATIONS)
    if name == "relu":
        return nn.ReLU()
    if name == "leaky_relu":
        return nn.LeakyReLU()
    if name == "tanh":
        return nn.Tanh()
    if name == "identity":
        return nn.Identity()
    # "sign" lives in canonicalize, imported lazily so this module imports without it.
    try:
        from canonicalize import Sign
    except ImportError as err:
        raise ImportError(
            "activation 'sign' needs canonicalize.Sign, which could not be imported; "
            "install funcspace with its canonicalize package or pick another activation"
        ) from err
    return Sign()


def _conv_out(size: int, kernel_size: int, padding: int) -> int:
    return size + 2 * padding - kernel_size + 1


@contextmanager
def _global_rng_untouched(seed: int | None) -> Iterator[None]:
    """Restore the global CPU RNG on exit when the model is seeded locally."""
    if seed is None:
        yield
    else:
        with torch.random.fork_rng(devices=[]):
            yield


def _reinit_(module: nn.Module, seed: int) -> None:
    """Redraw every parameter of ``module`` in place from ``torch.Generator`` seeded ``seed``.

    Uses PyTorch's default scheme for each layer type, visiting modules in registration order
    so the result depends only on the architecture and the seed.
    """
    gen = torch.Generator().manual_seed(seed)
    for sub in module.modules():
        if isinstance(sub, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            nn.init.kaiming_uniform_(sub.weight, a=math.sqrt(5), generator=gen)
            if sub.bias is not None:
                fan_in = sub.weight[0].numel()
                bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                nn.init.uniform_(sub.bias, -bound, bound, generator=gen)
        elif isinstance(sub, (nn.BatchNorm1d, nn.BatchNorm2d)):
            sub.reset_parameters()
        elif any(True for _ in sub.parameters(recurse=False)):
            # No silent fall-back: a parameter we cannot seed would break reproducibility.
            raise FuncspaceError(
                f"cannot seed parameters of {type(sub).__name__}; "
                "only Linear, Conv1d/2d and BatchNorm1d/2d are supported"
            )


# ----------------------------------------------------------------------------- models


class MLP(nn.Module):
    """Fully connected network ``Flatten -> (Linear -> [BN] -> act -> [Dropout])* -> Linear``.

    Parameters
    ----------
    in_features : int
        Number of input features after flattening (e.g. 64 for 8x8 digits, 784 for MNIST).
    widths : sequence of int
        Widths of the hidden layers; empty gives a linear classifier.
    n_classes : int
        Number of outputs.
    activation : {"relu", "leaky_relu", "tanh", "identity", "sign"}
        Hidden nonlinearity; ``"sign"`` uses :class:`canonicalize.Sign`.
    batchnorm : bool
        Insert ``BatchNorm1d`` after each hidden ``Linear``.
    bias : bool
        Whether every ``Linear`` has a bias.
    dropout : float
        Dropout rate after each hidden activation, in ``[0, 1)``; ``0`` adds no layer.
    seed : int or None
        Seed for a local generator that initialises the parameters; ``None`` uses the global RNG.
    batch_norm : bool, optional
        The former spelling of ``batchnorm``: deprecated, removed in the next release.

    Raises
    ------
    FuncspaceError
        If a size is not a positive integer, the activation is unknown or dropout is outside
        ``[0, 1)``.

    Examples
    --------
    >>> model = MLP(64, [32, 16], 10, seed=0)
    >>> model(torch.zeros(5, 64)).shape
    torch.Size([5, 10])
    >>> model(torch.zeros(5, 1, 8, 8)).shape
    torch.Size([5, 10])
    """

    def __init__(
        self,
        in_features: int,
        widths: Sequence[int],
        n_classes: int,
        activation: str = "relu",
        batchnorm: bool = False,
        bias: bool = True,
        dropout: float = 0.0,
        seed: int | None = None,
        batch_norm: bool | None = None,
    ) -> None:
        super().__init__()
        batchnorm = _renamed(batchnorm, batch_norm, type(self).__name__)
        self.in_features = check_int("in_features", in_features)
        self.widths = _check_widths("widths", widths)
        self.n_classes = check_int("n_classes", n_classes)
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        self.dropout = check_fraction("dropout", dropout)
        _check_seed(seed)
        with _global_rng_untouched(seed):
            layers: list[nn.Module] = [nn.Flatten()]
            fan_in = self.in_features
            for width in self.widths:
                layers.append(nn.Linear(fan_in, width, bias=bias))
                if batchnorm:
                    layers.append(nn.BatchNorm1d(width))
                layers.append(_activation(self.activation))
                if self.dropout > 0:
                    layers.append(nn.Dropout(self.dropout))
                fan_in = width
            layers.append(nn.Linear(fan_in, self.n_classes, bias=bias))
            self.layers = nn.Sequential(*layers)
        if seed is not None:
            _reinit_(self, seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def _normalize_stages(channels: object) -> tuple[tuple[int, ...], ...]:
    if isinstance(channels, (int, str)) or not isinstance(channels, Sequence) or not channels:
        raise FuncspaceError(
            "channels must be a non-empty sequence whose entries are positive integers "
            f"(one conv per stage) or sequences of them (several convs per stage), got {channels!r}"
        )
    stages = []
    for i, stage in enumerate(channels):
        if isinstance(stage, Sequence) and not isinstance(stage, str):
            if not stage:
                raise FuncspaceError(f"channels[{i}] is an empty stage; give at least one width")
            stages.append(_check_widths(f"channels[{i}]", stage))
        else:
            stages.append((check_int(f"channels[{i}]", stage),))
    return tuple(stages)


class CNN(nn.Module):
    """LeNet/VGG-like convolutional network.

    Each stage is ``(Conv2d -> [BatchNorm2d] -> act)+ -> pool(2)`` with ``padding =
    kernel_size // 2`` ("same" size for odd kernels), followed by ``Flatten``, hidden
    ``Linear -> act`` layers and a final ``Linear``. The input must be
    ``(N, in_channels, image_size, image_size)``.

    Parameters
    ----------
    in_channels : int
        Channels of the input images.
    image_size : int
        Height and width of the (square) input images; sets the flattened size.
    channels : sequence of int or of sequences of int
        Output channels per stage. An integer is one conv in that stage; a sequence such as
        ``(16, 16)`` is several convs before the stage's pooling (VGG style).
    kernel_size : int
        Side of every convolution kernel.
    hidden : sequence of int
        Widths of the hidden fully connected layers.
    n_classes : int
        Number of outputs.
    batchnorm : bool
        Insert ``BatchNorm2d`` after each conv (the fully connected part has none); convs then
        have no bias.
    pool : {"max", "avg"}
        Pooling after each stage (window and stride 2).
    activation : {"relu", "leaky_relu", "tanh", "identity", "sign"}
        Nonlinearity after every conv and hidden ``Linear``.
    seed : int or None
        Seed for a local generator that initialises the parameters; ``None`` uses the global RNG.
    batch_norm : bool, optional
        The former spelling of ``batchnorm``: deprecated, removed in the next release.

    Raises
    ------
    FuncspaceError
        If a size is not a positive integer, a name is unknown, or ``image_size`` is too small
        for the number of stages.

    Examples
    --------
    >>> model = CNN(1, 8, channels=(4, 8), kernel_size=3, hidden=(16,), seed=0)
    >>> model(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    """

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        channels: Sequence[int | Sequence[int]] = (20, 50),
        kernel_size: int = 5,
        hidden: Sequence[int] = (500,),
        n_classes: int = 10,
        batchnorm: bool = False,
        pool: str = "max",
        activation: str = "relu",
        seed: int | None = None,
        batch_norm: bool | None = None,
    ) -> None:
        super().__init__()
        batchnorm = _renamed(batchnorm, batch_norm, type(self).__name__)
        self.in_channels = check_int("in_channels", in_channels)
        self.image_size = check_int("image_size", image_size)
        self.channels = _normalize_stages(channels)
        self.kernel_size = check_int("kernel_size", kernel_size)
        self.hidden = _check_widths("hidden", hidden)
        self.n_classes = check_int("n_classes", n_classes)
        self.pool = check_choice("pool", pool, _POOLS)
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        _check_seed(seed)
        padding = self.kernel_size // 2
        size = self.image_size
        for i, stage in enumerate(self.channels):
            for _ in stage:
                size = _conv_out(size, self.kernel_size, padding)
            size //= 2
            if size < 1:
                raise FuncspaceError(
                    f"image_size={image_size} is too small: the feature map vanishes at "
                    f"stage {i} of {len(self.channels)} (kernel_size={kernel_size}); "
                    "use larger images, fewer stages or a smaller kernel"
                )
        with _global_rng_untouched(seed):
            features: list[nn.Module] = []
            c_in = self.in_channels
            for stage in self.channels:
                for c_out in stage:
                    features.append(
                        nn.Conv2d(
                            c_in, c_out, self.kernel_size, padding=padding, bias=not batchnorm
                        )
                    )
                    if batchnorm:
                        features.append(nn.BatchNorm2d(c_out))
                    features.append(_activation(self.activation))
                    c_in = c_out
                features.append(nn.MaxPool2d(2) if self.pool == "max" else nn.AvgPool2d(2))
            classifier: list[nn.Module] = [nn.Flatten()]
            fan_in = c_in * size * size
            for width in self.hidden:
                classifier += [nn.Linear(fan_in, width), _activation(self.activation)]
                fan_in = width
            classifier.append(nn.Linear(fan_in, self.n_classes))
            self.features = nn.Sequential(*features)
            self.classifier = nn.Sequential(*classifier)
        if seed is not None:
            _reinit_(self, seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def lenet(
    in_channels: int = 1, image_size: int = 28, n_classes: int = 10, seed: int | None = None
) -> CNN:
    """LeNet-5 as in the Caffe/Keras MNIST examples: 20 and 50 5x5 filters, max pooling, FC 500.

    Unlike the original (unpadded) LeNet, the convolutions use padding 2 like every
    :class:`CNN`, so 28x28 inputs give 50x7x7 features before the FC layer and 8x8 inputs work.

    Examples
    --------
    >>> lenet(seed=0)(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """
    return CNN(
        in_channels,
        image_size,
        channels=(20, 50),
        kernel_size=5,
        hidden=(500,),
        n_classes=n_classes,
        pool="max",
        activation="relu",
        seed=seed,
    )


def vgg_small(
    in_channels: int = 3,
    image_size: int = 32,
    n_classes: int = 10,
    batchnorm: bool = True,
    seed: int | None = None,
    batch_norm: bool | None = None,
) -> CNN:
    """Small VGG: ``conv16-conv16-pool-conv32-conv32-pool`` (3x3, BatchNorm), FC 128.

    ``batch_norm`` is the deprecated spelling of ``batchnorm``.

    Examples
    --------
    >>> vgg_small(seed=0)(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """
    batchnorm = _renamed(batchnorm, batch_norm, "vgg_small")
    return CNN(
        in_channels,
        image_size,
        channels=((16, 16), (32, 32)),
        kernel_size=3,
        hidden=(128,),
        n_classes=n_classes,
        batchnorm=batchnorm,
        pool="max",
        activation="relu",
        seed=seed,
    )


class ResidualBlock(nn.Module):
    """Fully connected residual block ``x + Linear(act([BN](Linear(x))))``.

    Parameters
    ----------
    width : int
        Feature width, kept by the block.
    activation : str
        Name of the nonlinearity between the two ``Linear`` layers.
    batchnorm : bool
        Insert ``BatchNorm1d`` after the first ``Linear``.
    """

    def __init__(self, width: int, activation: str = "relu", batchnorm: bool = False) -> None:
        super().__init__()
        check_int("width", width)
        layers: list[nn.Module] = [nn.Linear(width, width)]
        if batchnorm:
            layers.append(nn.BatchNorm1d(width))
        layers += [_activation(activation), nn.Linear(width, width)]
        self.branch = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branch(x)


class ResidualMLP(nn.Module):
    """Residual MLP: ``Flatten -> Linear -> ResidualBlock * depth -> act -> Linear``.

    Parameters
    ----------
    in_features : int
        Number of input features after flattening.
    width : int
        Width of the residual stream.
    depth : int
        Number of residual blocks (``0`` allowed).
    n_classes : int
        Number of outputs.
    activation : {"relu", "leaky_relu", "tanh", "identity", "sign"}
        Nonlinearity inside the blocks and before the output layer.
    batchnorm : bool
        Insert ``BatchNorm1d`` inside each block.
    seed : int or None
        Seed for a local generator that initialises the parameters; ``None`` uses the global RNG.
    batch_norm : bool, optional
        The former spelling of ``batchnorm``: deprecated, removed in the next release.

    Raises
    ------
    FuncspaceError
        If a size is invalid or the activation is unknown.

    Examples
    --------
    >>> ResidualMLP(64, 32, 2, 10, seed=0)(torch.zeros(3, 64)).shape
    torch.Size([3, 10])
    """

    def __init__(
        self,
        in_features: int,
        width: int,
        depth: int,
        n_classes: int,
        activation: str = "relu",
        batchnorm: bool = False,
        seed: int | None = None,
        batch_norm: bool | None = None,
    ) -> None:
        super().__init__()
        batchnorm = _renamed(batchnorm, batch_norm, type(self).__name__)
        self.in_features = check_int("in_features", in_features)
        self.width = check_int("width", width)
        self.depth = check_int("depth", depth, minimum=0)
        self.n_classes = check_int("n_classes", n_classes)
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        _check_seed(seed)
        with _global_rng_untouched(seed):
            self.stem = nn.Sequential(nn.Flatten(), nn.Linear(self.in_features, self.width))
            self.blocks = nn.Sequential(
                *(ResidualBlock(self.width, self.activation, batchnorm) for _ in range(depth))
            )
            self.head = nn.Sequential(
                _activation(self.activation), nn.Linear(self.width, self.n_classes)
            )
        if seed is not None:
            _reinit_(self, seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


class BasicBlock(nn.Module):
    """ResNet basic block ``relu(conv-bn-relu-conv-bn(x) + shortcut(x))``.

    The shortcut is the identity, or a strided 1x1 conv (+ BN) when the stride or the number
    of channels changes.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels in and out.
    stride : int
        Stride of the first conv and of the projection shortcut.
    batchnorm : bool
        Use BatchNorm after each conv (convs then have no bias).
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: int = 1, batchnorm: bool = True
    ) -> None:
        super().__init__()
        check_int("in_channels", in_channels)
        check_int("out_channels", out_channels)
        check_int("stride", stride)
        norm: Callable[[int], nn.Module] = nn.BatchNorm2d if batchnorm else lambda _: nn.Identity()
        self.main = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=not batchnorm),
            norm(out_channels),
            nn.ReLU(),
            nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=not batchnorm),
            norm(out_channels),
        )
        if stride != 1 or in_channels != out_channels:
            self.shortcut: nn.Module = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=not batchnorm),
                norm(out_channels),
            )
        else:
            self.shortcut = nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.main(x) + self.shortcut(x))


class ResNet(nn.Module):
    """Small CIFAR-style ResNet.

    ``stem (conv3x3-BN-ReLU) -> stages of BasicBlocks -> AdaptiveAvgPool2d(1) -> Flatten ->
    Linear``. Stage ``i`` has ``widths[i]`` channels; every stage after the first halves the
    spatial size in its first block. Works for any input size.

    Parameters
    ----------
    in_channels : int
        Channels of the input images.
    n_classes : int
        Number of outputs.
    widths : sequence of int
        Channels per stage (non-empty).
    blocks_per_stage : int
        Number of :class:`BasicBlock` per stage.
    batchnorm : bool
        Use BatchNorm in the stem and the blocks; without it convs have biases.
    seed : int or None
        Seed for a local generator that initialises the parameters; ``None`` uses the global RNG.
    batch_norm : bool, optional
        The former spelling of ``batchnorm``: deprecated, removed in the next release.

    Raises
    ------
    FuncspaceError
        If a size is not a positive integer or ``widths`` is empty.

    Examples
    --------
    >>> ResNet(3, 10, seed=0)(torch.zeros(2, 3, 8, 8)).shape
    torch.Size([2, 10])
    """

    def __init__(
        self,
        in_channels: int,
        n_classes: int,
        widths: Sequence[int] = (16, 32),
        blocks_per_stage: int = 1,
        batchnorm: bool = True,
        seed: int | None = None,
        batch_norm: bool | None = None,
    ) -> None:
        super().__init__()
        batchnorm = _renamed(batchnorm, batch_norm, type(self).__name__)
        self.in_channels = check_int("in_channels", in_channels)
        self.n_classes = check_int("n_classes", n_classes)
        self.widths = _check_widths("widths", widths)
        if not self.widths:
            raise FuncspaceError("widths must name at least one stage, got an empty sequence")
        self.blocks_per_stage = check_int("blocks_per_stage", blocks_per_stage)
        _check_seed(seed)
        with _global_rng_untouched(seed):
            c0 = self.widths[0]
            self.stem = nn.Sequential(
                nn.Conv2d(self.in_channels, c0, 3, padding=1, bias=not batchnorm),
                nn.BatchNorm2d(c0) if batchnorm else nn.Identity(),
                nn.ReLU(),
            )
            stages = []
            c_in = c0
            for i, c_out in enumerate(self.widths):
                blocks = []
                for j in range(self.blocks_per_stage):
                    stride = 2 if i > 0 and j == 0 else 1
                    blocks.append(BasicBlock(c_in, c_out, stride, batchnorm))
                    c_in = c_out
                stages.append(nn.Sequential(*blocks))
            self.stages = nn.Sequential(*stages)
            self.head = nn.Sequential(
                nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, self.n_classes)
            )
        if seed is not None:
            _reinit_(self, seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


# --------------------------------------------------------------------------- registry

_REGISTRY: MappingProxyType[str, Callable[..., nn.Module]] = MappingProxyType(
    {
        "mlp": MLP,
        "cnn": CNN,
        "lenet": lenet,
        "vgg_small": vgg_small,
        "residual_mlp": ResidualMLP,
        "resnet": ResNet,
    }
)


def build(name: str, **kwargs: object) -> nn.Module:
    """Build a reference model by name.

    Parameters
    ----------
    name : {"mlp", "cnn", "lenet", "vgg_small", "residual_mlp", "resnet"}
        Which constructor to call.
    **kwargs
        Passed on to the constructor (including ``seed``).

    Returns
    -------
    torch.nn.Module
        The new model.

    Raises
    ------
    FuncspaceError
        If ``name`` is unknown, or the constructor rejects an argument's value.
    TypeError
        If a keyword is not a parameter of the constructor.

    Examples
    --------
    >>> build("mlp", in_features=64, widths=[16], n_classes=10, seed=0)(torch.zeros(2, 64)).shape
    torch.Size([2, 10])
    """
    try:
        constructor = _REGISTRY[name]
    except (KeyError, TypeError):
        raise FuncspaceError(
            f"unknown model {name!r}; known models are: {', '.join(sorted(_REGISTRY))}"
        ) from None
    return constructor(**kwargs)
