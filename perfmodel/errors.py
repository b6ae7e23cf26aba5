"""The one error type for bad input, below every layer that raises it."""


class SpecError(Exception):
    """Bad input: the message is one paragraph that names the file, the field and the fix."""
