"""The evaluator bound to one architecture, and the public functions built on it.

An :class:`Evaluator` traces its template once and holds its
:class:`~funcspace.evaluation.Settings`; :func:`evaluate` and :func:`evaluate_affine` are
one-off evaluators (they trace on every call, about a millisecond).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from funcspace.data import Dataset, Pair
from funcspace.errors import FuncspaceError
from funcspace.metrics import DEFAULT_METRICS, Metric, PerExample
from funcspace.params import Params, Stacked

from .engine import evaluate_points
from .plan import fingerprint, make_plan
from .points import affine_points, as_points, template_of
from .result import Evaluation
from .settings import Settings


class Evaluator:
    """:func:`evaluate` and :func:`evaluate_affine` for one architecture and one set of settings.

    Both functions trace the architecture with ``torch.fx`` on every call, which costs a few
    milliseconds (2-5 ms for the models of :mod:`funcspace.models` on the project's CPU):
    more than a small evaluation itself. An evaluator traces its template once and reuses the
    trace, and holds its :class:`~funcspace.evaluation.Settings` the way a scikit-learn
    estimator holds its parameters; a call may pass other settings for itself.

    Parameters
    ----------
    template : nn.Module
        The architecture. It is neither copied nor mutated; networks passed later must have
        the same layers and parameter shapes.
    settings : Settings, optional
        How to measure (default ``Settings()``: error and loss on the training split).

    Raises
    ------
    FuncspaceError
        If ``template`` is not an ``nn.Module`` or ``settings`` is not a ``Settings``.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from funcspace.evaluation import Settings, evaluate
    >>> nets = [nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)) for _ in range(4)]
    >>> x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    >>> evaluator = Evaluator(nets[0], Settings(metrics="loss"))
    >>> first, rest = evaluator.evaluate(nets[:1], (x, y)), evaluator.evaluate(nets[1:], (x, y))
    >>> len(first), len(rest), rest.settings.metric_names
    (1, 3, ('loss',))
    >>> bool(abs(rest.loss - evaluate(nets[1:], (x, y)).loss).max() < 1e-6)
    True
    """

    def __init__(self, template: nn.Module, settings: Settings | None = None) -> None:
        if not isinstance(template, nn.Module):
            raise FuncspaceError(f"template must be an nn.Module; got {type(template).__name__}")
        self._template = template
        self.settings = _settings(settings, Settings())
        self._fingerprint = fingerprint(template)
        self._plan = make_plan(template)

    @property
    def template(self) -> nn.Module:
        """The architecture this evaluator traced."""
        return self._template

    def __repr__(self) -> str:
        return f"Evaluator({type(self._template).__name__}, {self.settings!r})"

    def evaluate(
        self,
        models: nn.Module | Sequence[nn.Module] | Stacked,
        data: Dataset | Pair,
        settings: Settings | None = None,
    ) -> Evaluation:
        """Metrics of networks of the template's architecture; see :func:`evaluate`.

        Parameters
        ----------
        models, data
            As in :func:`evaluate`.
        settings : Settings, optional
            For this call only; default the evaluator's.

        Returns
        -------
        Evaluation

        Raises
        ------
        FuncspaceError
            As :func:`evaluate`, and if the networks' layers or parameter shapes are not the
            template's.
        """
        settings = _settings(settings, self.settings)
        template, points, buffers = as_points(models)
        self._check_architecture(template)
        return evaluate_points(template, self._plan, points, buffers, data, settings)

    def evaluate_affine(
        self,
        origin: Params,
        directions: Sequence[Params],
        coefficients: Tensor,
        data: Dataset | Pair,
        settings: Settings | None = None,
        *,
        buffers: Params | None = None,
        reuse_first_layer: bool = True,
    ) -> Evaluation:
        """Metrics at ``origin + coefficients @ directions``; see :func:`evaluate_affine`.

        Parameters
        ----------
        origin, directions, coefficients, data, buffers, reuse_first_layer
            As in :func:`evaluate_affine`, whose ``template`` is this evaluator's.
        settings : Settings, optional
            For this call only; default the evaluator's.

        Returns
        -------
        Evaluation

        Raises
        ------
        FuncspaceError
            As :func:`evaluate_affine`, and if the template was changed since it was traced.
        """
        settings = _settings(settings, self.settings)
        self._check_architecture(self._template)
        points, shared, affine = affine_points(
            self._template, origin, directions, coefficients, buffers, reuse_first_layer
        )
        return evaluate_points(self._template, self._plan, points, shared, data, settings, affine)

    def _check_architecture(self, template: nn.Module) -> None:
        # The trace depends on the layers, not on the values: compare what it was made from.
        if fingerprint(template) != self._fingerprint:
            raise FuncspaceError(
                f"the networks are not of this Evaluator's architecture: {type(template).__name__} "
                f"differs from the traced {type(self._template).__name__} in its layers or "
                "parameter shapes (or the template was changed since the Evaluator was made); "
                "make an Evaluator for these networks, or call funcspace.evaluation.evaluate"
            )


def _settings(settings: object, default: Settings) -> Settings:
    if settings is None:
        return default
    if not isinstance(settings, Settings):
        raise FuncspaceError(
            f"settings must be a funcspace.evaluation.Settings; got {type(settings).__name__} "
            "(build one: Settings(metrics=..., split=..., ...))"
        )
    return settings


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
    int8: str = "auto",
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
    int8 : {"auto", "always", "never"}
        Exact int8 products for Linear layers that read a sign activation, where their
        inputs and weights are all -1, 0 or +1 (binary networks, ``"stacked"`` strategy):
        ``"auto"`` where that is faster (CUDA, or a CPU with VNNI/AMX), ``"always"``
        wherever ``torch._int_mm`` runs, ``"never"``. The values are the same bit for bit;
        see :class:`Settings` and ``Evaluation.int8_layers``.

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
        int8=int8,
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
    int8: str = "auto",
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
    data, metrics, split, batch_size, chunk, batchnorm, recalibration_data, strategy, int8
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
        int8=int8,
    )
    return Evaluator(template, settings).evaluate_affine(
        origin,
        directions,
        coefficients,
        data,
        buffers=buffers,
        reuse_first_layer=reuse_first_layer,
    )
