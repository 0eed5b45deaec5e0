"""Server-sent events: an incremental decoder and an encoder.

The decoder copes with frames split anywhere across reads, CRLF or LF line ends,
comments, and multi-line `data:` fields (per the WHATWG EventSource spec).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SSEFrame:
    event: str | None
    data: str


class SSEDecoder:
    def __init__(self) -> None:
        self._buffer = b""
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[SSEFrame]:
        self._buffer += chunk
        frames: list[SSEFrame] = []
        while True:
            cut = self._buffer.find(b"\n")
            if cut < 0:
                return frames
            raw, self._buffer = self._buffer[:cut], self._buffer[cut + 1 :]
            frame = self._line(raw.rstrip(b"\r").decode("utf-8", errors="replace"))
            if frame is not None:
                frames.append(frame)

    def close(self) -> list[SSEFrame]:
        """Flush a last frame that the server ended without a blank line."""
        frames = self.feed(b"\n") if self._buffer else []
        if self._data:
            frames.append(SSEFrame(self._event, "\n".join(self._data)))
            self._event, self._data = None, []
        return frames

    def _line(self, line: str) -> SSEFrame | None:
        if not line:
            if not self._data and self._event is None:
                return None
            frame = SSEFrame(self._event, "\n".join(self._data))
            self._event, self._data = None, []
            return frame
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None


def encode_sse(data: bytes | str, event: str | None = None) -> bytes:
    if isinstance(data, str):
        data = data.encode()
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + data + b"\n\n"
