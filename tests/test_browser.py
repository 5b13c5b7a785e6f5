"""The demo in a real browser: Debian's headless Chromium, driven by Playwright for Python.

Needs ``chromium`` (apt), the npm package ``socket.io-client`` (``make vendor``) and
``playwright`` (the dev group; its own browser downloads are never used). Missing any of them
skips the test, except under CI (``CI=true``), where it fails: CI installs them all.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from examples.webapp.app import VENDORED_CLIENT
from tests.servers import serve

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


async def log_in_as_luca(page: Any) -> None:
    """Log the demo's page in as Luca, and wait for its socket to connect."""
    from playwright.async_api import expect

    await page.fill("#username", "Luca")
    await page.fill("#password", "sessionkit")
    await page.click("#login")
    await expect(page.locator("#socket-state")).to_have_text("Socket: connected")


def _missing() -> list[str]:
    missing = []
    if not CHROMIUM.exists():
        missing.append("chromium (apt-get install chromium)")
    if not VENDORED_CLIENT.exists():
        missing.append("socket.io-client (make vendor, needs npm)")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        missing.append("playwright (the dev group: make setup installs it)")
    return missing


def _require(missing: list[str], ci: bool) -> None:
    if missing:
        reason = "the browser test needs " + ", ".join(missing)
        if ci:
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture
def browser_parts() -> None:
    _require(_missing(), os.environ.get("CI") == "true")


def test_missing_browser_parts_fail_under_ci_and_skip_elsewhere() -> None:
    with pytest.raises(pytest.fail.Exception, match="chromium"):
        _require(["chromium (apt-get install chromium)"], ci=True)
    with pytest.raises(pytest.skip.Exception, match=r"socket\.io-client"):
        _require(["socket.io-client (make vendor, needs npm)"], ci=False)
    _require([], ci=True)


@pytest.mark.usefixtures("browser_parts")
async def test_the_page_returns_to_login_when_the_session_expires(tmp_path: Path) -> None:
    from playwright.async_api import async_playwright, expect

    from examples.webapp.app import create_app

    timeout = 4.0  # seconds: long enough to log in and load the table, short enough to wait
    demo = create_app(timeout=timeout, warn_before=2.0)
    async with serve(demo.app) as url, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 820, "height": 760})
            console: list[str] = []
            page.on("console", lambda message: console.append(message.text))
            bodies: list[str] = []  # every response the page's script fetched

            async def keep_body(response: Any) -> None:
                if response.request.resource_type in ("fetch", "xhr"):
                    with contextlib.suppress(Exception):  # a body gone with a closed socket
                        bodies.append(await response.text())

            page.on("response", keep_body)
            await page.goto(url)
            script = page.locator("script[data-socketio]")
            assert await script.get_attribute("src") == "/vendor/socket.io.min.js"

            await page.fill("#username", "Luca")
            await page.fill("#password", "sessionkit")
            await page.click("#login")
            await expect(page.locator("#who")).to_have_text("Luca")
            await expect(page.locator("#socket-state")).to_have_text("Socket: connected")
            # Chromium took the Secure __Host- cookie from http://127.0.0.1, HttpOnly: the
            # key is in the browser's jar, and out of reach of the page's script.
            [cookie] = await page.context.cookies()
            key = cookie["value"]
            assert (cookie["name"], cookie["httpOnly"], cookie["secure"]) == (
                "__Host-session",
                True,
                True,
            )
            assert (cookie["sameSite"], cookie["path"]) == ("Lax", "/")
            assert await demo.sm.get_username_from_session_key(key) == "Luca"
            assert key not in await page.evaluate("document.cookie")
            await page.click("#load")
            await expect(page.locator("#table")).to_be_visible()
            loaded_at = time.monotonic()
            await expect(page.locator("#table tbody tr")).to_have_count(5)
            await expect(page.locator("#table")).to_contain_text("Technology")
            assert "s" in (await page.locator("#countdown").inner_text())
            shot = tmp_path / "logged-in.png"
            await page.screenshot(path=str(shot))
            keep = os.environ.get("DEMO_SCREENSHOTS")  # a folder: docs/ when refreshing them
            if keep:
                shutil.copy(shot, Path(keep) / "demo.png")

            # No further action: the server's push must bring the login form back.
            await expect(page.locator("#message")).to_contain_text("ends in", timeout=10_000)
            await expect(page.locator("#login-form")).to_be_visible(timeout=10_000)
            back_after = time.monotonic() - loaded_at
            await expect(page.locator("#app-view")).to_be_hidden()
            await expect(page.locator("#message")).to_have_text(
                "Logged out by the server: your session expired."
            )
            await page.screenshot(path=str(tmp_path / "logged-out.png"))
            if keep:
                shutil.copy(tmp_path / "logged-out.png", Path(keep) / "demo-logged-out.png")
            print(f"\nlogin form back {back_after:.2f} s after the last API call ({timeout} s)")
            assert (tmp_path / "logged-out.png").stat().st_size > 1000
            text = await page.locator("body").inner_text()
            assert "Log in" in text and "Technology" not in text
            # The session ends `timeout` s after the table call restarted it; allow slack.
            assert timeout - 0.5 < back_after < timeout + 2.5, back_after
            assert not [line for line in console if "error" in line.lower()], console
            assert len(bodies) >= 4  # login, sessions, table, sessions again
            assert any('"username":"Luca"' in body for body in bodies)
            assert not [body for body in bodies if key in body]
            assert key not in await page.content()
        finally:
            await browser.close()
    assert await demo.sm.count_sessions() == 0


