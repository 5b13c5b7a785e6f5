"""The sessionkit side of the push benchmark: a Socket.IO server under uvicorn, driven by
``benchmarks/push.py`` through stdin/stdout, one JSON object per line.

    python -m benchmarks.push_server [--ws IMPL] [--loop auto|asyncio|uvloop] [--deflate]
                                     [--keep-sockets] [--trace-memory] [--profile DIR]

It prints ``{"port": P}`` once it listens on 127.0.0.1, then answers each command:

- ``sessions N PATH``: make N sessions (one hour), write their keys to PATH, one per line.
- ``rss``: the process's resident memory after a full garbage collection, and its sockets
  (with ``--trace-memory``, also the Python heap by package, from ``tracemalloc``).
- ``arm SECONDS PATH``: every session's idle timeout becomes SECONDS from now (restarted with
  a shorter timeout); their deadlines go to PATH as JSON (epoch seconds, in key order).
- ``mark`` (once every client has had its logout): the CPU time spent since arming, and how
  much of it CPython's cyclic garbage collector took.
- ``done``: waits until every socket has gone (the
  adapter disconnects them after their logout), then prints the CPU time spent since arming,
  and how much of it CPython's cyclic garbage collector took.
- ``watch``: starts the clock for a mass leave; ``left`` then waits until every socket has
  gone and prints the CPU time spent since ``watch`` (and the collector's share).
- ``quit``.

It serves the way the Socket.IO guide (docs/guides/socketio.md) recommends:
``bind_socketio(sm, sio)`` with its defaults on a plain ``socketio.AsyncServer``, one uvicorn
worker with per-message deflate off (uvloop when installed). ``--profile DIR`` writes cProfile files of the burst and of the mass leave there.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import os
import socket
import sys
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

import socketio
import uvicorn

from sessionkit import SessionManager
from sessionkit.socketio import bind_socketio

HOUR = 3600.0  # seconds: no session ends before the benchmark arms it
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    """Resident memory of this process in bytes (as the seed's side reads it too)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


def say(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def write(path: str, text: str) -> None:
    Path(path).write_text(text)


def heap_by_package() -> dict[str, int]:
    """Bytes of live Python objects by where they were allocated: a site-packages package, or
    the standard library's module."""
    sizes: Counter[str] = Counter()
    for stat in tracemalloc.take_snapshot().statistics("filename"):
        name = stat.traceback[0].filename
        if "site-packages/" in name:
            where = name.split("site-packages/", 1)[1].split("/", 1)[0]
        elif "/sessionkit/" in name:
            where = "sessionkit"
        else:
            where = "stdlib " + name.rsplit("/", 2)[-2 if name.endswith("__init__.py") else -1]
        sizes[where] += stat.size
    return dict(sizes)


class GcClock:
    """CPU time spent in CPython's cyclic garbage collector (all generations)."""

    def __init__(self) -> None:
        self.spent = 0.0
        self._started = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.process_time()
        else:
            self.spent += time.process_time() - self._started


async def until_no_sockets(sio: Any) -> None:
    # Polled rather than signalled: a disconnect handler would add work to what is measured.
    while sio.eio.sockets:  # noqa: ASYNC110
        await asyncio.sleep(0.005)


async def serve(
    ws: str, deflate: bool, disconnect: bool, trace_memory: bool, profile_dir: str | None
) -> None:
    sm = SessionManager(timeout=HOUR)
    sio = socketio.AsyncServer(async_mode="asgi")
    bind_socketio(sm, sio, disconnect_on_logout=disconnect)
    config = uvicorn.Config(
        socketio.ASGIApp(sio),
        lifespan="off",
        log_level="warning",
        access_log=False,
        ws=ws,
        ws_per_message_deflate=deflate,
        backlog=4096,
    )
    server = uvicorn.Server(config)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
        await asyncio.sleep(0.01)
    say(port=sock.getsockname()[1])
    keys: list[str] = []
    cpu = gc_before = 0.0
    collector = GcClock()
    profiler = cProfile.Profile() if profile_dir else None
    loop = asyncio.get_running_loop()
    try:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            command, *args = line.split()
            if command == "sessions":
                sm.set_session_timeout(HOUR)
                keys = [await sm.load_new_session(f"user{i}") for i in range(int(args[0]))]
                write(args[1], "\n".join(keys) + "\n")
                say(made=len(keys))
            elif command == "rss":
                gc.collect()
                heap = heap_by_package() if trace_memory else None
                say(rss=rss(), sockets=len(sio.eio.sockets), heap=heap)
            elif command in ("arm", "watch"):
                # Each measured window starts from a collected heap on both sides, so that it
                # pays for the garbage it makes, not for what connecting N clients left.
                gc.collect()
                if command == "arm":
                    timeout = float(args[0])
                    sm.set_session_timeout(timeout)
                    deadlines = []  # floats, like the seed's side: nothing for the GC to track
                    for key in keys:
                        deadlines.append(time.time() + timeout)
                        await sm.restart_session_timer(key)
                    write(args[1], json.dumps(deadlines))
                cpu, gc_before = time.process_time(), collector.spent
                if profiler:
                    profiler.enable()
                if command == "arm":
                    say(armed=len(keys))
                else:
                    say(watching=True)
            elif command == "mark":
                say(cpu=time.process_time() - cpu, gc=collector.spent - gc_before)
            elif command in ("done", "left"):
                if command == "left" or disconnect:
                    await until_no_sockets(sio)
                spent, in_gc = time.process_time() - cpu, collector.spent - gc_before
                if profiler:
                    profiler.disable()
                    profiler.dump_stats(f"{profile_dir}/{command}.prof")
                    profiler = cProfile.Profile()
                say(cpu=spent, gc=in_gc)
            elif command == "quit":
                break
    finally:
        await sm.aclose()
        server.should_exit = True
        await task


def default_ws() -> str:
    """The Socket.IO guide's recommendation: websockets' sans-I/O protocol when installed."""
    try:
        import websockets  # noqa: F401
    except ImportError:
        return "wsproto"
    return "websockets-sansio"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ws", default=default_ws(), help="uvicorn's websocket implementation")
    parser.add_argument("--loop", default="auto", choices=("auto", "asyncio", "uvloop"))
    parser.add_argument("--deflate", action="store_true", help="accept per-message compression")
    parser.add_argument("--keep-sockets", action="store_true", help="disconnect_on_logout=False")
    parser.add_argument("--trace-memory", action="store_true", help="the Python heap by package")
    parser.add_argument("--profile", metavar="DIR", help="cProfile the burst and the mass leave")
    args = parser.parse_args()
    if args.trace_memory:
        tracemalloc.start()
    run = serve(args.ws, args.deflate, not args.keep_sockets, args.trace_memory, args.profile)
    use_uvloop = args.loop == "uvloop"
    if args.loop == "auto":
        try:
            import uvloop
        except ImportError:
            use_uvloop = False
        else:
            use_uvloop = True
    if use_uvloop:
        import uvloop

        uvloop.run(run)
    else:
        asyncio.run(run)


if __name__ == "__main__":
    main()
