"""Align one network to another: permute (and sign-flip) hidden units to match a reference."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Literal

import numpy as np
import torch
from torch import Tensor, fx, nn

from .alignment import Alignment, Element
from .canonical import canonicalize_state
from .discover import discover, graph_signature, symmetries, trace
from .errors import SymmetryError
from .headalign import head_similarity, map_heads
from .heads import (
    HeadsView,
    attention_of,
    canonical_heads,
    canonical_query_key,
    canonical_value_output,
    check_heads,
    with_heads,
)
from .headspec import consumers, subsumed
from .spec import Attention, PermGroup, SymmetrySpec
from .transform import (
    State,
    available,
    permute_group,
    rebuild,
    rows_of,
    scale_units,
    schedule,
    site_rows,
    to_float64,
    unit_matrix,
)
from .validate import check_input, check_model, check_same_architecture, check_spec
from .verify import check_outputs

Method = Literal["cosine", "weights", "activations"]
_METHODS = ("cosine", "weights", "activations")


def match(
    model: nn.Module,
    reference: nn.Module,
    example_input: Tensor,
    method: Method = "cosine",
    data: Tensor | tuple[Tensor, ...] | None = None,
    *,
    max_iter: int = 100,
    seed: int = 0,
    batch_size: int = 1024,
    heads: HeadsView = "full",
    spec: SymmetrySpec | None = None,
) -> Alignment:
    """Permute (and, where the symmetry allows, sign-flip) ``model``'s units to match ``reference``.

    Returns the aligned model with the group element that moved it and the evidence (distance
    before and after, iterations); :func:`align` returns the model only.

    Parameters
    ----------
    model : nn.Module
        The network to move (left untouched).
    reference : nn.Module
        The network to match; same architecture as ``model``.
    example_input : Tensor
        A batch of inputs, used to trace both models and to check the result.
    method : {"cosine", "weights", "activations"}
        ``"cosine"``: the toroids paper's procedure: both networks normalized (positive scales
        removed), then layer by layer from the input a Hungarian assignment maximizing the
        summed cosine similarity of the units' incoming vectors; units with a sign symmetry
        are matched on the absolute cosine and flipped where it is negative. Behind a
        BatchNorm a unit is identified by ``sign(gamma) * w``, not by ``w`` up to sign: the
        BatchNorm's (gamma, beta) join the evidence, gamma signed with the layer before it, so
        units are never paired with their mirror images. Running statistics and outgoing
        columns are not used: on BatchNorm networks cosine is the weakest of the three methods
        (benchmarks/README.md measures it; use ``"weights"`` or ``"activations"`` there).
        ``"weights"``: weight matching (git re-basin) in normalized coordinates: both
        networks are first brought to :func:`normalize`'s coordinates (every free scale
        removed, biases before a BatchNorm folded into its running mean), which are invariant
        to the continuous part of the group, so raw magnitudes (a running variance that grows
        as ``c^2``) cannot outweigh the evidence. Then coordinate descent over the groups in
        random order, each assignment maximizing the summed inner products of every tensor
        that touches the group (incoming rows, outgoing columns, BatchNorm parameters and
        statistics), until no assignment changes or ``max_iter`` passes. It starts from the
        cosine matching (which recovers a transformed copy exactly, where descent from the
        identity can stop in a local optimum) and never returns a model farther from the
        reference in normalized coordinates than the input.
        ``"activations"``: the correlation of the units' activations on ``data``, summed over
        every graph node that carries the units (pre- and post-activation).
    data : Tensor or tuple, optional
        Inputs for ``"activations"`` (a tuple's first element is used); default
        ``example_input``.
    max_iter : int
        Passes of coordinate descent for ``"weights"``.
    seed : int
        Seed of the group order in ``"weights"``.
    batch_size : int
        Inputs per forward pass for ``"activations"``.
    heads : {"full", "permutations"}
        The group of attention heads (as in :func:`canonical_form`). ``"full"``: heads are
        paired (one Hungarian assignment per attention, before the layers that read them) on
        the cosine of their query-key products plus that of their value-output products,
        which no invertible map of a head changes, with every method (activations inside a
        head depend on its basis); once everything is matched, each head of ``model`` is
        expressed in the basis of the reference's head at its place (invertible maps, and
        its key and value biases translated to the reference's; see
        ``canonicalize.headalign``), so a transformed copy is recovered exactly.
        ``"permutations"``: whole heads as blocks and the features inside them permuted
        (and value features signed), as the published re-basin methods do.
    spec : SymmetrySpec, optional
        The symmetry group of both models, if already discovered (:func:`symmetries`):
        checked against both models' tensors, and trusted to be their group (it saves
        tracing them; ``"activations"`` still runs the traced graphs). ``heads`` narrows it
        (``"permutations"``), never widens it.

    Returns
    -------
    Alignment
        ``model``: a copy of ``model`` with units permuted (and signs flipped, and heads mapped
        with ``heads="full"``); it computes the same function as ``model`` (checked on
        ``example_input``). Scales are left as they were: normalize both networks first to
        compare them on the torus. ``permutations``, ``signs`` and ``maps``: the group
        element, per group, sign class and head. ``distance_before`` / ``distance_after``: the
        distance to the reference in normalized coordinates (heads in canonical factors with
        ``heads="full"``); ``iterations`` and ``converged`` for weight matching.

    Raises
    ------
    SymmetryError
        If the architectures differ (the message says where), or for unsupported models.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
    >>> x = torch.randn(8, 3)
    >>> shuffled = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
    >>> perm = torch.tensor([3, 0, 4, 1, 2])
    >>> _ = shuffled[0].weight.data.copy_(net[0].weight[perm])
    >>> _ = shuffled[0].bias.data.copy_(net[0].bias[perm])
    >>> _ = shuffled[2].weight.data.copy_(net[2].weight[:, perm])
    >>> _ = shuffled[2].bias.data.copy_(net[2].bias)
    >>> result = match(shuffled, net, x, method="weights")
    >>> torch.equal(result.model[0].weight, net[0].weight), result.permutations[0].tolist()
    (True, [1, 3, 4, 0, 2])
    """
    if method not in _METHODS:
        raise SymmetryError(f"method must be one of {_METHODS}, got {method!r}")
    if not isinstance(max_iter, int) or max_iter < 1:
        raise SymmetryError(f"max_iter must be a positive integer, got {max_iter!r}")
    check_heads(heads)
    check_model(model, "model")
    check_model(reference, "reference")
    check_same_architecture(model, reference)
    if spec is None:
        spec, graph = discover(model, example_input)
        x = check_input(model, example_input)
        # one traced graph means one group; otherwise compare the groups themselves
        ref_graph = trace(reference, x)
        if graph_signature(graph) != graph_signature(ref_graph):
            _check_same_symmetries(spec, symmetries(reference, example_input))
    else:
        check_spec(spec, model)
        check_spec(spec, reference, "reference")
        x = check_input(model, example_input)
        graph = ref_graph = None
    spec = with_heads(spec, heads)
    state, ref = to_float64(model), to_float64(reference)
    unit_ref, unit_state = normalized(ref, spec), normalized(state, spec)
    before = _squared_distance(unit_state, unit_ref) ** 0.5
    units = (unit_state, unit_ref)  # the matchers move unit_state along with state
    element = Element(spec)
    if method == "weights":
        _match_weights(state, ref, spec, max_iter, seed, element, units)
    elif method == "cosine":
        _match_cosine(state, ref, spec, element, units=units)
    else:
        inputs = example_input if data is None else data
        if isinstance(inputs, (tuple, list)):
            inputs = inputs[0]
        inputs = check_input(model, inputs)
        if graph is None or ref_graph is None:
            graph, ref_graph = trace(model, x), trace(reference, x)
        _match_activations(graph, ref_graph, inputs, state, ref, spec, batch_size, element, units)
    maps = map_heads(state, ref, spec)
    new = rebuild(model, state)
    check_outputs(model, new, x, what=f"align(method={method!r})")
    return Alignment(
        model=new,
        permutations=element.permutations,
        signs=element.signs,
        method=method,
        distance_before=before,
        distance_after=_squared_distance(normalized(state, spec), unit_ref) ** 0.5,
        iterations=element.iterations,
        converged=element.converged,
        spec=spec,
        maps=maps,
    )


def align(
    model: nn.Module,
    reference: nn.Module,
    example_input: Tensor,
    method: Method = "cosine",
    data: Tensor | tuple[Tensor, ...] | None = None,
    *,
    max_iter: int = 100,
    seed: int = 0,
    batch_size: int = 1024,
    heads: HeadsView = "full",
    spec: SymmetrySpec | None = None,
) -> nn.Module:
    """The aligned model of :func:`match` (same arguments): ``match(...).model``.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
    >>> x = torch.randn(8, 3)
    >>> torch.allclose(align(net, net, x)(x), net(x))
    True
    """
    return match(
        model,
        reference,
        example_input,
        method,
        data,
        max_iter=max_iter,
        seed=seed,
        batch_size=batch_size,
        heads=heads,
        spec=spec,
    ).model


def _check_same_symmetries(a: SymmetrySpec, b: SymmetrySpec) -> None:
    if [g.size for g in a.groups] != [g.size for g in b.groups] or [
        (s.magnitude, s.sign) for s in a.scales
    ] != [(s.magnitude, s.sign) for s in b.scales]:
        raise SymmetryError(
            "model and reference have the same tensors but different symmetry groups "
            "(their graphs differ, e.g. other activations); align needs one architecture"
        )


def _sign_classes(spec: SymmetrySpec, group: int) -> dict[tuple[str, int], set[int]]:
    """For each (tensor, dim) along the group's axis, the sign-free classes that flip it."""
    flips: dict[tuple[str, int], set[int]] = {}
    for cls in spec.scales:
        if cls.group != group or not cls.sign:
            continue
        touched = [(row, spec.sites[i].dim) for i in cls.sites for row in spec.sites[i].rows]
        touched += [(column.tensor, column.dim) for column in cls.columns]
        for absorb in cls.absorbs:
            bn = spec.batchnorms[absorb.batchnorm]
            if bn.affine:
                touched.append((f"{bn.name}.weight", 0))
            if bn.tracked:
                touched.append((f"{bn.name}.running_mean", 0))
        for key in touched:
            flips.setdefault(key, set()).add(cls.index)
    return flips


