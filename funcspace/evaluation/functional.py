"""The functional strategy (``"loop"`` and ``"vmap"``): ``functional_call`` on any model.

The model runs as a meta-device skeleton of the template (no tensors copied): one call per
point (``"loop"``), or ``torch.func.vmap`` over a chunk of points (``"vmap"``). For an affine
family whose first layer the plan found, the graph is split at that layer: the prefix runs once
per batch, the first layer once per direction, and each point combines their outputs.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

import torch
import torch.fx as fx
from torch import Tensor, nn
from torch.func import functional_call, vmap

from funcspace.errors import FuncspaceError
from funcspace.params import Params

from .plan import BN_TYPES, Plan
from .points import Buffers
from .strategy import Job


class VmapUnsupported(FuncspaceError):
    """``torch.func.vmap`` raised while running the model (the loop strategy can run it)."""


class FunctionalRunner:
    """functional_call on a meta-device copy of the template: a loop or vmap over points."""

    #: Products in float only: int8 runs under the "stacked" strategy alone.
    int8_layers: tuple[str, ...] = ()

    def __init__(self, job: Job, strategy: str, chunk: int, reuse: bool) -> None:
        self.job, self.chunk, self.reuse = job, chunk, reuse
        self.use_vmap = strategy == "vmap"
        plan = job.plan
        need_train = job.settings.batchnorm == "recalibrate" and bool(plan.bn_names)
        self.eval_module = skeleton(job.template)
        self.train_module = skeleton(job.template, bn_train=True) if need_train else None
        self.bn_modules = []
        if self.train_module is not None:
            self.bn_modules = [m for m in self.train_module.modules() if isinstance(m, BN_TYPES)]
        if reuse:
            self.prefix, self.eval_module = split_graph(plan, self.eval_module)
            if self.train_module is not None:
                _, self.train_module = split_graph(plan, self.train_module)
            affine = job.affine
            origin, directions, coefficients = affine.origin, affine.directions, affine.coefficients
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

    def _call(self, module, shared, start, stop, buffers: Buffers) -> Tensor:
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

    def _guarded(self, module, shared, start, stop, buffers: Buffers) -> Tensor:
        if not self.use_vmap:
            return self._call(module, shared, start, stop, buffers)
        try:
            return self._call(module, shared, start, stop, buffers)
        except (RuntimeError, NotImplementedError) as err:
            # torch.func raises these for what it cannot batch (.item(), data-dependent
            # control flow, missing batching rules); a model that fails for another reason
            # fails again, with its own error, in the loop that strategy="auto" falls back to
            raise VmapUnsupported(
                f"torch.func.vmap cannot run {type(self.job.template).__name__} "
                f"({type(err).__name__}: {err}); use strategy='loop'"
            ) from err

    def logits(self, shared, start, stop, buffers: Buffers) -> tuple[Tensor, int]:
        return self._guarded(self.eval_module, shared, start, stop, buffers), 2

    def recalibrate(self, shared, start, stop, buffers: Buffers, step: int) -> None:
        # momentum 1/step turns the running average into the cumulative one (as momentum=None
        # does) without the .item() that vmap refuses.
        for module in self.bn_modules:
            module.momentum = 1.0 / step
        self._guarded(self.train_module, shared, start, stop, buffers)


def skeleton(template: nn.Module, bn_train: bool = False) -> nn.Module:
    """A copy of the template whose tensors live on the meta device (no memory, no copy):
    functional_call supplies every tensor. Eval mode; BatchNorm in train mode if asked."""
    memo: dict[int, Any] = {}
    for t in itertools.chain(template.parameters(), template.buffers()):
        empty = torch.empty_like(t, device="meta")
        memo[id(t)] = nn.Parameter(empty, t.requires_grad) if isinstance(t, nn.Parameter) else empty
    copied = copy.deepcopy(template, memo)
    copied.eval()
    if bn_train:
        for module in copied.modules():
            if isinstance(module, BN_TYPES):
                module.train()
    return copied


def split_graph(plan: Plan, root: nn.Module) -> tuple[fx.GraphModule, fx.GraphModule]:
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
