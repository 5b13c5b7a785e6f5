"""The Lua scripts behind :class:`~sessionkit.stores.redis.RedisStore`, one file each in
``lua/``, each opening with its ``KEYS``, ``ARGV`` and what it returns.

Each public operation is one script, so it is one round trip and one atomic step on the
server. Every script starts with ``lua/core.lua`` (``ARGV[1]`` = the bucket ``P``, ``ARGV[2]`` =
how long (ms) a session's record is kept past its deadline for a manager to claim it,
``ARGV[3]`` = an operation id, or empty; its own arguments follow), and all but the hot ones
(CHECK, TOUCH) with ``lua/prelude.lua``. ``KEYS`` declares the keys known before the script
runs; those it finds in an index (a user's other sessions, the sessions due in a sweep) share
the bucket, so its slot. The key names and hash fields are those of
:mod:`sessionkit.stores.redis._schema`.

A script that ends sessions or makes one runs *once* per operation id (``lua/once.lua``): its
outcome is kept under the operation's outcome key for ten minutes, and the same script sent
again (the client library's retry after a dropped connection) returns that outcome instead of
applying twice. ``SETTLE`` asks what an operation did, for a caller that never heard: it returns
the kept outcome, or stops the operation from ever applying if it has not run yet (a script
still on its way).

Every script that ends sessions records each ending in the bucket's outbox (``lua/outbox.lua``:
a stream read through one consumer group) and delivers it to the calling store before it
returns; ``ACK`` deletes what was reported, ``HOLD`` keeps what is still being reported from
being delivered again, and ``SWEEP`` delivers again what was left too long.

Every key carries a TTL: a session's hash lives until its deadline plus the retention (at
least: its TTL moves with the indexed deadline, plus a timeout), and an index at least as long
as the longest-lived member it was last given. Indexes may hold members whose hash has already
gone (a retention lapsed with no manager running); scripts skip those and drop them where they
meet them.
"""

from __future__ import annotations

import hashlib
from importlib.resources import files

__all__ = ("SCRIPTS", "Script", "lua_text")


def lua_text(name: str) -> str:
    """The text of ``lua/<name>.lua``."""
    return (files(__package__) / "lua" / f"{name}.lua").read_text(encoding="utf-8")


class Script:
    """One Lua script: its text and the SHA-1 the server knows it by."""

    __slots__ = ("sha", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode("utf-8")).hexdigest()


_HOT = ("CHECK", "TOUCH")  # core.lua only: each function defined is a closure made on every run
_READS = (
    "GET",
    "SET_DATA",
    "UPDATE_DATA",
    "MARK_AUTHENTICATED",
    "USERNAMES",
    "COUNT",
    "USER_SESSIONS",
    "ACK",
    "HOLD",
)
_ONCE = (  # run once per operation id
    "CREATE",
    "DELETE",
    "ROTATE",
    "CLAIM",
    "SWEEP",
    "DELETE_USER",
    "DELETE_ALL",
    "DELETE_USER_SESSION",
    "SETTLE",
)


def _build() -> dict[str, Script]:
    core, prelude, once = lua_text("core"), lua_text("prelude"), lua_text("once")
    ending = core + prelude + lua_text("outbox")
    texts = {name: core + lua_text(name.lower()) for name in _HOT}
    texts |= {name: core + prelude + lua_text(name.lower()) for name in _READS}
    texts |= {name: ending + lua_text(name.lower()) + once for name in _ONCE}
    return {name: Script(text) for name, text in texts.items()}


#: Every script, by name.
SCRIPTS = _build()
