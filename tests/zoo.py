"""A zoo of tiny architectures written the way popular public model collections write them.

Every entry pairs a float64 eval-mode model (random weights ``randn / sqrt(fan_in)``, random
BatchNorm affine parameters and running statistics, so that no symmetry is hidden by an
initialization that happens to be symmetric) with a hand-written element of its parameter-space
symmetry group. The elements are derived from the mathematics of the layers and written directly
on the state dict of a deep copy; nothing here uses ``canonicalize``, so the zoo can check a
discovery engine against an independent statement of each family's group.

Conventions
-----------
A permutation ``p`` of a group of units makes new unit ``j`` the old unit ``p[j]``: every axis on
which the units live (a producer's output rows and bias, a BatchNorm's parameters and running
statistics, a reader's input columns) is re-indexed by ``p``. A scale ``c`` of a group of units
multiplies what produces them and divides the columns of what reads them. The elementary
symmetries used are

* permutations of the units of a layer, everywhere they live;
* positive scales ``c = exp(U[-2, 2])`` of a ReLU unit (ReLU, max pooling, average pooling and
  flattening commute with ``c > 0``);
* a non-zero scale ``a`` (either sign) of a convolution that feeds a BatchNorm: the BatchNorm
  reads ``a * z``, and ``running_mean -> a * running_mean``,
  ``running_var -> a**2 * (running_var + eps) - eps``, ``weight -> sign(a) * weight`` give the
  same output;
* a translation ``t`` of a convolution bias read only by a BatchNorm, absorbed in
  ``running_mean + t``;
* sign flips of odd activations (hardtanh, softsign), and non-zero scales of units no
  nonlinearity touches (a linear bottleneck, the residual stream of a pre-activation network);
* in transformers: a permutation of the residual stream through every LayerNorm (LayerNorm is
  permutation-equivariant; its gain and bias permute, so do the class token and position
  embedding held as parameters, and a token embedding tied to the output layer takes one
  permutation), a non-zero scale per feature shared by a LayerNorm's gain and bias and the
  columns of its readers, whole heads permuted as blocks (query, key and value rows and the
  output projection's columns), inside each head one permutation of the query and key
  features and one of the value features with a non-zero scale per value feature (attention
  mixes tokens, not features). The continuous per-head groups (``W_Q -> A W_Q``,
  ``W_K -> A^-T W_K``; ``W_V -> B W_V``, ``W_O,h -> W_O,h B^-1``) are true symmetries too but
  are not used here.

``ZOO`` holds the eighteen entries (the last three are transformers, one on token ids);
``EXTRAS`` holds further true symmetries of some entries that lie outside the
permutation/scale/BatchNorm families above (bias exchanges between the two summands of a
residual addition, a bias shift absorbed by a 1x1 convolution, the logit shift of
``log_softmax``, the full linear group of an eval-mode linear bottleneck, the invertible maps of
each attention head, the key bias and the value bias folded into the output bias).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

DTYPE = torch.float64

__all__ = [
    "EXTRAS",
    "ZOO",
    "At",
    "ExtraElement",
    "ZooEntry",
    "entry",
    "example_input",
]


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


class VGG(nn.Module):
    """VGG with BatchNorm in the style of kuangliu/pytorch-cifar ``models/vgg.py``.

    Parameters
    ----------
    cfg : Sequence[int | str]
        Output channels of each 3x3 convolution; ``"M"`` is a 2x2 max pool.
    size : int
        Side of the square input image.
    num_classes : int
        Number of outputs.
    """

    def __init__(
        self, cfg: Sequence[int | str] = (4, "M", 6, "M", 8, 8), size: int = 8, num_classes: int = 5
    ) -> None:
        super().__init__()
        self.features = self._make_layers(cfg)
        channels = [x for x in cfg if x != "M"][-1]
        side = size // 2 ** list(cfg).count("M")
        self.classifier = nn.Linear(int(channels) * side * side, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.features(x)
        out = out.view(out.size(0), -1)
        out = self.classifier(out)
        return out

    def _make_layers(self, cfg: Sequence[int | str]) -> nn.Sequential:
        layers: list[nn.Module] = []
        in_channels = 3
        for x in cfg:
            if x == "M":
                layers += [nn.MaxPool2d(kernel_size=2, stride=2)]
            else:
                layers += [
                    nn.Conv2d(in_channels, int(x), kernel_size=3, padding=1),
                    nn.BatchNorm2d(int(x)),
                    nn.ReLU(inplace=True),
                ]
                in_channels = int(x)
        layers += [nn.AvgPool2d(kernel_size=1, stride=1)]
        return nn.Sequential(*layers)


class LambdaLayer(nn.Module):
    """A function as a module, as akamaster/pytorch_resnet_cifar10 wraps its option-A shortcut.

    Parameters
    ----------
    lambd : Callable[[Tensor], Tensor]
        The function applied in ``forward``.
    """

    def __init__(self, lambd: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.lambd = lambd

    def forward(self, x: Tensor) -> Tensor:
        return self.lambd(x)


class BasicBlock(nn.Module):
    """CIFAR ResNet basic block in the style of akamaster/pytorch_resnet_cifar10 ``resnet.py``.

    Parameters
    ----------
    in_planes, planes : int
        Input and output channels.
    stride : int
        Stride of the first convolution (and of the shortcut).
    option : str
        ``"A"``: parameter-free shortcut that subsamples and zero-pads ``planes // 4`` channels
        on each side; ``"B"``: 1x1 convolution and BatchNorm.
    """

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, option: str = "A") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(
            in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False
        )
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)

        self.shortcut: nn.Module = nn.Sequential()
        if stride != 1 or in_planes != planes:
            if option == "A":
                self.shortcut = LambdaLayer(
                    lambda x: F.pad(
                        x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4), "constant", 0
                    )
                )
            elif option == "B":
                self.shortcut = nn.Sequential(
                    nn.Conv2d(
                        in_planes, self.expansion * planes, kernel_size=1, stride=stride, bias=False
                    ),
                    nn.BatchNorm2d(self.expansion * planes),
                )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        out = F.relu(out)
        return out


class CifarResNet(nn.Module):
    """Three-stage CIFAR ResNet in the style of akamaster/pytorch_resnet_cifar10 ``resnet.py``.

    Parameters
    ----------
    num_blocks : Sequence[int]
        Blocks per stage (``(3, 3, 3)`` is ResNet-20; the zoo uses one block per stage).
    widths : Sequence[int]
        Channels of the three stages; the second and third stages stride 2.
    option : str
        Shortcut option of the blocks that change the width (see ``BasicBlock``).
    num_classes : int
        Number of outputs.
    """

    def __init__(
        self,
        num_blocks: Sequence[int] = (1, 1, 1),
        widths: Sequence[int] = (4, 8, 16),
        option: str = "A",
        num_classes: int = 5,
    ) -> None:
        super().__init__()
        self.option = option
        self.in_planes = widths[0]
        self.conv1 = nn.Conv2d(3, widths[0], kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.layer1 = self._make_layer(widths[0], num_blocks[0], stride=1)
        self.layer2 = self._make_layer(widths[1], num_blocks[1], stride=2)
        self.layer3 = self._make_layer(widths[2], num_blocks[2], stride=2)
        self.linear = nn.Linear(widths[2], num_classes)

    def _make_layer(self, planes: int, num_blocks: int, stride: int) -> nn.Sequential:
        strides = [stride] + [1] * (num_blocks - 1)
        layers = []
        for s in strides:
            layers.append(BasicBlock(self.in_planes, planes, s, self.option))
            self.in_planes = planes * BasicBlock.expansion
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer1(out)
        out = self.layer2(out)
        out = self.layer3(out)
        out = F.avg_pool2d(out, out.size()[3])
        out = out.view(out.size(0), -1)
        out = self.linear(out)
        return out


class PreActBlock(nn.Module):
    """Pre-activation block in the style of kuangliu/pytorch-cifar ``models/preact_resnet.py``.

    Parameters
    ----------
    in_planes, planes : int
        Input and output channels.
    stride : int
        Stride of the first convolution; with a width change it also adds a 1x1 shortcut
        convolution that reads the pre-activated input.
    """

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(
            in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False
        )
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)

        if stride != 1 or in_planes != self.expansion * planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(
                    in_planes, self.expansion * planes, kernel_size=1, stride=stride, bias=False
                )
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if hasattr(self, "shortcut") else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        out += shortcut
        return out


class PreActResNet(nn.Module):
    """Pre-activation ResNet with a final BatchNorm, as in kuangliu/pytorch-cifar's blocks.

    The final ``bn`` + ReLU before pooling follows the pre-activation ResNets that end with a
    BatchNorm (He et al. 2016, and most reimplementations of it).

    Parameters
    ----------
    widths : Sequence[int]
        Channels of the stem/first block and of the second (stride 2) block.
    num_classes : int
        Number of outputs.
    """

    def __init__(self, widths: Sequence[int] = (4, 8), num_classes: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], kernel_size=3, stride=1, padding=1, bias=False)
        self.layer1 = nn.Sequential(PreActBlock(widths[0], widths[0], stride=1))
        self.layer2 = nn.Sequential(PreActBlock(widths[0], widths[1], stride=2))
        self.bn = nn.BatchNorm2d(widths[1])
        self.linear = nn.Linear(widths[1], num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(x)
        out = self.layer1(out)
        out = self.layer2(out)
        out = F.relu(self.bn(out))
        out = F.avg_pool2d(out, 4)
        out = out.view(out.size(0), -1)
        out = self.linear(out)
        return out


class WideBasic(nn.Module):
    """``wide_basic`` of meliketoy/wide-resnet.pytorch: dropout between conv1 and bn2.

    Parameters
    ----------
    in_planes, planes : int
        Input and output channels.
    dropout_rate : float
        Dropout probability (identity in eval mode).
    stride : int
        Stride of the second convolution and of the 1x1 shortcut convolution.
    """

    def __init__(self, in_planes: int, planes: int, dropout_rate: float, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, padding=1, bias=True)
        self.dropout = nn.Dropout(p=dropout_rate)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=True)

        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=True),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.dropout(self.conv1(F.relu(self.bn1(x))))
        out = self.conv2(F.relu(self.bn2(out)))
        out += self.shortcut(x)
        return out


class WideResNet(nn.Module):
    """Wide ResNet in the style of meliketoy/wide-resnet.pytorch ``networks/wide_resnet.py``.

    Each ``WideBasic`` holds the chain ``Conv2d(bias=True) -> nn.Dropout -> BatchNorm2d``.

    Parameters
    ----------
    widths : Sequence[int]
        Channels of the stem/first stage and of the second (stride 2) stage.
    dropout_rate : float
        Dropout probability inside the blocks.
    num_classes : int
        Number of outputs.
    """

    def __init__(
        self, widths: Sequence[int] = (4, 8), dropout_rate: float = 0.3, num_classes: int = 5
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], kernel_size=3, stride=1, padding=1, bias=True)
        self.layer1 = nn.Sequential(WideBasic(widths[0], widths[0], dropout_rate, stride=1))
        self.layer2 = nn.Sequential(WideBasic(widths[0], widths[1], dropout_rate, stride=2))
        self.bn1 = nn.BatchNorm2d(widths[1], momentum=0.9)
        self.linear = nn.Linear(widths[1], num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(x)
        out = self.layer1(out)
        out = self.layer2(out)
        out = F.relu(self.bn1(out))
        out = F.avg_pool2d(out, 4)
        out = out.view(out.size(0), -1)
        out = self.linear(out)
        return out


class MobileBlock(nn.Module):
    """Inverted residual in the style of kuangliu/pytorch-cifar ``models/mobilenetv2.py``.

    Expand (1x1) -> depthwise (3x3, ``groups=planes``) -> project (1x1), each with BatchNorm;
    no activation after the projection (linear bottleneck); a residual only when
    ``stride == 1``, through a 1x1 convolution + BatchNorm when the width changes.

    Parameters
    ----------
    in_planes, out_planes : int
        Input and output channels.
    expansion : int
        Expanded channels are ``expansion * in_planes``.
    stride : int
        Stride of the depthwise convolution.
    """

    def __init__(self, in_planes: int, out_planes: int, expansion: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        planes = expansion * in_planes
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=1, stride=1, padding=0, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(
            planes, planes, kernel_size=3, stride=stride, padding=1, groups=planes, bias=False
        )
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, kernel_size=1, stride=1, padding=0, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)

        self.shortcut = nn.Sequential()
        if stride == 1 and in_planes != out_planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=1, padding=0, bias=False),
                nn.BatchNorm2d(out_planes),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out = out + self.shortcut(x) if self.stride == 1 else out
        return out


class MobileNetV2(nn.Module):
    """MobileNetV2 in the style of kuangliu/pytorch-cifar ``models/mobilenetv2.py``.

    Parameters
    ----------
    cfg : Sequence[tuple[int, int, int, int]]
        ``(expansion, out_planes, num_blocks, stride)`` per stage.
    num_classes : int
        Number of outputs.
    """

    def __init__(
        self,
        cfg: Sequence[tuple[int, int, int, int]] = ((1, 4, 1, 1), (2, 6, 1, 1), (1, 8, 1, 2)),
        num_classes: int = 5,
    ) -> None:
        super().__init__()
        self.cfg = tuple(cfg)
        self.conv1 = nn.Conv2d(3, 4, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.layers = self._make_layers(in_planes=4)
        last = self.cfg[-1][1]
        self.conv2 = nn.Conv2d(last, 8, kernel_size=1, stride=1, padding=0, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.linear = nn.Linear(8, num_classes)

    def _make_layers(self, in_planes: int) -> nn.Sequential:
        layers = []
        for expansion, out_planes, num_blocks, stride in self.cfg:
            strides = [stride] + [1] * (num_blocks - 1)
            for s in strides:
                layers.append(MobileBlock(in_planes, out_planes, expansion, s))
                in_planes = out_planes
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layers(out)
        out = F.relu(self.bn2(self.conv2(out)))
        out = F.avg_pool2d(out, 4)
        out = out.view(out.size(0), -1)
        out = self.linear(out)
        return out


class ResNeXtBlock(nn.Module):
    """Grouped-convolution bottleneck in the style of kuangliu/pytorch-cifar ``models/resnext.py``.

    1x1 conv -> BN -> ReLU -> 3x3 conv with ``groups=cardinality`` -> BN -> ReLU -> 1x1 conv ->
    BN, plus a 1x1 conv + BN shortcut when the shape changes, summed in place and ReLU'd.

    Parameters
    ----------
    in_planes : int
        Input channels.
    cardinality : int
        Number of groups of the 3x3 convolution.
    bottleneck_width : int
        Channels per group (the grouped conv has ``cardinality * bottleneck_width`` channels).
    stride : int
        Stride of the grouped convolution.
    """

    expansion = 2

    def __init__(
        self, in_planes: int, cardinality: int, bottleneck_width: int, stride: int = 1
    ) -> None:
        super().__init__()
        group_width = cardinality * bottleneck_width
        self.conv1 = nn.Conv2d(in_planes, group_width, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(group_width)
        self.conv2 = nn.Conv2d(
            group_width,
            group_width,
            kernel_size=3,
            stride=stride,
            padding=1,
            groups=cardinality,
            bias=False,
        )
        self.bn2 = nn.BatchNorm2d(group_width)
        self.conv3 = nn.Conv2d(group_width, self.expansion * group_width, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(self.expansion * group_width)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != self.expansion * group_width:
            self.shortcut = nn.Sequential(
                nn.Conv2d(
                    in_planes,
                    self.expansion * group_width,
                    kernel_size=1,
                    stride=stride,
                    bias=False,
                ),
                nn.BatchNorm2d(self.expansion * group_width),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += self.shortcut(x)
        out = F.relu(out)
        return out


class ResNeXt(nn.Module):
    """Two-stage ResNeXt in the style of kuangliu/pytorch-cifar ``models/resnext.py``.

    The bottleneck width doubles from stage to stage, as there; ``cardinality=2`` with widths
    2 and 3 keeps it tiny while every block of the grouped convolutions has several channels.
    """

    def __init__(self, cardinality: int = 2, bottleneck_width: int = 2, num_classes: int = 5):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.layer1 = nn.Sequential(ResNeXtBlock(4, cardinality, bottleneck_width, 1))
        planes = ResNeXtBlock.expansion * cardinality * bottleneck_width
        self.layer2 = nn.Sequential(ResNeXtBlock(planes, cardinality, bottleneck_width + 1, 2))
        planes = ResNeXtBlock.expansion * cardinality * (bottleneck_width + 1)
        self.linear = nn.Linear(planes, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer1(out)
        out = self.layer2(out)
        out = F.avg_pool2d(out, 4)
        out = out.view(out.size(0), -1)
        out = self.linear(out)
        return out


class Bottleneck(nn.Module):
    """DenseNet bottleneck in the style of kuangliu/pytorch-cifar ``models/densenet.py``.

    Parameters
    ----------
    in_planes : int
        Channels of the concatenation it reads.
    growth_rate : int
        Channels it prepends to the concatenation.
    """

    def __init__(self, in_planes: int, growth_rate: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, 4 * growth_rate, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * growth_rate)
        self.conv2 = nn.Conv2d(4 * growth_rate, growth_rate, kernel_size=3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        out = torch.cat([out, x], 1)
        return out


class Transition(nn.Module):
    """DenseNet transition in the style of kuangliu/pytorch-cifar ``models/densenet.py``.

    Parameters
    ----------
    in_planes, out_planes : int
        Input and output channels.
    """

    def __init__(self, in_planes: int, out_planes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(in_planes)
        self.conv = nn.Conv2d(in_planes, out_planes, kernel_size=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(F.relu(self.bn(x)))
        out = F.avg_pool2d(out, 2)
        return out


class DenseNet(nn.Module):
    """One dense block + transition in the style of kuangliu/pytorch-cifar ``densenet.py``.

    Parameters
    ----------
    nblocks : int
        Bottlenecks in the dense block.
    growth_rate : int
        Channels each bottleneck adds.
    reduction : float
        Channel reduction of the transition.
    num_classes : int
        Number of outputs.
    """

    def __init__(
        self, nblocks: int = 2, growth_rate: int = 2, reduction: float = 0.5, num_classes: int = 5
    ) -> None:
        super().__init__()
        self.growth_rate = growth_rate
        num_planes = 2 * growth_rate
        self.conv1 = nn.Conv2d(3, num_planes, kernel_size=3, padding=1, bias=False)
        self.dense1 = self._make_dense_layers(num_planes, nblocks)
        num_planes += nblocks * growth_rate
        out_planes = int(math.floor(num_planes * reduction))
        self.trans1 = Transition(num_planes, out_planes)
        self.bn = nn.BatchNorm2d(out_planes)
        self.linear = nn.Linear(out_planes, num_classes)

    def _make_dense_layers(self, in_planes: int, nblock: int) -> nn.Sequential:
        layers = []
        for _ in range(nblock):
            layers.append(Bottleneck(in_planes, self.growth_rate))
            in_planes += self.growth_rate
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(x)
        out = self.trans1(self.dense1(out))
        out = F.avg_pool2d(F.relu(self.bn(out)), 4)
        out = out.view(out.size(0), -1)
        out = self.linear(out)
        return out


class Inception(nn.Module):
    """GoogLeNet inception module in the style of kuangliu/pytorch-cifar ``models/googlenet.py``.

    Parameters
    ----------
    in_planes : int
        Input channels.
    n1x1, n3x3red, n3x3, n5x5red, n5x5, pool_planes : int
        Widths of the four branches (the "5x5" branch is two 3x3 convolutions, as kuangliu's).
    """

    def __init__(
        self,
        in_planes: int,
        n1x1: int,
        n3x3red: int,
        n3x3: int,
        n5x5red: int,
        n5x5: int,
        pool_planes: int,
    ) -> None:
        super().__init__()
        self.b1 = nn.Sequential(
            nn.Conv2d(in_planes, n1x1, kernel_size=1),
            nn.BatchNorm2d(n1x1),
            nn.ReLU(True),
        )
        self.b2 = nn.Sequential(
            nn.Conv2d(in_planes, n3x3red, kernel_size=1),
            nn.BatchNorm2d(n3x3red),
            nn.ReLU(True),
            nn.Conv2d(n3x3red, n3x3, kernel_size=3, padding=1),
            nn.BatchNorm2d(n3x3),
            nn.ReLU(True),
        )
        self.b3 = nn.Sequential(
            nn.Conv2d(in_planes, n5x5red, kernel_size=1),
            nn.BatchNorm2d(n5x5red),
            nn.ReLU(True),
            nn.Conv2d(n5x5red, n5x5, kernel_size=3, padding=1),
            nn.BatchNorm2d(n5x5),
            nn.ReLU(True),
            nn.Conv2d(n5x5, n5x5, kernel_size=3, padding=1),
            nn.BatchNorm2d(n5x5),
            nn.ReLU(True),
        )
        self.b4 = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1),
            nn.Conv2d(in_planes, pool_planes, kernel_size=1),
            nn.BatchNorm2d(pool_planes),
            nn.ReLU(True),
        )

    def forward(self, x: Tensor) -> Tensor:
        y1 = self.b1(x)
        y2 = self.b2(x)
        y3 = self.b3(x)
        y4 = self.b4(x)
        return torch.cat([y1, y2, y3, y4], 1)


class GoogLeNet(nn.Module):
    """Stem + one inception module in the style of kuangliu/pytorch-cifar ``googlenet.py``.

    Parameters
    ----------
    num_classes : int
        Number of outputs.
    """

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.pre_layers = nn.Sequential(
            nn.Conv2d(3, 4, kernel_size=3, padding=1),
            nn.BatchNorm2d(4),
            nn.ReLU(True),
        )
        self.a3 = Inception(4, 2, 3, 4, 2, 3, 2)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.avgpool = nn.AvgPool2d(4, stride=1)
        self.linear = nn.Linear(2 + 4 + 3 + 2, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.pre_layers(x)
        out = self.a3(out)
        out = self.maxpool(out)
        out = self.avgpool(out)
        out = out.view(out.size(0), -1)
        out = self.linear(out)
        return out


class SEBasicBlock(nn.Module):
    """Squeeze-and-excitation block in the style of kuangliu/pytorch-cifar ``models/senet.py``.

    kuangliu calls it ``BasicBlock`` and uses ``F.sigmoid``; this one uses ``torch.sigmoid``.

    Parameters
    ----------
    in_planes, planes : int
        Input and output channels.
    stride : int
        Stride of the first convolution and of the shortcut.
    reduction : int
        The gate's hidden width is ``planes // reduction``.
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1, reduction: int = 2) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(
            in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False
        )
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)

        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )

        # SE layers: 1x1 convolutions instead of nn.Linear
        self.fc1 = nn.Conv2d(planes, planes // reduction, kernel_size=1)
        self.fc2 = nn.Conv2d(planes // reduction, planes, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))

        # Squeeze
        w = F.avg_pool2d(out, out.size(2))
        w = F.relu(self.fc1(w))
        w = torch.sigmoid(self.fc2(w))
        # Excitation
        out = out * w

        out += self.shortcut(x)
        out = F.relu(out)
        return out


class SENet(nn.Module):
    """Two-block SENet in the style of kuangliu/pytorch-cifar ``models/senet.py``.

    Parameters
    ----------
    num_classes : int
        Number of outputs.
    """

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.layer1 = nn.Sequential(SEBasicBlock(4, 4, stride=1))
        self.layer2 = nn.Sequential(SEBasicBlock(4, 8, stride=2))
        self.linear = nn.Linear(8, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer1(out)
        out = self.layer2(out)
        out = F.avg_pool2d(out, 4)
        out = out.view(out.size(0), -1)
        out = self.linear(out)
        return out


class MLPWithLoss(nn.Module):
    """Tutorial-style MLP that keeps its loss and a spare head as attributes.

    Imitates the common PyTorch-tutorial / Lightning-example habit of storing
    ``self.criterion`` on the model; ``aux_head`` is never called by ``forward``.

    Parameters
    ----------
    sizes : Sequence[int]
        Input, two hidden widths, output.
    """

    def __init__(self, sizes: Sequence[int] = (6, 8, 8, 3)) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(sizes[0], sizes[1]),
            nn.ReLU(),
            nn.Linear(sizes[1], sizes[2]),
            nn.ReLU(),
            nn.Linear(sizes[2], sizes[3]),
        )
        self.criterion = nn.CrossEntropyLoss()
        self.aux_head = nn.Linear(sizes[2], 5)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def loss(self, x: Tensor, target: Tensor) -> Tensor:
        """Cross-entropy of ``forward(x)`` against class indices ``target``."""
        return self.criterion(self(x), target)


class MnistNet(nn.Module):
    """The ``Net`` of pytorch/examples ``mnist/main.py``, shrunk to 8x8 inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, 1)
        self.conv2 = nn.Conv2d(4, 6, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(6 * 2 * 2, 8)
        self.fc2 = nn.Linear(8, 5)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        x = F.relu(x)
        x = self.conv2(x)
        x = F.relu(x)
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = self.fc1(x)
        x = F.relu(x)
        x = self.dropout2(x)
        x = self.fc2(x)
        output = F.log_softmax(x, dim=1)
        return output


class MixedActivationMLP(nn.Module):
    """MLP mixing ``F.silu``, ``nn.Hardtanh`` and ``nn.Softsign``, as hand-written models do."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(5, 8)
        self.fc2 = nn.Linear(8, 8)
        self.act2 = nn.Hardtanh()
        self.fc3 = nn.Linear(8, 6)
        self.act3 = nn.Softsign()
        self.fc4 = nn.Linear(6, 3)

    def forward(self, x: Tensor) -> Tensor:
        x = F.silu(self.fc1(x))
        x = self.act2(self.fc2(x))
        x = self.act3(self.fc3(x))
        return self.fc4(x)


class AssertingCNN(nn.Module):
    """A CNN that checks its input and pools by shape, as many research scripts do.

    ``torch.fx.symbolic_trace`` cannot trace it: the assert and the ``if`` need concrete sizes.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(4, 6, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(6 * 2 * 2, 8)
        self.fc2 = nn.Linear(8, 5)

    def forward(self, x: Tensor) -> Tensor:
        assert x.dim() == 4 and x.size(1) == 3, "expected NCHW"
        x = F.relu(self.conv1(x))
        if x.size(-1) > 4:
            x = self.pool(x)
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        return self.fc2(x)


class PatchEmbed(nn.Module):
    """Image to patch tokens in the style of timm ``layers/patch_embed.py``: a strided conv.

    Parameters
    ----------
    img_size, patch_size : int
        Side of the square image and of a patch.
    in_chans, embed_dim : int
        Input channels and token width.
    """

    def __init__(
        self, img_size: int = 8, patch_size: int = 4, in_chans: int = 3, embed_dim: int = 8
    ):
        super().__init__()
        self.img_size = (img_size, img_size)
        self.num_patches = (img_size // patch_size) ** 2
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        assert H == self.img_size[0] and W == self.img_size[1], (
            f"Input size ({H}*{W}) doesn't match model ({self.img_size[0]}*{self.img_size[1]})."
        )
        x = self.proj(x).flatten(2).transpose(1, 2)  # BCHW -> BNC
        return x


class TimmAttention(nn.Module):
    """Self-attention of timm ``models/vision_transformer.py``: one packed ``qkv`` projection,
    ``reshape(B, N, 3, heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)``, queries scaled
    before ``q @ k.transpose(-2, -1)``.

    Parameters
    ----------
    dim : int
        Token width.
    num_heads : int
        Heads; must divide ``dim`` (asserted, as timm does).
    qkv_bias : bool
        Whether the packed projection has a bias.
    """

    def __init__(self, dim: int, num_heads: int = 2, qkv_bias: bool = True) -> None:
        super().__init__()
        assert dim % num_heads == 0, "dim should be divisible by num_heads"
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(0.1)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(0.1)

    def forward(self, x: Tensor) -> Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q = q * self.scale
        attn = q @ k.transpose(-2, -1)
        attn = attn.softmax(dim=-1)
        attn = self.attn_drop(attn)
        x = attn @ v
        x = x.transpose(1, 2).reshape(B, N, C)
        x = self.proj(x)
        x = self.proj_drop(x)
        return x


class TimmMlp(nn.Module):
    """timm's ``Mlp``: ``fc1 -> GELU -> Dropout -> fc2 -> Dropout``."""

    def __init__(self, in_features: int, hidden_features: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(0.1)
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop2 = nn.Dropout(0.1)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


class TimmBlock(nn.Module):
    """timm's pre-norm ``Block`` (no LayerScale, no drop path)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = TimmAttention(dim, num_heads=num_heads, qkv_bias=True)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = TimmMlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        x = x + self.mlp(self.norm2(x))
        return x


class TimmViT(nn.Module):
    """A two-block vision transformer in the style of timm ``models/vision_transformer.py``.

    Conv patch embedding, a class token concatenated in front, a learned position embedding
    (``nn.Parameter``) added, pre-norm blocks, a final LayerNorm and a head on the class token.
    ``torch.fx.symbolic_trace`` cannot trace it: ``B, N, C = x.shape`` and the size assert.

    Parameters
    ----------
    img_size, patch_size, in_chans, embed_dim, depth, num_heads : int
        As timm's.
    num_classes : int
        Number of outputs.
    """

    def __init__(
        self,
        img_size: int = 8,
        patch_size: int = 4,
        in_chans: int = 3,
        embed_dim: int = 8,
        depth: int = 2,
        num_heads: int = 2,
        num_classes: int = 5,
    ) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        num_patches = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim))
        self.pos_drop = nn.Dropout(p=0.1)
        self.blocks = nn.Sequential(*[TimmBlock(embed_dim, num_heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = nn.Linear(embed_dim, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        x = self.pos_drop(x + self.pos_embed)
        x = self.blocks(x)
        x = self.norm(x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        x = self.forward_features(x)
        return self.head(x[:, 0])


class CausalSelfAttention(nn.Module):
    """Causal attention as small GPT ports write it: separate ``q_proj``, ``k_proj``,
    ``v_proj``, heads by ``view``/``transpose``, ``F.scaled_dot_product_attention(...,
    is_causal=True)``, ``o_proj``.

    Parameters
    ----------
    n_embd, n_head : int
        Width and heads.
    bias : bool
        Whether the projections have biases.
    """

    def __init__(self, n_embd: int, n_head: int, bias: bool = True) -> None:
        super().__init__()
        assert n_embd % n_head == 0
        self.n_head = n_head
        self.q_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.k_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.v_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.o_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.dropout = 0.1

    def forward(self, x: Tensor) -> Tensor:
        B, T, C = x.size()
        q = self.q_proj(x).view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True
        )
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.o_proj(y)


class GPTBlock(nn.Module):
    """Pre-norm GPT block with GPT-2's tanh-approximated GELU, called functionally."""

    def __init__(self, n_embd: int, n_head: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.c_fc = nn.Linear(n_embd, 4 * n_embd)
        self.c_proj = nn.Linear(4 * n_embd, n_embd)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x))
        x = x + self.c_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))
        return x


