"""The manager's own behaviour, on every store kind: checks of its arguments and options,
timeouts, events, the singleton, and MemoryStore's costs. The rules a store must keep (the
calls of docs/guides/quickstart.md and the rules of docs/contract.md through the manager) are
the contract suite, :mod:`sessionkit.testing`, run by tests/test_store_contract.py."""

from __future__ import annotations

import gc
from typing import Any

import pytest

from sessionkit import (
    MIN_SESSION_TIMEOUT,
    SessionManager,
    SessionRejected,
)
from sessionkit.keys import hash_key
from tests.recorder import Recorder


def ids(*keys: str) -> list[str]:
    """The public ids of sessions, as listings give them."""
    return [hash_key(key) for key in keys]


async def snapshot(sm: SessionManager, keys: list[str]) -> tuple[Any, ...]:
    """Everything observable about some sessions, to show that bad input changed nothing."""
    details = [await sm.get_session_details(k) for k in keys]
    return (await sm.count_sessions(), await sm.get_logged_users(), details)


# -- creation and timeouts -------------------------------------------------------------------


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


async def test_set_session_data_rejects_non_json_and_keeps_old_data(sm: SessionManager) -> None:
    key = await sm.load_new_session("Luca", {"a": 1})
    with pytest.raises(TypeError):
        await sm.set_session_data(key, {"bad": object()})
    assert await sm.get_session_data(key) == {"a": 1}


# -- ending sessions -------------------------------------------------------------------------


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
    seen = Recorder(sm, names=("notify_client_to_logout",))
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
    seen = Recorder(sm, names=("error",))
    key = await sm.load_new_session("Luca")
    assert await sm.check_session_status(key) is True
    assert seen.events == []
    assert await sm.check_session_status("no-such-key") is False
    [event] = seen.events
    assert isinstance(event.error, SessionRejected)
    assert event.key == "no-such-key"
    assert len(event.key_hash) == 64


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


async def test_shared_is_one_instance() -> None:
    assert SessionManager.shared() is SessionManager.shared()
    assert isinstance(SessionManager.shared(), SessionManager)


# -- keys that are not keys ------------------------------------------------------------------


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


async def test_touch_session_restarts_and_reads_back_in_one_step_on_memory() -> None:
    # MemoryStore's one-step restart and read gives what a restart then a read gives.
    async with SessionManager(timeout=60) as sm:
        key = await sm.load_new_session("ada", {"n": 1})
        touched = await sm.touch_session(key)
        read = await sm.get_session_details(key)
    assert touched == read
    assert (touched.key, touched.id, touched.username, touched.data) == (
        key,
        hash_key(key),
        "ada",
        {"n": 1},
    )


async def test_touch_session_names_the_session_by_the_key_it_is_stored_under() -> None:
    # The one-step path on MemoryStore leaves the digest until the id is read: in a renewal's
    # grace the old key finds the session, and the id is still the new key's, as a read says.
    from sessionkit import MemoryStore

    store = MemoryStore(clock=lambda: 1000.0)  # a still clock: two touches read the same
    async with SessionManager(timeout=60, store=store) as sm:
        old = await sm.load_new_session("ada")
        new = store.rotated_key(old)
        assert await store.rotate(old, new, grace=30) is not None
        touched = await sm.touch_session(old)
        read = await sm.get_session_details(old)
        record = store.touch_get_sync(old, 60, False)
        assert record is not None and (record.key, record.key_hash) == (new, "")
        assert await store.touch_get(old, 60) == record._replace(key_hash=hash_key(new))
    assert (touched.key, touched.id, read.id) == (old, hash_key(new), hash_key(new))
    assert touched == read


async def test_touch_session_goes_through_a_memory_store_subclass_own_get() -> None:
    # A subclass that answers get its own way is asked, not bypassed by the one-step path.
    from sessionkit import MemoryStore
    from sessionkit.models import SessionRecord

    asked: list[str] = []

    class Noting(MemoryStore):
        async def get(self, key: str) -> SessionRecord | None:
            asked.append("get")
            return await super().get(key)

    async with SessionManager(timeout=60, store=Noting()) as sm:
        key = await sm.load_new_session("ada")
        details = await sm.touch_session(key)
    assert (details.username, asked) == ("ada", ["get"])


async def test_touch_session_goes_through_a_memory_store_subclass_own_touch_get_sync() -> None:
    # The manager's awaitless path passes digest=False, which a subclass's own touch_get_sync
    # (written to the signature before it) does not take: such a store is asked through its
    # touch_get, which calls its touch_get_sync.
    from sessionkit import MemoryStore
    from sessionkit.models import SessionRecord

    asked: list[str] = []

    class Noting(MemoryStore):
        def touch_get_sync(self, key: str, timeout: float) -> SessionRecord | None:  # type: ignore[override]
            asked.append("touch_get_sync")
            return super().touch_get_sync(key, timeout)

    async with SessionManager(timeout=60, store=Noting()) as sm:
        key = await sm.load_new_session("ada")
        details = await sm.touch_session(key)
    assert (details.username, details.id, asked) == ("ada", hash_key(key), ["touch_get_sync"])


async def test_a_login_goes_through_a_memory_store_subclass_own_create() -> None:
    # The login's awaitless path is MemoryStore's own create: a subclass that creates its own
    # way is asked through its create, with the spec the manager built.
    from sessionkit import MemoryStore, NewSession

    asked: list[NewSession] = []

    class Noting(MemoryStore):
        async def create(self, key: str, spec: NewSession) -> list[Any]:
            asked.append(spec)
            return await super().create(key, spec)

    async with SessionManager(timeout=60, store=Noting()) as sm:
        key = await sm.load_new_session("ada", {"n": 1})
        assert await sm.get_session_data(key) == {"n": 1}
    assert asked == [NewSession("ada", 60, '{"n":1}')]


async def test_a_login_takes_its_key_from_a_memory_store_subclass_own_new_key() -> None:
    from sessionkit import MemoryStore

    made: list[str] = []

    class Placing(MemoryStore):
        def new_key(self, username: str) -> str:
            made.append(f"{username}.{len(made)}-" + "k" * 40)
            return made[-1]

    async with SessionManager(timeout=60, store=Placing()) as sm:
        keys = [await sm.load_new_session("ada"), await sm.load_new_session("bob")]
        assert [await sm.get_username_from_session_key(k) for k in keys] == ["ada", "bob"]
    assert keys == made == ["ada.0-" + "k" * 40, "bob.1-" + "k" * 40]


async def test_a_login_on_a_memory_store_is_one_step_with_its_checks() -> None:
    # The usual login (an ASCII name, no data) skips the validating calls, not their rules.
    async with SessionManager(timeout=60) as sm:
        for bad, error in ((b"ada", TypeError), ("", ValueError), ("a\ud800", ValueError)):
            with pytest.raises(error):
                await sm.load_new_session(bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await sm.load_new_session("ada", {"n": object()})
        assert await sm.count_sessions() == 0
        key = await sm.load_new_session("Zoë")
        details = await sm.get_session_details(key)
        assert (details.username, details.data) == ("Zoë", None)
        assert await sm.count_sessions() == 1
