"""The one exception of the canonicalize package."""


class SymmetryError(ValueError):
    """A model, input or request that canonicalize cannot handle exactly.

    Raised for unsupported layers (the message names the layer and says why), models that
    torch.fx cannot trace, mismatched architectures, non-finite weights, and requests outside
    the symmetry group (for example a BatchNorm variance that a scale would make negative).
    """
