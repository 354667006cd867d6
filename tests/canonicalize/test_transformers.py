"""Transformers: residual streams through LayerNorm and RMSNorm, attention heads, embeddings.

Discovery, tracing and the exact cases of the stream, the heads as blocks, embeddings, ties and
what is refused; the properties over random transformers and the continuous groups of heads
are in ``test_heads.py``. The hand-written element (``move``) permutes the residual stream,
whole heads, the query-key and value features inside each head and the feed-forward units
directly on the state dict, from the mathematics, without canonicalize.
"""

from __future__ import annotations

import copy
import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import canonicalize as C
from canonicalize.heads import with_heads
from canonicalize.tracing import trace
from canonicalize.verify import eval_outputs, relative_difference
from tests.canonicalize.test_properties import assert_same_normalized, assert_same_state
from tests.strategies import (
    HandAttention,
    TinyTransformer,
)

# --- a group element written by hand -----------------------------------------------------------


def _perm(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randperm(n, generator=generator)


def move(model: TinyTransformer, generator: torch.Generator, heads=None, within=True):
    """A copy with the stream, the heads, the features inside each head and the feed-forward
    units permuted: the same function, by the mathematics of each layer."""
    moved = copy.deepcopy(model)
    state = moved.state_dict()
    d = model.head.in_features
    stream = _perm(d, generator)

    def rows(name, index):
        state[name].copy_(state[name][index].clone())

    def cols(name, index):
        state[name].copy_(state[name][:, index].clone())

    if model.tokens:
        cols("embed.weight", stream)
        state["pos"].copy_(state["pos"][..., stream].clone())
    else:
        rows("embed.weight", stream)
        rows("embed.bias", stream)
    for b, block in enumerate(model.blocks):
        p = f"blocks.{b}."
        attention = block.attn
        count = attention.heads if isinstance(attention, HandAttention) else attention.mha.num_heads
        width = d // count
        order = _perm(count, generator) if heads is None else torch.as_tensor(heads[b])
        qk = torch.cat(
            [
                h * width + (_perm(width, generator) if within else torch.arange(width))
                for h in order
            ]
        )
        vo = torch.cat(
            [
                h * width + (_perm(width, generator) if within else torch.arange(width))
                for h in order
            ]
        )
        if isinstance(attention, HandAttention):
            for name, index in (("q", qk), ("k", qk), ("v", vo)):
                rows(f"{p}attn.{name}.weight", index)
                cols(f"{p}attn.{name}.weight", stream)
                if attention.q.bias is not None:
                    rows(f"{p}attn.{name}.bias", index)
            out = f"{p}attn.o"
        else:
            index = torch.cat([qk, d + qk, 2 * d + vo])
            rows(f"{p}attn.mha.in_proj_weight", index)
            cols(f"{p}attn.mha.in_proj_weight", stream)
            if attention.mha.in_proj_bias is not None:
                rows(f"{p}attn.mha.in_proj_bias", index)
            out = f"{p}attn.mha.out_proj"
        rows(f"{out}.weight", stream)
        cols(f"{out}.weight", vo)
        if f"{out}.bias" in state:
            rows(f"{out}.bias", stream)
        hidden = _perm(block.ff[0].out_features, generator)
        rows(f"{p}ff.0.weight", hidden)
        cols(f"{p}ff.0.weight", stream)
        rows(f"{p}ff.2.weight", stream)
        cols(f"{p}ff.2.weight", hidden)
        if block.ff[0].bias is not None:
            rows(f"{p}ff.0.bias", hidden)
            rows(f"{p}ff.2.bias", stream)
        for norm in ("norm1", "norm2"):
            for part in ("weight", "bias"):
                if f"{p}{norm}.{part}" in state:
                    rows(f"{p}{norm}.{part}", stream)
    for part in ("weight", "bias"):
        if f"final.{part}" in state:
            rows(f"final.{part}", stream)
    cols("head.weight", stream)
    return moved


def _same_function(a: nn.Module, b: nn.Module, x: torch.Tensor, tol: float = 1e-9) -> bool:
    return relative_difference(eval_outputs(a, x), eval_outputs(b, x)) < tol


# --- the group, exactly --------------------------------------------------------------------------


def _model(**config) -> TinyTransformer:
    model = TinyTransformer(**config).double()
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float64))
    return model.eval()


TOKENS = torch.tensor([[1, 2, 3, 4], [0, 6, 5, 2], [3, 3, 1, 0]])


