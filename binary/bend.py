"""The binary single-bend path: its midpoint, its trained bend, the path itself.

The toroids paper's single-bend path between two binary solutions ``a`` and ``b`` goes through
a binary midpoint at half their Hamming distance, *trained to zero training error*, and joins
it to both ends by Hamming paths (:func:`binary.hamming_bent`). The midpoint
(:func:`binary.hamming_midpoint`) is a plain network with +-1 weights, and binary training
works on latent real weights, so this module goes back from the one to the other:

- :func:`trainable`, the inverse of :func:`binary.export` for one architecture: a copy of a
  binary *training* model (the template, for example the model ``a`` was trained as) whose
  latent weights are ``scale`` times the +-1 weights of the plain network, its BatchNorm
  parameters and statistics copied; ``export(trainable(plain, template))`` gives ``plain``
  back bit for bit.
- :func:`train_bend`: ``trainable``, then :func:`funcspace.train` until zero training error
  (or the epoch budget), then ``export``; the result carries the training record.
  ``hamming_bent(a, None, b, train=functools.partial(train_bend, template=model, data=data))``
  is the paper's path.

- :func:`hamming_midpoint` (the untrained bend) and :func:`hamming_bent` (the path: two
  Hamming paths joined at the bend, a :class:`HammingBentPath`).

The latent magnitude ``scale`` sets how far the bend moves: a binary weight flips once its
latent weight has crossed 0, after gradient steps adding up to ``scale``. The straight-through
gradient does not depend on it, so until clipping binds, the binary weights train at
``scale`` with learning rate ``lr`` as they would at ``1`` with ``lr / scale``. Measured with
the default SGD (lr 0.02, cosine-annealed, 100 epochs) on teacher-student tasks with a binary
perceptron teacher: at the clip boundary (``scale=1``, where a long-trained model holds many
weights) the bend mostly stopped short of zero error; at ``0.5`` (a fresh initialization's
mean magnitude, and that of the SGD-trained templates) it sometimes did; ``0.1`` reached zero
error fastest but moved the bend farther from the midpoint. The default,
``DEFAULT_SCALE = 0.2``, reached zero training error in every run between two
solutions, with bent barriers
below the random Hamming paths' for committees and MLPs and within their spread for
perceptrons (numbers in ``tests/binary/test_bend.py``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from funcspace.data import Dataset
from funcspace.evaluation import Settings
from funcspace.optim import Options
from funcspace.params import Params  # noqa: F401 - HammingBentPath's inherited field types
from funcspace.training import TrainResult, train
from paths import BentPath

from .errors import BinaryError
from .export import export, fixed_weights
from .hamming import hamming_path
from .layers import _Binary
from .symmetry import binary_weights

__all__ = [
    "DEFAULT_SCALE",
    "HammingBentPath",
    "hamming_bent",
    "hamming_midpoint",
    "train_bend",
    "trainable",
]

#: The default latent magnitude of :func:`trainable` (see the module docstring).
DEFAULT_SCALE = 0.2

# Methods whose training does not start from the model's parameters.
_RESTARTS = {"adv": "pre-trains on random labels first (an adversarial initialization)"}


def _check_scale(scale: object) -> float:
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise BinaryError(f"scale must be a number in (0, 1], got {scale!r}")
    if not (math.isfinite(scale) and 0 < scale <= 1):
        raise BinaryError(
            f"scale must be in (0, 1] (latent weights are clipped to [-1, 1]), got {scale!r}"
        )
    return float(scale)


def _architecture(plain: nn.Module, reference: nn.Module) -> None:
    """Refuse a plain network that is not ``reference``'s architecture, saying what differs."""
    mine, theirs = plain.state_dict(), reference.state_dict()
    only_plain = [k for k in mine if k not in theirs]
    only_template = [k for k in theirs if k not in mine]
    if only_plain or only_template:
        raise BinaryError(
            "plain is not the template's architecture: tensors only in plain: "
            f"{only_plain[:5]}, only in export(template): {only_template[:5]}; the bend must "
            "be a network of the architecture the template trains (export(template) is its "
            "plain form)"
        )
    for key, value in theirs.items():
        if mine[key].shape != value.shape:
            raise BinaryError(
                f"plain is not the template's architecture: '{key}' has shape "
                f"{tuple(mine[key].shape)} in plain and {tuple(value.shape)} in "
                "export(template)"
            )
    for name, module in reference.named_modules():
        if not name:
            continue
        other = plain.get_submodule(name) if _has(plain, name) else None
        if other is None or not isinstance(other, type(module)):
            found = "nothing" if other is None else type(other).__name__
            raise BinaryError(
                f"plain is not the template's architecture: layer '{name}' is "
                f"{type(module).__name__} in export(template) and {found} in plain"
            )
        direct = any(True for _ in module.parameters(recurse=False)) or any(
            True for _ in module.buffers(recurse=False)
        )
        if direct and other.extra_repr() != module.extra_repr():
            raise BinaryError(
                f"plain is not the template's architecture: layer '{name}' is "
                f"{type(module).__name__}({module.extra_repr()}) in export(template) and "
                f"{type(other).__name__}({other.extra_repr()}) in plain"
            )


