"""The benchmark suite must keep running: its smoke mode prints every figure (not judged)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks import e2e, push, redis_store, sessions
from benchmarks.__main__ import PARTS, ROWS

ROOT = Path(__file__).resolve().parent.parent


#: The parts in three runs side by side (each waits on its servers, subprocesses and timers
#: more than it computes). Only the first installs the seed package (redis and e2e never use
#: it): two npm installs into one folder would collide.
RUNS: list[tuple[list[str], list[str]]] = [
    (["sessions", "push"], []),
    (["redis"], ["--no-seed"]),
    (["e2e"], ["--no-seed"]),
]


def test_smoke_run_prints_every_figure(tmp_path: Path) -> None:
    assert sorted(part for parts, _ in RUNS for part in parts) == sorted(PARTS)
    outs = [tmp_path / f"results{i}.json" for i in range(len(RUNS))]
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "benchmarks", *parts, "--smoke", *flags, "--json", str(out)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for (parts, flags), out in zip(RUNS, outs, strict=True)
    ]
    try:
        outputs = [run.communicate(timeout=120) for run in runs]
    finally:
        for run in runs:
            run.kill()
            run.communicate()
    for run, (stdout, stderr) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, stdout + stderr
        assert "failed" not in stdout, stdout
    stdout = "\n".join(out for out, _ in outputs)
    lines = stdout.splitlines()
    for name, unit, *_ in sessions.FIGURES:
        assert f"{name} ({unit})" in stdout, name
    for target in sessions.TARGETS:  # judged on the row of its figure, whatever the verdict
        assert any(f"{target.figure} (" in ln and target.text in ln for ln in lines), target.text
    for name in [*e2e.SIDES, *(t.text for t in e2e.TARGETS)]:
        assert name in stdout, name
    for where in ("redis", "redis cluster"):  # RedisStore on one server, then on a cluster
        for figure in ("check", "restart timer"):
            for c in redis_store.TARGET_RATIO:
                assert f"{where} {figure} ops/s c={c}" in stdout
            assert f"{where} {figure} p50 latency c=1" in stdout
    assert "redis server CPU per guarded request's call" in stdout  # one server only
    if shutil.which("node") is None:
        assert "Node.js is not installed" in stdout
    else:
        for name, unit in push.FIGURES:
            assert f"{name} ({unit})" in stdout, name
        for push_target in push.TARGETS:
            assert push_target.text in stdout, push_target.text
    for run_out, _ in outputs:  # each run ends with every row of the issue, judged or not run
        summary = run_out[run_out.index("summary: every row of the issue") :]
        for target in ROWS:
            assert any(target.row in ln and target.text in ln for ln in summary.splitlines())
    for out in outs:
        assert out.exists()
        assert out.with_suffix(".md").exists()


def test_the_guards_cost_in_one_process_is_measured_route_by_route() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.e2e", "asgi", "20", "50", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    routes = [line.split()[0] for line in done.stdout.splitlines()]
    assert routes == ["bare", "restart_session_timer", "touch_session", "sessionkit-memory"]
    assert all(" us  (+" in line for line in done.stdout.splitlines())


def test_the_benchmarks_stay_smaller_than_the_library_they_measure() -> None:
    # The house rule of issue 21: one harness and a module per part, at most 1,800 lines of
    # code (the README, which records every measurement, is not code).
    code = [p for p in (ROOT / "benchmarks").iterdir() if p.suffix in (".py", ".js", ".lua")]
    lines = sum(len(p.read_text().splitlines()) for p in code)
    assert lines <= 1_800, f"benchmarks/ has {lines} lines of code"
