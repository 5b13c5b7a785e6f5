"""sessionkit: asyncio-native server-side user sessions.

A login creates a session with a random key; every request checks the key and restarts the
session's idle timer; the timer ends the session, fires events and, with a Socket.IO server
bound, pushes ``logout`` to the user's browser.
"""

from __future__ import annotations

from sessionkit.events import EVENTS, EventHandler, SessionEvent, SocketBridge
from sessionkit.exceptions import (
    SessionError,
    SessionLimitReached,
    SessionNotFound,
    SessionRejected,
    StoreUnavailable,
)
from sessionkit.manager import MAX_SESSION_TIMEOUT, MIN_SESSION_TIMEOUT, SessionManager
from sessionkit.models import ClientInfo, SessionDetails, SessionRecord
from sessionkit.stores import MemoryStore, Outcome, Pending, SessionStore

__all__ = (
    "EVENTS",
    "MAX_SESSION_TIMEOUT",
    "MIN_SESSION_TIMEOUT",
    "ClientInfo",
    "EventHandler",
    "MemoryStore",
    "Outcome",
    "Pending",
    "SessionDetails",
    "SessionError",
    "SessionEvent",
    "SessionLimitReached",
    "SessionManager",
    "SessionNotFound",
    "SessionRecord",
    "SessionRejected",
    "SessionStore",
    "SocketBridge",
    "StoreUnavailable",
)

__version__ = "0.1.0"
