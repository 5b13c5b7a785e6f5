"""The benchmark suite must keep running: its smoke mode prints every figure (not judged)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks import e2e, push, redis_store, sessions
from benchmarks.__main__ import ROWS

ROOT = Path(__file__).resolve().parent.parent


def test_smoke_run_prints_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "failed" not in done.stdout, done.stdout
    lines = done.stdout.splitlines()
    for name, unit, *_ in sessions.FIGURES:
        assert f"{name} ({unit})" in done.stdout, name
    for target in sessions.TARGETS:  # judged on the row of its figure, whatever the verdict
        assert any(f"{target.figure} (" in ln and target.text in ln for ln in lines), target.text
    for name in [*e2e.SIDES, *(t.text for t in e2e.TARGETS)]:
        assert name in done.stdout, name
    for where in ("redis", "redis cluster"):  # RedisStore on one server, then on a cluster
        for figure in ("check", "restart timer"):
            for c in redis_store.TARGET_RATIO:
                assert f"{where} {figure} ops/s c={c}" in done.stdout
            assert f"{where} {figure} p50 latency c=1" in done.stdout
    assert "redis server CPU per guarded request's call" in done.stdout  # one server only
    if shutil.which("node") is None:
        assert "Node.js is not installed" in done.stdout
    else:
        for name, unit in push.FIGURES:
            assert f"{name} ({unit})" in done.stdout, name
        for push_target in push.TARGETS:
            assert push_target.text in done.stdout, push_target.text
    summary = done.stdout[done.stdout.index("summary: every row of the issue") :]
    for target in ROWS:  # the run ends with every row of the issue, judged or not measured
        assert any(target.row in ln and target.text in ln for ln in summary.splitlines())
    assert out.exists()
    assert out.with_suffix(".md").exists()
