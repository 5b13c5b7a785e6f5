"""The package as a whole: its public names, what importing it pulls in, and that the suite
reads its private state in one place only (tests/internals.py)."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import sessionkit

#: Public-named helpers that a public module defines for the package's own use and does not
#: export, to be made private (``_``) where the modules that import them change anyway. Each
#: entry must still be true: fix one, then delete it here.
NOT_YET_PRIVATE = {"sessionkit.events": {"Dispatcher", "check_event_name"}}


def public_modules() -> list[str]:
    """Every module of the package whose dotted name has no part starting with ``_``."""
    found = pkgutil.walk_packages(sessionkit.__path__, "sessionkit.")
    names = [info.name for info in found]
    return ["sessionkit", *(n for n in names if not any(p.startswith("_") for p in n.split(".")))]


def test_the_walk_finds_the_modules_users_import() -> None:
    found = public_modules()
    for name in ("sessionkit.manager", "sessionkit.stores.redis", "sessionkit.socketio"):
        assert name in found
    assert not [name for name in found if "._" in name]


@pytest.mark.parametrize("name", public_modules())
def test_every_public_name_is_exported_and_documented(name: str) -> None:
    # As anyio does: each class or function a public module defines under a public name is in
    # its __all__, and each name in __all__ exists; classes, functions and their public
    # methods have docstrings.
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert isinstance(exported, tuple), f"{name} has no tuple __all__"
    defined = {
        attr
        for attr, obj in vars(module).items()
        if not attr.startswith("_")
        and (inspect.isclass(obj) or inspect.isfunction(obj))
        and obj.__module__ == name
    }
    unexported = defined - set(exported)
    known = NOT_YET_PRIVATE.get(name, set())
    assert known <= unexported, f"{name}: {known - unexported} fixed; drop them from the list"
    assert unexported - known == set(), f"{name} defines these and does not export them"
    for attr in exported:
        assert hasattr(module, attr), f"{name}.__all__ names {attr}, which it lacks"
        obj = getattr(module, attr)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), f"{name}.{attr} has no docstring"
        if inspect.isclass(obj):
            for method, func in vars(obj).items():
                if not method.startswith("_") and inspect.isfunction(func):
                    assert inspect.getdoc(func), f"{name}.{attr}.{method} has no docstring"


def test_the_package_root_exports_every_public_name_it_holds() -> None:
    public = {
        name
        for name, obj in vars(sessionkit).items()
        if not name.startswith("_") and not inspect.ismodule(obj) and name != "annotations"
    }
    assert public == set(sessionkit.__all__)


def test_importing_sessionkit_pulls_in_no_optional_dependency() -> None:
    code = (
        "import sys, sessionkit, sessionkit.stores; "
        "print(sorted(m for m in ('redis', 'socketio', 'engineio', 'starlette', "
        "'prometheus_client', 'pytest', 'pytest_asyncio') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_exceptions_share_one_root() -> None:
    assert issubclass(sessionkit.SessionNotFound, sessionkit.SessionError)
    assert issubclass(sessionkit.SessionNotFound, KeyError)
    assert issubclass(sessionkit.SessionRejected, sessionkit.SessionError)
    assert issubclass(sessionkit.StoreUnavailable, sessionkit.SessionError)
    assert str(sessionkit.SessionNotFound("no live session")) == "no live session"


def test_the_version_is_written_once() -> None:
    # pyproject.toml reads it from sessionkit/__init__.py (hatch's dynamic version), so a
    # release changes one line.
    root = Path(__file__).resolve().parent.parent
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["hatch"]["version"]["path"] == "sessionkit/__init__.py"
    assert re.fullmatch(r"\d+\.\d+\.\d+((a|b|rc)\d+)?(\.dev\d+)?", sessionkit.__version__)
    literal = f'"{sessionkit.__version__}"'
    holders = [
        path.relative_to(root).as_posix()
        for folder in ("sessionkit", "tests", "examples", "benchmarks")
        for path in (root / folder).rglob("*.py")
        if literal in path.read_text(encoding="utf-8")
    ]
    assert holders == ["sessionkit/__init__.py"]
    assert literal not in (root / "pyproject.toml").read_text(encoding="utf-8")


TESTS = Path(__file__).resolve().parent


def private_reach_ins(source: str) -> list[str]:
    """What ``source`` imports from a private module of sessionkit (or a private name of a
    public one), and every ``obj._name`` it reads but on ``self`` or ``cls``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("sessionkit")
        ):
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            found += [name for name in names if "._" in name]
        elif isinstance(node, ast.Import):
            found += [
                a.name for a in node.names if a.name.startswith("sessionkit") and "._" in a.name
            ]
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            owner = node.value
            mine = isinstance(owner, ast.Name) and owner.id in ("self", "cls", "os")  # os._exit
            if mine or node.attr.startswith("__"):
                continue
            found.append(ast.unparse(node))
    return found


def test_the_reach_in_finder_finds_each_kind() -> None:
    source = (
        "from sessionkit._guard import RETRY_AFTER\n"
        "from sessionkit.stores.redis import _schema\n"
        "import sessionkit._timers\n"
        "sm._expiry._warned\n"
        "self._mine, cls._ours, os._exit\n"
    )
    assert private_reach_ins(source) == [
        "sessionkit._guard",
        "sessionkit._guard.RETRY_AFTER",
        "sessionkit.stores.redis._schema",
        "sessionkit._timers",
        "sm._expiry._warned",
        "sm._expiry",
    ]


def test_only_tests_internals_reaches_into_private_state() -> None:
    found = {
        path.name: reach_ins
        for path in sorted(TESTS.glob("*.py"))
        if path.name != "internals.py"
        and (reach_ins := private_reach_ins(path.read_text(encoding="utf-8")))
    }
    assert found == {}, "read these through tests/internals.py"
