"""Nothing lost (docs/contract.md, "Failures"): a mutating call whose reply never reached the
caller.

Redis applies each call, then the caller does not hear it: the proxy closes the connection
instead of replying (with and without redis-py's own retry, which then sends the script
again), Redis is kept busy past ``op_timeout``, or the caller cancels after sending. Once the
store answers again, every session that ended must have had exactly one ``session_deleted``,
and no session may live under a key nobody was given.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from sessionkit import SessionEvent, SessionManager, StoreUnavailable
from sessionkit.keys import hash_key
from sessionkit.stores.redis import RedisStore
from tests.conftest import fresh_prefix
from tests.faultkit import Hog, eventually, session_id, stored_digests
from tests.faultproxy import FaultProxy
from tests.recorder import Recorder

OP_TIMEOUT = 0.3  # seconds
SETTLE = 3.0  # seconds the store has to report what it did once Redis answers again

#: How each call below loses its reply: the proxy drops the connection once Redis has applied
#: it (redis-py then retries, or not), Redis is kept busy past ``op_timeout``, or the caller
#: gives up after sending.
FAULTS = ["reply dropped", "reply dropped, redis-py retry", "busy server", "caller cancels"]

Broken = Callable[[], Awaitable[str | None]]


@dataclass
class Case:
    """One manager on a prefix of its own (so that faults can target its calls), recording
    its events, and the rules every case checks."""

    sm: SessionManager
    prefix: str
    rec: Recorder
    direct: Redis  # to the server itself, past the proxy

    async def orphans(self, held: set[str]) -> str | None:
        """Nothing live but what a caller holds the key for, by listing and by reading Redis."""
        live = {session_id(d) for d in await self.sm.get_user_sessions("u")}
        if live - held:
            return f"{len(live - held)} live session(s) under a key nobody was given"
        if await self.sm.count_sessions() != len(live):
            return f"count_sessions() {await self.sm.count_sessions()} != listed {len(live)}"
        stray = await stored_digests(self.direct, self.prefix) - held
        return f"{len(stray)} session record(s) in Redis for keys nobody holds" if stray else None

    def ended_once(self, hashes: set[str], reason: str) -> str | None:
        """Each session of ``hashes`` got exactly one ``session_deleted``, for ``reason``."""
        got = {h: len(self.rec.of("session_deleted", key_hash=h)) for h in hashes}
        wrong = {h[:8]: n for h, n in got.items() if n != 1}
        if wrong:
            return f"session_deleted per ended session {wrong} (want 1 each)"
        reasons = {e.reason for h in hashes for e in self.rec.of("session_deleted", key_hash=h)}
        return None if reasons <= {reason} else f"reasons {reasons}, want {reason!r}"


@dataclass
class Outcome:
    """What the faulted call did, as its caller saw it."""

    text: str  # "returned", or what it raised after how long
    result: object = None  # what it returned, if it did


class Fault:
    """One way of losing a call's reply (see :data:`FAULTS`), around the tests' own proxy."""

    def __init__(
        self, kind: str, proxy: FaultProxy, direct: Redis, connect: Callable[..., Redis]
    ) -> None:
        self.kind = kind
        self.proxy = proxy
        self.direct = direct
        self.connect = connect
        if kind == "reply dropped":
            self.client = connect(proxy.port, retry=Retry(NoBackoff(), 0))
        else:
            self.client = connect(proxy.port)  # redis-py's default Retry: 3 retries
        self.made: list[SessionManager] = []

    async def case(self, **options: Any) -> Case:
        """A manager with ``options`` on a fresh prefix, its first sweep run, recording."""
        # Each call once, fault-free, so that the server holds every script: a first use
        # answers NOSCRIPT (nothing applied), which is not the fault under test.
        store = RedisStore(self.client, prefix=fresh_prefix(), sweep_interval=3600)
        async with SessionManager(timeout=60, store=store, max_sessions_per_user=1) as warm:
            await warm.load_new_session("w")
            key = await warm.rotate_session_key(await warm.load_new_session("w"))
            await warm.delete_session(key)
            await warm.delete_user_sessions("w")
            await warm.delete_all_sessions()
        prefix = fresh_prefix()
        store = RedisStore(self.client, prefix=prefix, op_timeout=OP_TIMEOUT, sweep_interval=3600)
        sm = SessionManager(timeout=60, store=store, **options)
        self.made.append(sm)
        await sm.count_sessions()  # binds the manager: its first sweep runs now, not later
        await sm.idle()  # it has run: only the faulted call is left
        return Case(sm, prefix, Recorder(sm), self.direct)

    async def lose(self, case: Case, call: Callable[[], Awaitable[object]]) -> Outcome:
        """Make ``call`` on ``case``'s manager lose its reply, Redis having applied it."""
        # Open connections for the call now: a fresh one would wait on the fault for its own
        # handshake, and the call would never be sent.
        await asyncio.gather(self.client.ping(), self.client.ping())
        if self.kind == "busy server":
            hogger = Hog(self.connect(self.proxy.upstream_port))
            await hogger.calibrate()
            hog = await hogger.hold(1.2, self.connect(self.proxy.upstream_port))
            outcome = await _run(call)
            assert not hog.done()  # the call gave up while the server was still busy
            assert outcome.text.startswith("raised StoreUnavailable"), outcome.text
            assert await hog > OP_TIMEOUT + 0.1
        elif self.kind == "caller cancels":
            self.proxy.delay(0.6)  # the reply is held by the proxy; Redis has applied the call
            outcome = await _run(call, cancel_after=0.2)
            self.proxy.delay(0)
            assert outcome.text.startswith("raised TimeoutError"), outcome.text
        else:
            # The connection closes instead of replying. With redis-py's default Retry the
            # client sends the same script again on a new connection: it must not apply twice
            # either. The call may raise StoreUnavailable, or return: RedisStore sends a
            # script again on a new connection once, and the operation id makes the second
            # send return the first outcome.
            self.proxy.drop_after_reply(command=case.prefix.encode())
            outcome = await _run(call)
            assert self.proxy.dropped == 1  # the call applied in Redis, its reply lost
        return outcome

    async def judge(self, case: Case, outcome: Outcome, broken: Broken) -> None:
        """Once the store answers again, ``broken`` finds nothing wrong, and no session was
        reported ended twice."""
        await eventually(broken, SETTLE)
        await case.sm.idle()  # nothing is being settled or reported: a second report would be in
        complaint = await broken()
        doubled = case.rec.doubled()
        if doubled:
            complaint = f"session_deleted twice for {doubled}"
        await case.sm.aclose()
        assert complaint is None, f"{self.kind}: the call {outcome.text}; {complaint}"


