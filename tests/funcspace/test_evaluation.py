"""Batched evaluation: every strategy and chunk equals a plain forward of each nn.Module."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from funcspace.data import Dataset
from funcspace.errors import FuncspaceError
from funcspace.evaluation import Evaluation, Evaluator, Settings, evaluate, evaluate_affine
from funcspace.models import CNN, MLP, lenet
from funcspace.params import from_params, stack
from tests.strategies import models as random_models

TOL = 1e-10  # float64 throughout


def reference(models, x, y, recalibrate_on=None, batch_size=None):
    """The plain way: each model in eval mode (after a manual train-mode recalibration)."""
    errors, losses = [], []
    for model in models:
        model = copy.deepcopy(model)
        if recalibrate_on is not None:
            for m in model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.reset_running_stats()
                    m.momentum = None
            model.train()
            for m in model.modules():
                if isinstance(m, nn.Dropout):
                    m.eval()
            step = batch_size or len(recalibrate_on)
            with torch.no_grad():
                for i in range(0, len(recalibrate_on), step):
                    model(recalibrate_on[i : i + step])
        model.eval()
        with torch.no_grad():
            out = model(x)
        losses.append(F.cross_entropy(out, y).item())
        errors.append((out.argmax(1) != y).double().mean().item())
    return np.array(errors), np.array(losses)


def assert_matches(result: Evaluation, expected) -> None:
    np.testing.assert_allclose(result.error, expected[0], atol=TOL, rtol=0)
    np.testing.assert_allclose(result.loss, expected[1], atol=TOL, rtol=1e-9)


def perturbed_copies(model, k, scale=0.3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(k):
        twin = copy.deepcopy(model)
        with torch.no_grad():
            for p in twin.parameters():
                p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))
            for m in twin.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                    m.running_mean.add_(
                        0.1
                        * torch.randn(
                            m.running_mean.shape, generator=gen, dtype=m.running_mean.dtype
                        )
                    )
        out.append(twin)
    return out


def mlp(batchnorm=False, seed=0):
    return MLP(12, [16, 16], 5, batchnorm=batchnorm, seed=seed).double()


def cnn(batchnorm=False, seed=0):
    net = CNN(
        1,
        6,
        channels=(3, 4),
        kernel_size=3,
        hidden=(8,),
        n_classes=5,
        batchnorm=batchnorm,
        seed=seed,
    )
    return net.double()


def data(kind: str, n: int = 40, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    shape = (n, 12) if kind == "mlp" else (n, 1, 6, 6)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    return x, torch.randint(0, 5, (n,), generator=gen)


FAMILIES = {"mlp": mlp, "cnn": cnn}


# ------------------------------------------------------------------ batched = looped = forward


@pytest.mark.parametrize("family", ["mlp", "cnn"])
@pytest.mark.parametrize("with_bn", [False, True])
@pytest.mark.parametrize("batchnorm", ["fixed", "recalibrate"])
def test_every_strategy_equals_module_forward(family, with_bn, batchnorm):
    nets = perturbed_copies(FAMILIES[family](with_bn), 5)
    x, y = data(family)
    recal = x if batchnorm == "recalibrate" else None
    expected = reference(nets, x, y, recalibrate_on=recal)
    strategies = ["loop", "vmap", "auto"] + (["stacked"] if family == "mlp" else [])
    for strategy in strategies:
        for chunk in (None, 1, 2, 3, 4, 5, 9):
            result = evaluate(nets, (x, y), strategy=strategy, chunk=chunk, batchnorm=batchnorm)
            assert_matches(result, expected)
            assert len(result) == 5


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_stacked_batchnorm_of_one_point_is_a_single_networks_bit_for_bit(dtype):
    """The stacked chain's BatchNorm, one point at a time (the compute regime), computes what
    nn.BatchNorm1d computes: recalibration (train mode, cumulative average over batches, as
    update_bn does) and evaluation, outputs and statistics bit for bit. A last-bit difference
    before a sign would flip it. A chunk of points agrees to float rounding."""
    from funcspace.evaluation.stacked import _chain_bn

    gen = torch.Generator().manual_seed(4)
    module = nn.BatchNorm1d(48, momentum=None).to(dtype)
    with torch.no_grad():
        module.weight.normal_(generator=gen)
        module.bias.normal_(generator=gen)
    params = {"bn.weight": module.weight.detach(), "bn.bias": module.bias.detach()}
    batches = [torch.randn(700, 48, generator=gen, dtype=dtype) * 3 + 1 for _ in range(3)]
    mean, var = torch.zeros(48, dtype=dtype), torch.ones(48, dtype=dtype)
    module.reset_running_stats()
    module.train()
    for step, h in enumerate(batches, start=1):
        ours = _chain_bn(h, "bn", params, None, module, True, {"bn": (mean, var)}, step)
        assert torch.equal(ours, module(h))
    assert torch.equal(mean, module.running_mean) and torch.equal(var, module.running_var)
    module.eval()
    buffers = {"bn.running_mean": mean, "bn.running_var": var}
    with torch.no_grad():
        assert torch.equal(
            _chain_bn(batches[0], "bn", params, buffers, module, True, None, 1), module(batches[0])
        )
    # a chunk of two points: (k, d, N), stacked parameters and accumulators
    k = 2
    chunk = torch.stack([b.T for b in batches[:k]])
    stacked = {n: v.expand(k, -1).contiguous() for n, v in params.items()}
    acc = (torch.zeros(k, 48, dtype=dtype), torch.ones(k, 48, dtype=dtype))
    out = _chain_bn(chunk, "bn", stacked, None, module, False, {"bn": acc}, 1)
    module.train()
    for i in range(k):
        module.reset_running_stats()
        expected = module(batches[i])
        assert torch.allclose(out[i].T, expected, rtol=1e-5, atol=1e-5)
        assert torch.allclose(acc[0][i], module.running_mean, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("batchnorm", [False, True])
def test_stacked_input_with_stacked_or_shared_buffers(batchnorm):
    nets = perturbed_copies(mlp(batchnorm), 4)
    x, y = data("mlp")
    assert_matches(evaluate(stack(nets), (x, y), chunk=3), reference(nets, x, y))
    # Shared buffers: every point uses the template's running statistics.
    params = stack(nets).params
    shared = from_params(nets[0], params)
    with_template_stats = []
    for net in nets:
        twin = copy.deepcopy(net)
        twin.load_state_dict({**twin.state_dict(), **dict(nets[0].named_buffers())})
        with_template_stats.append(twin)
    for strategy in ("loop", "vmap", "stacked"):
        result = evaluate(shared, (x, y), strategy=strategy, chunk=2)
        assert_matches(result, reference(with_template_stats, x, y))


def test_single_module_and_dataset_splits():
    net = mlp(seed=3)
    x, y = data("mlp", 50)
    dataset = Dataset("toy", (x[:30], y[:30]), (x[30:], y[30:]), 5)
    assert_matches(evaluate(net, dataset), reference([net], x[:30], y[:30]))
    assert_matches(evaluate(net, dataset, split="test"), reference([net], x[30:], y[30:]))


@pytest.mark.parametrize("family", ["mlp", "cnn"])
def test_data_batches_and_recalibration_batches(family):
    nets = perturbed_copies(FAMILIES[family](batchnorm=True), 3)
    x, y = data(family, 45)
    recal, _ = data(family, 34, seed=7)
    expected = reference(nets, x, y, recalibrate_on=recal, batch_size=8)
    for strategy in ("auto", "loop", "vmap"):
        result = evaluate(
            nets,
            (x, y),
            batch_size=8,
            batchnorm="recalibrate",
            recalibration_data=(recal, torch.zeros(34, dtype=torch.long)),
            strategy=strategy,
            chunk=2,
        )
        assert_matches(result, expected)
        assert result.batch_size == 8


def test_recalibration_uses_training_split_of_a_dataset():
    nets = perturbed_copies(mlp(batchnorm=True), 2)
    x, y = data("mlp", 50)
    dataset = Dataset("toy", (x[:30], y[:30]), (x[30:], y[30:]), 5)
    result = evaluate(nets, dataset, split="test", batchnorm="recalibrate")
    assert_matches(result, reference(nets, x[30:], y[30:], recalibrate_on=x[:30]))


def test_nothing_is_mutated_and_eval_mode_is_used():
    net = MLP(12, [16], 5, batchnorm=True, dropout=0.5, seed=0).double()
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x, y = data("mlp")
    for batchnorm in ("fixed", "recalibrate"):
        for strategy in ("loop", "vmap", "stacked"):
            evaluate(net, (x, y), batchnorm=batchnorm, strategy=strategy)
    assert net.training and all(m.training for m in net.modules())
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    # eval mode: Dropout off, running statistics used.
    assert_matches(evaluate(net, (x, y)), reference([net], x, y))


@given(case=random_models(), k=st.integers(1, 4), chunk=st.integers(1, 5))
def test_random_architectures_batched_equals_looped(case, k, chunk):
    nets = perturbed_copies(case.model, k, scale=0.1)
    with torch.no_grad():
        classes = case.model(case.x).shape[1]
    y = torch.arange(len(case.x)) % classes
    expected = reference(nets, case.x, y)
    for strategy in ("auto", "loop", "vmap"):
        assert_matches(evaluate(nets, (case.x, y), strategy=strategy, chunk=chunk), expected)


def test_stacked_strategy_runs_plain_chains_with_any_activation():
    for act in (nn.ReLU(), nn.LeakyReLU(0.2), nn.Tanh(), nn.GELU(), nn.Identity()):
        net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(12, 9),
            act,
            nn.Dropout(0.3),
            nn.Linear(9, 9, bias=False),
            nn.BatchNorm1d(9, affine=False),
            nn.ReLU(),
            nn.Linear(9, 5),
        ).double()
        nets = perturbed_copies(net, 3)
        x, y = data("mlp")
        for chunk in (1, 2, 3):
            result = evaluate(nets, (x, y), strategy="stacked", chunk=chunk)
            assert_matches(result, reference(nets, x, y))


def test_auto_rule_picks_stacked_chunks_from_sizes():
    net = nn.Sequential(
        nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10)
    )
    points = from_params(
        net, {n: p.detach().expand(64, *p.shape) for n, p in net.named_parameters()}
    )
    small = evaluate(points, (torch.randn(128, 64), torch.randint(0, 10, (128,))))
    assert small.strategy == "stacked" and small.chunk == 16
    large = evaluate(points, (torch.randn(1797, 64), torch.randint(0, 10, (1797,))))
    assert large.strategy == "stacked" and large.chunk == 1
    # Generic models: vmap while a point's pass is small, the loop beyond.
    x, y = data("cnn")
    small = evaluate(perturbed_copies(cnn(), 3), (x, y))
    assert small.strategy == "vmap" and small.chunk == 3
    assert evaluate(cnn(), (x, y)).strategy == "loop"  # one point: nothing to batch
    big = lenet(seed=0)
    heavy = evaluate([big, big], (torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))))
    assert heavy.strategy == "loop"


def test_ties_count_as_argmax_does():
    """Equal logits: the first maximal class is the prediction, in every layout."""
    net = nn.Sequential(nn.Linear(12, 6), nn.ReLU(), nn.Linear(6, 5)).double()
    with torch.no_grad():
        net[2].weight.zero_()
        net[2].bias.copy_(torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0]))
    x, y = data("mlp")
    nets = perturbed_copies(net, 3, scale=0.0)
    for strategy, chunk in (("stacked", 1), ("stacked", 3), ("loop", 1), ("vmap", 3)):
        result = evaluate(nets, (x, y), strategy=strategy, chunk=chunk)
        np.testing.assert_array_equal(result.error, (y != 1).double().mean().item())


def test_float32_model_with_float64_inputs_and_metric_subset():
    net = MLP(12, [16], 5, seed=0)
    x, y = data("mlp")
    result = evaluate(net, (x, y), metrics=("error",))
    assert set(result.values) == {"error"}
    with torch.no_grad():
        expected = (net(x.float()).argmax(1) != y).double().mean().item()
    assert result.error[0] == pytest.approx(expected)
    with pytest.raises(FuncspaceError, match="not computed"):
        result.loss  # noqa: B018
    as_dict = result.to_dict()
    assert as_dict["values"]["error"] == [pytest.approx(expected)]
    assert as_dict["strategy"] == "stacked" and as_dict["settings"]["metrics"] == ["error"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_strategies_agree():
    nets = [n.cuda() for n in perturbed_copies(mlp(batchnorm=True), 6)]
    x, y = data("mlp")
    expected = reference([n.cpu() for n in copy.deepcopy(nets)], x, y)
    for strategy in ("loop", "vmap", "stacked"):
        assert_matches(evaluate(nets, (x, y), strategy=strategy), expected)


# -------------------------------------------------------------------------------- affine


def plane(net, seed=0, leave_out_biases=False):
    gen = torch.Generator().manual_seed(seed)
    origin = {n: p.detach() for n, p in net.named_parameters()}
    directions = []
    for _ in range(2):
        directions.append(
            {
                n: torch.randn(p.shape, generator=gen, dtype=p.dtype)
                for n, p in origin.items()
                if not (leave_out_biases and p.ndim == 1)
            }
        )
    coefficients = torch.rand((7, 2), generator=gen, dtype=torch.float64) - 0.5
    return origin, directions, coefficients


def as_models(net, origin, directions, coefficients):
    out = []
    for c in coefficients:
        twin = copy.deepcopy(net)
        with torch.no_grad():
            for n, p in twin.named_parameters():
                p.copy_(
                    origin[n] + sum(ci * d.get(n, 0) for ci, d in zip(c, directions, strict=True))
                )
        out.append(twin)
    return out


@pytest.mark.parametrize("family", ["mlp", "cnn"])
@pytest.mark.parametrize("batchnorm", ["fixed", "recalibrate"])
def test_affine_equals_plain_evaluation(family, batchnorm):
    net = FAMILIES[family](batchnorm=True)
    x, y = data(family)
    origin, directions, coefficients = plane(net, leave_out_biases=family == "cnn")
    recal = x if batchnorm == "recalibrate" else None
    expected = reference(as_models(net, origin, directions, coefficients), x, y, recal, 16)
    strategies = ("auto", "loop", "vmap") + (("stacked",) if family == "mlp" else ())
    for strategy in strategies:
        for chunk in (None, 1, 3, 7):
            result = evaluate_affine(
                net,
                origin,
                directions,
                coefficients,
                (x, y),
                strategy=strategy,
                chunk=chunk,
                batchnorm=batchnorm,
                batch_size=16,
            )
            assert result.first_layer_reuse
            assert_matches(result, expected)
    plain = evaluate_affine(
        net,
        origin,
        directions,
        coefficients,
        (x, y),
        batchnorm=batchnorm,
        reuse_first_layer=False,
        batch_size=16,
    )
    assert not plain.first_layer_reuse
    assert_matches(plain, expected)


class Untraceable(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(12, 8), nn.Linear(8, 5)

    def forward(self, x):
        h = self.a(x)
        if h.sum() > 1e9:
            h = -h
        return self.b(torch.relu(h))


class SkipFromInput(nn.Module):
    """The input is used again after the first layer: the suffix needs it."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(12, 12), nn.Linear(12, 5)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)) + x)


