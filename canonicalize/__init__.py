"""canonicalize: find a network's symmetries from its graph and remove them.

The ground floor of funcspace, usable on its own (torch, torch.fx, scipy, geoopt):

- :func:`symmetries` discovers which units share a permutation, a positive scale or a sign
  (MLPs, CNNs with BatchNorm, residual and grouped networks, and transformers: residual
  streams through LayerNorm and RMSNorm, embeddings, attention heads with the invertible maps
  of their query-key and value-output products);
- :func:`canonical_form` returns the unique representative of the model's symmetry class
  (``heads="full"`` by default; ``heads="permutations"`` for the narrower group of heads as
  blocks that the published re-basin methods use);
- :func:`normalize` removes positive scales only (the toroids paper's normalization);
- :func:`match` permutes (and sign-flips) one network's units to match another's and returns
  the group element with the evidence (:class:`Alignment`); :func:`align` returns the model;
- :func:`to_torus` maps a network to a point of a product of spheres, and
  :func:`geodesic_distance` measures how far apart two symmetry classes are;
- :func:`random_transform` applies a random element of the group (for tests and checks).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("funcspace")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"


from .align import align, match
from .alignment import Alignment
from .canonical import canonical_form, normalize
from .discover import SUPPORTED_LAYERS, symmetries
from .errors import SymmetryError
from .group import random_transform
from .heads import HeadMap
from .layers import Sign
from .spec import SymmetrySpec
from .torus import SphereBlock, TorusPoint, geodesic_distance, to_torus

__all__ = [
    "__version__",
    "SUPPORTED_LAYERS",
    "Alignment",
    "HeadMap",
    "Sign",
    "SymmetryError",
    "SphereBlock",
    "SymmetrySpec",
    "TorusPoint",
    "align",
    "canonical_form",
    "geodesic_distance",
    "match",
    "normalize",
    "random_transform",
    "symmetries",
    "to_torus",
]
