"""Binary networks: Hamming-path profiles batched against a loop, int8 against float32, and the
barrier between committee-machine solutions as the number of parameters grows.

Three parts, each printing a markdown table:

``profile``
    Two deep binary MLPs (``binary.binary_mlp(40, (256, 256, 256), 10)``, BatchNorm before each
    sign) trained BinaryNet-style with :func:`funcspace.train` (Adam on the clipped latent
    weights) on MNIST-1D (4,000 signals, 3,200 to train), exported to plain +-1 networks with
    :func:`binary.export`; the second aligned to the first once (:func:`binary.align`). For 8
    random flip orders, the 101-point profile of the Hamming path (training error) through
    :func:`paths.profile` (all points in one batched evaluation) against a plain loop that builds
    each point's network (a copy of the first, the first ``k`` weights of the order flipped, the
    BatchNorm parameters and statistics interpolated at ``k / H``) and runs it on the training
    set, as a peer script would. Both see the same networks, so their errors must be identical.
    BatchNorm statistics interpolated for every order; also recalibrated (per point, on the
    training set in the evaluator's batches; ``paths.profile``'s default) for the first orders.
``int8``
    The same 8 orders x 101 points profile (training error, BatchNorm statistics
    interpolated) through :func:`paths.profile` with ``Settings(int8=...)``: ``"never"``
    (float32), ``"auto"`` (what a user gets: int8 only where
    :func:`funcspace.evaluation.int8.int8_preferred` says it is faster) and ``"always"``
    (forced: the Linear layers that read a sign multiply in int8 with int32 accumulation,
    ``torch._int_mm``), side by side per order; time ratios against float32 and bit-exactness
    of the errors. Where int8 is not preferred (it is slow) the forced runs cover the first
    ``--int8-orders`` orders (default 2 there, 8 elsewhere). Then where the time goes: the
    hidden-layer products alone for 8 points of the path,
    :func:`binary.binary_linear_stacked` with ``int8="always"`` against ``"never"`` (float32
    ``bmm``), bit-exactness against each other and the networks' own layers, GOP/s, the CPU
    flags.
``committee``
    Fully connected binary committee machines (``binary.committee(N, K)``, K = 3) on the hidden
    manifold model (two classes, tanh), P = alpha N training examples at alpha = 1 (below
    capacity: the clipped perceptron rule finds solutions in a few dozen epochs), N = 50 ... 800.
    Several solutions per size from different seeds, each at zero training error (the clipped
    perceptron rule, :func:`binary.train_perceptron_rule`; for N <= 400 also SGD through
    :func:`funcspace.train`); for every pair, :func:`binary.hamming_barriers` (8 random orders,
    the training error's barrier to one grid point per flip) after aligning the hidden units by
    the best permutation (the committee's symmetry group: its vote and readout weights are
    fixed), without alignment, and after the package's :func:`binary.align` (cosine), with the
    number of pairs in which that alignment changes a vote or readout weight (a regression
    check: such a path leaves the committee family; none since ``export`` marks those layers
    fixed). Twice: with
    the latent dimension D = 10 fixed (the task gets easier as P grows), and with D = N / 10
    (the control: test error roughly constant across sizes).

Run from the repository root::

    .venv/bin/python benchmarks/binary.py                      # all three parts, 8-11 minutes
    .venv/bin/python benchmarks/binary.py committee            # one part (or two: profile int8)
    .venv/bin/python benchmarks/binary.py --threads 2 profile  # torch threads (default 1)
    .venv/bin/python benchmarks/binary.py int8 --int8-orders 8 # forced int8 on every order

One torch thread by default: on a 2-core machine shared with other jobs, two OpenMP threads
turn small products into waits (see README.md). Times are wall-clock and noisy there; every
ratio below is a median over orders or repeats.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import binary  # noqa: E402
import paths  # noqa: E402
from funcspace.data import load  # noqa: E402
from funcspace.evaluation import Settings, evaluate  # noqa: E402
from funcspace.evaluation.int8 import (  # noqa: E402
    INT8_CPU_FLAGS,
    int8_preferred,
    int8_supported,
)
from funcspace.optim import AdamOptions, SGDOptions  # noqa: E402
from funcspace.training import train  # noqa: E402

PARTS = ("profile", "int8", "committee")
WIDTHS = (256, 256, 256)
# What the evaluator reads per batch (funcspace.evaluation.settings.DEFAULT_BATCH): the peer
# recalibrates on the same batches, so both compute the same statistics.
RECAL_BATCH = 2048


# --------------------------------------------------------------------------- shared pieces


def _table(*columns: str) -> None:
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))


def _median_time(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def _mlp_pair(epochs: int) -> tuple[object, nn.Module, nn.Module, list[float]]:
    """The MNIST-1D data, two exported trained binary MLPs (the second aligned to the first)
    and their training errors."""
    data = load("mnist1d", n_samples=4000, seed=0)
    d, classes = data.input_shape[0], data.n_classes
    nets, errors = [], []
    start = time.perf_counter()
    for seed in (0, 1):
        result = train(
            binary.binary_mlp(d, WIDTHS, classes, seed=seed),
            data,
            AdamOptions(lr=1e-2, schedule="cosine"),
            epochs=epochs,
            batch_size=64,
            seed=seed,
            progress=False,
        )
        nets.append(binary.export(result.model).eval())
        errors.append(result.record.train_error[-1])
    aligned = binary.align(nets[1], nets[0], data.train[0][:256])
    print(
        f"MNIST-1D: two binary MLPs {d}-{'-'.join(map(str, WIDTHS))}-{classes} "
        f"({sum(p.numel() for p in nets[0].parameters()):,} parameters), {epochs} epochs of "
        f"Adam each, training errors {errors[0]:.3f} / {errors[1]:.3f}, "
        f"{time.perf_counter() - start:.0f} s"
    )
    return data, nets[0], aligned, errors


def _macs_per_input(model: nn.Module) -> int:
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))


# --------------------------------------------------------------------- part 1: the profile


class PeerLoop:
    """Each point's network built as a peer script would: a copy of ``a`` with the first ``k``
    weights of the order flipped, BatchNorm parameters and statistics at ``k / H``."""

    def __init__(self, a: nn.Module, aligned: nn.Module, flips: torch.Tensor) -> None:
        self.a, self.flips = a, flips
        self.start = {n: v.detach().clone() for n, v in a.state_dict().items()}
        self.end = {n: v.detach().clone() for n, v in aligned.state_dict().items()}
        self.binary = [n for n, m in a.named_modules() if isinstance(m, nn.Linear)]
        self.binary = [f"{n}.weight" for n in self.binary]
        self.sizes = [self.start[n].numel() for n in self.binary]

    def network(self, k: int) -> nn.Module:
        h = len(self.flips)
        s = k / h
        flat = torch.cat([self.start[n].reshape(-1) for n in self.binary])
        flat[self.flips[:k]] *= -1
        state = {}
        for name, piece in zip(self.binary, flat.split(self.sizes), strict=True):
            state[name] = piece.reshape(self.start[name].shape)
        model = copy.deepcopy(self.a)
        params = dict(model.named_parameters())
        for name, value in self.start.items():
            if name in state or not value.is_floating_point():
                continue
            w = torch.tensor(s, dtype=value.dtype)
            if name in params:  # BatchNorm weight and bias: start + s (end - start)
                state[name] = value + w * (self.end[name] - value)
            else:  # running statistics: (1 - s) start + s end
                state[name] = (1 - w) * value + w * self.end[name]
        model.load_state_dict(state, strict=False)
        return model.eval()

    @staticmethod
    def recalibrate(model: nn.Module, x: torch.Tensor) -> None:
        norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
        model.train()
        for i in range(0, len(x), RECAL_BATCH):
            model(x[i : i + RECAL_BATCH])
        model.eval()

    def errors(
        self, steps: np.ndarray, x: torch.Tensor, y: torch.Tensor, recal: bool
    ) -> np.ndarray:
        out = []
        with torch.no_grad():
            for k in steps:
                model = self.network(int(k))
                if recal and 0 < k < len(self.flips):  # the ends keep their own statistics
                    self.recalibrate(model, x)
                out.append(float((model(x).argmax(1) != y).double().mean()))
        return np.asarray(out)


def profile_part(
    data,
    a: nn.Module,
    aligned: nn.Module,
    orders: int = 8,
    points: int = 101,
    recal_orders: int = 2,
) -> dict:
    x, y = data.train
    t = np.linspace(0, 1, points)
    flops = 2 * _macs_per_input(a) * len(x) * points
    settings = Settings(metrics=("error",))
    rows = {"interpolate": [], "recalibrate": []}
    print(
        f"\nProfile of Hamming paths: {orders} random orders x {points} points, training error on "
        f"{len(x)} inputs ({flops / 1e9:.0f} GFLOP of products per profile, without "
        f"BatchNorm recalibration); batched = paths.profile, peer = loop over single networks\n"
    )
    path0 = None
    for order in range(orders):
        path = binary.hamming_path(a, aligned, seed=order, align=False)
        if path0 is None:
            path0 = path
        peer = PeerLoop(a, aligned, path.flips)
        steps = path.steps(t)
        for mode in ("interpolate", "recalibrate"):
            if mode == "recalibrate" and order >= recal_orders:
                continue
            recal = mode == "recalibrate"

            def batched(path=path, mode=mode):
                return paths.profile(path, data, t=t, batchnorm=mode, settings=settings)

            def looped(peer=peer, steps=steps, recal=recal):
                return peer.errors(steps, x, y, recal)

            # alternate which goes first, so that neither always meets the warmer cache
            first, second = (batched, looped) if order % 2 == 0 else (looped, batched)
            times = {}
            for fn in (first, second):
                start = time.perf_counter()
                result = fn()
                times[fn] = time.perf_counter() - start
                if fn is batched:
                    ours = result.values["error"]
                else:
                    theirs = result
            rows[mode].append(
                {
                    "order": order,
                    "distance": path.length,
                    "batched": times[batched],
                    "loop": times[looped],
                    "identical": bool(np.array_equal(ours, theirs)),
                    "max_diff": float(np.abs(ours - theirs).max()),
                    "peak": float(ours.max()),
                    "ends": (float(ours[0]), float(ours[-1])),
                }
            )
    _table(
        "BatchNorm statistics",
        "orders",
        "batched s (median)",
        "loop s (median)",
        "**loop / batched** (median [range])",
        "batched GFLOP/s",
        "identical errors",
        "max error along the path",
    )
    for mode, found in rows.items():
        if not found:
            continue
        ratios = [r["loop"] / r["batched"] for r in found]
        same = sum(r["identical"] for r in found)
        tb = statistics.median(r["batched"] for r in found)
        tl = statistics.median(r["loop"] for r in found)
        peak = statistics.mean(r["peak"] for r in found)
        diff = max(r["max_diff"] for r in found)
        note = "" if same == len(found) else f" (max difference {diff:.2e})"
        print(
            f"| {mode} | {len(found)} | {tb:.2f} | {tl:.2f} | **{statistics.median(ratios):.2f}x** "
            f"[{min(ratios):.2f}-{max(ratios):.2f}] | {flops / tb / 1e9:.1f} | "
            f"{same} of {len(found)}{note} | {peak:.3f} |"
        )
    ends = rows["interpolate"][0]["ends"]
    print(
        f"\nHamming distance after alignment: {path0.length:,} of "
        f"{sum(path0.origin[n].numel() for n in path0.names):,} binary weights; "
        f"errors at the ends {ends[0]:.4f} / {ends[1]:.4f}"
    )
    return {"rows": rows, "path": path0}


# ------------------------------------------------------------------ part 2: int8 vs fp32


def _cpu() -> tuple[str, list[str]]:
    name, flags = platform.processor() or platform.machine(), []
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return name, flags
    for line in text.splitlines():
        if line.startswith("model name") and ":" in line:
            name = line.split(":", 1)[1].strip()
        if line.startswith("flags"):
            every = line.split(":", 1)[1].split()
            flags = sorted(f for f in every if f.startswith(("avx", "amx", "fma", "f16c")))
            flags += sorted(f for f in every if "vnni" in f and f not in flags)
            break
    return name, flags


def _layer_inputs(path, t: np.ndarray, x: torch.Tensor) -> list[dict]:
    """For the points ``path.at(t)``: each binary hidden layer's (and the output layer's)
    stacked inputs (+-1), weights and the networks' own outputs of that layer."""
    nets = [path.at(float(s)) for s in t]
    names = [n for n, m in nets[0].named_modules() if isinstance(m, nn.Linear)][1:]
    layers = []
    for name in names:
        inputs, outputs = [], []
        for net in nets:
            module = dict(net.named_modules())[name]
            seen: dict[str, torch.Tensor] = {}

            def keep(module, args, output, seen=seen):
                seen.update(x=args[0], y=output)

            hook = module.register_forward_hook(keep)
            with torch.no_grad():
                net(x)
            hook.remove()
            inputs.append(seen["x"])
            outputs.append(seen["y"])
        weights = torch.stack([dict(net.named_modules())[name].weight.detach() for net in nets])
        layers.append(
            {
                "name": name,
                "x": torch.stack(inputs).contiguous(),
                "w": weights.contiguous(),
                "own": torch.stack(outputs),
            }
        )
    return layers


