"""Transformers written with einops (``Rearrange`` layers, ``rearrange`` and ``repeat`` calls),
as public vision-transformer code writes them: traced, their group found and divided out."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import canonicalize
from canonicalize.tracing import trace

einops = pytest.importorskip("einops")
from einops.layers.torch import Rearrange  # noqa: E402


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.to_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x):
        qkv = self.to_qkv(x).chunk(3, dim=-1)
        q, k, v = (einops.rearrange(t, "b n (h d) -> b h n d", h=self.heads) for t in qkv)
        attention = (q @ k.transpose(-1, -2) * self.scale).softmax(dim=-1)
        return self.to_out(einops.rearrange(attention @ v, "b h n d -> b n (h d)"))


class _ViT(nn.Module):
    """lucidrains-style: patches by a Rearrange layer, a class token by ``repeat``."""

    def __init__(self, patch: int = 4, tokens: int = 4, dim: int = 8, heads: int = 2) -> None:
        super().__init__()
        self.to_patch = nn.Sequential(Rearrange("b (n p) -> b n p", p=patch), nn.Linear(patch, dim))
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, tokens + 1, dim))
        self.norm1 = nn.LayerNorm(dim)
        self.attention = _Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 3)

    def forward(self, x):
        t = self.to_patch(x)
        cls = einops.repeat(self.cls_token, "1 1 d -> b 1 d", b=t.shape[0])
        t = torch.cat([cls, t], dim=1) + self.pos
        t = t + self.attention(self.norm1(t))
        t = t + self.mlp(self.norm2(t))
        return self.head(self.norm(t)[:, 0])


def _model(heads: int, seed: int) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(seed)
    model = _ViT(heads=heads).double().eval()
    return model, torch.randn(6, 16, dtype=torch.float64)


def test_einops_calls_become_graph_nodes_valid_for_any_batch_size():
    model, x = _model(2, 0)
    gm = trace(model, x)
    assert gm.meta["tracing"] == "specialized"
    other = torch.randn(9, 16, dtype=torch.float64)
    assert torch.equal(gm(other), model(other))


@pytest.mark.parametrize("heads", [1, 2, 4])
@pytest.mark.parametrize("seed", [0, 1])
def test_einops_vit_group_is_found_and_divided_out(heads, seed):
    model, x = _model(heads, seed)
    spec = canonicalize.symmetries(model, x)
    # the stream (8 features), one block of heads, their query-key and value features, the MLP
    assert spec.groups[0].size == 8 and any(g.size == 16 for g in spec.groups)
    moved = canonicalize.random_transform(model, x, seed=100 + seed)
    assert torch.allclose(moved(x), model(x), rtol=0, atol=1e-10)
    pairs = zip(moved.parameters(), model.parameters(), strict=True)
    assert any((p - q).abs().max() > 1e-3 for p, q in pairs)
    one = canonicalize.canonical_form(model, x).state_dict()
    two = canonicalize.canonical_form(moved, x).state_dict()
    assert max((one[k] - two[k]).abs().max().item() for k in one) < 1e-9
    aligned = canonicalize.align(moved, model, x)
    assert torch.allclose(aligned(x), model(x), rtol=0, atol=1e-10)
