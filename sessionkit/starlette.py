"""Starlette and FastAPI: require a live session on a route.

:class:`RequireSession` wraps any ASGI app (a Starlette endpoint, a ``Mount``, a whole app);
:class:`SessionDependency` is the same check as a FastAPI dependency. Both read the key from the
``session_key`` header (the seed's frontend), an ``Authorization: Bearer`` header or a cookie,
restart the session's idle timer, and hand the route its :class:`~sessionkit.SessionDetails`.
A missing or dead key is answered ``401`` with ``{"logout": true, "message": ...}``, the shape
the seed's frontend logs out on::

    from starlette.applications import Starlette
    from starlette.routing import Route
    from sessionkit.starlette import RequireSession, get_session

    async def table(request):
        session = get_session(request)
        return JSONResponse({"user": session.username})

    app = Starlette(routes=[Route("/api/table", RequireSession(table, sm))])

Install with ``pip install 'sessionkit[starlette]'``.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from http.cookies import CookieError, SimpleCookie
from typing import TYPE_CHECKING, Any, Final

try:
    from starlette.exceptions import HTTPException
    from starlette.requests import HTTPConnection, Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import request_response
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "sessionkit.starlette needs Starlette: pip install 'sessionkit[starlette]'"
    ) from exc

from sessionkit.exceptions import SessionError, SessionNotFound, StoreUnavailable
from sessionkit.models import SessionDetails

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from sessionkit.manager import SessionManager

__all__ = (
    "SOURCES",
    "STATE_KEY",
    "RequireSession",
    "SessionDependency",
    "SessionRequired",
    "get_session",
    "read_session_key",
    "session_required_handler",
)

#: Where a key may come from, in the order they are tried by default.
SOURCES: Final = ("header", "bearer", "cookie")
#: The ``request.state`` attribute that holds the :class:`SessionDetails` of a checked request.
STATE_KEY: Final = "session"

_MISSING = "no session key: log in first"
_DEAD = "session expired or unknown: log in again"
_DOWN = "the session store is unavailable: try again"


class SessionRequired(SessionError, HTTPException):
    """Raised by :class:`SessionDependency` when a request carries no live session key.

    It is a Starlette ``HTTPException`` (status 401, or 503 when the store is down), so an app
    without a handler for it still answers with that status; register
    :func:`session_required_handler` to answer with the seed's ``{"logout": true, ...}`` body.
    """

    def __init__(self, message: str, *, status_code: int = 401) -> None:
        headers = {"WWW-Authenticate": "Bearer"} if status_code == 401 else None
        HTTPException.__init__(self, status_code=status_code, detail=message, headers=headers)


def read_session_key(
    conn: HTTPConnection,
    sources: Iterable[str] = SOURCES,
    *,
    header: str = "session_key",
    cookie: str = "session_key",
) -> str | None:
    """Find the session key a request carries.

    :param conn: a Starlette ``Request`` (or ``WebSocket``).
    :param sources: where to look, in order: ``"header"`` (the ``header`` header),
        ``"bearer"`` (``Authorization: Bearer <key>``), ``"cookie"`` (the ``cookie`` cookie).
    :param header: the name of the header that carries the key.
    :param cookie: the name of the cookie that carries the key.
    :return: the first key found, or ``None``.
    :raises ValueError: for an unknown source.
    """
    return _find_key(conn.headers, sources, header=header, cookie=cookie)


def get_session(request: HTTPConnection) -> SessionDetails:
    """Return the session that :class:`RequireSession` checked for this request.

    :param request: the route's request.
    :return: the session's details, as they were when the request came in.
    :raises LookupError: if no :class:`RequireSession` wraps the route.
    """
    details = request.scope.get("state", {}).get(STATE_KEY)
    if not isinstance(details, SessionDetails):
        raise LookupError("no checked session: wrap the route in sessionkit's RequireSession")
    return details


def _find_key(
    headers: Mapping[str, str], sources: Iterable[str], *, header: str, cookie: str
) -> str | None:
    for source in sources:
        if source == "header":
            value = headers.get(header)
        elif source == "bearer":
            scheme, _, value = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer":
                value = ""
            value = value.strip()
        elif source == "cookie":
            value = _cookie(headers.get("cookie", ""), cookie)
        else:
            raise ValueError(f"unknown session key source {source!r} (known: {', '.join(SOURCES)})")
        if value:
            return value
    return None


def _cookie(text: str, name: str) -> str | None:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(text)
    except CookieError:
        return None
    morsel = jar.get(name)
    return None if morsel is None else morsel.value


def _check_sources(sources: Iterable[str]) -> tuple[str, ...]:
    chosen = tuple(sources)
    unknown = [s for s in chosen if s not in SOURCES]
    if unknown or not chosen:
        raise ValueError(f"sources must be some of {SOURCES}, not {chosen!r}")
    return chosen


async def _resolve(sm: SessionManager, key: str | None, restart: bool) -> SessionDetails:
    if key is None:
        raise SessionRequired(_MISSING)
    try:  # a key that cannot be one is an unknown key to the manager: SessionNotFound
        if restart:
            return await sm.touch_session(key)  # one store call, not two
        return await sm.get_session_details(key)
    except SessionNotFound:
        raise SessionRequired(_DEAD) from None
    except StoreUnavailable as exc:
        # Never a guess: the client may well be logged in, so do not tell it to log out.
        raise SessionRequired(_DOWN, status_code=503) from exc


def _body(exc: SessionRequired) -> dict[str, Any]:
    return {"logout": exc.status_code == 401, "message": exc.detail}


async def session_required_handler(request: Request, exc: Exception) -> Response:
    """Answer a :class:`SessionRequired` with ``{"logout": true, "message": ...}``.

    Register it with ``app.add_exception_handler(SessionRequired, session_required_handler)``
    (Starlette and FastAPI alike).

    :param request: the request that failed.
    :param exc: the :class:`SessionRequired` raised.
    :return: a JSON response with the exception's status (401, or 503 if the store is down).
    """
    if not isinstance(exc, SessionRequired):  # pragma: no cover - registered for it only
        raise exc
    return JSONResponse(_body(exc), status_code=exc.status_code, headers=exc.headers)


class _SessionCheck:
    # What RequireSession and SessionDependency share: their options, and the check itself.

    def __init__(
        self,
        manager: SessionManager,
        *,
        sources: Iterable[str] = SOURCES,
        header: str = "session_key",
        cookie: str = "session_key",
        restart: bool = True,
    ) -> None:
        self.manager = manager
        self.sources = _check_sources(sources)
        self.header = header.lower()
        self.cookie = cookie
        self.restart = restart

    async def _check(self, conn: HTTPConnection) -> SessionDetails:
        key = _find_key(conn.headers, self.sources, header=self.header, cookie=self.cookie)
        details = await _resolve(self.manager, key, self.restart)
        conn.scope.setdefault("state", {})[STATE_KEY] = details
        return details


class RequireSession(_SessionCheck):
    """An ASGI wrapper that lets through only requests with a live session.

    The wrapped app finds the session's :class:`~sessionkit.SessionDetails` with
    :func:`get_session` (it is ``request.state.session``). Lifespan events pass through.

    :param app: the ASGI app to protect (an endpoint, a ``Mount``, an app).
    :param manager: the session manager.
    :param sources: where to look for the key, in order (see :func:`read_session_key`).
    :param header: the name of the header that carries the key.
    :param cookie: the name of the cookie that carries the key.
    :param restart: restart the session's idle timer on each request (the seed's
        ``restartSessionTimer`` after an API call).
    :raises ValueError: for an unknown source.

    Example::

        app = Starlette(routes=[
            Route("/api/get_table_data", RequireSession(get_table_data, sm), methods=["POST"]),
            Mount("/admin", RequireSession(admin_app, sm, sources=("cookie",))),
        ])
    """

    def __init__(
        self,
        app: ASGIApp | Callable[[Request], Awaitable[Response]],
        manager: SessionManager,
        *,
        sources: Iterable[str] = SOURCES,
        header: str = "session_key",
        cookie: str = "session_key",
        restart: bool = True,
    ) -> None:
        super().__init__(manager, sources=sources, header=header, cookie=cookie, restart=restart)
        self.app: ASGIApp = _as_asgi(app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the request's session, then call the wrapped app (ASGI)."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        try:
            await self._check(HTTPConnection(scope))
        except SessionRequired as exc:
            if scope["type"] == "websocket":
                # Closing before accepting makes the server answer the handshake with 403.
                await send({"type": "websocket.close", "code": 1008})
                return
            response = JSONResponse(_body(exc), status_code=exc.status_code, headers=exc.headers)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _as_asgi(app: Any) -> ASGIApp:
    # A Starlette request/response function is wrapped the way Route would wrap it.
    if inspect.isfunction(app) or inspect.ismethod(app):
        params = list(inspect.signature(app).parameters)
        if len(params) == 1:
            wrapped: ASGIApp = request_response(app)
            return wrapped
    asgi: ASGIApp = app
    return asgi


class SessionDependency(_SessionCheck):
    """The session check as a FastAPI dependency (it works without FastAPI: it is a plain
    callable taking a Starlette ``Request``).

    :param manager: the session manager.
    :param sources: where to look for the key, in order (see :func:`read_session_key`).
    :param header: the name of the header that carries the key.
    :param cookie: the name of the cookie that carries the key.
    :param restart: restart the session's idle timer on each request.
    :raises ValueError: for an unknown source.

    Example::

        live_session = SessionDependency(sm)
        app = FastAPI(exception_handlers={SessionRequired: session_required_handler})

        @app.post("/api/get_table_data")
        async def table(session: SessionDetails = Depends(live_session)) -> dict[str, str]:
            return {"user": session.username}
    """

    async def __call__(self, request: Request) -> SessionDetails:
        """Check ``request``'s session.

        :param request: the incoming request.
        :return: the live session's details (also put in ``request.state.session``).
        :raises SessionRequired: if the key is missing or dead (401) or the store is down (503).
        """
        return await self._check(request)
