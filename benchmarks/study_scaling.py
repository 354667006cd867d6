"""The connectivity study at scale: how many optimized paths the pair selection saves, where the
time goes, what a second worker and a Dask cluster bring, and the default study's wall time.

Three parts (each a function, all run by default):

- ``scaling``: studies of 4, 8, 16 and 32 minimizers (SGD and RSGD, half each, an MLP
  40-64-64-10 on 2000 MNIST-1D examples; aligned linear paths and single-bend paths) grown in
  one store, so that each size reuses the smaller one's units. Each size measures every pair
  (tolerance 0: these minima reach zero training error, so no pair has a lower bound above 0),
  then the selection is replayed on the stored values for tolerances 0, 0.02, 0.05 and 0.1:
  the optimized paths it would run against ``N (N - 1) / 2``, the largest error of its minimax
  barriers against all pairs', and whether its minimum spanning tree is the all-pairs one.
  Also the compute seconds per stage of that size's units (as if run from scratch).
- ``workers``: one 6-minimizer study from scratch with one worker, two local workers, and a
  Dask ``LocalCluster`` of two single-thread worker processes (skipped without ``dask``): wall
  times and whether every number agrees.
- ``default``: ``funcspace study --out DIR`` with the defaults, as the README runs it.

Run from the repository root (about 20 minutes on the project's 2-core CPU)::

    .venv/bin/python benchmarks/study_scaling.py [scaling|workers|default ...] [--keep DIR]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from funcspace.graph.analysis import minimax_matrix, spanning_tree  # noqa: E402
from funcspace.study import StudyConfig, StudyStore, load, run, select  # noqa: E402
from funcspace.study import runner as study_runner  # noqa: E402

SIZES = (4, 8, 16, 32)
TOLERANCES = (0.0, 0.02, 0.05, 0.1)


def _config(n: int, *, tolerance: float = 0.02, paths=("aligned", "bent")) -> StudyConfig:
    half = n // 2
    return StudyConfig.from_dict(
        {
            "data": {"name": "mnist1d", "n_samples": 2000},
            "model": {"hidden": [64, 64]},
            "optimizers": [
                {"name": "sgd", "seeds": list(range(half)), "options": {"lr": 0.1}},
                {"name": "rsgd", "seeds": list(range(100, 100 + n - half)), "options": {"lr": 0.1}},
            ],
            "paths": list(paths),
            "flatness": [],
            "budget": {"path_epochs": 40, "tolerance": tolerance},
        }
    )


def _seconds(store: StudyStore, config: StudyConfig, result) -> dict[str, float]:
    """Compute seconds of the units this result uses (as if run from scratch)."""
    plan = study_runner._train_units(config)
    keys = {name: unit.key for name, unit, _ in plan}
    names = [name for name, _, _ in plan]
    out = {"train": sum(store.result(keys[n])["seconds"] for n in names)}
    cheap = 0.0
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            a_, b_ = study_runner._ordered(a, b)
            cheap += store.result(study_runner._distance_unit(config, a_, b_, keys).key)["seconds"]
            for kind in config.paths:
                if kind in ("linear", "aligned", "geodesic"):
                    unit = study_runner._pair_unit(config, kind, a_, b_, keys, "cheap")
                    cheap += store.result(unit.key)["seconds"]
    out["cheap"] = cheap
    out["expensive"] = sum(
        store.result(study_runner._pair_unit(config, "bent", a, b, keys, "expensive").key)[
            "seconds"
        ]
        for a, b in result.measured
    )
    return out


def _tree(weights: np.ndarray) -> set[frozenset]:
    return {frozenset((i, j)) for i, j, _ in spanning_tree(weights)}


def _matrices(result) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Upper bounds (lowest cheap peak), lower bounds (ends' training errors) and every pair's
    optimized peak, from a study that measured all pairs."""
    g, names = result.graph, result.graph.names
    n = len(names)
    upper, optimized = np.full((n, n), np.inf), np.full((n, n), np.inf)
    np.fill_diagonal(upper, 0.0)
    np.fill_diagonal(optimized, 0.0)
    for e in g.edges():
        i, j = names.index(e["a"]), names.index(e["b"])
        target = optimized if e["kind"] in ("bent", "curve") else upper
        target[i, j] = target[j, i] = min(target[i, j], e["error_peak"])
    lower = np.array([g.node(name)["train_error"] for name in names])
    return upper, lower, optimized


