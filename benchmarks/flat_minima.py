"""Are the minimizers meant to be flat flatter, and the sharp ones sharper, on our data?

The toroids paper trains minimizers of different flatness on purpose: SGD with Nesterov
momentum (standard), replicated SGD (flat), adversarial initialization + SGD (sharp); SAM is a
flat-minimum method of its own. This script trains each of them with
:func:`funcspace.train` on scikit-learn's digits (bundled, nothing is downloaded; 1,500
train / 297 test, standardized with training statistics) with a 64-128-128-10 ReLU MLP, over a
few seeds, and measures their flatness with the paper's local energy

    dE(w, sigma) = E_z[ E_train(w + sigma z * w) ] - E_train(w),   z ~ N(0, 1) elementwise,

(multiplicative noise on every parameter, 30 draws per sigma, training error). If
``funcspace.energy.local_energy`` (or ``funcspace.flatness.local_energy``) is importable and
its result can be read, it is used; otherwise the small implementation below.

Rows: ``sgd`` (paper: lr 0.02 cosine), ``rsgd`` (our default schedule,
:class:`funcspace.optim.Gated`), ``rsgd-paper`` (coupling 1e-3 growing 1.05 per epoch, the
paper's), ``adv`` and ``sam`` (rho 0.05 over the same Nesterov SGD), plus ``sgd lr=0.05``,
the SGD that matches RSGD's learning rate, and both at lr 0.2, where SGD noise is large
enough to spread the replicas apart. Each run stops at its first epoch of zero training
error (budget 100 epochs) unless ``full_budget=True``.

Run from the repository root (about 3 minutes on 2 cores)::

    .venv/bin/python benchmarks/flat_minima.py

or ``from benchmarks.flat_minima import main; main(seeds=(0, 1, 2), full_budget=True)``.
"""

from __future__ import annotations

import importlib
import inspect
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from funcspace.data import Dataset
from funcspace.models import MLP
from funcspace.optim import error_and_loss
from funcspace.training import train

SIGMAS = (0.05, 0.1, 0.2, 0.4)
DRAWS = 30
N_TRAIN = 1500

#: (row label, optimizer, options)
CONFIGS: tuple[tuple[str, str, dict], ...] = (
    ("sgd", "sgd", {}),
    ("sgd lr=0.05", "sgd", {"lr": 0.05}),
    ("rsgd", "rsgd", {}),
    ("rsgd-paper", "rsgd", {"coupling": (1e-3, 1.05)}),
    ("adv", "adv", {}),
    ("sam", "sam", {}),
    ("sgd lr=0.2", "sgd", {"lr": 0.2}),
    ("rsgd lr=0.2", "rsgd", {"lr": 0.2}),
)


def load_data(seed: int = 0) -> Dataset:
    """Digits, shuffled with ``seed``, standardized with training statistics."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x, dtype=torch.float32)
    y = torch.tensor(y, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    x, y = x[order], y[order]
    mean, std = x[:N_TRAIN].mean(0), x[:N_TRAIN].std(0).clamp_min(1e-3)
    x = (x - mean) / std
    return Dataset("digits", (x[:N_TRAIN], y[:N_TRAIN]), (x[N_TRAIN:], y[N_TRAIN:]), 10)


@torch.no_grad()
def simple_local_energy(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, sigmas: Sequence[float], seed: int
) -> list[float]:
    """Mean train-error increase under ``w + sigma z w`` (all parameters), DRAWS per sigma."""
    gen = torch.Generator().manual_seed(seed)
    params = list(model.parameters())
    original = [p.clone() for p in params]
    base = error_and_loss(model, x, y)[0]
    energies = []
    for sigma in sigmas:
        errors = []
        for _ in range(DRAWS):
            for p, w in zip(params, original, strict=True):
                p.copy_(w + sigma * torch.randn(w.shape, generator=gen) * w)
            errors.append(error_and_loss(model, x, y)[0])
        energies.append(float(np.mean(errors)) - base)
    for p, w in zip(params, original, strict=True):
        p.copy_(w)
    return energies


def _library_local_energy() -> tuple[Callable | None, str]:
    """The library's local energy wrapped to return one number per sigma, or why not."""
    for module in ("funcspace.energy", "funcspace.flatness"):
        try:
            fn = importlib.import_module(module).local_energy
        except (ImportError, AttributeError):
            continue
        names = inspect.signature(fn).parameters
        extra = {}
        for key in ("samples", "n_samples", "draws", "n_draws", "num_samples"):
            if key in names:
                extra[key] = DRAWS
                break
        if "seed" in names:
            extra["seed"] = 0

        def wrapped(model, data, sigmas, seed, fn=fn, extra=extra):
            kwargs = {**extra, "seed": seed} if "seed" in extra else extra
            result = fn(model, data, sigmas=tuple(sigmas), **kwargs)
            for attr in ("error", "delta_error", "energy", "mean", "values"):
                value = getattr(result, attr, None)
                if value is not None and np.size(value) == len(sigmas):
                    return [float(v) for v in np.asarray(value, dtype=float).ravel()]
            value = np.asarray(result, dtype=float)
            if value.size != len(sigmas):
                raise TypeError(f"cannot read one energy per sigma from {type(result).__name__}")
            return [float(v) for v in value.ravel()]

        return wrapped, f"{module}.local_energy"
    return None, "the benchmark's own simple_local_energy"


