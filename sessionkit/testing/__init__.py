"""The store contract's own tests: run them against a store of your own.

Subclass :class:`StoreContract` in a test module and give it a fresh, empty store for each
test; pytest collects the subclass and runs every rule of the contract against the store::

    from sessionkit.testing import StoreContract

    class TestMyStore(StoreContract):
        async def make_store(self) -> MyStore:
            return MyStore(...)

This module needs pytest and pytest-asyncio (``pip install pytest pytest-asyncio``); the rules
are coroutines, marked for pytest-asyncio, so they run in its strict mode as in its auto mode.
``import sessionkit`` never imports this module, so the package itself needs neither.
"""

from __future__ import annotations

try:
    import pytest  # noqa: F401 - imported here to fail early, with the hint below
    import pytest_asyncio  # noqa: F401
except ImportError as exc:  # pragma: no cover - the suite always has both
    raise ImportError(
        "sessionkit.testing runs the store contract under pytest with pytest-asyncio: "
        "pip install pytest pytest-asyncio"
    ) from exc

from sessionkit.testing._calls import Calls
from sessionkit.testing._devices import Devices
from sessionkit.testing._kit import RuleBroken
from sessionkit.testing._lifetime import Lifetime
from sessionkit.testing._shared import Shared

__all__ = ("RuleBroken", "StoreContract")

RuleBroken.__module__ = __name__  # where users import it from, as tracebacks name it


class StoreContract(Lifetime, Shared, Calls, Devices):
    """The contract of :class:`~sessionkit.stores.SessionStore`, as tests: subclass it in a test
    module (a class whose name starts with ``Test``) and override :meth:`make_store`.

    Each test is one rule, named in the contract's words; a store that breaks it fails with
    :class:`RuleBroken`, whose message is the rule, then what the store did. The rules call
    the store's methods directly (creation, reads, restarts, deadlines, claims, endings,
    rotations, listings), and a :class:`~sessionkit.SessionManager` over the store where the
    manager's calls are the contract (devices, the per-user cap, data updates,
    re-authentication, renewal). The rules of a store shared by processes (``sweep``) skip
    where ``sweep_interval`` is ``None``. A few rules wait for short real timeouts (under a
    second each): under ten seconds in all on a store that answers within a millisecond.

    The ``store`` fixture calls :meth:`make_store` for each rule and closes the store
    (``aclose()``) after it. To build the store from fixtures of your own, take them in an
    autouse fixture of the subclass and keep them on ``self``::

        class TestRedisStore(StoreContract):
            @pytest.fixture(autouse=True)
            def _client(self, redis_client: Redis) -> None:
                self.client = redis_client

            async def make_store(self) -> RedisStore:
                return RedisStore(self.client, prefix=f"test:{uuid.uuid4().hex}:")
    """
