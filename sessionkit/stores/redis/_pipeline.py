"""The connections that carry every call a :class:`~sessionkit.stores.redis.RedisStore` makes:
the calls issued in one loop turn leave in one write, and replies are matched in order.

A call on redis-py's own client takes a connection from the pool, writes, waits for its reply
and gives the connection back: one round trip per call, and a pool's worth of calls at most.
Here calls share round trips (a lone call still leaves at once, in the same loop turn), so a
worker is bound by the server rather than by the wire, and no call waits for a connection.

A reply must reach its own call and no other, so the pipeline owns its connections outright:
each is made for it from the client's own settings (host, AUTH, TLS, protocol, encoding), is
never drawn from nor given back to a pool anything else uses, has one reader, is opened once,
and is closed (never reused) after any error on it. A call is encoded before it is queued, so
an argument that cannot be encoded fails its own call alone.

Every call has its own deadline, and fails with :class:`TimeoutError` when it passes; its reply,
if it comes later, is dropped. Replies come back in the order the calls went out, so only the
oldest pending call's deadline needs a timer: one handle, not one per call. A connection that
answered nothing for a whole timeout while a call on it is overdue is taken as dead: later calls
go out on a new one, while the calls already on it keep their own deadlines (and a write held
up on it, by a server that stopped reading, is left behind).

A call may carry several commands, written back to back on one connection (a script and the
``WAIT`` that must follow it there): it takes as many replies, in order, and is answered by the
list of them, or by the first error among them.

The pipeline's tasks (its writer, one reader per connection, the closing of connections) are its
own, in one :class:`~sessionkit._tasks.TaskSet`, not a manager's: the store runs with no manager
at all, and a manager's last acknowledgements go through it after the manager's jobs have
ended. :meth:`Pipeline.aclose` ends them all. It follows a new event loop as a manager does,
through a :class:`~sessionkit._binding.LoopBinding` of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from sessionkit._binding import LoopBinding
from sessionkit._tasks import TaskSet

# Commands encoded, their reply, when they must be answered by, when they were issued (loop
# time) and how many replies they take (1: the future gets the reply itself, else their list).
_Call = tuple[bytes, "asyncio.Future[Any]", float, float, int]

#: Makes a new connection, not yet open, with a client's settings.
Dial = Callable[[], AbstractConnection]


def dial(connection_class: type[AbstractConnection], kwargs: dict[str, Any]) -> Dial:
    """A :data:`Dial` for connections of ``connection_class`` made with ``kwargs`` (a client's or
    a cluster node's own), without a socket timeout: the pipeline's deadlines bound each call,
    and redis-py's socket timeout costs an extra task per write."""
    settings = {**kwargs, "socket_timeout": None}
    return lambda: connection_class(**settings)


def pack(command: Sequence[str | bytes | int], encoding: str, errors: str) -> bytes:
    """The RESP encoding of ``command``: what redis-py's pack_command does, without its
    per-argument type dispatch (the hot path's main cost once replies are parsed by hiredis).

    :raises ValueError: for a str that cannot be encoded (a lone surrogate, in UTF-8).
    :raises TypeError: for an argument that is neither str, bytes nor int.
    """
    out = [b"*%d\r\n" % len(command)]
    for arg in command:
        if isinstance(arg, str):
            data = arg.encode(encoding, errors)
        elif isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, int) and not isinstance(arg, bool):
            data = b"%d" % arg
        else:
            raise TypeError(f"cannot send a {type(arg).__name__} to Redis")
        out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(out)


class _Link:
    # One connection and the calls written to it, in order. Dropped once: then closed.
    __slots__ = ("conn", "dead", "heard", "parts", "reader", "sent")

    def __init__(self, conn: AbstractConnection, now: float) -> None:
        self.conn = conn
        self.sent: deque[_Call] = deque()
        self.parts: list[Any] = []  # replies heard so far for the oldest call, if it takes more
        self.heard = now  # when it last answered (or was opened)
        self.reader: asyncio.Task[None] | None = None
        self.dead = False


