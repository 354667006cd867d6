"""Landscape slices: filter-normalized lines and planes, interpolations, trajectory PCA.

- :func:`random_direction` draws a Gaussian direction and rescales it the way Li et al. (2018)
  do, so slices of different networks can be compared (:mod:`.directions`);
- :func:`line` and :func:`plane` evaluate error and loss on a 1-D or 2-D grid around a model,
  along random, given or PCA directions; every grid goes through the batched engine
  (:func:`funcspace.evaluation.evaluate_affine`) in one call, which reuses the first layer's
  linearity along the directions (:mod:`.slices`);
- :func:`interpolate` walks the straight path from one model to another (Vlaar & Frankle
  2022), optionally moving only some layers (:mod:`.interpolation`);
- :func:`trajectory_pca` finds the two principal directions of a saved training trajectory and
  its coordinates on them, so :func:`plane` can draw the trajectory on its own plane
  (:mod:`.trajectory`).

Results are the frozen dataclasses :class:`Slice1D`, :class:`Slice2D` and
:class:`TrajectoryPCA` (:mod:`.results`).

Directions are ``dict[str, Tensor]`` over the model's parameter names (the torch.func
convention); a name left out of a given direction counts as zero. BatchNorm running statistics
are never moved: they stay the model's (``batchnorm="fixed"``) or are recalibrated at every
point (``batchnorm="recalibrate"``).

How points are measured
-----------------------
:func:`line`, :func:`plane` and :func:`interpolate` take ``settings=``, a
:class:`funcspace.evaluation.Settings` (metrics, split, batch size, chunk, BatchNorm handling,
recalibration data, strategy); the default measures error and loss on the training split. The
separate evaluation keywords of earlier versions (``metrics=``, ``split=``, ...) still work,
with a ``DeprecationWarning``, for one release.
"""

from .directions import Ignore, Normalization, normalize_direction, random_direction
from .interpolation import interpolate
from .results import Slice1D, Slice2D, TrajectoryPCA
from .slices import line, plane
from .trajectory import trajectory_pca

__all__ = [
    "Ignore",
    "Normalization",
    "Slice1D",
    "Slice2D",
    "TrajectoryPCA",
    "interpolate",
    "line",
    "normalize_direction",
    "plane",
    "random_direction",
    "trajectory_pca",
]
