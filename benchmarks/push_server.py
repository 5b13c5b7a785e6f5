"""The sessionkit side of the push benchmark: a Socket.IO server under uvicorn, driven by
``benchmarks/push.py`` through stdin/stdout, one JSON object per line.

    python -m benchmarks.push_server [--ws IMPL] [--loop asyncio|uvloop]

It prints ``{"port": P}`` once it listens on 127.0.0.1, then answers each command:

- ``sessions N PATH``: make N sessions (one hour), write their keys to PATH, one per line.
- ``rss``: the process's resident memory, after a full garbage collection, and its sockets.
- ``arm SECONDS PATH``: every session's idle timeout becomes SECONDS from now (restarted with
  a shorter timeout); their deadlines go to PATH as JSON (epoch seconds, in key order).
- ``done`` (once every client has had its logout): waits until every socket has gone (the
  adapter disconnects them after their logout) and prints the CPU time spent since arming.
- ``watch``: prints ``{"watching": true}``, then, once every socket has gone, the CPU time
  spent since.
- ``quit``.

It serves the way the README recommends: ``bind_socketio(sm, sio)`` with its defaults on a
plain ``socketio.AsyncServer``, one uvicorn worker with per-message deflate off.
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


async def until_no_sockets(sio: Any) -> None:
    while sio.eio.sockets:
        await asyncio.sleep(0.005)


async def serve(ws: str) -> None:
    sm = SessionManager(timeout=HOUR)
    sio = socketio.AsyncServer(async_mode="asgi")
    bind_socketio(sm, sio)
    config = uvicorn.Config(
        socketio.ASGIApp(sio),
        lifespan="off",
        log_level="warning",
        access_log=False,
        ws=ws,  # type: ignore[arg-type]
        ws_per_message_deflate=False,
        backlog=4096,
    )
    server = uvicorn.Server(config)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    say(port=sock.getsockname()[1])
    keys: list[str] = []
    cpu = 0.0
    # SESSIONKIT_PUSH_PROFILE=DIR profiles the burst and the mass leave into DIR/*.prof.
    profile_dir = os.environ.get("SESSIONKIT_PUSH_PROFILE")
    profiler = cProfile.Profile() if profile_dir and not os.environ.get("NOPROF") else None
    gc_time = [0.0, 0.0, 0.0, 0, 0, 0]
    if profile_dir:
        started = [0.0]

        def on_gc(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                started[0] = time.process_time()
            else:
                gc_time[info["generation"]] += time.process_time() - started[0]
                gc_time[3 + info["generation"]] += 1

        gc.callbacks.append(on_gc)
    loop = asyncio.get_running_loop()
    try:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            command, *args = line.split()
            if profile_dir:
                sys.stderr.write(f"before {command}: gc {gc_time} objects {len(gc.get_objects())}\n")
                gc_time[:] = [0.0, 0.0, 0.0, 0, 0, 0]
            if command == "sessions":
                sm.set_session_timeout(HOUR)
                keys = [await sm.load_new_session(f"user{i}") for i in range(int(args[0]))]
                Path(args[1]).write_text("\n".join(keys) + "\n")
                say(made=len(keys))
            elif command == "rss":
                gc.collect()
                if profile_dir:
                    import collections

                    counts = collections.Counter(
                        f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects()
                    )
                    sys.stderr.write(f"{counts.most_common(45)}\n")
                say(rss=rss(), sockets=len(sio.eio.sockets))
            elif command == "arm":
                sm.set_session_timeout(float(args[0]))
                for key in keys:
                    await sm.restart_session_timer(key)
                deadlines = [
                    (await sm.get_session_details(key)).expires_at.timestamp() for key in keys
                ]
                Path(args[1]).write_text(json.dumps(deadlines))
                cpu = time.process_time()
                if profiler:
                    profiler.enable()
                say(armed=len(deadlines))
            elif command == "done":
                await until_no_sockets(sio)
                spent = time.process_time() - cpu
                if profiler and profile_dir:
                    profiler.disable()
                    profiler.dump_stats(f"{profile_dir}/burst.prof")
                    profiler = cProfile.Profile()
                if profile_dir:
                    sys.stderr.write(f"gc time by generation: {gc_time}\n")
                say(burst_cpu=spent)
            elif command == "watch":
                cpu = time.process_time()
                if profiler:
                    profiler.enable()
                say(watching=True)
                await until_no_sockets(sio)
                spent = time.process_time() - cpu
                if profiler and profile_dir:
                    profiler.disable()
                    profiler.dump_stats(f"{profile_dir}/leave.prof")
                    profiler = cProfile.Profile()
                if profile_dir:
                    sys.stderr.write(f"gc time by generation: {gc_time}\n")
                say(leave_cpu=spent)
            elif command == "quit":
                break
    finally:
        await sm.aclose()
        server.should_exit = True
        await task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ws", default="wsproto", help="uvicorn's websocket implementation")
    parser.add_argument("--loop", default="auto", choices=("auto", "asyncio", "uvloop"))
    args = parser.parse_args()
    use_uvloop = args.loop == "uvloop"
    if args.loop == "auto":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            use_uvloop = False
        else:
            use_uvloop = True
    if use_uvloop:
        import uvloop

        uvloop.run(serve(args.ws))
    else:
        asyncio.run(serve(args.ws))


if __name__ == "__main__":
    main()
