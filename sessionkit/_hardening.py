"""Browser hardening, OWASP's: key rotation (against fixation) and its renewal timeout,
re-authentication, and the hijack signal of a changed client. The guards of
:mod:`sessionkit.starlette` call these through the manager on the requests they check."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from sessionkit._expiry import Expiry
from sessionkit._fanout import Fanout, session_event
from sessionkit._options import Options, not_found
from sessionkit.clients import client_changed
from sessionkit.events import SessionEvent
from sessionkit.exceptions import SessionNotFound
from sessionkit.keys import hash_key, is_key_like, short_hash
from sessionkit.models import ClientInfo, SessionDetails
from sessionkit.stores.base import SessionStore

logger = logging.getLogger("sessionkit")


class Hardening:
    """Rotates keys and judges clients for one manager."""

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

    async def rotate(self, key: str, grace: float) -> str:
        """Move the session of ``key`` to a new key (the old one working ``grace`` seconds
        more), its timer and sockets with it; return the new key."""
        loop = self._loop()
        store = self._store
        record = None
        if is_key_like(key):
            fresh = store.rotated_key(key)
            record = await self._expiry.changed(store.rotate(key, fresh, grace=grace))
        if record is None:
            raise not_found(key)
        self._expiry.rotated(
            key, fresh, loop.time(), record.remaining, record.reached_absolute_timeout
        )
        fanout = self._fanout
        if fanout.bridge is not None:
            await fanout.run(
                fanout.pushes(fanout.bridge.rotated, hash_key(key), record.key_hash, fresh)
            )
        if self._events.wants("session_rotated"):
            await fanout.run(self._events.calls(session_event("session_rotated", fresh, record)))
        return fresh

    async def renew_if_due(self, details: SessionDetails) -> str | None:
        """Rotate the session's key if older than ``renew_every``; return the new key, or
        ``None`` if not due (or renewed by another request meanwhile)."""
        every = self._options.renew_every
        key = details.key
        if every is None or key is None:
            return None
        born = details.key_created_at or details.created_at
        if (datetime.now(UTC) - born).total_seconds() < every:
            return None
        try:
            return await self.rotate(key, self._options.renew_grace)
        except SessionNotFound:
            return None  # renewed by another request (or ended) meanwhile

    async def mark_authenticated(self, key: str) -> None:
        """Set the session's ``authenticated_at`` to now."""
        self._loop()
        if not is_key_like(key) or not await self._store.mark_authenticated(key):
            raise not_found(key)

    async def check_client(self, details: SessionDetails, client: ClientInfo) -> bool:
        """Compare ``client`` with the session's; return ``False`` if the session ended."""
        key = details.key
        if not isinstance(key, str):
            raise TypeError("check_client needs the details of a session with its key")
        if not isinstance(client, ClientInfo):
            raise TypeError(f"client must be a ClientInfo, not {type(client).__name__}")
        if details.client is None or not client_changed(details.client, client):
            return True
        self._loop()
        logger.info("session %s: the client changed", short_hash(key))
        if self._events.wants("session_suspicious"):
            event = SessionEvent(
                "session_suspicious",
                key,
                details.id,
                details.username,
                "client_changed",
                details.data,
                created_at=details.created_at,
            )
            await self._fanout.run(self._events.calls(event))
        if not self._options.end_suspicious:
            return True
        record = await self._expiry.changed(self._store.delete(key))
        if record is not None:
            await self._expiry.end([record], "suspicious", True)
        return False
