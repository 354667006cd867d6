"""Tests for funcspace.study.selection: the pruned pair selection against measuring every pair,
the pruning rule against brute-force minimax, budgets, resumption, and refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from funcspace.errors import FuncspaceError
from funcspace.graph import minimax_matrix
from funcspace.study import Selection, SelectionError, candidates, select

GRID = 8  # values on a grid of eighths: ties (a bound equal to a tree edge) are common


def brute_minimax(w: np.ndarray) -> np.ndarray:
    """Floyd-Warshall over (max, min): the lowest highest edge over all chains."""
    m = np.array(w, dtype=np.float64)
    np.fill_diagonal(m, 0.0)
    for k in range(len(m)):
        m = np.minimum(m, np.maximum.outer(m[:, k], m[k, :]))
    return m


def symmetric(n: int, values: list[float]) -> np.ndarray:
    m = np.zeros((n, n))
    m[np.triu_indices(n, 1)] = values
    return m + m.T


@st.composite
def problems(draw, max_n: int = 8):
    """(lower as given, lower matrix, upper, true values): random complete graphs, values in
    [L, U], on a grid; the lower bound given as a matrix, per minimum, or 0."""
    n = draw(st.integers(1, max_n))
    pairs = n * (n - 1) // 2
    grid = st.integers(0, GRID).map(lambda k: k / GRID)
    mode = draw(st.sampled_from(["nodes", "zero", "matrix"]))
    if mode == "nodes":
        errors = np.array(draw(st.lists(grid, min_size=n, max_size=n)))
        given_lower = errors
        low = np.maximum.outer(errors, errors)
    elif mode == "zero":
        given_lower = 0.0
        low = np.zeros((n, n))
    else:
        low = symmetric(n, draw(st.lists(grid, min_size=pairs, max_size=pairs)))
        given_lower = low
    gaps = draw(st.lists(st.one_of(grid, st.just(math.inf)), min_size=pairs, max_size=pairs))
    upper = low + symmetric(n, gaps)
    fractions = draw(st.lists(grid, min_size=pairs, max_size=pairs))
    spread = np.where(np.isinf(upper - low), 1.0, upper - low)
    true = low + symmetric(n, fractions) * spread
    np.fill_diagonal(upper, 0.0)
    np.fill_diagonal(true, 0.0)
    return given_lower, low, upper, true


def all_pairs_minimax(upper: np.ndarray, true: np.ndarray) -> np.ndarray:
    return minimax_matrix(np.minimum(upper, true))


# --------------------------------------------------------------------------- properties


@given(problems())
def test_pruned_selection_gives_the_minimax_of_measuring_every_pair(problem):
    lower, low, upper, true = problem
    s = select(upper, lower, lambda i, j: true[i, j])
    assert s.complete
    np.testing.assert_array_equal(s.minimax, all_pairs_minimax(upper, true))
    np.testing.assert_array_equal(s.minimax, brute_minimax(np.minimum(upper, true)))
    n = len(upper)
    every = {(i, j) for i in range(n) for j in range(i + 1, n)}
    skipped = {k.pair for k in s.skipped}
    assert set(s.measured) | skipped == every and not set(s.measured) & skipped
    assert s.measurements + len(s.skipped) == s.pairs == n * (n - 1) // 2
    assert list(s.values) == [true[p] for p in s.measured]


@given(problems())
def test_never_measures_a_pair_its_lower_bound_rules_out(problem):
    lower, low, upper, true = problem
    current = upper.copy()
    seen = []

    def measure(i, j):
        assert i < j and (i, j) not in seen
        assert low[i, j] < brute_minimax(current)[i, j]  # it could still lower the tree
        assert candidates(current, lower, measured=seen)[0] == (i, j)
        seen.append((i, j))
        current[i, j] = current[j, i] = min(current[i, j], true[i, j])
        return true[i, j]

    s = select(upper, lower, measure)
    assert list(s.measured) == seen
    final = brute_minimax(s.weights)
    for skip in s.skipped:
        assert skip.ruled_out and skip.lower >= final[skip.pair]
        assert skip.tree_max == final[skip.pair]
        assert skip.reason.startswith(f"lower bound {skip.lower:.4g} >= tree path max")


@given(problems(), st.sampled_from([1 / 16, 1 / 8, 0.3, 1.0]))
def test_a_tolerance_keeps_the_minimax_within_it_of_every_pair(problem, tolerance):
    lower, low, upper, true = problem
    s = select(upper, lower, lambda i, j: true[i, j], tolerance=tolerance)
    exact = all_pairs_minimax(upper, true)
    assert s.complete and s.tolerance == tolerance
    assert (exact <= s.minimax).all() and (s.minimax <= exact + tolerance).all()
    for skip in s.skipped:
        assert skip.lower + tolerance >= s.minimax[skip.pair]
        assert f" + tolerance {tolerance:.4g} >= tree path max" in skip.reason


@given(problems())
def test_candidates_are_exactly_the_pairs_below_the_tree(problem):
    lower, low, upper, _ = problem
    p = brute_minimax(upper)
    got = candidates(upper, lower)
    n = len(upper)
    expected = {(i, j) for i in range(n) for j in range(i + 1, n) if low[i, j] < p[i, j]}
    assert set(got) == expected and len(got) == len(expected)
    keys = [(low[q], upper[q], q) for q in got]  # lowest bound, then lowest upper bound
    assert keys == sorted(keys)
    assert not set(candidates(upper, lower, measured=got[:2])) & set(got[:2])


@given(problems())
def test_measurements_reaching_their_lower_bounds_take_at_most_n_minus_1(problem):
    """Kruskal's order: when every path reaches its lower bound, the measured pairs form a
    forest."""
    lower, low, upper, _ = problem
    s = select(upper, lower, lambda i, j: low[i, j])
    assert s.measurements <= max(len(upper) - 1, 0)
    np.testing.assert_array_equal(s.minimax, all_pairs_minimax(upper, low))


@given(problems(), st.integers(0, 6))
def test_a_budget_stops_early_on_the_same_sequence(problem, budget):
    lower, _, upper, true = problem
    full = select(upper, lower, lambda i, j: true[i, j])
    part = select(upper, lower, lambda i, j: true[i, j], budget=budget)
    assert part.measured == full.measured[:budget]
    assert part.complete == (budget >= full.measurements)
    for skip in part.skipped:
        assert skip.ruled_out or skip.reason.startswith(f"budget of {budget} measurements spent")
    assert set(part.remaining) <= set(candidates(part.weights, lower, measured=part.measured))


@given(problems(), st.integers(0, 4))
def test_a_resumed_selection_measures_only_the_rest(problem, before):
    lower, _, upper, true = problem
    full = select(upper, lower, lambda i, j: true[i, j])
    prior = {p: true[p] for p in full.measured[:before]}
    resumed = select(upper, lower, lambda i, j: true[i, j], measured=prior)
    assert resumed.prior == tuple(prior)
    assert resumed.measured == full.measured[len(prior) :]
    np.testing.assert_array_equal(resumed.minimax, full.minimax)


# --------------------------------------------------------------------------- exact cases


def test_a_path_measured_above_its_upper_bound_leaves_the_bound():
    upper = np.array([[0, 0.3], [0.3, 0]])
    s = select(upper, 0.0, lambda i, j: 0.9)
    assert s.measured == ((0, 1),) and s.values == (0.9,)
    assert s.weights[0, 1] == 0.3 and s.minimax[0, 1] == 0.3


def test_a_pair_without_a_cheap_path_is_measured_and_inf_is_no_path():
    upper = np.array([[0, np.inf, 0.2], [np.inf, 0, np.inf], [0.2, np.inf, 0]])
    s = select(upper, 0.2, lambda i, j: math.inf)
    assert set(s.measured) == {(0, 1), (1, 2)}
    assert s.minimax[0, 1] == math.inf and s.complete


def test_the_rule_in_numbers_and_the_result_in_words():
    u = np.array([[0, 0.4, 0.5], [0.4, 0, 0.6], [0.5, 0.6, 0]])
    exact = np.array([[0, 0.1, 0.1], [0.1, 0, 0.3], [0.1, 0.3, 0]])
    s = select(u, 0.1, lambda i, j: exact[i, j])
    assert s.measured == ((0, 1), (0, 2))
    (skip,) = s.skipped
    assert skip.pair == (1, 2) and skip.ruled_out
    assert skip.reason == "lower bound 0.1 >= tree path max 0.1"
    assert s.tree == ((0, 1, 0.1), (0, 2, 0.1))
    assert repr(s) == "Selection(2 of 3 pairs measured, 1 ruled out by the tree bound; complete)"
    short = select(u, 0.1, lambda i, j: exact[i, j], budget=1)
    assert not short.complete and short.remaining == ((0, 2), (1, 2))
    assert "budget of 1 measurements spent" in short.skipped[0].reason


def test_one_and_two_minima():
    s = select(np.zeros((1, 1)), 0.0, lambda i, j: pytest.fail("nothing to measure"))
    assert s.pairs == 0 and s.complete and s.minimax.shape == (1, 1)
    s = select([[0, 0.5], [0.5, 0]], [0.5, 0.0], lambda i, j: pytest.fail("ruled out"))
    assert s.skipped[0].reason == "lower bound 0.5 >= tree path max 0.5"


def test_selection_saves_and_loads(tmp_path):
    u = np.array([[0, 0.4, np.inf], [0.4, 0, 0.6], [np.inf, 0.6, 0]])
    s = select(u, 0.0, lambda i, j: 0.2, budget=1)
    back = Selection.load(s.save(tmp_path / "selection"))
    assert back.to_dict() == s.to_dict() and repr(back) == repr(s)
    np.testing.assert_array_equal(back.minimax, s.minimax)


# --------------------------------------------------------------------------- refusals


U2 = np.array([[0, 0.5], [0.5, 0]])


@pytest.mark.parametrize(
    ("upper", "lower", "match"),
    [
        ([[0, 0.5], [0.4, 0]], 0.0, r"upper is not symmetric: \[0, 1\] = 0.5"),
        ([[0, np.nan], [np.nan, 0]], 0.0, r"upper\[0, 1\] is NaN"),
        ([0.1, 0.2], 0.0, "square"),
        (U2, [0.0, 0.6], r"lower bound of pair \(0, 1\), 0.6, is above its upper bound 0.5"),
        (U2, np.nan, r"lower bound of pair \(0, 1\) is nan"),
        (U2, [0.0, 0.1, 0.2], r"an \(2,\) vector .* got shape \(3,\)"),
        (U2, [[0, 0.1], [0.2, 0]], "lower is not symmetric"),
        (U2, "low", "lower must be a number"),
    ],
)
def test_bad_bounds_are_refused(upper, lower, match):
    with pytest.raises(SelectionError, match=match):
        candidates(upper, lower)
    with pytest.raises(SelectionError, match=match):
        select(upper, lower, lambda i, j: 0.5)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (math.nan, r"pair \(0, 1\) is NaN"),
        (0.05, r"pair \(0, 1\), 0.05, is below its lower bound 0.1"),
        ("high", "is no number"),
    ],
)
def test_bad_measurements_are_refused(value, match):
    with pytest.raises(SelectionError, match=match):
        select(U2, 0.1, lambda i, j: value)


def test_bad_budget_and_prior_pairs_are_refused():
    assert issubclass(SelectionError, FuncspaceError)
    for budget in (-1, 1.5, True):
        with pytest.raises(SelectionError, match="budget must be a non-negative integer"):
            select(U2, 0.0, lambda i, j: 0.1, budget=budget)
    with pytest.raises(SelectionError, match=r"the pair \(0, 2\), not two different minima"):
        select(U2, 0.0, lambda i, j: 0.1, measured={(0, 2): 0.1})
    with pytest.raises(SelectionError, match=r"the pair \(1, 1\)"):
        candidates(U2, 0.0, measured=[(1, 1)])
    with pytest.raises(SelectionError, match="pairs of indices"):
        candidates(U2, 0.0, measured=[3])
    with pytest.raises(SelectionError, match=r"pair \(0, 1\) is NaN"):
        select(U2, 0.0, lambda i, j: 0.1, measured={(0, 1): math.nan})
    for tolerance in (-0.1, math.inf, "0"):
        with pytest.raises(SelectionError, match="tolerance must be"):
            select(U2, 0.0, lambda i, j: 0.1, tolerance=tolerance)
        with pytest.raises(SelectionError, match="tolerance must be"):
            candidates(U2, 0.0, tolerance=tolerance)
