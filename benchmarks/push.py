"""The logout push at scale: sessionkit's Socket.IO adapter beside the seed on Node's socket.io.

    python -m benchmarks.push [--sizes 1000,5000,20000] [--rounds 3]

For each N, on each side (a fresh server process each time, the two sides alternating and the
side that goes first alternating round after round):

1. The server starts on a free loopback port; a few clients connect and leave (warm-up).
2. Memory: resident memory before making N sessions and after N clients (Node's socket.io-client
   in one to three load-generator processes, the same program for both sides) have connected,
   one websocket per session: (after - before) / N, after a full collection on both sides.
3. The burst: the server restarts every session with a 2 s idle timeout, so that all are due
   within the restart loop's few milliseconds, and writes each session's deadline; each client
   records when its ``logout`` arrives. Latency = arrival - that session's deadline (one clock:
   the same machine). Server CPU for the burst = the server process's own CPU time from the
   arming to the moment its last socket has gone (logouts, disconnects, closes).
4. Mass leave: N new sessions, N clients connect again, then all of them disconnect at once;
   the server's CPU time from just before until its last socket has gone.

The machine is shared and has two cores, which the load generator and the server share: only
ratios measured in the same run mean anything.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from benchmarks import rooms

HERE = Path(__file__).resolve().parent
SEED_DIR = HERE / ".seed"
PUSH_DIR = HERE / ".push"  # socket.io and socket.io-client for the seed's side and the load
NODE_PACKAGES = ("socket.io@4", "socket.io-client@4")
ARM_SECONDS = 2
PER_LOAD_PROCESS = 9_000  # clients per load-generator process (one file descriptor each)
WARM_UP = 20  # clients that connect and leave before the memory is read
READ_BOX = 300.0  # seconds to wait for one answer from a server or a load generator

SIDES = ("sessionkit", "seed")
SERVER_OPTIONS: list[str] = []  # passed on to benchmarks.push_server (see --ws, --profile)


@dataclass(frozen=True)
class Figure:
    name: str
    unit: str
    field: str


FIGURES = (
    Figure("deadline -> logout p50", "ms", "p50_ms"),
    Figure("deadline -> logout p99", "ms", "p99_ms"),
    Figure("server CPU until every client has its logout", "s", "burst_cpu_s"),
    Figure("  of which CPython's cyclic GC", "s", "burst_gc_s"),
    Figure("server CPU for the burst and its disconnects", "s", "burst_all_cpu_s"),
    Figure("memory per socket + session", "KB", "kb_per_socket"),
    Figure("server CPU, N clients leaving at once", "s", "leave_cpu_s"),
    Figure("  of which CPython's cyclic GC", "s", "leave_gc_s"),
    Figure("connect time per client", "ms", "connect_ms"),
)


@dataclass(frozen=True)
class Target:
    figure: str  # a Figure.field, or "exactly_once"
    text: str
    limit: float | None  # ratio sessionkit / seed at most; None: every client got one logout
    sizes: tuple[int, ...]


TARGETS = (
    Target("exactly_once", "every client gets exactly one logout", None, (5_000, 20_000)),
    Target("p99_ms", "p99 <= 1.5x seed", 1.5, (5_000, 20_000)),
    Target("burst_cpu_s", "burst CPU (to the last logout) <= 2x seed", 2.0, (5_000, 20_000)),
    Target("kb_per_socket", "memory <= 1.5x seed", 1.5, (5_000, 20_000)),
    Target("leave_cpu_s", "leave CPU <= 2x seed", 2.0, (5_000,)),
)


def say(*parts: object) -> None:
    print(*parts, flush=True)


def fd_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def _raise_fd_limit() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def largest_size() -> int:
    """The most sockets one server process can hold here (its hard limit of open files)."""
    hard = fd_limit()
    return hard - 100 if hard != resource.RLIM_INFINITY else 10**9


def setup_node() -> str | None:
    """Install socket.io and its client into the ignored scratch folder; say why not, or None."""
    if shutil.which("node") is None:
        return "Node.js is not installed: the push benchmark needs its socket.io-client"
    if (PUSH_DIR / "node_modules" / "socket.io-client" / "package.json").exists() and (
        PUSH_DIR / "node_modules" / "socket.io" / "package.json"
    ).exists():
        return None
    if shutil.which("npm") is None:
        return "npm is not installed: cannot install socket.io and socket.io-client"
    say(f"installing {', '.join(NODE_PACKAGES)} into {PUSH_DIR.relative_to(HERE.parent)} ...")
    done = subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(PUSH_DIR), *NODE_PACKAGES],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return f"npm install socket.io failed:\n{done.stderr[-2000:]}"
    return None


class Child:
    """A process that answers one JSON object per line on stdout."""

    def __init__(self, cmd: Sequence[str], cwd: Path) -> None:
        self.cmd = list(cmd)
        self.proc = subprocess.Popen(
            self.cmd,
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=_raise_fd_limit,
        )

    def send(self, line: str) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        stdin.write(line + "\n")
        stdin.flush()

    def read(self, box: float = READ_BOX) -> dict[str, Any]:
        out: IO[str] | None = self.proc.stdout
        assert out is not None
        ready, _, _ = select.select([out], [], [], box)
        line = out.readline() if ready else ""
        if not line:
            self.stop()
            raise RuntimeError(f"{' '.join(self.cmd[:3])}... answered nothing")
        result: dict[str, Any] = json.loads(line)
        return result

    def ask(self, line: str) -> dict[str, Any]:
        self.send(line)
        return self.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def start_server(side: str) -> Child:
    if side == "seed":
        script = str(HERE / "push_seed_server.js")
        return Child(["node", "--expose-gc", script, str(SEED_DIR), str(PUSH_DIR)], HERE)
    cmd = [sys.executable, "-m", "benchmarks.push_server", *SERVER_OPTIONS]
    return Child(cmd, HERE.parent)


def start_load(url: str, keys: Path, count: int, side: str) -> list[Child]:
    """Connect ``count`` clients from as many load-generator processes as their sockets need."""
    mode = "event" if side == "seed" else "auth"
    if side == "sessionkit" and "--keep-sockets" in SERVER_OPTIONS:
        mode = "auth-keep"  # sessionkit's handshake, but the sockets stay connected
    script = str(HERE / "push_load.js")
    procs = []
    for first in range(0, count, PER_LOAD_PROCESS):
        part = min(PER_LOAD_PROCESS, count - first)
        cmd = ["node", script, str(PUSH_DIR), url, str(keys), str(first), str(part), mode]
        procs.append(Child(cmd, HERE))
    return procs


def connect(
    server: Child, url: str, keys: Path, count: int, side: str
) -> tuple[list[Child], float]:
    server.ask(f"sessions {count} {keys}")
    loads = start_load(url, keys, count, side)
    seconds = max(float(load.read()["connect_s"]) for load in loads)
    return loads, seconds


def leave(server: Child, loads: list[Child]) -> dict[str, Any]:
    server.ask("watch")
    for load in loads:
        load.send("leave")
    for load in loads:
        load.read()
        load.stop()
    return server.ask("left")


def heap_per_socket(
    before: dict[str, int] | None, after: dict[str, int] | None, n: int
) -> dict[str, float] | None:
    """Python heap bytes per socket + session, by package (with --trace-memory)."""
    if before is None or after is None:
        return None
    grown = {name: (after[name] - before.get(name, 0)) / n for name in after}
    return dict(sorted(grown.items(), key=lambda item: -item[1]))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def run_side(side: str, n: int, scratch: Path) -> dict[str, Any]:
    """One fresh server of ``side`` through warm-up, memory, burst and mass leave at ``n``."""
    server = start_server(side)
    try:
        url = f"http://127.0.0.1:{server.read()['port']}"
        keys, deadlines_file = scratch / f"{side}-keys.txt", scratch / f"{side}-deadlines.json"
        loads, _ = connect(server, url, keys, WARM_UP, side)
        leave(server, loads)

        first = server.ask("rss")
        before, before_heap = int(first["rss"]), first.get("heap")
        loads, connect_s = connect(server, url, keys, n, side)
        after = server.ask("rss")
        if after["sockets"] != n:
            raise RuntimeError(f"{side}: {after['sockets']} sockets connected, not {n}")
        server.ask(f"arm {ARM_SECONDS} {deadlines_file}")
        for load in loads:
            load.send("wait")
        for load in loads:
            load.read()  # {"all_logouts": true}
        pushed = server.ask("mark")
        received: list[float | None] = []
        counts: list[int] = []
        for load in loads:
            got = load.read()
            received += got["received"]
            counts += got["counts"]
        burst = server.ask("done")
        for load in loads:
            load.stop()
        deadlines = json.loads(deadlines_file.read_text())
        delays = [(r - d) * 1000 for r, d in zip(received, deadlines, strict=True) if r is not None]

        loads, _ = connect(server, url, keys, n, side)
        left = leave(server, loads)
        server.send("quit")
    finally:
        server.stop()
    return {
        "p50_ms": percentile(delays, 0.50) if delays else None,
        "p99_ms": percentile(delays, 0.99) if delays else None,
        "burst_cpu_s": pushed["cpu"],
        "burst_gc_s": pushed["gc"],
        "burst_all_cpu_s": burst["cpu"],
        "kb_per_socket": (int(after["rss"]) - before) / n / 1000,
        "leave_cpu_s": left["cpu"],
        "leave_gc_s": left["gc"],
        "heap_per_socket": heap_per_socket(before_heap, after.get("heap"), n),
        "connect_ms": connect_s / n * 1000,
        "exactly_once": all(c == 1 for c in counts) and len(counts) == n,
        "missing": sum(1 for c in counts if c == 0),
        "duplicated": sum(1 for c in counts if c > 1),
    }


def measure(sizes: Sequence[int], rounds: int, with_seed: bool) -> dict[str, Any]:
    samples: dict[str, dict[int, list[dict[str, Any]]]] = {s: {} for s in SIDES}
    with tempfile.TemporaryDirectory(prefix="sessionkit-push-") as tmp:
        for round_no in range(rounds):
            say(f"push round {round_no + 1} of {rounds}")
            order = SIDES if round_no % 2 == 0 else SIDES[::-1]
            for n in sizes:
                for side in order:
                    if side == "seed" and not with_seed:
                        continue
                    started = time.perf_counter()
                    result = run_side(side, n, Path(tmp))
                    samples[side].setdefault(n, []).append(result)
                    if result.get("heap_per_socket"):
                        total = sum(result["heap_per_socket"].values())
                        say(f"  Python heap per socket + session: {total:,.0f} B, of which:")
                        for name, size in list(result["heap_per_socket"].items())[:15]:
                            say(f"    {name:<40} {size:>8,.0f} B")
                    say(
                        f"  {side:<10} {n:>7,} sockets: p50/p99 {result['p50_ms']:.0f}/"
                        f"{result['p99_ms']:.0f} ms, burst {result['burst_cpu_s']:.3f} s CPU, "
                        f"{result['kb_per_socket']:.1f} KB/socket, leave "
                        f"{result['leave_cpu_s']:.3f} s CPU ({time.perf_counter() - started:.0f} s)"
                    )
    return summarise(sizes, samples, largest_size())


def summarise(
    sizes: Sequence[int], samples: dict[str, dict[int, list[dict[str, Any]]]], cap: int
) -> dict[str, Any]:
    rows = []
    for figure in FIGURES:
        for n in sizes:
            row: dict[str, Any] = {"figure": figure.name, "unit": figure.unit, "sockets": n}
            for side in SIDES:
                values = [
                    r[figure.field] for r in samples[side].get(n, []) if r[figure.field] is not None
                ]
                row[side] = statistics.median(values) if values else None
            ours, seed = row["sessionkit"], row["seed"]
            row["ratio"] = ours / seed if ours is not None and seed else None
            row["field"] = figure.field
            rows.append(row)
    once = {
        side: {
            n: all(r["exactly_once"] for r in samples[side].get(n, []))
            if samples[side].get(n)
            else None
            for n in sizes
        }
        for side in SIDES
    }
    targets = []
    for target in TARGETS:
        asked = [min(n, cap) for n in target.sizes if min(n, cap) in sizes]
        for n in asked or [max(sizes)]:
            if target.limit is None:
                ours_ok, seed_ok = once["sessionkit"][n], once["seed"][n]
                met = ours_ok
                value = {True: "yes", False: "no", None: "-"}[ours_ok]
                ratio = None
                seed_text = {True: "yes", False: "no", None: "-"}[seed_ok]
            else:
                row = next(r for r in rows if r["field"] == target.figure and r["sockets"] == n)
                ratio = row["ratio"]
                met = None if ratio is None else ratio <= target.limit
                value = row["sessionkit"]
                seed_text = row["seed"]
            targets.append(
                {
                    "target": target.text,
                    "sockets": n,
                    "as_asked": bool(asked),
                    "sessionkit": value,
                    "seed": seed_text,
                    "ratio": ratio,
                    "met": met,
                }
            )
    return {"rows": rows, "targets": targets, "exactly_once": once, "samples": samples}


def fmt(value: Any, unit: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if unit == "ms":
        return f"{value:,.0f} ms" if value >= 10 else f"{value:,.2f} ms"
    if unit == "s":
        return f"{value:,.3f} s"
    return f"{value:,.1f} {unit}"


def print_tables(report: dict[str, Any]) -> None:
    say("")
    say(f"{'push figure':<40} {'sockets':>8} {'sessionkit':>12} {'seed':>12} {'ratio':>7}")
    for r in report["rows"]:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        name = f"{r['figure']} ({r['unit']})"
        say(
            f"{name:<40} {r['sockets']:>8,} {fmt(r['sessionkit'], r['unit']):>12} {fmt(r['seed'], r['unit']):>12} {ratio:>7}"
        )
    say("")
    say("python-socketio: CPU to disconnect N sockets one by one (~2N rooms), in one process")
    for row in report["rooms"]:
        say(
            f"  {row['sockets']:>7,} sockets: shipped {row['shipped_s']:.3f} s, "
            f"with sessionkit's index_rooms {row['indexed_s']:.4f} s"
        )
    say("")
    say("push targets (ratio = sessionkit / seed, same run)")
    for t in report["targets"]:
        met = {True: "met", False: "NOT MET", None: "not measured"}[t["met"]]
        at = f"at {t['sockets']:,}" + ("" if t["as_asked"] else " (asked: larger)")
        ratio = "-" if t["ratio"] is None else f"{t['ratio']:.2f}"
        say(f"  {t['target']:<38} {at:<22} ratio {ratio:>5}  {met}")


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "| push figure | sockets | sessionkit | seed | ratio |",
        "|---|--:|--:|--:|--:|",
    ]
    for r in report["rows"]:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        lines.append(
            f"| {r['figure']} | {r['sockets']:,} | {fmt(r['sessionkit'], r['unit'])} "
            f"| {fmt(r['seed'], r['unit'])} | {ratio} |"
        )
    lines += ["", "| python-socketio: disconnect N sockets | shipped | with `index_rooms` |"]
    lines.append("|--:|--:|--:|")
    for row in report["rooms"]:
        lines.append(
            f"| {row['sockets']:,} | {row['shipped_s']:.3f} s | {row['indexed_s']:.4f} s |"
        )
    lines += ["", "| push target | sockets | ratio | met? |", "|---|--:|--:|---|"]
    for t in report["targets"]:
        met = {True: "yes", False: "**no**", None: "-"}[t["met"]]
        ratio = "-" if t["ratio"] is None else f"{t['ratio']:.2f}"
        lines.append(f"| {t['target']} | {t['sockets']:,} | {ratio} | {met} |")
    return "\n".join(lines) + "\n"


def run(sizes: Sequence[int], rounds: int, *, with_seed: bool) -> dict[str, Any]:
    """Measure and print the push tables; a report that says why when it cannot run."""
    why = setup_node()
    if why is not None:
        say(f"\npush benchmark not measured: {why}")
        return {"measured": False, "why": why}
    most = largest_size()
    fitted = sorted({min(n, most) for n in sizes})
    if fitted != sorted(sizes):
        say(f"push: at most {most:,} sockets per process here (its limit of open files)")
    report = measure(fitted, rounds, with_seed)
    report["measured"] = True
    report["sizes"] = fitted
    # The shipped manager's O(N^2) takes ~50 s at 20,000 sockets: measured up to 5,000 only.
    report["rooms"] = rooms.measure([n for n in fitted if n <= 5_000] or [min(fitted[0], 5_000)])
    print_tables(report)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.push", description=__doc__)
    parser.add_argument(
        "--sizes",
        type=lambda s: tuple(int(x) for x in s.split(",")),
        default=(1_000, 5_000, 20_000),
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-seed", action="store_true", help="measure sessionkit only")
    parser.add_argument("--json", type=Path, help="where to write the results")
    parser.add_argument("--ws", help="uvicorn's websocket implementation for sessionkit's server")
    parser.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), help="sessionkit's loop")
    parser.add_argument("--deflate", action="store_true", help="sessionkit's server compresses")
    parser.add_argument("--keep-sockets", action="store_true", help="disconnect_on_logout=False")
    parser.add_argument("--trace-memory", action="store_true", help="sessionkit's heap by package")
    parser.add_argument("--profile", metavar="DIR", help="cProfile sessionkit's burst and leave")
    args = parser.parse_args(argv)
    SERVER_OPTIONS[:] = ["--ws", args.ws] if args.ws else []
    if args.loop:
        SERVER_OPTIONS.extend(["--loop", args.loop])
    if args.deflate:
        SERVER_OPTIONS.append("--deflate")
    if args.keep_sockets:
        SERVER_OPTIONS.append("--keep-sockets")
    if args.trace_memory:
        SERVER_OPTIONS.append("--trace-memory")
    if args.profile:
        SERVER_OPTIONS.extend(["--profile", str(Path(args.profile).resolve())])
    with_seed = not args.no_seed and (SEED_DIR / "node_modules" / "users-session-manager").exists()
    if not with_seed and not args.no_seed:
        from benchmarks.run import setup_seed

        with_seed = setup_seed() is None
    report = run(args.sizes, args.rounds, with_seed=with_seed)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
