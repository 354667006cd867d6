"""Attention for the graph walk: query-key scores, their heads, and nn.MultiheadAttention.

Mixed into :class:`canonicalize.discover.Walk`. Per head ``h`` the scores are
``softmax(Q_h K_h^T / sqrt(d))`` and the output ``sum_h softmax(...) V_h W_O,h``. What this
part of the group the walk records:

- whole heads permute: the query, key and value rows of head ``h`` and the columns of the
  output projection that read it move together to another head's place (a group of blocks,
  :mod:`canonicalize.blocks`, one block per head, holding its query-key group and its value
  group);
- inside a head, the query and key features permute together by one permutation (the scores
  are a sum over them), and the value features with the output projection's columns;
- the value features keep their scales and signs (the scores mix tokens, not features, so a
  factor on a value row passes to the output projection's column), as between any two linear
  layers;
- for every attention, what its heads' continuous groups need (resolved into
  :class:`~canonicalize.spec.Attention` by :mod:`canonicalize.headspec`, divided out by
  :mod:`canonicalize.heads`): the scale atoms of the query, key and value features of each
  head (which layer's rows they are), whether only linear reshuffles lie between the
  projections and the attention (:mod:`canonicalize.linearity`), whether the scores are
  soft-maxed over the keys after shifts and scales only (the key bias drops out) and whether
  each row of the attention sums to one when it meets the values (the value bias folds into
  the output projection's bias).

With ``heads="full"`` (the default everywhere) each head's invertible maps ``W_Q -> A W_Q``,
``W_K -> A^-T W_K`` and ``W_V -> B W_V``, ``W_O,h -> W_O,h B^-1`` are divided out where they
hold, with the key bias and the value bias's fold; ``heads="permutations"`` keeps only the
permutations (and the value features' scales and signs) above. Not divided out, and said in
``spec.notes`` with the reason: the maps of an attention whose projections are not plain
linear layers (a norm or a rotation on the queries and keys, a gate on the values, an output
projection whose outputs have a free scale), the key bias of scores used before or without a
softmax over the keys, the value bias where the output projection has no bias. Masks (additive,
boolean, or filled with ``-inf`` or anything at or below ``-1e4``), dropout and scaling of the
scores do not change the group (dropout in eval mode); a fixed tensor that varies from head to
head (a per-head bias such as ALiBi) keeps heads in place (noted).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import fx, nn

from . import ops
from .errors import SymmetryError
from .linearity import from_linear, to_linears, users
from .nodes import describe, layer
from .values import Chan, Heads, Pieces, Value, featureless, grid, inert, lift, permute_axes

if TYPE_CHECKING:
    from .discover import Walk

_MATMULS = {torch.matmul, torch.bmm}
_SHIFTS = {"add", "add_", "sub", "sub_", "iadd", "isub", "__add__", "__sub__", "__iadd__"}
_SCALINGS = {"mul", "mul_", "truediv", "div", "div_", "imul", "itruediv", "__mul__"}
_FILLS = {"masked_fill", "masked_fill_", "where"}
_PASSIVE = {"dropout", "contiguous", "clone", "to", "float", "double", "half", "type_as"}
# a fill at or below this gives a weight exp(fill - max) that underflows to exactly zero in
# float32 and float64 whenever the scores stay below 9e3 in magnitude
_MASKING_FILL = -1e4


def _is_matmul(node: fx.Node) -> bool:
    if node.op == "call_function":
        return node.target in _MATMULS or getattr(node.target, "__name__", "") == "matmul"
    return node.op == "call_method" and str(node.target) in ("matmul", "bmm", "__matmul__")


def _atoms(chans: list[Chan]) -> tuple[int | None, ...]:
    """The scale atom of each feature when it is one row of one layer (its only factor)."""
    found: list[int | None] = []
    for chan in chans:
        terms = list(chan.terms)
        found.append(terms[0][0] if len(terms) == 1 and terms[0][1] == "full" else None)
    return tuple(found)


def _module_path(node: fx.Node) -> str:
    """The module an attention sits in (its node's name when the graph does not say)."""
    stack = node.meta.get("nn_module_stack")
    if stack:
        path = next(reversed(stack.items()))[1][0]
        if path:
            return str(path)
    return node.name


def _constant(node: fx.Node, position: int, name: str):
    if len(node.args) > position:
        return node.args[position]
    return node.kwargs.get(name)


class AttentionOps:
    """Query-key scores, attention over values, and ``nn.MultiheadAttention`` (a Walk mixin)."""

    # --- products of two tensors -----------------------------------------------------------
    def matmul(self: Walk, node: fx.Node, shape) -> Value:
        a_node, b_node = node.args[0], node.args[1]
        for arg in (a_node, b_node):
            value = self.values.get(arg) if isinstance(arg, fx.Node) else None
            if isinstance(value, Value) and value.param is not None:
                raise SymmetryError(
                    f"the forward pass reads the tensor '{value.param[0]}' directly as a "
                    f"matrix ({describe(node)}); only parameters held by supported layers "
                    "(nn.Linear, nn.Conv*, nn.Embedding, ...) may multiply features. To tie an "
                    "output layer to an embedding, share the Parameter with an nn.Linear "
                    "(head.weight = embedding.weight)"
                )
        a, b = self.values[a_node], self.values[b_node]
        if not isinstance(a, Value) or not isinstance(b, Value):
            raise SymmetryError(f"{describe(node)} multiplies a non-tensor")
        if a.heads is not None:
            if b.heads is not None:
                raise SymmetryError(f"{describe(node)} multiplies two attention scores")
            return self.attend(node, a, b, shape)
        if b.heads is not None:
            raise SymmetryError(f"{describe(node)} multiplies a tensor by attention scores")
        if len(a.shape) < 2 or len(b.shape) < 2:
            if inert(a) and inert(b):
                return featureless(shape)
            raise SymmetryError(f"{describe(node)}: products with vectors are not supported")
        a_contract, b_contract = len(a.shape) - 1, len(b.shape) - 2
        if inert(a) and inert(b):
            return featureless(shape)
        if not inert(a) and not inert(b):
            if a_contract in a.axes and b_contract in b.axes:
                return self.scores(node, a, b, shape, (a_node, b_node))
            raise SymmetryError(
                f"{describe(node)} multiplies two tensors that both carry features in a way "
                "that is not an attention's query-key product; not supported"
            )
        moving, contract = (b, b_contract) if inert(a) else (a, a_contract)
        if contract in moving.axes:
            # a fixed matrix mixes the features: they are fixed
            self.pin(moving.chans)
            self.terminal(moving.chans)
            self.note(node, "a fixed matrix mixes the features: they cannot move")
            return featureless(shape)
        # a fixed matrix mixes tokens (or other non-feature axes): the features pass
        lifted = lift(moving, len(shape))
        return lifted._replace(shape=tuple(shape), shift=(), param=None)

    def scores(self: Walk, node: fx.Node, q: Value, kt: Value, shape, operands: tuple) -> Value:
        """``q @ k^T``: the query and key features of each head meet in one sum.

        ``operands`` are the graph nodes of the query and of the (transposed) key.
        """
        ndim = len(shape)
        q, kt = lift(q, ndim), lift(kt, ndim)
        q_within, k_within = ndim - 1, ndim - 2
        q_heads = [a for a in q.axes if a != q_within]
        k_heads = [a for a in kt.axes if a != k_within]
        if len(q_heads) > 1 or q_heads != k_heads:
            raise SymmetryError(
                f"{describe(node)}: the heads of the query and the key do not line up (query "
                f"features on axes {list(q.axes)} of {q.shape}, key on {list(kt.axes)} of "
                f"{kt.shape}); grouped-query attention is not supported"
            )
        if q.block != 1 or kt.block != 1:
            raise SymmetryError(f"{describe(node)} multiplies flattened feature maps")
        pos = q_heads[0] if q_heads else None
        heads = q.shape[pos] if pos is not None else 1
        width = q.shape[q_within]
        if kt.shape[k_within] != width or (pos is not None and kt.shape[pos] != heads):
            raise SymmetryError(f"{describe(node)}: query and key heads differ in size")
        q_grid = grid(q).reshape(heads, width)
        k_grid = grid(kt).reshape(heads, width)  # ascending axes: the head axis comes first
        query = tuple(_atoms([q.chans[i] for i in q_grid[h]]) for h in range(heads))
        key = tuple(_atoms([kt.chans[i] for i in k_grid[h]]) for h in range(heads))
        qk = []
        for h in range(heads):
            atoms: list[int | None] = []
            for i in range(width):
                cq, ck = q.chans[q_grid[h, i]], kt.chans[k_grid[h, i]]
                self.terminal([cq, ck])
                if cq.perm is None or ck.perm is None:
                    self.pin([cq, ck])
                    atoms.append(None)
                else:
                    atoms.append(self.perms.union(cq.perm, ck.perm))
            if heads > 1:
                chans = self.mark(tuple(Chan(a, frozenset()) for a in atoms), f"{node.name}/qk{h}")
                atoms = [c.perm for c in chans]
            qk.append(tuple(atoms))
        found = Heads(
            pos,
            tuple(qk),
            node.name,
            keys=ndim - 1,
            query=query,
            key=key,
            operands=operands,
        )
        return Value((), 1, tuple(shape), axes=(), heads=found)

    def attend(
        self: Walk, node: fx.Node, s: Value, v: Value, shape, value_node: fx.Node | None = None
    ) -> Value:
        """``scores @ v``: each head's scores mix the tokens of its own value features.

        Records the attention for :mod:`canonicalize.resolve`: its heads' units, the scale
        atoms of their query, key and value features, whether the scores were soft-maxed over
        the keys (a constant per query drops out; rows sum to one) and whether only linear
        reshuffles lie between the projections and the attention (``value_node``: the value's
        graph node, ``node.args[1]`` by default).
        """
        ndim = len(shape)
        s, v = lift(s, ndim), lift(v, ndim)
        heads = s.heads
        assert heads is not None
        if inert(v):
            return featureless(shape)
        within = ndim - 1
        if within not in v.axes or v.block != 1:
            raise SymmetryError(
                f"{describe(node)}: attention over values whose features are not on the last "
                "axis; not supported"
            )
        v_heads = [a for a in v.axes if a != within]
        count = len(heads.qk)
        if count > 1 and (v_heads != [heads.pos] or v.shape[heads.pos] != count):
            raise SymmetryError(
                f"{describe(node)}: the heads of the scores and of the values do not line up"
            )
        if count == 1 and v_heads:
            raise SymmetryError(f"{describe(node)}: one head of scores over several of values")
        layout = grid(v).reshape(count, -1)
        chans = list(v.chans)
        value_atoms = tuple(_atoms([chans[i] for i in layout[h]]) for h in range(count))
        values = []
        for h in range(count):
            part = tuple(chans[i] for i in layout[h])
            if count > 1:
                part = self.mark(part, f"{heads.node}/v{h}")
            for i, c in zip(layout[h], part, strict=True):
                chans[i] = c
            values.append([c.perm for c in part])
        if count > 1:
            self.record_heads(node, heads, values)
        rows = heads.stochastic and heads.keys == ndim - 1
        linear_qk = len(heads.operands) == 2 and all(
            isinstance(n, fx.Node) and from_linear(self.gm, n) for n in heads.operands
        )
        v_node = value_node if value_node is not None else node.args[1]
        linear_vo = (
            isinstance(v_node, fx.Node)
            and from_linear(self.gm, v_node)
            and to_linears(self.gm, node)
        )
        self.attentions.append(
            dict(
                name=_module_path(node),
                node=node,
                scores=heads.node,
                qk=heads.qk,
                values=values,
                query=heads.query,
                key=heads.key,
                value=value_atoms,
                normalized=heads.normalized,
                stochastic=rows,
                linear_qk=linear_qk,
                linear_vo=linear_vo,
            )
        )
        return v._replace(chans=tuple(chans), shape=tuple(shape), shift=(), param=None)

    def record_heads(self: Walk, node: fx.Node, heads: Heads, values: list[list]) -> None:
        """Whole heads permute together, unless something holds them in place."""
        if heads.fixed:
            self.note(node, "a fixed tensor varies from head to head: the heads stay in place")
            return
        self.grouped.append(
            dict(
                name=heads.node,
                node=node,
                inputs=[list(q) for q in heads.qk],
                outputs=values,
                markers=(f"{heads.node}/qk", f"{heads.node}/v"),
                kind="heads",
            )
        )

    def sdpa(self: Walk, node: fx.Node, shape) -> Value:
        """``F.scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, is_causal, scale)``."""
        names = ("query", "key", "value", "attn_mask")
        q_node, k_node, v_node, mask_node = (
            node.args[i] if len(node.args) > i else node.kwargs.get(n) for i, n in enumerate(names)
        )
        if node.kwargs.get("enable_gqa"):
            raise SymmetryError(f"{describe(node)}: grouped-query attention is not supported")
        q, k, v = (self.value(n, node) for n in (q_node, k_node, v_node))
        order = list(range(len(k.shape)))
        order[-1], order[-2] = order[-2], order[-1]
        kt = permute_axes(k, order, tuple(k.shape[:-2]) + (k.shape[-1], k.shape[-2]))
        batch = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2])
        score_shape = (*batch, q.shape[-2], k.shape[-2])
        if inert(q) or inert(k):
            s = Value((), 1, score_shape, axes=(), heads=Heads(None, ((),), node.name, True))
        else:
            s = self.scores(node, q, kt, score_shape, (q_node, k_node))
        # scaled_dot_product_attention soft-maxes over the keys (after its mask) itself
        heads = s.heads._replace(normalized=True, stochastic=True)  # type: ignore[union-attr]
        s = s._replace(heads=heads)
        if isinstance(mask_node, fx.Node):
            s = self.masked_scores(node, s, self.values.get(mask_node))
        return self.attend(node, s, v, shape, v_node)

    def masked_scores(self: Walk, node: fx.Node, s: Value, mask) -> Value:
        """Scores combined with a fixed tensor (a mask, a bias): per-head ones hold heads."""
        if not isinstance(mask, Value) or not inert(mask):
            raise SymmetryError(
                f"{describe(node)} combines attention scores with a tensor computed from "
                "features; not supported"
            )
        heads = s.heads
        assert heads is not None
        ndim = max(len(s.shape), len(mask.shape))
        s, mask = lift(s, ndim), lift(mask, ndim)
        if heads.pos is not None and mask.shape[s.heads.pos] != 1:  # type: ignore[union-attr]
            s = s._replace(heads=s.heads._replace(fixed=True))  # type: ignore[union-attr]
        return s

    # --- operations on scores ---------------------------------------------------------------
    def scores_op(self: Walk, node: fx.Node, shape) -> Value:
        """Any operation that takes attention scores (masking, scaling, softmax, ...)."""
        if _is_matmul(node):
            return self.matmul(node, shape)
        inputs = self.tensor_inputs(node)
        scored = [n for n in inputs if isinstance(self.values[n], Value) and self.values[n].heads]
        if len(scored) > 1:
            raise SymmetryError(f"{describe(node)} combines the scores of two attentions")
        s = self.values[scored[0]]
        assert isinstance(s, Value) and s.heads is not None
        first = node.args[0] if node.args else None
        name = str(getattr(node.target, "__name__", node.target))
        if first is not scored[0] and name not in ("add", "mul", "where", "masked_fill"):
            raise SymmetryError(f"{describe(node)} uses attention scores as a second argument")
        result = self.score_operation(node, shape, s, scored[0], inputs, name)
        return self.follow_keys(node, scored[0], s.heads, result, self.score_effect(node, name))

    def score_effect(self: Walk, node: fx.Node, name: str) -> str:
        """What an operation on scores does to a constant per query (see :meth:`follow_keys`)."""
        if name in ("softmax", "_softmax"):
            return "softmax"
        if name in _PASSIVE:
            return "passive"
        others = [n for n in self.tensor_inputs(node) if n is not node.args[0]]
        if name in _SCALINGS and not others:
            return "scale"
        if name in _SHIFTS and others:
            return "shift"
        if name in _FILLS:
            fill = _constant(node, 2, "value" if name != "where" else "other")
            if isinstance(fill, (int, float)) and fill <= _MASKING_FILL:
                return "shift"
        return "other"

    def follow_keys(
        self: Walk, node: fx.Node, source: fx.Node, before: Heads, result: Value, effect: str
    ) -> Value:
        """Carry the key axis, the softmax and the row sums through one operation on scores.

        ``effect``: ``"softmax"`` (over some axis), ``"passive"`` (dropout, a copy, a cast),
        ``"scale"`` (by a number), ``"shift"`` (adding a fixed tensor, a mask filled with a
        large negative number), ``"other"``. A constant per query survives a scale and a shift;
        a softmax over the key axis removes it and makes rows sum to one; after that only
        passive operations keep the row sums. Raw scores read by more than one operation may
        reach something that sees the constant: their attention keeps its key bias.
        """
        if not before.normalized and len(users(source)) > 1:
            self.spoiled.add(before.node)
        heads = result.heads
        if heads is None:
            if not before.normalized:
                self.spoiled.add(before.node)
            return result
        if effect == "softmax":
            dim = _constant(node, 1, "dim")
            if isinstance(dim, int) and before.keys is not None:
                if dim % len(result.shape) == heads.keys:
                    return result._replace(heads=heads._replace(normalized=True, stochastic=True))
            effect = "other"
        if effect == "passive" or (effect in ("scale", "shift") and not before.normalized):
            return result
        if effect in ("scale", "shift"):
            return result._replace(heads=heads._replace(stochastic=False))
        return result._replace(heads=heads._replace(keys=None, stochastic=False))

    def score_operation(
        self: Walk, node: fx.Node, shape, s: Value, source: fx.Node, inputs: list, name: str
    ) -> Value:
        """The value of an operation on scores (:meth:`scores_op` without the key tracking)."""
        if name == "getitem" or node.target is getattr:
            if name == "getitem":
                index = node.args[1] if isinstance(node.args[1], tuple) else (node.args[1],)
                return self.getitem_general(node, s, index, shape)
        if name in ("transpose", "swapaxes", "swapdims", "permute", "t", "movedim"):
            handled = (
                self.visit_sequence_function(node, shape)
                if node.op == "call_function"
                else self.visit_sequence_method(node, shape)
            )
            if handled is not None:
                return handled
        if name in ("view", "reshape", "unflatten", "flatten", "squeeze", "unsqueeze"):
            return self.reshape_general(node, s, shape)
        if name in ("mean", "sum", "amax"):
            dims = ops.reduction_dims(node, name)
            ndim = len(s.shape)
            dims = tuple(range(ndim)) if dims is None else dims
            dims = (dims,) if isinstance(dims, int) else tuple(d % ndim for d in dims)
            if s.heads.pos in dims:
                return featureless(shape)  # averaged over heads: no head identity left
            kept = len(shape) == ndim
            pos = s.heads.pos
            if pos is not None and not kept:
                pos -= sum(d < pos for d in dims)
            return Value((), 1, tuple(shape), axes=(), heads=s.heads._replace(pos=pos))
        if name in ("softmax", "log_softmax", "_softmax"):
            dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
            if dim is not None and s.heads.pos is not None and dim % len(s.shape) == s.heads.pos:
                s = s._replace(heads=s.heads._replace(fixed=True))
        elif (
            name not in ops.SCORE_OPS
            and not (node.op == "call_function" and ops.function_kind(node.target) is not None)
            and not (node.op == "call_method" and ops.method_kind(name) is not None)
        ):
            raise SymmetryError(
                f"{describe(node)} uses the scores of an attention in a way canonicalize does "
                "not support (scores may be masked, scaled, soft-maxed over keys, dropped out "
                "and multiplied with values)"
            )
        for other in inputs:
            if other is source:
                continue
            s = self.masked_scores(node, s, self.values[other])
        lifted = lift(s, len(shape))
        return lifted._replace(shape=tuple(shape))

    def scores_module(self: Walk, node: fx.Node, module: nn.Module, shape) -> Value:
        """A layer applied to attention scores: dropout, an activation, a softmax over keys."""
        s = self.values[node.args[0]]
        assert isinstance(s, Value) and s.heads is not None
        before = s.heads
        effect = "other"
        if isinstance(module, ops.SOFTMAX_MODULES):
            dim = module.dim
            if dim is not None and s.heads.pos is not None and dim % len(s.shape) == s.heads.pos:
                s = s._replace(heads=s.heads._replace(fixed=True))
            if isinstance(module, nn.Softmax) and isinstance(dim, int) and before.keys is not None:
                if dim % len(s.shape) == before.keys:
                    s = s._replace(heads=s.heads._replace(normalized=True, stochastic=True))  # type: ignore[union-attr]
                    effect = "passive"
        elif ops.module_kind(module) is None or len(node.args) > 1:
            raise SymmetryError(
                f"{layer(str(node.target), module)} is applied to the scores of an attention; "
                "scores may be masked, scaled, soft-maxed over keys, dropped out and multiplied "
                "with values"
            )
        elif isinstance(module, (nn.Dropout, nn.Identity)):
            effect = "passive"
        result = s._replace(shape=tuple(shape))
        return self.follow_keys(node, node.args[0], before, result, effect)

    # --- nn.MultiheadAttention ----------------------------------------------------------------
    def multihead(self: Walk, node: fx.Node, name: str, module: nn.MultiheadAttention) -> Pieces:
        self.once(name, module)
        if module.bias_k is not None or module.add_zero_attn:
            raise SymmetryError(
                f"{layer(name, module)}: add_bias_kv and add_zero_attn are not supported"
            )
        if not module._qkv_same_embed_dim:
            raise SymmetryError(
                f"{layer(name, module)}: separate query, key and value projections (kdim or "
                "vdim other than embed_dim) are not supported"
            )
        names = (
            "query",
            "key",
            "value",
            "key_padding_mask",
            "need_weights",
            "attn_mask",
            "average_attn_weights",
            "is_causal",
        )
        bound = dict(zip(names, node.args, strict=False))
        bound.update(node.kwargs)
        metas = node.meta.get("tensor_meta")
        if not isinstance(metas, (tuple, list)) or not hasattr(metas[0], "shape"):
            raise SymmetryError(f"{layer(name, module)} did not return its output tensor")
        out_shape = tuple(metas[0].shape)
        inputs = []
        for role in ("query", "key", "value"):
            value = self.value(bound[role], node)
            inputs.append(self.on_axis(value, len(value.shape) - 1, node))
        query, key, value = inputs
        width, count = module.embed_dim, module.num_heads
        head = width // count
        weight = f"{name}.in_proj_weight" if name else "in_proj_weight"
        bias = f"{name}.in_proj_bias" if name else "in_proj_bias"
        rows = [weight] + ([bias] if module.in_proj_bias is not None else [])
        q_perm, q_scale = self.new_units(f"{name}/query", width)
        _, k_scale = self.new_units(f"{name}/key", width, q_perm)
        v_perm, v_scale = self.new_units(f"{name}/value", width)
        for atom in (*q_scale, *k_scale):
            self.no_magnitude.add(atom)
            self.no_sign.add(atom)
        if count > 1:
            for h in range(count):
                part = slice(h * head, (h + 1) * head)
                qk = self.mark(tuple(Chan(a, frozenset()) for a in q_perm[part]), f"{name}/qk{h}")
                vv = self.mark(tuple(Chan(a, frozenset()) for a in v_perm[part]), f"{name}/v{h}")
                q_perm[part] = [c.perm for c in qk]
                v_perm[part] = [c.perm for c in vv]
        if bound["query"] is bound["key"] is bound["value"]:
            self.read_columns(query.chans, weight)
        else:
            for k, source in enumerate(inputs):
                self.read_columns(source.chans, weight, row_slice=(k * width, (k + 1) * width))
        seen = [c.perm for v in inputs for c in v.chans]
        self.add_layer(
            name, "linear", rows, q_perm + q_perm + v_perm, q_scale + k_scale + v_scale, seen
        )
        heads = Heads(None if count == 1 else 1, (), name)
        mask = bound.get("attn_mask")
        if isinstance(mask, fx.Node):
            mask_value = self.values.get(mask)
            if not isinstance(mask_value, Value) or not inert(mask_value):
                raise SymmetryError(f"{layer(name, module)}: a mask computed from features")
            if len(mask_value.shape) == 3 and mask_value.shape[0] != 1:
                heads = heads._replace(fixed=True)  # one mask per head and example
        qk = [tuple(q_perm[h * head : (h + 1) * head]) for h in range(count)]
        heads = heads._replace(qk=tuple(qk))
        values = [list(v_perm[h * head : (h + 1) * head]) for h in range(count)]
        v_chans = tuple(
            Chan(p, frozenset({(s, "full")})) for p, s in zip(v_perm, v_scale, strict=True)
        )
        if count > 1:
            self.record_heads(node, heads, values)
        part = [slice(h * head, (h + 1) * head) for h in range(count)]
        self.attentions.append(
            dict(
                name=name,
                node=node,
                scores=name,
                qk=heads.qk,
                values=values,
                query=tuple(tuple(q_scale[p]) for p in part),
                key=tuple(tuple(k_scale[p]) for p in part),
                value=tuple(tuple(v_scale[p]) for p in part),
                # softmax over the keys inside, its mask additive or boolean; only linear maps
                # between the packed projection, the heads and the output projection
                normalized=True,
                stochastic=True,
                linear_qk=True,
                linear_vo=True,
            )
        )
        out_name = f"{name}.out_proj" if name else "out_proj"
        out_weight = f"{out_name}.weight"
        self.read_columns(v_chans, out_weight)
        out_rows = [out_weight] + ([f"{out_name}.bias"] if module.out_proj.bias is not None else [])
        out_perm, out_scale = self.new_units(out_name, width)
        self.add_layer(out_name, "linear", out_rows, out_perm, out_scale, v_perm)
        out = Value(
            tuple(
                Chan(p, frozenset({(s, "full")})) for p, s in zip(out_perm, out_scale, strict=True)
            ),
            1,
            out_shape,
            axes=(len(out_shape) - 1,),
        )
        weights: Value | None = None
        if len(metas) > 1 and metas[1] is not None and hasattr(metas[1], "shape"):
            w_shape = tuple(metas[1].shape)
            if bound.get("average_attn_weights", True) is False and count > 1:
                weights = Value((), 1, w_shape, axes=(), heads=heads._replace(pos=1))
            else:
                weights = featureless(w_shape)
        return Pieces((out, weights))
