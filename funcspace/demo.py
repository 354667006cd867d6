"""The quick-start demonstration: two networks, their symmetries removed, how far apart they are.

Trains two ReLU MLPs from different seeds on scikit-learn's digits (bundled, no download),
then compares them raw, in canonical form and after alignment, and checks that neither
transformation changed a single prediction. Run it with ``python -m funcspace.demo``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

import canonicalize
from funcspace.data import Dataset, load
from funcspace.evaluation import Settings, evaluate
from funcspace.evaluation.settings import SPLITS
from funcspace.landscape import interpolate
from funcspace.models import MLP
from funcspace.training import train


@dataclass(frozen=True)
class DemoResult:
    """Distances between the two trained networks, linear-path barriers, and the checks."""

    train_error: tuple[float, float]
    test_error: tuple[float, float]
    distance_normalized: float
    distance_cosine: float
    distance_weights: float
    geodesic_distance: float
    barrier_raw: float
    barrier_aligned: float
    predictions_unchanged: bool
    seconds: float

    def table(self) -> str:
        """The result as a small text table."""
        rows = [
            ("train error (a, b)", f"{self.train_error[0]:.4f}, {self.train_error[1]:.4f}"),
            ("test error (a, b)", f"{self.test_error[0]:.4f}, {self.test_error[1]:.4f}"),
            ("|a - b|, both normalized, raw order", f"{self.distance_normalized:.4f}"),
            ("|a - b|, b aligned to a (cosine)", f"{self.distance_cosine:.4f}"),
            ("|a - b|, b aligned to a (weights)", f"{self.distance_weights:.4f}"),
            ("geodesic distance of the classes", f"{self.geodesic_distance:.4f}"),
            ("linear-path barrier (train error), raw", f"{self.barrier_raw:.4f}"),
            ("linear-path barrier, aligned (weights)", f"{self.barrier_aligned:.4f}"),
            ("predictions unchanged by every transform", str(self.predictions_unchanged)),
            ("wall time (s)", f"{self.seconds:.1f}"),
        ]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def _distance(a: nn.Module, b: nn.Module) -> float:
    with torch.no_grad():
        pairs = zip(a.parameters(), b.parameters(), strict=True)
        return float(sum(((p - q) ** 2).sum() for p, q in pairs) ** 0.5)


def _barrier(a: nn.Module, b: nn.Module, data: Dataset, points: int = 11) -> float:
    """Highest train error on the straight line from a to b, above the endpoints' mean
    (one batched evaluation of every point of the line)."""
    path = interpolate(a, b, data, points=points, settings=Settings(metrics="error"))
    errors = path.values["error"]
    return float(errors.max() - (errors[0] + errors[-1]) / 2)


def run(width: int = 128, epochs: int = 20, seeds: tuple[int, int] = (0, 1)) -> DemoResult:
    """Train two MLPs on digits and measure them with their symmetries removed.

    Built on the library: :func:`funcspace.data.load`, :func:`funcspace.train` (SGD with
    Nesterov momentum, cosine-annealed), :func:`funcspace.evaluate`,
    :func:`funcspace.landscape.interpolate` and :mod:`canonicalize`.
    """
    start = time.perf_counter()
    data = load("digits")
    a, b = (
        train(
            MLP(64, (width, width), 10, seed=s),
            data.train,  # the pair: no test error recorded every epoch (measured once below)
            "sgd",
            seed=s,
            epochs=epochs,
            lr=0.05,
            progress=False,
        ).model
        for s in seeds
    )
    x = data.train[0]
    na = canonicalize.normalize(a, x, output="normalize")
    nb = canonicalize.normalize(b, x, output="normalize")
    by_cosine = canonicalize.align(nb, na, x, method="cosine")
    by_weights = canonicalize.align(nb, na, x, method="weights")
    canon = canonicalize.canonical_form(b, x, output="normalize")
    test_inputs = data.test[0]
    with torch.no_grad():
        unchanged = all(
            torch.equal(m(test_inputs).argmax(1), n(test_inputs).argmax(1))
            for m, n in ((a, na), (b, nb), (b, by_cosine), (b, by_weights), (b, canon))
        )
    geodesic = canonicalize.geodesic_distance(
        canonicalize.to_torus(a, x), canonicalize.to_torus(b, x)
    )
    errors = {split: evaluate([a, b], data, "error", split=split).error for split in SPLITS}
    return DemoResult(
        train_error=(float(errors["train"][0]), float(errors["train"][1])),
        test_error=(float(errors["test"][0]), float(errors["test"][1])),
        distance_normalized=_distance(na, nb),
        distance_cosine=_distance(na, by_cosine),
        distance_weights=_distance(na, by_weights),
        geodesic_distance=geodesic,
        barrier_raw=_barrier(a, b, data),
        barrier_aligned=_barrier(a, canonicalize.align(b, a, x, method="weights"), data),
        predictions_unchanged=unchanged,
        seconds=time.perf_counter() - start,
    )


USAGE = """usage: python -m funcspace.demo

Trains two 64-128-128-10 ReLU MLPs (seeds 0 and 1) on scikit-learn's digits, then prints how far
apart they are raw, in canonical form and aligned, the linear-path barrier between them before
and after alignment, and whether every transformation kept every prediction (3.4-4 s on 2
CPU cores). Takes no options."""


def main(argv: Sequence[str] | None = None) -> int:
    """Print the demonstration's table (``--help``: what it does); returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        print(USAGE)  # noqa: T201 - the demo's purpose is to print
        return 0
    if args:
        print(f"{USAGE}\n\nerror: unexpected arguments {args}", file=sys.stderr)  # noqa: T201
        return 2
    torch.set_num_threads(min(2, torch.get_num_threads()))
    print(run().table())  # noqa: T201 - the demo's purpose is to print
    return 0


if __name__ == "__main__":
    sys.exit(main())