def _has(model: nn.Module, name: str) -> bool:
    try:
        model.get_submodule(name)
    except AttributeError:
        return False
    return True


def _check_fixed(plain: nn.Module, reference: nn.Module) -> None:
    """Refuse a plain network whose fixed layers are not the template's: they are no
    parameters, so the training model cannot hold anything else there."""
    given, ref = plain.state_dict(), reference.state_dict()
    for name in fixed_weights(reference):
        if not torch.equal(given[name].to(ref[name]), ref[name]):
            raise BinaryError(
                f"plain's '{name}' is {given[name].flatten().tolist()[:8]}, but the template's "
                f"fixed layer there computes {ref[name].flatten().tolist()[:8]}: the template "
                "cannot represent this network. Fixed layers are not parameters and no binary "
                "function changes them (export, align, hamming_midpoint and hamming_bent keep "
                "the ends'); pass a network whose fixed layers are the template's"
            )


def trainable(
    plain: nn.Module,
    template: nn.Module,
    *,
    scale: float = DEFAULT_SCALE,
) -> nn.Module:
    """A copy of the binary training model ``template`` that computes the plain network
    ``plain``: the inverse of :func:`binary.export` for one architecture.

    Layer by layer, every :class:`~binary.BinaryLinear` / :class:`~binary.BinaryConv2d` of the
    template takes ``scale`` times the +-1 weights of the ``nn.Linear`` / ``nn.Conv2d`` at the
    same place in ``plain``; BatchNorm parameters and statistics are copied. The fixed layers
    (:class:`~binary.SumUnits`, :class:`~binary.TwoClassReadout`) hold no parameters: their
    weights in ``plain`` must be the template's (no binary function changes a fixed layer, so
    the networks that alignment, midpoints and Hamming paths give between the template's
    solutions have them).

    Parameters
    ----------
    plain : nn.Module
        A plain binary network of the template's architecture (``export(template)``'s
        layers), for example :func:`binary.hamming_midpoint`'s; it is not modified.
    template : nn.Module
        A binary training model built from ``binary.layers`` (for example the model one end
        was trained as); it is not modified. The copy keeps its BinarySign windows, its
        train/eval mode, dtype and device (values are cast to them: exact for +-1 weights).
    scale : float in (0, 1]
        The magnitude of every latent weight, 1 the clip boundary (see the module
        docstring for the default, ``DEFAULT_SCALE``).

    Returns
    -------
    nn.Module
        The copy; ``export`` of it equals ``plain`` bit for bit.

    Raises
    ------
    BinaryError
        For weights of ``plain`` that are not +-1, a template without binary layers, two
        architectures (naming the tensor or layer that differs), fixed weights the template
        cannot represent, or a bad ``scale``.

    Examples
    --------
    >>> from binary import committee, export
    >>> template = committee(9, 3, seed=0)
    >>> plain = export(committee(9, 3, seed=1))
    >>> model = trainable(plain, template, scale=0.5)
    >>> model[1].weight.detach().abs().unique().tolist()
    [0.5]
    >>> torch.equal(export(model)[1].weight, plain[1].weight)
    True
    """
    scale = _check_scale(scale)
    if not isinstance(template, nn.Module) or not any(
        isinstance(m, _Binary) for m in template.modules()
    ):
        raise BinaryError(
            f"template must be a binary training model (an nn.Module with BinaryLinear or "
            f"BinaryConv2d layers, such as binary.committee(...)), got {type(template).__name__}"
        )
    if not isinstance(plain, nn.Module):
        raise BinaryError(f"plain must be a torch.nn.Module, got {type(plain).__name__}")
    binary_weights(plain, "plain")
    reference = export(template)
    _architecture(plain, reference)
    _check_fixed(plain, reference)
    model = copy.deepcopy(template)
    given = plain.state_dict()
    state = {}
    latent = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, _Binary)}
    for key, value in model.state_dict().items():
        new = given[key].to(device=value.device, dtype=value.dtype)
        state[key] = new * scale if key in latent else new
    model.load_state_dict(state)
    exported = export(model).state_dict()
    for key, value in given.items():
        if not torch.equal(exported[key], value.to(exported[key])):
            raise BinaryError(
                f"internal: export(trainable(plain, template)) differs from plain in '{key}'; "
                "please report this with the models"
            )
    return model


