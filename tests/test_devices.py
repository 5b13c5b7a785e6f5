"""Devices: session ids, the client recorded at login, listings without keys, ending one
session by id, and refusing a login at the cap; on every store kind (the contract suite)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sessionkit import (
    ClientInfo,
    SessionDetails,
    SessionEvent,
    SessionLimitReached,
    SessionManager,
    SessionStore,
)
from sessionkit.keys import hash_key
from tests.recorder import Recorder
from tests.test_manager import snapshot

PHONE = ClientInfo(ip="192.0.2.7", user_agent="Mozilla/5.0 (Android 14; Mobile)")
LAPTOP = ClientInfo(ip="2001:db8::1", user_agent="Mozilla/5.0 (X11; Linux x86_64)")


async def test_details_carry_the_id_and_the_client(sm: SessionManager) -> None:
    key = await sm.load_new_session("Luca", {"n": 1}, client=PHONE)
    bare = await sm.load_new_session("Luca")
    details = await sm.get_session_details(key)
    assert (details.key, details.id, details.client) == (key, hash_key(key), PHONE)
    assert (await sm.get_session_details(bare)).client is None
    touched = await sm.touch_session(key)
    assert (touched.key, touched.id, touched.client) == (key, hash_key(key), PHONE)


async def test_listings_give_ids_and_clients_never_keys(sm: SessionManager) -> None:
    first = await sm.load_new_session("Luca", client=PHONE)
    second = await sm.load_new_session("Luca", client=LAPTOP)
    await sm.load_new_session("Fabio", client=LAPTOP)
    listed = await sm.get_user_sessions("Luca")
    assert [(d.key, d.id, d.client) for d in listed] == [
        (None, hash_key(first), PHONE),
        (None, hash_key(second), LAPTOP),
    ]
    for details in listed:
        assert first not in repr(details) and second not in repr(details)


async def test_a_rotated_session_keeps_its_client_under_a_new_id(sm: SessionManager) -> None:
    old = await sm.load_new_session("Luca", client=PHONE)
    new = await sm.rotate_session_key(old)
    [listed] = await sm.get_user_sessions("Luca")
    assert (listed.id, listed.client) == (hash_key(new), PHONE)


async def test_no_repr_shows_a_raw_key(sm: SessionManager) -> None:
    seen: list[SessionEvent] = []
    for name in ("session_created", "session_deleted", "notify_client_to_logout"):
        sm.on(name, seen.append)
    key = await sm.load_new_session("Luca", client=PHONE)
    details = await sm.get_session_details(key)
    assert details.key == key
    assert key not in repr(details) and key not in str(details)
    assert hash_key(key) in repr(details)  # the public id names it instead
    await sm.delete_user_session("Luca", details.id)
    assert [e.name for e in seen] == [
        "session_created",
        "session_deleted",
        "notify_client_to_logout",
    ]
    for event in seen:
        assert event.key == key
        assert key not in repr(event) and key not in str(event)


async def test_delete_user_session_ends_that_one_session(sm: SessionManager) -> None:
    seen = Recorder(sm, "session_deleted", "notify_client_to_logout")
    phone = await sm.load_new_session("Luca", client=PHONE)
    laptop = await sm.load_new_session("Luca", client=LAPTOP)
    fabio = await sm.load_new_session("Fabio")
    [listed_phone, _] = await sm.get_user_sessions("Luca")
    assert await sm.delete_user_session("Luca", listed_phone.id) is True
    assert not await sm.check_session_status(phone)
    assert await sm.check_session_status(laptop)
    assert await sm.check_session_status(fabio)
    assert [d.id for d in await sm.get_user_sessions("Luca")] == [hash_key(laptop)]
    assert [(e.name, e.key_hash, e.reason) for e in seen.events] == [
        ("session_deleted", hash_key(phone), "logout"),
        ("notify_client_to_logout", hash_key(phone), "logout"),
    ]
    # Once only; and never another user's session, whatever id is sent.
    assert await sm.delete_user_session("Luca", listed_phone.id) is False
    assert await sm.delete_user_session("Luca", hash_key(fabio)) is False
    assert await sm.delete_user_session("Nobody", hash_key(laptop)) is False
    assert await sm.check_session_status(fabio) and await sm.check_session_status(laptop)
    assert len(seen.events) == 2


@pytest.mark.parametrize(
    "session_id", ["", "x" * 64, "ABC", hash_key("k").upper(), hash_key("k") + "0", "../../"]
)
async def test_a_malformed_id_is_no_such_session(sm: SessionManager, session_id: str) -> None:
    keys = [await sm.load_new_session("Luca", client=PHONE)]
    before = await snapshot(sm, keys)
    assert await sm.delete_user_session("Luca", session_id) is False
    assert await snapshot(sm, keys) == before


@pytest.mark.parametrize(
    ("username", "session_id", "error"),
    [
        (None, "0" * 64, TypeError),
        ("", "0" * 64, ValueError),
        ("Luca", None, TypeError),
        ("Luca", 42, TypeError),
        ("Luca", b"0" * 64, TypeError),
    ],
)
async def test_delete_user_session_rejects_bad_arguments(
    sm: SessionManager, username: Any, session_id: Any, error: type[Exception]
) -> None:
    keys = [await sm.load_new_session("Luca")]
    before = await snapshot(sm, keys)
    with pytest.raises(error):
        await sm.delete_user_session(username, session_id)
    assert await snapshot(sm, keys) == before


@pytest.mark.parametrize("client", ["192.0.2.7", {"ip": "192.0.2.7"}, ("ip", "ua")])
async def test_a_client_that_is_no_client_info_is_refused(sm: SessionManager, client: Any) -> None:
    keys = [await sm.load_new_session("Fabio")]
    before = await snapshot(sm, keys)
    with pytest.raises(TypeError, match="ClientInfo"):
        await sm.load_new_session("Luca", client=client)
    assert await snapshot(sm, keys) == before


def test_client_info_checks_its_fields() -> None:
    assert ClientInfo() == ClientInfo(None, None)
    with pytest.raises(TypeError):
        ClientInfo(ip=42)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ClientInfo(user_agent="u" * 513)
    with pytest.raises(ValueError):
        ClientInfo(ip="1" * 129)
    assert ClientInfo.decode(PHONE.encode()) == PHONE
    assert ClientInfo.decode(None) is None
    assert ClientInfo.decode("not json") is None
    assert ClientInfo.decode("[1]") is None


async def test_refuse_at_the_limit_changes_nothing(
    make_store: Callable[[], SessionStore],
) -> None:
    async with SessionManager(
        store=make_store(), max_sessions_per_user=2, on_session_limit="refuse"
    ) as sm:
        seen = Recorder(sm, "session_created", "session_deleted", "notify_client_to_logout")
        first = await sm.load_new_session("Luca", client=PHONE)
        second = await sm.load_new_session("Luca", client=LAPTOP)
        other = await sm.load_new_session("Fabio")  # another user's count is their own
        keys = [first, second, other]
        before = await snapshot(sm, keys)
        with pytest.raises(SessionLimitReached) as raised:
            await sm.load_new_session("Luca")
        assert "Luca" in str(raised.value)
        assert not any(key in str(raised.value) for key in keys)
        assert await snapshot(sm, keys) == before
        assert await sm.count_sessions() == 3
        assert seen.names() == ["session_created"] * 3
        # Once a device is ended, the login goes through, evicting nobody.
        assert await sm.delete_user_session("Luca", hash_key(first))
        third = await sm.load_new_session("Luca")
        assert [d.id for d in await sm.get_user_sessions("Luca")] == [
            hash_key(second),
            hash_key(third),
        ]


async def test_evict_stays_the_default(make_store: Callable[[], SessionStore]) -> None:
    async with SessionManager(store=make_store(), max_sessions_per_user=1) as sm:
        first = await sm.load_new_session("Luca")
        second = await sm.load_new_session("Luca")
        assert not await sm.check_session_status(first)
        assert await sm.check_session_status(second)


@pytest.mark.parametrize(
    ("value", "error"), [("deny", ValueError), ("EVICT", ValueError), (None, TypeError)]
)
def test_on_session_limit_is_checked(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        SessionManager(on_session_limit=value)


def test_session_limit_reached_is_a_session_error() -> None:
    from sessionkit import SessionError

    assert issubclass(SessionLimitReached, SessionError)
    assert "key" in SessionDetails.__dataclass_fields__
    assert SessionDetails.__dataclass_fields__["key"].repr is False
