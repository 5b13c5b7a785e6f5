"""The seed's "Frontend and Backend session exchange", as a runnable app, in cookie mode.

Starlette serves one page and a small JSON API; a python-socketio ``AsyncServer`` pushes
``logout`` to the page the moment its session ends; uvicorn runs both. The session key lives
in an ``HttpOnly`` ``__Host-session`` cookie: the page's script never sees it, neither for its
API calls nor for its socket. A "Your sessions" panel lists the user's sessions (device, IP,
created, last active; "this device" marks the page's own) and ends any of them, or all but
this one. Logging in and out goes through ``log_in`` / ``log_out``: a cross-site page cannot log
the browser in (login CSRF), a login ends the session the browser held, and a logout reaches
every tab of the session by push. Run it with ``make demo`` (or
``python examples/webapp/app.py --timeout 30``) and open http://127.0.0.1:8000.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread
import socketio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp
from ua_parser import parse as parse_user_agent

from sessionkit import SessionManager, SessionStore
from sessionkit.metrics import instrument
from sessionkit.socketio import bind_socketio
from sessionkit.starlette import RequireSession, SessionCookie, get_session, log_in, log_out

HERE = Path(__file__).parent
STATIC = HERE / "static"
#: Where ``make vendor`` (npm's socket.io-client package) puts the browser's Socket.IO client.
VENDORED_CLIENT = STATIC / "vendor/node_modules/socket.io-client/dist/socket.io.min.js"
CDN_CLIENT = "https://cdn.socket.io/4.8.1/socket.io.min.js"

#: The demo's accounts; the passwords are kept only as scrypt hashes once the app is built.
DEMO_USERS = {"Luca": "sessionkit", "Fabio": "sessionkit"}

#: The table the seed's frontend asks for with ``get_table_data``.
SECTORS = [
    {"sector": "Energy", "share": 12.4, "trend": "up"},
    {"sector": "Finance", "share": 18.9, "trend": "flat"},
    {"sector": "Health", "share": 14.2, "trend": "up"},
    {"sector": "Industry", "share": 21.7, "trend": "down"},
    {"sector": "Technology", "share": 32.8, "trend": "up"},
]


class PasswordBook:
    """Users' passwords, stored as salted scrypt hashes (a memory-hard KDF, never md5).

    :param passwords: username -> clear password, hashed at once and then forgotten.
    """

    # n=2**14, r=8: 16 MiB and tens of ms per check, the interactive-login setting.
    _N, _R, _P, _LEN = 2**14, 8, 1, 32

    def __init__(self, passwords: Mapping[str, str]) -> None:
        self._hashes = {}
        for username, password in passwords.items():
            salt = secrets.token_bytes(16)
            self._hashes[username] = (salt, self._derive(password, salt))
        # Unknown users cost as much as known ones: timing tells nothing.
        self._decoy = (secrets.token_bytes(16), secrets.token_bytes(self._LEN))

    @classmethod
    def _derive(cls, password: str, salt: bytes) -> bytes:
        return hashlib.scrypt(
            # surrogatepass: a JSON body can carry a lone surrogate ("\ud800"), which is a wrong
            # password like any other, not a server error.
            password.encode("utf-8", "surrogatepass"),
            salt=salt,
            n=cls._N,
            r=cls._R,
            p=cls._P,
            dklen=cls._LEN,
        )

    async def verify(self, username: str, password: str) -> bool:
        """Check a password off the event loop (scrypt is deliberately slow).

        :return: whether ``password`` is ``username``'s.
        """
        salt, expected = self._hashes.get(username, self._decoy)
        derived = await anyio.to_thread.run_sync(self._derive, password, salt)
        return hmac.compare_digest(derived, expected) and username in self._hashes


@dataclass
class Demo:
    """The demo's parts, for tests and for :func:`main`."""

    app: ASGIApp
    sm: SessionManager
    sio: Any
    registry: CollectorRegistry


def device_name(user_agent: str | None) -> str:
    """A device as a person names it, from its user agent: "Chrome on Android".

    ua-parser reads the user agent with the uap-core rules; what it cannot name is shown as
    sent (a script's "curl/8.0" is its own best name).

    :param user_agent: the ``User-Agent`` recorded at login, if any.
    :return: "browser on system", the browser alone, or the user agent itself.
    """
    if not user_agent:
        return "Unknown device"
    parsed = parse_user_agent(user_agent)
    browser = parsed.user_agent.family if parsed.user_agent else None
    system = parsed.os.family if parsed.os else None
    if browser is None or browser == "Other":
        return user_agent
    # "Chrome Mobile on Android" says "Mobile" twice; "Mobile Safari" keeps its own name.
    browser = browser.removesuffix(" Mobile")
    return f"{browser} on {system}" if system and system != "Other" else browser


def _remaining(expires_at: float) -> float:
    return round(max(expires_at - time.time(), 0.0), 3)


