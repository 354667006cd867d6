"""Batched evaluation: error and loss of many parameter points of one architecture.

This is the engine under planes, paths and flatness. Every data batch is read once for all the
points of a chunk, data are moved to the parameters' device once, and nothing of the user's is
copied per point or mutated. Three strategies compute the same numbers:

- ``"loop"``: one ``torch.func.functional_call`` per point (no module copies);
- ``"vmap"``: ``vmap(functional_call)`` over a chunk of points;
- ``"stacked"``: for plain chains of ``Linear`` / ``BatchNorm1d`` / elementwise activations
  (``Flatten`` and ``Dropout`` allowed), hand-stacked matrix products: the first layer is one
  large product of the shared inputs with the chunk's stacked weights, later layers are
  batched products in a (points, features, inputs) layout; a chunk of one point runs plain 2-D
  products, the cheapest loop there is.

``"auto"`` (the rule, measured on the project's 2-core AVX-512 CPU, torch 2.13; see
``benchmarks/evaluation.py`` and ``benchmarks/README.md``):

- a chain model runs ``"stacked"`` with ``chunk = clamp(2 MiB // (batch * width * itemsize),
  1, K)``, ``width`` its widest layer. Stacking pays while a chunk's activations stay in cache
  (overhead regime: 64 points of a 64-256-256-10 MLP on 128 inputs run in chunks of 16, 1.5x a
  loop over modules); on large batches the chunk drops to 1, the plain loop of 2-D
  products that batching cannot beat on a CPU (compute regime: 1,797 inputs, 1.0x).
- any other model runs ``"vmap"`` in chunks of 16 when it is traceable by ``torch.fx`` and a
  point's pass on one batch costs under 8 MFLOP (Linear and Conv layers, counted on a one-input
  pass; a small CNN: 2.7x the loop at 1.6 MFLOP, 0.9x at 26 MFLOP, LeNet never faster), else
  ``"loop"``; if vmap fails on the model, ``"auto"`` falls back to the loop.
- on CUDA the stacking budget is 256 MiB and generic models run vmap (not measured here).

:func:`evaluate_affine` evaluates points ``origin + sum_i c_i d_i`` (planes, lines) and uses
that the first layer's pre-activation is affine in the coefficients: ``X W(c)^T + b(c) = (X
W_0^T + b_0) + sum_i c_i (X D_i^T + e_i)``, so each batch pays ``m + 1`` first-layer products
instead of one per point. What it saves is the first layer's share of the work minus the
memory passes of the combination: little for the 64-input digits MLP (about 1.1x), much for
wide inputs (784-input MNIST-sized MLP, where the first layer is 60% of the FLOPs).

BatchNorm: ``"fixed"`` uses each point's running statistics (stacked buffers, or the shared
ones of the template); ``"recalibrate"`` recomputes them per point in train-mode forward
passes over ``recalibration_data`` (the cumulative average over its batches of the batch
means and unbiased variances, as ``torch.optim.swa_utils.update_bn`` does; only BatchNorm
layers run in train mode, Dropout stays off), then evaluates in eval mode. Models are always
evaluated in eval mode.
"""

from __future__ import annotations

import copy
import itertools
import math
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, vmap

from funcspace.data import Dataset, Pair, as_pair
from funcspace.errors import FuncspaceError
from funcspace.params import Params, Stacked

__all__ = ["METRICS", "STRATEGIES", "Evaluation", "evaluate", "evaluate_affine"]

#: Metrics :func:`evaluate` computes: fraction misclassified, mean cross-entropy.
METRICS = ("error", "loss")
#: Evaluation strategies.
STRATEGIES = ("auto", "loop", "vmap", "stacked")
_BATCHNORM = ("fixed", "recalibrate")
#: Default number of inputs per data batch.
DEFAULT_BATCH = 2048
# Working set (activations of one chunk on one batch) that keeps stacking profitable: about
# the per-core L2 of the CPU measured in PERFORMANCE.md; on a GPU a memory bound only.
_CPU_BUDGET = 2 * 2**20
_GPU_BUDGET = 256 * 2**20
_GENERIC_VMAP_CHUNK = 16
_POINT_BLOCK_BYTES = 32 * 2**20
# Below this many FLOPs per point and batch, vmap over a generic model beat the loop on the
# project's CPU (small CNN: 2.7x at 1.6 MFLOP, 1.6x at 6.4; 0.9x at 26; LeNet 0.5-1.0x).
_CPU_VMAP_FLOPS = 8e6


