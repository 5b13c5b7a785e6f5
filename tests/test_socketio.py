"""The Socket.IO adapter, with a real python-socketio server under uvicorn and real clients."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
import socketio

from sessionkit import SessionManager
from sessionkit.keys import KEY_LENGTH
from sessionkit.socketio import KeyRedactingFilter, bind_socketio, redact, room_for
from tests.internals import socketio_compat
from tests.servers import serve

Served = Callable[..., AbstractAsyncContextManager[str]]


class Client:
    """A real Socket.IO client that records the events the server pushes to it."""

    def __init__(self) -> None:
        self.sio: Any = socketio.AsyncClient(reconnection=False)
        self.events: list[tuple[str, Any, float]] = []
        self.got = asyncio.Event()
        self.disconnected = asyncio.Event()
        for name in ("logout", "session_expiring"):
            self.sio.on(name, self._recorder(name))
        self.sio.on("disconnect", self._on_disconnect)

    def _recorder(self, name: str) -> Callable[[Any], None]:
        def record(data: Any = None) -> None:
            self.events.append((name, data, time.time()))
            self.got.set()

        return record

    def _on_disconnect(self, *args: Any) -> None:
        self.disconnected.set()

    def named(self, name: str) -> list[Any]:
        return [data for event, data, _ in self.events if event == name]

    def received(self) -> list[tuple[str, Any]]:
        """``(event, data)`` of everything pushed so far, in the order it came."""
        return [(event, data) for event, data, _ in self.events]

    async def wait_for(self, name: str, within: float = 5) -> tuple[Any, float]:
        async with asyncio.timeout(within):
            while True:
                for event, data, at in self.events:
                    if event == name:
                        return data, at
                self.got.clear()
                await self.got.wait()


@pytest.fixture
async def clients() -> AsyncIterator[Callable[[], Client]]:
    made: list[Client] = []

    def make() -> Client:
        made.append(Client())
        return made[-1]

    yield make
    for client in made:
        await client.sio.disconnect()
        await client.sio.shutdown()


@pytest.fixture
def served(memory_sm: SessionManager) -> Served:
    """Start a python-socketio server bound to ``sm``; yields its URL."""

    @contextlib.asynccontextmanager
    async def start(**options: Any) -> AsyncIterator[str]:
        sio = socketio.AsyncServer(async_mode="asgi", **options.pop("server", {}))
        bind_socketio(memory_sm, sio, **options)
        async with serve(socketio.ASGIApp(sio)) as url:
            yield url

    return start


async def connect(client: Client, url: str, key: str | None = None) -> None:
    auth = None if key is None else {"session_key": key}
    await client.sio.connect(url, auth=auth, wait_timeout=5)


def test_room_for_is_the_hash_of_the_key() -> None:
    assert room_for("abc") == "session:" + hashlib.sha256(b"abc").hexdigest()


async def test_bind_needs_an_async_server(memory_sm: SessionManager) -> None:
    with pytest.raises(TypeError):
        bind_socketio(memory_sm, object())
    with pytest.raises(TypeError):
        memory_sm.init_socket_reference(socketio.Server())
    sio = socketio.AsyncServer(async_mode="asgi")
    assert memory_sm.init_socket_reference(sio) is True
    assert memory_sm.get_socket_reference() is sio


def test_init_socket_reference_binds_through_the_adapter_with_no_import_of_it() -> None:
    """The manager's module never imports the adapter (tests/test_package.py): importing it
    registers its binding, and the seed's call, made before anything imported it, imports it
    by name."""
    code = (
        "import sys, socketio\n"
        "from sessionkit import SessionManager\n"
        "print(SessionManager.socket_binder, 'sessionkit.socketio' in sys.modules)\n"
        "print(SessionManager().init_socket_reference(socketio.AsyncServer()))\n"
        "import sessionkit.socketio\n"
        "print(SessionManager.socket_binder is sessionkit.socketio.bind_socketio)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.splitlines() == ["None False", "True", "True"]


async def test_logout_arrives_within_a_second_of_the_deadline(
    memory_sm: SessionManager, served: Served, clients: Callable[[], Client]
) -> None:
    doomed = await memory_sm.load_new_session("Luca", timeout=2)
    other = await memory_sm.load_new_session("Fabio")  # 30 s: outlives the test
    async with served() as url:
        first, second = clients(), clients()
        await connect(first, url, doomed)
        await connect(second, url, other)
        deadline = (await memory_sm.get_session_details(doomed)).expires_at.timestamp()
        data, received = await first.wait_for("logout", within=6)
        delay = received - deadline
        print(f"\nlogout received {delay * 1000:.1f} ms after the deadline")
        assert data == {"reason": "expired"}
        assert -0.05 < delay < 1.0
        async with asyncio.timeout(3):
            await first.disconnected.wait()  # disconnect_on_logout
        # The other socket got nothing of that: the first push it receives is a later one.
        assert await memory_sm.send_logout_message(other)
        await second.wait_for("logout")
        assert second.received() == [("logout", {"reason": "logout"})]
    assert await memory_sm.check_session_status(other)


@pytest.mark.parametrize("auth", [None, {}, {"session_key": "not-a-key"}, {"session_key": 42}, "x"])
async def test_missing_or_invalid_auth_is_refused(
    memory_sm: SessionManager, served: Served, clients: Callable[[], Client], auth: Any
) -> None:
    async with served() as url:
        client = clients()
        with pytest.raises(socketio.exceptions.ConnectionError):
            await client.sio.connect(url, auth=auth, wait_timeout=5)
        assert not client.sio.connected


async def test_a_dead_key_is_refused(
    memory_sm: SessionManager, served: Served, clients: Callable[[], Client]
) -> None:
    key = await memory_sm.load_new_session("Luca")
    await memory_sm.delete_session(key)
    async with served() as url:
        with pytest.raises(socketio.exceptions.ConnectionError):
            await connect(clients(), url, key)


async def test_the_seeds_session_key_event_flow(
    memory_sm: SessionManager, served: Served, clients: Callable[[], Client]
) -> None:
    key = await memory_sm.load_new_session("Luca")
    async with served(require_auth=False) as url:
        honest, intruder = clients(), clients()
        await connect(honest, url)
        await connect(intruder, url)
        assert await honest.sio.call("session_key", {"session_key": key, "user": "Luca"}) == {
            "joined": True
        }
        guess = {"session_key": room_for(key), "user": "Luca"}  # the room's name is no key
        assert await intruder.sio.call("session_key", guess) == {"joined": False}
        assert await intruder.sio.call("session_key", "garbage") == {"joined": False}
        assert await memory_sm.send_logout_message(key) is True
        data, _ = await honest.wait_for("logout")
        assert data == {"reason": "logout"}
        # The intruder got nothing of that: the first push it receives is its own, later one.
        own = await memory_sm.load_new_session("Mallory")
        assert await intruder.sio.call("session_key", {"session_key": own}) == {"joined": True}
        assert await memory_sm.delete_user_sessions("Mallory") == 1
        await intruder.wait_for("logout")
        assert intruder.received() == [("logout", {"reason": "logout_all"})]


async def test_rotation_keeps_the_socket_subscribed(
    memory_sm: SessionManager, served: Served, clients: Callable[[], Client]
) -> None:
    key = await memory_sm.load_new_session("Luca")
    async with served() as url:
        client = clients()
        await connect(client, url, key)
        fresh = await memory_sm.rotate_session_key(key)
        await memory_sm.send_logout_message(key)  # the old key no longer reaches anyone...
        assert await memory_sm.delete_user_sessions("Luca") == 1  # ...the new one does
        await client.wait_for("logout")
        assert client.received() == [("logout", {"reason": "logout_all"})]
        assert not await memory_sm.check_session_status(fresh)


async def test_delete_user_sessions_logs_out_every_tab(
    memory_sm: SessionManager, served: Served, clients: Callable[[], Client]
) -> None:
    laptop = await memory_sm.load_new_session("Luca")
    phone = await memory_sm.load_new_session("Luca")
    bystander = await memory_sm.load_new_session("Fabio")
    async with served() as url:
        tabs = [clients() for _ in range(3)]
        for tab, key in zip(tabs, (laptop, laptop, phone), strict=True):
            await connect(tab, url, key)
        other = clients()
        await connect(other, url, bystander)
        assert await memory_sm.delete_user_sessions("Luca") == 2
        for tab in tabs:
            data, _ = await tab.wait_for("logout")
            assert data == {"reason": "logout_all"}
            async with asyncio.timeout(3):
                await tab.disconnected.wait()
        # The bystander got nothing of that: the first push it receives is a later one.
        assert await memory_sm.send_logout_message(bystander)
        await other.wait_for("logout")
        assert other.received() == [("logout", {"reason": "logout"})]


async def test_sockets_stay_connected_when_told_not_to_disconnect(
    memory_sm: SessionManager, served: Served, clients: Callable[[], Client]
) -> None:
    key = await memory_sm.load_new_session("Luca")
    async with served(disconnect_on_logout=False) as url:
        client = clients()
        await connect(client, url, key)
        await memory_sm.delete_all_sessions()  # a disconnect, if any, is sent before this returns
        data, _ = await client.wait_for("logout")
        assert data == {"reason": "delete_all"}
        # A later call on the same connection is answered: the server did not disconnect it.
        ack = await client.sio.call("session_key", {"session_key": key}, timeout=5)
        assert ack == {"joined": False}  # the session is over, the socket still connected
        assert client.sio.connected
        assert not client.disconnected.is_set()


async def test_session_expiring_is_pushed_before_logout(
    served: Served, clients: Callable[[], Client]
) -> None:
    async with SessionManager(timeout=2.5, warn_before=1.5) as manager:
        key = await manager.load_new_session("Luca")
        sio = socketio.AsyncServer(async_mode="asgi")
        bind_socketio(manager, sio)
        async with serve(socketio.ASGIApp(sio)) as url:
            client = clients()
            await connect(client, url, key)
            warning, warned_at = await client.wait_for("session_expiring", within=5)
            _, logged_out_at = await client.wait_for("logout", within=5)
        assert 0.5 < warning["remaining"] <= 1.5
        assert logged_out_at > warned_at


async def test_touch_on_event_restarts_the_timer(
    memory_sm: SessionManager, served: Served, clients: Callable[[], Client]
) -> None:
    key = await memory_sm.load_new_session("Luca", timeout=2)
    async with served(touch_on_event=True) as url:
        client = clients()
        await connect(client, url, key)
        before = (await memory_sm.get_session_details(key)).expires_at
        for _ in range(5):  # 2.5 s of activity: past the 2 s idle timeout
            await asyncio.sleep(0.5)
            await client.sio.emit("anything", {"n": 1})
        await client.sio.call("session_key", None, timeout=5)  # answered after all of them
        after = await memory_sm.get_session_details(key)  # still live
        assert after.expires_at > before
        fresh = await memory_sm.rotate_session_key(key)  # the socket now touches the new key
        moved = (await memory_sm.get_session_details(fresh)).expires_at
        await asyncio.sleep(0.1)
        await client.sio.emit("anything")
        await client.sio.call("session_key", None, timeout=5)
        assert (await memory_sm.get_session_details(fresh)).expires_at > moved
        # Nothing was pushed all along (no expiry): the first push is a later logout.
        await memory_sm.send_logout_message(fresh)
        await client.wait_for("logout")
        assert client.received() == [("logout", {"reason": "logout"})]


def test_redact_blanks_keys_in_packets() -> None:
    key = "A" * 20 + "-_" + "b" * 22
    assert len(key) == KEY_LENGTH
    assert key not in redact('0{"session_key":"' + key + '"}')
    assert key not in redact('42["session_key",{"session_key":"x","user":"L"}] ' + key)
    assert redact('2["session_key",{"session_key":"short"}]') == (
        '2["session_key",{"session_key":"[redacted]"}]'
    )
    assert redact("sid abcdefghij0123456789 room session:" + "f" * 64) == (
        "sid abcdefghij0123456789 room session:" + "f" * 64
    )


async def test_no_raw_key_in_any_log_at_debug(
    memory_sm: SessionManager, clients: Callable[[], Client]
) -> None:
    records: list[logging.LogRecord] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    root = logging.getLogger()
    capture = Capture(logging.DEBUG)
    names = ("sessionkit", "socketio.server", "engineio.server", "uvicorn", "uvicorn.error")
    saved = {name: logging.getLogger(name).level for name in (*names, "")}
    root.addHandler(capture)
    for name in (*names, ""):
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        keys = [await memory_sm.load_new_session("Luca", timeout=2) for _ in range(2)]
        sio = socketio.AsyncServer(async_mode="asgi", logger=True, engineio_logger=True)
        sio.logger.setLevel(logging.DEBUG)
        sio.eio.logger.setLevel(logging.DEBUG)
        bind_socketio(memory_sm, sio, require_auth=False, touch_on_event=True)
        async with serve(socketio.ASGIApp(sio)) as url:
            by_auth, by_event = clients(), clients()
            await connect(by_auth, url, keys[0])  # polling first: the packet is in a URL body
            await connect(by_event, url)
            await by_event.sio.call("session_key", {"session_key": keys[1], "user": "Luca"})
            await by_event.sio.emit("echo", {"session_key": keys[1]})
            await memory_sm.rotate_session_key(keys[0])
            await by_event.wait_for("logout", within=6)  # expiry, pushed
    finally:
        root.removeHandler(capture)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
    lines = [record.getMessage() for record in records]
    assert any("Received packet MESSAGE" in line for line in lines), "engine.io logged no packet"
    assert any("session_key" in line for line in lines)
    for key in keys:
        assert not [line for line in lines if key in line]
    assert any(isinstance(f, KeyRedactingFilter) for f in sio.eio.logger.filters)


def test_what_the_adapter_uses_of_python_socketio_is_checked_at_import(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A python-socketio release that drops or changes an internal the adapter relies on (the
    manager's rooms and room methods, the engine.io server's send_packet and handlers) fails
    the import loudly, naming it (here simulated on this release); this release has them all."""
    import engineio
    from socketio.base_manager import BaseManager

    socketio_compat.check()

    def changed(self: BaseManager, sid: str, namespace: str, room: str) -> None:
        pass  # a release without eio_sid

    monkeypatch.setattr(BaseManager, "basic_enter_room", changed)
    with pytest.raises(ImportError, match="basic_enter_room to take eio_sid"):
        socketio_compat.check()
    monkeypatch.undo()
    monkeypatch.delattr(engineio.AsyncServer, "send_packet")
    with pytest.raises(ImportError, match="send_packet"):
        socketio_compat.check()