class TiedFirstLayer(nn.Module):
    """The first layer is called again later: only its first call is shared."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(12, 12)
        self.b = nn.Linear(12, 5)

    def forward(self, x):
        return self.b(self.a(torch.relu(self.a(x))))


@pytest.mark.parametrize(
    ("cls", "reuse"), [(Untraceable, False), (SkipFromInput, True), (TiedFirstLayer, True)]
)
def test_affine_detects_first_layer_or_falls_back(cls, reuse):
    net = cls().double()
    x, y = data("mlp")
    origin, directions, coefficients = plane(net)
    expected = reference(as_models(net, origin, directions, coefficients), x, y)
    for strategy in ("auto", "loop") + (("vmap",) if reuse else ()):
        result = evaluate_affine(net, origin, directions, coefficients, (x, y), strategy=strategy)
        assert result.first_layer_reuse == reuse
        assert_matches(result, expected)


def test_affine_line_matches_endpoints():
    a, b = mlp(seed=1), mlp(seed=2)
    x, y = data("mlp")
    pa = {n: p.detach() for n, p in a.named_parameters()}
    pb = {n: p.detach() for n, p in b.named_parameters()}
    line = evaluate_affine(
        a, pa, [{n: pb[n] - pa[n] for n in pa}], torch.tensor([[0.0], [1.0]]), (x, y)
    )
    assert_matches(line, reference([a, b], x, y))


# ----------------------------------------------------------------------------- evaluator


def assert_same(result: Evaluation, expected: Evaluation) -> None:
    assert result.to_dict() == expected.to_dict()


@pytest.mark.parametrize("family", ["mlp", "cnn"])
def test_evaluator_reused_across_calls_equals_the_functions(family):
    net = FAMILIES[family](batchnorm=True)
    x, y = data(family)
    nets = perturbed_copies(net, 5)
    evaluator = Evaluator(net)
    origin, directions, coefficients = plane(net, leave_out_biases=family == "cnn")
    for _ in range(2):  # the second round reuses the trace made for the first
        for models in (nets, nets[2:], stack(nets), net):
            for strategy in ("auto", "loop"):
                options = dict(strategy=strategy, batch_size=16, batchnorm="recalibrate")
                assert_same(
                    evaluator.evaluate(models, (x, y), Settings(**options)),
                    evaluate(models, (x, y), **options),
                )
        for chunk in (None, 3):
            assert_same(
                evaluator.evaluate_affine(
                    origin, directions, coefficients, (x, y), Settings(chunk=chunk)
                ),
                evaluate_affine(net, origin, directions, coefficients, (x, y), chunk=chunk),
            )
    assert evaluator.template is net


def test_evaluator_runs_untraceable_models():
    nets = [Untraceable().double() for _ in range(3)]
    x, y = data("mlp")
    result = Evaluator(nets[0]).evaluate(nets, (x, y))
    assert result.strategy == "loop"
    assert_matches(result, reference(nets, x, y))


def test_evaluator_refuses_other_architectures():
    x, y = data("mlp")
    evaluator = Evaluator(mlp())
    with pytest.raises(FuncspaceError, match="not of this Evaluator's architecture"):
        evaluator.evaluate(MLP(12, [16, 8], 5).double(), (x, y))
    # Same parameter shapes, another activation: the trace would not fit either.
    with pytest.raises(FuncspaceError, match="not of this Evaluator's architecture"):
        evaluator.evaluate(MLP(12, [16, 16], 5, activation="tanh").double(), (x, y))
    changed = mlp()
    evaluator = Evaluator(changed)
    changed.layers[2] = nn.Tanh()
    with pytest.raises(FuncspaceError, match="changed since"):
        evaluator.evaluate_affine(*plane(changed), (x, y))
    with pytest.raises(FuncspaceError, match="template must be an nn.Module"):
        Evaluator("mlp")


# -------------------------------------------------------------------------------- errors


def test_errors_name_the_problem():
    x, y = data("mlp")
    with pytest.raises(FuncspaceError, match=r"models\[1\] differs from models\[0\]"):
        evaluate([MLP(12, [16], 5), MLP(12, [8], 5)], (x.float(), y))
    with pytest.raises(FuncspaceError, match="other parameters"):
        evaluate([MLP(12, [16], 5), MLP(12, [16, 16], 5)], (x.float(), y))
    with pytest.raises(FuncspaceError, match="non-empty list"):
        evaluate([], (x, y))
    with pytest.raises(FuncspaceError, match="empty"):
        evaluate(mlp(), (x[:0], y[:0]))
    empty = Dataset("empty", (x, y), (x[:0], y[:0]), 5)
    with pytest.raises(FuncspaceError, match="empty"):
        evaluate(mlp(), empty, split="test")
    with pytest.raises(FuncspaceError, match="strategy"):
        evaluate(mlp(), (x, y), strategy="fast")
    with pytest.raises(FuncspaceError, match="metric"):
        evaluate(mlp(), (x, y), metrics=("accuracy",))
    with pytest.raises(FuncspaceError, match="plain chain"):
        evaluate(cnn(), data("cnn"), strategy="stacked")
    with pytest.raises(FuncspaceError, match="class indices below"):
        evaluate(mlp(), (x, y + 5))
    with pytest.raises(FuncspaceError, match="use strategy='loop'"):
        evaluate(Untraceable().double(), (x, y), strategy="vmap")
    with pytest.raises(FuncspaceError, match="chunk"):
        evaluate(mlp(), (x, y), chunk=0)
    with pytest.raises(FuncspaceError, match="batch_size"):
        evaluate(mlp(), (x, y), batch_size=0)
    with pytest.raises(FuncspaceError, match="at least 2 inputs"):
        evaluate(mlp(batchnorm=True), (x, y), batchnorm="recalibrate", batch_size=39)
    net = mlp()
    origin, directions, coefficients = plane(net)
    with pytest.raises(FuncspaceError, match=r"shape \(K, 2\)"):
        evaluate_affine(net, origin, directions, coefficients[:, :1], (x, y))
    with pytest.raises(FuncspaceError, match="does not have"):
        evaluate_affine(net, origin, [{"nope": torch.zeros(1)}], coefficients[:, :1], (x, y))
    with pytest.raises(FuncspaceError, match="missing"):
        evaluate_affine(net, {}, directions, coefficients, (x, y))


class _ItemInForward(nn.Module):
    """A model vmap cannot batch: forward reads a value with ``.item()``."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        scale = 1.0 + 0.0 * self.fc.weight.abs().max().item()
        return self.fc(x) * scale


def test_auto_falls_back_to_the_loop_when_vmap_cannot_run_the_model(caplog):
    torch.manual_seed(0)
    nets = [_ItemInForward().double() for _ in range(3)]
    x, y = torch.randn(16, 4, dtype=torch.float64), torch.randint(0, 3, (16,))
    with caplog.at_level("INFO", logger="funcspace.evaluation.engine"):
        result = evaluate(nets, (x, y), strategy="auto")
    assert result.strategy == "loop"
    assert any("vmap could not run" in r.getMessage() for r in caplog.records)
    with torch.no_grad():
        expected = [F.cross_entropy(net(x), y).item() for net in nets]
    np.testing.assert_allclose(result.loss, expected, rtol=1e-12)
    with pytest.raises(FuncspaceError, match="vmap cannot run _ItemInForward"):
        evaluate(nets, (x, y), strategy="vmap")
