"""The calls of docs/guides/quickstart.md ("From users-session-manager") and the rules of
docs/contract.md, on every store kind (the store-contract suite)."""

from __future__ import annotations

import gc
import re
from datetime import UTC, timedelta
from typing import Any

import pytest

from sessionkit import (
    MIN_SESSION_TIMEOUT,
    SessionDetails,
    SessionManager,
    SessionNotFound,
    SessionRejected,
)
from sessionkit.keys import hash_key, new_key
from tests.conftest import BAD_KEYS
from tests.recorder import Recorder

URL_SAFE = re.compile(r"^[A-Za-z0-9_-]{43,}$")


def ids(*keys: str) -> list[str]:
    """The public ids of sessions, as listings give them."""
    return [hash_key(key) for key in keys]


async def snapshot(sm: SessionManager, keys: list[str]) -> tuple[Any, ...]:
    """Everything observable about some sessions, to show that bad input changed nothing."""
    details = [await sm.get_session_details(k) for k in keys]
    return (await sm.count_sessions(), await sm.get_logged_users(), details)


# -- creation and timeouts -------------------------------------------------------------------


async def test_load_new_session_returns_a_url_safe_key(sm: SessionManager) -> None:
    key = await sm.load_new_session("Luca")
    assert isinstance(key, str)
    assert URL_SAFE.match(key)
    assert await sm.check_session_status(key)
    assert await sm.get_username_from_session_key(key) == "Luca"
    assert await sm.count_sessions() == 1


@pytest.mark.parametrize(
    ("username", "error"),
    [
        (None, TypeError),
        (42, TypeError),
        (b"Luca", TypeError),
        (["Luca"], TypeError),
        ("", ValueError),
        ("\ud800", ValueError),  # a lone surrogate: what json.loads('"\\ud800"') returns
        ("Lu\udfffca", ValueError),
    ],
)
async def test_load_new_session_rejects_bad_usernames(
    sm: SessionManager, username: Any, error: type[Exception]
) -> None:
    other = await sm.load_new_session("Fabio")
    before = await snapshot(sm, [other])
    with pytest.raises(error):
        await sm.load_new_session(username)
    assert await snapshot(sm, [other]) == before


@pytest.mark.parametrize("data", [object(), {"f": float("nan")}, {1, 2}, b"raw"])
async def test_load_new_session_rejects_data_that_is_not_json(
    sm: SessionManager, data: Any
) -> None:
    with pytest.raises(TypeError, match="JSON"):
        await sm.load_new_session("Luca", data)
    assert await sm.count_sessions() == 0


async def test_circular_data_is_a_type_error(sm: SessionManager) -> None:
    data: dict[str, Any] = {}
    data["self"] = data
    with pytest.raises(TypeError):
        await sm.load_new_session("Luca", data)


