"""Side-by-side benchmark: batched evaluation and planes against loops and ``loss-landscapes``.

All on scikit-learn's digits (1797 x 64, bundled; standardized), the 64-256-256-10 ReLU MLP of
the project's performance targets (85,002 parameters), float32, timed with
``time.perf_counter`` as best of ``repeats`` with the contenders interleaved (so a burst of
load hits all of them); the median is printed beside the best to show the noise.

(a) 64 parameter points (64 seeded initializations) on the first 128 digits and on all 1797:

- ``ours (Stacked)``: ``funcspace.evaluation.evaluate(stack(models), data)`` ("auto");
- ``ours Evaluator (Stacked)``: ``Evaluator(models[0]).evaluate(stack(models), data)`` with
  the evaluator made once (``evaluate`` traces the architecture, 1.5-3 ms, on every call);
- ``ours (list)``: ``evaluate(models, data)`` (stacks per chunk itself);
- ``ours loop`` / ``ours vmap``: the same with ``strategy="loop"`` / ``"vmap"``;
- ``loop nn.Module``: ``for m in models: out = m(x)``, cross-entropy and error per model;
- ``load_state_dict``: loss-landscapes' way, one module, ``load_state_dict`` per point, then
  the forward pass and both metrics.

(b) A 25 x 25 plane around a trained MLP, cross-entropy at every point:

- ``loss_landscapes.random_plane(model, Loss(cross_entropy, X, Y), distance=1, steps=25,
  normalization="filter", deepcopy_model=True)`` (``pip install -c constraints.txt
  loss-landscapes``, 3.0.6 measured);
- ``ours``: ``evaluate_affine`` at the same 625 points (first-layer reuse), and without the
  reuse (``reuse_first_layer=False``) to show what it buys.

loss-landscapes' conventions, reproduced here to compare values: its directions are uniform
in [0, 1) (not Gaussian; the second one made orthogonal to the first); filter normalization
rescales each row of a weight matrix to the norm of the same row of the model, and each bias
*entry* to the magnitude of the model's entry (so biases move too); each direction is then
scaled to norm ``|w| / (distance * steps)`` (``distance`` divides: larger means a smaller
plane), the plane is centred by stepping back ``steps / 2`` along both, and the grid is walked
in a snake whose even rows are shifted by one step: entry ``[i, j]`` sits at ``w + (i - 12.5)
d1 + (j + [i even] - 12.5) d2``. We evaluate exactly these points (same seed) and compare.
Our own ``funcspace`` planes use Gaussian filter-normalized directions and leave biases out.

(c) ``loss_landscapes.linear_interpolation(a, b, metric, steps=25)`` against
``evaluate_affine(a, w_a, [w_b - w_a], t)`` at its points ``t = 1/25, ..., 1``.

Run from the repository root::

    .venv/bin/python benchmarks/evaluation.py

or ``from benchmarks.evaluation import main; main(repeats=15)``.
"""

from __future__ import annotations

import copy
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from funcspace.evaluation import Evaluator, evaluate, evaluate_affine  # noqa: E402
from funcspace.params import stack  # noqa: E402

WIDTH = 256
FLOPS_PER_INPUT = 2 * (64 * WIDTH + WIDTH * WIDTH + WIDTH * 10)
STEPS = 25


def load_data() -> tuple[torch.Tensor, torch.Tensor]:
    x, y = load_digits(return_X_y=True)
    x = x.astype(np.float32)
    std = x.std(axis=0)
    std[std == 0] = 1.0
    x = (x - x.mean(axis=0)) / std
    return torch.as_tensor(x), torch.as_tensor(y, dtype=torch.long)


def make_mlp(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(64, WIDTH), nn.ReLU(), nn.Linear(WIDTH, WIDTH), nn.ReLU(), nn.Linear(WIDTH, 10)
    ).eval()


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int, epochs: int = 20):
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 128):
            idx = perm[i : i + 128]
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


