"""binary: networks with binary weights and activations, their symmetries and paths.

Built on canonicalize and the funcspace core in a later issue; nothing is public yet.
"""

__all__: list[str] = []
