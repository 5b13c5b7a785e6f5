"""The logout push at scale: hundreds of real sockets (python-socketio's AsyncClient) on a real
uvicorn, and the room index that keeps python-socketio's disconnects O(the socket's rooms)."""

from __future__ import annotations

import asyncio
import gc
import itertools
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import socketio
from engineio import packet as eio_packet
from socketio.async_manager import AsyncManager

from sessionkit import SessionEvent, SessionManager
from sessionkit.socketio import bind_socketio, index_rooms
from tests.internals import RESOLUTION, generate_ack_id, is_indexed
from tests.servers import serve

SOCKETS = 300  # more than the manager claims in one batch: the burst yields to the loop


class SentPackets:
    """Every packet the server hands engine.io, in order: (engine.io sid, Socket.IO text)."""

    def __init__(self, sio: Any) -> None:
        self.packets: list[tuple[str, str]] = []
        send = sio.eio.send_packet

        async def recording(eio_sid: str, pkt: Any) -> None:
            if pkt.packet_type == eio_packet.MESSAGE and isinstance(pkt.data, str):
                self.packets.append((eio_sid, pkt.data))
            await send(eio_sid, pkt)

        sio.eio.send_packet = recording

    def indices(self, prefix: str) -> list[int]:
        return [i for i, (_, data) in enumerate(self.packets) if data.startswith(prefix)]


class Crowd:
    """Real clients, each recording what it receives, in order."""

    def __init__(self) -> None:
        self.clients: list[Any] = []
        self.seen: list[list[str]] = []
        self.all_gone = asyncio.Event()
        self._gone = 0

    async def connect(self, url: str, keys: list[str]) -> None:
        async def one(key: str) -> None:
            client = socketio.AsyncClient(reconnection=False)
            seen: list[str] = []
            client.on("logout", lambda data=None: seen.append(f"logout {data['reason']}"))
            client.on("disconnect", lambda *args: self._disconnected(seen))
            self.clients.append(client)
            self.seen.append(seen)
            await client.connect(
                url, auth={"session_key": key}, transports=["websocket"], wait_timeout=10
            )

        for first in range(0, len(keys), 50):  # 50 handshakes at a time
            await asyncio.gather(*(one(key) for key in keys[first : first + 50]))

    def _disconnected(self, seen: list[str]) -> None:
        seen.append("disconnect")
        self._gone += 1
        if self._gone == len(self.clients):
            self.all_gone.set()

    async def close(self) -> None:
        for client in self.clients:
            await client.disconnect()
            await client.shutdown()


@pytest.fixture
async def crowd() -> AsyncIterator[Crowd]:
    made = Crowd()
    yield made
    await made.close()


async def burst_by_expiry(sm: SessionManager, keys: list[str]) -> None:
    # Restart every session with a 2 s timeout just after a timer bucket begins, so that all
    # deadlines fall in one bucket: one burst, as when many sessions expire together.
    loop = asyncio.get_running_loop()
    await asyncio.sleep(RESOLUTION - loop.time() % RESOLUTION + 0.002)
    sm.set_session_timeout(2)
    for key in keys:
        await sm.restart_session_timer(key)


async def burst_by_delete_all(sm: SessionManager, keys: list[str]) -> None:
    assert await sm.delete_all_sessions() == len(keys)


