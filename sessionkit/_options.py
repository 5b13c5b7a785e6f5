"""What a :class:`~sessionkit.SessionManager`'s callers pass it, checked: its options (checked
once, then frozen in :class:`Options`), the seconds, usernames and session ids its calls take,
and how a refusal names a key (never the key itself)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from numbers import Real
from typing import Literal, get_args

from sessionkit.events import SessionLimitPolicy
from sessionkit.exceptions import SessionNotFound
from sessionkit.keys import short_hash

MIN_SESSION_TIMEOUT = 2  # seconds, as in the seed
# One year, in seconds: no deadline, TTL or timer can overflow.
MAX_SESSION_TIMEOUT = 365 * 24 * 60 * 60

#: What a changed client does besides ``session_suspicious``: nothing more, or end the session.
SuspiciousPolicy = Literal["event", "end"]

_SESSION_ID = re.compile(r"[0-9a-f]{64}")  # a session's public id: its key's SHA-256 hex


@dataclass(frozen=True, slots=True)
class Options:
    """The options a manager was made with that no later call changes (the idle timeout is
    the manager's own: ``set_session_timeout`` changes it)."""

    absolute: float | None  # seconds from creation, or no cap
    max_per_user: int | None
    refuse: bool  # on_session_limit="refuse"
    end_suspicious: bool  # on_suspicious="end"
    renew_every: float | None  # seconds
    renew_grace: float  # seconds
    warn_before: float | None  # seconds

    @classmethod
    def check(
        cls,
        *,
        timeout: float,
        absolute_timeout: object,
        max_sessions_per_user: object,
        warn_before: object,
        on_session_limit: object,
        on_suspicious: object,
        renew_every: object,
        renew_grace: object,
    ) -> Options:
        """Check the constructor's options (``timeout`` already checked) and freeze them.

        :raises TypeError: for an option of the wrong type.
        :raises ValueError: for an option out of range.
        """
        absolute = (
            None if absolute_timeout is None else seconds(absolute_timeout, "absolute_timeout")
        )
        if max_sessions_per_user is not None:
            if isinstance(max_sessions_per_user, bool) or not isinstance(
                max_sessions_per_user, int
            ):
                raise TypeError("max_sessions_per_user must be an int")
            if max_sessions_per_user < 1:
                raise ValueError("max_sessions_per_user must be at least 1")
        refuse = _choice(on_session_limit, "on_session_limit", get_args(SessionLimitPolicy))
        end = _choice(on_suspicious, "on_suspicious", get_args(SuspiciousPolicy))
        every = None if renew_every is None else seconds(renew_every, "renew_every")
        grace = seconds(renew_grace, "renew_grace", 0)
        if every is not None and grace >= every:
            raise ValueError("renew_grace must be less than renew_every")
        warn = None if warn_before is None else seconds(warn_before, "warn_before", 0)
        warns_in_time(timeout, warn, "timeout")
        return cls(
            absolute=absolute,
            max_per_user=max_sessions_per_user,
            refuse=refuse == "refuse",
            end_suspicious=end == "end",
            renew_every=every,
            renew_grace=grace,
            warn_before=warn,
        )


def seconds(value: object, name: str, minimum: float = MIN_SESSION_TIMEOUT) -> float:
    """``value`` as seconds within ``minimum`` and :data:`MAX_SESSION_TIMEOUT`.

    :raises TypeError: if it is not a real number (or is a bool).
    :raises ValueError: if it is NaN or out of range.
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    result = float(value)
    if math.isnan(result) or not minimum <= result <= MAX_SESSION_TIMEOUT:
        raise ValueError(
            f"{name} must be a number of seconds from {minimum} to {MAX_SESSION_TIMEOUT}"
            f" (one year), not {value!r}"
        )
    return result


def warns_in_time(timeout: float, warn_before: float | None, name: str) -> float:
    """``timeout``, if longer than ``warn_before``.

    :raises ValueError: if it is not.
    """
    # A warning due at or before the session's start would fire at once, not "before" anything.
    if warn_before is not None and warn_before >= timeout:
        raise ValueError(
            f"{name} ({timeout:g} s) must be longer than warn_before ({warn_before:g} s)"
        )
    return timeout


def username(value: object) -> str:
    """``value`` as a username every store can write.

    :raises TypeError: if it is not a str.
    :raises ValueError: if it is empty or holds a lone surrogate.
    """
    if not isinstance(value, str):
        raise TypeError(f"username must be a str, not {type(value).__name__}")
    if not value:
        raise ValueError("username must not be empty")
    if not value.isascii():
        try:  # every store must be able to write it: no lone surrogates
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("username must be valid Unicode text, not a lone surrogate") from None
    return value


def is_session_id(value: str) -> bool:
    """Whether ``value`` could be a session's public id (its key's SHA-256 hex digest)."""
    return _SESSION_ID.fullmatch(value) is not None


def describe_key(key: object) -> str:
    """How messages and logs name a key: never the key itself."""
    return f"key {short_hash(key)}" if isinstance(key, str) else f"a {type(key).__name__} key"


def not_found(key: object) -> SessionNotFound:
    """The error a call raises for a key that names no live session."""
    return SessionNotFound(f"no live session for {describe_key(key)}")


def _choice(value: object, name: str, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if value not in allowed:
        quoted = " or ".join(repr(a) for a in allowed)
        raise ValueError(f"{name} must be {quoted}, not {value!r}")
    return value
