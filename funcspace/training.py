"""Training to zero error with optimizers of different flatness: :func:`train`.

The toroids paper compares minimizers found on purpose by different algorithms: standard ones
(SGD with Nesterov momentum), flat ones (replicated SGD) and sharp ones (adversarial
initialization); Adam, SAM and entropy-SGD complete the set. :func:`train` runs any of them
(see :mod:`funcspace.optim`) on a deep copy of the model, deterministically under ``seed``,
until zero training error or the epoch budget, and returns the trained copy with its record.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from funcspace._store import PathLike, Stored, file_pair, module_from_state, pack, unpack
from funcspace._validate import check_model_data
from funcspace.data import Dataset, as_pair
from funcspace.errors import FuncspaceError
from funcspace.evaluation import Evaluator, Settings
from funcspace.evaluation.engine import NonFiniteMetrics
from funcspace.metrics import ERROR, Metric, as_loss
from funcspace.optim import Context, Options, method_class
from funcspace.params import Params, parameters_of

logger = logging.getLogger(__name__)

#: Seconds a run with ``progress=None`` lasts before its progress bar appears.
PROGRESS_DELAY_S = 5.0


@dataclass(frozen=True)
class TrainRecord:
    """What happened during a run; plain data (``to_dict`` gives lists and numbers).

    Attributes
    ----------
    optimizer : the method's name; ``options`` are all its options, defaults filled in.
    seed, batch_size, epoch_budget : the run's settings.
    epochs : epochs run (at most ``epoch_budget``).
    train_error, train_loss : after every epoch, on the whole training set, in eval mode.
    test_error, test_loss : the same on the test split; ``None`` when the data had none.
    wall_time : seconds for the whole run (pre-training and evaluation included).
    stopped_at_zero_error : whether the run ended because the training error reached zero.
        A run whose training loss becomes NaN or infinite stops there (a warning is logged);
        check ``diverged``.
    details : method-specific history (``"rsgd"``: coupling, replica error and spread per
        epoch; ``"adv"``: pre-training epochs and the errors of the adversarial initialization).
    """

    optimizer: str
    options: dict[str, Any]
    seed: int
    batch_size: int
    epoch_budget: int
    epochs: int
    train_error: tuple[float, ...]
    train_loss: tuple[float, ...]
    test_error: tuple[float, ...] | None
    test_loss: tuple[float, ...] | None
    wall_time: float
    stopped_at_zero_error: bool
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def diverged(self) -> bool:
        """Whether the training loss became NaN or infinite (the run stopped there)."""
        return bool(self.train_loss) and not math.isfinite(self.train_loss[-1])

    def to_dict(self) -> dict[str, Any]:
        """The record as plain data (options that are objects are given by their ``repr``)."""
        out = asdict(self)
        out["options"] = {
            k: v if isinstance(v, (bool, int, float, str, tuple, type(None))) else repr(v)
            for k, v in self.options.items()
        }
        for key in ("train_error", "train_loss", "test_error", "test_loss"):
            out[key] = None if out[key] is None else list(out[key])
        out["diverged"] = self.diverged
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainRecord:
        """A record from :meth:`to_dict`'s output.

        Options that were objects stay their ``repr`` strings; lists among the options come
        back as tuples (``to_dict`` keeps no other sequence); ``diverged`` is recomputed.

        Parameters
        ----------
        data : dict
            :meth:`to_dict`'s output.

        Returns
        -------
        TrainRecord
        """

        def series(key: str) -> tuple[float, ...] | None:
            return None if data[key] is None else tuple(float(v) for v in data[key])

        return cls(
            optimizer=data["optimizer"],
            options={k: tuple(v) if isinstance(v, list) else v for k, v in data["options"].items()},
            seed=data["seed"],
            batch_size=data["batch_size"],
            epoch_budget=data["epoch_budget"],
            epochs=data["epochs"],
            train_error=series("train_error") or (),
            train_loss=series("train_loss") or (),
            test_error=series("test_error"),
            test_loss=series("test_loss"),
            wall_time=float(data["wall_time"]),
            stopped_at_zero_error=data["stopped_at_zero_error"],
            details=dict(data["details"]),
        )


@dataclass(frozen=True, eq=False)
class TrainResult(Stored):
    """A trained network with its record.

    :meth:`save` stores the record (:meth:`to_dict`) as JSON, the model's state dict
    (parameters and buffers) and ``init`` when kept as safetensors.

    Attributes
    ----------
    model : the trained copy, in eval mode (the input model is never touched).
    record : the :class:`TrainRecord` of the run.
    init : parameters where the (main) training started when ``save_init=True``, else ``None``:
        the model's own for every method except ``"adv"``, where it is the adversarial
        initialization that the SGD phase starts from.
    """

    model: nn.Module
    record: TrainRecord
    init: Params | None = None

    def to_dict(self) -> dict[str, Any]:
        """The record as plain data (:meth:`TrainRecord.to_dict`); the model and ``init`` are
        left out: :meth:`save` stores them in a safetensors file."""
        return self.record.to_dict()

    def _tensors(self) -> dict[str, torch.Tensor]:
        tensors = pack("model", self.model.state_dict())
        if self.init is not None:
            tensors |= pack("init", self.init)
        return tensors

    @classmethod
    def load(cls, path: PathLike, model: nn.Module) -> TrainResult:
        """The result :meth:`save` wrote at ``path``, on a copy of ``model``.

        Parameters
        ----------
        path : str or PathLike
            As given to :meth:`save`.
        model : nn.Module
            A network of the saved architecture (a template, left untouched): a copy of it
            receives the stored state (strictly: same tensor names, shapes and dtypes) and is
            returned in eval mode on the template's device; ``init`` loads on the CPU.

        Returns
        -------
        TrainResult

        Raises
        ------
        DataError
            For a missing, truncated or corrupted file (named).
        FuncspaceError
            For a file of another result type, or a model whose state differs from the saved
            one (the message names the tensor).
        """
        return cls._load(path, model=model, where=str(file_pair(path)[1]))

    @classmethod
    def _restore(
        cls, data: dict[str, Any], tensors: dict[str, torch.Tensor], *, model: nn.Module, where: str
    ) -> TrainResult:
        net = module_from_state(model, unpack("model", tensors), where)
        return cls(net, TrainRecord.from_dict(data), unpack("init", tensors) or None)

    def __repr__(self) -> str:
        r = self.record
        last = f"train error {r.train_error[-1]:.4f}" if r.train_error else "untrained"
        return f"TrainResult({r.optimizer!r}, {r.epochs}/{r.epoch_budget} epochs, {last})"


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise FuncspaceError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _options(optimizer: str | Options, keywords: dict[str, Any]) -> Options:
    """The method's options: given as an object, or by name (keywords deprecated)."""
    if isinstance(optimizer, Options):
        if keywords:
            raise FuncspaceError(
                f"options {sorted(keywords)} were given both in {type(optimizer).__name__} and "
                "as keywords; put them in the options object"
            )
        return optimizer
    cls = method_class(optimizer)
    options = cls.resolve(keywords)  # unknown or bad options are refused first
    if keywords:
        warnings.warn(
            f"train(..., {', '.join(f'{k}=' for k in keywords)}) is deprecated and will be "
            f"removed in the next release; pass optimizer={cls.Options.__name__}(...)",
            DeprecationWarning,
            stacklevel=3,
        )
    return options