def test_session_timeout_setting() -> None:
    sm = SessionManager()
    assert sm.get_session_timeout() == 3000
    assert sm.set_session_timeout(6) is True
    assert sm.get_session_timeout() == 6.0
    assert isinstance(sm.get_session_timeout(), float)
    assert sm.set_session_timeout(MIN_SESSION_TIMEOUT) is True


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("10", TypeError),
        (None, TypeError),
        (True, TypeError),
        ([10], TypeError),
        (1, ValueError),
        (1.999, ValueError),
        (-5, ValueError),
        (float("nan"), ValueError),
        (float("inf"), ValueError),
    ],
)
def test_set_session_timeout_rejects_bad_values(value: Any, error: type[Exception]) -> None:
    sm = SessionManager(timeout=60)
    with pytest.raises(error):
        sm.set_session_timeout(value)
    assert sm.get_session_timeout() == 60


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"timeout": "60"}, TypeError),
        ({"timeout": 0}, ValueError),
        ({"absolute_timeout": float("inf")}, ValueError),
        ({"max_sessions_per_user": 0}, ValueError),
        ({"max_sessions_per_user": 1.5}, TypeError),
        ({"max_sessions_per_user": True}, TypeError),
        ({"warn_before": -1}, ValueError),
        ({"timeout": 4, "warn_before": 10}, ValueError),  # would warn at login
        ({"timeout": 4, "warn_before": 4}, ValueError),
        ({"store": {}}, TypeError),
    ],
)
def test_constructor_rejects_bad_options(options: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        SessionManager(**options)


def test_a_timeout_set_later_must_still_outlast_warn_before() -> None:
    sm = SessionManager(timeout=60, warn_before=10)
    for seconds in (10, 5):
        with pytest.raises(ValueError, match="warn_before"):
            sm.set_session_timeout(seconds)
    assert sm.get_session_timeout() == 60
    assert sm.set_session_timeout(10.5)
    assert sm.get_session_timeout() == 10.5


async def test_a_session_s_own_timeout_must_outlast_warn_before() -> None:
    async with SessionManager(timeout=60, warn_before=10) as sm:
        with pytest.raises(ValueError, match="warn_before"):
            await sm.load_new_session("Luca", timeout=10)
        assert await sm.count_sessions() == 0
        key = await sm.load_new_session("Luca", timeout=11)
        assert await sm.check_session_status(key)


async def test_per_session_timeout_is_validated(sm: SessionManager) -> None:
    with pytest.raises(ValueError):
        await sm.load_new_session("Luca", timeout=1)
    with pytest.raises(TypeError):
        await sm.load_new_session("Luca", timeout="5")  # type: ignore[arg-type]
    assert await sm.count_sessions() == 0


# -- reading and writing ---------------------------------------------------------------------


async def test_logged_users_one_per_session_oldest_first(sm: SessionManager) -> None:
    keys = [await sm.load_new_session(name) for name in ["Luca", "Fabio", "Luca", "Gino"]]
    assert await sm.get_logged_users() == ["Luca", "Fabio", "Luca", "Gino"]
    await sm.rotate_session_key(keys[1])  # a new key, the same age
    assert await sm.get_logged_users() == ["Luca", "Fabio", "Luca", "Gino"]


async def test_session_data_round_trip_is_a_copy(sm: SessionManager) -> None:
    key = await sm.load_new_session("Luca", {"actions": ["logged in"]})
    assert await sm.get_session_data(key) == {"actions": ["logged in"]}
    data = {"actions": ["logged in", "read"]}
    assert await sm.set_session_data(key, data) is True
    data["actions"].append("changed after set")
    read = await sm.get_session_data(key)
    assert read == {"actions": ["logged in", "read"]}
    read["actions"].clear()
    assert await sm.get_session_data(key) == {"actions": ["logged in", "read"]}


async def test_data_is_none_until_set(sm: SessionManager) -> None:
    key = await sm.load_new_session("Luca")
    assert await sm.get_session_data(key) is None
    assert (await sm.get_session_details(key)).data is None


async def test_set_session_data_rejects_non_json_and_keeps_old_data(sm: SessionManager) -> None:
    key = await sm.load_new_session("Luca", {"a": 1})
    with pytest.raises(TypeError):
        await sm.set_session_data(key, {"bad": object()})
    assert await sm.get_session_data(key) == {"a": 1}


async def test_session_details(sm: SessionManager) -> None:
    sm.set_session_timeout(60)
    key = await sm.load_new_session("Luca", [1, 2])
    details = await sm.get_session_details(key)
    assert isinstance(details, SessionDetails)
    assert details.key == key
    assert details.username == "Luca"
    assert details.data == [1, 2]
    assert details.created_at.tzinfo is UTC
    assert details.created_at <= details.last_active_at < details.expires_at
    lifetime = details.expires_at - details.created_at
    assert timedelta(seconds=59) < lifetime <= timedelta(seconds=60.5)
    with pytest.raises(AttributeError):
        details.username = "Fabio"  # type: ignore[misc]


async def test_restart_moves_the_deadline(sm: SessionManager) -> None:
    key = await sm.load_new_session("Luca")
    before = await sm.get_session_details(key)
    assert await sm.restart_session_timer(key) is True
    after = await sm.get_session_details(key)
    assert after.expires_at >= before.expires_at
    assert after.last_active_at >= before.last_active_at
    assert after.created_at == before.created_at


async def test_touch_session_is_a_restart_then_the_details(sm: SessionManager) -> None:
    # What sessionkit.starlette does per request, in one store call.
    key = await sm.load_new_session("Luca", {"n": 1})
    sm.set_session_timeout(10)
    details = await sm.touch_session(key)
    assert details == await sm.get_session_details(key)
    assert (details.key, details.username, details.data) == (key, "Luca", {"n": 1})
    assert details.expires_at - details.last_active_at <= timedelta(seconds=10.01)
    for unknown in (new_key(), "", None, 42):
        with pytest.raises(SessionNotFound):
            await sm.touch_session(unknown)  # type: ignore[arg-type]


async def test_set_session_timeout_applies_to_restarted_sessions(sm: SessionManager) -> None:
    sm.set_session_timeout(3000)
    key = await sm.load_new_session("Luca")
    sm.set_session_timeout(10)
    unchanged = await sm.get_session_details(key)
    assert unchanged.expires_at - unchanged.created_at > timedelta(seconds=2999)
    await sm.restart_session_timer(key)
    restarted = await sm.get_session_details(key)
    assert restarted.expires_at - restarted.last_active_at <= timedelta(seconds=10.01)


async def test_own_timeout_survives_restarts(sm: SessionManager) -> None:
    key = await sm.load_new_session("Luca", timeout=30)
    sm.set_session_timeout(3000)
    await sm.restart_session_timer(key)
    details = await sm.get_session_details(key)
    assert details.expires_at - details.last_active_at <= timedelta(seconds=30.01)


# -- ending sessions -------------------------------------------------------------------------


async def test_delete_session(sm: SessionManager) -> None:
    seen = Recorder(sm, "session_deleted", "notify_client_to_logout")
    key = await sm.load_new_session("Luca", {"cart": 3})
    assert await sm.delete_session(key) is True
    assert await sm.delete_session(key) is False
    assert not await sm.check_session_status(key)
    assert seen.names() == ["session_deleted"]  # the client logged itself out: no push
    event = seen.events[0]
    assert (event.key, event.username, event.reason, event.data) == (
        key,
        "Luca",
        "logout",
        {"cart": 3},
    )


async def test_delete_all_sessions(sm: SessionManager) -> None:
    seen = Recorder(sm, "session_deleted", "notify_client_to_logout")
    keys = [await sm.load_new_session(n) for n in ["Luca", "Fabio", "Gino"]]
    assert await sm.delete_all_sessions() == 3
    assert await sm.count_sessions() == 0
    assert await sm.delete_all_sessions() == 0
    assert seen.names() == ["session_deleted", "notify_client_to_logout"] * 3
    assert {e.key for e in seen.events} == set(keys)
    assert {e.reason for e in seen.events} == {"delete_all"}


async def test_every_event_has_an_id_of_its_own(sm: SessionManager) -> None:
    """docs: the contract, "A worker that dies loses nothing": ``SessionEvent.id`` names each
    occurrence (the same on every delivery of one ending, which tests/test_outbox.py checks on
    Redis): every event here is a different occurrence, so every id differs."""
    seen = Recorder(sm)
    keys = [await sm.load_new_session(n) for n in ["Luca", "Fabio"]]
    await sm.rotate_session_key(keys[0])
    await sm.delete_all_sessions()
    ids = [e.id for e in seen.events]
    assert seen.names() == [
        "session_created",
        "session_created",
        "session_rotated",
        *["session_deleted", "notify_client_to_logout"] * 2,
    ]
    assert all(isinstance(i, str) and i for i in ids)
    assert len(set(ids)) == len(ids)


async def test_send_logout_message_without_socket_server(sm: SessionManager) -> None:
    seen = Recorder(sm, "notify_client_to_logout")
    key = await sm.load_new_session("Luca")
    assert sm.get_socket_reference() is None
    assert await sm.send_logout_message(key) is False
    assert await sm.check_session_status(key)  # the session itself lives on
    assert [(e.key, e.username, e.reason) for e in seen.events] == [(key, "Luca", "logout")]


def test_init_socket_reference_rejects_other_objects() -> None:
    sm = SessionManager()
    with pytest.raises(TypeError):
        sm.init_socket_reference(object())
    assert sm.get_socket_reference() is None


async def test_check_session_status_rejects_with_an_error_event(sm: SessionManager) -> None:
    seen = Recorder(sm, "error")
    key = await sm.load_new_session("Luca")
    assert await sm.check_session_status(key) is True
    assert seen.events == []
    assert await sm.check_session_status("no-such-key") is False
    [event] = seen.events
    assert isinstance(event.error, SessionRejected)
    assert event.key == "no-such-key"
    assert len(event.key_hash) == 64


async def test_rotate_session_key(sm: SessionManager) -> None:
    seen = Recorder(sm, "session_rotated", "session_deleted")
    old = await sm.load_new_session("Luca", {"role": "user"})
    before = await sm.get_session_details(old)
    new = await sm.rotate_session_key(old)
    assert new != old
    assert URL_SAFE.match(new)
    assert not await sm.check_session_status(old)
    with pytest.raises(SessionNotFound):
        await sm.rotate_session_key(old)
    after = await sm.get_session_details(new)
    assert (after.username, after.data, after.created_at) == (
        "Luca",
        {"role": "user"},
        before.created_at,
    )
    assert await sm.count_sessions() == 1
    assert [(e.name, e.key) for e in seen.events] == [("session_rotated", new)]


async def test_user_sessions_and_logout_everywhere(sm: SessionManager) -> None:
    seen = Recorder(sm, "session_deleted", "notify_client_to_logout")
    first = await sm.load_new_session("Luca")
    other = await sm.load_new_session("Fabio")
    second = await sm.load_new_session("Luca", {"device": "phone"})
    sessions = await sm.get_user_sessions("Luca")
    assert [s.username for s in sessions] == ["Luca", "Luca"]
    assert sessions[0].created_at <= sessions[1].created_at
    assert sessions[1].data == {"device": "phone"}
    assert await sm.get_user_sessions("nobody") == []
    assert await sm.delete_user_sessions("Luca") == 2
    assert await sm.delete_user_sessions("Luca") == 0
    assert not await sm.check_session_status(first)
    assert not await sm.check_session_status(second)
    assert await sm.check_session_status(other)
    assert {e.reason for e in seen.events} == {"logout_all"}
    assert seen.names().count("notify_client_to_logout") == 2


@pytest.mark.parametrize(
    ("username", "error"), [(None, TypeError), ("", ValueError), ("\ud800", ValueError)]
)
async def test_user_calls_reject_bad_usernames(
    sm: SessionManager, username: Any, error: type[Exception]
) -> None:
    with pytest.raises(error):
        await sm.get_user_sessions(username)
    with pytest.raises(error):
        await sm.delete_user_sessions(username)


async def test_max_sessions_per_user_evicts_the_oldest(
    make_store: Any,
) -> None:
    async with SessionManager(store=make_store(), max_sessions_per_user=2) as sm:
        seen = Recorder(sm, "session_deleted", "notify_client_to_logout", "session_created")
        first = await sm.load_new_session("Luca")
        second = await sm.load_new_session("Luca")
        await sm.load_new_session("Fabio")
        third = await sm.load_new_session("Luca")
        assert not await sm.check_session_status(first)
        assert await sm.check_session_status(second)
        assert await sm.check_session_status(third)
        assert await sm.count_sessions() == 3
        ended = [(e.name, e.key, e.reason) for e in seen.events if e.name != "session_created"]
        assert ended == [
            ("session_deleted", first, "evicted"),
            ("notify_client_to_logout", first, "evicted"),
        ]


async def test_shared_is_one_instance() -> None:
    assert SessionManager.shared() is SessionManager.shared()
    assert isinstance(SessionManager.shared(), SessionManager)


# -- keys that are not keys ------------------------------------------------------------------


@pytest.mark.parametrize("bad", BAD_KEYS, ids=lambda k: type(k).__name__ + str(len(repr(k))))
async def test_bad_keys_are_unknown_keys_and_change_nothing(sm: SessionManager, bad: Any) -> None:
    keys = [await sm.load_new_session("Luca", {"n": 1}), await sm.load_new_session("Fabio")]
    before = await snapshot(sm, keys)
    assert await sm.check_session_status(bad) is False
    assert await sm.get_username_from_session_key(bad) is None
    assert await sm.delete_session(bad) is False
    for call in (
        sm.get_session_data(bad),
        sm.set_session_data(bad, {"n": 2}),
        sm.restart_session_timer(bad),
        sm.get_session_details(bad),
        sm.rotate_session_key(bad),
        sm.update_session_data(bad, {"n": 2}),
        sm.mark_authenticated(bad),
    ):
        with pytest.raises(SessionNotFound) as raised:
            await call
        assert isinstance(raised.value, KeyError)
        if isinstance(bad, str) and bad:
            assert bad not in str(raised.value)
    await sm.send_logout_message(bad)
    assert await snapshot(sm, keys) == before


# -- MemoryStore -----------------------------------------------------------------------------


async def test_memory_sessions_add_no_object_for_the_cyclic_gc_to_track() -> None:
    # A million sessions must not slow every full collection down: what MemoryStore keeps per
    # session (strs, floats, plain tuples of them) is left out of the cyclic GC.
    async with SessionManager(timeout=3600) as sm:
        await sm.load_new_session("warm-up")
        gc.collect()
        before = len(gc.get_objects())
        for i in range(5_000):
            key = await sm.load_new_session(f"user{i}", {"n": i})
            await sm.restart_session_timer(key)
            await sm.set_session_data(key, {"n": -i})
        gc.collect()
        assert len(gc.get_objects()) - before < 100
        assert await sm.count_sessions() == 5_001


async def test_memory_per_user_index_built_at_first_use_keeps_creation_order() -> None:
    # MemoryStore builds its per-user index at the first call that asks by user; a rotation
    # before then has moved a session to the end of the store's dict.
    async with SessionManager(timeout=3600) as sm:
        ann1 = await sm.load_new_session("Ann")
        bob = await sm.load_new_session("Bob")
        ann2 = await sm.load_new_session("Ann")
        ann3 = await sm.load_new_session("Ann")
        ann1 = await sm.rotate_session_key(ann1)
        await sm.delete_session(ann2)
        assert [d.id for d in await sm.get_user_sessions("Ann")] == ids(ann1, ann3)
        # From then on the index follows every change.
        ann4 = await sm.load_new_session("Ann")
        ann3 = await sm.rotate_session_key(ann3)
        assert [d.id for d in await sm.get_user_sessions("Ann")] == ids(ann1, ann3, ann4)
        assert await sm.delete_user_sessions("Ann") == 3
        assert await sm.get_user_sessions("Ann") == []
        assert [d.id for d in await sm.get_user_sessions("Bob")] == ids(bob)
