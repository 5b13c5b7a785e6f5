"""Every session that ends, for any reason, logs out every socket of that session: a real
python-socketio server under uvicorn and real clients."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import socketio

from sessionkit import SessionManager
from sessionkit.socketio import bind_socketio, room_for, watch_closing
from tests.servers import serve
from tests.test_socketio import Client

# How each ending is caused, and the reason its sockets are told.
ENDINGS: dict[str, tuple[Callable[[SessionManager, str], Awaitable[Any]], str]] = {
    "delete_session": (lambda sm, key: sm.delete_session(key), "logout"),
    "delete_user_session": (
        lambda sm, key: _end_by_id(sm, key),
        "logout",
    ),
    "delete_user_sessions": (lambda sm, key: sm.delete_user_sessions("Luca"), "logout_all"),
    "delete_all_sessions": (lambda sm, key: sm.delete_all_sessions(), "delete_all"),
    "evicted": (lambda sm, key: _log_in_twice(sm), "evicted"),
}


async def _end_by_id(sm: SessionManager, key: str) -> None:
    details = await sm.get_session_details(key)
    assert await sm.delete_user_session("Luca", details.id)


async def _log_in_twice(sm: SessionManager) -> None:
    await sm.load_new_session("Luca")
    await sm.load_new_session("Luca")  # the third of two allowed: the oldest goes


# The options of the memory_sm fixture (tests/conftest.py) in this module.
pytestmark = pytest.mark.sm_options(max_sessions_per_user=2)


@contextlib.asynccontextmanager
async def server(sm: SessionManager, **options: Any) -> AsyncIterator[tuple[str, Any]]:
    sio = socketio.AsyncServer(async_mode="asgi")
    bind_socketio(sm, sio, **options)
    async with serve(socketio.ASGIApp(sio)) as url:
        yield url, sio


async def held_keys(sio: Any) -> list[str]:
    """Every session key a connected socket's server-side session holds."""
    held: list[str] = []
    for sid in list(sio.manager.rooms.get("/", {}).get(None, {})):
        session = await sio.get_session(sid)
        held.extend(value for value in session.values() if isinstance(value, str))
    return held


@pytest.mark.parametrize("ending", list(ENDINGS))
async def test_every_ending_tells_and_disconnects_every_tab_of_the_session(
    memory_sm: SessionManager, ending: str
) -> None:
    end, reason = ENDINGS[ending]
    key = await memory_sm.load_new_session("Luca")
    bystander = await memory_sm.load_new_session("Fabio")
    tabs = [Client(), Client()]
    other = Client()
    try:
        async with server(memory_sm) as (url, sio):
            for tab in tabs:
                await tab.sio.connect(url, auth={"session_key": key}, wait_timeout=5)
            await other.sio.connect(url, auth={"session_key": bystander}, wait_timeout=5)
            assert key in await held_keys(sio)
            await end(memory_sm, key)
            for tab in tabs:
                async with asyncio.timeout(5):
                    await tab.disconnected.wait()
                # Told once, with the ending's reason, before the server disconnected it.
                assert tab.received() == [("logout", {"reason": reason})]
            assert room_for(key) not in sio.manager.rooms.get("/", {})
            assert key not in await held_keys(sio)
            if ending != "delete_all_sessions":
                # The other user's socket heard nothing: its first push is this one.
                assert await memory_sm.send_logout_message(bystander)
                await other.wait_for("logout")
                assert other.received() == [("logout", {"reason": "logout"})]
    finally:
        for client in (*tabs, other):
            await client.sio.disconnect()
            await client.sio.shutdown()


async def test_an_expiry_tells_and_disconnects_every_tab(memory_sm: SessionManager) -> None:
    key = await memory_sm.load_new_session("Luca", timeout=2)
    tabs = [Client(), Client()]
    try:
        async with server(memory_sm) as (url, sio):
            for tab in tabs:
                await tab.sio.connect(url, auth={"session_key": key}, wait_timeout=5)
            for tab in tabs:
                async with asyncio.timeout(10):
                    await tab.disconnected.wait()
                assert tab.received() == [("logout", {"reason": "expired"})]
            assert key not in await held_keys(sio)
    finally:
        for client in tabs:
            await client.sio.disconnect()
            await client.sio.shutdown()


