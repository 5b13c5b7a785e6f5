"""A TCP proxy in front of a real Redis-compatible server that injects faults on command.

Each client connection gets its own upstream connection. The proxy parses RESP just enough to
pair each reply with the command it answers, so a test can say "let Redis apply the next
EVALSHA that mentions ``ada``, then close the client's connection instead of replying"::

    async with FaultProxy(server.port) as proxy:
        client = Redis(host="127.0.0.1", port=proxy.port)
        proxy.drop_after_reply(command=b"EVALSHA", reply=b"ada")
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, deque
from types import TracebackType


def resp_end(buf: bytes | bytearray, pos: int = 0) -> int | None:
    """The offset just past the RESP value that starts at ``pos``, or ``None`` if incomplete."""
    line_end = buf.find(b"\r\n", pos)
    if line_end < 0:
        return None
    kind, head, after = buf[pos : pos + 1], bytes(buf[pos + 1 : line_end]), line_end + 2
    if kind in (b"$", b"=", b"!"):  # bulk string (or verbatim, bulk error); -1 is nil
        size = int(head)
        return after if size < 0 else (after + size + 2 if len(buf) >= after + size + 2 else None)
    if kind in (b"*", b"~", b">", b"%"):  # array, set, push, map (map: two values an entry)
        count = int(head) * (2 if kind == b"%" else 1)
        for _ in range(max(count, 0)):
            end = resp_end(buf, after)
            if end is None:
                return None
            after = end
        return after
    return after  # one-line values: + - : _ , # (


class FaultProxy:
    """Forwards 127.0.0.1:``port`` to 127.0.0.1:``upstream_port``; faults are set by calls."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.commands: Counter[str] = Counter()  # by command name, upper case
        self.bytes_up = 0
        self.bytes_down = 0
        self.dropped = 0  # replies swallowed by drop_after_reply
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._open: set[asyncio.Event] = set()  # one per connection: whether it flows
        self._delay = 0.0
        self._drops: list[tuple[bytes, bytes]] = []  # (in the command, in the reply), pending
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
        if self._server is not None:
            self._server.close()
        self.drop_now()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- faults ------------------------------------------------------------------------------

    def delay(self, seconds: float) -> None:
        """Hold every reply ``seconds`` before passing it on (0: no delay)."""
        self._delay = seconds

    def stall(self) -> None:
        """Hold everything, both ways, until :meth:`release`."""
        self._flowing.clear()

    def release(self) -> None:
        """End a :meth:`stall` (or :meth:`freeze_open`): what was held flows on, in order."""
        self._flowing.set()
        for flows in self._open:
            flows.set()

    def freeze_open(self) -> None:
        """Hold everything, both ways, on the connections open now (the proxy stops reading
        them, so the client's writes back up); connections made later flow."""
        for flows in self._open:
            flows.clear()

    def drop_after_reply(self, n: int = 1, *, command: bytes = b"", reply: bytes = b"") -> None:
        """For the next ``n`` commands whose bytes contain ``command`` and whose reply contains
        ``reply`` (both case-sensitive): Redis runs the command, then the proxy closes the
        client's connection instead of passing the reply on (applied, but never heard). Error
        replies never count: Redis applied nothing."""
        self._drops.extend([(command, reply)] * n)

    def drop_now(self) -> None:
        """Close every client connection (and its upstream) at once."""
        for writer in list(self._writers):
            writer.transport.abort()

    @property
    def pending_drops(self) -> int:
        """How many armed ``drop_after_reply`` faults have not fired yet."""
        return len(self._drops)

    # -- the pump ----------------------------------------------------------------------------

    async def _serve(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        try:
            u_reader, u_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            c_writer.transport.abort()
            return
        self._writers |= {c_writer, u_writer}
        sent: deque[bytes] = deque()  # commands forwarded, not yet answered
        flows = asyncio.Event()
        flows.set()
        self._open.add(flows)
        up = asyncio.create_task(self._up(c_reader, u_writer, sent, flows))
        try:
            await self._down(u_reader, c_writer, sent, flows)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._open.discard(flows)
            up.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await up
            for writer in (c_writer, u_writer):
                self._writers.discard(writer)
                writer.transport.abort()

    async def _up(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        sent: deque[bytes],
        flows: asyncio.Event,
    ) -> None:
        buf = bytearray()
        with contextlib.suppress(OSError):
            while chunk := await reader.read(65536):
                buf += chunk
                while (end := resp_end(buf)) is not None:
                    command, buf = bytes(buf[:end]), buf[end:]
                    await self._flowing.wait()
                    await flows.wait()
                    parts = command.split(b"\r\n")
                    name = parts[2] if command.startswith(b"*") and len(parts) > 2 else parts[0]
                    self.commands[name.decode(errors="replace").upper()] += 1
                    self.bytes_up += len(command)
                    sent.append(command)
                    writer.write(command)
                    await writer.drain()
        # The client left: so does its upstream connection, gracefully (FIN, not RST), so
        # that Redis still runs what it was sent, as it would for a client connected directly.
        writer.close()

    async def _down(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        sent: deque[bytes],
        flows: asyncio.Event,
    ) -> None:
        buf = bytearray()
        while chunk := await reader.read(65536):
            buf += chunk
            while (end := resp_end(buf)) is not None:
                reply, buf = bytes(buf[:end]), buf[end:]
                command = sent.popleft() if sent else b""
                if self._delay:
                    await asyncio.sleep(self._delay)
                await self._flowing.wait()
                await flows.wait()
                for i, (in_command, in_reply) in enumerate(self._drops):
                    # An error reply (NOSCRIPT, BUSY...) means nothing was applied: passed on.
                    if in_command in command and in_reply in reply and reply[:1] != b"-":
                        del self._drops[i]
                        self.dropped += 1
                        return  # the caller's connection closes with the reply unsent
                self.bytes_down += len(reply)
                writer.write(reply)
                await writer.drain()
