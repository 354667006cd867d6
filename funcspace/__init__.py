"""funcspace: symmetry-aware function-space geometry of neural networks."""

__all__ = []
