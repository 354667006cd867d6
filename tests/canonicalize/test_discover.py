"""Facts about the symmetry specs that `symmetries` discovers, one architecture at a time."""

from __future__ import annotations

import operator

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import canonicalize as C
from canonicalize.spec import AxisRef, BiasFold, SymmetrySpec
from funcspace.models import ResNet

X = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
IMAGES = torch.randn(2, 1, 6, 6, generator=torch.Generator().manual_seed(1))


def structure(spec: SymmetrySpec):
    """Everything in a spec except names: sizes, flags, graph wiring and axis layout."""
    return (
        tuple((g.size, len(g.sites), tuple((a.dim, a.block) for a in g.axes)) for g in spec.groups),
        tuple(
            (
                s.size,
                s.group,
                s.magnitude,
                s.sign,
                s.sites,
                tuple((c.block, c.kind) for c in s.columns),
                tuple(a.kind for a in s.absorbs),
            )
            for s in spec.scales
        ),
        tuple((s.kind, s.group, s.scale, s.input_groups) for s in spec.sites),
        len(spec.bias_folds),
        spec.output_scale,
        spec.output_units,
    )


def flags(spec: SymmetrySpec) -> list[tuple[bool, bool]]:
    """(magnitude, sign) of each scale class, in graph order."""
    return [(s.magnitude, s.sign) for s in spec.scales]


def site(spec: SymmetrySpec, name: str):
    (found,) = [s for s in spec.sites if s.name == name]
    return found


def class_of(spec: SymmetrySpec, name: str):
    index = site(spec, name).scale
    assert index is not None, name
    return spec.scale_class(index)


# --- activations --------------------------------------------------------------------------


def test_relu_mlp():
    model = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 2))
    spec = C.symmetries(model, X)
    assert [g.size for g in spec.groups] == [5, 4]
    assert [site(spec, n).group for n in ("0", "2", "4")] == [0, 1, None]
    assert [site(spec, n).input_groups for n in ("0", "2", "4")] == [(), (0,), (1,)]
    assert flags(spec) == [(True, False), (True, False), (False, False)]
    out = class_of(spec, "4")
    assert spec.output_scale == out.index and out.group is None
    assert spec.output_units == 2
    hidden = class_of(spec, "0")
    assert [(c.tensor, c.kind) for c in hidden.columns] == [("2.weight", "full")]
    assert spec.groups[0].axes == (
        AxisRef("0.weight", 0),
        AxisRef("0.bias", 0),
        AxisRef("2.weight", 1),
    )
    assert spec.bias_folds == ()
    assert spec.dimension == {
        "permutation_groups": 2,
        "permuted_units": 9,
        "permuted_blocks": 0,
        "scaled_units": 9,
        "sign_units": 0,
    }


def test_leaky_relu_is_like_relu():
    def net(act):
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(3, 5), act, nn.Linear(5, 2))

    assert structure(C.symmetries(net(nn.LeakyReLU(0.1)), X)) == structure(
        C.symmetries(net(nn.ReLU()), X)
    )


def test_tanh_mlp_has_signs_only():
    spec = C.symmetries(nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2)), X)
    assert [g.size for g in spec.groups] == [5]
    assert flags(spec) == [(False, True), (False, False)]
    assert [c.kind for c in class_of(spec, "0").columns] == ["full"]
    assert spec.output_scale == class_of(spec, "2").index


def test_sign_activation_has_sign_and_absorbed_magnitude():
    spec = C.symmetries(nn.Sequential(nn.Linear(3, 5), C.Sign(), nn.Linear(5, 2)), X)
    assert [g.size for g in spec.groups] == [5]
    assert flags(spec) == [(True, True), (False, False)]
    # the consumer only sees the sign of the factor: sign(c z) = sign(z) for c > 0
    assert [(c.tensor, c.kind) for c in class_of(spec, "0").columns] == [("2.weight", "sign")]


