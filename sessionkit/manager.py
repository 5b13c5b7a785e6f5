"""SessionManager: the seed package's API on asyncio, with its timers, events and lifecycle."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Coroutine, Iterable
from datetime import UTC, datetime
from numbers import Real
from types import TracebackType
from typing import Any, ClassVar, Protocol, overload

import anyio
from anyio.abc import TaskGroup

from sessionkit._timers import DeadlineTimers
from sessionkit.events import Dispatcher, EventHandler, SessionEvent, check_event_name
from sessionkit.exceptions import SessionNotFound, SessionRejected
from sessionkit.keys import hash_key, is_key_like, new_key, short_hash
from sessionkit.models import SessionDetails, SessionRecord, decode_data, encode_data
from sessionkit.stores.base import SessionStore
from sessionkit.stores.memory import MemoryStore

__all__ = ("MIN_SESSION_TIMEOUT", "SessionManager", "SocketBridge")

logger = logging.getLogger("sessionkit")

MIN_SESSION_TIMEOUT = 2  # seconds, as in the seed
_BATCH = 256  # expired sessions claimed per store call
_SLICE = 0.005  # seconds of event work before yielding to the loop
_RETRY = 1.0  # seconds before claiming again after the store failed


class SocketBridge(Protocol):
    """What the manager calls when a session must reach its clients' sockets.

    :func:`sessionkit.socketio.bind_socketio` builds one; attach your own with
    :meth:`SessionManager.attach_socket_bridge` to push through another transport. A bridge
    that raises is reported as an ``error`` event; the session's ending goes on. A bridge
    that queues work behind its pushes may also define ``async def aclose(self) -> None``:
    :meth:`SessionManager.aclose` awaits it once the manager's own tasks have ended.
    """

    async def logout(self, key_hash: str, reason: str) -> None:
        """Tell the sockets of the session with SHA-256 ``key_hash`` to log out."""

    async def expiring(self, key_hash: str, remaining: float) -> None:
        """Warn the session's sockets that it ends in ``remaining`` seconds."""

    async def rotated(self, old_hash: str, new_hash: str, new_key: str) -> None:
        """Move the session's sockets to its new key (``new_key`` lets the adapter re-key
        what it keeps per socket: a hash cannot be turned back into a key)."""


def _seconds(value: object, name: str, minimum: float = MIN_SESSION_TIMEOUT) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    seconds = float(value)
    if math.isnan(seconds) or math.isinf(seconds) or seconds < minimum:
        raise ValueError(f"{name} must be a finite number of seconds >= {minimum}, not {value!r}")
    return seconds


def _username(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"username must be a str, not {type(value).__name__}")
    if not value:
        raise ValueError("username must not be empty")
    return value


def _name(key: object) -> str:
    # How messages and logs name a key: never the key itself.
    return f"key {short_hash(key)}" if isinstance(key, str) else f"a {type(key).__name__} key"


def _missing(key: object) -> SessionNotFound:
    return SessionNotFound(f"no live session for {_name(key)}")


def _event(
    name: str, key: str | None, record: SessionRecord, reason: str | None = None
) -> SessionEvent:
    # Each event decodes its own copy of the data: one handler cannot change another's.
    created = datetime.fromtimestamp(record.created_at, UTC)
    data = decode_data(record.data)
    return SessionEvent(
        name, key, record.key_hash, record.username, reason, data, created_at=created
    )


