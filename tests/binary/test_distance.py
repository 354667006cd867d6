"""Hamming distance and overlap of binary networks, with and without alignment."""

import copy
import json

import pytest
import torch
from hypothesis import given
from torch import nn

from binary import committee, export
from binary.distance import HammingDistance, hamming_distance, overlap
from binary.errors import BinaryError
from binary.symmetry import random_transform
from canonicalize import Sign
from tests.binary.test_symmetry import ones, shuffled, wide
from tests.strategies import binary_mlps, group_seeds


@given(binary_mlps(), group_seeds)
def test_a_transformed_copy_is_at_distance_zero(case, seed):
    other = random_transform(case.model, case.x, seed=seed)
    found = hamming_distance(case.model, other, case.x)
    assert (found.count, found.fraction, found.overlap) == (0, 0.0, 1.0)
    assert overlap(case.model, other, case.x) == 1.0


def test_counts_by_hand():
    net, x = wide()
    other = copy.deepcopy(net)
    with torch.no_grad():
        other[0].weight[3, :4] *= -1
        other[4].weight[1, 2] *= -1
    found = hamming_distance(net, other, x, align=False)
    total = 21 * 15 + 15 * 9 + 9 * 3
    assert isinstance(found, HammingDistance)
    assert (found.count, found.total) == (5, total)
    assert found.per_tensor == {"0.weight": 4, "2.weight": 0, "4.weight": 1}
    assert found.fraction == 5 / total and found.overlap == 1 - 10 / total
    assert hamming_distance(net, other, x).count == 5  # aligned: the units already match
    assert overlap(net, other, x, align=False) == pytest.approx(1 - 10 / total, abs=1e-15)
    assert json.loads(json.dumps(found.to_dict()))["count"] == 5


def test_alignment_removes_the_symmetry_part_of_the_distance():
    net, x = wide(bias=True)
    other = shuffled(net, 4)
    assert hamming_distance(net, other, x, align=False).count > 0
    assert hamming_distance(net, other, x).count == 0
    assert hamming_distance(net, other).count == 0  # example inputs drawn for a Linear first layer


@pytest.mark.parametrize("output", ["sum", "majority"])
def test_committees_count_only_their_trainable_weights(output):
    """The vote and the readout are fixed, no parameters: only the first layer counts."""
    a = export(committee(15, 5, output=output, seed=1))
    b = export(committee(15, 5, output=output, seed=2))
    x = torch.randn(32, 15, generator=torch.Generator().manual_seed(0))
    unaligned = hamming_distance(a, b, x, align=False)
    assert unaligned.total == 15 * 5 and list(unaligned.per_tensor) == ["1.weight"]
    assert unaligned.count == int((a[1].weight != b[1].weight).sum())
    found = hamming_distance(a, b, x)
    assert found.total == 75 and list(found.per_tensor) == ["1.weight"]
    assert 0 < found.count <= unaligned.count
    assert overlap(a, b, x) == pytest.approx(found.overlap, abs=1e-15)
    shuffled_units = copy.deepcopy(a)
    with torch.no_grad():
        shuffled_units[1].weight.copy_(a[1].weight[torch.tensor([3, 0, 4, 1, 2])])
    assert hamming_distance(a, shuffled_units, x).count == 0


def test_opposite_perceptrons_have_overlap_minus_one():
    a = nn.Linear(7, 1, bias=False)
    with torch.no_grad():
        a.weight.copy_(torch.tensor([[1.0, -1.0, 1.0, 1.0, -1.0, -1.0, 1.0]]))
    b = copy.deepcopy(a)
    with torch.no_grad():
        b.weight.neg_()
    assert overlap(a, b) == -1.0
    assert hamming_distance(a, b).fraction == 1.0


def test_bad_input():
    net, x = wide()
    real = copy.deepcopy(net)
    with torch.no_grad():
        real[0].weight[0, 0] = 0.5
    with pytest.raises(BinaryError, match=r"b: parameter '0\.weight' \(Linear\) is not binary"):
        hamming_distance(net, real, x)
    with pytest.raises(BinaryError, match=r"a and b have different architectures"):
        overlap(net, nn.Sequential(nn.Linear(21, 3, bias=False), Sign()).apply(ones), x)
    conv = nn.Sequential(nn.Conv1d(1, 3, 3, bias=False), Sign())
    with torch.no_grad():
        conv[0].weight.fill_(1.0)
    with pytest.raises(BinaryError, match="example_input"):
        hamming_distance(conv, copy.deepcopy(conv))
    assert hamming_distance(conv, copy.deepcopy(conv), align=False).count == 0
