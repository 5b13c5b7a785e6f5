"""Cookie mode in sessionkit.starlette over real HTTP: CSRF, the 401 that clears the cookie,
malformed neighbouring cookies, client_info, the FastAPI security schemes and the Starlette
authentication backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sessionkit import ClientInfo, MemoryStore, SessionDetails, SessionManager, StoreUnavailable
from sessionkit.keys import hash_key
from sessionkit.starlette import (
    RequireSession,
    SessionAuthBackend,
    SessionCookie,
    SessionDependency,
    SessionRequired,
    SessionUser,
    client_info,
    get_session,
    session_required_handler,
)
from tests.servers import serve

COOKIE = SessionCookie()
FOREIGN = "https://evil.example"
TRUSTED = "https://app.example.com"


async def whoami(request: Request) -> JSONResponse:
    return JSONResponse({"user": get_session(request).username})


async def whereami(request: Request) -> JSONResponse:
    info = client_info(request)
    return JSONResponse({"ip": info.ip, "user_agent": info.user_agent})


@pytest.fixture
async def http(memory_sm: SessionManager) -> AsyncIterator[httpx.AsyncClient]:
    guard = RequireSession(whoami, memory_sm, cookie=COOKIE, trusted_origins=[TRUSTED])
    app = Starlette(
        routes=[
            Route("/api/me", guard, methods=["GET", "POST", "DELETE"]),
            Route("/api/seed", RequireSession(whoami, memory_sm), methods=["GET", "POST"]),
            Route("/where", whereami),
        ]
    )
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        yield client


def with_cookie(key: str, **headers: str) -> dict[str, str]:
    return {"cookie": f"{COOKIE.name}={key}", **headers}


# -- CSRF ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": FOREIGN},
        {"sec-fetch-site": "cross-site", "origin": FOREIGN},
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site", "origin": "https://sub.127.0.0.1"},
        {"origin": "null"},
        {},  # neither header: no browser on this site's own page sent it
    ],
    ids=[
        "foreign origin",
        "sec-fetch-site cross-site",
        "cross-site alone",
        "same-site",
        "null",
        "none",
    ],
)
async def test_a_cross_site_unsafe_request_with_the_cookie_is_403(
    memory_sm: SessionManager, http: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    key = await memory_sm.load_new_session("Luca")
    before = await memory_sm.get_session_details(key)
    for method in ("POST", "DELETE"):
        response = await http.request(method, "/api/me", headers=with_cookie(key, **headers))
        assert response.status_code == 403
        assert response.json() == {
            "logout": False,
            "message": "cross-site request refused: the session cookie works from this "
            "site's pages only",
        }
        assert "set-cookie" not in response.headers  # the session itself is fine
    # Refused before the store was asked: the forged request did not even restart the timer.
    assert (await memory_sm.get_session_details(key)).last_active_at == before.last_active_at
    assert await memory_sm.check_session_status(key)


@pytest.mark.parametrize(
    "headers",
    [
        {"sec-fetch-site": "same-origin"},
        {"sec-fetch-site": "none"},  # typed in the address bar, a bookmark
        {"origin": "own"},
        {"origin": TRUSTED},
        {"origin": TRUSTED.upper(), "sec-fetch-site": "cross-site"},
    ],
    ids=["same-origin", "user-initiated", "own origin", "trusted", "trusted cross-site"],
)
async def test_a_same_origin_or_trusted_unsafe_request_with_the_cookie_passes(
    memory_sm: SessionManager, http: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    key = await memory_sm.load_new_session("Luca")
    if headers.get("origin") == "own":
        headers = {"origin": str(http.base_url).rstrip("/")}
    response = await http.post("/api/me", headers=with_cookie(key, **headers))
    assert response.status_code == 200
    assert response.json() == {"user": "Luca"}


async def test_safe_methods_with_the_cookie_skip_the_check(
    memory_sm: SessionManager, http: httpx.AsyncClient
) -> None:
    key = await memory_sm.load_new_session("Luca")
    response = await http.get("/api/me", headers=with_cookie(key, origin=FOREIGN))
    assert response.status_code == 200


@pytest.mark.parametrize(
    "how",
    [
        lambda key: {"session_key": key},
        lambda key: {"authorization": f"Bearer {key}"},
    ],
    ids=["header key", "bearer"],
)
async def test_header_and_bearer_keys_skip_the_check(
    memory_sm: SessionManager, http: httpx.AsyncClient, how: Any
) -> None:
    key = await memory_sm.load_new_session("Luca")
    hostile = {"origin": FOREIGN, "sec-fetch-site": "cross-site"}
    response = await http.post("/api/me", headers={**how(key), **hostile})
    assert response.status_code == 200
    assert response.json() == {"user": "Luca"}


def test_trusted_origins_are_checked() -> None:
    sm = SessionManager()
    bad_origins: list[list[Any]] = [
        ["*"],
        ["evil.example"],
        ["ftp://x.example"],
        ["https://x.example/path"],
        [42],
    ]
    for bad in bad_origins:
        with pytest.raises(ValueError):
            RequireSession(whoami, sm, trusted_origins=bad)
    with pytest.raises(TypeError):
        SessionDependency(sm, trusted_origins="https://x.example")


# -- malformed neighbours, and the 401 that clears --------------------------------------------


@pytest.mark.parametrize(
    "neighbours",
    ['prefs={"a": 1}', "name=John Doe", "a=1;;", 'prefs={"a": 1}; name=John Doe; a=1;;'],
)
async def test_malformed_neighbouring_cookies_still_authenticate(
    memory_sm: SessionManager, http: httpx.AsyncClient, neighbours: str
) -> None:
    key = await memory_sm.load_new_session("Luca")
    same_origin = {"sec-fetch-site": "same-origin"}
    cookie = f"{neighbours}; {COOKIE.name}={key}"
    response = await http.post("/api/me", headers={"cookie": cookie, **same_origin})
    assert response.status_code == 200, response.text
    # The seed's cookie name too, where SimpleCookie used to give up and answer 401.
    response = await http.get("/api/seed", headers={"cookie": f"{neighbours}; session_key={key}"})
    assert response.json() == {"user": "Luca"}


async def test_a_401_to_a_cookie_borne_key_clears_the_cookie(
    memory_sm: SessionManager, http: httpx.AsyncClient
) -> None:
    key = await memory_sm.load_new_session("Luca")
    await memory_sm.delete_session(key)
    response = await http.get("/api/me", headers=with_cookie(key))
    assert response.status_code == 401
    assert response.json()["logout"] is True
    assert response.headers.get_list("set-cookie") == [COOKIE.clear_header()]
    assert key not in response.text


async def test_a_401_to_a_header_key_or_no_key_leaves_cookies_alone(
    memory_sm: SessionManager, http: httpx.AsyncClient
) -> None:
    key = await memory_sm.load_new_session("Luca")
    await memory_sm.delete_session(key)
    for headers in ({"session_key": key}, {}, {"cookie": "theme=dark"}):
        response = await http.get("/api/me", headers=headers)
        assert response.status_code == 401
        assert "set-cookie" not in response.headers


async def test_client_info_reads_the_peer_and_the_user_agent(http: httpx.AsyncClient) -> None:
    response = await http.get("/where", headers={"user-agent": "TestBrowser/1.0"})
    assert response.json() == {"ip": "127.0.0.1", "user_agent": "TestBrowser/1.0"}
    response = await http.get("/where", headers={"user-agent": "U" * 2000})
    assert response.json()["user_agent"] == "U" * 512  # cut to what ClientInfo keeps
    assert ClientInfo(**response.json()).ip == "127.0.0.1"


# -- FastAPI: the security schemes in OpenAPI -------------------------------------------------


async def test_the_dependency_declares_its_sources_in_openapi(memory_sm: SessionManager) -> None:
    pytest.importorskip("fastapi")
    from fastapi import Depends, FastAPI

    live = SessionDependency(memory_sm, cookie=COOKIE)
    cookie_only = SessionDependency(memory_sm, sources=("cookie",), cookie=COOKIE)
    app = FastAPI(exception_handlers={SessionRequired: session_required_handler})

    @app.post("/api/table")
    async def table(session: SessionDetails = Depends(live)) -> dict[str, str]:  # noqa: B008
        return {"user": session.username}

    @app.get("/api/mine")
    async def mine(session: SessionDetails = Depends(cookie_only)) -> dict[str, str]:  # noqa: B008
        return {"user": session.username}

    key = await memory_sm.load_new_session("Luca")
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        document = (await client.get("/openapi.json")).json()
        # What Swagger UI's "Authorize" sends for each scheme it lists.
        by_header = await client.post("/api/table", headers={"session_key": key})
        by_bearer = await client.post("/api/table", headers={"authorization": f"Bearer {key}"})
        by_cookie = await client.get("/api/mine", headers=with_cookie(key))
        forged = await client.post("/api/table", headers=with_cookie(key, origin=FOREIGN))
        await memory_sm.delete_session(key)
        dead = await client.post("/api/table", headers=with_cookie(key, origin=url))
        docs = await client.get("/docs")

    schemes = document["components"]["securitySchemes"]
    assert schemes["sessionKeyHeader"] == {
        "type": "apiKey",
        "in": "header",
        "name": "session_key",
        "description": "The session key, in a header (API clients).",
    }
    assert schemes["sessionBearer"]["type"] == "http"
    assert schemes["sessionBearer"]["scheme"] == "bearer"
    assert schemes["sessionCookie"]["in"] == "cookie"
    assert schemes["sessionCookie"]["name"] == "__Host-session"
    table_op = document["paths"]["/api/table"]["post"]
    assert table_op["security"] == [
        {"sessionKeyHeader": []},
        {"sessionBearer": []},
        {"sessionCookie": []},
    ]
    assert document["paths"]["/api/mine"]["get"]["security"] == [{"sessionCookie": []}]
    # The schemes' own parameters are not leaked into the operation as query parameters.
    assert "parameters" not in table_op
    assert docs.status_code == 200 and "swagger" in docs.text.lower()

    assert [r.json() for r in (by_header, by_bearer, by_cookie)] == [{"user": "Luca"}] * 3
    assert forged.status_code == 403 and forged.json()["logout"] is False
    assert dead.status_code == 401 and dead.json()["logout"] is True
    assert dead.headers.get_list("set-cookie") == [COOKIE.clear_header()]


async def test_the_dependency_without_fastapi_signature_is_a_plain_callable(
    memory_sm: SessionManager,
) -> None:
    live = SessionDependency(memory_sm)

    async def table(request: Request) -> JSONResponse:
        return JSONResponse({"user": (await live(request)).username})

    app = Starlette(
        routes=[Route("/table", table, methods=["POST"])],
        exception_handlers={SessionRequired: session_required_handler},
    )
    key = await memory_sm.load_new_session("Fabio")
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        forged = await client.post(
            "/table", headers={"cookie": f"session_key={key}", "origin": FOREIGN}
        )
        ok = await client.post("/table", headers={"cookie": f"session_key={key}", "origin": url})
    assert forged.status_code == 403 and forged.json()["logout"] is False
    assert ok.json() == {"user": "Fabio"}


# -- Starlette's AuthenticationMiddleware -----------------------------------------------------


@requires("authenticated")
async def profile(request: Request) -> JSONResponse:
    user = request.user
    assert isinstance(user, SessionUser)
    return JSONResponse(
        {
            "user": user.username,
            "display": user.display_name,
            "identity": user.identity,
            "scopes": request.auth.scopes,
            "same": user.session is get_session(request),
        }
    )


async def anyone(request: Request) -> JSONResponse:
    return JSONResponse({"authenticated": request.user.is_authenticated})


def auth_app(sm: SessionManager) -> Starlette:
    backend = SessionAuthBackend(sm, cookie=COOKIE, scopes=("authenticated", "demo"))
    return Starlette(
        routes=[Route("/profile", profile, methods=["GET", "POST"]), Route("/anyone", anyone)],
        middleware=[
            Middleware(AuthenticationMiddleware, backend=backend, on_error=backend.on_error)
        ],
    )


async def test_requires_authenticated_with_the_auth_backend(memory_sm: SessionManager) -> None:
    key = await memory_sm.load_new_session("Luca")
    dead = await memory_sm.load_new_session("Fabio")
    await memory_sm.delete_session(dead)
    async with serve(auth_app(memory_sm)) as url, httpx.AsyncClient(base_url=url) as client:
        ok = await client.get("/profile", headers=with_cookie(key))
        by_header = await client.post("/profile", headers={"session_key": key, "origin": FOREIGN})
        anonymous = await client.get("/profile")
        gone = await client.get("/profile", headers=with_cookie(dead))
        forged = await client.post("/profile", headers=with_cookie(key, origin=FOREIGN))
        same_site = await client.post("/profile", headers=with_cookie(key, origin=url))
        public = [
            (await client.get("/anyone", headers=h)).json()["authenticated"]
            for h in (with_cookie(key), {})
        ]
    assert ok.status_code == 200
    assert ok.json() == {
        "user": "Luca",
        "display": "Luca",
        "identity": hash_key(key),
        "scopes": ["authenticated", "demo"],
        "same": True,
    }
    assert by_header.json()["user"] == "Luca"
    assert same_site.json()["user"] == "Luca"
    for refused in (anonymous, gone, forged):
        assert refused.status_code == 403
    assert public == [True, False]


async def test_the_auth_backend_answers_503_when_the_store_is_down() -> None:
    class DownStore(MemoryStore):
        async def touch_get(self, key: str, timeout: float) -> Any:
            raise StoreUnavailable("store down")

    sm = SessionManager(timeout=30, store=DownStore())
    try:
        key = await sm.load_new_session("Luca")
        async with serve(auth_app(sm)) as url, httpx.AsyncClient(base_url=url) as client:
            response = await client.get("/profile", headers=with_cookie(key))
        assert response.status_code == 503
        assert response.json() == {
            "logout": False,
            "message": "the session store is unavailable: try again",
        }
    finally:
        await sm.aclose()
