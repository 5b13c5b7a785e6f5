"""What every part of the suite shares: child processes, servers, npm folders, targets, and the
one kind of table every figure is printed in (and written to Markdown)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import platform
import resource
import select
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SEED_DIR = HERE / ".seed"  # ignored by git: the seed is installed here, never vendored
SEED_PACKAGE = "users-session-manager@1.0.9"
READ_BOX = 300.0  # seconds to wait for one answer from a child process
VERDICT = {True: "met", False: "NOT MET", None: "not measured"}
SIDES = ("sessionkit", "seed")
HOUR = 3600  # seconds: sessions that must not end during a measurement
say = functools.partial(print, flush=True)
FILES = resource.getrlimit(resource.RLIMIT_NOFILE)[1]  # hard limit: children raise theirs to it


def ratio(ours: float | None, base: float | None) -> float | None:
    return ours / base if ours is not None and base else None


def fmt(value: float | str | None, unit: str = "") -> str:
    """A figure as the tables show it."""
    if value is None or isinstance(value, str):
        return value or "-"
    if unit == "yes/no":
        return "yes" if value else "no"
    if unit == "s" and value < 1:
        return f"{value * 1000:,.1f} ms"
    if unit in ("s", "ms", "KB", "us"):
        return f"{value:,.2f} {unit}" if value < 10 else f"{value:,.1f} {unit}"
    return f"{value:.2f}" if unit == "x" else f"{value:,.0f}"


@dataclass(frozen=True)
class Target:
    """A bound an issue sets on a figure: on its ratio to the baseline, or on its value.
    ``row`` names it in the run's closing summary (the open issue's table), if it is there."""

    figure: str
    text: str
    bound: float
    on: str = "ratio"  # or "value"
    at_most: bool = False
    sizes: tuple[int, ...] = ()  # judged at these sizes, or at the largest one a run has
    row: str = ""

    def met(self, x: float | None) -> bool | None:
        return None if x is None else x <= self.bound if self.at_most else x >= self.bound


@dataclass
class Table:
    """One printed table: a header, rows of formatted cells, a note under it."""

    title: str
    header: Sequence[str]
    rows: list[list[str]] = field(default_factory=list)
    note: str = ""

    def text(self) -> str:
        cells = [list(self.header), *self.rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.header))]
        lines = ["", self.title]
        for row in cells:
            cut = zip(row[1:], widths[1:], strict=True)
            padded = [row[0].ljust(widths[0]), *(c.rjust(w) for c, w in cut)]
            lines.append(("  " + "  ".join(padded)).rstrip())
        return "\n".join(lines + [self.note] * bool(self.note))

    def markdown(self) -> str:
        lines = [f"**{self.title}**", "", "| " + " | ".join(self.header) + " |"]
        lines.append("|---|" + "--:|" * (len(self.header) - 1))
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join([*lines, "", self.note]) + "\n"


@dataclass
class Report:
    """What one part of the suite measured: its tables and raw data, or why it could not; and
    its rows of the summary, by :attr:`Target.row`: (the figure as measured, the verdict)."""

    part: str
    tables: list[Table] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    why: str = ""
    summary: dict[str, tuple[str, str]] = field(default_factory=dict)

    def show(self, table: Table) -> None:
        self.tables.append(table)
        say(table.text())

    def judge(self, target: Target, value: float | None, shown: str = "") -> str:
        """Judge ``value`` (a ratio or a value, as the target reads it); its verdict."""
        verdict = VERDICT[target.met(value)]
        if target.row:
            self.summary[target.row] = (shown or fmt(value, "x"), verdict)
        return verdict


def summary(reports: Sequence[Report], rows: Sequence[Target]) -> Table:
    """The closing table: every row of the open issue, as this run measured it."""
    header = ("figure", "measured", "target", "")
    note = "(a row is measured by the part that holds it: parts not run say '-')"
    table = Table("summary: every row of the issue, from this run", header, note=note)
    found = {row: got for report in reports for row, got in report.summary.items()}
    for t in rows:
        shown, verdict = found.get(t.row, ("-", VERDICT[None]))
        table.rows.append([t.row, shown, t.text, verdict])
    return table


#: (figure, size) -> side -> its value in each round
Samples = dict[tuple[str, int], dict[str, list[float]]]


def compare(
    title: str,
    at: str,
    figures: Sequence[tuple[str, str, Sequence[int]]],
    samples: Samples,
    targets: Sequence[Target],
    notes: dict[tuple[str, int], str] | None = None,
    report: Report | None = None,
) -> Table:
    """Medians of each figure (name, unit, sizes) by side, and targets where asked (or at the
    largest size run), each judged into ``report``'s summary."""
    report = report or Report("")
    table = Table(title, ("figure", at, "sessionkit", "seed", "ratio", "target", ""))
    for name, unit, sizes in figures:
        for size in sizes:
            got = samples.get((name, size), {})
            pick = min if unit == "yes/no" else statistics.median  # every round must have it
            ours, base = (pick(got[side]) if got.get(side) else None for side in SIDES)
            against = None if unit == "yes/no" else ratio(ours, base)
            mine, theirs = (got.get(side, []) for side in SIDES)
            if against is not None and len(mine) == len(theirs) and all(theirs):  # each round's
                against = statistics.median(o / b for o, b in zip(mine, theirs, strict=True))
            row = [f"{name} ({unit})", f"{size:,}", fmt(ours, unit)]
            row += [(notes or {}).get((name, size)) or fmt(base, unit), fmt(against, "x"), "", ""]
            for t in (t for t in targets if t.figure == name):
                here = not t.sizes or size in t.sizes
                if here or (size == max(sizes) and not set(t.sizes) & set(sizes)):
                    asked = "" if here else f" (asked at {', '.join(f'{n:,}' for n in t.sizes)})"
                    x = against if t.on == "ratio" else ours
                    shown = f"{fmt(x, unit if t.on == 'value' else 'x')} at {size:,}{asked}"
                    row[5:] = [t.text + asked, report.judge(t, x, shown)]
            table.rows.append(row)
    return table