@dataclass(frozen=True)
class Evaluation:
    """Error and loss of K parameter points, and how they were computed.

    Attributes
    ----------
    values : dict of metric name -> numpy array of shape (K,)
        ``"error"``: fraction of inputs misclassified (argmax of the logits); ``"loss"``: mean
        cross-entropy. Also readable as ``evaluation.error`` / ``evaluation["loss"]``.
    strategy : {"loop", "vmap", "stacked"}
        The strategy that ran (``"auto"`` resolved).
    chunk : int
        Points per batched pass (1 for ``"loop"``).
    batch_size : int
        Inputs per data batch.
    batchnorm : {"fixed", "recalibrate"}
    first_layer_reuse : bool
        Whether the first layer's products were shared across points (:func:`evaluate_affine`).
    n_inputs : int
        Number of inputs evaluated.
    """

    values: dict[str, np.ndarray]
    strategy: str
    chunk: int
    batch_size: int
    batchnorm: str
    n_inputs: int
    first_layer_reuse: bool = False

    def __len__(self) -> int:
        return len(next(iter(self.values.values())))

    def __getitem__(self, metric: str) -> np.ndarray:
        if metric not in self.values:
            raise FuncspaceError(
                f"metric {metric!r} was not computed; this evaluation has {sorted(self.values)}"
            )
        return self.values[metric]

    @property
    def error(self) -> np.ndarray:
        """Fraction misclassified per point, shape (K,)."""
        return self["error"]

    @property
    def loss(self) -> np.ndarray:
        """Mean cross-entropy per point, shape (K,)."""
        return self["loss"]

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists and scalars), for JSON."""
        return {
            **{k: v.tolist() for k, v in self.values.items()},
            "strategy": self.strategy,
            "chunk": self.chunk,
            "batch_size": self.batch_size,
            "batchnorm": self.batchnorm,
            "n_inputs": self.n_inputs,
            "first_layer_reuse": self.first_layer_reuse,
        }

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{k}={np.array2string(v, precision=4, threshold=6)}" for k, v in self.values.items()
        )
        return (
            f"Evaluation({len(self)} points, {shown}, strategy={self.strategy!r}, "
            f"chunk={self.chunk})"
        )


# ---------------------------------------------------------------------------------- plans

_RELU_FUNCTIONS = {torch.relu, F.relu}
_ELEMENTWISE_FUNCTIONS = {
    torch.tanh,
    torch.sigmoid,
    torch.sign,
    F.gelu,
    F.silu,
    F.elu,
    torch.nn.functional.leaky_relu,
}
_ELEMENTWISE_METHODS = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "sign": torch.sign}
_ELEMENTWISE_MODULES = (
    nn.LeakyReLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.GELU,
    nn.ELU,
    nn.SiLU,
    nn.Softplus,
    nn.Hardtanh,
    nn.ReLU6,
)
_FIRST_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)

# One op of a chain: (kind, payload). kind: "linear" / "bn" (payload: module name),
# "relu", "fn" (payload: elementwise callable), "skip" (Dropout, Identity, Flatten of a row).
_Op = tuple[str, Any]


@dataclass(frozen=True, eq=False)
class _Plan:
    """What tracing the architecture tells the engine (cached per template)."""

    graph: fx.Graph | None
    chain: tuple[_Op, ...] | None
    first_chain: int = -1
    first_node: str | None = None
    first_module: str | None = None
    bn_names: tuple[str, ...] = ()
    widths: tuple[int, ...] = ()


_PLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _fingerprint(template: nn.Module) -> tuple:
    tensors = itertools.chain(template.named_parameters(), template.named_buffers())
    return type(template), repr(template), tuple((n, t.shape) for n, t in tensors)


def _plan_for(template: nn.Module) -> _Plan:
    key = _fingerprint(template)
    cached = _PLANS.get(template)
    if cached is not None and cached[0] == key:
        return cached[1]
    plan = _make_plan(template)
    _PLANS[template] = (key, plan)
    return plan


def _make_plan(template: nn.Module) -> _Plan:
    bn_names = tuple(
        n
        for n, m in template.named_modules()
        if isinstance(m, _BN_TYPES) and m.track_running_stats and m.running_mean is not None
    )
    try:
        graph = fx.symbolic_trace(template).graph
    except Exception:  # noqa: BLE001 - untraceable forward (control flow): generic path only
        return _Plan(None, None, bn_names=bn_names)
    chain = _chain_of(graph, template)
    first_chain, widths = -1, ()
    if chain is not None:
        linears = [i for i, (kind, _) in enumerate(chain) if kind == "linear"]
        first_chain = linears[0]
        mods = [template.get_submodule(chain[i][1]) for i in linears]
        widths = (mods[0].in_features, *(m.out_features for m in mods))
    first_node, first_module = _first_layer(graph, template)
    return _Plan(graph, chain, first_chain, first_node, first_module, bn_names, widths)


def _chain_of(graph: fx.Graph, template: nn.Module) -> tuple[_Op, ...] | None:
    """The ops of a plain chain ``x -> op -> op -> ... -> logits``, or None."""
    nodes = list(graph.nodes)
    if not nodes or nodes[0].op != "placeholder":
        return None
    prev, ops = nodes[0], []
    for node in nodes[1:]:
        if node.op == "output":
            if node.args[0] is not prev:
                return None
            break
        if node.all_input_nodes != [prev] or len(prev.users) != 1 or node.args[:1] != (prev,):
            return None
        op = _chain_op(node, template)
        if op is None:
            return None
        ops.append(op)
        prev = node
    kinds = [kind for kind, _ in ops]
    if "linear" not in kinds or "bn" in kinds[: kinds.index("linear")]:
        return None
    return tuple(ops)


def _chain_op(node: fx.Node, template: nn.Module) -> _Op | None:
    extra_args = node.args[1:]
    if node.op == "call_module":
        module = template.get_submodule(node.target)
        kind = type(module)
        if extra_args or node.kwargs:
            return None
        if kind is nn.Linear:
            return ("linear", node.target)
        if kind is nn.BatchNorm1d and module.track_running_stats:
            return ("bn", node.target)
        if kind is nn.ReLU:
            return ("relu", None)
        if kind in (nn.Dropout, nn.Identity):
            return ("skip", None)
        if kind is nn.Flatten and module.start_dim == 1 and module.end_dim == -1:
            return ("flatten", None)
        if kind in _ELEMENTWISE_MODULES:
            return ("fn", module)
        return None
    if node.op == "call_function":
        if node.target in _RELU_FUNCTIONS and not extra_args and set(node.kwargs) <= {"inplace"}:
            return ("relu", None)
        if node.target in _ELEMENTWISE_FUNCTIONS and not extra_args and not node.kwargs:
            return ("fn", node.target)
        if node.target is torch.flatten and (extra_args, node.kwargs) in (
            ((1,), {}),
            ((), {"start_dim": 1}),
        ):
            return ("flatten", None)
        return None
    if node.op == "call_method":
        if node.target == "relu" and not extra_args and not node.kwargs:
            return ("relu", None)
        if node.target in _ELEMENTWISE_METHODS and not extra_args and not node.kwargs:
            return ("fn", _ELEMENTWISE_METHODS[node.target])
        if node.target == "flatten" and extra_args == (1,) and not node.kwargs:
            return ("flatten", None)
    return None


def _first_layer(graph: fx.Graph, template: nn.Module) -> tuple[str | None, str | None]:
    """The first parameterized layer the input reaches, if it is a Linear/Conv used once.

    Every node before it must be free of parameters and buffers, so its input depends on the
    data alone; its parameters must belong to it alone.
    """
    nodes = list(graph.nodes)
    if sum(n.op == "placeholder" for n in nodes) != 1:
        return None, None
    for node in nodes:
        if node.op == "get_attr":
            return None, None
        if node.op != "call_module":
            continue
        module = template.get_submodule(node.target)
        if not any(True for _ in itertools.chain(module.parameters(), module.buffers())):
            continue
        if type(module) not in _FIRST_LAYERS or len(node.args) != 1 or node.kwargs:
            return None, None
        # Later calls of the same module, or tied weights, are fine (they get each point's
        # parameters); the first call needs its parameters under its own names.
        names = {n for n, _ in template.named_parameters()}
        if any(f"{node.target}.{n}" not in names for n, _ in module.named_parameters()):
            return None, None
        return node.name, node.target
    return None, None


def _skeleton(template: nn.Module, bn_train: bool = False) -> nn.Module:
    """A copy of the template whose tensors live on the meta device (no memory, no copy):
    functional_call supplies every tensor. Eval mode; BatchNorm in train mode if asked."""
    memo: dict[int, Any] = {}
    for t in itertools.chain(template.parameters(), template.buffers()):
        empty = torch.empty_like(t, device="meta")
        memo[id(t)] = nn.Parameter(empty, t.requires_grad) if isinstance(t, nn.Parameter) else empty
    skeleton = copy.deepcopy(template, memo)
    skeleton.eval()
    if bn_train:
        for module in skeleton.modules():
            if isinstance(module, _BN_TYPES):
                module.train()
    return skeleton


def _split_graph(plan: _Plan, root: nn.Module) -> tuple[fx.GraphModule, fx.GraphModule]:
    """Prefix ``x -> first layer's input`` and suffix ``(x, first layer's output) -> logits``."""
    graph = plan.graph
    first = next(n for n in graph.nodes if n.name == plan.first_node)
    prefix = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for node in graph.nodes:
        if node is first:
            break
        env[node] = prefix.node_copy(node, lambda n: env[n])
    prefix.output(env[first.args[0]])

    suffix = copy.deepcopy(graph)
    placeholder = next(n for n in suffix.nodes if n.op == "placeholder")
    target = next(n for n in suffix.nodes if n.name == plan.first_node)
    with suffix.inserting_after(placeholder):
        z = suffix.placeholder("_first_layer_output")
    target.replace_all_uses_with(z)
    suffix.erase_node(target)
    modules = []
    for graph in (prefix, suffix):
        module = fx.GraphModule(root, graph)
        module.graph.eliminate_dead_code()  # needs the owning module for its purity check
        module.recompile()
        modules.append(module)
    return modules[0], modules[1]


# --------------------------------------------------------------------------------- points


class _Points:
    """K parameter points: per chunk as stacked tensors, per point as a dict."""

    size: int

    def chunk(self, start: int, stop: int) -> Params:
        raise NotImplementedError

    def point(self, k: int) -> Params:
        raise NotImplementedError


class _StackedPoints(_Points):
    def __init__(self, params: Params) -> None:
        self.params = params
        self.size = next(iter(params.values())).shape[0]

    def chunk(self, start: int, stop: int) -> Params:
        return {n: p[start:stop] for n, p in self.params.items()}

    def point(self, k: int) -> Params:
        return {n: p[k] for n, p in self.params.items()}


class _ModulePoints(_Points):
    def __init__(self, tensors: list[Params]) -> None:
        self.tensors = tensors
        self.size = len(tensors)

    def chunk(self, start: int, stop: int) -> Params:
        part = self.tensors[start:stop]
        return {n: torch.stack([t[n] for t in part]) for n in part[0]}

    def point(self, k: int) -> Params:
        return self.tensors[k]


class _AffinePoints(_Points):
    """origin + coefficients @ directions, materialized per chunk from flat vectors."""

    def __init__(self, origin: Params, directions: list[Params], coefficients: Tensor) -> None:
        self.names = list(origin)
        self.shapes = [origin[n].shape for n in self.names]
        self.sizes = [origin[n].numel() for n in self.names]
        self.origin = torch.cat([origin[n].reshape(-1) for n in self.names])
        self.directions = torch.stack(
            [
                torch.cat(
                    [
                        d[n].reshape(-1) if n in d else origin[n].new_zeros(origin[n].numel())
                        for n in self.names
                    ]
                )
                for d in directions
            ]
        )
        self.coefficients = coefficients
        self.size = coefficients.shape[0]
        itemsize = self.origin.element_size()
        self.block_size = int(max(1, min(16, _POINT_BLOCK_BYTES // (len(self.origin) * itemsize))))
        self._block: tuple[int, int, Tensor | None] = (0, 0, None)

    def _unflat(self, flat: Tensor, lead: tuple[int, ...]) -> Params:
        parts = flat.split(self.sizes, dim=-1)
        return {
            n: t.reshape(*lead, *s) for n, t, s in zip(self.names, parts, self.shapes, strict=True)
        }

    def chunk(self, start: int, stop: int) -> Params:
        c = self.coefficients[start:stop]
        flat = torch.addmm(self.origin, c, self.directions)
        return self._unflat(flat, (len(c),))

    def point(self, k: int) -> Params:
        # Points are materialized a block at a time: one product reads the directions once
        # for the block instead of once per point (they leave the cache between points).
        start, stop, block = self._block
        if not start <= k < stop:
            stop = min(k + self.block_size, self.size)
            block = torch.addmm(self.origin, self.coefficients[k:stop], self.directions)
            start, self._block = k, (k, stop, block)
        return self._unflat(block[k - start], ())


@dataclass
class _Buffers:
    """BatchNorm statistics (and any other buffers): shared by all points or stacked."""

    values: Params
    shared: bool

    def chunk(self, start: int, stop: int) -> Params:
        if self.shared:
            return self.values
        return {n: b[start:stop] for n, b in self.values.items()}

    def point(self, k: int) -> Params:
        return self.values if self.shared else {n: b[k] for n, b in self.values.items()}


def _fresh_bn_buffers(buffers: _Buffers, bn_names: Sequence[str], size: int) -> _Buffers:
    """Per-point buffers with every BatchNorm statistic reset (mean 0, var 1, count 0)."""
    values = {}
    for name, b in buffers.values.items():
        stacked = b.expand(size, *b.shape) if buffers.shared else b
        values[name] = stacked.clone()
    for bn in bn_names:
        values[f"{bn}.running_mean"].zero_()
        values[f"{bn}.running_var"].fill_(1.0)
        if f"{bn}.num_batches_tracked" in values:
            values[f"{bn}.num_batches_tracked"].zero_()
    return _Buffers(values, shared=False)


# ---------------------------------------------------------------------------- chain path


def _prefix(ops: Sequence[_Op], x: Tensor) -> Tensor:
    """Parameter-free ops before the first Linear, on the shared inputs (never in place)."""
    for kind, payload in ops:
        if kind == "flatten":
            x = x.flatten(1)
        elif kind == "relu":
            x = torch.relu(x)
        elif kind == "fn":
            x = payload(x)
    return x


def _chain_tail(ops, h, params, buffers, modules, row, stats=None, step=1) -> Tensor:
    """Run chain ops on per-point features ``h``.

    ``row``: one point, ``h`` is (N, d) and tensors are unstacked. Otherwise ``h`` is
    (k, d, N) and tensors carry the chunk axis. ``stats``: dict of BatchNorm name -> (mean,
    var) accumulators for this chunk; when given, BatchNorm normalizes with batch statistics
    and folds them into the accumulators as the cumulative average of batch ``step``.
    """
    for kind, payload in ops:
        if kind == "linear":
            w, b = params[f"{payload}.weight"], params.get(f"{payload}.bias")
            if row:
                h = torch.addmm(b, h, w.T) if b is not None else h @ w.T
            else:
                h = torch.baddbmm(b.unsqueeze(-1), w, h) if b is not None else torch.bmm(w, h)
        elif kind == "bn":
            h = _chain_bn(h, payload, params, buffers, modules[payload], row, stats, step)
        elif kind == "relu":
            h = h.relu_()
        elif kind == "fn":
            h = payload(h)
    return h


def _chain_bn(h, name, params, buffers, module, row, stats, step) -> Tensor:
    axis = 0 if row else -1
    weight, bias = params.get(f"{name}.weight"), params.get(f"{name}.bias")
    if stats is None:
        mean, var = buffers[f"{name}.running_mean"], buffers[f"{name}.running_var"]
    else:
        n = h.shape[axis]
        mean, var = h.mean(axis), h.var(axis, unbiased=False)
        acc_mean, acc_var = stats[name]
        factor = 1.0 / step
        acc_mean.mul_(1 - factor).add_(mean, alpha=factor)
        acc_var.mul_(1 - factor).add_(var, alpha=factor * n / (n - 1))
    scale = torch.rsqrt(var + module.eps)
    if weight is not None:
        scale = scale * weight
    shift = -mean * scale
    if bias is not None:
        shift = shift + bias
    if not row:
        scale, shift = scale.unsqueeze(-1), shift.unsqueeze(-1)
    return torch.addcmul(shift, h, scale)


# -------------------------------------------------------------------------------- engine


class _Scores:
    """Per-point sums of cross-entropy and of mistakes, accumulated batch by batch."""

    def __init__(self, size: int, device: torch.device) -> None:
        self.loss = torch.zeros(size, dtype=torch.float64, device=device)
        self.wrong = torch.zeros(size, dtype=torch.int64, device=device)
        self._losses: list[Tensor] = []
        self._wrong: list[Tensor] = []

    def add(self, logits: Tensor, y: Tensor, class_dim: int) -> None:
        """One chunk's logits, (k, N, C) or (k, C, N) (``class_dim`` 1), chunks in order."""
        k = logits.shape[0]
        if class_dim == 1:
            losses = F.cross_entropy(logits, y.expand(k, -1), reduction="none")
        else:
            # log sum_j exp(z_j - z_y): half the time of cross_entropy on (N, C) rows, and
            # as accurate near zero loss (the shift is exact, the sum stays near 1).
            picked = logits.gather(-1, y.expand(k, -1).unsqueeze(-1))
            losses = torch.logsumexp(logits - picked, -1)
        self._losses.append(losses.sum(-1, dtype=torch.float64))
        # max(...).indices is the first maximal index, as argmax, and much faster across
        # the middle axis of (k, C, N).
        self._wrong.append((logits.max(class_dim).indices != y).sum(-1))

    def end_batch(self) -> None:
        self.loss += torch.cat(self._losses)
        self.wrong += torch.cat(self._wrong)
        self._losses, self._wrong = [], []


