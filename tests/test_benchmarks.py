"""The benchmark suite must keep running: its smoke mode prints every figure (not judged)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks import e2e, push
from benchmarks.redis_side import figure_names
from benchmarks.run import FIGURES, FLOOR_TARGETS, TARGETS

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
    for name, unit, _ in FIGURES:
        assert f"{name} ({unit})" in done.stdout, name
    for target in TARGETS:
        assert target.text in done.stdout, target.figure
    for figure, floor, _ in FLOOR_TARGETS:  # check and restart as ratios of their floors
        lines = [line for line in done.stdout.splitlines() if f"of its floor ({floor}" in line]
        assert [line.split()[0] for line in lines] == [figure.split()[0]], done.stdout
    for name in figure_names():
        assert name in done.stdout, name
    for name in e2e.figure_names():
        assert name in done.stdout, name
    if shutil.which("node") is None:
        assert "Node.js is not installed" in done.stdout
    else:
        for push_figure in push.FIGURES:
            assert f"{push_figure.name} ({push_figure.unit})" in done.stdout, push_figure.name
        for push_target in push.TARGETS:
            assert push_target.text in done.stdout, push_target.text
    assert out.exists()
