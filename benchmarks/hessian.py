"""Side-by-side benchmark: our Hessian eigenvalue and trace estimators vs. PyHessian.

Both tools measure the same trained network: a 64-256-256-10 ReLU MLP (85,002 parameters)
fitted in this script to the 1,500 training digits of scikit-learn's ``load_digits`` (bundled,
nothing downloaded), with the Hessian of the mean cross-entropy over all 1,500 examples in one
batch (both tools then cache the first-order gradient graph and pay one double backward per
Hessian-vector product, HVP).

Top eigenvalue
    ours: ``funcspace.flatness.hessian_eigenvalues(model, data, k=1, tol=1e-3, seed=s)``:
    Lanczos with full reorthogonalization, stopped when the Ritz residual is at most 0.1% of
    the value (so an eigenvalue lies within 0.1% of the answer), warm-started (the default)
    from a loose Lanczos on a 10% subsample's Hessian; rows with ``tol=1e-2`` and ``3e-2``
    show the trade-off, one without the warm start. HVPs are counted in full-data products
    (``EigenResult.cost``: a subsample product counts as its share). PyHessian 0.1:
    ``hessian(model, criterion, data=(x, y), cuda=False).eigenvalues()`` (power iteration,
    stops when the value changes by less than 0.1% between steps; start vector from the
    global torch RNG, seeded with s).
    Reference: our Lanczos at ``tol=1e-10`` on a float64 copy, cross-checked with scipy's
    ``eigsh`` on the same float64 operator.
Trace
    ours: ``hessian_trace(model, data, hvps=30, seed=s)`` (the default ``method="krylov"``:
    Lanczos deflation with half the budget, Hutchinson on the rest), Hutch++ and plain
    Hutchinson at the same budget (30 is about the number of HVPs PyHessian's stopping rule
    takes here; its own count is shown). PyHessian: ``hessian(...).trace()`` (Hutchinson
    with Rademacher vectors; stops when the running mean changes by less than 0.1%; the
    estimate is the mean of the returned samples). Reference: Hutch++ with 300 HVPs. A sweep
    over budgets compares the standard errors of the three estimators.
Times are wall-clock seconds per call including the setup (forward pass and first-order
graph), median over seeds of the best of ``repeats`` runs; the two tools alternate so that
load from other processes hits both alike. HVPs are counted by wrapping each tool's product.

PyHessian's ``density()`` calls ``torch.eig``, removed from PyTorch (2.x); it fails on this
torch and is not benchmarked (``funcspace.hessian.spectral_density`` is our counterpart).

Run from the repository root (PyHessian installed as in benchmarks/README.md)::

    .venv/bin/python benchmarks/hessian.py

or ``from benchmarks.hessian import main; main(seeds=10, repeats=3, threads=2)``.
"""

from __future__ import annotations

import copy
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse.linalg
import torch
from sklearn.datasets import load_digits
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from funcspace.flatness import hessian_eigenvalues, hessian_trace  # noqa: E402
from funcspace.hessian import (  # noqa: E402
    HessianOperator,
    hutchinson_trace,
    hutchpp_trace,
    krylov_trace,
    lanczos,
)

N_TRAIN = 1500


# --------------------------------------------------------------------------- problem
def load_data() -> tuple[torch.Tensor, torch.Tensor]:
    """The first 1500 digits (8x8 = 64 features), standardized."""
    x, y = load_digits(return_X_y=True)
    x = x[:N_TRAIN].astype(np.float32)
    std = x.std(axis=0)
    std[std == 0] = 1.0
    x = (x - x.mean(axis=0)) / std
    return torch.as_tensor(x), torch.as_tensor(y[:N_TRAIN], dtype=torch.long)


