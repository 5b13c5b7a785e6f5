"""Events: what a :class:`~sessionkit.SessionManager` tells its subscribers, and how."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, TypeAlias

__all__ = ("EVENTS", "EventHandler", "SessionEvent")

logger = logging.getLogger("sessionkit")

#: Every event name :meth:`SessionManager.on` accepts, each with the seed package's name.
EVENTS: Final = {
    "session_created": "sessionCreated",
    "session_deleted": "sessionDeleted",
    "session_expired": None,
    "session_expiring": None,
    "session_rotated": None,
    "notify_client_to_logout": "notifyClientToLogout",
    "error": "error",
}
_SEED_NAMES: Final = {seed: name for name, seed in EVENTS.items() if seed}


@dataclass(frozen=True, slots=True)
class SessionEvent:
    """What a handler receives.

    ``key`` is the raw session key, or ``None`` where this process never saw it (a Redis sweep
    claiming the session of a dead process). ``key_hash`` is the SHA-256 hex digest of the key,
    or ``""`` for an ``error`` that concerns no single session. ``reason`` says why a session
    ended (``"logout"``, ``"expired"``, ``"absolute_timeout"``, ``"delete_all"``,
    ``"logout_all"``, ``"evicted"``); ``data`` is a copy of the session's data; ``error`` is the
    exception an ``error`` event reports. ``created_at`` (UTC) is when the session began, on
    every event about one session, so that a handler can tell how long it lived. Its
    ``repr()`` leaves the raw key out.
    """

    name: str
    key: str | None = field(repr=False)  # a raw key never shows in a repr (or a log line)
    key_hash: str
    username: str | None = None
    reason: str | None = None
    data: Any = None
    error: BaseException | None = None
    created_at: datetime | None = None


EventHandler: TypeAlias = Callable[[SessionEvent], Awaitable[object] | object]


def check_event_name(name: str) -> None:
    """Raise ``ValueError`` for a name that is not in :data:`EVENTS`."""
    if name in EVENTS:
        return
    hint = f"; did you mean {_SEED_NAMES[name]!r}?" if name in _SEED_NAMES else ""
    raise ValueError(f"unknown event {name!r}{hint} (known: {', '.join(EVENTS)})")


class Dispatcher:
    """Holds handlers by event name and calls them one after another, in subscription order."""

    def __init__(self) -> None:
        self._handlers: dict[str, list[EventHandler]] = {name: [] for name in EVENTS}

    def add(self, name: str, handler: EventHandler) -> None:
        check_event_name(name)
        if not callable(handler):
            raise TypeError(f"an event handler must be callable, not {type(handler).__name__}")
        self._handlers[name].append(handler)

    def remove(self, name: str, handler: EventHandler) -> None:
        check_event_name(name)
        try:
            self._handlers[name].remove(handler)
        except ValueError:
            raise ValueError(f"{handler!r} is not subscribed to {name!r}") from None

    def wants(self, name: str) -> bool:
        """Whether anyone listens to ``name``: events nobody hears are never built."""
        return bool(self._handlers[name])

    async def emit(self, event: SessionEvent) -> None:
        """Run every handler of ``event.name``; a failure goes to ``error`` handlers and the log."""
        for handler in tuple(self._handlers[event.name]):
            try:
                result = handler(event)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                await self.report(exc, f"{event.name} handler {handler!r} failed", event)

    async def report(self, exc: Exception, what: str, about: SessionEvent | None = None) -> None:
        """Log ``exc`` and hand it, unwrapped, to the ``error`` handlers."""
        # A failing error handler is only logged: reporting it again could loop forever.
        logger.warning("%s: %r", what, exc, exc_info=exc)
        if about is not None and about.name == "error":
            return
        await self.emit(
            SessionEvent(
                name="error",
                key=None if about is None else about.key,
                key_hash="" if about is None else about.key_hash,
                username=None if about is None else about.username,
                error=exc,
            )
        )
