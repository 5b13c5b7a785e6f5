"""One connection that carries every call a :class:`~sessionkit.stores.redis.RedisStore` makes:
the calls issued in one loop turn leave in one write, and replies are matched in order.

A call on redis-py's own client takes a connection from the pool, writes, waits for its reply
and gives the connection back: one round trip per call, and a pool's worth of calls at most.
Here calls share round trips (a lone call still leaves at once, in the same loop turn), so a
worker is bound by the server rather than by the wire, and no call waits for a connection.

Every call has its own deadline, and fails with :class:`TimeoutError` when it passes; its reply,
if it comes later, is dropped. Replies come back in the order the calls went out, so only the
oldest pending call's deadline needs a timer: one handle, not one per call. A connection that
answered nothing for a whole timeout while a call on it is overdue is taken as dead: later calls
go out on a new one, while the calls already on it keep their own deadlines (and a write held
up on it, by a server that stopped reading, is left behind).
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

# A command, its reply, when it must be answered by and when it was issued (loop time).
_Call = tuple[tuple[Any, ...], "asyncio.Future[Any]", float, float]


def _pack(commands: list[tuple[Any, ...]], encoding: str, errors: str) -> bytes:
    # The RESP encoding of commands made of str, bytes and numbers: what redis-py's
    # pack_command does, without its per-argument type dispatch (the hot path's main cost
    # once replies are parsed by hiredis).
    out = []
    for command in commands:
        out.append(b"*%d\r\n" % len(command))
        for arg in command:
            if isinstance(arg, str):
                data = arg.encode(encoding, errors)
            elif isinstance(arg, bytes):
                data = arg
            else:
                data = repr(arg).encode()  # an int or a float
            out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(out)


class _Link:
    # One connection and the calls written to it, in order.
    __slots__ = ("conn", "encoding", "errors", "heard", "reader", "sent", "socket_timeout")

    def __init__(self, conn: AbstractConnection, now: float) -> None:
        self.conn = conn
        self.socket_timeout = conn.socket_timeout
        # The client's own encoding for str arguments (utf-8 unless it was told otherwise).
        self.encoding: str = conn.encoder.encoding
        self.errors: str = conn.encoder.encoding_errors
        self.sent: deque[_Call] = deque()
        self.heard = now  # when it last answered (or was opened)
        self.reader: asyncio.Task[None] | None = None


class Connections(Protocol):
    """Where a pipeline's connections come from, and go back to when they die."""

    async def get(self) -> AbstractConnection:
        """A connection, open."""

    async def give_back(self, conn: AbstractConnection) -> None:
        """Take back a connection the pipeline closed."""


class PoolConnections:
    """Connections borrowed from a client's own pool: closing the client closes them too, so
    none lives longer than the client."""

    def __init__(self, client: Redis) -> None:
        self._pool = client.connection_pool

    async def get(self) -> AbstractConnection:
        conn: AbstractConnection = await self._pool.get_connection()  # type: ignore[no-untyped-call]
        return conn

    async def give_back(self, conn: AbstractConnection) -> None:
        await self._pool.release(conn)


class NodeConnections:
    """Connections borrowed from one node of a ``RedisCluster`` client, likewise."""

    def __init__(self, node: ClusterNode) -> None:
        self.node = node

    async def get(self) -> AbstractConnection:
        conn = self.node.acquire_connection()
        try:
            await conn.connect()  # type: ignore[no-untyped-call]
        except BaseException:
            self.node.release(conn)
            raise
        return conn

    async def give_back(self, conn: AbstractConnection) -> None:
        self.node.release(conn)  # type: ignore[arg-type]


