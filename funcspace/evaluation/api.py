"""The public functions: :func:`evaluate` and :func:`evaluate_affine`.

Each is a one-off :class:`~funcspace.evaluation.Evaluator`: it traces the architecture (about
a millisecond), validates the inputs and runs the engine. Make an Evaluator yourself to trace
once for many calls.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from funcspace.data import Dataset, Pair
from funcspace.metrics import DEFAULT_METRICS, Metric, PerExample
from funcspace.params import Params, Stacked

from .evaluator import Evaluator
from .inputs import template_of
from .result import Evaluation
from .settings import Settings


def evaluate(
    models: nn.Module | Sequence[nn.Module] | Stacked,
    data: Dataset | Pair,
    metrics: str | Metric | Sequence[str | Metric | PerExample] = DEFAULT_METRICS,
    *,
    split: str = "train",
    batch_size: int | None = None,
    chunk: int | None = None,
    batchnorm: str = "fixed",
    recalibration_data: Dataset | Pair | None = None,
    strategy: str = "auto",
) -> Evaluation:
    """Metrics (error and loss by default) of many networks of one architecture, batched.

    Parameters
    ----------
    models : nn.Module, list of nn.Module, or Stacked
        One network, several of one architecture, or stacked parameters
        (:func:`funcspace.params.stack` / :func:`funcspace.params.from_params`). Nothing is
        mutated; every network is evaluated in eval mode.
    data : Dataset or (inputs, targets)
        Targets are what the metrics read (class indices for error and loss). Inputs are
        moved once to the parameters' device (and cast to their floating dtype).
    metrics : name, Metric, or a sequence of them
        Default fraction misclassified (argmax of the logits) and mean cross-entropy; also
        ``"mse"``, ``"sign_error"`` and metrics of your own (:mod:`funcspace.metrics`). All
        must read one kind of targets.
    split : {"train", "test"}
        Which split of a :class:`~funcspace.data.Dataset` to evaluate on.
    batch_size : int, optional
        Inputs per data batch (default: all, up to 2048). Each batch is read once for all the
        points of a chunk.
    chunk : int, optional
        Points per batched pass; default from the rule in :mod:`funcspace.evaluation`.
    batchnorm : {"fixed", "recalibrate"}
        ``"fixed"``: each point's running statistics (stacked buffers, or the template's
        shared ones). ``"recalibrate"``: recompute them per point on ``recalibration_data``
        in train-mode passes of ``batch_size`` inputs (cumulative average over batches, like
        ``torch.optim.swa_utils.update_bn``), then evaluate. A model without BatchNorm
        ignores it.
    recalibration_data : Dataset or (inputs, targets), optional
        Default: the training split of ``data`` (``data`` itself when it is a pair).
    strategy : {"auto", "loop", "vmap", "stacked"}
        See :mod:`funcspace.evaluation`; every strategy gives the same values up to
        round-off.

    Returns
    -------
    Evaluation
        ``values[metric]`` of shape (K,), the settings, and the strategy and chunk that ran.

    Raises
    ------
    FuncspaceError
        For an empty list or data, models of different architectures, unknown options,
        ``strategy="stacked"`` on a model that is no plain chain, or logits that do not fit
        the targets.

    See Also
    --------
    Evaluator : the same for repeated calls on one architecture, traced once, holding one
        :class:`Settings`.

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
    settings = Settings(
        metrics=metrics,
        split=split,
        batch_size=batch_size,
        chunk=chunk,
        batchnorm=batchnorm,
        recalibration_data=recalibration_data,
        strategy=strategy,
    )
    return Evaluator(template_of(models), settings).evaluate(models, data)


def evaluate_affine(
    template: nn.Module,
    origin: Params,
    directions: Sequence[Params],
    coefficients: Tensor,
    data: Dataset | Pair,
    metrics: str | Metric | Sequence[str | Metric | PerExample] = DEFAULT_METRICS,
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
    """Metrics at the points ``origin + sum_i coefficients[k, i] * directions[i]``.

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
    settings = Settings(
        metrics=metrics,
        split=split,
        batch_size=batch_size,
        chunk=chunk,
        batchnorm=batchnorm,
        recalibration_data=recalibration_data,
        strategy=strategy,
    )
    return Evaluator(template, settings).evaluate_affine(
        origin,
        directions,
        coefficients,
        data,
        buffers=buffers,
        reuse_first_layer=reuse_first_layer,
    )