def linear_sum_assignment(cost, maximize: bool = False):
    """scipy's Hungarian solver, imported on first use (scipy.optimize takes ~0.6 s to load)."""
    from scipy.optimize import linear_sum_assignment as solve

    return solve(cost, maximize=maximize)


def _assign(plain: Tensor, signed: dict[int, Tensor]) -> tuple[Tensor, dict[int, Tensor]]:
    """Hungarian assignment on plain + sum |signed|; returns perm and the sign of each class."""
    cost = plain.clone()
    for matrix in signed.values():
        cost += matrix.abs()
    _, cols = linear_sum_assignment(cost.cpu().numpy(), maximize=True)
    perm = torch.as_tensor(cols, dtype=torch.long)
    rows = torch.arange(len(perm))
    return perm, {k: _signs(matrix.cpu()[rows, perm]) for k, matrix in signed.items()}


def _signs(agreement: Tensor) -> Tensor:
    return torch.where(agreement < 0, -1.0, 1.0).to(torch.float64)


def _apply(
    states: list[State],
    spec: SymmetrySpec,
    group: int,
    perm: Tensor,
    signs: dict[int, Tensor],
    element: Element,
) -> bool:
    """Apply a permutation and sign flips to every state; whether anything changed."""
    changed = bool((perm != torch.arange(len(perm))).any())
    if changed and group >= 0:
        element.permute(group, perm)
    for k, s in signs.items():
        if (s < 0).any():
            element.flip(k, s)
    for state in states:
        if changed and group >= 0:
            permute_group(state, spec, group, perm)
        for k, s in signs.items():
            if (s < 0).any():
                scale_units(state, spec, k, s)
    return changed or any(bool((s < 0).any()) for s in signs.values())


