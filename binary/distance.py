"""Distances between binary networks: Hamming distance and overlap, after alignment.

Only the trainable binary tensors count (the +-1 weights of every Linear and Conv layer,
:func:`binary.binary_weights`); biases and BatchNorm parameters are real-valued and fixed layers
(a committee's vote and readout, :func:`binary.fixed_weights`) are no parameters: they are left
out (two networks whose fixed layers differ are refused). With ``align=True`` (the default) the
second network is first aligned to the first (:func:`binary.align`), so the distance is
between symmetry classes, not between arbitrary labelings of the hidden units.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .symmetry import align as align_model
from .symmetry import binary_weights, check_pair, infer_example_input


@dataclass(frozen=True)
class HammingDistance:
    """How many binary weights two networks disagree on.

    Attributes
    ----------
    count : int
        Number of differing weights.
    total : int
        Number of (trainable) binary weights ``N``.
    fraction : float
        ``count / N``.
    overlap : float
        ``q = (1/N) sum_i w_a,i w_b,i = 1 - 2 * fraction``.
    per_tensor : dict of str -> int
        Differing weights in each binary tensor.
    aligned : bool
        Whether ``b`` was aligned to ``a`` first.
    """

    count: int
    total: int
    fraction: float
    overlap: float
    per_tensor: dict[str, int]
    aligned: bool

    def to_dict(self) -> dict[str, Any]:
        """Plain data, for JSON."""
        return {
            "count": self.count,
            "total": self.total,
            "fraction": self.fraction,
            "overlap": self.overlap,
            "per_tensor": dict(self.per_tensor),
            "aligned": self.aligned,
        }

    def __repr__(self) -> str:
        return (
            f"HammingDistance({self.count} of {self.total} weights differ "
            f"({self.fraction:.4g}), overlap {self.overlap:.4g}, aligned={self.aligned})"
        )


def aligned_pair(
    a: nn.Module,
    b: nn.Module,
    example: Tensor | None = None,
    *,
    align: bool = True,
    method: str = "cosine",
    data: object | None = None,
) -> tuple[nn.Module, tuple[str, ...]]:
    """``b`` aligned to ``a`` (or ``b`` itself, checked) and the binary tensor names."""
    check_pair(a, b, ("a", "b"))
    names = binary_weights(a, "a")
    if not align:
        return b, names
    x = infer_example_input(a, example, data)
    return align_model(b, a, x, method), names


def _binary_vector(model: nn.Module, names: tuple[str, ...]) -> Tensor:
    state = model.state_dict()
    return torch.cat([state[n].detach().reshape(-1).to(torch.float64) for n in names])


def hamming_distance(
    a: nn.Module,
    b: nn.Module,
    example_input: Tensor | None = None,
    *,
    align: bool = True,
    method: str = "cosine",
) -> HammingDistance:
    """The Hamming distance between two binary networks (count and fraction), after alignment.

    Parameters
    ----------
    a, b : nn.Module
        Plain binary networks of one architecture (left untouched).
    example_input : Tensor, optional
        Inputs to trace the models for alignment; default 16 seeded normal inputs when the
        first layer is Linear (a convolutional model needs it).
    align : bool
        Align ``b`` to ``a`` first (:func:`binary.align`); False compares the weights as they
        are.
    method : {"cosine", "weights"}
        The alignment method.

    Returns
    -------
    HammingDistance

    Raises
    ------
    BinaryError
        For real-valued weights (naming the parameter), two architectures (saying what
        differs), or a model that cannot be traced.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from canonicalize import Sign
    >>> a = nn.Sequential(nn.Linear(3, 2, bias=False), Sign(), nn.Linear(2, 1, bias=False))
    >>> for p in a.parameters():
    ...     _ = p.data.copy_(torch.ones_like(p))
    >>> b = nn.Sequential(nn.Linear(3, 2, bias=False), Sign(), nn.Linear(2, 1, bias=False))
    >>> b.load_state_dict(a.state_dict())
    <All keys matched successfully>
    >>> _ = b[0].weight.data[0, 0].fill_(-1.0)
    >>> d = hamming_distance(a, b)
    >>> d.count, d.total, d.overlap
    (1, 8, 0.75)
    """
    moved, names = aligned_pair(a, b, example_input, align=align, method=method)
    sa, sb = a.state_dict(), moved.state_dict()
    per_tensor = {n: int((sa[n] != sb[n].to(sa[n])).sum()) for n in names}
    count = sum(per_tensor.values())
    total = sum(sa[n].numel() for n in names)
    return HammingDistance(
        count=count,
        total=total,
        fraction=count / total,
        overlap=1.0 - 2.0 * count / total,
        per_tensor=per_tensor,
        aligned=align,
    )


def overlap(
    a: nn.Module,
    b: nn.Module,
    example_input: Tensor | None = None,
    *,
    align: bool = True,
    method: str = "cosine",
) -> float:
    """The normalized overlap ``q = (1/N) sum_i w_a,i w_b,i`` of two binary networks, after
    alignment (1 for equal weights, -1 for opposite ones, about 0 for unrelated ones).

    Same arguments and errors as :func:`hamming_distance`;
    ``q = 1 - 2 * hamming_distance(...).fraction``.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> a = nn.Linear(4, 1, bias=False)
    >>> _ = a.weight.data.copy_(torch.tensor([[1.0, 1.0, -1.0, 1.0]]))
    >>> b = nn.Linear(4, 1, bias=False)
    >>> _ = b.weight.data.copy_(torch.tensor([[1.0, -1.0, -1.0, -1.0]]))
    >>> overlap(a, b)
    0.0
    """
    moved, names = aligned_pair(a, b, example_input, align=align, method=method)
    va, vb = _binary_vector(a, names), _binary_vector(moved, names)
    return float((va * vb).mean())
