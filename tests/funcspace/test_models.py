"""Tests for funcspace.models: shapes, seeding, fx-traceability and argument validation."""

import math
import sys
from collections.abc import Callable

import pytest
import torch
from torch import fx, nn

from funcspace.models import (
    ACTIVATIONS,
    CNN,
    MLP,
    BasicBlock,
    ResidualBlock,
    ResidualMLP,
    ResNet,
    SelfAttention,
    TransformerBlock,
    VisionTransformer,
    build,
    lenet,
    vgg_small,
)

# (name, factory taking seed, input shape) -- small, digits-like or MNIST-like inputs.
CASES: list[tuple[str, Callable[[int | None], nn.Module], tuple[int, ...]]] = [
    ("mlp_flat", lambda s: MLP(64, [32, 16], 10, seed=s), (4, 64)),
    ("mlp_image", lambda s: MLP(64, [32], 10, seed=s), (4, 1, 8, 8)),
    ("mlp_linear", lambda s: MLP(64, [], 3, seed=s), (4, 64)),
    ("mlp_bn", lambda s: MLP(64, [16, 16], 10, batchnorm=True, bias=False, seed=s), (4, 64)),
    ("mlp_dropout", lambda s: MLP(64, [16], 10, dropout=0.5, activation="tanh", seed=s), (4, 64)),
    ("mlp_leaky", lambda s: MLP(64, [16], 10, activation="leaky_relu", seed=s), (4, 64)),
    ("mlp_identity", lambda s: MLP(64, [16], 10, activation="identity", seed=s), (4, 64)),
    ("cnn_8x8", lambda s: CNN(1, 8, (4, 8), kernel_size=3, hidden=(16,), seed=s), (4, 1, 8, 8)),
    (
        "cnn_bn_avg",
        lambda s: CNN(1, 8, (4,), 3, (), n_classes=5, batchnorm=True, pool="avg", seed=s),
        (4, 1, 8, 8),
    ),
    ("cnn_even_kernel", lambda s: CNN(3, 9, (4, 4), kernel_size=4, seed=s), (2, 3, 9, 9)),
    ("lenet_28", lambda s: lenet(seed=s), (2, 1, 28, 28)),
    ("lenet_8", lambda s: lenet(image_size=8, seed=s), (2, 1, 8, 8)),
    ("vgg_small", lambda s: vgg_small(in_channels=1, image_size=8, seed=s), (2, 1, 8, 8)),
    ("residual_mlp", lambda s: ResidualMLP(64, 16, 2, 10, seed=s), (4, 64)),
    ("residual_mlp_bn", lambda s: ResidualMLP(64, 16, 2, 10, batchnorm=True, seed=s), (4, 64)),
    ("residual_mlp_d0", lambda s: ResidualMLP(64, 16, 0, 10, seed=s), (4, 1, 8, 8)),
    ("resnet", lambda s: ResNet(1, 10, seed=s), (2, 1, 8, 8)),
    ("resnet_nobn", lambda s: ResNet(3, 4, (4, 8, 8), 2, batchnorm=False, seed=s), (2, 3, 9, 9)),
    ("vit_digits", lambda s: VisionTransformer(dim=8, heads=2, mlp_dim=12, seed=s), (4, 1, 8, 8)),
    ("vit_flat", lambda s: VisionTransformer(dim=8, depth=1, heads=2, seed=s), (4, 64)),
    (
        "vit_cls_relu_torch",
        lambda s: VisionTransformer(
            dim=8, heads=4, pool="cls", activation="relu", attention="torch", seed=s
        ),
        (4, 1, 8, 8),
    ),
    (
        "vit_signal",
        lambda s: VisionTransformer((40,), patch_size=4, dim=8, heads=2, bias=False, seed=s),
        (3, 40),
    ),
    (
        "vit_rgb_d0",
        lambda s: VisionTransformer((3, 6, 6), patch_size=3, dim=6, depth=0, heads=3, seed=s),
        (2, 3, 6, 6),
    ),
]
IDS = [name for name, _, _ in CASES]
BN_CASES = [
    case
    for case in CASES
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in case[1](0).modules())
]