def _method(optimizer: str | Options) -> str:
    return optimizer.method if isinstance(optimizer, Options) else optimizer


def train_bend(
    mid: nn.Module,
    template: nn.Module,
    data: Dataset | tuple[Tensor, Tensor],
    *,
    optimizer: str | Options = "sgd",
    epochs: int = 100,
    batch_size: int = 128,
    lr: float | None = None,
    seed: int = 0,
    scale: float = DEFAULT_SCALE,
) -> TrainResult:
    """Train the plain binary network ``mid`` to zero training error as the binary model
    ``template`` trains, and export it: the bend of the binary single-bend path.

    ``trainable(mid, template, scale=scale)``, then :func:`funcspace.train` (stopping at the
    first epoch with zero training error of the binarized network, else after ``epochs``),
    then :func:`binary.export`. Check ``record.stopped_at_zero_error``: a budget too small
    leaves the bend wherever training got to. For :func:`binary.hamming_bent`, bind the
    template and the data: ``train=functools.partial(train_bend, template=model, data=data)``.

    Parameters
    ----------
    mid : nn.Module
        The plain binary starting point (:func:`binary.hamming_midpoint`'s); not modified.
    template : nn.Module
        The binary training model of that architecture (see :func:`trainable`).
    data : Dataset or (inputs, targets)
        The training data, as for :func:`funcspace.train`.
    optimizer : str or Options
        As for :func:`funcspace.train`, except ``"adv"`` (its adversarial pre-training
        starts elsewhere than the bend). ``"rsgd"`` draws its replicas afresh by default;
        ``ReplicatedSGDOptions(init="shared", init_noise=0.1)`` starts them all at the bend
        (latent magnitudes jittered by 10%, signs kept).
    epochs, batch_size, lr, seed
        As for :func:`funcspace.train`.
    scale : float in (0, 1]
        The latent magnitude (see :func:`trainable`).

    Returns
    -------
    funcspace.training.TrainResult
        ``model``: the trained bend, exported (a plain network with +-1 weights, eval mode);
        ``record``: the training record (the train error of the binarized network per epoch).

    Raises
    ------
    BinaryError
        As :func:`trainable`, or for ``optimizer="adv"``.
    FuncspaceError
        As :func:`funcspace.train` (bad options, data that do not fit the model).

    Examples
    --------
    >>> from binary import export, is_binary, perceptron
    >>> x = torch.randn(20, 7, generator=torch.Generator().manual_seed(0))
    >>> y = (x.sum(1) > 0).long()
    >>> result = train_bend(export(perceptron(7, seed=1)), perceptron(7), (x, y), lr=0.1)
    >>> result.record.stopped_at_zero_error, is_binary(result.model)
    (True, True)
    """
    method = _method(optimizer)
    if method in _RESTARTS:
        raise BinaryError(
            f"optimizer {method!r} {_RESTARTS[method]}, so it would not train the bend from "
            "the midpoint; use 'sgd', 'adam', 'sam', 'entropy_sgd' or 'rsgd'"
        )
    model = trainable(mid, template, scale=scale)
    result = train(
        model,
        data,
        optimizer,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        progress=False,
    )
    return TrainResult(export(result.model), result.record, result.init)


