"""Side-by-side benchmark: our weight matching vs. the PyPI package ``rebasin``.

Both tools align model B to model A by permuting B's hidden units (weight matching,
Ainsworth et al., "Git Re-Basin"), on the same pair of trained MLPs (64-256-256-10, ReLU,
plain ``nn.Sequential``) fitted to scikit-learn's ``load_digits`` (bundled, no download).
For each tool we report

* the wall time of the matching (best of ``repeats``, ``time.perf_counter``, each run on
  fresh deep copies of both models; for rebasin this includes building its permutation
  graph, i.e. tracing the model, because that is part of every call),
* the error barrier of the linear path ``(1 - t) A + t B'`` (21 points of ``t``, training
  error): ``max_t [err(t) - ((1 - t) err(0) + t err(1))]``, plus the maximum error, and the
  raw barrier of the unaligned path ``(1 - t) A + t B`` for reference; the same barrier
  of the training cross-entropy loss is reported as well (digits is easy, so the error
  barrier alone is often 0 after alignment and cannot separate the tools),
* the max absolute difference of logits between B and the aligned B' on the training set
  (both must compute the same function; ~1e-6 is float32 round-off).

Ours
    ``canonicalize.align(model, reference, example_input, method="weights") -> nn.Module``,
    called as ``align(B, A, x_train[:8], method="weights")``; returns a permuted copy of B.

rebasin (version 0.0.47, ``pip install -c constraints.txt rebasin==0.0.47``)
    ::

        pcd = rebasin.PermutationCoordinateDescent(model_a, model_b, input_data_b)
        pcd.rebasin()            # = calculate_permutations(max_iterations=100)
                                 #   + apply_permutations(); permutes model_b in place

    ``model_a`` is the reference (left untouched), ``model_b`` is permuted; ``input_data_b``
    is only used to trace the model with ``torchview``. rebasin visits the permutations in
    ``torch.randperm`` order (global torch RNG), so each run is preceded by
    ``torch.manual_seed``. Its dependencies are torch, numpy, scipy, tqdm, graphviz (the
    Python package only; no Graphviz binary is needed) and torchview 0.2.7; torchvision
    is *not* required and is not imported.

BatchNorm CNNs (``main_batchnorm``)
    Two architectures trained on the digits as 8x8 single-channel images: a VGG-like
    ``nn.Sequential`` (conv-BN-ReLU blocks, max-pooling, flatten, linear head) and a small
    ResNet written like public CIFAR ResNets (``F.relu``, ``out += self.shortcut(x)``, a 1x1
    conv + BN shortcut in the strided block, global average pooling). One network per seed,
    every pair aligned by ours ``"weights"``, ``"cosine"``, ``"activations"`` (data = the
    training inputs), rebasin, and nothing ("raw"). Besides time and the function check it
    reports the Euclidean distance between A and B' of the whole state (parameters and
    BatchNorm buffers) and in normalized coordinates (``canonicalize.normalize`` of both), and
    the barriers of the linear path twice: with the BatchNorm statistics re-estimated on the
    training set at every point (REPAIR's reset, Jordan et al. 2022) and with the interpolated
    running statistics. rebasin 0.0.47 permutes a BatchNorm's weight and bias but not its
    running statistics, so a second row "rebasin + stats" applies the permutation it chose
    (read off the gammas) to the statistics too.

Run from the repository root::

    .venv/bin/python benchmarks/weight_matching.py

or ``from benchmarks.weight_matching import main; main(width=512, epochs=40, repeats=5)``;
the BatchNorm part alone: ``main_batchnorm()`` (``seeds=(0, 1)`` for one pair per
architecture). If ``canonicalize.align`` cannot be imported, its rows are reported as skipped
and the rebasin half still runs.
"""

from __future__ import annotations

import copy
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.nn import functional as F

N_TRAIN = 1500
N_POINTS = 21
SEED_A, SEED_B = 0, 1
MATCH_SEED = 1234


