"""The rules of the seed's calls, through a :class:`~sessionkit.SessionManager` on the store:
logins, reads, restarts, endings, rotations and keys that name nothing."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, timedelta
from typing import Any

from sessionkit.events import DELETE_ALL, EVICTED, LOGOUT, LOGOUT_ALL
from sessionkit.exceptions import SessionNotFound
from sessionkit.keys import hash_key, new_key
from sessionkit.manager import SessionManager
from sessionkit.models import SessionDetails
from sessionkit.stores.base import SessionStore
from sessionkit.testing._kit import Events, Kit, expect, refused, rule, same

URL_SAFE = re.compile(r"^[A-Za-z0-9_-]{43,}$")

#: Values that are no key of any session: each must be an unknown key to every call.
BAD_KEYS: list[Any] = [
    None,
    42,
    4.2,
    b"bytes-key",
    "",
    "x" * 10_000,
    "nul\x00inside",
    "../../etc/passwd",
    "unknown-but-well-formed-key-0123456789abcdefghijklmno",
]


async def snapshot(sm: SessionManager, keys: list[str]) -> tuple[Any, ...]:
    """Everything observable about some sessions, to show that a call changed nothing."""
    details = [await sm.get_session_details(k) for k in keys]
    return (await sm.count_sessions(), await sm.get_logged_users(), details)


class Calls(Kit):
    """Logins, reads, restarts, endings and rotations through the manager."""

    @rule("a login makes a live session under a URL-safe key")
    async def test_load_new_session_returns_a_url_safe_key(self, store: SessionStore) -> None:
        async with SessionManager(store=store) as sm:
            key = await sm.load_new_session("Luca")
            expect(isinstance(key, str) and URL_SAFE.match(key), f"the key {key!r} is not URL-safe")
            same(await sm.check_session_status(key), True, "check_session_status() of it")
            same(await sm.get_username_from_session_key(key), "Luca", "its username")
            same(await sm.count_sessions(), 1, "count_sessions()")

    @rule("listings name each live session once, oldest first")
    async def test_logged_users_one_per_session_oldest_first(self, store: SessionStore) -> None:
        async with SessionManager(store=store) as sm:
            names = ["Luca", "Fabio", "Luca", "Gino"]
            keys = [await sm.load_new_session(name) for name in names]
            same(await sm.get_logged_users(), names, "get_logged_users()")
            await sm.rotate_session_key(keys[1])  # a new key, the same age
            same(await sm.get_logged_users(), names, "get_logged_users() after a rotation")

    @rule("session data reads back as it was set, as a copy")
    async def test_session_data_round_trip_is_a_copy(self, store: SessionStore) -> None:
        async with SessionManager(store=store) as sm:
            key = await sm.load_new_session("Luca", {"actions": ["logged in"]})
            same(await sm.get_session_data(key), {"actions": ["logged in"]}, "the data")
            data = {"actions": ["logged in", "read"]}
            same(await sm.set_session_data(key, data), True, "set_session_data()")
            data["actions"].append("changed after set")
            read = await sm.get_session_data(key)
            same(read, {"actions": ["logged in", "read"]}, "the data after set_session_data()")
            read["actions"].clear()
            same(await sm.get_session_data(key), {"actions": ["logged in", "read"]}, "the data")

    @rule("data is None until set")
    async def test_data_is_none_until_set(self, store: SessionStore) -> None:
        async with SessionManager(store=store) as sm:
            key = await sm.load_new_session("Luca")
            same(await sm.get_session_data(key), None, "get_session_data() of a new session")
            same((await sm.get_session_details(key)).data, None, "its details' data")

    @rule("a session's details tell its user, data and times")
    async def test_session_details(self, store: SessionStore) -> None:
        async with SessionManager(store=store, timeout=60) as sm:
            key = await sm.load_new_session("Luca", [1, 2])
            details = await sm.get_session_details(key)
            expect(isinstance(details, SessionDetails), f"{details!r} is no SessionDetails")
            same((details.key, details.username, details.data), (key, "Luca", [1, 2]), "details")
            same(details.created_at.tzinfo, UTC, "created_at's tzinfo")
            expect(
                details.created_at <= details.last_active_at < details.expires_at,
                f"times out of order: {details!r}",
            )
            lifetime = details.expires_at - details.created_at
            expect(
                timedelta(seconds=59) < lifetime <= timedelta(seconds=60.5),
                f"a 60 s session expires {lifetime} after its creation",
            )

    @rule("a restart moves the deadline forward and keeps the creation time")
    async def test_restart_moves_the_deadline(self, store: SessionStore) -> None:
        async with SessionManager(store=store) as sm:
            key = await sm.load_new_session("Luca")
            before = await sm.get_session_details(key)
            same(await sm.restart_session_timer(key), True, "restart_session_timer()")
            after = await sm.get_session_details(key)
            expect(after.expires_at >= before.expires_at, "the deadline moved back")
            expect(after.last_active_at >= before.last_active_at, "last_active_at moved back")
            same(after.created_at, before.created_at, "created_at after a restart")

    @rule("touch_session restarts a session and reads it in one call")
    async def test_touch_session_is_a_restart_then_the_details(self, store: SessionStore) -> None:
        async with SessionManager(store=store) as sm:
            key = await sm.load_new_session("Luca", {"n": 1})
            sm.set_session_timeout(10)
            details = await sm.touch_session(key)
            same(details, await sm.get_session_details(key), "touch_session()'s details")
            same((details.key, details.username, details.data), (key, "Luca", {"n": 1}), "them")
            left = details.expires_at - details.last_active_at
            expect(left <= timedelta(seconds=10.01), f"a 10 s restart left {left}")
            unknown: Any
            for unknown in (new_key(), "", None, 42):
                await refused(sm.touch_session(unknown), SessionNotFound, "touch_session(unknown)")

    @rule("a new timeout applies to a session at its next restart")
    async def test_set_session_timeout_applies_to_restarted_sessions(
        self, store: SessionStore
    ) -> None:
        async with SessionManager(store=store, timeout=3000) as sm:
            key = await sm.load_new_session("Luca")
            sm.set_session_timeout(10)
            unchanged = await sm.get_session_details(key)
            left = unchanged.expires_at - unchanged.created_at
            expect(
                left > timedelta(seconds=2999), f"the 3000 s session has {left} before a restart"
            )
            await sm.restart_session_timer(key)
            restarted = await sm.get_session_details(key)
            left = restarted.expires_at - restarted.last_active_at
            expect(left <= timedelta(seconds=10.01), f"a restart under a 10 s timeout left {left}")

    @rule("a session created with its own timeout keeps it across restarts")
    async def test_own_timeout_survives_restarts(self, store: SessionStore) -> None:
        async with SessionManager(store=store) as sm:
            key = await sm.load_new_session("Luca", timeout=30)
            sm.set_session_timeout(3000)
            await sm.restart_session_timer(key)
            details = await sm.get_session_details(key)
            left = details.expires_at - details.last_active_at
            expect(left <= timedelta(seconds=30.01), f"a restart of a 30 s session left {left}")
            touched = await sm.touch_session(key)
            left = touched.expires_at - touched.last_active_at
            expect(left <= timedelta(seconds=30.01), f"touch_session() of it left {left}")

    @rule("a logout ends the session once, and reports it once")
    async def test_delete_session(self, store: SessionStore) -> None:
        async with SessionManager(store=store) as sm:
            seen = Events(sm, "session_deleted", "notify_client_to_logout")
            key = await sm.load_new_session("Luca", {"cart": 3})
            same(await sm.delete_session(key), True, "delete_session() of a live session")
            same(await sm.delete_session(key), False, "a second delete_session() of it")
            same(await sm.check_session_status(key), False, "check_session_status() after it")
            same(seen.names(), ["session_deleted"], "the events")  # the client logged out
            event = seen.events[0]
            same(
                (event.key, event.username, event.reason, event.data),
                (key, "Luca", LOGOUT, {"cart": 3}),
                "the session_deleted event's (key, username, reason, data)",
            )

    @rule("delete_all_sessions ends every live session once")
    async def test_delete_all_sessions(self, store: SessionStore) -> None:
        async with SessionManager(store=store) as sm:
            seen = Events(sm, "session_deleted", "notify_client_to_logout")
            keys = [await sm.load_new_session(n) for n in ["Luca", "Fabio", "Gino"]]
            same(await sm.delete_all_sessions(), 3, "delete_all_sessions() of 3 sessions")
            same(await sm.count_sessions(), 0, "count_sessions() after it")
            same(await sm.delete_all_sessions(), 0, "a second delete_all_sessions()")
            same(seen.names(), ["session_deleted", "notify_client_to_logout"] * 3, "the events")
            same({e.key for e in seen.events}, set(keys), "the keys of the events")
            same({e.reason for e in seen.events}, {DELETE_ALL}, "their reasons")

    @rule("a rotated key stops working")
    async def test_rotate_session_key(self, store: SessionStore) -> None:
        async with SessionManager(store=store) as sm:
            seen = Events(sm, "session_rotated", "session_deleted")
            old = await sm.load_new_session("Luca", {"role": "user"})
            before = await sm.get_session_details(old)
            new = await sm.rotate_session_key(old)
            expect(new != old and URL_SAFE.match(new), "the new key is the old one or not URL-safe")
            same(await sm.check_session_status(old), False, "check_session_status(old key)")
            await refused(sm.rotate_session_key(old), SessionNotFound, "rotating the old key")
            after = await sm.get_session_details(new)
            same(
                (after.username, after.data, after.created_at),
                ("Luca", {"role": "user"}, before.created_at),
                "the rotated session's (username, data, created_at)",
            )
            same(await sm.count_sessions(), 1, "count_sessions()")
            same([(e.name, e.key) for e in seen.events], [("session_rotated", new)], "events")

    @rule("a user's sessions are listed oldest first, and end together")
    async def test_user_sessions_and_logout_everywhere(self, store: SessionStore) -> None:
        async with SessionManager(store=store) as sm:
            seen = Events(sm, "session_deleted", "notify_client_to_logout")
            first = await sm.load_new_session("Luca")
            other = await sm.load_new_session("Fabio")
            second = await sm.load_new_session("Luca", {"device": "phone"})
            sessions = await sm.get_user_sessions("Luca")
            same([s.id for s in sessions], [hash_key(first), hash_key(second)], "the ids listed")
            same(sessions[1].data, {"device": "phone"}, "the second session's data")
            same(await sm.get_user_sessions("nobody"), [], "the sessions of an unknown user")
            same(await sm.delete_user_sessions("Luca"), 2, "delete_user_sessions() of 2")
            same(await sm.delete_user_sessions("Luca"), 0, "a second delete_user_sessions()")
            live = [await sm.check_session_status(k) for k in (first, second, other)]
            same(live, [False, False, True], "which sessions are live after it")
            same({e.reason for e in seen.events}, {LOGOUT_ALL}, "the events' reasons")
            same(seen.names().count("notify_client_to_logout"), 2, "how many logouts were pushed")

    @rule("a login over the per-user cap ends the user's oldest session")
    async def test_max_sessions_per_user_evicts_the_oldest(self, store: SessionStore) -> None:
        async with SessionManager(store=store, max_sessions_per_user=2) as sm:
            seen = Events(sm, "session_deleted", "notify_client_to_logout")
            first = await sm.load_new_session("Luca")
            second = await sm.load_new_session("Luca")
            await sm.load_new_session("Fabio")
            third = await sm.load_new_session("Luca")
            live = [await sm.check_session_status(k) for k in (first, second, third)]
            same(
                live,
                [False, True, True],
                "which of the user's 3 sessions are live under a cap of 2",
            )
            same(await sm.count_sessions(), 3, "count_sessions()")
            same(
                [(e.name, e.key, e.reason) for e in seen.events],
                [
                    ("session_deleted", first, EVICTED),
                    ("notify_client_to_logout", first, EVICTED),
                ],
                "the events",
            )

    @rule("a key that names no session is an unknown key to every call, and changes nothing")
    async def test_bad_keys_are_unknown_keys_and_change_nothing(self, store: SessionStore) -> None:
        async with SessionManager(store=store) as sm:
            keys = [await sm.load_new_session("Luca", {"n": 1}), await sm.load_new_session("Fabio")]
            before = await snapshot(sm, keys)
            for bad in BAD_KEYS:
                name = repr(bad)[:40]
                same(await sm.check_session_status(bad), False, f"check_session_status({name})")
                same(await sm.get_username_from_session_key(bad), None, f"the username of {name}")
                same(await sm.delete_session(bad), False, f"delete_session({name})")
                calls: list[tuple[Callable[..., Awaitable[object]], tuple[Any, ...]]] = [
                    (sm.get_session_data, ()),
                    (sm.set_session_data, ({"n": 2},)),
                    (sm.restart_session_timer, ()),
                    (sm.get_session_details, ()),
                    (sm.rotate_session_key, ()),
                    (sm.update_session_data, ({"n": 2},)),
                    (sm.mark_authenticated, ()),
                ]
                for call, args in calls:
                    what = call.__name__
                    raised = await refused(call(bad, *args), SessionNotFound, f"{what}({name})")
                    if isinstance(bad, str) and bad:
                        expect(bad not in str(raised), f"{what}()'s error message quotes the key")
                await sm.send_logout_message(bad)
            same(await snapshot(sm, keys), before, "the live sessions after calls with bad keys")
