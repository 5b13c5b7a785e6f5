"""The login path, as :meth:`SessionManager.load_new_session`: the session is stored (evicting,
or refusing, over ``max_sessions_per_user``), its key armed, and its creation reported with any
eviction; a caller cancelled before it got the key leaves a session nobody can use, which ends
once its events have run.

:class:`LoginCalls` is a part of ``SessionManager``'s class, kept here whole (the call with its
docstring and code); the parts it uses are the manager's (``_parts.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sessionkit._fanout import Steps, chain
from sessionkit._options import seconds, warns_in_time
from sessionkit._options import username as _username
from sessionkit._parts import ManagerParts
from sessionkit.events import EVICTED, LOGOUT, SessionEvent
from sessionkit.keys import hash_key, short_hash
from sessionkit.keys import new_key as fresh_key
from sessionkit.models import ClientInfo, SessionRecord, decode_data, encode_data
from sessionkit.stores.base import NewSession, SessionStore
from sessionkit.stores.memory import MemoryStore

logger = logging.getLogger("sessionkit")

_new_spec = tuple.__new__

CreateNow = Callable[[str, NewSession], list[SessionRecord]]


def creates_now(store: SessionStore) -> CreateNow | None:
    """``store.create`` without an await, for every login: MemoryStore's synchronous one,
    where ``store`` creates sessions and makes keys MemoryStore's own way (a subclass that
    overrides ``create`` or ``new_key`` is asked through them); ``None`` for any other store."""
    if not isinstance(store, MemoryStore):
        return None
    kind = type(store)
    own = kind.create is MemoryStore.create and kind.new_key is SessionStore.new_key
    return store.create_sync if own else None


class LoginCalls(ManagerParts):
    """``SessionManager``'s login call."""

    _create_now: CreateNow | None  # set by the manager: creates_now(its store)

    async def load_new_session(
        self,
        username: str,
        data: Any = None,
        *,
        timeout: float | None = None,
        client: ClientInfo | None = None,
    ) -> str:
        """Create a session at login.

        :param username: who logged in.
        :param data: JSON-serialisable data to keep with the session.
        :param timeout: this session's own idle timeout in seconds, instead of the manager's.
        :param client: the device that logged in, for a "your devices" page
            (:func:`sessionkit.starlette.client_info` builds it from a request).
        :return: the new session key (44 URL-safe characters, 264 random bits; 258 on a
            store that names a place in the key, see :meth:`SessionStore.new_key`).
        :raises TypeError: for a non-str username, data that is not JSON-serialisable or a
            client that is not a :class:`~sessionkit.ClientInfo`.
        :raises ValueError: for an empty username (or one with a lone surrogate) or a bad
            timeout (one not longer than ``warn_before`` included).
        :raises SessionLimitReached: with ``on_session_limit="refuse"``, if the user already
            has ``max_sessions_per_user`` live sessions (nothing changes).
        :raises StoreUnavailable: if the store cannot be reached; a session it may have
            stored is ended once it can (nobody holds its key).
        """
        if type(username) is not str or not username or not username.isascii():
            username = _username(username)  # (its checks, past the usual ASCII name's)
        options = self._options
        if timeout is None:
            idle = self._timeout
        else:
            idle = warns_in_time(seconds(timeout, "timeout"), options.warn_before, "timeout")
        if client is not None and not isinstance(client, ClientInfo):
            raise TypeError(f"client must be a ClientInfo, not {type(client).__name__}")
        text = None if data is None else encode_data(data)
        binding = self._binding  # (LoopBinding.current, inline)
        loop = binding.loop
        if loop is None or not loop.is_running():
            loop = binding.bind()
        store = self._store
        absolute = options.absolute
        # Built as the tuple it is, past NewSession's Python-level __new__: one is built per
        # login, and that call cost a login about 0.2 us (a tenth of its time).
        spec = _new_spec(
            NewSession,
            (
                username,
                idle,
                text,
                timeout is not None,  # fixed_timeout
                absolute,
                options.max_per_user,
                options.refuse,
                None if client is None else client.encode(),
            ),
        )
        create_now = self._create_now
        if create_now is not None:  # a MemoryStore's: no await, no call that can be lost
            key = fresh_key()
            evicted = create_now(key, spec)
        else:
            key = store.new_key(username)
            try:
                evicted = await store.create(key, spec)
            except BaseException:
                if store.unsettled:  # (as Expiry.changed does, inline on this frequent call)
                    self._expiry.settle_soon()
                raise
        expiry = self._expiry
        if absolute is not None and absolute <= idle:
            expiry.arm(key, loop.time(), absolute, True)
        elif expiry.warn_before is None:  # (Expiry.arm's usual case, inline)
            expiry.timers.arm(key, loop.time() + idle)
        else:
            expiry.arm(key, loop.time(), idle, False)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("session %s created", short_hash(key))
        if evicted or self._events.wants("session_created"):
            await self._report_login(key, username, text, evicted)
        return key

    async def _report_login(
        self, key: str, username: str, text: str | None, evicted: list[SessionRecord]
    ) -> None:
        steps = self._expiry.endings(evicted, EVICTED, notify=True)
        if self._events.wants("session_created"):
            event = SessionEvent(
                "session_created",
                key,
                hash_key(key),
                username,
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
            await self._expiry.end([record], LOGOUT, False)
