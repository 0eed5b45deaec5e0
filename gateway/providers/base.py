"""The two contracts of a wire-protocol module.

* `Adapter` talks to an upstream: pure translation, no I/O; `gateway/upstream.py` sends what it
  builds. One `StreamParser` per request holds the streaming state.
* `ClientCodec` talks to our clients: parses their request into a `ChatRequest` and renders
  responses, stream events and errors in the route's format.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from gateway.errors import GatewayError
from gateway.schemas import (
    ChatRequest,
    ChatResponse,
    Credentials,
    EmbeddingRequest,
    EmbeddingResponse,
    StreamEvent,
    UpstreamRequest,
)

if TYPE_CHECKING:
    from gateway.relay import StreamRelay


class StreamParser(Protocol):
    def feed(self, chunk: bytes) -> list[StreamEvent]:
        """Bytes as they arrive (split anywhere) -> the events they complete.

        Raises GatewayError when the upstream reports an error inside the stream or sends
        a malformed frame.
        """

    def close(self) -> list[StreamEvent]:
        """The upstream ended the body. Raises GatewayError if the stream was cut short."""


class Adapter(Protocol):
    wire: (
        str  # the wire protocol's name; equal names can skip translation (ClientCodec.passthrough)
    )

    def build_chat_request(self, req: ChatRequest, creds: Credentials) -> UpstreamRequest: ...

    def parse_chat_response(self, body: bytes) -> ChatResponse: ...

    def new_stream_parser(self) -> StreamParser: ...

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> GatewayError: ...

    def build_embedding_request(
        self, req: EmbeddingRequest, creds: Credentials
    ) -> UpstreamRequest: ...

    def parse_embedding_response(self, body: bytes) -> EmbeddingResponse: ...


class StreamEncoder(Protocol):
    """Renders one client stream. Created per request: it tracks what was already sent."""

    content_type: str

    def encode(self, event: StreamEvent) -> bytes: ...

    def finish(self) -> bytes:
        """The closing frames after the last event (e.g. `data: [DONE]`)."""

    def error(self, err: GatewayError) -> bytes:
        """An error frame the client SDK raises; the stream ends after it."""


class ClientCodec(Protocol):
    def parse_request(self, body: object) -> ChatRequest:
        """Decoded JSON -> ChatRequest; raises GatewayError('invalid_request') with the param."""

    def render_response(self, resp: ChatResponse, public_model: str) -> dict: ...

    def new_stream_encoder(
        self, req: ChatRequest, request_id: str, public_model: str
    ) -> StreamEncoder: ...

    def render_error(self, err: GatewayError) -> dict: ...

    def passthrough(
        self, adapter: Adapter, req: ChatRequest, request_id: str, public_model: str
    ) -> StreamRelay | None:
        """A relay that forwards the upstream's frames untranslated, where the wires match."""
