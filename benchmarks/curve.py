"""Side-by-side benchmark: curve training against a loop in dnn-mode-connectivity's style.

The peer (Garipov et al.'s ``train.py`` with ``curves.Bezier``) draws one uniform ``t`` per
minibatch and runs one forward pass of the network at that ``t``; written here as that loop
(``functional_call`` on the Bezier combination of the control points, the same Adam, batch
size, data and ends). :func:`paths.curve` draws ``points`` stratified ``t`` per minibatch and
runs them in one vectorized pass. Both train a quadratic Bezier curve (one bend) between the
same two SGD minima of a ReLU MLP on MNIST-1D, in raw parameters (the peer's geometry), and
both are deterministic prefixes of longer runs (constant learning rate): the barrier after
``e`` epochs of a long run is the barrier of an ``e``-epoch run. The target is the peer's
training-error barrier after its full budget; the table gives the training time each needs to
reach it (the evaluations that track the barrier are not timed).

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
        "| pair | target (peer, "
        f"{peer_epochs} epochs) | peer time to target | ours: epochs, time | ratio |"
    )
    print("|---|---|---|---|---|")
    ratios = []
    for k in range(pairs):
        a, b = nets[2 * k].model, nets[2 * k + 1].model
        trace = [
            (e, s, height(p, data)) for e, s, p in peer_curve(a, b, data, epochs=peer_epochs, lr=lr)
        ]
        target = trace[-1][2]
        peer_time = next(s for _, s, h in trace if h <= target)
        found = None
        for epochs in range(1, peer_epochs + 1):
            seconds, path = ours(a, b, data, epochs=epochs, points=points, lr=lr)
            if height(path, data) <= target:
                found = (epochs, seconds)
                break
        if found is None:
            print(f"| {k} | {target:.4f} | {peer_time:.2f} s | not reached | - |")
            continue
        ratios.append(peer_time / found[1])
        print(
            f"| {k} | {target:.4f} | {peer_time:.2f} s | {found[0]} epochs, {found[1]:.2f} s "
            f"| {ratios[-1]:.2f}x |"
        )
    if ratios:
        print(f"\ntime ratio peer / ours: mean {np.mean(ratios):.2f}x over {len(ratios)} pairs")
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