def _n_out(model: nn.Module) -> int:
    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1].out_features


@pytest.mark.parametrize(("name", "factory", "shape"), CASES, ids=IDS)
def test_output_shape(name, factory, shape):
    model = factory(0).eval()
    out = model(torch.randn(shape))
    assert out.shape == (shape[0], _n_out(model))
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(("name", "factory", "shape"), CASES, ids=IDS)
def test_seed_is_deterministic(name, factory, shape):
    a, b, c = factory(0).state_dict(), factory(0).state_dict(), factory(1).state_dict()
    assert a.keys() == b.keys() == c.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    weights = [k for k in a if k.endswith("weight") and a[k].dim() > 1]
    assert weights
    assert all(not torch.equal(a[k], c[k]) for k in weights)


@pytest.mark.parametrize(("name", "factory", "shape"), CASES, ids=IDS)
def test_seed_leaves_global_rng_alone(name, factory, shape):
    state = torch.random.get_rng_state()
    factory(0)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_unseeded_uses_global_rng():
    torch.manual_seed(0)
    a = MLP(8, [4], 2).state_dict()
    torch.manual_seed(0)
    b = MLP(8, [4], 2).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_seeded_init_follows_torch_default_bounds():
    # Kaiming-uniform with a=sqrt(5) and the bias rule both give bound 1/sqrt(fan_in).
    model = CNN(3, 8, (6,), 3, (20,), seed=0)
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            bound = 1 / math.sqrt(module.weight[0].numel())
            assert module.weight.abs().max() <= bound
            assert module.weight.abs().max() > 0.8 * bound
            assert module.bias.abs().max() <= bound


@pytest.mark.parametrize(("name", "factory", "shape"), CASES, ids=IDS)
def test_fx_trace_matches_eager(name, factory, shape):
    model = factory(0).eval()
    traced = fx.symbolic_trace(model)
    x = torch.randn(shape)
    assert torch.equal(traced(x), model(x))
    targets = {n.target for n in traced.graph.nodes if n.op == "call_module"}
    assert targets, "modules should stay visible as call_module nodes"


def test_residual_additions_appear_in_trace():
    traced = fx.symbolic_trace(ResidualMLP(8, 4, 3, 2, seed=0))
    adds = [n for n in traced.graph.nodes if n.op == "call_function" and "add" in str(n.target)]
    assert len(adds) == 3


@pytest.mark.parametrize(("name", "factory", "shape"), BN_CASES, ids=[c[0] for c in BN_CASES])
def test_batch_norm_train_and_eval(name, factory, shape):
    model = factory(0)
    x = torch.randn(shape)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items() if "running_mean" in k}
    out_train = model(x)
    after = model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    model.eval()
    out_eval = model(x)
    assert out_train.shape == out_eval.shape
    assert not torch.allclose(out_train, out_eval)
    assert torch.equal(model(x), out_eval)


def test_lenet_layout():
    model = lenet(seed=0)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(c.out_channels, c.kernel_size) for c in convs] == [(20, (5, 5)), (50, (5, 5))]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [
        (50 * 7 * 7, 500),
        (500, 10),
    ]


def test_vgg_small_layout():
    model = vgg_small(seed=0)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 16, 32, 32]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 4
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 2


def test_resnet_shortcuts():
    model = ResNet(3, 10, widths=(8, 8, 16), blocks_per_stage=2, seed=0)
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == 6
    projections = [not isinstance(b.shortcut, nn.Identity) for b in blocks]
    # Stem already has 8 channels; stages 1 and 2 downsample in their first block.
    assert projections == [False, False, True, False, True, False]