async def _run(call: Callable[[], Awaitable[object]], cancel_after: float | None = None) -> Outcome:
    started = time.monotonic()
    try:
        if cancel_after is None:
            result = await call()
        else:
            result = await asyncio.wait_for(call(), cancel_after)
    except BaseException as exc:
        return Outcome(f"raised {type(exc).__name__} after {time.monotonic() - started:.2f} s")
    return Outcome("returned", result)


@pytest.fixture(params=FAULTS)
async def fault(
    request: pytest.FixtureRequest,
    proxy: FaultProxy,
    redis_client: Redis,
    connect: Callable[..., Redis],
) -> AsyncIterator[Fault]:
    """Each way of losing a reply in turn (the test runs once per fault)."""
    made = Fault(request.param, proxy, redis_client, connect)
    yield made
    for sm in made.made:
        await sm.aclose()


async def test_a_logout_that_lost_its_reply_is_reported_once(fault: Fault) -> None:
    """``delete_session``: the session is gone, so it must have been reported once."""
    case = await fault.case()
    key = await case.sm.load_new_session("u")
    outcome = await fault.lose(case, partial(case.sm.delete_session, key))

    async def broken() -> str | None:
        if await case.sm.check_session_status(key):
            return "the deleted session is still live (the fault did not apply the call)"
        return case.ended_once({hash_key(key)}, "logout") or await case.orphans(set())

    await fault.judge(case, outcome, broken)


async def test_a_login_that_lost_its_reply_leaves_no_session_nobody_holds(fault: Fault) -> None:
    """``load_new_session``: the caller never got the key, so no session may be left under
    it (or the login returned after all, and its caller holds the key)."""
    case = await fault.case()
    outcome = await fault.lose(case, partial(case.sm.load_new_session, "u"))

    async def broken() -> str | None:
        created, deleted = case.rec.of("session_created"), case.rec.of("session_deleted")
        if isinstance(outcome.result, str):  # the call returned after all
            if len(created) != 1 or deleted:
                return f"login returned; {len(created)} session_created, {len(deleted)} deleted"
            return await case.orphans({hash_key(outcome.result)})
        if len(created) > 1 or len(deleted) > 1 or (created and not deleted):
            return f"{len(created)} session_created, {len(deleted)} session_deleted"
        return await case.orphans(set())

    await fault.judge(case, outcome, broken)