def _squared_distance(a: State, b: State) -> float:
    return float(sum(((a[k] - b[k]) ** 2).sum() for k in a if a[k].is_floating_point()))


def normalized(state: State, spec: SymmetrySpec) -> State:
    """A copy of a float64 state with every free scale removed and biases before BatchNorm folded.

    The coordinates weight matching compares: invariant to the continuous part of the group
    (positive scales, BatchNorm scales and translations, and the invertible maps and bias
    translations of attention heads that the spec divides out: their heads are in canonical
    factors, computed in the coordinates at hand), so only permutations and signs are left to
    match.
    """
    unit = {k: v.clone() for k, v in state.items()}
    canonicalize_state(unit, spec, order=False, signs=False)
    canonical_heads(unit, spec)
    return unit


def _match_weights(
    state: State,
    ref: State,
    spec: SymmetrySpec,
    max_iter: int,
    seed: int,
    element: Element,
    units: tuple[State, State] | None = None,
) -> None:
    # Matching on raw weights is not invariant to the continuous part of the group: a running
    # variance grows as c^2 under a scale c and dominates the cost. Both networks are compared
    # in normalized coordinates instead; the permutations and signs found there are applied to
    # the original state. Coordinate descent has local optima (a group settled while its
    # neighbours are still scrambled); starting from the layer-by-layer cosine matching recovers
    # a transformed copy exactly, and keeping the input when descent ends farther away (in
    # normalized coordinates) makes alignment never increase that distance.
    start = {k: v.clone() for k, v in state.items()}
    unit_start, unit_ref = units if units is not None else (None, normalized(ref, spec))
    if unit_start is None:
        unit_start = normalized(state, spec)
    start_distance = _squared_distance(unit_start, unit_ref)
    _match_cosine(state, ref, spec, element, units=(unit_start, unit_ref))
    unit_state = normalized(state, spec)
    _coordinate_descent(state, unit_state, unit_ref, spec, max_iter, seed, element)
    if _squared_distance(unit_state, unit_ref) > start_distance:
        state.update(start)
        element.copy_from(Element(spec))


