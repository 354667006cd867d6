"""The loss Hessian as a linear operator on flat parameter vectors (exact products)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from funcspace._validate import (
    check_class_range,
    check_module,
    check_targets,
    eval_mode,
    explain_forward_error,
    select_parameters,
)
from funcspace.data import Dataset, Pair, as_pair
from funcspace.errors import FuncspaceError
from funcspace.metrics import Metric, as_loss

__all__ = ["HessianOperator", "Operator", "Selection", "as_operator"]

Selection = str | Sequence[str] | Callable[[str], bool] | None

if TYPE_CHECKING:
    import scipy.sparse.linalg


class Operator(Protocol):
    """What the estimators need: a symmetric ``(n, n)`` map on flat tensors."""

    shape: tuple[int, int]
    dtype: torch.dtype
    device: torch.device

    def matvec(self, v: Tensor) -> Tensor: ...


def _select(model: nn.Module, params: Selection) -> list[str]:
    named = dict(model.named_parameters())
    if params is None:
        chosen = [n for n, p in named.items() if p.requires_grad]
    else:
        chosen = select_parameters(list(named), params, "params")
    if not chosen:
        raise FuncspaceError(
            "no parameter selected: the model has no trainable parameters or `params` matched "
            "none; pass parameter or module names, or a predicate on names"
        )
    return chosen


class HessianOperator:
    """Hessian of the mean training loss of ``model`` on ``data``, as a linear operator.

    ``op.matvec(v)`` (also ``op @ v``) returns the exact product ``H v`` for a flat vector
    ``v`` over the selected parameters (in the model's parameter order), where ``H`` is the
    Hessian of the mean loss over **all** examples of ``data``: per-batch products are
    accumulated with weight ``batch size / number of examples``, so ``loss`` must return the
    mean over its batch. Each product is a double backward through a first-order gradient
    graph; when the data fit in one batch that graph is built once and cached, so repeated
    products cost no forward pass.

    The operator is a snapshot: parameters and buffers are copied when it is built and the
    model is never changed (its train/eval flags are given back after every forward).

    Parameters
    ----------
    model : nn.Module
        The network. It is evaluated in **eval mode**: BatchNorm uses its running statistics
        (the Hessian of the function the model computes at test time, and a loss that is a
        plain mean over examples) and dropout is off.
    data : Dataset or (inputs, targets)
        The examples (``split`` of a :class:`~funcspace.data.Dataset`); moved once to the
        model's device.
    loss : str, Metric or callable, default ``"loss"`` (cross-entropy)
        A differentiable :class:`~funcspace.metrics.Metric` or its name (``"loss"``,
        ``"mse"``), or any ``loss(outputs, targets) -> scalar``, the mean over the batch.
        Floating inputs are cast to the parameters' dtype; a metric's real or +-1 targets
        too, and its class targets must be integer class indices.
    batch_size : int, optional
        Examples per forward pass; ``None`` takes all of them at once (and caches the graph).
    params : str, sequence of str, or callable, optional
        The parameter subset: parameter names or module names (``"0"`` selects ``"0.weight"``
        and ``"0.bias"``), or a predicate on parameter names. Default: every parameter that
        requires grad.
    split : {"train", "test"}
        Which split of a Dataset.

    Attributes
    ----------
    shape : (n, n)
    names : tuple of str, the selected parameters in the order of the flat vector.
    hvps : int, Hessian-vector products performed so far (``dense()`` counts ``n``).

    Raises
    ------
    FuncspaceError
        For bad data, an empty or unknown parameter selection, parameters that are not finite
        or that mix dtypes or devices, or a bad ``batch_size``.

    Example
    -------
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Linear(3, 2).double()
    >>> data = (torch.randn(8, 3, dtype=torch.float64), torch.tensor([0, 1] * 4))
    >>> op = HessianOperator(model, data)
    >>> op.shape
    (8, 8)
    >>> H = op.dense()
    >>> bool(torch.allclose(H, H.T))
    True
    """

    def __init__(
        self,
        model: nn.Module,
        data: Dataset | Pair,
        *,
        loss: str | Metric | Callable[[Tensor, Tensor], Tensor] | None = None,
        batch_size: int | None = None,
        params: Selection = None,
        split: str = "train",
    ) -> None:
        # a non-finite weight, selected or fixed, spoils the Hessian
        check_module("model", model, finite=True)
        loss = as_loss(loss)
        inputs, targets = as_pair(data, split)
        self.names = tuple(_select(model, params))
        named = dict(model.named_parameters())
        chosen = [named[n] for n in self.names]
        dtypes = {p.dtype for p in chosen}
        devices = {p.device for p in chosen}
        if len(dtypes) != 1 or len(devices) != 1:
            raise FuncspaceError(
                f"the selected parameters mix dtypes {sorted(map(str, dtypes))} or devices "
                f"{sorted(map(str, devices))}; convert the model to one dtype and device"
            )
        if not all(p.dtype.is_floating_point for p in chosen):
            raise FuncspaceError("the selected parameters must be floating point")
        self.dtype: torch.dtype = dtypes.pop()
        self.device: torch.device = devices.pop()
        n_examples = len(inputs)
        if batch_size is None:
            batch_size = n_examples
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise FuncspaceError(
                f"batch_size must be a positive integer or None, got {batch_size!r}"
            )

        self._model = model
        self._loss = loss
        if inputs.is_floating_point():
            inputs = inputs.to(dtype=self.dtype)
        kind = loss.targets if isinstance(loss, Metric) else "any"
        targets = check_targets(targets, kind, dtype=self.dtype, device=targets.device)
        self._leaves = [p.detach().clone().requires_grad_(True) for p in chosen]
        self._fixed = {n: p.detach().clone() for n, p in named.items() if n not in set(self.names)}
        self._fixed.update({n: b.detach().clone() for n, b in model.named_buffers()})
        self._shapes = [p.shape for p in chosen]
        self._sizes = [p.numel() for p in chosen]
        n = sum(self._sizes)
        self.shape: tuple[int, int] = (n, n)
        inputs, targets = inputs.to(self.device), targets.to(self.device)
        self._batches = [
            (inputs[i : i + batch_size], targets[i : i + batch_size])
            for i in range(0, n_examples, batch_size)
        ]
        self._n_examples = n_examples
        self._cached: list[Tensor | None] | None = None
        self.hvps = 0

    # -- the products --------------------------------------------------------------------

    def _gradients(self, x: Tensor, y: Tensor) -> list[Tensor | None]:
        state = {**self._fixed, **dict(zip(self.names, self._leaves, strict=True))}
        with eval_mode(self._model):
            try:
                out = functional_call(self._model, state, (x,))
            except (RuntimeError, TypeError, IndexError) as err:
                raise explain_forward_error(self._model, x, err) from err
        if isinstance(self._loss, Metric) and self._loss.targets == "class" and len(y):
            check_class_range(y, out.shape[1] if out.ndim > 1 else 0)
        value = self._loss(out, y)
        if not isinstance(value, Tensor) or value.numel() != 1:
            raise FuncspaceError("loss must return a scalar tensor (the mean over the batch)")
        return list(torch.autograd.grad(value, self._leaves, create_graph=True, allow_unused=True))

    def _hvp(self, grads: list[Tensor | None], chunks: list[Tensor], retain: bool) -> list[Tensor]:
        pairs = [
            (g, c) for g, c in zip(grads, chunks, strict=True) if g is not None and g.requires_grad
        ]
        if not pairs:  # the loss is at most linear in these parameters
            return [torch.zeros_like(p) for p in self._leaves]
        out = torch.autograd.grad(
            [g for g, _ in pairs],
            self._leaves,
            grad_outputs=[c for _, c in pairs],
            retain_graph=retain,
            allow_unused=True,
        )
        return [
            torch.zeros_like(p) if o is None else o for o, p in zip(out, self._leaves, strict=True)
        ]

    def matvec(self, v: Tensor) -> Tensor:
        """The exact product ``H v`` for a flat vector ``v`` of length ``n``."""
        v = torch.as_tensor(v)
        if v.shape != (self.shape[0],):
            raise FuncspaceError(
                f"matvec needs a vector of shape ({self.shape[0]},), got {tuple(v.shape)}"
            )
        v = v.to(device=self.device, dtype=self.dtype)
        chunks = [c.view(s) for c, s in zip(torch.split(v, self._sizes), self._shapes, strict=True)]
        self.hvps += 1
        with torch.enable_grad():  # under a caller's no_grad() the graph would silently vanish
            if len(self._batches) == 1:
                if self._cached is None:
                    self._cached = self._gradients(*self._batches[0])
                parts = self._hvp(self._cached, chunks, retain=True)
                return torch.cat([p.reshape(-1) for p in parts])
            total = torch.zeros(self.shape[0], device=self.device, dtype=self.dtype)
            for x, y in self._batches:
                parts = self._hvp(self._gradients(x, y), chunks, retain=False)
                flat = torch.cat([p.reshape(-1) for p in parts])
                total.add_(flat, alpha=len(x) / self._n_examples)
            return total

    def __matmul__(self, other: Tensor) -> Tensor:
        """``op @ v`` for a vector, ``op @ V`` (one product per column) for a matrix."""
        if other.dim() == 1:
            return self.matvec(other)
        return torch.stack([self.matvec(c) for c in other.T], dim=1)

    def dense(self, max_size: int = 4096) -> Tensor:
        """The full ``(n, n)`` Hessian, column by column (``n`` HVPs): for tiny models only."""
        n = self.shape[0]
        if n > max_size:
            raise FuncspaceError(
                f"dense() would need {n} HVPs and an {n}x{n} matrix; it is meant for tiny models "
                f"(raise max_size={max_size} if you really want it)"
            )
        eye = torch.eye(n, device=self.device, dtype=self.dtype)
        return torch.stack([self.matvec(e) for e in eye], dim=1)

    def to_scipy(self) -> scipy.sparse.linalg.LinearOperator:
        """A ``scipy.sparse.linalg.LinearOperator`` (numpy in and out, through host memory)."""
        import scipy.sparse.linalg  # imported on first use

        dtype = torch.empty((), dtype=self.dtype).numpy().dtype

        def mv(x: np.ndarray) -> np.ndarray:
            v = torch.as_tensor(np.asarray(x).reshape(-1))
            return self.matvec(v).detach().cpu().numpy()

        return scipy.sparse.linalg.LinearOperator(self.shape, matvec=mv, rmatvec=mv, dtype=dtype)

    def __repr__(self) -> str:
        return (
            f"HessianOperator(n={self.shape[0]}, params={len(self.names)} tensors, "
            f"batches={len(self._batches)}, examples={self._n_examples}, "
            f"device={self.device}, dtype={self.dtype}, hvps={self.hvps})"
        )


class _TensorOperator:
    """A square symmetric tensor seen as an operator (tests, small problems, user matrices)."""

    def __init__(self, matrix: Tensor) -> None:
        if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
            raise FuncspaceError(
                f"a matrix operator must be square, got shape {tuple(matrix.shape)}"
            )
        if not matrix.dtype.is_floating_point:
            raise FuncspaceError("a matrix operator must be floating point")
        self.matrix = matrix
        self.shape = tuple(matrix.shape)
        self.dtype = matrix.dtype
        self.device = matrix.device

    def matvec(self, v: Tensor) -> Tensor:
        return self.matrix @ v


def as_operator(op: Any) -> Operator:
    """``op`` as an operator: a square tensor is wrapped, anything else is checked."""
    if isinstance(op, Tensor):
        return _TensorOperator(op.detach())
    if not all(hasattr(op, a) for a in ("shape", "matvec", "dtype", "device")):
        raise FuncspaceError(
            "expected a HessianOperator, an object with shape, dtype, device and matvec, or a "
            f"square tensor; got {type(op).__name__}"
        )
    if len(op.shape) != 2 or op.shape[0] != op.shape[1]:
        raise FuncspaceError(f"the operator must be square, got shape {tuple(op.shape)}")
    return op


# --------------------------------------------------------------------------- results
