"""The ``"auto"`` rule: which strategy runs, and how many points go in one batched pass.

The rule and its measurements are in the package docstring (:mod:`funcspace.evaluation`).
"""

from __future__ import annotations

import math

from torch import Tensor, nn
from torch.func import functional_call

from funcspace.errors import FuncspaceError

from .chain import prefix
from .job import Job
from .skeleton import skeleton

# Working set (activations of one chunk on one batch) that keeps stacking profitable: about
# the per-core L2 of the CPU measured in PERFORMANCE.md; on a GPU a memory bound only.
_CPU_BUDGET = 2 * 2**20
_GPU_BUDGET = 256 * 2**20
_GENERIC_VMAP_CHUNK = 16
# Below this many FLOPs per point and batch, vmap over a generic model beat the loop on the
# project's CPU (small CNN: 2.7x at 1.6 MFLOP, 1.6x at 6.4; 0.9x at 26; LeNet 0.5-1.0x).
_CPU_VMAP_FLOPS = 8e6


def resolve_strategy(job: Job) -> tuple[str, int, bool]:
    """(strategy, chunk, use_chain) from the rule in the package docstring.

    Raises
    ------
    FuncspaceError
        If ``strategy="stacked"`` was asked for a model that is no plain chain.
    """
    plan, K, strategy, chunk = job.plan, job.points.size, job.settings.strategy, job.settings.chunk
    x0 = job.batches[0][0]
    chain_ok = plan.chain is not None and (prefix(plan.chain[: plan.first_chain], x0[:1]).ndim == 2)
    if strategy == "stacked" and not chain_ok:
        raise FuncspaceError(
            f"strategy='stacked' needs a plain chain of Linear, BatchNorm1d and elementwise "
            f"activations on flat inputs; {type(job.template).__name__} is not one. Use "
            "strategy='vmap' or 'loop' (or 'auto')."
        )
    device = x0.device
    if strategy in ("auto", "stacked") and chain_ok:
        if chunk is not None:
            return "stacked", min(chunk, K), True
        budget = _CPU_BUDGET if device.type == "cpu" else _GPU_BUDGET
        per_point = job.batch_size * max(plan.widths) * x0.element_size()
        return "stacked", int(max(1, min(K, budget // per_point))), True
    if strategy == "auto":
        # vmap needs a forward without data-dependent control flow (a traceable one); on a
        # CPU it pays only while each point's pass is small (overhead regime).
        small = device.type != "cpu" or flops_per_input(job, x0) * job.batch_size < _CPU_VMAP_FLOPS
        strategy = "vmap" if plan.graph is not None and K > 1 and small else "loop"
    if strategy == "loop":
        return "loop", 1, False
    return "vmap", min(chunk or _GENERIC_VMAP_CHUNK, K), False


def flops_per_input(job: Job, x: Tensor) -> float:
    """Multiply-add FLOPs of Linear and Conv layers for one input, from a one-input pass."""
    copied = skeleton(job.template)  # fresh: the hooks below stay on it
    total = [0]

    def count(module, _, out):
        if isinstance(module, nn.Linear):
            total[0] += 2 * out.numel() * module.in_features
        else:
            fan_in = module.in_channels // module.groups * math.prod(module.kernel_size)
            total[0] += 2 * out.numel() * fan_in

    layers = (nn.Linear, nn.modules.conv._ConvNd)
    for module in copied.modules():
        if isinstance(module, layers):
            module.register_forward_hook(count)
    try:
        functional_call(copied, (job.points.point(0), job.buffers.point(0)), (x[:1],))
    except Exception:  # noqa: BLE001 - a model that cannot take one input: assume it is big
        return math.inf
    return float(total[0])
