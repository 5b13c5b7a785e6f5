"""Starlette and FastAPI: require a live session on a route.

:class:`RequireSession` wraps any ASGI app (a Starlette endpoint, a ``Mount``, a whole app);
:class:`SessionDependency` is the same check as a FastAPI dependency, and
:class:`SessionAuthBackend` the same for Starlette's ``AuthenticationMiddleware``. Each reads
the key from the ``session_key`` header (the seed's frontend), an ``Authorization: Bearer``
header or a cookie, restarts the session's idle timer, and hands the route its
:class:`~sessionkit.SessionDetails`. A missing or dead key is answered ``401`` with
``{"logout": true, "message": ...}``, the shape the seed's frontend logs out on.

For browsers, put the key in a :class:`~sessionkit.cookies.SessionCookie` (``HttpOnly``: page
scripts never see it) and pass the same cookie as ``cookie=``. A key that came from the cookie
is accepted on an unsafe method (anything but GET, HEAD, OPTIONS; and every WebSocket) only from
the site's own pages (:func:`same_origin`: ``Sec-Fetch-Site``, ``Origin``, ``trusted_origins=``):
a cross-site request is answered ``403 {"logout": false, ...}`` (a WebSocket handshake is closed
with 1008). A ``401`` to a cookie-borne key clears the cookie; a response let through is marked
``Cache-Control: no-store``. :func:`log_in` and :func:`log_out` do a login's and a logout's
part (login CSRF, the carried session, the cookie, ``no-store``, ``Clear-Site-Data``)::

    from starlette.applications import Starlette
    from starlette.routing import Route
    from sessionkit.starlette import RequireSession, SessionCookie, get_session, log_in, log_out

    cookie = SessionCookie()  # __Host-session; Secure; HttpOnly; SameSite=Lax; Path=/

    async def login(request):
        ...  # check the password first
        response = JSONResponse({"accepted": True})  # the key is not in the body
        await log_in(sm, request, response, username, cookie=cookie)
        return response

    async def logout(request):
        response = JSONResponse({"accepted": True})
        await log_out(sm, request, response, cookie=cookie)
        return response

    async def table(request):
        return JSONResponse({"user": get_session(request).username})

    app = Starlette(routes=[
        Route("/api/login", login, methods=["POST"]),
        Route("/api/logout", logout, methods=["POST"]),
        Route("/api/table", RequireSession(table, sm, cookie=cookie), methods=["POST"]),
    ])

Install with ``pip install 'sessionkit[starlette]'``.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

try:
    from starlette.authentication import (
        AuthCredentials,
        AuthenticationBackend,
        AuthenticationError,
        BaseUser,
    )
    from starlette.datastructures import MutableHeaders
    from starlette.exceptions import WebSocketException
    from starlette.middleware.authentication import AuthenticationMiddleware
    from starlette.requests import HTTPConnection, Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import request_response, websocket_session
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "sessionkit.starlette needs Starlette: pip install 'sessionkit[starlette]'"
    ) from exc

from sessionkit._guard import (
    DOWN,
    RENEWED_COOKIE,
    RETRY_AFTER,
    SOURCES,
    STATE_KEY,
    GuardOptions,
    SessionCheck,
    SessionRequired,
    body,
    check_header,
    close_code,
    find_key,
    no_store,
    request_client,
    sending_no_store,
)
from sessionkit._login import log_in, log_out, same_origin
from sessionkit.cookies import SessionCookie
from sessionkit.models import ClientInfo, SessionDetails

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send
    from starlette.websockets import WebSocket

    from sessionkit.manager import SessionManager

__all__ = (
    "SOURCES",
    "STATE_KEY",
    "RequireSession",
    "SessionAuthBackend",
    "SessionAuthMiddleware",
    "SessionCookie",
    "SessionDependency",
    "SessionRequired",
    "SessionUser",
    "client_info",
    "get_session",
    "log_in",
    "log_out",
    "read_session_key",
    "same_origin",
    "session_required_handler",
    "store_unavailable_handler",
)


def read_session_key(
    conn: HTTPConnection,
    sources: Iterable[str] = SOURCES,
    *,
    header: str = "session_key",
    cookie: str | SessionCookie = "session_key",
) -> str | None:
    """Find the session key a request carries.

    :param conn: a Starlette ``Request`` (or ``WebSocket``).
    :param sources: where to look, in order: ``"header"`` (the ``header`` header),
        ``"bearer"`` (``Authorization: Bearer <key>``), ``"cookie"`` (the ``cookie`` cookie,
        read with a tolerant parser: a malformed neighbouring cookie never hides it).
    :param header: the name of the header that carries the key.
    :param cookie: the cookie that carries the key: a :class:`SessionCookie` or a name.
    :return: the first key found, or ``None``.
    :raises ValueError: for an unknown source, or a header name that is not one.
    """
    name = SessionCookie.of(cookie).name
    return find_key(
        conn.scope["headers"], sources, header=check_header(header).encode("ascii"), cookie=name
    )[0]


def client_info(conn: HTTPConnection) -> ClientInfo:
    """Describe the client of a request, to record at login::

        key = await sm.load_new_session(username, client=client_info(request))

    Behind a reverse proxy, run the server so that it trusts the proxy's forwarded headers
    (uvicorn's ``--proxy-headers --forwarded-allow-ips``): the IP is the ASGI scope's client.

    :param conn: a Starlette ``Request`` (or ``WebSocket``).
    :return: the client's IP address and ``User-Agent`` (cut to the lengths
        :class:`~sessionkit.ClientInfo` accepts), each ``None`` where unknown.
    """
    return request_client(conn)


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
    return JSONResponse(body(exc), status_code=exc.status_code, headers=exc.headers)


async def store_unavailable_handler(request: Request, exc: Exception) -> Response:
    """Answer a :class:`~sessionkit.StoreUnavailable` that a route let out with
    ``503 {"logout": false, "message": ...}`` and ``Retry-After`` (seconds), as the guards
    answer one: the store is down, which says nothing about the user's session, so the page
    must not log out. The exception's own text (the store's error) stays in the server's log.

    Pass it to the app (Starlette and FastAPI alike)::

        app = Starlette(routes=..., exception_handlers={StoreUnavailable: store_unavailable_handler})

    :param request: the request that failed.
    :param exc: the :class:`~sessionkit.StoreUnavailable` raised.
    :return: the 503 response.
    """
    return JSONResponse(
        {"logout": False, "message": DOWN},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER)},
    )


class RequireSession(SessionCheck):
    """An ASGI wrapper that lets through only requests with a live session.

    The wrapped app finds the session's :class:`~sessionkit.SessionDetails` with
    :func:`get_session` (it is ``request.state.session``). Lifespan events pass through.

    :param app: the ASGI app to protect (an endpoint, a WebSocket endpoint, a ``Mount``, an
        app).
    :param manager: the session manager.
    :param sources: where to look for the key, in order (see :func:`read_session_key`).
    :param header: the name of the header that carries the key.
    :param cookie: the cookie that carries the key: a :class:`SessionCookie` (the one the
        login response set) or a name.
    :param restart: restart the session's idle timer on each request (the seed's
        ``restartSessionTimer`` after an API call).
    :param trusted_origins: other origins (``"https://app.example.com"``) whose pages may
        send the cookie on unsafe methods, besides the site's own: ``scheme://host[:port]``
        as browsers write an ``Origin``, the default port folded (``:443`` for https).
    :param max_auth_age: seconds since the user last entered a credential (at login, or
        :meth:`~sessionkit.SessionManager.mark_authenticated`) past which a request is
        answered ``401 {"reauthenticate": true, "logout": false, ...}``; the session lives
        and the cookie is kept. ``None`` (default): no limit.
    :raises ValueError: for an unknown source or a malformed header name, origin or cookie.

    Example::

        cookie = SessionCookie()
        app = Starlette(routes=[
            Route("/api/table", RequireSession(table, sm, cookie=cookie), methods=["POST"]),
            Mount("/admin", RequireSession(admin_app, sm, sources=("cookie",), cookie=cookie)),
        ])
    """

    def __init__(
        self,
        app: ASGIApp
        | Callable[[Request], Awaitable[Response]]
        | Callable[[WebSocket], Awaitable[None]],
        manager: SessionManager,
        *,
        sources: Iterable[str] = SOURCES,
        header: str = "session_key",
        cookie: str | SessionCookie = "session_key",
        restart: bool = True,
        trusted_origins: Iterable[str] = (),
        max_auth_age: float | None = None,  # seconds
    ) -> None:
        options = GuardOptions.checked(
            sources, header, cookie, restart, trusted_origins, max_auth_age
        )
        super().__init__(manager, options)
        self.app: ASGIApp = _as_asgi(app, "http")
        self._websocket_app: ASGIApp = _as_asgi(app, "websocket")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the request's session, then call the wrapped app (ASGI).

        A refused WebSocket handshake is closed before it is accepted, with code 1008 (1013
        when the store is down): the server answers it ``403``. A response let through is
        marked ``Cache-Control: no-store`` unless the app set its own ``Cache-Control``.
        """
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        try:
            await self._check(scope, renew=kind == "http")
        except SessionRequired as exc:
            if kind == "websocket":
                await send(
                    {"type": "websocket.close", "code": close_code(exc), "reason": exc.detail}
                )
                return
            response = JSONResponse(body(exc), status_code=exc.status_code, headers=exc.headers)
            await response(scope, receive, send)
            return
        if kind == "websocket":
            await self._websocket_app(scope, receive, send)
        else:
            await self.app(scope, receive, sending_no_store(send, scope.pop(RENEWED_COOKIE, None)))


