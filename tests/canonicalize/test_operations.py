"""Operations beyond plain stacks: segments of channel axes, grouped convolutions, gates, any
elementwise activation, softmax outputs, reductions, and what each one's group is.

Each model here isolates one operation; every one goes through the contracts (function kept by a
random group element, canonical form invariant and idempotent, alignment recovers a transformed
copy), and the spec facts are checked against the mathematics of the operation.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import canonicalize as C
from canonicalize.verify import eval_outputs, relative_difference
from tests.canonicalize.test_properties import assert_same_normalized, assert_same_state
from tests.strategies import group_seeds, randomize_batchnorm


class Concat(nn.Module):
    """Two branches concatenated on the channel axis, read by one layer."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.out = nn.Linear(3, 4), nn.Linear(3, 2), nn.Linear(6, 2)

    def forward(self, x):
        return self.out(torch.cat([F.relu(self.a(x)), torch.tanh(self.b(x))], dim=1))


class Slice(nn.Module):
    """The first two channels of a layer go one way, all of them another."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(3, 5), nn.Linear(2, 3), nn.Linear(5, 3)

    def forward(self, x):
        h = F.relu(self.a(x))
        return self.b(h[:, :2]) + self.c(h)


class OptionA(nn.Module):
    """A stream widened by zero channels on both sides (the CIFAR ResNet option-A shortcut)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 2, 3, padding=1)
        self.conv = nn.Conv2d(2, 4, 3, stride=2, padding=1)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        x = F.relu(self.stem(x))
        shortcut = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 1, 1), "constant", 0)
        out = F.relu(self.conv(x) + shortcut)
        return self.head(out.mean((2, 3)))


class Grouped(nn.Module):
    """A grouped convolution with two channels in and out per group (ResNeXt)."""

    def __init__(self, groups: int = 2, per_in: int = 2, per_out: int = 2) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, groups * per_in, 1)
        self.grouped = nn.Conv2d(groups * per_in, groups * per_out, 3, padding=1, groups=groups)
        self.norm = nn.BatchNorm2d(groups * per_out)
        self.head = nn.Linear(groups * per_out, 2)

    def forward(self, x):
        x = self.norm(self.grouped(F.relu(self.stem(x))))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(F.relu(x), 1), 1))


class GroupedOverConcat(nn.Module):
    """A grouped convolution whose two input blocks come from two different layers."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(1, 2, 1), nn.Conv2d(1, 2, 1)
        self.grouped = nn.Conv2d(4, 6, 3, padding=1, groups=2)
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        x = F.relu(torch.cat([self.a(x), self.b(x)], dim=1))
        return self.head(F.relu(self.grouped(x)).mean((2, 3)))


class GroupedStem(nn.Module):
    """A grouped convolution reading the input image: its input blocks are fixed."""

    def __init__(self) -> None:
        super().__init__()
        self.grouped = nn.Conv2d(2, 4, 3, padding=1, groups=2)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(F.relu(self.grouped(x)).mean((2, 3)))


class Depthwise(nn.Module):
    """Expand, depthwise (groups = channels), BatchNorm, project: a MobileNet block."""

    def __init__(self) -> None:
        super().__init__()
        self.expand = nn.Conv2d(1, 3, 1)
        self.depthwise = nn.Conv2d(3, 3, 3, padding=1, groups=3)
        self.norm = nn.BatchNorm2d(3)
        self.project = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        x = self.norm(self.depthwise(F.relu6(self.expand(x))))
        return self.project(F.relu(x)).flatten(1)


class Gate(nn.Module):
    """Squeeze-and-excitation: ``x * sigmoid(fc(relu(fc(pool(x)))))``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc1, self.fc2 = nn.Conv2d(4, 2, 1), nn.Conv2d(2, 4, 1)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        x = F.relu(self.conv(x))
        w = torch.sigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1)))))
        return self.head((x * w).amax((2, 3)))


class Bilinear(nn.Module):
    """A product of two scaled branches: the second factor is held fixed (noted)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.out = nn.Linear(3, 4), nn.Linear(3, 4), nn.Linear(4, 2)

    def forward(self, x):
        return self.out(self.a(x) * self.b(x))


class Pointwise(nn.Module):
    """An activation that is only known to be elementwise from its ATen tag, then softmax."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.act, self.out = nn.Linear(3, 4), nn.PReLU(4), nn.Linear(4, 3)
        self.b = nn.Linear(4, 4)

    def forward(self, x):
        h = self.act(self.a(x))
        return torch.softmax(self.out(torch.expm1(self.b(h))), dim=1)


class SpatialCat(nn.Module):
    """Concatenation along a spatial axis: both parts share one set of channels."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv1d(1, 3, 3, padding=1), nn.Conv1d(1, 3, 3, padding=1)
        self.out = nn.Linear(3 * 16, 2)

    def forward(self, x):
        return self.out(F.relu(torch.cat([self.a(x), self.b(x)], dim=2)).flatten(1))


def _unflatten(width: int = 6, spatial: tuple[int, int] = (1, 1)) -> nn.Sequential:
    """A dense layer's units become channels of 1x1 maps (a tree committee, a decoder stem)."""
    channels = width // (spatial[0] * spatial[1])
    return nn.Sequential(
        nn.Linear(3, width),
        nn.ReLU(),
        nn.Unflatten(1, (channels, *spatial)),
        nn.Conv2d(channels, 4, spatial),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4, 2),
    )


