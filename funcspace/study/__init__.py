"""The connectivity study: the top floor, which may import everything and which nothing imports
(``import funcspace`` never loads it).

- :func:`select`, :func:`candidates`: which pairs of minima deserve an expensive path, those
  that can still change the minimax tree (``funcspace.study.selection``).
"""

from .selection import Selection, SelectionError, Skip, candidates, select

__all__ = ["Selection", "SelectionError", "Skip", "candidates", "select"]