def int8_profile(
    data, a: nn.Module, aligned: nn.Module, orders: int = 8, points: int = 101, forced=None
) -> dict:
    """The profile with ``Settings(int8="never" | "auto" | "always")``, side by side."""
    x, y = data.train
    t = np.linspace(0, 1, points)
    flops = 2 * _macs_per_input(a) * len(x) * points
    preferred = int8_preferred()
    forced = (orders if preferred else min(2, orders)) if forced is None else min(forced, orders)
    layers = evaluate(a, data, int8="always").int8_layers
    print(
        f"\nint8 in the profile: {orders} random orders x {points} points (training error on "
        f"{len(x)} inputs, statistics interpolated), paths.profile with Settings(int8=...); "
        f'"always" on the first {forced} orders. Layers in int8 when forced: {layers} (the '
        f"first layer reads the data and stays in float32); int8_supported() = "
        f'{int8_supported()}, int8_preferred() = {preferred}, so "auto" runs '
        f"{'int8' if preferred else 'float32'} here\n"
    )
    found: dict[str, list] = {"never": [], "auto": [], "always": []}
    for order in range(orders):
        path = binary.hamming_path(a, aligned, seed=order, align=False)
        modes = ["never", "auto"] + (["always"] if order < forced else [])
        if order % 2:  # alternate which goes first, so that none always meets a warmer cache
            modes.reverse()
        values = {}
        for mode in modes:
            settings = Settings(metrics=("error",), int8=mode)
            start = time.perf_counter()
            result = paths.profile(path, data, t=t, batchnorm="interpolate", settings=settings)
            found[mode].append(time.perf_counter() - start)
            values[mode] = result.values["error"]
        for mode in modes:
            found[mode][-1] = (found[mode][-1], bool(np.array_equal(values[mode], values["never"])))
    _table(
        "int8",
        "orders",
        "s per profile (median [range])",
        "**float32 / this** (median)",
        "GFLOP/s",
        "errors identical to float32",
    )
    base = statistics.median(s for s, _ in found["never"])
    rows = {}
    for mode, runs in found.items():
        times = [s for s, _ in runs]
        same = sum(ok for _, ok in runs)
        tm = statistics.median(times)
        ratio = base / tm
        slower = f" ({tm / base:.1f}x slower)" if ratio < 1 else ""
        print(
            f"| {mode} | {len(runs)} | {tm:.2f} [{min(times):.2f}-{max(times):.2f}] | "
            f"**{ratio:.3f}x**{slower} | {flops / tm / 1e9:.1f} | {same} of {len(runs)} |"
        )
        rows[mode] = {"times": times, "identical": same, "ratio": ratio}
    return {"rows": rows, "layers": layers, "preferred": preferred}