def _coordinate_descent(
    state: State,
    unit_state: State,
    unit_ref: State,
    spec: SymmetrySpec,
    max_iter: int,
    seed: int,
    element: Element,
) -> None:
    """Weight matching on normalized states; every step is applied to ``state`` as well."""
    rng = np.random.default_rng(seed)
    flips = {g.index: _sign_classes(spec, g.index) for g in spec.groups}
    continuous, _ = subsumed(spec)  # features of heads: their maps, not permutations, act
    for iteration in range(max_iter):
        element.iterations = iteration + 1
        changed = False
        for g in rng.permutation(len(spec.groups)):
            group = spec.groups[int(g)]
            if group.index in continuous:
                continue
            n = group.size
            plain = torch.zeros(n, n, dtype=torch.float64)
            signed: dict[int, Tensor] = {}
            for axis in group.axes:
                a, b = (
                    unit_matrix(
                        rows_of(s[axis.tensor], axis.row_slice), axis.dim, axis.block, axis.index
                    )
                    for s in (unit_ref, unit_state)
                )
                product = (a @ b.T).cpu()
                classes = flips[group.index].get((axis.tensor, axis.dim), set())
                if not classes:
                    plain += product
                elif len(classes) == 1:
                    k = next(iter(classes))
                    signed[k] = signed.get(k, torch.zeros(n, n, dtype=torch.float64)) + product
            perm, signs = _assign(plain, signed)
            changed |= _apply([state, unit_state], spec, group.index, perm, signs, element)
        if not changed:
            element.converged = True
            return
    element.converged = False


_TIE_BREAK = 1e-4