class SessionManager:
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
    :param warn_before: emit ``session_expiring`` this many seconds before an idle deadline.
    :raises TypeError: for an option of the wrong type.
    :raises ValueError: for an option out of range.
    """

    _shared: ClassVar[dict[type[SessionManager], SessionManager]] = {}

    def __init__(
        self,
        *,
        timeout: float = 3000,  # seconds
        store: SessionStore | None = None,
        absolute_timeout: float | None = None,  # seconds
        max_sessions_per_user: int | None = None,
        warn_before: float | None = None,  # seconds
    ) -> None:
        self._timeout = _seconds(timeout, "timeout")
        self._longest = self._timeout  # the longest idle timeout this manager ever applied
        self._absolute = (
            None if absolute_timeout is None else _seconds(absolute_timeout, "absolute_timeout")
        )
        if max_sessions_per_user is not None:
            if isinstance(max_sessions_per_user, bool) or not isinstance(
                max_sessions_per_user, int
            ):
                raise TypeError("max_sessions_per_user must be an int")
            if max_sessions_per_user < 1:
                raise ValueError("max_sessions_per_user must be at least 1")
        self._max_per_user = max_sessions_per_user
        self._warn_before = None if warn_before is None else _seconds(warn_before, "warn_before", 0)
        if store is not None and not isinstance(store, SessionStore):
            raise TypeError(f"store must be a SessionStore, not {type(store).__name__}")
        self._store: SessionStore = store if store is not None else MemoryStore()
        self._events = Dispatcher()
        # Exact timers (a map from key to bucket) only where a restart may need an earlier one.
        self._timers = DeadlineTimers(self._on_due, exact=self._warn_before is not None)
        self._warned: set[str] = set()  # sessions told of their coming idle deadline
        self._due: list[str] = []
        self._draining = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task_group: TaskGroup | None = None
        self._runner: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._backlog: list[tuple[Callable[..., Coroutine[Any, Any, None]], tuple[Any, ...]]] = []
        self._socket: Any = None
        self._bridge: SocketBridge | None = None

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
    def warn_before(self) -> float | None:
        """Seconds before an idle deadline that ``session_expiring`` fires, or ``None``."""
        return self._warn_before

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> SessionManager:
        self._bind()
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

        Sessions stay in the store; a manager used again re-arms their timers.
        """
        runner, self._runner = self._runner, None
        if runner is not None and self._loop is asyncio.get_running_loop():
            self._stop.set()
            await runner
        # A bridge may queue work behind its pushes (the Socket.IO adapter's disconnects):
        # the bridge's own aclose() ends it, so none of it outlives the manager.
        close_bridge = getattr(self._bridge, "aclose", None)
        if close_bridge is not None:
            await close_bridge()
        self._timers.cancel_handles()
        self._loop = None

    def _bind(self) -> asyncio.AbstractEventLoop:
        # Managers made at import time (or shared()) meet their loop at first use, and may
        # meet several loops one after another: the timers follow to the new one.
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop = loop
            self._timers.bind(loop)
            for key in self._due:  # fired, but never claimed: a closed manager or a dead loop
                self._timers.arm(key, loop.time())
            self._due.clear()
            self._draining = False
            self._backlog.clear()
            self._task_group = None
            self._stop = asyncio.Event()
            self._runner = loop.create_task(self._run(), name="sessionkit")
            interval = self._store.sweep_interval
            if interval:
                self._spawn(self._sweep_forever, interval)
        return loop

    async def _run(self) -> None:
        # The manager's own task owns its task group, so that it can be opened and closed from
        # different tasks (a pytest fixture, a framework's startup and shutdown hooks).
        try:
            async with anyio.create_task_group() as task_group:
                self._task_group = task_group
                for func, args in self._backlog:
                    task_group.start_soon(func, *args)
                self._backlog.clear()
                await self._stop.wait()
        finally:
            self._task_group = None

    def _spawn(self, func: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> None:
        if self._task_group is not None:
            self._task_group.start_soon(func, *args)
        elif self._runner is not None:
            self._backlog.append((func, args))  # the runner starts these when it begins

    # -- events ------------------------------------------------------------------------------

    @overload
    def on(self, event: str) -> Callable[[EventHandler], EventHandler]: ...
    @overload
    def on(self, event: str, handler: EventHandler) -> EventHandler: ...

    def on(
        self, event: str, handler: EventHandler | None = None
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

    def off(self, event: str, handler: EventHandler) -> None:
        """Unsubscribe ``handler`` from ``event``.

        :raises ValueError: for an unknown event name, or a handler not subscribed to it.
        """
        self._events.remove(event, handler)

    # -- settings ----------------------------------------------------------------------------

    def set_session_timeout(self, seconds: float) -> bool:
        """Set the idle timeout for sessions created or restarted from now on.

        :return: ``True``.
        :raises TypeError: if ``seconds`` is not a real number (or is a bool).
        :raises ValueError: if it is NaN, infinite or below :data:`MIN_SESSION_TIMEOUT`.
        """
        self._timeout = _seconds(seconds, "timeout")
        self._longest = max(self._longest, self._timeout)
        if self._timeout < self._longest:
            self._timers.make_exact()  # a restart may now bring a deadline earlier
        return True

    def get_session_timeout(self) -> float:
        """Return the idle timeout in seconds."""
        return self._timeout

    def init_socket_reference(self, sio: Any) -> bool:
        """Bind a ``socketio.AsyncServer``: the manager then pushes ``logout`` to each session's
        room (see :func:`sessionkit.socketio.bind_socketio` for the options).

        :return: ``True``.
        :raises TypeError: if ``sio`` is not a ``socketio.AsyncServer``.
        """
        try:
            from sessionkit.socketio import bind_socketio
        except ImportError as exc:
            raise TypeError(
                "init_socket_reference needs a socketio.AsyncServer; "
                "install python-socketio with: pip install 'sessionkit[socketio]'"
            ) from exc
        bind_socketio(self, sio)
        return True

    def get_socket_reference(self) -> Any:
        """Return the bound ``socketio.AsyncServer``, or ``None``."""
        return self._socket

    def attach_socket_bridge(self, sio: Any, bridge: SocketBridge) -> None:
        """Hand the logout push to an adapter: :func:`sessionkit.socketio.bind_socketio` calls
        this; call it yourself only to push through something other than that adapter.

        :param sio: the server :meth:`get_socket_reference` returns from now on.
        :param bridge: what the manager calls when a session must reach its sockets.
        """
        self._socket = sio
        self._bridge = bridge

    # -- the seed's calls --------------------------------------------------------------------

    async def load_new_session(
        self, username: str, data: Any = None, *, timeout: float | None = None
    ) -> str:
        """Create a session at login.

        :param username: who logged in.
        :param data: JSON-serialisable data to keep with the session.
        :param timeout: this session's own idle timeout in seconds, instead of the manager's.
        :return: the new session key (44 URL-safe characters, 264 random bits).
        :raises TypeError: for a non-str username or data that is not JSON-serialisable.
        :raises ValueError: for an empty username or a bad timeout.
        :raises StoreUnavailable: if the store cannot be reached.
        """
        username = _username(username)
        seconds = self._timeout if timeout is None else _seconds(timeout, "timeout")
        text = encode_data(data)
        loop = self._bind()
        key = new_key()
        evicted = await self._store.create(
            key,
            username,
            text,
            timeout=seconds,
            fixed_timeout=timeout is not None,
            absolute_timeout=self._absolute,
            max_per_user=self._max_per_user,
        )
        absolute = self._absolute
        capped = absolute is not None and absolute <= seconds
        self._schedule(key, loop.time(), min(seconds, absolute or seconds), capped)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("session %s created", short_hash(key))
        if evicted:
            await self._end(evicted, "evicted", notify=True)
        if self._events.wants("session_created"):
            created = datetime.now(UTC)
            data = decode_data(text)
            event = SessionEvent(
                "session_created", key, hash_key(key), username, data=data, created_at=created
            )
            await self._events.emit(event)
        return key

    async def set_session_data(self, key: str, data: Any) -> bool:
        """Replace a session's data with a copy of ``data``.

        :return: ``True``.
        :raises SessionNotFound: if ``key`` names no live session.
        :raises TypeError: if ``data`` is not JSON-serialisable.
        """
        text = encode_data(data)
        self._bind()
        if not is_key_like(key) or not await self._store.set_data(key, text):
            raise _missing(key)
        return True

    async def get_session_data(self, key: str) -> Any:
        """Return a copy of a session's data (``None`` if never set).

        :raises SessionNotFound: if ``key`` names no live session.
        """
        return decode_data((await self._record(key)).data)

    async def restart_session_timer(self, key: str) -> bool:
        """Restart a session's idle timer: call it on every request the session makes.

        :return: ``True``.
        :raises SessionNotFound: if ``key`` names no live session.
        """
        loop = self._bind()
        remaining = await self._store.touch(key, self._timeout) if is_key_like(key) else None
        if remaining is None:
            raise _missing(key)
        self._restarted(key, loop, remaining)
        return True

    async def touch_session(self, key: str) -> SessionDetails:
        """Restart a session's idle timer and return its details, in one store call (one round
        trip on Redis): what :mod:`sessionkit.starlette` does on every guarded request.

        :return: the session's details after the restart.
        :raises SessionNotFound: if ``key`` names no live session.
        :raises StoreUnavailable: if the store cannot be reached.
        """
        loop = self._bind()
        record = await self._store.touch_get(key, self._timeout) if is_key_like(key) else None
        if record is None:
            raise _missing(key)
        self._restarted(key, loop, record.remaining)
        return record.details(key)

    def _restarted(self, key: str, loop: asyncio.AbstractEventLoop, remaining: float) -> None:
        warn = self._warn_before
        if warn is None:
            # A restart only moves a deadline later, so the session's timer (armed at or
            # before its old deadline) still fires in time and the store re-arms it then: no
            # timer lookup on this hot path. Only once the idle timeout has been shortened
            # can a restart bring a deadline earlier than where its timer stands.
            if self._timeout < self._longest:
                self._timers.arm_by(key, loop.time() + remaining)
        else:
            self._warned.discard(key)
            self._timers.arm_by(key, loop.time() + remaining - warn)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("session %s restarted", short_hash(key))

    async def get_session_details(self, key: str) -> SessionDetails:
        """Return a session's username, times and data.

        :raises SessionNotFound: if ``key`` names no live session.
        """
        return (await self._record(key)).details(key)

    async def delete_session(self, key: str) -> bool:
        """End a session at logout (reason ``"logout"``).

        :return: ``True``, or ``False`` if ``key`` names no live session.
        """
        self._bind()
        record = await self._store.delete(key) if is_key_like(key) else None
        if record is None:
            return False
        await self._end([record], "logout", notify=False)
        return True

    async def delete_all_sessions(self) -> int:
        """End every session (reason ``"delete_all"``) and tell each client to log out.

        :return: how many sessions ended.
        """
        self._bind()
        records = await self._store.delete_all()
        await self._end(records, "delete_all", notify=True)
        return len(records)

    async def send_logout_message(self, key: str) -> bool:
        """Tell the client of ``key`` to log out (``notify_client_to_logout``, reason
        ``"logout"``); the session itself lives on.

        :return: ``True`` if a Socket.IO server is bound to push the message, else ``False``.
        """
        self._bind()
        if not is_key_like(key):
            return False
        record = await self._store.get(key)
        username = None if record is None else record.username
        await self._notify(key, hash_key(key), username, "logout", record)
        return self._socket is not None

    async def check_session_status(self, key: str) -> bool:
        """Tell whether ``key`` names a live session; call it before serving each request.

        A rejected key also fires an ``error`` event carrying :class:`SessionRejected`.

        :return: ``True`` if live, else ``False``.
        :raises StoreUnavailable: if the store cannot be read (never a guess either way).
        """
        self._bind()
        if is_key_like(key) and await self._store.check(key) is not None:
            return True
        logger.info("session rejected: %s", _name(key))
        if self._events.wants("error"):
            digest = hash_key(key if isinstance(key, str) else repr(key))
            rejected = SessionRejected(f"session rejected: no live session for {_name(key)}")
            key_or_none = key if isinstance(key, str) else None
            await self._events.emit(SessionEvent("error", key_or_none, digest, error=rejected))
        return False

    async def get_username_from_session_key(self, key: str) -> str | None:
        """Return the username of a live session, or ``None``."""
        self._bind()
        record = await self._store.get(key) if is_key_like(key) else None
        return None if record is None else record.username

    async def get_logged_users(self) -> list[str]:
        """Return one username per live session, oldest session first."""
        self._bind()
        return await self._store.usernames()

    # -- beyond the seed ---------------------------------------------------------------------

    async def rotate_session_key(self, key: str) -> str:
        """Give a session a new key (do it when privileges change, against fixation).

        The session keeps its username, data and times; the old key stops working at once and
        a bound Socket.IO server moves the old room's sockets to the new room.

        :return: the new key.
        :raises SessionNotFound: if ``key`` names no live session.
        """
        loop = self._bind()
        fresh = new_key()
        record = await self._store.rotate(key, fresh) if is_key_like(key) else None
        if record is None:
            raise _missing(key)
        self._timers.disarm(key)
        self._warned.discard(key)
        self._schedule(fresh, loop.time(), record.remaining, record.reached_absolute_timeout)
        if self._bridge is not None:
            await self._call_bridge(self._bridge.rotated(hash_key(key), record.key_hash, fresh))
        if self._events.wants("session_rotated"):
            await self._events.emit(_event("session_rotated", fresh, record))
        return fresh

    async def get_user_sessions(self, username: str) -> list[SessionDetails]:
        """List a user's live sessions, oldest first.

        On a store that keeps keys hashed (``RedisStore``), ``key`` holds each key's hash.
        """
        self._bind()
        records = await self._store.user_sessions(_username(username))
        return [r.details(r.key if r.key is not None else r.key_hash) for r in records]

    async def delete_user_sessions(self, username: str) -> int:
        """Log a user out everywhere (reason ``"logout_all"``), telling each client.

        :return: how many sessions ended.
        """
        self._bind()
        records = await self._store.delete_user(_username(username))
        await self._end(records, "logout_all", notify=True)
        return len(records)

    async def count_sessions(self) -> int:
        """Count the live sessions."""
        self._bind()
        return await self._store.count()

    # -- internals ---------------------------------------------------------------------------

    async def _record(self, key: object) -> SessionRecord:
        self._bind()
        record = await self._store.get(key) if is_key_like(key) else None
        if record is None:
            raise _missing(key)
        return record

    def _schedule(self, key: str, now: float, remaining: float, capped: bool) -> None:
        # With warn_before, an idle deadline is armed early, at its warning time.
        warn = self._warn_before
        if warn is None or capped or key in self._warned:
            self._timers.arm(key, now + remaining)
        else:
            self._timers.arm(key, now + remaining - warn)

    def _on_due(self, keys: list[str]) -> None:
        self._due.extend(keys)
        if not self._draining and self._runner is not None:
            self._draining = True
            self._spawn(self._drain)

    async def _drain(self) -> None:
        try:
            while self._due:
                batch = self._due[:_BATCH]
                del self._due[:_BATCH]
                await self._expire(batch)
                await anyio.lowlevel.checkpoint()
        finally:
            self._draining = False

    async def _expire(self, keys: list[str]) -> None:
        loop = self._bind()
        try:
            claimed, pending = await self._store.claim_expired(keys)
        except Exception as exc:
            retry = loop.time() + _RETRY
            for key in keys:
                self._timers.arm(key, retry)
            await self._events.report(exc, "claiming expired sessions failed; retrying")
            return
        now = loop.time()
        warn = self._warn_before
        warnings = []
        for key, remaining, capped in pending:
            if warn is not None and not capped:
                if remaining > warn:
                    self._warned.discard(key)
                elif key not in self._warned:
                    self._warned.add(key)
                    warnings.append((key, remaining))
            self._schedule(key, now, remaining, capped)
        for key, remaining in warnings:
            await self._warn(key, remaining)
        await self._end(claimed, None, notify=True)

    async def _warn(self, key: str, remaining: float) -> None:
        if self._bridge is not None:
            await self._call_bridge(self._bridge.expiring(hash_key(key), remaining))
        if self._events.wants("session_expiring"):
            record = await self._store.get(key)
            if record is not None:
                await self._events.emit(_event("session_expiring", key, record))

    async def _sweep_forever(self, interval: float) -> None:
        # Stops when the manager closes, however early: it waits on the stop signal, not on a
        # cancel scope that aclose() could miss if it ran before this task began.
        stop = self._stop
        while not stop.is_set():
            try:
                records = await self._store.sweep()
            except Exception as exc:
                await self._events.report(exc, "sweeping expired sessions failed")
            else:
                await self._end(records, None, notify=True)
            with anyio.move_on_after(interval):
                await stop.wait()

    async def _end(
        self, records: Iterable[SessionRecord], reason: str | None, *, notify: bool
    ) -> None:
        # One ending per session: only the caller whose store call removed it gets here.
        # ``reason=None`` means it timed out, idle or absolute, whichever came first.
        loop = asyncio.get_running_loop()
        started = loop.time()
        events = self._events
        debug = logger.isEnabledFor(logging.DEBUG)
        for record in records:
            key = record.key
            if key is not None:
                self._timers.disarm(key)
                if self._warned:
                    self._warned.discard(key)
            why = reason or ("absolute_timeout" if record.reached_absolute_timeout else "expired")
            if debug:
                logger.debug("session %s ended: %s", record.key_hash[:12], why)
            if events.wants("session_deleted"):
                await events.emit(_event("session_deleted", key, record, why))
            if reason is None and events.wants("session_expired"):
                await events.emit(_event("session_expired", key, record, why))
            if notify:
                await self._notify(key, record.key_hash, record.username, why, record)
            if loop.time() - started > _SLICE:
                await asyncio.sleep(0)  # a burst of endings must not stall the loop
                started = loop.time()

    async def _notify(
        self,
        key: str | None,
        key_hash: str,
        username: str | None,
        reason: str,
        record: SessionRecord | None,
    ) -> None:
        if self._events.wants("notify_client_to_logout"):
            if record is None:
                event = SessionEvent("notify_client_to_logout", key, key_hash, username, reason)
            else:
                event = _event("notify_client_to_logout", key, record, reason)
            await self._events.emit(event)
        if self._bridge is not None:
            await self._call_bridge(self._bridge.logout(key_hash, reason))

    async def _call_bridge(self, call: Coroutine[Any, Any, None]) -> None:
        try:
            await call
        except Exception as exc:
            await self._events.report(exc, "Socket.IO push failed")