def _as_asgi(app: Any, kind: str) -> ASGIApp:
    # A Starlette endpoint function (one argument: the request, or the WebSocket) is wrapped
    # the way Route or WebSocketRoute would wrap it; which one, the connection's type decides.
    if inspect.isfunction(app) or inspect.ismethod(app):
        params = list(inspect.signature(app).parameters)
        if len(params) == 1:
            wrapped: ASGIApp = (
                websocket_session(app) if kind == "websocket" else request_response(app)
            )
            return wrapped
    asgi: ASGIApp = app
    return asgi


class SessionDependency(SessionCheck):
    """The session check as a FastAPI dependency (it works without FastAPI: it is a plain
    callable taking a Starlette ``Request``).

    With FastAPI installed, it declares its key sources as OpenAPI security schemes
    (``sessionKeyHeader``, ``sessionBearer`` and ``sessionCookie``, one per source it reads),
    so ``/docs`` lists them and its "Authorize" button sends the key.

    :param manager: the session manager.
    :param sources: where to look for the key, in order (see :func:`read_session_key`).
    :param header: the name of the header that carries the key.
    :param cookie: the cookie that carries the key: a :class:`SessionCookie` or a name.
    :param restart: restart the session's idle timer on each request.
    :param trusted_origins: other origins whose pages may send the cookie on unsafe methods.
    :param max_auth_age: seconds since the user last entered a credential (at login, or
        :meth:`~sessionkit.SessionManager.mark_authenticated`) past which a request is
        answered ``401 {"reauthenticate": true, "logout": false, ...}``; the session lives
        and the cookie is kept. ``None`` (default): no limit.
    :raises ValueError: for an unknown source or a malformed header name, origin or cookie.

    Example::

        live_session = SessionDependency(sm, cookie=SessionCookie())
        app = FastAPI(exception_handlers={SessionRequired: session_required_handler})

        @app.post("/api/get_table_data")
        async def table(session: SessionDetails = Depends(live_session)) -> dict[str, str]:
            return {"user": session.username}
    """

    __signature__: inspect.Signature

    def __init__(
        self,
        manager: SessionManager,
        *,
        sources: Iterable[str] = SOURCES,
        header: str = "session_key",
        cookie: str | SessionCookie = "session_key",
        restart: bool = True,
        trusted_origins: Iterable[str] = (),
        max_auth_age: float | None = None,  # seconds
    ) -> None:
        options = GuardOptions.checked(
            sources, header, cookie, restart, trusted_origins, max_auth_age
        )
        super().__init__(manager, options)
        # FastAPI reads a dependency's parameters from its signature: the connection (a
        # Request or a WebSocket: it works on @app.websocket routes too), the response whose
        # headers FastAPI merges into the route's (where no-store goes), and the key sources
        # as security schemes (their values are not used: the key is read here, by the same
        # rules as everywhere else).
        connection = inspect.Parameter(
            "request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=HTTPConnection
        )
        parameters = [connection]
        if _fastapi_installed():
            parameters.append(
                inspect.Parameter("response", inspect.Parameter.KEYWORD_ONLY, annotation=Response)
            )
        self.__signature__ = inspect.Signature([*parameters, *_security_parameters(self)])

    async def __call__(
        self, request: HTTPConnection, response: Response | None = None, **_schemes: Any
    ) -> SessionDetails:
        """Check the session of ``request`` (a ``Request``, or a ``WebSocket`` handshake).

        :param request: the incoming request or WebSocket.
        :param response: FastAPI's response for the route: marked ``Cache-Control:
            no-store`` unless the route sets its own, and given the new cookie when the
            manager's ``renew_every`` renews the key (FastAPI drops it when the route returns
            a ``Response`` object of its own: mark that one yourself, and copy its
            ``Set-Cookie``, or the browser keeps a key that stops working after the grace).
        :return: the live session's details (also put in ``request.state.session``).
        :raises SessionRequired: if the key is missing or dead (401), the request is
            cross-site with the cookie (403) or the store is down (503).
        :raises starlette.exceptions.WebSocketException: instead, on a WebSocket: code 1008
            (1013 when the store is down), which closes the handshake.
        """
        renew = response is not None and request.scope["type"] == "http"
        try:
            details = await self._check(request.scope, renew=renew, conn=request)
        except SessionRequired as exc:
            if request.scope["type"] == "websocket":
                raise WebSocketException(close_code(exc), exc.detail) from None
            raise
        if response is not None:
            no_store(response.headers.raw)
            renewed = request.scope.pop(RENEWED_COOKIE, None)
            if renewed is not None:
                response.headers.append("set-cookie", renewed)
        return details