def _match_cosine(
    state: State,
    ref: State,
    spec: SymmetrySpec,
    element: Element,
    activation_cost: Callable[[int, int], tuple[Tensor, dict[int, Tensor]]] | None = None,
    units: tuple[State, State] | None = None,
) -> None:
    """Layer by layer from the input, match on the cosine of normalized incoming vectors.

    With ``activation_cost`` (reference group, model group -> plain and per-sign-class
    correlation matrices), match on the correlations instead, the cosines only breaking ties
    between units the data cannot tell apart (dead or constant units).

    Whole blocks of a grouped convolution are paired before the units inside them (see
    :func:`_pair_blocks`).
    """
    if units is None:
        units = (normalized(state, spec), normalized(ref, spec))
    unit_state, unit_ref = units  # unit_state moves with state
    processed: set[int] = set()
    pending: list[tuple[int, tuple[int, ...]]] = []  # sign classes waiting for their group

    undecided: dict[int, Tensor] = {}  # units whose sign the data could not tell
    scaled: dict[int, tuple[int, ...]] = {}
    paired: set[int] = set()  # groups of blocks already matched
    # the model's group whose units (activations) sit at each group's place: a block moved by
    # a group of blocks brings its own groups' units
    source = {group.index: group.index for group in spec.groups}

    def settle_sign(k: int, sites: tuple[int, ...], only: Tensor | None = None) -> None:
        agreement = (site_rows(unit_ref, spec, sites) * site_rows(unit_state, spec, sites)).sum(1)
        signs = _signs(agreement)
        if only is not None:
            signs = torch.where(only, signs, torch.ones_like(signs))
        size = spec.scale_class(k).size
        _apply([state, unit_state], spec, -1, torch.arange(size), {k: signs}, element)

    for step, g, sites in schedule(spec):
        if step in ("query_key", "value_output"):
            # the head's canonical factors again, now in coordinates matched to the reference's
            canonical = canonical_query_key if step == "query_key" else canonical_value_output
            canonical(unit_state, spec, spec.attentions[g], sites[0])
            continue
        if step == "scale":
            cls = spec.scale_class(g)
            scaled[g] = sites
            if g in undecided:
                settle_sign(g, sites, undecided.pop(g))
            # a sign class outside every permutation group has no activations to match: its
            # signs come from its weights with every method
            if cls.sign and (activation_cost is None or cls.group is None):
                if cls.group is None or cls.group in processed:

                    settle_sign(g, sites)
                else:
                    pending.append((g, sites))
            continue
        group = spec.groups[g]
        for blocks in spec.groups:
            if (
                blocks.blocks
                and blocks.index not in paired
                and (blocks.index == g or in_blocks(g, blocks))
            ):
                attention = attention_of(spec, blocks.index)
                if attention is not None:
                    _pair_heads(
                        state, unit_state, unit_ref, spec, attention, processed, element, source
                    )
                    paired.add(blocks.index)
                    continue
                _pair_blocks(
                    state,
                    unit_state,
                    unit_ref,
                    spec,
                    blocks.index,
                    processed,
                    element,
                    activation_cost,
                    source,
                )
                paired.add(blocks.index)
        if group.blocks:
            processed.add(g)
            continue
        usable = [i for i in group.sites if available(spec.sites[i], processed)]
        plain = torch.zeros(group.size, group.size, dtype=torch.float64)
        signed: dict[int, Tensor] = {}
        by_class: dict[int | None, list[int]] = {}
        # A BatchNorm whose gamma flips with the sign of the layer before it identifies a unit
        # by sign(gamma) * w, not by w up to sign: its gamma joins the evidence of that layer's
        # sign class (so the sign comes from the joint assignment), its beta the plain evidence.
        # Matching on |cosine| of the layer alone pairs units with their mirror images
        # (benchmarks/README.md, BatchNorm CNNs).
        flipped = _flipped_batchnorms(spec, g)
        polar: set[int] = set()
        for i in usable:
            if spec.sites[i].name in flipped:
                own = spec.sites[i].scale
                if own is not None and spec.scale_class(own).sign:
                    continue  # (gamma, beta) has a sign of its own (tanh after it): no polarity
                k = flipped[spec.sites[i].name]
                rows_ref = site_rows(unit_ref, spec, (i,))
                rows_state = site_rows(unit_state, spec, (i,))
                norms = torch.outer(rows_ref.norm(dim=1), rows_state.norm(dim=1)).clamp_min(1e-300)
                gamma = torch.outer(rows_ref[:, 0], rows_state[:, 0]) / norms
                beta = torch.outer(rows_ref[:, 1], rows_state[:, 1]) / norms
                signed[k] = signed.get(k, torch.zeros_like(plain)) + gamma.cpu()
                plain += beta.cpu()
                polar.add(k)
                continue
            k = spec.sites[i].scale
            sign_free = k is not None and spec.scale_class(k).sign
            by_class.setdefault(k if sign_free else None, []).append(i)
        for k, class_sites in by_class.items():
            rows_ref = site_rows(unit_ref, spec, class_sites)
            cosine = _cosine(rows_ref, site_rows(unit_state, spec, class_sites))
            if k is None:
                plain += cosine
            else:
                signed[k] = signed.get(k, torch.zeros_like(plain)) + cosine
        if activation_cost is not None:
            corr_plain, corr_signed = activation_cost(g, source[g])
            plain = corr_plain + _TIE_BREAK * plain
            signed = {
                k: corr_signed.get(k, 0) + _TIE_BREAK * signed.get(k, torch.zeros_like(plain))
                for k in set(signed) | set(corr_signed)
            }
            perm, signs = _assign(plain, signed)
            # a unit whose activations are constant on the data (a dead ReLU feeding it) gives
            # no evidence for its sign: its sign is judged by its weights once they are usable
            rows = torch.arange(group.size)
            for cls in spec.scales:
                if cls.group != g or not cls.sign:
                    continue
                evidence = corr_signed.get(cls.index)
                blind = (
                    torch.ones(group.size, dtype=torch.bool)
                    if evidence is None
                    else evidence.cpu()[rows, perm] == 0
                )
                if cls.index in signs:
                    signs[cls.index] = torch.where(blind, 1.0, signs[cls.index])
                if blind.any():
                    undecided[cls.index] = blind
            _apply([state, unit_state], spec, g, perm, signs, element)
            processed.add(g)
            for k in [k for k in undecided if k in scaled]:
                settle_sign(k, scaled[k], undecided.pop(k))
            continue
        perm, signs = _assign(plain, signed)
        _apply([state, unit_state], spec, g, perm, {k: signs[k] for k in polar}, element)
        processed.add(g)
        pending = [p for p in pending if p[0] not in polar]
        # Signs class by class, in graph order: a BatchNorm's gamma flips with the sign of the
        # layer before it, so each class is judged after the previous one is settled.
        for k, class_sites in [p for p in pending if spec.scale_class(p[0]).group == g]:
            settle_sign(k, class_sites)
        pending = [p for p in pending if spec.scale_class(p[0]).group != g]


