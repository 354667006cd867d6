"""The ``"stacked"`` runner: hand-stacked matrix products for plain chains.

The first layer is one large product of the shared inputs with the chunk's stacked weights
(or, for an affine family, a combination of the origin's and the directions' products); later
layers are batched products in a (points, features, inputs) layout. A chunk of one point runs
plain 2-D products on (inputs, features) rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from funcspace.params import Params

from .int8 import EXACT_DTYPES, int8_linear, use_int8
from .plan import Op
from .points import Buffers
from .strategy import Job


def prefix(ops: Sequence[Op], x: Tensor) -> Tensor:
    """Parameter-free ops before the first Linear, on the shared inputs (never in place)."""
    for kind, payload in ops:
        if kind == "flatten":
            x = x.flatten(1)
        elif kind == "relu":
            x = torch.relu(x)
        elif kind in ("fn", "sign"):
            x = payload(x)
    return x


def _chain_tail(ops, h, params, buffers, modules, row, stats=None, step=1, int8=None) -> Tensor:
    """Run chain ops on per-point features ``h``.

    ``row``: one point, ``h`` is (N, d) and tensors are unstacked. Otherwise ``h`` is
    (k, d, N) and tensors carry the chunk axis. ``stats``: dict of BatchNorm name -> (mean,
    var) accumulators for this chunk; when given, BatchNorm normalizes with batch statistics
    and folds them into the accumulators as the cumulative average of batch ``step``.
    ``int8``: dict of ``"sign_linear"`` layer name -> whether every product so far ran in
    int8; when given, those layers try int8 and record a fall-back to float.
    """
    for kind, payload in ops:
        if kind == "sign_linear" and int8 is not None:
            out = int8_linear(h, params[f"{payload}.weight"], row=row)
            if out is not None:
                h = out
                continue
            int8[payload] = False
        if kind in ("linear", "sign_linear"):
            w, b = params[f"{payload}.weight"], params.get(f"{payload}.bias")
            if row:
                h = torch.addmm(b, h, w.T) if b is not None else h @ w.T
            else:
                h = torch.baddbmm(b.unsqueeze(-1), w, h) if b is not None else torch.bmm(w, h)
        elif kind == "bn":
            h = _chain_bn(h, payload, params, buffers, modules[payload], row, stats, step)
        elif kind == "relu":
            h = h.relu_()
        elif kind in ("fn", "sign"):
            h = payload(h)
    return h


def _chain_bn(h, name, params, buffers, module, row, stats, step) -> Tensor:
    """BatchNorm of per-point features through torch's own kernel.

    ``stats`` given: normalize with the batch statistics and fold them into the accumulators
    as the cumulative average of batch ``step`` (momentum ``1 / step``, the unbiased variance,
    as ``torch.optim.swa_utils.update_bn`` does). One point (``row``, ``h`` of shape ``(N, d)``)
    gets bit for bit what a single network gets, statistics included (a last-bit difference
    before a sign would flip it; the compute regime runs one point at a time). A chunk ``(k, d,
    N)`` runs as one ``(1, k d, N)`` batch, each point's feature its own channel: equal to
    float rounding (the kernel sums the batch in another order)."""
    weight, bias = params.get(f"{name}.weight"), params.get(f"{name}.bias")
    if stats is None:
        mean, var = buffers[f"{name}.running_mean"], buffers[f"{name}.running_var"]
        training, momentum = False, 0.0
    else:
        (mean, var), training, momentum = stats[name], True, 1.0 / step
    if row:
        return F.batch_norm(h, mean, var, weight, bias, training, momentum, module.eps)
    k, d, n = h.shape
    if training and not all(t.shape == (k, d) and t.is_contiguous() for t in (mean, var)):
        raise RuntimeError(f"BatchNorm '{name}': the accumulators must be contiguous (k, d) rows")

    def flat(t: Tensor | None) -> Tensor | None:
        return None if t is None else torch.broadcast_to(t, (k, d)).reshape(k * d)

    # the accumulators are contiguous (k, d) slices: reshape gives views, updated in place
    out = F.batch_norm(
        h.reshape(1, k * d, n),
        flat(mean),
        flat(var),
        flat(weight),
        flat(bias),
        training,
        momentum,
        module.eps,
    )
    return out.view(k, d, n)


class StackedRunner:
    """Hand-stacked products for plain chains (strategy "stacked")."""

    def __init__(self, job: Job, strategy: str, chunk: int, reuse: bool) -> None:
        plan = job.plan
        self.job, self.chunk, self.reuse = job, chunk, reuse
        self.prefix_ops = plan.chain[: plan.first_chain]
        self.first = plan.chain[plan.first_chain][1]
        self.tail = plan.chain[plan.first_chain + 1 :]
        bn_at = [i for i, (kind, _) in enumerate(self.tail) if kind == "bn"]
        self.recal_tail = self.tail[: bn_at[-1] + 1] if bn_at else ()
        self.modules = {
            name: job.template.get_submodule(name) for kind, name in plan.chain if kind == "bn"
        }
        # int8 for the Linears that read a sign: decided once per evaluation (device, dtype,
        # setting); each chunk's operands are checked again when it runs
        candidates = [name for kind, name in self.tail if kind == "sign_linear"]
        x0 = job.batches[0][0]
        wanted = bool(candidates) and x0.dtype in EXACT_DTYPES
        self.int8 = dict.fromkeys(candidates, True) if wanted else None
        if self.int8 is not None and not use_int8(job.settings.int8, x0.device):
            self.int8 = None
        if reuse:
            affine = job.affine
            origin, directions, coefficients = affine.origin, affine.directions, affine.coefficients
            w = [origin[f"{self.first}.weight"]] + [
                d.get(f"{self.first}.weight", torch.zeros_like(origin[f"{self.first}.weight"]))
                for d in directions
            ]
            self.first_w = torch.stack(w)  # (m+1, out, in)
            if f"{self.first}.bias" in origin:
                b0 = origin[f"{self.first}.bias"]
                self.first_b = torch.stack(
                    [b0] + [d.get(f"{self.first}.bias", torch.zeros_like(b0)) for d in directions]
                )
            else:
                self.first_b = None
            ones = coefficients.new_ones(coefficients.shape[0], 1)
            self.ext = torch.cat([ones, coefficients], dim=1)  # (K, m+1)
            self.ext_list = self.ext.tolist() if chunk == 1 else None

    def shared(self, x: Tensor) -> Any:
        h = prefix(self.prefix_ops, x)
        if not self.reuse:
            return h, h.T.contiguous() if self.chunk > 1 else None
        m1, out, _ = self.first_w.shape
        if self.chunk == 1:  # rows: (m+1, N, out)
            z = h @ self.first_w.reshape(m1 * out, -1).T
            if self.first_b is not None:
                z += self.first_b.reshape(-1)
            return z.view(len(h), m1, out).permute(1, 0, 2).contiguous()
        z = self.first_w.reshape(m1 * out, -1) @ h.T  # columns: (m+1, out, N)
        if self.first_b is not None:
            z += self.first_b.reshape(-1, 1)
        return z.view(m1, -1)

    def _first_output(self, shared, start, stop, params) -> Tensor:
        row = self.chunk == 1
        if self.reuse:
            if row:
                coeffs = self.ext_list[start]  # [1, c_1, ..., c_m], m >= 1
                z = torch.add(shared[0], shared[1], alpha=coeffs[1])
                for c, zi in zip(coeffs[2:], shared[2:], strict=True):
                    z.add_(zi, alpha=c)
                return z
            k, out = stop - start, self.first_w.shape[1]
            ext = self.ext[start:stop]
            # sum_i c_i z_i as broadcast multiply-adds: a product with an inner dimension of
            # m + 1 (2 on a line) runs 1.4-2.8x slower on a CPU (benchmarks/linear_profile.py)
            z = torch.addcmul(shared[0], ext[:, 1:2], shared[1])
            for i in range(2, ext.shape[1]):
                z.addcmul_(ext[:, i : i + 1], shared[i])
            return z.view(k, out, -1)
        h, h_t = shared
        w, b = params[f"{self.first}.weight"], params.get(f"{self.first}.bias")
        if row:
            return torch.addmm(b, h, w.T) if b is not None else h @ w.T
        k, out, _ = w.shape
        flat = w.reshape(k * out, -1)
        z = torch.addmm(b.reshape(-1, 1), flat, h_t) if b is not None else flat @ h_t
        return z.view(k, out, -1)

    def _params(self, start: int, stop: int) -> Params:
        points = self.job.points
        return points.point(start) if self.chunk == 1 else points.chunk(start, stop)

    def logits(self, shared, start, stop, buffers: Buffers) -> tuple[Tensor, int]:
        params = self._params(start, stop)
        row = self.chunk == 1
        bufs = buffers.point(start) if row else buffers.chunk(start, stop)
        h = self._first_output(shared, start, stop, params)
        out = _chain_tail(self.tail, h, params, bufs, self.modules, row, int8=self.int8)
        return (out.unsqueeze(0), 2) if row else (out, 1)

    @property
    def int8_layers(self) -> tuple[str, ...]:
        """The layers whose products ran in int8 at every point and batch so far."""
        return tuple(name for name, ok in (self.int8 or {}).items() if ok)

    def recalibrate(self, shared, start, stop, buffers: Buffers, step: int) -> None:
        if not self.recal_tail:
            return
        params = self._params(start, stop)
        row = self.chunk == 1
        stats = {}
        for name in self.modules:
            mean = buffers.values[f"{name}.running_mean"]
            var = buffers.values[f"{name}.running_var"]
            stats[name] = (mean[start], var[start]) if row else (mean[start:stop], var[start:stop])
            tracked = buffers.values.get(f"{name}.num_batches_tracked")
            if tracked is not None:
                tracked[start:stop] += 1
        h = self._first_output(shared, start, stop, params)
        _chain_tail(self.recal_tail, h, params, None, self.modules, row, stats, step, self.int8)