def redis_cpu(info: dict[str, Any]) -> float:
    """Seconds of CPU a Redis server has used, from its ``INFO cpu``."""
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


# -- processes -------------------------------------------------------------------------------


def module(name: str, *args: object) -> list[str]:
    """The command that runs ``benchmarks.<name>`` in a fresh interpreter."""
    return [sys.executable, "-m", f"benchmarks.{name}", *map(str, args)]


def run_json(cmd: Sequence[str], timeout: float | None = None) -> dict[str, Any]:
    """Run ``cmd`` to its end; the last JSON line it printed."""
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(cmd[:4])}... failed:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


class Child:
    """A process that answers one JSON object per line on stdout (its stderr goes to ``log``)."""

    def __init__(self, cmd: Sequence[str], log: Path | None = None) -> None:
        self.cmd, self.log, pipe = list(cmd), log, subprocess.PIPE
        files = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (FILES, FILES))  # noqa: E731
        with open(log or os.devnull, "wb") as err:
            self.proc = subprocess.Popen(
                self.cmd, cwd=ROOT, stdin=pipe, stdout=pipe, stderr=err, text=True, preexec_fn=files
            )

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def read(self, box: float = READ_BOX) -> dict[str, Any]:
        out = self.proc.stdout
        assert out is not None
        ready, _, _ = select.select([out], [], [], box)
        line = out.readline() if ready else ""
        if not line:
            self.stop()
            tail = self.log.read_text(errors="replace")[-1500:] if self.log else ""
            raise RuntimeError(f"{' '.join(self.cmd[:3])}... answered nothing\n{tail}")
        result: dict[str, Any] = json.loads(line)
        return result

    def ask(self, line: str) -> dict[str, Any]:
        self.send(line)
        return self.read()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def rss() -> int:
    """Resident memory of this process now, in bytes (as the seed's side reads it too)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def answer(**fields: Any) -> None:
    """A child's answer to its driver: one JSON line."""
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


@contextlib.asynccontextmanager
async def serving(app: Any, **options: Any) -> AsyncIterator[asyncio.Task[None]]:
    """uvicorn serving ``app`` on 127.0.0.1, a free port, answered ``{"port": P}`` once ready."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, **options))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():  # noqa: ASYNC110 - uvicorn has no event
        await asyncio.sleep(0.01)
    if server.started:
        answer(port=sock.getsockname()[1])
    try:
        yield task
    finally:
        server.should_exit = True
        await task


def npm(folder: Path, packages: Sequence[str]) -> str | None:
    """Install ``packages`` into the ignored ``folder`` once; why they cannot be, or None."""
    if shutil.which("node") is None:
        return "Node.js is not installed (install node and npm)"
    names = [p.rsplit("@", 1)[0] if p.rfind("@") > 0 else p for p in packages]
    if all((folder / "node_modules" / n / "package.json").exists() for n in names):
        return None
    if shutil.which("npm") is None:
        return "npm is not installed: cannot install " + ", ".join(packages)
    say(f"installing {', '.join(packages)} into {folder.relative_to(ROOT)} ...")
    cmd = ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix", str(folder)]
    done = subprocess.run([*cmd, *packages], capture_output=True, text=True, check=False)
    return None if done.returncode == 0 else f"npm install failed: {done.stderr.strip()[-500:]}"


def machine() -> dict[str, Any]:
    with open("/proc/cpuinfo") as info:
        cpu = next((ln.split(":", 1)[1].strip() for ln in info if ln.startswith("model name")), "")
    node = shutil.which("node") and run_json(["node", "-p", "JSON.stringify({v: process.version})"])
    gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**30
    found = {"cpu": cpu, "cores": os.cpu_count(), "GiB": gib, "os": platform.platform()}
    versions = {"python": platform.python_version(), "node": node and node["v"]}
    return found | versions | {"date": time.asctime()}