def test_blocks_compute_residuals():
    block = ResidualBlock(4)
    x = torch.randn(3, 4)
    assert torch.allclose(block(x), x + block.branch(x))
    basic = BasicBlock(2, 2, batchnorm=False)
    y = torch.randn(1, 2, 5, 5)
    assert torch.allclose(basic(y), torch.relu(basic.main(y) + y))


def test_no_inplace_relu():
    for _, factory, _ in CASES:
        for module in factory(0).modules():
            assert not getattr(module, "inplace", False), module


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("mlp", dict(in_features=64, widths=[16], n_classes=10)),
        ("cnn", dict(in_channels=1, image_size=8, channels=(4,), kernel_size=3, hidden=())),
        ("lenet", dict(image_size=8)),
        ("vgg_small", dict(in_channels=1, image_size=8)),
        ("residual_mlp", dict(in_features=64, width=8, depth=1, n_classes=10)),
        ("resnet", dict(in_channels=1, n_classes=10)),
        ("vit", dict(input_shape=(1, 8, 8), dim=8, heads=2)),
    ],
)
def test_build_registry(name, kwargs):
    a = build(name, seed=3, **kwargs)
    b = build(name, seed=3, **kwargs)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_build_unknown_name_lists_known():
    with pytest.raises(ValueError, match="known models are: cnn, lenet, mlp"):
        build("transformer")


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda: MLP(0, [4], 2), "in_features"),
        (lambda: MLP(4, [4, 0], 2), r"widths\[1\]"),
        (lambda: MLP(4, [4, -1], 2), r"widths\[1\]"),
        (lambda: MLP(4, 5, 2), "widths must be a sequence"),
        (lambda: MLP(4, [4.0], 2), r"widths\[0\]"),
        (lambda: MLP(4, [4], 0), "n_classes"),
        (lambda: MLP(4, [4], 2, activation="gelu"), "unknown activation 'gelu'"),
        (lambda: MLP(4, [4], 2, dropout=1.0), "dropout"),
        (lambda: MLP(4, [4], 2, seed=1.5), "seed"),
        (lambda: CNN(1, 8, (), 3), "channels must be a non-empty"),
        (lambda: CNN(1, 8, ((4, 0),), 3), r"channels\[0\]\[1\]"),
        (lambda: CNN(1, 8, ((),), 3), "empty stage"),
        (lambda: CNN(1, 8, (4,), 3, pool="median"), "unknown pool"),
        (lambda: CNN(1, 8, (4, 4, 4, 4), 3), "too small"),
        (lambda: CNN(1, 8, (4,), 0), "kernel_size"),
        (lambda: CNN(1, 8, (4,), 3, activation="softplus"), "unknown activation"),
        (lambda: ResidualMLP(4, 0, 1, 2), "width"),
        (lambda: ResidualMLP(4, 4, -1, 2), "depth"),
        (lambda: ResNet(1, 10, widths=()), "at least one stage"),
        (lambda: ResNet(1, 10, blocks_per_stage=0), "blocks_per_stage"),
        (lambda: ResidualBlock(4, activation="swish"), "unknown activation"),
        (lambda: BasicBlock(4, 4, stride=0), "stride"),
        (lambda: VisionTransformer(dim=10, heads=4), r"heads=4 must divide dim=10"),
        (
            lambda: VisionTransformer(patch_size=3),
            r"patch_size=3 does not divide .* 8.*\[1, 2, 4, 8\]",
        ),
        (lambda: VisionTransformer((1, 1, 8, 8)), "input_shape must be"),
        (lambda: VisionTransformer((1, 0, 8)), r"input_shape\[1\]"),
        (lambda: VisionTransformer(patch_size=0), "patch_size"),
        (lambda: VisionTransformer(depth=-1), "depth"),
        (lambda: VisionTransformer(mlp_dim=0), "mlp_dim"),
        (lambda: VisionTransformer(activation="tanh"), "unknown activation 'tanh'"),
        (lambda: VisionTransformer(pool="max"), "unknown pool 'max'"),
        (lambda: VisionTransformer(attention="flash"), "unknown attention 'flash'"),
        (lambda: VisionTransformer(seed=1.5), "seed"),
        (lambda: SelfAttention(6, 4), "heads=4 must divide dim=6"),
        (lambda: TransformerBlock(8, 2, 16, attention="torch", activation="swish"), "activation"),
    ],
)
def test_bad_arguments_raise(factory, match):
    with pytest.raises(ValueError, match=match):
        factory()


