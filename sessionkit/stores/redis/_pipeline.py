"""The connections that carry every call a :class:`~sessionkit.stores.redis.RedisStore` makes:
the calls issued in one loop turn leave in one write, and replies are matched in order.

A call on redis-py's own client takes a connection from the pool, writes, waits for its reply
and gives the connection back: one round trip per call, and a pool's worth of calls at most.
Here calls share round trips (a lone call still leaves at once, in the same loop turn), so a
worker is bound by the server rather than by the wire, and no call waits for a connection.

A reply must reach its own call and no other, so the pipeline owns its connections outright:
each is made for it from the client's own settings (host, AUTH, TLS, protocol, encoding) and
greeted by redis-py, is never drawn from nor given back to a pool anything else uses, is opened
once, and is closed (never reused) after any error on it. Once greeted, its transport is the
pipeline's: a protocol of its own parses the replies (with hiredis, errors made as redis-py
makes them) as they arrive and answers the oldest calls with them, in the loop's callback, with
no task and no coroutine between the socket and the calls; a turn's calls are written by one
callback too, straight to the transport. A call is encoded before it is queued, so an argument
that cannot be encoded fails its own call alone.

Every call has its own deadline, and fails with :class:`TimeoutError` when it passes; its reply,
if it comes later, is dropped. Replies come back in the order the calls went out, so only the
oldest pending call's deadline needs a timer: one handle, not one per call. A connection that
answered nothing for a whole timeout while a call on it is overdue is taken as dead: later calls
go out on a new one, while the calls already on it keep their own deadlines (and what a server
that stopped reading left unwritten on it is dropped with it). While a connection's transport
holds too much unwritten (its server is not reading), new calls wait in the queue.

A call may carry several commands, written back to back on one connection (a script and the
``WAIT`` that must follow it there): it takes as many replies, in order, and is answered by the
list of them, or by the first error among them.

The pipeline's tasks (the opening of a connection, the closing of connections) are its own, in
one :class:`~sessionkit._tasks.TaskSet`, not a manager's: the store runs with no manager
at all, and a manager's last acknowledgements go through it after the manager's jobs have
ended. :meth:`Pipeline.aclose` ends them all. It follows a new event loop as a manager does,
through a :class:`~sessionkit._binding.LoopBinding` of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import hiredis
from redis._parsers import BaseParser
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, ResponseError

from sessionkit._binding import LoopBinding
from sessionkit._tasks import TaskSet

# Commands encoded, their reply, when they must be answered by, when they were issued (loop
# time) and how many replies they take (1: the future gets the reply itself, else their list).
_Call = tuple[bytes, "asyncio.Future[Any]", float, float, int]

#: Makes a new connection, not yet open, with a client's settings.
Dial = Callable[[], AbstractConnection]

_MORE = object()  # what the reply parser gives while a reply is still incomplete
# A frame the server pushes unasked (RESP3), which answers no call (hiredis >= 3.2 names it).
_PUSH: type | None = getattr(hiredis, "PushNotification", None)


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


class _Link(asyncio.Protocol):
    # One connection and the calls written to it, in order; the protocol of its transport once
    # redis-py has opened and greeted it, so that replies are parsed and matched as they arrive,
    # with no task between the socket and the calls. Dropped once: then closed.
    __slots__ = (
        "conn",
        "dead",
        "heard",
        "loop",
        "parts",
        "paused",
        "pipe",
        "replies",
        "sent",
        "transport",
    )

    def __init__(
        self, pipe: Pipeline, conn: AbstractConnection, transport: asyncio.WriteTransport
    ) -> None:
        self.pipe = pipe
        self.conn = conn
        self.transport = transport
        self.loop = asyncio.get_running_loop()
        self.sent: deque[_Call] = deque()
        self.parts: list[Any] = []  # replies heard so far for the oldest call, if it takes more
        self.heard = self.loop.time()  # when it last answered (or was opened)
        self.dead = False
        self.paused = False  # its transport's buffer is full: the server is not reading
        # Errors made as redis-py makes them (NoScriptError, MovedError...), replies decoded
        # as the client decodes them.
        encoder = conn.encoder
        options: dict[str, Any] = {}
        if encoder.decode_responses:
            options = {"encoding": encoder.encoding, "errors": encoder.encoding_errors}
        self.replies = hiredis.Reader(
            protocolError=InvalidResponse,
            replyError=BaseParser.parse_error,
            notEnoughData=_MORE,
            **options,
        )

    def data_received(self, data: bytes) -> None:
        try:
            self.pipe._answer(self, data)
        except Exception as exc:  # a reply that cannot be parsed: the stream is lost
            self.pipe._drop(self, exc)

    def eof_received(self) -> bool:
        self.pipe._drop(self, RedisConnectionError("Connection closed by server."))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        error = RedisConnectionError("Connection closed.")
        if exc is not None:
            error.__cause__ = exc
        self.pipe._drop(self, error)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.pipe._resumed(self)


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
        self._tasks = TaskSet()  # the connecting, the closing of connections
        self._link: _Link | None = None  # where new calls go
        self._draining: set[_Link] = set()  # retired links whose calls still wait for deadlines
        self._queue: list[_Call] = []  # issued, not yet written
        self._flushing: asyncio.Handle | None = None  # the write of this turn's calls, if due
        self._connecting: asyncio.Task[None] | None = None
        self._watchdog: asyncio.TimerHandle | None = None

    def call(self, deadline: float, packed: bytes, replies: int = 1) -> asyncio.Future[Any]:
        """Issue a command encoded by :func:`pack`, to be answered by loop time ``deadline``;
        its reply (or error) arrives in the returned future.

        :param replies: how many commands ``packed`` holds: written together, on one connection,
            with nothing between them; the future then gets the list of their replies, or the
            first error among them (once all have come).
        """
        loop = self._binding.current()
        reply: asyncio.Future[Any] = loop.create_future()
        self._queue.append((packed, reply, deadline, loop.time(), replies))
        if self._watchdog is None:
            self._watchdog = loop.call_at(deadline, self._watch)
        if self._flushing is None:  # written once this turn's calls are all queued
            self._flushing = loop.call_soon(self._flush)
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
        if self._flushing is not None:
            self._flushing.cancel()
            self._flushing = None
        if self._connecting is not None:
            self._connecting.cancel()
        await self._tasks.join()  # the connecting, the closings
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self._binding.forget()

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        # First use, or a new loop (the old one's tasks and connections went with it).
        self._link = None
        self._draining.clear()
        self._queue.clear()
        self._flushing = None
        self._connecting = None
        self._watchdog = None

    def _flush(self) -> None:
        # Write the calls queued this turn, in one write, to the connection new calls go to
        # (made first, in a task, if there is none).
        self._flushing = None
        if not self._queue:
            return
        link = self._link
        if link is None:
            if self._connecting is None:
                self._connecting = self._tasks.start(self._connect(), "sessionkit redis connect")
            return
        if link.paused:
            return  # the server is not reading: written once it is (or on a new connection)
        if link.transport.is_closing():
            # Closed under us (connection_lost will follow): never write to it again.
            self._drop(link, RedisConnectionError("the connection was closed"))
            return  # the rest on a new one (_drop sees to it)
        batch, self._queue = self._queue, []
        link.sent.extend(batch)  # before the write: a reply may follow at once
        try:
            link.transport.write(b"".join([call[0] for call in batch]))
        except Exception as exc:
            # The connection broke: the calls written to it fail with it, and those queued
            # since go out on a new one.
            self._drop(link, exc)

    async def _connect(self) -> None:
        # A connection of our own, open and greeted by redis-py, then taken over. Bounded: a
        # server that accepts the connection and never answers the handshake would otherwise
        # hold every later call, for good.
        try:
            while self._queue:
                try:
                    self._link = await self._open()
                except TimeoutError:
                    # A server that does not greet: the watchdog fails each waiting call at its
                    # own deadline, and whatever is still waiting gets a new try.
                    continue
                except Exception as exc:
                    self._fail_queue(exc)
                    return
                self._flush()
                return
        finally:
            self._connecting = None

    async def _open(self) -> _Link:
        conn = self._dial()
        try:
            async with asyncio.timeout(self._timeout):
                await conn.connect()  # type: ignore[no-untyped-call]
            writer = conn._writer  # redis-py's, from asyncio.open_connection: see _compat
            if writer is None or writer.transport.is_closing():
                raise RedisConnectionError("Connection closed by server.")
        except BaseException:
            self._discard(conn)
            raise
        transport = writer.transport
        link = _Link(self, conn, transport)
        # From here on its bytes come to the link: redis-py read every reply of its greeting.
        transport.set_protocol(link)
        return link

    def _answer(self, link: _Link, data: bytes) -> None:
        # Replies that arrived on ``link``, each to the oldest call still waiting on it.
        if link.dead:
            return
        replies, sent = link.replies, link.sent
        replies.feed(data)
        link.heard = link.loop.time()
        while (reply := replies.gets()) is not _MORE:
            if _PUSH is not None and isinstance(reply, _PUSH):
                continue  # sent unasked: no call's
            if isinstance(reply, RedisConnectionError) or (
                isinstance(reply, list) and reply and isinstance(reply[0], RedisConnectionError)
            ):
                # An error reply redis-py takes as the connection's (AUTH, too many clients),
                # as its own parser does: it ends the connection, not one call.
                self._drop(link, reply if isinstance(reply, Exception) else reply[0])
                return
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
            elif isinstance(reply, ResponseError):  # an error reply answers its own call only
                future.set_exception(reply)
            else:
                future.set_result(reply)
            if not sent and link in self._draining:
                self._drop(link, RedisConnectionError("connection retired"))
                return

    def _resumed(self, link: _Link) -> None:
        # The server reads again: what waited for it goes out.
        if link is self._link and self._queue and self._flushing is None:
            self._flush()

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
                # Dead: later calls open a new connection. A server that stopped reading holds
                # its unwritten bytes for good (its socket buffers are full): they stay behind.
                self._link = None
                self._draining.add(link)
        queue = self._queue
        for _, future, deadline, *_ in queue:
            if deadline <= now and not future.done():
                future.set_exception(expired)
        self._queue = [call for call in queue if not call[1].done()]
        for link in [*self._draining]:
            if all(call[1].done() for call in link.sent):
                self._drop(link, expired)
        self._flush_on_new_link()
        calls = [*self._queue, *(call for link in links for call in link.sent)]
        pending = [deadline for _, future, deadline, *_ in calls if not future.done()]
        if pending:
            self._watchdog = loop.call_at(min(pending), self._watch)

    def _drop(self, link: _Link, error: BaseException) -> None:
        # A connection is done, once: its calls share its fate, and it is closed for good.
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
        link.transport.abort()  # what it still holds to write is nobody's now
        self._discard(link.conn)
        self._flush_on_new_link()

    def _flush_on_new_link(self) -> None:
        # Calls still queued with no connection to take them (it was retired or dropped): they
        # go out on a new one (_flush starts the connecting).
        if self._queue and self._link is None and self._flushing is None:
            loop = self._binding.loop
            if loop is not None and not loop.is_closed():
                self._flushing = loop.call_soon(self._flush)

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