def int8_part(data, path, chunk: int = 8, repeats: int = 3, int8_repeats: int = 2) -> dict:
    x = data.train[0]
    t = np.linspace(0, 1, chunk)
    layers = _layer_inputs(path, t, x)
    name, flags = _cpu()
    print(
        f"\nWhere the time goes: the hidden-layer products of {chunk} points of the profile "
        f"(t = 0, 1/{chunk - 1}, ..., 1), each on the {len(x)} training inputs; "
        f'binary.binary_linear_stacked(x (K, N, in), w (K, out, in)), int8="always" vs '
        f'"never"; median of {repeats} (float32) and {int8_repeats} (int8) runs\n'
    )
    print(f"CPU: {name}; flags: {' '.join(flags)}")
    print(
        f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
        f"{torch.get_num_threads()} thread(s); int8 dot-product flags present: "
        f"{sorted(INT8_CPU_FLAGS & set(flags))}\n"
    )
    _table(
        "layer",
        "stacked shape (K x N x in -> out)",
        "GOP",
        "float32 ms",
        "float32 GFLOP/s",
        "int8 ms",
        "int8 GOP/s",
        "**int8 / float32 speed**",
        "bit-exact (int8 = fp32 = the network's own)",
    )
    rows = []
    for layer in layers:
        xs, ws = layer["x"], layer["w"]
        k, n, fan_in = xs.shape
        out = ws.shape[1]
        ops = 2 * k * n * fan_in * out

        def fp32(xs=xs, ws=ws):
            return binary.binary_linear_stacked(xs, ws, int8="never", check=False)

        def int8(xs=xs, ws=ws):
            return binary.binary_linear_stacked(xs, ws, int8="always", check=False)

        fp32()  # warm-up
        t32, r32 = _median_time(fp32, repeats)
        t8, r8 = _median_time(int8, int8_repeats)
        exact = bool(torch.equal(r32, r8)) and bool(torch.equal(r32, layer["own"]))
        rows.append({"layer": layer["name"], "fp32": t32, "int8": t8, "ops": ops, "exact": exact})
        print(
            f"| {layer['name']} | {k} x {n} x {fan_in} -> {out} | {ops / 1e9:.2f} | "
            f"{t32 * 1e3:.1f} | {ops / t32 / 1e9:.1f} | {t8 * 1e3:.0f} | {ops / t8 / 1e9:.2f} | "
            f"**{t32 / t8:.3f}x** ({t8 / t32:.0f}x slower) | {exact} |"
        )
    return {"rows": rows, "flags": flags, "cpu": name}


