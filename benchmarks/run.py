"""Run sessionkit and the seed package (users-session-manager@1.0.9) through the same workload,
alternating the two sides round after round, and print the medians and their ratios.

    python -m benchmarks            # the full suite (make bench): 10k, 100k and 1M sessions
    python -m benchmarks --quick    # about a minute (make bench-quick)
    python -m benchmarks --smoke    # a few seconds: what the test suite runs

The end-to-end figures (a session-guarded route under load, ``benchmarks/e2e.py``) close the
run. Each measurement runs in a fresh process (``benchmarks/python_side.py`` or ``seed_bench.js``),
so that one figure's garbage never weighs on the next. The machines are shared and noisy: only
ratios measured in the same run mean anything.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import push
from benchmarks.e2e import markdown as e2e_markdown

HERE = Path(__file__).resolve().parent
SEED_DIR = HERE / ".seed"  # ignored by git: the seed is installed here, never vendored
SEED_PACKAGE = "users-session-manager@1.0.9"
RESULTS_DIR = HERE / "results"  # ignored by git

#: Every figure the suite prints, in order: (name, unit, what is better).
FIGURES: tuple[tuple[str, str, str], ...] = (
    ("create", "ops/s", "higher"),
    ("check", "ops/s", "higher"),
    ("check floor: bare dict lookup", "ops/s", "higher"),
    ("check floor: one awaited coroutine", "ops/s", "higher"),
    ("restart timer", "ops/s", "higher"),
    ("restart floor: one awaited coroutine", "ops/s", "higher"),
    ("set data", "ops/s", "higher"),
    ("get data", "ops/s", "higher"),
    ("delete", "ops/s", "higher"),
    ("get_logged_users", "s", "lower"),
    ("heap per session", "bytes", "lower"),
    ("RSS per session", "bytes", "lower"),
    ("expiry: longest loop stall", "ms", "lower"),
    ("expiry: drain time", "s", "lower"),
    ("expiry: worst lateness", "s", "lower"),
)
#: The JSON fields each side prints, by figure name.
FIELDS = {
    "create": "create_ops",
    "check": "check_ops",
    "check floor: bare dict lookup": "check_floor_dict_ops",
    "check floor: one awaited coroutine": "check_floor_await_ops",
    "restart timer": "restart_ops",
    "restart floor: one awaited coroutine": "restart_floor_await_ops",
    "set data": "set_data_ops",
    "get data": "get_data_ops",
    "delete": "delete_ops",
    "get_logged_users": "get_logged_users_s",
    "heap per session": "heap_per_session",
    "RSS per session": "rss_per_session",
    "expiry: longest loop stall": "expiry_stall_ms",
    "expiry: drain time": "expiry_drain_s",
    "expiry: worst lateness": "expiry_lateness_s",
}
#: The floors are plain Python on the same keys, not sessionkit: references, never targets
#: against the seed. The seed has no floor of its own, so its call stands beside each.
FLOORS = {
    "check floor: bare dict lookup": "check_ops",
    "check floor: one awaited coroutine": "check_ops",
    "restart floor: one awaited coroutine": "restart_ops",
}
SEED_FIELDS = {**FIELDS, **FLOORS}
FLOOR_NOTE = (
    "Floor rows: plain Python on the same keys over a dict of the benchmark's own, not"
    " sessionkit; beside them the seed's check or restart, and the ratio floor / seed"
    " (references, not targets)."
)
#: Issue 9's aim: sessionkit's hot path close to plain Python doing the same work in one
#: awaited coroutine. (figure, its floor, the least ratio figure / floor aimed at)
FLOOR_TARGETS = (
    ("check", "check floor: one awaited coroutine", 0.8),
    ("restart timer", "restart floor: one awaited coroutine", 0.8),
)
UNITS = {name: unit for name, unit, _ in FIGURES}


@dataclass(frozen=True)
class Target:
    """One of issue 5's targets: a bound on a ratio (sessionkit / seed) or on an absolute value."""

    figure: str
    sessions: int  # measured at this many live sessions (or the largest size run)
    kind: str  # "ratio>=", "ratio<=" or "value<="
    bound: float
    text: str

    def met(self, value: float | None, ratio: float | None) -> bool | None:
        if self.kind.startswith("ratio"):
            if ratio is None:
                return None
            return ratio >= self.bound if self.kind == "ratio>=" else ratio <= self.bound
        return None if value is None else value <= self.bound