def scaling(folder: Path) -> None:
    """Every pair measured once (tolerance 0), then the selection replayed on those values
    for each tolerance: exactly what the runner would measure, without training twice."""
    print("## scaling: optimized paths against all pairs, and where the time goes\n")
    print(
        "| minimizers | pairs | train s | cheap s | one optimized path s | wall s (new units) "
        "| lower bounds > 0 | "
        + " | ".join(f"tol {t}: paths, max minimax error, same tree" for t in TOLERANCES)
        + " |"
    )
    print("|---|---|---|---|---|---|---|" + "---|" * len(TOLERANCES))
    store_dir = folder / "scaling"
    for n in SIZES:
        config = _config(n, tolerance=0.0)
        started = time.perf_counter()
        result = run(config, store_dir, progress=False)
        wall = time.perf_counter() - started
        with StudyStore.open(store_dir, readonly=True) as store:
            seconds = _seconds(store, config, result)
        upper, lower, optimized = _matrices(result)
        best = np.minimum(upper, optimized)
        exact = minimax_matrix(best)
        cells = []
        for tol in TOLERANCES:
            s = select(upper, lower, lambda i, j, o=optimized: o[i, j], tolerance=tol)
            error = np.abs(s.minimax - exact).max()
            same = "yes" if _tree(s.weights) == _tree(best) else "no"
            cells.append(
                f"{s.measurements} ({100 * s.measurements / s.pairs:.0f}%), {error:.3f}, {same}"
            )
        pairs = n * (n - 1) // 2
        print(
            f"| {n} | {pairs} | {seconds['train']:.0f} | {seconds['cheap']:.0f} "
            f"| {seconds['expensive'] / max(len(result.measured), 1):.2f} | {wall:.0f} "
            f"| {int((lower > 0).sum())} of {n} | " + " | ".join(cells) + " |",
            flush=True,
        )
    print()


def _values(result) -> tuple:
    g = result.graph
    nodes = {n: g.node(n) for n in g.names}
    edges = {(frozenset((e["a"], e["b"])), e["kind"]): e for e in g.edges()}
    return nodes, edges


def workers(folder: Path) -> None:
    print("## workers: one 6-minimizer study from scratch\n")
    config = StudyConfig.from_dict(
        {
            **_config(6).to_dict(),
            "paths": ["linear", "aligned", "geodesic", "bent"],
            "flatness": ["hessian_eigenvalues"],
        }
    )
    runs = {}
    for label, options in (
        ("1 worker (in process)", {"workers": 1}),
        ("2 local workers", {"workers": 2}),
    ):
        started = time.perf_counter()
        runs[label] = run(config, folder / label.split()[0], progress=False, **options)
        runs[label] = (runs[label], time.perf_counter() - started)
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        print("(dask is not installed: pip install 'dask[distributed]')")
    else:
        started = time.perf_counter()
        with (
            LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster,
            Client(cluster) as client,
        ):
            ready = time.perf_counter() - started
            result = run(config, folder / "dask", executor=client.get_executor(), progress=False)
        runs[f"Dask LocalCluster, 2 workers ({ready:.1f} s of it to start)"] = (
            result,
            time.perf_counter() - started,
        )
    base, base_wall = next(iter(runs.values()))
    print("| executor | wall s | speed-up | same numbers |")
    print("|---|---|---|---|")
    for label, (result, wall) in runs.items():
        same = _values(result) == _values(base) and result.measured == base.measured
        print(f"| {label} | {wall:.0f} | {base_wall / wall:.2f}x | {'yes' if same else 'NO'} |")
    print()


def default(folder: Path) -> None:
    print("## default: `funcspace study --out DIR` as the README runs it\n")
    out = folder / "default"
    command = [sys.executable, "-m", "funcspace", "study", "--out", str(out)]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    result = load(out)
    print(
        f"wall time {wall:.0f} s; {len(result.graph)} minima, "
        f"{len(result.measured)} of {result.pairs} pairs given single-bend paths; "
        + ", ".join(f"{k} {v:.0f} s" for k, v in result.timings.items())
        + " (compute seconds of the units)\n"
    )


def main(parts: list[str], folder: Path | None = None) -> None:
    chosen = parts or ["scaling", "workers", "default"]
    with tempfile.TemporaryDirectory() as tmp:
        for part in chosen:
            {"scaling": scaling, "workers": workers, "default": default}[part](folder or Path(tmp))


if __name__ == "__main__":
    # --keep DIR: keep the stores there (and reuse them: a rerun finishes what is missing)
    args = sys.argv[1:]
    keep = None
    if "--keep" in args:
        at = args.index("--keep")
        keep = Path(args[at + 1])
        del args[at : at + 2]
    main(args, keep)
