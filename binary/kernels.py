"""Exact products of +-1 tensors, in int8 with int32 accumulation where that is fast.

A binary network's hidden layers multiply +-1 activations by +-1 weights: every product and
every partial sum is a small integer, so int8 inputs with int32 accumulation
(``torch._int_mm``) give the same numbers as float32 (exact while sums stay below 2**24), at
4.2-8x the speed of float32 on a CPU with AVX512 int8 dot products (../shared/PERFORMANCE.md)
and on CUDA. The kernel lives in the funcspace core, :mod:`funcspace.evaluation.int8` (the one
place that calls ``torch._int_mm``, pads shapes for CUDA and probes each device), where the
batched evaluation uses it for the Linear layers that read a sign activation
(``Settings.int8``); this module adds the checked public products on top of it.

Where it is slow it is avoided: on a CPU without int8 dot-product instructions (AMD EPYC with
AVX2 only, torch 2.13) ``_int_mm`` ran 27-160x *slower* than float32 (4000x1000 @ 1000x1000:
1.5-2.1 s against 0.054 s; 2048**3: 12-23 s against 0.14 s). ``int8`` takes the values of
``Settings.int8``: ``"auto"`` (the default) picks int8 only where it is expected to be faster
(:func:`int8_preferred`: CUDA, or a CPU with one of ``INT8_CPU_FLAGS``); ``"always"`` forces it
wherever it runs (tests, measurements); ``"never"`` never uses it. The results are equal bit
for bit on every path.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor

from funcspace._validate import check_choice
from funcspace.evaluation.int8 import (
    INT8_CPU_FLAGS,
    int8_preferred,
    int8_supported,
    int_bmm,
    int_mm,
    use_int8,
)
from funcspace.evaluation.settings import INT8_MODES

from .errors import BinaryError

__all__ = [
    "INT8_CPU_FLAGS",
    "binary_linear",
    "binary_linear_stacked",
    "binary_matmul",
    "int8_preferred",
    "int8_supported",
]

logger = logging.getLogger(__name__)


def _check_operand(name: str, t: object) -> Tensor:
    if not isinstance(t, Tensor):
        raise BinaryError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.is_complex() or t.dtype == torch.bool:
        raise BinaryError(f"{name} must hold real numbers, got dtype {t.dtype}")
    return t


def _check_values(name: str, t: Tensor) -> None:
    """Integers in the int8 range (+-1 in binary networks, 0 in zero padding)."""
    if not t.is_floating_point():
        bad = (t < -128) | (t > 127)
    elif torch.equal(t.round().clamp_(-128, 127), t):  # the cheap pass (NaN fails it)
        return
    else:
        bad = ~((t == torch.round(t)) & (t >= -128) & (t <= 127))
    if bool(bad.any()):
        index = tuple(int(i) for i in bad.nonzero()[0])
        value = float(t.detach()[index])
        raise BinaryError(
            f"{name} holds {value!r} at index {index}: binary products take integers "
            "in [-128, 127] (the +-1 weights and activations of a binary network); binarize "
            "the tensor first (binary.binarize) or use torch.matmul for real values"
        )


def _use_int8(int8: str, device: torch.device) -> bool:
    return use_int8(check_choice("int8", int8, INT8_MODES, error=BinaryError), device)


def _out_dtype(*tensors: Tensor) -> torch.dtype:
    """The operands' promoted floating dtype; the default dtype for integer operands."""
    dtype = None
    for t in tensors:
        if t.is_floating_point():
            dtype = t.dtype if dtype is None else torch.promote_types(dtype, t.dtype)
    return torch.get_default_dtype() if dtype is None else dtype