TARGETS = (
    Target("create", 1_000_000, "ratio>=", 1.2, ">= 1.2x seed"),
    Target("check", 1_000_000, "ratio>=", 0.8, ">= 0.8x seed"),
    Target("restart timer", 1_000_000, "ratio>=", 2.0, ">= 2x seed"),
    Target("get_logged_users", 100_000, "value<=", 0.050, "< 50 ms"),
    Target("heap per session", 1_000_000, "ratio<=", 0.8, "<= 0.8x seed heap"),
    Target("expiry: longest loop stall", 100_000, "value<=", 20.0, "<= 20 ms"),
    Target("expiry: worst lateness", 100_000, "value<=", 1.0, "<= 1 s"),
)


@dataclass(frozen=True)
class Plan:
    """What one run measures."""

    sizes: tuple[int, ...]
    rounds: int
    ops: int  # calls per ops figure (a random sample of the live sessions)
    expiry_sessions: int
    expiry_timeout: float  # seconds
    logged_users_box: float  # seconds the seed's getLoggedUsers may run past 10,000 sessions
    redis_ops: int  # calls per Redis figure and side
    push_sockets: tuple[int, ...] = ()  # the logout push at scale (benchmarks/push.py)


FULL = Plan(
    (10_000, 100_000, 1_000_000), 3, 200_000, 100_000, 2.0, 30.0, 20_000, (1_000, 5_000, 20_000)
)
QUICK = Plan((10_000,), 1, 10_000, 100_000, 2.0, 5.0, 3_000, (200,))
SMOKE = Plan((2_000,), 1, 2_000, 5_000, 2.0, 2.0, 300, (50,))


@dataclass
class Results:
    """Every sample, by (figure, sessions) and side."""

    samples: dict[tuple[str, int], dict[str, list[float]]] = field(default_factory=dict)
    notes: dict[tuple[str, int], str] = field(default_factory=dict)

    def add(self, side: str, sessions: int, fields: dict[str, Any]) -> None:
        for figure, name in (SEED_FIELDS if side == "seed" else FIELDS).items():
            if name in fields:
                slot = self.samples.setdefault((figure, sessions), {})
                slot.setdefault(side, []).append(float(fields[name]))

    def median(self, figure: str, sessions: int, side: str) -> float | None:
        values = self.samples.get((figure, sessions), {}).get(side)
        return statistics.median(values) if values else None


# -- running each side -----------------------------------------------------------------------


def say(*parts: object) -> None:
    print(*parts, flush=True)


def python_side(*args: object) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.python_side", *map(str, args)]
    return _json_run(cmd, cwd=HERE.parent)


def seed_side(*args: object) -> dict[str, Any]:
    cmd = ["node", "--expose-gc", "--max-old-space-size=16384", str(HERE / "seed_bench.js")]
    return _json_run([*cmd, str(SEED_DIR), *map(str, args)], cwd=HERE)


def _json_run(cmd: Sequence[str], cwd: Path) -> dict[str, Any]:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])}... failed:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def seed_logged_users_boxed(sessions: int, box: float) -> tuple[float | None, str]:
    """Time the seed's getLoggedUsers, killing it once it has run ``box`` seconds."""
    cmd = ["node", "--max-old-space-size=16384", str(HERE / "seed_bench.js"), str(SEED_DIR)]
    with subprocess.Popen(
        [*cmd, "logged-users", str(sessions)], cwd=HERE, stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        proc.stdout.readline()  # {"ready": true}: the sessions exist, the call starts now
        try:
            out, _ = proc.communicate(timeout=box)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return None, f"> {box:g} s (time-boxed)"
    return float(json.loads(out.strip().splitlines()[-1])["get_logged_users_s"]), ""


def setup_seed() -> str | None:
    """Install the seed into the ignored scratch folder; return why it cannot run, or None."""
    if shutil.which("node") is None:
        return "Node.js is not installed: the seed side is not measured (install node and npm)"
    if (SEED_DIR / "node_modules" / "users-session-manager" / "package.json").exists():
        return None
    if shutil.which("npm") is None:
        return "npm is not installed: cannot install the seed package; its side is not measured"
    say(f"installing {SEED_PACKAGE} into {SEED_DIR.relative_to(HERE.parent)} ...")
    done = subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(SEED_DIR), SEED_PACKAGE],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return f"npm install {SEED_PACKAGE} failed; the seed side is not measured:\n{done.stderr}"
    return None


# -- the run ---------------------------------------------------------------------------------


def sides(round_no: int, with_seed: bool) -> Iterator[str]:
    """Alternate which side goes first, round after round."""
    order = ("seed", "sessionkit") if round_no % 2 == 0 else ("sessionkit", "seed")
    return (side for side in order if with_seed or side == "sessionkit")