@pytest.mark.parametrize("heads", ["full", "permutations"])
def test_two_heads_brute_force_over_head_orders_and_features(heads):
    """Every head order and every permutation inside each head (2 x 2!^4 elements): one
    canonical form, in both views of the heads' group."""
    model = _model(d=4, heads=2)
    canon = C.canonical_form(model, TOKENS, heads=heads)
    seen = 0
    for order in itertools.permutations(range(2)):
        for qk0, qk1, vo0, vo1 in itertools.product(itertools.permutations(range(2)), repeat=4):
            moved = copy.deepcopy(model)
            state = moved.state_dict()
            qk = torch.tensor(
                [order[0] * 2 + (qk0, qk1)[order[0]][i] for i in range(2)]
                + [order[1] * 2 + (qk0, qk1)[order[1]][i] for i in range(2)]
            )
            vo = torch.tensor(
                [order[0] * 2 + (vo0, vo1)[order[0]][i] for i in range(2)]
                + [order[1] * 2 + (vo0, vo1)[order[1]][i] for i in range(2)]
            )
            for name, index in (("q", qk), ("k", qk), ("v", vo)):
                for part in ("weight", "bias"):
                    key = f"blocks.0.attn.{name}.{part}"
                    state[key].copy_(state[key][index].clone())
            key = "blocks.0.attn.o.weight"
            state[key].copy_(state[key][:, vo].clone())
            assert _same_function(model, moved, TOKENS)
            assert_same_state(canon, C.canonical_form(moved, TOKENS, heads=heads))
            seen += 1
    assert seen == 32


def test_spec_of_a_two_head_block():
    spec = C.symmetries(_model(d=4, heads=2), TOKENS)
    heads = [g for g in spec.groups if g.blocks]
    assert len(heads) == 1 and heads[0].size == 2 and heads[0].kind == "heads"
    query_key, value = heads[0].blocks[0]
    assert spec.groups[query_key].size == 2 and spec.groups[value].size == 2
    # query and key rows of one head: one group, its sites on both layers
    labels = {spec.sites[i].name for i in spec.groups[query_key].sites}
    assert labels == {"blocks.0.attn.q", "blocks.0.attn.k"}
    assert "whole heads" in str(spec)
    # the full view divides out every continuous part of these heads; the narrow one says not
    (attention,) = spec.attentions
    assert attention.blocks == heads[0].index
    assert [(h.query_key, h.values) for h in attention.heads] == list(heads[0].blocks)
    assert attention.query_key and attention.value_output
    assert "query-key maps, value-output maps, key bias, value bias folded" in str(spec)
    assert not any("A^-T W_K" in n for n in spec.notes)
    narrow = with_heads(spec, "permutations")
    assert not narrow.attentions[0].continuous
    assert any("not divided out" in n and "query-key" in n for n in narrow.notes)
    assert any("'blocks.0.norm1'" in n and "not divided out" in n for n in spec.notes)


@pytest.mark.parametrize(
    "norm, sign", [("layernorm", False), ("rmsnorm", True), ("hand_rmsnorm", True)]
)
def test_stream_through_layernorm_permutes_and_through_rmsnorm_also_flips(norm, sign):
    spec = C.symmetries(_model(d=4, heads=2, norm=norm), TOKENS)
    embed = next(i for i, s in enumerate(spec.sites) if s.name == "embed")
    site = spec.sites[embed]
    assert site.group is not None and site.dim == 1
    stream = spec.scale_class(site.scale)
    assert not stream.magnitude and stream.sign is sign


def test_rmsnorm_gain_flips_with_its_stream():
    """The stream's sign divides every RMSNorm gain (dim 0), which keeps a factor of its own."""
    model = _model(d=4, heads=2, norm="rmsnorm")
    spec = C.symmetries(model, TOKENS)
    embed = next(s for s in spec.sites if s.name == "embed")
    stream = spec.scale_class(embed.scale)
    flipped = {(c.tensor, c.dim) for c in stream.columns}
    assert ("blocks.0.norm1.weight", 0) in flipped and ("final.weight", 0) in flipped
    gain = next(s for s in spec.sites if s.name == "blocks.0.norm1")
    assert spec.scale_class(gain.scale).sign and spec.scale_class(gain.scale).magnitude
    moved = C.random_transform(model, TOKENS, seed=5, permute=False, scale=False)
    assert (torch.sign(moved.embed.weight / model.embed.weight) < 0).any()
    assert _same_function(model, moved, TOKENS)


