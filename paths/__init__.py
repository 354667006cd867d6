"""paths: paths between minimizers and what is measured along them.

Built so far (issue 16, first part): the :class:`Path` object, the straight paths
(:func:`linear`, :func:`layerwise`), :func:`profile` (metrics at many ``t`` in one batched
evaluation, with BatchNorm statistics recalibrated, interpolated or fixed) and :func:`barrier`
(the highest rise above the chord between the end values, found adaptively), and
:func:`geodesic` (great circles in toroidal coordinates between aligned ends), and
:func:`length` (in parameters and in function space), and :func:`bent` (the toroids paper's
single-bend path). Curve paths and
level sets come next.
"""

from .barrier import Barrier, adaptive_max, barrier
from .curve import CurvePath, CurveRecord, curve
from .length import PathLength, length
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
from .profile import BATCHNORM_MODES, Profile, profile

__all__ = [
    "BATCHNORM_MODES",
    "Barrier",
    "BentPath",
    "CurvePath",
    "CurveRecord",
    "GeodesicPath",
    "KINDS",
    "Path",
    "PathError",
    "PathLength",
    "Profile",
    "adaptive_max",
    "barrier",
    "bent",
    "curve",
    "geodesic",
    "layerwise",
    "length",
    "linear",
    "profile",
    "slerp",
]
