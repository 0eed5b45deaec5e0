"""OpenAI-compatible upstream -> OpenAI client: forward the frames, don't rebuild them.

Each frame is still parsed (orjson validates it and yields usage, errors and the text for
token counting), but the bytes sent on are the upstream's own with the model renamed to the
public name, which spares building and re-encoding every chunk. The usage chunk we asked for
is dropped when the client didn't ask for it.
"""

from __future__ import annotations

import re

import orjson

from gateway.errors import GatewayError
from gateway.providers.openai import translate
from gateway.providers.openai.client import OpenAIStreamEncoder
from gateway.schemas import Usage

MODEL_FIELD = re.compile(rb'"model"\s*:\s*"(?:[^"\\]|\\.)*"')
DONE = b"[DONE]"


class OpenAIPassthrough:
    def __init__(self, request_id: str, public_model: str, include_usage: bool) -> None:
        self._model_field = b'"model":' + orjson.dumps(public_model)
        self._include_usage = include_usage
        self._errors = OpenAIStreamEncoder(request_id, public_model, include_usage)
        self._buffer = b""
        self._produced: list[str] = []
        self._done = False
        self.usage = Usage()
        self.first_token_seen = False

    def feed(self, chunk: bytes) -> bytes:
        self._buffer += chunk
        if b"\r" in self._buffer:  # CRLF framing; a pair may be split across reads
            self._buffer = self._buffer.replace(b"\r\n", b"\n")
        out = []
        while not self._done:
            cut = self._buffer.find(b"\n\n")
            if cut < 0:
                break
            frame, self._buffer = self._buffer[:cut], self._buffer[cut + 2 :]
            forwarded = self._frame(frame)
            if forwarded:
                out.append(forwarded)
        return b"".join(out)

    def close(self) -> bytes:
        tail = self.feed(b"\n\n") if self._buffer.strip() else b""
        if not self._done:
            raise GatewayError(
                "upstream_error", "The upstream stream ended before it was complete."
            )
        return tail + b"data: [DONE]\n\n"

    def error(self, err: GatewayError) -> bytes:
        return self._errors.error(err)

    def produced_text(self) -> str:
        return "".join(self._produced)

    def _frame(self, frame: bytes) -> bytes | None:
        data = b"\n".join(
            line[5:].lstrip(b" ") for line in frame.split(b"\n") if line.startswith(b"data:")
        )
        if not data:
            return None  # comments and keep-alives
        if data == DONE:
            self._done = True
            return None
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise GatewayError(
                "upstream_error", "The upstream sent a malformed stream frame."
            ) from exc
        if not isinstance(chunk, dict):
            raise GatewayError("upstream_error", "The upstream sent a malformed stream frame.")
        if isinstance(chunk.get("error"), dict):
            message = chunk["error"].get("message") or "Upstream error."
            raise GatewayError("upstream_error", str(message))
        choices = chunk.get("choices") or ()
        self._observe(choices)
        if chunk.get("usage"):
            self.usage = translate.parse_usage(chunk["usage"])
            if not choices and not self._include_usage:
                return None
        return b"data: " + MODEL_FIELD.sub(self._model_field, data, count=1) + b"\n\n"

    def _observe(self, choices: list) -> None:
        for choice in choices:
            delta = choice.get("delta") or {}
            if delta.get("content"):
                self.first_token_seen = True
                self._produced.append(delta["content"])
            for call in delta.get("tool_calls") or ():
                self.first_token_seen = True
                function = call.get("function") or {}
                self._produced.append(function.get("name") or "")
                self._produced.append(function.get("arguments") or "")
