"""Stream relays: upstream body bytes in, client SSE bytes out, with what billing needs.

A relay is fed each read of the upstream body and returns the bytes for the client, so the
frames of one read go out in one write. `TranslatingRelay` goes through the typed stream
events; a provider module may offer a cheaper relay for its own clients (see
`ClientCodec.passthrough`).
"""

from __future__ import annotations

from typing import Protocol

from gateway.errors import GatewayError
from gateway.providers.base import StreamEncoder, StreamParser
from gateway.schemas import StreamEvent, TextDelta, ToolCallDelta, ToolCallStart, Usage, UsageReport


class StreamRelay(Protocol):
    usage: Usage
    first_token_seen: bool

    def feed(self, chunk: bytes) -> bytes:
        """Raises GatewayError when the upstream reports an error or sends garbage."""

    def close(self) -> bytes:
        """The closing frames; raises GatewayError if the upstream stream was cut short."""

    def error(self, err: GatewayError) -> bytes: ...

    def produced_text(self) -> str:
        """What the model produced, for counting tokens when the upstream reported none."""


class TranslatingRelay:
    def __init__(self, parser: StreamParser, encoder: StreamEncoder) -> None:
        self._parser = parser
        self._encoder = encoder
        self._produced: list[str] = []
        self.usage = Usage()
        self.first_token_seen = False

    def feed(self, chunk: bytes) -> bytes:
        return self._encode(self._parser.feed(chunk))

    def close(self) -> bytes:
        return self._encode(self._parser.close()) + self._encoder.finish()

    def error(self, err: GatewayError) -> bytes:
        return self._encoder.error(err)

    def produced_text(self) -> str:
        return "".join(self._produced)

    def _encode(self, events: list[StreamEvent]) -> bytes:
        out = []
        for event in events:
            self._observe(event)
            out.append(self._encoder.encode(event))
        return b"".join(out)

    def _observe(self, event: StreamEvent) -> None:
        if isinstance(event, TextDelta):
            self.first_token_seen = True
            self._produced.append(event.text)
        elif isinstance(event, ToolCallDelta):
            self.first_token_seen = True
            self._produced.append(event.arguments)
        elif isinstance(event, ToolCallStart):
            self.first_token_seen = True
            self._produced.append(event.name)
        elif isinstance(event, UsageReport):
            self.usage = event.usage
