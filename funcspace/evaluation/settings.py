"""How to evaluate: one validated, frozen settings object for every function that measures."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from funcspace._validate import check_choice, check_size
from funcspace.data import Dataset, Pair, as_pair
from funcspace.errors import FuncspaceError
from funcspace.metrics import DEFAULT_METRICS, Metric, PerExample, as_metric, as_metrics

#: Evaluation strategies.
STRATEGIES = ("auto", "loop", "vmap", "stacked")
#: BatchNorm handling.
BATCHNORM = ("fixed", "recalibrate")
#: Whether Linear layers that read a sign activation run in int8 (``Settings.int8``).
INT8_MODES = ("auto", "always", "never")
#: Data splits of a :class:`~funcspace.data.Dataset`.
SPLITS = ("train", "test")
#: Default number of inputs per data batch.
DEFAULT_BATCH = 2048


@dataclass(frozen=True, eq=False)
class Settings:
    """How the points are measured; validated when built.

    :func:`~funcspace.evaluate` builds one from its keywords; an
    :class:`~funcspace.evaluation.Evaluator` holds one; the landscape functions, local energy,
    paths and the study take ``settings=``. Change one field with
    ``dataclasses.replace(settings, split="test")``.

    Attributes
    ----------
    metrics : tuple of Metric
        Given as names (``"error"``, ``"loss"``, ``"mse"``, ``"sign_error"``),
        :class:`~funcspace.metrics.Metric` objects or named functions; one alone is allowed.
    split : {"train", "test"}
        Which split of a :class:`~funcspace.data.Dataset` to measure on (a plain
        ``(inputs, targets)`` pair is used whole).
    batch_size : int or None
        Inputs per data batch; None: all, up to 2048.
    chunk : int or None
        Points per batched pass; None: the strategy's rule (:mod:`funcspace.evaluation`).
    batchnorm : {"fixed", "recalibrate"}
        Keep each point's BatchNorm statistics, or recompute them per point.
    recalibration_data : Dataset or (inputs, targets), optional
        For ``batchnorm="recalibrate"``; default the training split of the data measured.
    strategy : {"auto", "loop", "vmap", "stacked"}
    int8 : {"auto", "always", "never"}
        Exact int8 products for binary layers. Under the ``"stacked"`` strategy, a bias-free
        Linear whose input is a sign activation's output (``canonicalize.Sign``, which
        ``binary.BinarySign`` subclasses, or ``torch.sign``) multiplies in int8 with int32
        accumulation (:mod:`funcspace.evaluation.int8`) wherever, at run time, its inputs and
        the weights of the chunk's points are all -1, 0 or +1 and the points are float32 or
        float64: then the result is the float product bit for bit; anywhere else (latent real
        weights, real-valued inputs, a first layer reading the data, convolutions, other
        strategies) the layer runs in float as usual. ``"auto"``: where int8 is expected to be
        faster (:func:`~funcspace.evaluation.int8.int8_preferred`: CUDA, or a CPU with
        VNNI/AMX int8 dot products; on other CPUs ``torch._int_mm`` is many times slower than
        float32); ``"always"``: wherever ``torch._int_mm`` runs; ``"never"``: float only.
        ``Evaluation.int8_layers`` says
        which layers ran in int8.

    Raises
    ------
    FuncspaceError
        For an unknown metric, split, strategy, BatchNorm mode or int8 mode, or a size that is
        not a positive integer.

    Examples
    --------
    >>> import dataclasses
    >>> settings = Settings(metrics="loss", batch_size=256)
    >>> settings.metric_names, dataclasses.replace(settings, split="test").split
    (('loss',), 'test')
    >>> Settings.from_dict(settings.to_dict()).to_dict() == settings.to_dict()
    True
    """

    metrics: tuple[Metric, ...] = tuple(as_metric(m) for m in DEFAULT_METRICS)
    split: str = "train"
    batch_size: int | None = None
    chunk: int | None = None
    batchnorm: str = "fixed"
    recalibration_data: Dataset | Pair | None = None
    strategy: str = "auto"
    int8: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "metrics", as_metrics(self.metrics))
        check_choice("split", self.split, SPLITS)
        check_choice("strategy", self.strategy, STRATEGIES)
        check_choice("batchnorm", self.batchnorm, BATCHNORM)
        check_choice("int8", self.int8, INT8_MODES)
        check_size("chunk", self.chunk)
        check_size("batch_size", self.batch_size)
        if self.recalibration_data is not None:
            as_pair(self.recalibration_data, "train")  # a clear error now, not at first use

    @property
    def metric_names(self) -> tuple[str, ...]:
        """The names of the metrics, in order."""
        return tuple(m.name for m in self.metrics)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-serialisable). Recalibration data are described, not stored."""
        recal = self.recalibration_data
        if isinstance(recal, Dataset):
            described: dict[str, Any] | None = {"dataset": recal.name, "meta": dict(recal.meta)}
        elif recal is not None:
            described = {"n_inputs": len(recal[0])}
        else:
            described = None
        return {
            "metrics": list(self.metric_names),
            "split": self.split,
            "batch_size": self.batch_size,
            "chunk": self.chunk,
            "batchnorm": self.batchnorm,
            "recalibration_data": described,
            "strategy": self.strategy,
            "int8": self.int8,
        }

    @classmethod
    def from_dict(
        cls,
        data: dict[str, Any],
        *,
        metrics: Sequence[Metric | PerExample] = (),
        recalibration_data: Dataset | Pair | None = None,
    ) -> Settings:
        """Settings from :meth:`to_dict`'s output.

        ``metrics`` supplies the user metrics the stored names refer to (built-in names need
        nothing); ``recalibration_data`` the data, which are not stored.

        Raises
        ------
        FuncspaceError
            For a stored metric that is neither built in nor supplied, or stored recalibration
            data that are not supplied.
        """
        known = {m.name: m for m in map(as_metric, metrics)}
        chosen = [known.get(name, name) for name in data["metrics"]]
        if data.get("recalibration_data") is not None and recalibration_data is None:
            raise FuncspaceError(
                "these settings were stored with recalibration data "
                f"({data['recalibration_data']}); pass them as recalibration_data="
            )
        return cls(
            metrics=chosen,  # type: ignore[arg-type]
            split=data["split"],
            batch_size=data["batch_size"],
            chunk=data["chunk"],
            batchnorm=data["batchnorm"],
            recalibration_data=recalibration_data,
            strategy=data["strategy"],
            int8=data.get("int8", "auto"),  # stored before the setting existed: the default
        )

    def __repr__(self) -> str:
        shown = {k: v for k, v in self.to_dict().items() if v is not None}
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"


