"""RedisStore beside raw redis-py sending the very script call the store sent (part ``redis``):
check and restart at concurrency 1 and 50, on one Valkey and on a 3-primary cluster; and the
server's CPU per call of a guarded request's script beside express-session's GET + EXPIRE."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from benchmarks import harness as h

#: sessionkit / raw redis-py calls per second, by concurrency: calls issued together share
#: round trips (issue 11's target at 50); alone, the same as a plain call.
TARGET_RATIO = {1: 0.9, 50: 2.0}
LATENCY_EXTRA_US = 5.0  # microseconds a lone call may take over raw redis-py (p50)
OPS = {"full": 20_000, "quick": 3_000, "smoke": 300}  # calls per figure, side and round
#: Calls per timed slice: the sides alternate slice by slice, so that a burst of noise from
#: the rest of the machine (the server shares its cores) lands on both sides alike.
SLICE = 500
Call = Callable[[int], Awaitable[Any]]
#: Calls per side and round for the server's CPU per call, sent in pipelined writes of
#: SERVER_BATCH (a guarded request's batching in the e2e run is of that order).
SERVER_CALLS = {"full": 32_000, "quick": 8_000, "smoke": 800}
SERVER_BATCH = 16


async def capture(call: Awaitable[Any]) -> list[tuple[Any, ...]]:
    """What one manager call sends through the store's pipeline (``Pipeline.call``)."""
    calls: list[tuple[Any, ...]] = []
    pipeline = importlib.import_module("sessionkit.stores.redis._pipeline").Pipeline
    original = pipeline.call

    def piped(pipe: Any, deadline: float, packed: bytes) -> Any:
        lines = packed.split(b"\r\n")  # RESP: *N, then $len and the argument, for each
        calls.append(tuple(line.decode() for line in lines[2:-1:2]))
        return original(pipe, deadline, packed)

    pipeline.call = piped
    try:
        await call
    finally:
        pipeline.call = original
    return calls


def commands_for(calls: list[tuple[Any, ...]], keys: list[str]) -> list[list[Any]] | None:
    """The one script call among ``calls`` (made for ``keys[0]``), made again for every key."""
    from sessionkit.keys import hash_key

    stored = importlib.import_module("sessionkit.stores.redis._schema").stored_key_hash
    scripts = [c for c in calls if str(c[0]).upper() in ("EVALSHA", "EVAL", "FCALL", "EVALSHA_RO")]
    swaps: list[Callable[[str], str]] = [stored, hash_key, str] if len(scripts) == 1 else []
    for swap in swaps:
        was, script = swap(keys[0]), scripts[0]
        if any(isinstance(a, str) and was in a for a in script):
            return [
                [a.replace(was, swap(k)) if isinstance(a, str) else a for a in script] for k in keys
            ]
    return None


async def rate(calls: int, concurrency: int, one: Call) -> float:
    """Make ``calls`` calls from ``concurrency`` tasks at once; return calls per second."""

    async def worker(start: int) -> None:
        for i in range(start, calls, concurrency):
            await one(i)

    began = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return calls / (time.perf_counter() - began)


async def alternate(sides: dict[str, Call], ops: int, rounds: int, concurrency: int) -> list[float]:
    """Calls per second of each side, medians over rounds of ``ops`` calls in slices of
    :data:`SLICE`, the sides taking turns, after ``concurrency`` calls to warm both pools."""
    for one in sides.values():
        await rate(concurrency, concurrency, one)
    samples: dict[str, list[float]] = {side: [] for side in sides}
    turn = list(sides)
    for _ in range(rounds):
        spent, done = dict.fromkeys(sides, 0.0), 0
        while done < ops:
            n = min(max(SLICE, concurrency), ops - done)
            for side in turn:
                spent[side] += n / await rate(n, concurrency, sides[side])
            turn.reverse()
            done += n
        for side in sides:
            samples[side].append(ops / spent[side])
    return [statistics.median(values) for values in samples.values()]


async def p50(sides: dict[str, Call], calls: int) -> list[float]:
    """Median latency in µs of one call at a time, the sides alternating call by call."""
    taken: dict[str, list[float]] = {side: [] for side in sides}
    for i in range(calls):
        for side, one in sides.items():
            began = time.perf_counter()
            await one(i)
            taken[side].append((time.perf_counter() - began) * 1e6)
    return [statistics.median(values) for values in taken.values()]


