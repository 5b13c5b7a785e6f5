"""What :class:`~sessionkit.stores.redis.RedisStore` keeps in Redis: every key name, every hash
field, and the order of a session record in a script's reply, with its one decoder.

The Lua side builds key names in one place only, ``lua/prelude.lua`` (and the slim
``lua/core.lua`` of the hot scripts), and a test runs it on a live server to check that it
names each key as :func:`session`, :func:`deadlines`, :func:`user`, :func:`user_field`,
:func:`outcome` and :func:`alias` do.

Every key starts with a *bucket*: the store's prefix on a single server; on a cluster, the
prefix and one of 64 hash tags (``prefix{tag}``), so that all of one bucket's keys share a slot.
A user's sessions all live in one bucket, named by the first character of each of their keys.
Under a bucket ``P`` (``h`` is the SHA-256 digest of a session key in 43 characters of URL-safe
base64, :func:`stored_hash`: a third shorter than its hex, and written three times per session;
replies are turned back into the hex digest, the public id, by :func:`hex_hash`):

- ``P s:<h>`` (:func:`session`): a hash, one session, with the fields of :class:`Field`;
- ``P d`` (:func:`deadlines`): a sorted set of every session's ``h``, scored by its indexed
  deadline (:attr:`Field.INDEXED`), which may lag behind the real one;
- ``P U:<n>`` (:func:`user_field`, ``n`` from :func:`user_field_of`): one of 256 small hashes
  whose field ``<username>`` names, as its ``h``, the session of a user who has one (layout
  v2): no key of their own. The hash lives as long as its longest-lived field's session (its
  TTL only grows); the sweep drops, from a sample of one hash each run, fields whose session's
  hash lapsed while no manager ran. A username over 64 bytes (``hash-max-listpack-value``'s
  default, past which the small hash would leave its compact encoding) is never a field;
- ``P u:<username>`` (:func:`user`): a sorted set of the user's ``h``, scored by creation, for
  a user with two sessions or more (a second session moves the field's here) or a long name.
  Readers and removers read both places for every user: the field and a sorted set may meet
  (a deployment's index written before layout v2);
- ``P o:<op>`` (:func:`outcome`): what one operation did, kept for a caller that never heard;
- ``P a:<h>`` (:func:`alias`): a string, the hash a renewed key's session moved to, with the
  renewal's grace as its TTL (the session's :attr:`Field.ALIAS` names it back);
- ``P x`` (:func:`outbox`): a stream, each ending not yet acknowledged (fields ``c``: the
  store call that ended it, ``r``: its record as JSON, in :data:`RECORD` order, and, for a
  call given a reason (a delete's), ``w``: that reason), read through one consumer group
  ``g`` whose consumers are the stores using it.

Times are microseconds on the server's clock (``TIME``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import string
import zlib
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from sessionkit.models import SessionRecord

US = 1_000_000  # microseconds per second: the scripts count time in them


_HEX_DIGEST = re.compile("[0-9a-f]{64}")


def stored_hash(key_hash: str) -> str:
    """How Redis names a session: its key's SHA-256 hex digest as URL-safe base64, unpadded.

    :raises ValueError: for anything but 64 lowercase hex digits (no session has that id)."""
    if not _HEX_DIGEST.fullmatch(key_hash):
        raise ValueError("not a session id")
    return base64.urlsafe_b64encode(bytes.fromhex(key_hash))[:43].decode("ascii")


def stored_key_hash(key: str) -> str:
    """:func:`stored_hash` of a session key's digest, straight from the key (the hot path)."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
    return base64.urlsafe_b64encode(digest)[:43].decode("ascii")


# URL-safe base64 back to the standard alphabet, as base64.urlsafe_b64decode does (it costs
# twice as much as this table and binascii, per call).
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")


def hex_hash(value: Any) -> str:
    """The hex digest (``SessionDetails.id``) back from a reply's :func:`stored_hash`."""
    raw = value.encode("ascii") if isinstance(value, str) else bytes(value)
    return binascii.a2b_base64(raw.translate(_FROM_URLSAFE) + b"=").hex()


