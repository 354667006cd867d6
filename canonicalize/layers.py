"""Layers that canonicalize knows and that torch does not ship."""

import torch
from torch import nn


class Sign(nn.Module):
    """Sign activation, ``torch.sign`` as a module (binary networks).

    Odd (``sign(-z) = -sign(z)``) and invariant to a positive scale of its input
    (``sign(c z) = sign(z)`` for ``c > 0``), so a unit feeding it carries a sign symmetry and a
    positive scale that needs no compensation downstream.

    Examples
    --------
    >>> Sign()(torch.tensor([-2.0, 0.0, 3.0]))
    tensor([-1.,  0.,  1.])
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sign(x)