def measure(plan: Plan, with_seed: bool, results: Results) -> None:
    for round_no in range(plan.rounds):
        say(f"round {round_no + 1} of {plan.rounds}")
        for size in plan.sizes:
            count = min(size, plan.ops)
            for side in sides(round_no, with_seed):
                started = time.perf_counter()
                if side == "seed":
                    results.add(side, size, seed_side("ops", size, count, int(size <= 10_000)))
                else:
                    results.add(side, size, python_side("ops", size, count, int(size <= 100_000)))
                    results.add(side, size, python_side("memory", size))
                say(f"  {side:<10} {size:>9,} sessions: {time.perf_counter() - started:6.1f} s")
        n, timeout = plan.expiry_sessions, plan.expiry_timeout
        for side in sides(round_no, with_seed):
            run = seed_side if side == "seed" else python_side
            results.add(side, n, run("expiry", n, timeout))
            say(f"  {side:<10} {n:>9,} sessions expiring: done")
    if with_seed:
        for size in plan.sizes:
            if size > 10_000 and size <= 100_000:
                say(f"  seed getLoggedUsers at {size:,} (time box {plan.logged_users_box:g} s) ...")
                value, note = seed_logged_users_boxed(size, plan.logged_users_box)
                if value is not None:
                    results.add("seed", size, {"get_logged_users_s": value})
                else:
                    results.notes[("get_logged_users", size)] = note


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "ops/s":
        return f"{value:,.0f}"
    if unit == "bytes":
        return f"{value:,.0f}"
    if unit == "s" and value < 1:
        return f"{value * 1000:,.1f} ms"
    if unit == "s":
        return f"{value:,.2f} s"
    return f"{value:,.1f}"


def table(plan: Plan, results: Results) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    expiry_sizes = (plan.expiry_sessions,)
    for figure, unit, _ in FIGURES:
        sizes = expiry_sizes if figure.startswith("expiry") else plan.sizes
        if figure == "get_logged_users":
            sizes = tuple(s for s in plan.sizes if s <= 100_000) or plan.sizes[:1]
        for size in sizes:
            ours = results.median(figure, size, "sessionkit")
            seed = results.median(figure, size, "seed")
            ratio = ours / seed if ours is not None and seed else None
            row: dict[str, Any] = {
                "figure": figure,
                "unit": unit,
                "sessions": size,
                "sessionkit": ours,
                "seed": seed,
                "seed_note": results.notes.get((figure, size), ""),
                "ratio": ratio,
                "samples": results.samples.get((figure, size), {}),
            }
            rows.append(row)
    return rows


