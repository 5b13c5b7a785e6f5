"""What :mod:`sessionkit.socketio` uses of python-socketio and python-engineio beyond their
documented API, in one place, checked when it is imported: a release that changes one of them
fails that import with an :class:`ImportError` naming it, rather than a logout push later.

- The manager's ``rooms[namespace][room]`` (sid -> engine.io sid), and its methods
  ``basic_enter_room``, ``basic_leave_room``, ``basic_close_room``, ``basic_disconnect``,
  ``get_rooms``, ``get_participants`` and ``sid_from_eio_sid``: ``index_rooms`` swaps the
  manager instance's class for a subclass that overrides the first five, and the push reads
  the rooms to send a logout to every socket of a session.
- ``AsyncServer.packet_class`` and ``AsyncManager.emit`` (the push encodes a logout once and
  sends it with the engine.io server's ``send_packet``, where the manager's emit is the
  in-process one).
- The engine.io server's ``handlers`` dict and ``on()`` (cookie mode and ``touch_on_event``
  wrap its ``connect`` and ``message`` handlers), and ``cors_allowed_origins``.
"""

from __future__ import annotations

import inspect
from typing import Any

import engineio
import socketio
from socketio.async_manager import AsyncManager

__all__ = ("check",)


def _uses() -> list[tuple[str, Any, str, tuple[str, ...]]]:
    # (what, the object, its attribute, the parameters a method must take)
    sio = socketio.AsyncServer()
    manager = sio.manager
    manager.set_server(sio)
    manager.initialize()
    eio = engineio.AsyncServer()
    return [
        ("a Socket.IO manager", manager, "rooms", ()),
        (
            "a Socket.IO manager",
            manager,
            "basic_enter_room",
            ("sid", "namespace", "room", "eio_sid"),
        ),
        ("a Socket.IO manager", manager, "basic_leave_room", ("sid", "namespace", "room")),
        ("a Socket.IO manager", manager, "basic_close_room", ("room", "namespace")),
        ("a Socket.IO manager", manager, "basic_disconnect", ("sid", "namespace")),
        ("a Socket.IO manager", manager, "get_rooms", ("sid", "namespace")),
        ("a Socket.IO manager", manager, "get_participants", ("namespace", "room")),
        ("a Socket.IO manager", manager, "sid_from_eio_sid", ("eio_sid", "namespace")),
        ("the in-process manager", AsyncManager, "emit", ()),
        ("a Socket.IO server", sio, "packet_class", ()),
        ("an engine.io server", eio, "send_packet", ("sid", "pkt")),
        ("an engine.io server", eio, "handlers", ()),
        ("an engine.io server", eio, "on", ()),
        ("an engine.io server", eio, "cors_allowed_origins", ()),
    ]


def check() -> None:
    """Check that python-socketio and python-engineio still offer what the adapter uses.

    :raises ImportError: naming what is missing or changed.
    """
    for what, owner, name, parameters in _uses():
        if not hasattr(owner, name):
            raise ImportError(
                f"sessionkit.socketio needs {what}'s {name} (python-socketio changed)"
            )
        if parameters:
            taken = inspect.signature(getattr(owner, name)).parameters
            missing = [p for p in parameters if p not in taken]
            if missing:
                raise ImportError(
                    f"sessionkit.socketio needs {what}'s {name} to take {', '.join(missing)}"
                    " (python-socketio changed)"
                )