async def server_cpu(raw: Any, sm: Any, keys: list[str], calls: int, rounds: int) -> list[str]:
    """The row: the server's CPU (``INFO cpu``, user + sys) per call of a guarded request's
    store call (``touch_session``: the TOUCH script reading the session back) beside
    express-session + connect-redis's (GET, then EXPIRE: ``benchmarks/e2e_express.js``) on as
    many sessions of theirs, sent in writes of :data:`SERVER_BATCH` calls on the ``raw``
    client; the min over at least 3 rounds, the sides taking turns (reversed each round)."""
    commands = commands_for(await capture(sm.touch_session(keys[0])), keys)
    if commands is None:
        return ["redis server CPU per guarded request's call", "-", "-", "-", "", ""]
    n, theirs = len(keys), [f"bench:express:{i}" for i in range(len(keys))]
    value = json.dumps({"cookie": {"originalMaxAge": h.HOUR * 1000, "httpOnly": True}, "user": "u"})
    async with raw.pipeline(transaction=False) as pipe:
        for key in theirs:
            pipe.set(key, value, ex=h.HOUR)
        await pipe.execute()
    ids = [i % n for i in range(calls)]
    sides = {  # the commands of each side's calls, back to back
        "sessionkit": [commands[i] for i in ids],
        "express": [c for i in ids for c in (["GET", theirs[i]], ["EXPIRE", theirs[i], h.HOUR])],
    }
    spent: dict[str, list[float]] = {side: [] for side in sides}
    for turn in range(max(rounds, 3)):
        for side in list(sides)[:: (-1) ** turn]:
            sent, began = sides[side], h.redis_cpu(await raw.info("cpu"))
            step = len(sent) // calls * SERVER_BATCH  # the commands of SERVER_BATCH calls
            for start in range(0, len(sent), step):
                async with raw.pipeline(transaction=False) as pipe:
                    for command in sent[start : start + step]:
                        pipe.execute_command(*command)
                    await pipe.execute()
            spent[side].append((h.redis_cpu(await raw.info("cpu")) - began) / calls * 1e6)
    await raw.delete(*theirs)
    ours, base = (min(values) for values in spent.values())
    h.say(f"  redis server CPU per call: touch_session {ours:.1f} us, GET + EXPIRE {base:.1f} us")
    row = f"redis server CPU per guarded request's call (writes of {SERVER_BATCH})"
    shown = [h.fmt(ours, "us"), h.fmt(base, "us"), h.fmt(h.ratio(ours, base), "x")]
    return [row, *shown, "(express-session's GET + EXPIRE)", ""]


async def measure(
    ops: int, rounds: int, port: int, cluster: bool, server_calls: int = 0
) -> list[list[str]]:
    """The rows measured on the server (or the cluster of a primary) at ``port``; with
    ``server_calls``, the server's CPU per guarded request's call too."""
    from redis import asyncio as redis_asyncio

    from sessionkit import SessionManager
    from sessionkit.stores.redis import RedisStore

    kind: Any = redis_asyncio.RedisCluster if cluster else redis_asyncio.Redis
    # Two clients made alike (same pool settings), so neither side shares the other's pool.
    client, raw = kind(host="127.0.0.1", port=port), kind(host="127.0.0.1", port=port)
    store = RedisStore(client, prefix="bench:")
    where, rows = "redis cluster" if cluster else "redis", []
    async with SessionManager(timeout=h.HOUR, store=store) as sm:
        n = min(ops, 5_000)
        keys = [await sm.load_new_session(f"user{i}") for i in range(n)]
        calls = {"check": sm.check_session_status, "restart timer": sm.restart_session_timer}
        for name, call in calls.items():
            await call(keys[0])  # first: a script's first call may be NOSCRIPT, SCRIPT LOAD, retry
            commands = commands_for(await capture(call(keys[0])), keys)
            sides: dict[str, Call] = {"sessionkit": lambda i, call=call: call(keys[i % n])}  # type: ignore[misc]
            if commands is not None:  # else only sessionkit's side is measured
                sides["raw"] = lambda i, c=commands: raw.evalsha(*c[i % n][1:])  # type: ignore[misc]
            for c, bound in TARGET_RATIO.items():
                ours, base = [*await alternate(sides, ops, rounds, c), None][:2]
                got = h.ratio(ours, base)
                met = h.VERDICT[got if got is None else got >= bound]
                row = [h.fmt(ours), h.fmt(base), h.fmt(got, "x"), f">= {bound}x", met]
                rows.append([f"{where} {name} ops/s c={c}", *row])
                h.say(f"  {rows[-1][0]}: sessionkit {rows[-1][1]}, raw redis-py {rows[-1][2]}")
            if commands is not None:
                ours, base = await p50(sides, min(ops, 2_000))
                row = [h.fmt(ours, "us"), h.fmt(base, "us"), f"{ours - base:+.1f} us"]
                met = h.VERDICT[ours - base <= LATENCY_EXTRA_US]
                target = f"<= +{LATENCY_EXTRA_US:g} us over raw"
                rows.append([f"{where} {name} p50 latency c=1", *row, target, met])
        if server_calls:
            rows.append(await server_cpu(raw, sm, keys, server_calls, rounds))
        await sm.delete_all_sessions()
    await client.aclose()
    await raw.aclose()
    return rows


def run(args: argparse.Namespace, _: str | None) -> h.Report:
    from tests.cluster import RedisClusterServers  # a server or client missing fails the part
    from tests.servers import new_valkey_server, valkey_binary

    ops, report = OPS[args.mode], h.Report("redis")
    header = ("figure", "sessionkit", "raw redis-py", "ratio", "target", "")
    table = h.Table("RedisStore (ratio = sessionkit / raw redis-py, the same script)", header)
    with new_valkey_server() as valkey:  # 127.0.0.1, free port; SESSIONKIT_VALKEY=9: Valkey 9
        calls = SERVER_CALLS[args.mode]
        table.rows += asyncio.run(measure(ops, args.rounds, valkey.port or 0, False, calls))
    h.say("on a local 3-primary cluster (raw: redis-py's RedisCluster)")
    with tempfile.TemporaryDirectory() as scratch:
        servers = RedisClusterServers(valkey_binary(), Path(scratch))
        try:
            servers.start()
            table.rows += asyncio.run(measure(ops, args.rounds, servers.ports[0], True))
        except RuntimeError as exc:
            table.note = f"redis cluster figures not measured: the cluster did not start ({exc})"
        finally:
            servers.stop()
    report.show(table)
    return report