def test_layernorm_stream_keeps_no_scale_or_sign():
    model = _model(d=4, heads=2, norm="layernorm")
    moved = C.random_transform(model, TOKENS, seed=5, permute=False)
    assert torch.equal(moved.embed.weight, model.embed.weight)
    assert torch.equal(moved.pos, model.pos)


class _Sinusoidal(nn.Module):
    """Token embedding plus a fixed (buffer) sinusoidal position table."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = _model(d=4, heads=2)
        position = torch.arange(4, dtype=torch.float64)[:, None]
        table = torch.cat([torch.sin(position), torch.cos(position)] * 2, dim=1)
        self.register_buffer("table", table)

    def forward(self, t):
        h = self.inner.embed(t) + self.table[: t.shape[1]]
        return self.inner.head(self.inner.final(self.inner.blocks(h)))


def test_a_fixed_position_table_forbids_stream_permutations():
    model = _Sinusoidal()
    spec = C.symmetries(model, TOKENS)
    embed = next(s for s in spec.sites if s.name == "inner.embed")
    assert embed.group is None
    assert any("fixed position table" in n for n in spec.notes)
    assert any(g.kind == "heads" for g in spec.groups)  # heads still permute
    moved = C.random_transform(model, TOKENS, seed=1)
    assert torch.equal(moved.inner.embed.weight, model.inner.embed.weight)
    assert_same_state(C.canonical_form(model, TOKENS), C.canonical_form(moved, TOKENS))


class _Tied(nn.Module):
    """An output layer tied to the embedding by sharing the Parameter (GPT-2 style)."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = _model(d=4, heads=2, d_out=7)
        self.inner.head = nn.Linear(4, 7, bias=False).double()
        self.inner.head.weight = self.inner.embed.weight

    def forward(self, t):
        return self.inner(t)


def test_tied_embedding_gets_one_transform():
    model = _Tied().eval()
    spec = C.symmetries(model, TOKENS)
    assert any("tied weights" in n for n in spec.notes)
    moved = C.random_transform(model, TOKENS, seed=3)
    assert moved.inner.head.weight is moved.inner.embed.weight
    assert not torch.equal(moved.inner.embed.weight, model.inner.embed.weight)
    assert_same_state(C.canonical_form(model, TOKENS), C.canonical_form(moved, TOKENS))
    result = C.match(moved, model, TOKENS)
    assert_same_normalized(result.model, model, result.spec)
    assert result.model.inner.head.weight is result.model.inner.embed.weight


