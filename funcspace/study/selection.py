"""Which pairs of minima deserve an expensive path: those that can still change the minimax tree.

Every pair ``(i, j)`` has an upper bound ``U[i, j]``, its best barrier known so far (a cheap
batched path: aligned linear or geodesic; ``inf`` when none was measured), and a lower bound
``L[i, j]`` that no path between them can go below (the higher end's own error, when barriers
are peaks; 0 for heights above the chord). An expensive measurement (an optimized path) gives
the pair's value, between the two; the pair's best value is then the lower of it and ``U``.

The minimax barrier ``P[i, j]`` (the highest edge on the minimum spanning tree's path between
``i`` and ``j``) can only fall as measurements come in. A pair with ``L[i, j] >= P[i, j]``
cannot lower it, nor any other minimax value (the cycle property of minimum spanning trees),
now or after any later measurement: it is skipped for good. :func:`select` measures the
remaining candidates one at a time, re-applying the rule after each, until none is left (the
minimax matrix is then the one measuring every pair would give) or the budget is spent.
:func:`candidates` is the rule alone, for a caller that runs the measurements itself.

With a ``tolerance`` the rule skips a pair when ``L + tolerance >= P``: measuring it could lower
the tree by at most the tolerance, and the final minimax matrix lies between the exact one and
the exact one plus the tolerance. The bounds seldom meet exactly unless barriers are exactly 0
(heights above the chord, in a discrete error); the error's resolution (one example in the
data set) is a natural tolerance.

Order: lowest lower bound first (Kruskal's order: when measurements reach their lower bounds,
at most ``N - 1`` pairs are measured), and among equal lower bounds the lowest upper bound
first: when the expensive values follow the cheap ones (they do for optimized paths against
straight ones), the pairs measured first build a low tree, under which more of the others
fall within the tolerance. On the default study's 15 measured pairs this order needed 7 pairs
for a tolerance of 0.05 where largest-gain-first needed 9.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from funcspace._store import Stored
from funcspace.errors import FuncspaceError
from funcspace.graph.analysis import check_weights, minimax_matrix, spanning_tree

__all__ = ["Selection", "SelectionError", "Skip", "candidates", "select"]

Pair = tuple[int, int]


class SelectionError(FuncspaceError):
    """Bad input to the pair selection: the message says what, where, and what to do."""


@dataclass(frozen=True)
class Skip:
    """A pair left unmeasured, and why.

    Attributes
    ----------
    pair : (int, int)
        ``i < j``.
    lower : float
        Its lower bound.
    tree_max : float
        The final minimax value between its ends (the highest edge on the tree path).
    ruled_out : bool
        True when ``lower + tolerance >= tree_max``: measuring it cannot change the tree
        (by more than the tolerance). False for a candidate left when the budget was spent.
    reason : str
        In words, e.g. ``"lower bound 0.31 >= tree path max 0.22"``.
    """

    pair: Pair
    lower: float
    tree_max: float
    ruled_out: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """Plain data, for JSON."""
        return {
            "pair": list(self.pair),
            "lower": self.lower,
            "tree_max": self.tree_max,
            "ruled_out": self.ruled_out,
            "reason": self.reason,
        }


@dataclass(frozen=True, eq=False)
class Selection(Stored):
    """What :func:`select` measured, what it skipped and why, and the minimax barriers.

    :meth:`save` stores :meth:`to_dict` as JSON.

    Attributes
    ----------
    n : int
        The number of minima.
    measured : tuple of (int, int)
        The pairs measured, in order (``i < j``).
    values : tuple of float
        Their measured values, in the same order.
    prior : tuple of (int, int)
        Pairs measured before (given to :func:`select`), not measured again.
    skipped : tuple of Skip
        Every other pair, with its reason.
    weights : numpy.ndarray (N, N)
        Each pair's best known value at the end (``min(U, measured)``; ``inf``: no path).
    minimax : numpy.ndarray (N, N)
        The minimax barriers under ``weights`` (0 on the diagonal): when :attr:`complete`,
        equal to those of measuring every pair.
    tree : tuple of (i, j, value)
        The final minimum spanning tree (forest), lowest first.
    budget : int or None
        The measurement budget given.
    tolerance : float
        The tolerance given: when complete, ``exact <= minimax <= exact + tolerance``.
    """

    n: int
    measured: tuple[Pair, ...]
    values: tuple[float, ...]
    prior: tuple[Pair, ...]
    skipped: tuple[Skip, ...]
    weights: np.ndarray = field(repr=False)
    minimax: np.ndarray = field(repr=False)
    tree: tuple[tuple[int, int, float], ...]
    budget: int | None
    tolerance: float = 0.0

    @property
    def measurements(self) -> int:
        """How many pairs were measured (``len(measured)``)."""
        return len(self.measured)

    @property
    def pairs(self) -> int:
        """All pairs, ``N (N - 1) / 2``."""
        return self.n * (self.n - 1) // 2

    @property
    def remaining(self) -> tuple[Pair, ...]:
        """The candidates left unmeasured when the budget ran out (empty when complete)."""
        return tuple(s.pair for s in self.skipped if not s.ruled_out)

    @property
    def complete(self) -> bool:
        """True when no pair left can change the tree (then :attr:`minimax` is exact)."""
        return not self.remaining

    def to_dict(self) -> dict[str, Any]:
        """Plain data, for JSON (``inf`` as ``Infinity``)."""
        return {
            "n": self.n,
            "measured": [list(p) for p in self.measured],
            "values": list(self.values),
            "prior": [list(p) for p in self.prior],
            "skipped": [s.to_dict() for s in self.skipped],
            "weights": self.weights.tolist(),
            "minimax": self.minimax.tolist(),
            "tree": [list(e) for e in self.tree],
            "budget": self.budget,
            "tolerance": self.tolerance,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Selection:
        """The selection :meth:`to_dict` described."""
        return cls(
            n=int(data["n"]),
            measured=tuple((int(i), int(j)) for i, j in data["measured"]),
            values=tuple(float(v) for v in data["values"]),
            prior=tuple((int(i), int(j)) for i, j in data["prior"]),
            skipped=tuple(
                Skip(
                    pair=(int(s["pair"][0]), int(s["pair"][1])),
                    lower=float(s["lower"]),
                    tree_max=float(s["tree_max"]),
                    ruled_out=bool(s["ruled_out"]),
                    reason=str(s["reason"]),
                )
                for s in data["skipped"]
            ),
            weights=np.array(data["weights"], dtype=np.float64).reshape(data["n"], data["n"]),
            minimax=np.array(data["minimax"], dtype=np.float64).reshape(data["n"], data["n"]),
            tree=tuple((int(i), int(j), float(v)) for i, j, v in data["tree"]),
            budget=None if data["budget"] is None else int(data["budget"]),
            tolerance=float(data["tolerance"]),
        )

    def __repr__(self) -> str:
        ruled = sum(s.ruled_out for s in self.skipped)
        state = "complete" if self.complete else f"{len(self.remaining)} candidates left"
        if self.complete and self.tolerance:
            state += f" within {self.tolerance:.4g}"
        return (
            f"Selection({self.measurements} of {self.pairs} pairs measured"
            + (f" ({len(self.prior)} before)" if self.prior else "")
            + f", {ruled} ruled out by the tree bound; {state})"
        )


# --------------------------------------------------------------------------- the rule


def candidates(
    upper: Any, lower: Any, *, measured: Collection[Pair] = (), tolerance: float = 0.0
) -> list[Pair]:
    """The pairs whose measurement could still lower the minimax tree, best first.

    Parameters
    ----------
    upper : (N, N) array_like
        Each pair's best known value (``inf``: none); symmetric, no NaN.
    lower : (N, N) array_like, (N,) array_like or float
        Each pair's lower bound: a symmetric matrix, a value per minimum (the pair's bound is
        the higher of its ends' values: their own errors), or one number for every pair (0
        for heights above the chord). Finite, and nowhere above ``upper``.
    measured : collection of (i, j)
        Pairs measured already (their values folded into ``upper``): never candidates.
    tolerance : float
        A pair that could lower the tree by at most this much is no candidate (default 0).

    Returns
    -------
    list of (i, j)
        ``i < j``; pairs with ``lower + tolerance < minimax(upper)`` not yet measured, lowest
        lower bound first, then lowest upper bound, then by index.

    Raises
    ------
    SelectionError
        For matrices that are not square and symmetric, NaN, a lower bound that is not finite
        or above the upper bound, or a measured pair out of range.

    Examples
    --------
    >>> upper = [[0, 0.5, 0.9], [0.5, 0, 0.3], [0.9, 0.3, 0]]
    >>> candidates(upper, [0.5, 0.1, 0.2])   # minimum 0's own error reaches the tree's 0.5
    [(1, 2)]
    """
    w, low = _bounds(upper, lower)
    done = _pairs("measured", measured, len(w))
    return _candidates(w, low, minimax_matrix(w), done, _tolerance(tolerance))


def select(
    upper: Any,
    lower: Any,
    measure: Callable[[int, int], float],
    *,
    budget: int | None = None,
    measured: Mapping[Pair, float] | None = None,
    tolerance: float = 0.0,
) -> Selection:
    """Measure pairs one at a time until no pair left can change the minimax tree.

    After each measurement the pair's best value becomes ``min(upper, value)`` and the rule
    (module docstring) is applied again; the next pair is the first of :func:`candidates`.

    Parameters
    ----------
    upper, lower, tolerance
        As for :func:`candidates`.
    measure : callable (i, j) -> float
        The expensive measurement of pair ``(i, j)``, ``i < j``: its value, a number that is
        not NaN and not below the pair's lower bound (``inf``: no path found). A value above
        ``upper`` leaves ``upper`` as the pair's best value. Its exceptions propagate.
    budget : int, optional
        At most this many measurements (default: as many as the rule asks for).
    measured : dict of (i, j) -> float, optional
        Values measured before (a resumed selection): folded in, not measured again, not
        counted against the budget.

    Returns
    -------
    Selection
        Complete (:attr:`Selection.complete`) unless the budget ran out first; its
        ``minimax`` then equals that of measuring every pair (is at most ``tolerance`` above
        it).

    Raises
    ------
    SelectionError
        For bad bounds (see :func:`candidates`), a bad budget, or a measured value that is NaN
        or below the pair's lower bound (the bound was wrong, and pairs it ruled out might
        matter).

    Examples
    --------
    >>> import numpy as np
    >>> upper = np.array([[0, 0.4, 0.5], [0.4, 0, 0.6], [0.5, 0.6, 0]])
    >>> exact = np.array([[0, 0.1, 0.1], [0.1, 0, 0.3], [0.1, 0.3, 0]])
    >>> s = select(upper, 0.1, lambda i, j: exact[i, j])
    >>> s.measured, s.skipped[0].reason
    (((0, 1), (0, 2)), 'lower bound 0.1 >= tree path max 0.1')
    """
    w, low = _bounds(upper, lower)
    tol = _tolerance(tolerance)
    n = len(w)
    if budget is not None and (
        isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 0
    ):
        raise SelectionError(f"budget must be a non-negative integer or None, got {budget!r}")
    known = {} if measured is None else dict(measured)
    prior = _pairs("measured", known, n)
    for (i, j), value in zip(prior, known.values(), strict=True):
        w[i, j] = w[j, i] = min(w[i, j], _checked(value, (i, j), low))
    done = set(prior)
    pairs: list[Pair] = []
    values: list[float] = []
    while budget is None or len(pairs) < budget:
        order = _candidates(w, low, minimax_matrix(w), done, tol)
        if not order:
            break
        i, j = order[0]
        value = _checked(measure(i, j), (i, j), low)
        pairs.append((i, j))
        values.append(value)
        done.add((i, j))
        w[i, j] = w[j, i] = min(w[i, j], value)
    final = minimax_matrix(w)
    skipped = []
    for i, j in zip(*np.triu_indices(n, 1), strict=True):
        pair = (int(i), int(j))
        if pair in done:
            continue
        lo, top = float(low[i, j]), float(final[i, j])
        ruled = lo + tol >= top
        plus = f" + tolerance {tol:.4g}" if tol else ""
        reason = f"lower bound {lo:.4g}{plus} {'>=' if ruled else '<'} tree path max {top:.4g}"
        if not ruled:
            reason = f"budget of {budget} measurements spent; {reason}: could lower the tree"
        skipped.append(Skip(pair, lo, top, ruled, reason))
    return Selection(
        n=n,
        measured=tuple(pairs),
        values=tuple(values),
        prior=tuple(prior),
        skipped=tuple(skipped),
        weights=w,
        minimax=final,
        tree=tuple(spanning_tree(w)),
        budget=None if budget is None else int(budget),
        tolerance=tol,
    )


# --------------------------------------------------------------------------- helpers


def _candidates(
    w: np.ndarray, low: np.ndarray, tree_max: np.ndarray, done: Collection[Pair], tol: float
) -> list[Pair]:
    iu, ju = np.nonzero(np.triu(low + tol < tree_max, 1))
    found = [(int(i), int(j)) for i, j in zip(iu, ju, strict=True) if (i, j) not in done]
    return sorted(found, key=lambda p: (low[p], w[p], p))


def _tolerance(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise SelectionError(f"tolerance must be a number >= 0, got {value!r}")
    if not (math.isfinite(value) and value >= 0):
        raise SelectionError(f"tolerance must be a finite number >= 0, got {value!r}")
    return float(value)


def _bounds(upper: Any, lower: Any) -> tuple[np.ndarray, np.ndarray]:
    w = check_weights("upper", upper, SelectionError)
    n = len(w)
    try:
        given = np.asarray(lower, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise SelectionError(f"lower must be a number, an (N,) or an (N, N) array: {e}") from e
    if given.ndim == 0:
        low = np.full((n, n), float(given))
    elif given.shape == (n,):
        low = np.maximum.outer(given, given)
    elif given.shape == (n, n):
        low = check_weights("lower", given, SelectionError)
    else:
        raise SelectionError(
            f"lower must be a number, an ({n},) vector (one value per minimum) or an "
            f"({n}, {n}) matrix to go with upper; got shape {given.shape}"
        )
    np.fill_diagonal(low, 0.0)
    off = ~np.eye(n, dtype=bool)
    if not np.isfinite(low[off]).all():
        i, j = np.argwhere(~np.isfinite(low) & off)[0]
        raise SelectionError(
            f"the lower bound of pair ({i}, {j}) is {low[i, j]}; it must be finite"
        )
    above = (low > w) & off
    if above.any():
        i, j = np.argwhere(above)[0]
        raise SelectionError(
            f"the lower bound of pair ({i}, {j}), {low[i, j]:.6g}, is above its upper bound "
            f"{w[i, j]:.6g}; a path measured at the upper bound cannot be below the lower bound: "
            "check both"
        )
    return w, low


def _pairs(name: str, pairs: Iterable[Any], n: int) -> list[Pair]:
    out = []
    for p in pairs:
        try:
            i, j = (int(x) for x in p)
        except (TypeError, ValueError) as e:
            raise SelectionError(f"{name} must hold pairs of indices (i, j), got {p!r}") from e
        if not (0 <= i < n and 0 <= j < n) or i == j:
            raise SelectionError(
                f"{name} holds the pair {p!r}, not two different minima of 0..{n - 1}"
            )
        out.append((min(i, j), max(i, j)))
    return out


def _checked(value: Any, pair: Pair, low: np.ndarray) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError) as e:
        raise SelectionError(f"the measurement of pair {pair} is no number: {value!r}") from e
    if math.isnan(out):
        raise SelectionError(
            f"the measurement of pair {pair} is NaN; a failed measurement is inf (no path "
            "found) or an exception, never NaN"
        )
    if out < low[pair]:
        raise SelectionError(
            f"the measurement of pair {pair}, {out:.6g}, is below its lower bound "
            f"{low[pair]:.6g}: the bounds are wrong, and pairs they ruled out may matter; fix "
            "the lower bounds (measured the same way as the paths?)"
        )
    return out
