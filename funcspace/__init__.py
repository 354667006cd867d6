"""funcspace: symmetry-aware function-space geometry of neural networks.

``import funcspace`` loads the measuring core (and canonicalize beneath it), never the study:

- :mod:`funcspace.data`: embedded data sets, files the user has, user tensors;
- :mod:`funcspace.models`: reference architectures;
- :func:`train`: minimizers of different flatness (SGD, RSGD, ADV, Adam, SAM, entropy-SGD);
- :func:`evaluate`: error and loss (or any :mod:`funcspace.metrics`) of many parameter points
  in batched passes, measured as a :class:`Settings` says (:class:`Evaluator` traces an
  architecture once for repeated calls);
- :mod:`funcspace.flatness`: local energy and Hessian eigenvalues, trace and spectrum;
- :mod:`funcspace.similarity`: disagreement, output distances, CKA, geodesic distance;
- :mod:`funcspace.landscape`: filter-normalized lines and planes, trajectory PCA
  (:mod:`funcspace.plots` draws them; matplotlib loads on the first plot).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("funcspace")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"


from . import data, flatness, landscape, metrics, models, params, plots, similarity
from .errors import DataError, FuncspaceError
from .evaluation import Evaluation, Evaluator, Settings, evaluate, evaluate_affine
from .training import TrainResult, train

__all__ = [
    "__version__",
    "DataError",
    "Evaluation",
    "Evaluator",
    "FuncspaceError",
    "Settings",
    "TrainResult",
    "data",
    "evaluate",
    "evaluate_affine",
    "flatness",
    "landscape",
    "metrics",
    "models",
    "params",
    "plots",
    "similarity",
    "train",
]