def in_blocks(group: int, blocks: PermGroup) -> bool:
    """Whether ``group`` is one of the groups the blocks of ``blocks`` hold."""
    return any(group in block for block in blocks.blocks)


def _pair_blocks(
    state: State,
    unit_state: State,
    unit_ref: State,
    spec: SymmetrySpec,
    g: int,
    processed: set[int],
    element: Element,
    activation_cost: Callable[[int, int], tuple[Tensor, dict[int, Tensor]]] | None,
    source: dict[int, int],
) -> None:
    """Match whole blocks of a grouped convolution before the units inside them.

    Blocks ``i`` (reference) and ``j`` (model) score the best within-block assignment of their
    units, summed over the sides whose rows are usable (the input side: its rows read groups
    already matched); the Hungarian assignment of blocks maximizes the total. With activations,
    the within-block scores are correlations, the cosines breaking ties.
    """
    blocks = spec.groups[g].blocks
    n = len(blocks)
    score = torch.zeros(n, n, dtype=torch.float64)
    for side in range(len(blocks[0])):
        members = [block[side] for block in blocks]
        cosine = _cross_cosine(unit_ref, unit_state, spec, members, processed)
        if cosine is None and activation_cost is None:
            continue
        for i in range(n):
            for j in range(n):
                pair = cosine[i, j] if cosine is not None else 0.0
                if activation_cost is not None:
                    plain, signed = activation_cost(members[i], source[members[j]])
                    pair = _TIE_BREAK * pair + plain + sum(m.abs() for m in signed.values())
                rows, cols = linear_sum_assignment(pair.numpy(), maximize=True)
                score[i, j] += float(pair[rows, cols].sum())
    _, cols = linear_sum_assignment(score.numpy(), maximize=True)
    perm = torch.as_tensor(cols, dtype=torch.long)
    _apply([state, unit_state], spec, g, perm, {}, element)
    moved = {
        blocks[i][side]: source[blocks[int(perm[i])][side]]
        for i in range(n)
        for side in range(len(blocks[0]))
    }
    source.update(moved)


