"""Browser hardening, OWASP's, as :class:`~sessionkit.SessionManager` calls: key rotation
(against fixation) and its renewal timeout, re-authentication, and the hijack signal of a
changed client. The guards of :mod:`sessionkit.starlette` call these on the requests they check.

:class:`BrowserCalls` is a part of ``SessionManager``'s class, kept here whole (each call with
its docstring and code) so that the manager's module holds its lifecycle and the seed's calls;
the parts it uses are the manager's (``_parts.py``).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sessionkit._fanout import session_event
from sessionkit._options import not_found
from sessionkit._parts import ManagerParts
from sessionkit.clients import client_changed
from sessionkit.events import CLIENT_CHANGED, SUSPICIOUS, SessionEvent
from sessionkit.exceptions import SessionNotFound
from sessionkit.keys import hash_key, is_key_like, short_hash
from sessionkit.models import ClientInfo, SessionDetails

logger = logging.getLogger("sessionkit")


class BrowserCalls(ManagerParts):
    """``SessionManager``'s browser-hardening calls."""

    async def rotate_session_key(self, key: str) -> str:
        """Give a session a new key (do it when privileges change, against fixation).

        The session keeps its username, data and times; the old key stops working at once and
        a bound Socket.IO server moves the old room's sockets to the new room.

        :return: the new key.
        :raises SessionNotFound: if ``key`` names no live session.
        :raises StoreUnavailable: if the store cannot be reached; once it can, the session is
            live under ``key`` again, or ended and reported.
        """
        return await self._rotate(key, 0.0)

    async def renew_if_due(self, details: SessionDetails) -> str | None:
        """Renew the key of a session whose key is older than ``renew_every`` (counted from
        ``details.key_created_at``): a rotation, as :meth:`rotate_session_key` does (sockets
        follow, ``session_rotated`` fires), after which the old key keeps working for
        ``renew_grace`` seconds, so that requests already in flight with it do not fail. The
        guards of :mod:`sessionkit.starlette` call it for keys that came from the session
        cookie, and set the new cookie on the response.

        Of several requests that find the key due at once, one renews it; the others (their
        key is now the replaced one, still working) get ``None``. A renewal that raised
        :class:`~sessionkit.StoreUnavailable` is settled as a rotation is: once the store
        answers, the session is under the old key again (or ended and reported); meanwhile
        the old key works, being the session's or its alias.

        :param details: the session, as a guard's :meth:`touch_session` returned it.
        :return: the new key, or ``None`` if no renewal is due (or another request renewed).
        :raises StoreUnavailable: if the store cannot be reached.
        """
        every = self._options.renew_every
        key = details.key
        if every is None or key is None:
            return None
        born = details.key_created_at or details.created_at
        if (datetime.now(UTC) - born).total_seconds() < every:
            return None
        try:
            return await self._rotate(key, self._options.renew_grace)
        except SessionNotFound:
            return None  # renewed by another request (or ended) meanwhile

    async def _rotate(self, key: str, grace: float) -> str:
        loop = self._binding.current()
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

    async def mark_authenticated(self, key: str) -> bool:
        """Record that the session's user has just entered a credential again (a password,
        a second factor): the session's ``authenticated_at`` becomes now, which the guards'
        ``max_auth_age`` checks (see :mod:`sessionkit.starlette`).

        It ends nothing and is idempotent: a call that raised may or may not have landed, and
        can simply be made again.

        :return: ``True``.
        :raises SessionNotFound: if ``key`` names no live session.
        :raises StoreUnavailable: if the store cannot be reached.
        """
        self._binding.current()
        if not is_key_like(key) or not await self._store.mark_authenticated(key):
            raise not_found(key)
        return True

    async def check_client(self, details: SessionDetails, client: ClientInfo) -> bool:
        """Compare a request's client with the one the session recorded at login (the
        guards of :mod:`sessionkit.starlette` call this on every request they check).

        When the browser family or the network (/24 for IPv4, /48 for IPv6) changed (see
        :func:`sessionkit.clients.client_changed`), ``session_suspicious`` fires (reason
        ``"client_changed"``), and with ``on_suspicious="end"`` the session ends (reason
        ``"suspicious"``; its sockets are told ``logout``). A session with no recorded
        client, or a side that does not know a value, compares nothing.

        :param details: the session, as :meth:`touch_session` or
            :meth:`get_session_details` returned it (with its key).
        :param client: the request's client (:func:`sessionkit.starlette.client_info`).
        :return: ``False`` if the session ended for it, else ``True``.
        :raises TypeError: for details without a key, or a client that is not a
            :class:`~sessionkit.ClientInfo`.
        :raises StoreUnavailable: with ``on_suspicious="end"``, if the store cannot be
            reached (the ending, if it landed, is reported once it can).
        """
        key = details.key
        if not isinstance(key, str):
            raise TypeError("check_client needs the details of a session with its key")
        if not isinstance(client, ClientInfo):
            raise TypeError(f"client must be a ClientInfo, not {type(client).__name__}")
        recorded = details.client
        # The very client of the login (the usual request of a browser session) changed
        # nothing: known without parsing both addresses (~50 us).
        if recorded is None or client == recorded or not client_changed(recorded, client):
            return True
        self._binding.current()
        logger.info("session %s: the client changed", short_hash(key))
        if self._events.wants("session_suspicious"):
            event = SessionEvent(
                "session_suspicious",
                key,
                details.id,
                details.username,
                CLIENT_CHANGED,
                details.data,
                created_at=details.created_at,
            )
            await self._fanout.run(self._events.calls(event))
        if not self._options.end_suspicious:
            return True
        record = await self._expiry.changed(self._store.delete(key, reason=SUSPICIOUS))
        if record is not None:
            await self._expiry.end([record], SUSPICIOUS, True)
        return False
