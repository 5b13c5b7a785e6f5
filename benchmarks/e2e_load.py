"""A small HTTP/1.1 load generator: the end-to-end benchmark's fallback when ``wrk`` is absent.

    python -m benchmarks.e2e_load PORT KEYFILE CONNECTIONS SECONDS

Opens CONNECTIONS keep-alive connections to 127.0.0.1:PORT and, on each, sends ``GET /api/me``
as soon as the previous response has arrived (one request in flight per connection, no
pipelining), each request carrying the next header line of KEYFILE. It runs on asyncio
protocols (uvloop when installed) and parses only what it needs (the status code and
Content-Length), so that it costs the server's two cores as little as it can. Prints one JSON
line: requests completed within SECONDS, non-2xx responses, errors, and the p50/p99 latency.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import random
import sys
import time
from pathlib import Path
from typing import cast

PATH = "/api/me"


class Tally:
    """What all connections have seen."""

    def __init__(self) -> None:
        self.latencies: list[int] = []  # ns, one per completed response
        self.non2xx = 0
        self.errors = 0
        self.stopping = False


class Client(asyncio.Protocol):
    """One keep-alive connection with one request in flight."""

    def __init__(self, requests: list[bytes], tally: Tally) -> None:
        self.requests = requests
        self.tally = tally
        self.next = random.randrange(len(requests))  # clients start at different keys
        self.buffer = b""
        self.sent = 0
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but they are one.
        self.transport = cast(asyncio.Transport, transport)
        self.send()

    def send(self) -> None:
        assert self.transport is not None
        request = self.requests[self.next]
        self.next = (self.next + 1) % len(self.requests)
        self.sent = time.perf_counter_ns()
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            self.buffer = buffer
            return
        head = buffer[:end].lower()
        at = head.find(b"content-length:")
        length = 0
        if at >= 0:
            stop = head.find(b"\r\n", at)
            length = int(head[at + 15 : stop if stop >= 0 else len(head)])
        if len(buffer) < end + 4 + length:
            self.buffer = buffer
            return
        self.buffer = buffer[end + 4 + length :]
        tally = self.tally
        if tally.stopping:
            return
        tally.latencies.append(time.perf_counter_ns() - self.sent)
        if buffer[9:10] != b"2":
            tally.non2xx += 1
        self.send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.tally.stopping:
            self.tally.errors += 1
        if not self.closed.done():
            self.closed.set_result(None)


def requests_from(keyfile: Path, port: int) -> list[bytes]:
    """One ready-made request per header line of ``keyfile``."""
    out = []
    for line in keyfile.read_text().splitlines():
        if line.strip():
            out.append(
                f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{line}\r\n\r\n".encode("latin-1")
            )
    return out


def percentile(sorted_values: list[int], fraction: float) -> int:
    """The value below which ``fraction`` of the sorted values lie (nearest rank)."""
    if not sorted_values:
        return 0
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


async def run(port: int, keyfile: Path, connections: int, seconds: float) -> dict[str, float]:
    """Load the server for ``seconds``; return what the driver reads."""
    loop = asyncio.get_running_loop()
    requests = requests_from(keyfile, port)
    tally = Tally()
    clients: list[Client] = []
    for _ in range(connections):
        _, client = await loop.create_connection(lambda: Client(requests, tally), "127.0.0.1", port)
        clients.append(client)
    # Connections opened one after another have already started: count from here.
    began = time.perf_counter()
    tally.latencies.clear()
    tally.non2xx = 0
    await asyncio.sleep(seconds)
    tally.stopping = True
    elapsed = time.perf_counter() - began
    for client in clients:
        if client.transport is not None:
            client.transport.close()
    await asyncio.gather(*(c.closed for c in clients))
    latencies = sorted(tally.latencies)
    return {
        "requests": len(latencies),
        "duration_s": elapsed,
        "non2xx": tally.non2xx,
        "errors": tally.errors,
        "p50_us": percentile(latencies, 0.50) / 1000,
        "p99_us": percentile(latencies, 0.99) / 1000,
    }


def main(argv: list[str]) -> None:
    port, keyfile, connections, seconds = int(argv[0]), Path(argv[1]), int(argv[2]), float(argv[3])
    if importlib.util.find_spec("uvloop"):
        import uvloop

        result = uvloop.run(run(port, keyfile, connections, seconds))
    else:
        result = asyncio.run(run(port, keyfile, connections, seconds))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
