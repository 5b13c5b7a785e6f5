"""sessionkit: asyncio-native server-side user sessions.

A login creates a session with a random key; every request checks the key and restarts the
session's idle timer; the timer ends the session, fires events and, with a Socket.IO server
bound, pushes ``logout`` to the user's browser.
"""

from __future__ import annotations

from sessionkit.events import (
    EVENTS,
    REASONS,
    EventHandler,
    EventName,
    Reason,
    SessionEvent,
    SessionLimitPolicy,
    SocketBridge,
)
from sessionkit.exceptions import (
    SessionError,
    SessionLimitReached,
    SessionNotFound,
    SessionRejected,
    StoreUnavailable,
)
from sessionkit.manager import MAX_SESSION_TIMEOUT, MIN_SESSION_TIMEOUT, SessionManager
from sessionkit.models import ClientInfo, SessionDetails, SessionRecord
from sessionkit.stores import MemoryStore, NewSession, Outcome, Pending, SessionStore

__all__ = (
    "EVENTS",
    "MAX_SESSION_TIMEOUT",
    "MIN_SESSION_TIMEOUT",
    "REASONS",
    "ClientInfo",
    "EventHandler",
    "EventName",
    "MemoryStore",
    "NewSession",
    "Outcome",
    "Pending",
    "Reason",
    "SessionDetails",
    "SessionError",
    "SessionEvent",
    "SessionLimitPolicy",
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