def create_app(
    *,
    timeout: float = 30.0,  # seconds of idleness before the server logs a session out
    warn_before: float | None = 10.0,  # seconds; the page shows a warning then
    renew_every: float | None = 60.0,  # seconds: a key older than this is renewed (rotated)
    renew_grace: float = 30.0,  # seconds a renewed key keeps working for requests in flight
    users: Mapping[str, str] = DEMO_USERS,
    store: SessionStore | None = None,
    client_manager: Any = None,
) -> Demo:
    """Build the demo: Starlette routes, the Socket.IO server and the session manager.

    :param timeout: the sessions' idle timeout in seconds.
    :param warn_before: push ``session_expiring`` this many seconds before a deadline.
    :param renew_every: renew a session's key on the first guarded call after this many
        seconds (the new cookie comes with that call's response; the socket follows), or
        ``None`` never.
    :param renew_grace: seconds the replaced key keeps working.
    :param users: username -> password of the accounts that can log in.
    :param store: where sessions live (the in-memory store by default; a ``RedisStore`` when
        several workers share them, as ``make demo-workers`` runs it).
    :param client_manager: the Socket.IO server's client manager (a
        ``socketio.AsyncRedisManager`` relays each ``logout`` to the worker holding the socket).
    :return: the ASGI app and its parts.
    """
    sm = SessionManager(
        timeout=timeout,
        warn_before=warn_before,
        store=store,
        renew_every=renew_every,
        renew_grace=renew_grace,
    )
    registry = CollectorRegistry()
    instrument(sm, registry)
    passwords = PasswordBook(users)
    cookie = SessionCookie()  # __Host-session; Secure; HttpOnly; SameSite=Lax; Path=/
    # Same-origin sockets only (engine.io's default), which cookie mode insists on.
    sio = socketio.AsyncServer(async_mode="asgi", client_manager=client_manager)
    bind_socketio(sm, sio, cookie=cookie)
    worker = os.getpid()

    async def which_worker(sid: str, data: object = None) -> int:
        # The page shows which process holds its socket (make demo-workers runs two).
        return worker

    sio.on("worker", which_worker)

    def guard(endpoint: Any, *, restart: bool = True) -> RequireSession:
        # The cookie for the page; the session_key header and bearer tokens for API clients.
        return RequireSession(endpoint, sm, cookie=cookie, restart=restart)

    async def index(request: Request) -> HTMLResponse:
        page = (STATIC / "index.html").read_text()
        if VENDORED_CLIENT.exists():
            tag = '<script data-socketio src="/vendor/socket.io.min.js"></script>'
        else:  # no npm at setup time: the client's own CDN
            tag = f'<script data-socketio src="{CDN_CLIENT}" crossorigin="anonymous"></script>'
        return HTMLResponse(page.replace("<!--socket.io client-->", tag))

    async def vendored_client(request: Request) -> Response:
        if not VENDORED_CLIENT.exists():
            return Response("socket.io-client is not installed: run make vendor", status_code=404)
        return FileResponse(VENDORED_CLIENT, media_type="text/javascript")

    async def script(request: Request) -> FileResponse:
        return FileResponse(STATIC / "app.js", media_type="text/javascript")

    async def try_login(request: Request) -> JSONResponse:
        body = await _json(request)
        username, password = body.get("username"), body.get("password")
        if not (isinstance(username, str) and isinstance(password, str)) or not (
            await passwords.verify(username, password)
        ):
            return JSONResponse(
                {"accepted": False, "message": "Wrong username or password.", "user_data": None}
            )
        # A new session lives its whole idle timeout: that is what the page counts down.
        user_data = {"username": username, "expires_in": sm.get_session_timeout()}
        response = JSONResponse({"accepted": True, "message": "Welcome!", "user_data": user_data})
        # Refuses a cross-site form (login CSRF), ends the session this browser held, records
        # the device, sets the HttpOnly cookie (the key is in no body the page's script reads)
        # and marks the response no-store.
        await log_in(sm, request, response, username, cookie=cookie)
        return response

    async def me(request: Request) -> JSONResponse:
        session = get_session(request)  # a reload finds the session the cookie still holds
        user_data = {
            "username": session.username,
            "expires_in": _remaining(session.expires_at.timestamp()),
        }
        return JSONResponse({"accepted": True, "user_data": user_data})

    async def sessions(request: Request) -> JSONResponse:
        current = get_session(request)
        rows = [
            {
                "id": s.id,
                "device": device_name(s.client.user_agent if s.client else None),
                "user_agent": s.client.user_agent if s.client else None,
                "ip": s.client.ip if s.client else None,
                "created_at": s.created_at.isoformat(),
                "last_active_at": s.last_active_at.isoformat(),
                "current": s.id == current.id,
            }
            for s in await sm.get_user_sessions(current.username)
        ]
        return JSONResponse({"accepted": True, "sessions": rows})

    async def end_session(request: Request) -> JSONResponse:
        session = get_session(request)
        session_id = (await _json(request)).get("id")
        if not isinstance(session_id, str):
            return JSONResponse({"accepted": False, "message": "Which session?"}, status_code=400)
        # By id, and only among this user's own sessions; its tab is logged out by push.
        ended = await sm.delete_user_session(session.username, session_id)
        message = "Session ended." if ended else "No such session."
        response = JSONResponse({"accepted": ended, "message": message})
        if ended and session_id == session.id:
            cookie.clear(response)
        return response

    async def get_table_data(request: Request) -> JSONResponse:
        session = get_session(request)  # checked, timer restarted
        return JSONResponse(
            {
                "accepted": True,
                "message": "OK",
                "table_data": SECTORS,
                "user": session.username,
                "expires_in": _remaining(session.expires_at.timestamp()),
            }
        )

    async def end_other_sessions(request: Request) -> JSONResponse:
        current = get_session(request)
        ended = 0
        for other in await sm.get_user_sessions(current.username):
            if other.id != current.id:  # each one's tabs are logged out by push
                ended += await sm.delete_user_session(current.username, other.id)
        return JSONResponse({"accepted": True, "message": f"{ended} other session(s) ended."})

    async def logout(request: Request) -> JSONResponse:
        # Not guarded: a dead cookie is cleared all the same. log_out refuses a cross-site
        # request, ends the session (its other tabs get the push), clears the cookie and sends
        # Clear-Site-Data.
        response = JSONResponse({"accepted": True, "message": "Bye."})
        await log_out(sm, request, response, cookie=cookie)
        return response

    async def logout_everywhere(request: Request) -> JSONResponse:
        # Every session of the cookie's user ends, and every tab of each gets the push.
        response = JSONResponse({"accepted": True, "message": "Logged out everywhere."})
        await log_out(sm, request, response, cookie=cookie, everywhere=True)
        return response

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with sm:
            yield

    web = Starlette(
        routes=[
            Route("/", index),
            Route("/app.js", script),
            Route("/vendor/socket.io.min.js", vendored_client),
            Route("/api/try_login", try_login, methods=["POST"]),
            Route("/api/get_table_data", guard(get_table_data), methods=["POST"]),
            Route("/api/me", guard(me), methods=["GET"]),
            Route("/api/sessions", guard(sessions, restart=False), methods=["GET"]),
            Route("/api/end_session", guard(end_session, restart=False), methods=["POST"]),
            Route(
                "/api/end_other_sessions",
                guard(end_other_sessions, restart=False),
                methods=["POST"],
            ),
            Route("/api/logout", logout, methods=["POST"]),
            Route("/api/logout_everywhere", logout_everywhere, methods=["POST"]),
            Route("/metrics", metrics),
        ],
        lifespan=lifespan,
        exception_handlers={HTTPException: _refused},
    )
    return Demo(socketio.ASGIApp(sio, other_asgi_app=web), sm, sio, registry)