@pytest.mark.parametrize(
    "burst", [burst_by_expiry, burst_by_delete_all], ids=["expiry", "delete_all"]
)
async def test_a_burst_sends_every_logout_once_and_before_any_disconnect(
    crowd: Crowd, burst: Callable[[SessionManager, list[str]], Awaitable[None]]
) -> None:
    sm = SessionManager(timeout=60)

    # A handler that awaits (an audit log, say): the burst spans a turn of the loop per
    # session, and the expiry's second claim batch starts with a turn before its first
    # logout; each is a chance for the disconnects to cut in.
    @sm.on("session_deleted")
    async def audit(event: SessionEvent) -> None:
        await asyncio.sleep(0)

    sio = socketio.AsyncServer(async_mode="asgi")
    bind_socketio(sm, sio)
    sent = SentPackets(sio)
    keys = [await sm.load_new_session(f"user{i}") for i in range(SOCKETS)]
    try:
        async with serve(socketio.ASGIApp(sio)) as url:
            await crowd.connect(url, keys)
            sent.packets.clear()
            await burst(sm, keys)
            if burst is burst_by_delete_all:
                # Every logout has been sent; aclose() returns once every disconnect has
                # been too, and leaves no task behind.
                await sm.aclose()
                assert not sio.manager.rooms.get("/", {}).get(None)
                running = [t for t in asyncio.all_tasks() if t.get_name().startswith("sessionkit")]
                assert running == []
            async with asyncio.timeout(15):
                await crowd.all_gone.wait()
    finally:
        await sm.aclose()
    reason = "expired" if burst is burst_by_expiry else "delete_all"
    # Each client: exactly one logout, then its disconnect (one connection delivers in order).
    assert all(seen == [f"logout {reason}", "disconnect"] for seen in crowd.seen), [
        seen for seen in crowd.seen if seen != [f"logout {reason}", "disconnect"]
    ][:3]
    # The server: every logout of the burst went out before the first disconnect (the
    # Socket.IO DISCONNECT packet of namespace "/" is "1").
    logouts, disconnects = sent.indices('2["logout"'), sent.indices("1")
    assert len(logouts) == SOCKETS
    assert len({sent.packets[i][0] for i in logouts}) == SOCKETS
    assert len(disconnects) == SOCKETS
    assert max(logouts) < min(disconnects)


