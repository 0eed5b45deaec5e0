"""A cached answer as stored: the internal response, what it cost, when it was made."""

from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal

import orjson

from gateway.schemas import (
    ChatResponse,
    Choice,
    Finish,
    Message,
    StreamEvent,
    StreamStart,
    TextDelta,
    TextPart,
    ToolCall,
    ToolCallDelta,
    ToolCallStart,
    Usage,
    UsageReport,
)


@dataclass(frozen=True, slots=True)
class Entry:
    response: ChatResponse
    cost: Decimal | None
    created: float  # epoch seconds


def storable(resp: ChatResponse) -> bool:
    """Only whole answers: never one cut short by a filter or an error."""
    return bool(resp.choices) and all(
        c.finish_reason in ("stop", "length", "tool_calls") for c in resp.choices
    )


def encode(resp: ChatResponse, cost: Decimal | None) -> bytes:
    return orjson.dumps(
        {
            "model": resp.model,
            "created": time.time(),
            "cost": str(cost) if cost is not None else None,
            "usage": [
                resp.usage.input_tokens,
                resp.usage.output_tokens,
                resp.usage.cached_input_tokens,
                resp.usage.reasoning_tokens,
            ],
            "choices": [
                {
                    "finish": c.finish_reason,
                    "text": c.message.text,
                    "tools": [[t.id, t.name, t.arguments] for t in c.message.tool_calls],
                }
                for c in resp.choices
            ],
        }
    )


def decode(raw: bytes, response_id: str) -> Entry:
    data = orjson.loads(raw)
    choices = tuple(
        Choice(
            index=i,
            message=Message(
                role="assistant",
                content=(TextPart(c["text"]),) if c["text"] else (),
                tool_calls=tuple(ToolCall(*t) for t in c["tools"]),
            ),
            finish_reason=c["finish"],
        )
        for i, c in enumerate(data["choices"])
    )
    response = ChatResponse(
        id=response_id,
        model=data["model"],
        choices=choices,
        usage=Usage(*data["usage"]),
        created=int(time.time()),
    )
    cost = Decimal(data["cost"]) if data["cost"] is not None else None
    return Entry(response, cost, data["created"])


REPLAY_PIECE = 48  # characters per text delta: a replay reads like a live stream


def replay_events(resp: ChatResponse) -> list[StreamEvent]:
    """The stream events a live answer would have produced, in order."""
    events: list[StreamEvent] = [StreamStart(resp.id, resp.model)]
    for choice in resp.choices:
        text = choice.message.text
        for start in range(0, len(text), REPLAY_PIECE):
            events.append(TextDelta(text[start : start + REPLAY_PIECE], choice.index))
        for position, call in enumerate(choice.message.tool_calls):
            events.append(ToolCallStart(position, call.id, call.name, choice.index))
            if call.arguments:
                events.append(ToolCallDelta(position, call.arguments, choice.index))
        events.append(Finish(choice.finish_reason or "stop", choice.index))
    events.append(UsageReport(resp.usage))
    return events


def collect(events: list[StreamEvent], usage: Usage) -> ChatResponse | None:
    """A streamed answer put back together, to be stored like a plain one."""
    start = next((e for e in events if isinstance(e, StreamStart)), None)
    texts: dict[int, list[str]] = {}
    calls: dict[int, dict[int, list[str]]] = {}
    finishes: dict[int, str] = {}
    for event in events:
        if isinstance(event, TextDelta):
            texts.setdefault(event.choice, []).append(event.text)
        elif isinstance(event, ToolCallStart):
            calls.setdefault(event.choice, {})[event.index] = [event.id, event.name, ""]
        elif isinstance(event, ToolCallDelta):
            call = calls.get(event.choice, {}).get(event.index)
            if call is not None:
                call[2] += event.arguments
        elif isinstance(event, Finish):
            finishes[event.choice] = event.reason
    if start is None or not finishes:
        return None
    choices = tuple(
        Choice(
            index=index,
            message=Message(
                role="assistant",
                content=(TextPart("".join(texts[index])),) if texts.get(index) else (),
                tool_calls=tuple(ToolCall(*c) for _, c in sorted(calls.get(index, {}).items())),
            ),
            finish_reason=finishes[index],
        )
        for index in sorted(finishes)
    )
    return ChatResponse(start.id, start.model, choices, usage)


class Recorder:
    """A client stream encoder that also keeps the events, so the answer can be stored."""

    def __init__(self, encoder) -> None:  # a gateway.providers.base.StreamEncoder
        self._encoder = encoder
        self.content_type = encoder.content_type
        self.events: list[StreamEvent] = []

    def encode(self, event: StreamEvent) -> bytes:
        self.events.append(event)
        return self._encoder.encode(event)

    def finish(self) -> bytes:
        return self._encoder.finish()

    def error(self, err) -> bytes:
        return self._encoder.error(err)
