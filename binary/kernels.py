"""Exact products of +-1 tensors, in int8 with int32 accumulation where that is fast.

A binary network's hidden layers multiply +-1 activations by +-1 weights: every product and
every partial sum is a small integer, so int8 inputs with int32 accumulation
(``torch._int_mm``) give the same numbers as float32 (exact while sums stay below 2**24), at
4.2-8x the speed of float32 on a CPU with AVX512 int8 dot products (../shared/PERFORMANCE.md)
and on CUDA. ``torch._int_mm`` is a private torch function: this module is the one place that
calls it, pads shapes to what CUDA's kernel takes, and falls back to float32 where it is
missing or refuses a shape.

Where it is slow it is avoided: on a CPU without int8 dot-product instructions (AMD EPYC with
AVX2 only, torch 2.13) ``_int_mm`` ran 27-160x *slower* than float32 (4000x1000 @ 1000x1000:
1.5-2.1 s against 0.054 s; 2048**3: 12-23 s against 0.14 s). ``int8=None`` (the default) picks
int8 only where it is expected to be faster (:func:`int8_preferred`: CUDA, or a CPU with one of
``INT8_CPU_FLAGS``); ``int8=True`` forces it wherever it runs (tests, measurements);
``int8=False`` never uses it. The results are equal bit for bit on every path.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import torch
from torch import Tensor

from .errors import BinaryError

__all__ = [
    "binary_linear",
    "binary_linear_stacked",
    "binary_matmul",
    "int8_preferred",
    "int8_supported",
]

logger = logging.getLogger(__name__)

#: CPU flags (Linux ``/proc/cpuinfo``) of int8 dot-product instructions that make int8 fast.
INT8_CPU_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


def _device_key(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return str(device)


@functools.cache
def _probe(key: str) -> bool:
    """Whether ``torch._int_mm`` runs on the device and returns the exact product."""
    if not hasattr(torch, "_int_mm"):
        return False
    gen = torch.Generator().manual_seed(0)
    a = (torch.randint(0, 2, (32, 24), generator=gen) * 2 - 1).to(torch.int8)
    b = (torch.randint(0, 2, (24, 16), generator=gen) * 2 - 1).to(torch.int8)
    try:
        out = torch._int_mm(a.to(key), b.to(key)).cpu()
    except (RuntimeError, NotImplementedError) as err:
        logger.info("torch._int_mm does not run on %s (%s); binary products use float32", key, err)
        return False
    return bool(torch.equal(out, a.int() @ b.int()))


def int8_supported(device: torch.device | str = "cpu") -> bool:
    """Whether int8 products with int32 accumulation (``torch._int_mm``) run on ``device``.

    Probed once per device with a small product checked against the exact one.

    Examples
    --------
    >>> isinstance(int8_supported("cpu"), bool)
    True
    """
    return _probe(_device_key(device))


@functools.lru_cache(maxsize=1)
def _cpu_has_int8_dot() -> bool:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:  # not Linux: no way to tell cheaply, so keep float32 (always exact)
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            return bool(INT8_CPU_FLAGS & set(line.split(":", 1)[-1].split()))
    return False


def int8_preferred(device: torch.device | str = "cpu") -> bool:
    """Whether ``int8=None`` uses int8 on ``device``: on CUDA where it runs; on a CPU where it
    runs and the CPU has int8 dot-product instructions (``INT8_CPU_FLAGS``).

    Examples
    --------
    >>> int8_preferred("meta")
    False
    """
    device = torch.device(device)
    if device.type == "cuda":
        return int8_supported(device)
    if device.type == "cpu":
        return _cpu_has_int8_dot() and int8_supported(device)
    return False


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


def _use_int8(int8: bool | None, device: torch.device) -> bool:
    if int8 is None:
        return int8_preferred(device)
    if not isinstance(int8, bool):
        raise BinaryError(f"int8 must be True, False or None, got {int8!r}")
    return int8 and int8_supported(device)


def _out_dtype(*tensors: Tensor) -> torch.dtype:
    """The operands' promoted floating dtype; the default dtype for integer operands."""
    dtype = None
    for t in tensors:
        if t.is_floating_point():
            dtype = t.dtype if dtype is None else torch.promote_types(dtype, t.dtype)
    return torch.get_default_dtype() if dtype is None else dtype


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _int_mm(a: Tensor, b: Tensor, pad: bool | None = None) -> Tensor:
    """``a @ b`` (2-D) in int8 with int32 accumulation. ``pad`` (default: on CUDA) meets
    CUDA's shape rules (more than 16 rows, inner and output sizes multiples of 8) by zero
    padding, which changes no sum."""
    m, k = a.shape
    n = b.shape[1]
    a8, b8 = a.to(torch.int8), b.to(torch.int8)
    if a.device.type == "cuda" if pad is None else pad:
        rows, inner, cols = max(m, 17), _round_up(k, 8), _round_up(n, 8)
        if (rows, inner) != (m, k):
            a8 = torch.nn.functional.pad(a8, (0, inner - k, 0, rows - m))
        if (inner, cols) != (k, n):
            b8 = torch.nn.functional.pad(b8, (0, cols - n, 0, inner - k))
        return torch._int_mm(a8, b8)[:m, :n]
    return torch._int_mm(a8, b8)


def binary_matmul(a: Tensor, b: Tensor, *, int8: bool | None = None, check: bool = True) -> Tensor:
    """``a @ b`` for 2-D tensors of small integers (+-1), exact, in int8 where it pays.

    Parameters
    ----------
    a : Tensor
        ``(m, k)``, integers in ``[-128, 127]`` (any dtype).
    b : Tensor
        ``(k, n)``, the same.
    int8 : bool, optional
        ``None``: int8 with int32 accumulation where :func:`int8_preferred`, else float;
        ``True``: int8 wherever it runs (:func:`int8_supported`), else float; ``False``: float.
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
        For operands that are not 2-D tensors of one device with matching inner sizes, or
        (``check``) hold values other than integers in ``[-128, 127]``.

    Examples
    --------
    >>> a = torch.tensor([[1.0, -1.0, 1.0]])
    >>> b = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0]])
    >>> binary_matmul(a, b, int8=True)
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
            return _int_mm(a, b).to(dtype)
        except RuntimeError as err:  # a shape or layout this torch's kernel refuses
            logger.info("torch._int_mm refused %s @ %s (%s); using float", a.shape, b.shape, err)
    return a.to(dtype) @ b.to(dtype)


def binary_linear(
    x: Tensor, weight: Tensor, *, int8: bool | None = None, check: bool = True
) -> Tensor:
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
    x: Tensor, weights: Tensor, *, int8: bool | None = None, check: bool = True
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
    if _use_int8(int8, x.device):
        return torch.stack(
            [binary_matmul(x[k], weights[k].T, int8=True, check=False) for k in range(K)]
        )
    dtype = _out_dtype(x, weights)
    return torch.bmm(x.to(dtype), weights.to(dtype).transpose(1, 2))
