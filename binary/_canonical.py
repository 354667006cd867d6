"""The canonical form's search: signs and order from the input on, tied units tried in every
order that matters, the lexicographically largest state kept.

Why this is canonical: after the rule (first non-zero incoming entry positive, units sorted in
decreasing lexicographic order) only the order of *tied* units (equal incoming vectors) is
left free. Trying every order of every tie and keeping, layer after layer, the candidates whose
sorted rows are largest, then the largest whole state, gives a set of candidates that depends
only on the symmetry class (modulo the layers not yet processed), so its maximum is the same
for every member of the class. Tied units equal in every tensor (twins) are interchangeable
and are not permuted among themselves.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from itertools import product

import numpy as np
import torch
from torch import Tensor

from canonicalize.spec import SymmetrySpec
from canonicalize.transform import (
    State,
    block_rows,
    fold_biases,
    permute_group,
    rows_of,
    scale_units,
    schedule,
    site_rows,
    unit_matrix,
)

from .errors import BinaryError

Step = tuple[str, int, tuple[int, ...]]


def flip_units(state: State, spec: SymmetrySpec, scale: int, signs: Tensor) -> None:
    """Reverse the sign of the units of a sign class where ``signs`` is -1, in place, exactly.

    ``scale_units`` with factors +-1, keeping the running variances as they are (they are
    invariant to a sign; its ``c^2 (var + eps) - eps`` would round them).
    """
    cls = spec.scale_class(scale)
    kept = {}
    for absorb in cls.absorbs:
        bn = spec.batchnorms[absorb.batchnorm]
        if bn.tracked:
            kept[f"{bn.name}.running_var"] = state[f"{bn.name}.running_var"]
    scale_units(state, spec, scale, signs.to(torch.float64))
    state.update(kept)


def sign_classes(spec: SymmetrySpec) -> list[int]:
    """The scale classes whose sign is free (the sign reversals of the binary group)."""
    return [cls.index for cls in spec.scales if cls.sign]


def incoming_signs(state: State, spec: SymmetrySpec, sites: tuple[int, ...]) -> Tensor:
    """+1 or -1 per unit: the sign of the first non-zero entry of its incoming vector (+1 for
    a zero vector)."""
    rows = site_rows(state, spec, sites)
    first = (rows != 0).to(torch.int8).argmax(dim=1)
    lead = rows[torch.arange(rows.shape[0], device=rows.device), first]
    return torch.where(lead < 0, -1.0, 1.0).to(torch.float64)


def lexsort_descending(keys: np.ndarray) -> np.ndarray:
    """The stable order of the rows of ``keys`` (2-D) in decreasing lexicographic order."""
    if keys.shape[1] == 0:
        return np.arange(keys.shape[0])
    return np.lexsort((-keys).T[::-1])


def steps(spec: SymmetrySpec) -> list[Step]:
    """canonicalize's schedule, sign steps only, each group ordered after all its signs."""
    out = [s for s in schedule(spec) if s[0] == "order" or spec.scale_class(s[1]).sign]
    for group in spec.groups:
        here = out.index(("order", group.index, _sites_of(out, group.index)))
        last = max(
            (
                i
                for i, (kind, k, _) in enumerate(out)
                if kind == "scale" and spec.scale_class(k).group == group.index
            ),
            default=-1,
        )
        if last <= here:
            continue
        for kind, k, sites in out[here + 1 : last + 1]:
            readers = sites if kind == "scale" else spec.groups[k].sites
            if any(group.index in spec.sites[i].input_groups for i in readers):
                raise BinaryError(
                    f"internal: group {group.index} is read before its signs are fixed; "
                    "please report this with the model"
                )
        out.insert(last, out.pop(here))
    return out


def _sites_of(out: list[Step], group: int) -> tuple[int, ...]:
    return next(s for kind, g, s in out if kind == "order" and g == group)


def _key_rows(state: State, spec: SymmetrySpec, group: int, processed: set[int]) -> Tensor:
    """Each unit's incoming vector in canonical coordinates: every unit-row tensor of the group
    whose columns are already canonical (weights, bias, BatchNorm parameters and statistics)."""
    g = spec.groups[group]
    if g.blocks:
        return block_rows(state, spec, group)
    waiting = {
        row
        for site in spec.sites
        if not all(i in processed for i in site.input_groups)
        for row in site.rows
    }
    parts = [
        unit_matrix(rows_of(state[a.tensor], a.row_slice), 0, a.block, a.index)
        for a in g.axes
        if a.dim == 0 and a.tensor not in waiting
    ]
    if not parts:
        return torch.zeros(g.size, 0, dtype=torch.float64)
    return torch.cat(parts, dim=1)


def _signatures(state: State, spec: SymmetrySpec, group: int) -> list[bytes]:
    """Each unit's slice of every tensor of the group: equal signatures are twins."""
    parts = [
        unit_matrix(rows_of(state[a.tensor], a.row_slice), a.dim, a.block, a.index)
        for a in spec.groups[group].axes
    ]
    rows = torch.cat(parts, dim=1).cpu().numpy()
    return [row.tobytes() for row in rows]


