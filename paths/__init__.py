"""paths: paths between minimizers and what is measured along them.

- Paths: :class:`Path` and the straight ones (:func:`linear`, :func:`layerwise`), great circles
  in toroidal coordinates between aligned ends (:func:`geodesic`), the toroids paper's
  single-bend path (:func:`bent`), and trained mode-connectivity curves (:func:`curve`:
  Bezier or polygonal, on spheres or in raw parameters).
- Measurements: :func:`profile` (metrics at many ``t`` in one batched evaluation, BatchNorm
  statistics recalibrated, REPAIRed, interpolated or fixed), :func:`barrier` (the highest rise
  above the chord between the end values, found adaptively), :func:`length` (in parameters
  and in function space), :func:`path_plane` (the plane through the ends and a bend).
- Level sets (Tahir & Katz): :func:`level_set` walks the set of constant training loss
  while lowering a regularizer; :func:`penalized` gives the minimizers of loss + lambda *
  regularizer to compare with.
- Plots: :func:`plot_profiles`, :func:`plot_path_plane`.
- The main job: ``python -m paths.demo``.
"""

from .barrier import Barrier, adaptive_max, barrier
from .curve import CurvePath, CurveRecord, curve
from .length import PathLength, euclidean_length, length
from .level_set import REGULARIZERS, LevelSet, level_set
from .path import (
    KINDS,
    BentPath,
    GeodesicPath,
    Path,
    PathError,
    bent,
    geodesic,
    layerwise,
    linear,
    slerp,
)
from .penalized import Penalized, penalized
from .plane import PathPlane, path_plane
from .plots import plot_path_plane, plot_profiles
from .profile import BATCHNORM_MODES, Profile, profile, repair

__all__ = [
    "BATCHNORM_MODES",
    "Barrier",
    "BentPath",
    "CurvePath",
    "CurveRecord",
    "GeodesicPath",
    "KINDS",
    "LevelSet",
    "Path",
    "PathError",
    "PathLength",
    "Penalized",
    "PathPlane",
    "Profile",
    "REGULARIZERS",
    "adaptive_max",
    "barrier",
    "bent",
    "curve",
    "geodesic",
    "layerwise",
    "euclidean_length",
    "length",
    "level_set",
    "linear",
    "penalized",
    "path_plane",
    "plot_path_plane",
    "plot_profiles",
    "profile",
    "repair",
    "slerp",
]
