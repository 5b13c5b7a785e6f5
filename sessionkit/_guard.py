"""The session check that :mod:`sessionkit.starlette`'s guards share: where a request's key
comes from, the same-origin rule for a key that came from the cookie, and how a failed check
is answered. Import the public names from :mod:`sessionkit.starlette`."""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import re
from collections.abc import Awaitable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection

from sessionkit.cookies import SessionCookie, read_cookie
from sessionkit.exceptions import SessionError, SessionNotFound, StoreUnavailable
from sessionkit.keys import hash_key
from sessionkit.models import ClientInfo, SessionDetails

if TYPE_CHECKING:
    from starlette.types import Message, Scope, Send

    from sessionkit.manager import SessionManager

__all__ = (
    "DOWN",
    "RENEWED_COOKIE",
    "RETRY_AFTER",
    "SOURCES",
    "STATE_KEY",
    "GuardOptions",
    "SessionCheck",
    "SessionRequired",
    "body",
    "check_header",
    "check_origin",
    "check_origins",
    "check_sources",
    "close_code",
    "find_key",
    "no_store",
    "request_client",
    "same_origin",
    "sending_no_store",
    "unsafe",
    "withheld_cookie_hint",
)

#: Where a key may come from, in the order they are tried by default.
SOURCES: Final = ("header", "bearer", "cookie")
#: The ``request.state`` attribute that holds the :class:`SessionDetails` of a checked request.
STATE_KEY: Final = "session"
#: The scope key where a check leaves the ``Set-Cookie`` header of a renewed key, for the
#: guard to add to its response. The one that adds it takes it out of the scope: guards nested
#: in one another (a guarded ``Mount`` around a guarded route, the middleware around either)
#: would each add it again.
RENEWED_COOKIE: Final = "sessionkit.renewed_cookie"

_MISSING = "no session key: log in first"
# A client (a browser, httpx, Starlette's TestClient) keeps a Secure cookie to itself over plain
# http, loopback aside: a 401 for "no key" is then a transport problem, not a missing login.
_WITHHELD = (
    "; this request came over plain http:// to {host} with no cookie, and clients withhold a"
    " Secure cookie there (loopback aside): use https:// (a test client too:"
    " base_url='https://testserver')"
)
_LOOPBACK_NAMES: Final = frozenset({"localhost", "localhost."})
_DEAD = "session expired or unknown: log in again"
#: What a 503 says when the session store cannot be reached, and how long it asks a client to
#: wait: a store's outage is usually over in seconds (a failover, a restart), and a client that
#: retried at once would only add load to it.
DOWN: Final = "the session store is unavailable: try again"
RETRY_AFTER: Final = 5  # seconds
_SUSPICIOUS = "session ended: it is being used from another browser or network; log in again"
_STALE = "this needs a fresh login: enter your credentials again"
_CROSS_SITE = "cross-site request refused: the session cookie works from this site's pages only"
_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
# scheme://host[:port] as a browser writes an Origin: a DNS name (ASCII, punycode for others),
# an IPv4 address or a bracketed IPv6 address; no path, query, user or wildcard.
_ORIGIN = re.compile(
    r"(?P<scheme>https?)://"
    r"(?P<host>[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*"
    r"|\[[0-9a-f:.]+\])"
    r"(?::(?P<port>[0-9]{1,5}))?"
)
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # a header name (RFC 9110's token)
_NO_STORE_HEADER: Final = (b"cache-control", b"no-store")


class SessionRequired(SessionError, HTTPException):
    """Raised by :class:`SessionDependency` when a request carries no live session key.

    It is a Starlette ``HTTPException`` (status 401; 403 for a cross-site request carrying the
    session cookie; 503 when the store is down), so an app without a handler for it still
    answers with that status; register :func:`session_required_handler` to answer with the
    seed's ``{"logout": true, ...}`` body (``"logout"`` is true for 401 only). A 401 to a key
    that came from the session cookie carries the ``Set-Cookie`` header that clears it.

    With ``reauthenticate`` (a guard's ``max_auth_age`` passed: the session lives, only the
    credential is stale) it is a 401 whose body is ``{"reauthenticate": true, "logout":
    false, ...}``, and the cookie is kept.
    """

    def __init__(
        self, message: str, *, status_code: int = 401, reauthenticate: bool = False
    ) -> None:
        headers = {"WWW-Authenticate": "Bearer"} if status_code == 401 else None
        if status_code == 503:
            headers = {"Retry-After": str(RETRY_AFTER)}
        HTTPException.__init__(self, status_code=status_code, detail=message, headers=headers)
        self.reauthenticate = reauthenticate


