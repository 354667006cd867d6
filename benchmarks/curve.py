"""Side-by-side benchmark: curve training against a loop in dnn-mode-connectivity's style.

The peer (Garipov et al.'s ``train.py`` with ``curves.Bezier``) draws one uniform ``t`` per
minibatch and runs one forward pass of the network at that ``t``; written here as that loop
(``functional_call`` on the Bezier combination of the control points, the same Adam, batch
size, data and ends). :func:`paths.curve` draws ``points`` stratified ``t`` per minibatch and
runs them in one vectorized pass. Both train a quadratic Bezier curve (one bend) between the
same two SGD minima of a ReLU MLP on MNIST-1D, in raw parameters (the peer's geometry), and
both are deterministic prefixes of longer runs (constant learning rate): the barrier after
``e`` epochs of a long run is the barrier of an ``e``-epoch run. The target is the peer's
training-error barrier after its full budget. The table separates the two things a time ratio
mixes: the epochs each needs to reach the target (deterministic: the same on any machine) and
the cost of one epoch (timed: the peer's mean over its run, ours from a full-budget run, best of
two; the evaluations that track the barrier are not timed); the time to target is their
product.

Run from the repository root::

    .venv/bin/python benchmarks/curve.py     # about 2 minutes on the idle 2-core machine
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import paths  # noqa: E402
from funcspace.data import load  # noqa: E402
from funcspace.models import MLP  # noqa: E402
from funcspace.training import train  # noqa: E402
from paths.curve import CurvePath  # noqa: E402


def peer_curve(a, b, data, *, epochs, batch_size=128, lr=1e-3, seed=0):
    """dnn-mode-connectivity's loop: one uniform t per minibatch, one forward per step.

    Yields ``(epoch, training seconds so far, path)`` after every epoch.
    """
    x, y = data.train
    ends = [{n: p.detach() for n, p in m.named_parameters()} for m in (a, b)]
    bend = {n: torch.nn.Parameter((ends[0][n] + ends[1][n]) / 2) for n in ends[0]}
    opt = torch.optim.Adam(bend.values(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    spent = 0.0
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        order = torch.randperm(len(x), generator=generator)
        for begin in range(0, len(x), batch_size):
            index = order[begin : begin + batch_size]
            t = float(torch.rand(1, generator=generator))
            w = ((1 - t) ** 2, 2 * t * (1 - t), t**2)
            params = {n: w[0] * ends[0][n] + w[1] * bend[n] + w[2] * ends[1][n] for n in bend}
            loss = F.cross_entropy(functional_call(a, params, (x[index],)), y[index])
            opt.zero_grad()
            loss.backward()
            opt.step()
        spent += time.perf_counter() - started
        knots = tuple(
            {("param", n): v.detach().clone() for n, v in k.items()}
            for k in (ends[0], bend, ends[1])
        )
        direction = {n: ends[1][n] - ends[0][n] for n in bend}
        yield (
            epoch,
            spent,
            CurvePath(
                start=a,
                end=b,
                kind="curve",
                origin=ends[0],
                direction=direction,
                shape="bezier",
                geometry="euclidean",
                knots=knots,
            ),
        )


def ours(a, b, data, *, epochs, points, lr, geometry="euclidean", align=None, repeats=2):
    """Best-of-``repeats`` training time and the path of ``paths.curve``."""
    best, path = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        path = paths.curve(
            a,
            b,
            data,
            geometry=geometry,
            align=align,
            epochs=epochs,
            points=points,
            lr=lr,
            progress=False,
        )
        best = min(best, time.perf_counter() - started)
    return best, path


def height(path, data) -> float:
    return paths.barrier(path, data, "error").height


def main(pairs: int = 3, peer_epochs: int = 16, points: int = 4, lr: float = 1e-2) -> None:
    torch.set_num_threads(2)
    data = load("mnist1d", n_samples=4000, seed=0)
    d, classes = data.input_shape[0], data.n_classes
    nets = [
        train(MLP(d, (128, 128), classes, seed=s), data, "sgd", lr=0.1, seed=s, progress=False)
        for s in range(2 * pairs)
    ]
    assert all(n.record.train_error[-1] == 0 for n in nets), "the ends must be minima"
    print(f"{data.name}: {2 * pairs} SGD minima (MLP 40-128-128-10), zero training error")
    print(
        f"| pair | target (peer, {peer_epochs} epochs) | peer: epochs to target, s/epoch | "
        "ours: epochs to target, s/epoch | epochs peer/ours | cost/epoch ours/peer | "
        "time to target peer/ours |"
    )
    print("|---|---|---|---|---|---|---|")
    epoch_ratios, cost_ratios, time_ratios = [], [], []
    for k in range(pairs):
        a, b = nets[2 * k].model, nets[2 * k + 1].model
        trace = [
            (e, s, height(p, data)) for e, s, p in peer_curve(a, b, data, epochs=peer_epochs, lr=lr)
        ]
        target = trace[-1][2]
        peer_epochs_to = next(e for e, _, h in trace if h <= target)
        peer_cost = trace[-1][1] / peer_epochs  # mean over the whole run
        ours_epochs_to = next(
            (
                e
                for e in range(1, peer_epochs + 1)
                if height(ours(a, b, data, epochs=e, points=points, lr=lr, repeats=1)[1], data)
                <= target
            ),
            None,
        )
        ours_cost = ours(a, b, data, epochs=peer_epochs, points=points, lr=lr)[0] / peer_epochs
        cost_ratios.append(ours_cost / peer_cost)
        peer_cell = f"{peer_epochs_to}, {peer_cost:.3f} s"
        if ours_epochs_to is None:
            print(
                f"| {k} | {target:.4f} | {peer_cell} | not reached in {peer_epochs}, "
                f"{ours_cost:.3f} s | - | {cost_ratios[-1]:.2f}x | - |"
            )
            continue
        epoch_ratios.append(peer_epochs_to / ours_epochs_to)
        time_ratios.append(peer_epochs_to * peer_cost / (ours_epochs_to * ours_cost))
        print(
            f"| {k} | {target:.4f} | {peer_cell} | {ours_epochs_to}, {ours_cost:.3f} s | "
            f"{epoch_ratios[-1]:.2f}x | {cost_ratios[-1]:.2f}x | {time_ratios[-1]:.2f}x |"
        )
    if time_ratios:
        print(
            f"\nover {len(time_ratios)} pairs: epochs to target peer/ours mean "
            f"{np.mean(epoch_ratios):.2f}x (deterministic); cost per epoch ours/peer mean "
            f"{np.mean(cost_ratios):.2f}x (timed); time to target peer/ours mean "
            f"{np.mean(time_ratios):.2f}x"
        )
    a, b = nets[0].model, nets[1].model
    print("\nthe same budget in other geometries (first pair, error barrier):")
    for geometry, align in (("euclidean", None), ("euclidean", "weights"), ("sphere", "weights")):
        seconds, path = ours(
            a,
            b,
            data,
            epochs=peer_epochs,
            points=points,
            lr=lr,
            geometry=geometry,
            align=align,
            repeats=1,
        )
        print(f"  {geometry:<9} align={align!s:<7}: {height(path, data):.4f} in {seconds:.2f} s")


if __name__ == "__main__":
    main()
