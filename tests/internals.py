"""The one place the suite reads what sessionkit keeps private: its private modules and the
private attributes of its objects (and one private call of python-socketio's).

Each name here says what it reads and why no public call tells. A test imports these instead
of reaching in itself, so that a change to the package's insides changes this file, not the
tests; tests/test_package.py checks that no other test module reaches in. (It imports every
optional dependency, as the suite does: the dev lock installs them all.)
"""

from __future__ import annotations

from typing import Any

from sessionkit import SessionManager, SessionStore
from sessionkit import _socketio_compat as socketio_compat
from sessionkit._guard import RETRY_AFTER
from sessionkit._outage import LOG_EVERY, Outage
from sessionkit._socketio_rooms import is_indexed
from sessionkit._tasks import LoopTasks
from sessionkit._timers import RESOLUTION, DeadlineTimers
from sessionkit.stores.redis import RedisStore
from sessionkit.stores.redis import _compat as redis_compat
from sessionkit.stores.redis import _schema as schema
from sessionkit.stores.redis._pipeline import Pipeline, pack
from sessionkit.stores.redis._schema import bucket_of_user
from sessionkit.stores.redis._schema import tags as bucket_tags
from sessionkit.stores.redis._scripts import SCRIPTS, lua_text

__all__ = (
    "LOG_EVERY",
    "RESOLUTION",
    "RETRY_AFTER",
    "SCRIPTS",
    "DeadlineTimers",
    "LoopTasks",
    "Outage",
    "Pipeline",
    "bucket_of_key",
    "bucket_of_user",
    "bucket_tags",
    "generate_ack_id",
    "is_indexed",
    "known_keys",
    "lua_text",
    "redis_compat",
    "schema",
    "socketio_compat",
    "touch_encodings",
    "warned_keys",
)


def warned_keys(sm: SessionManager) -> set[str]:
    """The keys ``sm`` has warned about (``session_expiring``) and keeps until their deadline
    moves or their session ends: what a worker keeps per session is private, and the test of
    it reads it here."""
    return set(sm._expiry._warned)


def known_keys(store: SessionStore) -> int:
    """How many raw keys ``store`` (a :class:`RedisStore`) remembers, to hand a session's key
    to its ending's event: private, like :func:`warned_keys`."""
    assert isinstance(store, RedisStore)
    return len(store._known)


def bucket_of_key(store: RedisStore, key: str) -> str:
    """The prefix of the bucket ``key``'s session lives in (its outbox, its deadlines): where
    the store's layout (``_schema``) puts it."""
    return store._of_key(key)


def generate_ack_id(manager: Any, sid: str, callback: Any) -> None:
    """python-socketio's own (private) call that registers an acknowledgement callback: the
    room index must keep the client manager's callbacks as python-socketio does."""
    manager._generate_ack_id(sid, callback)


def touch_encodings(store: RedisStore, key: str, timeout: float, read: bool) -> tuple[bytes, bytes]:
    """TOUCH's command for ``key`` as the store encodes it (from a template kept per bucket),
    and as ``pack()`` encodes its arguments: the hot path's shortcut must send the same bytes."""
    command = store._touch(key, timeout, ("1",) if read else ())
    return command.packed, pack(command.args, *store._encoding)
