"""The store contract (:mod:`sessionkit.testing`) on every store in the repository:
``MemoryStore``, ``RedisStore`` on one server and on a 3-primary cluster (real servers on
loopback), and ``tests/dictstore.py``, a store written from docs/guides/custom-store.md alone.
A store that breaks a rule fails with the rule's words."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from sessionkit import MemoryStore, NewSession
from sessionkit.testing import StoreContract
from tests.conftest import fresh_prefix
from tests.dictstore import DictStore

if TYPE_CHECKING:
    from redis.asyncio import Redis, RedisCluster

    from sessionkit.stores.redis import RedisStore

ROOT = Path(__file__).resolve().parent.parent


class TestMemoryStore(StoreContract):
    async def make_store(self) -> MemoryStore:
        return MemoryStore()


class TestRedisStore(StoreContract):
    @pytest.fixture(autouse=True)
    def _client(self, redis_client: Redis) -> None:
        self.client = redis_client

    async def make_store(self) -> RedisStore:
        from sessionkit.stores.redis import RedisStore

        return RedisStore(self.client, prefix=fresh_prefix())


class TestRedisClusterStore(StoreContract):
    @pytest.fixture(autouse=True)
    def _client(self, redis_cluster_client: RedisCluster) -> None:
        self.client = redis_cluster_client

    async def make_store(self) -> RedisStore:
        from sessionkit.stores.redis import RedisStore

        return RedisStore(self.client, prefix=fresh_prefix())


class TestDictStore(StoreContract):
    async def make_store(self) -> DictStore:
        return DictStore()


# Two stores written wrong on purpose: one reports a session past its deadline live, one
# claims an expired session without removing it (so that every claim ends it again).
WRONG = """
import time

from sessionkit.testing import StoreContract
from tests.dictstore import DictStore


class ReportsExpiredLive(DictStore):
    async def check(self, key):
        row = self.rows.get(key)
        return None if row is None else row.deadline - time.monotonic()


class ClaimsAndKeeps(DictStore):
    async def claim_expired(self, keys):
        now = time.monotonic()
        rows = [(key, self.rows.get(key)) for key in keys]
        return [self._record(k, r, now) for k, r in rows if r and r.deadline <= now], []


class TestReportsExpiredLive(StoreContract):
    async def make_store(self):
        return ReportsExpiredLive()


class TestClaimsAndKeeps(StoreContract):
    async def make_store(self):
        return ClaimsAndKeeps()
"""


def test_a_store_that_breaks_a_rule_fails_with_the_rule_s_words(tmp_path: Path) -> None:
    # Run as a third party would: its own directory, no configuration (so pytest-asyncio's
    # strict mode), the kit imported from the package.
    (tmp_path / "test_wrong.py").write_text(WRONG, encoding="utf-8")
    rules = "never_reported_live or claims_end_each_session_once"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", rules],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert "2 failed, 2 passed" in out, out
    failed = sorted(line.split(" - ")[0] for line in out.splitlines() if line.startswith("FAILED"))
    assert failed == [
        "FAILED test_wrong.py::TestClaimsAndKeeps::test_claims_end_each_session_once",
        "FAILED test_wrong.py::TestReportsExpiredLive::"
        "test_a_session_past_its_deadline_is_never_reported_live",
    ], out
    assert (
        "RuleBroken: each session ends once: 3 claims of one expired session ended it 3 times"
        in out
    ), out
    assert (
        "RuleBroken: a session past its deadline is never reported live: for a session past "
        "its deadline, check() gave -0." in out
    ), out


def test_a_new_session_is_one_immutable_value_with_nothing_but_its_user_and_timeout() -> None:
    # docs/guides/custom-store.md, "What a login asks for": NewSession("Luca", 60) asks for
    # nothing more than a user and an idle timeout, and no store can change what it was asked.
    spec = NewSession("Luca", 60)
    assert spec == NewSession(
        username="Luca",
        timeout=60,
        data=None,
        fixed_timeout=False,
        absolute_timeout=None,
        max_per_user=None,
        refuse=False,
        client=None,
    )
    with pytest.raises(AttributeError):
        spec.username = "Fabio"  # type: ignore[misc]
    assert not hasattr(spec, "__dict__")
