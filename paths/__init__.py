"""paths: linear, layer-wise, geodesic and bent paths between minimizers, and their barriers.

Built on canonicalize and the funcspace core in a later issue; nothing is public yet.
"""

__all__: list[str] = []