def test_identity_between_layers_keeps_permutation_and_scale():
    # the full symmetry is GL(5); only its permutation and (signed) scale part is removed
    spec = C.symmetries(nn.Sequential(nn.Linear(3, 5), nn.Linear(5, 2)), X)
    assert [g.size for g in spec.groups] == [5]
    assert flags(spec) == [(True, True), (False, False)]
    assert "only the permutation and scale part" in C.canonical_form.__doc__


def test_tanh_then_max_pool_keeps_only_permutation():
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.Tanh(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(12, 2)
    )
    spec = C.symmetries(model, IMAGES)
    assert [g.size for g in spec.groups] == [3]
    conv = class_of(spec, "0")
    assert (conv.magnitude, conv.sign) == (False, False)
    assert conv.group == 0


def test_tanh_then_avg_pool_keeps_sign():
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.Tanh(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(12, 2)
    )
    spec = C.symmetries(model, IMAGES)
    assert [g.size for g in spec.groups] == [3]
    conv = class_of(spec, "0")
    assert (conv.magnitude, conv.sign) == (False, True)


def test_relu_then_max_pool_keeps_scale():
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(12, 2)
    )
    conv = class_of(C.symmetries(model, IMAGES), "0")
    assert (conv.magnitude, conv.sign) == (True, False)


# --- BatchNorm ----------------------------------------------------------------------------


def test_linear_batchnorm_relu():
    model = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 2))
    spec = C.symmetries(model, X)
    assert [g.size for g in spec.groups] == [5]
    assert site(spec, "0").group == site(spec, "1").group == 0
    assert site(spec, "1").kind == "batchnorm"
    linear, bn = class_of(spec, "0"), class_of(spec, "1")
    assert (linear.magnitude, linear.sign) == (True, True)  # BN absorbs any non-zero scale
    assert [(a.batchnorm, a.kind) for a in linear.absorbs] == [("1", "full")]
    assert linear.columns == ()
    assert (bn.magnitude, bn.sign) == (True, False)
    assert [c.tensor for c in bn.columns] == ["3.weight"]
    assert spec.bias_folds == (BiasFold("0.bias", "1"),)
    info = spec.batchnorms["1"]
    assert info.affine and info.tracked
    tensors = {a.tensor for a in spec.groups[0].axes}
    assert {"1.running_mean", "1.running_var", "1.weight", "1.bias"} <= tensors


def test_batchnorm_without_affine_keeps_magnitude_not_sign():
    model = nn.Sequential(
        nn.Linear(3, 5), nn.BatchNorm1d(5, affine=False), nn.ReLU(), nn.Linear(5, 2)
    )
    spec = C.symmetries(model, X)
    assert [g.size for g in spec.groups] == [5]
    linear = class_of(spec, "0")
    assert (linear.magnitude, linear.sign) == (True, False)
    assert [s.kind for s in spec.sites] == ["linear", "linear"]
    assert spec.bias_folds == (BiasFold("0.bias", "1"),)


def test_no_bias_fold_without_bias():
    model = nn.Sequential(
        nn.Linear(3, 5, bias=False), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 2)
    )
    assert C.symmetries(model, X).bias_folds == ()


# --- Flatten --------------------------------------------------------------------------------


class _ConvHead(nn.Module):
    def __init__(self, flatten) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 3, 3)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(3 * 4 * 4, 2)
        self.how = flatten

    def forward(self, x):
        h = F.relu(self.conv(x))
        return self.fc(self.how(self, h))


FLATTENS = {
    "nn.Flatten": lambda self, h: self.flat(h),
    "view": lambda self, h: h.view(h.size(0), -1),
    "x.reshape": lambda self, h: h.reshape(h.shape[0], -1),
    "torch.flatten": lambda self, h: torch.flatten(h, 1),
    "x.flatten": lambda self, h: h.flatten(1),
}


def test_flatten_gives_blocks_of_height_times_width():
    spec = C.symmetries(_ConvHead(FLATTENS["nn.Flatten"]), IMAGES)
    assert [g.size for g in spec.groups] == [3]
    assert AxisRef("fc.weight", 1, block=16) in spec.groups[0].axes
    assert [(c.tensor, c.block) for c in class_of(spec, "conv").columns] == [("fc.weight", 16)]
    assert site(spec, "fc").input_groups == (0,)