@pytest.mark.usefixtures("browser_parts")
async def test_log_out_everywhere_returns_every_tab_to_login() -> None:
    from playwright.async_api import async_playwright, expect

    from examples.webapp.app import create_app

    demo = create_app(timeout=30, warn_before=None)
    async with serve(demo.app) as url, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            tabs = [await browser.new_page(), await (await browser.new_context()).new_page()]
            for tab in tabs:
                await tab.goto(url)
                await log_in_as_luca(tab)
            assert await demo.sm.count_sessions() == 2
            await tabs[0].click("#logout-all")
            for tab in tabs:
                await expect(tab.locator("#login-form")).to_be_visible(timeout=5_000)
                await expect(tab.locator("#message")).to_have_text(
                    "Logged out by the server: you logged out everywhere."
                )
        finally:
            await browser.close()
    assert await demo.sm.count_sessions() == 0


@pytest.mark.usefixtures("browser_parts")
async def test_ending_another_device_from_the_sessions_panel(tmp_path: Path) -> None:
    from playwright.async_api import async_playwright, expect

    from examples.webapp.app import create_app

    demo = create_app(timeout=30, warn_before=None)
    async with serve(demo.app) as url, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            devices = {}
            for name, agent in (("laptop", LAPTOP_AGENT), ("phone", PHONE_AGENT)):
                # A browser context each: its own cookie jar, as two devices have.
                context = await browser.new_context(
                    user_agent=agent, viewport={"width": 820, "height": 760}
                )
                page = await context.new_page()
                await page.goto(url)
                await log_in_as_luca(page)
                devices[name] = page
            laptop, phone = devices["laptop"], devices["phone"]
            assert await demo.sm.count_sessions() == 2

            await laptop.click("#refresh-sessions")
            rows = laptop.locator("#sessions tbody tr")
            await expect(rows).to_have_count(2)
            # Each device named from its user agent; the raw one is the cell's tooltip.
            devices_named = laptop.locator("#sessions td.device")
            await expect(devices_named.nth(0)).to_have_text("Chrome on Linuxthis device")
            await expect(devices_named.nth(0)).to_have_attribute("title", LAPTOP_AGENT)
            await expect(rows.nth(0)).to_contain_text("127.0.0.1")
            await expect(devices_named.nth(1)).to_have_text("Chrome on Android")
            await expect(rows.nth(1)).not_to_contain_text("this device")
            shot = tmp_path / "sessions.png"
            await laptop.screenshot(path=str(shot), full_page=True)
            keep = os.environ.get("DEMO_SCREENSHOTS")
            if keep:
                shutil.copy(shot, Path(keep) / "demo-sessions.png")

            await rows.nth(1).locator("button.end").click()
            # The phone's tab is told by push, and shows the login form again.
            await expect(phone.locator("#login-form")).to_be_visible(timeout=5_000)
            await expect(phone.locator("#app-view")).to_be_hidden()
            await expect(phone.locator("#message")).to_have_text(
                "Logged out by the server: the server logged you out."
            )
            await expect(rows).to_have_count(1)
            await expect(laptop.locator("#app-view")).to_be_visible()
            [left] = await demo.sm.get_user_sessions("Luca")
            assert left.client is not None and left.client.user_agent == LAPTOP_AGENT
            # The phone's reload finds no session: its cookie was dead, and is now cleared.
            async with phone.expect_response("**/api/me") as me:
                await phone.reload()
            assert (await me.value).status == 401
            await expect(phone.locator("#login-form")).to_be_visible()
            assert await phone.context.cookies() == []
        finally:
            await browser.close()


