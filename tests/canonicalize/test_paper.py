"""Our normalization and cosine alignment equal the toroids paper's on plain ReLU MLPs and CNNs.

The reference implementations below follow Pittorino et al. (2022) as PRODUCT.md states them,
written directly over the layer list: layer by layer from the input, each unit's incoming
weights and bias divided by their norm, the next layer's columns multiplied by it, the last
layer scaled to norm sqrt(H_L); alignment by a Hungarian assignment on the cosine of incoming
weights, layer by layer.
"""

import copy
import math

import pytest
import torch
from hypothesis import given
from scipy.optimize import linear_sum_assignment
from torch import nn

import canonicalize as C
from canonicalize.verify import eval_outputs
from tests.canonicalize.test_properties import assert_same_state
from tests.strategies import models


def mlp(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 6), nn.ReLU(), nn.Linear(6, 3)
    ).double()


def cnn(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 2 * 2, 5),
        nn.ReLU(),
        nn.Linear(5, 3),
    ).double()


def weight_layers(net: nn.Sequential) -> list[nn.Module]:
    return [m for m in net if isinstance(m, (nn.Linear, nn.Conv2d))]


def paper_normalize(net: nn.Sequential) -> nn.Sequential:
    layers = weight_layers(net)
    ws = [m.weight.detach().clone() for m in layers]
    bs = [m.bias.detach().clone() for m in layers]
    for i in range(len(layers) - 1):
        norm = torch.cat([ws[i].flatten(1), bs[i][:, None]], 1).norm(dim=1)
        ws[i] = ws[i] / norm.view(-1, *[1] * (ws[i].ndim - 1))
        bs[i] = bs[i] / norm
        block = ws[i + 1].shape[1] // len(norm)  # Flatten: each channel owns H*W columns
        scale = norm.repeat_interleave(block)
        ws[i + 1] = ws[i + 1] * scale.view(1, -1, *[1] * (ws[i + 1].ndim - 2))
    total = torch.cat([ws[-1].flatten(), bs[-1]]).norm()
    ws[-1], bs[-1] = (
        ws[-1] * math.sqrt(len(bs[-1])) / total,
        bs[-1] * math.sqrt(len(bs[-1])) / total,
    )
    out = copy.deepcopy(net)
    for m, w, b in zip(weight_layers(out), ws, bs, strict=True):
        m.weight.data.copy_(w)
        m.bias.data.copy_(b)
    return out


def paper_align(model: nn.Sequential, reference: nn.Sequential) -> nn.Sequential:
    out = copy.deepcopy(model)
    a, b = weight_layers(paper_normalize(reference)), weight_layers(paper_normalize(out))
    layers = weight_layers(out)
    for i in range(len(layers) - 1):
        ra = torch.cat([a[i].weight.flatten(1), a[i].bias[:, None]], 1)
        rb = torch.cat([b[i].weight.flatten(1), b[i].bias[:, None]], 1)
        cos = (ra / ra.norm(dim=1, keepdim=True)) @ (rb / rb.norm(dim=1, keepdim=True)).T
        _, perm = linear_sum_assignment(cos.detach().numpy(), maximize=True)
        perm = torch.as_tensor(perm)
        block = layers[i + 1].weight.shape[1] // len(perm)
        cols = (perm[:, None] * block + torch.arange(block)).flatten()
        for m in (layers[i], b[i]):
            m.weight.data = m.weight.data[perm]
            m.bias.data = m.bias.data[perm]
        for m in (layers[i + 1], b[i + 1]):
            m.weight.data = m.weight.data[:, cols]
    return out


@pytest.mark.parametrize("build,shape", [(mlp, (16, 5)), (cnn, (16, 1, 8, 8))])
@pytest.mark.parametrize("seed", range(4))
def test_normalize_equals_the_paper(build, shape, seed):
    net, x = build(seed), torch.randn(shape, dtype=torch.float64)
    assert_same_state(C.normalize(net, x, output="normalize"), paper_normalize(net), tol=1e-12)


@pytest.mark.parametrize("build,shape", [(mlp, (16, 5)), (cnn, (16, 1, 8, 8))])
@pytest.mark.parametrize("seed", range(4))
def test_cosine_alignment_equals_the_paper(build, shape, seed):
    model, reference = build(seed), build(100 + seed)
    x = torch.randn(shape, dtype=torch.float64)
    ours = C.align(model, reference, x, method="cosine")
    assert_same_state(ours, paper_align(model, reference), tol=1e-12)


@given(models())
def test_normalized_output_keeps_predictions_and_is_idempotent(case):
    try:
        canon = C.canonical_form(case.model, case.x, output="normalize")
    except C.SymmetryError as error:
        assert "output='preserve'" in str(error)
        return
    before, after = eval_outputs(case.model, case.x), eval_outputs(canon, case.x)
    assert torch.equal(before.argmax(1), after.argmax(1)) or before.shape[1] == 1
    assert ((before > 0) == (after > 0)).all() or before.shape[1] > 1
    assert_same_state(canon, C.canonical_form(canon, case.x, output="normalize"), tol=1e-9)
