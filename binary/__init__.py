"""binary: networks with binary weights and activations, their training, symmetries and paths.

The networks:

- ``binary.layers``: :class:`BinaryLinear`, :class:`BinaryConv2d` (latent real weights,
  +-1 forward, straight-through gradient, latent weights clipped to [-1, 1] after every
  optimizer step), :class:`BinarySign` (canonicalize's ``Sign`` with sign(0) = +1 and a
  hardtanh straight-through gradient), :func:`binarize` (the one convention: sign(0) = +1);
- ``binary.models``: :func:`perceptron`, :func:`committee` (tree or fully connected),
  :func:`binary_mlp`, :func:`binary_cnn`; they train through :func:`funcspace.train` with
  any of its methods;
- ``binary.rules``: the clipped perceptron rule (:func:`train_perceptron_rule`) for the
  perceptron and the committee machine;
- ``binary.export``: :func:`export` (a plain model with weights exactly +-1, the same
  function bit for bit; the fixed layers of a committee, its vote and readout, marked fixed
  with ``weight.requires_grad == False``), :func:`fixed_weights`, :func:`check_binary` and
  :func:`is_binary`;
- ``binary.kernels``: exact +-1 products in int8 with int32 accumulation where that is fast
  (:func:`binary_matmul`, :func:`binary_linear_stacked`).

Their geometry (on exported, plain binary networks):

- ``binary.symmetry``: the symmetries (hidden-unit permutations and sign reversals, found by
  canonicalize's discovery, none of which changes a fixed layer), :func:`binary_weights` (the
  trainable binary tensors: every function below flips, counts and moves only these),
  :func:`canonical_form` (weights stay +-1), :func:`align` (the
  paper's absolute-cosine matching, then sign flips), :func:`random_transform`,
  :func:`equivalent`;
- ``binary.distance``: :func:`hamming_distance` and :func:`overlap`, after alignment;
- ``binary.hamming``: :func:`hamming_path` (a :class:`paths.Path` flipping one weight per
  step, in a random or greedy order; it plugs into ``paths.profile`` and ``paths.barrier``);
- ``binary.barriers``: :func:`hamming_barriers` (over several random orders);
- ``binary.bend``: the binary single-bend path, :func:`hamming_midpoint`, :func:`hamming_bent`,
  :func:`trainable` (a plain binary network as a training model again, the inverse of
  :func:`export`) and :func:`train_bend` (the trained bend);
- ``binary.energy``: :func:`local_energy` (the error increase when a fraction of the
  weights is flipped).
"""

from .barriers import HammingBarriers, hamming_barriers
from .bend import (
    DEFAULT_SCALE,
    HammingBentPath,
    hamming_bent,
    hamming_midpoint,
    train_bend,
    trainable,
)
from .distance import HammingDistance, hamming_distance, overlap
from .energy import DEFAULT_FRACTIONS, local_energy
from .errors import BinaryError
from .export import check_binary, export, fixed_weights, is_binary
from .hamming import ORDERS, HammingPath, hamming_path
from .kernels import (
    binary_linear,
    binary_linear_stacked,
    binary_matmul,
    int8_preferred,
    int8_supported,
)
from .layers import (
    BinaryConv2d,
    BinaryLinear,
    BinarySign,
    LatentWeight,
    SumUnits,
    TwoClassReadout,
    binarize,
    clip_latent_,
)
from .models import binary_cnn, binary_mlp, committee, perceptron
from .rules import RULE, train_perceptron_rule
from .symmetry import (
    BINARY_LAYERS,
    align,
    binary_weights,
    canonical_form,
    equivalent,
    random_transform,
    symmetries,
)

__all__ = [
    "BINARY_LAYERS",
    "DEFAULT_FRACTIONS",
    "DEFAULT_SCALE",
    "ORDERS",
    "RULE",
    "BinaryConv2d",
    "BinaryError",
    "BinaryLinear",
    "BinarySign",
    "HammingBarriers",
    "HammingBentPath",
    "HammingDistance",
    "HammingPath",
    "LatentWeight",
    "SumUnits",
    "TwoClassReadout",
    "align",
    "binarize",
    "binary_cnn",
    "binary_linear",
    "binary_linear_stacked",
    "binary_matmul",
    "binary_mlp",
    "binary_weights",
    "canonical_form",
    "check_binary",
    "clip_latent_",
    "committee",
    "equivalent",
    "export",
    "fixed_weights",
    "hamming_barriers",
    "hamming_bent",
    "hamming_distance",
    "hamming_midpoint",
    "hamming_path",
    "int8_preferred",
    "int8_supported",
    "is_binary",
    "local_energy",
    "overlap",
    "perceptron",
    "random_transform",
    "symmetries",
    "train_bend",
    "train_perceptron_rule",
    "trainable",
]
