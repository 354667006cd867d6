"""The engine: read the data once per batch, run every chunk of points, accumulate the scores.

:func:`evaluate_points` is what the public functions and :class:`~funcspace.evaluation.Evaluator`
call once they have validated their inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from funcspace.data import Dataset, Pair
from funcspace.errors import FuncspaceError

from .chain import ChainRunner
from .generic import GenericRunner
from .inputs import device_dtype, read_batches
from .job import Job
from .options import Options
from .plan import Plan
from .points import Affine, Buffers, Points, fresh_bn_buffers
from .result import Evaluation
from .strategy import resolve_strategy


def evaluate_points(
    template: nn.Module,
    plan: Plan,
    points: Points,
    buffers: Buffers,
    data: Dataset | Pair,
    options: Options,
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
    options : Options
    affine : Affine, optional
        The family ``points`` come from, when the first layer may be shared.

    Returns
    -------
    Evaluation

    Raises
    ------
    FuncspaceError
        For no points, empty data or targets that are no class indices, a strategy the model
        cannot run, or logits that do not fit the targets.
    """
    if points.size == 0:
        raise FuncspaceError("there are no parameter points to evaluate (K = 0)")
    device, dtype = device_dtype(points.point(0))
    with torch.no_grad():
        batches, size = read_batches(data, options.split, device, dtype, options.batch_size)
        recal = None
        if options.batchnorm == "recalibrate":
            source = data if options.recalibration_data is None else options.recalibration_data
            recal_split = "train" if isinstance(source, Dataset) else options.split
            recal, _ = read_batches(
                source, recal_split, device, dtype, options.batch_size, "recalibration_data"
            )
        job = Job(template, plan, points, buffers, batches, recal, options, size, affine)
        return _run(job)


def _run(job: Job) -> Evaluation:
    strategy, chunk, use_chain = resolve_strategy(job)
    if job.options.strategy == "auto" and strategy == "vmap":
        try:
            return _execute(job, strategy, chunk, use_chain)
        except FuncspaceError:  # vmap cannot run it after all: the loop always can
            return _execute(job, "loop", 1, False)
    return _execute(job, strategy, chunk, use_chain)


def _execute(job: Job, strategy: str, chunk: int, use_chain: bool) -> Evaluation:
    K = job.points.size
    plan = job.plan
    reuse = job.affine is not None and (use_chain or plan.first_node is not None)
    device = job.batches[0][0].device
    runner = (ChainRunner if use_chain else GenericRunner)(job, strategy, chunk, reuse)

    buffers = job.buffers
    if job.options.batchnorm == "recalibrate" and plan.bn_names:
        buffers = fresh_bn_buffers(buffers, plan.bn_names, K)
        for step, (x, _) in enumerate(job.recal_batches, start=1):
            if len(x) < 2:
                raise FuncspaceError(
                    "BatchNorm recalibration needs at least 2 inputs per batch; got a batch of "
                    f"{len(x)} (choose another batch_size or more recalibration data)"
                )
            shared = runner.shared(x)
            for start in range(0, K, chunk):
                runner.recalibrate(shared, start, min(start + chunk, K), buffers, step)

    scores = _Scores(K, device, job.options.metrics)
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
    for metric in job.options.metrics:
        total = scores.wrong.double() if metric == "error" else scores.loss
        values[metric] = (total / n).cpu().numpy()
    return Evaluation(values, strategy, chunk, job.batch_size, job.options.batchnorm, n, reuse)


class _Scores:
    """Per-point sums of cross-entropy and of mistakes (the wanted ones), batch by batch."""

    def __init__(self, size: int, device: torch.device, metrics: tuple[str, ...]) -> None:
        self.loss = torch.zeros(size, dtype=torch.float64, device=device)
        self.wrong = torch.zeros(size, dtype=torch.int64, device=device)
        self.want_loss, self.want_error = "loss" in metrics, "error" in metrics
        self._losses: list[Tensor] = []
        self._wrong: list[Tensor] = []

    def add(self, logits: Tensor, y: Tensor, class_dim: int) -> None:
        """One chunk's logits, (k, N, C) or (k, C, N) (``class_dim`` 1), chunks in order."""
        k = logits.shape[0]
        if self.want_loss:
            # cross_entropy reduces over the class axis of a (k, C, N) view (a transposed
            # view for row-major logits) fastest: 2x its time on (N, C) rows (measured)
            z = logits if class_dim == 1 else logits.transpose(1, 2)
            losses = F.cross_entropy(z, y.expand(k, -1), reduction="none")
            self._losses.append(losses.sum(-1, dtype=torch.float64))
        if self.want_error:
            # max(...).indices is the first maximal index, as argmax, and faster across the
            # middle axis of (k, C, N)
            self._wrong.append((logits.max(class_dim).indices != y).sum(-1))

    def end_batch(self) -> None:
        if self._losses:
            self.loss += torch.cat(self._losses)
        if self._wrong:
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
