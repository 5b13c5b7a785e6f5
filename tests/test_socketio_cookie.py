"""Socket.IO cookie mode: a handshake authenticated by the session cookie, over a real uvicorn
with real python-socketio clients."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import socketio

from sessionkit import SessionManager
from sessionkit.cookies import SessionCookie
from sessionkit.socketio import bind_socketio
from tests.servers import serve

COOKIE = SessionCookie()


@contextlib.asynccontextmanager
async def cookie_server(
    sm: SessionManager, cookie: SessionCookie | str = COOKIE, **server: Any
) -> AsyncIterator[tuple[str, Tab]]:
    """Serve a Socket.IO server bound in cookie mode; yield its URL and a client, which is
    closed before the server stops (a long-polling client would hold the shutdown up)."""
    sio = socketio.AsyncServer(async_mode="asgi", **server)
    bind_socketio(sm, sio, cookie=cookie)
    tab = Tab()
    async with serve(socketio.ASGIApp(sio)) as url:
        try:
            yield url, tab
        finally:
            await tab.close()


class Tab:
    """A real Socket.IO client that records what the server pushes, in order."""

    def __init__(self) -> None:
        self.sio: Any = None
        self.events: list[tuple[str, Any]] = []
        self.got = asyncio.Event()

    def _logout(self, data: Any) -> None:
        self.events.append(("logout", data))
        self.got.set()

    async def connect(
        self,
        url: str,
        *,
        cookie: str | None = None,
        origin: str | None = None,
        transports: list[str] | None = None,
        auth: dict[str, str] | None = None,
    ) -> None:
        headers = {} if origin is None else {"Origin": origin}
        if cookie is not None:
            headers["Cookie"] = cookie
        # The client moves a Cookie header into its cookie jar with SimpleCookie before a
        # WebSocket handshake (dropping what SimpleCookie cannot parse): headers given as
        # WebSocket options reach the server as written, as a browser's would.
        self.sio = socketio.AsyncClient(
            reconnection=False, websocket_extra_options={"headers": dict(headers)}
        )
        self.sio.on("logout", self._logout)
        polling_headers = {} if transports == ["websocket"] else headers
        await self.sio.connect(
            url, headers=polling_headers, transports=transports, auth=auth, wait_timeout=5
        )

    @property
    def connected(self) -> bool:
        return self.sio is not None and bool(self.sio.connected)

    async def close(self) -> None:
        if self.sio is not None:
            await self.sio.disconnect()
            await self.sio.shutdown()


@pytest.mark.parametrize(
    "transports", [["websocket"], None], ids=["websocket handshake", "polling handshake"]
)
async def test_a_cookie_authenticated_socket_receives_logout(
    memory_sm: SessionManager, transports: list[str] | None
) -> None:
    key = await memory_sm.load_new_session("Luca")
    other = await memory_sm.load_new_session("Fabio")
    async with cookie_server(memory_sm) as (url, tab):
        cookie = f'prefs={{"a": 1}}; name=John Doe; a=1;; {COOKIE.name}={key}'
        await tab.connect(url, cookie=cookie, transports=transports)
        assert tab.connected
        await memory_sm.delete_session(other)  # another session's ending reaches nobody here
        assert await memory_sm.send_logout_message(key) is True
        async with asyncio.timeout(5):
            await tab.got.wait()
    assert tab.events[0] == ("logout", {"reason": "logout"})


async def test_an_auth_key_still_wins_in_cookie_mode(memory_sm: SessionManager) -> None:
    key = await memory_sm.load_new_session("Luca")
    dead = await memory_sm.load_new_session("Fabio")
    await memory_sm.delete_session(dead)
    async with cookie_server(memory_sm) as (url, tab):
        # The auth payload is read first; the stale cookie beside it is not consulted.
        await tab.connect(url, auth={"session_key": key}, cookie=f"{COOKIE.name}={dead}")
        await memory_sm.delete_user_sessions("Luca")
        async with asyncio.timeout(5):
            await tab.got.wait()
    assert tab.events[0] == ("logout", {"reason": "logout_all"})


@pytest.mark.parametrize("cookie", ["dead", "none", "other name"])
async def test_a_dead_or_missing_cookie_is_refused(memory_sm: SessionManager, cookie: str) -> None:
    key = await memory_sm.load_new_session("Luca")
    header = {
        "dead": f"{COOKIE.name}={key}",
        "none": None,
        "other name": f"session_key={key}",
    }[cookie]
    if cookie == "dead":
        await memory_sm.delete_session(key)
    async with cookie_server(memory_sm) as (url, tab):
        with pytest.raises(socketio.exceptions.ConnectionError):
            await tab.connect(url, cookie=header)
        assert not tab.connected


async def test_a_foreign_page_cannot_open_a_socket_with_the_cookie(
    memory_sm: SessionManager,
) -> None:
    key = await memory_sm.load_new_session("Luca")
    async with cookie_server(memory_sm) as (url, tab):
        with pytest.raises(socketio.exceptions.ConnectionError):
            await tab.connect(url, cookie=f"{COOKIE.name}={key}", origin="https://evil.example")
        assert not tab.connected
    # A listed origin may.
    async with cookie_server(memory_sm, cors_allowed_origins=["https://app.example"]) as (url, tab):
        await tab.connect(url, cookie=f"{COOKIE.name}={key}", origin="https://app.example")
        assert tab.connected


@pytest.mark.parametrize(
    "origins",
    [
        "*",
        ["*"],
        [],
        ("https://a.example", "*"),
        lambda origin: True,  # an allow-all rule nobody can read at bind time
        "null",
        ["https://a.example", "null"],  # sandboxed frames and file: pages send "null"
    ],
    ids=["star", "list star", "empty", "tuple star", "callable", "null", "list null"],
)
async def test_cookie_mode_refuses_a_server_that_accepts_any_origin(
    memory_sm: SessionManager, origins: Any
) -> None:
    sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins=origins)
    with pytest.raises(ValueError, match="cors_allowed_origins"):
        bind_socketio(memory_sm, sio, cookie=COOKIE)
    # Nothing changed: the manager is not bound and the server has no handler of ours.
    assert memory_sm.get_socket_reference() is None
    assert "connect" not in sio.handlers.get("/", {})
    bind_socketio(memory_sm, sio)  # without cookie mode the same server binds as before
    assert memory_sm.get_socket_reference() is sio


async def test_cookie_mode_takes_a_cookie_name(memory_sm: SessionManager) -> None:
    key = await memory_sm.load_new_session("Luca")
    async with cookie_server(memory_sm, cookie="sid") as (url, tab):
        await tab.connect(url, cookie=f"sid={key}")
        assert tab.connected


async def test_ending_one_device_logs_out_that_socket_only(memory_sm: SessionManager) -> None:
    phone = await memory_sm.load_new_session("Luca")
    laptop = await memory_sm.load_new_session("Luca")
    async with cookie_server(memory_sm) as (url, phone_tab):
        laptop_tab = Tab()
        try:
            await phone_tab.connect(url, cookie=f"{COOKIE.name}={phone}")
            await laptop_tab.connect(url, cookie=f"{COOKIE.name}={laptop}")
            [listed_phone, listed_laptop] = await memory_sm.get_user_sessions("Luca")
            assert await memory_sm.delete_user_session("Luca", listed_phone.id) is True
            async with asyncio.timeout(5):
                await phone_tab.got.wait()
            # The laptop's first push is the one sent now: it was not told to log out before.
            await memory_sm.send_logout_message(laptop)
            async with asyncio.timeout(5):
                await laptop_tab.got.wait()
        finally:
            await laptop_tab.close()
    assert phone_tab.events == [("logout", {"reason": "logout"})]
    assert laptop_tab.events == [("logout", {"reason": "logout"})]
    assert listed_laptop.id != listed_phone.id
    assert await memory_sm.check_session_status(laptop)


@pytest.mark.parametrize(
    "headers",
    [
        {},  # what a script tag on a sibling port sends, with the j= of a JSONP handshake
        {"sec-fetch-site": "same-site"},
    ],
    ids=["jsonp", "jsonp same-site"],
)
async def test_a_jsonp_handshake_opens_no_engineio_session(
    memory_sm: SessionManager, headers: dict[str, str]
) -> None:
    key = await memory_sm.load_new_session("Luca")
    sio = socketio.AsyncServer(async_mode="asgi")
    bind_socketio(memory_sm, sio, cookie=COOKIE)
    handshake = "/socket.io/?EIO=4&transport=polling"
    cookie = {"cookie": f"{COOKIE.name}={key}"}
    async with serve(socketio.ASGIApp(sio)) as url, httpx.AsyncClient(base_url=url) as http:
        for query in ("&j=0", "&j=", "&t=x&j=1"):
            refused = await http.get(handshake + query, headers={**cookie, **headers})
            assert refused.status_code == 401, query
            assert "___eio" not in refused.text  # no script handing out an engine.io sid
        assert sio.eio.sockets == {}
        # The same handshake without j= (what socket.io-client sends) opens one.
        opened = await http.get(handshake, headers={**cookie, "sec-fetch-site": "same-origin"})
        assert opened.status_code == 200
        assert len(sio.eio.sockets) == 1


@pytest.mark.parametrize("fetch_site", ["same-site", "cross-site"])
async def test_a_handshake_from_another_site_without_an_origin_is_refused(
    memory_sm: SessionManager, fetch_site: str
) -> None:
    key = await memory_sm.load_new_session("Luca")
    sio = socketio.AsyncServer(async_mode="asgi")
    bind_socketio(memory_sm, sio, cookie=COOKIE)
    handshake = "/socket.io/?EIO=4&transport=polling"
    headers = {"cookie": f"{COOKIE.name}={key}", "sec-fetch-site": fetch_site}
    async with serve(socketio.ASGIApp(sio)) as url, httpx.AsyncClient(base_url=url) as http:
        refused = await http.get(handshake, headers=headers)
        assert refused.status_code == 401
        assert sio.eio.sockets == {}
        # With its Origin, engine.io's own check decides: the page's own origin passes.
        opened = await http.get(handshake, headers={**headers, "origin": url})
        assert opened.status_code == 200
