"""``update_session_data``: a top-level merge in one atomic store step (docs/contract.md,
"Atomic data updates"), on every store kind (the store-contract suite)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from sessionkit import SessionManager, SessionNotFound
from sessionkit.keys import new_key

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


async def test_a_merge_replaces_and_adds_top_level_fields(sm: SessionManager) -> None:
    key = await sm.load_new_session("Luca", {"a": 1, "nested": {"x": 1}, "z": "kept"})
    merged = await sm.update_session_data(key, {"nested": {"y": 2}, "b": [1]})
    assert merged == {"a": 1, "nested": {"y": 2}, "z": "kept", "b": [1]}
    assert list(merged) == ["a", "nested", "z", "b"]  # as dict.update orders them
    assert await sm.get_session_data(key) == merged
    merged["a"] = "changed after"  # the result is a copy
    assert (await sm.get_session_data(key))["a"] == 1


async def test_data_never_set_counts_as_an_empty_dict(sm: SessionManager) -> None:
    key = await sm.load_new_session("Luca")
    assert await sm.update_session_data(key, {"theme": "dark"}) == {"theme": "dark"}
    assert await sm.update_session_data(key, {}) == {"theme": "dark"}
    other = await sm.load_new_session("Fabio", {})
    assert await sm.update_session_data(other, {}) == {}


async def test_values_come_back_exactly_as_written(sm: SessionManager) -> None:
    key = await sm.load_new_session("Luca", {"first": FAITHFUL})
    merged = await sm.update_session_data(key, FAITHFUL)
    again = await sm.update_session_data(key, {"big": FAITHFUL["big"], "extra": FAITHFUL})
    for result in (merged, await sm.get_session_data(key)):
        assert result["first"] == FAITHFUL
        assert {k: result[k] for k in FAITHFUL} == FAITHFUL
    assert again["extra"] == FAITHFUL
    stored = await sm.get_session_data(key)
    # Same values and same types: an int stays an int, [] stays a list.
    assert json.dumps(stored, sort_keys=True) == json.dumps(
        {"first": FAITHFUL, **FAITHFUL, "extra": FAITHFUL}, sort_keys=True
    )
    assert type(stored["huge"]) is int and type(stored["empty_list"]) is list


async def test_a_hundred_concurrent_updates_of_different_fields_all_land(
    sm: SessionManager,
) -> None:
    key = await sm.load_new_session("Luca", {"start": True})
    results = await asyncio.gather(
        *(sm.update_session_data(key, {f"field{i}": [i, {"n": i}]}) for i in range(100))
    )
    expected = {"start": True, **{f"field{i}": [i, {"n": i}] for i in range(100)}}
    assert await sm.get_session_data(key) == expected
    # Each call saw its own field, and the last of them saw every field.
    assert all(r[f"field{i}"] == [i, {"n": i}] for i, r in enumerate(results))
    assert max(len(r) for r in results) == 101


@pytest.mark.parametrize(
    "changes",
    [
        [("a", 1)],
        "a",
        None,
        {1: "an int key"},
        {("a",): 1},
        {"a": object()},
        {"a": float("nan")},
        {"a": {"b": {1, 2}}},
    ],
    ids=["list", "str", "none", "int-key", "tuple-key", "object", "nan", "set"],
)
async def test_bad_changes_are_a_type_error_and_change_nothing(
    sm: SessionManager, changes: Any
) -> None:
    key = await sm.load_new_session("Luca", {"a": 1})
    with pytest.raises(TypeError):
        await sm.update_session_data(key, changes)
    assert await sm.get_session_data(key) == {"a": 1}


@pytest.mark.parametrize("data", [[1, 2], "text", 3, True])
async def test_data_that_is_not_a_dict_is_a_type_error_and_stays(
    sm: SessionManager, data: Any
) -> None:
    key = await sm.load_new_session("Luca", data)
    with pytest.raises(TypeError, match="not a dict"):
        await sm.update_session_data(key, {"a": 1})
    assert await sm.get_session_data(key) == data


async def test_an_ended_session_is_not_found_and_stays_ended(sm: SessionManager) -> None:
    key = await sm.load_new_session("Luca", {"a": 1})
    assert await sm.delete_session(key) is True
    with pytest.raises(SessionNotFound):
        await sm.update_session_data(key, {"b": 2})
    with pytest.raises(SessionNotFound):
        await sm.update_session_data(new_key(), {"b": 2})
    assert await sm.check_session_status(key) is False
    assert await sm.count_sessions() == 0