def target_rows(plan: Plan, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for target in TARGETS:
        candidates = [r for r in rows if r["figure"] == target.figure]
        exact = [r for r in candidates if r["sessions"] == target.sessions]
        # A short run measures at smaller sizes: judge at the largest one it has.
        row = exact[0] if exact else max(candidates, key=lambda r: r["sessions"])
        value = row["sessionkit"]
        if target.figure == "expiry: longest loop stall":
            value = row["sessionkit"]
        met = target.met(value, row["ratio"])
        out.append(
            {
                "figure": target.figure,
                "sessions": row["sessions"],
                "as_asked": row["sessions"] == target.sessions,
                "target": target.text,
                "sessionkit": value,
                "seed": row["seed"],
                "seed_note": row["seed_note"],
                "ratio": row["ratio"],
                "met": met,
            }
        )
    return out


def floor_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """sessionkit's check and restart against their floors, at each size: figure / floor."""
    by = {(r["figure"], r["sessions"]): r["sessionkit"] for r in rows}
    out = []
    for figure, floor, bound in FLOOR_TARGETS:
        for (name, size), ours in by.items():
            if name != figure:
                continue
            base = by.get((floor, size))
            ratio = ours / base if ours is not None and base else None
            out.append(
                {
                    "figure": figure,
                    "floor": floor,
                    "sessions": size,
                    "ratio": ratio,
                    "target": bound,
                    "met": None if ratio is None else ratio >= bound,
                }
            )
    return out


def floor_line(f: dict[str, Any]) -> str:
    ratio = "-" if f["ratio"] is None else f"{f['ratio']:.2f}"
    met = {True: "met", False: "NOT MET", None: "not measured"}[f["met"]]
    return (
        f"{f['figure']:<14} at {f['sessions']:>9,} sessions: {ratio:>5} of its floor"
        f" ({f['floor']}; aim >= {f['target']:g}x) {met}"
    )


def print_tables(rows: list[dict[str, Any]], targets: list[dict[str, Any]]) -> None:
    say("")
    say(f"{'figure':<46} {'sessions':>10} {'sessionkit':>14} {'seed':>22} {'ratio':>7}")
    for r in rows:
        unit = r["unit"]
        seed = r["seed_note"] or fmt(r["seed"], unit)
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        name = f"{r['figure']} ({unit})"
        ours = fmt(r["sessionkit"], unit)
        say(f"{name:<46} {r['sessions']:>10,} {ours:>14} {seed:>22} {ratio:>7}")
    say(FLOOR_NOTE)
    say("")
    say("targets (ratio = sessionkit / seed)")
    for t in targets:
        met = {True: "met", False: "NOT MET", None: "not measured"}[t["met"]]
        at = f"at {t['sessions']:,}" + ("" if t["as_asked"] else " (asked: larger)")
        ratio = "-" if t["ratio"] is None else f"{t['ratio']:.2f}"
        unit = UNITS[t["figure"]]
        say(
            f"  {t['figure']:<28} {at:<26} sessionkit {fmt(t['sessionkit'], unit):>12}"
            f"  ratio {ratio:>5}  target {t['target']:<18} {met}"
        )
    say("")
    say("against plain Python doing the same work (ratio = sessionkit / floor, in this run)")
    for f in floor_rows(rows):
        say(f"  {floor_line(f)}")


def markdown(report: dict[str, Any]) -> str:
    """The results as docs/performance.md's table (figure, sessionkit, seed, ratio, target)."""
    targets = {(t["figure"], t["sessions"]): t for t in report["targets"]}
    lines = [
        "| figure | sessions | sessionkit | seed | ratio | target | met? |",
        "|---|--:|--:|--:|--:|---|---|",
    ]
    for r in report["rows"]:
        unit = r["unit"]
        target = targets.get((r["figure"], r["sessions"]))
        met = "" if target is None else {True: "yes", False: "**no**", None: "-"}[target["met"]]
        lines.append(
            f"| {r['figure']} ({unit}) | {r['sessions']:,} | {fmt(r['sessionkit'], unit)} "
            f"| {r['seed_note'] or fmt(r['seed'], unit)} "
            f"| {'-' if r['ratio'] is None else format(r['ratio'], '.2f')} "
            f"| {'' if target is None else target['target']} | {met} |"
        )
    lines += ["", FLOOR_NOTE, ""]
    lines += [f"- {floor_line(f)}" for f in report["floors"]]
    redis = report["redis"]
    if redis.get("measured"):
        lines += ["", "| RedisStore figure | sessionkit | raw redis-py | ratio | target | met? |"]
        lines.append("|---|--:|--:|--:|---|---|")
        for name, f in redis["figures"].items():
            raw = "-" if f["raw"] is None else f"{f['raw']:,.0f}"
            ratio = f.get("ratio")
            shown = "-" if ratio is None else f"{ratio:.2f}"
            if "extra_us" in f:
                shown = f"{f['extra_us']:+.1f} us"
            met = {True: "yes", False: "**no**", None: "-"}[f["met"]]
            target = f.get("target", "-")
            lines.append(
                f"| {name} | {f['sessionkit']:,.0f} | {raw} | {shown} | {target} | {met} |"
            )
    else:
        lines += ["", f"RedisStore figures not measured: {redis['why']}"]
    pushed = report["push"]
    if pushed.get("measured"):
        lines += ["", push.markdown(pushed).rstrip("\n")]
    else:
        lines += ["", f"Socket.IO push figures not measured: {pushed['why']}"]
    e2e = report.get("e2e", {})
    if e2e.get("measured"):
        lines += ["", e2e_markdown(e2e).rstrip("\n")]
    else:
        lines += ["", f"End-to-end figures not measured: {e2e.get('why', 'not run')}"]
    m = report["machine"]
    lines += [
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['os']}; "
        f"Python {m['python']}, Node.js {m['node']}. Date: {report['date']}. "
        f"Command: `{report['command']}` ({report['plan']['rounds']} rounds, medians).",
    ]
    return "\n".join(lines) + "\n"


