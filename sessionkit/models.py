"""What a session looks like to callers (:class:`SessionDetails`) and to the manager
(:class:`SessionRecord`, the snapshot a store hands back)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sessionkit.keys import hash_key

__all__ = ("ClientInfo", "SessionDetails", "SessionRecord", "decode_data", "encode_data")

_MAX_IP = 128  # characters: an IPv6 address with a zone fits many times over
_MAX_USER_AGENT = 512  # characters: real user agents stay well under 300


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """Who a session was opened by, as a "your devices" page shows it: recorded at login
    (``load_new_session(..., client=ClientInfo(...))``) and kept with the session.

    :func:`sessionkit.starlette.client_info` builds one from a request.

    :param ip: the client's IP address, or ``None``.
    :param user_agent: the browser's ``User-Agent`` header, or ``None``.
    :raises TypeError: if either is neither a ``str`` nor ``None``.
    :raises ValueError: if ``ip`` is over 128 or ``user_agent`` over 512 characters.
    """

    ip: str | None = None
    user_agent: str | None = None

    def __post_init__(self) -> None:
        # Each field checked in line, not in a loop over the names: a guard builds one (the
        # request's client) and decodes one (the login's) on every request of a browser session.
        ip, agent = self.ip, self.user_agent
        if ip is not None and (type(ip) is not str or len(ip) > _MAX_IP):
            _refuse("ip", ip, _MAX_IP)
        if agent is not None and (type(agent) is not str or len(agent) > _MAX_USER_AGENT):
            _refuse("user_agent", agent, _MAX_USER_AGENT)

    def encode(self) -> str:
        """Serialise for a store: JSON text.

        :return: ``{"ip": ..., "ua": ...}`` as compact JSON.
        """
        return json.dumps({"ip": self.ip, "ua": self.user_agent}, separators=(",", ":"))

    @classmethod
    def decode(cls, text: str | None) -> ClientInfo | None:
        """Read back what :meth:`encode` wrote.

        :param text: JSON text from a store, or ``None``.
        :return: the client, or ``None`` for ``None`` or text that is not one.
        """
        if not text:
            return None
        try:
            fields = json.loads(text)
            return cls(ip=fields.get("ip"), user_agent=fields.get("ua"))
        except (ValueError, TypeError, AttributeError):
            return None


def _refuse(name: str, value: object, limit: int) -> None:
    if not isinstance(value, str):
        raise TypeError(f"ClientInfo.{name} must be a str or None")
    if len(value) > limit:
        raise ValueError(f"ClientInfo.{name} must be at most {limit} characters")


@dataclass(frozen=True, slots=True)
class SessionDetails:
    """A live session as :meth:`SessionManager.get_session_details` reports it.

    ``key`` is the raw key where the caller gave it (``get_session_details(key)``, the
    Starlette glue), and ``None`` in listings (``get_user_sessions``): a listing never hands
    out another session's key. ``id`` is public and not secret: the key's SHA-256 hex digest,
    what a "your devices" page shows and sends back to end a session
    (``delete_user_session``); it changes when the key rotates. ``client`` is the
    :class:`ClientInfo` recorded at login, or ``None``. ``authenticated_at`` is when the user
    last entered a credential: the login (:meth:`SessionManager.load_new_session`), or the
    latest :meth:`SessionManager.mark_authenticated`; it survives key rotations.
    ``key_created_at`` is when the session got its current key: its creation, or its latest
    rotation (what ``SessionManager(renew_every=...)`` counts from). Times are
    UTC-aware wall-clock datetimes (the manager always sets every one; ``authenticated_at``
    defaults to ``None`` only so that code building details by hand keeps working); ``data``
    is a copy of the session's data. The ``repr()`` leaves the key out.
    """

    key: str | None = field(repr=False)
    id: str
    username: str
    created_at: datetime
    last_active_at: datetime
    expires_at: datetime
    data: Any
    client: ClientInfo | None = None
    authenticated_at: datetime | None = None
    key_created_at: datetime | None = None


class SessionRecord(NamedTuple):
    """A snapshot of one stored session, as a :class:`~sessionkit.stores.SessionStore` returns it.

    ``key`` is ``None`` where the store knows only the key's hash (a Redis sweep claiming the
    session of another process). Times are POSIX timestamps (seconds, wall clock);
    ``remaining`` is the time left until ``expires_at`` by the store's own clock, and is
    zero or negative for a session past its deadline. ``data`` is JSON text or ``None``.
    ``event_id``, on a record a store call returns for a session it ended, names that ending
    in the store's outbox (see :attr:`SessionStore.redelivery_after
    <sessionkit.stores.SessionStore.redelivery_after>`).
    """

    # A NamedTuple, not a frozen dataclass: every read and every ending builds one, and a
    # tuple is built several times faster.

    key: str | None
    key_hash: str
    username: str
    created_at: float
    last_active_at: float
    expires_at: float
    absolute_expires_at: float | None
    remaining: float
    data: str | None
    client: str | None = None  # the ClientInfo recorded at login, as JSON text
    # When the user last entered a credential; None: at creation (never marked since).
    authenticated_at: float | None = None
    # When the session got its current key; None: at creation (never rotated).
    rotated_at: float | None = None
    # On a record of an ending: the ending's id in the store's outbox (a store shared by
    # processes), the same on every delivery of it; None where the store keeps none.
    event_id: str | None = None

    @property
    def reached_absolute_timeout(self) -> bool:
        """Whether the deadline is the absolute cap rather than the idle timeout."""
        cap = self.absolute_expires_at
        return cap is not None and self.expires_at >= cap

    def details(self, key: str | None) -> SessionDetails:
        """Turn the snapshot into the public :class:`SessionDetails`.

        Its times and data are converted when first read (then kept): a guarded request that
        reads only the username pays for neither.

        :param key: the raw key to show, or ``None`` (listings never show one).
        """
        details = _new(_LazyDetails)
        _set_key(details, key)
        _set_username(details, self.username)
        # The client now: every guard reads it (and most sessions of API clients have none).
        client = self.client
        _set_client(details, None if client is None else ClientInfo.decode(client))
        _set_record(details, self)
        return details


# The slots of SessionDetails' fields: a _LazyDetails fills them as they are first read.
_SLOTS: dict[str, Any] = {f.name: SessionDetails.__dict__[f.name] for f in fields(SessionDetails)}
_new = object.__new__
_set_key = _SLOTS["key"].__set__
_set_username = _SLOTS["username"].__set__
_set_client = _SLOTS["client"].__set__


def _wall(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _lazy(name: str, convert: Callable[[_LazyDetails, SessionRecord], Any]) -> Any:
    # A field read from the record on first use, then from its slot (where __init__, used by
    # dataclasses.replace and copies, also puts it).
    slot = _SLOTS[name]
    read, write = slot.__get__, slot.__set__

    def get(self: _LazyDetails) -> Any:
        try:
            return read(self)
        except AttributeError:
            value = convert(self, self._record)
            write(self, value)
            return value

    return property(get, write)


def _id(details: _LazyDetails, record: SessionRecord) -> str:
    # A record whose key_hash was left empty (MemoryStore's hot path: a guarded request
    # rarely reads the id) names its session by record.key, the key it is stored under.
    return record.key_hash or hash_key(record.key or "")


def _created(details: _LazyDetails, record: SessionRecord) -> datetime:
    return _wall(record.created_at)


def _authenticated(details: _LazyDetails, record: SessionRecord) -> datetime:
    at = record.authenticated_at
    return details.created_at if at is None else _wall(at)  # one datetime for the usual case


def _key_created(details: _LazyDetails, record: SessionRecord) -> datetime:
    at = record.rotated_at
    return details.created_at if at is None else _wall(at)


class _LazyDetails(SessionDetails):
    # The SessionDetails a store's record turns into (SessionRecord.details): equal to, and
    # read like, the one SessionDetails(...) would build from the same values, but its times
    # (five datetimes), data (JSON decoding) and id (when the record has no digest) wait
    # until they are read, which most guarded requests never do. A frozen dataclass all the
    # same: its fields cannot be set.

    __slots__ = ("_record",)
    _record: SessionRecord

    id = _lazy("id", _id)
    created_at = _lazy("created_at", _created)
    last_active_at = _lazy("last_active_at", lambda d, r: _wall(r.last_active_at))
    expires_at = _lazy("expires_at", lambda d, r: _wall(r.expires_at))
    data = _lazy("data", lambda d, r: decode_data(r.data))
    authenticated_at = _lazy("authenticated_at", _authenticated)
    key_created_at = _lazy("key_created_at", _key_created)

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in _SLOTS)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SessionDetails):  # a SessionDetails built by hand too
            return self._values() == tuple(getattr(other, name) for name in _SLOTS)
        return NotImplemented

    __hash__ = SessionDetails.__hash__

    def __repr__(self) -> str:
        shown = (f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.repr)
        return f"SessionDetails({', '.join(shown)})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Copied or pickled as the plain SessionDetails it stands for.
        return SessionDetails, self._values()


_set_record = _LazyDetails.__dict__["_record"].__set__


def encode_data(data: Any) -> str | None:
    """Serialise session data to JSON text; the check that every store applies on set.

    :param data: any JSON-serialisable value, or ``None``.
    :return: JSON text, or ``None`` for ``None``.
    :raises TypeError: if ``data`` cannot be represented in JSON (including NaN, infinities
        and circular references).
    """
    if data is None:
        return None
    try:
        return json.dumps(data, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        raise TypeError(f"session data must be JSON-serialisable: {exc}") from exc


def decode_data(text: str | None) -> Any:
    """Turn stored JSON text back into a fresh Python value (so readers get a copy)."""
    return None if text is None else json.loads(text)
