"""Exact int8 products in the batched evaluation (``Settings.int8``): which layers the plan
marks, bit-exactness against float, the run-time fall-backs, the setting's values, CUDA."""

import copy

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import funcspace.evaluation.int8 as core
from canonicalize import Sign
from funcspace.errors import FuncspaceError
from funcspace.evaluation import INT8_MODES, Evaluation, Settings, evaluate, evaluate_affine
from funcspace.evaluation.plan import make_plan
from funcspace.params import stack
from tests.strategies import binary_mlps

needs_int8 = pytest.mark.skipif(
    not core.int8_supported("cpu"), reason="torch._int_mm does not run on this CPU"
)


class HalfSign(Sign):
    """A Sign subclass whose values are not -1/0/+1: the run-time check must catch it."""

    def forward(self, x):
        return 0.5 * torch.sign(x)


class NanSign(Sign):
    """A Sign that carries NaN through (as ``binary.BinarySign`` does; ``torch.sign`` gives 0)."""

    def forward(self, x):
        return torch.where(x.isnan(), x, torch.sign(x))


def signs(shape, generator):
    return torch.randint(0, 2, shape, generator=generator) * 2.0 - 1


def binary_net(widths=(12, 9, 7, 5), batchnorm=True, seed=0, sign=Sign):
    """Linear -> [BN] -> sign blocks with +-1 weights, a bias-free +-1 output layer."""
    g = torch.Generator().manual_seed(seed)
    layers = []
    for fan_in, width in zip(widths[:-2], widths[1:-1], strict=True):
        layers.append(nn.Linear(fan_in, width, bias=False))
        if batchnorm:
            layers.append(nn.BatchNorm1d(width))
        layers.append(sign())
    layers.append(nn.Linear(widths[-2], widths[-1], bias=False))
    net = nn.Sequential(*layers)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Linear):
                m.weight.copy_(signs(m.weight.shape, g))
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.normal_(generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.normal_(generator=g)
    return net.eval()


def flipped_copies(net, k, seed=1, fraction=0.2):
    """``k`` copies of ``net`` with a random fraction of every Linear's weights negated."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(k):
        other = copy.deepcopy(net)
        with torch.no_grad():
            for m in other.modules():
                if isinstance(m, nn.Linear):
                    flip = torch.rand(m.weight.shape, generator=g) < fraction
                    m.weight[flip] *= -1
        out.append(other)
    return out


def data(d=12, n=150, classes=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randint(0, classes, (n,), generator=g)


def same(a: Evaluation, b: Evaluation) -> bool:
    return all(np.array_equal(a[m], b[m]) for m in a.values)


# ----------------------------------------------------------------------------- the plan


def test_the_plan_marks_bias_free_linears_that_read_a_sign():
    net = nn.Sequential(
        nn.Linear(4, 6, bias=False),  # reads the data
        Sign(),
        nn.Dropout(),
        nn.Linear(6, 5, bias=False),  # sign -> dropout -> linear
        nn.BatchNorm1d(5),
        nn.Linear(5, 5, bias=False),  # reads BatchNorm's output
        HalfSign(),
        nn.Linear(5, 3),  # has a bias
        Sign(),
        nn.Flatten(),
        nn.Linear(3, 3, bias=False),
        nn.ReLU(),
        nn.Linear(3, 2, bias=False),  # reads a ReLU
    )
    chain = make_plan(net).chain
    kinds = {payload: kind for kind, payload in chain if kind.endswith("linear")}
    assert kinds == {
        "0": "linear",
        "3": "sign_linear",
        "5": "linear",
        "7": "linear",
        "10": "sign_linear",
        "12": "linear",
    }
    assert [kind for kind, _ in chain].count("sign") == 3


class FunctionalSign(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 5, bias=False), nn.Linear(5, 3, bias=False)
        self.c = nn.Linear(3, 2, bias=False)

    def forward(self, x):
        return self.c(self.b(torch.sign(self.a(x))).sign())


def test_the_plan_reads_torch_sign_and_sign_subclasses_as_one_op():
    plan = make_plan(FunctionalSign())
    assert [kind for kind, _ in plan.chain] == [
        "linear",
        "sign",
        "sign_linear",
        "sign",
        "sign_linear",
    ]
    plan = make_plan(binary_net(sign=HalfSign))
    assert plan.chain is not None and plan.widths == (12, 9, 7, 5)


# ------------------------------------------------------------------- exact against float


@needs_int8
@pytest.mark.parametrize("chunk", [None, 1, 3])
@pytest.mark.parametrize("batchnorm", ["fixed", "recalibrate"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forced_int8_equals_float_bit_for_bit(chunk, batchnorm, dtype):
    nets = [n.to(dtype) for n in flipped_copies(binary_net(), 7)]
    x, y = data()
    kwargs = dict(chunk=chunk, batchnorm=batchnorm, batch_size=64)
    fast = evaluate(nets, (x, y), int8="always", **kwargs)
    plain = evaluate(nets, (x, y), int8="never", **kwargs)
    assert fast.strategy == plain.strategy == "stacked"
    assert fast.int8_layers == ("3", "6") and plain.int8_layers == ()
    assert same(fast, plain)
    assert fast.settings.int8 == "always"


@needs_int8
@settings(deadline=None)
@given(binary_mlps(), st.integers(1, 4), st.sampled_from([None, 1, 2]))
def test_random_binary_mlps_forced_int8_equals_float(case, k, chunk):
    nets = flipped_copies(case.model, k, seed=k)
    out = case.model(case.x)
    y = torch.randint(0, 2, (len(case.x),), generator=torch.Generator().manual_seed(k))
    metric = "sign_error" if out.shape[1] == 1 else "error"
    y = y * 2.0 - 1 if metric == "sign_error" else y
    fast = evaluate(nets, (case.x, y), metric, chunk=chunk, int8="always")
    plain = evaluate(nets, (case.x, y), metric, chunk=chunk, int8="never")
    marked = [p for kind, p in make_plan(case.model).chain if kind == "sign_linear"]
    assert fast.int8_layers == tuple(marked)
    assert same(fast, plain)


# --------------------------------------------------------------------------- fall-backs


@needs_int8
def test_real_valued_weights_fall_back_to_float(int8_calls):
    """Latent real weights at some points: their chunks run in float, the others in int8."""
    nets = flipped_copies(binary_net(), 4)
    with torch.no_grad():
        nets[2][3].weight.mul_(0.75)  # one layer of one point is real-valued
    x, y = data()
    calls = int8_calls
    fast = evaluate(nets, (x, y), chunk=2, int8="always")
    plain = evaluate(nets, (x, y), chunk=2, int8="never")
    assert same(fast, plain)
    assert fast.int8_layers == ("6",)  # layer "3" fell back in the chunk holding point 2
    assert calls.count(False) == 1 and calls.count(True) == 3


@needs_int8
def test_inputs_that_are_not_signs_fall_back_to_float(int8_calls):
    nets = flipped_copies(binary_net(sign=HalfSign), 3)
    x, y = data()
    calls = int8_calls
    fast = evaluate(nets, (x, y), int8="always")
    assert same(fast, evaluate(nets, (x, y), int8="never"))
    assert fast.int8_layers == () and calls and not any(calls)


@needs_int8
def test_the_first_layer_reads_the_data_in_float():
    """Even +-1 data: the first layer is the shared product, never int8."""
    nets = flipped_copies(binary_net(), 3)
    x, y = data()
    fast = evaluate(nets, (torch.sign(x), y), int8="always")
    assert "0" not in fast.int8_layers and fast.int8_layers == ("3", "6")


@needs_int8
def test_nan_inputs_are_never_hidden_by_int8():
    """A NaN BatchNorm parameter makes the sign's output NaN: int8 must not turn it into a
    number; the engine reports it as it does in float."""
    net = binary_net(sign=NanSign)
    with torch.no_grad():
        net[1].bias[0] = float("nan")
    x, y = data()
    with pytest.raises(FuncspaceError, match=r"parameter '1.bias' contains NaN"):
        evaluate(flipped_copies(net, 2), (x, y), int8="always")


@needs_int8
def test_line_between_binary_networks_uses_int8_where_its_weights_allow(int8_calls):
    """On the straight line from a to b the weights are +-1 at the ends, -1/0/+1 at the
    midpoint (where a and b differ they cancel) and real-valued (+-0.5) at t = 1/4."""
    a, b = flipped_copies(binary_net(batchnorm=False), 2)
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    step = {n: pb[n] - pa[n] for n in pa}
    t = torch.tensor([[0.0], [0.25], [0.5], [1.0]])
    x, y = data()
    calls = int8_calls
    fast = evaluate_affine(a, pa, [step], t, (x, y), chunk=1, int8="always")
    plain = evaluate_affine(a, pa, [step], t, (x, y), chunk=1, int8="never")
    assert fast.first_layer_reuse and same(fast, plain)
    assert calls == [True, True, False, False, True, True, True, True]


@needs_int8
def test_other_strategies_and_half_precision_stay_in_float(int8_calls):
    nets = flipped_copies(binary_net(), 3)
    x, y = data()
    for strategy in ("loop", "vmap"):
        result = evaluate(nets, (x, y), strategy=strategy, int8="always")
        assert result.int8_layers == ()
    calls = int8_calls
    half = [n.to(torch.bfloat16) for n in nets]
    assert evaluate(half, (x, y), int8="always").int8_layers == () and not calls


# --------------------------------------------------------------------------- the setting


def test_auto_follows_int8_preferred(monkeypatch):
    nets = flipped_copies(binary_net(), 2)
    x, y = data()
    monkeypatch.setattr(core, "_cpu_has_int8_dot", lambda: False)
    assert not core.int8_preferred("cpu")
    assert evaluate(nets, (x, y)).int8_layers == ()
    monkeypatch.setattr(core, "_cpu_has_int8_dot", lambda: True)
    expected = ("3", "6") if core.int8_supported("cpu") else ()
    assert evaluate(nets, (x, y)).int8_layers == expected
    assert evaluate(nets, (x, y), int8="never").int8_layers == ()


def test_always_without_the_kernel_runs_float(monkeypatch):
    nets = flipped_copies(binary_net(), 2)
    x, y = data()
    core._probe.cache_clear()
    monkeypatch.delattr(torch, "_int_mm")
    try:
        fast = evaluate(nets, (x, y), int8="always")
        assert fast.int8_layers == () and same(fast, evaluate(nets, (x, y), int8="never"))
    finally:
        core._probe.cache_clear()


@pytest.mark.parametrize("bad", ["yes", True, None, "int8"])
def test_bad_int8_values_are_refused(bad):
    with pytest.raises(FuncspaceError, match=r"unknown int8 .*; choose one of auto, always, never"):
        Settings(int8=bad)
    with pytest.raises(FuncspaceError, match="unknown int8"):
        evaluate(binary_net(), data(), int8=bad)


def test_the_setting_and_the_result_round_trip():
    assert INT8_MODES == ("auto", "always", "never")
    chosen = Settings(int8="never")
    assert Settings.from_dict(chosen.to_dict()).int8 == "never"
    stored = {k: v for k, v in chosen.to_dict().items() if k != "int8"}
    assert Settings.from_dict(stored).int8 == "auto"  # saved before the setting existed
    result = evaluate(flipped_copies(binary_net(), 2), data(), int8="always")
    again = Evaluation.from_dict(result.to_dict())
    assert again.int8_layers == result.int8_layers and again.settings.int8 == "always"


def test_stacked_points_keep_their_dtype_and_checks():
    """Integer-valued but large weights (+-2) are exact in float, not int8's to run."""
    nets = flipped_copies(binary_net(), 2)
    with torch.no_grad():
        nets[0][3].weight.mul_(2)
    points = stack(nets)
    result = evaluate(points, data(), int8="always")
    assert "3" not in result.int8_layers


# ------------------------------------------------------------------------------- CUDA


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("chunk", [None, 1, 5])
def test_cuda_int8_equals_float_bit_for_bit(chunk):
    nets = [n.cuda() for n in flipped_copies(binary_net(widths=(12, 33, 40, 5)), 9)]
    x, y = data()
    x, y = x.cuda(), y.cuda()
    for batchnorm in ("fixed", "recalibrate"):
        kwargs = dict(chunk=chunk, batchnorm=batchnorm)
        fast = evaluate(nets, (x, y), int8="always", **kwargs)
        plain = evaluate(nets, (x, y), int8="never", **kwargs)
        assert fast.int8_layers == ("3", "6") and same(fast, plain)
        assert evaluate(nets, (x, y), **kwargs).int8_layers == fast.int8_layers  # auto: int8
