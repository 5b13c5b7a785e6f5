"""The Socket.IO adapter: the server pushes ``logout`` to a user's browser when a session ends.

Each client socket joins a room named after its session key's hash; the manager then emits
``logout`` to that room whenever the session ends, for any reason (expiry, eviction, "log out
everywhere", ``delete_session``), and on
:meth:`~sessionkit.SessionManager.send_logout_message`, and disconnects its sockets::

    import socketio
    from sessionkit import SessionManager
    from sessionkit.socketio import bind_socketio

    sm = SessionManager(timeout=15 * 60)
    sio = socketio.AsyncServer(async_mode="asgi")
    bind_socketio(sm, sio)  # or: sm.init_socket_reference(sio)

    # in the browser: io({auth: {session_key: key}}).on("logout", showLoginForm)

In cookie mode, ``bind_socketio(sm, sio, cookie=SessionCookie())``, a browser that holds the
session in an ``HttpOnly`` cookie connects with a bare ``io()``: the handshake's cookie
authenticates it, and page scripts never see the key.

Install with ``pip install 'sessionkit[socketio]'``.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import weakref
from collections import deque
from typing import Any

try:
    import socketio
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "sessionkit.socketio needs python-socketio: pip install 'sessionkit[socketio]'"
    ) from exc

from engineio import packet as eio_packet
from socketio import packet as sio_packet
from socketio.async_manager import AsyncManager

from sessionkit._socketio_compat import check
from sessionkit._socketio_cookie import check_cookie_mode, cookie_key, guard_handshakes
from sessionkit._socketio_rooms import index_rooms, watch_closing
from sessionkit._tasks import LoopTasks
from sessionkit.cookies import SessionCookie
from sessionkit.events import LOGOUT, Reason, SessionEvent
from sessionkit.exceptions import SessionNotFound
from sessionkit.keys import hash_key, is_key_like, redact, short_hash
from sessionkit.manager import SessionManager

check()  # what the adapter uses of python-socketio beyond its documented API is still there

__all__ = (
    "KeyRedactingFilter",
    "bind_socketio",
    "index_rooms",
    "redact",
    "room_for",
    "watch_closing",
)

logger = logging.getLogger("sessionkit")

ROOM_PREFIX = "session:"
_SESSION_FIELD = "sessionkit.key"  # where a socket's key lives, in its server-side session
_REFUSED = "a live session key is required"
_AFTER_BATCH = 64  # ended sessions whose sockets one step of the after-logout task handles
_QUIET = 0.02  # seconds without a logout before the disconnects start: the burst is over
# Seconds an unbroken stream of logouts may hold the disconnects back, at most: a burst on a
# loaded machine can take seconds, and its logouts come first; only a server ending sessions
# on every turn of its loop for this long makes the disconnects cut in.
_AFTER_WAIT = 10.0
_CLOSE_WAIT = 5.0  # seconds aclose() lets the queued disconnects finish before cancelling them
# freeze_gc: a burst of at least _FREEZE_AFTER connections, then _FREEZE_QUIET seconds without
# one, freezes the process's objects; a quarter of those sockets gone, or _THAW_AFTER seconds,
# thaws them, so that what departed sockets left behind is collected.
_FREEZE_AFTER = 1_000
_FREEZE_QUIET = 1.0  # seconds
_THAW_SHARE = 0.25
_THAW_AFTER = 600.0  # seconds
# ... and the 256th logout queued in a burst freezes again: the objects made since the sockets
# connected (mostly theirs: engine.io makes new ones per message) are then skipped too.
_FREEZE_BURST = 256


# Each manager's current bridge: binding again replaces its session_deleted handler.
_bound: weakref.WeakKeyDictionary[SessionManager, _Bridge] = weakref.WeakKeyDictionary()


def room_for(key: str) -> str:
    """Name the Socket.IO room of a session without revealing its key.

    :param key: a session key.
    :return: ``"session:"`` followed by the SHA-256 hex digest of the key.

    Example::

        await sio.emit("notice", {"text": "hello"}, room=room_for(key))
    """
    return ROOM_PREFIX + hash_key(key)


class KeyRedactingFilter(logging.Filter):
    """A logging filter that blanks session keys out of a record's message.

    python-socketio and engine.io log raw packets at INFO/DEBUG, among them the connect packet
    with its ``auth`` payload and the seed's ``session_key`` event. :func:`bind_socketio`
    installs one of these on the bound server's loggers; install it on a handler to cover
    other loggers too.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite ``record`` in place when its message holds something key-shaped.

        :param record: the record being logged.
        :return: ``True``: the record is always kept.
        """
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the logging module's to report
            return True
        redacted = redact(message)
        if redacted != message:
            record.msg = redacted
            record.args = None
        return True


def _install_filter(target: Any) -> None:
    if isinstance(target, logging.Logger) and not any(
        isinstance(f, KeyRedactingFilter) for f in target.filters
    ):
        target.addFilter(KeyRedactingFilter())


class _Bridge:
    """What the manager calls when one of its sessions must reach its sockets."""

    cookie: SessionCookie | None = None  # cookie mode: a handshake without auth reads it
    freeze_gc = False

    def __init__(
        self,
        sm: SessionManager,
        sio: Any,
        namespace: str,
        *,
        require_auth: bool,
        disconnect_on_logout: bool,
    ) -> None:
        self.sm = sm
        self.sio = sio
        self.namespace = namespace
        self.require_auth = require_auth
        self.disconnect_on_logout = disconnect_on_logout
        # Rooms of ended sessions whose sockets still have to be disconnected and the room
        # closed: that work waits until the logouts due at the same time have all gone out.
        self._after: deque[str] = deque()
        self._told: set[str] = set()  # the rooms in _after: told ``logout`` already
        self._logouts = 0  # logouts sent so far: the after-logout job watches it move
        self._packets: dict[Reason, list[Any]] = {}  # reason -> the encoded ``logout`` packet
        # The manager's task owner: the after-logout job, and the releasing of the sockets of
        # a room closed on another process, are its jobs (see bind_tasks).
        self._tasks: LoopTasks | None = None
        # freeze_gc: connections since the last freeze, when the last came, how many sockets
        # were connected at the freeze (0: not frozen) and when, and the timer that tends it.
        self._connects = 0
        self._last_connect = self._frozen_at = 0.0
        self._frozen = 0

    # -- the SocketBridge protocol (see sessionkit.manager) -------------------------------

    def bind_tasks(self, tasks: LoopTasks) -> None:
        """Start every task as a job of the manager's (``SessionManager.attach_socket_bridge``
        calls this): the manager's ``aclose()`` waits for the disconnects queued behind the
        logouts, :data:`_CLOSE_WAIT` seconds at most, and no task is left on a past loop."""
        self._tasks = tasks

    async def logout(self, key_hash: str, reason: Reason) -> None:
        room = ROOM_PREFIX + key_hash
        if room in self._told:
            # Told once already (an ending that also notifies comes here twice: from
            # ended() and from the manager's push), and its disconnects are queued.
            return
        await self._emit_logout(room, reason)
        self._logouts += 1
        self._told.add(room)
        self._after.append(room)
        if self._frozen and len(self._after) == _FREEZE_BURST:
            gc.freeze()
        # One job at a time (refused while the manager is closed: the next logout, after it
        # binds again, spawns it).
        if self._tasks is not None:
            self._tasks.spawn_once(self._run_after, grace=_CLOSE_WAIT)

    async def ended(self, event: SessionEvent) -> None:
        """The ``session_deleted`` handler: every session that ends, for any reason, has its
        sockets told ``logout`` and disconnected (``delete_session`` notifies no client, yet
        the other tabs of that session must not stay connected with its key)."""
        try:
            await self.logout(event.key_hash, event.reason or LOGOUT)
        except Exception as exc:  # as the manager reports a failed push: logged, not raised
            logger.warning(
                "pushing logout to an ended session's sockets failed: %s", redact(repr(exc))
            )

    def room_closed(self, namespace: str, room: Any, sids: list[str]) -> None:
        """The manager closed a session's room that this process's sockets ``sids`` were in:
        the closing of an ended session, here or (relayed) on another process. Those sockets
        are disconnected (or forget the key), here too."""
        if namespace != self.namespace or not (isinstance(room, str) and room[:8] == ROOM_PREFIX):
            return
        if self._tasks is not None:  # (the manager binds first: it may not have run yet)
            self._tasks.start_soon(self._release, room, sids, grace=_CLOSE_WAIT)

    async def _release(self, room: str, sids: list[str]) -> None:
        try:
            for sid in sids:
                if self.disconnect_on_logout:
                    await self.sio.disconnect(sid, namespace=self.namespace)
                else:
                    await self._forget_key(sid, room)
        except Exception as exc:
            logger.warning(
                "releasing the sockets of an ended session failed: %s", redact(repr(exc))
            )

    # -- freeze_gc ---------------------------------------------------------------------------

    def _connected(self) -> None:
        self._connects += 1
        self._last_connect = asyncio.get_running_loop().time()
        if self._tasks is not None:  # one tending job at a time, a job of the manager's
            self._tasks.spawn_once(self._tend_while_needed)

    async def _tend_while_needed(self) -> None:
        # Every _FREEZE_QUIET seconds while connections come or objects are frozen; not a job
        # idle() waits for between two turns, and over as soon as the manager closes.
        tasks = self._tasks
        assert tasks is not None
        loop = asyncio.get_running_loop()
        tending = True
        while tending:
            await tasks.rest(_FREEZE_QUIET)
            tending = not tasks.stop.is_set() and self._tend(loop.time())

    def _tend(self, now: float) -> bool:
        # CPython's full collections walk every tracked object, ~170 per connected socket: with
        # tens of thousands of sockets one takes seconds, and a burst of logouts sets some off.
        # Frozen objects are skipped (gc.freeze), so the sockets of a connect burst are frozen
        # once it is over, and thawed when enough of them have gone: cycles they left behind
        # are collected only once thawed. Whether to tend again.
        sockets = len(self.sio.eio.sockets)
        if self._frozen and (
            sockets < self._frozen * (1 - _THAW_SHARE) or now - self._frozen_at > _THAW_AFTER
        ):
            gc.unfreeze()
            self._frozen = 0
        quiet = now - self._last_connect >= _FREEZE_QUIET
        if quiet and self._connects >= _FREEZE_AFTER:
            gc.freeze()
            self._frozen, self._frozen_at, self._connects = max(sockets, 1), now, 0
        return bool(self._frozen or self._connects)

    async def aclose(self) -> None:
        """Thaw what ``freeze_gc`` froze: what :meth:`SessionManager.aclose` awaits once its
        own jobs, this bridge's disconnects and tending among them, have ended."""
        if self._frozen:
            gc.unfreeze()
            self._frozen = 0

    async def _emit_logout(self, room: str, reason: Reason) -> None:
        manager = self.sio.manager
        if not self._local(manager):
            # A pub/sub manager relays the emit to the other processes: its own path.
            await self.sio.emit("logout", {"reason": reason}, room=room, namespace=self.namespace)
            return
        members = manager.rooms.get(self.namespace, {}).get(room)
        if not members:
            return
        # AsyncManager.emit encodes the packet once per call and sends it from one task per
        # recipient; a logout's packet is the same for every session ending for one reason,
        # and sending to a socket only queues it, so it is encoded once and sent in place.
        packets = self._packets.get(reason)
        if packets is None:
            packets = self._packets[reason] = self._encode("logout", {"reason": reason})
        send = self.sio.eio.send_packet
        for eio_sid in list(members.values()):
            for pkt in packets:
                await send(eio_sid, pkt)

    def _local(self, manager: Any) -> bool:
        # Only a manager whose emit is python-socketio's in-process one (no pub/sub relay, no
        # admin instrumentation wrapping it) can be bypassed.
        return type(manager).emit is AsyncManager.emit and "emit" not in vars(manager)

    def _encode(self, event: str, data: Any) -> list[Any]:
        pkt = self.sio.packet_class(sio_packet.EVENT, namespace=self.namespace, data=[event, data])
        encoded = pkt.encode()
        parts = encoded if isinstance(encoded, list) else [encoded]
        return [eio_packet.Packet(eio_packet.MESSAGE, part) for part in parts]

    async def _run_after(self) -> None:
        # Disconnect the sockets of ended sessions and close their rooms, _AFTER_BATCH rooms at
        # a time with a turn of the loop between batches. Before the first batch, and whenever
        # new logouts went out meanwhile, wait until none has gone out for _QUIET seconds: a
        # burst's logouts come in slices between which the manager awaits its store (a claim,
        # a round trip to Redis), and all of them go out before the disconnects.
        loop = asyncio.get_running_loop()
        queue = self._after
        seen = -1
        while queue:
            held_since = loop.time()
            while self._logouts != seen and loop.time() - held_since < _AFTER_WAIT:
                seen = self._logouts
                await asyncio.sleep(_QUIET)
            for _ in range(min(_AFTER_BATCH, len(queue))):
                room = queue.popleft()
                await self._after_logout(room)
                self._told.discard(room)
            await asyncio.sleep(0)

    async def _after_logout(self, room: str) -> None:
        try:
            for sid in self._members(room):
                if self.disconnect_on_logout:
                    await self.sio.disconnect(sid, namespace=self.namespace)
                else:  # it stays connected, but no longer holds the session's key
                    await self._forget_key(sid, room)
            # Empty the room on every server (a pub/sub client manager broadcasts close_room),
            # so a socket held by another process is no longer subscribed to a dead session.
            await self.sio.close_room(room, namespace=self.namespace)
        except Exception as exc:
            logger.warning(
                "disconnecting the sockets of an ended session failed: %s", redact(repr(exc))
            )

    async def _forget_key(self, sid: str, room: str) -> None:
        async with self.sio.session(sid, namespace=self.namespace) as session:
            key = session.get(_SESSION_FIELD)
            if key is not None and room_for(key) == room:
                del session[_SESSION_FIELD]

    async def expiring(self, key_hash: str, remaining: float) -> None:
        room = ROOM_PREFIX + key_hash
        payload = {"remaining": round(max(remaining, 0.0), 3)}
        await self.sio.emit("session_expiring", payload, room=room, namespace=self.namespace)

    async def rotated(self, old_hash: str, new_hash: str, new_key: str) -> None:
        old_room, new_room = ROOM_PREFIX + old_hash, ROOM_PREFIX + new_hash
        for sid in self._members(old_room):
            await self.sio.enter_room(sid, new_room, namespace=self.namespace)
            await self.sio.leave_room(sid, old_room, namespace=self.namespace)
            async with self.sio.session(sid, namespace=self.namespace) as session:
                session[_SESSION_FIELD] = new_key

    # -- Socket.IO handlers ----------------------------------------------------------------

    def _members(self, room: str) -> list[str]:
        # Only the sockets this process holds: python-socketio cannot list the others.
        return [sid for sid, _ in self.sio.manager.get_participants(self.namespace, room)]

    async def _join(self, sid: str, key: object) -> bool:
        """Put ``sid`` in the room of ``key`` if it names a live session."""
        if not is_key_like(key) or not await self.sm.check_session_status(key):
            return False
        async with self.sio.session(sid, namespace=self.namespace) as session:
            previous = session.get(_SESSION_FIELD)
            session[_SESSION_FIELD] = key
        if previous is not None and previous != key:
            await self.sio.leave_room(sid, room_for(previous), namespace=self.namespace)
        await self.sio.enter_room(sid, room_for(key), namespace=self.namespace)
        # The session may have ended while we awaited: its logout would have missed us, and
        # the socket must not keep its key.
        if await self.sm.get_username_from_session_key(key) is None:
            await self.sio.leave_room(sid, room_for(key), namespace=self.namespace)
            await self._forget_key(sid, room_for(key))
            return False
        logger.info("socket %s joined session %s", sid, short_hash(key))
        return True

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> Any:
        key = auth.get("session_key") if isinstance(auth, dict) else None
        if key is None and self.cookie is not None:
            key = cookie_key(environ, self.cookie)
        joined = key is not None and await self._join(sid, key)
        if not joined and self.require_auth:
            raise socketio.exceptions.ConnectionRefusedError(_REFUSED)
        if self.freeze_gc:
            self._connected()
        return None

    async def on_session_key(self, sid: str, data: Any = None) -> dict[str, bool]:
        # The seed's flow: {"session_key": key, "user": name}; the name is only informative.
        key = data.get("session_key") if isinstance(data, dict) else None
        return {"joined": await self._join(sid, key)}

    async def touch(self, sid: str) -> None:
        session = await self.sio.get_session(sid, namespace=self.namespace)
        key = session.get(_SESSION_FIELD)
        if key is None:
            return
        try:
            await self.sm.restart_session_timer(key)
        except SessionNotFound:
            pass  # it ended: its logout has been pushed already
        except Exception as exc:
            what = "restarting session %s on socket activity failed: %r"
            logger.warning(what, short_hash(key), exc)