# ------------------------------------------------------- part 3: committee machines, sizes


def _solutions(model_fn, data, solver: str, count: int, budget: int) -> tuple[list, list, int]:
    """Up to ``count`` exported solutions at zero training error, their test errors, and how
    many runs were tried."""
    found, tests, tried = [], [], 0
    n = len(data.train[0])
    while len(found) < count and tried < 2 * count:
        seed = tried
        tried += 1
        if solver == "cp":
            result = binary.train_perceptron_rule(
                model_fn(seed=1000 + seed), data, epochs=budget, lr=0.1, seed=seed
            )
        else:
            result = train(
                model_fn(seed=1000 + seed),
                data,
                SGDOptions(lr=0.1),
                epochs=budget,
                batch_size=min(32, n),
                seed=seed,
                progress=False,
            )
        if result.record.train_error[-1] == 0.0:
            found.append(binary.export(result.model).eval())
            tests.append(result.record.test_error[-1])
    return found, tests, tried


def permute_units(a: nn.Module, b: nn.Module) -> nn.Module:
    """``b`` with its hidden units permuted to match ``a``'s (the largest summed overlap of
    their +-1 weight rows, over all ``K!`` permutations): the symmetry group of a fully
    connected committee machine, whose vote and readout weights are fixed."""
    wa, wb = a[1].weight.detach(), b[1].weight.detach()
    overlap = wa @ wb.T
    units = range(len(wa))
    best = max(
        itertools.permutations(units), key=lambda p: float(sum(overlap[k, p[k]] for k in units))
    )
    moved = copy.deepcopy(b)
    with torch.no_grad():
        moved[1].weight.copy_(wb[list(best)])
    return moved


