"""Are the minimizers meant to be flat flatter, and the sharp ones sharper, on our data?

The toroids paper trains minimizers of different flatness on purpose: SGD with Nesterov
momentum (standard), replicated SGD (flat), adversarial initialization + SGD (sharp); SAM is a
flat-minimum method of its own. This script trains each of them with
:func:`funcspace.train` on scikit-learn's digits (bundled, nothing is downloaded; 1,500
train / 297 test, standardized with training statistics) with a 64-128-128-10 ReLU MLP, over a
few seeds, and measures their flatness with the paper's local energy

    dE(w, sigma) = E_z[ E_train(w + sigma z * w) ] - E_train(w),   z ~ N(0, 1) elementwise,

(multiplicative noise on every parameter, 30 draws per sigma, training error). If
``funcspace.energy.local_energy`` is importable it is used (and checked once against the small
implementation below, which is used otherwise).

Rows: ``sgd`` (paper: lr 0.02 cosine), ``sgd lr=0.05`` (the SGD that matches RSGD's
learning rate), ``rsgd`` (our default: 3 replicas started from independent initializations,
:class:`funcspace.optim.Balanced` coupling), ``rsgd shared+gated`` (the previous default:
replicas started together, :class:`funcspace.optim.Gated` coupling), ``rsgd-paper`` (started
together, coupling 1e-3 growing 1.05 per epoch, as the toroids paper's text reads), ``adv``,
``sam`` (rho 0.05 over the same Nesterov SGD) and ``entropy_sgd`` (its defaults: L 5, gamma
0.03). The default mode runs the whole 100-epoch budget; ``"stop"`` ends each run at its first
epoch of zero training error. Sigma 0.4 and 0.6 are where digits minimizers differ: below 0.2
every non-ADV minimizer has a local energy of a few 1e-4.

Run from the repository root (about 2.5 minutes on 2 shared cores; ``--quick``: 2 seeds, 40
epochs, 1-2 minutes)::

    .venv/bin/python benchmarks/flat_minima.py [--quick]

or ``from benchmarks.flat_minima import main; main(seeds=range(10), modes=("stop", "full"))``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from funcspace.data import Dataset
from funcspace.models import MLP
from funcspace.optim import Gated, error_and_loss, method_class
from funcspace.training import train

SIGMAS = (0.1, 0.2, 0.4, 0.6)
DRAWS = 30
CHECK_DRAWS = 200  # the self-check compares two independent estimates: 30 draws differ by ~20%
N_TRAIN = 1500

#: (row label, optimizer, options)
CONFIGS: tuple[tuple[str, str, dict], ...] = (
    ("sgd", "sgd", {}),
    ("sgd lr=0.05", "sgd", {"lr": 0.05}),
    ("rsgd", "rsgd", {}),
    ("rsgd shared+gated", "rsgd", {"init": "shared", "coupling": Gated(), "replicas": 5}),
    ("rsgd-paper", "rsgd", {"init": "shared", "coupling": (1e-3, 1.05), "replicas": 5}),
    ("adv", "adv", {}),
    ("sam", "sam", {}),
    ("entropy_sgd", "entropy_sgd", {}),
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
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    sigmas: Sequence[float],
    seed: int,
    draws: int = DRAWS,
) -> list[float]:
    """Mean train-error increase under ``w + sigma z w`` (all parameters), per sigma."""
    gen = torch.Generator().manual_seed(seed)
    params = list(model.parameters())
    original = [p.clone() for p in params]
    base = error_and_loss(model, x, y)[0]
    energies = []
    for sigma in sigmas:
        errors = []
        for _ in range(draws):
            for p, w in zip(params, original, strict=True):
                p.copy_(w + sigma * torch.randn(w.shape, generator=gen) * w)
            errors.append(error_and_loss(model, x, y)[0])
        energies.append(float(np.mean(errors)) - base)
    for p, w in zip(params, original, strict=True):
        p.copy_(w)
    return energies


def _library_local_energy() -> tuple[Callable | None, str]:
    """``funcspace.energy.local_energy`` as one error increase per sigma, or why it is absent."""
    try:
        from funcspace.energy import local_energy
        from funcspace.evaluation import Settings
    except ImportError as exc:
        return None, f"the benchmark's own simple_local_energy (funcspace.energy: {exc})"

    def wrapped(
        model: nn.Module, data: Dataset, sigmas: Sequence[float], seed: int, draws: int = DRAWS
    ):
        curve = local_energy(
            model,
            data,
            sigmas=tuple(sigmas),
            samples=draws,
            seed=seed,
            settings=Settings(metrics="error"),
        )
        return [float(v) for v in curve.mean["error"]]

    return wrapped, "funcspace.energy.local_energy (multiplicative, all parameters)"


def run(
    label: str,
    optimizer: str,
    options: dict,
    data: Dataset,
    seed: int,
    epochs: int,
    full_budget: bool,
    energy: Callable,
) -> dict:
    start = time.perf_counter()
    result = train(
        MLP(64, (128, 128), 10, seed=seed),
        data,
        method_class(optimizer).Options(**options),
        seed=seed,
        epochs=epochs,
        stop_at_zero_error=not full_budget,
        progress=False,
    )
    seconds = time.perf_counter() - start
    record = result.record
    details = record.details
    return {
        "rsgd": None
        if optimizer != "rsgd"
        else (details["coupling"][-1], details["spread"][-1], details["replica_error"][-1]),
        "label": label,
        "train": record.train_error[-1],
        "test": record.test_error[-1],
        "energy": energy(result.model, data, seed),
        "epochs": record.epochs,
        "seconds": seconds,
    }


def main(
    seeds: Sequence[int] = (0, 1, 2),
    epochs: int = 100,
    modes: Sequence[str] = ("full",),
    configs: Sequence[tuple[str, str, dict]] = CONFIGS,
) -> dict[str, list[dict]]:
    """Train every config over ``seeds`` in each mode, print one table per mode.

    ``"stop"``: each run ends at its first epoch of zero training error; ``"full"``: the whole
    budget of ``epochs``. Returns the rows (one per config) by mode.
    """
    torch.set_num_threads(1)
    data = load_data()
    x, y = data.train
    library, source = _library_local_energy()

    def energy(model, data, seed):
        if library is not None:
            return library(model, data, SIGMAS, seed)
        return simple_local_energy(model, x, y, SIGMAS, seed=seed)

    print(f"local energy: {source}; {DRAWS} draws per sigma; seeds {tuple(seeds)}")
    if library is not None:  # the two estimates must agree within the noise of their draws
        probe = train(MLP(64, (128, 128), 10, seed=0), data, "sgd", epochs=5, progress=False)
        ours = simple_local_energy(probe.model, x, y, SIGMAS, seed=0, draws=CHECK_DRAWS)
        theirs = library(probe.model, data, SIGMAS, 0, CHECK_DRAWS)
        print(
            f"check on a 5-epoch SGD net, {CHECK_DRAWS} draws, LE per sigma: library "
            + ", ".join(f"{v:.4f}" for v in theirs)
            + " | simple "
            + ", ".join(f"{v:.4f}" for v in ours)
        )
    results = {}
    for mode in modes:
        if mode not in ("stop", "full"):
            raise ValueError(f"mode must be 'stop' or 'full', got {mode!r}")
        rows = []
        for label, optimizer, options in configs:
            runs = [
                run(label, optimizer, options, data, s, epochs, mode == "full", energy)
                for s in seeds
            ]
            rows.append(
                {
                    "label": label,
                    **{
                        k: float(np.mean([r[k] for r in runs])) for k in ("train", "test", "epochs")
                    },
                    "seconds": float(np.sum([r["seconds"] for r in runs])),
                    "energy": np.mean([r["energy"] for r in runs], axis=0),
                    "energy_sd": np.std([r["energy"] for r in runs], axis=0),
                    "rsgd": None
                    if runs[0]["rsgd"] is None
                    else np.mean([r["rsgd"] for r in runs], 0),
                }
            )
        print()
        print(
            "stop at the first epoch of zero train error, budget"
            if mode == "stop"
            else "whole budget of",
            epochs,
            "epochs",
        )
        print(table(rows))
        for r in rows:
            if r["rsgd"] is not None:
                g, spread, error = r["rsgd"]
                print(
                    f"  {r['label']}: final coupling {g:.3g}, replica-center mean squared "
                    f"distance per parameter {spread:.2e}, replicas' train error {error:.4f}"
                )
        results[mode] = rows
    return results


def table(rows: list[dict]) -> str:
    """Markdown table: means over seeds, local energy as mean (sd), and its ratio to SGD's."""
    sgd = next(r for r in rows if r["label"] == "sgd")["energy"]
    at = [SIGMAS.index(0.4), SIGMAS.index(0.6)]
    head = (
        "| optimizer | train err | test err | "
        + " | ".join(f"LE sigma={s}" for s in SIGMAS)
        + " | LE / sgd at 0.4, 0.6 | epochs | train time (s, all seeds) |"
    )
    lines = [head, "|" + "---|" * (len(SIGMAS) + 6)]
    for r in rows:
        energies = " | ".join(
            f"{m:.4f} ({s:.4f})" for m, s in zip(r["energy"], r["energy_sd"], strict=True)
        )
        ratios = ", ".join(f"{r['energy'][i] / sgd[i]:.2f}" if sgd[i] > 0 else "n/a" for i in at)
        lines.append(
            f"| {r['label']} | {r['train']:.4f} | {r['test']:.4f} | {energies} | "
            f"{ratios} | {r['epochs']:.1f} | {r['seconds']:.1f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    if "--quick" in sys.argv[1:]:
        main(seeds=(0, 1), epochs=40)
    else:
        main()