def _pair_heads(
    state: State,
    unit_state: State,
    unit_ref: State,
    spec: SymmetrySpec,
    attention: Attention,
    processed: set[int],
    element: Element,
    source: dict[int, int],
) -> None:
    """Pair the heads of an attention on the similarity of their products (see
    :func:`~canonicalize.headalign.head_similarity`)."""
    readers = {
        spec.sites[i].group
        for head in attention.heads
        if head.value_scale is not None
        for column in spec.scale_class(head.value_scale).columns
        for i in consumers(spec.sites, column.tensor)
    }
    matched = all(g is None or g in processed for g in readers)
    score = head_similarity(unit_ref, unit_state, spec, attention, matched)
    _, cols = linear_sum_assignment(score.numpy(), maximize=True)
    perm = torch.as_tensor(cols, dtype=torch.long)
    g = attention.blocks
    assert g is not None
    _apply([state, unit_state], spec, g, perm, {}, element)
    blocks = spec.groups[g].blocks
    moved = {
        blocks[i][side]: source[blocks[int(perm[i])][side]]
        for i in range(len(blocks))
        for side in range(len(blocks[0]))
    }
    source.update(moved)


def _cross_cosine(
    unit_ref: State, unit_state: State, spec: SymmetrySpec, members: list[int], processed
) -> Tensor | None:
    """Cosines between the units of alike groups (one per block): ``[i, j]`` compares the
    reference's group ``members[i]`` with the model's ``members[j]``, summed over their usable
    sites; absolute where the site's sign is free; BatchNorms whose gamma flips with the layer
    before them are left out (their polarity is unknown). ``None`` if no site is usable."""
    total = None
    first = spec.groups[members[0]]
    flipped = _flipped_batchnorms(spec, members[0])
    for s, site_index in enumerate(first.sites):
        site = spec.sites[site_index]
        if not available(site, processed) or site.name in flipped:
            continue
        column = [spec.groups[m].sites[s] for m in members]
        ref = torch.stack([_unit_rows(site_rows(unit_ref, spec, (i,))) for i in column])
        mine = torch.stack([_unit_rows(site_rows(unit_state, spec, (i,))) for i in column])
        cosine = torch.einsum("iuf,jvf->ijuv", ref, mine).cpu()
        k = site.scale
        cosine = cosine.abs() if k is not None and spec.scale_class(k).sign else cosine
        total = cosine if total is None else total + cosine
    return total


def _unit_rows(rows: Tensor) -> Tensor:
    return rows / rows.norm(dim=1, keepdim=True).clamp_min(1e-300)


def _flipped_batchnorms(spec: SymmetrySpec, group: int) -> dict[str, int]:
    """Affine BatchNorms of a group whose gamma flips with a sign class: name -> class."""
    return {
        absorb.batchnorm: cls.index
        for cls in spec.scales
        if cls.group == group and cls.sign
        for absorb in cls.absorbs
        if spec.batchnorms[absorb.batchnorm].affine and absorb.kind == "full"
    }


def _cosine(a: Tensor, b: Tensor) -> Tensor:
    a = a / a.norm(dim=1, keepdim=True).clamp_min(1e-300)
    b = b / b.norm(dim=1, keepdim=True).clamp_min(1e-300)
    return (a @ b.T).cpu()


