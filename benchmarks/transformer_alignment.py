"""Linear-path barriers between small vision transformers: raw, permutation-aligned, canonical.

Issue 19's benchmark. Trains ``models`` vision transformers
(:class:`funcspace.models.VisionTransformer` with its defaults: the 8x8 digits cut into 16
patches of 2x2 pixels, width 32, two pre-LayerNorm blocks of 4 heads, GELU feed-forward of
64, mean pooling; 18,154 parameters) with Adam (lr 3e-3, cosine, batch 128) from seeds
0, 1, ..., each until zero training error (or the epoch budget), and for every pair (A, B)
measures along the straight path from A to the aligned B, on the training split:

- the error barrier (``paths.barrier``: the highest rise of the training error above the chord
  between the ends, adaptive to 1/256), the loss barrier (the same for the cross-entropy) and
  the peak error on the path (the toroids paper's definition);
- the wall time of the alignment, and how much closer it brought B to A (the distance in
  normalized coordinates after over before, from :class:`canonicalize.Alignment`).

Rows:

- ``raw``: B as trained;
- ``perm <method>``: ``canonicalize.match(B, A, x, method=..., heads="permutations")`` for
  ``"weights"`` (weight matching), ``"activations"`` (correlation of activations on the
  training inputs) and ``"cosine"``: permutations only, as the published re-basin methods do:
  the residual stream (through every LayerNorm, the position embedding and the head), whole
  heads as blocks, the query-key and the value features inside each head, the feed-forward
  units. The continuous per-head groups (``W_Q -> A W_Q``, ``W_K -> A^-T W_K``;
  ``W_V -> B W_V``, ``W_O,h -> W_O,h B^-1``) are left as they are;
- ``full <method>``: :func:`_align_full`, the same with ``heads="full"``: each head of B
  expressed in the basis of A's head at its place. With a canonicalize that cannot do it, the
  rows are skipped with a note;
- ``full weights, normalized``: the ``full weights`` ends, both through
  ``canonicalize.normalize`` (alignment leaves free scales as they are, as in every aligned
  linear path of this project; this row removes them).

Two controls align A with copies of itself moved by hidden group elements (permutations only;
permutations, signs and orthogonal head maps): their barriers must vanish after the matching
alignment.

Prints the table of means and standard deviations over the pairs, then every pair's error
barriers.

Run from the repository root::

    .venv/bin/python benchmarks/transformer_alignment.py            # about 6 minutes
    .venv/bin/python benchmarks/transformer_alignment.py --quick    # smoke test, about 1 minute

or ``from benchmarks.transformer_alignment import main; main(models=5)``.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import canonicalize  # noqa: E402
import paths  # noqa: E402
from funcspace.data import Dataset, load  # noqa: E402
from funcspace.models import VisionTransformer  # noqa: E402
from funcspace.optim import AdamOptions  # noqa: E402
from funcspace.training import train  # noqa: E402

# What the published methods report for their (larger) transformers, from
# ../shared/CONNECTIVITY.md and the papers' abstracts; none gives a number for a model this
# small, so the comparison is of kind, not of value.
PUBLISHED = (
    "Verma & Elbayad 2024 (MultiBERTs, 10 pairs): heads matched in two levels (a Hungarian "
    "assignment of the features inside each head pair, then one over heads), one stream "
    "permutation shared or one per sublayer, LayerNorm parameters with the stream: permutations "
    "only, like the perm rows here.",
    "Imfeld et al. 2024 (transformer fusion with optimal transport): soft alignment works "
    "better than hard permutations for transformers.",
    "Theus et al. 2025 (arXiv 2506.22712): permutations, semi-permutations, orthogonal and "
    "invertible maps; the first low- and zero-barrier linear paths between independently "
    "trained ViTs and GPT-2 models.",
)


Ends = tuple[nn.Module, nn.Module, float]  # start, end, distance after / before


@dataclass(frozen=True)
class Row:
    """One way of preparing the ends of the path: raw, permutation-aligned, full canonical."""

    name: str
    prepare: Callable[[nn.Module, nn.Module, torch.Tensor, torch.Tensor], Ends]


def _takes_heads() -> bool:
    return "heads" in inspect.signature(canonicalize.match).parameters


def _align_full(
    model: nn.Module,
    reference: nn.Module,
    example_input: torch.Tensor,
    data: torch.Tensor,
    method: str = "weights",
) -> Ends:
    """The ends of the path with each head's continuous groups divided out too.

    ``canonicalize.match(..., heads="full")``: heads paired on their query-key and value-output
    products, then each head of ``model`` expressed in the basis of the reference's head at its
    place (invertible maps, key and value biases translated), besides the permutations.

    Raises
    ------
    NotImplementedError
        With a canonicalize that cannot divide out the per-head groups (no ``heads=``);
        :func:`main` prints a note and skips the row.
    """
    if not _takes_heads():
        raise NotImplementedError(
            "canonicalize.match does not divide out each head's continuous groups "
            "(W_Q -> A W_Q, W_K -> A^-T W_K; W_V -> B W_V, W_O,h -> W_O,h B^-1) in this version"
        )
    found = canonicalize.match(
        model, reference, example_input, method=method, data=data, heads="full"
    )
    return reference, found.model, found.distance_after / found.distance_before


def _permutations(
    model: nn.Module,
    reference: nn.Module,
    example_input: torch.Tensor,
    data: torch.Tensor,
    method: str = "weights",
) -> Ends:
    """The ends of the path with ``model``'s units permuted to match: heads as whole blocks."""
    only = {"heads": "permutations"} if _takes_heads() else {}
    found = canonicalize.match(model, reference, example_input, method=method, data=data, **only)
    return reference, found.model, found.distance_after / found.distance_before


