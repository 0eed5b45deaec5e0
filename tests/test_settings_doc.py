"""Every environment variable waystation/settings.py reads is in docs/settings.md, and back."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ROOT / "waystation" / "settings.py"
DOC = ROOT / "docs" / "settings.md"
READERS = {"env_str", "env_int", "env_float", "env_bool", "getenv", "get"}


def _is_environ(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "environ"


def read_variables() -> set[str]:
    """Names passed to env_*(), os.getenv(), os.environ.get() or os.environ[...] at module
    level and inside the helpers' callers (the helpers' own `name` parameter is skipped)."""
    names = set()
    for node in ast.walk(ast.parse(SETTINGS.read_text())):
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            via_environ = not isinstance(func, ast.Attribute) or _is_environ(func.value)
            via_os = isinstance(func, ast.Attribute) and getattr(func.value, "id", "") == "os"
            if name in READERS and (via_environ or via_os):
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    names.add(first.value)
        if isinstance(node, ast.Subscript) and _is_environ(node.value):
            if isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
                names.add(node.slice.value)
    return names


def documented_variables() -> set[str]:
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", DOC.read_text(), re.M))


def test_the_parser_sees_every_kind_of_read():
    names = read_variables()

    assert {"DEBUG", "SECRET_KEY", "EMAIL_PORT", "GATEWAY_READ_TIMEOUT"} <= names
    assert {"LOG_LEVEL", "DATABASE_URL", "OIDC_CLIENT_SECRET"} <= names


def test_every_variable_settings_reads_is_documented():
    missing = read_variables() - documented_variables()

    assert missing == set(), f"add to docs/settings.md: {sorted(missing)}"


def test_every_documented_variable_is_read_by_settings():
    stale = documented_variables() - read_variables()

    assert stale == set(), (
        f"docs/settings.md lists variables settings.py no longer reads: {sorted(stale)}"
    )


def test_each_variable_is_documented_once():
    rows = re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", DOC.read_text(), re.M)

    assert len(rows) == len(set(rows))