MODELS = {
    "concat": (Concat, (3,)),
    "slice": (Slice, (3,)),
    "option_a": (OptionA, (1, 6, 6)),
    "grouped": (Grouped, (1, 4, 4)),
    "grouped_wide": (lambda: Grouped(groups=3, per_in=2, per_out=3), (1, 4, 4)),
    "grouped_over_concat": (GroupedOverConcat, (1, 4, 4)),
    "depthwise_multiplier": (lambda: Grouped(groups=3, per_in=1, per_out=2), (1, 4, 4)),
    "grouped_stem": (GroupedStem, (2, 4, 4)),
    "depthwise": (Depthwise, (1, 4, 4)),
    "gate": (Gate, (1, 4, 4)),
    "bilinear": (Bilinear, (3,)),
    "pointwise": (Pointwise, (3,)),
    "spatial_cat": (SpatialCat, (1, 8)),
    "unflatten": (_unflatten, (3,)),
}


def build(name: str, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    factory, shape = MODELS[name]
    generator = torch.Generator().manual_seed(seed)
    model = factory().double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float64))
    randomize_batchnorm(model, generator)
    model.eval()
    return model, torch.randn((12, *shape), generator=generator, dtype=torch.float64)


names = st.sampled_from(sorted(MODELS))


@given(names, st.integers(0, 1000), group_seeds)
def test_group_element_keeps_function_and_canonical_form(name, model_seed, seed):
    model, x = build(name, model_seed)
    moved = C.random_transform(model, x, seed=seed)
    assert relative_difference(eval_outputs(model, x), eval_outputs(moved, x)) < 1e-9
    canon = C.canonical_form(model, x)
    assert_same_state(canon, C.canonical_form(moved, x))
    assert_same_state(canon, C.canonical_form(canon, x), tol=1e-9)


@pytest.mark.parametrize("method", ["cosine", "weights", "activations"])
@given(name=names, model_seed=st.integers(0, 1000), seed=group_seeds)
def test_alignment_recovers_a_transformed_copy(method, name, model_seed, seed):
    model, x = build(name, model_seed)
    moved = C.random_transform(model, x, seed=seed)
    result = C.match(moved, model, x, method=method)
    assert_same_normalized(result.model, model, result.spec)


def spec_of(name: str) -> C.SymmetrySpec:
    model, x = build(name)
    return C.symmetries(model, x)


def site(spec, label):
    return next(s for s in spec.sites if s.label == label)


def test_concatenation_keeps_each_segment_group():
    spec = spec_of("concat")
    a, b = site(spec, "a"), site(spec, "b")
    assert (spec.groups[a.group].size, spec.groups[b.group].size) == (4, 2)
    out_axes = {g.index: [ax for ax in g.axes if ax.tensor == "out.weight"] for g in spec.groups}
    assert out_axes[a.group][0].index is None or out_axes[a.group][0].index == (0, 1, 2, 3)
    assert out_axes[b.group][0].index == (4, 5)
    flags = {spec.sites[i].name: (c.magnitude, c.sign) for c in spec.scales for i in c.sites}
    assert flags["a"] == (True, False) and flags["b"] == (False, True)


def test_a_slice_tells_its_channels_from_the_others():
    spec = spec_of("slice")
    sizes = sorted(spec.groups[s.group].size for s in spec.sites if s.name == "a")
    assert sizes == [2, 3]  # channels 0-1 feed b and c, channels 2-4 feed c only
    assert {s.label for s in spec.sites if s.name == "a"} == {"a[group 0]", "a[group 1]"}


def test_option_a_shortcut_splits_the_wider_stream():
    spec = spec_of("option_a")
    conv_groups = sorted(spec.groups[s.group].size for s in spec.sites if s.name == "conv")
    # the stem's 2 channels land in the middle; the 2 channels facing zeros may swap ends
    assert conv_groups == [2, 2]
    zero_facing = next(s for s in spec.sites if s.name == "conv" and s.index == (0, 3))
    assert zero_facing.group is not None