def _training_loss(loss: str | Metric | None) -> Metric:
    metric = as_loss(loss)
    if not isinstance(metric, Metric) or metric.targets not in ("class", "any"):
        raise FuncspaceError(
            "train takes a differentiable funcspace.metrics.Metric on class-index targets as "
            f"loss (or its name, such as 'loss'); got {loss!r}. Wrap a function of your own "
            "as Metric('name', per_example_fn, targets='class'); regression training is not "
            "supported yet"
        )
    return metric


def _error_and_loss(evaluator: Evaluator, model: nn.Module, pair) -> tuple[float, float]:
    """Error and the training loss of ``model`` on ``pair``, through the run's evaluator;
    ``(1, nan)`` once the run has diverged (non-finite weights or outputs)."""
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        return 1.0, math.nan
    try:
        values = evaluator.evaluate(model, pair).values
    except NonFiniteMetrics:
        return 1.0, math.nan
    names = [m.name for m in evaluator.settings.metrics]
    return float(values[names[0]][0]), float(values[names[1]][0])


def train(
    model: nn.Module,
    data: Dataset | tuple[torch.Tensor, torch.Tensor],
    optimizer: str | Options = "sgd",
    *,
    loss: str | Metric | None = None,
    seed: int = 0,
    epochs: int = 100,
    batch_size: int = 128,
    lr: float | None = None,
    stop_at_zero_error: bool = True,
    save_init: bool = False,
    progress: bool | None = None,
    device: torch.device | str | None = None,
    **optimizer_options: Any,
) -> TrainResult:
    """Train a copy of ``model`` until zero training error or ``epochs`` (cross-entropy by
    default).

    Parameters
    ----------
    model : nn.Module
        The network; it is deep-copied and never modified.
    data : Dataset or (inputs, targets)
        A :class:`funcspace.data.Dataset` (trained on its train split, its test split is
        recorded) or a plain pair of tensors (then no test error is recorded).
    optimizer : {"sgd", "rsgd", "adv", "adam", "sam", "entropy_sgd"} or Options
        The method by name (with its default options) or by its options
        (:class:`funcspace.optim.SGDOptions`, ``ReplicatedSGDOptions``, ...: each method's
        frozen dataclass, validated when built; :data:`funcspace.optim.METHODS`).
        ``"sgd"``: Nesterov momentum 0.9, lr 0.02 cosine-annealed over ``epochs`` (the paper's
        standard); ``"rsgd"``: replicated SGD whose result is the replicas' center
        (:class:`funcspace.optim.ReplicatedSGD`: 3 replicas from independent
        initializations, :class:`funcspace.optim.Balanced` coupling); ``"adv"``: adversarial
        initialization then SGD without momentum; ``"sam"``; ``"entropy_sgd"``.
    loss : str or Metric, optional
        The training loss: a differentiable :class:`~funcspace.metrics.Metric` on class-index
        targets, or its name (default ``"loss"``, cross-entropy). The record's
        ``train_loss``/``test_loss`` are this loss; the error is the argmax error.
    seed : int
        Seeds the run's own generators (shuffling, corruption, noise) and, for the run only,
        the global RNG (dropout); the caller's global RNG state is restored afterwards.
    epochs : int
        The epoch budget (>= 0); cosine schedules anneal over it.
    batch_size : int
        Examples per step.
    lr : float, optional
        Learning rate; ``None`` takes the method's (or the options') value.
    stop_at_zero_error : bool
        Stop after the first epoch whose training error (whole training set, eval mode) is 0.
    save_init : bool
        Keep the initial parameters in :attr:`TrainResult.init`.
    progress : bool, optional
        A tqdm bar per epoch with the training error. ``None``: shown only when the run lasts
        longer than :data:`PROGRESS_DELAY_S` seconds.
    device : torch.device or str, optional
        Where to train; default: the device of the training inputs.
    **optimizer_options
        Deprecated (removed in the next release): the method's options one by one
        (``momentum=``, ``replicas=``, ...); pass ``optimizer=SGDOptions(momentum=...)``.

    Returns
    -------
    TrainResult
        The trained copy (eval mode), its :class:`TrainRecord` and optionally the init.

    Raises
    ------
    FuncspaceError
        For an unknown optimizer or option (the message lists the valid ones), bad settings, a
        loss that is no differentiable metric of class targets, or a model and data that do
        not fit (the boundary check every measuring function shares: NaN weights, float or
        out-of-range labels, a CNN given flat inputs, ... each with what to do).

    Examples
    --------
    >>> from funcspace.models import MLP
    >>> x = torch.randn(64, 5, generator=torch.Generator().manual_seed(0))
    >>> y = (x[:, 0] > 0).long()
    >>> result = train(MLP(5, [16], 2, seed=0), (x, y), "sgd", lr=0.1, epochs=50, progress=False)
    >>> result.record.train_error[-1], result.record.stopped_at_zero_error
    (0.0, True)
    >>> result.record.epochs == len(result.record.train_loss)
    True
    """
    if not isinstance(model, nn.Module):
        raise FuncspaceError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    loss_metric = _training_loss(loss)
    options = _options(optimizer, optimizer_options)
    if lr is not None:
        options = dataclasses.replace(options, lr=lr)
    cls = method_class(options.method)
    optimizer = cls.name
    _check_int("seed", seed, 0)
    _check_int("epochs", epochs, 0)
    _check_int("batch_size", batch_size, 1)
    if progress is not None and not isinstance(progress, bool):
        raise FuncspaceError(f"progress must be True, False or None, got {progress!r}")

    inputs, targets = as_pair(data, "train")
    test = as_pair(data, "test") if isinstance(data, Dataset) and len(data.test[0]) else None
    check_model_data(model, (inputs, targets))  # one boundary check, clear messages
    if test is not None:
        check_model_data(model, test)
    device = torch.device(device) if device is not None else inputs.device
    net = copy.deepcopy(model).to(device)
    dtype = next((p.dtype for p in net.parameters() if p.is_floating_point()), inputs.dtype)

    def place(pair: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = pair[0].to(device), pair[1].to(device).long()
        return (x.to(dtype) if x.is_floating_point() else x), y

    inputs, targets = place((inputs, targets))
    test = place(test) if test is not None else None
    n_classes = data.n_classes if isinstance(data, Dataset) else int(targets.max()) + 1

    start = time.perf_counter()
    cuda = list(range(torch.cuda.device_count())) if device.type == "cuda" else []
    history: dict[str, list[float]] = {k: [] for k in ("train_error", "train_loss", "te", "tl")}
    stopped = False
    with torch.random.fork_rng(devices=cuda):
        # Modules that draw from the global RNG (dropout) get it seeded for this run only.
        torch.random.default_generator.manual_seed(seed)
        if device.type == "cuda":
            torch.cuda.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        noise = torch.Generator(device=device).manual_seed(seed + 1)
        context = Context(
            inputs, targets, n_classes, epochs, batch_size, generator, noise, loss_metric
        )
        # every epoch's bookkeeping runs through one evaluator, traced once for the run
        evaluator = Evaluator(net, Settings(metrics=(ERROR, loss_metric)))
        method = cls(net, context, **options.to_dict())
        details = method.prepare()
        init = parameters_of(method.model) if save_init else None
        bar = tqdm(
            total=epochs,
            desc=f"train {optimizer}",
            unit="epoch",
            disable=progress is False,
            delay=0 if progress else PROGRESS_DELAY_S,
            leave=False,
        )
        with bar:
            for epoch in range(epochs):
                method.run_epoch(epoch)
                current = method.model
                error, loss = _error_and_loss(evaluator, current, (inputs, targets))
                history["train_error"].append(error)
                history["train_loss"].append(loss)
                if test is not None:
                    test_error, test_loss = _error_and_loss(evaluator, current, test)
                    history["te"].append(test_error)
                    history["tl"].append(test_loss)
                bar.set_postfix(train_error=f"{error:.4f}", refresh=False)
                bar.update()
                logger.debug(
                    "%s epoch %d: train error %.4f loss %.4f", optimizer, epoch, error, loss
                )
                if stop_at_zero_error and error == 0:
                    stopped = True
                    break
                if not math.isfinite(loss):
                    logger.warning(
                        "%s diverged at epoch %d (training loss %s); stopping",
                        optimizer,
                        epoch,
                        loss,
                    )
                    break
        result = method.model
    result.eval()
    record = TrainRecord(
        optimizer=optimizer,
        options=options.to_dict(),
        seed=seed,
        batch_size=batch_size,
        epoch_budget=epochs,
        epochs=len(history["train_error"]),
        train_error=tuple(history["train_error"]),
        train_loss=tuple(history["train_loss"]),
        test_error=tuple(history["te"]) if test is not None else None,
        test_loss=tuple(history["tl"]) if test is not None else None,
        wall_time=time.perf_counter() - start,
        stopped_at_zero_error=stopped,
        details={**details, **method.details()},
    )
    return TrainResult(result, record, init)


__all__ = ["PROGRESS_DELAY_S", "TrainRecord", "TrainResult", "train"]
