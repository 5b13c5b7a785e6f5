"""The rules beyond the seed, through a :class:`~sessionkit.SessionManager` on the store:
devices and the per-user cap, atomic data updates, re-authentication and the renewal's grace."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from sessionkit.events import LOGOUT
from sessionkit.exceptions import SessionLimitReached, SessionNotFound
from sessionkit.keys import hash_key, new_key
from sessionkit.manager import SessionManager
from sessionkit.models import ClientInfo
from sessionkit.stores.base import SessionStore
from sessionkit.testing._calls import snapshot
from sessionkit.testing._kit import Events, Kit, expect, refused, rule, same

PHONE = ClientInfo(ip="192.0.2.7", user_agent="Mozilla/5.0 (Android 14; Mobile)")
LAPTOP = ClientInfo(ip="2001:db8::1", user_agent="Mozilla/5.0 (X11; Linux x86_64)")

# Values a JSON merge done by decoding could alter: cjson (Redis's Lua) turns integers past
# 2**53 into floats and empty lists into {}; escapes, unicode and brackets inside strings trip
# a careless scanner.
FAITHFUL: dict[str, Any] = {
    "big": 2**53 + 1,
    "huge": 2**64 + 7,
    "negative": -(2**63) - 1,
    "float": 0.1,
    "tiny": 5e-324,
    "empty_list": [],
    "empty_dict": {},
    "nested": [[1, [2, []]], {"a": {"b": [{}]}}],
    "unicode": "é 😀 \u2028 \x00 ü",
    "tricky": 'a "quoted" \\ back}slash, {brace] [bracket:colon',
    'é 😀 "key" \\': "a key that needs escapes",
    "": "an empty key",
    "true": True,
    "null": None,
}

GRACE = 0.8  # seconds: the renewal's grace in these rules


async def renewed(sm: SessionManager, key: str, grace: float) -> str:
    """Renew ``key`` at the store, as ``renew_if_due`` does, with ``grace``."""
    fresh = sm.store.rotated_key(key)
    record = await sm.store.rotate(key, fresh, grace=grace)
    expect(record is not None, "rotate() of a live session returned None")
    assert record is not None
    same(record.key_hash, hash_key(fresh), "the key_hash of the record rotate() returned")
    expect(
        record.rotated_at is not None and record.rotated_at >= record.created_at,
        f"rotated_at was {record.rotated_at!r} after a rotation",
    )
    return fresh


class Devices(Kit):
    """Devices, the per-user cap, data updates, re-authentication and renewal."""

    @rule("a session's details carry its id and the client recorded at login")
    async def test_details_carry_the_id_and_the_client(self, store: SessionStore) -> None:
        async with SessionManager(store=store) as sm:
            key = await sm.load_new_session("Luca", {"n": 1}, client=PHONE)
            bare = await sm.load_new_session("Luca")
            details = await sm.get_session_details(key)
            same((details.key, details.id, details.client), (key, hash_key(key), PHONE), "details")
            same((await sm.get_session_details(bare)).client, None, "a bare login's client")
            touched = await sm.touch_session(key)
            same((touched.id, touched.client), (hash_key(key), PHONE), "touch_session()'s")

    @rule("listings give ids and clients, never keys")
    async def test_listings_give_ids_and_clients_never_keys(self, store: SessionStore) -> None:
        async with SessionManager(store=store) as sm:
            first = await sm.load_new_session("Luca", client=PHONE)
            second = await sm.load_new_session("Luca", client=LAPTOP)
            await sm.load_new_session("Fabio", client=LAPTOP)
            listed = await sm.get_user_sessions("Luca")
            same(
                [(d.key, d.id, d.client) for d in listed],
                [(None, hash_key(first), PHONE), (None, hash_key(second), LAPTOP)],
                "the listing's (key, id, client)",
            )
            for details in listed:
                expect(first not in repr(details) and second not in repr(details), "a key shown")

    @rule("a rotated session keeps its client, under a new id")
    async def test_a_rotated_session_keeps_its_client_under_a_new_id(
        self, store: SessionStore
    ) -> None:
        async with SessionManager(store=store) as sm:
            old = await sm.load_new_session("Luca", client=PHONE)
            new = await sm.rotate_session_key(old)
            listed = [(d.id, d.client) for d in await sm.get_user_sessions("Luca")]
            same(listed, [(hash_key(new), PHONE)], "the listing's (id, client)")

    @rule("delete_user_session ends that one session of that user, once")
    async def test_delete_user_session_ends_that_one_session(self, store: SessionStore) -> None:
        async with SessionManager(store=store) as sm:
            seen = Events(sm, "session_deleted", "notify_client_to_logout")
            phone = await sm.load_new_session("Luca", client=PHONE)
            laptop = await sm.load_new_session("Luca", client=LAPTOP)
            fabio = await sm.load_new_session("Fabio")
            same(await sm.delete_user_session("Luca", hash_key(phone)), True, "ending the phone")
            live = [await sm.check_session_status(k) for k in (phone, laptop, fabio)]
            same(live, [False, True, True], "which sessions are live")
            listed = [d.id for d in await sm.get_user_sessions("Luca")]
            same(listed, [hash_key(laptop)], "the user's sessions")
            same(
                [(e.name, e.key_hash, e.reason) for e in seen.events],
                [
                    ("session_deleted", hash_key(phone), LOGOUT),
                    ("notify_client_to_logout", hash_key(phone), LOGOUT),
                ],
                "the events",
            )
            # Once only; and never another user's session, whatever id is sent.
            for user, key in (("Luca", phone), ("Luca", fabio), ("Nobody", laptop)):
                ended = await sm.delete_user_session(user, hash_key(key))
                same(ended, False, f"delete_user_session({user!r}, an id not theirs or ended)")
            live = [await sm.check_session_status(k) for k in (laptop, fabio)]
            same(live, [True, True], "whether the others are live")
            same(len(seen.events), 2, "how many events")

    @rule("a malformed id names no session")
    async def test_a_malformed_id_is_no_such_session(self, store: SessionStore) -> None:
        async with SessionManager(store=store) as sm:
            keys = [await sm.load_new_session("Luca", client=PHONE)]
            before = await snapshot(sm, keys)
            k = hash_key("k")
            for session_id in ["", "x" * 64, "ABC", k.upper(), k + "0", "../../", "*", "?"]:
                ended = await sm.delete_user_session("Luca", session_id)
                same(ended, False, f"delete_user_session('Luca', {session_id!r})")
            same(await snapshot(sm, keys), before, "the sessions after it")

    @rule("create with refuse at the cap changes nothing")
    async def test_refuse_at_the_limit_changes_nothing(self, store: SessionStore) -> None:
        async with SessionManager(
            store=store, max_sessions_per_user=2, on_session_limit="refuse"
        ) as sm:
            seen = Events(sm, "session_created", "session_deleted", "notify_client_to_logout")
            first = await sm.load_new_session("Luca", client=PHONE)
            second = await sm.load_new_session("Luca", client=LAPTOP)
            other = await sm.load_new_session("Fabio")  # another user's count is their own
            keys = [first, second, other]
            before = await snapshot(sm, keys)
            raised = await refused(
                sm.load_new_session("Luca"), SessionLimitReached, "a login at the cap"
            )
            expect("Luca" in str(raised), f"the error {raised} does not name the user")
            expect(not any(key in str(raised) for key in keys), "the error message shows a key")
            same(await snapshot(sm, keys), before, "the sessions after the refused login")
            same(seen.names(), ["session_created"] * 3, "the events")
            # Once a device is ended, the login goes through, evicting nobody.
            expect(await sm.delete_user_session("Luca", hash_key(first)), "ending a device failed")
            third = await sm.load_new_session("Luca")
            listed = [d.id for d in await sm.get_user_sessions("Luca")]
            same(listed, [hash_key(second), hash_key(third)], "the user's sessions")

    @rule("update_data merges at the top level")
    async def test_a_merge_replaces_and_adds_top_level_fields(self, store: SessionStore) -> None:
        async with SessionManager(store=store) as sm:
            key = await sm.load_new_session("Luca", {"a": 1, "nested": {"x": 1}, "z": "kept"})
            merged = await sm.update_session_data(key, {"nested": {"y": 2}, "b": [1]})
            expected = {"a": 1, "nested": {"y": 2}, "z": "kept", "b": [1]}
            same(merged, expected, "the merged data")
            same(list(merged), ["a", "nested", "z", "b"], "its members' order")
            same(await sm.get_session_data(key), merged, "the data read after the merge")
            merged["a"] = "changed after"  # the result is a copy
            same((await sm.get_session_data(key))["a"], 1, "the data after changing the result")

    @rule("update_data counts data never set as an empty object")
    async def test_data_never_set_counts_as_an_empty_dict(self, store: SessionStore) -> None:
        async with SessionManager(store=store) as sm:
            key = await sm.load_new_session("Luca")
            theme = {"theme": "dark"}
            same(await sm.update_session_data(key, theme), theme, "a merge into no data")
            same(await sm.update_session_data(key, {}), theme, "a merge of {}")
            other = await sm.load_new_session("Fabio", {})
            same(await sm.update_session_data(other, {}), {}, "a merge of {} into {}")

    @rule("update_data keeps every value exactly as written")
    async def test_values_come_back_exactly_as_written(self, store: SessionStore) -> None:
        async with SessionManager(store=store) as sm:
            key = await sm.load_new_session("Luca", {"first": FAITHFUL})
            merged = await sm.update_session_data(key, FAITHFUL)
            again = await sm.update_session_data(key, {"big": FAITHFUL["big"], "extra": FAITHFUL})
            for what, result in (("merged", merged), ("read", await sm.get_session_data(key))):
                same(result["first"], FAITHFUL, f"the data {what}, first")
                same({k: result[k] for k in FAITHFUL}, FAITHFUL, f"the data {what}")
            same(again["extra"], FAITHFUL, "the data merged again")
            stored = await sm.get_session_data(key)
            # Same values and same types: an int stays an int, [] stays a list.
            same(
                json.dumps(stored, sort_keys=True),
                json.dumps({"first": FAITHFUL, **FAITHFUL, "extra": FAITHFUL}, sort_keys=True),
                "the data, as JSON",
            )

    @rule("two updates of different fields at once both land")
    async def test_a_hundred_concurrent_updates_of_different_fields_all_land(
        self, store: SessionStore
    ) -> None:
        async with SessionManager(store=store) as sm:
            key = await sm.load_new_session("Luca", {"start": True})
            results = await asyncio.gather(
                *(sm.update_session_data(key, {f"field{i}": [i, {"n": i}]}) for i in range(100))
            )
            expected = {"start": True, **{f"field{i}": [i, {"n": i}] for i in range(100)}}
            lost = set(expected) - set(await sm.get_session_data(key))
            same(sorted(lost), [], "the fields of 100 concurrent updates lost")
            # Each call saw its own field, and the last of them saw every field.
            own = [i for i, r in enumerate(results) if r.get(f"field{i}") != [i, {"n": i}]]
            same(own, [], "the updates whose result lacked their own field")
            same(max(len(r) for r in results), 101, "the most fields one result held")

    @rule("update_data of data that is not an object is a TypeError that changes nothing")
    async def test_data_that_is_not_a_dict_is_a_type_error_and_stays(
        self, store: SessionStore
    ) -> None:
        async with SessionManager(store=store) as sm:
            for data in ([1, 2], "text", 3, True):
                key = await sm.load_new_session("Luca", data)
                raised = await refused(
                    sm.update_session_data(key, {"a": 1}), TypeError, f"a merge into {data!r}"
                )
                expect(
                    "not a dict" in str(raised), f"the TypeError says {raised}, not 'not a dict'"
                )
                same(await sm.get_session_data(key), data, "the data after the refused merge")

    @rule("an ended session is not found by an update, and stays ended")
    async def test_an_ended_session_is_not_found_and_stays_ended(self, store: SessionStore) -> None:
        async with SessionManager(store=store) as sm:
            key = await sm.load_new_session("Luca", {"a": 1})
            same(await sm.delete_session(key), True, "delete_session()")
            for dead in (key, new_key()):
                await refused(
                    sm.update_session_data(dead, {"b": 2}), SessionNotFound, "an update of it"
                )
            same(await sm.check_session_status(key), False, "check_session_status() after")
            same(await sm.count_sessions(), 0, "count_sessions()")

    @rule("authenticated_at is the login until marked, then the latest mark")
    async def test_authenticated_at_is_the_login_until_marked(self, store: SessionStore) -> None:
        async with SessionManager(store=store) as sm:
            key = await sm.load_new_session("Luca")
            details = await sm.get_session_details(key)
            same(details.authenticated_at, details.created_at, "authenticated_at of a new session")
            await asyncio.sleep(0.05)
            same(await sm.mark_authenticated(key), True, "mark_authenticated()")
            marked = (await sm.get_session_details(key)).authenticated_at
            expect(
                marked is not None and details.created_at < marked,
                f"authenticated_at was {marked} after mark_authenticated(), not later than "
                f"the login at {details.created_at}",
            )
            same((await sm.get_session_details(key)).created_at, details.created_at, "created_at")
            # Carried by every read: the guards' touch, a listing, and across a rotation.
            same((await sm.touch_session(key)).authenticated_at, marked, "touch_session()'s")
            listed = [d.authenticated_at for d in await sm.get_user_sessions("Luca")]
            same(listed, [marked], "the listing's")
            rotated = await sm.rotate_session_key(key)
            after = (await sm.get_session_details(rotated)).authenticated_at
            same(after, marked, "authenticated_at after a rotation")

    @rule("mark_authenticated on a dead key is not found and revives nothing")
    async def test_mark_authenticated_on_a_dead_key_is_not_found_and_revives_nothing(
        self, store: SessionStore
    ) -> None:
        async with SessionManager(store=store) as sm:
            key = await sm.load_new_session("Luca")
            await sm.delete_session(key)
            for dead in (key, new_key()):
                await refused(sm.mark_authenticated(dead), SessionNotFound, "marking it")
            same(await sm.check_session_status(key), False, "check_session_status()")
            same(await sm.count_sessions(), 0, "count_sessions()")

    @rule("the old key works for the grace of a renewal, on the session under its new key")
    async def test_the_old_key_works_during_the_grace_and_acts_on_the_session(
        self, store: SessionStore
    ) -> None:
        async with SessionManager(store=store) as sm:
            key = await sm.load_new_session("Luca", {"a": 1})
            before = await sm.get_session_details(key)
            same(before.key_created_at, before.created_at, "key_created_at of a new session")
            fresh = await renewed(sm, key, grace=GRACE)
            # The old key names the session as it is now: every call on it acts on it.
            same(await sm.check_session_status(key), True, "check_session_status(old key)")
            same(await sm.restart_session_timer(key), True, "restart_session_timer(old key)")
            touched = await sm.touch_session(key)
            same(touched.id, hash_key(fresh), "touch_session(old key)'s id")
            expect(
                touched.key_created_at is not None and touched.key_created_at > before.created_at,
                "key_created_at did not move with the renewal",
            )
            merged = await sm.update_session_data(key, {"b": 2})
            same(merged, {"a": 1, "b": 2}, "update_session_data(old key)")
            same(await sm.get_session_data(fresh), merged, "the data under the new key")
            same(await sm.mark_authenticated(key), True, "mark_authenticated(old key)")
            same(await sm.count_sessions(), 1, "count_sessions()")
            # A key replaced is never rotated again through its alias.
            await refused(sm.rotate_session_key(key), SessionNotFound, "rotating the old key")
            await asyncio.sleep(GRACE + 0.2)
            same(await sm.check_session_status(key), False, "the old key after the grace")
            await refused(sm.touch_session(key), SessionNotFound, "touch_session(old key)")
            same(await sm.check_session_status(fresh), True, "the new key after the grace")

    @rule("a logout with either key of a renewal ends the session, once")
    async def test_a_logout_with_either_key_ends_the_session_and_its_alias(
        self, store: SessionStore
    ) -> None:
        async with SessionManager(store=store) as sm:
            seen = Events(sm, "session_deleted")
            for by in ("old", "new"):
                key = await sm.load_new_session("Luca")
                fresh = await renewed(sm, key, grace=30)
                ended = await sm.delete_session(key if by == "old" else fresh)
                same(ended, True, f"delete_session() with the {by} key")
                same(
                    [(e.key_hash, e.reason) for e in seen.events[-1:]],
                    [(hash_key(fresh), LOGOUT)],
                    "the session_deleted event's (key_hash, reason)",
                )
                for either in (key, fresh):
                    same(await sm.check_session_status(either), False, "a key after the logout")
                    same(await sm.delete_session(either), False, "delete_session() again")
                    calls: list[tuple[Callable[..., Awaitable[object]], tuple[Any, ...]]] = [
                        (sm.touch_session, ()),
                        (sm.update_session_data, ({"back": True},)),
                        (sm.set_session_data, ({"back": True},)),
                        (sm.mark_authenticated, ()),
                    ]
                    for call, args in calls:
                        what = f"{call.__name__}() with a key of it"
                        await refused(call(either, *args), SessionNotFound, what)
            same(await sm.count_sessions(), 0, "count_sessions()")
            same(len(seen.events), 2, "how many session_deleted events two logouts fired")

    @rule("a rotation ends the grace of the key before")
    async def test_a_rotation_ends_the_grace_of_the_key_before(self, store: SessionStore) -> None:
        async with SessionManager(store=store) as sm:
            key = await sm.load_new_session("Luca")
            fresh = await renewed(sm, key, grace=30)
            newest = await sm.rotate_session_key(fresh)  # a privilege change: no grace
            live = [await sm.check_session_status(k) for k in (key, fresh, newest)]
            same(live, [False, False, True], "which keys work after a rotation without grace")
            again = await renewed(sm, newest, grace=30)
            live = [await sm.check_session_status(k) for k in (key, newest, again)]
            same(live, [False, True, True], "which keys work after another renewal")