def find_key(
    raw: Iterable[tuple[bytes, bytes]], sources: Iterable[str], *, header: bytes, cookie: str
) -> tuple[str | None, str | None]:
    # The key and the source it came from: a cookie-borne key gets the CSRF check. Read from
    # the scope's raw headers as Starlette's Headers.get reads them (names in lower case, as
    # ASGI servers give them; the first of a repeated header), without building a Headers.
    # ``header``: the key's header name, in lower case and encoded (once, by the caller).
    for source in sources:
        if source == "header":
            value = _first(raw, header)
        elif source == "bearer":
            scheme, _, value = (_first(raw, b"authorization") or "").partition(" ")
            if scheme.lower() != "bearer":
                value = ""
            value = value.strip()
        elif source == "cookie":
            value = read_cookie(_first(raw, b"cookie") or "", cookie)
        else:
            raise ValueError(f"unknown session key source {source!r} (known: {', '.join(SOURCES)})")
        if value:
            return value, source
    return None, None


def _first(raw: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    for found, value in raw:
        if found == name:
            return value.decode("latin-1")
    return None


def check_origin(origin: object) -> str:
    # An origin as browsers write it in an Origin header, or a ValueError: an entry that can
    # never match one would silently refuse the site it was meant to let in.
    match = (
        _ORIGIN.fullmatch(origin.lower()) if isinstance(origin, str) and origin.isascii() else None
    )
    port = match["port"] if match else None
    if match is None or (port is not None and not 0 < int(port) < 65536):
        raise ValueError(
            "a trusted origin is scheme://host[:port] (http or https, an ASCII host, a port "
            f"from 1 to 65535, no path or wildcard), not {origin!r}"
        )
    scheme, host = match["scheme"], match["host"]
    if port is None or int(port) == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"  # a browser never writes the default port
    return f"{scheme}://{host}:{int(port)}"


def check_origins(origins: Iterable[str]) -> frozenset[str]:
    if isinstance(origins, str):
        raise TypeError("trusted_origins must be a collection of origins, not one str")
    return frozenset(check_origin(origin) for origin in origins)


def same_origin(conn: HTTPConnection, trusted: frozenset[str]) -> bool:
    # What a browser says about where a request comes from: Sec-Fetch-Site where it sends
    # it (every current browser), else Origin, which every browser sends on a cross-site
    # POST and on a WebSocket handshake. A request with neither is refused: it is no browser
    # following a link, and an API client has the header and bearer sources.
    headers = conn.headers
    origin = headers.get("origin", "").lower()
    if origin and origin in trusted:
        return True
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site.lower() in ("same-origin", "none")
    if not origin or origin == "null":
        return False
    scheme = {"ws": "http", "wss": "https"}.get(conn.url.scheme, conn.url.scheme)
    return origin == f"{scheme}://{conn.url.netloc}".lower()


def no_store(raw: list[tuple[bytes, bytes]]) -> None:
    # What a session's pages are: personal. No shared cache, and no back button on a shared
    # computer, may show them to the next person. The app's own Cache-Control wins, in any
    # case of its name. On a raw ASGI header list (a MutableHeaders' ``.raw``): every guarded
    # response passes here.
    for name, _ in raw:
        if name.lower() == b"cache-control":
            return
    raw.append(_NO_STORE_HEADER)


def sending_no_store(send: Send, renewed: str | None = None) -> Send:
    # The ASGI send of a response that a guard let through: marked no-store on its way out,
    # with the cookie of a renewed key (on the raw header list: a MutableHeaders costs more).
    # A plain function handing back send's own awaitable, not a coroutine function awaiting
    # it: a coroutine per message (two per response) was ~0.2 us of every guarded request.
    def send_marked(message: Message) -> Awaitable[None]:
        if message["type"] == "http.response.start":
            headers = message["headers"] = list(message.get("headers", ()))
            no_store(headers)
            if renewed is not None:
                headers.append((b"set-cookie", renewed.encode("latin-1")))
        return send(message)

    return send_marked


def close_code(exc: SessionRequired) -> int:
    # A refused WebSocket handshake: 1008 (policy violation) for a missing, dead or cross-site
    # key; 1013 (try again later) when the store is down, which is no verdict on the key.
    return 1013 if exc.status_code == 503 else 1008


def unsafe(scope: Scope) -> bool:
    # A WebSocket is a two-way channel that a foreign page could open with the cookie: never
    # a safe method (GET, HEAD, OPTIONS only read).
    return scope["type"] == "websocket" or scope.get("method") not in _SAFE_METHODS


def check_sources(sources: Iterable[str]) -> tuple[str, ...]:
    chosen = tuple(sources)
    unknown = [s for s in chosen if s not in SOURCES]
    if unknown or not chosen:
        raise ValueError(f"sources must be some of {SOURCES}, not {chosen!r}")
    return chosen


def check_header(header: object) -> str:
    # The key's header name, checked once, in lower case (as the raw headers hold it; ASCII).
    if not isinstance(header, str):
        raise TypeError(f"header must be a header name, not {type(header).__name__}")
    if not _TOKEN.fullmatch(header):
        raise ValueError(f"header must be an HTTP header name (a token), not {header[:40]!r}")
    return header.lower()


def withheld_cookie_hint(conn: HTTPConnection, cookie: SessionCookie) -> str:
    # The hint for a request without a key that may have lost a Secure cookie on its way:
    # none at all, over http (or ws) to a host that is not loopback. Else "".
    if not cookie.secure or "cookie" in conn.headers or conn.url.scheme not in ("http", "ws"):
        return ""
    host = (conn.url.hostname or "").lower()
    if host in _LOOPBACK_NAMES or host.endswith(".localhost"):
        return ""
    try:
        if ipaddress.ip_address(host.strip("[]")).is_loopback:
            return ""
    except ValueError:
        pass  # a name, not an address
    return _WITHHELD.format(host=host or "this host")


def body(exc: SessionRequired) -> dict[str, Any]:
    if exc.reauthenticate:
        return {"reauthenticate": True, "logout": False, "message": exc.detail}
    return {"logout": exc.status_code == 401, "message": exc.detail}


def request_client(conn: HTTPConnection) -> ClientInfo:
    # What sessionkit.starlette.client_info returns (see there).
    return scope_client(conn.scope)


def scope_client(scope: Scope) -> ClientInfo:
    # request_client from the ASGI scope itself, as Starlette's conn.client and
    # conn.headers.get read it: a guard checks it on every request of a browser session.
    address = scope.get("client")
    ip = address[0] if address is not None else None
    agent = _first(scope["headers"], b"user-agent")
    return ClientInfo(ip=ip[:128] if ip else None, user_agent=agent[:512] if agent else None)


def check_auth_age(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"max_auth_age must be a number of seconds, not {type(value).__name__}")
    if not 0 < value < math.inf:
        raise ValueError(f"max_auth_age must be a positive finite number of seconds, not {value}")
    return float(value)


@dataclasses.dataclass(frozen=True)
class GuardOptions:
    # What a guard (RequireSession, SessionDependency, SessionAuthBackend) was given, checked
    # once by checked(): each guard's public signature names the options and their defaults
    # (and documents them), then hands them here, and the check reads them from here only.
    sources: tuple[str, ...]
    header: str  # lower case, as Starlette's headers are read
    cookie: SessionCookie
    restart: bool
    trusted_origins: frozenset[str]
    max_auth_age: float | None  # seconds

    @classmethod
    def checked(
        cls,
        sources: Iterable[str],
        header: str,
        cookie: str | SessionCookie,
        restart: bool,
        trusted_origins: Iterable[str],
        max_auth_age: float | None,
    ) -> GuardOptions:
        # In this order, as the guards always checked them: the first bad option is the one
        # reported.
        max_age = check_auth_age(max_auth_age)
        return cls(
            sources=check_sources(sources),
            header=check_header(header),
            cookie=SessionCookie.of(cookie),
            restart=restart,
            trusted_origins=check_origins(trusted_origins),
            max_auth_age=max_age,
        )


class SessionCheck:
    # What the route guards and the auth backend share: their options, and the check itself.

    def __init__(self, manager: SessionManager, options: GuardOptions) -> None:
        self.manager = manager
        self.options = options
        # Once, not per request: the key's header name as the raw headers hold it, and
        # whether that header is the first source (the usual case: read without find_key).
        self._header = options.header.encode("ascii")
        self._header_first = options.sources[0] == "header"

    async def _check(
        self, scope: Scope, *, renew: bool = False, conn: HTTPConnection | None = None
    ) -> SessionDetails:
        # ``renew``: the guard can set a cookie on its response (a renewal needs that).
        # ``conn``: the caller's Request (or WebSocket), if it has one; else one is built only
        # where a rule needs it (the origin rule on an unsafe method, a 401's hint), never on
        # the common path.
        options = self.options
        sources, cookie, raw = options.sources, options.cookie, scope["headers"]
        key = _first(raw, self._header) if self._header_first else None
        if key:
            from_cookie = False
        else:  # the other sources, in their order (the header again: it was empty or absent)
            key, source = find_key(raw, sources, header=self._header, cookie=cookie.name)
            from_cookie = source == "cookie"
        # Before the store is asked: a forged request must not even restart the timer.
        # (``conn`` compared with None: a connection is a Mapping, whose truth is its length)
        if from_cookie and unsafe(scope):
            conn = HTTPConnection(scope) if conn is None else conn
            if not same_origin(conn, options.trusted_origins):
                raise SessionRequired(_CROSS_SITE, status_code=403)
        if key is None:
            hint = ""
            if "cookie" in sources:
                conn = HTTPConnection(scope) if conn is None else conn
                hint = withheld_cookie_hint(conn, cookie)
            raise SessionRequired(_MISSING + hint)
        manager = self.manager
        try:
            try:  # a key that cannot be one is an unknown key to the manager: SessionNotFound
                if options.restart:
                    details = await manager.touch_session(key)  # one store call, not two
                else:
                    details = await manager.get_session_details(key)
            except SessionNotFound:
                raise SessionRequired(_DEAD) from None
            except StoreUnavailable as exc:
                # Never a guess: the client may well be logged in, so do not tell it to log out.
                raise SessionRequired(DOWN, status_code=503) from exc
            if details.client is not None:
                await self._check_client(scope, details)
        except SessionRequired as exc:
            if from_cookie and exc.status_code == 401:
                exc.headers = {**(exc.headers or {}), "set-cookie": cookie.clear_header()}
            raise
        if options.max_auth_age is not None:
            # By this process's clock, against the store's: NTP keeps them within far less
            # than any sensible max_auth_age (minutes).
            authenticated = details.authenticated_at or details.created_at
            age = (datetime.now(UTC) - authenticated).total_seconds()
            if age > options.max_auth_age:
                # The session lives: the 401 keeps the cookie (no clearing header).
                raise SessionRequired(_STALE, reauthenticate=True)
        if renew and from_cookie and manager.renew_every is not None:
            # Only a cookie-borne key: a client that sent its key in a header would not learn
            # the new one, and would lose its session when the grace ends.
            details = await self._renew(scope, details)
        # As request.state would keep it (scope["state"]), without a dict built per request.
        state = scope.get("state")
        if state is None:
            scope["state"] = {STATE_KEY: details}
        else:
            state[STATE_KEY] = details
        return details

    async def _renew(self, scope: Scope, details: SessionDetails) -> SessionDetails:
        try:
            fresh = await self.manager.renew_if_due(details)
        except StoreUnavailable:
            # The request is served under its key (which works, whatever the store did);
            # the next request tries again.
            return details
        if fresh is None:
            return details
        scope[RENEWED_COOKIE] = self.options.cookie.header(fresh)
        return dataclasses.replace(
            details, key=fresh, id=hash_key(fresh), key_created_at=datetime.now(UTC)
        )

    async def _check_client(self, scope: Scope, details: SessionDetails) -> None:
        try:
            alive = await self.manager.check_client(details, scope_client(scope))
        except StoreUnavailable as exc:
            raise SessionRequired(DOWN, status_code=503) from exc
        if not alive:
            raise SessionRequired(_SUSPICIOUS)
