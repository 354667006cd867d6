"""Symmetries of binary networks: hidden-unit permutations and sign reversals.

A *plain binary network* is a model of ``nn.Linear`` / ``nn.Conv1d`` / ``nn.Conv2d`` layers whose
weights are exactly +-1, with sign activations (:class:`canonicalize.Sign` or a subclass)
between them; biases and BatchNorm layers may hold real values. Its symmetries are what
:func:`canonicalize.symmetries` discovers from the graph, restricted to the elements that keep
every weight at +-1:

- a permutation of the units of every hidden layer (its incoming rows, bias, BatchNorm entries
  and the consumer's columns move together);
- the sign reversal of a unit whose activation is odd (a sign): its incoming weights and bias
  and its outgoing weights change sign. With a BatchNorm before the sign there are two such
  reversals per unit: the layer's rows with the BatchNorm's running mean and ``gamma`` (the
  BatchNorm output is unchanged), and the BatchNorm's ``gamma`` and ``beta`` with the
  consumer's columns (the sign's output flips). Through a BatchNorm *without* affine
  parameters canonicalize finds no sign, so such units are only permuted;
- a bias directly before a BatchNorm is redundant (it folds into the running mean).

Fixed layers (:func:`binary.fixed_weights`: a committee's vote and the two-class readout, as
:func:`binary.export` writes them) are not parameters, and no element may change them: a unit
whose reversal would flip a fixed weight (a committee's hidden unit: its column of the vote;
the vote's own output: the readout) keeps its sign, and units are permuted only where the fixed
weights they meet are equal from unit to unit (the vote's are all +1), so a committee's hidden
units are permuted, never reversed. :func:`symmetries` returns the spec restricted so, and every
function here works inside it.

The positive scales discovery also reports (a sign is invariant to ``c > 0`` on its input)
would break +-1 weights and are not used. Every function here works on the float64 state and
the :class:`canonicalize.SymmetrySpec`; sign reversals are exact (the running variance is left
alone rather than mapped through ``c^2 (var + eps) - eps``), so transformed copies compute the
same outputs bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

import canonicalize
from canonicalize.errors import SymmetryError
from canonicalize.spec import SymmetrySpec
from canonicalize.transform import (
    State,
    permute_group,
    rebuild,
    to_float64,
)
from canonicalize.validate import check_input
from canonicalize.verify import check_outputs, eval_outputs

from ._canonical import canonical_state, flip_units, sign_classes
from ._group import match_state, restrict, same_group
from .errors import BinaryError
from .export import BINARY_LAYERS, check_binary, fixed_weights

#: Layers whose weights must be exactly +-1.
_METHODS = ("cosine", "weights")


@contextmanager
def _reraise(what: str) -> Iterator[None]:
    """canonicalize's errors as :class:`BinaryError`, prefixed with the function's name."""
    try:
        yield
    except SymmetryError as err:
        raise BinaryError(f"{what}: {err}") from err


def binary_weights(model: nn.Module, role: str = "model") -> tuple[str, ...]:
    """The names of the trainable binary tensors (the weights of every Linear and Conv layer
    but the fixed ones, :func:`binary.fixed_weights`), checked.

    Parameters
    ----------
    model : nn.Module
        A plain binary network.
    role : str
        How the messages name the model (``"a"``, ``"reference"``, ...).

    Returns
    -------
    tuple of str
        ``state_dict`` names, in the model's order.

    Raises
    ------
    BinaryError
        If ``model`` is no module, has no trainable Linear or Conv layer, or a weight holds a
        value other than +1 or -1 (the message names the parameter).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(3, 2, bias=False), nn.Linear(2, 1))
    >>> for p in net.parameters():
    ...     _ = p.data.fill_(1.0)
    >>> binary_weights(net)
    ('0.weight', '1.weight')
    >>> _ = net[1].weight.requires_grad_(False)  # fixed, as export marks a committee's vote
    >>> binary_weights(net)
    ('0.weight',)
    """
    check_binary(model, role)  # the one rule of what binary is (binary.export)
    fixed = fixed_weights(model)
    names = [
        f"{name}.weight" if name else "weight"
        for name, module in model.named_modules()
        if isinstance(module, BINARY_LAYERS)
    ]
    names = [n for n in names if n not in fixed]
    if not names:
        kinds = [c.__name__ for c in BINARY_LAYERS]
        hint = (
            f"; {list(fixed)} are fixed (weight.requires_grad False, as binary.export marks a "
            "committee's vote and readout; a model frozen with requires_grad_(False) has only "
            "fixed weights)"
            if fixed
            else ""
        )
        raise BinaryError(
            f"{role} has no trainable Linear or Conv layer: nothing binary to work on "
            f"(binary layers are {kinds}){hint}"
        )
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise BinaryError(f"{role} tensor '{name}' has non-finite values (NaN or inf)")
    return tuple(names)


def infer_example_input(
    model: nn.Module, example: Tensor | None = None, data: object | None = None
) -> Tensor:
    """The inputs to trace ``model`` with: ``example``, else the first 64 inputs of ``data``,
    else 16 seeded normal inputs for a model whose first layer is Linear."""
    if example is not None:
        return example
    if data is not None:
        from funcspace.data import as_pair

        x, _ = as_pair(data, "train")
        return x[:64]
    first = next((m for m in model.modules() if isinstance(m, BINARY_LAYERS)), None)
    if isinstance(first, nn.Linear):
        generator = torch.Generator().manual_seed(0)
        return torch.randn(16, first.in_features, generator=generator, dtype=first.weight.dtype)
    raise BinaryError(
        "example_input is needed (a batch of inputs) to trace this model: its first layer is "
        "not a Linear layer, so the input shape cannot be guessed"
    )


def default_metric(model: nn.Module, example: Tensor) -> str:
    """``"sign_error"`` for a model with one output (a sign, +-1 targets), else ``"error"``."""
    with _reraise("default_metric"):
        x = check_input(model, example)
    out = eval_outputs(model, x[:2])
    return "sign_error" if out.reshape(len(out), -1).shape[1] == 1 else "error"


def symmetries(model: nn.Module, example_input: Tensor) -> SymmetrySpec:
    """The symmetry group of a plain binary network, discovered by canonicalize.

    The spec is :func:`canonicalize.symmetries`'s without the elements that would change a
    fixed layer (its ``notes`` say which signs were fixed so); binary functions use its
    permutation groups and the scale classes whose ``sign`` is free (see the module docstring).

    Raises
    ------
    BinaryError
        For weights that are not +-1, a model canonicalize cannot handle (the message names
        the layer), or fixed weights that differ from unit to unit of a permuted layer.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from canonicalize import Sign
    >>> net = nn.Sequential(nn.Linear(3, 4, bias=False), Sign(), nn.Linear(4, 1, bias=False))
    >>> for p in net.parameters():
    ...     _ = p.data.copy_(torch.ones_like(p))
    >>> spec = symmetries(net, torch.randn(8, 3))
    >>> [g.size for g in spec.groups], [s.size for s in spec.scales if s.sign]
    ([4], [4])
    """
    binary_weights(model)
    with _reraise("symmetries"):
        spec = canonicalize.symmetries(model, example_input)
    return restrict(spec, model.state_dict(), fixed_weights(model))


def random_transform(
    model: nn.Module,
    example_input: Tensor,
    seed: int = 0,
    *,
    permute: bool = True,
    sign: bool = True,
) -> nn.Module:
    """A copy of a binary network moved by a random element of its group (permutations and
    sign reversals): the same function, bit for bit, with +-1 weights, fixed layers unchanged.

    Parameters
    ----------
    model : nn.Module
        A plain binary network (left untouched).
    example_input : Tensor
        A batch of inputs, to trace the model and check the copy.
    seed : int
        Seed of the group element.
    permute, sign : bool
        Which parts of the group to draw.

    Returns
    -------
    nn.Module

    Raises
    ------
    BinaryError
        As :func:`symmetries`, or if the copy's outputs differ.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from canonicalize import Sign
    >>> g = torch.Generator().manual_seed(0)
    >>> net = nn.Sequential(nn.Linear(3, 5, bias=False), Sign(), nn.Linear(5, 1, bias=False))
    >>> for p in net.parameters():
    ...     _ = p.data.copy_(torch.randint(0, 2, p.shape, generator=g) * 2.0 - 1)
    >>> x = torch.randn(10, 3, generator=g)
    >>> moved = random_transform(net, x, seed=3)
    >>> torch.equal(moved(x), net(x)), bool((moved[0].weight.abs() == 1).all())
    (True, True)
    """
    spec = symmetries(model, example_input)
    with _reraise("random_transform"):
        x = check_input(model, example_input)
    state = to_float64(model)
    generator = torch.Generator().manual_seed(int(seed))
    if sign:
        for k in sign_classes(spec):
            size = spec.scale_class(k).size
            flips = torch.rand(size, generator=generator, dtype=torch.float64) < 0.5
            flip_units(state, spec, k, torch.where(flips, -1.0, 1.0).to(torch.float64))
    if permute:
        for group in spec.groups:
            permute_group(state, spec, group.index, torch.randperm(group.size, generator=generator))
    return _finish(model, state, x, "random_transform")


def _finish(model: nn.Module, state: State, x: Tensor, what: str) -> nn.Module:
    new = rebuild(model, state)
    try:
        check_outputs(model, new, x, what=what)
    except SymmetryError as err:
        raise BinaryError(
            f"{err} A sign reversal keeps the function only where no pre-activation of a sign "
            "is exactly 0 (with sign(0) = +1 the sign is not odd at 0): integer pre-activations "
            "(+-1 inputs, even fan-ins, an untrained BatchNorm) can hit 0; check with inputs "
            "and statistics where none does."
        ) from err
    return new


def canonical_form(model: nn.Module, example_input: Tensor, *, limit: int = 10_000) -> nn.Module:
    """The unique representative of a binary network's symmetry class, with +-1 weights.

    Layer by layer from the input (float64 inside, exact): a bias directly before a BatchNorm
    is folded into its running mean; every unit with a free sign is flipped so that the first
    non-zero entry of its incoming vector (weights and bias; for a BatchNorm's sign,
    ``(gamma, beta)``) is positive; the units of every layer are sorted in decreasing
    lexicographic order of their incoming vectors (with their BatchNorm entries). Units whose
    incoming vectors are equal (frequent in small networks) are ordered by what follows them:
    every order of such tied units that differ downstream is tried, and the canonical form is
    the lexicographically largest state among them (layer by layer, then the whole state), so
    two networks of one class always get the same form. Tied units that are equal in every
    tensor are interchangeable and cost nothing.

    A BatchNorm channel whose ``gamma`` and ``beta`` are both zero outputs a constant; its sign
    is left as it is, so such a network's form is not unique. Positive scales of BatchNorm's
    real parameters are not removed.

    Parameters
    ----------
    model : nn.Module
        A plain binary network (left untouched).
    example_input : Tensor
        A batch of inputs, to trace the model and check the result.
    limit : int
        The most candidate orders of tied units compared at once; a network with more (many
        tied units that differ downstream) is refused rather than searched for long.

    Returns
    -------
    nn.Module
        A new model in canonical form; it computes the model's function (checked on
        ``example_input``).

    Raises
    ------
    BinaryError
        For weights that are not +-1, models canonicalize does not support, more than ``limit``
        candidate orders, or a failed check.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from canonicalize import Sign
    >>> net = nn.Sequential(nn.Linear(2, 2, bias=False), Sign(), nn.Linear(2, 1, bias=False))
    >>> _ = net[0].weight.data.copy_(torch.tensor([[-1.0, 1.0], [1.0, 1.0]]))
    >>> _ = net[2].weight.data.copy_(torch.tensor([[1.0, -1.0]]))
    >>> canon = canonical_form(net, torch.randn(4, 2))
    >>> canon[0].weight.tolist(), canon[2].weight.tolist()
    ([[1.0, 1.0], [1.0, -1.0]], [[-1.0, -1.0]])
    """
    spec = symmetries(model, example_input)
    with _reraise("canonical_form"):
        x = check_input(model, example_input)
    state = canonical_state(to_float64(model), spec, fold=True, limit=_check_limit(limit))
    return _finish(model, state, x, "canonical_form")


def _check_limit(limit: object) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise BinaryError(f"limit must be a positive integer, got {limit!r}")
    return limit


def equivalent(a: nn.Module, b: nn.Module, example_input: Tensor, *, limit: int = 10_000) -> bool:
    """Whether two binary networks are one symmetry class (equal canonical forms).

    Raises
    ------
    BinaryError
        As :func:`canonical_form`, or for two architectures (the message says what differs).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from canonicalize import Sign
    >>> net = nn.Sequential(nn.Linear(3, 4, bias=False), Sign(), nn.Linear(4, 1, bias=False))
    >>> for p in net.parameters():
    ...     _ = p.data.copy_(torch.ones_like(p))
    >>> x = torch.randn(8, 3)
    >>> equivalent(net, random_transform(net, x, seed=1), x)
    True
    """
    check_pair(a, b, ("a", "b"))
    spec = symmetries(a, example_input)
    limit = _check_limit(limit)
    sa = canonical_state(to_float64(a), spec, fold=True, limit=limit)
    sb = canonical_state(to_float64(b), spec, fold=True, limit=limit)
    return _same_floats(sa, sb)


def _same_floats(a: State, b: State) -> bool:
    return all(torch.equal(v, b[k]) for k, v in a.items() if v.is_floating_point())


def check_pair(
    model: nn.Module, reference: nn.Module, roles: tuple[str, str] = ("model", "reference")
) -> None:
    """Refuse non-binary weights and two architectures (fixed layers included), saying what
    differs."""
    binary_weights(model, roles[0])
    binary_weights(reference, roles[1])
    first, second = model.state_dict(), reference.state_dict()
    only_first = [k for k in first if k not in second]
    only_second = [k for k in second if k not in first]
    if only_first or only_second:
        raise BinaryError(
            f"{roles[0]} and {roles[1]} have different architectures: tensors only in "
            f"{roles[0]}: {only_first[:5]}, only in {roles[1]}: {only_second[:5]}"
        )
    for key, value in first.items():
        if value.shape != second[key].shape:
            raise BinaryError(
                f"{roles[0]} and {roles[1]} have different architectures: '{key}' has shape "
                f"{tuple(value.shape)} in {roles[0]} and {tuple(second[key].shape)} in "
                f"{roles[1]}"
            )
    _check_fixed(model, reference, roles)


def _check_fixed(model: nn.Module, reference: nn.Module, roles: tuple[str, str]) -> None:
    """Fixed layers are part of the architecture: the same ones, holding the same weights."""
    fixed, other = fixed_weights(model), fixed_weights(reference)
    if fixed != other:
        raise BinaryError(
            f"{roles[0]} and {roles[1]} have different fixed layers (weights with requires_grad "
            f"False): {list(fixed)} in {roles[0]}, {list(other)} in {roles[1]}; export both "
            "from the same kind of binary model (binary.export marks a committee's vote and "
            "readout fixed), or set requires_grad alike"
        )
    first, second = model.state_dict(), reference.state_dict()
    for name in fixed:
        if not torch.equal(first[name], second[name].to(first[name])):
            raise BinaryError(
                f"{roles[0]} and {roles[1]} have different architectures: their fixed weights "
                f"'{name}' differ ({first[name].flatten().tolist()[:8]} in {roles[0]}, "
                f"{second[name].flatten().tolist()[:8]} in {roles[1]}); fixed layers are not "
                "parameters, so no path or distance can move between them"
            )


def align(
    model: nn.Module,
    reference: nn.Module,
    example_input: Tensor,
    method: str = "cosine",
    *,
    exact: bool = True,
    limit: int = 10_000,
) -> nn.Module:
    """Permute and sign-flip ``model``'s units to match ``reference`` (the toroids paper),
    inside the group of :func:`symmetries` (fixed layers are never changed).

    ``"cosine"``, the paper's procedure: layer by layer from the input, a Hungarian assignment
    (scipy's ``linear_sum_assignment``) on the absolute cosine of the units' incoming weights,
    in the coordinates the previous layers' permutations and flips left; then every unit whose
    cosine is negative is flipped (:func:`canonicalize.match`, ``method="cosine"``). Units
    without a free sign (a committee's hidden units, which feed the fixed vote) are matched on
    the signed cosine and only permuted.
    ``"weights"``: the same, then weight matching (git re-basin's coordinate descent on
    incoming and outgoing weights together), which lowers the Hamming distance further where
    incoming weights alone leave ties. Cosine matching reads incoming weights only: on small
    networks a unit matched on them may bring mismatching outgoing weights, and the aligned
    network can be farther (in Hamming distance) from the reference than the input was;
    ``"weights"`` never ends farther in normalized coordinates (each layer's distance divided
    by its fan-in) than the input.

    With ``exact`` (the default), when the result is not the reference itself but the two
    networks are one symmetry class (equal canonical forms without folding biases), the
    group element between them is used instead: a network aligned to a transformed copy of
    itself is then always at Hamming distance 0, even where tied units (equal incoming weights)
    make the cosine assignment ambiguous.

    Parameters
    ----------
    model, reference : nn.Module
        Plain binary networks of one architecture; ``model`` is moved, neither is modified.
    example_input : Tensor
        A batch of inputs, to trace the models and check the result.
    method : {"cosine", "weights"}
    exact : bool
        Use the group element between two members of one class (see above).
    limit : int
        As in :func:`canonical_form`, for the exact check.

    Returns
    -------
    nn.Module
        ``model`` moved by a group element: the same function (checked on ``example_input``),
        +-1 weights.

    Raises
    ------
    BinaryError
        For real-valued weights (the message names the parameter), two architectures (it says
        what differs), an unknown method, or a failed check.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from canonicalize import Sign
    >>> g = torch.Generator().manual_seed(0)
    >>> net = nn.Sequential(nn.Linear(5, 4, bias=False), Sign(), nn.Linear(4, 1, bias=False))
    >>> for p in net.parameters():
    ...     _ = p.data.copy_(torch.randint(0, 2, p.shape, generator=g) * 2.0 - 1)
    >>> x = torch.randn(10, 5, generator=g)
    >>> moved = random_transform(net, x, seed=2)
    >>> back = align(moved, net, x)
    >>> torch.equal(back[0].weight, net[0].weight), torch.equal(back[2].weight, net[2].weight)
    (True, True)
    """
    if method not in _METHODS:
        raise BinaryError(f"method must be one of {_METHODS}, got {method!r}")
    check_pair(model, reference)
    spec = symmetries(model, example_input)
    if not same_group(spec, symmetries(reference, example_input)):
        raise BinaryError(
            "align: model and reference have the same tensors but different symmetry groups "
            "(their graphs differ, e.g. other activations); align needs one architecture"
        )
    with _reraise("align"):
        x = check_input(model, example_input)
        state = match_state(model, reference, example_input, spec, method)
    ref = to_float64(reference)
    if exact and not _same_floats(state, ref):
        limit = _check_limit(limit)
        ca = canonical_state(to_float64(model), spec, fold=False, limit=limit)
        cb = canonical_state(to_float64(reference), spec, fold=False, limit=limit)
        if _same_floats(ca, cb):
            # one class: the reference's values are the model moved by the element between them
            state = {k: (ref[k] if v.is_floating_point() else v) for k, v in state.items()}
    return _finish(model, state, x, "align")
