"""funcspace: symmetry-aware function-space geometry of neural networks.

``import funcspace`` loads the measuring core (and canonicalize beneath it), never the study.
"""

from . import models

__all__ = ["models"]