def session(bucket: str, h: str) -> str:
    """The name of a session's hash (``h``: its :func:`stored_hash`)."""
    return f"{bucket}s:{h}"


def deadlines(bucket: str) -> str:
    """The name of a bucket's deadline index."""
    return f"{bucket}d"


def user(bucket: str, username: str) -> str:
    """The name of a user's index of sessions."""
    return f"{bucket}u:{username}"


#: How many :func:`user_field` hashes a bucket has.
USER_FIELDS = 256


def user_field_of(username: str) -> int:
    """Which of a bucket's :data:`USER_FIELDS` hashes holds ``username``'s field: the first
    byte of the SHA-1 of its UTF-8 bytes (the Lua computes it with ``redis.sha1hex``, built into
    the server's Lua; a CRC-32 would have to be written out in Lua, a byte at a time)."""
    raw = username.encode("utf-8", "surrogatepass")
    return hashlib.sha1(raw, usedforsecurity=False).digest()[0]


def user_field(bucket: str, username: str) -> str:
    """The name of the small hash whose field ``username`` may name the user's one session."""
    return f"{bucket}U:{user_field_of(username)}"


def alias(bucket: str, h: str) -> str:
    """The name of a renewed key's alias: the new hash of its session, during the grace."""
    return f"{bucket}a:{h}"


def outbox(bucket: str) -> str:
    """The name of a bucket's outbox: a stream of its endings."""
    return f"{bucket}x"


def outcome(bucket: str, op: str) -> str:
    """The name of an operation's outcome record."""
    return f"{bucket}o:{op}"


class Field(StrEnum):
    """The fields of a session's hash (absent: none)."""

    USER = "u"  # the username
    CREATED = "c"
    LAST_ACTIVE = "l"
    DEADLINE = "d"  # the real one: min(last active + timeout, absolute)
    ABSOLUTE = "a"  # the absolute deadline, when there is one
    TIMEOUT = "t"  # the session's own idle timeout, when it is fixed at creation
    INDEXED = "k"  # the deadline the index holds (absent: DEADLINE's), moved only when less
    # than half a timeout is left
    DATA = "x"  # JSON text
    CLIENT = "i"  # the client recorded at login, JSON text: up to 256 bytes in pieces of 64,
    # "i" then "i2", "i3", "i4", so that the hash stays compact (a value over 64 bytes would
    # make it a hashtable); a longer one whole in "i"
    AUTHENTICATED = "r"  # when the user last entered a credential (absent: at creation)
    ROTATED = "g"  # when the session got its current key (absent: at creation)
    ALIAS = "p"  # the hash of the key it had before a renewal, while that alias may live


#: A session record as a script returns it: these, in this order (``remaining``: microseconds
#: left until the deadline; ``h``: the key's digest). Absent fields are nil (false in Lua).
#: A record of an ending adds its entry id in the outbox (``e``), and, delivered again, the
#: store call that ended it (``call``) and the reason that call was given (``reason``, or nil).
RECORD = ("h", "u", "c", "l", "d", "a", "x", "remaining", "i", "r", "g")
ENDING = (*RECORD, "e", "call", "reason")
#: TOUCH's record (read back after a restart), one string rather than an array: these fields,
#: then the byte lengths of ``u``, ``x`` and ``i`` (an absent field has an empty length), each
#: followed by a NUL; then ``u``, ``x`` and ``i`` back to back, which may hold any byte.
TOUCHED = ("h", "c", "l", "d", "a", "remaining", "r", "g")


def text(value: Any) -> str | None:
    """A reply's value as text: the client may or may not decode responses."""
    if value is None or isinstance(value, str):
        return value
    return bytes(value).decode("utf-8")


def us(seconds: float) -> int:
    """Seconds in the scripts' unit."""
    return round(seconds * US)