def run(
    label: str, optimizer: str, options: dict, data: Dataset, seed: int, epochs: int,
    full_budget: bool, energy: Callable,
) -> dict:
    start = time.perf_counter()
    result = train(
        MLP(64, (128, 128), 10, seed=seed), data, optimizer, seed=seed, epochs=epochs,
        stop_at_zero_error=not full_budget, progress=False, **options,
    )
    seconds = time.perf_counter() - start
    record = result.record
    details = record.details
    return {
        "rsgd": None if optimizer != "rsgd" else (
            details["coupling"][-1], details["spread"][-1], details["replica_error"][-1]),
        "label": label,
        "train": record.train_error[-1],
        "test": record.test_error[-1],
        "energy": energy(result.model, data, seed),
        "epochs": record.epochs,
        "seconds": seconds,
    }


def main(seeds: Sequence[int] = (0, 1, 2), epochs: int = 100, full_budget: bool = False,
         configs: Sequence[tuple[str, str, dict]] = CONFIGS) -> list[dict]:
    """Train every config over ``seeds``, print the table, return the rows (one per config)."""
    torch.set_num_threads(min(2, torch.get_num_threads()))
    data = load_data()
    x, y = data.train
    library, source = _library_local_energy()

    def energy(model, data, seed):
        if library is not None:
            try:
                return library(model, data, SIGMAS, seed)
            except Exception as exc:  # an API we could not read: say so, use ours
                print(f"note: {source} failed ({type(exc).__name__}: {exc}); using ours")
        return simple_local_energy(model, x, y, SIGMAS, seed=seed)

    print(f"local energy: {source}; {DRAWS} draws per sigma; seeds {tuple(seeds)}; "
          f"{'whole budget of ' if full_budget else 'stop at zero train error, budget '}"
          f"{epochs} epochs")
    rows = []
    for label, optimizer, options in configs:
        runs = [run(label, optimizer, options, data, s, epochs, full_budget, energy)
                for s in seeds]
        rows.append({
            "label": label,
            **{k: float(np.mean([r[k] for r in runs])) for k in ("train", "test", "epochs")},
            "seconds": float(np.sum([r["seconds"] for r in runs])),
            "energy": np.mean([r["energy"] for r in runs], axis=0),
            "energy_sd": np.std([r["energy"] for r in runs], axis=0),
            "rsgd": None if runs[0]["rsgd"] is None else np.mean([r["rsgd"] for r in runs], 0),
        })
    print(table(rows))
    for r in rows:
        if r["rsgd"] is not None:
            g, spread, error = r["rsgd"]
            print(f"{r['label']}: at the end coupling {g:.3g}, replica-center mean squared "
                  f"distance per parameter {spread:.2e}, replicas' train error {error:.4f}")
    return rows


def table(rows: list[dict]) -> str:
    """Markdown table; local energy is mean (sd over seeds); the last column is LE(0.2) / SGD's."""
    base = next(r for r in rows if r["label"] == "sgd")["energy"][SIGMAS.index(0.2)]
    head = ("| optimizer | train err | test err | "
            + " | ".join(f"LE sigma={s}" for s in SIGMAS)
            + " | LE(0.2) / sgd | epochs | time (s) |")
    lines = [head, "|" + "---|" * (len(SIGMAS) + 6)]
    for r in rows:
        energies = " | ".join(f"{m:.4f} ({s:.4f})" for m, s in
                              zip(r["energy"], r["energy_sd"], strict=True))
        ratio = r["energy"][SIGMAS.index(0.2)] / base if base > 0 else float("nan")
        lines.append(f"| {r['label']} | {r['train']:.4f} | {r['test']:.4f} | {energies} | "
                     f"{ratio:.2f} | {r['epochs']:.1f} | {r['seconds']:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
