"""Guardrail policies: what a policy's `checks` may say, and the compiled checks a request runs.

A check is {check, stage, action, ...options}:
* `pii`: action block | redact | flag; `types` (default all of gateway.guardrails.pii.TYPES),
  `reversible` (restore the originals in the answer; default true), `patterns` [[TYPE, regex]].
* `injection`: action block | flag; `threshold` (default injection.DEFAULT_THRESHOLD).
* `moderation`: action block | flag; `categories` (default all), `patterns` [[category, regex]].
`stage` is input, output or both. The preset `default` is PII redaction (reversible) on both
stages and injection blocking on input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

CHECKS = ("pii", "injection", "moderation")
STAGES = ("input", "output", "both")
ACTIONS = {"pii": ("block", "redact", "flag"), "injection": ("block", "flag"),
           "moderation": ("block", "flag")}  # fmt: skip
DEFAULT = (
    {"check": "pii", "stage": "both", "action": "redact", "reversible": True},
    {"check": "injection", "stage": "input", "action": "block"},
)
_OPTIONS = {"check", "stage", "action", "types", "reversible", "threshold", "categories",
            "patterns"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Check:
    policy: str  # the policy's name, which a block reports
    kind: str
    on_input: bool
    on_output: bool
    action: str
    types: frozenset[str] | None = None  # pii types or moderation categories; None: all
    reversible: bool = True
    threshold: float | None = None
    patterns: tuple[tuple[str, str], ...] = ()


def expand(raw: object) -> object:
    return [dict(c) for c in DEFAULT] if raw == "default" else raw


def validate(raw: object) -> list[str]:
    """What is wrong with a policy's checks; empty when they are fine."""
    from gateway.guardrails import moderation, pii

    checks = expand(raw)
    if not isinstance(checks, list) or not checks:
        return ["'checks' must be 'default' or a non-empty list of checks"]
    errors = []
    for n, check in enumerate(checks):
        where = f"checks[{n}]"
        if not isinstance(check, dict):
            errors.append(f"{where} must be a mapping")
            continue
        kind, stage, action = check.get("check"), check.get("stage", "both"), check.get("action")
        if set(check) - _OPTIONS:
            errors.append(f"{where}: unknown field(s) {', '.join(sorted(set(check) - _OPTIONS))}")
        if kind not in CHECKS:
            errors.append(f"{where}.check must be one of {', '.join(CHECKS)}")
            continue
        if stage not in STAGES:
            errors.append(f"{where}.stage must be one of {', '.join(STAGES)}")
        if action not in ACTIONS[kind]:
            errors.append(f"{where}.action for {kind} must be one of {', '.join(ACTIONS[kind])}")
        known = pii.TYPES if kind == "pii" else moderation.CATEGORIES
        names = check.get("types" if kind == "pii" else "categories")
        if names is not None and (not isinstance(names, list) or set(names) - set(known)):
            errors.append(f"{where}: choose {'types' if kind == 'pii' else 'categories'} "
                          f"from {', '.join(known)}")  # fmt: skip
        threshold = check.get("threshold")
        if threshold is not None and (
            isinstance(threshold, bool) or not isinstance(threshold, int | float)
            or not 0 < threshold <= 1
        ):  # fmt: skip
            errors.append(f"{where}.threshold must be above 0 and at most 1")
        if not isinstance(check.get("reversible", True), bool):
            errors.append(f"{where}.reversible must be true or false")
        errors += _pattern_errors(check.get("patterns"), where)
    return errors


def _pattern_errors(patterns: Any, where: str) -> list[str]:
    if patterns is None:
        return []
    if not isinstance(patterns, list):
        return [f"{where}.patterns must be a list of [NAME, regex] pairs"]
    errors = []
    for pair in patterns:
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)
                and re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,31}", pair[0])):  # fmt: skip
            errors.append(f"{where}.patterns: each must be [NAME, regex] with a short NAME")
            continue
        try:
            re.compile(pair[1])
        except re.error as exc:
            errors.append(f"{where}.patterns: '{pair[1]}' is not a valid regex ({exc})")
    return errors


def compile_checks(name: str, raw: object) -> tuple[Check, ...]:
    """Checks of a policy already validated."""
    out = []
    for check in expand(raw):
        stage = check.get("stage", "both")
        names = check.get("types" if check["check"] == "pii" else "categories")
        out.append(
            Check(
                policy=name,
                kind=check["check"],
                on_input=stage in ("input", "both"),
                on_output=stage in ("output", "both"),
                action=check["action"],
                types=frozenset(names) if names else None,
                reversible=check.get("reversible", True),
                threshold=check.get("threshold"),
                patterns=tuple(tuple(p) for p in check.get("patterns") or ()),
            )
        )
    return tuple(out)
