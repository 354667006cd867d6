"""Hypothesis strategies: random architectures (built from plain torch layers) and their inputs.

Architectures are plain ``nn.Sequential`` stacks and small custom modules with residual
additions and functional calls, never funcspace's model classes: canonicalize must work on any
model of supported layers. Every model is float64, with random BatchNorm statistics and affine
parameters so that no symmetry is hidden by an initialization that happens to be symmetric.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from hypothesis import strategies as st
from torch import nn

from canonicalize import Sign, SymmetrySpec, symmetries

ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sign", "identity")


def activation(name: str) -> nn.Module:
    return {
        "relu": nn.ReLU,
        "leaky_relu": lambda: nn.LeakyReLU(0.1),
        "tanh": nn.Tanh,
        "sign": Sign,
        "identity": nn.Identity,
    }[name]()


@dataclass(frozen=True)
class Case:
    """A random model with an input batch that exercises it."""

    family: str
    model: nn.Module
    x: torch.Tensor
    spec: SymmetrySpec | None = field(default=None, compare=False)

    def __repr__(self) -> str:
        return f"Case({self.family}, {self.model!r}, x{tuple(self.x.shape)})"


class ResidualNet(nn.Module):
    """Linear stem, blocks ``x + f(x)`` written with functional calls, head."""

    def __init__(self, d_in, width, depth, d_out, act, batchnorm):
        super().__init__()
        self.stem = nn.Linear(d_in, width)
        self.first = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.norms = nn.ModuleList(
            (nn.BatchNorm1d(width) if batchnorm else nn.Identity()) for _ in range(depth)
        )
        self.second = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.act = activation(act)
        self.head = nn.Linear(width, d_out)

    def forward(self, x):
        x = self.stem(x)
        for first, norm, second in zip(self.first, self.norms, self.second, strict=True):
            x = x + second(self.act(norm(first(x))))
        return self.head(F.relu(x))


class ConvResidualNet(nn.Module):
    """Conv stem with BatchNorm, one residual conv block, global pooling, head."""

    def __init__(self, c_in, width, d_out, batchnorm):
        super().__init__()
        bn = (lambda: nn.BatchNorm2d(width)) if batchnorm else nn.Identity
        self.stem = nn.Sequential(nn.Conv2d(c_in, width, 3, padding=1), bn(), nn.ReLU())
        self.block = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1),
            bn(),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            bn(),
        )
        self.head = nn.Linear(width, d_out)

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(x + self.block(x))
        x = F.adaptive_avg_pool2d(x, 1)
        return self.head(x.view(x.size(0), -1))


def randomize_batchnorm(model: nn.Module, generator: torch.Generator) -> None:
    """Give every BatchNorm random running statistics and affine parameters."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            n = module.num_features
            with torch.no_grad():
                if module.running_mean is not None:
                    module.running_mean.copy_(torch.randn(n, generator=generator))
                    module.running_var.copy_(0.5 + torch.rand(n, generator=generator))
                if module.affine:
                    module.weight.copy_(torch.randn(n, generator=generator))
                    module.bias.copy_(torch.randn(n, generator=generator))


@st.composite
def mlps(draw) -> Case:
    d_in = draw(st.integers(2, 5))
    depth = draw(st.integers(1, 3))
    widths = draw(st.lists(st.integers(2, 6), min_size=depth, max_size=depth))
    act = draw(st.sampled_from(ACTIVATIONS))
    batchnorm = draw(st.booleans())
    bias = draw(st.booleans())
    layers: list[nn.Module] = []
    prev = d_in
    for width in widths:
        layers.append(nn.Linear(prev, width, bias=bias))
        if batchnorm:
            layers.append(nn.BatchNorm1d(width, affine=draw(st.booleans())))
        layers.append(activation(act))
        if draw(st.booleans()):
            layers.append(nn.Dropout(0.5))
        prev = width
    layers.append(nn.Linear(prev, draw(st.integers(1, 4))))
    return _finish(draw, "mlp", nn.Sequential(*layers), (d_in,))


