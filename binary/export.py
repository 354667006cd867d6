"""A trained binary network as a plain model with weights exactly +-1, and the check of one.

:func:`export` replaces each binary layer of a copy of the model by its plain counterpart:
``BinaryLinear`` -> ``nn.Linear`` and ``BinaryConv2d`` -> ``nn.Conv2d`` holding the +-1 signs
of the latent weights (no bias); the fixed layers ``SumUnits`` and ``TwoClassReadout`` ->
``nn.Linear`` with their fixed +-1 weights, marked fixed (below).
:class:`~binary.layers.BinarySign` stays: it is canonicalize's ``Sign`` with this package's
convention sign(0) = +1 (the straight-through gradient it also carries changes nothing in the
forward pass). BatchNorm layers before a sign are kept as they are (running statistics and
affine parameters): folding them into a threshold would need a real-valued bias and would round
differently, and the exported model must compute *exactly* what the binary model computes (the
same float operations on the same numbers, bit for bit). Everything else (Flatten, pooling, the
model's own class and forward) is unchanged.

Fixed layers. A committee's vote (``SumUnits``, weights +1) and the two-class readout
(``TwoClassReadout``, weights ``(-1, +1)``) are not parameters of the trained model: nothing
trains them. Their exported ``nn.Linear`` keeps this as ``weight.requires_grad == False``, the
one marker every binary function reads (:func:`fixed_weights` lists them); PyTorch's own
convention for a frozen parameter, so ``copy.deepcopy``, ``.to()``, ``torch.save`` of the model
and ``load_state_dict`` into it keep it, and the Hessian and level-set code of ``funcspace``
and ``paths`` leave such weights alone as well. A fixed weight is never flipped, counted or
moved: :func:`binary.binary_weights` returns the trainable binary tensors only (Hamming
distances, paths and local energy run over them), and the symmetries of the units that feed a
fixed layer shrink to what keeps it as it is (:mod:`binary.symmetry`). To rebuild an exported
model from a state dict, load it into ``export(model)`` (a fresh ``nn.Linear`` is trainable).

:func:`check_binary` is the boundary check of functions that need binary networks: every
parameter is a Linear/Conv weight with entries exactly +-1, or a real-valued threshold or
scale (a Linear/Conv bias, a BatchNorm parameter). It looks at parameters only; activations
are whatever the model's forward computes.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .errors import BinaryError
from .layers import BinaryConv2d, BinaryLinear, SumUnits, TwoClassReadout, _Binary

__all__ = ["check_binary", "export", "fixed_weights", "is_binary"]

#: The layers whose weights are the binary tensors (+-1) of a plain binary network.
BINARY_LAYERS: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def _linear(weight: torch.Tensor, *, fixed: bool = False) -> nn.Linear:
    """A bias-free ``nn.Linear`` holding ``weight`` (marked fixed if asked); no draw from the
    global RNG."""
    out_features, in_features = weight.shape
    layer = nn.utils.skip_init(
        nn.Linear, in_features, out_features, bias=False, device=weight.device, dtype=weight.dtype
    )
    with torch.no_grad():
        layer.weight.copy_(weight)
    layer.weight.requires_grad_(not fixed)
    return layer


def _plain(module: nn.Module, like: torch.Tensor) -> nn.Module | None:
    """The plain counterpart of a binary layer, or ``None`` for any other module."""
    if isinstance(module, BinaryLinear):
        return _linear(module.binary_weight)
    if isinstance(module, BinaryConv2d):
        conv = nn.utils.skip_init(
            nn.Conv2d,
            module.in_channels,
            module.out_channels,
            module.kernel_size,
            stride=module.stride,
            padding=module.padding,
            dilation=module.dilation,
            groups=module.groups,
            bias=False,
            padding_mode=module.padding_mode,
            device=module.weight.device,
            dtype=module.weight.dtype,
        )
        with torch.no_grad():
            conv.weight.copy_(module.binary_weight)
        return conv
    if isinstance(module, SumUnits):
        return _linear(like.new_ones(1, module.units), fixed=True)
    if isinstance(module, TwoClassReadout):
        return _linear(like.new_tensor([[-1.0], [1.0]]), fixed=True)
    return None


def export(model: nn.Module) -> nn.Module:
    """The plain network that ``model`` computes: ``nn.Linear``/``nn.Conv2d`` with weights
    exactly +-1, :class:`~binary.layers.BinarySign` activations, BatchNorm kept.

    Parameters
    ----------
    model : nn.Module
        A network built from ``binary.layers`` (the reference models, or any model of
        your own that calls them as submodules); it is not modified.

    Returns
    -------
    nn.Module
        A copy in eval mode, on the model's device and dtype, whose outputs equal the binary
        model's (in eval mode) bit for bit; :func:`check_binary` accepts it and
        :func:`canonicalize.symmetries` reads it (its sign units, permutations and flips). The
        layers of ``SumUnits`` and ``TwoClassReadout`` are marked fixed (their weight's
        ``requires_grad`` is False; see the module docstring).

    Raises
    ------
    BinaryError
        For something that is not an ``nn.Module``, or a model without binary layers.

    Examples
    --------
    >>> from binary.models import committee
    >>> model = committee(6, 3, seed=0)
    >>> plain = export(model)
    >>> [type(m).__name__ for m in plain]
    ['Flatten', 'Linear', 'BinarySign', 'Linear', 'Linear']
    >>> x = torch.randn(8, 6)
    >>> torch.equal(plain(x), model.eval()(x)), is_binary(plain)
    (True, True)
    >>> fixed_weights(plain)
    ('3.weight', '4.weight')
    """
    if not isinstance(model, nn.Module):
        raise BinaryError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not any(isinstance(m, (_Binary, SumUnits, TwoClassReadout)) for m in model.modules()):
        raise BinaryError(
            f"{type(model).__name__} has no binary layer (BinaryLinear, BinaryConv2d); export "
            "turns a model built from binary.layers into a plain one. A plain model with +-1 "
            "weights needs no export: check it with binary.check_binary"
        )
    like = next(model.parameters(), torch.empty(0))
    out = copy.deepcopy(model)
    root = _plain(out, like)
    if root is not None:
        return root.eval()
    replaced: dict[int, nn.Module] = {}
    for name, module in list(out.named_modules(remove_duplicate=False)):
        if not name:
            continue
        plain = replaced.get(id(module))
        plain = _plain(module, like) if plain is None else plain
        if plain is None:
            continue
        replaced[id(module)] = plain  # a layer used at two places stays one layer
        parent, _, attr = name.rpartition(".")
        setattr(out.get_submodule(parent), attr, plain)
    return out.eval()


def check_binary(model: nn.Module, name: str = "model") -> nn.Module:
    """Refuse a network that is not binary; return it unchanged when it is.

    Binary here: every parameter is a weight of ``nn.Linear``/``nn.Conv1d``/``nn.Conv2d``
    with entries exactly +-1, or a real-valued threshold or scale before a sign (a bias of
    those layers, a ``BatchNorm1d``/``BatchNorm2d`` parameter). The models of
    ``binary.models`` have no biases. Fixed layers (:func:`fixed_weights`) obey the same rule.
    Activations are not checked (they are the model's forward pass).

    Parameters
    ----------
    model : nn.Module
        The network, typically :func:`export`'s output.
    name : str
        How error messages call it (``"a"``, ``"models[3]"``, ...).

    Returns
    -------
    nn.Module
        ``model``.

    Raises
    ------
    BinaryError
        Naming the first offending parameter: latent weights of a training model (export it
        first), weights that are not +-1 (how many, and one of them), or a parameter of a
        layer without a binary form.

    Examples
    --------
    >>> net = nn.Sequential(nn.Linear(2, 1, bias=False))
    >>> with torch.no_grad():
    ...     _ = net[0].weight.copy_(torch.tensor([[1.0, 0.5]]))
    >>> try:
    ...     check_binary(net)
    ... except BinaryError as err:
    ...     print(str(err)[:72])
    model: parameter '0.weight' (Linear) is not binary: 1 of 2 entries are n
    """
    if not isinstance(model, nn.Module):
        raise BinaryError(f"{name} must be a torch.nn.Module, got {type(model).__name__}")
    if not any(True for _ in model.parameters()):
        raise BinaryError(f"{name} has no parameters: there are no binary weights to work on")
    for path, module in model.named_modules():
        kind = type(module).__name__
        for attr, p in module.named_parameters(recurse=False):
            full = f"{path}.{attr}" if path else attr
            if isinstance(module, _Binary):
                raise BinaryError(
                    f"{name}: parameter {full!r} ({kind}) holds the latent real weights of a "
                    "training model; binary.export(model) gives the network whose weights "
                    "are exactly +-1"
                )
            threshold = isinstance(module, BINARY_LAYERS) and attr == "bias"
            if threshold or isinstance(module, _NORMS):
                continue  # real-valued thresholds and scales before a sign
            if isinstance(module, BINARY_LAYERS) and attr == "weight":
                _check_signs(name, full, kind, p)
            else:
                raise BinaryError(
                    f"{name}: parameter {full!r} belongs to a {kind}, which has no binary "
                    "form; binary networks hold Linear/Conv weights (+-1), their biases and "
                    "BatchNorm parameters only"
                )
    return model


def _check_signs(name: str, full: str, kind: str, p: torch.Tensor) -> None:
    bad = (p != 1) & (p != -1)
    count = int(bad.sum())
    if count:
        index = tuple(int(i) for i in bad.nonzero()[0])
        value = float(p.detach()[index])
        raise BinaryError(
            f"{name}: parameter {full!r} ({kind}) is not binary: {count} of {p.numel()} "
            f"entries are not +-1 ({value!r} at index {index}); train the network "
            "with binary layers and export it (binary.export), or binarize the weights "
            "(binary.binarize)"
        )


def fixed_weights(model: nn.Module) -> tuple[str, ...]:
    """The ``state_dict`` names of the fixed binary tensors: the weights of ``nn.Linear`` /
    ``nn.Conv1d`` / ``nn.Conv2d`` layers whose ``requires_grad`` is False.

    :func:`export` marks the weights of a committee's vote and of the two-class readout so; no
    binary function flips, counts or moves them (see the module docstring).

    Raises
    ------
    BinaryError
        If ``model`` is not an ``nn.Module``.

    Examples
    --------
    >>> net = nn.Sequential(nn.Linear(3, 2, bias=False), nn.Linear(2, 1, bias=False))
    >>> _ = net[1].weight.requires_grad_(False)
    >>> fixed_weights(net)
    ('1.weight',)
    """
    if not isinstance(model, nn.Module):
        raise BinaryError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return tuple(
        f"{name}.weight" if name else "weight"
        for name, module in model.named_modules()
        if isinstance(module, BINARY_LAYERS) and not module.weight.requires_grad
    )


def is_binary(model: nn.Module) -> bool:
    """Whether :func:`check_binary` accepts ``model``.

    Raises
    ------
    BinaryError
        If ``model`` is not an ``nn.Module``.

    Examples
    --------
    >>> is_binary(nn.Linear(2, 2))
    False
    """
    if not isinstance(model, nn.Module):
        raise BinaryError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    try:
        check_binary(model)
    except BinaryError:
        return False
    return True