class Pipeline:
    """Sends commands on connections of its own, taken from ``source``.

    :param source: where connections come from (with the client's settings: host, auth, TLS,
        protocol).
    :param timeout: seconds a connection may take to open and greet.
    """

    def __init__(self, source: Connections, timeout: float) -> None:
        self._source = source
        self._timeout = timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._link: _Link | None = None  # where new calls go
        self._draining: set[_Link] = set()  # dead links whose calls still wait for deadlines
        self._queue: list[_Call] = []  # issued, not yet written
        self._wake: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None
        self._writing: _Link | None = None  # the link the writer is writing to, if any
        self._watchdog: asyncio.TimerHandle | None = None
        self._closing: set[asyncio.Task[None]] = set()

    def call(self, deadline: float, *command: Any) -> asyncio.Future[Any]:
        """Issue ``command``, to be answered by loop time ``deadline``; its reply (or error)
        arrives in the returned future."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._start(loop)
        reply: asyncio.Future[Any] = loop.create_future()
        self._queue.append((command, reply, deadline, loop.time()))
        if self._watchdog is None:
            self._watchdog = loop.call_at(deadline, self._watch)
        assert self._wake is not None
        self._wake.set()  # the writer runs once this turn's calls are all queued
        return reply

    async def aclose(self) -> None:
        """Fail what is pending and close every connection; a later call starts again."""
        if self._loop is not asyncio.get_running_loop():
            self._loop = None
            return
        error = RedisConnectionError("the store was closed")
        links = [*self._draining, *([self._link] if self._link else [])]
        self._link = None
        self._draining.clear()
        for link in links:
            self._drop(link, error)
        self._fail_queue(error)
        tasks = [t for t in (self._writer, *(link.reader for link in links)) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, *self._closing, return_exceptions=True)
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self._loop = None

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        # First use, or a new loop (the old one's tasks and connections went with it).
        self._loop = loop
        self._link = None
        self._draining.clear()
        self._queue.clear()
        self._watchdog = None
        self._wake = asyncio.Event()
        self._writer = loop.create_task(self._write(), name="sessionkit redis writer")

    async def _write(self) -> None:
        wake = self._wake
        assert wake is not None
        while True:
            await wake.wait()
            wake.clear()
            if not self._queue:
                continue
            link = self._link
            if link is None:
                try:
                    link = await self._connect()
                except TimeoutError:
                    # A server that does not greet: the watchdog fails each waiting call at its
                    # own deadline, and whatever is still waiting gets a new try.
                    if self._queue:
                        wake.set()
                    continue
                except Exception as exc:
                    self._fail_queue(exc)
                    continue
            batch, self._queue = self._queue, []
            link.sent.extend(batch)  # before the write: a reply may follow at once
            packed = _pack([call[0] for call in batch], link.encoding, link.errors)
            self._writing = link
            try:
                await link.conn.send_packed_command(packed, check_health=False)
            except Exception as exc:
                # The connection broke: the calls written to it fail with it, and those queued
                # since go out on a new one.
                self._drop(link, exc)
                if self._queue:
                    wake.set()
            finally:
                if self._writing is link:
                    self._writing = None

    async def _connect(self) -> _Link:
        # A connection borrowed for as long as it serves. Bounded: a server that accepts the
        # connection and never answers the handshake would otherwise hold the writer, and
        # every later call, for good.
        async with asyncio.timeout(self._timeout):
            conn = await self._source.get()
        loop = asyncio.get_running_loop()
        link = self._link = _Link(conn, loop.time())
        # Deadlines are the pipeline's own: no socket timeout around each write (the client's
        # is an extra task per write), put back when the connection goes back.
        conn.socket_timeout = None
        link.reader = loop.create_task(self._read(link), name="sessionkit redis reader")
        return link

    async def _read(self, link: _Link) -> None:
        sent = link.sent
        loop = asyncio.get_running_loop()
        while True:
            try:
                reply: Any = await link.conn.read_response(
                    timeout=math.inf, disconnect_on_error=False
                )
            except ResponseError as error:  # an error reply answers its own call only
                reply = error
            except Exception as exc:
                self._drop(link, exc)
                return
            link.heard = loop.time()
            if not sent:
                continue
            future = sent.popleft()[1]
            if future.done():
                pass  # its caller gave up, or its deadline passed
            elif isinstance(reply, ResponseError):
                future.set_exception(reply)
            else:
                future.set_result(reply)
            if not sent and link in self._draining:
                self._drop(link, RedisConnectionError("connection retired"))
                return

    def _watch(self) -> None:
        # Fail every call whose deadline passed; retire a connection that heard nothing for a
        # whole timeout while a call on it is overdue; wake again at the next deadline.
        self._watchdog = None
        loop = self._loop
        if loop is None:
            return
        now = loop.time()
        expired = TimeoutError("Redis did not answer in time")
        links = [*self._draining, *([self._link] if self._link else [])]
        for link in links:
            for _, future, deadline, _ in link.sent:
                if deadline <= now and not future.done():
                    future.set_exception(expired)
            overdue = any(call[2] <= now for call in link.sent)
            if link is self._link and overdue and now - link.heard >= self._timeout:
                self._link = None  # dead: later calls open a new connection
                self._draining.add(link)
                if self._writing is link:
                    # A server that stopped reading holds the write up for good (its socket
                    # buffers are full): leave it, and write on to the new connection.
                    assert self._writer is not None
                    self._writer.cancel()
                    self._writing = None
                    self._writer = loop.create_task(self._write(), name="sessionkit redis writer")
        queue = self._queue
        for _, future, deadline, _ in queue:
            if deadline <= now and not future.done():
                future.set_exception(expired)
        self._queue = [call for call in queue if not call[1].done()]
        for link in [*self._draining]:
            if all(call[1].done() for call in link.sent):
                self._drop(link, expired)
        calls = [*self._queue, *(call for link in links for call in link.sent)]
        pending = [deadline for _, future, deadline, _ in calls if not future.done()]
        if pending:
            self._watchdog = loop.call_at(min(pending), self._watch)

    def _drop(self, link: _Link, error: BaseException) -> None:
        # A connection is done: its calls share its fate.
        if self._link is link:
            self._link = None
        self._draining.discard(link)
        for call in link.sent:
            if not call[1].done():
                call[1].set_exception(error)
        link.sent.clear()
        if link.reader is not None and link.reader is not asyncio.current_task():
            link.reader.cancel()
        task = asyncio.get_running_loop().create_task(self._give_back(link))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _give_back(self, link: _Link) -> None:
        # Closed, then given back as it came, to be opened afresh if it is used again.
        conn = link.conn
        await conn.disconnect(nowait=True)
        conn.socket_timeout = link.socket_timeout
        await self._source.give_back(conn)

    def _fail_queue(self, error: BaseException) -> None:
        queue, self._queue = self._queue, []
        for call in queue:
            if not call[1].done():
                call[1].set_exception(error)
