"""The package as a whole: its public names, and what importing it pulls in."""

from __future__ import annotations

import inspect
import subprocess
import sys

import sessionkit


def test_every_public_name_is_exported_and_documented() -> None:
    public = {
        name
        for name, obj in vars(sessionkit).items()
        if not name.startswith("_") and not inspect.ismodule(obj) and name != "annotations"
    }
    assert public == set(sessionkit.__all__)
    for name in sessionkit.__all__:
        obj = getattr(sessionkit, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), f"{name} has no docstring"
    for name, method in inspect.getmembers(sessionkit.SessionManager, inspect.isfunction):
        if not name.startswith("_"):
            assert inspect.getdoc(method), f"SessionManager.{name} has no docstring"


def test_importing_sessionkit_pulls_in_no_optional_dependency() -> None:
    code = (
        "import sys, sessionkit, sessionkit.stores; "
        "print(sorted(m for m in ('redis', 'socketio', 'engineio', 'starlette', "
        "'prometheus_client') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_exceptions_share_one_root() -> None:
    assert issubclass(sessionkit.SessionNotFound, sessionkit.SessionError)
    assert issubclass(sessionkit.SessionNotFound, KeyError)
    assert issubclass(sessionkit.SessionRejected, sessionkit.SessionError)
    assert issubclass(sessionkit.StoreUnavailable, sessionkit.SessionError)
    assert str(sessionkit.SessionNotFound("no live session")) == "no live session"
