"""SessionManager: the seed package's API on asyncio, with its timers, events and lifecycle."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from types import TracebackType
from typing import Any, ClassVar, overload

import anyio

from sessionkit._binding import LoopBinding
from sessionkit._data import DataCalls
from sessionkit._expiry import Expiry
from sessionkit._fanout import Fanout
from sessionkit._hardening import BrowserCalls
from sessionkit._hot_path import answers_now
from sessionkit._new_sessions import LoginCalls, creates_now
from sessionkit._options import (
    MAX_SESSION_TIMEOUT,
    MIN_SESSION_TIMEOUT,
    Options,
)
from sessionkit._options import describe_key as _describe_key
from sessionkit._options import not_found as _not_found
from sessionkit._options import seconds as _seconds
from sessionkit._options import warns_in_time as _warns_in_time
from sessionkit._tasks import LoopTasks, UsesTasks
from sessionkit._users import UserCalls
from sessionkit.events import (
    DELETE_ALL,
    LOGOUT,
    Dispatcher,
    EventHandler,
    EventName,
    SessionEvent,
    SessionLimitPolicy,
    SocketBridge,
    check_event_name,
)
from sessionkit.exceptions import SessionRejected
from sessionkit.keys import MAX_KEY_LENGTH, hash_key, is_key_like
from sessionkit.models import SessionDetails
from sessionkit.stores.base import SessionStore
from sessionkit.stores.memory import MemoryStore

__all__ = ("MAX_SESSION_TIMEOUT", "MIN_SESSION_TIMEOUT", "SessionManager")

logger = logging.getLogger("sessionkit")


class SessionManager(LoginCalls, DataCalls, BrowserCalls, UserCalls):
    """Manages users' sessions: create one at login, check and restart it on every request,
    and let it end by itself after ``timeout`` idle seconds.

    Use it as an async context manager, or call :meth:`aclose` at shutdown::

        sm = SessionManager(timeout=15 * 60)
        async with sm:
            key = await sm.load_new_session("Luca")
            assert await sm.check_session_status(key)

    :param timeout: idle timeout in seconds (at least :data:`MIN_SESSION_TIMEOUT`).
    :param store: where sessions live; a new :class:`~sessionkit.stores.MemoryStore` if omitted.
    :param absolute_timeout: hard cap in seconds from creation, whatever the activity.
    :param max_sessions_per_user: on overflow the user's oldest session ends (``"evicted"``).
    :param warn_before: emit ``session_expiring`` this many seconds before an idle deadline;
        shorter than ``timeout`` (and than every timeout set later, see
        :meth:`set_session_timeout`).
    :param on_session_limit: what a login over ``max_sessions_per_user`` does: ``"evict"``
        ends the user's oldest session; ``"refuse"`` makes :meth:`load_new_session` raise
        :class:`~sessionkit.SessionLimitReached` and change nothing.
    :param renew_every: rotate the key of a session whose key is older than this (seconds,
        counted from its creation or last rotation) on the next request a guard of
        :mod:`sessionkit.starlette` checks (OWASP's renewal timeout; see
        :meth:`renew_if_due`); ``None`` (default): never.
    :param renew_grace: seconds a key replaced by a renewal keeps working, so that requests
        already in flight with it do not fail (less than ``renew_every``).
    :param on_suspicious: what a changed client (see :meth:`check_client`) does besides the
        ``session_suspicious`` event: ``"event"`` (default) nothing more; ``"end"`` also ends
        the session (reason ``"suspicious"``).
    :raises TypeError: for an option of the wrong type.
    :raises ValueError: for an option out of range.
    """

    _shared: ClassVar[dict[type[SessionManager], SessionManager]] = {}

    #: What :meth:`init_socket_reference` calls, ``socket_binder(manager, sio)``: importing
    #: :mod:`sessionkit.socketio` sets it to that adapter's
    #: :func:`~sessionkit.socketio.bind_socketio` (the manager never imports the adapter).
    socket_binder: ClassVar[Callable[[SessionManager, Any], None] | None] = None

    def __init__(
        self,
        *,
        timeout: float = 3000,  # seconds
        store: SessionStore | None = None,
        absolute_timeout: float | None = None,  # seconds
        max_sessions_per_user: int | None = None,
        warn_before: float | None = None,  # seconds
        on_session_limit: SessionLimitPolicy = "evict",
        on_suspicious: str = "event",
        renew_every: float | None = None,  # seconds
        renew_grace: float = 30,  # seconds
    ) -> None:
        self._timeout = _seconds(timeout, "timeout")
        self._options = options = Options.check(
            timeout=self._timeout,
            absolute_timeout=absolute_timeout,
            max_sessions_per_user=max_sessions_per_user,
            warn_before=warn_before,
            on_session_limit=on_session_limit,
            on_suspicious=on_suspicious,
            renew_every=renew_every,
            renew_grace=renew_grace,
        )
        if store is not None and not isinstance(store, SessionStore):
            raise TypeError(f"store must be a SessionStore, not {type(store).__name__}")
        self._store: SessionStore = store if store is not None else MemoryStore()
        # The hot path's answers without an await, bound once (MemoryStore's, where its own).
        self._check_now, self._touch_now, self._touch_get_now = answers_now(self._store)
        self._create_now = creates_now(self._store)
        self._events = Dispatcher()
        self._tasks = LoopTasks(bind=lambda: self._binding.current())
        self._fanout = Fanout(self._events, self._tasks)
        self._expiry = Expiry(
            self._store,
            self._tasks,
            self._fanout,
            timeout=self._timeout,
            warn_before=options.warn_before,
        )
        self._binding = LoopBinding(self._tasks.start, self._expiry.bind)

    @classmethod
    def shared(cls) -> SessionManager:
        """Return the process-wide manager (the seed's singleton), made with default options."""
        if cls not in SessionManager._shared:
            SessionManager._shared[cls] = cls()
        return SessionManager._shared[cls]

    @property
    def store(self) -> SessionStore:
        """The store this manager keeps its sessions in."""
        return self._store

    @property
    def absolute_timeout(self) -> float | None:
        """The hard cap in seconds from a session's creation, or ``None``."""
        return self._options.absolute

    @property
    def renew_every(self) -> float | None:
        """Seconds after which a guarded request renews a session's key, or ``None``."""
        return self._options.renew_every

    @property
    def warn_before(self) -> float | None:
        """Seconds before an idle deadline that ``session_expiring`` fires, or ``None``."""
        return self._options.warn_before

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> SessionManager:
        self._binding.bind()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop: wait for running event handlers and expiries, then cancel every timer.

        Sessions stay in the store; a manager used again re-arms their timers. Calls whose reply
        was lost are settled first (for at most twice the store's ``op_timeout``), so what they
        ended is reported before it returns. Called from an event handler, it does not wait for
        that handler's own task.
        """
        here = self._binding.here()
        if here and not self._tasks.inside():
            # Bounded, and finished even if our caller is cancelled meanwhile: what the lost
            # replies ended is reported before the manager's tasks stop.
            with anyio.CancelScope(shield=True):
                await self._expiry.settle_before_close(2 * self._store.op_timeout)
        await self._tasks.aclose()  # the bridge's queued disconnects included (a few seconds)
        if here:
            # Endings reported by the tasks just ended: acknowledged, or delivered again.
            with anyio.CancelScope(shield=True):
                await self._expiry.deliveries.flush(self._store.op_timeout)
        if self._fanout.bridge is not None:
            await self._fanout.bridge.aclose()
        self._expiry.close()
        if self._binding.loop is not None:
            await self._store.aclose()
        self._binding.forget()

    async def idle(self) -> None:
        """Wait until the manager has no background work running: no expiry being claimed or
        warned about (nor a claim waiting to be tried again after a failure), no call that lost
        its reply being settled, and no event handler or Socket.IO push running in the
        manager's own tasks. Work still to come is not waited for: a deadline not yet
        reached, the next periodic sweep.

        Tests use it to check that something did *not* happen, without sleeping::

            await sm.idle()
            assert deleted == [key]  # a second report would have come by now

        It returns at once on a manager that is closed or not yet used. While the store is
        down it waits for the store to answer again; bound it with ``asyncio.timeout()``.

        :raises RuntimeError: if called from one of the manager's own tasks (an event
            handler it runs), which would wait for itself.
        """
        if self._binding.here():
            await self._tasks.idle()

    # -- events ------------------------------------------------------------------------------

    @overload
    def on(self, event: EventName) -> Callable[[EventHandler], EventHandler]: ...
    @overload
    def on(self, event: EventName, handler: EventHandler) -> EventHandler: ...

    def on(
        self, event: EventName, handler: EventHandler | None = None
    ) -> EventHandler | Callable[[EventHandler], EventHandler]:
        """Subscribe ``handler`` (a function or coroutine function taking a
        :class:`~sessionkit.SessionEvent`) to ``event``; without a handler, return a decorator::

            @sm.on("session_expired")
            async def expired(event: SessionEvent) -> None:
                print(event.username, "timed out")

        :raises ValueError: for an event name not in :data:`~sessionkit.EVENTS`.
        """
        if handler is None:

            def decorator(func: EventHandler) -> EventHandler:
                self._events.add(event, func)
                return func

            check_event_name(event)
            return decorator
        self._events.add(event, handler)
        return handler

    def off(self, event: EventName, handler: EventHandler) -> None:
        """Unsubscribe ``handler`` from ``event``.

        :raises ValueError: for an unknown event name, or a handler not subscribed to it.
        """
        self._events.remove(event, handler)

    # -- settings ----------------------------------------------------------------------------

    def set_session_timeout(self, seconds: float) -> bool:
        """Set the idle timeout for sessions created or restarted from now on.

        :return: ``True``.
        :raises TypeError: if ``seconds`` is not a real number (or is a bool).
        :raises ValueError: if it is NaN, below :data:`MIN_SESSION_TIMEOUT` or above
            :data:`MAX_SESSION_TIMEOUT`, or not longer than ``warn_before``; the timeout
            is then unchanged.
        """
        self._timeout = _warns_in_time(_seconds(seconds, "timeout"), self.warn_before, "timeout")
        self._expiry.timeout_set(self._timeout)
        return True

    def get_session_timeout(self) -> float:
        """Return the idle timeout in seconds."""
        return self._timeout

    def init_socket_reference(self, sio: Any) -> bool:
        """Bind a ``socketio.AsyncServer`` with the defaults of
        :func:`sessionkit.socketio.bind_socketio` (the seed's call): the manager then pushes
        ``logout`` to each session's room. The binding is the adapter's, registered in
        :attr:`socket_binder` when :mod:`sessionkit.socketio` is imported (this imports it by
        name if nothing has: the manager's module never imports the adapter)::

            sm.init_socket_reference(sio)  # the same as bind_socketio(sm, sio)

        :return: ``True``.
        :raises TypeError: if ``sio`` is not a ``socketio.AsyncServer``.
        :raises ImportError: if python-socketio is not installed (the ``socketio`` extra).
        """
        if SessionManager.socket_binder is None:
            importlib.import_module("sessionkit.socketio")  # registers its binder
        binder = SessionManager.socket_binder
        assert binder is not None
        binder(self, sio)
        return True

    def get_socket_reference(self) -> Any:
        """Return the bound ``socketio.AsyncServer``, or ``None``."""
        return self._fanout.server

    def attach_socket_bridge(self, sio: Any, bridge: SocketBridge) -> None:
        """Hand the logout push to an adapter: :func:`sessionkit.socketio.bind_socketio` calls
        this; call it yourself only to push through something other than that adapter.

        :param sio: the server :meth:`get_socket_reference` returns from now on.
        :param bridge: what the manager calls when a session must reach its sockets.
        """
        self._fanout.attach(sio, bridge)
        self._expiry.sockets_attached()
        if isinstance(bridge, UsesTasks):  # sessionkit's own adapter: its tasks are ours
            bridge.bind_tasks(self._tasks)

    # -- the seed's calls --------------------------------------------------------------------

    async def restart_session_timer(self, key: str) -> bool:
        """Restart a session's idle timer: call it on every request the session makes.

        :return: ``True``.
        :raises SessionNotFound: if ``key`` names no live session.
        """
        loop = self._binding.loop
        if loop is None or not loop.is_running():  # see check_session_status
            loop = self._binding.bind()
        remaining = None
        if isinstance(key, str) and 0 < len(key) <= MAX_KEY_LENGTH:  # is_key_like, inline
            touch_now = self._touch_now
            if touch_now:
                remaining = touch_now(key, self._timeout)
            else:
                remaining = await self._store.touch(key, self._timeout)
        if remaining is None:
            raise _not_found(key)
        if self._expiry.exact:
            self._expiry.restarted(key, loop.time() + remaining)
        return True

    async def touch_session(self, key: str) -> SessionDetails:
        """Restart a session's idle timer and return its details, in one store call (one round
        trip on Redis): what :mod:`sessionkit.starlette` does on every guarded request.

        :return: the session's details after the restart.
        :raises SessionNotFound: if ``key`` names no live session.
        :raises StoreUnavailable: if the store cannot be reached.
        """
        loop = self._binding.loop
        if loop is None or not loop.is_running():  # see check_session_status
            loop = self._binding.bind()
        record, now = None, self._touch_get_now
        if isinstance(key, str) and 0 < len(key) <= MAX_KEY_LENGTH:  # is_key_like, inline
            # A MemoryStore's record without its digest: details() computes the id if read.
            record = (
                now(key, self._timeout, False)
                if now
                else await self._store.touch_get(key, self._timeout)
            )
        if record is None:
            raise _not_found(key)
        if self._expiry.exact:
            self._expiry.restarted(key, loop.time() + record.remaining)
        return record.details(key)

    async def delete_session(self, key: str) -> bool:
        """End a session at logout (reason ``"logout"``).

        :return: ``True``, or ``False`` if ``key`` names no live session.
        """
        self._binding.bind()
        record = await self._expiry.changed(self._store.delete(key)) if is_key_like(key) else None
        if record is None:
            return False
        await self._expiry.end([record], LOGOUT, False)
        return True

    async def delete_all_sessions(self) -> int:
        """End every session (reason ``"delete_all"``) and tell each client to log out.

        :return: how many sessions ended. Cancelled half-way, the sessions already ended are
            still reported, from the manager's own task.
        """
        self._binding.bind()
        records = await self._expiry.changed(self._store.delete_all())
        await self._expiry.end(records, DELETE_ALL, True)
        return len(records)

    async def send_logout_message(self, key: str) -> bool:
        """Tell the client of ``key`` to log out (``notify_client_to_logout``, reason
        ``"logout"``); the session itself lives on.

        :return: ``True`` if a Socket.IO server is bound to push the message, else ``False``.
        """
        self._binding.bind()
        if not is_key_like(key):
            return False
        record = await self._store.get(key)
        username = None if record is None else record.username
        await self._fanout.run(self._fanout.notices(key, hash_key(key), username, LOGOUT, record))
        return self._fanout.server is not None

    async def check_session_status(self, key: str) -> bool:
        """Tell whether ``key`` names a live session; call it before serving each request.

        A rejected key also fires an ``error`` event carrying :class:`SessionRejected`.

        :return: ``True`` if live, else ``False``.
        :raises StoreUnavailable: if the store cannot be read (never a guess either way).
        """
        # Not asyncio.get_running_loop(): it makes a system call (getpid) on every call, a
        # third of a check (LoopBinding.current, inline).
        loop = self._binding.loop
        if loop is None or not loop.is_running():
            self._binding.bind()
        if isinstance(key, str) and 0 < len(key) <= MAX_KEY_LENGTH:  # is_key_like, inline
            check_now = self._check_now
            left = check_now(key) if check_now else await self._store.check(key)
            if left is not None:
                return True
        logger.info("session rejected: %s", _describe_key(key))
        if self._events.wants("error"):
            digest = hash_key(key if isinstance(key, str) else repr(key))
            rejected = SessionRejected(
                f"session rejected: no live session for {_describe_key(key)}"
            )
            key_or_none = key if isinstance(key, str) else None
            await self._events.emit(SessionEvent("error", key_or_none, digest, error=rejected))
        return False

    async def get_username_from_session_key(self, key: str) -> str | None:
        """Return the username of a live session, or ``None``."""
        self._binding.bind()
        record = await self._store.get(key) if is_key_like(key) else None
        return None if record is None else record.username

    async def get_logged_users(self) -> list[str]:
        """Return one username per live session, oldest session first."""
        self._binding.bind()
        return await self._store.usernames()

    # -- beyond the seed ---------------------------------------------------------------------

    async def count_sessions(self) -> int:
        """Count the live sessions."""
        self._binding.bind()
        return await self._store.count()

    # -- internals ---------------------------------------------------------------------------
