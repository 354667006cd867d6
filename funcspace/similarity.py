"""Function-space distances between two networks on the same inputs.

- :func:`disagreement`: the fraction of inputs on which the predicted classes differ;
- :func:`output_distance`: a distance between the two output distributions (softmax);
- :func:`cka`: centered kernel alignment (Kornblith et al. 2019) of two representations, the
  outputs or any named module's output, plain or debiased;
- :func:`class_distance`: the geodesic distance between the two networks' symmetry classes on
  the torus (:func:`canonicalize.geodesic_distance` of their toroidal coordinates).

Every function runs the models batch by batch, without gradients and in eval mode (their
training flags are restored afterwards), and never changes their parameters. Inputs follow the
model's device and floating dtype. Results are Python floats.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import canonicalize
from funcspace._validate import check_module, check_size, eval_mode
from funcspace.data import Dataset, Pair, as_pair
from funcspace.errors import FuncspaceError
from funcspace.evaluation.settings import DEFAULT_BATCH

Distance = Literal["tv", "kl", "js", "l2"]
Kernel = Literal["linear", "rbf"]

_DISTANCES = ("tv", "kl", "js", "l2")
_KERNELS = ("linear", "rbf")


# --------------------------------------------------------------------------- running models


def _placement(model: nn.Module, like: Tensor) -> tuple[torch.device, torch.dtype | None]:
    tensor = next(iter(model.parameters()), None)
    if tensor is None:
        tensor = next(iter(model.buffers()), None)
    if tensor is None:
        return like.device, None
    return tensor.device, tensor.dtype if tensor.is_floating_point() else None


def _to_model(model: nn.Module, x: Tensor) -> Tensor:
    device, dtype = _placement(model, x)
    if dtype is not None and x.is_floating_point():
        return x.to(device=device, dtype=dtype)
    return x.to(device)


def _batches(inputs: Tensor, batch_size: int | None) -> Iterator[Tensor]:
    size = min(len(inputs), DEFAULT_BATCH) if batch_size is None else batch_size
    for start in range(0, len(inputs), size):
        yield inputs[start : start + size]


def _inputs(data: Dataset | Pair | Tensor, split: str) -> Tensor:
    """Inputs of a data set, a pair, or a bare tensor of inputs (targets are never needed)."""
    if isinstance(data, Tensor):
        if data.ndim == 0 or len(data) == 0:
            raise FuncspaceError("inputs must have a batch axis and at least one row")
        return data
    return as_pair(data, split)[0]


def _paired_outputs(
    a: nn.Module, b: nn.Module, data, split: str, batch_size: int | None
) -> Iterator[tuple[Tensor, Tensor]]:
    """Both models' outputs batch by batch, checked to have one shape."""
    check_module("a", a, finite=True)
    check_module("b", b, finite=True)
    inputs = _inputs(data, split)
    check_size("batch_size", batch_size)
    with eval_mode(a, b), torch.no_grad():
        for x in _batches(inputs, batch_size):
            out_a, out_b = a(_to_model(a, x)), b(_to_model(b, x))
            if not isinstance(out_a, Tensor) or not isinstance(out_b, Tensor):
                raise FuncspaceError("both models must return one tensor of outputs")
            if out_a.shape != out_b.shape:
                raise FuncspaceError(
                    f"the models disagree on the shape of their outputs: {tuple(out_a.shape)} vs "
                    f"{tuple(out_b.shape)}; they must have the same number of outputs"
                )
            if out_a.ndim not in (1, 2) or len(out_a) != len(x):
                raise FuncspaceError(
                    f"outputs must be (inputs,) or (inputs, classes), got {tuple(out_a.shape)}"
                )
            yield out_a.to(out_b.device).double(), out_b.double()


def _log_probs(logits: Tensor) -> Tensor:
    """Log class probabilities; one output column (or none) is the logit of a two-class problem."""
    if logits.ndim == 1 or logits.shape[1] == 1:
        z = logits.reshape(-1, 1)
        return torch.cat([F.logsigmoid(-z), F.logsigmoid(z)], dim=1)
    return F.log_softmax(logits, dim=1)


