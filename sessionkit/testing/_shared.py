"""The rules of keys, listings under load, closing, and the optional capabilities (a store that
places keys, a store shared by processes), called on the store directly."""

from __future__ import annotations

import asyncio
import re
from collections import Counter

import anyio
import pytest

from sessionkit.events import SUSPICIOUS
from sessionkit.keys import hash_key
from sessionkit.models import SessionRecord
from sessionkit.stores.base import SessionStore
from sessionkit.testing._kit import SHORT, Kit, acknowledge, expect, login, rule, same

URL_SAFE = re.compile(r"[A-Za-z0-9_-]{43,256}")


class Shared(Kit):
    """Keys, rotations that race, listings under load, closing, sweeping and settling."""

    @rule("keys are fresh and URL-safe, with at least 256 random bits")
    async def test_new_keys_are_fresh_and_url_safe(self, store: SessionStore) -> None:
        made = [store.new_key(f"user{i % 5}") for i in range(200)]
        made += [store.rotated_key(key) for key in made]
        odd = [key for key in made if not isinstance(key, str) or not URL_SAFE.fullmatch(key)]
        same(odd, [], "the keys new_key() and rotated_key() made that are not 43+ URL-safe chars")
        same(len(set(made)), len(made), "how many different keys 400 calls made")

    @rule("of two rotations of one key, one wins")
    async def test_of_two_rotations_of_one_key_one_wins(self, store: SessionStore) -> None:
        for _ in range(10):
            key = await login(store, "Luca", '{"n":1}')
            first, second = store.rotated_key(key), store.rotated_key(key)
            results = await asyncio.gather(store.rotate(key, first), store.rotate(key, second))
            won = [new for new, got in zip((first, second), results, strict=True) if got]
            same(len(won), 1, "how many of two racing rotations of one key moved the session")
            lost = second if won == [first] else first
            expect(await store.check(won[0]) is not None, "the winning key is not live")
            same(await store.check(lost), None, "check() of the losing rotation's key")
            same(await store.check(key), None, "check() of the rotated key")
        same(await store.count(), 10, "count() after 10 rotation races")
        same(len(await store.user_sessions("Luca")), 10, "how many sessions user_sessions() listed")

    @rule("listings name each live session once, while sessions restart")
    async def test_listings_name_each_session_once_while_they_restart(
        self, store: SessionStore
    ) -> None:
        keys = [await login(store, f"u{i % 4}") for i in range(200)]
        done = False

        async def restart() -> None:
            while not done:
                for key in keys:
                    await store.touch(key, 60)
                await asyncio.sleep(0)  # an in-process store answers without yielding

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(restart)
            try:
                for _ in range(3):
                    await asyncio.sleep(0)
                    names = await store.usernames()
                    same(Counter(names), Counter(f"u{i % 4}" for i in range(200)), "usernames()")
                    same(await store.count(), 200, "count()")
                    listed = [r.key_hash for r in await store.user_sessions("u1")]
                    same(Counter(listed), Counter(map(hash_key, keys[1::4])), "user_sessions()")
            finally:
                done = True

    @rule("a store closed with aclose() works when used again")
    async def test_a_closed_store_works_when_used_again(self, store: SessionStore) -> None:
        key = await login(store, "Luca", '{"n":1}')
        await store.aclose()
        record = await store.get(key)
        same(record and record.data, '{"n":1}', "the data read after aclose()")
        other = await login(store, "Fabio")
        await store.aclose()
        await store.aclose()
        same(await store.count(), 2, "count() after aclose() twice")
        expect(await store.delete(other), "delete() after aclose() found no session")

    @rule("a store whose calls all answered has nothing to settle")
    async def test_nothing_to_settle_after_calls_that_answered(self, store: SessionStore) -> None:
        key = await login(store)
        await store.rotate(key, store.rotated_key(key))
        await store.delete_all()
        same(store.unsettled, False, "unsettled after calls that all answered")
        same(await store.settle(), [], "settle() with nothing unsettled")

    @rule("a shared store's sweep ends each session past its deadline once, and no live one")
    async def test_a_shared_store_sweeps_each_expired_session_once(
        self, store: SessionStore
    ) -> None:
        interval = self._require_shared(store)
        expired = [await login(store, f"u{i % 2}", timeout=SHORT) for i in range(6)]
        live = await login(store, "u0", timeout=60)
        await self._past_deadline()
        # A sweep leaves a session a moment for its own worker's claim: the sweeps go on until
        # each expired session is ended, a claim racing them.
        # Every ending is acknowledged once received, as a manager does once it reported it: a
        # store with an outbox would otherwise deliver it again.
        swept: list[SessionRecord] = []
        claimed, _ = await store.claim_expired(expired[:1])
        await acknowledge(store, claimed)
        with anyio.move_on_after(interval + 5):
            while len(swept) + len(claimed) < len(expired):
                results = await asyncio.gather(store.sweep(), store.sweep())
                found = [r for outcome in results[0] + results[1] for r in outcome.ended]
                await acknowledge(store, found)
                swept += found
                await asyncio.sleep(0.1)
        ended = Counter(r.key_hash for r in [*swept, *claimed])
        same(sorted(ended), sorted(map(hash_key, expired)), "the sessions the sweeps ended")
        twice = max(ended.values())
        expect(twice == 1, f"sweeps and a claim of one expired session ended it {twice} times")
        expect(all(r.remaining <= 0 for r in swept), "a swept record's remaining was > 0")
        same(await store.claim_expired(expired), ([], []), "claim_expired() after the sweeps")
        expect(await store.check(live) is not None, "the sweeps ended a live session")

    @rule(
        "a store with an outbox delivers again, under the same id and with the reason its "
        "call was given, an ending nobody acknowledged, and never one that was"
    )
    async def test_an_unacknowledged_ending_is_delivered_again(self, store: SessionStore) -> None:
        interval = self._require_shared(store)
        after = store.redelivery_after
        if after is None:
            pytest.skip("a store with no outbox (redelivery_after is None)")
        dropped, reported = await login(store, "u0"), await login(store, "u1")
        ended = [await store.delete(dropped, reason=SUSPICIOUS), await store.delete(reported)]
        ids = [None if r is None else r.event_id for r in ended]
        expect(all(ids), f"delete() of a live session returned the event ids {ids}")
        await store.acknowledge([str(ids[1])])  # reported; the other one's worker died
        again: list[tuple[str, str | None, SessionRecord]] = []
        with anyio.move_on_after(after + interval + 5):
            while not again:
                again = [(o.call, o.reason, r) for o in await store.sweep() for r in o.ended]
                await asyncio.sleep(0.1)
        found = [(call, reason, r.key_hash, r.event_id) for call, reason, r in again]
        same(
            found,
            [("delete", SUSPICIOUS, hash_key(dropped), ids[0])],
            "the endings delivered again (call, reason, id)",
        )
        await acknowledge(store, [r for *_, r in again])
