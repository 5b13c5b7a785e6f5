"""``make demo-workers`` in a real Chromium: the demo on two uvicorn workers that share a
Valkey the runner starts itself (``RedisStore``, ``socketio.AsyncRedisManager``, a
WebSocket-only page). Every page load connects its socket, and a device ended from another
browser returns to the login form, whichever worker holds each socket and answers each call."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import require_redis
from tests.servers import free_port
from tests.test_browser import (  # noqa: F401 - browser_parts is a fixture
    CHROMIUM,
    CHROMIUM_ARGS,
    LAPTOP_AGENT,
    PHONE_AGENT,
    browser_parts,
)

ROOT = Path(__file__).parent.parent
CONNECT_WITHIN = 1.5  # seconds from a page load to its socket's "connect"
LOGGED_OUT_WITHIN = 2.0  # seconds from "End" on another device to its login form


@pytest.fixture
def demo_workers(tmp_path: Path) -> Iterator[tuple[str, set[str]]]:
    """``python -m examples.webapp.workers`` on a free port; yields its URL and the pids of
    its two workers (read from their ``X-Worker`` headers), and stops it (Valkey included)."""
    require_redis()
    port = free_port()
    log = tmp_path / "demo.log"
    command = [sys.executable, "-m", "examples.webapp.workers", "--port", str(port)]
    command += ["--warn-before", "0"]
    with log.open("wb") as out:
        runner = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    workers: set[str] = set()
    try:
        deadline = time.monotonic() + 60  # two workers start on a busy machine
        while len(workers) < 2:
            assert runner.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            try:  # a new connection each time, so that either worker may answer
                workers.add(httpx.get(f"{url}/api/me").headers["x-worker"])
            except httpx.HTTPError:
                time.sleep(0.2)
        yield url, workers
    finally:
        runner.send_signal(signal.SIGTERM)
        try:
            runner.wait(30)
        except subprocess.TimeoutExpired:
            runner.kill()
            runner.wait(10)
    text = log.read_text()
    assert "Stopping parent process" in text, text


async def _log_in(page: Any, url: str) -> None:
    from playwright.async_api import expect

    await page.goto(url)
    await page.fill("#username", "Luca")
    await page.fill("#password", "sessionkit")
    await page.click("#login")
    await expect(page.locator("#socket-state")).to_have_text("Socket: connected")


async def _socket_worker(page: Any) -> str:
    from playwright.async_api import expect

    worker = page.locator("#socket-worker")
    await expect(worker).to_have_text(re.compile(r"^on worker \d+$"), timeout=5_000)
    return str(await worker.inner_text()).removeprefix("on worker ")


@pytest.mark.usefixtures("browser_parts")
async def test_two_workers_connect_every_load_and_push_every_logout(
    demo_workers: tuple[str, set[str]],
) -> None:
    from playwright.async_api import async_playwright, expect

    url, workers = demo_workers
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            laptop_context = await browser.new_context(user_agent=LAPTOP_AGENT)
            laptop = await laptop_context.new_page()
            polling: list[str] = []
            laptop.on(
                "request", lambda r: polling.append(r.url) if "transport=polling" in r.url else None
            )
            await _log_in(laptop, url)

            # Page loads: at least 10, and on until each worker has held the page's socket.
            loads: list[tuple[float, str]] = []
            while len(loads) < 10 or {w for _, w in loads} != workers:
                assert len(loads) < 40, loads
                started = time.monotonic()
                await laptop.goto(url)  # the cookie's session: the page connects by itself
                await expect(laptop.locator("#socket-state")).to_have_text(
                    "Socket: connected", timeout=5_000
                )
                loads.append((time.monotonic() - started, await _socket_worker(laptop)))
            print(f"\nsocket connected after {max(t for t, _ in loads):.2f} s at most", loads)
            assert all(took < CONNECT_WITHIN for took, _ in loads), loads
            assert polling == []  # WebSocket only: no request for the other worker to refuse

            # Another device, ended from the laptop's panel: each round pairs the worker that
            # answers "End" with the one holding the phone's socket, until both the same
            # worker and the other one have pushed a logout.
            rounds: list[tuple[str, str, float]] = []
            while {ender == holder for ender, holder, _ in rounds} != {True, False}:
                assert len(rounds) < 16, rounds
                phone_context = await browser.new_context(user_agent=PHONE_AGENT)
                phone = await phone_context.new_page()
                await _log_in(phone, url)
                holder = await _socket_worker(phone)
                await laptop.click("#refresh-sessions")
                other = laptop.locator("#sessions tbody tr:not(.current) button.end")
                await expect(other).to_have_count(1)
                async with laptop.expect_response("**/api/end_session") as ended:
                    started = time.monotonic()
                    await other.click()
                await expect(phone.locator("#login-form")).to_be_visible(timeout=5_000)
                took = time.monotonic() - started
                answer = await ended.value
                assert (await answer.json())["accepted"] is True
                rounds.append((answer.headers["x-worker"], holder, took))
                await expect(phone.locator("#message")).to_have_text(
                    "Logged out by the server: the server logged you out."
                )
                await phone_context.close()
            print("logouts (ended by, socket on, seconds):", rounds)
            assert all(took < LOGGED_OUT_WITHIN for _, _, took in rounds), rounds
            assert {holder for _, holder, _ in rounds} <= workers
            await expect(laptop.locator("#app-view")).to_be_visible()
        finally:
            await browser.close()
