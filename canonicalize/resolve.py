"""Turn the atoms of a graph walk into a :class:`SymmetrySpec`.

A *unit* is a class of unit atoms (channels that must move together). Units are interchangeable,
and form one :class:`PermGroup`, when they were made alike: the same layers created their atoms
(the same multiset of origins: the layer that opened them, the streams they joined, the
concatenation or slice that placed them) and their rows have the same freedoms. Two channels
of one convolution that a zero-padded shortcut treats differently (one added to a stage's
stream, one to zeros) differ in origins and land in different groups; two zero-padded channels
are alike and may swap. A scale class is a vector of scale atoms over the units of one group
whose factors are tied together (a residual stream's writers).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import replace

from .blocks import block_groups
from .discover import FIXED, Value, Walk, describe
from .errors import SymmetryError
from .headspec import resolve_attentions
from .spec import Absorb, AxisRef, Column, PermGroup, ScaleClass, Site, SymmetrySpec


def _index(positions: list[int]) -> tuple[int, ...] | None:
    return None if positions == list(range(len(positions))) else tuple(positions)


def resolve(walk: Walk) -> SymmetrySpec:
    """Groups, scale classes and sites from the raw records of a walk."""
    perms, scales = walk.perms, walk.scales
    fp, fs = perms.find, scales.find
    output = walk.output
    assert output is not None

    # --- the output: no per-unit factor, perhaps one global positive factor -------------
    out_terms = [t for chan in output.chans for t in chan.terms]
    no_mag = {fs(a) for a in walk.no_magnitude}
    global_ok = (
        bool(output.chans)
        and all(chan.terms for chan in output.chans)
        and all(kind == "full" for _, kind in out_terms)
        and not any(fs(a) in no_mag for a, _ in out_terms)
    )
    global_root = None
    if global_ok:
        first = out_terms[0][0]
        for atom, _ in out_terms[1:]:
            scales.union(first, atom)
        global_root = fs(first)
    else:
        walk.terminal(output.chans)
    no_mag = {fs(a) for a in walk.no_magnitude}
    no_sign = {fs(a) for a in walk.no_sign}

    flag_cache: dict[int, tuple[bool, bool]] = {}

    def flags(scale_root: int) -> tuple[bool, bool]:
        if scale_root not in flag_cache:
            flag_cache[scale_root] = (
                (False, False)
                if scale_root == global_root
                else (scale_root not in no_mag, scale_root not in no_sign)
            )
        return flag_cache[scale_root]

    perm_origins: dict[int, list[str]] = defaultdict(list)
    for atom in range(1, len(perms.parent)):
        perm_origins[fp(atom)].append(perms.origin[atom])
    scale_origins: dict[int, list[str]] = defaultdict(list)
    for atom in range(1, len(scales.parent)):
        scale_origins[fs(atom)].append(scales.origin[atom])

    scale_keys: dict[int, tuple[str, ...]] = {}

    def scale_key(root: int) -> tuple[str, ...]:
        if root not in scale_keys:
            scale_keys[root] = tuple(sorted(scale_origins[root]))
        return scale_keys[root]

    # --- units: classes of perm atoms that hold rows of some layer --------------------------
    attached: dict[int, list[tuple]] = defaultdict(list)
    anchor: dict[int, tuple[int, int]] = {}
    for layer in walk.layers:
        for pos, (p, s) in zip(
            layer["positions"], zip(layer["perm"], layer["scale"], strict=True), strict=True
        ):
            if p is None or fp(p) == FIXED:
                continue
            root = fp(p)
            sroot = fs(s)
            attached[root].append((layer["name"], scale_key(sroot), flags(sroot)))
            anchor.setdefault(root, (layer["order"], pos))
    by_key: dict[tuple, list[int]] = defaultdict(list)
    key_of: dict[int, tuple] = {}
    for root in attached:
        key = (tuple(sorted(perm_origins[root])), tuple(sorted(attached[root])))
        by_key[key].append(root)
        key_of[root] = key
    group_units = sorted(
        (sorted(units, key=anchor.__getitem__) for units in by_key.values()),
        key=lambda units: anchor[units[0]],
    )
    unit_of: dict[int, tuple[int, int]] = {}
    for g, units in enumerate(group_units):
        for u, root in enumerate(units):
            unit_of[root] = (g, u)

    def locate(atom: int | None) -> tuple[int, int] | None:
        return None if atom is None else unit_of.get(fp(atom))

    # --- sites: each layer split by group (and, for fixed units, by scale class) ------------
    parts: list[dict] = []
    for layer in walk.layers:
        split: dict[object, list[tuple[int, int, int]]] = defaultdict(list)
        for pos, (p, s) in zip(
            layer["positions"], zip(layer["perm"], layer["scale"], strict=True), strict=True
        ):
            where = locate(p)
            if where is None:
                split[("fixed", fs(s) == global_root, flags(fs(s)))].append((pos, pos, s))
            else:
                split[where[0]].append((where[1], pos, s))
        input_groups = sorted({w[0] for w in map(locate, layer["inputs"]) if w is not None})
        for key in [k for k in split if isinstance(k, int)]:
            # a layer that holds a unit in several rows (the query and key rows of one packed
            # projection) is one site per occurrence, in the order of its rows
            entries = sorted(split.pop(key), key=lambda e: e[1])
            seen: dict[int, int] = defaultdict(int)
            for entry in entries:
                split[(key, seen[entry[0]])].append(entry)
                seen[entry[0]] += 1
        for key, entries in split.items():
            entries.sort()
            group = key[0] if isinstance(key, tuple) and isinstance(key[0], int) else None
            if group is not None and [u for u, _, _ in entries] != list(
                range(len(group_units[group]))
            ):
                raise SymmetryError(
                    f"internal: layer '{layer['name']}' holds part of group {group}; please "
                    "report this model"
                )
            parts.append(
                dict(
                    layer=layer,
                    group=group,
                    positions=[pos for _, pos, _ in entries],
                    scale_atoms=[s for _, _, s in entries],
                    input_groups=tuple(input_groups),
                )
            )
    counts: dict[str, int] = defaultdict(int)
    for part in parts:
        counts[part["layer"]["name"]] += 1

    # --- scale classes: the scale atoms of a site part, tied across parts -------------------
    class_of_roots: dict[tuple[int, ...], int] = {}
    class_parts: list[list[int]] = []
    for i, part in enumerate(parts):
        roots = tuple(fs(s) for s in part["scale_atoms"])
        if roots not in class_of_roots:
            class_of_roots[roots] = len(class_parts)
            class_parts.append([])
        class_parts[class_of_roots[roots]].append(i)
    unit_in_class: dict[int, tuple[int, int]] = {}
    for roots, k in class_of_roots.items():
        for j, root in enumerate(roots):
            unit_in_class.setdefault(root, (k, j))

    state_shapes = {
        k: tuple(v.shape) for k, v in walk.gm.state_dict().items() if k not in walk.alias
    }
    sites = []
    labels: dict[str, int] = defaultdict(int)
    for part in parts:
        layer = part["layer"]
        k = class_of_roots[tuple(fs(s) for s in part["scale_atoms"])]
        suffix = (
            ""
            if counts[layer["name"]] == 1
            else (f"[group {part['group']}]" if part["group"] is not None else "[fixed]")
        )
        label = layer["name"] + suffix
        labels[label] += 1
        if labels[label] > 1:
            label = f"{label}#{labels[label]}"
        dim = layer["dim"]
        sites.append(
            Site(
                name=layer["name"],
                kind=layer["kind"],
                rows=layer["rows"],
                group=part["group"],
                scale=k,
                input_groups=part["input_groups"],
                order=layer["order"],
                index=_full(part["positions"], state_shapes[layer["rows"][0]][dim], 1),
                label=label,
                dim=dim,
            )
        )

    def collect(entries, unit_lookup, sizes, what):
        """Positions per unit, keyed by (owner, ..., occurrence); every unit exactly once per
        occurrence (a unit held twice along one axis, as the query and key rows of a packed
        projection, has two occurrences, in the order of its positions)."""
        found: dict[tuple, dict[int, set[int]]] = defaultdict(lambda: defaultdict(set))
        for atom, key, pos in entries:
            where = unit_lookup(atom)
            if where is None:
                continue
            owner, unit = where
            found[(owner, *key)][unit].add(pos)
        out: dict[tuple, list[int]] = {}
        for key, slot in found.items():
            if sorted(slot) != list(range(sizes[key[0]])):
                raise SymmetryError(_partial(key[1], what, walk))
            counts = {len(p) for p in slot.values()}
            if len(counts) != 1:
                raise SymmetryError(_partial(key[1], what, walk))
            ordered = {u: sorted(p) for u, p in slot.items()}
            for occurrence in range(counts.pop()):
                out[(*key, occurrence)] = [ordered[u][occurrence] for u in range(sizes[key[0]])]
        return out

    group_sizes = [len(units) for units in group_units]
    axes = collect(
        [(atom, (tensor, dim, block, rs), pos) for atom, tensor, dim, block, pos, rs in walk.axes],
        locate,
        group_sizes,
        "group",
    )

    class_sizes = [len(parts[members[0]]["scale_atoms"]) for members in class_parts]
    class_flags = []
    for members in class_parts:
        roots = [fs(s) for s in parts[members[0]]["scale_atoms"]]
        pairs = [flags(r) for r in roots]
        class_flags.append((all(m for m, _ in pairs), all(s for _, s in pairs)))
    free = {k for k, (m, s) in enumerate(class_flags) if m or s}

    def locate_scale(atom: int) -> tuple[int, int] | None:
        where = unit_in_class.get(fs(atom))
        return where if where is not None and where[0] in free else None

    columns = collect(
        [(a, (t, d, b, rs, kind), pos) for a, t, d, b, pos, rs, kind in walk.columns],
        locate_scale,
        class_sizes,
        "scale class",
    )
    absorbs = collect(
        [(a, (bn, kind), pos) for a, bn, pos, kind in walk.absorbs],
        locate_scale,
        class_sizes,
        "scale class",
    )

    nodes = _nodes(walk, locate, unit_in_class, fs, group_sizes)
    groups = []
    for g, size in enumerate(group_sizes):
        refs = []
        for (owner, tensor, dim, block, rs, _), positions in axes.items():
            if owner != g:
                continue
            full = state_shapes[tensor][dim] == size * block
            index = _index(positions) if full else tuple(positions)
            refs.append(AxisRef(tensor, dim, block, index, rs))
        members = tuple(i for i, s in enumerate(sites) if s.group == g)
        held = nodes.get(g, ())
        groups.append(
            PermGroup(
                g,
                size,
                tuple(refs),
                members,
                tuple(n[:3] for n in held),
                node_axes=tuple(n[3] for n in held) if any(n[3] != 1 for n in held) else (),
            )
        )

    # whole blocks of grouped convolutions: one more group each, read after its members
    blocks, refused = block_groups(
        walk.grouped, groups, [key_of[units[0]] for units in group_units], locate, state_shapes
    )
    groups.extend(blocks)
    notes = list(walk.notes)
    for node, kind, reason in refused:
        if kind == "heads":
            notes.append(f"{describe(node)}: the heads of this attention stay in place: {reason}")
        else:
            notes.append(
                f"{describe(node)}: channels permute and scale within each block; whole blocks "
                f"do not permute together: {reason}"
            )
    for block in blocks:
        held = {m for b in block.blocks for m in b}
        sites = [
            replace(site, input_groups=(*site.input_groups, block.index))
            if site.group not in held and held & set(site.input_groups)
            else site
            for site in sites
        ]

    classes = []
    for k, members in enumerate(class_parts):
        group = parts[members[0]]["group"]
        magnitude, sign = class_flags[k]
        cols = tuple(
            Column(t, b, kind, _full(positions, state_shapes[t][d], b), d, rs)
            for (owner, t, d, b, rs, kind, _), positions in columns.items()
            if owner == k
        )
        abs_ = tuple(
            Absorb(
                bn,
                kind,
                _full(
                    positions,
                    state_shapes[f"{bn}.running_mean"][0]
                    if f"{bn}.running_mean" in state_shapes
                    else len(positions),
                    1,
                ),
            )
            for (owner, bn, kind, _), positions in absorbs.items()
            if owner == k
        )
        classes.append(
            ScaleClass(
                index=k,
                size=class_sizes[k],
                group=group,
                magnitude=magnitude,
                sign=sign,
                sites=tuple(members),
                columns=cols,
                absorbs=abs_,
            )
        )

    attentions, attention_notes = resolve_attentions(
        walk.attentions,
        walk.spoiled,
        parts,
        sites,
        groups,
        classes,
        locate,
        fs,
        state_shapes,
    )
    notes.extend(attention_notes)

    output_scale = None
    if global_root is not None:
        output_scale = unit_in_class[global_root][0]
    shape = output.shape
    return SymmetrySpec(
        groups=tuple(groups),
        scales=tuple(classes),
        sites=tuple(sites),
        batchnorms=dict(walk.batchnorms),
        bias_folds=tuple(dict.fromkeys(walk.bias_folds)),
        output_scale=output_scale,
        output_units=int(math.prod(shape[1:])) if len(shape) > 1 else 1,
        state_shapes=tuple(state_shapes.items()),
        notes=tuple(dict.fromkeys(notes)),
        attentions=tuple(attentions),
    )


def _full(positions: list[int], length: int, block: int) -> tuple[int, ...] | None:
    return _index(positions) if length == len(positions) * block else tuple(positions)


def _nodes(walk, locate, unit_in_class, fs, sizes):
    """Per group, the graph nodes whose channels hold each of its units once (for matching on
    activations), with the scale class the node carries and each unit's channel."""
    found: dict[int, list] = defaultdict(list)
    for node, value in walk.values.items():
        if not isinstance(value, Value) or node.op in ("placeholder", "output"):
            continue
        if value.block != 1 or len(value.shape) < 2 or len(value.axes) != 1:
            continue
        slots: dict[int, dict[int, int]] = defaultdict(dict)
        carried: dict[int, int] = {}
        spoiled: set[int] = set()
        for pos, chan in enumerate(value.chans):
            where = locate(chan.perm)
            if where is None:
                continue
            g, u = where
            if u in slots[g]:
                spoiled.add(g)
            slots[g][u] = pos
            if g not in carried:
                for atom, _ in chan.terms:
                    hit = unit_in_class.get(fs(atom))
                    if hit is not None:
                        carried[g] = hit[0]
                        break
        for g, slot in slots.items():
            if g in spoiled or len(slot) != sizes[g]:
                continue
            positions = [slot[u] for u in range(sizes[g])]
            index = _full(positions, len(value.chans), 1)
            found[g].append((node.name, carried.get(g), index, value.axes[0]))
    return found


def _partial(tensor: str, what: str, walk: Walk) -> str:
    """The message for an axis that holds part of a group: a tie in incompatible places, or a
    model canonicalize misread."""
    tied = [n for n in walk.notes if f"'{tensor}' is shared" in n]
    if tied:
        return (
            f"the tensor '{tensor}' is shared by layers that use it in places whose units "
            f"cannot move together (tied weights in incompatible places; {what}); untie them "
            "or canonicalize a model without the tie"
        )
    return f"internal: {tensor} holds part of a {what}; please report this model"
