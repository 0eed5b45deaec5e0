"""One request's guard: screens what it sends and what the model answers.

Input: PII is blocked, redacted to typed placeholders (`[EMAIL_1]`, the same value always the
same placeholder) or flagged; injection and moderation block or flag. Reversible redaction keeps
the originals here, in this object only, and puts them back into the answer, so they never
leave the gateway. Output: the same checks on the answer, then the placeholders restored. A
stream is screened as it goes, holding back only the last HOLDBACK characters (cut at a space,
never inside a match) so no value slips through a chunk boundary.

The report (types and counts, never values) goes on the usage event.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import replace
from typing import Any

from gateway.errors import GatewayError
from gateway.guardrails import injection, moderation, pii
from gateway.guardrails.policy import Check
from gateway.schemas import (
    ChatRequest,
    ChatResponse,
    Finish,
    Message,
    StreamEvent,
    TextDelta,
    TextPart,
    ToolCallDelta,
)

PLACEHOLDER = re.compile(r"\[[A-Z][A-Z0-9_]*_\d+\]")
HOLDBACK = 96  # characters a stream keeps back: longer than the values that get redacted


class Guard:
    def __init__(self, checks: tuple[Check, ...], report: dict[str, Any]) -> None:
        """`report` is filled in as checks act: the usage event's `guardrails`."""
        self.input_checks = [c for c in checks if c.on_input]
        self.output_checks = [c for c in checks if c.on_output]
        self.vault: dict[str, str] = {}  # placeholder -> original, for reversible redaction
        self._assigned: dict[tuple[str, str], str] = {}
        self._numbers: Counter[str] = Counter()
        self.report = report

    def _count(self, what: str, names) -> None:
        counts = self.report.setdefault(what, {})
        for name in names:
            counts[name] = counts.get(name, 0) + 1

    @property
    def screens_output(self) -> bool:
        return bool(self.output_checks or self.vault)

    # --- input -----------------------------------------------------------------------

    def screen_input(self, req: ChatRequest) -> ChatRequest:
        if not self.input_checks:
            return req
        messages = tuple(self._screen_message(m) for m in req.messages)
        return replace(req, messages=messages)

    def _screen_message(self, message: Message) -> Message:
        parts = []
        for part in message.content:
            if isinstance(part, TextPart):
                part = TextPart(self._screen_in(part.text, message.role))
            parts.append(part)
        return replace(message, content=tuple(parts))

    def _screen_in(self, text: str, role: str) -> str:
        for check in self.input_checks:
            if check.kind == "pii":
                text = self._pii(text, check)
            elif check.kind == "injection" and role in ("user", "tool"):
                self._injection(text, check, tool_output=role == "tool")
            elif check.kind == "moderation" and role == "user":
                self._moderation(text, check)
        return text

    # --- output ----------------------------------------------------------------------

    def screen_response(self, resp: ChatResponse) -> ChatResponse:
        return self._rewrite(resp, self.screen_output_text)

    def _rewrite(self, resp: ChatResponse, text_of) -> ChatResponse:
        choices = []
        for choice in resp.choices:
            message = choice.message
            text = text_of(message.text)
            calls = tuple(
                replace(c, arguments=self.restore(c.arguments)) for c in message.tool_calls
            )
            content = (TextPart(text),) if text else ()
            message = replace(message, content=content, tool_calls=calls)
            choices.append(replace(choice, message=message))
        return replace(resp, choices=tuple(choices))

    def screen_output_text(self, text: str, context: str = "") -> str:
        """Checks, then the originals put back. `context` is text around it that a
        moderation phrase may span (the stream's held-back tail)."""
        for check in self.output_checks:
            if check.kind == "pii":
                text = self._pii(text, check, output=True)
            # A phrase may span into the held-back tail; only a block needs to see it now (a
            # flag is counted once the tail is released).
            around = text + context if check.action == "block" else text
            if check.kind == "injection":
                self._injection(around, check, tool_output=False)
            elif check.kind == "moderation":
                self._moderation(around, check)
        return self.restore(text)

    def restored(self, resp: ChatResponse) -> ChatResponse:
        """The answer with the caller's values back, no checks (they ran as it streamed)."""
        return self._rewrite(resp, self.restore)

    def restore(self, text: str) -> str:
        if not self.vault or "[" not in text:
            return text
        return PLACEHOLDER.sub(lambda m: self.vault.get(m.group(0), m.group(0)), text)

    def stream_encoder(self, encoder):  # a gateway.providers.base.StreamEncoder
        return GuardedEncoder(self, encoder)

    # --- the checks ------------------------------------------------------------------

    def _pii(self, text: str, check: Check, output: bool = False) -> str:
        findings = pii.find(text, check.types, check.patterns)
        if output:  # placeholders we wrote are not the model's PII
            findings = [f for f in findings if not PLACEHOLDER.fullmatch(f.value)]
        if not findings:
            return text
        if check.action == "block":
            raise self._block(check)
        if check.action == "flag":
            self._count("flagged", (f"pii:{f.type}" for f in findings))
            return text
        pieces, last = [], 0
        for finding in findings:
            pieces += [text[last : finding.start], self._placeholder(finding, check, output)]
            last = finding.end
        self._count("redacted", (f.type for f in findings))
        return "".join(pieces) + text[last:]

    def _placeholder(self, finding: pii.Finding, check: Check, output: bool) -> str:
        key = (finding.type, finding.value)
        placeholder = self._assigned.get(key)
        if placeholder is None:
            self._numbers[finding.type] += 1
            placeholder = f"[{finding.type}_{self._numbers[finding.type]}]"
            self._assigned[key] = placeholder
            # The model's own PII stays redacted; the caller's comes back to the caller.
            if check.reversible and not output:
                self.vault[placeholder] = finding.value
        return placeholder

    def _injection(self, text: str, check: Check, tool_output: bool) -> None:
        verdict = injection.score(text, tool_output=tool_output)
        if verdict.score < (check.threshold or injection.DEFAULT_THRESHOLD):
            return
        if check.action == "block":
            raise self._block(check)
        self._count("flagged", (f"injection:{rule}" for rule in verdict.rules))

    def _moderation(self, text: str, check: Check) -> None:
        categories = moderation.moderate(text, check.types, check.patterns)
        if not categories:
            return
        if check.action == "block":
            raise self._block(check)
        self._count("flagged", (f"moderation:{c}" for c in categories))

    def _block(self, check: Check) -> GatewayError:
        self.report["blocked"] = f"{check.policy}:{check.kind}"
        return GatewayError(
            "invalid_request",
            f"Blocked by the '{check.kind}' check of guardrail policy '{check.policy}'.",
            code="guardrail_blocked",
        )