async def test_freeze_gc_freezes_after_a_connect_burst_and_thaws_once_the_sockets_leave(
    crowd: Crowd, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sessionkit import socketio as adapter

    monkeypatch.setattr(adapter, "_FREEZE_AFTER", 20)  # connections
    monkeypatch.setattr(adapter, "_FREEZE_QUIET", 0.1)  # seconds
    monkeypatch.setattr(adapter, "_FREEZE_BURST", 10)  # logouts queued
    # The burst of logouts is over after this long without one, and its queue drains: on a
    # loaded machine the default 20 ms passes between two logouts of one delete_all, the
    # queue never reaches ten, and nothing freezes (a run of the whole suite saw that).
    monkeypatch.setattr(adapter, "_QUIET", 0.5)  # seconds
    sm = SessionManager(timeout=60)
    sio = socketio.AsyncServer(async_mode="asgi")
    bind_socketio(sm, sio, freeze_gc=True)
    frozen: list[int] = []  # after each session's logout (the adapter's handler runs first)
    sm.on("session_deleted", lambda event: frozen.append(gc.get_freeze_count()))
    keys = [await sm.load_new_session(f"user{i}") for i in range(30)]
    states = [gc.get_freeze_count() > 0]
    try:
        async with serve(socketio.ASGIApp(sio)) as url:
            await crowd.connect(url, keys)
            async with asyncio.timeout(5):  # the burst is over: frozen
                while not gc.get_freeze_count():  # noqa: ASYNC110 - gc has no event
                    await asyncio.sleep(0.02)
            states.append(True)
            gc.collect()  # so that the burst's own freeze has young objects to move
            await sm.delete_all_sessions()
            # The tenth logout of the burst froze what had been made since the first freeze:
            # the only rise (frozen objects that are freed leave the count).
            rises = [i for i in range(1, len(frozen)) if frozen[i] > frozen[i - 1]]
            assert rises == [9]
            async with asyncio.timeout(15):
                await crowd.all_gone.wait()
            async with asyncio.timeout(5):  # they have gone: thawed, their cycles collectable
                while gc.get_freeze_count():  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
            states.append(False)
    finally:
        await sm.aclose()
        gc.unfreeze()
    assert states == [False, True, False]


# -- the room index --------------------------------------------------------------------------


def _server_with(manager: Any) -> Any:
    sio = socketio.AsyncServer(async_mode="asgi", client_manager=manager)
    ids = itertools.count()
    sio.eio.generate_id = lambda: f"s{next(ids)}"  # the same sids on every server
    return sio


def _state(manager: Any) -> Any:
    rooms = {
        ns: {room: dict(members) for room, members in by_room.items()}
        for ns, by_room in manager.rooms.items()
    }
    sids = {sid for by_room in rooms.values() for members in by_room.values() for sid in members}
    per_sid = {
        (ns, sid): sorted(map(str, manager.get_rooms(sid, ns))) for ns in rooms for sid in sids
    }
    return (
        rooms,
        per_sid,
        {ns: sorted(v) for ns, v in manager.pending_connect.items()},
        {ns: sorted(v) for ns, v in manager.pending_disconnect.items()},
        sorted(manager.callbacks),
    )


async def test_the_indexed_manager_keeps_python_socketios_state() -> None:
    plain, indexed = AsyncManager(), AsyncManager()
    for manager in (plain, indexed):
        _server_with(manager)
    index_rooms(indexed)
    assert is_indexed(indexed) and not is_indexed(plain)
    assert isinstance(indexed, AsyncManager) and type(indexed).__name__ == "AsyncManager"
    rng = random.Random(13)
    ids = itertools.count()
    connected: dict[str, list[str]] = {"/": [], "/chat": []}
    for _ in range(3000):
        ns = rng.choice(("/", "/chat"))
        sids = connected[ns]
        op = rng.random()
        if op < 0.2 or not sids:
            eio_sid = f"e{next(ids)}"
            made = {await m.pre_connect(eio_sid, ns) for m in (plain, indexed)}
            assert len(made) == 1
            sid = made.pop()
            if rng.random() < 0.8:
                for m in (plain, indexed):
                    await m.connect(sid, ns)
            sids.append(sid)
            continue
        sid = rng.choice(sids)
        room = f"room{rng.randrange(12)}"
        for m in (plain, indexed):
            if op < 0.5:
                await m.enter_room(sid, ns, room)
            elif op < 0.65:
                await m.leave_room(sid, ns, room)
            elif op < 0.7:
                await m.close_room(room, ns)
            elif op < 0.75:
                generate_ack_id(m, sid, print)
            elif op < 0.8:
                m.pre_disconnect(sid, ns)
            else:
                await m.disconnect(sid, ns)
        if op >= 0.8:
            sids.remove(sid)
        assert _state(indexed) == _state(plain)
    assert any(indexed.rooms.values())


def _disconnect_cost(rooms: int, leaving: int) -> float:
    manager = AsyncManager()
    _server_with(manager)
    index_rooms(manager)
    sids = [f"s{i}" for i in range(rooms)]
    for sid in sids:
        manager.basic_enter_room(sid, "/", None, eio_sid=f"e{sid}")
        manager.basic_enter_room(sid, "/", sid, eio_sid=f"e{sid}")
    started = time.perf_counter()
    for sid in sids[:leaving]:
        manager.basic_disconnect(sid, "/")
    return time.perf_counter() - started


def test_a_disconnect_does_not_scan_every_room() -> None:
    # 1,000 disconnects among 2,000 or 40,000 rooms: python-socketio's own scan makes the
    # second 20x dearer; the index keeps them alike.
    small = min(_disconnect_cost(1_000, 1_000) for _ in range(3))
    large = min(_disconnect_cost(20_000, 1_000) for _ in range(3))
    assert large < small * 4, (small, large)


async def test_bind_indexes_a_redis_manager_without_connecting() -> None:
    relay = socketio.AsyncRedisManager("redis://127.0.0.1:1", write_only=True)
    sio = _server_with(relay)
    bind_socketio(SessionManager(), sio)
    assert is_indexed(sio.manager)
    assert isinstance(sio.manager, socketio.AsyncRedisManager)
