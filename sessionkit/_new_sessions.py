"""The login path: what :meth:`SessionManager.load_new_session` does once the manager runs on
a loop. The session is stored (evicting, or refusing, over ``max_sessions_per_user``), its key
armed, and its creation reported with any eviction; a caller cancelled before it got the key
leaves a session nobody can use, which ends once its events have run."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sessionkit._expiry import Expiry
from sessionkit._fanout import Fanout, Steps, chain
from sessionkit._options import Options, seconds, username, warns_in_time
from sessionkit.events import SessionEvent
from sessionkit.keys import hash_key, short_hash
from sessionkit.models import ClientInfo, SessionRecord, decode_data, encode_data
from sessionkit.stores.base import SessionStore

logger = logging.getLogger("sessionkit")


class NewSessions:
    """Creates sessions for one manager."""

    def __init__(
        self,
        store: SessionStore,
        options: Options,
        expiry: Expiry,
        fanout: Fanout,
        loop: Callable[[], asyncio.AbstractEventLoop],
    ) -> None:
        self._store = store
        self._options = options
        self._expiry = expiry
        self._fanout = fanout
        self._events = fanout.events
        self._loop = loop  # the loop the manager runs on (bound to the running one if new)

    async def create(
        self,
        name: object,
        data: Any,
        timeout: float | None,
        client: ClientInfo | None,
        default_timeout: float,
    ) -> str:
        """Check the arguments, create the session and report it; return its key."""
        name = username(name)
        warn = self._options.warn_before
        if timeout is None:
            idle = default_timeout
        else:
            idle = warns_in_time(seconds(timeout, "timeout"), warn, "timeout")
        if client is not None and not isinstance(client, ClientInfo):
            raise TypeError(f"client must be a ClientInfo, not {type(client).__name__}")
        text = encode_data(data)
        loop = self._loop()
        store = self._store
        options = self._options
        absolute = options.absolute
        key = store.new_key(name)
        try:
            evicted = await store.create(
                key,
                name,
                text,
                timeout=idle,
                fixed_timeout=timeout is not None,
                absolute_timeout=absolute,
                max_per_user=options.max_per_user,
                refuse=options.refuse,
                client=None if client is None else client.encode(),
            )
        except BaseException:
            if store.unsettled:  # (as Expiry.changed does, inline on this frequent call)
                self._expiry.settle_soon()
            raise
        capped = absolute is not None and absolute <= idle
        self._expiry.arm(key, loop.time(), min(idle, absolute or idle), capped)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("session %s created", short_hash(key))
        if evicted or self._events.wants("session_created"):
            await self._report(key, name, text, evicted)
        return key

    async def _report(
        self, key: str, name: str, text: str | None, evicted: list[SessionRecord]
    ) -> None:
        steps = self._expiry.endings(evicted, "evicted", notify=True)
        if self._events.wants("session_created"):
            event = SessionEvent(
                "session_created",
                key,
                hash_key(key),
                name,
                data=decode_data(text),
                created_at=datetime.now(UTC),
            )
            steps = chain(steps, self._events.calls(event))
        abandoned = False

        def last_step() -> Steps:
            # Read when reached: a caller cancelled before it got the key leaves a session
            # nobody can use, which ends once its events have run (in the manager's task).
            if abandoned:
                yield self._abandon(key)

        try:
            await self._fanout.run(chain(steps, last_step()))
        except asyncio.CancelledError:
            abandoned = True
            raise

    async def _abandon(self, key: str) -> None:
        record = await self._expiry.changed(self._store.delete(key))
        if record is not None:
            await self._expiry.end([record], "logout", False)