@st.composite
def cnns(draw) -> Case:
    """Conv2d (6x6 images) or Conv1d (length-8 signals) stacks, then Flatten into Linear."""
    c_in = draw(st.integers(1, 2))
    channels = draw(st.lists(st.integers(2, 4), min_size=1, max_size=2))
    act = draw(st.sampled_from(("relu", "leaky_relu", "tanh")))
    batchnorm = draw(st.booleans())
    pool = draw(st.sampled_from(("max", "avg", "none")))
    two_d = draw(st.booleans())
    conv, norm = (nn.Conv2d, nn.BatchNorm2d) if two_d else (nn.Conv1d, nn.BatchNorm1d)
    pools = (nn.MaxPool2d, nn.AvgPool2d) if two_d else (nn.MaxPool1d, nn.AvgPool1d)
    layers: list[nn.Module] = []
    prev, size = c_in, 6 if two_d else 8
    for c in channels:
        layers.append(conv(prev, c, 3, padding=1))
        if batchnorm:
            layers.append(norm(c))
        layers.append(activation(act))
        if pool != "none" and size >= 4:
            layers.append(pools[0](2) if pool == "max" else pools[1](2))
            size //= 2
        prev = c
    hidden = draw(st.integers(2, 5))
    features = prev * size * size if two_d else prev * size
    layers += [nn.Flatten(), nn.Linear(features, hidden), nn.ReLU()]
    layers.append(nn.Linear(hidden, draw(st.integers(1, 4))))
    shape = (c_in, 6, 6) if two_d else (c_in, 8)
    return _finish(draw, "cnn" if two_d else "cnn1d", nn.Sequential(*layers), shape)


@st.composite
def residuals(draw) -> Case:
    if draw(st.booleans()):
        d_in = draw(st.integers(2, 4))
        model = ResidualNet(
            d_in,
            draw(st.integers(2, 5)),
            draw(st.integers(1, 2)),
            draw(st.integers(1, 3)),
            draw(st.sampled_from(("relu", "leaky_relu", "tanh"))),
            draw(st.booleans()),
        )
        return _finish(draw, "residual_mlp", model, (d_in,))
    c_in = draw(st.integers(1, 2))
    model = ConvResidualNet(
        c_in, draw(st.integers(2, 4)), draw(st.integers(1, 3)), draw(st.booleans())
    )
    return _finish(draw, "residual_cnn", model, (c_in, 4, 4))


def _finish(draw, family: str, model: nn.Module, input_shape: tuple[int, ...]) -> Case:
    seed = draw(st.integers(0, 2**31 - 1))
    generator = torch.Generator().manual_seed(seed)
    model = model.double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(
                torch.randn(p.shape, generator=generator, dtype=torch.float64)
                / max(1, p[0].numel()) ** 0.5
            )
    randomize_batchnorm(model, generator)
    model.eval()
    x = torch.randn((16, *input_shape), generator=generator, dtype=torch.float64)
    return Case(family, model, x)


def models() -> st.SearchStrategy[Case]:
    """Any supported random architecture."""
    return st.one_of(mlps(), cnns(), residuals())


group_seeds = st.integers(0, 2**31 - 1)


@st.composite
def binary_mlps(draw, batchnorm: bool | None = None) -> Case:
    """Plain binary MLPs: Linear layers with weights exactly +-1, Sign activations, depth 1-3,
    widths 1-6, optionally BatchNorm before each sign; a sign output or 2-3 logits.

    No pre-activation is ever exactly 0 (where a sign reversal would change the output):
    without biases every fan-in that reads signs is odd (an odd sum of +-1 is never 0); biases
    are half-integers (a sum of +-1 plus a half-integer is never 0); the first layer reads
    real-valued inputs. Float64, eval mode, random BatchNorm statistics and parameters.
    """
    d_in = draw(st.sampled_from((1, 3, 5)))
    depth = draw(st.integers(1, 3))
    bias = draw(st.booleans())
    batchnorm = draw(st.booleans()) if batchnorm is None else batchnorm
    width = st.integers(1, 6) if bias else st.sampled_from((1, 3, 5))
    widths = draw(st.lists(width, min_size=depth, max_size=depth))
    layers: list[nn.Module] = []
    prev = d_in
    for w in widths:
        layers.append(nn.Linear(prev, w, bias=bias))
        if batchnorm:
            layers.append(nn.BatchNorm1d(w))
        layers.append(Sign())
        prev = w
    if draw(st.booleans()):
        layers += [nn.Linear(prev, 1, bias=bias), Sign()]
    else:
        layers.append(nn.Linear(prev, draw(st.integers(2, 3)), bias=bias))
    model = nn.Sequential(*layers).double()
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                shape = module.weight.shape
                module.weight.copy_(torch.randint(0, 2, shape, generator=generator) * 2.0 - 1)
                if module.bias is not None:
                    half = torch.randint(-2, 2, module.bias.shape, generator=generator) + 0.5
                    module.bias.copy_(half)
    randomize_batchnorm(model, generator)
    model.eval()
    x = torch.randn((16, d_in), generator=generator, dtype=torch.float64)
    return Case("binary_mlp", model, x)


