"""SessionDetails as a store's record turns into it: read lazily, the same to every reader."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from datetime import UTC, datetime

import pytest

from sessionkit import ClientInfo, SessionDetails
from sessionkit.models import SessionRecord

CREATED = 1_764_000_000.25  # seconds, wall clock
PHONE = ClientInfo(ip="203.0.113.7", user_agent="Mozilla/5.0 (Android 14) Chrome/131.0")


def record(*, authenticated: float | None = None, rotated: float | None = None) -> SessionRecord:
    return SessionRecord(
        key="k" * 44,
        key_hash="ab" * 32,
        username="Luca",
        created_at=CREATED,
        last_active_at=CREATED + 10,
        expires_at=CREATED + 3010,
        absolute_expires_at=None,
        remaining=3000.0,
        data='{"role":"admin","n":[1,2]}',
        client=PHONE.encode(),
        authenticated_at=authenticated,
        rotated_at=rotated,
    )


def built_by_hand(key: str | None, *, authenticated: float, rotated: float) -> SessionDetails:
    def at(seconds: float) -> datetime:
        return datetime.fromtimestamp(seconds, UTC)

    return SessionDetails(
        key=key,
        id="ab" * 32,
        username="Luca",
        created_at=at(CREATED),
        last_active_at=at(CREATED + 10),
        expires_at=at(CREATED + 3010),
        data={"role": "admin", "n": [1, 2]},
        client=PHONE,
        authenticated_at=at(authenticated),
        key_created_at=at(rotated),
    )


@pytest.mark.parametrize(
    ("authenticated", "rotated"), [(None, None), (CREATED + 5, None), (None, CREATED + 7)]
)
def test_details_read_as_the_ones_built_by_hand(
    authenticated: float | None, rotated: float | None
) -> None:
    details = record(authenticated=authenticated, rotated=rotated).details("k" * 44)
    expected = built_by_hand(
        "k" * 44, authenticated=authenticated or CREATED, rotated=rotated or CREATED
    )
    assert isinstance(details, SessionDetails)
    assert details == expected
    assert expected == details
    assert dataclasses.asdict(details) == dataclasses.asdict(expected)
    assert repr(details) == repr(expected)
    assert details.created_at.tzinfo is UTC


def test_details_differ_where_a_field_differs() -> None:
    details = record().details("k" * 44)
    other = built_by_hand(None, authenticated=CREATED, rotated=CREATED)
    assert details != other
    assert other != details
    assert details != record().details(None)


def test_each_read_gives_the_same_copy_of_the_data_and_each_details_its_own() -> None:
    snapshot = record()
    first, second = snapshot.details(None), snapshot.details(None)
    assert first.data is first.data
    first.data["role"] = "changed"
    assert second.data == {"role": "admin", "n": [1, 2]}


def test_details_stay_frozen_and_keep_the_key_out_of_their_repr() -> None:
    details = record().details("k" * 44)
    for name in ("username", "created_at", "data", "key"):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(details, name, None)
    assert "k" * 44 not in repr(details)
    assert repr(details).startswith("SessionDetails(id=")


def test_replace_copy_and_pickle_keep_every_field() -> None:
    details = record(rotated=CREATED + 7).details("k" * 44)
    replaced = dataclasses.replace(details, key="n" * 44)
    assert (replaced.key, replaced.username) == ("n" * 44, "Luca")
    assert replaced.key_created_at == datetime.fromtimestamp(CREATED + 7, UTC)
    assert replaced.data == details.data
    for twin in (copy.copy(details), copy.deepcopy(details), pickle.loads(pickle.dumps(details))):
        assert type(twin) is SessionDetails
        assert twin == details