# --------------------------------------------------------------------------- data / models
def load_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Digits (1797 x 64), standardized with training statistics; first 1500 = train."""
    x, y = load_digits(return_X_y=True)
    x = x.astype(np.float32)
    x_tr, x_te = x[:N_TRAIN], x[N_TRAIN:]
    mean = x_tr.mean(axis=0)
    std = x_tr.std(axis=0)
    std[std == 0] = 1.0  # constant (always-zero) border pixels
    x_tr = (x_tr - mean) / std
    x_te = (x_te - mean) / std
    y = torch.as_tensor(y, dtype=torch.long)
    return (
        torch.as_tensor(x_tr, dtype=torch.float32),
        y[:N_TRAIN],
        torch.as_tensor(x_te, dtype=torch.float32),
        y[N_TRAIN:],
    )


def make_mlp(width: int, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(64, width),
        nn.ReLU(),
        nn.Linear(width, width),
        nn.ReLU(),
        nn.Linear(width, 10),
    )


def _train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    seed: int,
    epochs: int = 30,
    lr: float = 0.05,
    batch_size: int = 128,
) -> nn.Module:
    """Minibatch SGD (Nesterov momentum 0.9), shuffling driven by a seeded generator."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch_size):
            idx = perm[i : i + batch_size]
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()
    return model


