"""The exception of the binary package."""

from funcspace.errors import FuncspaceError


class BinaryError(FuncspaceError):
    """Bad input to a binary function: the message says what, where, and what to do."""
