"""The main job: are minima found by optimizers of different flatness connected?

On MNIST-1D (generated locally, no download; digits is nearly convex for MLPs and shows tiny
barriers), trains ReLU MLPs to zero training error with SGD, replicated SGD (RSGD) and an
adversarial initialization (ADV), then for every pair measures the training-error barrier of
four paths: the raw straight line, the straight line after weight matching, the geodesic in
toroidal coordinates, and the toroids paper's single-bend path. Prints the table and writes it
(``results.json``) with plots (``profiles.png``, ``barriers.png``, ``plane.png``) to an output
folder. Run it with ``python -m paths.demo [OUTPUT_FOLDER]`` (default ``connectivity``).
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path as FilePath
from typing import Any

import numpy as np
from torch import nn
from tqdm.auto import tqdm

import canonicalize
from funcspace.data import Dataset, load
from funcspace.models import MLP
from funcspace.optim import AdversarialOptions, Options, ReplicatedSGDOptions, SGDOptions
from funcspace.training import train

from .barrier import Barrier, barrier
from .path import Path, bent, geodesic, linear

#: The four paths measured between every pair, in the order the table shows them.
PATH_KINDS = ("raw linear", "aligned linear", "geodesic", "single bend")
OPTIMIZERS = ("sgd", "rsgd", "adv")


@dataclass(frozen=True)
class Minimum:
    """A trained network and how it was found."""

    name: str
    optimizer: str
    seed: int
    epochs: int
    train_error: float
    test_error: float
    model: nn.Module


@dataclass(frozen=True)
class PairResult:
    """The barriers of the four paths between two minima (``paths[kind]`` are the paths)."""

    a: str
    b: str
    barriers: dict[str, Barrier]
    paths: dict[str, Path]

    @property
    def category(self) -> str:
        """The pair's type, e.g. ``"SGD-ADV"`` (optimizers in :data:`OPTIMIZERS` order)."""
        left, right = sorted((self.a, self.b), key=lambda n: OPTIMIZERS.index(_optimizer(n)))
        return f"{_optimizer(left).upper()}-{_optimizer(right).upper()}"


def _optimizer(name: str) -> str:
    return name.rstrip("0123456789")


