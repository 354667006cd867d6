"""Binary layers: latent real weights, a binarized forward pass, straight-through gradients.

One convention everywhere: **sign(0) = +1**. :func:`binarize` maps every entry ``>= 0`` (``-0.0``
included) to ``+1`` and every entry ``< 0`` to ``-1``; weights and activations use it, in the
training model and in the exported plain model alike, so a network is always exactly +-1.
:class:`canonicalize.Sign` computes ``torch.sign`` (0 at 0); :class:`BinarySign` is its subclass
(canonicalize's discovery reads it as a sign activation) and overrides the value at 0 only. The
sign-reversal symmetry that discovery attaches to a sign unit needs an odd activation,
``sign(-z) = -sign(z)``; with +1 at 0 that holds for every ``z != 0``, so flipping a unit keeps
the function exactly whenever no pre-activation is exactly 0 on the data: always for +-1 inputs
and an odd fan-in without bias (an odd sum of +-1 is never 0), with probability one for
real-valued inputs. The positive-scale invariance ``sign(c z) = sign(z)`` (``c > 0``) is exact.
The same holds for latent weights: negating them negates the binary weights except at an exact
0 (uniform draws and clipping practically never produce one). NaN stays NaN (a diverged
network is not silently binarized).

Training follows BinaryNet (Courbariaux et al. 2016). :class:`BinaryLinear` and
:class:`BinaryConv2d` keep latent real weights (their ``weight``), compute with their sign and
pass the gradient straight through to the latent weights (identity). :class:`BinarySign` passes
the gradient of ``hardtanh(z / window)``: ``1 / window`` where ``|z| <= window``, 0 elsewhere
(``window=1`` is BinaryNet's). Latent weights are :class:`LatentWeight` parameters, clipped to
``[-1, 1]`` after every step of any ``torch.optim`` optimizer (a global optimizer step
post-hook that touches :class:`LatentWeight` parameters only), so :func:`funcspace.train` and
its methods clip them without knowing about binary layers (entropy-SGD's inner Langevin steps,
which move parameters by hand, are clipped at its next outer step). Loops that update
parameters by hand call :func:`clip_latent_`.

Two fixed layers complete the reference models: :class:`SumUnits` (the committee machine's sum
of its hidden units) and :class:`TwoClassReadout` (logits ``(-z, z)`` of one output unit ``z``:
class 1 where ``z > 0``; a tie ``z = 0`` is argmax's class 0, a readout rather than a sign).
They hold no parameters, so no optimizer trains and no re-initialization redraws them;
:func:`binary.export` writes them as ``nn.Linear`` layers with fixed +-1 weights.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from canonicalize import Sign

from .errors import BinaryError

__all__ = [
    "BinaryConv2d",
    "BinaryLinear",
    "BinarySign",
    "LatentWeight",
    "SumUnits",
    "TwoClassReadout",
    "binarize",
    "clip_latent_",
]


def binarize(x: Tensor) -> Tensor:
    """``+1`` where ``x >= 0`` (``-0.0`` included), ``-1`` where ``x < 0``; NaN stays NaN.

    Parameters
    ----------
    x : Tensor
        Any tensor (weights or pre-activations).

    Returns
    -------
    Tensor
        Same shape and dtype.

    Examples
    --------
    >>> binarize(torch.tensor([-2.0, -0.0, 0.0, 0.5]))
    tensor([-1.,  1.,  1.,  1.])
    """
    # two cheap passes: the signs, then NaN carried through (about 2x the nested where)
    return torch.where(x.isnan(), x, torch.where(x < 0, -1.0, 1.0).to(x.dtype))


class _WeightSTE(torch.autograd.Function):
    """Forward: :func:`binarize`; backward: the identity (BinaryNet's straight-through)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(w: Tensor) -> Tensor:
        return binarize(w)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor], output: Tensor) -> None:
        pass

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return grad


class _SignSTE(torch.autograd.Function):
    """Forward: :func:`binarize`; backward: the gradient of ``hardtanh(z / window)``."""

    generate_vmap_rule = True

    @staticmethod
    def forward(z: Tensor, window: float) -> Tensor:
        return binarize(z)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, float], output: Tensor) -> None:
        z, window = inputs
        ctx.window = window
        if ctx.needs_input_grad[0]:  # evaluation without gradients keeps no mask
            ctx.save_for_backward(z.abs() <= window)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (inside,) = ctx.saved_tensors
        return grad * inside.to(grad.dtype) / ctx.window, None


