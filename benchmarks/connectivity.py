"""The science, reported whatever it shows: barriers between minima of different flatness.

On MNIST-1D, three minima per optimizer (SGD, RSGD, ADV; the settings of ``paths.demo``) and
three pairs per type (SGD-SGD, RSGD-RSGD, ADV-ADV within the type, RSGD-ADV as seed i with
seed i), each measured along the raw linear, aligned linear, geodesic and single-bend paths
(training-error barrier above the chord, adaptive to 1/256). Prints the table of means and
spreads per pair type beside the toroids paper's ranking (PRODUCT.md: with the symmetries
removed, geodesic barriers rank RSGD-RSGD < SGD-SGD < RSGD-ADV < ADV-ADV; single-bend paths
reach near zero once aligned).

Run from the repository root::

    .venv/bin/python benchmarks/connectivity.py     # about 6 minutes on the idle 2-core machine
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from funcspace.data import load  # noqa: E402
from paths.demo import PATH_KINDS, measure_pair, train_minima  # noqa: E402

PAPER = {  # LeNet on Fashion-MNIST, read off the paper's figures (PRODUCT.md)
    "RSGD-RSGD": {"raw linear": 0.48, "aligned linear": 0.07, "geodesic": 0.085},
    "ADV-ADV": {"raw linear": 0.77, "aligned linear": 0.67, "geodesic": 0.67},
}


def main(per_optimizer: int = 3) -> None:
    torch.set_num_threads(2)
    started = time.perf_counter()
    data = load("mnist1d", n_samples=4000, seed=0)
    minima = {m.name: m for m in train_minima(data, per_optimizer=per_optimizer, progress=False)}
    for m in minima.values():
        print(
            f"{m.name:<6} {m.epochs:>3} epochs, train error {m.train_error:.4f}, "
            f"test error {m.test_error:.4f}"
        )
    seeds = range(per_optimizer)
    plan = {
        "SGD-SGD": [(f"sgd{i}", f"sgd{j}") for i in seeds for j in seeds if i < j],
        "RSGD-RSGD": [(f"rsgd{i}", f"rsgd{j}") for i in seeds for j in seeds if i < j],
        "ADV-ADV": [(f"adv{i}", f"adv{j}") for i in seeds for j in seeds if i < j],
        "RSGD-ADV": [(f"rsgd{i}", f"adv{i}") for i in seeds],
    }
    print("\n| pair type | pairs | " + " | ".join(PATH_KINDS) + " |")
    print("|---|---|" + "---|" * len(PATH_KINDS))
    for category, pairs in plan.items():
        results = [measure_pair(minima[a], minima[b], data) for a, b in pairs]
        cells = []
        for kind in PATH_KINDS:
            heights = np.array([r.barriers[kind].height for r in results])
            cells.append(f"{heights.mean():.3f} +- {heights.std():.3f}")
        print(f"| {category} | {len(pairs)} | " + " | ".join(cells) + " |")
    print("\nthe paper (LeNet, Fashion-MNIST, highest error on the path):")
    for category, row in PAPER.items():
        print(f"  {category}: " + ", ".join(f"{k} ~{v:.2f}" for k, v in row.items()))
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
