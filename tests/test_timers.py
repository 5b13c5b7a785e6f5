"""DeadlineTimers: buckets of keys, and the open bucket arm appends to without working it out."""

from __future__ import annotations

import asyncio

import pytest

from tests.clock import LATE, manager
from tests.internals import DeadlineTimers
from tests.recorder import Recorder


def opens(timers: DeadlineTimers, when: float) -> bool:
    """Whether arm would append a key due at ``when`` to the open bucket."""
    return timers.open_from <= when < timers.open_until


async def test_the_open_bucket_is_the_one_arm_filled_and_closes_when_it_fires() -> None:
    loop = asyncio.get_running_loop()
    fired: list[list[str]] = []
    timers = DeadlineTimers(fired.append)
    timers.bind(loop)
    when = loop.time() + 0.02
    assert not opens(timers, when)  # nothing armed yet
    timers.arm("a", when)
    assert opens(timers, when) and not opens(timers, timers.open_until)
    assert timers.open_until - timers.open_from == pytest.approx(timers.resolution)
    timers.arm("b", when)  # due in the open bucket: appended to its list
    assert timers.open_keys == ["a", "b"]
    await asyncio.sleep(0.1)
    assert fired == [["a", "b"]]
    assert not opens(timers, when)  # a key appended now would never fire
    timers.arm("c", when)  # due already: a new bucket, fired at once
    await asyncio.sleep(0.1)
    assert fired == [["a", "b"], ["c"]]
    timers.cancel_handles()


def test_no_bucket_is_open_in_exact_mode_or_across_a_change_of_width() -> None:
    timers = DeadlineTimers(lambda keys: None)
    timers.arm("a", 10.0)
    assert opens(timers, 10.0)
    timers.resolution = 0.01
    assert not opens(timers, 10.0)  # keys armed from now on use the new width
    timers.arm("b", 10.0)
    assert opens(timers, 10.0) and timers.open_until - timers.open_from == pytest.approx(0.01)
    timers.make_exact()  # every key must now be mapped to its bucket by arm
    assert not opens(timers, 10.0)
    timers.arm("c", 10.0)
    assert not opens(timers, 10.0)
    assert not opens(DeadlineTimers(lambda keys: None, exact=True), 10.0)


@pytest.mark.looptime
async def test_logins_in_runs_and_out_of_them_each_expire_at_their_own_deadline() -> None:
    # Logins with the manager's timeout fill the open bucket; one with its own timeout moves it
    # elsewhere and back; each session still ends once, at its own deadline.
    async with manager(timeout=10) as sm:
        log = Recorder(sm)
        deadlines: dict[str, float] = {}
        for step in range(40):
            user = f"u{step}"
            own = 5.0 if step % 7 == 3 else None
            await sm.load_new_session(user, timeout=own)
            deadlines[user] = step * 0.013 + (own or 10)
            await asyncio.sleep(0.013)  # runs of logins within one bucket, then the next
        await asyncio.sleep(20)
        ended = {user: at for at, user, _ in log.timeline("session_expired")}
        assert len(log.timeline("session_expired")) == len(ended) == len(deadlines)
        for user, deadline in deadlines.items():
            assert deadline <= ended[user] <= deadline + LATE, user