def test_grouped_convolution_has_its_full_group():
    """Inside each block: input and output channels; and whole blocks swap together."""
    spec = spec_of("grouped_wide")
    assert not spec.notes
    stem = sorted(spec.groups[s.group].size for s in spec.sites if s.name == "stem")
    grouped = sorted(spec.groups[s.group].size for s in spec.sites if s.name == "grouped")
    assert stem == [2, 2, 2] and grouped == [3, 3, 3]
    (blocks,) = [g for g in spec.groups if g.blocks]
    assert blocks.size == 3 and not blocks.sites
    ins = [spec.groups[i] for i, _ in blocks.blocks]
    outs = [spec.groups[o] for _, o in blocks.blocks]
    assert [g.size for g in ins] == [2, 2, 2] and [g.size for g in outs] == [3, 3, 3]
    # the input columns of block g live in rows 3g..3g+2 of the grouped weight only
    for g, group in enumerate(ins):
        (columns,) = [a for a in group.axes if a.tensor == "grouped.weight"]
        assert (columns.dim, columns.row_slice) == (1, (3 * g, 3 * g + 3))
    axes = {(a.tensor, a.dim): a.block for a in blocks.axes}
    assert axes["stem.weight", 0] == 2 and axes["grouped.weight", 0] == 3
    assert axes["head.weight", 1] == 3 and ("grouped.weight", 1) not in axes
    assert spec.dimension["permuted_blocks"] == 3
    assert "3 whole blocks" in str(spec)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("grouped_over_concat", "not alike (made by different layers)"),
        ("grouped_stem", "fixed channels"),
    ],
)
def test_whole_blocks_stay_in_place_when_they_cannot_swap(name, reason):
    spec = spec_of(name)
    assert not any(g.blocks for g in spec.groups)
    (note,) = [n for n in spec.notes if "groups" in n or "blocks" in n]
    assert "'grouped'" in note and reason in note
    assert "fixed:" in str(spec)


def test_depthwise_convolution_shares_the_group_of_its_input():
    spec = spec_of("depthwise")
    expand, depthwise = site(spec, "expand"), site(spec, "depthwise")
    assert expand.group == depthwise.group and depthwise.kind == "depthwise"
    # relu6 is not homogeneous: the expand units keep their permutation only
    assert not spec.scale_class(expand.scale).magnitude
    assert spec.scale_class(depthwise.scale).magnitude and spec.scale_class(depthwise.scale).sign


def test_gate_keeps_permutations_and_the_scale_of_the_gated_tensor():
    spec = spec_of("gate")
    conv, fc2 = site(spec, "conv"), site(spec, "fc2")
    assert conv.group == fc2.group
    assert spec.scale_class(conv.scale).magnitude
    assert not spec.scale_class(fc2.scale).magnitude  # behind the sigmoid
    assert spec.scale_class(site(spec, "fc1").scale).magnitude


def test_product_of_two_scaled_factors_is_noted():
    spec = spec_of("bilinear")
    assert site(spec, "a").group == site(spec, "b").group
    assert any("second one is fixed" in note for note in spec.notes)


def test_softmax_output_is_refused_for_normalize_and_kept_for_preserve():
    model, x = build("pointwise")
    spec = C.symmetries(model, x)
    assert spec.output_scale is None
    with pytest.raises(C.SymmetryError, match="output='preserve'"):
        C.canonical_form(model, x, output="normalize")
    # PReLU slopes permute with their channels; expm1 keeps permutations only
    prelu_axes = [ax for g in spec.groups for ax in g.axes if ax.tensor == "act.weight"]
    assert prelu_axes
    assert not spec.scale_class(site(spec, "b").scale).magnitude


def test_spatial_concatenation_ties_the_channels_of_both_parts():
    spec = spec_of("spatial_cat")
    assert site(spec, "a").group == site(spec, "b").group
    assert site(spec, "a").scale == site(spec, "b").scale


def test_unused_attributes_do_not_count():
    class Holder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
            self.criterion = nn.CrossEntropyLoss()
            self.spare = nn.LSTM(3, 3)

        def forward(self, x):
            return self.net(x)

    spec = C.symmetries(Holder(), torch.randn(5, 3))
    assert [g.size for g in spec.groups] == [4]


def test_bias_before_batchnorm_folds_through_dropout_and_identity():
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        nn.Dropout(0.3),
        nn.Identity(),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(3 * 16, 2),
    ).double()
    randomize_batchnorm(model, torch.Generator().manual_seed(0))
    model.eval()
    x = torch.randn(4, 1, 4, 4, dtype=torch.float64)
    spec = C.symmetries(model, x)
    assert [(f.bias, f.batchnorm) for f in spec.bias_folds] == [("0.bias", "3")]
    moved = C.random_transform(model, x, seed=3)
    assert_same_state(C.canonical_form(model, x), C.canonical_form(moved, x))
    # two equal networks in other coordinates are at geodesic distance 0
    a, b = C.to_torus(model, x), C.to_torus(moved, x)
    assert C.geodesic_distance(a, b) < 1e-9


def test_bias_with_a_second_reader_is_not_folded():
    class TwoReaders(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.norm, self.out = nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)

        def forward(self, x):
            h = nn.functional.dropout(self.a(x), 0.1, self.training)
            return self.out(F.relu(self.norm(h)) + h)

    spec = C.symmetries(TwoReaders().eval(), torch.randn(5, 3))
    assert spec.bias_folds == ()


def test_unflatten_to_1x1_maps_keeps_the_units_and_spreading_them_is_refused():
    assert [g.size for g in spec_of("unflatten").groups] == [6, 4]
    model = _unflatten(12, (2, 2)).double()
    with pytest.raises(C.SymmetryError, match=r"layer '2'.*\(Unflatten\) reshapes \(5, 12\)"):
        C.symmetries(model, torch.randn(5, 3, dtype=torch.float64))