@st.composite
def binary_models(draw) -> Case:
    """Binary training models of every reference family (binary.models): perceptron,
    committee (tree or fully connected, sum or majority), binary MLP and CNN (with or without
    BatchNorm); small sizes, seeded latent weights, random BatchNorm statistics and
    parameters, float64, eval mode, with real-valued inputs."""
    import binary

    family = draw(st.sampled_from(("perceptron", "committee", "binary_mlp", "binary_cnn")))
    seed = draw(st.integers(0, 2**31 - 1))
    batchnorm = draw(st.booleans())
    if family == "perceptron":
        d_in = draw(st.integers(1, 12))
        model, shape = binary.perceptron(d_in, seed=seed), (d_in,)
    elif family == "committee":
        units = draw(st.sampled_from((1, 3, 5)))
        tree = draw(st.booleans())
        d_in = units * draw(st.integers(1, 4)) if tree else draw(st.integers(1, 12))
        output = draw(st.sampled_from(("sum", "majority")))
        model = binary.committee(d_in, units, tree=tree, output=output, seed=seed)
        shape = (d_in,)
    elif family == "binary_mlp":
        d_in = draw(st.integers(1, 8))
        widths = draw(st.lists(st.integers(1, 9), min_size=1, max_size=3))
        classes = draw(st.integers(2, 4))
        model = binary.binary_mlp(d_in, widths, classes, batchnorm=batchnorm, seed=seed)
        shape = (d_in,)
    else:
        size = draw(st.sampled_from((4, 6, 8)))
        channels = draw(st.lists(st.integers(1, 4), min_size=1, max_size=2))
        c_in = draw(st.integers(1, 2))
        model = binary.binary_cnn(c_in, size, 3, channels=channels, batchnorm=batchnorm, seed=seed)
        shape = (c_in, size, size)
    model = model.double()
    generator = torch.Generator().manual_seed(seed)
    randomize_batchnorm(model, generator)
    model.eval()
    x = torch.randn((12, *shape), generator=generator, dtype=torch.float64)
    return Case(family, model, x)


# --- transformers -----------------------------------------------------------------------------