def _fastapi_installed() -> bool:
    try:
        import fastapi  # noqa: F401
    except ImportError:
        return False
    return True


def _security_parameters(check: SessionCheck) -> list[inspect.Parameter]:
    try:
        from fastapi import Security
        from fastapi.security import APIKeyCookie, APIKeyHeader, HTTPBearer
    except ImportError:  # plain Starlette: nothing to declare
        return []
    options = check.options
    schemes: dict[str, Callable[..., Any]] = {
        "header": APIKeyHeader(
            name=options.header,
            scheme_name="sessionKeyHeader",
            description="The session key, in a header (API clients).",
            auto_error=False,
        ),
        "bearer": HTTPBearer(
            scheme_name="sessionBearer",
            description="The session key as a bearer token (API clients).",
            auto_error=False,
        ),
        "cookie": APIKeyCookie(
            name=options.cookie.name,
            scheme_name="sessionCookie",
            description="The session cookie that the login response sets (browsers).",
            auto_error=False,
        ),
    }
    return [
        inspect.Parameter(
            f"_{source}", inspect.Parameter.KEYWORD_ONLY, default=Security(schemes[source])
        )
        for source in options.sources
    ]


class SessionUser(BaseUser):
    """The ``request.user`` that :class:`SessionAuthBackend` sets for a live session.

    :param session: the session's details.
    """

    def __init__(self, session: SessionDetails) -> None:
        self.session = session

    @property
    def is_authenticated(self) -> bool:
        """``True``: a live session is an authenticated user."""
        return True

    @property
    def username(self) -> str:
        """The session's username."""
        return self.session.username

    @property
    def display_name(self) -> str:
        """The session's username."""
        return self.session.username

    @property
    def identity(self) -> str:
        """The session's public id (the SHA-256 hex digest of its key; not secret)."""
        return self.session.id