def _fixed_flips(a: nn.Module, moved: nn.Module) -> int:
    """Flips the path needs outside the first layer (the committee's fixed vote/readout)."""
    sa, sm = a.state_dict(), moved.state_dict()
    return sum(int((sa[n] != sm[n]).sum()) for n in sa if not n.startswith("1."))


def committee_part(
    sizes: tuple[int, ...] = (50, 100, 200, 400, 800),
    units: int = 3,
    alpha: float = 1.0,
    latent: int = 10,
    solvers: dict[str, tuple[int, int, int]] | None = None,
    orders: int = 8,
    latent_ratio: float | None = None,
) -> list[dict]:
    # solver -> (solutions per size, epoch budget, largest N)
    dims = latent if latent_ratio is None else f"{latent_ratio:g} N"
    solvers = solvers or {"cp": (5, 500, max(sizes)), "sgd": (3, 400, 400)}
    print(
        f"\nCommittee machines (fully connected, K = {units}) on the hidden manifold model "
        f"(two classes, D = {dims}, tanh), P = {alpha:g} N training examples, solutions at "
        f"zero training error (cp: clipped perceptron rule; sgd: funcspace.train). Barrier = "
        f"training error along {orders} random Hamming paths per pair (one grid point per "
        f"flip), mean over orders, then mean +- std over pairs. Aligned: hidden units permuted "
        f"to the first solution's (the committee's symmetry group); binary.align: the "
        f"package's cosine alignment of the exported networks\n"
    )
    _table(
        "N",
        "weights N K",
        "P",
        "solver",
        "solutions (runs)",
        "pairs",
        "Hamming distance / weights",
        "**barrier, aligned** mean +- std over pairs",
        "[min, max] over pairs",
        "spread over orders (mean std)",
        "barrier x P (examples)",
        "without alignment",
        "binary.align (cosine) [pairs flipping vote/readout]",
        "test error of the solutions",
        "s",
    )
    rows = []
    for n in sizes:
        p = int(round(alpha * n))
        data = load(
            "hidden_manifold",
            latent_dim=latent if latent_ratio is None else max(1, round(latent_ratio * n)),
            input_dim=n,
            n_samples=5 * p,
            test_fraction=0.2,
            subset=p,
            seed=0,
        )
        x = data.train[0]
        for solver, (count, budget, largest) in solvers.items():
            if n > largest:
                continue
            start = time.perf_counter()

            def model_fn(seed, n=n):
                return binary.committee(n, units, seed=seed)

            sols, tests, tried = _solutions(model_fn, data, solver, count, budget)
            pairs = list(itertools.combinations(range(len(sols)), 2))
            found = {"aligned": [], "raw": [], "cosine": []}
            spreads, dists, flipped = [], [], 0
            for i, j in pairs:
                moved = permute_units(sols[i], sols[j])
                assert torch.equal(moved(x), sols[j](x)), "the permutation changed the function"
                seed = i * 97 + j
                ours = binary.hamming_barriers(
                    sols[i], moved, data, orders=orders, seed=seed, align=False
                )
                raw = binary.hamming_barriers(
                    sols[i], sols[j], data, orders=orders, seed=seed, align=False
                )
                cosine = binary.hamming_barriers(sols[i], sols[j], data, orders=orders, seed=seed)
                flipped += _fixed_flips(sols[i], binary.align(sols[j], sols[i], x)) > 0
                found["aligned"].append(ours.mean)
                found["raw"].append(raw.mean)
                found["cosine"].append(cosine.mean)
                spreads.append(ours.std)
                dists.append(ours.distance)
            elapsed = time.perf_counter() - start
            row = {
                "N": n,
                "P": p,
                "solver": solver,
                "solutions": len(sols),
                "tried": tried,
                "pairs": len(pairs),
                "barriers": found,
                "order_std": spreads,
                "distance": float(np.mean(dists)) / (n * units) if dists else float("nan"),
                "cosine_flips": flipped,
                "test": tests,
                "seconds": elapsed,
            }
            rows.append(row)
            head = f"| {n} | {n * units} | {p} | {solver} | {len(sols)} ({tried}) | {len(pairs)} |"
            if not pairs:
                print(head + " |" * 8 + f" {elapsed:.0f} |")
                continue
            b = np.asarray(found["aligned"])
            print(
                f"{head} {row['distance']:.3f} | **{b.mean():.4f} +- {b.std():.4f}** | "
                f"[{b.min():.4f}, {b.max():.4f}] | {np.mean(spreads):.4f} | "
                f"{b.mean() * p:.1f} | {np.mean(found['raw']):.4f} | "
                f"{np.mean(found['cosine']):.4f} [{flipped} of {len(pairs)}] | "
                f"{np.mean(tests):.3f} | {elapsed:.0f} |"
            )
    return rows