def _chain_connect(bridge: _Bridge, previous: Any) -> Any:
    if previous is None:
        return bridge.on_connect
    wants_auth = _accepts(previous, 3)

    async def on_connect(sid: str, environ: dict[str, Any], auth: Any = None) -> Any:
        await bridge.on_connect(sid, environ, auth)
        result = previous(sid, environ, auth) if wants_auth else previous(sid, environ)
        if inspect.isawaitable(result):
            result = await result
        return result

    return on_connect


def _accepts(func: Any, count: int) -> bool:
    try:
        inspect.signature(func).bind(*range(count))
    except TypeError:
        return False
    return True


def _hook_activity(bridge: _Bridge) -> None:
    # python-socketio has no hook that sees every event (a catch-all handler only sees the
    # events nobody else handles), so listen one layer down, to engine.io's messages.
    eio = bridge.sio.eio
    dispatch = eio.handlers["message"]

    async def on_message(eio_sid: str, data: Any) -> Any:
        # Socket.IO packet types 2 and 5: an event and a binary event.
        if isinstance(data, str) and data[:1] in ("2", "5"):
            sid = bridge.sio.manager.sid_from_eio_sid(eio_sid, bridge.namespace)
            if sid is not None:
                await bridge.touch(sid)
        return await dispatch(eio_sid, data)

    eio.on("message", on_message)


