"""An evaluator bound to one architecture: the trace made once, reused by every call."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from funcspace.data import Dataset, Pair
from funcspace.errors import FuncspaceError
from funcspace.params import Params, Stacked

from .engine import evaluate_points
from .inputs import affine_points, as_points
from .plan import fingerprint, make_plan
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