LAPTOP_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"
PHONE_AGENT = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36"
)


@pytest.mark.usefixtures("browser_parts")
async def test_a_cross_site_page_cannot_log_the_browser_in() -> None:
    from playwright.async_api import async_playwright
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    from examples.webapp.app import create_app

    demo = create_app(timeout=30, warn_before=None)
    # Login CSRF: a page on a sibling port of the same host (cross-origin but same-site, so a
    # SameSite=Lax cookie would ride along) auto-submits a text/plain form whose body parses as
    # the demo's JSON login, with the attacker's own credentials.
    holder: dict[str, str] = {}

    async def attacker_page(request: Request) -> HTMLResponse:
        target = holder["demo"] + "/api/try_login"
        name = '{"username": "Fabio", "password": "sessionkit", "pad": "'
        return HTMLResponse(
            f"""<!doctype html><body>
            <form id="f" method="POST" action="{target}" enctype="text/plain">
              <input type="hidden" name='{name}' value='"}}'>
            </form>
            <script>document.getElementById("f").submit();</script></body>"""
        )

    attacker = Starlette(routes=[Route("/", attacker_page)])
    async with (
        serve(demo.app) as url,
        serve(attacker) as evil_url,
        async_playwright() as pw,
    ):
        holder["demo"] = url
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            # The victim is logged in as herself, in this browser.
            await page.goto(url)
            await log_in_as_luca(page)
            [before] = await page.context.cookies()
            async with page.expect_response("**/api/try_login") as login:
                await page.goto(evil_url)
            response = await login.value
            request = response.request
            # The browser did send the forged login, with the attacker's body...
            assert request.method == "POST"
            assert '"username": "Fabio"' in (request.post_data or "")
            headers = await request.all_headers()
            assert headers["content-type"].startswith("text/plain")
            assert headers.get("origin") == evil_url
            # ...and the demo refused it: the victim's browser still holds her own session,
            # which the forged login did not end, and the attacker's account has none.
            assert response.status == 403
            assert await page.context.cookies() == [before]
            assert await demo.sm.get_username_from_session_key(before["value"]) == "Luca"
            assert await demo.sm.get_logged_users() == ["Luca"]
        finally:
            await browser.close()


@pytest.mark.usefixtures("browser_parts")
async def test_a_logout_in_one_tab_returns_the_other_tab_to_login() -> None:
    from playwright.async_api import async_playwright, expect

    from examples.webapp.app import create_app

    demo = create_app(timeout=30, warn_before=None)
    async with serve(demo.app) as url, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context()  # one browser: both tabs share its cookie
            first = await context.new_page()
            await first.goto(url)
            await log_in_as_luca(first)
            second = await context.new_page()
            await second.goto(url)  # the cookie's session: logged in, with its own socket
            await expect(second.locator("#who")).to_have_text("Luca")
            await expect(second.locator("#socket-state")).to_have_text("Socket: connected")
            assert await demo.sm.count_sessions() == 1

            async with first.expect_response("**/api/logout") as bye:
                await first.click("#logout")
            response = await bye.value
            assert response.status == 200
            assert (await response.all_headers())["clear-site-data"] == '"cache", "storage"'
            await expect(first.locator("#login-form")).to_be_visible()
            # The other tab was told by push, and shows the login form again.
            await expect(second.locator("#login-form")).to_be_visible(timeout=5_000)
            await expect(second.locator("#app-view")).to_be_hidden()
            await expect(second.locator("#message")).to_have_text(
                "Logged out by the server: the server logged you out."
            )
            assert await context.cookies() == []
            assert await demo.sm.count_sessions() == 0
        finally:
            await browser.close()


@pytest.mark.usefixtures("browser_parts")
async def test_end_all_other_sessions_keeps_this_device_only() -> None:
    from playwright.async_api import async_playwright, expect

    from examples.webapp.app import create_app

    demo = create_app(timeout=30, warn_before=None)
    async with serve(demo.app) as url, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            pages = []
            for agent in (LAPTOP_AGENT, PHONE_AGENT, PHONE_AGENT):
                context = await browser.new_context(user_agent=agent)
                page = await context.new_page()
                await page.goto(url)
                await log_in_as_luca(page)
                pages.append(page)
            laptop, *others = pages
            await laptop.click("#refresh-sessions")
            rows = laptop.locator("#sessions tbody tr")
            await expect(rows).to_have_count(3)
            await laptop.click("#end-others")
            await expect(laptop.locator("#message")).to_have_text("2 other session(s) ended.")
            for page in others:
                await expect(page.locator("#login-form")).to_be_visible(timeout=5_000)
            await expect(rows).to_have_count(1)
            await expect(rows.nth(0)).to_contain_text("this device")
            await expect(laptop.locator("#app-view")).to_be_visible()
            [left] = await demo.sm.get_user_sessions("Luca")
            assert left.client is not None and left.client.user_agent == LAPTOP_AGENT
        finally:
            await browser.close()


