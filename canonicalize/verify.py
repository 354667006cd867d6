"""Self-verification: a transformed model must compute what the input model computed."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .errors import SymmetryError

_TOLERANCE = {torch.float64: 1e-9, torch.float32: 1e-4}


def eval_outputs(model: nn.Module, x: Tensor) -> Tensor:
    """Outputs in eval mode, restoring the module's train/eval flags afterwards."""
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            return model(x)
    finally:
        for module, training in modes.items():
            module.training = training


def relative_difference(expected: Tensor, actual: Tensor) -> float:
    """Largest absolute difference relative to the largest absolute expected value."""
    scale = expected.abs().max().clamp_min(torch.finfo(expected.dtype).tiny)
    return float((actual - expected).abs().max() / scale)


def check_outputs(
    original: nn.Module, new: nn.Module, x: Tensor, factor: float = 1.0, what: str = "transform"
) -> None:
    """Raise unless ``new(x) == factor * original(x)`` to the tolerance of the dtype.

    This catches an operation the graph did not reveal before it corrupts a study.
    """
    expected = eval_outputs(original, x) * factor
    actual = eval_outputs(new, x)
    tolerance = _TOLERANCE.get(expected.dtype, 1e-2)
    difference = relative_difference(expected, actual)
    if not difference <= tolerance:
        raise SymmetryError(
            f"{what}: the transformed model's outputs differ from the input model's by "
            f"{difference:.2e} (relative; tolerance {tolerance:.0e}). Either the model holds an "
            "operation whose symmetry canonicalize misread, or its weights are so badly scaled "
            "that the dtype cannot represent the canonical form; please report it with the model."
        )