def binary_matmul(a: Tensor, b: Tensor, *, int8: str = "auto", check: bool = True) -> Tensor:
    """``a @ b`` for 2-D tensors of small integers (+-1), exact, in int8 where it pays.

    Parameters
    ----------
    a : Tensor
        ``(m, k)``, integers in ``[-128, 127]`` (any dtype).
    b : Tensor
        ``(k, n)``, the same.
    int8 : {"auto", "always", "never"}
        As ``funcspace.evaluation.Settings.int8``: ``"auto"``: int8 with int32 accumulation
        where :func:`int8_preferred`, else float; ``"always"``: int8 wherever it runs
        (:func:`int8_supported`), else float; ``"never"``: float.
    check : bool
        Check that the entries are integers in range (one pass over each operand); callers
        in hot loops whose inputs are +-1 by construction pass ``False``.

    Returns
    -------
    Tensor
        ``(m, n)`` in the operands' floating dtype (float32 for integer operands); the same
        numbers on every path while ``|sums| < 2**24`` (float32).

    Raises
    ------
    BinaryError
        For operands that are not 2-D tensors of one device with matching inner sizes, an
        unknown ``int8`` mode, or (``check``) values other than integers in ``[-128, 127]``.

    Examples
    --------
    >>> a = torch.tensor([[1.0, -1.0, 1.0]])
    >>> b = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0]])
    >>> binary_matmul(a, b, int8="always")
    tensor([[-1.,  3.]])
    """
    a, b = _check_operand("a", a), _check_operand("b", b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise BinaryError(
            f"binary_matmul multiplies (m, k) by (k, n); got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if a.device != b.device:
        raise BinaryError(f"a is on {a.device} and b on {b.device}; move them to one device")
    if check:
        _check_values("a", a)
        _check_values("b", b)
    dtype = _out_dtype(a, b)
    if _use_int8(int8, a.device) and a.numel() and b.numel():
        try:
            return int_mm(a, b).to(dtype)
        except RuntimeError as err:  # a shape or layout this torch's kernel refuses
            logger.info("torch._int_mm refused %s @ %s (%s); using float", a.shape, b.shape, err)
    return a.to(dtype) @ b.to(dtype)


def binary_linear(x: Tensor, weight: Tensor, *, int8: str = "auto", check: bool = True) -> Tensor:
    """``x @ weight.T`` (a bias-free ``nn.Linear``) for +-1 inputs and +-1 weights, exact.

    Parameters
    ----------
    x : Tensor
        ``(..., in_features)``, integers in ``[-128, 127]``.
    weight : Tensor
        ``(out_features, in_features)``, the same.
    int8, check : see :func:`binary_matmul`.

    Returns
    -------
    Tensor
        ``(..., out_features)``.

    Examples
    --------
    >>> binary_linear(torch.ones(2, 4), torch.tensor([[1.0, -1, 1, 1], [-1, -1, -1, 1]]))
    tensor([[ 2., -2.],
            [ 2., -2.]])
    """
    x, weight = _check_operand("x", x), _check_operand("weight", weight)
    if weight.ndim != 2 or x.ndim < 1 or x.shape[-1] != weight.shape[1]:
        raise BinaryError(
            f"binary_linear takes x (..., in) and weight (out, in); got {tuple(x.shape)} and "
            f"{tuple(weight.shape)}"
        )
    out = binary_matmul(x.reshape(-1, x.shape[-1]), weight.T, int8=int8, check=check)
    return out.reshape(*x.shape[:-1], weight.shape[0])


def binary_linear_stacked(
    x: Tensor, weights: Tensor, *, int8: str = "auto", check: bool = True
) -> Tensor:
    """One bias-free linear layer of ``K`` networks at once: ``x @ weights[k].T`` for each k.

    The layer an evaluator of many binary parameter points needs: with inputs shared by all
    points (a first hidden layer fed +-1 data, or one batch of +-1 activations) it is a single
    product with the ``K * out`` stacked rows; with per-point inputs (deeper layers) one
    product per point.

    Parameters
    ----------
    x : Tensor
        ``(N, in)`` shared by all points, or ``(K, N, in)`` one batch per point; integers in
        ``[-128, 127]``.
    weights : Tensor
        ``(K, out, in)``, the stacked +-1 weights.
    int8, check : see :func:`binary_matmul`.

    Returns
    -------
    Tensor
        ``(K, N, out)``, contiguous.

    Raises
    ------
    BinaryError
        For shapes that do not fit, or (``check``) values that are not small integers.

    Examples
    --------
    >>> w = torch.tensor([[[1.0, 1.0]], [[1.0, -1.0]]])  # two points, one unit each
    >>> binary_linear_stacked(torch.tensor([[1.0, 1.0], [1.0, -1.0]]), w)[:, :, 0]
    tensor([[2., 0.],
            [0., 2.]])
    """
    x, weights = _check_operand("x", x), _check_operand("weights", weights)
    if weights.ndim != 3 or x.ndim not in (2, 3) or x.shape[-1] != weights.shape[2]:
        raise BinaryError(
            "binary_linear_stacked takes x (N, in) or (K, N, in) and weights (K, out, in); got "
            f"{tuple(x.shape)} and {tuple(weights.shape)}"
        )
    K, out, fan_in = weights.shape
    if x.ndim == 3 and x.shape[0] != K:
        raise BinaryError(
            f"x stacks {x.shape[0]} batches of inputs but weights stack {K} points; give one "
            "batch per point, or one (N, in) batch shared by all"
        )
    if check:
        _check_values("x", x)
        _check_values("weights", weights)
    if x.ndim == 2:
        flat = binary_matmul(x, weights.reshape(K * out, fan_in).T, int8=int8, check=False)
        return flat.view(len(x), K, out).transpose(0, 1).contiguous()
    dtype = _out_dtype(x, weights)
    if _use_int8(int8, x.device) and x.numel() and weights.numel():
        try:
            return int_bmm(x, weights.transpose(1, 2), dtype)
        except RuntimeError as err:  # a shape or layout this torch's kernel refuses
            logger.info(
                "torch._int_mm refused %s x %s (%s); using float", x.shape, weights.shape, err
            )
    return torch.bmm(x.to(dtype), weights.to(dtype).transpose(1, 2))
