"""An evaluator bound to one architecture: the trace made once, reused by every call."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from funcspace.data import Dataset, Pair
from funcspace.errors import FuncspaceError
from funcspace.params import Params, Stacked

from .engine import evaluate_points
from .inputs import affine_points, as_points
from .options import METRICS, Options
from .plan import fingerprint, make_plan
from .result import Evaluation


class Evaluator:
    """:func:`evaluate` and :func:`evaluate_affine` for one architecture, traced once.

    Both functions trace the architecture with ``torch.fx`` on every call, which costs a few
    milliseconds (2-5 ms for the models of :mod:`funcspace.models` on the project's CPU):
    more than a small evaluation itself. An evaluator traces its template once and reuses the
    trace; its methods take the functions' arguments and give the same results.

    Parameters
    ----------
    template : nn.Module
        The architecture. It is neither copied nor mutated; networks passed later must have
        the same layers and parameter shapes.

    Raises
    ------
    FuncspaceError
        If ``template`` is not an ``nn.Module``.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from funcspace.evaluation import evaluate
    >>> nets = [nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)) for _ in range(4)]
    >>> x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    >>> evaluator = Evaluator(nets[0])
    >>> first, rest = evaluator.evaluate(nets[:1], (x, y)), evaluator.evaluate(nets[1:], (x, y))
    >>> len(first), len(rest)
    (1, 3)
    >>> bool(abs(rest.loss - evaluate(nets[1:], (x, y)).loss).max() < 1e-6)
    True
    """

    def __init__(self, template: nn.Module) -> None:
        if not isinstance(template, nn.Module):
            raise FuncspaceError(f"template must be an nn.Module; got {type(template).__name__}")
        self._template = template
        self._fingerprint = fingerprint(template)
        self._plan = make_plan(template)

    @property
    def template(self) -> nn.Module:
        """The architecture this evaluator traced."""
        return self._template

    def __repr__(self) -> str:
        return f"Evaluator({type(self._template).__name__})"

    def evaluate(
        self,
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
        """Error and loss of networks of the template's architecture; see :func:`evaluate`.

        Parameters
        ----------
        models, data, metrics, split, batch_size, chunk, batchnorm, recalibration_data, strategy
            As in :func:`evaluate`.

        Returns
        -------
        Evaluation

        Raises
        ------
        FuncspaceError
            As :func:`evaluate`, and if the networks' layers or parameter shapes are not the
            template's.
        """
        options = Options(
            metrics=metrics,
            split=split,
            batch_size=batch_size,
            chunk=chunk,
            batchnorm=batchnorm,
            recalibration_data=recalibration_data,
            strategy=strategy,
        )
        template, points, buffers = as_points(models)
        self._check_architecture(template)
        return evaluate_points(template, self._plan, points, buffers, data, options)

    def evaluate_affine(
        self,
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
        """Error and loss at ``origin + coefficients @ directions``; see :func:`evaluate_affine`.

        Parameters
        ----------
        origin, directions, coefficients, data, metrics, buffers
            As in :func:`evaluate_affine`, whose ``template`` is this evaluator's.
        split, batch_size, chunk, batchnorm, recalibration_data, strategy, reuse_first_layer
            As in :func:`evaluate_affine`.

        Returns
        -------
        Evaluation

        Raises
        ------
        FuncspaceError
            As :func:`evaluate_affine`, and if the template was changed since it was traced.
        """
        options = Options(
            metrics=metrics,
            split=split,
            batch_size=batch_size,
            chunk=chunk,
            batchnorm=batchnorm,
            recalibration_data=recalibration_data,
            strategy=strategy,
        )
        self._check_architecture(self._template)
        points, shared, affine = affine_points(
            self._template, origin, directions, coefficients, buffers, reuse_first_layer
        )
        return evaluate_points(self._template, self._plan, points, shared, data, options, affine)

    def _check_architecture(self, template: nn.Module) -> None:
        # The trace depends on the layers, not on the values: compare what it was made from.
        if fingerprint(template) != self._fingerprint:
            raise FuncspaceError(
                f"the networks are not of this Evaluator's architecture: {type(template).__name__} "
                f"differs from the traced {type(self._template).__name__} in its layers or "
                "parameter shapes (or the template was changed since the Evaluator was made); "
                "make an Evaluator for these networks, or call funcspace.evaluation.evaluate"
            )
