"""The loader's and the table tool's one kind of expected failure (verify reports it the same way)."""


class InputError(Exception):
    """Bad input or an unusable database: reported as one line, without a traceback."""
