"""The ASGI integration, served by uvicorn on a loopback port and called over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sessionkit import MemoryStore, SessionDetails, SessionManager, StoreUnavailable
from sessionkit.starlette import (
    RequireSession,
    SessionAuthBackend,
    SessionCookie,
    SessionDependency,
    SessionRequired,
    get_session,
    log_in,
    read_session_key,
    session_required_handler,
    store_unavailable_handler,
)
from tests.conftest import require_redis
from tests.internals import RETRY_AFTER
from tests.servers import free_port, serve


async def whoami(request: Request) -> JSONResponse:
    session = get_session(request)
    return JSONResponse({"user": session.username, "same": request.state.session is session})


def app_for(sm: SessionManager) -> Starlette:
    return Starlette(
        routes=[
            Route("/any", RequireSession(whoami, sm)),
            Route("/cookie-only", RequireSession(whoami, sm, sources=("cookie",), cookie="sid")),
            Route("/no-restart", RequireSession(whoami, sm, restart=False)),
        ]
    )


@pytest.fixture
async def http(memory_sm: SessionManager) -> AsyncIterator[Any]:
    async with serve(app_for(memory_sm)) as url, httpx.AsyncClient(base_url=url) as client:
        yield client


@pytest.mark.parametrize(
    "how",
    [
        lambda key: {"headers": {"session_key": key}},
        lambda key: {"headers": {"Authorization": f"Bearer {key}"}},
        lambda key: {"headers": {"authorization": f"bearer   {key}"}},
        lambda key: {"headers": {"cookie": f"theme=dark; session_key={key}"}},
    ],
    ids=["session_key header", "bearer", "bearer lower case", "cookie"],
)
async def test_each_key_source_lets_a_live_session_in(
    memory_sm: SessionManager, http: Any, how: Any
) -> None:
    key = await memory_sm.load_new_session("Luca")
    response = await http.get("/any", **how(key))
    assert response.status_code == 200
    assert response.json() == {"user": "Luca", "same": True}


async def test_sources_are_configurable(memory_sm: SessionManager, http: Any) -> None:
    key = await memory_sm.load_new_session("Luca")
    assert (await http.get("/cookie-only", headers={"session_key": key})).status_code == 401
    response = await http.get("/cookie-only", headers={"cookie": f"sid={key}"})
    assert response.json()["user"] == "Luca"
    with pytest.raises(ValueError):
        RequireSession(whoami, memory_sm, sources=("query",))
    with pytest.raises(ValueError):
        SessionDependency(memory_sm, sources=())
    request = Request({"type": "http", "headers": [(b"session-key", key.encode())]})
    assert read_session_key(request, header="Session-Key") == key
    with pytest.raises(ValueError, match="header must be an HTTP header name"):
        read_session_key(request, header="session key")


async def test_an_empty_key_header_leaves_the_next_sources_their_rules(
    memory_sm: SessionManager, http: Any
) -> None:
    # The guard reads its first source, the header, before the others: an empty one is no key,
    # and a key found later keeps its source's rules (a cookie's origin rule on a POST).
    key = await memory_sm.load_new_session("Luca")
    bearer = {"session_key": "", "Authorization": f"Bearer {key}"}
    assert (await http.post("/any", headers=bearer)).json()["user"] == "Luca"
    cookie = {"session_key": "", "cookie": f"session_key={key}"}
    cross_site = await http.post("/any", headers=cookie | {"sec-fetch-site": "cross-site"})
    assert (cross_site.status_code, cross_site.json()["logout"]) == (403, False)
    same_site = await http.post("/any", headers=cookie | {"sec-fetch-site": "same-origin"})
    assert same_site.json()["user"] == "Luca"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"session_key": "no-such-session"},
        {"session_key": "x" * 300},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
        {"cookie": "session_key"},
    ],
)
async def test_missing_or_dead_keys_get_401_with_logout(http: Any, headers: dict[str, str]) -> None:
    response = await http.get("/any", headers=headers)
    assert response.status_code == 401
    body = response.json()
    assert body["logout"] is True
    assert isinstance(body["message"], str) and body["message"]
    assert response.headers["www-authenticate"] == "Bearer"


async def test_an_ended_session_gets_401(memory_sm: SessionManager, http: Any) -> None:
    key = await memory_sm.load_new_session("Luca")
    await memory_sm.delete_session(key)
    response = await http.get("/any", headers={"session_key": key})
    assert response.status_code == 401
    assert response.json()["logout"] is True
    assert key not in response.text


async def test_a_call_restarts_the_timer(memory_sm: SessionManager, http: Any) -> None:
    key = await memory_sm.load_new_session("Luca")
    before = (await memory_sm.get_session_details(key)).expires_at
    await asyncio.sleep(0.2)
    assert (await http.get("/no-restart", headers={"session_key": key})).status_code == 200
    # The memory store maps its monotonic clock to wall time on each read: a few µs of jitter.
    unmoved = (await memory_sm.get_session_details(key)).expires_at - before
    assert abs(unmoved.total_seconds()) < 0.01
    assert (await http.get("/any", headers={"session_key": key})).status_code == 200
    moved = (await memory_sm.get_session_details(key)).expires_at
    assert (moved - before).total_seconds() >= 0.15


async def test_an_unreachable_store_is_503_not_logout() -> None:
    class DownStore(MemoryStore):
        async def touch(self, key: str, timeout: float) -> float | None:
            raise StoreUnavailable("store down")

    manager = SessionManager(timeout=30, store=DownStore())
    try:
        key = await manager.load_new_session("Luca")
        async with serve(app_for(manager)) as url, httpx.AsyncClient(base_url=url) as client:
            response = await client.get("/any", headers={"session_key": key})
        assert response.status_code == 503
        assert response.json()["logout"] is False
        assert response.headers["retry-after"] == str(RETRY_AFTER)
    finally:
        await manager.aclose()


@pytest.mark.parametrize("framework", ["starlette", "fastapi"])
async def test_store_unavailable_handler_answers_503_with_retry_after(framework: str) -> None:
    # A real RedisStore whose server is gone (nothing listens on the port): the route's own
    # call raises StoreUnavailable, which the handler turns into the guards' 503.
    from redis.asyncio import Redis

    from sessionkit.stores.redis import RedisStore

    require_redis()
    client = Redis(host="127.0.0.1", port=free_port())
    manager = SessionManager(timeout=30, store=RedisStore(client, op_timeout=0.5))

    async def login(request: Request) -> JSONResponse:
        return JSONResponse({"key_made": bool(await manager.load_new_session("Luca"))})

    handlers: dict[Any, Any] = {StoreUnavailable: store_unavailable_handler}
    app: Any
    if framework == "fastapi":
        from fastapi import FastAPI

        app = FastAPI(exception_handlers=handlers)
        app.add_api_route("/login", login, methods=["POST"])
    else:
        app = Starlette(
            routes=[Route("/login", login, methods=["POST"])], exception_handlers=handlers
        )
    try:
        async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
            response = await http.post("/login")
        assert response.status_code == 503
        assert response.json() == {
            "logout": False,
            "message": "the session store is unavailable: try again",
        }
        assert response.headers["retry-after"] == str(RETRY_AFTER) == "5"
    finally:
        await manager.aclose()
        await client.aclose()


async def test_get_session_without_the_wrapper_is_a_lookup_error() -> None:
    async def bare(request: Request) -> JSONResponse:
        with pytest.raises(LookupError):
            get_session(request)
        assert read_session_key(request) == "k"
        assert read_session_key(request, ("bearer",)) is None
        return JSONResponse({})

    async with (
        serve(Starlette(routes=[Route("/", bare)])) as url,
        httpx.AsyncClient(base_url=url) as client,
    ):
        assert (await client.get("/", headers={"session_key": "k"})).status_code == 200


async def test_the_dependency_form_with_starlette(memory_sm: SessionManager) -> None:
    live = SessionDependency(memory_sm, sources=("bearer",))

    async def table(request: Request) -> JSONResponse:
        session = await live(request)
        return JSONResponse({"user": session.username})

    app = Starlette(
        routes=[Route("/table", table)],
        exception_handlers={SessionRequired: session_required_handler},
    )
    key = await memory_sm.load_new_session("Fabio")
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        ok = await client.get("/table", headers={"Authorization": f"Bearer {key}"})
        refused = await client.get("/table", headers={"session_key": key})
    assert ok.json() == {"user": "Fabio"}
    assert refused.status_code == 401
    assert refused.json()["logout"] is True


async def test_the_dependency_form_with_fastapi(memory_sm: SessionManager) -> None:
    pytest.importorskip("fastapi")
    from fastapi import Depends, FastAPI

    live = SessionDependency(memory_sm)
    app = FastAPI(exception_handlers={SessionRequired: session_required_handler})

    @app.post("/api/get_table_data")
    async def table(session: SessionDetails = Depends(live)) -> dict[str, str]:  # noqa: B008
        return {"user": session.username}

    key = await memory_sm.load_new_session("Luca")
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        ok = await client.post("/api/get_table_data", headers={"session_key": key})
        refused = await client.post("/api/get_table_data", headers={"session_key": "gone"})
        missing = await client.post("/api/get_table_data")
    assert ok.status_code == 200
    assert ok.json() == {"user": "Luca"}
    for response in (refused, missing):
        assert response.status_code == 401
        assert response.json()["logout"] is True


def cookie_app() -> Starlette:
    """A login that sets the Secure ``__Host-session`` cookie and a route guarded by it."""
    sm = SessionManager(timeout=30)
    cookie = SessionCookie()

    async def login(request: Request) -> JSONResponse:
        response = JSONResponse({"ok": True})
        await log_in(sm, request, response, "Luca", cookie=cookie)
        return response

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with sm:
            yield

    return Starlette(
        routes=[
            Route("/login", login, methods=["POST"]),
            Route("/me", RequireSession(whoami, sm, cookie=cookie)),
        ],
        lifespan=lifespan,
        exception_handlers={SessionRequired: session_required_handler},
    )


async def test_a_401_over_plain_http_says_the_secure_cookie_was_withheld() -> None:
    # httpx's cookie jar (Starlette's TestClient's too) keeps the Secure cookie to itself over
    # http://testserver: the 401 says why, where it used to say only "log in first".
    same_origin = {"sec-fetch-site": "same-origin"}
    for base_url in ("http://testserver", "https://testserver"):
        app = cookie_app()
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url=base_url) as client,
        ):
            assert (await client.post("/login", headers=same_origin)).status_code == 200
            me = await client.get("/me")
            if base_url.startswith("http:"):
                assert me.status_code == 401
                message = me.json()["message"]
                assert message.startswith("no session key: log in first; ")
                assert "plain http:// to testserver" in message
                assert "base_url='https://testserver'" in message
            else:
                assert me.json()["user"] == "Luca"
                client.cookies.clear()
                refused = await client.get("/me")  # over https nothing was withheld
                assert refused.json()["message"] == "no session key: log in first"


async def test_the_withheld_cookie_hint_is_for_plain_http_to_other_hosts_only() -> None:
    async with serve(cookie_app()) as url, httpx.AsyncClient(base_url=url) as http:

        async def message(**headers: str) -> str:
            response = await http.get("/me", headers=headers)
            assert response.status_code == 401
            return str(response.json()["message"])

        plain = "no session key: log in first"
        assert await message() == plain  # 127.0.0.1: browsers send Secure cookies there
        for host in ("localhost:8000", "app.localhost", "[::1]:8000", "127.0.0.2"):
            assert await message(host=host) == plain, host
        hinted = await message(host="app.example")
        assert hinted.startswith(plain + "; this request came over plain http:// to app.example")
        assert await message(host="app.example", cookie="theme=dark") == plain  # some cookie came
        assert await message(host="app.example", session_key="") == hinted


#: A bad value of each guard option, and what every guard raises for it (the first bad option
#: is reported when there are several: max_auth_age, then sources, header, cookie, origins).
BAD_OPTIONS = [
    (
        {"sources": ("query",)},
        ValueError,
        "sources must be some of ('header', 'bearer', 'cookie'), not ('query',)",
    ),
    ({"sources": ()}, ValueError, "sources must be some of ('header', 'bearer', 'cookie'), not ()"),
    ({"header": 7}, TypeError, "header must be a header name, not int"),
    ({"header": ""}, ValueError, "header must be an HTTP header name (a token), not ''"),
    ({"header": "session key"}, ValueError, "header must be an HTTP header name (a token), not"),
    ({"header": "key\r\nx"}, ValueError, "header must be an HTTP header name (a token), not"),
    ({"header": "cl\u00e9"}, ValueError, "header must be an HTTP header name (a token), not"),
    ({"header": "\udcff"}, ValueError, "header must be an HTTP header name (a token), not"),
    (
        {"header": "k" * 100_000 + " "},
        ValueError,
        f"header must be an HTTP header name (a token), not '{'k' * 40}'",
    ),
    ({"cookie": 7}, TypeError, "cookie must be a SessionCookie or a name, not int"),
    ({"cookie": "a b"}, ValueError, "cookie name must be a non-empty token, not 'a b'"),
    (
        {"trusted_origins": "https://a.example"},
        TypeError,
        "trusted_origins must be a collection of origins, not one str",
    ),
    (
        {"trusted_origins": ["https://*.example"]},
        ValueError,
        "a trusted origin is scheme://host[:port]",
    ),
    ({"max_auth_age": "60"}, TypeError, "max_auth_age must be a number of seconds, not str"),
    (
        {"max_auth_age": -1},
        ValueError,
        "max_auth_age must be a positive finite number of seconds, not -1",
    ),
    ({"max_auth_age": 0, "sources": ()}, ValueError, "max_auth_age must be a positive finite"),
    ({"sources": (), "trusted_origins": "x"}, ValueError, "sources must be some of"),
]


@pytest.mark.parametrize(("options", "error", "message"), BAD_OPTIONS)
@pytest.mark.parametrize("guard", ["RequireSession", "SessionDependency", "SessionAuthBackend"])
def test_every_guard_refuses_a_bad_option_alike(
    guard: str, options: dict[str, Any], error: type[Exception], message: str
) -> None:
    """The guards share their options (docs/guides/starlette.md): each refuses the same bad
    value with the same error, whichever guard is built."""
    sm = SessionManager()
    build: dict[str, Callable[[], object]] = {
        "RequireSession": lambda: RequireSession(whoami, sm, **options),
        "SessionDependency": lambda: SessionDependency(sm, **options),
        "SessionAuthBackend": lambda: SessionAuthBackend(sm, **options),
    }
    with pytest.raises(error) as raised:
        build[guard]()
    assert str(raised.value).startswith(message)
