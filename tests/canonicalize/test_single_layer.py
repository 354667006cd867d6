"""A model that is itself one layer (a bare ``nn.Linear``, ``nn.Conv2d``, ``nn.BatchNorm1d``).

torch.fx traces a root module's own ``forward``, so such a model used to reach discovery as
``get_attr`` nodes and was refused. It is an output layer and nothing else: its units are pinned
by the output, so its group is trivial apart from the global positive output factor of
``output="normalize"``; every operation must treat it as the one-layer ``nn.Sequential`` holding
it, under the layer's own state names.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import canonicalize as C
from canonicalize.verify import eval_outputs, relative_difference
from tests.canonicalize.test_properties import assert_same_state
from tests.strategies import randomize_batchnorm


def _linear(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Linear(3, 2).double()


def _conv2d(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Conv2d(2, 3, 3, padding=1).double()


def _conv1d(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Conv1d(2, 3, 3).double()


def _batchnorm(seed: int) -> nn.Module:
    model = nn.BatchNorm1d(3).double().eval()
    randomize_batchnorm(model, torch.Generator().manual_seed(seed))
    return model


LAYERS = {
    "linear": (_linear, (5, 3)),
    "conv2d": (_conv2d, (4, 2, 5, 5)),
    "conv1d": (_conv1d, (4, 2, 7)),
    "batchnorm1d": (_batchnorm, (5, 3)),
}


@pytest.fixture(params=list(LAYERS))
def layer(request) -> tuple[nn.Module, nn.Module, torch.Tensor]:
    """A layer, another layer of the same shape, and an example input."""
    build, shape = LAYERS[request.param]
    x = torch.randn(shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    return build(0), build(1), x


def test_symmetries_of_a_linear_root_are_trivial():
    spec = C.symmetries(nn.Linear(3, 2), torch.randn(5, 3))
    assert spec.groups == ()
    assert not any(cls.magnitude or cls.sign for cls in spec.scales)
    assert set(spec.dimension.values()) == {0}
    assert [(site.name, site.kind, site.rows) for site in spec.sites] == [
        ("", "linear", ("weight", "bias"))
    ]
    assert spec.output_scale is not None and spec.output_units == 2
    assert dict(spec.state_shapes) == {"weight": (2, 3), "bias": (2,)}


def test_symmetries_match_the_one_layer_sequential(layer):
    model, _, x = layer
    bare, wrapped = C.symmetries(model, x), C.symmetries(nn.Sequential(model), x)
    assert bare.dimension == wrapped.dimension
    assert (bare.output_scale is None) == (wrapped.output_scale is None)
    assert [(s.kind, s.rows) for s in bare.sites] == [
        (s.kind, tuple(row.removeprefix("0.") for row in s.rows)) for s in wrapped.sites
    ]
    assert dict(bare.state_shapes) == {
        name.removeprefix("0."): shape for name, shape in wrapped.state_shapes
    }


def test_canonical_form_is_the_layer_itself(layer):
    model, _, x = layer
    canonical = C.canonical_form(model, x)
    assert type(canonical) is type(model) and canonical is not model
    assert_same_state(canonical, model, tol=1e-12)
    assert_same_state(C.random_transform(model, x, seed=3), model, tol=1e-12)


def test_normalized_output_removes_only_a_positive_factor(layer):
    model, _, x = layer
    scaled = C.canonical_form(model, x, output="normalize")
    before, after = eval_outputs(model, x), eval_outputs(scaled, x)
    factor = float((after * before).sum() / (before * before).sum())
    assert factor > 0
    assert relative_difference(before * factor, after) < 1e-12
    twice = C.canonical_form(scaled, x, output="normalize")
    assert_same_state(twice, scaled, tol=1e-12)


@pytest.mark.parametrize("output", ["preserve", "normalize"])
def test_torus_round_trip_reproduces_the_function(layer, output):
    model, _, x = layer
    point = C.to_torus(model, x, output=output)
    assert set(point.spheres) == ({"output"} if output == "normalize" else set())
    before, after = eval_outputs(model, x), eval_outputs(point.to_model(), x)
    if output == "normalize":
        factor = float((after * before).sum() / (before * before).sum())
        assert factor > 0
        before = before * factor
    assert relative_difference(before, after) < 1e-12


def test_align_returns_the_model_unchanged(layer):
    model, reference, x = layer
    for method in ("weights", "cosine", "activations"):
        result = C.match(model, reference, x, method=method)
        assert result.permutations == {} or all(
            torch.equal(p, torch.arange(len(p))) for p in result.permutations.values()
        )
        assert_same_state(result.model, model, tol=1e-12)
    assert_same_state(C.align(model, model, x), model, tol=1e-12)


def test_geodesic_distance_between_two_layers():
    x = torch.randn(5, 3, dtype=torch.float64)
    a, b = C.to_torus(_linear(0), x), C.to_torus(_linear(1), x)
    assert C.geodesic_distance(a, a) < 1e-7
    assert C.geodesic_distance(a, b) > 0


def test_refusals_name_the_model_itself():
    # (a Linear on (batch, tokens, features) and a LayerNorm are supported: test_transformers)
    with pytest.raises(C.SymmetryError, match=r"the model itself \(Conv2d\) is applied to a 3-D"):
        C.symmetries(nn.Conv2d(3, 2, 1), torch.randn(3, 4, 4))
    with pytest.raises(C.SymmetryError, match=r"the model itself \(GroupNorm\) has no supported"):
        C.symmetries(nn.GroupNorm(1, 3), torch.randn(5, 3))