def _align_full_normalized(
    model: nn.Module, reference: nn.Module, example_input: torch.Tensor, data: torch.Tensor
) -> Ends:
    """:func:`_align_full` by weights, then both ends normalized (``canonicalize.normalize``:
    every free positive scale removed, the LayerNorm gains' shared with their readers too)."""
    start, end, closer = _align_full(model, reference, example_input, data)
    start = canonicalize.normalize(start, example_input, heads="full")
    return start, canonicalize.normalize(end, example_input, heads="full"), closer


METHODS = ("weights", "activations", "cosine")
ROWS = (
    Row("raw", lambda model, reference, example_input, data: (reference, model, 1.0)),
    *(Row(f"perm {m}", functools.partial(_permutations, method=m)) for m in METHODS),
    *(Row(f"full {m}", functools.partial(_align_full, method=m)) for m in METHODS),
    Row("full weights, normalized", _align_full_normalized),
)


def train_models(
    data: Dataset, models: int, epochs: int
) -> list[tuple[nn.Module, float, float, int]]:
    """``models`` transformers from seeds 0, 1, ...: (model, train error, test error, epochs)."""
    out = []
    for seed in range(models):
        result = train(
            VisionTransformer(seed=seed),
            data,
            AdamOptions(lr=3e-3, schedule="cosine"),
            seed=seed,
            epochs=epochs,
            progress=False,
        )
        record = result.record
        out.append((result.model, record.train_error[-1], record.test_error[-1], record.epochs))
    return out


def _permuted_copy(model: nn.Module, example_input: torch.Tensor, seed: int) -> nn.Module:
    """``model`` with its units permuted at random (stream, heads, features in heads, MLP)."""
    only = {"scale": False, "sign": False, "translate": False}
    if "invertible" in inspect.signature(canonicalize.random_transform).parameters:
        only["invertible"] = False  # the per-head maps, where canonicalize draws them
    return canonicalize.random_transform(model, example_input, seed=seed, **only)


def measure(start: nn.Module, end: nn.Module, data: Dataset, resolution: float) -> dict[str, float]:
    """Error and loss barriers and the peak error of the straight path on the training split."""
    path = paths.linear(start, end)
    error = paths.barrier(path, data, "error", resolution=resolution)
    loss = paths.barrier(path, data, "loss", resolution=resolution)
    return {"error": error.height, "loss": loss.height, "peak": error.peak}


