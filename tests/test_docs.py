"""docs/security.md names the tests that show each item: every one it names exists, in
``tests/`` or among the rules of the store contract (``sessionkit.testing::test_...``)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECURITY = ROOT / "docs" / "security.md"
CITED = re.compile(r"tests/(test_\w+)\.py(?:::(test_\w+))?")
RULES = re.compile(r"sessionkit\.testing::(test_\w+)")


def test_every_test_the_security_page_names_exists() -> None:
    cited = CITED.findall(SECURITY.read_text(encoding="utf-8"))
    assert len(cited) > 40
    defined: dict[str, set[str]] = {}
    for module, name in cited:
        if module not in defined:
            tree = ast.parse((ROOT / "tests" / f"{module}.py").read_text(encoding="utf-8"))
            defined[module] = {
                node.name
                for node in tree.body
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            }
        assert not name or name in defined[module], f"tests/{module}.py::{name}"


def test_every_rule_the_security_page_names_is_a_rule_of_the_contract() -> None:
    from sessionkit.testing import StoreContract

    cited = RULES.findall(SECURITY.read_text(encoding="utf-8"))
    assert len(cited) > 5
    for name in cited:
        assert callable(getattr(StoreContract, name, None)), f"sessionkit.testing::{name}"
