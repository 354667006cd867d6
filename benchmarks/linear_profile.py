"""Side-by-side benchmark: a 257-point linear profile against ``loss_landscapes``.

For two networks ``a`` and ``b`` of one architecture, the cross-entropy at 257 points of the
straight path between them, on the same inputs, computed by

- ``loss_landscapes.linear_interpolation(a, b, Loss(F.cross_entropy, x, y), steps=257,
  deepcopy_model=True)`` (PyPI ``loss-landscapes`` 3.0.6): one forward pass per point, its
  parameters stepped in place (``t = 1/257, 2/257, ..., 1``);
- ``paths.profile(paths.linear(a, b), (x, y), t=..., settings=Settings(metrics="loss"))`` at
  the same ``t``: the points in batched passes, the first layer computed once per batch for
  the origin and the direction and combined per point (``evaluate_affine``'s first-layer reuse:
  the first layer's pre-activation is affine in ``t`` along a straight path);
- the same engine without the reuse (``evaluate_affine(..., reuse_first_layer=False)``), to
  show what batching alone buys.

Cases (float32, contenders interleaved, best of ``repeats``):

- MNIST-1D (4,000 signals generated locally, the 3,200 training signals; digits if the
  ``mnist1d`` package is missing): two 40-64-64-10 MLPs trained with SGD (20 epochs, seeds 0, 1);
- digits (scikit-learn's 1797 x 64, standardized): two 64-256-256-10 MLPs trained as in
  ``benchmarks/evaluation.py``, on the first 128 inputs and on all 1797;
- random data (1,000 Gaussian 784-vectors, random labels): two randomly initialized
  784-256-256-10 MLPs (MNIST-sized inputs; the speed does not depend on training).

Each row also gives the first layer's share of the multiply-adds and the ratio it caps on a
CPU, ``1 / (1 - share)``: reusing the first layer removes its products and nothing else, and
once the inputs fill the cores (the compute regime) batching points adds nothing; and the
largest difference between our values and theirs (theirs accumulate ``t`` by repeated in-place
additions: float32 round-off grows along the path).

Run from the repository root::

    .venv/bin/python benchmarks/linear_profile.py      # about 2 minutes, half of it training

or ``from benchmarks.linear_profile import main; main(repeats=9, threads=1)`` (one thread on a
machine shared with other jobs: two OpenMP threads that wait for a core make every small
product ~10 ms late).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import paths  # noqa: E402
from benchmarks.evaluation import load_data, make_mlp, race  # noqa: E402
from benchmarks.evaluation import train as train_digits  # noqa: E402
from funcspace.data import DataError, load  # noqa: E402
from funcspace.evaluation import Settings, evaluate_affine  # noqa: E402
from funcspace.models import MLP  # noqa: E402
from funcspace.training import train  # noqa: E402

STEPS = 257


def _flops_per_input(model: nn.Module) -> int:
    return sum(
        2 * m.in_features * m.out_features for m in model.modules() if isinstance(m, nn.Linear)
    )


def _cases() -> list[tuple[str, nn.Module, nn.Module, torch.Tensor, torch.Tensor]]:
    """(label, a, b, inputs, targets) per case; the networks trained or drawn here."""
    cases = []
    try:
        data = load("mnist1d", n_samples=4000, seed=0)
    except DataError:
        data = load("digits")
    x, y = data.train
    d, classes = data.input_shape[0], data.n_classes
    a, b = (
        train(MLP(d, (64, 64), classes, seed=s), data, seed=s, epochs=20, progress=False).model
        for s in (0, 1)
    )
    cases.append((f"{data.name} {d}-64-64-{classes}, {len(x)} inputs", a, b, x, y))

    x, y = load_data()
    a, b = train_digits(make_mlp(0), x, y, seed=0), train_digits(make_mlp(1), x, y, seed=1)
    for n in (128, len(x)):
        cases.append((f"digits 64-256-256-10, {n} inputs", a, b, x[:n], y[:n]))

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1000, 784, generator=gen)
    y = torch.randint(0, 10, (1000,), generator=gen)
    a, b = MLP(784, (256, 256), 10, seed=0), MLP(784, (256, 256), 10, seed=1)
    cases.append(("random 784-256-256-10, 1000 inputs", a, b, x, y))
    return cases


def bench_case(a, b, x, y, repeats: int) -> dict:
    import loss_landscapes
    import loss_landscapes.metrics as llm

    metric = llm.Loss(F.cross_entropy, x, y)
    t = np.arange(1, STEPS + 1) / STEPS  # loss_landscapes' points: it steps, then evaluates
    settings = Settings(metrics="loss")
    path = paths.linear(a, b)
    origin = {n: p.detach() for n, p in a.named_parameters()}
    direction = {n: p.detach() - origin[n] for n, p in b.named_parameters()}
    coefficients = torch.as_tensor(t[:, None], dtype=torch.float32)

    contenders: dict[str, Callable[[], object]] = {
        "loss_landscapes.linear_interpolation": lambda: loss_landscapes.linear_interpolation(
            a, b, metric, steps=STEPS, deepcopy_model=True
        ),
        "ours paths.profile": lambda: paths.profile(path, (x, y), t=t, settings=settings),
        "ours evaluate_affine without reuse": lambda: evaluate_affine(
            a, origin, [direction], coefficients, (x, y), "loss", reuse_first_layer=False
        ),
    }
    theirs = np.asarray(contenders["loss_landscapes.linear_interpolation"](), dtype=np.float64)
    ours = paths.profile(path, (x, y), t=t, settings=settings).values["loss"]
    times = race(contenders, repeats)
    return {
        "times": times,
        "flops": STEPS * len(x) * _flops_per_input(a),
        "max_abs": float(np.abs(ours - theirs).max()),
        "max_rel": float((np.abs(ours - theirs) / np.abs(theirs)).max()),
    }


def _first_layer_share(model: nn.Module) -> float:
    """The first Linear layer's share of an evaluation's multiply-adds."""
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return layers[0].in_features * layers[0].out_features * 2 / _flops_per_input(model)


def _fmt(times: list[float]) -> str:
    return f"{min(times) * 1e3:.0f} ({statistics.median(times) * 1e3:.0f})"


def main(repeats: int = 5, threads: int = 2) -> None:
    torch.set_num_threads(threads)
    start = time.perf_counter()
    cases = _cases()
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, {STEPS} points, "
        f"ms best of {repeats} (median); networks ready in {time.perf_counter() - start:.0f} s"
    )
    print(
        "\n| case | first layer's FLOPs (ceiling) | loss_landscapes | ours `paths.profile` | "
        "theirs / ours | ours without first-layer reuse | theirs / that | ours GFLOP/s | "
        "max abs (rel) difference |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for label, a, b, x, y in cases:
        row = bench_case(a, b, x, y, repeats)
        times = row["times"]
        theirs = min(times["loss_landscapes.linear_interpolation"])
        ours = min(times["ours paths.profile"])
        plain = min(times["ours evaluate_affine without reuse"])
        share = _first_layer_share(a)
        print(
            f"| {label} | {share:.0%} ({1 / (1 - share):.2f}x) | "
            f"{_fmt(times['loss_landscapes.linear_interpolation'])} | "
            f"{_fmt(times['ours paths.profile'])} | **{theirs / ours:.2f}x** | "
            f"{_fmt(times['ours evaluate_affine without reuse'])} | {theirs / plain:.2f}x | "
            f"{row['flops'] / ours / 1e9:.0f} | {row['max_abs']:.1e} ({row['max_rel']:.1e}) |"
        )
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
