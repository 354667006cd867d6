"""paths: paths between minimizers and what is measured along them.

Built so far (issue 16, first part): the :class:`Path` object, the straight paths
(:func:`linear`, :func:`layerwise`) and :func:`profile` (metrics at many ``t`` in one batched
evaluation, with BatchNorm statistics recalibrated, interpolated or fixed). Geodesic, bent and
curve paths, adaptive barriers and level sets come next.
"""

from .path import KINDS, Path, PathError, layerwise, linear
from .profile import BATCHNORM_MODES, Profile, profile

__all__ = [
    "BATCHNORM_MODES",
    "KINDS",
    "Path",
    "PathError",
    "Profile",
    "layerwise",
    "linear",
    "profile",
]
