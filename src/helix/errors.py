"""The one error type for bad input: it names the field and what is allowed.

The CLI prints ``str(error)`` on one line and exits with code 2; Python callers get a ValueError.
"""


class HelixInputError(ValueError):
    """Bad user input: ``field`` names the offending field, the message says what is allowed."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")
