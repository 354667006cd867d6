"""The zoo's hand-written group elements keep each model's function and move its parameters.

These tests check ``tests/zoo.py`` on its own, with no discovery code: every model is float64,
in eval mode and deterministic in its seed; every hand-written element (and every extra element)
keeps the outputs to 1e-10 relative, changes the parameters by a clearly non-zero amount and
leaves the original model untouched; nothing touches the global RNG. A few controls show that the
option-A ResNet's group is exactly as ``symmetry`` states it: zero-padded channels may swap ends,
but may not mix with the carried channels, and the carried channels are tied to the stage before.
"""

from __future__ import annotations

import functools

import pytest
import torch
import torch.fx
from torch import Tensor, nn

from tests import zoo as Z
from tests.zoo import EXTRAS, ZOO, ZooEntry, entry, example_input

MODEL_SEEDS = (0, 1, 2)
MOVE_SEEDS = (100, 101, 102)
REQUIRED = (
    "vgg11_bn",
    "resnet20_a",
    "resnet20_b",
    "preact_resnet",
    "wide_resnet_block",
    "mobilenetv2",
    "densenet_block",
    "inception_block",
    "se_block",
    "mlp_with_loss",
    "mnist_cnn_log_softmax",
    "gelu_mlp",
    "silu_tanh_mlp",
    "asserting_cnn",
    "resnext_block",
    "vit_timm",
    "vit_lucidrains",
    "gpt_tied",
)
KEEP_TOL = 1e-10


@functools.cache
def built(name: str, seed: int) -> tuple[nn.Module, Tensor, Tensor, dict[str, Tensor]]:
    """Model, input, outputs and state of ``entry(name)`` at ``seed``, built once per session.

    Every test that uses a cached model checks that it is left unchanged.
    """
    zoo_entry = entry(name)
    model = zoo_entry.build(seed)
    x = example_input(zoo_entry, seed=seed)
    return model, x, outputs(model, x), snapshot(model)


def outputs(model: nn.Module, x: Tensor) -> Tensor:
    with torch.no_grad():
        return model(x.clone())


def relative(a: Tensor, b: Tensor) -> float:
    """Max abs difference over max abs of the reference ``b``."""
    return float((a - b).abs().max() / b.abs().max())