class LatentWeight(nn.Parameter):
    """The latent real weights of a binary layer: a parameter clipped to ``[-1, 1]``.

    After every ``step()`` of any ``torch.optim`` optimizer that holds it, it is clamped to
    ``[-1, 1]`` in place (BinaryNet's clipping), so training loops need no change. Deep copies
    and dtype or device moves of the owning layer keep the class.

    Examples
    --------
    >>> w = LatentWeight(torch.tensor([0.9, -0.5]))
    >>> opt = torch.optim.SGD([w], lr=1.0)
    >>> w.grad = torch.tensor([-1.0, 0.2])
    >>> opt.step()
    >>> w.detach()
    tensor([ 1.0000, -0.7000])
    """


def _clip_after_step(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
    """Optimizer step post-hook: clamp the optimizer's latent weights to ``[-1, 1]``."""
    with torch.no_grad():
        for group in optimizer.param_groups:
            for p in group["params"]:
                if isinstance(p, LatentWeight):
                    p.clamp_(-1.0, 1.0)


# Registered once per process (module import); it acts on LatentWeight parameters only.
_CLIP_HOOK = register_optimizer_step_post_hook(_clip_after_step)


def clip_latent_(model: nn.Module) -> nn.Module:
    """Clamp every latent weight of ``model``'s binary layers to ``[-1, 1]``, in place.

    ``torch.optim`` optimizers do this after each step; call it in loops that change parameters
    by hand.

    Parameters
    ----------
    model : nn.Module
        Any model; layers other than :class:`BinaryLinear` and :class:`BinaryConv2d` are left
        alone.

    Returns
    -------
    nn.Module
        ``model`` itself.

    Examples
    --------
    >>> layer = BinaryLinear(2, 1)
    >>> with torch.no_grad():
    ...     _ = layer.weight.copy_(torch.tensor([[3.0, -0.25]]))
    >>> clip_latent_(layer).weight.detach()
    tensor([[ 1.0000, -0.2500]])
    """
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, _Binary):
                module.weight.clamp_(-1.0, 1.0)
    return model


class _Binary:
    """What BinaryLinear and BinaryConv2d share: the latent weight, its sign, its clipping."""

    weight: Tensor

    def _latent(self) -> None:
        w = self._parameters["weight"]  # type: ignore[attr-defined]
        if w is not None and not isinstance(w, LatentWeight):
            self._parameters["weight"] = LatentWeight(w.data, w.requires_grad)  # type: ignore[attr-defined]

    def _apply(self, fn: Any, recurse: bool = True) -> Any:
        out = super()._apply(fn, recurse)  # type: ignore[misc]
        self._latent()  # a move that re-creates the parameter would lose its class
        return out

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Draw the latent weights uniformly in ``[-1, 1]`` (the clipping range), so each
        binary weight is a fair coin; ``generator`` defaults to torch's global one."""
        with torch.no_grad():
            self.weight.uniform_(-1.0, 1.0, generator=generator)

    @property
    def binary_weight(self) -> Tensor:
        """The +-1 weights the layer computes with (detached)."""
        return binarize(self.weight.detach())

    def clip_(self) -> _Binary:
        """Clamp the latent weights to ``[-1, 1]`` in place; returns the layer."""
        with torch.no_grad():
            self.weight.clamp_(-1.0, 1.0)
        return self


