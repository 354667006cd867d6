"""How long a path is: in parameters, and in function space (how often predictions change)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from funcspace._validate import eval_mode
from funcspace.data import Dataset, Pair, as_pair

from .path import Path, evenly_spaced


@dataclass(frozen=True)
class PathLength:
    """The length of a path measured at ``n`` evenly spaced points.

    Attributes
    ----------
    euclidean : float
        ``sum_i |theta(t_i+1) - theta(t_i)|`` over the parameters (for a straight path, exactly
        ``|theta_b - theta_a|``; longer for a curved one).
    function : float
        ``sum_i disagreement(t_i, t_i+1)``: the fraction of inputs whose predicted class changes
        between consecutive points, summed; at least the disagreement of the two ends (the
        triangle inequality), more when predictions change back and forth.
    steps : numpy array (n - 1,)
        The disagreement of each step.
    t : numpy array (n,)
    """

    euclidean: float
    function: float
    steps: np.ndarray
    t: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """Plain data, for JSON."""
        return {
            "euclidean": self.euclidean,
            "function": self.function,
            "steps": self.steps.tolist(),
            "t": self.t.tolist(),
        }


def euclidean_length(path: Path, n: int = 33) -> float:
    """The parameter-space length of ``path`` alone (no evaluation): the sum of the distances
    between ``n`` evenly spaced points, exact for a straight path, a lower bound converging
    from below as ``n`` grows for a curved one (:attr:`PathLength.euclidean`).

    Raises
    ------
    PathError
        For ``n < 2`` or a path that is not a :class:`Path`.

    Examples
    --------
    >>> from torch import nn
    >>> from paths import linear
    >>> a, b = nn.Linear(2, 1, bias=False), nn.Linear(2, 1, bias=False)
    >>> _ = a.weight.data.copy_(torch.tensor([[0.0, 0.0]]))
    >>> _ = b.weight.data.copy_(torch.tensor([[3.0, 4.0]]))
    >>> round(euclidean_length(linear(a, b)), 6)
    5.0
    """
    ts = evenly_spaced(path, n)
    params = path.params(ts)
    total = 0.0
    for i in range(len(ts) - 1):
        step = sum(float(((v[i + 1] - v[i]).double() ** 2).sum()) for v in params.values())
        total += step**0.5
    return total


def length(path: Path, data: Dataset | Pair, n: int = 33, *, split: str = "train") -> PathLength:
    """The length of ``path`` in parameters and in function space, at ``n`` points.

    Raises
    ------
    PathError
        For ``n < 2`` or a path that is not a :class:`Path`.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from paths import linear
    >>> a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    >>> result = length(linear(a, b), (torch.randn(50, 3), torch.zeros(50, dtype=torch.long)))
    >>> pairs = zip(a.parameters(), b.parameters())
    >>> distance = float(sum(((p - q).detach() ** 2).sum() for p, q in pairs))
    >>> abs(result.euclidean - distance**0.5) < 1e-5
    True
    """
    ts = evenly_spaced(path, n)
    euclidean = euclidean_length(path, n)
    x, _ = as_pair(data, split)
    predictions = []
    for t in ts:
        model = path.at(float(t))
        like = next(model.parameters())
        inputs = x.to(device=like.device, dtype=like.dtype) if x.is_floating_point() else x
        with eval_mode(model), torch.no_grad():
            predictions.append(model(inputs).argmax(-1))
    steps = np.array(
        [float((predictions[i + 1] != predictions[i]).double().mean()) for i in range(n - 1)]
    )
    return PathLength(euclidean, float(steps.sum()), steps, ts)
