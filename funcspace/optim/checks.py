"""Checks of method options at the public boundary: each returns the value or raises."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from funcspace.errors import FuncspaceError


def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise FuncspaceError(f"option {name} must be a positive number, got {value!r}")
    return float(value)


def _nonnegative(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise FuncspaceError(f"option {name} must be a number >= 0, got {value!r}")
    return float(value)


def _unit(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise FuncspaceError(f"option {name} must be a number in [0, 1), got {value!r}")
    return float(value)


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise FuncspaceError(f"option {name} must be an integer >= 0, got {value!r}")
    return value


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise FuncspaceError(f"option {name} must be True or False, got {value!r}")
    return value


def _choice(*choices: str) -> Callable[[str, Any], str]:
    def check(name: str, value: Any) -> str:
        if value not in choices:
            raise FuncspaceError(f"option {name} must be one of {choices}, got {value!r}")
        return value

    return check


def _betas(name: str, value: Any) -> tuple[float, float]:
    if not (isinstance(value, (tuple, list)) and len(value) == 2):
        raise FuncspaceError(f"option {name} must be a pair of numbers in [0, 1), got {value!r}")
    return (_unit(name, value[0]), _unit(name, value[1]))


__all__: list[str] = []