@pytest.mark.parametrize("how", [k for k in FLATTENS if k != "nn.Flatten"])
def test_flatten_forms_agree(how):
    expected = C.symmetries(_ConvHead(FLATTENS["nn.Flatten"]), IMAGES)
    spec = C.symmetries(_ConvHead(FLATTENS[how]), IMAGES)
    assert structure(spec) == structure(expected)
    assert spec.groups[0].axes == expected.groups[0].axes


def test_torch_reshape_flatten_agrees():
    expected = C.symmetries(_ConvHead(FLATTENS["nn.Flatten"]), IMAGES)
    model = _ConvHead(lambda self, h: torch.reshape(h, (h.shape[0], -1)))
    assert structure(C.symmetries(model, IMAGES)) == structure(expected)


# --- residual streams -----------------------------------------------------------------------


class _Residual(nn.Module):
    """``h = inp(x); h = h + f(act(h)) [+ g(tanh(h))]; out(relu(h))``."""

    def __init__(self, add=operator.add, act=F.relu, tanh_branch: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.inp, self.f, self.g = nn.Linear(3, 4), nn.Linear(4, 4), nn.Linear(4, 4)
        self.out = nn.Linear(4, 2)
        self.add, self.act, self.tanh_branch = add, act, tanh_branch

    def forward(self, x):
        h = self.inp(x)
        y = self.add(h, self.f(self.act(h)))
        if self.tanh_branch:
            y = self.add(y, self.g(torch.tanh(h)))
        return self.out(F.relu(y))


def test_residual_writers_share_group_and_scale():
    spec = C.symmetries(_Residual(), X)
    assert [g.size for g in spec.groups] == [4]
    assert site(spec, "inp").group == site(spec, "f").group == 0
    assert site(spec, "f").input_groups == (0,)  # f reads the stream it writes into
    assert site(spec, "inp").scale == site(spec, "f").scale
    stream = class_of(spec, "inp")
    assert stream.sites == (0, 1)
    assert (stream.magnitude, stream.sign) == (True, False)
    # f's columns and the output layer's columns both compensate the stream's factor
    assert {c.tensor for c in stream.columns} == {"f.weight", "out.weight"}
    tensors = [(a.tensor, a.dim) for a in spec.groups[0].axes]
    assert ("f.weight", 0) in tensors and ("f.weight", 1) in tensors


def test_stream_read_by_relu_and_tanh_keeps_only_permutation():
    spec = C.symmetries(_Residual(tanh_branch=True), X)
    assert [g.size for g in spec.groups] == [4]
    assert {site(spec, n).group for n in ("inp", "f", "g")} == {0}
    assert {site(spec, n).scale for n in ("inp", "f", "g")} == {class_of(spec, "inp").index}
    stream = class_of(spec, "inp")
    assert (stream.magnitude, stream.sign) == (False, False)


class _InputResidual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.f, self.h, self.out = nn.Linear(3, 3), nn.Linear(3, 5), nn.Linear(5, 2)

    def forward(self, x):
        y = x + self.f(x)
        return self.out(F.relu(self.h(F.relu(y))))


def test_residual_on_raw_input_fixes_units():
    spec = C.symmetries(_InputResidual(), X)
    f = site(spec, "f")
    assert f.group is None and f.input_groups == ()
    assert all(spec.sites.index(f) not in g.sites for g in spec.groups)
    cls = class_of(spec, "f")
    assert (cls.magnitude, cls.sign) == (False, False)
    assert [g.size for g in spec.groups] == [5]  # only h's units move
    assert site(spec, "h").input_groups == ()


# --- functional forms -----------------------------------------------------------------------


class _Mlp(nn.Module):
    def __init__(self, act) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = nn.Linear(3, 5), nn.Linear(5, 2)
        self.act = act

    def forward(self, x):
        return self.b(self.act(self.a(x)))


RELUS = {
    "nn.ReLU": nn.ReLU(),
    "F.relu": F.relu,
    "torch.relu": torch.relu,
    "x.relu": lambda x: x.relu(),
}
TANHS = {"nn.Tanh": nn.Tanh(), "torch.tanh": torch.tanh, "x.tanh": lambda x: x.tanh()}
SIGNS = {"Sign": C.Sign(), "torch.sign": torch.sign, "x.sign": lambda x: x.sign()}


@pytest.mark.parametrize(
    "family, form",
    [(RELUS, k) for k in RELUS] + [(TANHS, k) for k in TANHS] + [(SIGNS, k) for k in SIGNS],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_functional_activation_equals_module(family, form):
    module = next(iter(family))
    expected = structure(C.symmetries(_Mlp(family[module]), X))
    assert structure(C.symmetries(_Mlp(family[form]), X)) == expected


ADDS = {
    "+": operator.add,
    "torch.add": torch.add,
    "x.add": lambda a, b: a.add(b),
}


@pytest.mark.parametrize("form", list(ADDS))
@pytest.mark.parametrize("act", list(RELUS))
def test_functional_add_equals_operator(form, act):
    expected = structure(C.symmetries(_Residual(), X))
    assert structure(C.symmetries(_Residual(ADDS[form], RELUS[act]), X)) == expected


@pytest.mark.parametrize(
    "pool",
    [
        (nn.MaxPool2d(2), lambda h: F.max_pool2d(h, 2)),
        (nn.AvgPool2d(2), lambda h: F.avg_pool2d(h, 2)),
    ],
)
def test_functional_pool_equals_module(pool):
    class Net(nn.Module):
        def __init__(self, how) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.conv, self.fc, self.how = nn.Conv2d(1, 3, 3), nn.Linear(12, 2), how

        def forward(self, x):
            return self.fc(torch.flatten(self.how(torch.tanh(self.conv(x))), 1))

    module, function = pool
    assert structure(C.symmetries(Net(function), IMAGES)) == structure(
        C.symmetries(Net(module), IMAGES)
    )


# --- ResNet ---------------------------------------------------------------------------------


def test_resnet_shortcut_shares_block_output_group():
    model = ResNet(3, 10, widths=(4, 8), seed=0)
    spec = C.symmetries(model, torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(2)))
    block = "stages.1.0"
    out_group = site(spec, f"{block}.main.4").group
    assert out_group is not None
    for name in (f"{block}.shortcut.0", f"{block}.shortcut.1", f"{block}.main.3"):
        assert site(spec, name).group == out_group, name
    # the projection BN and the main BN write into one stream: one scale class, ReLU after it
    stream = class_of(spec, f"{block}.main.4")
    assert stream.index == class_of(spec, f"{block}.shortcut.1").index
    assert (stream.magnitude, stream.sign) == (True, False)
    # the head reads the block output through AdaptiveAvgPool2d(1) -> Flatten: blocks of 1
    assert AxisRef("head.2.weight", 1, 1) in spec.groups[out_group].axes
    # the first stage has an identity shortcut: the stem's BN writes into its stream
    assert site(spec, "stem.1").group == site(spec, "stages.0.0.main.4").group
    assert class_of(spec, "stem.1").index == class_of(spec, "stages.0.0.main.4").index
    # inner units of each block are a group of their own
    assert site(spec, "stages.0.0.main.1").group not in (site(spec, "stem.1").group, out_group)
    assert spec.output_scale == class_of(spec, "head.2").index
    # groups: stem + stage-0 stream (4), stage-0 inner (4), stage-1 inner (8), stage-1 stream (8);
    # scaled: every conv feeds a BN (scale and sign), every BN pair feeds a ReLU (scale):
    # 5 conv/BN classes of 4 units (stem conv, stream BN pair, inner conv, inner BN, conv 2)
    # and 5 of 8 (inner conv, inner BN, conv 2, stream BN pair, shortcut conv);
    # signs: the six convs (3 of 4 units, 3 of 8).
    assert spec.dimension == {
        "permutation_groups": 4,
        "permuted_units": 24,
        "permuted_blocks": 0,
        "scaled_units": 60,
        "sign_units": 36,
    }
    assert [g.size for g in spec.groups] == [4, 4, 8, 8]
    assert len(spec.bias_folds) == 0  # convs before BN have no bias
