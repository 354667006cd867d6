"""What each layer and function does to the channels it carries: the tables discovery reads.

An elementwise map ``f`` lets through what commutes with it: every elementwise map commutes
with permutations of channels; a positively homogeneous one (``f(c z) = c f(z)`` for ``c > 0``:
ReLU, LeakyReLU, max-pooling) also with positive scales; an odd one (``f(-z) = -f(z)``: tanh,
hardtanh with symmetric limits, softsign) with signs; anything else (GELU, SiLU, sigmoid, ELU,
softplus, hardswish, Mish, ReLU6, ...) with permutations only. A torch function that is not in
these tables counts as elementwise only when its ATen operator carries the ``pointwise`` tag.
"""

from __future__ import annotations

import operator
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Sign

Kind = Literal["homogeneous", "odd", "sign", "even", "pointwise", "linear"]

SUPPORTED_LAYERS = (
    "Linear, Conv1d, Conv2d (grouped and depthwise too), BatchNorm1d, BatchNorm2d, every "
    "elementwise activation (ReLU, LeakyReLU, PReLU, Tanh, Hardtanh, Softsign, Sign, GELU, SiLU, "
    "Sigmoid, ELU, Softplus, Hardswish, Mish, ReLU6, ...), Identity, Dropout, max/avg/adaptive "
    "pooling, Flatten, Unflatten, residual additions and subtractions, concatenation, channel "
    "slicing and zero-padding of channels, products of two tensors (gates), mean/sum over spatial"
    " axes, products with constants, softmax/log-softmax over the output; for sequences: "
    "Embedding, LayerNorm, RMSNorm (modules or written by hand), parameters added to or "
    "multiplying the features (position tables, gains), attention written with view/transpose "
    "around matmul or F.scaled_dot_product_attention (masks, dropout), MultiheadAttention, "
    "TransformerEncoderLayer"
)

# module classes -> what they let through (PReLU and Hardtanh are decided per instance)
MODULE_KINDS: dict[type[nn.Module], Kind] = {
    nn.ReLU: "homogeneous",
    nn.LeakyReLU: "homogeneous",
    nn.RReLU: "homogeneous",  # eval mode: a LeakyReLU with the mean slope
    nn.MaxPool1d: "homogeneous",
    nn.MaxPool2d: "homogeneous",
    nn.AdaptiveMaxPool1d: "homogeneous",
    nn.AdaptiveMaxPool2d: "homogeneous",
    nn.Tanh: "odd",
    nn.Softsign: "odd",
    nn.Tanhshrink: "odd",
    nn.Softshrink: "odd",
    nn.Hardshrink: "odd",
    Sign: "sign",
    nn.GELU: "pointwise",
    nn.SiLU: "pointwise",
    nn.Sigmoid: "pointwise",
    nn.ELU: "pointwise",
    nn.CELU: "pointwise",
    nn.SELU: "pointwise",
    nn.Softplus: "pointwise",
    nn.Hardswish: "pointwise",
    nn.Hardsigmoid: "pointwise",
    nn.Mish: "pointwise",
    nn.ReLU6: "pointwise",
    nn.LogSigmoid: "pointwise",
    nn.Threshold: "pointwise",
    nn.Identity: "linear",
    nn.Dropout: "linear",
    nn.Dropout1d: "linear",
    nn.Dropout2d: "linear",
    nn.AlphaDropout: "linear",
    nn.AvgPool1d: "linear",
    nn.AvgPool2d: "linear",
    nn.AdaptiveAvgPool1d: "linear",
    nn.AdaptiveAvgPool2d: "linear",
}

FUNCTION_KINDS: dict[object, Kind] = {
    F.relu: "homogeneous",
    torch.relu: "homogeneous",
    torch.relu_: "homogeneous",
    F.relu_: "homogeneous",
    F.leaky_relu: "homogeneous",
    F.rrelu: "homogeneous",
    F.max_pool1d: "homogeneous",
    F.max_pool2d: "homogeneous",
    torch.max_pool1d: "homogeneous",
    torch.max_pool2d: "homogeneous",
    F.adaptive_max_pool1d: "homogeneous",
    F.adaptive_max_pool2d: "homogeneous",
    torch.abs: "homogeneous",
    torch.tanh: "odd",
    F.tanh: "odd",
    F.softsign: "odd",
    F.tanhshrink: "odd",
    F.softshrink: "odd",
    F.hardshrink: "odd",
    torch.sin: "odd",
    torch.atan: "odd",
    torch.asinh: "odd",
    torch.erf: "odd",
    torch.sigmoid: "pointwise",
    F.sigmoid: "pointwise",
    F.gelu: "pointwise",
    F.silu: "pointwise",
    F.elu: "pointwise",
    F.celu: "pointwise",
    F.selu: "pointwise",
    F.softplus: "pointwise",
    F.hardswish: "pointwise",
    F.hardsigmoid: "pointwise",
    F.mish: "pointwise",
    F.relu6: "pointwise",
    F.logsigmoid: "pointwise",
    torch.square: "even",
    torch.neg: "linear",
    operator.neg: "linear",
    torch.sign: "sign",
    F.dropout: "linear",
    F.dropout1d: "linear",
    F.dropout2d: "linear",
    F.alpha_dropout: "linear",
    F.avg_pool1d: "linear",
    F.avg_pool2d: "linear",
    torch.avg_pool1d: "linear",
    F.adaptive_avg_pool1d: "linear",
    F.adaptive_avg_pool2d: "linear",
}

METHOD_KINDS: dict[str, Kind] = {
    "relu": "homogeneous",
    "relu_": "homogeneous",
    "abs": "homogeneous",
    "tanh": "odd",
    "tanh_": "odd",
    "neg": "linear",
    "sign": "sign",
    "square": "even",
    "contiguous": "linear",
    "float": "linear",
    "double": "linear",
    "half": "linear",
    "bfloat16": "linear",
    "clone": "linear",
    "detach": "linear",
}