def trained_mlp(x: torch.Tensor, y: torch.Tensor, epochs: int = 20, seed: int = 0) -> nn.Module:
    """64-256-256-10 ReLU MLP, minibatch SGD with Nesterov momentum."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10)
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 128):
            idx = perm[i : i + 128]
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


# --------------------------------------------------------------------------- pyhessian
class _PyHessian:
    """PyHessian 0.1 with its HVPs counted (one wrapper around its product function)."""

    def __init__(self) -> None:
        import pyhessian  # noqa: F401  (fails here with a clear message if not installed)

        self.module = sys.modules["pyhessian.hessian"]
        self.count = 0
        product = self.module.hessian_vector_product

        def counted(*args):
            self.count += 1
            return product(*args)

        self.module.hessian_vector_product = counted

    def new(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        return self.module.hessian(model, nn.CrossEntropyLoss(), data=(x, y), cuda=False)


def _round_robin(fns: dict, repeats: int) -> dict:
    """{name: (best wall time, last result)}; each repeat runs every function once in turn,
    so a burst of load from other processes slows all of them, not one."""
    best = dict.fromkeys(fns, math.inf)
    out = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            out[name] = fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return {name: (best[name], out[name]) for name in fns}


# --------------------------------------------------------------------------- benchmark
def top_eigenvalue(model, x, y, ph: _PyHessian, seeds: int, repeats: int) -> dict:
    data = (x, y)
    op64 = HessianOperator(copy.deepcopy(model).double(), (x.double(), y))
    ref = lanczos(op64, k=1, tol=1e-10, max_iter=200)
    ref_eigsh = scipy.sparse.linalg.eigsh(op64.to_scipy(), k=1, which="LA", tol=1e-10)[0][0]
    lam = float(ref.values[0])
    ours = {
        "ours tol 1e-3": {"tol": 1e-3},
        "ours tol 1e-2": {"tol": 1e-2},
        "ours tol 3e-2": {"tol": 3e-2},
        "ours tol 3e-2, random start": {"tol": 3e-2, "warm_start": None},
    }
    rows = {name: [] for name in ours} | {"pyhessian": []}
    for s in range(seeds):

        def run_pyhessian(s=s):
            torch.manual_seed(s)
            ph.count = 0
            values, _ = ph.new(copy.deepcopy(model), x, y).eigenvalues()
            return values[0], ph.count

        fns = {
            name: lambda s=s, kw=kw: hessian_eigenvalues(model, data, seed=s, **kw)
            for name, kw in ours.items()
        }
        timed = _round_robin(fns | {"pyhessian": run_pyhessian}, repeats)
        for name in ours:
            dt, res = timed[name]
            err = abs(float(res.values[0]) - lam) / lam
            # products on the full data, the warm start's 10%-subsample ones at their share
            rows[name].append((dt, res.cost, err, float(res.relative_residuals[0])))
        dt, (value, count) = timed["pyhessian"]
        rows["pyhessian"].append((dt, count, abs(value - lam) / lam, math.nan))
    return {
        "reference": lam,
        "reference_eigsh": float(ref_eigsh),
        "ref_hvps": ref.hvps,
        "rows": rows,
    }


def trace(model, x, y, ph: _PyHessian, seeds: int, repeats: int, budget: int) -> dict:
    data = (x, y)
    op = HessianOperator(model, data)
    ref = hutchpp_trace(op, hvps=300, seed=12345)
    # standard errors at larger budgets, each the mean of the reported standard errors of
    # three runs (the deflated methods report the spread of their Hutchinson part)
    sweep = []
    for m in (99, 300):
        errs = [
            np.mean([f(op, m, seed=100 + r).std_error for r in range(3)])
            for f in (krylov_trace, hutchpp_trace, hutchinson_trace)
        ]
        sweep.append((m, *errs))
    names = ("ours krylov", "ours hutch++", "ours hutchinson")
    methods = dict(zip(names, ("krylov", "hutch++", "hutchinson"), strict=True))
    rows = {"pyhessian": [], **{name: [] for name in names}}
    for s in range(seeds):

        def run_pyhessian(s=s):
            torch.manual_seed(s)
            ph.count = 0
            samples = ph.new(copy.deepcopy(model), x, y).trace()
            return float(np.mean(samples)), ph.count

        fns = {"pyhessian": run_pyhessian}
        for name, method in methods.items():
            fns[name] = lambda s=s, method=method: hessian_trace(
                model, data, method=method, hvps=budget, seed=s
            )
        timed = _round_robin(fns, repeats)
        dt, (est, count) = timed["pyhessian"]
        rows["pyhessian"].append((dt, count, est))
        for name in names:
            dt, res = timed[name]
            rows[name].append((dt, res.hvps, res.estimate))
    return {"reference": ref, "budget": budget, "rows": rows, "sweep": sweep}


def hvp_cost(model, x, y, ph: _PyHessian, repeats: int = 20) -> tuple[float, float]:
    """Best time of one HVP through the cached graph: ours, PyHessian's."""
    op = HessianOperator(model, (x, y))
    v = torch.randn(op.shape[0], generator=torch.Generator().manual_seed(0))
    op.matvec(v)
    h = ph.new(copy.deepcopy(model), x, y)
    vs = [t.reshape(p.shape) for t, p in zip(torch.split(v, op._sizes), h.params, strict=True)]
    product = ph.module.hessian_vector_product
    timed = _round_robin(
        {"ours": lambda: op.matvec(v), "pyhessian": lambda: product(h.gradsH, h.params, vs)},
        repeats,
    )
    return timed["ours"][0], timed["pyhessian"][0]


