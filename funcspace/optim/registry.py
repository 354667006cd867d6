"""The methods by name, as ``train(..., optimizer=name)`` accepts them."""

from __future__ import annotations

from funcspace.errors import FuncspaceError
from funcspace.optim.adversarial import Adversarial
from funcspace.optim.base import Method
from funcspace.optim.entropy import EntropySGD
from funcspace.optim.replicated import ReplicatedSGD
from funcspace.optim.sam import SAM
from funcspace.optim.sgd import SGD, Adam

#: The methods by name, as ``train(..., optimizer=name)`` accepts them.
METHODS: dict[str, type[Method]] = {
    cls.name: cls for cls in (SGD, ReplicatedSGD, Adversarial, Adam, SAM, EntropySGD)
}


def method_class(name: str) -> type[Method]:
    """The method registered under ``name``.

    Raises
    ------
    FuncspaceError
        If no method has that name (the message lists them).

    Examples
    --------
    >>> method_class("sgd").Options().lr
    0.02
    """
    if not isinstance(name, str) or name not in METHODS:
        raise FuncspaceError(
            f"unknown optimizer {name!r}; choose one of {', '.join(sorted(METHODS))}"
        )
    return METHODS[name]


__all__ = ["METHODS", "method_class"]
