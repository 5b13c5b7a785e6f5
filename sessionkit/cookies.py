"""The session cookie: how a browser holds its session key where page scripts cannot read it.

:class:`SessionCookie` writes and clears the ``Set-Cookie`` header with secure attributes and
reads the key back out of a ``Cookie`` header with a tolerant parser. It needs no web
framework, so :mod:`sessionkit.starlette` and :mod:`sessionkit.socketio` share it::

    from sessionkit.cookies import SessionCookie

    cookie = SessionCookie()  # __Host-session; Secure; HttpOnly; SameSite=Lax; Path=/
    response = JSONResponse({"accepted": True})
    cookie.set(response, key)  # at login
    cookie.clear(response)  # at logout
"""

from __future__ import annotations

import re
from dataclasses import KW_ONLY, dataclass
from typing import Final, Literal, Protocol

__all__ = ("SameSite", "SessionCookie", "read_cookie")

SameSite = Literal["lax", "strict", "none"]

# RFC 6265: a cookie name is an RFC 7230 token; a key is made of URL-safe characters only.
_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_VALUE = re.compile(r"^[A-Za-z0-9_\-]+$")
_DOMAIN = re.compile(r"^\.?[A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9])?$")
_PATH = re.compile(r"^/[^;\x00-\x1f\x7f]*$")
_HOST_PREFIX: Final = "__Host-"
_SECURE_PREFIX: Final = "__Secure-"
_EPOCH: Final = "Thu, 01 Jan 1970 00:00:00 GMT"


class _Headers(Protocol):
    def append(self, key: str, value: str) -> None: ...


class _Response(Protocol):
    @property
    def headers(self) -> _Headers: ...


def read_cookie(header: str, name: str) -> str | None:
    """Find one cookie's value in a ``Cookie`` request header, the way browsers send it.

    The parser is tolerant, as browsers are: a neighbouring cookie that breaks RFC 6265
    (``prefs={"a": 1}``, ``name=John Doe``, ``a=1;;``, a bare word) is skipped, never a
    reason to give up. Of several cookies with that name, the first wins (browsers send the
    one with the longest path first).

    :param header: the ``Cookie`` header's value (``""`` when there is none).
    :param name: the cookie's name.
    :return: the cookie's value without surrounding double quotes, or ``None`` if the header
        has no such cookie or its value is empty.
    """
    for chunk in header.split(";"):
        found, sep, value = chunk.partition("=")
        if sep and found.strip() == name:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            if value:
                return value
    return None


