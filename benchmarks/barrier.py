"""Side-by-side benchmark: the adaptive barrier against a uniform grid of the same resolution.

Trains seven MLPs (40-128-128-10) to zero training error on MNIST-1D (generated locally;
digits if the ``mnist1d`` package is missing) with SGD from different seeds, then for every
pair measures the error barrier of the aligned linear path twice: :func:`paths.barrier` at
resolution 1/256 and the maximum of a uniform 257-point :func:`paths.profile`. Prints, per
pair, the evaluations each used and the two heights (they should be equal: the adaptive
search returns the grid's maximum).

Run from the repository root::

    .venv/bin/python benchmarks/barrier.py          # about 3 minutes for 7 minima (21 pairs)
"""

from __future__ import annotations

import itertools
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import canonicalize  # noqa: E402
import paths  # noqa: E402
from funcspace.data import DataError, load  # noqa: E402
from funcspace.models import MLP  # noqa: E402
from funcspace.optim import SGDOptions  # noqa: E402
from funcspace.training import train  # noqa: E402


def main(minima: int = 7, epochs: int = 100) -> None:
    torch.set_num_threads(2)
    try:
        data = load("mnist1d", n_samples=4000, seed=0)
    except DataError:
        data = load("digits")
    d, classes = data.input_shape[0], data.n_classes
    start = time.perf_counter()
    nets = [
        train(
            MLP(d, (128, 128), classes, seed=s),
            data,
            SGDOptions(lr=0.1),
            seed=s,
            epochs=epochs,
            progress=False,
        ).model
        for s in range(minima)
    ]
    print(f"{data.name}: {minima} SGD minima in {time.perf_counter() - start:.0f} s")
    print("| pair | adaptive evals | grid evals | adaptive height | grid height | equal |")
    print("|---|---|---|---|---|---|")
    used, equal = [], 0
    x = data.train[0][:256]
    for i, j in itertools.combinations(range(minima), 2):
        b = canonicalize.align(nets[j], nets[i], x, method="weights")
        path = paths.linear(nets[i], b)
        found = paths.barrier(path, data, "error")
        grid = np.arange(257) / 256
        dense = paths.profile(path, data, t=grid).values["error"]
        chord = (1 - grid) * dense[0] + grid * dense[-1]
        height = float((dense - chord).max())
        same = abs(found.height - height) < 1e-12
        equal += same
        used.append(found.evaluations)
        print(
            f"| {i}-{j} | {found.evaluations} | 257 | {found.height:.4f} | {height:.4f} | {same} |"
        )
    print(
        f"\nmean evaluations {np.mean(used):.1f} of 257 ({np.mean(used) / 257:.2f}); "
        f"equal heights {equal} of {len(used)}"
    )


if __name__ == "__main__":
    main()