async def test_a_login_that_evicted_and_lost_its_reply_reports_the_eviction_once(
    fault: Fault,
) -> None:
    """``load_new_session`` evicting the user's oldest session: the eviction happened, so it
    must be reported, once."""
    case = await fault.case(max_sessions_per_user=1)
    oldest = await case.sm.load_new_session("u")
    outcome = await fault.lose(case, partial(case.sm.load_new_session, "u"))

    async def broken() -> str | None:
        if await case.sm.check_session_status(oldest):
            return "the oldest session is still live (the fault did not apply the call)"
        new_created = [e for e in case.rec.of("session_created") if e.key != oldest]
        evicted = len(case.rec.of("session_deleted", key_hash=hash_key(oldest)))
        if evicted != 1:
            return f"evicted session got {evicted} session_deleted"
        all_deleted = len(case.rec.of("session_deleted"))
        if isinstance(outcome.result, str):  # the login returned: its caller holds the new key
            if len(new_created) != 1 or all_deleted != 1:
                return "login returned, yet its session was not reported created once"
            held = {hash_key(outcome.result)}
            return case.ended_once({hash_key(oldest)}, "evicted") or await case.orphans(held)
        if new_created and all_deleted != 2:
            return "the new session was reported created but its end was not"
        return case.ended_once({hash_key(oldest)}, "evicted") or await case.orphans(set())

    await fault.judge(case, outcome, broken)


async def test_a_rotation_that_lost_its_reply_leaves_the_old_key_or_one_ending(
    fault: Fault,
) -> None:
    """``rotate_session_key``: the old key live, or the session ended with its event, or the
    rotation returned and its new key is live; nothing else."""
    case = await fault.case()
    key = await case.sm.load_new_session("u")
    outcome = await fault.lose(case, partial(case.sm.rotate_session_key, key))

    async def broken() -> str | None:
        deleted = case.rec.of("session_deleted")
        if isinstance(outcome.result, str):  # the rotation returned: its caller holds the key
            if deleted or not await case.sm.check_session_status(outcome.result):
                return f"rotation returned, yet its key is dead ({len(deleted)} session_deleted)"
            return await case.orphans({hash_key(outcome.result)})
        if await case.sm.check_session_status(key):
            return (
                f"old key live yet {len(deleted)} session_deleted"
                if deleted
                else await case.orphans({hash_key(key)})
            )
        if len(deleted) != 1:
            return f"old key dead, {len(deleted)} session_deleted for the session (want 1)"
        return await case.orphans(set())

    await fault.judge(case, outcome, broken)


async def test_a_renewal_that_lost_its_reply_is_undone_or_kept_whole(fault: Fault) -> None:
    """``renew_if_due``: a rotation leaving an alias for the grace; settled as a rotation is."""
    case = await fault.case(renew_every=60, renew_grace=30)
    key = await case.sm.load_new_session("u")
    details = await case.sm.get_session_details(key)
    due = replace(details, key_created_at=datetime(2000, 1, 1, tzinfo=UTC))
    outcome = await fault.lose(case, partial(case.sm.renew_if_due, due))

    async def broken() -> str | None:
        deleted = case.rec.of("session_deleted")
        if isinstance(outcome.result, str):  # renewed: the new key and, in its grace, the old
            if deleted or not await case.sm.check_session_status(outcome.result):
                return f"renewal returned, yet its key is dead ({len(deleted)} session_deleted)"
            if not await case.sm.check_session_status(key):
                return "renewal returned, yet the old key stopped before its grace"
            return await case.orphans({hash_key(outcome.result), hash_key(key)})
        if await case.sm.check_session_status(key):
            if deleted:
                return f"old key live yet {len(deleted)} session_deleted"
            if (await case.sm.get_session_details(key)).id != hash_key(key):
                return "the old key works only as an alias: the renewal was not undone"
            return await case.orphans({hash_key(key)})
        if len(deleted) != 1:
            return f"old key dead, {len(deleted)} session_deleted for the session (want 1)"
        return await case.orphans(set())

    await fault.judge(case, outcome, broken)


async def _bulk_ending(fault: Fault, name: str, reason: str) -> None:
    # A bulk call that lost its reply: every session it removed is reported once.
    case = await fault.case()
    keys = [await case.sm.load_new_session("u") for _ in range(3)]
    call = getattr(case.sm, name)
    outcome = await fault.lose(case, call if name == "delete_all_sessions" else partial(call, "u"))

    async def broken() -> str | None:
        if await case.sm.count_sessions():
            return "sessions still live (the fault did not apply the call)"
        return case.ended_once({hash_key(k) for k in keys}, reason) or await case.orphans(set())

    await fault.judge(case, outcome, broken)


