"""The exception every failing sqz call raises."""
from __future__ import annotations


class SqzError(Exception):
    """A libsqz call failed.

    ``status`` is the sqz_status code (``SQZ_ERR_IO`` = 1, ...), ``status_name`` its name
    ("i/o error", ...) and ``message`` sqz's one-line message, which names the file and the
    problem; ``str(e)`` is the message.
    """

    def __init__(self, status: int, status_name: str, message: str) -> None:
        super().__init__(message or status_name)
        self.status = status
        self.status_name = status_name
        self.message = message or status_name