class SessionAuthBackend(SessionCheck, AuthenticationBackend):
    """The session check as a Starlette authentication backend: with it, ``request.user``
    is a :class:`SessionUser` (username and :class:`~sessionkit.SessionDetails`) and
    ``@requires("authenticated")`` guards routes.

    Use it with :class:`SessionAuthMiddleware`, which also clears a dead cookie and marks
    authenticated responses ``no-store`` (Starlette's ``AuthenticationMiddleware`` works too,
    without those). A request without a live key (or a cross-site one carrying the cookie on
    an unsafe method) is anonymous: ``request.user.is_authenticated`` is ``False`` and ``@requires``
    refuses it. A store that cannot be reached raises ``AuthenticationError``; pass
    :meth:`on_error` to the middleware to answer it with ``503 {"logout": false, ...}``.

    :param manager: the session manager.
    :param sources: where to look for the key, in order (see :func:`read_session_key`).
    :param header: the name of the header that carries the key.
    :param cookie: the cookie that carries the key: a :class:`SessionCookie` or a name.
    :param restart: restart the session's idle timer on each request.
    :param trusted_origins: other origins whose pages may send the cookie on unsafe methods.
    :param max_auth_age: seconds since the user last entered a credential (at login, or
        :meth:`~sessionkit.SessionManager.mark_authenticated`) past which a request is
        answered ``401 {"reauthenticate": true, "logout": false, ...}``; the session lives
        and the cookie is kept. ``None`` (default): no limit.
    :param scopes: the credentials a live session grants (``@requires`` checks them).
    :raises ValueError: for an unknown source or a malformed header name, origin or cookie.

    Example::

        backend = SessionAuthBackend(sm, cookie=SessionCookie())
        app = Starlette(
            routes=[Route("/me", me)],
            middleware=[Middleware(SessionAuthMiddleware, backend=backend)],
        )

        @requires("authenticated")
        async def me(request: Request) -> JSONResponse:
            return JSONResponse({"user": request.user.username})
    """

    def __init__(
        self,
        manager: SessionManager,
        *,
        sources: Iterable[str] = SOURCES,
        header: str = "session_key",
        cookie: str | SessionCookie = "session_key",
        restart: bool = True,
        trusted_origins: Iterable[str] = (),
        max_auth_age: float | None = None,  # seconds
        scopes: Iterable[str] = ("authenticated",),
    ) -> None:
        options = GuardOptions.checked(
            sources, header, cookie, restart, trusted_origins, max_auth_age
        )
        super().__init__(manager, options)
        self.scopes = tuple(scopes)

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        """Check ``conn``'s session (Starlette's ``AuthenticationMiddleware`` calls this).

        :param conn: the incoming request or WebSocket.
        :return: the credentials and :class:`SessionUser` of a live session, or ``None``
            (anonymous).
        :raises AuthenticationError: if the session store cannot be reached, or the session's
            credential is older than ``max_auth_age`` (:meth:`on_error` answers each).
        """
        try:
            renew = bool(conn.scope.get(_CAN_RENEW))
            details = await self._check(conn.scope, renew=renew, conn=conn)
        except SessionRequired as exc:
            if exc.status_code == 503:
                raise AuthenticationError(exc.detail) from exc
            if exc.reauthenticate:
                raise _Reauthenticate(exc.detail) from exc
            clear = (exc.headers or {}).get("set-cookie")
            if clear is not None:  # a dead key from the cookie: SessionAuthMiddleware clears it
                conn.scope[_CLEAR_COOKIE] = clear
            return None
        return AuthCredentials(list(self.scopes)), SessionUser(details)

    @staticmethod
    def on_error(conn: HTTPConnection, exc: AuthenticationError) -> Response:
        """Answer an unreachable store with ``503 {"logout": false, "message": ...}``, and a
        credential older than ``max_auth_age`` with ``401 {"reauthenticate": true, "logout":
        false, "message": ...}`` (the cookie kept).

        :param conn: the request that failed.
        :param exc: the error :meth:`authenticate` raised.
        :return: the response.
        """
        if isinstance(exc, _Reauthenticate):
            return JSONResponse(
                {"reauthenticate": True, "logout": False, "message": str(exc)},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        headers = {"Retry-After": str(RETRY_AFTER)}
        return JSONResponse(
            {"logout": False, "message": str(exc)}, status_code=503, headers=headers
        )


class _Reauthenticate(AuthenticationError):
    # A live session whose credential is older than the backend's max_auth_age.
    pass


_CLEAR_COOKIE = "sessionkit.clear_cookie"  # the scope key where the backend leaves it
_CAN_RENEW = "sessionkit.can_renew"  # set by SessionAuthMiddleware, which sets a renewed cookie


class SessionAuthMiddleware(AuthenticationMiddleware):
    """Starlette's ``AuthenticationMiddleware`` for a :class:`SessionAuthBackend`, which also
    answers for the session cookie as the guards do: a request whose cookie holds a dead key
    gets the ``Set-Cookie`` header that clears it, and a response to an authenticated request
    is marked ``Cache-Control: no-store`` unless the app set its own ``Cache-Control``.

    :param app: the ASGI app to wrap.
    :param backend: the :class:`SessionAuthBackend` (any backend works; only this one's dead
        cookies are cleared).
    :param on_error: what answers an ``AuthenticationError`` (an unreachable store), as in
        Starlette; ``None`` takes the backend's :meth:`SessionAuthBackend.on_error` when it
        has one.

    Example::

        backend = SessionAuthBackend(sm, cookie=SessionCookie())
        app = Starlette(
            routes=[Route("/me", me)],
            middleware=[Middleware(SessionAuthMiddleware, backend=backend)],
        )
    """

    def __init__(
        self,
        app: ASGIApp,
        backend: AuthenticationBackend,
        on_error: Callable[[HTTPConnection, AuthenticationError], Response] | None = None,
    ) -> None:
        if on_error is None and isinstance(backend, SessionAuthBackend):
            on_error = backend.on_error
        super().__init__(app, backend=backend, on_error=on_error)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Authenticate the connection, then call the app with the cookie answered (ASGI)."""
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return

        scope[_CAN_RENEW] = True

        async def send_answered(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for cookie in (scope.get(_CLEAR_COOKIE), scope.pop(RENEWED_COOKIE, None)):
                    if cookie is not None:
                        headers.append("set-cookie", cookie)
                user = scope.get("user")
                if user is not None and user.is_authenticated:
                    no_store(headers.raw)
            await send(message)

        await super().__call__(scope, receive, send_answered)