def main(models: int = 4, epochs: int = 60, quick: bool = False) -> None:
    """Train ``models`` transformers, align every pair every way, print the table.

    ``quick``: 3 models on 400 training digits, 4 epochs, barriers to 1/32 (a smoke test: the
    ends are far from zero error and the numbers mean nothing).
    """
    torch.set_num_threads(1)
    started = time.perf_counter()
    if quick:
        models, epochs = 3, 4
        data, resolution = load("digits", subset=400), 1 / 32
    else:
        data, resolution = load("digits"), 1 / 256
    x_train = data.train[0]
    example_input = x_train[:64]
    trained = train_models(data, models, epochs)
    print(
        f"{data.name}: {models} ViTs ({sum(p.numel() for p in trained[0][0].parameters()):,} "
        f"parameters) in {time.perf_counter() - started:.0f} s"
    )
    for seed, (_, train_error, test_error, n_epochs) in enumerate(trained):
        print(
            f"  seed {seed}: {n_epochs} epochs, train error {train_error:.4f}, "
            f"test error {test_error:.4f}"
        )
    pairs = list(itertools.combinations(range(models), 2))
    results: dict[str, list[dict[str, float]]] = {}
    skipped: dict[str, str] = {}
    for row in ROWS:
        for i, j in pairs:
            reference, model = trained[i][0], trained[j][0]
            begin = time.perf_counter()
            try:
                start, end, closer = row.prepare(model, reference, example_input, x_train)
            except NotImplementedError as err:
                skipped[row.name] = str(err)
                break
            seconds = time.perf_counter() - begin
            numbers = measure(start, end, data, resolution)
            results.setdefault(row.name, []).append(
                {**numbers, "time": seconds, "distance": closer}
            )

    print(
        f"\n{len(pairs)} pairs; training split ({len(x_train)} digits); barrier = highest rise "
        f"above the chord (adaptive to {resolution:g}); mean +- sd over pairs\n"
    )
    columns = (("error", 4), ("loss", 3), ("peak", 4), ("distance", 3), ("time", 2))
    print(
        "| ends | error barrier | loss barrier | peak error | distance after / before "
        "| alignment time (s) |"
    )
    print("|---|---|---|---|---|---|")
    for row in ROWS:
        if row.name in skipped:
            print(f"| {row.name} | skipped | | | | |")
            continue
        cells = []
        for key, digits in columns:
            values = np.array([r[key] for r in results[row.name]])
            cells.append(f"{values.mean():.{digits}f} +- {values.std():.{digits}f}")
        if row.name == "raw":
            cells[-2:] = ["1", ""]
        print(f"| {row.name} | " + " | ".join(cells) + " |")
    for name, reason in skipped.items():
        print(f"\nskipped '{name}': {reason}")
    print("\nerror barrier per pair (" + ", ".join(f"{i}-{j}" for i, j in pairs) + "):")
    for name, rows in results.items():
        print(f"  {name:<25} " + " ".join(f"{r['error']:.4f}" for r in rows))
    # Controls: copies of A moved by hidden group elements are the same point once aligned.
    a = trained[0][0]
    permuted = _permuted_copy(a, example_input, seed=0)
    back = _permutations(permuted, a, example_input, x_train)[1]
    print(
        "\ncontrol: A against A with its units permuted at random: error barrier "
        f"{measure(a, permuted, data, resolution)['error']:.4f} raw, "
        f"{measure(a, back, data, resolution)['error']:.4f} after perm weights"
    )
    if _takes_heads():
        moved = canonicalize.random_transform(a, example_input, seed=0, scale=False)
        ends = {
            "raw": (a, moved),
            "after perm weights": _permutations(moved, a, example_input, x_train)[:2],
            "after full weights": _align_full(moved, a, example_input, x_train)[:2],
        }
        cells = [f"{measure(*e, data, resolution)['error']:.4f} {k}" for k, e in ends.items()]
        print(
            "control: A against A moved by a random element of its group without scales "
            "(permutations, signs, orthogonal head maps, key and value bias shifts): error "
            "barrier " + ", ".join(cells)
        )
    print("\npublished, for larger transformers (../shared/CONNECTIVITY.md):")
    for line in PUBLISHED:
        print(f"  - {line}")
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main(quick="--quick" in sys.argv[1:])