async def test_a_socket_kept_connected_no_longer_holds_the_key(memory_sm: SessionManager) -> None:
    key = await memory_sm.load_new_session("Luca")
    tab = Client()
    try:
        async with server(memory_sm, disconnect_on_logout=False) as (url, sio):
            await tab.sio.connect(url, auth={"session_key": key}, wait_timeout=5)
            assert await held_keys(sio) == [key]
            closed = asyncio.Event()

            def on_closing(namespace: str, room: Any, sids: list[str]) -> None:
                if room == room_for(key):
                    closed.set()

            watch_closing(sio.manager, on_closing)
            await memory_sm.delete_session(key)
            data, _ = await tab.wait_for("logout")
            assert data == {"reason": "logout"}
            # The room closes once its sockets forgot the key, after the logouts went out.
            async with asyncio.timeout(5):
                await closed.wait()
            assert await held_keys(sio) == []
            ack = await tab.sio.call("session_key", {"session_key": key}, timeout=5)
            assert ack == {"joined": False}
            assert tab.sio.connected
    finally:
        await tab.sio.disconnect()
        await tab.sio.shutdown()


async def test_a_manager_bound_again_tells_each_socket_once(memory_sm: SessionManager) -> None:
    key = await memory_sm.load_new_session("Luca")
    other = socketio.AsyncServer(async_mode="asgi")
    bind_socketio(memory_sm, other)
    tab = Client()
    try:
        async with server(memory_sm) as (url, sio):  # binds sm to this second server
            # And once more (init_socket_reference after bind_socketio).
            bind_socketio(memory_sm, sio)
            assert memory_sm.get_socket_reference() is sio
            await tab.sio.connect(url, auth={"session_key": key}, wait_timeout=5)
            await memory_sm.delete_user_sessions("Luca")  # an ending that also notifies
            async with asyncio.timeout(5):
                await tab.disconnected.wait()
            assert tab.received() == [("logout", {"reason": "logout_all"})]
    finally:
        await tab.sio.disconnect()
        await tab.sio.shutdown()


async def test_a_session_that_ends_while_its_socket_joins_leaves_no_key_behind() -> None:
    from sessionkit import MemoryStore
    from sessionkit.models import SessionRecord

    class EndsDuringTheJoin(MemoryStore):
        # The join checks the key, enters the room, then reads the session again: the session
        # ends in between (as a logout on another worker would), before that second read.
        armed = False

        async def get(self, key: str) -> SessionRecord | None:
            if self.armed:
                self.armed = False
                await manager.delete_session(key)
            return await super().get(key)

    store = EndsDuringTheJoin()
    manager = SessionManager(timeout=30, store=store)
    tab = Client()
    try:
        key = await manager.load_new_session("Luca")
        async with server(manager, require_auth=False) as (url, sio):
            await tab.sio.connect(url, wait_timeout=5)
            store.armed = True
            ack = await tab.sio.call("session_key", {"session_key": key}, timeout=5)
            assert ack == {"joined": False}
            assert not store.armed  # the session did end during the join
            assert await held_keys(sio) == []
    finally:
        await tab.sio.disconnect()
        await tab.sio.shutdown()
        await manager.aclose()


# -- the disconnects are the manager's own work (docs/how-it-works.md, "Tasks and loops") ----


def _closings(sio: Any, *, hang: bool) -> list[str]:
    """Record each room ``sio`` closes (its ``close_room``), which never returns if ``hang``."""
    closing: list[str] = []
    close_room = sio.close_room

    async def recorded(room: str, namespace: str | None = None) -> None:
        closing.append(room)
        if hang:
            await asyncio.Event().wait()  # a pub/sub relay that no longer answers, say
        await asyncio.sleep(0.05)  # seconds: later than the burst's 20 ms quiet wait
        await close_room(room, namespace=namespace)

    sio.close_room = recorded
    return closing


async def test_idle_waits_for_the_disconnects_queued_behind_a_logout() -> None:
    sm = SessionManager(timeout=30)
    sio = socketio.AsyncServer(async_mode="asgi")
    bind_socketio(sm, sio)
    closing = _closings(sio, hang=False)
    try:
        key = await sm.load_new_session("Luca")
        assert await sm.delete_session(key)
        assert closing == []  # queued: the room closes once the burst is over
        await sm.idle()
        assert closing == [room_for(key)]
    finally:
        await sm.aclose()


@pytest.mark.looptime
async def test_aclose_gives_the_queued_disconnects_five_seconds() -> None:
    sm = SessionManager(timeout=30)
    sio = socketio.AsyncServer(async_mode="asgi")
    bind_socketio(sm, sio)
    closing = _closings(sio, hang=True)
    key = await sm.load_new_session("Luca")
    assert await sm.delete_session(key)
    await asyncio.sleep(1)  # the room's closing has begun, and hangs
    assert closing == [room_for(key)]
    loop = asyncio.get_running_loop()
    began = loop.time()
    await sm.aclose()
    assert loop.time() - began == pytest.approx(5, abs=0.1)
    running = [t for t in asyncio.all_tasks() if t.get_name().startswith("sessionkit")]
    assert running == []
