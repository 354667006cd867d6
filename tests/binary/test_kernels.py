"""The int8 kernel: bit for bit the float32 product on random shapes, stacked points, padding,
the choice of path, and bad input."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import funcspace.evaluation.int8 as core
from binary import (
    BinaryError,
    binary_linear,
    binary_linear_stacked,
    binary_matmul,
    int8_preferred,
    int8_supported,
)

needs_int8 = pytest.mark.skipif(
    not int8_supported("cpu"), reason="torch._int_mm does not run on this CPU"
)


def _signs(shape, seed, zeros=False, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    low = -1 if zeros else 0
    values = torch.randint(low, 2, shape, generator=gen)
    return (values if zeros else values * 2 - 1).to(dtype)


sizes = st.integers(1, 40)


@needs_int8
@given(sizes, sizes, sizes, st.integers(0, 2**31 - 1), st.booleans())
def test_int8_product_equals_float32_bit_for_bit(m, k, n, seed, zeros):
    a, b = _signs((m, k), seed, zeros), _signs((k, n), seed + 1, zeros)
    expected = a @ b
    for int8 in ("always", "auto", "never"):
        out = binary_matmul(a, b, int8=int8)
        assert out.dtype == torch.float32 and torch.equal(out, expected)


@needs_int8
@given(sizes, sizes, sizes, st.integers(0, 2**31 - 1))
def test_cuda_padding_changes_no_sum(m, k, n, seed):
    """The zero padding CUDA's kernel needs, run on the CPU."""
    a, b = _signs((m, k), seed), _signs((k, n), seed + 1)
    out = core.int_mm(a, b, pad=True)
    assert out.dtype == torch.int32 and torch.equal(out.float(), a @ b)


@needs_int8
def test_large_fan_in_is_exact():
    a, b = _signs((3, 4001), 0), _signs((4001, 5), 1)
    assert torch.equal(binary_matmul(a, b, int8="always"), a @ b)
    assert torch.equal(binary_matmul(a.double(), b, int8="always"), a.double() @ b.double())


@needs_int8
@given(st.integers(1, 5), sizes, sizes, sizes, st.integers(0, 2**31 - 1), st.booleans())
def test_stacked_layer_equals_a_loop_over_points(K, N, fan_in, out, seed, shared):
    weights = _signs((K, out, fan_in), seed)
    x = _signs((N, fan_in) if shared else (K, N, fan_in), seed + 1)
    expected = torch.stack([F.linear(x if shared else x[i], weights[i]) for i in range(K)])
    for int8 in ("always", "never"):
        result = binary_linear_stacked(x, weights, int8=int8)
        assert result.shape == (K, N, out) and result.is_contiguous()
        assert torch.equal(result, expected)


@needs_int8
def test_linear_takes_leading_axes():
    x, w = _signs((2, 3, 7), 0), _signs((4, 7), 1)
    assert torch.equal(binary_linear(x, w, int8="always"), F.linear(x, w))


def test_integer_operands_give_the_default_float_dtype():
    a = _signs((4, 3), 0, dtype=torch.int8)
    b = _signs((3, 2), 1, dtype=torch.int64)
    out = binary_matmul(a, b)
    assert out.dtype == torch.get_default_dtype()
    assert torch.equal(out, a.float() @ b.float())


def test_auto_path_follows_the_cpu(monkeypatch):
    assert int8_preferred("meta") is False
    monkeypatch.setattr(core, "_cpu_has_int8_dot", lambda: False)
    assert int8_preferred("cpu") is False
    monkeypatch.setattr(core, "_cpu_has_int8_dot", lambda: True)
    assert int8_preferred("cpu") is int8_supported("cpu")


def test_missing_int_mm_falls_back_to_float(monkeypatch):
    core._probe.cache_clear()
    monkeypatch.delattr(torch, "_int_mm")
    try:
        assert int8_supported("cpu") is False
        a, b = _signs((5, 6), 0), _signs((6, 3), 1)
        assert torch.equal(binary_matmul(a, b, int8="always"), a @ b)
        x, w = _signs((4, 5, 6), 2), _signs((4, 3, 6), 3)
        assert torch.equal(binary_linear_stacked(x, w, int8="always"), x @ w.transpose(1, 2))
    finally:
        core._probe.cache_clear()


@pytest.mark.parametrize(
    "a, b, match",
    [
        (torch.ones(2, 3), torch.ones(2, 3), r"\(m, k\) by \(k, n\)"),
        (torch.ones(2, 3), torch.ones(3), r"\(m, k\) by \(k, n\)"),
        (torch.tensor([[1.0, 0.5]]), torch.ones(2, 1), r"a holds 0.5 at index \(0, 1\)"),
        (torch.ones(1, 2), torch.tensor([[float("nan")], [1.0]]), "b holds nan"),
        (torch.ones(1, 2), torch.tensor([[200.0], [1.0]]), r"\[-128, 127\]"),
        (torch.ones(1, 2, dtype=torch.bool), torch.ones(2, 1), "real numbers"),
        ([[1.0]], torch.ones(1, 1), "torch.Tensor"),
    ],
)
def test_bad_operands_are_refused(a, b, match):
    with pytest.raises(BinaryError, match=match):
        binary_matmul(a, b)


def test_bad_stacked_shapes_and_options_are_refused():
    with pytest.raises(BinaryError, match="one batch per point"):
        binary_linear_stacked(torch.ones(3, 4, 2), torch.ones(2, 5, 2))
    with pytest.raises(BinaryError, match=r"weights \(K, out, in\)"):
        binary_linear_stacked(torch.ones(4, 2), torch.ones(5, 2))
    for bad in ("yes", True, None):
        with pytest.raises(BinaryError, match="unknown int8 .*; choose one of auto, always, never"):
            binary_matmul(torch.ones(1, 1), torch.ones(1, 1), int8=bad)
        with pytest.raises(BinaryError, match="unknown int8"):
            binary_linear_stacked(torch.ones(2, 4, 2), torch.ones(2, 5, 2), int8=bad)
    # unchecked: the caller promises +-1, nothing is scanned
    assert binary_matmul(torch.ones(1, 2), torch.ones(2, 1), check=False).item() == 2.0
