"""From the walk's attention records to :class:`~canonicalize.spec.Attention` entries.

For every attention the walk recorded (:mod:`canonicalize.attention`), each head is located in
the spec (its query-key and value groups, the sites of its query, key and value rows, the
scale class of its value features) and the continuous parts of its group are checked one by
one; what does not hold is said in a note, with the reason:

- the query-key maps need the query and the key to be rows of two layers, reaching the scores
  through linear reshuffles only, their features used by nothing else;
- the value-output maps need the value features to reach linear layers (the output
  projection) through linear reshuffles only, with a free scale and sign (no norm or gate on
  the way), and those layers' outputs to have no free scale (their own normalization would
  depend on the maps);
- the key bias drops out when the scores are soft-maxed over the keys after shifts and scales
  only, and read nowhere else before that;
- the value bias folds into the output projection's bias when the value-output maps hold,
  every row of the attention sums to one, and every output projection has a bias.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .spec import Attention, Head, PermGroup, ScaleClass, Site, SymmetrySpec

_QUERY_KEY = (
    "not divided out: each head's invertible maps of its query-key product (W_Q -> A W_Q, "
    "W_K -> A^-T W_K) beyond permuting its query-key features together"
)
_VALUE_OUTPUT = (
    "not divided out: each head's invertible maps of its value-output product (W_V -> B W_V, "
    "W_O,h -> W_O,h B^-1) beyond permutations and the value features' scales and signs"
)


def _group(atoms, locate) -> int | None:
    where = [locate(a) for a in atoms]
    if any(w is None for w in where) or len({w[0] for w in where}) != 1:
        return None
    return where[0][0]


def bias_of(sites: Sequence[Site], shapes: dict[str, tuple[int, ...]], site: int) -> str | None:
    """The 1-D row tensor (the bias) of a site, ``None`` when it has none."""
    found = [row for row in sites[site].rows if len(shapes[row]) == 1]
    return found[0] if found else None


def consumers(sites: Sequence[Site], tensor: str) -> list[int]:
    """The sites whose rows (dim 0) include ``tensor``: the layer that owns a weight."""
    return [i for i, site in enumerate(sites) if site.dim == 0 and tensor in site.rows]


def resolve_attentions(
    records: list[dict],
    spoiled: set[str],
    parts: list[dict],
    sites: Sequence[Site],
    groups: Sequence[PermGroup],
    classes: Sequence[ScaleClass],
    locate: Callable,
    root: Callable[[int], int],
    shapes: dict[str, tuple[int, ...]],
) -> tuple[list[Attention], list[str]]:
    """The attentions of a spec and the notes on what their heads do not divide out.

    ``parts`` are resolve's site parts (parallel to ``sites``), ``locate`` maps a perm atom to
    (group, unit), ``root`` a scale atom to its root.
    """
    site_of = {
        tuple(sorted(root(a) for a in part["scale_atoms"])): i for i, part in enumerate(parts)
    }
    heads_group = {g.blocks: g.index for g in groups if g.kind == "heads"}

    def site(atoms, group: int | None) -> int | None:
        if group is None or any(a is None for a in atoms):
            return None
        i = site_of.get(tuple(sorted(root(a) for a in atoms)))
        if i is None or sites[i].group != group or sites[i].dim != 0:
            return None
        return i if sites[i].kind == "linear" else None

    found: list[Attention] = []
    notes: list[str] = []
    for record in records:
        name = record["name"]
        heads: list[Head] = []
        for h in range(len(record["qk"])):
            qk = _group(record["qk"][h], locate)
            values = _group(record["values"][h], locate)
            query, key = site(record["query"][h], qk), site(record["key"][h], qk)
            value = site(record["value"][h], values)
            if qk is None or values is None or None in (query, key, value):
                heads = []
                break
            heads.append(Head(query, key, value, qk, values, sites[value].scale))  # type: ignore[arg-type]
        if not heads:
            notes.append(
                f"attention '{name}': {_QUERY_KEY}; {_VALUE_OUTPUT} (its query, key and value "
                "are not each the rows of one layer, or their features are held in place)"
            )
            continue
        why_qk = _query_key(record, heads, groups)
        why_vo = _value_output(record, heads, sites, groups, classes)
        key_biases = [bias_of(sites, shapes, head.key) for head in heads]
        value_biases = [bias_of(sites, shapes, head.value) for head in heads]
        key_bias = (
            all(b is not None for b in key_biases)
            and record["normalized"]
            and record["scores"] not in spoiled
        )
        why_fold = why_vo
        if why_fold is None and not record["stochastic"]:
            why_fold = "the rows of the attention need not sum to one"
        if why_fold is None:
            readers = {
                c.tensor
                for head in heads
                for c in classes[head.value_scale].columns  # type: ignore[index]
            }
            if any(bias_of(sites, shapes, consumers(sites, t)[0]) is None for t in readers):
                why_fold = "the output projection has no bias"
        value_bias = why_fold is None and all(b is not None for b in value_biases)
        blocks = heads_group.get(tuple((head.query_key, head.values) for head in heads))
        found.append(
            Attention(
                name, tuple(heads), blocks, why_qk is None, why_vo is None, key_bias, value_bias
            )
        )
        if why_qk is not None:
            notes.append(f"attention '{name}': {_QUERY_KEY} ({why_qk})")
        if why_vo is not None:
            notes.append(f"attention '{name}': {_VALUE_OUTPUT} ({why_vo})")
        if any(b is not None for b in key_biases) and not key_bias:
            notes.append(
                f"attention '{name}': not divided out: the key bias's constant per query (the "
                "scores are not soft-maxed over the keys after shifts and scales only, or their "
                "raw values are read elsewhere)"
            )
        if any(b is not None for b in value_biases) and not value_bias:
            notes.append(
                f"attention '{name}': not divided out: the value bias's fold into the output "
                f"projection's bias ({why_fold})"
            )
    return found, notes


def _query_key(record: dict, heads: list[Head], groups: Sequence[PermGroup]) -> str | None:
    """Why the query-key maps do not hold (``None`` when they do)."""
    if not record["linear_qk"]:
        return (
            "something other than a view, a transpose, a split into heads or a product with a "
            "number lies between a projection and the scores, or feeds something else"
        )
    for head in heads:
        if head.query == head.key:
            return "the query and the key are rows of one layer"
        if set(groups[head.query_key].sites) != {head.query, head.key}:
            return "other layers share the query-key features"
    return None


def _value_output(
    record: dict,
    heads: list[Head],
    sites: Sequence[Site],
    groups: Sequence[PermGroup],
    classes: Sequence[ScaleClass],
) -> str | None:
    """Why the value-output maps do not hold (``None`` when they do)."""
    if not record["linear_vo"]:
        return (
            "something other than a view, a transpose or a merge of the heads lies between the "
            "value projection, the attention and the output projection, or feeds something else"
        )
    for head in heads:
        if groups[head.values].sites != (head.value,) or head.value_scale is None:
            return "other layers share the value features"
        cls = classes[head.value_scale]
        if not (cls.magnitude and cls.sign) or cls.sites != (head.value,) or cls.absorbs:
            return "the value features have no free scale and sign"
        if not cls.columns or any(
            c.kind != "full" or c.dim != 1 or c.block != 1 or c.row_slice is not None
            for c in cls.columns
        ):
            return "the value features are not read as whole columns of linear layers"
        for column in cls.columns:
            owners = consumers(sites, column.tensor)
            if not owners or any(sites[i].kind != "linear" for i in owners):
                return "the value features are not read as whole columns of linear layers"
            if any(
                sites[i].scale is not None and classes[sites[i].scale].magnitude for i in owners
            ):
                return "the output projection's own outputs have a free scale"
    return None


def subsumed(spec: SymmetrySpec) -> tuple[set[int], set[int]]:
    """The groups and scale classes that the continuous maps of heads replace."""
    groups: set[int] = set()
    classes: set[int] = set()
    for attention in spec.attentions:
        for head in attention.heads:
            if attention.query_key:
                groups.add(head.query_key)
            if attention.value_output:
                groups.add(head.values)
                if head.value_scale is not None:
                    classes.add(head.value_scale)
    return groups, classes
