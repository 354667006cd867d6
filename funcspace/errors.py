"""The exception of the funcspace core."""


class FuncspaceError(ValueError):
    """Bad input to a funcspace function: the message says what, where, and what to do."""


class DataError(FuncspaceError):
    """A data set that is missing, truncated, malformed, or asked for with bad options."""
