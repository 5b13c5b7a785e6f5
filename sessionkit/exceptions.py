"""The exceptions sessionkit raises. :class:`SessionError` is the root of them all."""

from __future__ import annotations

__all__ = (
    "SessionError",
    "SessionLimitReached",
    "SessionNotFound",
    "SessionRejected",
    "StoreUnavailable",
)


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


class SessionLimitReached(SessionError):
    """Raised by ``load_new_session`` when the user already has ``max_sessions_per_user`` live
    sessions and the manager was made with ``on_session_limit="refuse"``; nothing changed."""
