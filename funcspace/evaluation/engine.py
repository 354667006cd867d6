"""The engine: pick the strategy, read the data once per batch, run every chunk of points, sum
the metrics.

:func:`evaluate_points` is what the public functions and :class:`~funcspace.evaluation.Evaluator`
call once they have validated their inputs; :func:`resolve_strategy` is the ``"auto"`` rule
(its measurements are in the package docstring).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from funcspace._validate import check_class_range, explain_forward_error
from funcspace.data import Dataset, Pair
from funcspace.errors import FuncspaceError
from funcspace.metrics import target_kind

from .functional import FunctionalRunner, VmapUnsupported, skeleton
from .plan import Plan
from .points import Affine, Buffers, Points, device_dtype, fresh_bn_buffers, read_batches
from .result import Evaluation
from .settings import Settings
from .stacked import StackedRunner, prefix
from .strategy import Job, Runner

logger = logging.getLogger(__name__)


class NonFiniteMetrics(FuncspaceError):
    """Some metric came out NaN or inf at some point (overflowing outputs)."""


def evaluate_points(
    template: nn.Module,
    plan: Plan,
    points: Points,
    buffers: Buffers,
    data: Dataset | Pair,
    settings: Settings,
    affine: Affine | None = None,
) -> Evaluation:
    """Evaluate validated ``points`` of ``template``'s architecture on ``data``.

    Parameters
    ----------
    template : nn.Module
        The architecture, traced as ``plan``.
    plan : Plan
    points : Points
    buffers : Buffers
    data : Dataset or (inputs, targets)
        Not yet checked: read here into batches on the parameters' device.
    settings : Settings
    affine : Affine, optional
        The family ``points`` come from, when the first layer may be shared.

    Returns
    -------
    Evaluation

    Raises
    ------
    FuncspaceError
        For no points, empty data or targets the metrics cannot read, a strategy the model
        cannot run, or outputs that do not fit the targets.
    """
    if points.size == 0:
        raise FuncspaceError("there are no parameter points to evaluate (K = 0)")
    device, dtype = device_dtype(points.point(0))
    targets = target_kind(settings.metrics)
    with torch.no_grad():
        batches, size = read_batches(
            data, settings.split, device, dtype, settings.batch_size, targets
        )
        recal = None
        if settings.batchnorm == "recalibrate":
            source = data if settings.recalibration_data is None else settings.recalibration_data
            recal_split = "train" if isinstance(source, Dataset) else settings.split
            recal, _ = read_batches(
                source,
                recal_split,
                device,
                dtype,
                settings.batch_size,
                targets,
                "recalibration_data",
            )
        job = Job(template, plan, points, buffers, batches, recal, settings, size, affine)
        return _run(job)


def _run(job: Job) -> Evaluation:
    strategy, chunk, use_chain = resolve_strategy(job)
    if job.settings.strategy == "auto" and strategy == "vmap":
        try:
            return _execute(job, strategy, chunk, use_chain)
        except VmapUnsupported as error:  # vmap cannot run it after all: the loop always can
            logger.info("vmap could not run %s (%s); evaluating in a loop", job.plan, error)
            return _execute(job, "loop", 1, False)
    return _execute(job, strategy, chunk, use_chain)


def _execute(job: Job, strategy: str, chunk: int, use_chain: bool) -> Evaluation:
    K = job.points.size
    plan = job.plan
    reuse = job.affine is not None and (use_chain or plan.first_node is not None)
    device = job.batches[0][0].device
    kind: type[Runner] = StackedRunner if use_chain else FunctionalRunner
    runner = kind(job, strategy, chunk, reuse)

    buffers = job.buffers
    if job.settings.batchnorm == "recalibrate" and plan.bn_names:
        buffers = fresh_bn_buffers(buffers, plan.bn_names, K)
        for step, (x, _) in enumerate(job.recal_batches, start=1):
            if len(x) < 2:
                raise FuncspaceError(
                    "BatchNorm recalibration needs at least 2 inputs per batch; got a batch of "
                    f"{len(x)} (choose another batch_size or more recalibration data)"
                )
            with _explained(job.template, x):
                shared = runner.shared(x)
                for start in range(0, K, chunk):
                    runner.recalibrate(shared, start, min(start + chunk, K), buffers, step)

    metrics = job.settings.metrics
    targets = target_kind(metrics)
    totals = {m.name: torch.zeros(K, dtype=torch.float64, device=device) for m in metrics}
    for i, (x, y) in enumerate(job.batches):
        with _explained(job.template, x):
            shared = runner.shared(x)
            if i == 0:
                outputs, class_dim = runner.logits(shared, 0, min(chunk, K), buffers)
                _check_outputs(outputs, y, class_dim, targets)
        parts: dict[str, list[Tensor]] = {m.name: [] for m in metrics}
        for start in range(0, K, chunk):
            if i > 0 or start > 0:
                outputs, class_dim = runner.logits(shared, start, min(start + chunk, K), buffers)
            # a non-finite entry makes the sum non-finite: the exact scan only when it is not
            # finite (about a tenth of the scan's cost per chunk)
            if not bool(outputs.sum().isfinite()) and not bool(torch.isfinite(outputs).all()):
                # a cheap test of the outputs, not of every parameter: the parameters are
                # read only to say which point and tensor broke (NaN weights propagate)
                _refuse_non_finite(job, start, min(start + chunk, K))
            for metric in metrics:
                parts[metric.name].append(metric.sums(outputs, y, class_dim))
        for name, chunks in parts.items():
            totals[name] += torch.cat(chunks).to(torch.float64)

    n = sum(len(y) for _, y in job.batches)
    values = {name: (total / n).cpu().numpy() for name, total in totals.items()}
    if not all(np.isfinite(v).all() for v in values.values()):
        bad = [name for name, v in values.items() if not np.isfinite(v).all()]
        raise NonFiniteMetrics(
            f"metrics {bad} are not finite at some points: the outputs overflow or hold NaN "
            "(check the parameters, the inputs and the scale of the steps that made the points)"
        )
    return Evaluation(
        values,
        strategy,
        chunk,
        job.batch_size,
        job.settings.batchnorm,
        n,
        reuse,
        job.settings,
        int8_layers=runner.int8_layers,
    )


def _refuse_non_finite(job: Job, start: int, stop: int) -> None:
    """Name the point and parameter behind non-finite outputs, or say the outputs overflow."""
    chunk = job.points.chunk(start, stop)
    for name, values in chunk.items():
        if not values.is_floating_point():
            continue
        bad = ~torch.isfinite(values.reshape(len(values), -1)).all(dim=1)
        if bool(bad.any()):
            k = start + int(bad.nonzero()[0])
            where = "the model" if job.points.size == 1 else f"models[{k}]"
            raise FuncspaceError(
                f"{where}: parameter {name!r} contains NaN or inf; a network with non-finite "
                "weights has no error or loss to measure (did training diverge?)"
            )
    raise NonFiniteMetrics(
        f"the outputs of points {start}..{stop - 1} are not finite: they overflow or hold NaN "
        "(check the inputs and the scale of the steps that made the points)"
    )


@contextmanager
def _explained(model: nn.Module, x: Tensor) -> Iterator[None]:
    """A model that cannot run on the inputs gets a clear error saying what to do."""
    try:
        yield
    except FuncspaceError:
        raise
    except (RuntimeError, TypeError, ValueError, IndexError) as err:
        raise explain_forward_error(model, x, err) from err


def _check_outputs(outputs: Tensor, y: Tensor, class_dim: int, targets: str) -> None:
    """The first chunk's outputs against the targets the metrics read."""
    per_point = tuple(outputs.shape[1:]) if class_dim != 1 else (outputs.shape[2], outputs.shape[1])
    if targets == "class":
        if outputs.ndim != 3:
            raise FuncspaceError(
                f"the model must return (N, n_classes) logits for these metrics; it returned "
                f"shape {per_point} per point"
            )
        check_class_range(y, outputs.shape[class_dim])
    elif targets == "sign":
        if math.prod(per_point) != len(y):
            raise FuncspaceError(
                f"+-1 targets need one output per example; the model returned shape "
                f"{per_point} per point"
            )
    elif targets == "real" and math.prod(per_point) != y.numel():
        raise FuncspaceError(
            f"the model returned shape {per_point} per point; the targets have shape "
            f"{tuple(y.shape)}, which does not fit"
        )


# Working set (activations of one chunk on one batch) that keeps stacking profitable: about
# the per-core L2 of the project's CPU (benchmarks/README.md); on a GPU a memory bound only.
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