def bind_socketio(
    sm: SessionManager,
    sio: Any,
    namespace: str = "/",
    *,
    require_auth: bool = True,
    disconnect_on_logout: bool = True,
    touch_on_event: bool = False,
    cookie: SessionCookie | str | None = None,
    freeze_gc: bool = False,
) -> None:
    """Make ``sm`` push ``logout`` to its sessions' sockets through ``sio``.

    A client connects with ``auth={"session_key": key}``; a live key puts the socket in
    :func:`room_for` ``(key)``. Every ending of that session, for any reason
    (``delete_session`` included, though it notifies no handler), and every
    ``send_logout_message``, then emits ``logout`` with ``{"reason": ...}`` to that room once,
    and disconnects its sockets: no socket keeps the key. ``session_expiring`` (with the manager's
    ``warn_before``) emits ``session_expiring`` with ``{"remaining": seconds}``. A rotated key
    takes its sockets to the new room. The key itself stays in the socket's server-side
    session; rooms are named by hash, and a filter blanks keys out of the log lines that
    python-socketio and engine.io write, even at DEBUG.

    A ``connect`` handler registered on ``namespace`` before this call still runs, after the
    session check; register none on it afterwards (it would replace the check).

    :param sm: the session manager.
    :param sio: a ``socketio.AsyncServer``.
    :param namespace: the Socket.IO namespace the clients connect to.
    :param require_auth: refuse a connection without a live key in its ``auth``. With
        ``False``, the seed's flow works too: connect, then emit ``session_key`` with
        ``{"session_key": key, "user": name}`` (the ack says ``{"joined": bool}``); only a
        live key joins a room.
    :param disconnect_on_logout: disconnect a session's sockets after sending ``logout``:
        in the background, once every ``logout`` due at the same time has gone out;
        :meth:`SessionManager.aclose() <sessionkit.SessionManager.aclose>` waits for them.
        With ``False`` they stay connected, but forget the session's key.
    :param touch_on_event: restart a session's idle timer on every event its sockets send.
    :param cookie: cookie mode: the session cookie (a
        :class:`~sessionkit.cookies.SessionCookie` or a name) that authenticates a handshake
        carrying no ``auth``, so the key never has to reach page scripts. The server must
        check origins: engine.io's default (``cors_allowed_origins=None``, same origin only)
        or a list of origins. JSONP polling handshakes (engine.io's ``j=``) are refused, and
        so is a handshake that a browser marks as from another site (``Sec-Fetch-Site``)
        without an ``Origin`` for engine.io to check: only a tag on another page sends one.
    :param freeze_gc: for tens of thousands of sockets per process: once at least 1,000
        sockets have connected and a second passed without another, call ``gc.freeze()``
        (and again at the 256th logout of a burst), and ``gc.unfreeze()`` once a quarter of
        them have gone (or ten minutes later). CPython's full collections then skip the
        connected sockets' objects (~170 per socket): at 19,900 sockets they took over half
        the CPU of a burst of logouts, and held the loop for seconds. It acts on the whole
        process: leave it off if the app calls ``gc.freeze()`` itself (before forking
        workers, say), whose objects it would thaw.
    :raises TypeError: if ``sio`` is not a ``socketio.AsyncServer``.
    :raises ValueError: in cookie mode, if ``sio`` accepts any origin
        (``cors_allowed_origins`` of ``"*"``, ``["*"]``, ``[]``, a callable, or ``"null"``
        alone or in a list).

    Example::

        sio = socketio.AsyncServer(async_mode="asgi")
        bind_socketio(sm, sio, require_auth=False)  # the seed's session_key event flow
        app = socketio.ASGIApp(sio, other_asgi_app=starlette_app)
    """
    if not isinstance(sio, socketio.AsyncServer):
        raise TypeError(f"sio must be a socketio.AsyncServer, not {type(sio).__name__}")
    session_cookie = None if cookie is None else check_cookie_mode(sio, cookie)
    bridge = _Bridge(
        sm,
        sio,
        namespace,
        require_auth=require_auth,
        disconnect_on_logout=disconnect_on_logout,
    )
    bridge.cookie = session_cookie
    bridge.freeze_gc = freeze_gc
    if session_cookie is not None:
        guard_handshakes(sio)
    previous = sio.handlers.get(namespace, {}).get("connect")
    sio.on("connect", _chain_connect(bridge, previous), namespace=namespace)
    sio.on("session_key", bridge.on_session_key, namespace=namespace)
    if touch_on_event:
        _hook_activity(bridge)
    for target in (sio.logger, sio.eio.logger, getattr(sio.manager, "logger", None)):
        _install_filter(target)
    # A burst of N logouts disconnects N sockets: python-socketio's managers scan every room
    # of the namespace per disconnect, so give this one a sid -> rooms index (see _socketio_rooms).
    index_rooms(sio.manager)
    # A room closed on any process (a pub/sub manager relays close_room) releases this
    # process's sockets in it: no socket anywhere keeps an ended session's key.
    watch_closing(sio.manager, bridge.room_closed)
    sm.attach_socket_bridge(sio, bridge)
    # Every ending reaches the sockets, whether or not it notifies the client
    # (delete_session does not: notify_client_to_logout keeps the seed's meaning). A manager
    # bound again hears its endings through the new bridge only, as it pushes through it.
    previous_bridge = _bound.get(sm)
    if previous_bridge is not None:
        sm.off("session_deleted", previous_bridge.ended)
    _bound[sm] = bridge
    sm.on("session_deleted", bridge.ended)


# sm.init_socket_reference(sio), the seed's call, binds through this adapter: the manager
# never imports it (it imports the manager), so the adapter hands it its binding.
SessionManager.socket_binder = bind_socketio
