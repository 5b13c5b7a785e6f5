"""What every rule of the contract suite shares: the store under test, the rule's words in its
failure, and a few helpers."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar, cast

import pytest
import pytest_asyncio

from sessionkit.events import EventName, SessionEvent
from sessionkit.manager import SessionManager
from sessionkit.models import SessionRecord
from sessionkit.stores.base import NewSession, SessionStore

# Real time, kept short: a session that must expire during a rule lives this long (seconds),
# and the rule waits PAST for its deadline to go by, with a margin for a busy machine.
SHORT = 0.5
PAST = SHORT + 0.4
# What wall-clock timestamps may differ by from this process's clock: a store on another host
# (seconds; a monotonic clock mistaken for wall time is years off).
SKEW = 300.0


class RuleBroken(AssertionError):
    """Raised when a store breaks a rule of the contract: the message names the rule, then
    says what the store did."""


def expect(ok: object, found: str) -> None:
    """Fail the rule under way with ``found`` (what the store did) unless ``ok``."""
    __tracebackhide__ = True  # pytest shows the rule's line, not this one
    if not ok:
        raise AssertionError(found)


async def refused(call: Awaitable[object], error: type[BaseException], what: str) -> BaseException:
    """Fail the rule under way unless awaiting ``call`` raises ``error``; return what it raised."""
    __tracebackhide__ = True
    try:
        answer = await call
    except error as exc:
        return exc
    raise AssertionError(f"{what} answered {answer!r} instead of raising {error.__name__}")


def same(actual: object, expected: object, what: str) -> None:
    """Fail the rule under way unless ``actual == expected``, naming ``what`` was compared."""
    __tracebackhide__ = True
    expect(actual == expected, f"{what} was {actual!r}, not {expected!r}")


def near_now(timestamp: float | None, what: str) -> None:
    """Fail unless ``timestamp`` is a POSIX timestamp close to the present."""
    __tracebackhide__ = True
    expect(
        timestamp is not None and abs(timestamp - time.time()) < SKEW,
        f"{what} was {timestamp!r}, not a wall-clock timestamp near now ({time.time():.0f})",
    )


_Test = TypeVar("_Test", bound=Callable[..., Coroutine[Any, Any, None]])


def rule(words: str) -> Callable[[_Test], _Test]:
    """Make a test one rule of the contract: its docstring and every failure start with
    ``words``."""

    def decorate(test: _Test) -> _Test:
        @functools.wraps(test)
        async def run(*args: Any, **kwargs: Any) -> None:
            try:
                await test(*args, **kwargs)
            except AssertionError as found:
                raise RuleBroken(f"{words}: {found}").with_traceback(found.__traceback__) from None
            except Exception as exc:
                raise RuleBroken(f"{words}: unexpected {exc!r}") from exc

        detail = f"\n\n{test.__doc__}" if test.__doc__ else ""
        run.__doc__ = f"Rule: {words}.{detail}"
        return cast(_Test, run)

    return decorate


async def login(
    store: SessionStore,
    username: str = "Luca",
    data: str | None = None,
    *,
    timeout: float = 60,  # seconds
    fixed_timeout: bool = False,
    absolute_timeout: float | None = None,  # seconds
    client: str | None = None,
) -> str:
    """Store a new session as the manager does (its key made by the store) and return its key."""
    key = store.new_key(username)
    spec = NewSession(
        username,
        timeout,
        data=data,
        fixed_timeout=fixed_timeout,
        absolute_timeout=absolute_timeout,
        client=client,
    )
    evicted = await store.create(key, spec)
    same(evicted, [], "what create() with no cap evicted")
    return key


async def acknowledge(store: SessionStore, records: list[SessionRecord]) -> None:
    """Acknowledge the endings of ``records`` (as a manager does once it reported them)."""
    ids = [r.event_id for r in records if r.event_id is not None]
    if ids:
        await store.acknowledge(ids)


class Events:
    """Records a manager's events of some names, in the order they came."""

    def __init__(self, sm: SessionManager, *names: EventName) -> None:
        self.events: list[SessionEvent] = []
        for name in names:
            sm.on(name, self.events.append)

    def names(self) -> list[str]:
        """The names of the events, in order."""
        return [event.name for event in self.events]

    def of(self, name: str) -> list[SessionEvent]:
        """The events named ``name``, in order."""
        return [event for event in self.events if event.name == name]


class Kit:
    """The store under test: :meth:`make_store` makes one, fresh and empty, for each rule, and
    the ``store`` fixture closes it after."""

    # Every rule is a coroutine: marked here, they run in pytest-asyncio's strict mode too.
    pytestmark = pytest.mark.asyncio

    async def make_store(self) -> SessionStore:
        """Return a new store that holds no session (called once for each rule, on the loop
        the rule runs on). Subclasses must override it."""
        raise NotImplementedError(f"{type(self).__name__} must define async make_store()")

    @pytest_asyncio.fixture
    async def store(self) -> AsyncIterator[SessionStore]:
        """The store a rule runs against, closed (``aclose()``) after it."""
        store = await self.make_store()
        if not isinstance(store, SessionStore):
            pytest.fail(f"make_store() returned {store!r}, not a SessionStore", pytrace=False)
        yield store
        await store.aclose()

    @staticmethod
    def _require_shared(store: SessionStore) -> float:
        """The store's sweep interval; skips the rule where the store is not shared."""
        if store.sweep_interval is None:
            pytest.skip("a store only one process uses (sweep_interval is None)")
        return store.sweep_interval

    @staticmethod
    async def _past_deadline() -> None:
        """Wait until sessions made with the ``SHORT`` timeout are past their deadline."""
        await asyncio.sleep(PAST)