def record(raw: Sequence[Any], key: str | None, where: int = 0) -> SessionRecord:
    """Decode a session record (in :data:`RECORD` order, or :data:`ENDING`'s), naming it by
    ``key``; an ending's ``event_id`` is ``"<where>/<entry id>"``, ``where`` the index of the
    bucket whose outbox holds it.

    A shorter record (an outcome kept by a previous version, during a rolling deploy) reads
    its missing trailing fields as absent."""
    padded = [*raw, *(None,) * (len(ENDING) - len(raw))]
    (
        key_hash,
        username,
        created,
        last,
        deadline,
        absolute,
        data,
        remaining,
        client,
        auth,
        rot,
        entry,
        _,
        _,
    ) = map(text, padded)
    assert key_hash is not None and username is not None
    key_hash = hex_hash(key_hash)
    assert created is not None and last is not None and deadline is not None
    assert remaining is not None
    return SessionRecord(
        key=key,
        key_hash=key_hash,
        username=username,
        created_at=int(created) / US,
        last_active_at=int(last) / US,
        expires_at=int(deadline) / US,
        absolute_expires_at=None if absolute is None else int(absolute) / US,
        remaining=int(remaining) / US,
        data=data,
        client=client,
        authenticated_at=None if auth is None else int(auth) / US,
        rotated_at=None if rot is None else int(rot) / US,
        event_id=None if entry is None else f"{where}/{entry}",
    )


def touched(reply: Any, key: str) -> SessionRecord:
    """Decode TOUCH's record (:data:`TOUCHED`'s layout), naming it by ``key``."""
    # Every guarded request's decode, kept lean: ints parsed from the reply's bytes, each text
    # field decoded once, the record built by position (the same record as record() builds,
    # at about a third of its cost).
    raw = reply.encode("utf-8") if isinstance(reply, str) else bytes(reply)
    h, c, last, d, a, remaining, auth, rot, nu, nx, ni, rest = raw.split(b"\0", len(TOUCHED) + 3)
    u = x = i = None
    at = 0
    if nu:
        at = int(nu)
        u = rest[:at].decode("utf-8")
    if nx:
        x = rest[at : at + int(nx)].decode("utf-8")
        at += int(nx)
    if ni:
        i = rest[at : at + int(ni)].decode("utf-8")
    assert u is not None
    return SessionRecord(
        key,
        hex_hash(h),
        u,
        int(c) / US,
        int(last) / US,
        int(d) / US,
        int(a) / US if a else None,
        int(remaining) / US,
        x,
        i,
        int(auth) / US if auth else None,
        int(rot) / US if rot else None,
    )


def ended_by(raw: Sequence[Any]) -> str | None:
    """The store call that ended an ending delivered again (see :data:`ENDING`), or ``None``."""
    return text(raw[12]) if len(raw) > 12 else None


def ended_for(raw: Sequence[Any]) -> str | None:
    """The reason the call that ended an ending delivered again was given, or ``None``."""
    return text(raw[13]) if len(raw) > 13 else None


# The cluster layout: 64 buckets, one per character a key can start with (URL-safe base64).
# A user's sessions share the bucket of their username, and each key starts with its bucket's
# character, so a call finds a session's bucket from its key alone.
ALPHABET = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
BUCKET_OF = {char: i for i, char in enumerate(ALPHABET)}


def bucket_of_user(username: str) -> int:
    """The bucket (of 64) that holds ``username``'s sessions on a cluster."""
    return zlib.crc32(username.encode("utf-8", "surrogatepass")) % len(ALPHABET)


def tags() -> list[str]:
    """Each bucket's hash tag: the first number whose slot falls in the bucket's 64th of the
    slots, so that the buckets spread evenly over the slots, hence over the primaries. Stored
    layout: changing it would hide every stored session."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < len(ALPHABET):
        tag = str(n)
        found.setdefault(key_slot(tag.encode()) * len(ALPHABET) // REDIS_CLUSTER_HASH_SLOTS, tag)
        n += 1
    return [found[i] for i in range(len(ALPHABET))]
