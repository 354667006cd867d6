"""The loss Hessian as a linear operator, and estimators over it (curvlinops style).

:class:`HessianOperator` gives exact Hessian-vector products (HVPs) of the mean training loss
of a model over all of its data, with respect to all of its parameters or a subset (one
layer, say), as a linear operator on flat vectors. The estimators are plain functions over
any such operator (or a square symmetric tensor):

* :func:`lanczos`: extreme eigenvalues (largest, smallest or both) by Lanczos with full
  reorthogonalization, stopped by the Ritz residual of every wanted eigenpair;
* :func:`hutchinson_trace`, :func:`hutchpp_trace` and :func:`krylov_trace`: stochastic
  trace estimates (the last deflates by the Lanczos basis, whose trace comes free);
* :func:`spectral_density`: stochastic Lanczos quadrature with Gaussian broadening.

Results are frozen dataclasses that carry their evidence (residuals, iterations, standard
errors, HVP counts). Every random function takes a ``seed``; random vectors are drawn on the
operator's device, so nothing of size ``n`` travels to the host during an estimate.

Example
-------
>>> import torch
>>> A = torch.diag(torch.tensor([3.0, 1.0, 0.5, -2.0], dtype=torch.float64))
>>> lanczos(A, k=1, which="both", tol=1e-10).values.numpy().round(8).tolist()
[3.0, -2.0]
>>> round(hutchpp_trace(A, hvps=12).estimate, 8)   # k = n = 4: exact
2.5
"""

from .density import spectral_density
from .eigen import lanczos
from .operator import HessianOperator, Operator, Selection, as_operator
from .results import EigenResult, SpectralDensity, TraceResult
from .trace import hutchinson_trace, hutchpp_trace, krylov_trace

__all__ = [
    "EigenResult",
    "HessianOperator",
    "Operator",
    "Selection",
    "SpectralDensity",
    "TraceResult",
    "as_operator",
    "hutchinson_trace",
    "hutchpp_trace",
    "krylov_trace",
    "lanczos",
    "spectral_density",
]
