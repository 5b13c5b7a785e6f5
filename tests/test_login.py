"""log_in, log_out, same_origin, no-store, trusted origins, WebSocket guards and
SessionAuthMiddleware, over real HTTP (uvicorn) and Starlette's TestClient for WebSockets."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from sessionkit import SessionDetails, SessionLimitReached, SessionManager
from sessionkit.keys import hash_key
from sessionkit.starlette import (
    RequireSession,
    SessionAuthBackend,
    SessionAuthMiddleware,
    SessionCookie,
    SessionDependency,
    get_session,
    log_in,
    log_out,
    same_origin,
)
from tests.servers import serve

COOKIE = SessionCookie()
SAME = {"sec-fetch-site": "same-origin"}
CLEARED = COOKIE.clear_header()


# The options of the memory_sm fixture (tests/conftest.py) in this module.
pytestmark = pytest.mark.sm_options(absolute_timeout=3600)


def login_app(sm: SessionManager, **options: Any) -> Starlette:
    async def login(request: Request) -> Response:
        response = JSONResponse({"accepted": True})
        body = await request.json()
        try:
            await log_in(sm, request, response, body["username"], cookie=COOKIE, **options)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=500)
        return response

    async def logout(request: Request) -> Response:
        response = JSONResponse({"accepted": True})
        everywhere = request.query_params.get("everywhere") == "1"
        ended = await log_out(sm, request, response, cookie=COOKIE, everywhere=everywhere)
        response.headers["x-ended"] = str(ended)
        return response

    async def check(request: Request) -> Response:
        return JSONResponse({"same": same_origin(request, ["https://app.example.com:443"])})

    return Starlette(
        routes=[
            Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST", "GET"]),
            Route("/check", check, methods=["POST"]),
        ]
    )


def key_of(response: httpx.Response) -> str:
    [header] = response.headers.get_list("set-cookie")
    name, _, rest = header.partition("=")
    assert name == COOKIE.name
    return rest.partition(";")[0]


def carrying(key: str, **headers: str) -> dict[str, str]:
    return {"cookie": f"{COOKIE.name}={key}", **headers}


# -- log_in -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "http://127.0.0.1:1", "sec-fetch-site": "same-site"},  # a sibling port
        {"origin": "https://evil.example", "sec-fetch-site": "cross-site"},
        {"origin": "https://evil.example"},
        {"origin": "null"},
        {},  # neither header: no browser on this site's page sent it
    ],
    ids=["sibling port", "cross-site", "foreign origin", "null", "neither"],
)
async def test_log_in_refuses_a_cross_site_request_whatever_its_content_type(
    memory_sm: SessionManager, headers: dict[str, str]
) -> None:
    async with serve(login_app(memory_sm)) as url, httpx.AsyncClient(base_url=url) as http:
        for content_type in ("text/plain", "application/json"):
            forged = await http.post(
                "/login",
                content='{"username": "Mallory"}',
                headers={"content-type": content_type, **headers},
            )
            assert forged.status_code == 403
            assert "set-cookie" not in forged.headers
    assert await memory_sm.count_sessions() == 0


async def test_log_in_sets_the_cookie_no_store_and_records_the_client(
    memory_sm: SessionManager,
) -> None:
    async with serve(login_app(memory_sm)) as url, httpx.AsyncClient(base_url=url) as http:
        by_origin = await http.post(
            "/login", json={"username": "Luca"}, headers={"origin": url, "user-agent": "T/1"}
        )
        by_fetch_site = await http.post("/login", json={"username": "Luca"}, headers=SAME)
    for response in (by_origin, by_fetch_site):
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        key = key_of(response)
        assert key not in response.text
        assert response.headers["set-cookie"] == COOKIE.header(key)  # no Max-Age: session
    details = await memory_sm.get_session_details(key_of(by_origin))
    assert details.username == "Luca"
    assert details.client is not None
    assert (details.client.ip, details.client.user_agent) == ("127.0.0.1", "T/1")


async def test_log_in_ends_the_session_the_browser_carries() -> None:
    # One browser logging in three times must not lock its user out.
    sm = SessionManager(timeout=30, max_sessions_per_user=2, on_session_limit="refuse")
    ended: list[tuple[str, str | None]] = []
    sm.on("session_deleted", lambda e: ended.append((e.key_hash, e.reason)))
    try:
        async with serve(login_app(sm)) as url, httpx.AsyncClient(base_url=url) as http:
            keys: list[str] = []
            for _ in range(3):
                headers = carrying(keys[-1], **SAME) if keys else SAME
                response = await http.post("/login", json={"username": "Luca"}, headers=headers)
                assert response.status_code == 200
                keys.append(key_of(response))
            # Two other browsers fill the limit; a third is refused as configured.
            await sm.load_new_session("Luca")
            with pytest.raises(SessionLimitReached):
                await sm.load_new_session("Luca")
        assert [await sm.check_session_status(k) for k in keys] == [False, False, True]
        assert ended == [(hash_key(keys[0]), "logout"), (hash_key(keys[1]), "logout")]
    finally:
        await sm.aclose()


async def test_remember_sets_a_persistent_cookie_of_the_absolute_timeout(
    memory_sm: SessionManager,
) -> None:
    async with (
        serve(login_app(memory_sm, remember=True)) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        response = await http.post("/login", json={"username": "Luca"}, headers=SAME)
    key = key_of(response)
    assert response.headers["set-cookie"] == COOKIE.header(key, max_age=3600)
    assert "; Max-Age=3600; " in response.headers["set-cookie"]

    plain = SessionManager(timeout=30)  # no absolute timeout: nothing to remember for
    try:
        carried = await plain.load_new_session("Luca")
        app = login_app(plain, remember=True)
        async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
            refused = await http.post(
                "/login", json={"username": "Luca"}, headers=carrying(carried, **SAME)
            )
        assert "absolute_timeout" in refused.json()["error"]
        # Refused before anything changed: the carried session lives on.
        assert await plain.count_sessions() == 1
        assert await plain.check_session_status(carried)
    finally:
        await plain.aclose()


# -- log_out --------------------------------------------------------------------------------------


async def test_log_out_ends_clears_and_asks_the_browser_to_forget(
    memory_sm: SessionManager,
) -> None:
    key = await memory_sm.load_new_session("Luca")
    other = await memory_sm.load_new_session("Luca")
    async with serve(login_app(memory_sm)) as url, httpx.AsyncClient(base_url=url) as http:
        forged = await http.post("/logout", headers=carrying(key, origin="https://evil.example"))
        by_link = await http.get(
            "/logout", headers=carrying(key, **{"sec-fetch-site": "same-site"})
        )
        assert await memory_sm.check_session_status(key)  # neither a form nor a link logged out
        bye = await http.post("/logout", headers=carrying(key, origin=url))
        again = await http.post("/logout", headers=carrying(key, origin=url))
        nothing = await http.post("/logout")
        everywhere = await http.post("/logout?everywhere=1", headers=carrying(other, **SAME))
    assert forged.status_code == by_link.status_code == 403
    assert "set-cookie" not in forged.headers
    for response in (bye, again, nothing, everywhere):
        assert response.headers.get_list("set-cookie") == [CLEARED]
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["clear-site-data"] == '"cache", "storage"'
    assert [r.headers["x-ended"] for r in (bye, again, nothing, everywhere)] == [
        "True",
        "False",
        "False",
        "True",
    ]
    assert await memory_sm.count_sessions() == 0


async def test_log_out_everywhere_ends_every_session_of_the_user(memory_sm: SessionManager) -> None:
    reasons: list[str | None] = []
    memory_sm.on("session_deleted", lambda e: reasons.append(e.reason))
    keys = [await memory_sm.load_new_session("Luca") for _ in range(3)]
    fabio = await memory_sm.load_new_session("Fabio")
    async with serve(login_app(memory_sm)) as url, httpx.AsyncClient(base_url=url) as http:
        response = await http.post("/logout?everywhere=1", headers=carrying(keys[1], **SAME))
    assert response.headers["x-ended"] == "True"
    assert reasons == ["logout_all"] * 3
    assert await memory_sm.check_session_status(fabio)


# -- same_origin and trusted origins --------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"sec-fetch-site": "same-origin"}, True),
        ({"sec-fetch-site": "none"}, True),
        ({"origin": "own"}, True),
        ({"origin": "https://app.example.com"}, True),  # trusted as https://...:443
        ({"origin": "https://app.example.com", "sec-fetch-site": "cross-site"}, True),
        ({"origin": "https://app.example.com:8443"}, False),
        ({"origin": "https://evil.example"}, False),
        ({"origin": "null"}, False),
        ({"sec-fetch-site": "same-site"}, False),
        ({}, False),
    ],
)
async def test_same_origin_is_public(
    memory_sm: SessionManager, headers: dict[str, str], expected: bool
) -> None:
    async with serve(login_app(memory_sm)) as url, httpx.AsyncClient(base_url=url) as http:
        if headers.get("origin") == "own":
            headers = {"origin": url}
        response = await http.post("/check", headers=headers)
    assert response.json() == {"same": expected}


BAD_ORIGINS = [
    "*",
    "https://*.example.com",
    "https://app.example.com:99999",
    "https://app.example.com:0",
    "https://app.example.com\\",
    "https://app.example.com/path",
    "https://app.example.com/",  # a path, if only "/": no Origin ever ends with one
    "https://app.example.com\n",
    "https://user@app.example.com",
    "https://bücher.example",
    "app.example.com",
    "ftp://app.example.com",
    "https://app.example.com?q",
    "https://\ud800.example",  # a lone surrogate
    "",
]


@pytest.mark.parametrize("origin", BAD_ORIGINS)
def test_an_origin_that_can_never_match_is_refused_when_the_guard_is_built(origin: str) -> None:
    sm = SessionManager()
    for build in (
        lambda: RequireSession(echo_user, sm, trusted_origins=[origin]),
        lambda: SessionDependency(sm, trusted_origins=[origin]),
        lambda: SessionAuthBackend(sm, trusted_origins=[origin]),
    ):
        with pytest.raises(ValueError, match="trusted origin"):
            build()


async def test_a_default_port_is_folded_and_a_real_origin_matches(
    memory_sm: SessionManager,
) -> None:
    async def me(request: Request) -> Response:
        return JSONResponse({"user": get_session(request).username})

    guard = RequireSession(
        me,
        memory_sm,
        cookie=COOKIE,
        trusted_origins=["HTTPS://App.Example.com:443", "http://[::1]:80"],
    )
    key = await memory_sm.load_new_session("Luca")
    app = Starlette(routes=[Route("/me", guard, methods=["POST"])])
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        real = await http.post("/me", headers=carrying(key, origin="https://app.example.com"))
        v6 = await http.post("/me", headers=carrying(key, origin="http://[::1]"))
        other = await http.post("/me", headers=carrying(key, origin="https://app.example.co"))
    assert real.json() == v6.json() == {"user": "Luca"}
    assert other.status_code == 403


# -- no-store on what the guards let through -------------------------------------------------------


async def test_guards_mark_what_they_let_through_no_store(memory_sm: SessionManager) -> None:
    pytest.importorskip("fastapi")
    from fastapi import Depends, FastAPI

    async def me(request: Request) -> Response:
        return JSONResponse({"user": get_session(request).username})

    async def cached(request: Request) -> Response:
        return JSONResponse({}, headers={"cache-control": "private, max-age=60"})

    live = SessionDependency(memory_sm)
    api = FastAPI()

    @api.get("/api/me")
    async def api_me(session: SessionDetails = Depends(live)) -> dict[str, str]:  # noqa: B008
        return {"user": session.username}

    @api.get("/api/cached")
    async def api_cached(
        response: Response,
        session: SessionDetails = Depends(live),  # noqa: B008
    ) -> dict[str, str]:
        response.headers["cache-control"] = "private, max-age=60"
        return {"user": session.username}

    app = Starlette(
        routes=[
            Route("/me", RequireSession(me, memory_sm)),
            Route("/cached", RequireSession(cached, memory_sm)),
        ]
    )
    key = await memory_sm.load_new_session("Luca")
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        ok = await http.get("/me", headers={"session_key": key})
        own = await http.get("/cached", headers={"session_key": key})
        refused = await http.get("/me")
    async with serve(api) as url, httpx.AsyncClient(base_url=url) as http:
        fast = await http.get("/api/me", headers={"session_key": key})
        fast_own = await http.get("/api/cached", headers={"session_key": key})
    assert ok.headers["cache-control"] == fast.headers["cache-control"] == "no-store"
    assert own.headers["cache-control"] == "private, max-age=60"
    assert fast_own.headers.get_list("cache-control") == ["private, max-age=60"]
    assert "cache-control" not in refused.headers
    assert fast.json() == {"user": "Luca"}


async def test_a_raw_asgi_apps_own_cache_control_wins_whatever_its_case(
    memory_sm: SessionManager,
) -> None:
    # An ASGI app of its own, not a Starlette Response: header names as it wrote them, or no
    # headers at all in its start message (ASGI allows both).
    async def app(scope: Any, receive: Any, send: Any) -> None:
        own = scope["path"] == "/own"
        headers = [(b"Cache-Control", b"max-age=60"), (b"content-length", b"2")] if own else None
        start = {"type": "http.response.start", "status": 200}
        await send(start if headers is None else {**start, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    guarded = Starlette(
        routes=[
            Route("/own", RequireSession(app, memory_sm)),
            Route("/bare", RequireSession(app, memory_sm)),
        ]
    )
    key = await memory_sm.load_new_session("Luca")
    async with serve(guarded) as url, httpx.AsyncClient(base_url=url) as http:
        own = await http.get("/own", headers={"session_key": key})
        bare = await http.get("/bare", headers={"session_key": key})
    assert own.headers.get_list("cache-control") == ["max-age=60"]
    assert bare.headers.get_list("cache-control") == ["no-store"]
    assert (own.text, bare.text) == ("ok", "ok")


# -- WebSockets -----------------------------------------------------------------------------------


async def echo_user(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json({"user": get_session(websocket).username})
    await websocket.close()


def websocket_app(sm: SessionManager) -> Starlette:
    return Starlette(routes=[WebSocketRoute("/ws", RequireSession(echo_user, sm, cookie=COOKIE))])


def fastapi_websocket_app(sm: SessionManager) -> Any:
    from fastapi import Depends, FastAPI

    live = SessionDependency(sm, cookie=COOKIE)
    app = FastAPI()

    @app.websocket("/ws")
    async def ws_route(
        websocket: WebSocket,
        session: SessionDetails = Depends(live),  # noqa: B008
    ) -> None:
        await websocket.accept()
        await websocket.send_json({"user": session.username})
        await websocket.close()

    return app


async def handshake(app: Any, headers: dict[str, str]) -> list[dict[str, Any]]:
    """What the app sends back to one WebSocket handshake, called as its ASGI server would."""
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "path": "/ws",
        "raw_path": b"/ws",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:8000")]
        + [(k.encode(), v.encode()) for k, v in headers.items()],
        "subprotocols": [],
        "state": {},
    }
    incoming = [{"type": "websocket.connect"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def require_fastapi_websockets() -> None:
    """Skip unless FastAPI can guard a WebSocket route with SessionDependency: from 0.144 on
    (older releases call its security schemes, APIKeyHeader and the like, without a request;
    the lowest versions the suite runs on pair Starlette 0.37.2 with an older FastAPI)."""
    fastapi = pytest.importorskip("fastapi")
    major, minor = (int(part) for part in fastapi.__version__.split(".")[:2])
    if (major, minor) < (0, 144):
        pytest.skip(f"FastAPI {fastapi.__version__}: SessionDependency on WebSockets needs 0.144+")


@pytest.mark.parametrize("kind", ["RequireSession", "FastAPI dependency"])
async def test_a_websocket_handshake_is_guarded_and_refused_with_1008(
    memory_sm: SessionManager, kind: str
) -> None:
    if kind == "FastAPI dependency":
        require_fastapi_websockets()
        app = fastapi_websocket_app(memory_sm)
    else:
        app = websocket_app(memory_sm)
    key = await memory_sm.load_new_session("Luca")
    dead = await memory_sm.load_new_session("Luca")
    await memory_sm.delete_session(dead)
    own = "http://127.0.0.1:8000"
    for headers in (carrying(key, origin=own), {"session_key": key}):
        accepted = await handshake(app, headers)
        assert [m["type"] for m in accepted] == [
            "websocket.accept",
            "websocket.send",
            "websocket.close",
        ]
        assert accepted[1]["text"] == '{"user":"Luca"}'
    refusals = [
        carrying(key, origin="https://evil.example"),  # cross-site, with the cookie
        carrying(key, origin=own, **{"sec-fetch-site": "same-site"}),
        carrying(key),  # no Origin on a handshake: no browser's
        carrying(dead, origin=own),
        {},
    ]
    for headers in refusals:
        [refused] = await handshake(app, headers)
        assert refused["type"] == "websocket.close", headers
        assert refused["code"] == 1008, headers


@pytest.mark.parametrize("kind", ["RequireSession", "FastAPI dependency"])
async def test_a_refused_websocket_handshake_is_a_403_over_uvicorn(
    memory_sm: SessionManager, kind: str
) -> None:
    import websockets
    from websockets.typing import Origin

    if kind == "FastAPI dependency":
        require_fastapi_websockets()
        app = fastapi_websocket_app(memory_sm)
    else:
        app = websocket_app(memory_sm)
    key = await memory_sm.load_new_session("Luca")
    cookie = {"cookie": f"{COOKIE.name}={key}"}
    async with serve(app) as url:
        ws_url = url.replace("http", "ws") + "/ws"
        async with websockets.connect(ws_url, origin=Origin(url), additional_headers=cookie) as ws:
            assert await ws.recv() == '{"user":"Luca"}'
        for origin in (Origin("https://evil.example"), None):
            with pytest.raises(websockets.InvalidStatus) as refused:
                async with websockets.connect(ws_url, origin=origin, additional_headers=cookie):
                    pass
            assert refused.value.response.status_code == 403  # never a 500


# -- SessionAuthMiddleware ------------------------------------------------------------------------


@requires("authenticated")
async def profile(request: Request) -> JSONResponse:
    return JSONResponse({"user": request.user.display_name})


async def test_the_auth_middleware_clears_a_dead_cookie_and_marks_no_store(
    memory_sm: SessionManager,
) -> None:
    backend = SessionAuthBackend(memory_sm, cookie=COOKIE)
    app = Starlette(
        routes=[Route("/profile", profile)],
        middleware=[Middleware(SessionAuthMiddleware, backend=backend)],
    )
    key = await memory_sm.load_new_session("Luca")
    dead = await memory_sm.load_new_session("Luca")
    await memory_sm.delete_session(dead)
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        ok = await http.get("/profile", headers=carrying(key))
        gone = await http.get("/profile", headers=carrying(dead))
        by_header = await http.get("/profile", headers={"session_key": dead})
        anonymous = await http.get("/profile")
    assert ok.json() == {"user": "Luca"}
    assert ok.headers["cache-control"] == "no-store"
    assert "set-cookie" not in ok.headers
    assert gone.status_code == 403  # @requires refuses; the dead cookie goes
    assert gone.headers.get_list("set-cookie") == [CLEARED]
    for response in (by_header, anonymous):
        assert response.status_code == 403
        assert "set-cookie" not in response.headers
        assert "cache-control" not in response.headers


async def test_a_login_that_cannot_happen_leaves_the_carried_session_alone(
    memory_sm: SessionManager,
) -> None:
    from starlette.requests import Request as StarletteRequest

    carried = await memory_sm.load_new_session("Luca")
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/login",
        "headers": [
            (b"cookie", f"{COOKIE.name}={carried}".encode()),
            (b"sec-fetch-site", b"same-origin"),
        ],
        "client": ("127.0.0.1", 1),
    }
    request = StarletteRequest(scope)
    with pytest.raises(ValueError):
        await log_in(memory_sm, request, Response(), "Luca\ud800")  # a lone surrogate
    with pytest.raises(TypeError):
        await log_in(memory_sm, request, Response(), "Luca", data={"when": object()})
    assert await memory_sm.check_session_status(carried)
    # A huge cookie is simply no key: the login goes ahead and the carried one is untouched.
    huge = StarletteRequest(
        {
            **scope,
            "headers": [(b"cookie", b"__Host-session=" + b"A" * 100_000), *scope["headers"][1:]],
        }
    )
    response = Response()
    key = await log_in(memory_sm, huge, response, "Luca")
    assert response.headers["set-cookie"] == COOKIE.header(key)
    assert await memory_sm.count_sessions() == 2


async def test_the_auth_middleware_answers_an_unreachable_store_with_503() -> None:
    from sessionkit import MemoryStore, StoreUnavailable

    class DownStore(MemoryStore):
        async def touch_get(self, key: str, timeout: float) -> Any:
            raise StoreUnavailable("store down")

    sm = SessionManager(timeout=30, store=DownStore())
    try:
        key = await sm.load_new_session("Luca")
        backend = SessionAuthBackend(sm, cookie=COOKIE)
        app = Starlette(
            routes=[Route("/profile", profile)],
            middleware=[Middleware(SessionAuthMiddleware, backend=backend)],  # on_error=None
        )
        async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
            response = await http.get("/profile", headers=carrying(key))
        assert response.status_code == 503
        assert response.json() == {
            "logout": False,
            "message": "the session store is unavailable: try again",
        }
        assert "set-cookie" not in response.headers  # the session may well be alive
        assert response.headers["retry-after"] == "5"
    finally:
        await sm.aclose()


async def test_log_in_and_log_out_on_fastapi_with_the_injected_response(
    memory_sm: SessionManager,
) -> None:
    pytest.importorskip("fastapi")
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/login")
    async def login(request: Request, response: Response) -> dict[str, bool]:
        await log_in(memory_sm, request, response, "Luca", cookie=COOKIE)
        return {"accepted": True}

    @app.post("/logout")
    async def logout(request: Request, response: Response) -> dict[str, bool]:
        return {"ended": await log_out(memory_sm, request, response, cookie=COOKIE)}

    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        forged = await http.post("/login", headers={"origin": "https://evil.example"})
        login_response = await http.post("/login", headers=SAME)
        key = key_of(login_response)
        bye = await http.post("/logout", headers=carrying(key, **SAME))
    assert forged.status_code == 403
    assert login_response.json() == {"accepted": True}
    assert login_response.headers["cache-control"] == "no-store"
    assert bye.json() == {"ended": True}
    assert bye.headers["clear-site-data"] == '"cache", "storage"'
    assert bye.headers.get_list("set-cookie") == [CLEARED]
    assert await memory_sm.count_sessions() == 0