def settings_or_legacy(
    settings: Settings | None, legacy: dict[str, Any], where: str, default: Settings | None = None
) -> Settings:
    """``settings``, or (deprecated) settings built from the evaluation keywords that earlier
    versions of ``where`` took one by one.

    Raises
    ------
    TypeError
        For a keyword that is no field of :class:`Settings` (as Python would).
    FuncspaceError
        For both ``settings`` and keywords, or ``settings`` that is not a :class:`Settings`.
    """
    if settings is not None and not isinstance(settings, Settings):
        raise FuncspaceError(
            f"settings must be a funcspace.evaluation.Settings; got {type(settings).__name__}"
        )
    if not legacy:
        return settings if settings is not None else (default or Settings())
    known = {f.name for f in fields(Settings)}
    unknown = sorted(set(legacy) - known)
    if unknown:
        raise TypeError(f"{where}() got unexpected keyword arguments {unknown}")
    if settings is not None:
        raise FuncspaceError(
            f"{where}: pass settings= or the evaluation keywords {sorted(legacy)}, not both"
        )
    warnings.warn(
        f"{where}(..., {', '.join(f'{k}=' for k in legacy)}) is deprecated and will be removed "
        "in the next release; pass settings=funcspace.evaluation.Settings(...)",
        DeprecationWarning,
        stacklevel=3,
    )
    return Settings(**legacy)
