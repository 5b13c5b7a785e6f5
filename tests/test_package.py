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


#: A named tuple's own public methods, underscored only to stay clear of its fields.
_NAMED_TUPLE_API = frozenset({"_replace", "_asdict", "_fields", "_make"})


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
            if mine or node.attr.startswith("__") or node.attr in _NAMED_TUPLE_API:
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
        "record._replace(remaining=0)\n"
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


PACKAGE = Path(sessionkit.__file__).resolve().parent


def module_files() -> dict[str, Path]:
    """Every module of the package, by dotted name, from its source files."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """Which modules of the package each one imports, wherever the import stands (at the top,
    inside a function, under ``TYPE_CHECKING``): a lazy import is an edge all the same.

    ``from P import name`` imports ``P.name`` when that is a module, and ``P`` itself too,
    but for a module reaching a sibling through its own package (``P`` is its parent).
    """
    files = module_files()
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                edges.update(alias.name for alias in node.names if alias.name in files)
            elif isinstance(node, ast.ImportFrom):
                source = node.module or ""
                if node.level:  # relative: from the package, up level - 1
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    source = ".".join([*base, source] if source else base)
                if source not in files:
                    continue
                submodules = {f"{source}.{a.name}" for a in node.names} & files.keys()
                edges.update(submodules)
                if len(submodules) < len(node.names) or source != package:
                    edges.add(source)
        edges.discard(name)
        graph[name] = edges
    return graph


def a_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (its modules in import order, the first again at the end), or
    ``None`` if it has none."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        path.append(node)
        for target in sorted(graph.get(node, ())):
            found = visit(target)
            if found:
                return found
        path.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        found = visit(start)
        if found:
            return found
    return None


def test_the_import_graph_sees_lazy_imports_and_cycles() -> None:
    graph = import_graph()
    assert "sessionkit.manager" in graph["sessionkit"]
    assert "sessionkit.manager" in graph["sessionkit.socketio"]  # the adapter registers itself
    assert "sessionkit.keys" in graph["sessionkit.stores.base"]
    assert "sessionkit.stores.redis._schema" in graph["sessionkit.stores.redis.store"]
    assert a_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert a_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_package_imports_itself_in_no_circle() -> None:
    """No module imports, even lazily or for types only, one that imports it back: the
    manager does not import the Socket.IO adapter (the adapter registers its binding with
    it), and nothing inside the package imports the package root, which imports them all."""
    assert a_cycle(import_graph()) is None
