"""Tests for funcspace.similarity: exact small cases against direct numpy formulas, invariance
under the symmetry group, and that the models are neither mutated nor left in another mode."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import canonicalize
from funcspace.data import from_tensors
from funcspace.errors import FuncspaceError
from funcspace.models import MLP
from funcspace.similarity import (
    cka,
    class_distance,
    disagreement,
    geodesic_distance,
    output_distance,
)

# --------------------------------------------------------------------------- references


def _np_linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """CKA with explicit centering matrices: HSIC(K, L) = tr(K H L H)."""
    n = len(x)
    h = np.eye(n) - np.ones((n, n)) / n
    k, l_ = x @ x.T, y @ y.T

    def hsic(a, b):
        return np.trace(a @ h @ b @ h)

    return hsic(k, l_) / np.sqrt(hsic(k, k) * hsic(l_, l_))


def _np_unbiased_hsic(k: np.ndarray, l_: np.ndarray) -> float:
    """Song et al. (2012), written out term by term."""
    n = len(k)
    k, l_ = k.copy(), l_.copy()
    np.fill_diagonal(k, 0)
    np.fill_diagonal(l_, 0)
    one = np.ones(n)
    return (
        np.trace(k @ l_)
        + (one @ k @ one) * (one @ l_ @ one) / ((n - 1) * (n - 2))
        - 2 / (n - 2) * (one @ k @ l_ @ one)
    ) / (n * (n - 3))


def _np_debiased_cka(x: np.ndarray, y: np.ndarray) -> float:
    k, l_ = x @ x.T, y @ y.T
    return _np_unbiased_hsic(k, l_) / np.sqrt(_np_unbiased_hsic(k, k) * _np_unbiased_hsic(l_, l_))


def _sq(z):
    return ((z[:, None] - z[None]) ** 2).sum(-1)


def _rbf(z):
    return np.exp(-_sq(z) / (2 * np.median(_sq(z))))


def _np_rbf_cka(x: np.ndarray, y: np.ndarray) -> float:
    def gram(z):
        sq = ((z[:, None] - z[None]) ** 2).sum(-1)
        return np.exp(-sq / (2 * np.median(sq)))

    n = len(x)
    h = np.eye(n) - np.ones((n, n)) / n
    k, l_ = gram(x), gram(y)

    def hsic(a, b):
        return np.trace(a @ h @ b @ h)

    return hsic(k, l_) / np.sqrt(hsic(k, k) * hsic(l_, l_))


def _features(n=30, p=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, p, generator=gen, dtype=torch.float64)


def _fixed(weight: torch.Tensor) -> nn.Linear:
    """A bias-free linear map x -> x W^T: a representation we know exactly."""
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=False).double()
    with torch.no_grad():
        layer.weight.copy_(weight)
    return layer


def _orthogonal(p, seed):
    q, _ = torch.linalg.qr(_features(p, p, seed))
    return q


# --------------------------------------------------------------------------- CKA


def test_cka_of_identical_representations_is_one():
    x = _features()
    net = MLP(4, [6], 3, seed=0).double()
    assert cka(net, net, x) == pytest.approx(1.0, abs=1e-12)
    assert cka(nn.Identity(), nn.Identity(), x, debiased=True) == pytest.approx(1.0, abs=1e-12)
    assert cka(net, net, x, kernel="rbf") == pytest.approx(1.0, abs=1e-12)


def test_cka_is_invariant_to_orthogonal_transforms_and_isotropic_scaling():
    x = _features(p=5)
    moved = _fixed(3.7 * _orthogonal(5, seed=1))
    for debiased in (False, True):
        assert cka(nn.Identity(), moved, x, debiased=debiased) == pytest.approx(1.0, abs=1e-10)
    assert cka(nn.Identity(), moved, x, kernel="rbf") == pytest.approx(1.0, abs=1e-10)
    # not invariant to a general linear map
    stretched = _fixed(torch.diag(torch.tensor([1.0, 5.0, 0.2, 1.0, 3.0], dtype=torch.float64)))
    assert cka(nn.Identity(), stretched, x) < 0.99


@pytest.mark.parametrize("widths", [(4, 3), (3, 12)])
def test_cka_equals_direct_numpy_formulas(widths):
    x = _features(n=25, p=4, seed=2)
    a = _fixed(_features(widths[0], 4, seed=3))
    b = nn.Sequential(_fixed(_features(widths[1], 4, seed=4)), nn.ReLU())
    xa, xb = a(x).detach().numpy(), b(x).detach().numpy()
    assert cka(a, b, x) == pytest.approx(_np_linear_cka(xa, xb), rel=1e-10)
    assert cka(a, b, x, debiased=True) == pytest.approx(_np_debiased_cka(xa, xb), rel=1e-9)
    assert cka(a, b, x, kernel="rbf") == pytest.approx(_np_rbf_cka(xa, xb), rel=1e-9)
    ka, kb = _rbf(xa), _rbf(xb)
    expected = _np_unbiased_hsic(ka, kb) / np.sqrt(
        _np_unbiased_hsic(ka, ka) * _np_unbiased_hsic(kb, kb)
    )
    assert cka(a, b, x, kernel="rbf", debiased=True) == pytest.approx(expected, rel=1e-9)


def test_cka_exact_small_case():
    # X = one feature (1, 2, 3, 4); Y = its square: CKA = corr(x_c, y_c)^2 for 1-D features
    x = torch.tensor([[1.0], [2.0], [3.0], [4.0]], dtype=torch.float64)

    class Square(nn.Module):
        def forward(self, z):
            return z**2

    xc, yc = np.array([-1.5, -0.5, 0.5, 1.5]), np.array([1, 4, 9, 16]) - 7.5
    expected = (xc @ yc) ** 2 / ((xc @ xc) * (yc @ yc))
    assert cka(nn.Identity(), Square(), x) == pytest.approx(expected, rel=1e-12)


def test_cka_on_named_layers_uses_their_outputs_and_batches_agree():
    x = _features(n=40, p=4, seed=5)
    a, b = MLP(4, [6], 3, seed=0).double(), MLP(4, [9], 3, seed=1).double()
    ha = torch.relu(a.layers[1](x)).detach().numpy()
    hb = torch.relu(b.layers[1](x)).detach().numpy()
    value = cka(a, b, x, layer_a="layers.2", layer_b="layers.2", batch_size=7)
    assert value == pytest.approx(_np_linear_cka(ha, hb), rel=1e-10)
    assert value == pytest.approx(cka(a, b, x, layer_a="layers.2", layer_b="layers.2"), rel=1e-12)
    assert not a.layers[2]._forward_hooks  # the hook is gone


def test_cka_of_a_permuted_copy_on_hidden_units_is_one():
    x = _features(n=40, p=4, seed=6)
    net = MLP(4, [6], 3, seed=0).double()
    twin = canonicalize.random_transform(net, x, seed=1, scale=False)
    # a permutation of the hidden units is an orthogonal transform of the representation
    assert cka(net, twin, x, layer_a="layers.2", layer_b="layers.2") == pytest.approx(1.0)


def test_cka_validation():
    x = _features()
    net = MLP(4, [6], 3, seed=0).double()
    with pytest.raises(FuncspaceError, match="no module named 'layers.7'.*'layers.1'"):
        cka(net, net, x, layer_a="layers.7")
    with pytest.raises(FuncspaceError, match="kernel"):
        cka(net, net, x, kernel="cosine")
    with pytest.raises(FuncspaceError, match="at least 4"):
        cka(net, net, x[:3], debiased=True)
    with pytest.raises(FuncspaceError, match="constant"):
        cka(nn.Identity(), nn.Identity(), torch.ones(5, 2, dtype=torch.float64))

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.f = nn.Linear(4, 4).double()

        def forward(self, z):
            return self.f(self.f(z))

    with pytest.raises(FuncspaceError, match="exactly once"):
        cka(Twice(), Twice(), x, layer_a="f")


# --------------------------------------------------------------------------- disagreement


def _digits_like(seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(60, 4, generator=gen)
    y = torch.randint(0, 3, (60,), generator=gen)
    return from_tensors(x, y, test_fraction=0.5, seed=seed)


def test_disagreement_with_itself_and_a_permuted_copy_is_zero():
    data = _digits_like()
    net = MLP(4, [8, 8], 3, seed=0)
    twin = canonicalize.random_transform(net, data.test[0], seed=3)
    assert disagreement(net, net, data) == 0.0
    assert disagreement(net, twin, data) == 0.0
    for kind in ("tv", "kl", "js", "l2"):
        assert output_distance(net, twin, data, kind=kind) == pytest.approx(0.0, abs=1e-5)


def test_disagreement_equals_a_direct_count_on_the_chosen_split():
    data = _digits_like()
    a, b = MLP(4, [8], 3, seed=0), MLP(4, [8], 3, seed=1)
    for split in ("train", "test"):
        x = data.split(split)[0]
        with torch.no_grad():
            expected = float((a(x).argmax(1) != b(x).argmax(1)).float().mean())
        assert disagreement(a, b, data, split=split, batch_size=7) == pytest.approx(expected)
    assert disagreement(a, b, data.test) == disagreement(a, b, data, split="test")
    assert disagreement(a, b, data.train) == disagreement(a, b, data)


def test_disagreement_of_single_logit_models():
    x = torch.arange(-5, 6, dtype=torch.float64).reshape(-1, 1)
    up, down = _fixed(torch.ones(1, 1)), _fixed(-torch.ones(1, 1))
    assert disagreement(up, down, x) == pytest.approx(10 / 11)  # they agree only at 0


def test_output_distances_equal_direct_numpy_formulas():
    data = _digits_like(1)
    a, b = MLP(4, [8], 3, seed=0).double(), MLP(4, [8], 3, seed=1).double()
    x = data.train[0].double()  # the default split
    with torch.no_grad():
        p = torch.softmax(a(x), 1).numpy()
        q = torch.softmax(b(x), 1).numpy()
    m = (p + q) / 2

    def kl(u, v):
        return (u * np.log(u / v)).sum(1)

    expected = {
        "tv": 0.5 * np.abs(p - q).sum(1).mean(),
        "l2": np.linalg.norm(p - q, axis=1).mean(),
        "kl": kl(p, q).mean(),
        "js": (0.5 * kl(p, m) + 0.5 * kl(q, m)).mean(),
    }
    for kind, value in expected.items():
        assert output_distance(a, b, data, kind=kind, batch_size=4) == pytest.approx(value), kind
    assert output_distance(a, b, data, kind="js") <= np.log(2)
    assert output_distance(a, b, data, kind="kl") != pytest.approx(
        output_distance(b, a, data, kind="kl")
    )


def test_models_are_not_mutated_and_keep_their_mode():
    data = _digits_like()
    a = MLP(4, [8], 3, batchnorm=True, dropout=0.5, seed=0)
    b = MLP(4, [8], 3, batchnorm=True, dropout=0.5, seed=1)
    a.train()
    b.eval()
    before = copy.deepcopy(a.state_dict())
    results = [disagreement(a, b, data) for _ in range(2)]
    assert results[0] == results[1]  # eval mode: dropout off, BN statistics fixed
    output_distance(a, b, data)
    cka(a, b, data, layer_a="layers.2")
    assert a.training and all(m.training for m in a.modules())
    assert not b.training and not any(m.training for m in b.modules())
    assert all(torch.equal(v, before[k]) for k, v in a.state_dict().items())


def test_distance_validation():
    data = _digits_like()
    a, wide = MLP(4, [8], 3, seed=0), MLP(4, [8], 5, seed=0)
    with pytest.raises(FuncspaceError, match="same number of outputs"):
        disagreement(a, wide, data)
    with pytest.raises(FuncspaceError, match="kind"):
        output_distance(a, a, data, kind="hellinger")
    with pytest.raises(FuncspaceError, match="nn.Module"):
        disagreement(a, {"w": 1}, data)
    with pytest.raises(FuncspaceError, match="batch_size"):
        disagreement(a, a, data, batch_size=0)
    with pytest.raises(FuncspaceError):
        disagreement(a, a, "digits")


# --------------------------------------------------------------------------- geodesic distance


def test_geodesic_distance_is_zero_within_a_class_and_matches_canonicalize():
    x = _features(n=16, p=4, seed=7)
    net, other = MLP(4, [6], 3, seed=0).double(), MLP(4, [6], 3, seed=1).double()
    twin = canonicalize.random_transform(net, x, seed=2)
    assert class_distance(net, twin, x) == pytest.approx(0.0, abs=1e-6)
    direct = canonicalize.geodesic_distance(
        canonicalize.to_torus(net, x), canonicalize.to_torus(other, x)
    )
    assert class_distance(net, other, x) == pytest.approx(direct)
    assert class_distance(net, other, (x, torch.zeros(16, dtype=torch.long))) > 0.1
    with pytest.warns(DeprecationWarning, match="call class_distance"):
        assert geodesic_distance(net, other, x) == pytest.approx(direct)


def test_networks_with_non_finite_weights_are_refused():
    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    b = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    with torch.no_grad():
        b[0].weight[0, 0] = float("nan")
    x = torch.randn(32, 4)
    for measure in (cka, disagreement, output_distance):
        with pytest.raises(FuncspaceError, match=r"'0.weight' contains NaN or inf \(in b\)"):
            measure(a, b, x)