def _predictions(logits: Tensor) -> Tensor:
    if logits.ndim == 1 or logits.shape[1] == 1:
        return (logits.reshape(-1) > 0).long()
    return logits.argmax(dim=1)


# --------------------------------------------------------------------------- distances


def disagreement(
    a: nn.Module,
    b: nn.Module,
    data: Dataset | Pair | Tensor,
    *,
    split: str = "train",
    batch_size: int | None = None,
) -> float:
    """Fraction of inputs on which the two models predict different classes.

    Parameters
    ----------
    a, b : nn.Module
        Two classifiers with the same number of outputs (left untouched).
    data : Dataset, (inputs, targets) or Tensor
        The inputs (a data set's ``split``, or the inputs of a pair, or a tensor of inputs).
    split : {"train", "test"}
        Which split of a :class:`~funcspace.data.Dataset` to use (default ``"train"``, as
        everywhere in funcspace; function-space distances are often reported on ``"test"``).
    batch_size : int or None
        Inputs per forward pass (None: all, up to 2048, as everywhere in funcspace).

    Returns
    -------
    float
        In ``[0, 1]``; the predicted class is the argmax of the outputs (of a single output
        column: whether the logit is positive).

    Raises
    ------
    FuncspaceError
        If the models are not modules or their outputs differ in shape.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Linear(3, 2)
    >>> x = torch.randn(10, 3)
    >>> disagreement(net, net, x)
    0.0
    >>> flipped = nn.Linear(3, 2)
    >>> with torch.no_grad():
    ...     _ = flipped.weight.copy_(net.weight.flip(0)), flipped.bias.copy_(net.bias.flip(0))
    >>> disagreement(net, flipped, x)
    1.0
    """
    differ = total = 0
    for out_a, out_b in _paired_outputs(a, b, data, split, batch_size):
        differ += int((_predictions(out_a) != _predictions(out_b)).sum())
        total += len(out_a)
    return differ / total


def output_distance(
    a: nn.Module,
    b: nn.Module,
    data: Dataset | Pair | Tensor,
    kind: Distance = "tv",
    *,
    split: str = "train",
    batch_size: int | None = None,
) -> float:
    """Mean distance between the two models' output distributions (softmax of the outputs).

    With ``p = softmax(a(x))`` and ``q = softmax(b(x))``, averaged over the inputs ``x``:

    - ``"tv"``: total variation ``0.5 * sum_c |p_c - q_c|``, in ``[0, 1]``;
    - ``"kl"``: Kullback-Leibler ``KL(p || q) = sum_c p_c (log p_c - log q_c)`` (not symmetric);
    - ``"js"``: Jensen-Shannon ``0.5 KL(p || m) + 0.5 KL(q || m)``, ``m = (p + q) / 2``, in nats,
      in ``[0, log 2]``;
    - ``"l2"``: Euclidean ``||p - q||_2``, in ``[0, sqrt 2]``.

    Computed in float64 from log-softmax, so ``"kl"`` stays finite for saturated outputs.
    A single output column is the logit of a two-class problem (``p = sigmoid``).

    Parameters
    ----------
    a, b : nn.Module
        Two classifiers with the same number of outputs (left untouched).
    data : Dataset, (inputs, targets) or Tensor
        The inputs.
    split : {"train", "test"}
        Which split of a :class:`~funcspace.data.Dataset` to use (default ``"train"``, as
        everywhere in funcspace; function-space distances are often reported on ``"test"``).
    kind : {"tv", "kl", "js", "l2"}
        Which distance.
    batch_size : int or None
        Inputs per forward pass (None: all, up to 2048, as everywhere in funcspace).

    Returns
    -------
    float

    Raises
    ------
    FuncspaceError
        For an unknown ``kind`` or outputs of different shapes.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    >>> with torch.no_grad():  # a is sure of class 0, b undecided
    ...     _ = a.weight.zero_(), a.bias.copy_(torch.tensor([50.0, -50.0]))
    ...     _ = b.weight.zero_(), b.bias.zero_()
    >>> x = torch.randn(4, 3)
    >>> round(output_distance(a, b, x, kind="tv"), 6)
    0.5
    >>> round(output_distance(a, b, x, kind="js"), 4)  # 0.75 log(4/3)
    0.2158
    """
    if kind not in _DISTANCES:
        raise FuncspaceError(f"unknown kind {kind!r}; choose one of {', '.join(_DISTANCES)}")
    total, count = 0.0, 0
    for out_a, out_b in _paired_outputs(a, b, data, split, batch_size):
        log_p, log_q = _log_probs(out_a), _log_probs(out_b)
        p, q = log_p.exp(), log_q.exp()
        if kind == "tv":
            values = 0.5 * (p - q).abs().sum(1)
        elif kind == "l2":
            values = (p - q).norm(dim=1)
        elif kind == "kl":
            values = (p * (log_p - log_q)).sum(1)
        else:
            log_m = torch.logaddexp(log_p, log_q) - math.log(2.0)
            values = 0.5 * (p * (log_p - log_m)).sum(1) + 0.5 * (q * (log_q - log_m)).sum(1)
        total += float(values.sum())
        count += len(values)
    return total / count


