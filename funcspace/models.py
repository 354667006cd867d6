"""Reference architectures used throughout funcspace.

Every model here is a plain :class:`torch.nn.Module` built only from standard layers
(``nn.Linear``, ``nn.Conv2d``, ``nn.BatchNorm1d/2d``, ``nn.LayerNorm``, pooling, ``nn.Flatten``,
elementwise activations) plus residual additions written as ``x + f(x)`` in ``forward``; the
vision transformer adds attention written with ``matmul`` and ``softmax`` (or
``nn.MultiheadAttention``) and a learned position embedding held as a parameter. There is no
data-dependent control flow and no in-place operation on activations, so every model can be
traced by :func:`torch.fx.symbolic_trace`, which is what the symmetry detector in
``canonicalize`` does.

Every constructor takes ``seed``. When it is given, the parameters are drawn from a local
:class:`torch.Generator` with the same scheme as PyTorch's default initialisation
(Kaiming-uniform weights with ``a=sqrt(5)``, uniform biases in ``±1/sqrt(fan_in)``, BatchNorm
and LayerNorm affine parameters at one and zero; see :class:`VisionTransformer` for its
attention and position embedding), and the global random state is left exactly as it was.
When ``seed`` is ``None`` the global RNG is used, as in plain PyTorch.
"""

import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import MappingProxyType

import torch
from torch import nn
from torch.nn.modules.linear import NonDynamicallyQuantizableLinear

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
    "SelfAttention",
    "TRANSFORMER_ACTIVATIONS",
    "TransformerBlock",
    "VisionTransformer",
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


