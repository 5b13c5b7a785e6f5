"""The Python blocks of the README and of the documentation's pages (``docs/``) run as written,
each on its own, in a fresh namespace.

A block that builds an app without serving it just imports and builds. A block may use
top-level ``await`` (it then runs on a loop of its own); a block that calls ``asyncio.run``
itself, as the quickstart does, needs the test to be a plain function with no loop running.
No block is skipped: none needs a running server today (a ``Redis`` client, and
python-socketio's ``AsyncRedisManager``, connect at their first command, not when made).
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").rglob("*.md"))
PYTHON = ("python", "py", "python3")
FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def python_blocks(path: Path) -> list[tuple[int, str]]:
    """``(line, source)`` of every fenced block of ``path`` whose language is Python, in order."""
    text = path.read_text(encoding="utf-8")
    return [
        (text.count("\n", 0, match.start()) + 1, match["body"])
        for match in FENCE.finditer(text)
        if match["info"].strip().split(" ")[0].lower() in PYTHON
    ]


BLOCKS = [
    (path.relative_to(ROOT).as_posix(), line, source)
    for path in (README, *PAGES)
    for line, source in python_blocks(path)
]


@pytest.mark.parametrize("path", [README, *PAGES], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_python_block_is_run(path: Path) -> None:
    # Counted another way, line by line: a fence the pattern above missed (an indented one, a
    # stray space) would leave a block out of the test below without a word.
    lines = path.read_text(encoding="utf-8").splitlines()
    opened = [
        n
        for n, line in enumerate(lines, 1)
        if line.lstrip().startswith("```") and line.strip("` \t").lower() in PYTHON
    ]
    assert [line for line, _ in python_blocks(path)] == opened


def test_the_examples_are_there() -> None:
    names = {where for where, _, _ in BLOCKS}
    assert "README.md" in names  # the quickstart
    for page in ("quickstart", "sessions", "starlette", "socketio", "workers", "testing"):
        assert f"docs/guides/{page}.md" in names
    assert "docs/guides/operations.md" in names  # the metrics


def run_block(source: str, where: str) -> dict[str, object]:
    """Run ``source`` in a fresh namespace, on a loop of its own if it awaits at top level."""
    code = compile(source, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    namespace: dict[str, object] = {"__name__": "readme"}
    if code.co_flags & inspect.CO_COROUTINE:
        asyncio.run(eval(code, namespace))
    else:
        exec(code, namespace)
    return namespace


@pytest.mark.parametrize(
    ("where", "line", "source"), BLOCKS, ids=[f"{where}:{line}" for where, line, _ in BLOCKS]
)
def test_block_runs(where: str, line: int, source: str) -> None:
    run_block(source, f"{where}, block at line {line}")


def test_a_block_with_top_level_await_is_awaited() -> None:
    source = "import asyncio\nawait asyncio.sleep(0)\nfrom sessionkit import SessionManager\n"
    source += "async with SessionManager() as sm:\n    key = await sm.load_new_session('Luca')\n"
    namespace = run_block(source, "a block that awaits")
    assert isinstance(namespace["key"], str)