# --------------------------------------------------------------------------- CKA


def _module_named(model: nn.Module, layer: str, which: str) -> nn.Module:
    modules = dict(model.named_modules())
    if layer not in modules or layer == "":
        names = [n for n in modules if n]
        shown = ", ".join(repr(n) for n in names[:12]) + (", ..." if len(names) > 12 else "")
        raise FuncspaceError(
            f"{which} has no module named {layer!r}; its modules are {shown} "
            f"(leave {which} at None to compare the model outputs)"
        )
    return modules[layer]


def _features(
    model: nn.Module, layer: str | None, inputs: Tensor, batch_size: int | None, which: str
) -> Tensor:
    """The representation (the output, or ``layer``'s output) as an (inputs, features) matrix."""
    captured: list[Tensor] = []
    handle = None
    if layer is not None:
        module = _module_named(model, layer, which)

        def hook(_module: nn.Module, _args: object, output: object) -> None:
            if not isinstance(output, Tensor):
                raise FuncspaceError(
                    f"module {layer!r} of {which} returns {type(output).__name__}, not a tensor"
                )
            captured.append(output.detach())

        handle = module.register_forward_hook(hook)
    rows = []
    try:
        with eval_mode(model), torch.no_grad():
            for x in _batches(inputs, batch_size):
                out = model(_to_model(model, x))
                if layer is None:
                    if not isinstance(out, Tensor):
                        raise FuncspaceError(f"{which} must return a tensor")
                    rows.append(out.detach().reshape(len(x), -1).double())
                else:
                    if len(captured) != 1:
                        raise FuncspaceError(
                            f"module {layer!r} of {which} ran {len(captured)} times in one forward "
                            "pass; CKA needs a module that runs exactly once"
                        )
                    rows.append(captured.pop().reshape(len(x), -1).double())
    finally:
        if handle is not None:
            handle.remove()
    return torch.cat(rows)


def _debiased(xty: Tensor, d_x: Tensor, d_y: Tensor, n: int) -> Tensor:
    """Unbiased HSIC (Song et al. 2012) up to the factor 1 / (n (n - 3)), for centered features.

    ``xty`` is tr(K L) and ``d_x``, ``d_y`` the diagonals of the two Gram matrices.
    """
    return xty - n / (n - 2) * (d_x @ d_y) + d_x.sum() * d_y.sum() / ((n - 1) * (n - 2))


def _linear_cka(x: Tensor, y: Tensor, debiased: bool) -> Tensor:
    n = len(x)
    x = x - x.mean(0)
    y = y - y.mean(0)
    # tr(K L) with K = X X^T: in feature space (p x q products) or sample space (n x n),
    # whichever is cheaper; both are exact.
    p, q = x.shape[1], y.shape[1]
    if p * q + p * p + q * q <= n * n:
        xy, xx, yy = (x.T @ y).square().sum(), (x.T @ x).square().sum(), (y.T @ y).square().sum()
    else:
        k, l_ = x @ x.T, y @ y.T
        xy, xx, yy = (k * l_).sum(), k.square().sum(), l_.square().sum()
    if debiased:
        d_x, d_y = x.square().sum(1), y.square().sum(1)
        xy = _debiased(xy, d_x, d_y, n)
        xx, yy = _debiased(xx, d_x, d_x, n), _debiased(yy, d_y, d_y, n)
    return xy / (xx * yy).sqrt()


