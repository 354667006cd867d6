"""Checks at the public boundary of canonicalize: refuse bad input with a clear message."""

from __future__ import annotations

import torch
from torch import nn

from .errors import SymmetryError
from .spec import SymmetrySpec

# integer inputs: token ids for a model that embeds them
INTEGER_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


def check_model(model: object, role: str = "model") -> nn.Module:
    """Refuse anything that is not an ``nn.Module`` with finite floating-point parameters."""
    if not isinstance(model, nn.Module):
        raise SymmetryError(f"{role} must be a torch.nn.Module, got {type(model).__name__}")
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            bad = int((~torch.isfinite(tensor)).sum())
            raise SymmetryError(
                f"{role} tensor '{name}' has {bad} non-finite value(s) (NaN or inf); "
                "canonical coordinates are only defined for finite weights"
            )
    return model


def model_dtype_device(model: nn.Module) -> tuple[torch.dtype, torch.device]:
    """The floating dtype and device of the model's parameters (float32/CPU when it has none)."""
    for tensor in model.parameters():
        if tensor.is_floating_point():
            return tensor.dtype, tensor.device
    return torch.get_default_dtype(), torch.device("cpu")


def check_input(model: nn.Module, example_input: object) -> torch.Tensor:
    """Refuse an example input that is not a finite floating tensor (or a tensor of integer
    token ids) with a batch axis.

    Returns the input cast to the model's dtype (integers kept as they are) and device.
    """
    if not isinstance(example_input, torch.Tensor):
        raise SymmetryError(
            f"example_input must be a torch.Tensor (a batch of inputs), got "
            f"{type(example_input).__name__}"
        )
    if example_input.ndim < 1 or example_input.shape[0] < 1:
        raise SymmetryError(
            f"example_input must have a non-empty batch axis first, got shape "
            f"{tuple(example_input.shape)}"
        )
    dtype, device = model_dtype_device(model)
    if example_input.dtype in INTEGER_DTYPES:
        return example_input.to(device=device)
    if not example_input.is_floating_point():
        raise SymmetryError(f"example_input must be floating point, got {example_input.dtype}")
    if not torch.isfinite(example_input).all():
        raise SymmetryError("example_input has non-finite values (NaN or inf)")
    return example_input.to(dtype=dtype, device=device)


def check_same_architecture(model: nn.Module, reference: nn.Module) -> None:
    """Refuse two models whose state tensors differ in name or shape, saying what differs."""
    a, b = model.state_dict(), reference.state_dict()
    missing = [k for k in b if k not in a]
    extra = [k for k in a if k not in b]
    if missing or extra:
        raise SymmetryError(
            "model and reference have different architectures: "
            f"tensors only in reference: {missing[:5]}, only in model: {extra[:5]}"
        )
    for key in a:
        if a[key].shape != b[key].shape:
            raise SymmetryError(
                "model and reference have different architectures: "
                f"'{key}' has shape {tuple(a[key].shape)} in model and "
                f"{tuple(b[key].shape)} in reference"
            )


def check_spec(spec: object, model: nn.Module, role: str = "model") -> SymmetrySpec:
    """Refuse a precomputed spec that is not a :class:`SymmetrySpec` of ``model``'s architecture:
    every state tensor the spec knows must be the model's, by name and shape. The model may hold
    more (layers its forward never uses, which discovery leaves out); a spec missing a layer the
    forward does use is caught by the self-verification of every transform."""
    from .transform import aliases

    if not isinstance(spec, SymmetrySpec):
        raise SymmetryError(
            f"spec must be a SymmetrySpec (from canonicalize.symmetries), got {type(spec).__name__}"
        )
    tied = aliases(model)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items() if k not in tied}
    given = {k: tuple(s) for k, s in spec.state_shapes}
    if any(shapes.get(k) != s for k, s in given.items()):
        differ = sorted((k, s) for k, s in given.items() if shapes.get(k) != s)[:4]

        raise SymmetryError(
            f"spec was discovered on another architecture than the {role}'s: these tensors differ "
            f"in name or shape {differ}; call canonicalize.symmetries on this {role}"
        )
    return spec
