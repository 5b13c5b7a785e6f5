"""Devices: no ``repr()`` shows a key, the checks of ``delete_user_session``'s arguments, of
``client`` and of ``on_session_limit``, and evict as the default, on every store kind. What a
store must do for devices (ids, clients, listings, ending one session, refusing at the cap) is
the contract suite, :mod:`sessionkit.testing`, run by tests/test_store_contract.py."""

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
from tests.test_manager import snapshot

PHONE = ClientInfo(ip="192.0.2.7", user_agent="Mozilla/5.0 (Android 14; Mobile)")
LAPTOP = ClientInfo(ip="2001:db8::1", user_agent="Mozilla/5.0 (X11; Linux x86_64)")


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