@dataclass(frozen=True, eq=False)
class HammingBentPath(BentPath):
    """Two Hamming paths joined at a binary bend: ``t`` in [0, 1/2] runs the first (``a`` to the
    bend), [1/2, 1] the second (the bend to ``b``); see :class:`paths.BentPath`."""

    @property
    def length(self) -> int:
        """Flips along both legs."""
        return self.first.length + self.second.length

    def to_dict(self) -> dict[str, Any]:
        """Plain data: the kind and the flips of each leg."""
        legs = [self.first.length, self.second.length]
        return {**super().to_dict(), "legs": legs, "hamming_length": sum(legs)}


def hamming_midpoint(
    a: nn.Module,
    b: nn.Module,
    *,
    seed: int = 0,
    example_input: Tensor | None = None,
    align: bool = True,
    method: str = "cosine",
) -> nn.Module:
    """A binary network half way between ``a`` and the aligned ``b``: ``floor(H / 2)`` of the
    ``H`` differing weights of ``a``, drawn at random, flipped (real parameters averaged).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> a, b = nn.Linear(4, 1, bias=False), nn.Linear(4, 1, bias=False)
    >>> _ = a.weight.data.fill_(1.0)
    >>> _ = b.weight.data.fill_(-1.0)
    >>> int((hamming_midpoint(a, b).weight < 0).sum())
    2
    """
    path = hamming_path(a, b, seed=seed, example_input=example_input, align=align, method=method)
    h = path.length
    return path.at((h // 2) / h if h else 0.0)


def hamming_bent(
    a: nn.Module,
    mid: nn.Module | None,
    b: nn.Module,
    *,
    train: Callable[[nn.Module], nn.Module | TrainResult] | None = None,
    order: str = "random",
    seed: int = 0,
    data: Any = None,
    example_input: Tensor | None = None,
    align: bool = True,
    method: str = "cosine",
    metric: str = "auto",
    candidates: int | None = None,
    settings: Settings | None = None,
) -> HammingBentPath:
    """The binary single-bend path: ``a`` to a binary bend, then the bend to ``b``, each leg a
    Hamming path (:func:`hamming_path`; the bend aligned to ``a``, ``b`` to the bend).

    Parameters
    ----------
    a, b : nn.Module
        Plain binary networks of one architecture.
    mid : nn.Module or None
        The bend; None: :func:`hamming_midpoint` of ``a`` and ``b`` (seeded by ``seed``).
    train : callable, optional
        ``train(mid)``, applied to the bend before the legs are built, returns the new bend
        (a plain binary network) or a :class:`funcspace.training.TrainResult` holding it
        (its record becomes the path's ``record``). The toroids paper trains the bend to
        zero training error: ``functools.partial(binary.train_bend, template=model,
        data=data)`` (``model`` a binary training model of the architecture).
    order, seed, data, example_input, align, method, metric, candidates, settings
        As in :func:`hamming_path` (the second leg's seed is ``seed + 1``).

    Returns
    -------
    HammingBentPath
        Its ``bend`` is the bend as the path meets it (aligned to ``a``); its ``record`` the
        bend's training record when ``train`` returns one, else None.

    Raises
    ------
    BinaryError
        As :func:`hamming_path`, or when ``train`` returns something that is not a plain binary
        network of the architecture.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> a, b = nn.Linear(4, 1, bias=False), nn.Linear(4, 1, bias=False)
    >>> _ = a.weight.data.fill_(1.0)
    >>> _ = b.weight.data.fill_(-1.0)
    >>> path = hamming_bent(a, None, b)
    >>> path.length, path.kind, torch.equal(path.params([1.0])["weight"][0], b.weight.detach())
    (4, 'hamming_bent', True)
    """
    options = dict(
        order=order,
        data=data,
        example_input=example_input,
        align=align,
        method=method,
        metric=metric,
        candidates=candidates,
        settings=settings,
    )
    if mid is None:
        mid = hamming_midpoint(
            a, b, seed=seed, example_input=example_input, align=align, method=method
        )
    record = None
    if train is not None:
        mid = train(mid)
        if isinstance(mid, TrainResult):
            mid, record = mid.model, mid.record
        binary_weights(mid, "the trained bend")
    first = hamming_path(a, mid, seed=seed, **options)
    second = hamming_path(first.aligned, b, seed=seed + 1, **options)
    end = second.params([1.0])
    direction = {n: end[n][0] - v for n, v in first.origin.items()}
    return HammingBentPath(
        start=a,
        end=b,
        kind="hamming_bent",
        origin=first.origin,
        direction=direction,
        first=first,
        second=second,
        bend=first.aligned,
        record=record,
    )