def _token_init(tensor: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """ViT's position embedding and class token: ``N(0, 0.02^2)`` truncated at +-2 sd."""
    with torch.no_grad():
        return nn.init.trunc_normal_(tensor, std=0.02, a=-0.04, b=0.04, generator=generator)


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
            if sub.bias is not None and isinstance(sub, NonDynamicallyQuantizableLinear):
                nn.init.zeros_(sub.bias)  # nn.MultiheadAttention's output projection
            elif sub.bias is not None:
                fan_in = sub.weight[0].numel()
                bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                nn.init.uniform_(sub.bias, -bound, bound, generator=gen)
        elif isinstance(sub, (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm)):
            sub.reset_parameters()
        elif isinstance(sub, nn.MultiheadAttention) and sub.in_proj_weight is not None:
            nn.init.xavier_uniform_(sub.in_proj_weight, generator=gen)
            if sub.in_proj_bias is not None:
                nn.init.zeros_(sub.in_proj_bias)
        elif isinstance(sub, VisionTransformer):
            for token in (sub.cls_token, sub.pos):
                if token is not None:
                    _token_init(token, gen)
        elif any(True for _ in sub.parameters(recurse=False)):
            # No silent fall-back: a parameter we cannot seed would break reproducibility.
            raise FuncspaceError(
                f"cannot seed parameters of {type(sub).__name__}; "
                "only Linear, Conv1d/2d, BatchNorm1d/2d, LayerNorm, MultiheadAttention and the "
                "VisionTransformer's own tokens are supported"
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


# ------------------------------------------------------------------------- transformer

#: Names accepted by the transformer's ``activation`` argument.
TRANSFORMER_ACTIVATIONS = ("gelu", "relu")
_VIT_POOLS = ("mean", "cls")
_VIT_ATTENTIONS = ("hand", "torch")


def _check_input_shape(input_shape: object) -> tuple[int, ...]:
    if isinstance(input_shape, int) and not isinstance(input_shape, bool):
        input_shape = (input_shape,)
    shape = _check_widths("input_shape", input_shape)
    if not 1 <= len(shape) <= 3:
        raise FuncspaceError(
            "input_shape must be (channels, height, width) for images, (channels, length) or "
            f"(length,) for signals; got {input_shape!r}"
        )
    return (1, *shape) if len(shape) == 1 else shape


class SelfAttention(nn.Module):
    """Multi-head self-attention written out: ``softmax(Q K^T / sqrt(d_head)) V``, then ``W_O``.

    Separate ``q``, ``k``, ``v`` and ``proj`` :class:`~torch.nn.Linear` layers; heads are split
    with ``reshape``/``transpose`` around ``matmul``, as most public vision transformers do.

    Parameters
    ----------
    dim : int
        Width of the tokens in and out.
    heads : int
        Number of heads; must divide ``dim``.
    bias : bool
        Whether the four projections have biases.
    """

    def __init__(self, dim: int, heads: int, bias: bool = True) -> None:
        super().__init__()
        self.dim = check_int("dim", dim)
        self.heads = check_int("heads", heads)
        if self.dim % self.heads:
            raise FuncspaceError(
                f"heads={heads} must divide dim={dim}; choose dim as a multiple of heads"
            )
        self.head_dim = self.dim // self.heads
        self.scale = self.head_dim**-0.5
        self.q = nn.Linear(self.dim, self.dim, bias=bias)
        self.k = nn.Linear(self.dim, self.dim, bias=bias)
        self.v = nn.Linear(self.dim, self.dim, bias=bias)
        self.proj = nn.Linear(self.dim, self.dim, bias=bias)

    def _split(self, h: torch.Tensor, n: torch.Tensor | int) -> torch.Tensor:
        """``(N, T, dim) -> (N, heads, T, head_dim)``."""
        return h.reshape(n, -1, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        q, k, v = self._split(self.q(x), n), self._split(self.k(x), n), self._split(self.v(x), n)
        scores = torch.softmax((q @ k.transpose(-2, -1)) * self.scale, dim=-1)
        out = (scores @ v).transpose(1, 2).reshape(n, -1, self.dim)
        return self.proj(out)


class _TorchAttention(nn.Module):
    """:class:`torch.nn.MultiheadAttention` as self-attention on batch-first tokens."""

    def __init__(self, dim: int, heads: int, bias: bool = True) -> None:
        super().__init__()
        if dim % heads:
            raise FuncspaceError(
                f"heads={heads} must divide dim={dim}; choose dim as a multiple of heads"
            )
        self.mha = nn.MultiheadAttention(dim, heads, bias=bias, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mha(x, x, x, need_weights=False)[0]


class TransformerBlock(nn.Module):
    """Pre-LayerNorm transformer block: ``x + attn(ln1(x))``, then ``x + mlp(ln2(x))``.

    Parameters
    ----------
    dim : int
        Width of the residual stream.
    heads : int
        Attention heads; must divide ``dim``.
    mlp_dim : int
        Hidden width of the feed-forward part ``Linear -> act -> Linear``.
    activation : {"gelu", "relu"}
        Nonlinearity of the feed-forward part.
    attention : {"hand", "torch"}
        :class:`SelfAttention` (written out) or :class:`torch.nn.MultiheadAttention`.
    bias : bool
        Whether the attention projections and the feed-forward layers have biases.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        mlp_dim: int,
        activation: str = "gelu",
        attention: str = "hand",
        bias: bool = True,
    ) -> None:
        super().__init__()
        check_int("dim", dim)
        check_int("mlp_dim", mlp_dim)
        check_choice("activation", activation, TRANSFORMER_ACTIVATIONS)
        check_choice("attention", attention, _VIT_ATTENTIONS)
        self.ln1 = nn.LayerNorm(dim)
        self.attn: nn.Module = (
            SelfAttention(dim, heads, bias)
            if attention == "hand"
            else _TorchAttention(dim, heads, bias)
        )
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_dim, bias=bias),
            nn.GELU() if activation == "gelu" else nn.ReLU(),
            nn.Linear(mlp_dim, dim, bias=bias),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class VisionTransformer(nn.Module):
    """A small vision transformer whose tokens are patches of an image or segments of a signal.

    ``patches -> Linear (patch embedding) [+ class token] + learned positions -> pre-LayerNorm
    blocks -> LayerNorm -> mean over tokens (or the class token) -> Linear``. Images
    ``(N, C, H, W)`` are cut into non-overlapping ``patch_size x patch_size`` squares, signals
    ``(N, C, L)`` or ``(N, L)`` into segments of ``patch_size``; flattened inputs (``(N, C*H*W)``,
    as the digits loader gives by default) are accepted too. The position embedding and the
    class token are parameters, so a permutation of the residual stream is a symmetry of the
    network (a fixed sinusoidal table would forbid it).

    Parameters
    ----------
    input_shape : tuple of int
        ``(channels, height, width)`` for images, ``(channels, length)`` or ``(length,)`` for
        signals; default ``(1, 8, 8)``, the digits.
    patch_size : int
        Side of a square patch (images) or length of a segment (signals); must divide the
        spatial sizes.
    dim : int
        Width of the residual stream.
    depth : int
        Number of :class:`TransformerBlock` (``0`` allowed).
    heads : int
        Attention heads per block; must divide ``dim``.
    mlp_dim : int
        Hidden width of each block's feed-forward part.
    n_classes : int
        Number of outputs.
    activation : {"gelu", "relu"}
        Nonlinearity of the feed-forward parts.
    pool : {"mean", "cls"}
        Mean of the final tokens, or a learned class token prepended to the patches.
    attention : {"hand", "torch"}
        ``"hand"``: :class:`SelfAttention`, attention written out with ``matmul`` (the default:
        vmap-friendly, the evaluation engine batches it); ``"torch"``:
        :class:`torch.nn.MultiheadAttention` (in eval mode its fused kernel has no
        ``torch.func.vmap`` batching rule: batched evaluation runs it point by point, with a
        warning from torch).
    bias : bool
        Whether the linear layers inside the blocks have biases (the patch embedding and the
        head always do).
    seed : int or None
        Seed for a local generator that initialises the parameters; ``None`` uses the global
        RNG. Linear layers follow PyTorch's default, ``nn.MultiheadAttention`` its own (Xavier
        input projection, zero biases), LayerNorms start at one and zero, and the position
        embedding and class token are drawn from ``N(0, 0.02^2)`` truncated at two standard
        deviations, as in ViT.

    Raises
    ------
    FuncspaceError
        If a size is not a positive integer, ``heads`` does not divide ``dim``,
        ``patch_size`` does not divide the spatial sizes, or a name is unknown.

    Examples
    --------
    >>> model = VisionTransformer((1, 8, 8), patch_size=2, dim=16, depth=1, heads=2, seed=0)
    >>> model(torch.zeros(3, 1, 8, 8)).shape, model(torch.zeros(3, 64)).shape
    (torch.Size([3, 10]), torch.Size([3, 10]))
    >>> VisionTransformer((40,), patch_size=4, dim=8, heads=2, seed=0)(torch.zeros(2, 40)).shape
    torch.Size([2, 10])
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 8, 8),
        patch_size: int = 2,
        dim: int = 32,
        depth: int = 2,
        heads: int = 4,
        mlp_dim: int = 64,
        n_classes: int = 10,
        activation: str = "gelu",
        pool: str = "mean",
        attention: str = "hand",
        bias: bool = True,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.input_shape = _check_input_shape(input_shape)
        self.patch_size = check_int("patch_size", patch_size)
        self.dim = check_int("dim", dim)
        self.depth = check_int("depth", depth, minimum=0)
        self.heads = check_int("heads", heads)
        self.mlp_dim = check_int("mlp_dim", mlp_dim)
        self.n_classes = check_int("n_classes", n_classes)
        self.activation = check_choice("activation", activation, TRANSFORMER_ACTIVATIONS)
        self.pool = check_choice("pool", pool, _VIT_POOLS)
        self.attention = check_choice("attention", attention, _VIT_ATTENTIONS)
        _check_seed(seed)
        if self.dim % self.heads:
            raise FuncspaceError(
                f"heads={heads} must divide dim={dim}; choose dim as a multiple of heads"
            )
        channels, *spatial = self.input_shape
        for side in spatial:
            if side % self.patch_size:
                divisors = [p for p in range(1, side + 1) if side % p == 0]
                raise FuncspaceError(
                    f"patch_size={patch_size} does not divide the input size {side} "
                    f"(input_shape={tuple(input_shape)}); use one of {divisors}"
                )
        self._grid = tuple(side // self.patch_size for side in spatial)
        self.n_patches = math.prod(self._grid)
        self.patch_features = channels * self.patch_size ** len(spatial)
        n_tokens = self.n_patches + (self.pool == "cls")
        with _global_rng_untouched(seed):
            self.embed = nn.Linear(self.patch_features, self.dim)
            self.cls_token = (
                nn.Parameter(_token_init(torch.empty(1, 1, self.dim)))
                if self.pool == "cls"
                else None
            )
            self.pos = nn.Parameter(_token_init(torch.empty(1, n_tokens, self.dim)))
            self.blocks = nn.Sequential(
                *(
                    TransformerBlock(
                        self.dim, self.heads, self.mlp_dim, self.activation, self.attention, bias
                    )
                    for _ in range(self.depth)
                )
            )
            self.norm = nn.LayerNorm(self.dim)
            self.head = nn.Linear(self.dim, self.n_classes)
        if seed is not None:
            _reinit_(self, seed)

    def patches(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs ``(N, *input_shape)`` (or flattened) to tokens ``(N, n_patches, features)``."""
        c, p = self.input_shape[0], self.patch_size
        n = x.shape[0]
        if len(self._grid) == 2:
            gh, gw = self._grid
            x = x.reshape(n, c, gh, p, gw, p).permute(0, 2, 4, 1, 3, 5)
        else:
            x = x.reshape(n, c, self._grid[0], p).permute(0, 2, 1, 3)
        return x.reshape(n, self.n_patches, self.patch_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(self.patches(x))
        if self.cls_token is not None:
            h = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), h], dim=1)
        h = self.norm(self.blocks(h + self.pos))
        h = h[:, 0] if self.cls_token is not None else h.mean(dim=1)
        return self.head(h)


# --------------------------------------------------------------------------- registry

_REGISTRY: MappingProxyType[str, Callable[..., nn.Module]] = MappingProxyType(
    {
        "mlp": MLP,
        "cnn": CNN,
        "lenet": lenet,
        "vgg_small": vgg_small,
        "residual_mlp": ResidualMLP,
        "resnet": ResNet,
        "vit": VisionTransformer,
    }
)


def build(name: str, **kwargs: object) -> nn.Module:
    """Build a reference model by name.

    Parameters
    ----------
    name : {"mlp", "cnn", "lenet", "vgg_small", "residual_mlp", "resnet", "vit"}
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