class HandAttention(nn.Module):
    """Multi-head attention written by hand: separate q/k/v/o layers, heads split with
    view/transpose, scores by matmul (optionally causal by a mask built in forward) or by
    F.scaled_dot_product_attention."""

    def __init__(self, d: int, heads: int, bias: bool, causal: bool, sdpa: bool) -> None:
        super().__init__()
        self.heads, self.causal, self.sdpa = heads, causal, sdpa
        self.q, self.k = nn.Linear(d, d, bias=bias), nn.Linear(d, d, bias=bias)
        self.v, self.o = nn.Linear(d, d, bias=bias), nn.Linear(d, d, bias=bias)

    def forward(self, x):
        B, T, D = x.shape
        h = self.heads
        q = self.q(x).view(B, T, h, D // h).transpose(1, 2)
        k = self.k(x).view(B, T, h, D // h).transpose(1, 2)
        v = self.v(x).view(B, T, h, D // h).transpose(1, 2)
        if self.sdpa:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        else:
            scores = (q @ k.transpose(-2, -1)) * (D // h) ** -0.5
            if self.causal:
                mask = torch.triu(torch.ones(T, T, dtype=torch.bool, device=x.device), 1)
                scores = scores.masked_fill(mask, float("-inf"))
            y = F.softmax(scores, dim=-1) @ v
        return self.o(y.transpose(1, 2).contiguous().view(B, T, D))


class PackedAttention(nn.Module):
    """nn.MultiheadAttention (packed in_proj_weight), self-attention, batch first."""

    def __init__(self, d: int, heads: int, bias: bool, causal: bool, sdpa: bool) -> None:
        super().__init__()
        self.causal = causal
        self.mha = nn.MultiheadAttention(d, heads, bias=bias, batch_first=True)

    def forward(self, x):
        T = x.shape[1]
        mask = None
        if self.causal:
            mask = torch.triu(torch.ones(T, T, dtype=torch.bool, device=x.device), 1)
        return self.mha(x, x, x, attn_mask=mask, need_weights=False)[0]


class HandRMSNorm(nn.Module):
    """RMSNorm written by hand, with a gain."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight


def norm_layer(kind: str, d: int) -> nn.Module:
    return {
        "layernorm": lambda: nn.LayerNorm(d),
        "rmsnorm": lambda: nn.RMSNorm(d),
        "hand_rmsnorm": lambda: HandRMSNorm(d),
    }[kind]()


class TransformerBlock(nn.Module):
    """Pre- or post-norm block: attention and a two-layer feed-forward, each in a residual."""

    def __init__(self, d, heads, norm, pre, act, bias, attention, causal, sdpa) -> None:
        super().__init__()
        self.pre = pre
        kind = HandAttention if attention == "hand" else PackedAttention
        self.norm1, self.norm2 = norm_layer(norm, d), norm_layer(norm, d)
        self.attn = kind(d, heads, bias, causal, sdpa)
        self.ff = nn.Sequential(
            nn.Linear(d, 2 * d, bias=bias),
            nn.ReLU() if act == "relu" else nn.GELU(),
            nn.Linear(2 * d, d, bias=bias),
        )

    def forward(self, x):
        if self.pre:
            x = x + self.attn(self.norm1(x))
            return x + self.ff(self.norm2(x))
        x = self.norm1(x + self.attn(x))
        return self.norm2(x + self.ff(x))


class TinyTransformer(nn.Module):
    """Token ids (embedding plus a learned position table) or float tokens (a Linear stem),
    transformer blocks, a final norm (pre-norm) and a linear head per token."""

    def __init__(
        self,
        vocab=7,
        length=4,
        d=4,
        heads=2,
        depth=1,
        norm="layernorm",
        pre=True,
        act="gelu",
        bias=True,
        attention="hand",
        causal=False,
        sdpa=False,
        tokens=True,
        d_in=3,
        d_out=3,
    ) -> None:
        super().__init__()
        self.tokens = tokens
        if tokens:
            self.embed = nn.Embedding(vocab, d)
            self.pos = nn.Parameter(torch.zeros(1, length, d))
        else:
            self.embed = nn.Linear(d_in, d)
        self.blocks = nn.Sequential(
            *(
                TransformerBlock(d, heads, norm, pre, act, bias, attention, causal, sdpa)
                for _ in range(depth)
            )
        )
        self.final = norm_layer(norm, d) if pre else nn.Identity()
        self.head = nn.Linear(d, d_out, bias=bias)

    def forward(self, x):
        h = self.embed(x)
        if self.tokens:
            h = h + self.pos[:, : x.shape[1]]
        return self.head(self.final(self.blocks(h)))


# Architectures drawn from a fixed set (weights and group elements stay random per example), so
# each is traced once per session: two greedy pairwise covering arrays of the factors below
# (every pair of values of any two factors appears in each half), every fourth two blocks deep.
# Columns: attention ("hand": matmul with an optional causal mask; "sdpa": hand-written around
# F.scaled_dot_product_attention; "packed": nn.MultiheadAttention), norm, pre-norm, heads,
# width per head (x2 for one head), biases, feed-forward activation, causal, token ids. A
# LayerNorm stream is at least 4 wide: over 2 features LayerNorm outputs one of two vectors up to
# eps, every unit after it is an affine function of one number, and activation matching cannot
# tell such units apart (weights can).
TRANSFORMER_CONFIGS = (
    ("hand", "rmsnorm", True, 2, 2, False, "relu", True, False),
    ("packed", "hand_rmsnorm", False, 4, 1, True, "gelu", True, True),
    ("sdpa", "layernorm", False, 1, 2, False, "relu", False, True),
    ("hand", "layernorm", True, 1, 2, True, "gelu", False, False),
    ("packed", "hand_rmsnorm", True, 4, 2, False, "relu", False, False),
    ("sdpa", "rmsnorm", False, 2, 1, True, "gelu", False, True),
    ("sdpa", "layernorm", True, 4, 2, True, "relu", True, True),
    ("packed", "rmsnorm", False, 1, 2, False, "gelu", True, False),
    ("hand", "hand_rmsnorm", False, 2, 1, False, "relu", True, True),
    ("packed", "layernorm", False, 2, 2, False, "gelu", False, False),
    ("sdpa", "hand_rmsnorm", True, 1, 2, False, "gelu", True, False),
    ("hand", "rmsnorm", False, 4, 2, True, "relu", False, False),
    ("packed", "hand_rmsnorm", True, 4, 1, True, "relu", False, False),
    ("hand", "layernorm", False, 1, 2, True, "gelu", True, True),
    ("sdpa", "rmsnorm", True, 2, 2, False, "gelu", False, True),
    ("sdpa", "layernorm", False, 2, 2, False, "relu", True, False),
    ("packed", "hand_rmsnorm", False, 4, 2, False, "gelu", True, True),
    ("hand", "rmsnorm", True, 1, 1, False, "relu", False, False),
    ("sdpa", "rmsnorm", False, 4, 1, True, "relu", False, True),
    ("packed", "layernorm", True, 2, 2, True, "gelu", True, False),
    ("sdpa", "hand_rmsnorm", False, 1, 2, True, "relu", False, False),
    ("packed", "rmsnorm", False, 1, 1, True, "gelu", True, True),
    ("hand", "layernorm", False, 4, 2, True, "relu", False, True),
    ("hand", "hand_rmsnorm", False, 2, 1, True, "relu", False, False),
)
TRANSFORMER_FACTORS = (
    "attention",
    "norm",
    "pre",
    "heads",
    "width",
    "bias",
    "act",
    "causal",
    "tokens",
)


def transformer_config(index: int) -> dict:
    """The keyword arguments of :class:`TinyTransformer` for ``TRANSFORMER_CONFIGS[index]``."""
    row = dict(zip(TRANSFORMER_FACTORS, TRANSFORMER_CONFIGS[index], strict=True))
    heads, width = row.pop("heads"), row.pop("width")
    attention = row.pop("attention")
    return dict(
        row,
        heads=heads,
        d=heads * width if heads > 1 else 2 * width,
        attention="packed" if attention == "packed" else "hand",
        sdpa=attention == "sdpa",
        depth=2 if index % 4 == 3 else 1,
    )


def transformer_case(index: int, seed: int) -> tuple[TinyTransformer, torch.Tensor]:
    """Architecture ``index`` with random weights (norm gains and biases too) and its input:
    float64, eval mode, 3 sequences of 4 tokens."""
    config = transformer_config(index)
    model = TinyTransformer(**config).double()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(
                torch.randn(p.shape, generator=generator, dtype=torch.float64)
                / max(1, p.shape[-1]) ** 0.5
            )
    model.eval()
    if config["tokens"]:
        x = torch.randint(0, 7, (3, 4), generator=generator)
    else:
        x = torch.randn((3, 4, 3), generator=generator, dtype=torch.float64)
    return model, x


@functools.cache
def transformer_spec(index: int) -> SymmetrySpec:
    """The symmetry group of architecture ``index`` (it does not depend on the weights)."""
    model, x = transformer_case(index, 0)
    return symmetries(model, x)


@st.composite
def transformers(draw, attention: str | None = None, tokens: bool | None = None) -> Case:
    """Small random transformers from ``TRANSFORMER_CONFIGS`` (pre- and post-norm, LayerNorm,
    RMSNorm and a hand-written RMSNorm, 1-4 heads, with and without biases, ReLU or GELU
    feed-forward, attention written by hand with matmul and an optional causal mask or around
    scaled_dot_product_attention, or nn.MultiheadAttention, token ids or float tokens, one or
    two blocks), random weights; ``Case.spec`` holds the architecture's traced group.
    ``attention`` ("hand", "sdpa", "packed") and ``tokens`` restrict the architectures."""
    candidates = [
        i
        for i, row in enumerate(TRANSFORMER_CONFIGS)
        if (attention is None or row[0] == attention) and (tokens is None or row[-1] == tokens)
    ]
    index = draw(st.sampled_from(candidates))
    model, x = transformer_case(index, draw(st.integers(0, 2**31 - 1)))
    config = transformer_config(index)
    family = "transformer_" + "_".join(f"{k}={v}" for k, v in config.items())
    return Case(family, model, x, spec=transformer_spec(index))