@pytest.mark.usefixtures("browser_parts")
async def test_the_page_fits_a_phone(tmp_path: Path) -> None:
    from playwright.async_api import async_playwright, expect

    from examples.webapp.app import create_app

    demo = create_app(timeout=30, warn_before=None)
    async with serve(demo.app) as url, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            pages = []
            for context in (
                await browser.new_context(user_agent=LAPTOP_AGENT),
                await browser.new_context(
                    user_agent=PHONE_AGENT,
                    viewport={"width": PHONE_WIDTH, "height": 812},
                    is_mobile=True,
                    has_touch=True,
                ),
            ):
                page = await context.new_page()
                await page.goto(url)
                await log_in_as_luca(page)
                pages.append(page)
            phone = pages[1]
            await phone.click("#load")
            await expect(phone.locator("#table tbody tr")).to_have_count(5)
            await phone.click("#refresh-sessions")
            await expect(phone.locator("#sessions tbody tr")).to_have_count(2)
            # Nothing sticks out of the card, and the page does not scroll sideways.
            fit = await phone.evaluate(
                """() => {
                    const card = document.querySelector("main").getBoundingClientRect();
                    const out = [...document.querySelectorAll("main *")].filter((e) => {
                        const r = e.getBoundingClientRect();
                        return r.width > 0 && (r.right > card.right + 0.5 || r.left < card.left - 0.5);
                    }).map((e) => e.tagName + (e.id ? "#" + e.id : "") + "." + e.className);
                    const ends = [...document.querySelectorAll("#sessions button.end")]
                        .filter((b) => b.getBoundingClientRect().width > 0).length;
                    return {page: document.documentElement.scrollWidth, out, ends};
                }"""
            )
            # (each End button shown, and inside the card)
            assert fit == {"page": PHONE_WIDTH, "out": [], "ends": 2}, fit
            await expect(phone.locator("#sessions td.device").nth(1)).to_contain_text(
                "Chrome on Android"
            )
            shot = tmp_path / "phone.png"
            await phone.screenshot(path=str(shot), full_page=True)
            keep = os.environ.get("DEMO_SCREENSHOTS")
            if keep:
                shutil.copy(shot, Path(keep) / "demo-phone.png")
        finally:
            await browser.close()


PHONE_WIDTH = 375  # CSS pixels: an iPhone's, the narrowest common phone


@pytest.mark.usefixtures("browser_parts")
async def test_a_renewal_changes_the_cookie_and_the_page_keeps_working() -> None:
    from playwright.async_api import async_playwright, expect

    from examples.webapp.app import create_app

    every, grace = 3.0, 1.0  # seconds
    demo = create_app(timeout=30, warn_before=None, renew_every=every, renew_grace=grace)
    async with serve(demo.app) as url, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()

            async def load_table() -> int:
                # Click "load" and wait for that table call's answer: its status.
                async with page.expect_response(lambda r: "get_table_data" in r.url) as called:
                    await page.click("#load")
                response = await called.value
                await expect(page.locator("#table tbody tr")).to_have_count(5)
                return response.status

            await page.goto(url)
            await log_in_as_luca(page)
            [cookie] = await page.context.cookies()
            first = cookie["value"]

            await page.wait_for_timeout((every + 0.3) * 1000)
            assert await load_table() == 200  # the first call past renew_every renews the key
            [cookie] = await page.context.cookies()
            second = cookie["value"]
            assert second != first
            assert (cookie["name"], cookie["httpOnly"], cookie["secure"]) == (
                "__Host-session",
                True,
                True,
            )
            assert await demo.sm.check_session_status(second) is True

            await page.wait_for_timeout((grace + 0.3) * 1000)  # the old key's grace is over
            assert await demo.sm.check_session_status(first) is False
            assert await load_table() == 200  # under the new cookie
            # The socket followed the session to its new key: a logout still reaches the page.
            assert await demo.sm.delete_session(second) is True
            await expect(page.locator("#login-form")).to_be_visible(timeout=10_000)
        finally:
            await browser.close()