@dataclass(frozen=True, slots=True)
class SessionCookie:
    """The cookie that carries a session key to and from a browser.

    It is a browser-session cookie (no ``Max-Age``): the server's timeouts decide when the
    session ends, and a dead key in a cookie is answered ``401`` and cleared.

    The defaults are what OWASP asks for: ``HttpOnly`` (page scripts cannot read the key),
    ``Secure``, ``SameSite=Lax`` and the ``__Host-`` prefix (only this host, over a secure
    channel, for the whole site: no sibling subdomain can plant or shadow it). They work in
    development too: browsers treat ``http://127.0.0.1`` and ``http://localhost`` as secure
    contexts and accept such a cookie from them.

    :param name: the cookie's name; a ``__Host-`` name needs ``secure=True``, ``path="/"`` and
        no ``domain``; a ``__Secure-`` name needs ``secure=True``.
    :param secure: send the cookie over HTTPS (and loopback) only.
    :param http_only: hide the cookie from page scripts (``document.cookie``).
    :param same_site: ``"lax"``, ``"strict"`` or ``"none"`` (which needs ``secure=True``).
    :param path: the URL path the browser sends the cookie to.
    :param domain: the domain the cookie is shared with, or ``None`` for this host only.
    :raises TypeError: for an option of the wrong type.
    :raises ValueError: for a malformed name, path or domain, or attributes that browsers
        would refuse together.

    Example::

        cookie = SessionCookie()
        app = Starlette(routes=[Route("/api/me", RequireSession(me, sm, cookie=cookie))])
    """

    name: str = "__Host-session"
    _: KW_ONLY
    secure: bool = True
    http_only: bool = True
    same_site: SameSite = "lax"
    path: str = "/"
    domain: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ValueError(f"cookie name must be a non-empty token, not {self.name!r}")
        for option in ("secure", "http_only"):
            if not isinstance(getattr(self, option), bool):
                raise TypeError(f"{option} must be a bool")
        if self.same_site not in ("lax", "strict", "none"):
            raise ValueError(f"same_site must be 'lax', 'strict' or 'none', not {self.same_site!r}")
        if not isinstance(self.path, str) or not _PATH.fullmatch(self.path):
            raise ValueError(f"path must start with '/' and hold no ';', not {self.path!r}")
        if self.domain is not None and (
            not isinstance(self.domain, str) or not _DOMAIN.fullmatch(self.domain)
        ):
            raise ValueError(f"domain must be a host name, not {self.domain!r}")
        if self.same_site == "none" and not self.secure:
            raise ValueError("same_site='none' needs secure=True: browsers refuse it otherwise")
        if self.name.startswith(_SECURE_PREFIX) and not self.secure:
            raise ValueError("a __Secure- cookie needs secure=True")
        if self.name.startswith(_HOST_PREFIX) and (
            not self.secure or self.path != "/" or self.domain is not None
        ):
            raise ValueError("a __Host- cookie needs secure=True, path='/' and no domain")

    @classmethod
    def of(cls, cookie: str | SessionCookie) -> SessionCookie:
        """Take a ``cookie=`` option as given: a :class:`SessionCookie` stays as it is; a bare
        name gets the other defaults, with ``secure`` only where the name needs it
        (``__Host-``, ``__Secure-``).

        :param cookie: a :class:`SessionCookie` or a cookie name.
        :return: the cookie.
        :raises TypeError: for anything else.
        :raises ValueError: for a malformed name.
        """
        if isinstance(cookie, SessionCookie):
            return cookie
        if not isinstance(cookie, str):
            raise TypeError(
                f"cookie must be a SessionCookie or a name, not {type(cookie).__name__}"
            )
        return cls(cookie, secure=cookie.startswith((_HOST_PREFIX, _SECURE_PREFIX)))

    def _attributes(self) -> str:
        parts = [f"Path={self.path}"]
        if self.domain is not None:
            parts.append(f"Domain={self.domain}")
        if self.secure:
            parts.append("Secure")
        if self.http_only:
            parts.append("HttpOnly")
        parts.append(f"SameSite={self.same_site.capitalize()}")
        return "; ".join(parts)

    def header(self, key: str, *, max_age: int | None = None) -> str:
        """The ``Set-Cookie`` header value that hands ``key`` to the browser.

        :param key: a session key, as :meth:`~sessionkit.SessionManager.load_new_session`
            made it.
        :param max_age: seconds the browser keeps the cookie across restarts ("remember
            me"); ``None`` for a browser-session cookie, dropped when the browser closes.
        :return: the header's value.
        :raises ValueError: if ``key`` holds characters a session key never has (the message
            does not quote it), or ``max_age`` is not a positive whole number of seconds.
        """
        if not isinstance(key, str) or not _VALUE.fullmatch(key):
            raise ValueError("a session key must be a non-empty str of URL-safe characters")
        if max_age is None:
            return f"{self.name}={key}; {self._attributes()}"
        if isinstance(max_age, bool) or not isinstance(max_age, int) or max_age < 1:
            raise ValueError(f"max_age must be a positive int of seconds, not {max_age!r}")
        return f"{self.name}={key}; Max-Age={max_age}; {self._attributes()}"

    def clear_header(self) -> str:
        """The ``Set-Cookie`` header value that makes the browser drop the cookie.

        :return: the header's value (an empty, already expired cookie with the same
            attributes, which a browser needs to match and replace a prefixed cookie).
        """
        return f'{self.name}=""; Max-Age=0; Expires={_EPOCH}; {self._attributes()}'

    def set(self, response: _Response, key: str, *, max_age: int | None = None) -> None:
        """Add the ``Set-Cookie`` header that hands ``key`` to the browser.

        :param response: a Starlette ``Response`` (anything whose ``headers`` has
            ``append(name, value)``).
        :param key: the session key.
        :param max_age: seconds the browser keeps a persistent cookie, or ``None`` (a
            browser-session cookie).
        :raises ValueError: if ``key`` cannot be a session key, or ``max_age`` is not positive.
        """
        response.headers.append("set-cookie", self.header(key, max_age=max_age))

    def clear(self, response: _Response) -> None:
        """Add the ``Set-Cookie`` header that makes the browser drop the cookie (at logout,
        or when the key it holds is dead).

        :param response: a Starlette ``Response`` (anything whose ``headers`` has
            ``append(name, value)``).
        """
        response.headers.append("set-cookie", self.clear_header())

    def read(self, header: str) -> str | None:
        """Read the key out of a ``Cookie`` request header (see :func:`read_cookie`).

        :param header: the ``Cookie`` header's value.
        :return: the key, or ``None``.
        """
        return read_cookie(header, self.name)
