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

Run from the repository root::

    .venv/bin/python benchmarks/weight_matching.py

or ``from benchmarks.weight_matching import main; main(width=512, epochs=40, repeats=5)``.
If ``canonicalize.align`` cannot be imported, its row is reported as skipped and the
rebasin half still runs.
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