def part(what: str, flag: str, skipped: bool, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one optional part of the suite, or say it was left out by ``flag``."""
    if skipped:
        report: dict[str, Any] = {"measured": False, "why": f"not asked for ({flag})"}
        say(f"\n{what} not measured: {report['why']}")
        return report
    say("")
    return run()


def run_redis(plan: Plan) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.redis_side", str(plan.redis_ops), str(plan.rounds)]
    done = subprocess.run(cmd, cwd=HERE.parent, capture_output=True, text=True, check=False)
    sys.stdout.write(done.stdout)
    if done.returncode != 0:
        sys.stdout.write(done.stderr[-3000:])
        return {"measured": False, "why": f"the Redis benchmark failed (exit {done.returncode})"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{"):
            result: dict[str, Any] = json.loads(line)
            return result
    return {"measured": False, "why": "the Redis benchmark printed no result"}


def run_e2e(mode: str | None) -> dict[str, Any]:
    """The end-to-end benchmark in its own process (``benchmarks/e2e.py``); its JSON report."""
    cmd = [sys.executable, "-m", "benchmarks.e2e", *([f"--{mode}"] if mode else [])]
    done = subprocess.run(cmd, cwd=HERE.parent, capture_output=True, text=True, check=False)
    lines = done.stdout.splitlines()
    sys.stdout.write("".join(ln + "\n" for ln in lines if not ln.startswith("{")))
    if done.returncode != 0:
        sys.stdout.write(done.stderr[-3000:])
        why = f"the end-to-end benchmark failed (exit {done.returncode})"
        say(f"end-to-end figures not measured: {why}")
        return {"measured": False, "why": why}
    for line in reversed(lines):
        if line.startswith("{"):
            result: dict[str, Any] = json.loads(line)
            return result
    return {"measured": False, "why": "the end-to-end benchmark printed no result"}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick", action="store_true", help="10,000 sessions and 200 sockets, 1 round (~1 min)"
    )
    mode.add_argument("--smoke", action="store_true", help="tiny sizes: checks the suite runs")
    parser.add_argument("--rounds", type=int, help="rounds per side (default: 3, or 1 if short)")
    parser.add_argument("--sizes", type=lambda s: tuple(int(x) for x in s.split(",")))
    parser.add_argument("--no-seed", action="store_true", help="measure sessionkit only")
    parser.add_argument("--no-redis", action="store_true", help="skip the RedisStore figures")
    parser.add_argument("--no-push", action="store_true", help="skip the Socket.IO push figures")
    parser.add_argument("--no-e2e", action="store_true", help="skip the end-to-end figures")
    parser.add_argument("--json", type=Path, help="where to write the results")
    args = parser.parse_args(argv)

    plan = SMOKE if args.smoke else QUICK if args.quick else FULL
    if args.rounds:
        plan = Plan(**{**plan.__dict__, "rounds": args.rounds})
    if args.sizes:
        plan = Plan(**{**plan.__dict__, "sizes": args.sizes})

    started = time.perf_counter()
    why_no_seed = "not asked for (--no-seed)" if args.no_seed else setup_seed()
    if why_no_seed:
        say(f"seed: {why_no_seed}")
    else:
        say(f"seed: {SEED_PACKAGE}, node {_version(['node', '--version'])}")
    sizes = ", ".join(f"{s:,}" for s in plan.sizes)
    say(f"sessionkit: python {platform.python_version()}, sizes {sizes}, {plan.rounds} round(s)")

    results = Results()
    measure(plan, why_no_seed is None, results)
    rows = table(plan, results)
    targets = target_rows(plan, rows)
    print_tables(rows, targets)

    redis = part("Redis figures", "--no-redis", args.no_redis, lambda: run_redis(plan))
    push_report = part(
        "Socket.IO push figures",
        "--no-push",
        args.no_push,
        lambda: push.run(plan.push_sockets, plan.rounds, with_seed=why_no_seed is None),
    )
    e2e = part(
        "end-to-end figures",
        "--no-e2e",
        args.no_e2e,
        lambda: run_e2e("smoke" if args.smoke else "quick" if args.quick else None),
    )

    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, "-m", "benchmarks", *sys.argv[1:]]),
        "machine": machine(),
        "seed": why_no_seed or SEED_PACKAGE,
        "plan": plan.__dict__,
        "rows": rows,
        "targets": targets,
        "floors": floor_rows(rows),
        "redis": redis,
        "push": push_report,
        "e2e": e2e,
        "elapsed_s": time.perf_counter() - started,
    }
    path = args.json or RESULTS_DIR / f"bench-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=list))
    path.with_suffix(".md").write_text(markdown(report))
    say(f"\nresults written to {path} and .md ({report['elapsed_s']:.0f} s)")
    return 0


def _version(cmd: list[str]) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return done.stdout.strip()


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(
                (ln.split(":", 1)[1].strip() for ln in info if ln.startswith("model name")), ""
            )
    except OSError:
        pass
    return {
        "cpu": cpu or platform.processor(),
        "cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
        "os": platform.platform(),
        "python": platform.python_version(),
        "node": _version(["node", "--version"]) if shutil.which("node") else None,
    }


if __name__ == "__main__":
    raise SystemExit(main())