# which of the kinds keep the tensor's per-channel translation (a bias before a BatchNorm)
SHIFT_MODULES = (
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.AlphaDropout,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
)
SHIFT_FUNCTIONS = {
    F.dropout,
    F.dropout1d,
    F.dropout2d,
    F.alpha_dropout,
    F.max_pool1d,
    F.max_pool2d,
    torch.max_pool1d,
    torch.max_pool2d,
    F.adaptive_max_pool1d,
    F.adaptive_max_pool2d,
    F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d,
}
SHIFT_METHODS = {"contiguous", "clone", "detach"}

ADD_FUNCTIONS = {operator.add, torch.add, operator.iadd}
SUB_FUNCTIONS = {operator.sub, torch.sub, operator.isub}
MUL_FUNCTIONS = {operator.mul, torch.mul, operator.imul}
DIV_FUNCTIONS = {operator.truediv, torch.div, operator.itruediv}
SOFTMAX_FUNCTIONS = {F.softmax, F.log_softmax, torch.softmax, torch.log_softmax}
SOFTMAX_MODULES = (nn.Softmax, nn.LogSoftmax)
SHAPE_METHODS = {"size", "dim", "numel"}

# what may be done to attention scores besides elementwise maps (masks, scaling, dropout)
SCORE_OPS = {
    "add",
    "add_",
    "sub",
    "mul",
    "mul_",
    "truediv",
    "div",
    "div_",
    "iadd",
    "imul",
    "itruediv",
    "masked_fill",
    "masked_fill_",
    "where",
    "dropout",
    "contiguous",
    "clone",
    "to",
    "float",
    "double",
    "half",
    "type_as",
    "expand",
    "expand_as",
}

# reductions that are not linear: a norm is invariant to the signs of what it sums (its square
# is a sum of squares), a variance or standard deviation to nothing but the order
NORM_REDUCTIONS = {"norm", "vector_norm"}
EVEN_REDUCTIONS = {"norm", "vector_norm", "var", "std"}
EVEN_REDUCTION_METHODS = ("norm", "var", "std")
EVEN_REDUCTION_FUNCTIONS = (torch.norm, torch.var, torch.std, torch.linalg.vector_norm)
POW_FUNCTIONS = {torch.pow, operator.pow}
# functions that act along axis 1 (channels of a feature map)
AXIS_ONE_FUNCTIONS = {
    F.max_pool1d,
    F.max_pool2d,
    torch.max_pool1d,
    torch.max_pool2d,
    F.adaptive_max_pool1d,
    F.adaptive_max_pool2d,
    F.avg_pool1d,
    F.avg_pool2d,
    torch.avg_pool1d,
    F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d,
    F.dropout1d,
    F.dropout2d,
}


def reduction_name(target: object) -> str:
    """The name a reduction function goes by in :meth:`Walk.reduce` (``torch.var`` -> var)."""
    if target is torch.linalg.vector_norm:
        return "vector_norm"
    return getattr(target, "__name__", str(target))


def reduction_dims(node, name: str):
    """The ``dim`` argument of a reduction node (a norm takes ``p`` first)."""
    if "dim" in node.kwargs:
        return node.kwargs["dim"]
    position = 2 if name in NORM_REDUCTIONS else 1
    return node.args[position] if len(node.args) > position else None


def power_kind(node) -> Kind | None:
    """What ``x ** p`` lets through: an even integer power keeps permutations and forgets
    signs, an odd one keeps signs, ``p = 1`` everything."""
    target = getattr(node.target, "__name__", str(node.target))
    if target == "square":
        return "even"
    exponent = node.args[1] if len(node.args) > 1 else node.kwargs.get("exponent")
    if isinstance(exponent, bool) or not isinstance(exponent, (int, float)):
        return None
    if exponent == 1:
        return "linear"
    if float(exponent).is_integer():
        return "even" if int(exponent) % 2 == 0 else "odd"
    return "pointwise"


def module_kind(module: nn.Module) -> Kind | None:
    """What an activation or pooling module lets through; ``None`` if it is not elementwise."""
    if isinstance(module, nn.Hardtanh) and not isinstance(module, nn.ReLU6):
        return "odd" if module.min_val == -module.max_val else "pointwise"
    if isinstance(module, nn.PReLU):
        return "homogeneous"
    for cls, kind in MODULE_KINDS.items():
        if type(module) is cls:
            return kind
    for cls, kind in MODULE_KINDS.items():
        if isinstance(module, cls):
            return kind
    return None


def _aten_pointwise(name: str) -> bool:
    op = getattr(torch.ops.aten, name.rstrip("_") if name.endswith("_") else name, None)
    if op is None:
        return False
    try:
        overload = op.default
    except AttributeError:
        return False
    return torch.Tag.pointwise in overload.tags


def function_kind(target: object) -> Kind | None:
    """What a torch function lets through; ``None`` if it is not known to be elementwise."""
    try:
        if target in FUNCTION_KINDS:
            return FUNCTION_KINDS[target]  # type: ignore[index]
    except TypeError:  # unhashable target
        return None
    if target is F.hardtanh:
        return None  # decided from its arguments by the caller
    module = getattr(target, "__module__", "") or ""
    name = getattr(target, "__name__", "")
    if module.startswith("torch") and name and _aten_pointwise(name):
        return "pointwise"
    return None


def method_kind(name: str) -> Kind | None:
    """What a tensor method lets through; ``None`` if it is not known to be elementwise."""
    if name in METHOD_KINDS:
        return METHOD_KINDS[name]
    return "pointwise" if _aten_pointwise(name) else None