def test_activation_names_cover_builders():
    for activation in ACTIVATIONS:
        if activation == "sign":
            continue
        MLP(4, [3], 2, activation=activation, seed=0)(torch.randn(2, 4))


def test_sign_activation_without_canonicalize(monkeypatch):
    monkeypatch.setitem(sys.modules, "canonicalize", None)
    with pytest.raises(ImportError, match="canonicalize.Sign"):
        MLP(4, [3], 2, activation="sign")


def test_sign_activation():
    try:
        from canonicalize import Sign
    except ImportError:
        pytest.skip("canonicalize.Sign is not available")
    model = MLP(8, [6], 3, activation="sign", seed=0).eval()
    assert any(isinstance(m, Sign) for m in model.modules())
    x = torch.randn(5, 8)
    assert model(x).shape == (5, 3)
    assert torch.equal(fx.symbolic_trace(model)(x), model(x))


def test_batch_norm_is_the_deprecated_spelling_of_batchnorm():
    with pytest.warns(DeprecationWarning, match=r"MLP\(batch_norm=\) is deprecated"):
        old = MLP(4, [8], 3, batch_norm=True, seed=0)
    new = MLP(4, [8], 3, batchnorm=True, seed=0)
    assert [type(m) for m in old.modules()] == [type(m) for m in new.modules()]


# --- the vision transformer ----------------------------------------------------------------------


def test_vit_tokens_are_patches_in_raster_order():
    model = VisionTransformer((2, 4, 6), patch_size=2, dim=4, heads=1, seed=0)
    x = torch.arange(2 * 4 * 6, dtype=torch.float32).reshape(1, 2, 4, 6)
    tokens = model.patches(x)
    assert tokens.shape == (1, 6, 8)
    # token 4: patch row 1, column 1 (rows 2-3, columns 2-3), channel-major inside
    assert torch.equal(tokens[0, 4], torch.cat([x[0, c, 2:4, 2:4].reshape(-1) for c in (0, 1)]))
    assert torch.equal(model.patches(x.reshape(1, -1)), tokens)
    signal = VisionTransformer((40,), patch_size=5, dim=4, heads=1, seed=0)
    s = torch.arange(40.0).reshape(1, 40)
    assert torch.equal(signal.patches(s)[0, 2], torch.arange(10.0, 15.0))


def test_vit_seeded_init():
    model = VisionTransformer(pool="cls", attention="torch", seed=0)
    for token in (model.pos, model.cls_token):
        assert token.abs().max() <= 0.04 and 0.01 < float(token.detach().std()) < 0.03
    for module in model.modules():
        if isinstance(module, nn.LayerNorm):
            assert torch.equal(module.weight, torch.ones_like(module.weight))
            assert torch.equal(module.bias, torch.zeros_like(module.bias))
        if isinstance(module, nn.MultiheadAttention):
            assert torch.equal(module.in_proj_bias, torch.zeros_like(module.in_proj_bias))
            assert torch.equal(module.out_proj.bias, torch.zeros_like(module.out_proj.bias))
            bound = math.sqrt(6 / sum(module.in_proj_weight.shape))  # Xavier-uniform
            assert 0.8 * bound < module.in_proj_weight.abs().max() <= bound


