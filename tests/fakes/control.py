"""What a test tells a fake server, and what the fake saw.

Tests run in the main thread while each fake serves from its own thread, so every piece of
mutable state here sits behind one lock. The server thread only ever takes a snapshot or
pops one item, never holds the lock across an await.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, NamedTuple


@dataclass(frozen=True)
class ToolCallSpec:
    """One tool call in a scripted reply. `arguments` is JSON text, streamed verbatim in
    pieces (so it may be deliberately broken to test clients); Anthropic's non-streamed
    replies and Gemini's responses carry it parsed, so there it must be a JSON object."""

    name: str
    arguments: str = "{}"
    id: str | None = None  # None: the fake makes a deterministic provider-style id


@dataclass(frozen=True)
class Reply:
    """A scripted model answer, provider-neutral; each fake renders it in its own format.

    `finish_reason` goes on the wire verbatim, so use the provider's word ("stop",
    "end_turn", "MAX_TOKENS", ...); None picks the natural one for text or tool calls.
    `input_tokens` / `output_tokens` override the word-count usage rule when set.
    """

    text: str = ""
    tool_calls: Sequence[ToolCallSpec] = ()
    finish_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None


@dataclass(frozen=True)
class Fault:
    """Misbehaviour for one request. Stream frame counts are 0-based: `break_after=2`
    sends frames 1 and 2 and then hangs up."""

    status: int | None = None  # answer with this status and the provider's error JSON
    retry_after: float | None = None  # with `status`: a Retry-After header, in seconds
    error_type: str | None = None  # with `status`: override the provider's error type/code
    message: str | None = None  # with `status` or `error_after`: the error message
    delay: float = 0.0  # seconds to wait before sending the response headers
    # Seconds to wait before each stream frame after the first; a JSON body pauses halfway.
    chunk_delay: float = 0.0
    break_after: int | None = None  # send N frames (or part of a JSON body), then close TCP
    # Send N frames, then a frame of invalid JSON; a JSON body comes complete but cut in half.
    malformed_after: int | None = None
    error_after: int | None = None  # send N frames, then the provider's in-stream error
    omit_usage: bool = False  # leave usage out of the response entirely
    close_without_response: bool = False  # read the request, then close with no response


NO_FAULT = Fault()
FAULT_FIELDS = frozenset(f.name for f in fields(Fault))


class RecordedRequest(NamedTuple):
    """One request as the fake received it. Header names are lower-cased; `json` is the
    parsed body, or None when the body was empty or not JSON."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any


class _Armed:
    """A fault with the number of requests it still applies to (None: until cleared)."""

    def __init__(self, fault: Fault, times: int | None) -> None:
        self.fault = fault
        self.remaining = times


class Control:
    """Scripted replies, queued faults and recorded requests of one fake server."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._replies: deque[Reply] = deque()
        self._faults: deque[_Armed] = deque()
        self._requests: list[RecordedRequest] = []

    # --- used by tests -------------------------------------------------------------------

    def script(self, *replies: Reply) -> None:
        """Queue replies (FIFO); each chat request takes one, else it gets the default echo."""
        with self._lock:
            self._replies.extend(replies)

    def fault(self, times: int | None = 1, **settings: Any) -> Fault:
        """Queue a fault for the next `times` requests (None: every request until `clear()`).

        Faults queue FIFO, so `fault(status=429); fault(status=500)` makes the first request
        a 429 and the second a 500. Settings are the fields of `Fault`.
        """
        unknown = set(settings) - FAULT_FIELDS
        if unknown:
            raise TypeError(f"unknown fault settings: {sorted(unknown)}")
        if times is not None and times < 1:
            raise ValueError("times must be at least 1, or None for 'until cleared'")
        fault = Fault(**settings)
        with self._lock:
            self._faults.append(_Armed(fault, times))
        return fault

    def clear(self) -> None:
        """Drop every queued fault; scripts and recorded requests stay."""
        with self._lock:
            self._faults.clear()

    def reset(self) -> None:
        """Forget faults, scripted replies and recorded requests."""
        with self._lock:
            self._faults.clear()
            self._replies.clear()
            self._requests.clear()

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def last_request(self) -> RecordedRequest:
        with self._lock:
            if not self._requests:
                raise AssertionError("the fake has received no request")
            return self._requests[-1]

    @property
    def pending_replies(self) -> int:
        """How many scripted replies no request has taken yet."""
        with self._lock:
            return len(self._replies)

    # --- used by the server thread -------------------------------------------------------

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _take_fault(self) -> Fault:
        with self._lock:
            if not self._faults:
                return NO_FAULT
            armed = self._faults[0]
            if armed.remaining is not None:
                armed.remaining -= 1
                if armed.remaining == 0:
                    self._faults.popleft()
            return armed.fault

    def _take_reply(self) -> Reply | None:
        with self._lock:
            return self._replies.popleft() if self._replies else None