class Pipeline:
    """Sends commands on connections of its own, each made by ``dial``.

    :param dial: makes a connection with the client's settings (see :func:`dial`).
    :param timeout: seconds a connection may take to open and greet.
    """

    def __init__(self, dial: Dial, timeout: float) -> None:
        self._dial = dial
        self._timeout = timeout
        # The loop it runs on, followed as a manager follows its own (a store may serve
        # several loops one after another, and no manager at all): see _start.
        self._binding = LoopBinding(self._start)
        self._tasks = TaskSet()  # the writer, the readers, the closing of connections
        self._link: _Link | None = None  # where new calls go
        self._draining: set[_Link] = set()  # retired links whose calls still wait for deadlines
        self._queue: list[_Call] = []  # issued, not yet written
        self._wake: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None
        self._writing: _Link | None = None  # the link the writer is writing to, if any
        self._watchdog: asyncio.TimerHandle | None = None

    def call(self, deadline: float, packed: bytes, replies: int = 1) -> asyncio.Future[Any]:
        """Issue a command encoded by :func:`pack`, to be answered by loop time ``deadline``;
        its reply (or error) arrives in the returned future.

        :param replies: how many commands ``packed`` holds: written together, on one connection,
            with nothing between them; the future then gets the list of their replies, or the
            first error among them (once all have come).
        """
        loop = asyncio.get_running_loop()
        if loop is not self._binding.loop:
            self._binding.bind()
        reply: asyncio.Future[Any] = loop.create_future()
        self._queue.append((packed, reply, deadline, loop.time(), replies))
        if self._watchdog is None:
            self._watchdog = loop.call_at(deadline, self._watch)
        assert self._wake is not None
        self._wake.set()  # the writer runs once this turn's calls are all queued
        return reply

    async def aclose(self) -> None:
        """Fail what is pending and close every connection; a later call starts again."""
        if not self._binding.here():
            self._binding.forget()
            return
        error = RedisConnectionError("the store was closed")
        for link in [*self._draining, *([self._link] if self._link else [])]:
            self._drop(link, error)
        self._fail_queue(error)
        if self._writer is not None:
            self._writer.cancel()
        await self._tasks.join()  # the writer, the readers (cancelled by _drop), the closings
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self._binding.forget()

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        # First use, or a new loop (the old one's tasks and connections went with it).
        self._link = None
        self._draining.clear()
        self._queue.clear()
        self._watchdog = None
        self._wake = asyncio.Event()
        self._writer = self._tasks.start(self._write(), "sessionkit redis writer")

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
            if not link.conn.is_connected:
                # Closed by redis-py on an error of its own: never let it open again (it would
                # greet the server, and the greeting's reply would meet our reader).
                self._drop(link, RedisConnectionError("the connection was closed"))
                wake.set()
                continue
            self._writing = link
            try:
                await link.conn.send_packed_command(
                    b"".join(call[0] for call in batch), check_health=False
                )
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
        # A connection of our own, open and greeted. Bounded: a server that accepts the
        # connection and never answers the handshake would otherwise hold the writer, and
        # every later call, for good.
        conn = self._dial()
        try:
            async with asyncio.timeout(self._timeout):
                await conn.connect()  # type: ignore[no-untyped-call]
        except BaseException:
            self._discard(conn)
            raise
        link = self._link = _Link(conn, asyncio.get_running_loop().time())
        link.reader = self._tasks.start(self._read(link), "sessionkit redis reader")
        return link

    async def _read(self, link: _Link) -> None:
        # The link's only reader, for as long as it lives.
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
                # A reply no call is waiting for: the stream is out of step. Nothing on this
                # connection can be trusted any more.
                self._drop(link, RedisConnectionError("a reply nobody asked for"))
                return
            wanted = sent[0][4]
            if wanted > 1:
                parts = link.parts
                parts.append(reply)
                if len(parts) < wanted:
                    continue
                link.parts = []
                errors = [part for part in parts if isinstance(part, ResponseError)]
                reply = errors[0] if errors else parts
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
        loop = self._binding.loop
        if loop is None:
            return
        now = loop.time()
        expired = TimeoutError("Redis did not answer in time")
        links = [*self._draining, *([self._link] if self._link else [])]
        for link in links:
            for _, future, deadline, *_ in link.sent:
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
                    self._writer = self._tasks.start(self._write(), "sessionkit redis writer")
        queue = self._queue
        for _, future, deadline, *_ in queue:
            if deadline <= now and not future.done():
                future.set_exception(expired)
        self._queue = [call for call in queue if not call[1].done()]
        for link in [*self._draining]:
            if all(call[1].done() for call in link.sent):
                self._drop(link, expired)
        calls = [*self._queue, *(call for link in links for call in link.sent)]
        pending = [deadline for _, future, deadline, *_ in calls if not future.done()]
        if pending:
            self._watchdog = loop.call_at(min(pending), self._watch)

    def _drop(self, link: _Link, error: BaseException) -> None:
        # A connection is done, once: its calls share its fate, its reader stops, and it is
        # closed for good.
        if link.dead:
            return
        link.dead = True
        if self._link is link:
            self._link = None
        self._draining.discard(link)
        for call in link.sent:
            if not call[1].done():
                call[1].set_exception(error)
        link.sent.clear()
        if link.reader is not None and link.reader is not asyncio.current_task():
            link.reader.cancel()
        self._discard(link.conn)

    def _discard(self, conn: AbstractConnection) -> None:
        # Closed in a task of the pipeline's (aclose waits for it), never to be opened again.
        self._tasks.start(self._close(conn), "sessionkit redis close")

    @staticmethod
    async def _close(conn: AbstractConnection) -> None:
        with contextlib.suppress(Exception):  # a broken socket: nobody is left to tell
            await conn.disconnect(nowait=True)

    def _fail_queue(self, error: BaseException) -> None:
        queue, self._queue = self._queue, []
        for call in queue:
            if not call[1].done():
                call[1].set_exception(error)
