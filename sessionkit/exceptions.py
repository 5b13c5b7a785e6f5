"""The exceptions sessionkit raises. :class:`SessionError` is the root of them all."""

from __future__ import annotations

__all__ = ("SessionError", "SessionNotFound", "SessionRejected", "StoreUnavailable")


class SessionError(Exception):
    """Raised for any failure that sessionkit reports; the root of its exceptions."""


class SessionNotFound(SessionError, KeyError):
    """Raised when a key names no live session (unknown, ended or past its deadline)."""

    def __str__(self) -> str:
        # KeyError's own __str__ shows the repr of its argument; a message reads better.
        return str(self.args[0]) if self.args else "session not found"


class SessionRejected(SessionError):
    """Raised (as an ``error`` event) when a session check rejects a key."""


class StoreUnavailable(SessionError):
    """Raised when the session store cannot be reached; the cause is chained."""