def test_vit_hand_and_torch_attention_compute_the_same_function():
    hand = VisionTransformer(dim=8, heads=2, seed=0).eval()
    torch_mha = VisionTransformer(dim=8, heads=2, attention="torch", seed=1).eval()
    state = {k: v for k, v in hand.state_dict().items() if ".attn." not in k}
    for b, block in enumerate(hand.blocks):
        a, p = block.attn, f"blocks.{b}.attn.mha."
        state[p + "in_proj_weight"] = torch.cat([a.q.weight, a.k.weight, a.v.weight])
        state[p + "in_proj_bias"] = torch.cat([a.q.bias, a.k.bias, a.v.bias])
        state[p + "out_proj.weight"], state[p + "out_proj.bias"] = a.proj.weight, a.proj.bias
    torch_mha.load_state_dict(state)
    x = torch.randn(5, 64)
    with torch.no_grad():
        assert torch.allclose(hand(x), torch_mha(x), atol=1e-5)


def test_vit_trains_on_digits_well_above_chance():
    from funcspace import train
    from funcspace.data import load
    from funcspace.optim import AdamOptions

    model = VisionTransformer(patch_size=4, dim=16, depth=1, heads=2, mlp_dim=32, seed=0)
    result = train(model, load("digits"), AdamOptions(lr=1e-2), epochs=3, progress=False)
    assert result.record.test_error[-1] < 0.5  # chance: 0.9


@pytest.mark.parametrize("kwargs", [{}, {"pool": "cls", "attention": "torch"}])
def test_vit_symmetries_and_alignment(kwargs):
    """Stream, heads, features inside heads and MLP units found; a moved copy is aligned back."""
    C = pytest.importorskip("canonicalize")
    from tests.canonicalize.test_properties import assert_same_normalized, assert_same_state

    model = VisionTransformer(dim=8, depth=2, heads=2, mlp_dim=12, seed=0, **kwargs).double()
    with torch.no_grad():  # off the symmetric initialization (unit LayerNorm gains, zero biases)
        gen = torch.Generator().manual_seed(1)
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) / p.shape[-1] ** 0.5)
    model.eval()
    x = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    spec = C.symmetries(model, x)
    assert sum(g.kind == "heads" for g in spec.groups) == 2
    stream = next(g for g in spec.groups if any(spec.sites[i].name == "embed" for i in g.sites))
    names = {spec.sites[i].name for i in stream.sites}
    assert {"pos", "norm", "blocks.1.mlp.2"} <= names
    moved = C.random_transform(model, x, seed=3)
    with torch.no_grad():
        assert torch.allclose(moved(x), model(x), rtol=0, atol=1e-10)
    assert_same_state(C.canonical_form(model, x), C.canonical_form(moved, x))
    result = C.match(moved, model, x, method="weights")
    assert_same_normalized(result.model, model, result.spec)


def test_vit_batched_evaluation_and_linear_profile_match_a_loop():
    import numpy as np

    import paths
    from funcspace import evaluate

    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 64, generator=gen), torch.randint(0, 10, (40,), generator=gen)
    a = VisionTransformer(dim=8, heads=2, seed=0).eval()
    b = VisionTransformer(dim=8, heads=2, seed=1).eval()
    ts = np.linspace(0, 1, 5)
    prof = paths.profile(paths.linear(a, b), (x, y), t=ts)
    mid = VisionTransformer(dim=8, heads=2, seed=0).eval()
    sa, sb = a.state_dict(), b.state_dict()
    for i, t in enumerate(ts):
        mid.load_state_dict({k: (1 - t) * sa[k] + t * sb[k] for k in sa})
        with torch.no_grad():
            loss = nn.functional.cross_entropy(mid(x), y)
        assert abs(prof.values["loss"][i] - float(loss)) < 1e-5
    looped = evaluate([a, b], (x, y), strategy="loop")
    batched = evaluate([a, b], (x, y), strategy="vmap")
    assert np.allclose(looped.loss, batched.loss, atol=1e-5)