class BinaryLinear(_Binary, nn.Linear):
    """A linear layer with +-1 weights (the signs of latent real weights) and no bias.

    Forward: ``x @ binarize(weight).T``; backward: straight through to the latent weights.
    Thresholds come from a BatchNorm before the sign (see :func:`binary.binary_mlp`).

    Parameters
    ----------
    in_features, out_features : int
        Sizes, as in ``nn.Linear``.
    device, dtype : optional
        Where and in which dtype the latent weights live.

    Examples
    --------
    >>> layer = BinaryLinear(3, 2)
    >>> with torch.no_grad():
    ...     _ = layer.weight.copy_(torch.tensor([[0.3, -0.1, 0.0], [-0.9, 0.2, -0.4]]))
    >>> layer(torch.tensor([[1.0, 2.0, 3.0]]))
    tensor([[ 2., -2.]], grad_fn=<MmBackward0>)
    >>> layer.binary_weight
    tensor([[ 1., -1.,  1.],
            [-1.,  1., -1.]])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(in_features, out_features, bias=False, device=device, dtype=dtype)
        self._latent()

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.linear(x, _WeightSTE.apply(self.weight))


class BinaryConv2d(_Binary, nn.Conv2d):
    """A 2-D convolution with +-1 weights (the signs of latent real weights) and no bias.

    Parameters
    ----------
    in_channels, out_channels, kernel_size, stride, padding, dilation, groups :
        As in ``nn.Conv2d`` (zero padding only).
    device, dtype : optional
        Where and in which dtype the latent weights live.

    Examples
    --------
    >>> conv = BinaryConv2d(1, 2, 3, padding=1)
    >>> out = conv(torch.ones(1, 1, 4, 4))
    >>> out.shape, bool((out == out.round()).all())
    (torch.Size([1, 2, 4, 4]), True)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=False,
            device=device,
            dtype=dtype,
        )
        self._latent()

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, _WeightSTE.apply(self.weight), None)


class BinarySign(Sign):
    """Sign activation with sign(0) = +1 and a straight-through gradient.

    A subclass of :class:`canonicalize.Sign`, so canonicalize's discovery reads it as a sign
    activation. Forward: :func:`binarize`. Backward: the gradient of ``hardtanh(z / window)``,
    ``1 / window`` where ``|z| <= window`` and 0 elsewhere; ``window=1`` is BinaryNet's rule
    (use it behind a BatchNorm), a wider window (``sqrt(fan_in)`` without BatchNorm) keeps
    gradients flowing where pre-activations are sums of many +-1 terms. The window changes
    gradients only, never the output.

    Parameters
    ----------
    window : float
        Half-width of the straight-through window, > 0.

    Raises
    ------
    BinaryError
        For a window that is not a finite positive number.

    Examples
    --------
    >>> z = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0], requires_grad=True)
    >>> out = BinarySign()(z)
    >>> out.detach()
    tensor([-1., -1.,  1.,  1.,  1.])
    >>> out.sum().backward()
    >>> z.grad
    tensor([0., 1., 1., 1., 0.])
    """

    def __init__(self, window: float = 1.0) -> None:
        super().__init__()
        if isinstance(window, bool) or not isinstance(window, (int, float)):
            raise BinaryError(f"window must be a positive number, got {window!r}")
        if not (math.isfinite(window) and window > 0):
            raise BinaryError(f"window must be a finite number > 0, got {window!r}")
        self.window = float(window)

    def forward(self, x: Tensor) -> Tensor:
        return _SignSTE.apply(x, self.window)

    def extra_repr(self) -> str:
        return "" if self.window == 1.0 else f"window={self.window:g}"


class SumUnits(nn.Module):
    """The sum of ``units`` input units, ``(N, K) -> (N, 1)``: a committee machine's output.

    Its weights are fixed at +1 (no parameters); :func:`binary.export` writes it as
    ``nn.Linear(K, 1, bias=False)`` with all-ones weights.

    Parameters
    ----------
    units : int
        K, the number of units summed.

    Examples
    --------
    >>> SumUnits(3)(torch.tensor([[1.0, -1.0, 1.0]]))
    tensor([[1.]])
    """

    def __init__(self, units: int) -> None:
        super().__init__()
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            raise BinaryError(f"units must be a positive integer, got {units!r}")
        self.units = units

    def forward(self, x: Tensor) -> Tensor:
        return x.sum(dim=1, keepdim=True)

    def extra_repr(self) -> str:
        return f"units={self.units}"


class TwoClassReadout(nn.Module):
    """Two logits ``(-z, z)`` from one output unit ``z``, ``(N, 1) -> (N, 2)``.

    The argmax is class 1 where ``z > 0`` and class 0 where ``z < 0`` (``z = 0`` gives equal
    logits; ``argmax`` then takes class 0). Fixed weights ``(-1, +1)``, no parameters;
    :func:`binary.export` writes it as ``nn.Linear(1, 2, bias=False)``.

    Examples
    --------
    >>> TwoClassReadout()(torch.tensor([[3.0], [-1.0]]))
    tensor([[-3.,  3.],
            [ 1., -1.]])
    """

    def forward(self, z: Tensor) -> Tensor:
        return torch.cat([-z, z], dim=1)