# ---------------------------------------------------------------------------------- main


def main(
    parts: tuple[str, ...] = PARTS,
    threads: int = 1,
    epochs: int = 30,
    int8_orders: int | None = None,
) -> dict:
    torch.set_num_threads(threads)
    print(f"torch {torch.__version__}, {threads} thread(s), {time.strftime('%Y-%m-%d %H:%M')}")
    out, start = {}, time.perf_counter()
    if "profile" in parts or "int8" in parts:
        data, a, aligned, _ = _mlp_pair(epochs)
        if "profile" in parts:
            out["profile"] = profile_part(data, a, aligned)
            path = out["profile"]["path"]
        else:
            path = binary.hamming_path(a, aligned, seed=0, align=False)
        if "int8" in parts:
            out["int8_profile"] = int8_profile(data, a, aligned, forced=int8_orders)
            out["int8"] = int8_part(data, path)
    if "committee" in parts:
        out["committee"] = committee_part()
        # the control: the latent dimension grows with N, so the task does not get easier
        out["committee_scaled"] = committee_part(latent_ratio=0.1, solvers={"cp": (5, 500, 800)})
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("parts", nargs="*", help=f"any of {', '.join(PARTS)} (default: all)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=30, help="training epochs per MLP")
    parser.add_argument(
        "--int8-orders",
        type=int,
        default=None,
        help='orders of the int8 part run with int8="always" (default: 8, or 2 where int8 is slow)',
    )
    args = parser.parse_args()
    unknown = sorted(set(args.parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    main(
        tuple(args.parts) or PARTS,
        threads=args.threads,
        epochs=args.epochs,
        int8_orders=args.int8_orders,
    )
