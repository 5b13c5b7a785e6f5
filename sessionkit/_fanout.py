"""The fan-out: what a session's ending (or warning, or rotation) tells handlers and clients.

Its work is a sequence of *steps*, each one handler call or one push to the sockets, run in
order. A caller cancelled between steps (or during one, which then counts as delivered) leaves
the rest to the manager's own task, so whatever the store ended is reported once, even when
the caller that ended it is gone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from sessionkit._tasks import LoopTasks
from sessionkit.events import (
    REASONS,
    Dispatcher,
    EventName,
    Reason,
    SessionEvent,
    SocketBridge,
    new_event_id,
)
from sessionkit.models import SessionRecord, decode_data

logger = logging.getLogger("sessionkit")

_SLICE = 0.005  # seconds of event work before yielding to the loop

#: The reason given for sessions that timed out: the ending tells idle from absolute by itself
#: (``"expired"`` or ``"absolute_timeout"``) and adds ``session_expired``.
TIMED_OUT = None

Steps = Iterator[Awaitable[None]]


def session_event(
    name: EventName,
    key: str | None,
    record: SessionRecord,
    reason: Reason | None = None,
    event_id: str | None = None,
) -> SessionEvent:
    """Build the event ``name`` about ``record``'s session, with its own copy of the data
    (and ``event_id``, or a new id)."""
    created = datetime.fromtimestamp(record.created_at, UTC)
    data = decode_data(record.data)
    return SessionEvent(
        name,
        key,
        record.key_hash,
        record.username,
        reason,
        data,
        created_at=created,
        id=event_id or new_event_id(),
    )


def check_reason(reason: str) -> Reason:
    """``reason`` as a :data:`~sessionkit.Reason` (the expiry passes plain strings), or a
    ``ValueError``: an ending never reaches handlers under a name they cannot match."""
    if reason in REASONS:
        return reason
    raise ValueError(f"unknown reason {reason!r} (known: {', '.join(REASONS)})")


def chain(*parts: Steps) -> Steps:
    """Run ``parts`` one after another, as one sequence of steps."""
    for part in parts:
        yield from part


class Fanout:
    """Turns what happened to sessions into steps, and runs them."""

    def __init__(self, events: Dispatcher, tasks: LoopTasks) -> None:
        self.events = events
        self._tasks = tasks
        self.bridge: SocketBridge | None = None
        self.server: Any = None  # what the bridge pushes through (a socketio.AsyncServer)

    def attach(self, server: Any, bridge: SocketBridge) -> None:
        """Push to sockets through ``bridge`` from now on (``server`` is what it pushes
        through, which the manager's ``get_socket_reference`` returns)."""
        self.server = server
        self.bridge = bridge

    async def run(self, steps: Steps) -> None:
        """Run ``steps``; if the caller is cancelled, the step it was in finishes and the
        manager's task runs the rest."""
        if self._tasks.inside():  # the manager's own task: only aclose() stops it
            for step in steps:
                await step
            return
        for step in steps:
            # Out of the caller's reach: a handler that was running when its caller went away
            # still runs to its end, once, and the manager's task runs the rest.
            current = self._tasks.detach(step)
            try:
                await asyncio.shield(current)
            except asyncio.CancelledError:
                self._tasks.spawn(self._finish, None if current.done() else current, steps)
                raise

    async def _finish(self, current: asyncio.Future[None] | None, steps: Steps) -> None:
        if current is not None:
            await current
        for step in steps:
            await step

    def endings(
        self,
        records: Iterable[SessionRecord],
        reason: str | None,
        *,
        notify: bool,
        then: Callable[[], None] | None = None,
    ) -> Steps:
        """The steps that report sessions ended for ``reason`` (or :data:`TIMED_OUT`), telling
        their clients to log out if ``notify``; ``then()`` is called once the last has run."""
        given = None if reason is None else check_reason(reason)
        events = self.events
        debug = logger.isEnabledFor(logging.DEBUG)
        started = time.monotonic()
        for record in records:
            key = record.key
            why: Reason = given or (
                "absolute_timeout" if record.reached_absolute_timeout else "expired"
            )
            if debug:
                logger.debug("session %s ended: %s", record.key_hash[:12], why)
            # One id per ending (the store's, where it keeps an outbox): each event of it
            # carries it, so that every delivery of one ending carries the same ids.
            ending = record.event_id or new_event_id()
            if events.wants("session_deleted"):
                event = session_event("session_deleted", key, record, why, ending)
                yield from events.calls(event)
            if reason is TIMED_OUT and events.wants("session_expired"):
                event = session_event("session_expired", key, record, why, f"{ending}:expired")
                yield from events.calls(event)
            if notify:
                yield from self.notices(key, record.key_hash, record.username, why, record, ending)
            if time.monotonic() - started > _SLICE:
                yield asyncio.sleep(0)  # a burst of endings must not stall the loop
                started = time.monotonic()
        if then is not None:
            then()

    def notices(
        self,
        key: str | None,
        key_hash: str,
        username: str | None,
        reason: Reason,
        record: SessionRecord | None,
        ending: str | None = None,
    ) -> Steps:
        """The steps that tell a session's client to log out (``ending``: the id of the
        ending that does, if one does)."""
        if self.events.wants("notify_client_to_logout"):
            event_id = None if ending is None else f"{ending}:notify"
            if record is None:
                event = SessionEvent("notify_client_to_logout", key, key_hash, username, reason)
            else:
                event = session_event("notify_client_to_logout", key, record, reason, event_id)
            yield from self.events.calls(event)
        if self.bridge is not None:
            yield self._push(self.bridge.logout, key_hash, reason)

    def pushes(self, push: Callable[..., Awaitable[None]], *args: Any) -> Steps:
        """One step that calls the bridge's ``push(*args)``, reporting its failure."""
        yield self._push(push, *args)

    async def _push(self, push: Callable[..., Awaitable[None]], *args: Any) -> None:
        try:
            await push(*args)
        except Exception as exc:
            await self.events.report(exc, "Socket.IO push failed")