def _check_logits(logits: Tensor, y: Tensor, class_dim: int) -> None:
    if logits.ndim != 3:
        raise FuncspaceError(
            f"the model must return (N, n_classes) logits; it returned shape "
            f"{tuple(logits.shape[1:])} per point"
        )
    classes = logits.shape[class_dim]
    if int(y.max()) >= classes or int(y.min()) < 0:
        raise FuncspaceError(
            f"targets range over [{int(y.min())}, {int(y.max())}] but the model has {classes} "
            "outputs; targets must be class indices below the number of outputs"
        )


@dataclass
class _Job:
    """Everything one evaluation needs, resolved and validated."""

    template: nn.Module
    points: _Points
    buffers: _Buffers
    plan: _Plan
    batches: list[Pair]
    recal_batches: list[Pair] | None
    metrics: tuple[str, ...]
    strategy: str
    chunk: int | None
    batchnorm: str
    batch_size: int
    affine: tuple[Params, list[Params], Tensor] | None = None


def _resolve_strategy(job: _Job) -> tuple[str, int, bool]:
    """(strategy, chunk, use_chain) from the rule in the module docstring."""
    plan, K, strategy = job.plan, job.points.size, job.strategy
    x0 = job.batches[0][0]
    chain_ok = plan.chain is not None and (
        _prefix(plan.chain[: plan.first_chain], x0[:1]).ndim == 2
    )
    if strategy == "stacked" and not chain_ok:
        raise FuncspaceError(
            f"strategy='stacked' needs a plain chain of Linear, BatchNorm1d and elementwise "
            f"activations on flat inputs; {type(job.template).__name__} is not one. Use "
            "strategy='vmap' or 'loop' (or 'auto')."
        )
    device = x0.device
    if strategy in ("auto", "stacked") and chain_ok:
        if job.chunk is not None:
            return "stacked", min(job.chunk, K), True
        budget = _CPU_BUDGET if device.type == "cpu" else _GPU_BUDGET
        per_point = job.batch_size * max(plan.widths) * x0.element_size()
        return "stacked", int(max(1, min(K, budget // per_point))), True
    if strategy == "auto":
        # vmap needs a forward without data-dependent control flow (a traceable one); on a
        # CPU it pays only while each point's pass is small (overhead regime).
        small = device.type != "cpu" or _flops_per_input(job, x0) * job.batch_size < _CPU_VMAP_FLOPS
        strategy = "vmap" if plan.graph is not None and K > 1 and small else "loop"
    if strategy == "loop":
        return "loop", 1, False
    return "vmap", min(job.chunk or _GENERIC_VMAP_CHUNK, K), False


def _flops_per_input(job: _Job, x: Tensor) -> float:
    """Multiply-add FLOPs of Linear and Conv layers for one input, from a one-input pass."""
    skeleton = _skeleton(job.template)
    total = [0]

    def count(module, _, out):
        if isinstance(module, nn.Linear):
            total[0] += 2 * out.numel() * module.in_features
        else:
            fan_in = module.in_channels // module.groups * math.prod(module.kernel_size)
            total[0] += 2 * out.numel() * fan_in

    layers = (nn.Linear, nn.modules.conv._ConvNd)
    for module in skeleton.modules():
        if isinstance(module, layers):
            module.register_forward_hook(count)
    try:
        functional_call(skeleton, (job.points.point(0), job.buffers.point(0)), (x[:1],))
    except Exception:  # noqa: BLE001 - a model that cannot take one input: assume it is big
        return math.inf
    return float(total[0])


def _run(job: _Job) -> Evaluation:
    strategy, chunk, use_chain = _resolve_strategy(job)
    if job.strategy == "auto" and strategy == "vmap":
        try:
            return _execute(job, strategy, chunk, use_chain)
        except FuncspaceError:  # vmap cannot run it after all: the loop always can
            return _execute(job, "loop", 1, False)
    return _execute(job, strategy, chunk, use_chain)


def _execute(job: _Job, strategy: str, chunk: int, use_chain: bool) -> Evaluation:
    K = job.points.size
    plan = job.plan
    reuse = job.affine is not None and (use_chain or plan.first_node is not None)
    device = job.batches[0][0].device
    runner = (_ChainRunner if use_chain else _GenericRunner)(job, strategy, chunk, reuse)

    buffers = job.buffers
    if job.batchnorm == "recalibrate" and plan.bn_names:
        buffers = _fresh_bn_buffers(buffers, plan.bn_names, K)
        for step, (x, _) in enumerate(job.recal_batches, start=1):
            if len(x) < 2:
                raise FuncspaceError(
                    "BatchNorm recalibration needs at least 2 inputs per batch; got a batch of "
                    f"{len(x)} (choose another batch_size or more recalibration data)"
                )
            shared = runner.shared(x)
            for start in range(0, K, chunk):
                runner.recalibrate(shared, start, min(start + chunk, K), buffers, step)

    scores = _Scores(K, device)
    for i, (x, y) in enumerate(job.batches):
        shared = runner.shared(x)
        for start in range(0, K, chunk):
            logits, class_dim = runner.logits(shared, start, min(start + chunk, K), buffers)
            if i == 0 and start == 0:
                _check_logits(logits, y, class_dim)
            scores.add(logits, y, class_dim)
        scores.end_batch()

    n = sum(len(y) for _, y in job.batches)
    values = {}
    for metric in job.metrics:
        total = scores.wrong.double() if metric == "error" else scores.loss
        values[metric] = (total / n).cpu().numpy()
    return Evaluation(values, strategy, chunk, job.batch_size, job.batchnorm, n, reuse)


class _ChainRunner:
    """Hand-stacked products for plain chains (strategy "stacked")."""

    def __init__(self, job: _Job, strategy: str, chunk: int, reuse: bool) -> None:
        plan = job.plan
        self.job, self.chunk, self.reuse = job, chunk, reuse
        self.prefix_ops = plan.chain[: plan.first_chain]
        self.first = plan.chain[plan.first_chain][1]
        self.tail = plan.chain[plan.first_chain + 1 :]
        bn_at = [i for i, (kind, _) in enumerate(self.tail) if kind == "bn"]
        self.recal_tail = self.tail[: bn_at[-1] + 1] if bn_at else ()
        self.modules = {
            name: job.template.get_submodule(name) for kind, name in plan.chain if kind == "bn"
        }
        if reuse:
            origin, directions, coefficients = job.affine
            w = [origin[f"{self.first}.weight"]] + [
                d.get(f"{self.first}.weight", torch.zeros_like(origin[f"{self.first}.weight"]))
                for d in directions
            ]
            self.first_w = torch.stack(w)  # (m+1, out, in)
            if f"{self.first}.bias" in origin:
                b0 = origin[f"{self.first}.bias"]
                self.first_b = torch.stack(
                    [b0] + [d.get(f"{self.first}.bias", torch.zeros_like(b0)) for d in directions]
                )
            else:
                self.first_b = None
            ones = coefficients.new_ones(coefficients.shape[0], 1)
            self.ext = torch.cat([ones, coefficients], dim=1)  # (K, m+1)
            self.ext_list = self.ext.tolist() if chunk == 1 else None

    def shared(self, x: Tensor) -> Any:
        h = _prefix(self.prefix_ops, x)
        if not self.reuse:
            return h, h.T.contiguous() if self.chunk > 1 else None
        m1, out, _ = self.first_w.shape
        if self.chunk == 1:  # rows: (m+1, N, out)
            z = h @ self.first_w.reshape(m1 * out, -1).T
            if self.first_b is not None:
                z += self.first_b.reshape(-1)
            return z.view(len(h), m1, out).permute(1, 0, 2).contiguous()
        z = self.first_w.reshape(m1 * out, -1) @ h.T  # columns: (m+1, out, N)
        if self.first_b is not None:
            z += self.first_b.reshape(-1, 1)
        return z.view(m1, -1)

    def _first_output(self, shared, start, stop, params) -> Tensor:
        row = self.chunk == 1
        if self.reuse:
            if row:
                coeffs = self.ext_list[start]  # [1, c_1, ..., c_m], m >= 1
                z = torch.add(shared[0], shared[1], alpha=coeffs[1])
                for c, zi in zip(coeffs[2:], shared[2:], strict=True):
                    z.add_(zi, alpha=c)
                return z
            k, out = stop - start, self.first_w.shape[1]
            return (self.ext[start:stop] @ shared).view(k, out, -1)
        h, h_t = shared
        w, b = params[f"{self.first}.weight"], params.get(f"{self.first}.bias")
        if row:
            return torch.addmm(b, h, w.T) if b is not None else h @ w.T
        k, out, _ = w.shape
        flat = w.reshape(k * out, -1)
        z = torch.addmm(b.reshape(-1, 1), flat, h_t) if b is not None else flat @ h_t
        return z.view(k, out, -1)

    def _params(self, start: int, stop: int) -> Params:
        points = self.job.points
        return points.point(start) if self.chunk == 1 else points.chunk(start, stop)

    def logits(self, shared, start, stop, buffers: _Buffers) -> tuple[Tensor, int]:
        params = self._params(start, stop)
        row = self.chunk == 1
        bufs = buffers.point(start) if row else buffers.chunk(start, stop)
        h = self._first_output(shared, start, stop, params)
        out = _chain_tail(self.tail, h, params, bufs, self.modules, row)
        return (out.unsqueeze(0), 2) if row else (out, 1)

    def recalibrate(self, shared, start, stop, buffers: _Buffers, step: int) -> None:
        if not self.recal_tail:
            return
        params = self._params(start, stop)
        row = self.chunk == 1
        stats = {}
        for name in self.modules:
            mean = buffers.values[f"{name}.running_mean"]
            var = buffers.values[f"{name}.running_var"]
            stats[name] = (mean[start], var[start]) if row else (mean[start:stop], var[start:stop])
            tracked = buffers.values.get(f"{name}.num_batches_tracked")
            if tracked is not None:
                tracked[start:stop] += 1
        h = self._first_output(shared, start, stop, params)
        _chain_tail(self.recal_tail, h, params, None, self.modules, row, stats, step)


class _GenericRunner:
    """functional_call on a meta-device copy of the template: a loop or vmap over points."""

    def __init__(self, job: _Job, strategy: str, chunk: int, reuse: bool) -> None:
        self.job, self.chunk, self.reuse = job, chunk, reuse
        self.use_vmap = strategy == "vmap"
        plan = job.plan
        need_train = job.batchnorm == "recalibrate" and bool(plan.bn_names)
        self.eval_module = _skeleton(job.template)
        self.train_module = _skeleton(job.template, bn_train=True) if need_train else None
        self.bn_modules = []
        if self.train_module is not None:
            self.bn_modules = [m for m in self.train_module.modules() if isinstance(m, _BN_TYPES)]
        if reuse:
            self.prefix, self.eval_module = _split_graph(plan, self.eval_module)
            if self.train_module is not None:
                _, self.train_module = _split_graph(plan, self.train_module)
            origin, directions, coefficients = job.affine
            first = job.template.get_submodule(plan.first_module)
            self.first = first
            names = [n for n, _ in first.named_parameters()]
            prefix = f"{plan.first_module}."
            self.suffix_names = {
                n for n, _ in self.eval_module.named_parameters(remove_duplicate=False)
            }
            self.first_sets = [{n: origin[prefix + n] for n in names}] + [
                {n: d.get(prefix + n, torch.zeros_like(origin[prefix + n])) for n in names}
                for d in directions
            ]
            ones = coefficients.new_ones(coefficients.shape[0], 1)
            self.ext = torch.cat([ones, coefficients], dim=1)

    def shared(self, x: Tensor) -> Any:
        if not self.reuse:
            return x, None
        h = self.prefix(x)
        z = torch.stack([functional_call(self.first, p, (h,)) for p in self.first_sets])
        return x, z

    def _params(self, start: int, stop: int | None) -> Params:
        points = self.job.points
        params = points.point(start) if stop is None else points.chunk(start, stop)
        if self.reuse:  # the suffix module may no longer hold the first layer
            params = {n: p for n, p in params.items() if n in self.suffix_names}
        return params

    def _call(self, module, shared, start, stop, buffers: _Buffers) -> Tensor:
        x, z = shared
        if self.use_vmap:
            params = self._params(start, stop)
            bufs = buffers.chunk(start, stop)
            if z is None:

                def f(p, b):
                    return functional_call(module, (p, b), (x,))

                return vmap(f, in_dims=(0, None if buffers.shared else 0))(params, bufs)
            zk = (self.ext[start:stop] @ z.reshape(z.shape[0], -1)).view(stop - start, *z.shape[1:])

            def g(p, b, zz):
                return functional_call(module, (p, b), (x, zz))

            return vmap(g, in_dims=(0, None if buffers.shared else 0, 0))(params, bufs, zk)
        params, bufs = self._params(start, None), buffers.point(start)
        if z is None:
            return functional_call(module, (params, bufs), (x,)).unsqueeze(0)
        zk = (self.ext[start] @ z.reshape(z.shape[0], -1)).view(z.shape[1:])
        return functional_call(module, (params, bufs), (x, zk)).unsqueeze(0)

    def _guarded(self, module, shared, start, stop, buffers: _Buffers) -> Tensor:
        try:
            return self._call(module, shared, start, stop, buffers)
        except RuntimeError as err:
            if not self.use_vmap or "vmap" not in str(err):
                raise
            raise FuncspaceError(
                f"torch.func.vmap cannot run {type(self.job.template).__name__} ({err}); "
                "use strategy='loop'"
            ) from err

    def logits(self, shared, start, stop, buffers: _Buffers) -> tuple[Tensor, int]:
        return self._guarded(self.eval_module, shared, start, stop, buffers), 2

    def recalibrate(self, shared, start, stop, buffers: _Buffers, step: int) -> None:
        # momentum 1/step turns the running average into the cumulative one (as momentum=None
        # does) without the .item() that vmap refuses.
        for module in self.bn_modules:
            module.momentum = 1.0 / step
        self._guarded(self.train_module, shared, start, stop, buffers)


# ------------------------------------------------------------------------ public surface


def _check_choice(name: str, value: object, choices: Sequence[str]) -> None:
    if value not in choices:
        options = ", ".join(map(repr, choices))
        raise FuncspaceError(f"{name} must be one of {options}; got {value!r}")


def _check_metrics(metrics: object) -> tuple[str, ...]:
    if isinstance(metrics, str):
        metrics = (metrics,)
    metrics = tuple(metrics)  # type: ignore[arg-type]
    if not metrics:
        raise FuncspaceError(f"metrics must name at least one of {METRICS}")
    for m in metrics:
        _check_choice("each metric", m, METRICS)
    return metrics


def _device_dtype(tensors: Params) -> tuple[torch.device, torch.dtype]:
    for t in tensors.values():
        if t.is_floating_point():
            return t.device, t.dtype
    t = next(iter(tensors.values()))
    return t.device, torch.get_default_dtype()


def _batches(data, split, device, dtype, batch_size, role="data") -> tuple[list[Pair], int]:
    x, y = as_pair(data, split)
    if len(x) == 0:
        raise FuncspaceError(f"{role} is empty: there is nothing to evaluate on")
    if y.is_floating_point() or y.ndim != 1:
        raise FuncspaceError(
            f"{role} targets must be a 1-D tensor of integer class indices; got {y.dtype} "
            f"of shape {tuple(y.shape)}"
        )
    x = x.to(device=device, dtype=dtype if x.is_floating_point() else x.dtype)
    y = y.to(device=device, dtype=torch.long)
    if batch_size is None:
        batch_size = min(len(x), DEFAULT_BATCH)
    elif isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise FuncspaceError(f"batch_size must be a positive integer or None; got {batch_size!r}")
    return [
        (x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(x), batch_size)
    ], batch_size


def _check_chunk(chunk: object) -> int | None:
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise FuncspaceError(f"chunk must be a positive integer or None; got {chunk!r}")
    return chunk  # type: ignore[return-value]


def _check_architecture(models: Sequence[nn.Module]) -> None:
    first = {n: p.shape for n, p in models[0].named_parameters()}
    for i, model in enumerate(models[1:], start=1):
        if not isinstance(model, nn.Module):
            raise FuncspaceError(f"models[{i}] is a {type(model).__name__}, not an nn.Module")
        other = {n: p.shape for n, p in model.named_parameters()}
        if other.keys() != first.keys():
            only = sorted(set(other) ^ set(first))[:3]
            raise FuncspaceError(
                f"models[{i}] has other parameters than models[0] (differing names: {only}); "
                "all models must share one architecture"
            )
        for name, shape in first.items():
            if other[name] != shape:
                raise FuncspaceError(
                    f"models[{i}] differs from models[0] in '{name}': shape "
                    f"{tuple(other[name])} vs {tuple(shape)}; all models must share one "
                    "architecture"
                )


def _as_points(models) -> tuple[nn.Module, _Points, _Buffers]:
    if isinstance(models, Stacked):
        missing = sorted({n for n, _ in models.template.named_buffers()} - set(models.buffers))
        if missing:
            raise FuncspaceError(
                f"the Stacked networks lack buffers of the template: {missing[:3]}; pass them "
                "(from_params(template, params, buffers)) or leave buffers=None to share the "
                "template's"
            )
        buffers = _Buffers(dict(models.buffers), models.shared_buffers)
        return models.template, _StackedPoints(dict(models.params)), buffers
    if isinstance(models, nn.Module):
        models = [models]
    if not isinstance(models, (list, tuple)) or not models:
        raise FuncspaceError(
            "models must be an nn.Module, a non-empty list of nn.Modules of one architecture, "
            f"or a funcspace.params.Stacked; got {type(models).__name__}"
            + (" (empty)" if isinstance(models, (list, tuple)) else "")
        )
    if not isinstance(models[0], nn.Module):
        raise FuncspaceError(f"models[0] is a {type(models[0]).__name__}, not an nn.Module")
    _check_architecture(models)
    template = models[0]
    tensors = [{n: p.detach() for n, p in m.named_parameters()} for m in models]
    if not tensors[0]:
        raise FuncspaceError(f"{type(template).__name__} has no parameters to evaluate")
    names = [n for n, _ in template.named_buffers()]
    if len(models) == 1 or not names:
        buffers = _Buffers({n: b.detach() for n, b in template.named_buffers()}, True)
    else:
        named = [dict(m.named_buffers()) for m in models]
        buffers = _Buffers({n: torch.stack([b[n].detach() for b in named]) for n in names}, False)
    return template, _ModulePoints(tensors), buffers


def _common(
    template,
    points,
    buffers,
    data,
    metrics,
    split,
    batch_size,
    chunk,
    batchnorm,
    recalibration_data,
    strategy,
    affine=None,
) -> Evaluation:
    metrics = _check_metrics(metrics)
    _check_choice("strategy", strategy, STRATEGIES)
    _check_choice("batchnorm", batchnorm, _BATCHNORM)
    chunk = _check_chunk(chunk)
    if points.size == 0:
        raise FuncspaceError("there are no parameter points to evaluate (K = 0)")
    sample = points.point(0)
    device, dtype = _device_dtype(sample)
    with torch.no_grad():
        batches, size = _batches(data, split, device, dtype, batch_size)
        recal = None
        if batchnorm == "recalibrate":
            source = data if recalibration_data is None else recalibration_data
            recal_split = "train" if isinstance(source, Dataset) else split
            recal, _ = _batches(
                source, recal_split, device, dtype, batch_size, "recalibration_data"
            )
        job = _Job(
            template,
            points,
            buffers,
            _plan_for(template),
            batches,
            recal,
            metrics,
            strategy,
            chunk,
            batchnorm,
            size,
            affine,
        )
        return _run(job)


def evaluate(
    models: nn.Module | Sequence[nn.Module] | Stacked,
    data: Dataset | Pair,
    metrics: Sequence[str] = METRICS,
    *,
    split: str = "train",
    batch_size: int | None = None,
    chunk: int | None = None,
    batchnorm: str = "fixed",
    recalibration_data: Dataset | Pair | None = None,
    strategy: str = "auto",
) -> Evaluation:
    """Error and loss of many networks of one architecture, in batched passes.

    Parameters
    ----------
    models : nn.Module, list of nn.Module, or Stacked
        One network, several of one architecture, or stacked parameters
        (:func:`funcspace.params.stack` / :func:`funcspace.params.from_params`). Nothing is
        mutated; every network is evaluated in eval mode.
    data : Dataset or (inputs, targets)
        Targets are class indices. Inputs are moved once to the parameters' device (and cast
        to their floating dtype).
    metrics : sequence of {"error", "loss"}
        Fraction misclassified (argmax of the logits) and mean cross-entropy.
    split : {"train", "test"}
        Which split of a :class:`~funcspace.data.Dataset` to evaluate on.
    batch_size : int, optional
        Inputs per data batch (default: all, up to 2048). Each batch is read once for all the
        points of a chunk.
    chunk : int, optional
        Points per batched pass; default from the rule in the module docstring.
    batchnorm : {"fixed", "recalibrate"}
        ``"fixed"``: each point's running statistics (stacked buffers, or the template's
        shared ones). ``"recalibrate"``: recompute them per point on ``recalibration_data``
        in train-mode passes of ``batch_size`` inputs (cumulative average over batches, like
        ``torch.optim.swa_utils.update_bn``), then evaluate. A model without BatchNorm
        ignores it.
    recalibration_data : Dataset or (inputs, targets), optional
        Default: the training split of ``data`` (``data`` itself when it is a pair).
    strategy : {"auto", "loop", "vmap", "stacked"}
        See the module docstring; every strategy gives the same values up to round-off.

    Returns
    -------
    Evaluation
        ``values[metric]`` of shape (K,), plus the strategy and chunk that ran.

    Raises
    ------
    FuncspaceError
        For an empty list or data, models of different architectures, unknown options,
        ``strategy="stacked"`` on a model that is no plain chain, or logits that do not fit
        the targets.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> nets = [nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)) for _ in range(5)]
    >>> x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    >>> result = evaluate(nets, (x, y))
    >>> result.error.shape, result.strategy
    ((5,), 'stacked')
    >>> looped = evaluate(nets, (x, y), strategy="loop")
    >>> bool(abs(result.loss - looped.loss).max() < 1e-5)
    True
    """
    template, points, buffers = _as_points(models)
    return _common(
        template,
        points,
        buffers,
        data,
        metrics,
        split,
        batch_size,
        chunk,
        batchnorm,
        recalibration_data,
        strategy,
    )


def evaluate_affine(
    template: nn.Module,
    origin: Params,
    directions: Sequence[Params],
    coefficients: Tensor,
    data: Dataset | Pair,
    metrics: Sequence[str] = METRICS,
    *,
    buffers: Params | None = None,
    split: str = "train",
    batch_size: int | None = None,
    chunk: int | None = None,
    batchnorm: str = "fixed",
    recalibration_data: Dataset | Pair | None = None,
    strategy: str = "auto",
    reuse_first_layer: bool = True,
) -> Evaluation:
    """Error and loss at the points ``origin + sum_i coefficients[k, i] * directions[i]``.

    For planes, lines and linear paths. The first parameterized layer the input reaches
    (found by tracing the module with ``torch.fx``: a ``Linear`` or ``Conv`` preceded by
    parameter-free operations only, its parameters used nowhere else) has a pre-activation
    affine in the coefficients, so per batch its ``m + 1`` products with the origin and the
    directions are computed once and each point's first layer is their combination. Exact,
    up to round-off; a model where the first layer cannot be told runs plain evaluation.

    Parameters
    ----------
    template : nn.Module
        The architecture (its values are not used, except buffers when ``buffers`` is None).
    origin : dict of str -> Tensor
        Every parameter of the template.
    directions : list of dict of str -> Tensor
        ``m`` directions; a parameter a direction leaves out does not move along it (e.g.
        biases in a filter-normalized plane that excludes them).
    coefficients : Tensor of shape (K, m)
        One row per point.
    data, metrics, split, batch_size, chunk, batchnorm, recalibration_data, strategy
        As in :func:`evaluate`.
    buffers : dict of str -> Tensor, optional
        BatchNorm running statistics shared by every point (default: the template's).
    reuse_first_layer : bool
        Set False to evaluate every point plainly (for comparisons).

    Returns
    -------
    Evaluation
        ``first_layer_reuse`` says whether the first layer was shared.

    Raises
    ------
    FuncspaceError
        If names or shapes do not match the template or ``coefficients`` is not (K, m).

    Examples
    --------
    A line from ``a`` to ``b`` at t = 0, 0.5, 1:

    >>> import torch
    >>> from torch import nn
    >>> a = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    >>> b = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    >>> pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    >>> step = {n: pb[n] - pa[n] for n in pa}
    >>> x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    >>> line = evaluate_affine(a, pa, [step], torch.tensor([[0.0], [0.5], [1.0]]), (x, y))
    >>> line.first_layer_reuse, bool(abs(line.loss[2] - evaluate(b, (x, y)).loss[0]) < 1e-5)
    (True, True)
    """
    if not isinstance(template, nn.Module):
        raise FuncspaceError(f"template must be an nn.Module; got {type(template).__name__}")
    shapes = {n: p.shape for n, p in template.named_parameters()}
    if not isinstance(origin, dict) or origin.keys() != shapes.keys():
        missing = sorted(set(shapes) - set(origin or {}))[:3]
        extra = sorted(set(origin or {}) - set(shapes))[:3]
        raise FuncspaceError(
            f"origin must hold exactly the template's parameters; missing {missing}, "
            f"unknown {extra}"
        )
    origin = {n: origin[n].detach() for n in shapes}
    directions = list(directions)
    for i, d in enumerate([origin, *directions]):
        where = "origin" if i == 0 else f"directions[{i - 1}]"
        if not isinstance(d, dict):
            raise FuncspaceError(f"{where} must be a dict of parameter tensors")
        for name, t in d.items():
            if name not in shapes:
                raise FuncspaceError(f"{where} has '{name}', which the template does not have")
            if tuple(t.shape) != tuple(shapes[name]):
                raise FuncspaceError(
                    f"{where}['{name}'] has shape {tuple(t.shape)}; the template's is "
                    f"{tuple(shapes[name])}"
                )
    directions = [{n: t.detach() for n, t in d.items()} for d in directions]
    device, dtype = _device_dtype(origin)
    coefficients = torch.as_tensor(coefficients).to(device=device, dtype=dtype)
    if coefficients.ndim != 2 or coefficients.shape[1] != len(directions):
        raise FuncspaceError(
            f"coefficients must have shape (K, {len(directions)}) (one column per direction); "
            f"got {tuple(coefficients.shape)}"
        )
    if buffers is None:
        buffers = {n: b.detach() for n, b in template.named_buffers()}
    points = _AffinePoints(origin, directions, coefficients)
    affine = (origin, directions, coefficients) if reuse_first_layer and directions else None
    return _common(
        template,
        points,
        _Buffers(dict(buffers), True),
        data,
        metrics,
        split,
        batch_size,
        chunk,
        batchnorm,
        recalibration_data,
        strategy,
        affine,
    )