def snapshot(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_unchanged(model: nn.Module, before: dict[str, Tensor]) -> None:
    after = model.state_dict()
    assert after.keys() == before.keys()
    for key, value in before.items():
        assert torch.equal(after[key], value), key


def relative_move(moved: nn.Module, model: nn.Module) -> float:
    """``||theta' - theta|| / ||theta||`` over the floating-point state."""
    a, b = moved.state_dict(), model.state_dict()
    assert a.keys() == b.keys()
    diff = sum(float(((a[k] - b[k]) ** 2).sum()) for k in b if b[k].is_floating_point())
    norm = sum(float((b[k] ** 2).sum()) for k in b if b[k].is_floating_point())
    return (diff / norm) ** 0.5


def assert_float64_eval(model: nn.Module) -> None:
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        if t.is_floating_point():
            assert t.dtype == torch.float64, name
    assert not any(m.training for m in model.modules())


def shares_storage(a: nn.Module, b: nn.Module) -> bool:
    ptrs = {t.data_ptr() for t in a.state_dict().values()}
    return any(t.data_ptr() in ptrs for t in b.state_dict().values())


def test_zoo_has_the_required_entries() -> None:
    assert tuple(e.name for e in ZOO) == REQUIRED
    for name in REQUIRED:
        assert entry(name).name == name
        assert entry(name).symmetry and "\n" not in entry(name).symmetry
    with pytest.raises(KeyError):
        entry("resnet50")
    assert {x.entry for x in EXTRAS} <= set(REQUIRED)


@pytest.mark.parametrize("zoo_entry", ZOO, ids=lambda e: e.name)
def test_model_is_float64_eval_seeded_and_runs(zoo_entry: ZooEntry) -> None:
    rng = torch.random.get_rng_state()
    model = zoo_entry.build(0)
    x = example_input(zoo_entry)
    assert x.dtype == (torch.float64 if zoo_entry.vocab is None else torch.int64)
    assert x.shape == (8, *zoo_entry.input_shape)
    assert_float64_eval(model)
    y = outputs(model, x)
    assert y.dim() == 2 and y.shape[0] == 8 and bool(torch.isfinite(y).all())
    assert float(y.std(0).min()) > 1e-6, "outputs do not depend on the input"
    again, other = snapshot(zoo_entry.build(0)), snapshot(zoo_entry.build(1))
    assert_unchanged(model, again)
    assert any(not torch.equal(again[k], other[k]) for k in again if again[k].is_floating_point())
    assert torch.equal(torch.random.get_rng_state(), rng), "the global RNG was used"


@pytest.mark.parametrize("move_seed", MOVE_SEEDS)
@pytest.mark.parametrize("model_seed", MODEL_SEEDS)
@pytest.mark.parametrize("zoo_entry", ZOO, ids=lambda e: e.name)
def test_hand_element_keeps_function_and_moves_parameters(
    zoo_entry: ZooEntry, model_seed: int, move_seed: int
) -> None:
    model, x, y, before = built(zoo_entry.name, model_seed)
    rng = torch.random.get_rng_state()

    moved = zoo_entry.transform(model, torch.Generator().manual_seed(move_seed))

    assert torch.equal(torch.random.get_rng_state(), rng), "the global RNG was used"
    assert moved is not model and not shares_storage(moved, model)
    assert_unchanged(model, before)
    assert_float64_eval(moved)
    assert relative(outputs(moved, x), y) < KEEP_TOL
    assert torch.equal(outputs(model, x), y)
    assert relative_move(moved, model) > 0.05, "the element is (nearly) the identity"


@pytest.mark.parametrize("zoo_entry", ZOO, ids=lambda e: e.name)
def test_hand_element_is_a_function_of_its_generator(zoo_entry: ZooEntry) -> None:
    model = zoo_entry.build(0)
    a = snapshot(zoo_entry.transform(model, torch.Generator().manual_seed(7)))
    b = snapshot(zoo_entry.transform(model, torch.Generator().manual_seed(7)))
    c = snapshot(zoo_entry.transform(model, torch.Generator().manual_seed(8)))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("move_seed", MOVE_SEEDS[:2])
@pytest.mark.parametrize("model_seed", MODEL_SEEDS[:2])
@pytest.mark.parametrize("extra", EXTRAS, ids=lambda x: f"{x.entry}-{x.name}")
def test_extra_element_keeps_function_and_moves_parameters(
    extra: Z.ExtraElement, model_seed: int, move_seed: int
) -> None:
    model, x, y, before = built(extra.entry, model_seed)
    moved = extra.transform(model, torch.Generator().manual_seed(move_seed))
    assert_unchanged(model, before)
    assert relative(outputs(moved, x), y) < KEEP_TOL
    assert relative_move(moved, model) > 0.01


def test_only_the_models_that_read_sizes_defeat_symbolic_trace() -> None:
    """Asserts and unpacking on ``x.shape`` need concrete sizes; everything else traces."""
    for zoo_entry in ZOO:
        model, x, y, _ = built(zoo_entry.name, 0)
        if zoo_entry.name in ("asserting_cnn", "vit_timm", "vit_lucidrains", "gpt_tied"):
            with pytest.raises(torch.fx.proxy.TraceError):
                torch.fx.symbolic_trace(model)
        else:
            assert torch.equal(outputs(torch.fx.symbolic_trace(model), x), y), zoo_entry.name


# -- controls: the option-A group is exactly what ``symmetry`` says ----------------------------


def move_option_a_stage2(model: nn.Module, p2: list[int]) -> nn.Module:
    """Apply a stage-2 stream permutation that fixes the carried (middle) channels, carrying it
    into the middle of stage 3; or, if it moves them, do so without touching stage 1."""
    e = Z._Moved(model, torch.Generator().manual_seed(0))
    p = torch.tensor(p2)
    e.permute(p, rows=["layer2.0.conv2"], bns=["layer2.0.bn2"], cols=["layer3.0.conv1"])
    width3, width2 = model.linear.in_features, p.numel()
    q3 = (width3 - width2) // 2
    p3 = torch.arange(width3)
    p3[q3 : q3 + width2] = q3 + p
    e.permute(p3, rows=["layer3.0.conv2"], bns=["layer3.0.bn2"], cols=["linear"])
    return e.result()


@pytest.mark.parametrize("model_seed", MODEL_SEEDS[:2])
def test_option_a_pads_may_swap_ends_but_not_mix_with_the_carried_channels(
    model_seed: int,
) -> None:
    model, x, y, before = built("resnet20_a", model_seed)
    # Stage 2 has 8 channels: pads 0, 1 | carried 2..5 | pads 6, 7.
    swap_ends = [7, 1, 2, 3, 4, 5, 6, 0]
    assert relative(outputs(move_option_a_stage2(model, swap_ends), x), y) < KEEP_TOL
    mix_pad_and_carried = [2, 1, 0, 3, 4, 5, 6, 7]
    assert relative(outputs(move_option_a_stage2(model, mix_pad_and_carried), x), y) > 1e-3
    untied_carried = [0, 1, 3, 2, 4, 5, 6, 7]  # would need stage 1 permuted too
    assert relative(outputs(move_option_a_stage2(model, untied_carried), x), y) > 1e-3
    assert_unchanged(model, before)


@pytest.mark.parametrize("name", ["gelu_mlp", "silu_tanh_mlp"])
def test_gelu_and_silu_units_take_no_sign_flip(name: str) -> None:
    model, x, y, before = built(name, 0)
    e = Z._Moved(model, torch.Generator().manual_seed(0))
    layer, reader = ("0", "2") if name == "gelu_mlp" else ("fc1", "fc2")
    flip = torch.ones(8, dtype=torch.float64)
    flip[0] = -1.0
    e.scale(flip, rows=[layer], cols=[reader])
    assert relative(outputs(e.result(), x), y) > 1e-3
    assert_unchanged(model, before)


# -- controls: a residual stream through LayerNorm permutes but does not scale ----------------


@pytest.mark.parametrize("model_seed", MODEL_SEEDS[:2])
def test_layernorm_stream_takes_no_per_feature_scale(model_seed: int) -> None:
    """Scaling the stream's features (every writer, the class token and positions) changes
    what LayerNorm computes: its mean and variance mix the features."""
    model, x, y, before = built("vit_timm", model_seed)
    e = Z._Moved(model, torch.Generator().manual_seed(0))
    c = e.positive(model.norm.normalized_shape[0])
    writers = ["patch_embed.proj"] + [
        f"blocks.{i}.{n}" for i in (0, 1) for n in ("attn.proj", "mlp.fc2")
    ]
    e.scale(c, rows=writers)
    for key in ("cls_token", "pos_embed"):
        e.state[key] = e.state[key] * c
    assert relative(outputs(e.result(), x), y) > 1e-3
    assert_unchanged(model, before)


def test_tied_output_layer_stays_tied() -> None:
    model, x, y, _ = built("gpt_tied", 0)
    assert model.head.weight is model.tok_emb.weight
    moved = entry("gpt_tied").transform(model, torch.Generator().manual_seed(1))
    assert moved.head.weight is moved.tok_emb.weight
    assert not torch.equal(moved.tok_emb.weight, model.tok_emb.weight)
    assert relative(outputs(moved, x), y) < KEEP_TOL
