"""The quick-start demonstration: two networks, their symmetries removed, how far apart they are.

Trains two ReLU MLPs from different seeds on scikit-learn's digits (bundled, no download),
then compares them raw, in canonical form and after alignment, and checks that neither
transformation changed a single prediction. Run it with ``python -m funcspace.demo``.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

import canonicalize
from funcspace.models import MLP


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


def load_digits(
    seed: int = 0,
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """scikit-learn's 8x8 digits, standardized, split 1,500 train / 297 test."""
    from sklearn.datasets import load_digits as _load

    data = _load()
    x = torch.tensor(data.data, dtype=torch.float32)
    y = torch.tensor(data.target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    x, y = x[order], y[order]
    mean, std = x[:1500].mean(0), x[:1500].std(0).clamp_min(1e-3)
    x = (x - mean) / std
    return (x[:1500], y[:1500]), (x[1500:], y[1500:])


def _train(
    model: nn.Module, data: tuple[torch.Tensor, torch.Tensor], seed: int, epochs: int
) -> nn.Module:
    x, y = data
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(x), generator=generator).split(128):
            optimizer.zero_grad()
            F.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
    return model.eval()


def _error(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor]) -> float:
    with torch.no_grad():
        return float((model(data[0]).argmax(1) != data[1]).float().mean())


def _distance(a: nn.Module, b: nn.Module) -> float:
    with torch.no_grad():
        pairs = zip(a.parameters(), b.parameters(), strict=True)
        return float(sum(((p - q) ** 2).sum() for p, q in pairs) ** 0.5)


def _barrier(
    a: nn.Module, b: nn.Module, data: tuple[torch.Tensor, torch.Tensor], points: int = 11
) -> float:
    """Highest train error on the straight line from a to b, above the endpoints' mean."""
    sa, sb = a.state_dict(), b.state_dict()
    mid = copy.deepcopy(a)
    errors = []
    for t in torch.linspace(0, 1, points).tolist():
        mid.load_state_dict({k: (1 - t) * sa[k] + t * sb[k] for k in sa})
        errors.append(_error(mid, data))
    return max(errors) - (errors[0] + errors[-1]) / 2


def run(width: int = 128, epochs: int = 20, seeds: tuple[int, int] = (0, 1)) -> DemoResult:
    """Train two MLPs on digits and measure them with their symmetries removed."""
    start = time.perf_counter()
    train, test = load_digits()
    a, b = (
        _train(MLP(64, (width, width), 10, seed=s), train, seed=s, epochs=epochs) for s in seeds
    )
    x = train[0]
    na = canonicalize.normalize(a, x, output="normalize")
    nb = canonicalize.normalize(b, x, output="normalize")
    by_cosine = canonicalize.align(nb, na, x, method="cosine")
    by_weights = canonicalize.align(nb, na, x, method="weights")
    canon = canonicalize.canonical_form(b, x, output="normalize")
    unchanged = all(
        torch.equal(m(test[0]).argmax(1), n(test[0]).argmax(1))
        for m, n in ((a, na), (b, nb), (b, by_cosine), (b, by_weights), (b, canon))
    )
    geodesic = canonicalize.geodesic_distance(
        canonicalize.to_torus(a, x), canonicalize.to_torus(b, x)
    )
    return DemoResult(
        train_error=(_error(a, train), _error(b, train)),
        test_error=(_error(a, test), _error(b, test)),
        distance_normalized=_distance(na, nb),
        distance_cosine=_distance(na, by_cosine),
        distance_weights=_distance(na, by_weights),
        geodesic_distance=geodesic,
        barrier_raw=_barrier(a, b, train),
        barrier_aligned=_barrier(a, canonicalize.align(b, a, x, method="weights"), train),
        predictions_unchanged=unchanged,
        seconds=time.perf_counter() - start,
    )


def main() -> None:
    """Print the demonstration's table."""
    torch.set_num_threads(min(2, torch.get_num_threads()))
    print(run().table())  # noqa: T201 - the demo's purpose is to print


if __name__ == "__main__":
    main()
