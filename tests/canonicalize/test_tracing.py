"""canonicalize.tracing: symbolic tracing first, then shape-dependent control flow specialized."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import TensorMetadata

from canonicalize import Sign, SymmetryError
from canonicalize.tracing import layer_path, trace

SEQ = torch.randn(4, 3, 8, generator=torch.Generator().manual_seed(0))  # (N, C, L)


def _line_of(marker: str) -> int:
    """The line of this file that ends with the comment ``# marker``."""
    lines = Path(__file__).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if line.rstrip().endswith(f"# {marker}"))


def _ops(gm: fx.GraphModule) -> list[tuple[str, Any]]:
    return [(n.op, n.target) for n in gm.graph.nodes]


def _called(gm: fx.GraphModule) -> list[str]:
    return [str(n.target) for n in gm.graph.nodes if n.op == "call_module"]


def _same_outputs(model: nn.Module, gm: fx.GraphModule, x: torch.Tensor) -> bool:
    with torch.no_grad():
        return torch.allclose(model.eval()(x), gm(x))


class _Values(fx.Interpreter):
    """Run a GraphModule and keep every node's value."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.values: dict[fx.Node, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
        self.values[n] = super().run_node(n)
        return self.values[n]


def _assert_tensor_meta(gm: fx.GraphModule, x: torch.Tensor) -> None:
    """Every node whose value is a tensor carries tensor_meta of that shape, and no other."""
    run = _Values(gm)
    with torch.no_grad():
        run.run(x)
    for node, value in run.values.items():
        if node.op == "output":
            continue
        meta = node.meta.get("tensor_meta")
        assert isinstance(value, torch.Tensor) == isinstance(meta, TensorMetadata), node
        if isinstance(value, torch.Tensor):
            assert tuple(meta.shape) == tuple(value.shape), node


# --- models -----------------------------------------------------------------------------------


class _ShapeAsserts(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(3, 5, 3, padding=1)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.dim() == 3, "expects (N, C, L)"  # failing-assert
        assert x.size(1) == 3, "expects 3 channels"
        assert x.shape[-1] % 2 == 0
        return self.act(self.conv(x))


class _TorchAssert(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(3, 5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch._assert(x.dim() == 3, "expects (N, C, L)")
        return self.conv(x)


class _PoolIfLong(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(3, 4, 1)
        self.pool = nn.MaxPool1d(2)
        self.sign = Sign()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        if h.size(-1) > 4:  # shape-branch
            h = self.pool(h)
        return self.sign(h)


class _PerChannel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [self.lin(x[:, c]) for c in range(x.size(1))]
        return torch.stack(parts, 1)


class _FlattenByShape(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(24, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = 1
        for size in x.shape[1:]:
            features *= size
        return self.lin(x.reshape(len(x), features))


class _ValueBranch(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # value-branch
            return x
        return -x


class _Wrapper(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.head = nn.Linear(3, 3)
        self.blk = inner
        self.out = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.blk(self.head(x)))


class _CheckedBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.dim() == 2 and x.size(-1) == 3, "expects (N, 3)"
        return F.relu(self.lin(x)) + x


class _ItemBranch(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.max().item() > 0:
            return x
        return -x


class _ValueLoop(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(int(x.abs().sum())):
            x = x * 2
        return x


class _NonzeroBranch(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.nonzero().size(0) > 3:
            return x
        return -x


class _MaskLoop(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for value in x[x > 0]:
            x = x + value
        return x


class _RawParameter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 4)
        self.w = nn.Parameter(torch.randn(4, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.size(-1) == 3
        return self.lin(x) @ self.w


class _ViewBySize(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(24, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.dim() == 3
        return self.lin(x.view(x.size(0), -1))


class _TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        assert x.dim() == 2
        return self.lin(x) + self.lin(y)


class _InPlace(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.dim() == 2
        return self.lin(F.relu(x, inplace=True))


class _WidthBranch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lin(x)
        if h.size(1) > 2:
            h = F.relu(h)
        return self.out(h)


# --- strategy 1: plain symbolic tracing ---------------------------------------------------------


def test_sequential_traces_like_symbolic_trace():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    x = torch.randn(5, 3)
    gm = trace(model, x)
    assert _ops(gm) == _ops(fx.symbolic_trace(model))
    assert gm.meta["tracing"] == "symbolic" and gm.meta["specialized"] == []
    assert model.training  # the model itself is untouched; a copy is traced in eval mode
    assert _same_outputs(model, gm, x)
    _assert_tensor_meta(gm, x)


def test_sign_stays_a_module():
    gm = trace(nn.Sequential(nn.Linear(3, 4), Sign(), nn.Linear(4, 2)), torch.randn(5, 3))
    assert _called(gm) == ["0", "1", "2"]


def test_torch_assert_is_checked_then_removed():
    gm = trace(_TorchAssert(), SEQ)
    assert gm.meta["tracing"] == "symbolic"
    assert _ops(gm) == [("placeholder", "x"), ("call_module", "conv"), ("output", "output")]


# --- strategy 2: specialization on the example input -------------------------------------------


def test_shape_asserts_are_traced():
    model = _ShapeAsserts()
    gm = trace(model, SEQ)
    assert gm.meta["tracing"] == "specialized"
    assert _called(gm) == ["conv", "act"]
    assert all(n.op != "call_function" for n in gm.graph.nodes)  # no asserts, no leftovers
    assert _same_outputs(model, gm, SEQ)
    assert _same_outputs(model, gm, torch.randn(7, 3, 8))
    _assert_tensor_meta(gm, SEQ)


def test_failing_assert_is_an_example_input_failure():
    with pytest.raises(SymmetryError) as info:
        trace(_ShapeAsserts(), torch.randn(4, 3))
    message = str(info.value)
    assert message.startswith("_ShapeAsserts failed on the example input of shape (4, 3)")
    assert f"test_tracing.py:{_line_of('failing-assert')}" in message
    assert "expects (N, C, L)" in message


@pytest.mark.parametrize("length, pooled", [(8, True), (3, False)])
def test_shape_dependent_branch_follows_the_example_input(length, pooled):
    model = _PoolIfLong()
    x = torch.randn(2, 3, length)
    gm = trace(model, x)
    assert ("pool" in _called(gm)) == pooled
    assert _called(gm)[-1] == "sign"  # Sign stays a leaf module
    assert _same_outputs(model, gm, x)
    notes = gm.meta["specialized"]
    assert f"test_tracing.py:{_line_of('shape-branch')}" in notes[0]
    assert notes[0].endswith(f"`if h.size(-1) > 4:  # shape-branch` -> {pooled}")
    _assert_tensor_meta(gm, x)


def test_loop_over_channels_is_unrolled():
    model = _PerChannel()
    gm = trace(model, SEQ)
    assert _called(gm) == ["lin"] * 3
    assert _same_outputs(model, gm, SEQ)
    _assert_tensor_meta(gm, SEQ)


def test_iterating_over_the_shape():
    model = _FlattenByShape()
    gm = trace(model, SEQ)
    assert _same_outputs(model, gm, SEQ)
    _assert_tensor_meta(gm, SEQ)


def test_size_read_used_by_an_operation_stays_in_the_graph():
    model = _ViewBySize()
    gm = trace(model, SEQ)
    assert ("call_method", "size") in _ops(gm)
    assert _same_outputs(model, gm, SEQ)
    assert _same_outputs(model, gm, torch.randn(9, 3, 8))  # the batch size is not fixed
    _assert_tensor_meta(gm, SEQ)


def test_assert_in_a_submodule_forward():
    model = _Wrapper(_CheckedBlock())
    x = torch.randn(5, 3)
    gm = trace(model, x)
    assert gm.meta["tracing"] == "specialized"
    assert _called(gm) == ["head", "blk.lin", "out"]
    assert "forward of 'blk' (_CheckedBlock)" in gm.meta["specialized"][0]
    assert _same_outputs(model, gm, x)
    _assert_tensor_meta(gm, x)


def test_parameters_are_not_inlined():
    model = _RawParameter()
    x = torch.randn(5, 3)
    gm = trace(model, x)
    assert ("call_module", "lin") in _ops(gm) and ("get_attr", "w") in _ops(gm)
    constants: list[Any] = []
    for node in gm.graph.nodes:
        fx.node.map_aggregate(node.args, constants.append)
    assert not any(isinstance(c, torch.Tensor) for c in constants)
    assert _same_outputs(model, gm, x)


def test_example_input_and_model_are_not_changed():
    model = _InPlace()
    x = torch.randn(5, 3)
    before, state = x.clone(), {k: v.clone() for k, v in model.state_dict().items()}
    trace(model, x)
    assert torch.equal(x, before) and model.training
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


# --- a model that is itself one layer ------------------------------------------------------


@pytest.mark.parametrize(
    "build, shape",
    [
        (lambda: nn.Linear(3, 2), (5, 3)),
        (lambda: nn.Conv2d(2, 3, 3), (2, 2, 6, 6)),
        (lambda: nn.BatchNorm1d(3), (5, 3)),
        (Sign, (5, 3)),
    ],
)
def test_a_bare_layer_is_a_one_layer_graph(build, shape):
    # torch.fx would trace the root's own forward: F.linear on get_attr weight and bias
    model, x = build(), torch.randn(shape)
    gm = trace(model, x)
    assert gm.meta["tracing"] == "layer" and gm.meta["specialized"] == []
    assert [node.op for node in gm.graph.nodes] == ["placeholder", "call_module", "output"]
    call = next(node for node in gm.graph.nodes if node.op == "call_module")
    assert layer_path(gm, call) == ""
    assert type(gm.get_submodule(str(call.target))) is type(model)
    assert list(gm.state_dict()) == list(model.state_dict())
    assert model.training  # a copy is traced in eval mode
    assert _same_outputs(model, gm, x)
    _assert_tensor_meta(gm, x)


def test_a_bare_layer_with_two_inputs_is_refused():
    with pytest.raises(SymmetryError, match=r"Bilinear.forward takes several inputs"):
        trace(nn.Bilinear(3, 3, 2), torch.randn(5, 3))


# --- refusals ---------------------------------------------------------------------------------


def test_value_dependent_branch_names_module_file_and_line():
    with pytest.raises(SymmetryError) as info:
        trace(_Wrapper(_ValueBranch()), torch.randn(5, 3))
    message = str(info.value)
    assert message.startswith("torch.fx could not trace _Wrapper: forward of 'blk' (_ValueBranch)")
    assert f"test_tracing.py:{_line_of('value-branch')}" in message
    assert "`if x.sum() > 0:  # value-branch`" in message
    assert "branches on tensor values" in message and "sum" in message
    assert "shapes only" in message


def test_value_dependent_branch_at_top_level_mentions_control_flow():
    with pytest.raises(SymmetryError, match=r"torch.fx could not trace _ValueBranch.*control flow"):
        trace(_ValueBranch(), torch.randn(5, 3))


@pytest.mark.parametrize(
    "model, words",
    [
        (_ItemBranch(), "branches on tensor values (input 'x' -> max -> item -> gt)"),
        (_ValueLoop(), "converts tensor values to int"),
        (_NonzeroBranch(), "nonzero"),
        (_MaskLoop(), "iterates over a tensor sized by tensor values (input 'x' -> getitem)"),
    ],
)
def test_other_value_dependences_are_refused(model, words):
    with pytest.raises(SymmetryError, match="torch.fx could not trace") as info:
        trace(model, torch.randn(5, 3))
    assert words in str(info.value)


def test_several_inputs_are_refused():
    with pytest.raises(SymmetryError, match=r"_TwoInputs.forward takes several inputs \(x, y\)"):
        trace(_TwoInputs(), torch.randn(5, 3))


def test_failure_on_the_example_input_while_specializing():
    with pytest.raises(SymmetryError) as info:
        trace(_WidthBranch(), torch.randn(5, 7))
    message = str(info.value)
    assert message.startswith("_WidthBranch failed on the example input of shape (5, 7)")
    assert "mat1 and mat2 shapes cannot be multiplied" in message