async def test_a_delete_all_that_lost_its_reply_reports_every_session_once(fault: Fault) -> None:
    """``delete_all_sessions``: each session it removed reported once, reason ``delete_all``."""
    await _bulk_ending(fault, "delete_all_sessions", "delete_all")


async def test_a_logout_everywhere_that_lost_its_reply_reports_every_session_once(
    fault: Fault,
) -> None:
    """``delete_user_sessions``: each session it removed reported once, reason
    ``logout_all``."""
    await _bulk_ending(fault, "delete_user_sessions", "logout_all")


async def test_a_connection_that_stops_reading_is_left_for_a_new_one(
    proxy: FaultProxy, connect: Callable[..., Redis]
) -> None:
    """The store's connection stops being read (the proxy holds it; its socket buffers fill
    with 40 MB of session data): the calls on it fail at op_timeout, the write held up on it
    is left behind, and the calls after go out on a new connection and answer."""
    store = RedisStore(connect(proxy.port), prefix=fresh_prefix(), op_timeout=OP_TIMEOUT)
    async with SessionManager(timeout=60, store=store) as sm:
        key = await sm.load_new_session("ada")
        proxy.freeze_open()
        blob = "x" * 1_000_000
        stuck = await asyncio.gather(
            *(sm.set_session_data(key, blob) for _ in range(40)), return_exceptions=True
        )
        assert all(isinstance(r, StoreUnavailable) for r in stuck), stuck
        assert proxy.bytes_up < 2_000_000  # the writes did back up behind the frozen one

        async def answers() -> object:
            return None if await sm.check_session_status(key) else "the session is not live"

        began = time.monotonic()
        assert not await eventually(answers, 3.0)
        print(f"answered again {time.monotonic() - began:.2f} s after the stuck calls failed")
        assert await sm.set_session_data(key, "fine")
        assert await sm.get_session_data(key) == "fine"
        proxy.release()


async def test_aclose_reports_what_a_timed_out_call_did(
    proxy: FaultProxy, connect: Callable[..., Redis]
) -> None:
    """docs: the contract, "A worker that dies loses nothing": a logout that Redis applied but
    whose reply came after ``op_timeout`` is reported by ``aclose()``, run once Redis answers
    again, before it returns (it used to drop the calls still to be settled)."""
    store = RedisStore(connect(proxy.port), prefix=fresh_prefix(), op_timeout=OP_TIMEOUT)
    sm = SessionManager(timeout=60, store=store)
    rec = Recorder(sm)
    await sm.delete_session(await sm.load_new_session("warm"))  # its scripts are loaded
    key = await sm.load_new_session("u")
    proxy.delay(OP_TIMEOUT * 2)  # Redis applies the logout; its reply comes too late
    with pytest.raises(StoreUnavailable):
        await sm.delete_session(key)
    proxy.delay(0)
    await sm.aclose()
    ended = rec.of("session_deleted", key_hash=hash_key(key))
    assert [e.reason for e in ended] == ["logout"]


async def test_a_handler_that_hangs_holds_up_only_its_own_late_report(
    proxy: FaultProxy, connect: Callable[..., Redis]
) -> None:
    """Two logouts lose their reply; the handler of the first one's late report never returns
    (until the test lets it): the second is reported all the same. Settling never waits on a
    handler inline."""
    store = RedisStore(connect(proxy.port), prefix=fresh_prefix(), op_timeout=OP_TIMEOUT)
    sm = SessionManager(timeout=60, store=store)
    await sm.delete_session(await sm.load_new_session("warm"))  # its scripts are loaded
    first, second = await sm.load_new_session("u"), await sm.load_new_session("u")
    hang, reported = asyncio.Event(), asyncio.Event()

    @sm.on("session_deleted")
    async def deleted(event: SessionEvent) -> None:
        if event.key_hash == hash_key(first):
            await hang.wait()
        else:
            reported.set()

    # Redis applies both logouts (sent together, on the connection open now); their replies
    # come too late.
    proxy.delay(OP_TIMEOUT * 2)
    calls = await asyncio.gather(*map(sm.delete_session, (first, second)), return_exceptions=True)
    assert all(isinstance(call, StoreUnavailable) for call in calls), calls
    proxy.delay(0)
    try:
        async with asyncio.timeout(10):
            await reported.wait()
    finally:
        hang.set()
        await sm.aclose()
