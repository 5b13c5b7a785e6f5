"""The logout push at scale beside the seed on Node's socket.io (part ``push``): a fresh server,
``python -m benchmarks.push serve`` or ``seed.js``, and N clients from ``push_load.js``."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import math
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import harness as h

PUSH_DIR = h.HERE / ".push"  # ignored by git: socket.io and its client (seed side and load)
SOCKETS = {"full": (1_000, 5_000, 20_000), "quick": (200,), "smoke": (50,)}
ARM_SECONDS = 2  # the burst's idle timeout: the least the manager takes
PER_LOAD_PROCESS = 9_000  # clients per load-generator process (one file descriptor each)
WARM_UP = 20  # clients that connect and leave before the memory is read
FIGURES = (  # (name, unit)
    ("every client gets exactly one logout", "yes/no"),
    ("deadline -> logout p50", "ms"),
    ("deadline -> logout p99", "ms"),
    ("server CPU until every client has its logout", "s"),
    ("  burst: of which CPython's cyclic GC", "s"),
    ("server CPU for the burst and its disconnects", "s"),
    ("memory per socket + session", "KB"),
    ("server CPU, N clients leaving at once", "s"),
    ("  leave: of which CPython's cyclic GC", "s"),
    ("connect time per client", "ms"),
    ("GC-tracked objects per socket + session", "objects"),
)
#: Levers to measure, as JSON: {"server": {AsyncServer options}, "bind": {bind_socketio
#: options}, "uvicorn": {options}}
LEVERS = json.loads(os.environ.get("SESSIONKIT_BENCH_PUSH") or "{}")
BOTH = (5_000, 20_000)
#: The open issue's rows: (figure, target, bound, at sockets, row)
P5, P20 = "logout push, 5,000 due together: ", "logout push, 19,900 sockets: "
ISSUE = (
    (2, "p99 <= 1.5x seed busy, 1.2x quiet", 1.5, 5_000, P5 + "p99 deadline -> logout"),
    (5, "burst CPU <= 2x seed", 2, 5_000, P5 + "server CPU, with disconnects"),
    (6, "memory <= 1.5x seed", 1.5, 5_000, P5 + "memory per socket + session"),
    (2, "p99 <= 3x seed", 3, 20_000, P20 + "p99 deadline -> logout"),
    (3, "burst CPU <= 3x seed", 3, 20_000, P20 + "server CPU until every logout"),
)
TARGETS = (
    h.Target(FIGURES[0][0], "exactly one", 1, "value", sizes=BOTH),
    *(h.Target(FIGURES[i][0], t, b, at_most=True, sizes=(n,), row=r) for i, t, b, n, r in ISSUE),
)
QUIET = 0.25  # cores: other work on the machine below this during the run, it counts as quiet


def others() -> float:
    """CPU seconds the machine has spent busy so far, less this process's and its children's."""
    with open("/proc/stat") as stat:  # user nice system idle iowait irq softirq steal
        ticks = [int(x) for x in stat.readline().split()[1:9]]
    busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
    used = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return busy - sum(u.ru_utime + u.ru_stime for u in used)


def percentile(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else None


def run_side(side: str, n: int, scratch: Path) -> list[float | None]:
    """A fresh server of ``side`` through warm-up, memory, burst and leave: :data:`FIGURES`."""
    keys, deadlines = scratch / f"{side}-keys.txt", scratch / f"{side}-deadlines.json"
    seed = ["node", "--expose-gc", str(h.HERE / "seed.js"), str(h.SEED_DIR), "push"]
    server = h.Child([*seed, str(PUSH_DIR)] if side == "seed" else h.module("push", "serve"))
    url = f"http://127.0.0.1:{server.read()['port']}"
    script = ["node", str(h.HERE / "push_load.js"), str(PUSH_DIR), url, str(keys)]

    def connect(count: int) -> tuple[list[h.Child], float]:
        server.ask(f"sessions {count} {keys}")
        mode = "event" if side == "seed" else "auth"  # the seed's flow, or the key in auth
        firsts = range(0, count, PER_LOAD_PROCESS)
        loads = [
            h.Child([*script, str(i), str(min(PER_LOAD_PROCESS, count - i)), mode]) for i in firsts
        ]
        return loads, max(float(load.read()["connect_s"]) for load in loads)

    def tell(loads: list[h.Child], command: str) -> list[dict[str, Any]]:
        for load in loads:
            load.send(command)
        return [load.read() for load in loads]

    def leave(loads: list[h.Child]) -> dict[str, Any]:
        server.ask("watch")
        tell(loads, "leave")
        for load in loads:
            load.stop()
        return server.ask("left")

    try:
        leave(connect(WARM_UP)[0])
        before = server.ask("rss")
        loads, connect_s = connect(n)
        after = server.ask("rss")
        if after["sockets"] != n:
            raise RuntimeError(f"{side}: {after['sockets']} sockets connected, not {n}")
        server.ask(f"arm {ARM_SECONDS} {deadlines}")
        tell(loads, "wait")  # each answers {"all_logouts": true} once all its clients have one
        pushed = server.ask("mark")
        got = [load.read() for load in loads]  # once disconnected too (or after a time box)
        burst = server.ask("done")
        for load in loads:
            load.stop()
        received = [r for g in got for r in g["received"]]
        counts = [c for g in got for c in g["counts"]]
        due = json.loads(deadlines.read_text())
        delays = [(r - d) * 1000 for r, d in zip(received, due, strict=True) if r is not None]
        left = leave(connect(n)[0])
        server.send("quit")
    finally:
        server.stop()
    once = float(len(counts) == n and all(c == 1 for c in counts))
    kb, connect_ms = (after["rss"] - before["rss"]) / n / 1000, connect_s / n * 1000
    p50, p99 = percentile(delays, 0.50), percentile(delays, 0.99)
    burst_ = [pushed["cpu"], pushed["gc"], burst["cpu"]]
    objects = after.get("objects") and (after["objects"] - before["objects"]) / n
    return [once, p50, p99, *burst_, kb, left["cpu"], left["gc"], connect_ms, objects]


def run(args: argparse.Namespace, why_no_seed: str | None) -> h.Report:
    report = h.Report("push", why=h.npm(PUSH_DIR, ("socket.io@4", "socket.io-client@4")) or "")
    if report.why:
        return report
    most = h.FILES - 100 if h.FILES > 0 else 10**9  # the server needs a few files besides
    sizes = sorted({min(n, most) for n in args.sockets or SOCKETS[args.mode]})
    if most in sizes:
        h.say(f"push: at most {most:,} sockets per process here (its limit of open files)")
    sides = ("sessionkit",) if why_no_seed else h.SIDES
    samples: h.Samples = {}
    began, other = time.perf_counter(), others()
    with tempfile.TemporaryDirectory(prefix="sessionkit-push-") as tmp:
        for round_no in range(args.rounds):
            h.say(f"push round {round_no + 1} of {args.rounds}")
            for n, side in ((n, side) for n in sizes for side in sides[:: (-1) ** round_no]):
                started = time.perf_counter()
                got = run_side(side, n, Path(tmp))
                for (name, _), value in zip(FIGURES, got, strict=True):
                    if value is not None:
                        samples.setdefault((name, n), {}).setdefault(side, []).append(value)
                spent = time.perf_counter() - started
                h.say(f"  {side:<10} {n:>7,} sockets: p99 {h.fmt(got[2], 'ms')} ({spent:.0f} s)")
    # The p99 target is 1.5x on a busy machine, 1.2x on a quiet one: which one this run was.
    cores = (others() - other) / (time.perf_counter() - began)
    busy = cores >= QUIET
    figures = [(name, unit, sizes) for name, unit in FIGURES]
    report.data = {"samples": {str(k): v for k, v in samples.items()}, "other_cores": cores}
    capped = [dataclasses.replace(t, sizes=tuple(min(n, most) for n in t.sizes)) for t in TARGETS]
    capped[1] = dataclasses.replace(capped[1], bound=1.5 if busy else 1.2)
    title = "push (ratio = sessionkit / seed)"
    table = h.compare(title, "sockets", figures, samples, capped, report=report)
    table.note = f"other work on the machine: {cores:.2f} cores, so p99 <= {1.5 if busy else 1.2}x"
    report.show(table)
    return report


# -- sessionkit's server, in its own process -------------------------------------------------------


async def serve() -> None:
    """``bind_socketio(sm, sio, freeze_gc=True)`` served as the Socket.IO guide recommends for
    thousands of sockets (uvloop, websockets-sansio, per-message deflate and uvicorn's own pings
    off), answering the driver's commands (those of ``seed.js``)."""
    import socketio

    from sessionkit import SessionManager
    from sessionkit.socketio import bind_socketio

    sio = socketio.AsyncServer(async_mode="asgi", **LEVERS.get("server", {}))
    sm = SessionManager(timeout=h.HOUR)
    bind_socketio(sm, sio, **{"freeze_gc": True, **LEVERS.get("bind", {})})
    keys: list[str] = []
    cpu, in_gc = 0.0, [0.0, 0.0, 0.0]  # CPU in CPython's cyclic GC: in all, from, at start

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            in_gc[2] = time.process_time()
        else:
            in_gc[0] += time.process_time() - in_gc[2]

    gc.callbacks.append(on_gc)
    options = {"ws": "websockets-sansio", "ws_per_message_deflate": False, "backlog": 4096}
    options |= {"ws_ping_interval": None, **LEVERS.get("uvicorn", {})}
    async with h.serving(socketio.ASGIApp(sio), lifespan="off", **options), sm:
        while line := await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline):
            command, *args = line.split()
            if command == "sessions":
                sm.set_session_timeout(h.HOUR)
                keys = [await sm.load_new_session(f"user{i}") for i in range(int(args[0]))]
                Path(args[1]).write_text("\n".join(keys) + "\n")  # noqa: ASYNC240
                h.answer(made=len(keys))
            elif command == "rss":
                gc.collect()
                objects = len(gc.get_objects()) + gc.get_freeze_count()  # frozen ones too
                h.answer(rss=h.rss(), sockets=len(sio.eio.sockets), objects=objects)
            elif command in ("arm", "watch"):
                # Each measured window starts from a collected heap on both sides, so that it
                # pays for the garbage it makes, not for what connecting N clients left.
                gc.collect()
                if command == "arm":
                    sm.set_session_timeout(float(args[0]))
                    deadlines = []  # floats, like the seed's side: nothing for the GC to track
                    for key in keys:
                        deadlines.append(time.time() + float(args[0]))
                        await sm.restart_session_timer(key)
                    Path(args[1]).write_text(json.dumps(deadlines))  # noqa: ASYNC240
                cpu, in_gc[1] = time.process_time(), in_gc[0]
                h.answer(armed=len(keys))
            elif command in ("mark", "done", "left"):
                # Polled rather than signalled: a disconnect handler would add to the work.
                while command != "mark" and sio.eio.sockets:  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
                h.answer(cpu=time.process_time() - cpu, gc=in_gc[0] - in_gc[1])
            elif command == "quit":
                break


if __name__ == "__main__" and sys.argv[1:] == ["serve"]:
    import uvloop

    uvloop.run(serve())
