"""Exact products of -1/0/+1 tensors in int8 with int32 accumulation, where that is fast.

A binary network's hidden layers multiply +-1 activations by +-1 weights: every product and
every partial sum is a small integer, so int8 operands with int32 accumulation
(``torch._int_mm``) give the same numbers as float32 (float32 sums of integers are exact while
they stay below 2**24 in magnitude, whatever the order of the additions). On a CPU with int8
dot-product instructions that was 4.2-8x the speed of float32 (../shared/PERFORMANCE.md,
measured on an AVX-512 instance); CUDA's int8 tensor cores are expected to pay too (not yet
measured in this project); on a CPU without them (AVX2 only, torch 2.13) ``_int_mm`` ran
7-35x *slower* than float32 on the products of a binary MLP's 256-wide layers and up to 160x on
2048-wide ones, and a whole Hamming-path profile forced into int8 took 7.7x as long
(benchmarks/README.md, ``binary.py``).

This module is the one place that calls the private ``torch._int_mm``: :func:`int_mm` pads
shapes to what CUDA's kernel takes, :func:`int8_supported` probes once per device that the
kernel runs and is exact, :func:`int8_preferred` says where it is expected to be faster, and
:func:`use_int8` turns the ``int8`` setting (:data:`~funcspace.evaluation.INT8_MODES`:
``"auto"``, ``"always"``, ``"never"``) into a decision for a device. The evaluation engine's
``"stacked"`` strategy calls :func:`int8_linear` for every Linear that reads a sign
activation's output; ``binary.kernels`` builds its public products on :func:`int_mm`.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import torch
from torch import Tensor

__all__ = [
    "INT8_CPU_FLAGS",
    "as_ternary",
    "int8_linear",
    "int8_preferred",
    "int8_supported",
    "int_bmm",
    "int_mm",
    "use_int8",
]

logger = logging.getLogger(__name__)

#: CPU flags (Linux ``/proc/cpuinfo``) of int8 dot-product instructions that make int8 fast.
INT8_CPU_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
#: Floating dtypes whose sums of -1/0/+1 products are exact integers (below 2**24 or 2**53):
#: the int8 result equals theirs. Half precision is not one (exact only to 2048).
EXACT_DTYPES = (torch.float32, torch.float64)
_EXACT_FAN_IN = 2**24


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
        out = int_mm(a.to(key), b.to(key)).cpu()
    except (RuntimeError, NotImplementedError) as err:
        logger.info("torch._int_mm does not run on %s (%s); products stay in float", key, err)
        return False
    return bool(torch.equal(out, a.int() @ b.int()))


def int8_supported(device: torch.device | str = "cpu") -> bool:
    """Whether int8 products with int32 accumulation (``torch._int_mm``) run on ``device``.

    Probed once per device with a small product checked against the exact one.

    Parameters
    ----------
    device : torch.device or str

    Returns
    -------
    bool

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
    except OSError:  # not Linux: no way to tell cheaply, so keep float (always exact)
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            return bool(INT8_CPU_FLAGS & set(line.split(":", 1)[-1].split()))
    return False