@dataclass(frozen=True)
class ConnectivityDemo:
    """Minima, the barriers between every pair, and where the results were written."""

    data: str
    minima: tuple[Minimum, ...]
    pairs: tuple[PairResult, ...]
    seconds: float
    written: tuple[str, ...]

    def categories(self) -> dict[str, dict[str, float]]:
        """The mean barrier height of each path kind per pair type."""
        out: dict[str, dict[str, list[float]]] = {}
        for pair in self.pairs:
            row = out.setdefault(pair.category, {k: [] for k in PATH_KINDS})
            for kind in PATH_KINDS:
                row[kind].append(pair.barriers[kind].height)
        return {c: {k: float(np.mean(v)) for k, v in row.items()} for c, row in out.items()}

    def table(self) -> str:
        """The minima, every pair's barriers and the means per pair type, as text."""
        lines = [f"minima on {self.data}"]
        lines += [
            f"  {m.name:<6} {m.optimizer:<5} seed {m.seed}: {m.epochs:>3} epochs, train error "
            f"{m.train_error:.4f}, test error {m.test_error:.4f}"
            for m in self.minima
        ]
        header = "".join(f"{k:>16}" for k in PATH_KINDS)
        lines += ["", "training-error barrier (highest rise above the chord of the ends)"]
        lines += [f"  {'pair':<14}{header}"]
        for pair in self.pairs:
            cells = "".join(f"{pair.barriers[k].height:>16.4f}" for k in PATH_KINDS)
            lines.append(f"  {pair.a + '-' + pair.b:<14}{cells}")
        lines += ["", "mean per pair type"]
        for category, row in self.categories().items():
            cells = "".join(f"{row[k]:>16.4f}" for k in PATH_KINDS)
            lines.append(f"  {category:<14}{cells}")
        lines.append(f"\n{self.seconds:.0f} s; written: {', '.join(self.written) or 'nothing'}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Plain data, for JSON."""
        return {
            "data": self.data,
            "seconds": self.seconds,
            "minima": [
                {k: getattr(m, k) for k in ("name", "optimizer", "seed", "epochs")}
                | {"train_error": m.train_error, "test_error": m.test_error}
                for m in self.minima
            ],
            "pairs": [
                {
                    "a": p.a,
                    "b": p.b,
                    "category": p.category,
                    "barriers": {k: b.to_dict() for k, b in p.barriers.items()},
                }
                for p in self.pairs
            ],
            "categories": self.categories(),
        }


def _options(optimizer: str) -> Options:
    """Each optimizer's settings here: the paper's (ADV without momentum after its
    adversarial pre-training), with larger steps so that these small MLPs reach zero training
    error in tens of epochs."""
    if optimizer == "adv":
        return AdversarialOptions(lr=0.3, adv_epochs=20)
    if optimizer == "rsgd":
        return ReplicatedSGDOptions(lr=0.1)
    return SGDOptions(lr=0.1)


def train_minima(
    data: Dataset,
    *,
    optimizers: Sequence[str] = OPTIMIZERS,
    per_optimizer: int = 2,
    hidden: Sequence[int] = (128, 128),
    epochs: int = 100,
    progress: bool | None = None,
) -> tuple[Minimum, ...]:
    """``per_optimizer`` minima of each optimizer (named ``sgd0``, ``sgd1``, ...), stopped at
    zero training error. Every minimum has its own seed (initialization and batch order), so
    no two share a starting point: minima from one initialization are far closer."""
    d, classes = data.input_shape[0], data.n_classes
    jobs = [(o, i) for o in optimizers for i in range(per_optimizer)]
    out = []
    for seed, (optimizer, index) in enumerate(
        tqdm(jobs, desc="minima", disable=(progress is False) or None)
    ):
        model = MLP(d, tuple(hidden), classes, seed=seed)
        result = train(model, data, _options(optimizer), epochs=epochs, seed=seed, progress=False)
        record = result.record
        out.append(
            Minimum(
                f"{optimizer}{index}",
                optimizer,
                seed,
                record.epochs,
                float(record.train_error[-1]),
                float(record.test_error[-1]) if record.test_error else float("nan"),
                result.model,
            )
        )
    return tuple(out)


def measure_pair(
    a: Minimum, b: Minimum, data: Dataset, *, bend_epochs: int = 100, seed: int = 0
) -> PairResult:
    """The four paths between two minima and their training-error barriers."""
    x = data.train[0][:512]
    aligned = canonicalize.align(b.model, a.model, x, "weights")
    built = {
        "raw linear": linear(a.model, b.model),
        "aligned linear": linear(a.model, aligned),
        "geodesic": geodesic(a.model, b.model, x, "weights"),
        # the bend is trained as in the paper (SGD, lr 0.02): larger steps carry it away from
        # the midpoint, and its legs then climb over other ridges
        "single bend": bent(
            a.model, b.model, data, x, optimizer="sgd", epochs=bend_epochs, seed=seed
        ),
    }
    barriers = {kind: barrier(path, data, "error") for kind, path in built.items()}
    return PairResult(a.name, b.name, barriers, built)


def run(
    out: str | FilePath | None = "connectivity",
    *,
    n_samples: int = 4000,
    optimizers: Sequence[str] = OPTIMIZERS,
    per_optimizer: int = 2,
    hidden: Sequence[int] = (128, 128),
    epochs: int = 100,
    progress: bool | None = None,
) -> ConnectivityDemo:
    """Train the minima, measure every pair, print nothing; write results and plots to
    ``out`` (None: write nothing). Returns the :class:`ConnectivityDemo`."""
    started = time.perf_counter()
    data = load("mnist1d", n_samples=n_samples, seed=0)
    minima = train_minima(
        data,
        optimizers=optimizers,
        per_optimizer=per_optimizer,
        hidden=hidden,
        epochs=epochs,
        progress=progress,
    )
    pairs = tuple(
        measure_pair(a, b, data, bend_epochs=epochs)
        for a, b in tqdm(
            list(itertools.combinations(minima, 2)),
            desc="pairs",
            disable=(progress is False) or None,
        )
    )
    demo = ConnectivityDemo(data.name, minima, pairs, time.perf_counter() - started, ())
    if out is None:
        return demo
    folder = FilePath(out)
    folder.mkdir(parents=True, exist_ok=True)
    written = [*_plots(demo, data, folder), str(folder / "results.json")]
    demo = ConnectivityDemo(demo.data, minima, pairs, time.perf_counter() - started, tuple(written))
    (folder / "results.json").write_text(json.dumps(demo.to_dict(), indent=1))
    return demo


def _plots(demo: ConnectivityDemo, data: Dataset, folder: FilePath) -> list[str]:
    """profiles.png (one pair per type), barriers.png (matrices), plane.png (one pair)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .plane import path_plane
    from .plots import plot_path_plane, plot_profiles

    firsts: dict[str, PairResult] = {}
    for pair in demo.pairs:
        firsts.setdefault(pair.category, pair)
    shown = list(firsts.values())
    columns = min(3, len(shown))
    rows = -(-len(shown) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.3 * rows), squeeze=False)
    for ax, pair in zip(axes.flat, shown, strict=False):
        plot_profiles(
            [pair.barriers[k] for k in PATH_KINDS], metric="error", labels=PATH_KINDS, ax=ax
        )
        ax.set_title(f"{pair.category}: {pair.a}-{pair.b}")
    for ax in list(axes.flat)[len(shown) :]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(folder / "profiles.png", dpi=110)
    plt.close(fig)

    names = [m.name for m in demo.minima]
    index = {n: i for i, n in enumerate(names)}
    fig, axes = plt.subplots(1, len(PATH_KINDS), figsize=(3.6 * len(PATH_KINDS), 3.4))
    top = max(max(p.barriers[k].height for k in PATH_KINDS) for p in demo.pairs)
    for ax, kind in zip(axes, PATH_KINDS, strict=True):
        matrix = np.zeros((len(names), len(names)))
        for pair in demo.pairs:
            i, j = index[pair.a], index[pair.b]
            matrix[i, j] = matrix[j, i] = pair.barriers[kind].height
        image = ax.imshow(matrix, vmin=0, vmax=max(top, 1e-3), cmap="viridis")
        ax.set_xticks(range(len(names)), names, rotation=90)
        ax.set_yticks(range(len(names)), names if ax is axes[0] else [])
        ax.set_title(kind)
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="error barrier")
    fig.savefig(folder / "barriers.png", dpi=110)
    plt.close(fig)

    pair = shown[0]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    found = path_plane(pair.paths["single bend"], data, others=[pair.paths["geodesic"]])
    plot_path_plane(found, "error", ax=ax)
    ax.set_title(f"{pair.a}-{pair.b}: plane through the ends and the bend")
    fig.savefig(folder / "plane.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return [str(folder / n) for n in ("profiles.png", "barriers.png", "plane.png")]


def main(argv: Sequence[str] = ()) -> ConnectivityDemo:
    """``python -m paths.demo [OUTPUT_FOLDER]``: run, print the table, return the result."""
    out = argv[0] if argv else "connectivity"
    demo = run(out)
    print(demo.table())
    return demo


if __name__ == "__main__":
    main(sys.argv[1:])