class TinyGPT(nn.Module):
    """A decoder on token ids in the style of minGPT: token embedding, a position embedding held
    as ``nn.Parameter`` and sliced to the length, causal blocks, ``ln_f`` and an output layer
    tied to the token embedding; returns the next-token logits of the last position (with two
    blocks, so that the causal mask matters to them).

    Parameters
    ----------
    vocab_size, block_size, n_embd, n_head, n_layer : int
        Vocabulary, longest sequence, width, heads, blocks.
    """

    def __init__(
        self,
        vocab_size: int = 11,
        block_size: int = 6,
        n_embd: int = 8,
        n_head: int = 2,
        n_layer: int = 2,
    ) -> None:
        super().__init__()
        self.block_size = block_size
        self.tok_emb = nn.Embedding(vocab_size, n_embd)
        self.pos_emb = nn.Parameter(torch.zeros(1, block_size, n_embd))
        self.drop = nn.Dropout(0.1)
        self.blocks = nn.ModuleList([GPTBlock(n_embd, n_head) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, vocab_size, bias=False)
        self.tie_weights()

    def tie_weights(self) -> None:
        """Share the token embedding with the output layer (Hugging Face's name for it)."""
        self.head.weight = self.tok_emb.weight

    def forward(self, idx: Tensor) -> Tensor:
        b, t = idx.size()
        assert t <= self.block_size, "Cannot forward, model block size is exhausted."
        x = self.drop(self.tok_emb(idx) + self.pos_emb[:, :t, :])
        for block in self.blocks:
            x = block(x)
        x = self.ln_f(x)
        return self.head(x[:, -1, :])


class Rearrange(nn.Module):
    """einops' ``Rearrange('b c (h p1) (w p2) -> b (h w) (p1 p2 c)')`` layer, written out.

    Parameters
    ----------
    p1, p2 : int
        Patch height and width.
    """

    def __init__(self, p1: int, p2: int) -> None:
        super().__init__()
        self.p1, self.p2 = p1, p2

    def forward(self, x: Tensor) -> Tensor:
        b, c, hh, ww = x.shape
        h, w = hh // self.p1, ww // self.p2
        x = x.reshape(b, c, h, self.p1, w, self.p2).permute(0, 2, 4, 3, 5, 1)
        return x.reshape(b, h * w, self.p1 * self.p2 * c)


class FeedForward(nn.Module):
    """lucidrains/vit-pytorch ``FeedForward``: its own pre-LayerNorm inside an ``nn.Sequential``."""

    def __init__(self, dim: int, hidden_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(dim),
            nn.Linear(dim, hidden_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class LucidAttention(nn.Module):
    """lucidrains/vit-pytorch ``Attention``: a LayerNorm inside, ``to_qkv`` without bias split by
    ``chunk(3, dim=-1)``, heads of ``dim_head`` (``heads * dim_head`` need not equal ``dim``),
    ``nn.Softmax`` as a module, ``to_out`` in an ``nn.Sequential`` (einops replaced by
    ``reshape``/``transpose``)."""

    def __init__(self, dim: int, heads: int = 2, dim_head: int = 3, dropout: float = 0.0):
        super().__init__()
        inner_dim = dim_head * heads
        self.heads = heads
        self.scale = dim_head**-0.5
        self.norm = nn.LayerNorm(dim)
        self.attend = nn.Softmax(dim=-1)
        self.dropout = nn.Dropout(dropout)
        self.to_qkv = nn.Linear(dim, inner_dim * 3, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner_dim, dim), nn.Dropout(dropout))

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm(x)
        qkv = self.to_qkv(x).chunk(3, dim=-1)
        b, n, _ = x.shape
        q, k, v = map(lambda t: t.reshape(b, n, self.heads, -1).transpose(1, 2), qkv)
        dots = torch.matmul(q, k.transpose(-1, -2)) * self.scale
        attn = self.attend(dots)
        attn = self.dropout(attn)
        out = torch.matmul(attn, v)
        out = out.transpose(1, 2).reshape(b, n, -1)
        return self.to_out(out)


class LucidTransformer(nn.Module):
    """lucidrains/vit-pytorch ``Transformer``: ``ModuleList`` of ``[attn, ff]`` pairs, residuals
    written ``attn(x) + x``, a final LayerNorm."""

    def __init__(self, dim: int, depth: int, heads: int, dim_head: int, mlp_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.layers = nn.ModuleList([])
        for _ in range(depth):
            self.layers.append(
                nn.ModuleList(
                    [LucidAttention(dim, heads=heads, dim_head=dim_head), FeedForward(dim, mlp_dim)]
                )
            )

    def forward(self, x: Tensor) -> Tensor:
        for attn, ff in self.layers:
            x = attn(x) + x
            x = ff(x) + x
        return self.norm(x)


class LucidViT(nn.Module):
    """lucidrains/vit-pytorch ``ViT``: patches rearranged, LayerNorm on the raw patch, Linear,
    LayerNorm; class token and position embedding as ``nn.Parameter`` (``x +=`` in place);
    mean pooling; ``mlp_head``.

    Parameters
    ----------
    image_size, patch_size, num_classes, dim, depth, heads, mlp_dim, channels, dim_head : int
        As vit-pytorch's.
    pool : str
        ``"cls"`` or ``"mean"``.
    """

    def __init__(
        self,
        image_size: int = 8,
        patch_size: int = 4,
        num_classes: int = 5,
        dim: int = 8,
        depth: int = 2,
        heads: int = 2,
        mlp_dim: int = 12,
        pool: str = "mean",
        channels: int = 3,
        dim_head: int = 3,
    ) -> None:
        super().__init__()
        num_patches = (image_size // patch_size) ** 2
        patch_dim = channels * patch_size * patch_size
        self.to_patch_embedding = nn.Sequential(
            Rearrange(patch_size, patch_size),
            nn.LayerNorm(patch_dim),
            nn.Linear(patch_dim, dim),
            nn.LayerNorm(dim),
        )
        self.pos_embedding = nn.Parameter(torch.zeros(1, num_patches + 1, dim))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.dropout = nn.Dropout(0.1)
        self.transformer = LucidTransformer(dim, depth, heads, dim_head, mlp_dim)
        self.pool = pool
        self.to_latent = nn.Identity()
        self.mlp_head = nn.Linear(dim, num_classes)

    def forward(self, img: Tensor) -> Tensor:
        x = self.to_patch_embedding(img)
        b, n, _ = x.shape
        cls_tokens = self.cls_token.expand(b, -1, -1)  # einops: repeat '1 1 d -> b 1 d'
        x = torch.cat((cls_tokens, x), dim=1)
        x += self.pos_embedding[:, : (n + 1)]
        x = self.dropout(x)
        x = self.transformer(x)
        x = x.mean(dim=1) if self.pool == "mean" else x[:, 0]
        x = self.to_latent(x)
        return self.mlp_head(x)


# --------------------------------------------------------------------------------------------
# Building: meta-device construction (no global RNG), then every tensor from a seeded generator
# --------------------------------------------------------------------------------------------

_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
# Parameters the transformers hold directly (not inside a layer): class tokens and position
# embeddings.
_TOKEN_PARAMETERS = ("cls_token", "pos_embed", "pos_emb", "pos_embedding")


def _randomize(model: nn.Module, gen: torch.Generator) -> None:
    """Fill every parameter and buffer of ``model`` (float64, CPU) from ``gen``.

    Convolutions and linear layers: weight and bias ``randn / sqrt(fan_in)``. BatchNorms:
    weight and bias ``randn``, ``running_mean ~ randn``, ``running_var ~ 0.5 + rand``.
    LayerNorms (weight and bias), embeddings and the transformers' own token parameters
    (:data:`_TOKEN_PARAMETERS`): ``randn``. A weight tied to an embedding is filled once.
    """
    filled: set[int] = set()

    def fill(t: Tensor, values: Tensor) -> None:
        t.copy_(values)
        filled.add(id(t))

    def randn(t: Tensor) -> Tensor:
        return torch.randn(t.shape, generator=gen, dtype=DTYPE)

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                if id(m.weight) not in filled:  # an output layer tied to an embedding
                    fill(m.weight, randn(m.weight) / math.sqrt(fan_in))
                if m.bias is not None:
                    fill(m.bias, randn(m.bias) / math.sqrt(fan_in))
            elif isinstance(m, _BATCHNORMS):
                fill(m.weight, randn(m.weight))
                fill(m.bias, randn(m.bias))
                fill(m.running_mean, randn(m.running_mean))
                fill(
                    m.running_var,
                    0.5 + torch.rand(m.running_var.shape, generator=gen, dtype=DTYPE),
                )
                fill(m.num_batches_tracked, torch.zeros_like(m.num_batches_tracked))
            elif isinstance(m, nn.LayerNorm):
                fill(m.weight, randn(m.weight))
                fill(m.bias, randn(m.bias))
            elif isinstance(m, nn.Embedding):
                fill(m.weight, randn(m.weight))
            for name in _TOKEN_PARAMETERS:
                t = getattr(m, name, None)
                if isinstance(t, nn.Parameter) and name in m._parameters:
                    fill(t, randn(t))
    missed = [
        name
        for name, t in [*model.named_parameters(), *model.named_buffers()]
        if id(t) not in filled
    ]
    if missed:
        raise TypeError(f"zoo: no initializer for {missed}")


def _build(factory: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Construct ``factory()`` on the meta device and fill it from ``Generator(seed)``."""
    with torch.device("meta"):
        model = factory()
    model = model.to_empty(device="cpu").to(DTYPE)
    if hasattr(model, "tie_weights"):  # to_empty unties shared weights, as after from_pretrained
        model.tie_weights()
    _randomize(model, torch.Generator().manual_seed(seed))
    return model.eval()


# --------------------------------------------------------------------------------------------
# Hand-written group elements on a state dict
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class At:
    """Where a group of units lives along one axis of a module's tensors.

    Parameters
    ----------
    name : str
        Module name (``model.get_submodule(name)``).
    offset : int
        First index of the group along the axis (a segment of a concatenation).
    block : int
        Entries per unit along the axis (``H * W`` for a linear layer after a flatten).
    """

    name: str
    offset: int = 0
    block: int = 1


Site = str | At


def _at(site: Site) -> At:
    return site if isinstance(site, At) else At(site)


def _index(size: int, p: Tensor, site: At) -> Tensor:
    """Index along an axis of ``size`` that applies ``p`` to the units at ``site``."""
    inner = (p[:, None] * site.block + torch.arange(site.block)).reshape(-1)
    stop = site.offset + inner.numel()
    if stop > size:
        raise ValueError(f"{site} with {p.numel()} units does not fit an axis of {size}")
    idx = torch.arange(size)
    idx[site.offset : stop] = site.offset + inner
    return idx


def _factor(t: Tensor, dim: int, f: Tensor, site: At) -> Tensor:
    """Per-index factor, broadcastable against ``t``, that is ``f`` on the units at ``site``."""
    inner = f.to(DTYPE).repeat_interleave(site.block)
    stop = site.offset + inner.numel()
    if stop > t.shape[dim]:
        raise ValueError(f"{site} with {f.numel()} units does not fit an axis of {t.shape[dim]}")
    full = torch.ones(t.shape[dim], dtype=DTYPE)
    full[site.offset : stop] = inner
    shape = [1] * t.dim()
    shape[dim] = -1
    return full.reshape(shape)


class _Moved:
    """A deep copy of a model whose state dict the elementary symmetries below edit.

    Each method applies one group element to the whole copy; composing them composes the
    elements. ``result()`` loads the edited state and returns the copy.
    """

    def __init__(self, model: nn.Module, gen: torch.Generator) -> None:
        self.model = copy.deepcopy(model)
        self.state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.gen = gen

    def result(self) -> nn.Module:
        self.model.load_state_dict(self.state)
        return self.model

    # -- random draws ------------------------------------------------------------------------

    def perm(self, n: int) -> Tensor:
        """A random permutation of ``n`` units, never the identity when ``n >= 2``."""
        while True:
            p = torch.randperm(n, generator=self.gen)
            if n < 2 or not torch.equal(p, torch.arange(n)):
                return p

    def positive(self, n: int) -> Tensor:
        """``exp(U[-2, 2])`` per unit."""
        return torch.exp(4.0 * torch.rand(n, generator=self.gen, dtype=DTYPE) - 2.0)

    def signs(self, n: int, *, flip_one: bool = False) -> Tensor:
        """Random signs; ``flip_one`` makes at least one of them -1."""
        s = 2.0 * torch.randint(0, 2, (n,), generator=self.gen).to(DTYPE) - 1.0
        if flip_one and bool((s > 0).all()):
            s[int(torch.randint(0, n, (1,), generator=self.gen))] = -1.0
        return s

    def nonzero(self, n: int) -> Tensor:
        """``±exp(U[-2, 2])`` per unit, random signs."""
        return self.signs(n) * self.positive(n)

    def normal(self, n: int) -> Tensor:
        return torch.randn(n, generator=self.gen, dtype=DTYPE)

    # -- elementary symmetries ---------------------------------------------------------------

    def _keys(self, site: At, suffixes: Iterable[str]) -> list[str]:
        prefix = f"{site.name}." if site.name else ""
        keys = [prefix + s for s in suffixes if prefix + s in self.state]
        if not keys:
            raise KeyError(f"zoo: no tensors {tuple(suffixes)} under {site.name!r}")
        return keys

    def _bn(self, site: At) -> nn.Module:
        bn = self.model.get_submodule(site.name)
        if not isinstance(bn, _BATCHNORMS):
            raise TypeError(f"zoo: {site.name!r} is not a BatchNorm")
        return bn

    def permute(
        self,
        p: Tensor,
        rows: Iterable[Site] = (),
        bns: Iterable[Site] = (),
        cols: Iterable[Site] = (),
    ) -> None:
        """Permute units: producers' rows and biases, BatchNorms, readers' columns."""
        for site in map(_at, rows):
            for key in self._keys(site, ("weight", "bias")):
                t = self.state[key]
                self.state[key] = t.index_select(0, _index(t.shape[0], p, site))
        for site in map(_at, bns):
            self._bn(site)
            for key in self._keys(site, ("weight", "bias", "running_mean", "running_var")):
                t = self.state[key]
                self.state[key] = t.index_select(0, _index(t.shape[0], p, site))
        for site in map(_at, cols):
            (key,) = self._keys(site, ("weight",))
            t = self.state[key]
            self.state[key] = t.index_select(1, _index(t.shape[1], p, site))

    def scale(
        self,
        c: Tensor,
        rows: Iterable[Site] = (),
        affine: Iterable[Site] = (),
        bns: Iterable[Site] = (),
        cols: Iterable[Site] = (),
        depthwise: Iterable[Site] = (),
    ) -> None:
        """Scale units by ``c``.

        ``rows``: producers' rows and biases times ``c``; ``affine``: BatchNorm weight and bias
        times ``c`` (the BatchNorm produces the units); ``bns``: BatchNorms that read the scaled
        units, statistics rescaled (``mean * c``, ``c**2 (var + eps) - eps``, ``weight *
        sign(c)``); ``cols``: readers' columns divided by ``c``; ``depthwise``: depthwise
        convolutions that read the units, rows divided by ``c`` (filter ``i`` reads channel
        ``i`` only).
        """
        for site in map(_at, rows):
            for key in self._keys(site, ("weight", "bias")):
                t = self.state[key]
                self.state[key] = t * _factor(t, 0, c, site)
        for site in map(_at, affine):
            self._bn(site)
            for key in self._keys(site, ("weight", "bias")):
                t = self.state[key]
                self.state[key] = t * _factor(t, 0, c, site)
        for site in map(_at, bns):
            eps = self._bn(site).eps
            prefix = site.name + "."
            mean, var, weight = (prefix + s for s in ("running_mean", "running_var", "weight"))
            f = _factor(self.state[mean], 0, c, site)
            self.state[mean] = self.state[mean] * f
            self.state[var] = f**2 * (self.state[var] + eps) - eps
            self.state[weight] = self.state[weight] * torch.sign(f)
        for site in map(_at, cols):
            (key,) = self._keys(site, ("weight",))
            t = self.state[key]
            self.state[key] = t / _factor(t, 1, c, site)
        for site in map(_at, depthwise):
            conv = self.model.get_submodule(site.name)
            assert isinstance(conv, nn.Conv2d) and conv.groups == conv.in_channels
            (key,) = self._keys(site, ("weight",))
            t = self.state[key]
            self.state[key] = t / _factor(t, 0, c, site)

    def permute_grouped(self, p: Tensor, name: str, group: int, offset_in: int = 0) -> None:
        """Permute the input channels of block ``group`` of the grouped convolution ``name``.

        Output block ``g`` (rows ``g*b ... g*b+b-1``) reads input block ``g`` through the
        weight's columns ``0 ... a-1``, so only those rows' columns move.
        """
        conv = self.model.get_submodule(name)
        assert isinstance(conv, nn.Conv2d) and conv.groups > 1
        b = conv.out_channels // conv.groups
        key = name + ".weight"
        t = self.state[key].clone()
        rows = slice(group * b, (group + 1) * b)
        t[rows] = t[rows].index_select(1, _index(t.shape[1], p, At(name, offset_in)))
        self.state[key] = t

    def scale_grouped(self, c: Tensor, name: str, group: int) -> None:
        """Divide the columns of block ``group`` of the grouped convolution ``name`` by ``c``."""
        conv = self.model.get_submodule(name)
        assert isinstance(conv, nn.Conv2d) and conv.groups > 1
        b = conv.out_channels // conv.groups
        key = name + ".weight"
        t = self.state[key].clone()
        rows = slice(group * b, (group + 1) * b)
        t[rows] = t[rows] / _factor(t[rows], 1, c, At(name))
        self.state[key] = t

    def shift(
        self,
        t: Tensor,
        biases: Iterable[Site] = (),
        means: Iterable[Site] = (),
        absorb: Iterable[Site] = (),
    ) -> None:
        """Translate units by ``t``.

        ``biases``: producers' biases plus ``t``; ``means``: reading BatchNorms' running means
        plus ``t``; ``absorb``: reading 1x1 convolutions (no padding) or linear layers, bias
        minus ``W t``.
        """
        for site in map(_at, biases):
            key = site.name + ".bias"
            self.state[key] = self.state[key] + _pad_segment(self.state[key], t, site)
        for site in map(_at, means):
            self._bn(site)
            key = site.name + ".running_mean"
            self.state[key] = self.state[key] + _pad_segment(self.state[key], t, site)
        for site in map(_at, absorb):
            layer = self.model.get_submodule(site.name)
            if isinstance(layer, nn.Conv2d):
                assert layer.kernel_size == (1, 1) and layer.padding == (0, 0)
            w = self.state[site.name + ".weight"]
            w = w.reshape(w.shape[0], w.shape[1], -1).sum(-1)
            full = torch.zeros(w.shape[1], dtype=DTYPE)
            full[site.offset : site.offset + t.numel()] = t
            self.state[site.name + ".bias"] = self.state[site.name + ".bias"] - w @ full


def _pad_segment(t: Tensor, values: Tensor, site: At) -> Tensor:
    """A zero vector like ``t`` holding ``values`` at the segment of ``site``."""
    full = torch.zeros_like(t)
    full[site.offset : site.offset + values.numel()] = values
    return full


# --------------------------------------------------------------------------------------------
# The hand-written elements, one per family
# --------------------------------------------------------------------------------------------


def _bn_relu_unit(
    e: _Moved, conv: str, bn: str, readers: Sequence[Site], *, shift: bool = False
) -> None:
    """conv -> BN -> ReLU -> readers: permutation, BN scale a != 0, (bias shift), ReLU scale."""
    n = e.state[bn + ".weight"].numel()
    e.permute(e.perm(n), rows=[conv], bns=[bn], cols=readers)
    e.scale(e.nonzero(n), rows=[conv], bns=[bn])
    if shift:
        e.shift(e.normal(n), biases=[conv], means=[bn])
    e.scale(e.positive(n), affine=[bn], cols=readers)


def _relu_unit(e: _Moved, layer: str, readers: Sequence[Site]) -> None:
    """Linear/conv with bias -> ReLU -> readers: permutation and positive scale."""
    n = e.state[layer + ".weight"].shape[0]
    e.permute(e.perm(n), rows=[layer], cols=readers)
    e.scale(e.positive(n), rows=[layer], cols=readers)


def _move_vgg(model: nn.Module, gen: torch.Generator) -> nn.Module:
    e = _Moved(model, gen)
    feats = model.features
    convs = [i for i, m in enumerate(feats) if isinstance(m, nn.Conv2d)]
    for k, i in enumerate(convs):
        if k + 1 < len(convs):
            reader = At(f"features.{convs[k + 1]}")
        else:
            n = feats[i].out_channels
            reader = At("classifier", block=model.classifier.in_features // n)
        _bn_relu_unit(e, f"features.{i}", f"features.{i + 1}", [reader], shift=True)
    return e.result()


def _move_resnet(model: nn.Module, gen: torch.Generator) -> nn.Module:
    """Option A or B CIFAR ResNet: streams, block units, BN scales."""
    e = _Moved(model, gen)
    stages = [model.layer1, model.layer2, model.layer3]

    # Block-internal units and the BatchNorm scales of every conv -> BN pair.
    e.scale(e.nonzero(model.bn1.num_features), rows=["conv1"], bns=["bn1"])
    for s, layer in enumerate(stages, 1):
        for j, blk in enumerate(layer):
            b = f"layer{s}.{j}"
            _bn_relu_unit(e, f"{b}.conv1", f"{b}.bn1", [f"{b}.conv2"])
            e.scale(e.nonzero(blk.bn2.num_features), rows=[f"{b}.conv2"], bns=[f"{b}.bn2"])
            if isinstance(blk.shortcut, nn.Sequential) and len(blk.shortcut) > 0:
                n = blk.bn2.num_features
                e.scale(e.nonzero(n), rows=[f"{b}.shortcut.0"], bns=[f"{b}.shortcut.1"])

    # Residual streams (post-ReLU, so positive scales only).
    prev_p: Tensor | None = None
    prev_c: Tensor | None = None
    for s, layer in enumerate(stages, 1):
        width = layer[0].bn2.num_features
        rows = ["conv1"] if s == 1 else []
        affine = ["bn1"] if s == 1 else []
        readers: list[Site] = []
        for j, blk in enumerate(layer):
            b = f"layer{s}.{j}"
            rows.append(f"{b}.conv2")
            affine.append(f"{b}.bn2")
            if j > 0:
                readers.append(f"{b}.conv1")
            if isinstance(blk.shortcut, nn.Sequential) and len(blk.shortcut) > 0:
                rows.append(f"{b}.shortcut.0")
                affine.append(f"{b}.shortcut.1")
        if s == 1:
            readers.append("layer1.0.conv1")
        if s < len(stages):
            nxt = stages[s][0]
            readers.append(f"layer{s + 1}.0.conv1")
            if isinstance(nxt.shortcut, nn.Sequential) and len(nxt.shortcut) > 0:
                readers.append(f"layer{s + 1}.0.shortcut.0")
        else:
            readers.append("linear")

        first = layer[0]
        if isinstance(first.shortcut, LambdaLayer):
            # Option A: the previous stream sits in the middle [q, q + prev) of this one; the
            # 2q zero-padded channels (both ends together) permute freely among themselves.
            assert prev_p is not None and prev_c is not None
            prev = prev_p.numel()
            q = (width - prev) // 2
            pads = torch.tensor([*range(q), *range(q + prev, width)])
            p = torch.empty(width, dtype=torch.long)
            p[q : q + prev] = q + prev_p
            p[pads] = pads[e.perm(pads.numel())]
            c = e.positive(width)
            c[q : q + prev] = prev_c
        else:
            p, c = e.perm(width), e.positive(width)
        e.permute(p, rows=rows, bns=affine, cols=readers)
        e.scale(c, affine=affine, cols=readers)
        prev_p, prev_c = p, c
    return e.result()


def _move_preact(model: nn.Module, gen: torch.Generator) -> nn.Module:
    e = _Moved(model, gen)
    n1, n2 = model.conv1.out_channels, model.bn.num_features
    # Stream 1 (conv1 + layer1 residual), read only by BatchNorms: permutation (which also
    # moves the columns of the convs after those BatchNorms) and a != 0.
    rows1, bns1 = ["conv1", "layer1.0.conv2"], ["layer1.0.bn1", "layer2.0.bn1"]
    after1 = ["layer1.0.conv1", "layer2.0.conv1", "layer2.0.shortcut.0"]
    e.permute(e.perm(n1), rows=rows1, bns=bns1, cols=after1)
    e.scale(e.nonzero(n1), rows=rows1, bns=bns1)
    # Stream 2 (layer2 residual + its shortcut conv), read only by the final BatchNorm.
    rows2 = ["layer2.0.conv2", "layer2.0.shortcut.0"]
    e.permute(e.perm(n2), rows=rows2, bns=["bn"], cols=["linear"])
    e.scale(e.nonzero(n2), rows=rows2, bns=["bn"])
    # Pre-activations relu(bn1(x)): positive scales; the shortcut conv reads them too.
    e.scale(e.positive(n1), affine=["layer1.0.bn1"], cols=["layer1.0.conv1"])
    e.scale(
        e.positive(n1),
        affine=["layer2.0.bn1"],
        cols=["layer2.0.conv1", "layer2.0.shortcut.0"],
    )
    for b in ("layer1.0", "layer2.0"):
        _bn_relu_unit(e, f"{b}.conv1", f"{b}.bn2", [f"{b}.conv2"])
    e.scale(e.positive(n2), affine=["bn"], cols=["linear"])
    return e.result()


def _move_wrn(model: nn.Module, gen: torch.Generator) -> nn.Module:
    e = _Moved(model, gen)
    n1, n2 = model.conv1.out_channels, model.bn1.num_features
    # Stream 1: read by two BatchNorms and the 1x1 shortcut conv (linear): any a != 0.
    rows1 = ["conv1", "layer1.0.conv2"]
    bns1 = ["layer1.0.bn1", "layer2.0.bn1"]
    after1 = ["layer1.0.conv1", "layer2.0.conv1"]
    e.permute(e.perm(n1), rows=rows1, bns=bns1, cols=[*after1, "layer2.0.shortcut.0"])
    e.scale(e.nonzero(n1), rows=rows1, bns=bns1, cols=["layer2.0.shortcut.0"])
    # Stream 2: read only by the final BatchNorm: permutation, a != 0, bias shift.
    rows2 = ["layer2.0.conv2", "layer2.0.shortcut.0"]
    e.permute(e.perm(n2), rows=rows2, bns=["bn1"], cols=["linear"])
    e.scale(e.nonzero(n2), rows=rows2, bns=["bn1"])
    e.shift(e.normal(n2), biases=["layer2.0.conv2"], means=["bn1"])
    for b in ("layer1.0", "layer2.0"):
        n = e.state[f"{b}.bn1.weight"].numel()
        e.scale(e.positive(n), affine=[f"{b}.bn1"], cols=[f"{b}.conv1"])
        # conv1(bias) -> Dropout -> bn2: the bias shift crosses the (eval-mode) dropout.
        _bn_relu_unit(e, f"{b}.conv1", f"{b}.bn2", [f"{b}.conv2"], shift=True)
    e.scale(e.positive(n2), affine=["bn1"], cols=["linear"])
    return e.result()


def _mobilenet_streams(model: nn.Module) -> list[dict]:
    """Channel streams between MobileNetV2 blocks: producers, BatchNorms, readers, ReLU-fed."""
    streams = []
    cur: dict = {"rows": ["conv1"], "bns": ["bn1"], "readers": [], "relu": True}
    for i, blk in enumerate(model.layers):
        b = f"layers.{i}"
        cur["readers"].append(f"{b}.conv1")
        if blk.stride == 1 and len(blk.shortcut) == 0:
            cur["rows"].append(f"{b}.conv3")
            cur["bns"].append(f"{b}.bn3")
            continue
        if blk.stride == 1:
            cur["readers"].append(f"{b}.shortcut.0")
            streams.append(cur)
            cur = {
                "rows": [f"{b}.conv3", f"{b}.shortcut.0"],
                "bns": [f"{b}.bn3", f"{b}.shortcut.1"],
                "readers": [],
                "relu": False,
            }
        else:
            streams.append(cur)
            cur = {"rows": [f"{b}.conv3"], "bns": [f"{b}.bn3"], "readers": [], "relu": False}
    cur["readers"].append("conv2")
    streams.append(cur)
    return streams


def _move_mobilenet(model: nn.Module, gen: torch.Generator) -> nn.Module:
    e = _Moved(model, gen)
    for st in _mobilenet_streams(model):
        n = e.state[st["bns"][0] + ".weight"].numel()
        e.permute(e.perm(n), rows=st["rows"], bns=st["bns"], cols=st["readers"])
        for conv, bn in zip(st["rows"], st["bns"], strict=True):
            e.scale(e.nonzero(n), rows=[conv], bns=[bn])
        # A linear bottleneck (no ReLU anywhere on it) takes any non-zero scale.
        c = e.positive(n) if st["relu"] else e.nonzero(n)
        e.scale(c, affine=st["bns"], cols=st["readers"])
    for i, blk in enumerate(model.layers):
        b = f"layers.{i}"
        n = blk.bn1.num_features
        # Expanded channels: the depthwise conv's rows are also its input channels.
        e.permute(
            e.perm(n),
            rows=[f"{b}.conv1", f"{b}.conv2"],
            bns=[f"{b}.bn1", f"{b}.bn2"],
            cols=[f"{b}.conv3"],
        )
        e.scale(e.nonzero(n), rows=[f"{b}.conv1"], bns=[f"{b}.bn1"])
        e.scale(e.positive(n), affine=[f"{b}.bn1"], depthwise=[f"{b}.conv2"])
        e.scale(e.nonzero(n), rows=[f"{b}.conv2"], bns=[f"{b}.bn2"])
        e.scale(e.positive(n), affine=[f"{b}.bn2"], cols=[f"{b}.conv3"])
    _bn_relu_unit(e, "conv2", "bn2", ["linear"])
    return e.result()


def _move_densenet(model: nn.Module, gen: torch.Generator) -> nn.Module:
    e = _Moved(model, gen)
    g = model.growth_rate
    # Readers of the concatenation, in order, and the segments each one sees.
    readers = [(f"dense1.{i}.bn1", f"dense1.{i}.conv1") for i in range(len(model.dense1))]
    readers.append(("trans1.bn", "trans1.conv"))
    segments: list[dict] = [{"rows": "conv1", "width": model.conv1.out_channels, "reads": []}]
    for i, (bn, conv) in enumerate(readers):
        offset = 0
        for seg in segments:
            seg["reads"].append((bn, conv, offset))
            offset += seg["width"]
        assert offset == e.state[bn + ".weight"].numel()
        if i < len(model.dense1):
            segments.insert(0, {"rows": f"dense1.{i}.conv2", "width": g, "reads": []})
    # Each segment: one permutation and one a != 0 for every BatchNorm that reads it.
    for seg in segments:
        n = seg["width"]
        bns = [At(bn, offset) for bn, _, offset in seg["reads"]]
        cols = [At(conv, offset) for _, conv, offset in seg["reads"]]
        e.permute(e.perm(n), rows=[seg["rows"]], bns=bns, cols=cols)
        e.scale(e.nonzero(n), rows=[seg["rows"]], bns=bns)
    # Each reader's own ReLU: a positive scale per reader over the whole concatenation.
    for bn, conv in readers:
        e.scale(e.positive(e.state[bn + ".weight"].numel()), affine=[bn], cols=[conv])
    for i in range(len(model.dense1)):
        b = f"dense1.{i}"
        _bn_relu_unit(e, f"{b}.conv1", f"{b}.bn2", [f"{b}.conv2"])
    n = model.bn.num_features
    e.permute(e.perm(n), rows=["trans1.conv"], bns=["bn"], cols=["linear"])
    e.scale(e.nonzero(n), rows=["trans1.conv"], bns=["bn"])
    e.scale(e.positive(n), affine=["bn"], cols=["linear"])
    return e.result()


def _move_inception(model: nn.Module, gen: torch.Generator) -> nn.Module:
    e = _Moved(model, gen)
    a = "a3"
    _bn_relu_unit(
        e,
        "pre_layers.0",
        "pre_layers.1",
        [f"{a}.b1.0", f"{a}.b2.0", f"{a}.b3.0", f"{a}.b4.1"],
        shift=True,
    )
    _bn_relu_unit(e, f"{a}.b2.0", f"{a}.b2.1", [f"{a}.b2.3"], shift=True)
    _bn_relu_unit(e, f"{a}.b3.0", f"{a}.b3.1", [f"{a}.b3.3"], shift=True)
    _bn_relu_unit(e, f"{a}.b3.3", f"{a}.b3.4", [f"{a}.b3.6"], shift=True)
    # Branch outputs: each branch's block of the concatenated axis moves on its own.
    offset = 0
    for conv, bn in (("b1.0", "b1.1"), ("b2.3", "b2.4"), ("b3.6", "b3.7"), ("b4.1", "b4.2")):
        _bn_relu_unit(e, f"{a}.{conv}", f"{a}.{bn}", [At("linear", offset)], shift=True)
        offset += e.state[f"{a}.{bn}.weight"].numel()
    assert offset == model.linear.in_features
    return e.result()


def _move_senet(model: nn.Module, gen: torch.Generator) -> nn.Module:
    e = _Moved(model, gen)
    n1, n2 = model.bn1.num_features, model.layer2[0].bn2.num_features
    # Stream 1: stem and layer1's gated output (gate logits fc2 move with their channels).
    affine1 = ["bn1", "layer1.0.bn2"]
    readers1 = ["layer1.0.conv1", "layer1.0.fc1", "layer2.0.conv1", "layer2.0.shortcut.0"]
    e.permute(
        e.perm(n1), rows=["conv1", "layer1.0.conv2", "layer1.0.fc2"], bns=affine1, cols=readers1
    )
    e.scale(e.positive(n1), affine=affine1, cols=readers1)
    # Stream 2: layer2's gated output and its shortcut.
    affine2 = ["layer2.0.bn2", "layer2.0.shortcut.1"]
    readers2 = ["layer2.0.fc1", "linear"]
    e.permute(
        e.perm(n2),
        rows=["layer2.0.conv2", "layer2.0.fc2", "layer2.0.shortcut.0"],
        bns=affine2,
        cols=readers2,
    )
    e.scale(e.positive(n2), affine=affine2, cols=readers2)
    e.scale(e.nonzero(n1), rows=["conv1"], bns=["bn1"])
    for b in ("layer1.0", "layer2.0"):
        n = e.state[f"{b}.bn2.weight"].numel()
        _bn_relu_unit(e, f"{b}.conv1", f"{b}.bn1", [f"{b}.conv2"])
        e.scale(e.nonzero(n), rows=[f"{b}.conv2"], bns=[f"{b}.bn2"])
        _relu_unit(e, f"{b}.fc1", [f"{b}.fc2"])  # SE hidden units
    e.scale(e.nonzero(n2), rows=["layer2.0.shortcut.0"], bns=["layer2.0.shortcut.1"])
    return e.result()


def _move_mlp_with_loss(model: nn.Module, gen: torch.Generator) -> nn.Module:
    e = _Moved(model, gen)
    _relu_unit(e, "net.0", ["net.2"])
    _relu_unit(e, "net.2", ["net.4"])
    return e.result()


def _move_mnist(model: nn.Module, gen: torch.Generator) -> nn.Module:
    e = _Moved(model, gen)
    _relu_unit(e, "conv1", ["conv2"])
    block = model.fc1.in_features // model.conv2.out_channels
    _relu_unit(e, "conv2", [At("fc1", block=block)])
    _relu_unit(e, "fc1", ["fc2"])
    return e.result()


def _move_gelu(model: nn.Module, gen: torch.Generator) -> nn.Module:
    e = _Moved(model, gen)
    e.permute(e.perm(model[0].out_features), rows=["0"], cols=["2"])
    e.permute(e.perm(model[2].out_features), rows=["2"], cols=["4"])
    return e.result()


def _move_mixed(model: nn.Module, gen: torch.Generator) -> nn.Module:
    e = _Moved(model, gen)
    e.permute(e.perm(model.fc1.out_features), rows=["fc1"], cols=["fc2"])  # SiLU: not odd
    for layer, reader in (("fc2", "fc3"), ("fc3", "fc4")):  # hardtanh, softsign: odd
        n = e.state[layer + ".weight"].shape[0]
        e.permute(e.perm(n), rows=[layer], cols=[reader])
        e.scale(e.signs(n, flip_one=True), rows=[layer], cols=[reader])
    return e.result()


def _move_asserting(model: nn.Module, gen: torch.Generator) -> nn.Module:
    e = _Moved(model, gen)
    _relu_unit(e, "conv1", ["conv2"])
    block = model.fc1.in_features // model.conv2.out_channels
    _relu_unit(e, "conv2", [At("fc1", block=block)])
    _relu_unit(e, "fc1", ["fc2"])
    return e.result()


def _permute_last_axis(e: _Moved, p: Tensor, keys: Iterable[str]) -> None:
    """Permute the features (last axis) of parameters held directly: class tokens, positions."""
    for key in keys:
        e.state[key] = e.state[key][..., p]


def _heads(e: _Moved, count: int, width: int) -> tuple[Tensor, Tensor]:
    """One random head order and, inside every head, its own permutation of the query-key
    features and of the value features: indices over ``count * width`` units."""
    order = e.perm(count)
    qk = torch.cat([h * width + e.perm(width) for h in order.tolist()])
    vo = torch.cat([h * width + e.perm(width) for h in order.tolist()])
    return qk, vo


def _move_timm_vit(model: nn.Module, gen: torch.Generator) -> nn.Module:
    e = _Moved(model, gen)
    d = model.norm.normalized_shape[0]
    blocks = [f"blocks.{i}" for i in range(len(model.blocks))]
    # Residual stream: every writer's rows, every LayerNorm's gain and bias, the class token
    # and position embedding, every reader's columns; LayerNorm is permutation-equivariant.
    writers = ["patch_embed.proj", *(f"{b}.attn.proj" for b in blocks)]
    writers += [f"{b}.mlp.fc2" for b in blocks]
    norms = [f"{b}.norm{j}" for b in blocks for j in (1, 2)] + ["norm"]
    readers = [f"{b}.attn.qkv" for b in blocks] + [f"{b}.mlp.fc1" for b in blocks] + ["head"]
    p = e.perm(d)
    e.permute(p, rows=writers + norms, cols=readers)
    _permute_last_axis(e, p, ["cls_token", "pos_embed"])
    for b in blocks:
        # A LayerNorm's gain and bias share a factor a != 0 per feature with its readers.
        e.scale(e.nonzero(d), rows=[f"{b}.norm1"], cols=[f"{b}.attn.qkv"])
        e.scale(e.nonzero(d), rows=[f"{b}.norm2"], cols=[f"{b}.mlp.fc1"])
        # Heads as whole blocks of the packed q | k | v rows; inside each head the query and
        # key features by one permutation, the value features with proj's columns, and a
        # scale a != 0 per value feature (attention mixes tokens, not features).
        attn = model.get_submodule(f"{b}.attn")
        qk, vo = _heads(e, attn.num_heads, attn.head_dim)
        qkv = f"{b}.attn.qkv"
        e.permute(qk, rows=[At(qkv, 0), At(qkv, d)])
        e.permute(vo, rows=[At(qkv, 2 * d)], cols=[f"{b}.attn.proj"])
        e.scale(e.nonzero(d), rows=[At(qkv, 2 * d)], cols=[f"{b}.attn.proj"])
        # GELU hidden units: permutations only.
        hidden = model.get_submodule(f"{b}.mlp.fc1").out_features
        e.permute(e.perm(hidden), rows=[f"{b}.mlp.fc1"], cols=[f"{b}.mlp.fc2"])
    e.scale(e.nonzero(d), rows=["norm"], cols=["head"])
    return e.result()


def _move_gpt(model: nn.Module, gen: torch.Generator) -> nn.Module:
    e = _Moved(model, gen)
    d = model.ln_f.normalized_shape[0]
    blocks = [f"blocks.{i}" for i in range(len(model.blocks))]
    writers = [f"{b}.attn.o_proj" for b in blocks] + [f"{b}.c_proj" for b in blocks]
    norms = [f"{b}.ln_{j}" for b in blocks for j in (1, 2)] + ["ln_f"]
    readers = [f"{b}.attn.{n}_proj" for b in blocks for n in "qkv"] + [f"{b}.c_fc" for b in blocks]
    # The token embedding writes the stream with its columns and, tied, the output layer
    # reads it with the same columns: one permutation for both names of the one tensor.
    p = e.perm(d)
    e.permute(p, rows=writers + norms, cols=[*readers, "tok_emb", "head"])
    _permute_last_axis(e, p, ["pos_emb"])
    for b in blocks:
        qkv = [f"{b}.attn.{n}_proj" for n in "qkv"]
        e.scale(e.nonzero(d), rows=[f"{b}.ln_1"], cols=qkv)
        e.scale(e.nonzero(d), rows=[f"{b}.ln_2"], cols=[f"{b}.c_fc"])
        n_head = model.get_submodule(f"{b}.attn").n_head
        qk, vo = _heads(e, n_head, d // n_head)
        e.permute(qk, rows=qkv[:2])
        e.permute(vo, rows=[qkv[2]], cols=[f"{b}.attn.o_proj"])
        e.scale(e.nonzero(d), rows=[qkv[2]], cols=[f"{b}.attn.o_proj"])
        hidden = model.get_submodule(f"{b}.c_fc").out_features
        e.permute(e.perm(hidden), rows=[f"{b}.c_fc"], cols=[f"{b}.c_proj"])
    # ln_f keeps its scales: its reader is tied to the embedding, a writer of the stream.
    return e.result()


def _move_lucid_vit(model: nn.Module, gen: torch.Generator) -> nn.Module:
    e = _Moved(model, gen)
    d = model.mlp_head.in_features
    layers = [f"transformer.layers.{i}" for i in range(len(model.transformer.layers))]
    # Residual stream: the patch Linear's rows and the LayerNorm after it (its output is the
    # stream), every writer's rows, the LayerNorms inside attention and feed-forward and the
    # final one, the class token and position embedding, every reader's columns.
    writers = ["to_patch_embedding.2", "to_patch_embedding.3"]
    writers += [f"{b}.0.to_out.0" for b in layers] + [f"{b}.1.net.4" for b in layers]
    norms = [f"{b}.0.norm" for b in layers] + [f"{b}.1.net.0" for b in layers]
    norms.append("transformer.norm")
    readers = [f"{b}.0.to_qkv" for b in layers] + [f"{b}.1.net.1" for b in layers]
    p = e.perm(d)
    e.permute(p, rows=writers + norms, cols=[*readers, "mlp_head"])
    _permute_last_axis(e, p, ["cls_token", "pos_embedding"])
    # Each LayerNorm read by a layer shares a factor a != 0 per feature with its reader (the
    # one on the raw patches too); the LayerNorm after the patch Linear writes the stream.
    patch_dim = model.to_patch_embedding[1].normalized_shape[0]
    e.scale(e.nonzero(patch_dim), rows=["to_patch_embedding.1"], cols=["to_patch_embedding.2"])
    for b in layers:
        e.scale(e.nonzero(d), rows=[f"{b}.0.norm"], cols=[f"{b}.0.to_qkv"])
        e.scale(e.nonzero(d), rows=[f"{b}.1.net.0"], cols=[f"{b}.1.net.1"])
        attn = model.get_submodule(f"{b}.0")
        inner = attn.to_qkv.out_features // 3
        qk, vo = _heads(e, attn.heads, inner // attn.heads)
        qkv, out = f"{b}.0.to_qkv", f"{b}.0.to_out.0"
        e.permute(qk, rows=[At(qkv, 0), At(qkv, inner)])
        e.permute(vo, rows=[At(qkv, 2 * inner)], cols=[out])
        e.scale(e.nonzero(inner), rows=[At(qkv, 2 * inner)], cols=[out])
        hidden = model.get_submodule(f"{b}.1.net.1").out_features
        e.permute(e.perm(hidden), rows=[f"{b}.1.net.1"], cols=[f"{b}.1.net.4"])
    e.scale(e.nonzero(d), rows=["transformer.norm"], cols=["mlp_head"])
    return e.result()


# --------------------------------------------------------------------------------------------
# Extra true symmetries outside the families above
# --------------------------------------------------------------------------------------------


def _extra_resnet_b_bias_exchange(model: nn.Module, gen: torch.Generator) -> nn.Module:
    e = _Moved(model, gen)
    for b in ("layer2.0", "layer3.0"):
        t = e.normal(e.state[f"{b}.bn2.bias"].numel())
        e.shift(t, biases=[f"{b}.bn2"])
        e.shift(-t, biases=[f"{b}.shortcut.1"])
    return e.result()


def _extra_wrn_stream_shift(model: nn.Module, gen: torch.Generator) -> nn.Module:
    e = _Moved(model, gen)
    t = e.normal(model.conv1.out_channels)
    e.shift(
        t,
        biases=["conv1"],
        means=["layer1.0.bn1", "layer2.0.bn1"],
        absorb=["layer2.0.shortcut.0"],
    )
    u = e.normal(model.bn1.num_features)
    e.shift(u, biases=["layer2.0.conv2"])
    e.shift(-u, biases=["layer2.0.shortcut.0"])
    return e.result()


def _extra_mobilenet_linear_group(model: nn.Module, gen: torch.Generator) -> nn.Module:
    """A random invertible channel mix ``M`` of the linear bottleneck after ``layers.1``."""
    e = _Moved(model, gen)
    n = model.layers[1].bn3.num_features
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=DTYPE))
    m = q * torch.exp(2.0 * torch.rand(n, generator=gen, dtype=DTYPE) - 1.0)
    for conv, bn in (
        ("layers.1.conv3", "layers.1.bn3"),
        ("layers.1.shortcut.0", "layers.1.shortcut.1"),
    ):
        s = e.state
        std = torch.sqrt(s[bn + ".running_var"] + model.get_submodule(bn).eps)
        d = s[bn + ".weight"] / std  # eval BN = d * z + (bias - d * mean)
        offset = s[bn + ".bias"] - d * s[bn + ".running_mean"]
        w = s[conv + ".weight"]
        # New conv + unchanged BN scale: d * W' = M d W; new BN bias: offset' = M offset.
        s[conv + ".weight"] = ((m * d[None, :]) @ w.reshape(n, -1) / d[:, None]).reshape(w.shape)
        s[bn + ".bias"] = m @ offset + d * s[bn + ".running_mean"]
    reader = e.state["layers.2.conv1.weight"]
    inv = torch.linalg.inv(m)
    e.state["layers.2.conv1.weight"] = (reader[:, :, 0, 0] @ inv)[:, :, None, None]
    return e.result()


def _move_resnext(model: nn.Module, gen: torch.Generator) -> nn.Module:
    """Within-block permutations and scales around each grouped conv; streams; stem."""
    e = _Moved(model, gen)
    blocks = [("layer1.0", model.layer1[0]), ("layer2.0", model.layer2[0])]
    _bn_relu_unit(e, "conv1", "bn1", ["layer1.0.conv1", "layer1.0.shortcut.0"])
    for k, (b, blk) in enumerate(blocks):
        groups = blk.conv2.groups
        a = blk.conv2.in_channels // groups
        width = blk.conv2.out_channels // groups
        for g in range(groups):
            # block g of conv1's units: read only by rows g*width.. of the grouped conv2
            at1 = At(f"{b}.conv1", offset=g * a)
            bn1 = At(f"{b}.bn1", offset=g * a)
            p = e.perm(a)
            e.permute(p, rows=[at1], bns=[bn1])
            e.permute_grouped(p, f"{b}.conv2", g)
            e.scale(e.nonzero(a), rows=[at1], bns=[bn1])
            c = e.positive(a)
            e.scale(c, affine=[bn1])
            e.scale_grouped(c, f"{b}.conv2", g)
            # block g of the grouped conv's own outputs: permute within the block
            at2, bn2 = At(f"{b}.conv2", offset=g * width), At(f"{b}.bn2", offset=g * width)
            reader = At(f"{b}.conv3", offset=g * width)
            e.permute(e.perm(width), rows=[at2], bns=[bn2], cols=[reader])
            e.scale(e.nonzero(width), rows=[at2], bns=[bn2])
            e.scale(e.positive(width), affine=[bn2], cols=[reader])
        # the block's output stream: conv3/bn3 and the shortcut conv/BN, after the ReLU
        n = blk.bn3.num_features
        readers = (
            [f"{blocks[k + 1][0]}.conv1", f"{blocks[k + 1][0]}.shortcut.0"]
            if k + 1 < len(blocks)
            else ["linear"]
        )
        convs, bns = [f"{b}.conv3", f"{b}.shortcut.0"], [f"{b}.bn3", f"{b}.shortcut.1"]
        e.permute(e.perm(n), rows=convs, bns=bns, cols=readers)
        for conv, bn in zip(convs, bns, strict=True):
            e.scale(e.nonzero(n), rows=[conv], bns=[bn])
        e.scale(e.positive(n), affine=bns, cols=readers)
    _permute_resnext_blocks(e, model)
    return e.result()


def _permute_resnext_blocks(e: _Moved, model: nn.Module) -> None:
    """Swap whole blocks of every grouped conv: its input and output blocks together."""
    for b in ("layer1.0", "layer2.0"):
        blk = model.get_submodule(b)
        groups = blk.conv2.groups
        a = blk.conv2.in_channels // groups
        width = blk.conv2.out_channels // groups
        q = e.perm(groups)
        p_in = (q[:, None] * a + torch.arange(a)).reshape(-1)
        p_out = (q[:, None] * width + torch.arange(width)).reshape(-1)
        e.permute(p_in, rows=[f"{b}.conv1"], bns=[f"{b}.bn1"])
        e.permute(p_out, rows=[f"{b}.conv2"], bns=[f"{b}.bn2"], cols=[f"{b}.conv3"])


def _extra_log_softmax_shift(model: nn.Module, gen: torch.Generator) -> nn.Module:
    e = _Moved(model, gen)
    u = e.normal(model.fc2.in_features)
    e.state["fc2.weight"] = e.state["fc2.weight"] + u[None, :]
    e.state["fc2.bias"] = e.state["fc2.bias"] + e.normal(1)
    return e.result()


def _invertible(n: int, gen: torch.Generator) -> Tensor:
    """A random well-conditioned invertible ``n x n`` matrix: orthogonal times ``exp(U[-1, 1])``."""
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=DTYPE))
    return q * torch.exp(2.0 * torch.rand(n, generator=gen, dtype=DTYPE) - 1.0)


def _head_linear_maps(e: _Moved, q: At, k: At, v: At, out: str, count: int, width: int) -> None:
    """Per head ``h``: ``W_Q,h -> A W_Q,h``, ``W_K,h -> A^-T W_K,h`` (biases with them),
    ``W_V,h -> B W_V,h`` and the output projection's columns ``W_O,h -> W_O,h B^-1``."""
    s = e.state
    for h in range(count):
        a, b = _invertible(width, e.gen), _invertible(width, e.gen)
        maps = ((q, a), (k, torch.linalg.inv(a).T), (v, b))
        for site, m in maps:
            rows = slice(site.offset + h * width, site.offset + (h + 1) * width)
            for part in ("weight", "bias"):
                key = f"{site.name}.{part}"
                if key in s:
                    t = s[key].clone()
                    t[rows] = m @ t[rows]
                    s[key] = t
        cols = slice(h * width, (h + 1) * width)
        w = s[out + ".weight"].clone()
        w[:, cols] = w[:, cols] @ torch.linalg.inv(b)
        s[out + ".weight"] = w


def _extra_gpt_head_linear_maps(model: nn.Module, gen: torch.Generator) -> nn.Module:
    e = _Moved(model, gen)
    for i, block in enumerate(model.blocks):
        a = f"blocks.{i}.attn"
        width = block.attn.q_proj.out_features // block.attn.n_head
        sites = (At(f"{a}.q_proj"), At(f"{a}.k_proj"), At(f"{a}.v_proj"))
        _head_linear_maps(e, *sites, f"{a}.o_proj", block.attn.n_head, width)
    return e.result()


def _extra_timm_head_linear_maps(model: nn.Module, gen: torch.Generator) -> nn.Module:
    e = _Moved(model, gen)
    d = model.norm.normalized_shape[0]
    for i, block in enumerate(model.blocks):
        qkv, attn = f"blocks.{i}.attn.qkv", block.attn
        sites = (At(qkv, 0), At(qkv, d), At(qkv, 2 * d))
        _head_linear_maps(e, *sites, f"blocks.{i}.attn.proj", attn.num_heads, attn.head_dim)
    return e.result()


def _extra_lucid_head_linear_maps(model: nn.Module, gen: torch.Generator) -> nn.Module:
    e = _Moved(model, gen)
    for i, (attn, _) in enumerate(model.transformer.layers):
        a = f"transformer.layers.{i}.0"
        inner = attn.to_qkv.out_features // 3
        sites = (At(f"{a}.to_qkv", 0), At(f"{a}.to_qkv", inner), At(f"{a}.to_qkv", 2 * inner))
        _head_linear_maps(e, *sites, f"{a}.to_out.0", attn.heads, inner // attn.heads)
    return e.result()


def _extra_gpt_attention_biases(model: nn.Module, gen: torch.Generator) -> nn.Module:
    e = _Moved(model, gen)
    for i in range(len(model.blocks)):
        a = f"blocks.{i}.attn"
        d = e.state[f"{a}.k_proj.bias"].numel()
        e.state[f"{a}.k_proj.bias"] = e.state[f"{a}.k_proj.bias"] + e.normal(d)
        u = e.normal(d)
        e.state[f"{a}.v_proj.bias"] = e.state[f"{a}.v_proj.bias"] + u
        e.state[f"{a}.o_proj.bias"] = (
            e.state[f"{a}.o_proj.bias"] - e.state[f"{a}.o_proj.weight"] @ u
        )
    return e.result()


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ZooEntry:
    """A tiny model in a public collection's style and a hand-written group element.

    Attributes
    ----------
    name : str
        Registry name.
    input_shape : tuple[int, ...]
        Shape of one input example (no batch axis).
    build : Callable[[int], nn.Module]
        ``seed -> model``: float64, eval mode, random weights and BatchNorm statistics, drawn
        from ``torch.Generator().manual_seed(seed)`` only.
    transform : Callable[[nn.Module, torch.Generator], nn.Module]
        A random element of the family's characteristic symmetry, applied by hand to a deep
        copy, which it returns; the input model is untouched.
    symmetry : str
        One line: which group element ``transform`` applies and why it is a symmetry.
    vocab : int or None
        For models on token ids: the vocabulary size; ``example_input`` then draws integer
        ids in ``[0, vocab)``. ``None``: float inputs.
    """

    name: str
    input_shape: tuple[int, ...]
    build: Callable[[int], nn.Module]
    transform: Callable[[nn.Module, torch.Generator], nn.Module]
    symmetry: str
    vocab: int | None = None


@dataclass(frozen=True)
class ExtraElement:
    """A further true symmetry of a zoo entry, outside the permutation/scale/BN families.

    Attributes
    ----------
    entry : str
        Name of the ``ZooEntry`` whose models it moves.
    name : str
        Short name of the symmetry.
    transform : Callable[[nn.Module, torch.Generator], nn.Module]
        Returns a moved deep copy, as ``ZooEntry.transform``.
    symmetry : str
        One line: the element and why it is a symmetry.
    """

    entry: str
    name: str
    transform: Callable[[nn.Module, torch.Generator], nn.Module]
    symmetry: str


def _gelu_mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(5, 8), nn.GELU(), nn.Linear(8, 8), nn.GELU(), nn.Linear(8, 3))


_IMG = (3, 8, 8)

ZOO: tuple[ZooEntry, ...] = (
    ZooEntry(
        "vgg11_bn",
        _IMG,
        lambda seed: _build(VGG, seed),
        _move_vgg,
        "per conv layer: channel permutation (rows, bias, BN, next conv's columns; classifier "
        "columns in blocks of H*W=4 through view), conv->BN scale a!=0 (sign into gamma), conv "
        "bias shift t into running_mean, ReLU scale c>0 of gamma/beta (max pool commutes) with "
        "the reader's columns /c",
    ),
    ZooEntry(
        "resnet20_a",
        _IMG,
        lambda seed: _build(lambda: CifarResNet(option="A"), seed),
        _move_resnet,
        "residual streams P1 (stage 1), P2 = P1 on the middle [q2, q2+C1) plus any permutation "
        "of the 2*q2 zero-padded channels (left and right pads mix), P3 = P2 on the middle plus "
        "any permutation of its 4+4 pads, positive stream scales tied the same way (pads free), "
        "block-internal permutations + ReLU scales, conv->BN scales a!=0",
    ),
    ZooEntry(
        "resnet20_b",
        _IMG,
        lambda seed: _build(lambda: CifarResNet(option="B"), seed),
        _move_resnet,
        "independent permutation + positive scale of each stage's post-ReLU residual stream "
        "(block bn2 and shortcut BN affine rows, readers' conv1/shortcut/linear columns), "
        "block-internal permutations + ReLU scales, conv->BN scales a!=0 (shortcut conv too)",
    ),
    ZooEntry(
        "preact_resnet",
        _IMG,
        lambda seed: _build(PreActResNet, seed),
        _move_preact,
        "each residual stream (read only by BatchNorms) takes a permutation and a scale a!=0 of "
        "all its producing convs compensated in every reading BN; each relu(bn(.)) takes a "
        "positive scale of gamma/beta with conv1 and the 1x1 shortcut conv columns /c; block "
        "hidden units: permutation, BN scale, ReLU scale",
    ),
    ZooEntry(
        "wide_resnet_block",
        _IMG,
        lambda seed: _build(WideResNet, seed),
        _move_wrn,
        "conv1(bias)->Dropout->bn2: permutation, scale a!=0, bias shift t into bn2.running_mean "
        "(dropout is the identity in eval), ReLU scale; stream 1 (read by 2 BNs + the 1x1 "
        "shortcut conv): permutation and a!=0; stream 2: permutation, a!=0, conv2 bias shift",
    ),
    ZooEntry(
        "mobilenetv2",
        _IMG,
        lambda seed: _build(MobileNetV2, seed),
        _move_mobilenet,
        "expanded channels: one permutation of expand rows, bn1, depthwise rows, bn2, project "
        "columns; scales a!=0 (conv->BN), c>0 after bn1 divides the depthwise ROWS, c>0 after "
        "bn2; streams: permutation, c>0 on the ReLU-fed one, any a!=0 on linear bottlenecks",
    ),
    ZooEntry(
        "densenet_block",
        _IMG,
        lambda seed: _build(DenseNet, seed),
        _move_densenet,
        "each concatenated segment (stem, each bottleneck's output) takes its own permutation "
        "and scale a!=0, applied at its offset in every later bn1/conv1 and the transition; "
        "each reading BN takes its own ReLU scale; bottleneck/transition units as conv->BN->ReLU",
    ),
    ZooEntry(
        "inception_block",
        _IMG,
        lambda seed: _build(GoogLeNet, seed),
        _move_inception,
        "stem channels (read by all four branches, through max pool for b4) and every branch "
        "hidden layer: permutation, a!=0, bias shift, c>0; each branch's output block of the "
        "concatenation permuted and scaled on its own in the linear head's columns",
    ),
    ZooEntry(
        "se_block",
        _IMG,
        lambda seed: _build(SENet, seed),
        _move_senet,
        "block channels permuted through the gate (conv2/bn2, fc2 rows+bias, fc1 columns, "
        "shortcut, readers) with c>0 (bn2 affine *c, fc1 columns /c keeps the gate); SE hidden "
        "units permuted and scaled; conv->BN scales a!=0; block hidden units",
    ),
    ZooEntry(
        "mlp_with_loss",
        (6,),
        lambda seed: _build(MLPWithLoss, seed),
        _move_mlp_with_loss,
        "both ReLU hidden layers: permutation and positive scale; criterion and the unused "
        "aux_head are left alone (aux_head reads nothing in forward)",
    ),
    ZooEntry(
        "mnist_cnn_log_softmax",
        (1, 8, 8),
        lambda seed: _build(MnistNet, seed),
        _move_mnist,
        "conv1 channels, conv2 channels (fc1 columns in blocks of 2*2 through max_pool and "
        "flatten) and fc1 units: permutation and positive ReLU scale",
    ),
    ZooEntry(
        "gelu_mlp",
        (5,),
        lambda seed: _build(_gelu_mlp, seed),
        _move_gelu,
        "permutation of each GELU layer only (GELU is neither odd nor positively homogeneous)",
    ),
    ZooEntry(
        "silu_tanh_mlp",
        (5,),
        lambda seed: _build(MixedActivationMLP, seed),
        _move_mixed,
        "SiLU layer: permutation only; Hardtanh and Softsign layers (odd): permutation and sign "
        "flips of incoming rows+bias and outgoing columns",
    ),
    ZooEntry(
        "asserting_cnn",
        _IMG,
        lambda seed: _build(AssertingCNN, seed),
        _move_asserting,
        "conv1, conv2 (fc1 columns in blocks of 4) and fc1 units: permutation and positive ReLU "
        "scale; the assert and the shape branch see only shapes",
    ),
    ZooEntry(
        "resnext_block",
        _IMG,
        lambda seed: _build(ResNeXt, seed),
        _move_resnext,
        "grouped conv2 (groups=2): inside each block, conv1/bn1 units permute and scale with "
        "the columns of that block's rows of conv2 only, conv2/bn2 units with conv3's columns; "
        "conv->BN a!=0, ReLU c>0; output streams (bn3 + shortcut BN) permuted and scaled; whole "
        "blocks swap (conv1/bn1 rows in runs of a, conv2/bn2 rows and conv3 columns in runs of b)",
    ),
    ZooEntry(
        "vit_timm",
        _IMG,
        lambda seed: _build(TimmViT, seed),
        _move_timm_vit,
        "residual stream permuted through every LayerNorm (conv patch embedding rows, class "
        "token, position embedding, proj/fc2 rows, readers' columns); LayerNorm gains share "
        "a!=0 with their readers; heads swap as blocks of the packed qkv rows; query-key "
        "features permute together, value features with proj's columns and scale a!=0; GELU "
        "units permute",
    ),
    ZooEntry(
        "vit_lucidrains",
        _IMG,
        lambda seed: _build(LucidViT, seed),
        _move_lucid_vit,
        "residual stream permuted through every LayerNorm (patch Linear rows and the LayerNorm "
        "after it, to_out/net.4 rows, class token, position embedding, readers' columns); "
        "LayerNorm gains share a!=0 with their readers (the raw-patch one too); heads of "
        "dim_head=3 != dim/heads swap as blocks of the chunked to_qkv rows; query-key and "
        "value features (value a!=0) inside heads; GELU units permute",
    ),
    ZooEntry(
        "gpt_tied",
        (5,),
        lambda seed: _build(TinyGPT, seed),
        _move_gpt,
        "token ids; residual stream permuted through every LayerNorm (tied embedding/output "
        "columns once, sliced position Parameter, o_proj/c_proj rows, readers' columns); ln_1 "
        "and ln_2 gains share a!=0 with their readers (not ln_f: its reader is tied); heads, "
        "query-key and value features (value a!=0) as in vit_timm; GELU units permute",
        vocab=11,
    ),
)

EXTRAS: tuple[ExtraElement, ...] = (
    ExtraElement(
        "gpt_tied",
        "head_linear_maps",
        _extra_gpt_head_linear_maps,
        "per head: W_Q -> A W_Q, W_K -> A^-T W_K (biases too) keep the scores, W_V -> B W_V "
        "with o_proj's columns W_O,h B^-1 keep the output; A, B random invertible",
    ),
    ExtraElement(
        "vit_timm",
        "head_linear_maps",
        _extra_timm_head_linear_maps,
        "the same per-head invertible maps on the q, k and v blocks of the packed qkv rows",
    ),
    ExtraElement(
        "vit_lucidrains",
        "head_linear_maps",
        _extra_lucid_head_linear_maps,
        "the same per-head invertible maps on the chunks of to_qkv (no bias; heads of "
        "dim_head=3, inner width 6 != dim 8) and to_out's columns",
    ),
    ExtraElement(
        "gpt_tied",
        "attention_biases",
        _extra_gpt_attention_biases,
        "key bias + u adds q.u to every score of a query (softmax ignores it); value bias + u "
        "adds u to every output (attention rows sum to 1), taken back by o_proj bias - W_O u",
    ),
    ExtraElement(
        "resnet20_b",
        "residual_bias_exchange",
        _extra_resnet_b_bias_exchange,
        "bn2.bias + t and shortcut BN bias - t: only their sum enters the residual addition",
    ),
    ExtraElement(
        "wide_resnet_block",
        "stream_shift",
        _extra_wrn_stream_shift,
        "stem bias + t, t into both reading BN means, 1x1 shortcut bias - W t (no padding); and "
        "layer2 conv2 bias + u with shortcut bias - u (only their sum is added)",
    ),
    ExtraElement(
        "mobilenetv2",
        "linear_bottleneck_gl",
        _extra_mobilenet_linear_group,
        "eval-mode BN is a per-channel affine map, so the linear bottleneck after layers.1 "
        "takes any invertible M: conv3/shortcut rows D^-1 M D W, BN bias M*offset + d*mean, "
        "reader columns W M^-1",
    ),
    ExtraElement(
        "mnist_cnn_log_softmax",
        "logit_shift",
        _extra_log_softmax_shift,
        "log_softmax(z + k*1) = log_softmax(z): fc2 rows + u (same u every row), bias + t",
    ),
)

_BY_NAME = {e.name: e for e in ZOO}


def entry(name: str) -> ZooEntry:
    """The zoo entry called ``name``.

    Parameters
    ----------
    name : str
        One of ``[e.name for e in ZOO]``.

    Returns
    -------
    ZooEntry
    """
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"zoo: no entry {name!r}; have {sorted(_BY_NAME)}") from None


def example_input(entry: ZooEntry, seed: int = 0, batch: int = 8) -> Tensor:
    """A float64 standard-normal batch for ``entry`` (token ids for an entry with a ``vocab``),
    from its own generator.

    Parameters
    ----------
    entry : ZooEntry
        The entry whose ``input_shape`` to use.
    seed : int
        Seed of the generator.
    batch : int
        Batch size.

    Returns
    -------
    Tensor
        Shape ``(batch, *entry.input_shape)``; float64, or int64 ids in ``[0, entry.vocab)``.
    """
    gen = torch.Generator().manual_seed(seed)
    if entry.vocab is not None:
        return torch.randint(0, entry.vocab, (batch, *entry.input_shape), generator=gen)
    return torch.randn((batch, *entry.input_shape), generator=gen, dtype=DTYPE)