def race(contenders: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Interleaved timings: every round runs each contender once."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for fn in contenders.values():  # warm-up (tracing caches, allocator)
        fn()
    for _ in range(repeats):
        for name, fn in contenders.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


# ------------------------------------------------------------------------------ (a) points


def loop_modules(models, x, y):
    out = []
    with torch.no_grad():
        for m in models:
            logits = m(x)
            out.append(
                (F.cross_entropy(logits, y).item(), (logits.argmax(1) != y).float().mean().item())
            )
    return out


def loop_load_state_dict(probe, states, x, y):
    out = []
    with torch.no_grad():
        for state in states:
            probe.load_state_dict(state)
            logits = probe(x)
            out.append(
                (F.cross_entropy(logits, y).item(), (logits.argmax(1) != y).float().mean().item())
            )
    return out


def bench_points(x_all, y_all, repeats: int) -> list[dict]:
    models = [make_mlp(seed) for seed in range(64)]
    stacked = stack(models)
    states = [m.state_dict() for m in models]
    probe = copy.deepcopy(models[0])
    evaluator = Evaluator(models[0])  # traced once, for callers that evaluate again and again
    rows = []
    for n in (128, len(x_all)):
        x, y = x_all[:n], y_all[:n]
        reference = np.array(loop_modules(models, x, y))
        ours = evaluate(stacked, (x, y))
        assert np.allclose(ours.loss, reference[:, 0], rtol=1e-4, atol=1e-5)
        assert np.allclose(ours.error, reference[:, 1], atol=1e-6)
        times = race(
            {
                "loop nn.Module": lambda x=x, y=y: loop_modules(models, x, y),
                "load_state_dict": lambda x=x, y=y: loop_load_state_dict(probe, states, x, y),
                "ours (Stacked)": lambda x=x, y=y: evaluate(stacked, (x, y)),
                "ours Evaluator (Stacked)": lambda x=x, y=y: evaluator.evaluate(stacked, (x, y)),
                "ours (list)": lambda x=x, y=y: evaluate(models, (x, y)),
                "ours loop": lambda x=x, y=y: evaluate(stacked, (x, y), strategy="loop"),
                "ours vmap": lambda x=x, y=y: evaluate(stacked, (x, y), strategy="vmap"),
            },
            repeats,
        )
        rows.append(
            {
                "n": n,
                "times": times,
                "flops": 64 * n * FLOPS_PER_INPUT,
                "chunk": ours.chunk,
                "strategy": ours.strategy,
            }
        )
    return rows


# ------------------------------------------------------------------------------- (b) plane


def ll_plane_points(model: nn.Module, seed: int, steps: int = STEPS):
    """loss-landscapes' random_plane directions and grid coefficients (same RNG use)."""
    from loss_landscapes.model_interface.model_parameters import orthogonal_to, rand_u_like
    from loss_landscapes.model_interface.model_wrapper import wrap_model

    probe = copy.deepcopy(model)
    torch.manual_seed(seed)
    start = wrap_model(probe).get_module_parameters()
    d1 = rand_u_like(start)
    d2 = orthogonal_to(d1)
    d1.filter_normalize_(start)
    d2.filter_normalize_(start)
    norm = start.model_norm()
    d1.mul_((norm / 1 / steps) / d1.model_norm())
    d2.mul_((norm / 1 / steps) / d2.model_norm())
    names = [n for n, _ in model.named_parameters()]
    directions = [
        {n: t.detach().clone() for n, t in zip(names, d.parameters, strict=True)} for d in (d1, d2)
    ]
    coefficients = torch.tensor(
        [
            [i - steps / 2, j + (1 if i % 2 == 0 else 0) - steps / 2]
            for i in range(steps)
            for j in range(steps)
        ],
        dtype=torch.float32,
    )
    return directions, coefficients


def flops_per_input(model: nn.Module) -> int:
    return sum(
        2 * m.in_features * m.out_features for m in model.modules() if isinstance(m, nn.Linear)
    )


def bench_plane(x_all, y_all, model, repeats: int, sizes, steps: int = STEPS) -> list[dict]:
    import loss_landscapes
    import loss_landscapes.metrics as llm

    origin = {n: p.detach() for n, p in model.named_parameters()}
    directions, coefficients = ll_plane_points(model, seed=7, steps=steps)
    rows = []
    for n in sizes:
        x, y = x_all[:n], y_all[:n]
        metric = llm.Loss(F.cross_entropy, x, y)

        def theirs(metric=metric):
            torch.manual_seed(7)
            return loss_landscapes.random_plane(
                model, metric, distance=1, steps=steps, normalization="filter", deepcopy_model=True
            )

        def ours(x=x, y=y, reuse=True):
            return evaluate_affine(
                model,
                origin,
                directions,
                coefficients,
                (x, y),
                metrics=("loss",),
                reuse_first_layer=reuse,
            )

        values_theirs = np.asarray(theirs(), dtype=np.float64)
        result = ours()
        values_ours = result.loss.reshape(steps, steps)
        diff = float(np.abs(values_ours - values_theirs).max() / np.abs(values_theirs).max())
        times = race(
            {
                "loss_landscapes.random_plane": theirs,
                "ours evaluate_affine": ours,
                "ours without reuse": lambda x=x, y=y: ours(x, y, reuse=False),
            },
            repeats,
        )
        rows.append(
            {
                "n": n,
                "times": times,
                "flops": steps**2 * n * flops_per_input(model),
                "rel_diff": diff,
                "chunk": result.chunk,
                "strategy": result.strategy,
            }
        )
    return rows


def print_plane(rows, label: str) -> None:
    for row in rows:
        times = row["times"]
        ours = min(times["ours evaluate_affine"])
        print(
            f"\n{label}, N = {row['n']} inputs (auto: {row['strategy']}, chunk {row['chunk']}; "
            f"max relative difference to loss-landscapes' values {row['rel_diff']:.1e})"
        )
        print("| method | ms best (median) | GFLOP/s (plain-evaluation FLOPs) | time / ours |")
        print("|---|---|---|---|")
        for name, ts in times.items():
            print(
                f"| {name} | {_fmt(ts)} | {row['flops'] / min(ts) / 1e9:6.0f} | "
                f"{min(ts) / ours:5.2f} |"
            )


def check_interpolation(x, y, a, b) -> tuple[float, float]:
    import loss_landscapes
    import loss_landscapes.metrics as llm

    theirs = loss_landscapes.linear_interpolation(
        a, b, llm.Loss(F.cross_entropy, x, y), steps=STEPS, deepcopy_model=True
    )
    pa = {n: p.detach() for n, p in a.named_parameters()}
    pb = {n: p.detach() for n, p in b.named_parameters()}
    t = torch.arange(1, STEPS + 1, dtype=torch.float32)[:, None] / STEPS
    ours = evaluate_affine(a, pa, [{n: pb[n] - pa[n] for n in pa}], t, (x, y), metrics=("loss",))
    diff = np.abs(ours.loss - np.asarray(theirs))
    return float(diff.max()), float((diff / np.abs(np.asarray(theirs))).max())


# ------------------------------------------------------------------------------------ main


def _fmt(times: list[float]) -> str:
    return f"{min(times) * 1e3:8.1f} ({statistics.median(times) * 1e3:7.1f})"


def main(repeats: int = 9) -> None:
    torch.set_num_threads(2)
    x, y = load_data()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, repeats {repeats}")

    print("\n(a) 64 points of a 64-256-256-10 MLP; ms best (median); ratio = contender / ours")
    for row in bench_points(x, y, repeats):
        times, n = row["times"], row["n"]
        ours = min(times["ours (Stacked)"])
        print(f"\nN = {n} inputs (auto: {row['strategy']}, chunk {row['chunk']})")
        print("| method | ms best (median) | GFLOP/s | time / ours (Stacked) |")
        print("|---|---|---|---|")
        for name, ts in times.items():
            print(
                f"| {name} | {_fmt(ts)} | {row['flops'] / min(ts) / 1e9:6.0f} | "
                f"{min(ts) / ours:5.2f} |"
            )

    print("\n(b) filter-normalized planes at loss-landscapes' own points")
    a = train(make_mlp(0), x, y, seed=0)
    b = train(make_mlp(1), x, y, seed=1)
    plane_repeats = max(3, repeats // 3)
    print_plane(bench_plane(x, y, a, plane_repeats, (128, len(x))), "25x25, digits MLP")
    # A wide first layer (784 inputs: 60% of the FLOPs), where reusing it pays most.
    torch.manual_seed(0)
    wide = nn.Sequential(
        nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10)
    ).eval()
    gen = torch.Generator().manual_seed(0)
    x_wide = torch.randn(2000, 784, generator=gen)
    y_wide = torch.randint(0, 10, (2000,), generator=gen)
    rows = bench_plane(x_wide, y_wide, wide, 3, (2000,), steps=11)
    print_plane(rows, "11x11, 784-512-512-10 MLP on 2000 Gaussian inputs")

    abs_diff, rel_diff = check_interpolation(x, y, a, b)
    print(
        f"\n(c) linear_interpolation, 25 steps between two trained MLPs: max |ours - theirs| "
        f"= {abs_diff:.2e} (relative {rel_diff:.2e})"
    )


if __name__ == "__main__":
    main()
