"""A classical learning rule for binary perceptrons and committee machines.

:func:`train_perceptron_rule` runs the clipped perceptron rule (CP, Baldassi, Braunstein,
Brunel, Zecchina, PNAS 2007) on the latent weights ("hidden states") ``h`` of the binary
weights ``w = sign(h)``: examples are presented one at a time in a seeded random order, and an
example the network gets wrong moves the hidden states of one unit,
``h <- clip(h + lr * s * x, -1, 1)`` with ``s = +1`` for class 1 and ``-1`` for class 0.
For the perceptron that unit is the output unit; for the committee machine it is, among the
hidden units that vote against the label, the one whose pre-activation is closest to zero
(the least-action rule of Mitchison and Durbin, 1989, which flips the vote with the fewest
weight changes). Nothing else changes, so solutions found by the rule and by gradient methods
(:func:`funcspace.train`) can be compared on the same models and the same data.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import torch
from torch import Tensor, nn

from funcspace._validate import check_model_data, check_seed
from funcspace.data import Dataset, as_pair
from funcspace.optim import error_and_loss
from funcspace.training import TrainRecord, TrainResult

from .errors import BinaryError
from .layers import BinaryConv2d, BinaryLinear, SumUnits, TwoClassReadout, _Binary, binarize

__all__ = ["RULE", "train_perceptron_rule"]

#: The rule's name in the training record (``record.optimizer``).
RULE = "clipped_perceptron"


def _machine(model: nn.Module) -> tuple[_Binary, int, int]:
    """The binary layer of a perceptron or committee machine, its units and their fan-in."""
    binary = [m for m in model.modules() if isinstance(m, _Binary)]
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    readout = any(isinstance(m, TwoClassReadout) for m in model.modules())
    summed = any(isinstance(m, SumUnits) for m in model.modules())
    layer = binary[0] if len(binary) == 1 else None
    units = fan_in = 0
    if isinstance(layer, BinaryLinear):
        units, fan_in = layer.out_features, layer.in_features
    elif isinstance(layer, BinaryConv2d) and layer.kernel_size == (1, 1):
        if layer.groups == layer.out_channels:  # a tree: unit k reads input block k
            units, fan_in = layer.out_channels, layer.in_channels // layer.groups
    shape_ok = units == 1 or (units % 2 == 1 and summed)
    if layer is None or not units or norms or not readout or not shape_ok:
        raise BinaryError(
            "train_perceptron_rule trains a binary perceptron or committee machine "
            "(binary.perceptron, binary.committee: one binary layer of 1 or an odd number of "
            "units, their sum, a TwoClassReadout, no BatchNorm); got a "
            f"{type(model).__name__} with {len(binary)} binary layers; train other binary "
            "networks with funcspace.train"
        )
    return layer, units, fan_in


def _check_lr(lr: object) -> float:
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr <= 2:
        raise BinaryError(f"lr must be a number in (0, 2], got {lr!r}")
    return float(lr)


def train_perceptron_rule(
    model: nn.Module,
    data: Dataset | tuple[Tensor, Tensor],
    *,
    epochs: int = 100,
    lr: float = 0.1,
    seed: int = 0,
    stop_at_zero_error: bool = True,
) -> TrainResult:
    """Train a copy of a binary perceptron or committee machine with the clipped perceptron
    rule (least action for the committee), until zero training error or ``epochs``.

    Parameters
    ----------
    model : nn.Module
        A :func:`binary.perceptron` or :func:`binary.committee` (tree or fully connected),
        or a model of the same layers; not modified.
    data : Dataset or (inputs, targets)
        Targets are classes 0/1; a :class:`funcspace.data.Dataset`'s test split is recorded.
    epochs : int
        The budget of passes over the training set (>= 0).
    lr : float
        Step on the hidden states, in (0, 2] (they live in [-1, 1]).
    seed : int
        Seeds the order of presentation (the only randomness).
    stop_at_zero_error : bool
        Stop after the first epoch with zero training error.

    Returns
    -------
    funcspace.training.TrainResult
        The trained copy (eval mode) and a :class:`~funcspace.training.TrainRecord` like
        :func:`funcspace.train`'s: ``optimizer`` is ``"clipped_perceptron"``, ``batch_size``
        1, the errors and cross-entropy after every epoch, ``details["updates"]`` the number
        of updates in each epoch.

    Raises
    ------
    BinaryError
        For another kind of model or bad settings.
    FuncspaceError
        For data that do not fit the model, targets other than 0 and 1 included (the boundary
        check of :func:`funcspace.train`).

    Examples
    --------
    >>> from binary.models import perceptron
    >>> gen = torch.Generator().manual_seed(0)
    >>> teacher = torch.randint(0, 2, (51,), generator=gen) * 2.0 - 1
    >>> x = torch.randn(20, 51, generator=gen)
    >>> y = (x @ teacher > 0).long()
    >>> result = train_perceptron_rule(perceptron(51, seed=1), (x, y), epochs=50)
    >>> result.record.train_error[-1], result.record.stopped_at_zero_error
    (0.0, True)
    """
    if not isinstance(model, nn.Module):
        raise BinaryError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _machine(model)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise BinaryError(f"epochs must be an integer >= 0, got {epochs!r}")
    lr = _check_lr(lr)
    seed = check_seed(seed, error=BinaryError)
    if not isinstance(stop_at_zero_error, bool):
        raise BinaryError(f"stop_at_zero_error must be True or False, got {stop_at_zero_error!r}")
    # targets outside {0, 1} are refused here: the models have two outputs
    _, inputs, targets = check_model_data(model, as_pair(data, "train"))
    test = None
    if isinstance(data, Dataset) and len(data.test[0]):
        _, tx, ty = check_model_data(model, data.test)
        test = (tx, ty)

    start = time.perf_counter()
    net = copy.deepcopy(model).eval()
    layer, units, fan_in = _machine(net)
    hidden = layer.weight.data.view(units, fan_in)  # the hidden states, updated in place
    flat = inputs.flatten(1)
    if isinstance(layer, BinaryConv2d):  # a tree: unit k reads the k-th block of inputs
        patterns = flat.view(len(flat), units, fan_in)
    else:  # fully connected: every unit reads all inputs
        patterns = flat.unsqueeze(1).expand(-1, units, -1)
    signs = targets.to(hidden.dtype) * 2 - 1
    generator = torch.Generator().manual_seed(seed)
    history: dict[str, list[Any]] = {k: [] for k in ("error", "loss", "te", "tl", "updates")}
    stopped = False
    for _ in range(epochs):
        updates = 0
        for i in torch.randperm(len(inputs), generator=generator).tolist():
            updates += _present(hidden, patterns[i], float(signs[i]), lr)
        error, loss = error_and_loss(net, inputs, targets)
        history["error"].append(error)
        history["loss"].append(loss)
        history["updates"].append(updates)
        if test is not None:
            test_error, test_loss = error_and_loss(net, *test)
            history["te"].append(test_error)
            history["tl"].append(test_loss)
        if stop_at_zero_error and error == 0:
            stopped = True
            break
    record = TrainRecord(
        optimizer=RULE,
        options={"lr": lr},
        seed=seed,
        batch_size=1,
        epoch_budget=epochs,
        epochs=len(history["error"]),
        train_error=tuple(history["error"]),
        train_loss=tuple(history["loss"]),
        test_error=tuple(history["te"]) if test is not None else None,
        test_loss=tuple(history["tl"]) if test is not None else None,
        wall_time=time.perf_counter() - start,
        stopped_at_zero_error=stopped,
        details={"updates": history["updates"]},
    )
    return TrainResult(net, record)


def _present(hidden: Tensor, x: Tensor, sign: float, lr: float) -> int:
    """Show one example ``x`` (units x fan-in) with label ``sign``; returns 1 if it updated.

    The prediction is the model's: class 1 where the perceptron's ``z > 0`` (the readout's
    argmax), or where the committee's vote (hidden signs, sign(0) = +1, odd units) is > 0.
    """
    with torch.no_grad():
        z = (binarize(hidden) * x).sum(dim=1)
        votes = z if len(z) == 1 else binarize(z)
        if (float(votes.sum()) > 0) == (sign > 0):
            return 0
        if len(z) == 1:
            unit = 0
        else:  # least action: of the units voting against the label, the nearest to flipping
            wrong = votes * sign < 0
            unit = int(torch.where(wrong, z.abs(), torch.inf).argmin())
        hidden[unit].add_(x[unit], alpha=sign * lr).clamp_(-1.0, 1.0)
    return 1
