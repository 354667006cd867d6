"""The map of minima (networkx): it organizes what was measured elsewhere, it measures nothing.

- :class:`MinimaGraph`: one node per minimizer (optimizer, seed, hyper-parameters, errors,
  flatness, where its weights are), one edge per measured pair and path kind (barriers, where
  along the path, how found, length, distances); :func:`merge_copies` makes minimizers at zero
  distance (one function up to symmetry) one node;
- analyses, functions that take the graph first: :func:`minimax` (the lowest possible highest
  barrier over chains of measured paths, from the minimum spanning tree), :func:`components`
  (below a barrier threshold), :func:`disconnectivity` (the merge tree, with a scipy linkage
  matrix), :func:`embedding` (classical MDS of the distances); :func:`minimax_matrix`,
  :func:`spanning_tree` and :func:`classical_mds` do the same for plain matrices;
- files: :func:`write_json`/:func:`read_json` (node-link), :func:`write_graphml`/
  :func:`read_graphml` (:func:`graphml_text`/:func:`parse_graphml` in memory);
- plots (matplotlib on first use): :func:`plot_map`, :func:`plot_disconnectivity`.

``import funcspace`` does not load this package (networkx); ``import funcspace.graph`` does.
"""

from .analysis import (
    Minimax,
    components,
    minimax,
    minimax_matrix,
    pair_matrix,
    spanning_tree,
)
from .io import graphml_text, parse_graphml, read_graphml, read_json, write_graphml, write_json
from .mds import Embedding, classical_mds, embedding
from .minima import BarrierLike, GraphError, MinimaGraph, merge_copies
from .plots import plot_disconnectivity, plot_map
from .tree import Disconnectivity, Merge, disconnectivity

__all__ = [
    "BarrierLike",
    "Disconnectivity",
    "Embedding",
    "GraphError",
    "Merge",
    "MinimaGraph",
    "Minimax",
    "classical_mds",
    "components",
    "disconnectivity",
    "embedding",
    "graphml_text",
    "merge_copies",
    "minimax",
    "minimax_matrix",
    "pair_matrix",
    "parse_graphml",
    "plot_disconnectivity",
    "plot_map",
    "read_graphml",
    "read_json",
    "spanning_tree",
    "write_graphml",
    "write_json",
]
