"""``update_session_data`` refuses changes that are no JSON object, on every store kind. The
merge itself (docs/contract.md, "Atomic data updates") is a rule of the contract suite,
:mod:`sessionkit.testing`, run by tests/test_store_contract.py."""

from __future__ import annotations

from typing import Any

import pytest

from sessionkit import SessionManager


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
