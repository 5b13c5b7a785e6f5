"""A griffe extension for the API reference: the docstrings' Sphinx roles become links.

sessionkit's docstrings follow anyio's style (``:param:``, ``:class:`SessionStore```), which
mkdocstrings parses but does not link: a role would show as raw text. Each
``:role:`target``` becomes a cross-reference to the object it names when that object is
sessionkit's (found from the docstring's own scope, as Python would resolve the name), and
inline code otherwise (``socketio.AsyncServer``, ``asyncio.timeout``). A leading ``~`` shows
the last part of the name only, as in Sphinx. A reST literal block (``Example::`` and an
indented block) becomes a fenced Python block, highlighted like the guides' examples.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:class|meth|func|attr|data|exc|mod|obj|const):`(?P<target>[^`]+)`")


def _resolve(obj: griffe.Object, name: str) -> str | None:
    """The full path of what ``name`` means in ``obj``'s docstring, or ``None``."""
    if name.startswith("sessionkit"):
        return name
    head, _, rest = name.partition(".")
    scope: griffe.Object | None = obj
    while scope is not None:
        member = scope.members.get(head)
        if member is not None:
            # An imported name is followed to where it is defined (an alias's target path).
            base = member.target_path if isinstance(member, griffe.Alias) else member.path
            path = base if not rest else f"{base}.{rest}"
            return path if path.startswith("sessionkit") else None
        scope = scope.parent
    return None


def _literal_blocks(text: str) -> str:
    """``Example::`` and the indented block after it become ``Example:`` and a Python fence."""
    out: list[str] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.rstrip().endswith("::") or i >= len(lines) or lines[i].strip():
            out.append(line)
            continue
        out.append(line.rstrip()[:-1])
        block: list[str] = []
        while i < len(lines) and (not lines[i].strip() or lines[i].startswith("    ")):
            block.append(lines[i][4:])
            i += 1
        while block and not block[-1].strip():
            block.pop()
        out += ["", "```python", *block, "```", ""]
    return "\n".join(out)


def _rewrite(obj: griffe.Object, text: str) -> str:
    def link(match: re.Match[str]) -> str:
        target = match["target"]
        titled = re.fullmatch(r"(?P<title>.+?)\s*<(?P<target>[^>]+)>", target)
        if titled:  # Sphinx's explicit title: :meth:`aclose() <sessionkit.SessionManager.aclose>`
            path = _resolve(obj, titled["target"])
            return f"[`{titled['title']}`][{path}]" if path else f"`{titled['title']}`"
        short = target.startswith("~")
        target = target.lstrip("~").removesuffix("()")
        shown = target.rsplit(".", 1)[-1] if short else target
        path = _resolve(obj, target)
        return f"[`{shown}`][{path}]" if path else f"`{shown}`"

    return _ROLE.sub(link, _literal_blocks(text))


class SphinxRoles(griffe.Extension):
    """Rewrites the Sphinx roles of every docstring once the package is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Walk the package and rewrite each docstring in place."""
        stack: list[griffe.Object] = [pkg]
        while stack:
            obj = stack.pop()
            if obj.docstring is not None:
                obj.docstring.value = _rewrite(obj, obj.docstring.value)
            stack.extend(m for m in obj.members.values() if not isinstance(m, griffe.Alias))