def int8_preferred(device: torch.device | str = "cpu") -> bool:
    """Whether ``int8="auto"`` uses int8 on ``device``: on CUDA where it runs; on a CPU where it
    runs and the CPU has int8 dot-product instructions (:data:`INT8_CPU_FLAGS`).

    Parameters
    ----------
    device : torch.device or str

    Returns
    -------
    bool

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


def use_int8(mode: str, device: torch.device | str) -> bool:
    """Whether the ``int8`` setting ``mode`` runs int8 products on ``device``.

    ``"auto"``: where :func:`int8_preferred`; ``"always"``: wherever the kernel runs
    (:func:`int8_supported`; elsewhere float, with a log message); ``"never"``: never. The
    mode is validated where it is given (:class:`~funcspace.evaluation.Settings`,
    ``binary.binary_matmul``).

    Examples
    --------
    >>> use_int8("never", "cpu"), use_int8("auto", "meta")
    (False, False)
    """
    if mode == "never":
        return False
    if mode == "auto":
        return int8_preferred(device)
    if int8_supported(device):
        return True
    logger.info(
        "int8='always', but torch._int_mm does not run on %s: products stay in float", device
    )
    return False


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def int_mm(a: Tensor, b: Tensor, *, pad: bool | None = None) -> Tensor:
    """``a @ b`` (2-D) in int8 with int32 accumulation: the one call of ``torch._int_mm``.

    Parameters
    ----------
    a : Tensor
        ``(m, k)``, integers in ``[-128, 127]`` (any dtype; cast to int8, not checked).
    b : Tensor
        ``(k, n)``, the same.
    pad : bool, optional
        Meet CUDA's shape rules (more than 16 rows, inner and output sizes multiples of 8) by
        zero padding, which changes no sum; default: on CUDA.

    Returns
    -------
    Tensor
        ``(m, n)``, int32.

    Raises
    ------
    RuntimeError
        Where torch's kernel refuses the operands (callers fall back to float).

    Examples
    --------
    >>> int_mm(torch.ones(3, 2), torch.tensor([[1.0], [-1.0]])).flatten().tolist()
    [0, 0, 0]
    """
    m, k = a.shape
    n = b.shape[1]
    a8, b8 = a.to(torch.int8), b.to(torch.int8)
    cuda = a.device.type == "cuda"
    if cuda if pad is None else pad:
        rows, inner, cols = max(m, 17), _round_up(k, 8), _round_up(n, 8)
        if (rows, inner) != (m, k):
            a8 = torch.nn.functional.pad(a8, (0, inner - k, 0, rows - m))
        if (inner, cols) != (k, n):
            b8 = torch.nn.functional.pad(b8, (0, cols - n, 0, inner - k))
        if cuda:  # cuBLAS takes some transposed layouts only: hand it row-major operands
            a8, b8 = a8.contiguous(), b8.contiguous()
        return torch._int_mm(a8, b8)[:m, :n]
    return torch._int_mm(a8, b8)


def int_bmm(a: Tensor, b: Tensor, dtype: torch.dtype) -> Tensor:
    """``a[i] @ b[i]`` for every i (3-D), in int8 with int32 accumulation, returned in
    ``dtype``: one :func:`int_mm` per slice (torch has no batched int8 product).

    Parameters
    ----------
    a : Tensor
        ``(K, m, k)``, integers in ``[-128, 127]`` (cast to int8, not checked).
    b : Tensor
        ``(K, k, n)``, the same.
    dtype : torch.dtype
        Of the result.

    Returns
    -------
    Tensor
        ``(K, m, n)``, contiguous.

    Raises
    ------
    RuntimeError
        Where torch's kernel refuses the operands.

    Examples
    --------
    >>> int_bmm(torch.ones(2, 1, 3), -torch.ones(2, 3, 1), torch.float32).flatten().tolist()
    [-3.0, -3.0]
    """
    a8, b8 = a.to(torch.int8), b.to(torch.int8)
    out = torch.empty(a.shape[0], a.shape[1], b.shape[2], dtype=dtype, device=a.device)
    for i in range(len(a8)):
        out[i].copy_(int_mm(a8[i], b8[i]))
    return out


def as_ternary(t: Tensor) -> Tensor | None:
    """``t`` as int8 when every entry is exactly -1, 0 or +1; None otherwise.

    NaN, infinities, fractions and larger integers all fail the check (the int8 copy read back
    must equal ``t``), so a caller that falls back to float on None never computes a
    different number. Two passes over ``t`` and two over its int8 copy.

    Examples
    --------
    >>> as_ternary(torch.tensor([1.0, -1.0, 0.0])).tolist(), as_ternary(torch.tensor([0.5]))
    ([1, -1, 0], None)
    >>> as_ternary(torch.tensor([float("nan"), 1.0])) is None
    True
    """
    q = t.to(torch.int8)
    if not torch.equal(q.to(t.dtype), t) or not torch.equal(q.clamp(-1, 1), q):
        return None
    return q


def int8_linear(h: Tensor, weight: Tensor, *, row: bool) -> Tensor | None:
    """A bias-free linear layer in int8 with int32 accumulation when it is exact; else None.

    The evaluation engine's one use of the int8 kernel (``"stacked"`` strategy, a Linear that
    reads a sign activation's output). It checks at run time that the inputs and the weights
    of every point hold only -1, 0 and +1 (:func:`as_ternary`) and that the dtype's own sums
    are exact, so the result equals the float product bit for bit; None (compute in float)
    otherwise, or where the kernel refuses the shapes.

    Parameters
    ----------
    h : Tensor
        ``row``: ``(N, in)`` for one point; else ``(K, in, N)``, the chunk's features in the
        stacked runner's (points, features, inputs) layout.
    weight : Tensor
        ``row``: ``(out, in)``; else ``(K, out, in)``.
    row : bool
        One point (``h @ weight.T``) or a chunk (``weight[k] @ h[k]``).

    Returns
    -------
    Tensor or None
        ``(N, out)`` or ``(K, out, N)`` in ``h``'s dtype; None where int8 would not be exact.

    Examples
    --------
    >>> h = torch.tensor([[1.0, -1.0, 1.0]])
    >>> int8_linear(h, torch.tensor([[1.0, 1.0, 1.0], [-1.0, 1.0, 1.0]]), row=True)
    tensor([[ 1., -1.]])
    >>> int8_linear(h, torch.tensor([[0.5, 1.0, 1.0]]), row=True) is None
    True
    """
    if h.dtype not in EXACT_DTYPES or weight.dtype != h.dtype or weight.shape[-1] >= _EXACT_FAN_IN:
        return None
    w8 = as_ternary(weight)
    if w8 is None:
        return None
    h8 = as_ternary(h)
    if h8 is None:
        return None
    try:
        if row:
            return int_mm(h8, w8.T).to(h.dtype)
        return int_bmm(w8, h8, h.dtype)
    except RuntimeError as err:  # a shape or layout this torch's kernel refuses
        logger.info("torch._int_mm refused %s x %s (%s); using float", w8.shape, h8.shape, err)
        return None