def _rbf_gram(x: Tensor, threshold: float) -> Tensor:
    sq = torch.cdist(x, x).square()
    median = sq.median()
    if median <= 0:
        raise FuncspaceError("the RBF kernel needs a representation that is not constant")
    return torch.exp(-sq / (2 * threshold**2 * median))


def _gram_hsic(k: Tensor, l_: Tensor, debiased: bool) -> Tensor:
    n = len(k)
    if not debiased:
        h = torch.eye(n, dtype=k.dtype, device=k.device) - 1.0 / n
        return ((h @ k @ h) * l_).sum()
    k, l_ = k.clone(), l_.clone()
    k.fill_diagonal_(0)
    l_.fill_diagonal_(0)
    one_k, one_l = k.sum(0), l_.sum(0)
    return (
        (k * l_).sum()
        + one_k.sum() * one_l.sum() / ((n - 1) * (n - 2))
        - 2 / (n - 2) * (one_k @ one_l)
    )


def cka(
    a: nn.Module,
    b: nn.Module,
    data: Dataset | Pair | Tensor,
    *,
    layer_a: str | None = None,
    layer_b: str | None = None,
    split: str = "train",
    kernel: Kernel = "linear",
    debiased: bool = False,
    threshold: float = 1.0,
    batch_size: int | None = None,
) -> float:
    """Centered kernel alignment of two representations of the same inputs (Kornblith et al. 2019).

    With ``X`` (inputs x p) and ``Y`` (inputs x q) the two representations, columns centered,
    linear CKA is ``||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)``: 1 for representations equal up
    to an orthogonal transform and an isotropic scale, 0 for unrelated ones. The two widths
    may differ. ``debiased=True`` uses the unbiased HSIC estimator (Song et al. 2012) in every
    term, which removes CKA's upward bias when features outnumber inputs (it needs > 3 inputs).

    Parameters
    ----------
    a, b : nn.Module
        The two networks (left untouched; a forward hook is added for the call and removed).
    data : Dataset, (inputs, targets) or Tensor
        The inputs.
    layer_a, layer_b : str or None
        Name of the module (as in ``model.named_modules()``) whose output is the representation;
        None for the model's output. Outputs are flattened to one row per input.
    split : {"train", "test"}
        Which split of a :class:`~funcspace.data.Dataset` to use (default ``"train"``, as
        everywhere in funcspace; function-space distances are often reported on ``"test"``).
    kernel : {"linear", "rbf"}
        ``"rbf"`` uses ``exp(-|x - x'|^2 / (2 threshold^2 median))`` with the median of the
        squared distances (Kornblith et al.), computed on ``inputs x inputs`` Gram matrices.
    debiased : bool
        Use the unbiased HSIC estimator.
    threshold : float
        Bandwidth of the RBF kernel as a fraction of the median distance.
    batch_size : int or None
        Inputs per forward pass (None: all, up to 2048, as everywhere in funcspace). The
        representations of all inputs are kept (float64) since CKA centers them over the whole
        set.

    Returns
    -------
    float

    Raises
    ------
    FuncspaceError
        For an unknown kernel or layer name, a layer that does not return one tensor exactly
        once per forward pass, too few inputs, or a constant representation.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))
    >>> x = torch.randn(50, 5)
    >>> round(cka(net, net, x), 6)
    1.0
    >>> round(cka(net, net, x, layer_a="1", layer_b="1", debiased=True), 6)
    1.0
    """
    check_module("a", a, finite=True)
    check_module("b", b, finite=True)
    check_size("batch_size", batch_size)
    if kernel not in _KERNELS:
        raise FuncspaceError(f"unknown kernel {kernel!r}; choose one of {', '.join(_KERNELS)}")
    if not threshold > 0:
        raise FuncspaceError(f"threshold must be positive, got {threshold!r}")
    inputs = _inputs(data, split)
    if len(inputs) < (4 if debiased else 2):
        raise FuncspaceError(
            f"CKA needs at least {4 if debiased else 2} inputs (debiased={debiased}), "
            f"got {len(inputs)}"
        )
    x = _features(a, layer_a, inputs, batch_size, "a" if layer_a is None else "layer_a")
    y = _features(b, layer_b, inputs, batch_size, "b" if layer_b is None else "layer_b")
    y = y.to(x.device)
    if kernel == "linear":
        value = _linear_cka(x, y, debiased)
    else:
        k, l_ = _rbf_gram(x, threshold), _rbf_gram(y, threshold)
        value = (
            _gram_hsic(k, l_, debiased)
            / (_gram_hsic(k, k, debiased) * _gram_hsic(l_, l_, debiased)).sqrt()
        )
    if not torch.isfinite(value):
        raise FuncspaceError(
            "CKA is undefined here: one of the representations is constant over the inputs"
            + (
                " (or its debiased HSIC estimate is not positive: use more inputs)"
                if debiased
                else ""
            )
        )
    return float(value)


