"""Every contract of the property suite, on architectures written like public model collections.

The zoo (``tests/zoo.py``: VGG11-BN, ResNet-20 with option-A and option-B shortcuts, a
pre-activation ResNet, a WideResNet block with dropout between conv and BatchNorm, MobileNetV2
blocks, a DenseNet block, an Inception block, an SE block, an MLP holding its loss module, a CNN
ending in log_softmax, GELU and SiLU/hardtanh/softsign MLPs, a CNN whose forward asserts on
shapes, a ResNeXt with grouped convolutions; transformers in the styles of timm, vit-pytorch and
minGPT, the last on token ids with a tied output layer), float64, random weights and BatchNorm
statistics.
Each property draws the architecture, its weights and a group element; the hand-written element
of each family comes from the mathematics of its layers, independently of discovery, and catches
a group that is too narrow.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import canonicalize as C
from canonicalize.verify import eval_outputs, relative_difference
from tests.canonicalize.test_properties import assert_same_normalized, assert_same_state
from tests.strategies import group_seeds
from tests.zoo import EXTRAS, ZOO, entry, example_input

entries = st.sampled_from(ZOO)
model_seeds = st.integers(0, 2**16)


def _case(entry, seed):
    return entry.build(seed), example_input(entry, seed=seed)


@given(entries, model_seeds, group_seeds)
def test_group_element_keeps_function_and_canonical_form(entry, model_seed, seed):
    """Function unchanged, canonical form of the moved copy equal, canonical form idempotent."""
    model, x = _case(entry, model_seed)
    moved = C.random_transform(model, x, seed=seed)
    assert relative_difference(eval_outputs(model, x), eval_outputs(moved, x)) < 1e-9
    canon = C.canonical_form(model, x)
    assert relative_difference(eval_outputs(model, x), eval_outputs(canon, x)) < 1e-9
    assert_same_state(canon, C.canonical_form(moved, x))
    assert_same_state(canon, C.canonical_form(canon, x), tol=1e-9)


@given(entries, model_seeds, group_seeds)
def test_hand_written_group_element_keeps_canonical_form(entry, model_seed, seed):
    """A group element written from the mathematics, not from discovery: a narrow group fails."""
    model, x = _case(entry, model_seed)
    moved = entry.transform(model, torch.Generator().manual_seed(seed))
    assert relative_difference(eval_outputs(model, x), eval_outputs(moved, x)) < 1e-9
    assert_same_state(C.canonical_form(model, x), C.canonical_form(moved, x))


@pytest.mark.parametrize("method", ["cosine", "weights", "activations"])
@given(entry=entries, model_seed=model_seeds, seed=group_seeds)
def test_every_alignment_method_recovers_a_transformed_copy(method, entry, model_seed, seed):
    model, x = _case(entry, model_seed)
    moved = C.random_transform(model, x, seed=seed, log_scale=4.0)
    result = C.match(moved, model, x, method=method)
    assert_same_normalized(result.model, model, result.spec)
    # the returned element reproduces the aligned model (blocks of grouped convs first)
    assert_same_state(result.apply(moved), result.model, tol=1e-12)


@given(entries, model_seeds, group_seeds)
def test_torus_round_trip_and_zero_geodesic_distance_within_a_class(entry, model_seed, seed):
    model, x = _case(entry, model_seed)
    point = C.to_torus(model, x, output="preserve")
    for name, rows in point.spheres.items():
        assert torch.allclose(rows.norm(dim=1), torch.ones(len(rows), dtype=rows.dtype)), name
    back = point.to_model()
    assert relative_difference(eval_outputs(model, x), eval_outputs(back, x)) < 1e-9
    moved = C.random_transform(model, x, seed=seed)
    assert C.geodesic_distance(point, C.to_torus(moved, x, output="preserve")) < 1e-6


def test_every_entry_describes_its_group_readably():
    for zoo_entry in ZOO:
        model, x = _case(zoo_entry, 0)
        text = str(C.symmetries(model, x))
        assert text.startswith("SymmetrySpec:") and "group 0:" in text, zoo_entry.name


# The extra elements (tests/zoo.py's EXTRAS) that canonicalize claims to divide out: each head's
# invertible maps, the key bias and the value bias folded into the output bias.
DIVIDED_OUT = ("head_linear_maps", "attention_biases")


@pytest.mark.parametrize("model_seed", [0, 1])
@pytest.mark.parametrize(
    "extra",
    [x for x in EXTRAS if x.name in DIVIDED_OUT],
    ids=lambda x: f"{x.entry}-{x.name}",
)
def test_hand_written_attention_extras_are_divided_out(extra, model_seed):
    """Per-head maps and bias shifts written from the mathematics, not drawn by canonicalize:
    the canonical form does not move, and weight matching takes the copy back exactly."""
    model, x = _case(entry(extra.entry), model_seed)
    moved = extra.transform(model, torch.Generator().manual_seed(model_seed + 5))
    assert_same_state(C.canonical_form(model, x), C.canonical_form(moved, x))
    assert_same_state(C.align(moved, model, x, method="weights"), model, tol=1e-7)