def main(
    seeds: int = 10, repeats: int = 3, threads: int = 2, epochs: int = 20, trace_hvps: int = 30
) -> None:
    torch.set_num_threads(threads)
    x, y = load_data()
    model = trained_mlp(x, y, epochs=epochs)
    with torch.no_grad():
        logits = model(x)
        loss = nn.functional.cross_entropy(logits, y).item()
        err = (logits.argmax(1) != y).float().mean().item()
    n = sum(p.numel() for p in model.parameters())
    ph = _PyHessian()
    print(
        f"torch {torch.__version__}, {threads} threads, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}; MLP 64-256-256-10 ({n} parameters) on "
        f"{len(x)} digits: train loss {loss:.4f}, error {err:.4f}; seeds {seeds}, best of {repeats}"
    )
    ours_hvp, their_hvp = hvp_cost(model, x, y, ph)
    print(
        f"\none HVP (cached graph): ours {ours_hvp * 1e3:.1f} ms, "
        f"PyHessian {their_hvp * 1e3:.1f} ms"
    )

    eig = top_eigenvalue(model, x, y, ph, seeds, repeats)
    print(
        f"\n## Top eigenvalue (reference {eig['reference']:.7f}: our Lanczos tol 1e-10 in float64, "
        f"{eig['ref_hvps']} HVPs; scipy eigsh {eig['reference_eigsh']:.7f})\n"
    )
    print(
        "| method | median time (s) | full-data HVPs mean [min-max] | rel. error mean / max | "
        "rel. residual max | time ratio PyHessian/this | HVP ratio PyHessian/this |"
    )
    print("|---|---|---|---|---|---|---|")
    base = statistics.median(r[0] for r in eig["rows"]["pyhessian"])
    base_hvps = statistics.mean(r[1] for r in eig["rows"]["pyhessian"])
    for name, rows in eig["rows"].items():
        t = statistics.median(r[0] for r in rows)
        h = [r[1] for r in rows]
        e = [r[2] for r in rows]
        res = max(r[3] for r in rows)
        print(
            f"| {name} | {t:.3f} | {statistics.mean(h):.1f} [{min(h):.1f}-{max(h):.1f}] | "
            f"{statistics.mean(e):.1e} / {max(e):.1e} | "
            f"{'-' if math.isnan(res) else f'{res:.1e}'} | {base / t:.2f} | "
            f"{base_hvps / statistics.mean(h):.2f} |"
        )

    tr = trace(model, x, y, ph, seeds, repeats, trace_hvps)
    ref = tr["reference"]
    print(
        f"\n## Trace (reference: Hutch++ with {ref.hvps} HVPs = {ref.estimate:.3f} "
        f"+- {ref.std_error:.3f}; ours at {tr['budget']} HVPs, about what PyHessian's stopping "
        f"rule uses)\n"
    )
    print(
        "| method | median time (s) | HVPs mean [min-max] | estimate mean | spread (std over "
        "seeds) | spread / Hutchinson's | time ratio PyHessian/this |"
    )
    print("|---|---|---|---|---|---|---|")
    base = statistics.median(r[0] for r in tr["rows"]["pyhessian"])
    spread_hu = float(np.std([r[2] for r in tr["rows"]["ours hutchinson"]], ddof=1))
    for name, rows in tr["rows"].items():
        t = statistics.median(r[0] for r in rows)
        h = [r[1] for r in rows]
        est = [r[2] for r in rows]
        spread = float(np.std(est, ddof=1))
        print(
            f"| {name} | {t:.3f} | {statistics.mean(h):.1f} [{min(h)}-{max(h)}] | "
            f"{statistics.mean(est):.3f} | {spread:.3f} | {spread / spread_hu:.2f} | "
            f"{base / t:.2f} |"
        )
    print(
        "\nStandard error at larger budgets (mean of the reported standard errors of three runs):\n"
    )
    print("| HVPs | Krylov | Hutch++ | Hutchinson | Hutchinson / Krylov | Hutch++ / Krylov |")
    print("|---|---|---|---|---|---|")
    for m, kr, pp, hu in tr["sweep"]:
        print(f"| {m} | {kr:.3f} | {pp:.3f} | {hu:.3f} | {hu / kr:.2f} | {pp / kr:.2f} |")
    print(
        "\nPyHessian's density() calls torch.eig, which current PyTorch no longer has: "
        "not benchmarked."
    )


if __name__ == "__main__":
    main()
