"""The closed sets of names are ``Literal`` types: a type checker catches a misspelt event
name, reason or ``on_session_limit`` before the code runs (the manager still checks at run
time). mypy itself is run here on a small file with three typos."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest
from mypy import api

from sessionkit import EVENTS, REASONS, EventName, Reason, SessionLimitPolicy, SessionManager

SNIPPET = """\
from sessionkit import SessionEvent, SessionManager

sm = SessionManager(on_session_limit="evict")
sm = SessionManager(on_session_limit="evcit")  # typo
sm.on("session_expired", print)
sm.on("session_expird", print)  # typo
sm.off("session_expired", print)


def handler(event: SessionEvent) -> None:
    if event.reason == "expired":
        print(event.name == "session_deleted")
    if event.reason == "expird":  # typo
        pass
"""


def test_mypy_rejects_a_misspelt_event_reason_or_policy(tmp_path: Path) -> None:
    snippet = tmp_path / "snippet.py"
    snippet.write_text(SNIPPET)
    out, err, status = api.run(
        [str(snippet), "--strict", "--no-incremental", "--cache-dir", str(tmp_path / "cache")]
    )
    assert status == 1, out + err
    flagged = sorted({int(line.split(":")[1]) for line in out.splitlines() if ": error:" in line})
    typos = [n for n, line in enumerate(SNIPPET.splitlines(), 1) if line.endswith("# typo")]
    assert flagged == typos, out


def test_the_literals_match_the_runtime_checks() -> None:
    assert get_args(EventName) == tuple(EVENTS)
    assert get_args(Reason) == REASONS
    assert get_args(SessionLimitPolicy) == ("evict", "refuse")
    with pytest.raises(ValueError, match="'evict' or 'refuse'"):
        SessionManager(on_session_limit="evcit")  # type: ignore[arg-type]
