"""Events: what a :class:`~sessionkit.SessionManager` tells its subscribers, and how."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal, Protocol, TypeAlias, get_args

from sessionkit.keys import redact_exception

__all__ = (
    "EVENTS",
    "REASONS",
    "EventHandler",
    "EventName",
    "Reason",
    "SessionEvent",
    "SessionLimitPolicy",
    "SocketBridge",
    "new_event_id",
)

logger = logging.getLogger("sessionkit")

#: An event's name, as :meth:`SessionManager.on` takes it and :attr:`SessionEvent.name` gives
#: it: a type checker catches a misspelt name before it runs (the manager still checks at run
#: time, with a ``ValueError``).
EventName: TypeAlias = Literal[
    "session_created",
    "session_deleted",
    "session_expired",
    "session_expiring",
    "session_rotated",
    "session_suspicious",
    "notify_client_to_logout",
    "error",
]

#: Why a session ended: :attr:`SessionEvent.reason` of ``session_deleted``, ``session_expired``
#: and ``notify_client_to_logout``, and the ``reason`` of the pushed ``logout`` (and
#: ``"client_changed"``, the reason of ``session_suspicious``).
Reason: TypeAlias = Literal[
    "logout",
    "expired",
    "absolute_timeout",
    "delete_all",
    "logout_all",
    "evicted",
    "suspicious",
    "client_changed",
]
#: Every :data:`Reason`, for checks at run time.
REASONS: Final[tuple[Reason, ...]] = get_args(Reason)

#: What a login over ``max_sessions_per_user`` does (``SessionManager(on_session_limit=...)``).
SessionLimitPolicy: TypeAlias = Literal["evict", "refuse"]

#: Every event name :meth:`SessionManager.on` accepts, each with the seed package's name.
EVENTS: Final[dict[EventName, str | None]] = {
    "session_created": "sessionCreated",
    "session_deleted": "sessionDeleted",
    "session_expired": None,
    "session_expiring": None,
    "session_rotated": None,
    "session_suspicious": None,
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
    ``"logout_all"``, ``"evicted"``, ``"suspicious"``), or, on ``session_suspicious``, what
    looked wrong (``"client_changed"``); ``data`` is a copy of the session's data; ``error`` is the
    exception an ``error`` event reports. ``created_at`` (UTC) is when the session began, on
    every event about one session, so that a handler can tell how long it lived. ``id`` names
    this occurrence: the events of one ending (``session_deleted``, ``session_expired``,
    ``notify_client_to_logout``) carry the same ids on every delivery of it (a store shared by
    processes delivers an ending again when the worker that had it died before it was
    reported), so that a handler that must act once can skip one it has seen; every other
    event's id is new. Its ``repr()`` leaves the raw key out.
    """

    name: EventName
    key: str | None = field(repr=False)  # a raw key never shows in a repr (or a log line)
    key_hash: str
    username: str | None = None
    reason: Reason | None = None
    data: Any = None
    error: BaseException | None = None
    created_at: datetime | None = None
    id: str = field(default_factory=lambda: new_event_id())


_RUN = secrets.token_hex(6)  # this process's part of every new event id
_SERIAL = itertools.count()


def new_event_id() -> str:
    """A new event id, unique across processes (see :attr:`SessionEvent.id`)."""
    return f"{_RUN}.{next(_SERIAL)}"


EventHandler: TypeAlias = Callable[[SessionEvent], Awaitable[object] | object]


class SocketBridge(Protocol):
    """What the manager calls when a session must reach its clients' sockets.

    :func:`sessionkit.socketio.bind_socketio` builds one; attach your own with
    :meth:`SessionManager.attach_socket_bridge` to push through another transport. A bridge
    that raises is reported as an ``error`` event; the session's ending goes on.
    """

    async def logout(self, key_hash: str, reason: Reason) -> None:
        """Tell the sockets of the session with SHA-256 ``key_hash`` to log out."""

    async def expiring(self, key_hash: str, remaining: float) -> None:
        """Warn the session's sockets that it ends in ``remaining`` seconds."""

    async def rotated(self, old_hash: str, new_hash: str, new_key: str) -> None:
        """Move the session's sockets to its new key (``new_key`` lets the adapter re-key
        what it keeps per socket: a hash cannot be turned back into a key)."""

    async def aclose(self) -> None:
        """Release what the bridge holds: :meth:`SessionManager.aclose` awaits it once the
        manager's own tasks have ended (a bridge that holds nothing returns at once)."""


def check_event_name(name: object) -> EventName:
    """Return ``name`` as an :data:`EventName`; raise ``ValueError`` for a name that is not in
    :data:`EVENTS`."""
    if name in EVENTS:
        return name
    hint = f"; did you mean {_SEED_NAMES[name]!r}?" if name in _SEED_NAMES else ""
    raise ValueError(f"unknown event {name!r}{hint} (known: {', '.join(EVENTS)})")


def _cancelled() -> bool:
    # A CancelledError is the caller's own only while its task is being cancelled; otherwise
    # a handler raised it from its own code, and it is that handler's failure.
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class Dispatcher:
    """Holds handlers by event name and calls them one after another, in subscription order."""

    def __init__(self) -> None:
        self._handlers: dict[EventName, list[EventHandler]] = {name: [] for name in EVENTS}

    def add(self, name: EventName, handler: EventHandler) -> None:
        name = check_event_name(name)
        if not callable(handler):
            raise TypeError(f"an event handler must be callable, not {type(handler).__name__}")
        self._handlers[name].append(handler)

    def remove(self, name: EventName, handler: EventHandler) -> None:
        name = check_event_name(name)
        try:
            self._handlers[name].remove(handler)
        except ValueError:
            raise ValueError(f"{handler!r} is not subscribed to {name!r}") from None

    def wants(self, name: EventName) -> bool:
        """Whether anyone listens to ``name``: events nobody hears are never built."""
        return bool(self._handlers[name])

    def calls(self, event: SessionEvent) -> Iterator[Awaitable[None]]:
        """One step per handler of ``event.name``: a caller that is cancelled between steps can
        hand the rest to another task, and no handler runs twice."""
        for handler in tuple(self._handlers[event.name]):
            yield self._call(handler, event)

    async def emit(self, event: SessionEvent) -> None:
        """Run every handler of ``event.name``; a failure goes to ``error`` handlers and the log."""
        for call in self.calls(event):
            await call

    async def _call(self, handler: EventHandler, event: SessionEvent) -> None:
        try:
            result = handler(event)
            if inspect.isawaitable(result):
                await result
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # CancelledError and GeneratorExit of its own included
            if isinstance(exc, asyncio.CancelledError) and _cancelled():
                raise
            await self.report(exc, f"{event.name} handler {handler!r} failed", event)

    async def report(
        self, exc: BaseException, what: str, about: SessionEvent | None = None, *, log: bool = True
    ) -> None:
        """Log ``exc`` (keys blanked out; not if ``log`` is false, for a caller that logs its
        own failures) and hand it, unwrapped, to the ``error`` handlers."""
        key = None if about is None else about.key
        if log:
            logger.warning("%s: %s", what, redact_exception(exc, key))
        # A failing error handler is only logged: reporting it again could loop forever.
        if about is not None and about.name == "error":
            return
        await self.emit(
            SessionEvent(
                name="error",
                key=key,
                key_hash="" if about is None else about.key_hash,
                username=None if about is None else about.username,
                error=exc,
            )
        )