async def _refused(request: Request, exc: Exception) -> JSONResponse:
    # log_in and log_out refuse a cross-site request with HTTPException(403): the page's
    # script reads JSON, like every other answer of this API.
    assert isinstance(exc, HTTPException)
    body = {"accepted": False, "logout": False, "message": exc.detail}
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def main(argv: list[str] | None = None) -> None:
    """Run the demo under uvicorn on 127.0.0.1."""
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--timeout", type=float, default=30.0, help="idle timeout, seconds")
    parser.add_argument("--warn-before", type=float, default=10.0, help="seconds")
    parser.add_argument(
        "--renew-every", type=float, default=60.0, help="key renewal, seconds (0: never)"
    )
    args = parser.parse_args(argv)
    demo = create_app(
        timeout=args.timeout,
        warn_before=args.warn_before or None,
        renew_every=args.renew_every or None,
        renew_grace=min(30.0, (args.renew_every or 60.0) / 2),
    )
    url = f"http://127.0.0.1:{args.port}"
    print(f"sessionkit demo: {url}")
    print("log in as Luca or Fabio, password: sessionkit")
    print(f"sessions end after {args.timeout:g} s without an API call; metrics at {url}/metrics")
    if not VENDORED_CLIENT.exists():
        print("(socket.io-client not installed with npm: the page loads it from its CDN)")
    # The settings of the Socket.IO guide (docs/guides/socketio.md): websockets' sans-I/O
    # protocol (uvicorn[standard]), and no per-message compression, which would keep a
    # compressor and a decompressor per socket.
    uvicorn.run(
        demo.app,
        host="127.0.0.1",
        port=args.port,
        log_level="info",
        ws="websockets-sansio",
        ws_per_message_deflate=False,
    )


if __name__ == "__main__":
    main()
