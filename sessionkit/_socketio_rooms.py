"""Disconnects in O(rooms of that socket) for python-socketio's client managers.

python-socketio keeps ``manager.rooms[namespace][room]`` (a bidict of sid -> engine.io sid) and
nothing from a sid to its rooms, so ``BaseManager.basic_disconnect`` copies and scans every room
of the namespace to find the ones a socket is in, and ``get_rooms`` scans them too. With a room
per socket (python-socketio's own) and one per session (sessionkit's), that is ~2N rooms for N
sockets: N sockets leaving together cost O(N²).

:func:`index_rooms` swaps the manager instance's class for a subclass that also keeps, per
namespace, each sid's rooms, and answers those two calls from it. Every other behaviour is the
manager's own: rooms live where python-socketio keeps them, ``emit``, ``close_room`` and the
pub/sub managers' relays (``AsyncRedisManager``...) run unchanged, and their ``disconnect`` /
``leave_room`` end in the ``basic_*`` methods overridden here.

:func:`watch_closing` hooks the one step every process takes when a room is closed, the
closing process and, through a pub/sub manager's relay, every other: the Socket.IO adapter
learns there which of this process's sockets were in an ended session's room.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from socketio.base_manager import BaseManager

__all__ = ("index_rooms", "is_indexed", "watch_closing")

#: What :func:`watch_closing` calls: ``(namespace, room, sids)``, the sids this process held.
ClosingWatcher = Callable[[str, Any, list[str]], None]

_classes: dict[type[Any], type[Any]] = {}


class _RoomIndex(BaseManager):  # type: ignore[misc]  # python-socketio is untyped
    """Mixed in before a manager's class: keeps ``_sid_rooms[namespace][sid]`` in step with
    ``rooms[namespace][room][sid]``, which stays the source of truth for everything else."""

    # A dict per sid, not a set: ordered like the joins, and smaller for a handful of rooms.
    _sid_rooms: dict[str, dict[str, dict[Any, None]]]
    _closing_watchers: list[ClosingWatcher]

    def basic_close_room(self, room: Any, namespace: str) -> None:
        watchers = self._closing_watchers
        members = [sid for sid, _ in self.get_participants(namespace, room)] if watchers else []
        super().basic_close_room(room, namespace)
        if members:
            for watcher in tuple(watchers):
                watcher(namespace, room, members)

    def basic_enter_room(
        self, sid: str, namespace: str, room: Any, eio_sid: str | None = None
    ) -> None:
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
        self._sid_rooms.setdefault(namespace, {}).setdefault(sid, {})[room] = None

    def basic_leave_room(self, sid: str, namespace: str, room: Any) -> None:
        super().basic_leave_room(sid, namespace, room)
        by_sid = self._sid_rooms.get(namespace)
        if by_sid is None:
            return
        joined = by_sid.get(sid)
        if joined is not None:
            joined.pop(room, None)
            if not joined:
                del by_sid[sid]
                if not by_sid:
                    del self._sid_rooms[namespace]

    def basic_disconnect(self, sid: str, namespace: str, **kwargs: Any) -> None:
        # BaseManager.basic_disconnect, with the scan of every room replaced by the index.
        if namespace not in self.rooms:
            return
        joined = self._sid_rooms.get(namespace, {}).get(sid)
        for room in list(joined or ()):
            self.basic_leave_room(sid, namespace, room)
        if sid in self.callbacks:
            del self.callbacks[sid]
        pending = self.pending_connect.get(namespace)
        if pending is not None and sid in pending:
            pending.remove(sid)
            if not pending:
                del self.pending_connect[namespace]
        pending = self.pending_disconnect.get(namespace)
        if pending is not None and sid in pending:
            pending.remove(sid)
            if not pending:
                del self.pending_disconnect[namespace]

    def get_rooms(self, sid: str, namespace: str) -> list[Any]:
        joined = self._sid_rooms.get(namespace, {}).get(sid, {})
        return [room for room in joined if room is not None]


def is_indexed(manager: object) -> bool:
    """Tell whether :func:`index_rooms` has indexed ``manager``.

    :param manager: a python-socketio client manager.
    :return: ``True`` if its disconnects cost O(the socket's rooms).
    """
    return isinstance(manager, _RoomIndex)


def index_rooms(manager: object) -> bool:
    """Make a python-socketio client manager's disconnects cost O(the socket's rooms).

    python-socketio's ``BaseManager.basic_disconnect`` and ``get_rooms`` scan every room of the
    namespace; :func:`~sessionkit.socketio.bind_socketio` calls this on the server it binds.
    Call it yourself on another server's manager (``sio.manager``), at any time: the index
    starts from the rooms the manager has. The instance's class becomes a subclass of its own
    (same name; ``isinstance`` checks still hold) that keeps each sid's rooms beside
    python-socketio's ``rooms``; everything else is the manager's own behaviour.

    :param manager: a python-socketio client manager (``AsyncManager``, ``AsyncRedisManager``,
        any subclass of ``BaseManager``).
    :return: ``True`` if ``manager`` is indexed now (or was already); ``False`` if it is no
        ``BaseManager`` and was left alone.

    Example::

        index_rooms(chat_sio.manager)
    """
    if isinstance(manager, _RoomIndex):
        return True
    if not isinstance(manager, BaseManager):
        return False
    cls = type(manager)
    indexed = _classes.get(cls)
    if indexed is None:
        # Same name and module, so logs and reprs read as before; only the MRO differs.
        indexed = type(cls.__name__, (_RoomIndex, cls), {"__module__": cls.__module__})
        indexed.__qualname__ = cls.__qualname__
        _classes[cls] = indexed
    by_ns: dict[str, dict[str, dict[Any, None]]] = {}
    for namespace, rooms in manager.rooms.items():
        by_sid = by_ns.setdefault(namespace, {})
        for room, members in rooms.items():
            for sid in members:
                by_sid.setdefault(sid, {})[room] = None
    manager._sid_rooms = by_ns
    manager._closing_watchers = []
    manager.__class__ = indexed
    return True


def watch_closing(manager: object, watcher: ClosingWatcher) -> None:
    """Call ``watcher(namespace, room, sids)`` whenever ``manager`` closes a room that this
    process's sockets ``sids`` were in: on the process that called ``close_room`` and, with a
    pub/sub manager (``AsyncRedisManager``...), on every other process as the relay reaches it.

    The watcher runs inside the manager's own step, after the room is closed: it must not
    block; schedule any awaiting (a disconnect) as a task.

    :param manager: a python-socketio client manager; it is indexed first
        (:func:`index_rooms`) if it was not.
    :param watcher: the function to call.
    :raises TypeError: if ``manager`` is no python-socketio ``BaseManager``.

    Example::

        watch_closing(sio.manager, lambda ns, room, sids: print(room, "closed", len(sids)))
    """
    if not index_rooms(manager):
        raise TypeError(f"not a python-socketio client manager: {type(manager).__name__}")
    manager._closing_watchers.append(watcher)  # type: ignore[attr-defined]