class _FunctionalUnembedding(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = _model(d=4, heads=2)

    def forward(self, t):
        h = self.inner.final(self.inner.blocks(self.inner.embed(t)))
        return F.linear(h, self.inner.embed.weight)


def test_unembedding_read_as_a_raw_matrix_is_refused_by_name():
    with pytest.raises(C.SymmetryError, match=r"reads the tensor 'inner.embed.weight' directly"):
        C.symmetries(_FunctionalUnembedding(), TOKENS)


class _RotaryAttention(nn.Module):
    """Rotary position embeddings on the queries and keys (rotate_half, as in GPT-NeoX/LLaMA)."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = HandAttention(4, 1, True, False, False).double()
        angle = torch.arange(4, dtype=torch.float64)[:, None] * torch.tensor([1.0]).double()
        self.register_buffer("cos", torch.cat([angle.cos()] * 2, dim=-1))
        self.register_buffer("sin", torch.cat([angle.sin()] * 2, dim=-1))

    @staticmethod
    def rotate_half(x):
        x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
        return torch.cat((-x2, x1), dim=-1)

    def forward(self, x):
        B, T, D = x.shape
        q = self.attn.q(x).view(B, T, 2, D // 2).transpose(1, 2)
        k = self.attn.k(x).view(B, T, 2, D // 2).transpose(1, 2)
        v = self.attn.v(x).view(B, T, 2, D // 2).transpose(1, 2)
        cos, sin = self.cos[:T], self.sin[:T]
        q = q * cos + self.rotate_half(q) * sin
        k = k * cos + self.rotate_half(k) * sin
        y = F.scaled_dot_product_attention(q, k, v)
        return self.attn.o(y.transpose(1, 2).reshape(B, T, D))


class _Rotary(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = _RotaryAttention()

    def forward(self, x):
        return x + self.block(x)


def test_rotary_embeddings_are_refused_naming_the_module():
    with pytest.raises(
        C.SymmetryError, match=r"in 'block' \(_RotaryAttention\).*rotary position embeddings"
    ):
        C.symmetries(_Rotary(), torch.randn(3, 4, 4, dtype=torch.float64))


class _PerHeadBias(nn.Module):
    """A fixed bias per head on the scores (ALiBi-like): heads cannot swap."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = HandAttention(4, 2, True, False, False).double()
        self.register_buffer("bias", torch.randn(2, 4, 4, dtype=torch.float64))

    def forward(self, x):
        B, T, D = x.shape
        q = self.attn.q(x).view(B, T, 2, 2).transpose(1, 2)
        k = self.attn.k(x).view(B, T, 2, 2).transpose(1, 2)
        v = self.attn.v(x).view(B, T, 2, 2).transpose(1, 2)
        scores = q @ k.transpose(-2, -1) + self.bias
        y = scores.softmax(-1) @ v
        return self.attn.o(y.transpose(1, 2).reshape(B, T, D))


def test_a_per_head_fixed_bias_keeps_heads_in_place():
    x = torch.randn(3, 4, 4, dtype=torch.float64)
    spec = C.symmetries(_PerHeadBias(), x)
    assert not any(g.blocks for g in spec.groups)
    assert any("heads stay in place" in n for n in spec.notes)
    model = _PerHeadBias().eval()
    moved = C.random_transform(model, x, seed=2)
    assert _same_function(model, moved, x)


class _QKNorm(nn.Module):
    """A LayerNorm over the features of each head (qk-norm): not supported yet."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = HandAttention(4, 2, True, False, False).double()
        self.norm = nn.LayerNorm(2).double()

    def forward(self, x):
        B, T, D = x.shape
        q = self.norm(self.attn.q(x).view(B, T, 2, 2).transpose(1, 2))
        k = self.attn.k(x).view(B, T, 2, 2).transpose(1, 2)
        v = self.attn.v(x).view(B, T, 2, 2).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.attn.o(y.transpose(1, 2).reshape(B, T, D))


def test_a_norm_inside_heads_is_refused_naming_the_layer():
    with pytest.raises(C.SymmetryError, match=r"reshapes .* here layer 'norm'"):
        C.symmetries(_QKNorm(), torch.randn(3, 4, 4, dtype=torch.float64))


# --- torch.nn's transformer layers and tracing ---------------------------------------------------


class _Encoder(nn.Module):
    def __init__(self, norm_first: bool, layers: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(7, 4)
        layer = nn.TransformerEncoderLayer(
            4, 2, 8, dropout=0.1, batch_first=True, norm_first=norm_first
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(4, 3)

    def forward(self, t):
        return self.head(self.encoder(self.embed(t)).mean(1))


@pytest.mark.parametrize("norm_first", [False, True])
def test_torch_transformer_encoder_is_traced_through_and_canonicalized(norm_first):
    torch.manual_seed(0)
    model = _Encoder(norm_first).double().eval()
    gm = trace(model, TOKENS)
    called = {str(n.target) for n in gm.graph.nodes if n.op == "call_module"}
    assert "encoder.layers.0.self_attn" in called and "encoder.layers.1.norm2" in called
    spec = C.symmetries(model, TOKENS)
    assert sum(g.kind == "heads" for g in spec.groups) == 2
    moved = C.random_transform(model, TOKENS, seed=4)
    assert _same_function(model, moved, TOKENS)
    assert_same_state(C.canonical_form(model, TOKENS), C.canonical_form(moved, TOKENS))
    result = C.match(moved, model, TOKENS, method="weights")
    assert_same_normalized(result.model, model, result.spec)


def test_a_bare_transformer_encoder_layer_is_a_model():
    torch.manual_seed(1)
    layer = nn.TransformerEncoderLayer(4, 2, 8, dropout=0.0, batch_first=True).double().eval()
    x = torch.randn(3, 5, 4, dtype=torch.float64)
    moved = C.random_transform(layer, x, seed=0)
    assert _same_function(layer, moved, x)
    assert_same_state(C.canonical_form(layer, x), C.canonical_form(moved, x))


def test_multihead_attention_with_weights_and_sequence_first_inputs():
    class _SeqFirst(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mha = nn.MultiheadAttention(4, 2)
            self.out = nn.Linear(4, 2)

        def forward(self, x):
            y, weights = self.mha(x, x, x)  # need_weights: averaged over heads
            return self.out(y).transpose(0, 1) + weights.sum(-1, keepdim=True)

    torch.manual_seed(2)
    model = _SeqFirst().double().eval()
    x = torch.randn(5, 3, 4, dtype=torch.float64)  # (length, batch, features)
    spec = C.symmetries(model, x)
    assert any(g.kind == "heads" for g in spec.groups)
    moved = C.random_transform(model, x, seed=1)
    assert _same_function(model, moved, x)


def test_token_ids_are_valid_example_inputs_and_floats_for_mlps_only():
    model = _model(d=4, heads=2)
    assert C.symmetries(model, TOKENS).groups
    mlp = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(C.SymmetryError, match="must be floating point, got torch.int64"):
        C.symmetries(mlp, torch.ones(6, 3, dtype=torch.long))


def test_sizes_read_in_forward_feed_tensor_factories():
    """``torch.ones(T, T)`` with ``T`` read from the input's shape (a causal mask built in
    forward) is traced as a node of the graph."""
    model = _model(d=4, heads=2, causal=True)
    gm = trace(model, TOKENS)
    assert any(getattr(n.target, "__name__", "") == "ones" for n in gm.graph.nodes)
    assert gm.meta["tracing"] == "specialized"
    moved = C.random_transform(model, TOKENS, seed=0)
    assert _same_function(model, moved, TOKENS)


def test_packed_attention_in_a_transformer():
    model = _model(d=4, heads=2, attention="packed", causal=True)
    spec = C.symmetries(model, TOKENS)
    heads = next(g for g in spec.groups if g.kind == "heads")
    query_key = spec.groups[heads.blocks[0][0]]
    # the query rows and the key rows of the packed projection: two sites of one group
    assert [spec.sites[i].name for i in query_key.sites] == ["blocks.0.attn.mha"] * 2
    moved = move(model, torch.Generator().manual_seed(0))
    aligned = C.align(moved, model, TOKENS)
    assert_same_state(aligned, model, tol=1e-9)


# --- a GPT written as nanoGPT writes it -------------------------------------------------------


class _CausalSelfAttention(nn.Module):
    def __init__(self, n_embd=8, n_head=2, block_size=6, flash=False):
        super().__init__()
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)
        self.attn_dropout = nn.Dropout(0.1)
        self.resid_dropout = nn.Dropout(0.1)
        self.n_head, self.n_embd, self.flash = n_head, n_embd, flash
        self.register_buffer(
            "bias",
            torch.tril(torch.ones(block_size, block_size)).view(1, 1, block_size, block_size),
        )

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        if self.flash:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
            att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf"))
            att = F.softmax(att, dim=-1)
            att = self.attn_dropout(att)
            y = att @ v
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class _MLP(nn.Module):
    def __init__(self, n_embd=8):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * n_embd, n_embd)
        self.dropout = nn.Dropout(0.1)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class _GPTBlock(nn.Module):
    def __init__(self, flash):
        super().__init__()
        self.ln_1 = nn.LayerNorm(8)
        self.attn = _CausalSelfAttention(flash=flash)
        self.ln_2 = nn.LayerNorm(8)
        self.mlp = _MLP()

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class _GPT(nn.Module):
    def __init__(self, flash=False):
        super().__init__()
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(11, 8),
                wpe=nn.Embedding(6, 8),
                drop=nn.Dropout(0.1),
                h=nn.ModuleList([_GPTBlock(flash) for _ in range(2)]),
                ln_f=nn.LayerNorm(8),
            )
        )
        self.lm_head = nn.Linear(8, 11, bias=False)
        self.transformer.wte.weight = self.lm_head.weight

    def forward(self, idx):
        b, t = idx.size()
        assert t <= 6, f"Cannot forward sequence of length {t}"
        pos = torch.arange(0, t, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)
        return self.lm_head(x)


@pytest.mark.parametrize("flash", [False, True])
def test_nanogpt_style_model(flash):
    """Packed c_attn split into q, k, v; a causal mask from a buffer or is_causal; dropout on
    the scores; positions embedded from torch.arange; an assert on the length; lm_head tied
    to the token embedding by sharing the Parameter."""
    torch.manual_seed(0)
    model = _GPT(flash).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p))
    x = torch.randint(0, 11, (3, 6))
    spec = C.symmetries(model, x)
    assert sum(g.kind == "heads" for g in spec.groups) == 2
    assert any("tied weights" in n for n in spec.notes)
    moved = C.random_transform(model, x, seed=1)
    assert _same_function(model, moved, x)
    assert moved.lm_head.weight is moved.transformer.wte.weight
    assert_same_state(C.canonical_form(model, x), C.canonical_form(moved, x))
    for method in ("cosine", "weights", "activations"):
        result = C.match(moved, model, x, method=method)
        assert_same_normalized(result.model, model, result.spec)
