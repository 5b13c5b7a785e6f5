"""The rules of a session's life in the store: creation, reads, restarts, deadlines, claims
and endings, called on the store directly."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable
from typing import TypeVar

from sessionkit.keys import hash_key, new_key
from sessionkit.models import SessionRecord
from sessionkit.stores.base import NewSession, SessionStore
from sessionkit.testing._kit import SHORT, Kit, expect, login, near_now, rule, same

_T = TypeVar("_T")

# Strings a store must take as keys that name nothing: glob and SQL metacharacters, a NUL, a
# path, text outside ASCII (the manager passes on any str of 1 to 256 characters).
ODD_KEYS = [
    "nul\x00inside",
    "../../etc/passwd",
    "*",
    "?",
    "[a-z]*",
    "{x}",
    "%",
    "' OR '1'='1",
    "é😀",
]


def present(value: _T | None, what: str) -> _T:
    """``value``, failing the rule if it is ``None``."""
    expect(value is not None, f"{what} returned None")
    assert value is not None
    return value


def about(seconds: float | None, timeout: float, what: str) -> None:
    """Fail unless ``seconds`` (left until a deadline) is about ``timeout``, never more."""
    expect(
        seconds is not None and timeout - 1 < seconds <= timeout + 0.01,
        f"{what} gave {seconds!r}, not about {timeout:g} s (and never more)",
    )


class Lifetime(Kit):
    """Creation, reads, restarts, deadlines, claims and endings."""

    @rule("a session reads back as it was created")
    async def test_a_new_session_reads_back_as_created(self, store: SessionStore) -> None:
        client = '{"ip":"192.0.2.7","ua":"Mozilla/5.0"}'
        key = await login(store, "Luca", '{"cart":[1,2]}', timeout=60, client=client)
        record = present(await store.get(key), "get() of a session just created")
        same(
            (record.key, record.key_hash, record.username, record.data, record.client),
            (key, hash_key(key), "Luca", '{"cart":[1,2]}', client),
            "the record's (key, key_hash, username, data, client)",
        )
        near_now(record.created_at, "created_at")
        expect(
            record.created_at <= record.last_active_at < record.expires_at,
            f"created_at {record.created_at}, last_active_at {record.last_active_at} and "
            f"expires_at {record.expires_at} are out of order",
        )
        about(record.expires_at - record.last_active_at, 60, "expires_at - last_active_at")
        about(record.remaining, 60, "the record's remaining")
        about(await store.check(key), 60, "check()")
        same(
            (record.absolute_expires_at, record.authenticated_at, record.rotated_at),
            (None, None, None),
            "(absolute_expires_at, authenticated_at, rotated_at) of a new session",
        )
        bare = present(await store.get(await login(store, "Luca")), "get()")
        same((bare.data, bare.client), (None, None), "(data, client) of a session given neither")

    @rule("an unknown key names no session, and a call with it changes nothing")
    async def test_an_unknown_key_names_no_session(self, store: SessionStore) -> None:
        live = await login(store, "Luca", '{"n":1}')
        before = await store.get(live)
        for key in [store.new_key("Luca"), new_key(), *ODD_KEYS]:
            found = {
                "check": await store.check(key),
                "touch": await store.touch(key, 60),
                "touch_get": await store.touch_get(key, 60),
                "get": await store.get(key),
                "set_data": await store.set_data(key, '{"n":2}'),
                "update_data": await store.update_data(key, '{"n":2}'),
                "mark_authenticated": await store.mark_authenticated(key),
                "delete": await store.delete(key),
                "delete_user_session": await store.delete_user_session("Luca", hash_key(key)),
                "rotate": await store.rotate(key, store.rotated_key(key)),
                "claim_expired": await store.claim_expired([key]),
            }
            wrong = [
                call for call, answer in found.items() if answer not in (None, False, ([], []))
            ]
            same(wrong, [], f"the calls that found a session for the unknown key {key!r}")
        after = await store.get(live)
        same(after and after.data, before and before.data, "another session's data")
        same(await store.count(), 1, "count()")

    @rule("check and get never restart a session")
    async def test_check_and_get_never_restart_a_session(self, store: SessionStore) -> None:
        key = await login(store)
        first = present(await store.get(key), "get()")
        await asyncio.sleep(0.05)
        left = present(await store.check(key), "check()")
        again = present(await store.get(key), "get()")
        same(again.last_active_at, first.last_active_at, "last_active_at after check() and get()")
        same(again.expires_at, first.expires_at, "expires_at after check() and get()")
        expect(left < first.remaining, f"check() gave {left} s left, 50 ms after {first.remaining}")

    @rule("touch restarts the idle deadline with the timeout it is given")
    async def test_touch_restarts_the_idle_deadline(self, store: SessionStore) -> None:
        key = await login(store, timeout=60)
        first = present(await store.get(key), "get()")
        await asyncio.sleep(0.05)
        about(await store.touch(key, 30), 30, "touch(key, 30)")
        touched = present(await store.get(key), "get() after touch()")
        expect(
            touched.last_active_at > first.last_active_at,
            "last_active_at did not move forward with touch()",
        )
        about(touched.expires_at - touched.last_active_at, 30, "expires_at - last_active_at")
        record = present(await store.touch_get(key, 20), "touch_get() of a live session")
        about(record.remaining, 20, "touch_get(key, 20)'s remaining")
        same((record.key_hash, record.username), (hash_key(key), "Luca"), "touch_get()'s record")
        same(record.created_at, first.created_at, "created_at after restarts")

    @rule("the absolute deadline caps every restart")
    async def test_the_absolute_deadline_caps_every_restart(self, store: SessionStore) -> None:
        key = await login(store, timeout=60, absolute_timeout=20)
        about(await store.check(key), 20, "check() of a session with a 20 s absolute timeout")
        about(await store.touch(key, 60), 20, "touch(key, 60) under a 20 s absolute timeout")
        record = present(await store.get(key), "get()")
        cap = record.absolute_expires_at
        expect(
            cap is not None and abs(cap - (record.created_at + 20)) < 0.01,
            f"absolute_expires_at was {cap!r}, not created_at + 20 s",
        )
        expect(record.reached_absolute_timeout, "expires_at is not the absolute deadline")
        free = await login(store, timeout=60)
        _, pending = await store.claim_expired([key, free])
        same(
            sorted((p.key, p.capped) for p in pending),
            sorted([(key, True), (free, False)]),
            "claim_expired()'s (key, capped) of two live sessions, one at its absolute deadline",
        )

    @rule("a session past its deadline is never reported live")
    async def test_a_session_past_its_deadline_is_never_reported_live(
        self, store: SessionStore
    ) -> None:
        ended = [await login(store, "Luca", '{"n":1}', timeout=SHORT) for _ in range(2)]
        ended.append(await login(store, "Luca", timeout=60, absolute_timeout=SHORT))
        live = await login(store, "Fabio", timeout=60)
        await self._past_deadline()
        for key in ended:
            found = {
                "check": await store.check(key),
                "touch": await store.touch(key, 60),
                "touch_get": await store.touch_get(key, 60),
                "get": await store.get(key),
                "set_data": await store.set_data(key, '{"n":2}'),
                "update_data": await store.update_data(key, '{"n":2}'),
                "mark_authenticated": await store.mark_authenticated(key),
            }
            wrong = [f"{call}() gave {answer!r}" for call, answer in found.items() if answer]
            expect(not wrong, f"for a session past its deadline, {', '.join(wrong)}")
        same(await store.count(), 1, "count()")
        same(await store.usernames(), ["Fabio"], "usernames()")
        same(await store.user_sessions("Luca"), [], "user_sessions() of a user whose are past")
        about(await store.check(live), 60, "check() of the live session")

    @rule("a session past its deadline is ended by a claim only, once")
    async def test_only_a_claim_ends_a_session_past_its_deadline(self, store: SessionStore) -> None:
        key = await login(store, "Luca", '{"n":1}', timeout=SHORT)
        await self._past_deadline()
        ending = {
            "delete": await store.delete(key),
            "delete_user_session": await store.delete_user_session("Luca", hash_key(key)),
            "rotate": await store.rotate(key, store.rotated_key(key)),
            "delete_user": await store.delete_user("Luca"),
            "delete_all": await store.delete_all(),
        }
        wrong = [f"{call}()" for call, answer in ending.items() if answer]
        expect(not wrong, f"{' and '.join(wrong)} ended a session past its deadline")
        for refuse in (True, False):  # past its deadline, it counts for no cap
            spec = NewSession("Luca", 60, max_per_user=2, refuse=refuse)
            evicted = await store.create(store.new_key("Luca"), spec)
            same(evicted, [], "what a login under the cap evicted")
        claimed, pending = await store.claim_expired([key])
        same(([r.key for r in claimed], pending), ([key], []), "claim_expired() of it")
        record = claimed[0]
        same((record.username, record.data), ("Luca", '{"n":1}'), "the claimed record's")
        expect(record.remaining <= 0, f"the claimed record's remaining was {record.remaining} > 0")
        same(await store.claim_expired([key]), ([], []), "a second claim_expired() of it")

    @rule("each session ends once")
    async def test_claims_end_each_session_once(self, store: SessionStore) -> None:
        keys = [await login(store, f"u{i % 3}", timeout=SHORT) for i in range(20)]
        await self._past_deadline()
        results = await asyncio.gather(*(store.claim_expired(keys) for _ in range(3)))
        ended = Counter(r.key_hash for claimed, _ in results for r in claimed)
        twice = max(ended.values(), default=0)
        expect(twice <= 1, f"3 claims of one expired session ended it {twice} times")
        missing = len(set(map(hash_key, keys)) - set(ended))
        expect(missing == 0, f"3 claims of 20 expired sessions left {missing} unclaimed")
        same([p for _, pending in results for p in pending], [], "what the claims found live")

    @rule("a claim leaves a live session alone and tells its deadline")
    async def test_a_claim_leaves_live_sessions_alone(self, store: SessionStore) -> None:
        key = await login(store, timeout=60)
        claimed, pending = await store.claim_expired([key, new_key()])
        same(claimed, [], "what claim_expired() removed of a live session and an unknown key")
        same([(p.key, p.capped) for p in pending], [(key, False)], "the pending (key, capped)")
        about(pending[0].remaining, 60, "the pending remaining")
        about(await store.check(key), 60, "check() after the claim")

    @rule("each session ends once, whichever calls race to end it")
    async def test_racing_endings_end_a_session_once(self, store: SessionStore) -> None:
        for bulk in ("delete_user", "delete_all"):
            key = await login(store, "Luca")
            other = await login(store, "Fabio")
            results = await asyncio.gather(
                store.delete(key),
                store.delete(key),
                store.delete_user_session("Luca", hash_key(key)),
                store.delete_user("Luca") if bulk == "delete_user" else store.delete_all(),
            )
            records: list[SessionRecord] = []
            for result in results:
                if isinstance(result, list):
                    records += result
                elif result is not None:
                    records.append(result)
            times = sum(r.key_hash == hash_key(key) for r in records)
            same(times, 1, f"how many of 4 racing endings (with {bulk}()) ended one session")
            same(await store.get(key), None, "get() of the ended session")
            if bulk == "delete_all":
                others = [r.key_hash for r in records if r.username == "Fabio"]
                same(others, [hash_key(other)], "the other user's sessions delete_all() ended")
            else:
                about(await store.check(other), 60, "check() of another user's session")
                await store.delete(other)

    @rule("an ended session stays ended")
    async def test_an_ended_session_stays_ended(self, store: SessionStore) -> None:
        """A write that races a logout lands before it or finds no session: it never brings the
        session back."""
        for call in ("set_data", "update_data", "mark_authenticated", "touch", "touch_get"):
            keys = [await login(store, "Luca", '{"n":1}') for _ in range(10)]
            await asyncio.gather(
                *(asyncio.gather(_write(store, call, k), store.delete(k)) for k in keys)
            )
            for key in keys:
                same(await store.get(key), None, f"get() of a session {call}() raced delete() on")
                answer = await _write(store, call, key)
                expect(answer in (None, False), f"{call}() after delete() answered {answer!r}")
        same(await store.count(), 0, "count() once every session was deleted")


def _write(store: SessionStore, call: str, key: str) -> Awaitable[object]:
    if call == "set_data":
        return store.set_data(key, '{"n":2}')
    if call == "update_data":
        return store.update_data(key, '{"m":2}')
    if call == "mark_authenticated":
        return store.mark_authenticated(key)
    if call == "touch":
        return store.touch(key, 60)
    return store.touch_get(key, 60)