def _arrangements(types: list[bytes]) -> Iterator[tuple[int, ...]]:
    """Every distinct order of a run of units, as positions into the run (twins kept in
    their order)."""
    labels = list(dict.fromkeys(types))
    queues = {t: [i for i, u in enumerate(types) if u == t] for t in labels}
    counts = Counter(types)

    def walk(prefix: list[bytes]) -> Iterator[list[bytes]]:
        if len(prefix) == len(types):
            yield prefix
            return
        for t in labels:
            if counts[t]:
                counts[t] -= 1
                yield from walk([*prefix, t])
                counts[t] += 1

    for sequence in walk([]):
        taken = {t: iter(queues[t]) for t in labels}
        yield tuple(next(taken[t]) for t in sequence)


def _multinomial(types: list[bytes]) -> int:
    out = math.factorial(len(types))
    for count in Counter(types).values():
        out //= math.factorial(count)
    return out


def _runs(keys: np.ndarray) -> list[tuple[int, int]]:
    """``(start, stop)`` of every run of two or more equal consecutive rows."""
    runs, start = [], 0
    for i in range(1, len(keys) + 1):
        if i == len(keys) or not np.array_equal(keys[i], keys[start]):
            if i - start > 1:
                runs.append((start, i))
            start = i
    return runs


def _fingerprint(state: State) -> bytes:
    return b"".join(v.cpu().numpy().tobytes() for v in state.values() if v.is_floating_point())


def _flat(state: State) -> np.ndarray:
    return np.concatenate(
        [v.cpu().numpy().ravel() for v in state.values() if v.is_floating_point()]
    )


def _compare(a: np.ndarray, b: np.ndarray) -> int:
    """-1, 0 or 1: ``a`` against ``b`` lexicographically (equal lengths)."""
    differ = np.flatnonzero(a != b)
    if len(differ) == 0:
        return 0
    i = differ[0]
    return 1 if a[i] > b[i] else -1


def _largest(items: list, key) -> list:
    """The items whose key (a flat array) is lexicographically largest, in their order."""
    if len(items) == 1:
        return items
    keys = [key(item) for item in items]
    best = keys[0]
    for k in keys[1:]:
        if _compare(k, best) > 0:
            best = k
    return [item for item, k in zip(items, keys, strict=True) if _compare(k, best) == 0]


def canonical_state(state: State, spec: SymmetrySpec, *, fold: bool, limit: int) -> State:
    """The canonical form of a float64 state (see :func:`binary.canonical_form`)."""
    if fold:
        fold_biases(state, spec)
    candidates = [state]
    processed: set[int] = set()
    for kind, index, sites in steps(spec):
        if kind == "scale":
            for c in candidates:
                signs = incoming_signs(c, spec, sites)
                if bool((signs < 0).any()):
                    flip_units(c, spec, index, signs)
            continue
        keyed = []
        for c in candidates:
            keys = _key_rows(c, spec, index, processed).cpu().numpy()
            order = lexsort_descending(keys)
            permute_group(c, spec, index, torch.as_tensor(order, dtype=torch.long))
            keyed.append((c, keys[order]))
        keyed = _largest(keyed, lambda item: item[1].ravel())
        candidates = _expand(keyed, spec, index, limit)
        processed.add(index)
    return _largest(candidates, _flat)[0]


def _expand(keyed: list[tuple[State, np.ndarray]], spec, group: int, limit: int) -> list[State]:
    """Every candidate in every order of its tied units that differ, duplicates dropped."""
    plans = []
    total = 0
    for state, keys in keyed:
        runs = _runs(keys)
        if runs:
            signatures = _signatures(state, spec, group)
            runs = [(a, b, signatures[a:b]) for a, b in runs]
            runs = [r for r in runs if len(set(r[2])) > 1]
        total += math.prod(_multinomial(r[2]) for r in runs)
        plans.append((state, runs))
    if total > limit:
        names = ", ".join(spec.sites[i].label for i in spec.groups[group].sites)
        raise BinaryError(
            f"canonical_form: the units of layer(s) [{names}] have equal incoming weights but "
            f"differ downstream in {total} orders to compare, more than limit={limit}; pass a "
            "larger limit (the search grows with the number of such ties)"
        )
    out: dict[bytes, State] = {}
    for state, runs in plans:
        if not runs:
            out.setdefault(_fingerprint(state), state)
            continue
        options = [[(a, arrangement) for arrangement in _arrangements(sig)] for a, _, sig in runs]
        for choice in product(*options):
            perm = torch.arange(spec.groups[group].size)
            for start, arrangement in choice:
                moved = torch.as_tensor(arrangement, dtype=torch.long) + start
                perm[start : start + len(arrangement)] = moved
            new = {k: v.clone() for k, v in state.items()}
            permute_group(new, spec, group, perm)
            out.setdefault(_fingerprint(new), new)
    return list(out.values())
