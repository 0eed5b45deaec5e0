"""Conditional routing: ordered rules that pick a model or deployment from request facts.

A rule holds when every condition it lists holds; a list condition holds when any of its items
does. The first rule that holds decides. Facts that cost something (the last user message, the
prompt size) are computed only when a rule asks for them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from gateway.auth import Principal
from gateway.schemas import ChatRequest
from gateway.tokens import estimate_prompt_tokens

CONDITIONS = (
    "model",
    "tenant",
    "application",
    "key",
    "tags",
    "metadata",
    "header",
    "min_prompt_tokens",
    "max_prompt_tokens",
    "pattern",
    "keywords",
)


class Facts:
    """What rules and the auto model may look at, computed on first use."""

    def __init__(self, principal: Principal, req: ChatRequest, headers: dict[bytes, bytes]):
        self.principal, self.req, self.headers = principal, req, headers

    def header(self, name: str) -> str | None:
        value = self.headers.get(name.lower().encode("latin-1"))
        return value.decode("latin-1") if value is not None else None

    @cached_property
    def tags(self) -> frozenset[str]:
        """Comma-separated, from the `x-waystation-tags` header and the `tags` metadata."""
        raw = ",".join(
            filter(None, [self.header("x-waystation-tags"), self.req.metadata.get("tags")])
        )
        return frozenset(t.strip() for t in raw.split(",") if t.strip())

    @cached_property
    def last_user_text(self) -> str:
        for message in reversed(self.req.messages):
            if message.role == "user":
                return message.text
        return ""

    @cached_property
    def prompt_tokens(self) -> int:
        return estimate_prompt_tokens(self.req)


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    route_to: str  # a model name, or "" to keep the requested model
    deployment: str  # "provider/upstream_model", or "" for the model's own balancing
    models: frozenset[str] = frozenset()
    tenants: frozenset[str] = frozenset()
    applications: frozenset[str] = frozenset()
    keys: tuple[str, ...] = ()  # key prefixes
    tags: frozenset[str] = frozenset()
    metadata: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, re.Pattern[str]], ...] = ()
    min_prompt_tokens: int | None = None
    max_prompt_tokens: int | None = None
    pattern: re.Pattern[str] | None = None
    keywords: re.Pattern[str] | None = None

    @classmethod
    def build(cls, name: str, when: dict[str, Any], route_to: str, deployment: str) -> Rule:
        """From validated config (gateway.config checks the shapes and the regexes)."""
        words = when.get("keywords") or []
        return cls(
            name=name,
            route_to=route_to,
            deployment=deployment,
            models=frozenset(when.get("model") or ()),
            tenants=frozenset(when.get("tenant") or ()),
            applications=frozenset(when.get("application") or ()),
            keys=tuple(when.get("key") or ()),
            tags=frozenset(when.get("tags") or ()),
            metadata=tuple((when.get("metadata") or {}).items()),
            headers=tuple((h, re.compile(p)) for h, p in (when.get("header") or {}).items()),
            min_prompt_tokens=when.get("min_prompt_tokens"),
            max_prompt_tokens=when.get("max_prompt_tokens"),
            pattern=re.compile(when["pattern"]) if when.get("pattern") else None,
            keywords=keyword_pattern(words) if words else None,
        )

    def holds(self, facts: Facts) -> bool:
        # Cheapest checks first; the message text and its size only when asked for.
        p = facts.principal
        if self.models and facts.req.model not in self.models:
            return False
        if self.tenants and p.tenant_slug not in self.tenants:
            return False
        if self.applications and p.application not in self.applications:
            return False
        if self.keys and not p.key_prefix.startswith(self.keys):
            return False
        if self.tags and not self.tags & facts.tags:
            return False
        if any(facts.req.metadata.get(k) != v for k, v in self.metadata):
            return False
        for name, pattern in self.headers:
            value = facts.header(name)
            if value is None or not pattern.search(value):
                return False
        if self.min_prompt_tokens is not None and facts.prompt_tokens < self.min_prompt_tokens:
            return False
        if self.max_prompt_tokens is not None and facts.prompt_tokens > self.max_prompt_tokens:
            return False
        if self.pattern is not None and not self.pattern.search(facts.last_user_text):
            return False
        return self.keywords is None or bool(self.keywords.search(facts.last_user_text))


def keyword_pattern(words: list[str]) -> re.Pattern[str]:
    """Any of the words or phrases, case-insensitive, on word boundaries."""
    alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


def first_match(rules: tuple[Rule, ...], facts: Facts) -> Rule | None:
    for rule in rules:
        if rule.holds(facts):
            return rule
    return None