@torch.no_grad()
def error(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return (model(x).argmax(dim=1) != y).float().mean().item()


@torch.no_grad()
def error_and_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    logits = model(x)
    err = (logits.argmax(dim=1) != y).float().mean().item()
    return err, nn.functional.cross_entropy(logits, y).item()


# --------------------------------------------------------------------------- barrier
@torch.no_grad()
def linear_path(
    model_a: nn.Module, model_b: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> tuple[np.ndarray, np.ndarray]:
    """Training error and loss of (1 - t) A + t B at N_POINTS evenly spaced t in [0, 1]."""
    sd_a, sd_b = model_a.state_dict(), model_b.state_dict()
    probe = copy.deepcopy(model_a)
    errs, losses = [], []
    for t in np.linspace(0.0, 1.0, N_POINTS):
        probe.load_state_dict({k: (1 - t) * sd_a[k] + t * sd_b[k] for k in sd_a})
        err, loss = error_and_loss(probe, x, y)
        errs.append(err)
        losses.append(loss)
    return np.asarray(errs), np.asarray(losses)


def barrier(values: np.ndarray) -> float:
    """max_t of values(t) minus the straight line between the endpoint values."""
    ts = np.linspace(0.0, 1.0, len(values))
    return float(np.max(values - ((1 - ts) * values[0] + ts * values[-1])))


# --------------------------------------------------------------------------- matchers
Matcher = Callable[[nn.Module, nn.Module, torch.Tensor], nn.Module]


def match_ours(model_a: nn.Module, model_b: nn.Module, example: torch.Tensor) -> nn.Module:
    from canonicalize import align

    return align(model_b, model_a, example, method="weights")


def match_rebasin(model_a: nn.Module, model_b: nn.Module, example: torch.Tensor) -> nn.Module:
    import rebasin

    pcd = rebasin.PermutationCoordinateDescent(model_a, model_b, example)
    pcd.rebasin()
    return model_b


def _ours_available() -> str | None:
    """None if ``canonicalize.align`` is importable, else the reason it is not."""
    try:
        from canonicalize import align  # noqa: F401
    except Exception as exc:  # any failure means "skip this row"
        return f"{type(exc).__name__}: {exc}"
    return None


def run_matcher(
    fn: Matcher,
    model_a: nn.Module,
    model_b: nn.Module,
    example: torch.Tensor,
    repeats: int,
) -> tuple[float, nn.Module]:
    """Best-of-``repeats`` wall time; every run gets fresh deep copies of both models."""
    best, aligned = float("inf"), None
    for _ in range(repeats):
        a, b = copy.deepcopy(model_a), copy.deepcopy(model_b)
        torch.manual_seed(MATCH_SEED)
        t0 = time.perf_counter()
        out = fn(a, b, example)
        dt = time.perf_counter() - t0
        best = min(best, dt)
        # The reference must come back untouched.
        for (name, p), q in zip(model_a.state_dict().items(), a.state_dict().values(), strict=True):
            if not torch.equal(p, q):
                raise RuntimeError(f"{fn.__name__} modified the reference model ({name})")
        aligned = out
    assert aligned is not None
    return best, aligned


# --------------------------------------------------------------------------- main
def main(width: int = 256, epochs: int = 30, repeats: int = 3) -> list[dict]:
    torch.set_num_threads(min(torch.get_num_threads(), 8))
    t_start = time.perf_counter()
    x_tr, y_tr, x_te, y_te = load_data()
    model_a = _train(make_mlp(width, SEED_A), x_tr, y_tr, seed=SEED_A, epochs=epochs)
    model_b = _train(make_mlp(width, SEED_B), x_tr, y_tr, seed=SEED_B, epochs=epochs)
    print(f"MLP 64-{width}-{width}-10, {epochs} epochs, torch {torch.__version__}")
    for name, m in (("A", model_a), ("B", model_b)):
        print(
            f"  model {name}: train err {error(m, x_tr, y_tr):.4f}, "
            f"test err {error(m, x_te, y_te):.4f}"
        )

    raw_errs, raw_losses = linear_path(model_a, model_b, x_tr, y_tr)
    raw_barrier, raw_loss_barrier = barrier(raw_errs), barrier(raw_losses)
    print(
        f"  raw path: error barrier {raw_barrier:.4f}, max train err {raw_errs.max():.4f}, "
        f"loss barrier {raw_loss_barrier:.4f}"
    )

    example = x_tr[:8]
    with torch.no_grad():
        logits_b = model_b(x_tr)

    matchers: list[tuple[str, Matcher, str | None]] = [
        ("ours (canonicalize.align)", match_ours, _ours_available()),
        (f"rebasin {_rebasin_version()}", match_rebasin, None),
    ]
    rows: list[dict] = []
    for label, fn, skip in matchers:
        if skip is not None:
            print(f"  {label}: SKIPPED ({skip})")
            rows.append({"method": label, "skipped": skip})
            continue
        try:
            best, aligned = run_matcher(fn, model_a, model_b, example, repeats)
            aligned.eval()
            with torch.no_grad():
                fdiff = (aligned(x_tr) - logits_b).abs().max().item()
            errs, losses = linear_path(model_a, aligned, x_tr, y_tr)
        except Exception as exc:  # report and keep going with the other tool
            traceback.print_exc()
            reason = f"FAILED: {type(exc).__name__}: {exc}"
            print(f"  {label}: {reason}")
            rows.append({"method": label, "skipped": reason})
            continue
        rows.append(
            {
                "method": label,
                "time_s": best,
                "barrier_raw": raw_barrier,
                "barrier_aligned": barrier(errs),
                "max_err_aligned": float(errs.max()),
                "loss_barrier_raw": raw_loss_barrier,
                "loss_barrier_aligned": barrier(losses),
                "func_maxdiff": fdiff,
                "errs_aligned": errs,
                "losses_aligned": losses,
            }
        )

    ref = next((r["time_s"] for r in rows if r["method"].startswith("rebasin")), None)
    header = (
        f"{'method':<28} | {'time (s)':>9} | {'x rebasin':>9} | {'barrier raw':>11} | "
        f"{'barrier aligned':>15} | {'max err aligned':>15} | {'function max-diff':>17} | "
        f"{'loss barrier raw':>16} | {'loss barrier aligned':>20}"
    )
    print()
    print(header)
    print("-" * len(header))
    for r in rows:
        if "skipped" in r:
            status = "failed" if r["skipped"].startswith("FAILED") else "skipped"
            print(f"{r['method']:<28} | {status:>9} |")
            continue
        ratio = f"{r['time_s'] / ref:9.2f}" if ref else f"{'n/a':>9}"
        print(
            f"{r['method']:<28} | {r['time_s']:9.4f} | {ratio} | {r['barrier_raw']:11.4f} | "
            f"{r['barrier_aligned']:15.4f} | {r['max_err_aligned']:15.4f} | "
            f"{r['func_maxdiff']:17.2e} | {r['loss_barrier_raw']:16.4f} | "
            f"{r['loss_barrier_aligned']:20.4f}"
        )
    print(
        f"\n(best of {repeats} runs; errors are training-set error rates on {N_TRAIN} digits; "
        f"total {time.perf_counter() - t_start:.1f} s)"
    )
    return rows


def distance(a: nn.Module, b: nn.Module) -> float:
    """Euclidean distance between the parameters: what weight matching minimizes."""
    with torch.no_grad():
        pairs = zip(a.parameters(), b.parameters(), strict=True)
        return float(sum(((p - q) ** 2).sum() for p, q in pairs) ** 0.5)


def compare_pairs(
    width: int = 256, epochs: int = 30, repeats: int = 5, pairs: int = 3
) -> dict[str, dict[str, float]]:
    """Both tools on several independently trained pairs; means of time and quality.

    One pair's error barrier moves by single training examples (1/1500 = 0.0007), so the
    summary averages over ``pairs`` pairs and adds the distance after alignment (the quantity
    weight matching optimizes) and the loss barrier.
    """
    x_tr, y_tr, _, _ = load_data()
    example = x_tr[:8]
    matchers = {"ours": match_ours, "rebasin": match_rebasin}
    totals: dict[str, dict[str, list[float]]] = {m: {} for m in matchers}
    for i in range(pairs):
        a = _train(make_mlp(width, 2 * i), x_tr, y_tr, seed=2 * i, epochs=epochs)
        b = _train(make_mlp(width, 2 * i + 1), x_tr, y_tr, seed=2 * i + 1, epochs=epochs)
        for name, fn in matchers.items():
            best, aligned = run_matcher(fn, a, b, example, repeats)
            errs, losses = linear_path(a, aligned, x_tr, y_tr)
            row = {
                "time_s": best,
                "barrier": barrier(errs),
                "loss_barrier": barrier(losses),
                "distance": distance(a, aligned),
            }
            for key, value in row.items():
                totals[name].setdefault(key, []).append(value)
    means = {m: {k: float(np.mean(v)) for k, v in t.items()} for m, t in totals.items()}
    print(f"\nMLP 64-{width}-{width}-10, mean over {pairs} pairs (best of {repeats} timings each)")
    print(
        f"{'method':<8} | {'time (s)':>9} | {'error barrier':>13} | "
        f"{'loss barrier':>12} | {'distance':>9}"
    )
    for name, row in means.items():
        print(
            f"{name:<8} | {row['time_s']:9.4f} | {row['barrier']:13.4f} | "
            f"{row['loss_barrier']:12.4f} | {row['distance']:9.4f}"
        )
    ratio = means["ours"]["time_s"] / means["rebasin"]["time_s"]
    print(f"time ratio ours / rebasin: {ratio:.2f}")
    return means


# =========================================================================== BatchNorm CNNs
# Two architectures trained on the digits as 8x8 single-channel images: a plain VGG-like
# ``nn.Sequential`` and a small ResNet written in the style of public CIFAR ResNets
# (``F.relu`` calls, ``out += self.shortcut(x)``).
BN_SEEDS = (0, 1, 2)
BN_METHODS = ("weights", "cosine", "activations")
REESTIMATE_BATCH = 250
EVAL_BATCH = 250


def load_images() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``load_data`` (standardized with training statistics) as (N, 1, 8, 8) images."""
    x_tr, y_tr, x_te, y_te = load_data()
    return x_tr.reshape(-1, 1, 8, 8), y_tr, x_te.reshape(-1, 1, 8, 8), y_te


def make_vgg(seed: int, c1: int = 32, c2: int = 64) -> nn.Sequential:
    """Conv-BN-ReLU x2, max-pool, Conv-BN-ReLU, max-pool, linear head (8x8 -> 2x2)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, c1, 3, padding=1),
        nn.BatchNorm2d(c1),
        nn.ReLU(),
        nn.Conv2d(c1, c1, 3, padding=1),
        nn.BatchNorm2d(c1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1),
        nn.BatchNorm2d(c2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(c2 * 2 * 2, 10),
    )


class BasicBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus a shortcut (identity, or 1x1 conv + BN), ReLU after the add."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride, bias=False),
                nn.BatchNorm2d(channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        return F.relu(out)


class SmallResNet(nn.Module):
    """Stem conv-BN-ReLU, two BasicBlocks (the second with stride 2), global average pool."""

    def __init__(self, width: int = 32, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.layer1 = BasicBlock(width, width, 1)
        self.layer2 = BasicBlock(width, 2 * width, 2)
        self.linear = nn.Linear(2 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer2(self.layer1(out))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


def make_resnet(seed: int, width: int = 32) -> SmallResNet:
    torch.manual_seed(seed)
    return SmallResNet(width)


def _batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def reestimate_batchnorm(model: nn.Module, x: torch.Tensor, batch_size: int = REESTIMATE_BATCH):
    """Recompute every BatchNorm's running statistics on ``x`` (exact cumulative average).

    Reset, ``momentum=None`` (cumulative moving average), one pass over ``x`` in train mode
    without gradients, back to eval mode. Interpolated networks need this: the interpolated
    running statistics are not the statistics of the interpolated network (Jordan et al.,
    "REPAIR", 2022).
    """
    bns = _batchnorms(model)
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    for batch in x.split(batch_size):
        model(batch)
    model.eval()
    for bn, momentum in zip(bns, momenta, strict=True):
        bn.momentum = momentum
    return model


@torch.no_grad()
def linear_path_bn(
    model_a: nn.Module,
    model_b: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    reestimate: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Training error and loss along (1 - t) A + t B (floating state entries interpolated).

    ``reestimate``: reset and recompute the BatchNorm statistics at every point (endpoints
    included) instead of using the interpolated running statistics.
    """
    sd_a, sd_b = model_a.state_dict(), model_b.state_dict()
    # channels-last convolutions in batches of 250 run ~2x faster on one core here; loading a
    # state dict keeps the probe's memory format, and results agree to float round-off
    probe = copy.deepcopy(model_a)
    if x.dim() == 4:
        probe = probe.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    errs, losses = [], []
    for t in np.linspace(0.0, 1.0, N_POINTS):
        probe.load_state_dict(
            {
                k: (1 - t) * sd_a[k] + t * sd_b[k] if sd_a[k].is_floating_point() else sd_a[k]
                for k in sd_a
            }
        )
        if reestimate:
            reestimate_batchnorm(probe, x)
        probe.eval()
        err, loss = error_and_loss_batched(probe, x, y)
        errs.append(err)
        losses.append(loss)
    return np.asarray(errs), np.asarray(losses)


@torch.no_grad()
def error_and_loss_batched(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = EVAL_BATCH
) -> tuple[float, float]:
    """``error_and_loss`` in batches (eval mode: the result does not depend on the batching)."""
    logits = torch.cat([model(b) for b in x.split(batch_size)])
    err = (logits.argmax(dim=1) != y).float().mean().item()
    return err, nn.functional.cross_entropy(logits, y).item()


def state_distance(a: nn.Module, b: nn.Module) -> float:
    """Euclidean distance of the floating state entries (parameters and BatchNorm buffers)."""
    sd_a, sd_b = a.state_dict(), b.state_dict()
    with torch.no_grad():
        total = sum(
            float(((sd_a[k].double() - sd_b[k].double()) ** 2).sum())
            for k in sd_a
            if sd_a[k].is_floating_point()
        )
    return total**0.5


def normalized_distance(a: nn.Module, b: nn.Module, example: torch.Tensor) -> float:
    """Distance in normalized coordinates: ``canonicalize.normalize`` applied to both.

    Every free positive scale removed and biases before a BatchNorm folded into its running
    mean: the coordinates ``match(...).distance_after`` reports, computed the same way for any
    tool's output. Falls back to the float64 state of ``canonicalize.align.normalized`` (no
    variance check, no float32 round trip) if ``normalize`` refuses a model, and to NaN if
    canonicalize is unavailable.
    """
    try:
        from canonicalize import normalize

        return state_distance(normalize(a, example), normalize(b, example))
    except Exception:
        pass
    try:
        from canonicalize import symmetries
        from canonicalize.align import normalized
        from canonicalize.transform import to_float64

        spec = symmetries(a, example)
        na, nb = normalized(to_float64(a), spec), normalized(to_float64(b), spec)
        total = sum(float(((na[k] - nb[k]) ** 2).sum()) for k in na if na[k].is_floating_point())
        return total**0.5
    except Exception:
        return float("nan")


def make_match_ours(method: str, data: torch.Tensor | None = None) -> Matcher:
    """A matcher running ``canonicalize.match(B, A, example, method, data)``.

    The ``Alignment`` of the last call is kept on the function (``.last``) for its distances.
    """

    def fn(model_a: nn.Module, model_b: nn.Module, example: torch.Tensor) -> nn.Module:
        from canonicalize import match

        result = match(model_b, model_a, example, method=method, data=data)
        fn.last = result  # type: ignore[attr-defined]
        return result.model

    fn.__name__ = f"match_ours_{method}"
    return fn


def match_raw(model_a: nn.Module, model_b: nn.Module, example: torch.Tensor) -> nn.Module:
    """No alignment: B as it is."""
    return model_b


def batchnorm_gamma_permutations(
    before: nn.Module, after: nn.Module
) -> dict[str, torch.Tensor | None]:
    """Per BatchNorm, the permutation that maps ``before``'s gammas onto ``after``'s, if any.

    ``|after.gamma[i]| == |before.gamma[perm[i]]|`` exactly (absolute values: a sign flip
    of the layer before a BatchNorm flips its gamma); ``None`` when they are not a permutation
    of each other (the values are floats of trained networks, so ties are rare).
    Used to read the permutation a tool applied (rebasin does not report it).
    """
    out: dict[str, torch.Tensor | None] = {}
    mods_b = dict(before.named_modules())
    for name, bn in after.named_modules():
        if not isinstance(bn, nn.modules.batchnorm._BatchNorm) or bn.weight is None:
            continue
        g_before, g_after = mods_b[name].weight.detach().abs(), bn.weight.detach().abs()
        hits = g_after[:, None] == g_before[None, :]
        if (hits.sum(1) == 1).all() and (hits.sum(0) == 1).all():
            out[name] = hits.float().argmax(1)
        else:
            out[name] = None
    return out


def permute_running_stats(before: nn.Module, after: nn.Module) -> nn.Module:
    """A copy of ``after`` whose BatchNorm buffers follow the permutation of its gammas.

    rebasin 0.0.47 permutes a BatchNorm's weight and bias but not its running statistics;
    this repairs that from the outside (the permutation read off the gammas).
    """
    fixed = copy.deepcopy(after)
    mods_fixed, mods_before = dict(fixed.named_modules()), dict(before.named_modules())
    with torch.no_grad():
        for name, perm in batchnorm_gamma_permutations(before, after).items():
            if perm is None:
                continue
            bn, src = mods_fixed[name], mods_before[name]
            bn.running_mean.copy_(src.running_mean[perm])
            bn.running_var.copy_(src.running_var[perm])
    return fixed


def _units_moved(perms: dict[str, torch.Tensor | None]) -> str:
    if any(p is None for p in perms.values()):
        return "n/a"
    return str(sum(int((p != torch.arange(len(p))).sum()) for p in perms.values()))


def timed_runs(
    fn: Matcher, model_a: nn.Module, model_b: nn.Module, example: torch.Tensor, repeats: int
) -> tuple[list[float], nn.Module]:
    """Like ``run_matcher`` but returns every run's wall time (to report the noise too)."""
    times, aligned = [], None
    for _ in range(repeats):
        best, aligned = run_matcher(fn, model_a, model_b, example, 1)
        times.append(best)
    assert aligned is not None
    return times, aligned


BN_ARCHITECTURES: dict[str, tuple[str, Callable[[int], nn.Module]]] = {
    "vgg": ("VGG-like BN CNN: conv32-conv32-pool-conv64-pool-linear (nn.Sequential)", make_vgg),
    "resnet": (
        "ResNet: stem conv32, BasicBlock 32, BasicBlock 64 (stride 2, 1x1 shortcut), GAP, linear",
        make_resnet,
    ),
}


def evaluate_batchnorm_pair(
    model_a: nn.Module,
    model_b: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    repeats: int,
) -> list[dict]:
    """Every method on one pair: time, function check, distances, barriers (two BN treatments)."""
    example = x[:8]
    with torch.no_grad():
        logits_b = model_b(x)
    matchers: list[tuple[str, Matcher]] = [("raw", match_raw)]
    skip = _ours_available()
    if skip is None:
        matchers += [
            (f"ours {m}", make_match_ours(m, x if m == "activations" else None)) for m in BN_METHODS
        ]
    matchers.append(("rebasin", match_rebasin))
    rows: list[dict] = []
    for label, fn in matchers:
        try:
            times, aligned = timed_runs(fn, model_a, model_b, example, repeats)
        except Exception as exc:  # report and keep going
            rows.append({"method": label, "skipped": f"FAILED: {type(exc).__name__}: {exc}"})
            continue
        candidates = [(label, aligned)]
        if label == "rebasin":
            # rebasin permutes BatchNorm weight and bias but not the running statistics;
            # the same permutation with the statistics moved as well, for comparison
            candidates.append(("rebasin + stats", permute_running_stats(model_b, aligned)))
        for name, out in candidates:
            out.eval()
            with torch.no_grad():
                fdiff = (out(x) - logits_b).abs().max().item()
            if name != "rebasin + stats":
                # re-estimation resets the statistics: the same path for both rebasin rows
                errs_re, losses_re = linear_path_bn(model_a, out, x, y, reestimate=True)
            errs_in, losses_in = linear_path_bn(model_a, out, x, y, reestimate=False)
            last = getattr(fn, "last", None)
            rows.append(
                {
                    "method": name,
                    "time_s": min(times),
                    "time_median_s": float(np.median(times)),
                    "moved": _units_moved(batchnorm_gamma_permutations(model_b, out)),
                    "func_maxdiff": fdiff,
                    "err_end": float(errs_in[-1]),
                    "dist_raw": state_distance(model_a, out),
                    "dist_norm": normalized_distance(model_a, out, example),
                    "dist_norm_alignment": None if last is None else last.distance_after,
                    "barrier_re": barrier(errs_re),
                    "loss_barrier_re": barrier(losses_re),
                    "barrier_in": barrier(errs_in),
                    "loss_barrier_in": barrier(losses_in),
                    "max_err_re": float(errs_re.max()),
                }
            )
    return rows


def _print_batchnorm_table(title: str, per_pair: list[list[dict]], repeats: int) -> dict:
    """Means over the pairs (barriers also per pair) and the time ratio to rebasin."""
    methods = [r["method"] for r in per_pair[0]]
    summary: dict[str, dict] = {}
    for m in methods:
        rows = [next(r for r in pair if r["method"] == m) for pair in per_pair]
        if any("skipped" in r for r in rows):
            summary[m] = {"skipped": next(r["skipped"] for r in rows if "skipped" in r)}
            continue
        keys = [k for k, v in rows[0].items() if isinstance(v, float)]
        summary[m] = {k: float(np.mean([r[k] for r in rows])) for k in keys}
        summary[m]["func_maxdiff"] = max(r["func_maxdiff"] for r in rows)
        summary[m]["moved"] = "/".join(r["moved"] for r in rows)
        summary[m]["barriers_re"] = [r["barrier_re"] for r in rows]
    ref = summary.get("rebasin", {}).get("time_s")
    end = "err B'"  # training error of the aligned model itself (its own statistics)
    header = (
        f"{'method':<16} | {'time best/med (s)':>17} | {'x rebasin':>9} | {'BN ch. moved':>12} | "
        f"{'f max-diff':>10} | {end:>6} | {'dist raw':>8} | {'dist norm':>9} | "
        f"{'err bar RE':>10} | "
        f"{'loss bar RE':>11} | {'err bar interp':>14} | {'loss bar interp':>15} | "
        "err barrier RE per pair"
    )
    print(
        f"\n{title}: mean over {len(per_pair)} pairs (time: best and median of {repeats} "
        "per pair, then mean)"
    )
    print(header)
    print("-" * len(header))
    for m, s in summary.items():
        if "skipped" in s:
            print(f"{m:<16} | {s['skipped']}")
            continue
        ratio = f"{s['time_s'] / ref:9.2f}" if ref and m != "raw" else f"{'':>9}"
        time_s = f"{s['time_s']:8.4f}/{s['time_median_s']:<8.4f}" if m != "raw" else f"{'':>17}"
        pairs = " ".join(f"{b:.3f}" for b in s["barriers_re"])
        print(
            f"{m:<16} | {time_s} | {ratio} | {s['moved']:>12} | {s['func_maxdiff']:10.2e} | "
            f"{s['err_end']:6.4f} | "
            f"{s['dist_raw']:8.3f} | {s['dist_norm']:9.3f} | {s['barrier_re']:10.4f} | "
            f"{s['loss_barrier_re']:11.4f} | {s['barrier_in']:14.4f} | "
            f"{s['loss_barrier_in']:15.4f} | {pairs}"
        )
    gaps = [
        abs(r["dist_norm"] - r["dist_norm_alignment"])
        for pair in per_pair
        for r in pair
        if r.get("dist_norm_alignment") is not None
    ]
    if gaps:
        print(
            "dist norm (canonicalize.normalize of A and B') vs Alignment.distance_after: "
            f"max difference {max(gaps):.1e}"
        )
    return summary


def main_batchnorm(
    architectures: tuple[str, ...] = ("vgg", "resnet"),
    seeds: tuple[int, ...] = BN_SEEDS,
    epochs: int = 30,
    repeats: int = 3,
    threads: int = 1,
) -> dict[str, dict]:
    """BatchNorm CNN pairs: ours (weights, cosine, activations) vs rebasin vs raw.

    ``seeds`` trains one network per seed; every pair of them is aligned (three seeds give
    three pairs). ``threads``: torch threads for training, matching and evaluation (one by
    default: on a shared 2-core machine two threads make these small convolutions many times
    slower as soon as another process runs).
    """
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    t_start = time.perf_counter()
    x_tr, y_tr, x_te, y_te = load_images()
    results: dict[str, dict] = {}
    try:
        for arch in architectures:
            title, make = BN_ARCHITECTURES[arch]
            models = {}
            for seed in seeds:
                t0 = time.perf_counter()
                models[seed] = _train(make(seed), x_tr, y_tr, seed=seed, epochs=epochs)
                print(
                    f"{arch} seed {seed}: train err {error(models[seed], x_tr, y_tr):.4f}, "
                    f"test err {error(models[seed], x_te, y_te):.4f} "
                    f"({time.perf_counter() - t0:.1f} s, {epochs} epochs)"
                )
            pairs = [(a, b) for i, a in enumerate(seeds) for b in seeds[i + 1 :]]
            per_pair = []
            for a, b in pairs:
                rows = evaluate_batchnorm_pair(models[a], models[b], x_tr, y_tr, repeats)
                per_pair.append(rows)
                for r in rows:
                    if "skipped" in r:
                        print(f"  pair {a}-{b} {r['method']}: {r['skipped']}")
            results[arch] = _print_batchnorm_table(f"{title}, {epochs} epochs", per_pair, repeats)
    finally:
        torch.set_num_threads(previous_threads)
    print(
        f"\n(RE: BatchNorm statistics re-estimated on the training set at each of {N_POINTS} "
        f"points; interp: interpolated running statistics. dist norm: Euclidean distance "
        f"after canonicalize.normalize of both. Total {time.perf_counter() - t_start:.1f} s, "
        f"{threads} thread(s).)"
    )
    return results


def _rebasin_version() -> str:
    from importlib.metadata import version

    return version("rebasin")


if __name__ == "__main__":
    # Make ``canonicalize`` importable when run as ``python benchmarks/weight_matching.py``
    # from a checkout without an editable install.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
    compare_pairs(width=256)
    compare_pairs(width=512)
    main_batchnorm()