class GuardedEncoder:
    """A client stream encoder that screens text as it streams."""

    def __init__(self, guard: Guard, encoder) -> None:
        self._guard = guard
        self._encoder = encoder
        self.content_type = encoder.content_type
        self._held: dict[int, str] = {}

    def encode(self, event: StreamEvent) -> bytes:
        if isinstance(event, TextDelta):
            text = self._release(event.choice, self._held.get(event.choice, "") + event.text)
            return self._encoder.encode(TextDelta(text, event.choice)) if text else b""
        if isinstance(event, ToolCallDelta):
            event = replace(event, arguments=self._guard.restore(event.arguments))
        if isinstance(event, Finish):
            rest = self._release(event.choice, self._held.pop(event.choice, ""), final=True)
            head = self._encoder.encode(TextDelta(rest, event.choice)) if rest else b""
            return head + self._encoder.encode(event)
        return self._encoder.encode(event)

    def _release(self, choice: int, text: str, final: bool = False) -> str:
        cut = len(text) if final else _safe_cut(text, self._guard)
        self._held[choice] = text[cut:]
        if not cut:
            return ""
        return self._guard.screen_output_text(text[:cut], context=text[cut:])

    def finish(self) -> bytes:
        return self._encoder.finish()

    def error(self, err: GatewayError) -> bytes:
        return self._encoder.error(err)


def _safe_cut(text: str, guard: Guard) -> int:
    """Where the released part of a stream may end: HOLDBACK back from the end, at a space,
    and before any match or placeholder that straddles that point."""
    cut = len(text) - HOLDBACK
    if cut <= 0:
        return 0
    space = text.rfind(" ", 0, cut)
    cut = space + 1 if space >= 0 else 0
    spans = [(m.start(), m.end()) for m in PLACEHOLDER.finditer(text)]
    for check in guard.output_checks:
        if check.kind == "pii":
            spans += [(f.start, f.end) for f in pii.find(text, check.types, check.patterns)]
    for start, end in spans:
        if start < cut < end:
            cut = start
    return cut