# --------------------------------------------------------------------------- symmetry classes


def class_distance(
    a: nn.Module,
    b: nn.Module,
    example_input: Tensor | Dataset | Pair,
    method: Literal["cosine", "weights", "activations"] = "cosine",
    *,
    output: Literal["normalize", "preserve"] = "normalize",
    split: str = "train",
) -> float:
    """Distance between the symmetry classes of two networks on the torus.

    Both networks are mapped to toroidal coordinates (:func:`canonicalize.to_torus`), ``b``
    is aligned to ``a`` with ``method`` and the great-circle distances of all spheres are
    combined (:func:`canonicalize.geodesic_distance`). Zero for two members of one class.

    Parameters
    ----------
    a, b : nn.Module
        Two networks of one architecture (left untouched).
    example_input : Tensor, Dataset or (inputs, targets)
        A batch of inputs to trace the models (and, for ``method="activations"``, to match
        units); of a data set, the inputs of ``split``.
    method : {"cosine", "weights", "activations"}
        How ``b`` is aligned to ``a`` (see :func:`canonicalize.align`).
    output : {"normalize", "preserve"}
        Whether the output layer is one more sphere (the toroids paper) or stays Euclidean.
    split : {"train", "test"}
        Which split of a :class:`~funcspace.data.Dataset` gives the example input.

    Returns
    -------
    float

    Raises
    ------
    canonicalize.SymmetryError
        For unsupported layers or two different architectures.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from canonicalize import random_transform
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> x = torch.randn(8, 3)
    >>> class_distance(net, random_transform(net, x, seed=1), x) < 1e-5
    True
    """
    check_module("a", a, finite=True)
    check_module("b", b, finite=True)
    x = _inputs(example_input, split)
    return canonicalize.geodesic_distance(
        canonicalize.to_torus(a, x, output=output),
        canonicalize.to_torus(b, x, output=output),
        method=method,
    )


def geodesic_distance(
    a: nn.Module,
    b: nn.Module,
    example_input: Tensor | Dataset | Pair,
    method: Literal["cosine", "weights", "activations"] = "cosine",
    *,
    output: Literal["normalize", "preserve"] = "normalize",
    split: str = "train",
) -> float:
    """Deprecated name of :func:`class_distance` (removed in the next release): one name, one
    meaning; :func:`canonicalize.geodesic_distance` takes toroidal points."""
    warnings.warn(
        "funcspace.similarity.geodesic_distance is deprecated and will be removed in the next "
        "release; call class_distance (canonicalize.geodesic_distance takes TorusPoints)",
        DeprecationWarning,
        stacklevel=2,
    )
    return class_distance(a, b, example_input, method, output=output, split=split)


__all__ = ["class_distance", "cka", "disagreement", "geodesic_distance", "output_distance"]