class _Recorder(fx.Interpreter):
    """Runs a traced model and keeps the outputs of the named nodes."""

    def __init__(self, gm: fx.GraphModule, names: set[str]) -> None:
        super().__init__(gm)
        self.names = names
        self.seen: dict[str, Tensor] = {}

    def run_node(self, n: fx.Node):
        result = super().run_node(n)
        if n.name in self.names:
            self.seen[n.name] = result
        return result


def _batches(x: Tensor, size: int) -> Iterator[Tensor]:
    yield from x.split(size)


def _units_last(t: Tensor, dim: int = 1) -> Tensor:
    """(N, C, ...) -> (N * ..., C): every position is a sample of the channel (on ``dim``)."""
    return t.movedim(dim, -1).reshape(-1, t.shape[dim]).to(torch.float64)


def _match_activations(
    gm: fx.GraphModule,
    gm_ref: fx.GraphModule,
    data: Tensor,
    state: State,
    ref: State,
    spec: SymmetrySpec,
    batch_size: int,
    element: Element,
    units: tuple[State, State] | None = None,
) -> None:
    names = {name for g in spec.groups for name, _, _ in g.nodes}
    axis_of = {
        name: (g.node_axes[i] if g.node_axes else 1)
        for g in spec.groups
        for i, (name, _, _) in enumerate(g.nodes)
    }
    sums: dict[str, list[Tensor]] = {}
    count: dict[str, int] = {}
    with torch.no_grad():
        for batch in _batches(data, batch_size):
            mine, theirs = _Recorder(gm, names), _Recorder(gm_ref, names)
            mine.run(batch)
            theirs.run(batch)
            for name in names:
                axis = axis_of[name]
                b = _units_last(mine.seen[name], axis)
                a = _units_last(theirs.seen[name], axis)
                parts = [a.sum(0), b.sum(0), (a * a).sum(0), (b * b).sum(0), a.T @ b]
                if name in sums:
                    sums[name] = [s + p for s, p in zip(sums[name], parts, strict=True)]
                else:
                    sums[name] = parts
                count[name] = count.get(name, 0) + a.shape[0]

    def cost(ref_group: int, model_group: int) -> tuple[Tensor, dict[int, Tensor]]:
        """Correlations of the reference group's units with the model group's (alike groups:
        one group, or the same side of two blocks of a grouped convolution)."""
        mine, theirs = spec.groups[ref_group], spec.groups[model_group]
        n = mine.size
        plain = torch.zeros(n, n, dtype=torch.float64)
        signed: dict[int, Tensor] = {}
        for (name, k, index_a), (_, _, index_b) in zip(mine.nodes, theirs.nodes, strict=True):
            sa, sb, saa, sbb, sab = sums[name]
            if index_a is not None:
                at = torch.as_tensor(index_a, dtype=torch.long)
                sa, saa, sab = sa[at], saa[at], sab[at]
            if index_b is not None:
                at = torch.as_tensor(index_b, dtype=torch.long)
                sb, sbb, sab = sb[at], sbb[at], sab[:, at]
            m = count[name]
            cov = sab / m - torch.outer(sa / m, sb / m)
            std_a = (saa / m - (sa / m) ** 2).clamp_min(0).sqrt()
            std_b = (sbb / m - (sb / m) ** 2).clamp_min(0).sqrt()
            # units that are constant on the data carry no correlation (not rounding noise):
            # the one-pass variance of a constant unit is rounding of order 1e-16 mean^2, so
            # its standard deviation reaches ~1e-8 |mean|; anything below 1e-6 |mean| is constant
            live = torch.outer(
                std_a > 1e-6 * (sa / m).abs().clamp_min(1),
                std_b > 1e-6 * (sb / m).abs().clamp_min(1),
            )
            corr = torch.where(live, cov / torch.outer(std_a, std_b).clamp_min(1e-300), 0.0)
            corr = corr.clamp(-1.0, 1.0)
            if k is not None and spec.scale_class(k).sign:
                signed[k] = signed.get(k, torch.zeros(n, n, dtype=torch.float64)) + corr
            else:
                plain += corr
        return plain, signed

    _match_cosine(state, ref, spec, element, activation_cost=cost, units=units)
