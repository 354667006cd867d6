"""Copies of the template for ``functional_call``: tensor-free skeletons and split graphs."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from .plan import BN_TYPES, Plan


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
