"""A fake OpenAI API: chat completions (plain and streamed), embeddings and the model list.

The wire shapes follow api.openai.com: `chat.completion` / `chat.completion.chunk` objects,
SSE `data:` frames ended by `data: [DONE]`, tool-call arguments streamed in pieces keyed by
`index`, and with `stream_options.include_usage` every chunk carries `"usage": null` and one
last chunk with empty `choices` carries the usage. Azure's fake reuses the builders here.
"""

from __future__ import annotations

import time
from typing import Any

from tests.fakes import text
from tests.fakes.control import Reply
from tests.fakes.server import Call, FakeServer, Frame, Handler, JsonReply, SSEReply, frame

DEFAULT_KEY = "sk-fake-openai"
FINGERPRINT = "fp_fake"
MODELS = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small", "text-embedding-3-large")
EMBEDDING_DIMENSIONS = {"text-embedding-3-large": 3072, "text-embedding-3-small": 1536}
DEFAULT_DIMENSIONS = 1536

# status -> (type, code) as api.openai.com sends them
_ERRORS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("request_forbidden", None),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


def error_payload(status: int, message: str, error_type: str | None = None) -> dict[str, Any]:
    kind, code = _ERRORS.get(status, ("server_error", None))
    error = {"message": message, "type": error_type or kind, "param": None, "code": code}
    return {"error": error}


# --- request reading ----------------------------------------------------------------------


def content_text(content: Any) -> str:
    """A message's text: the string itself, or its `text` parts joined by spaces."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def input_tokens(messages: list[Any]) -> int:
    return text.count_words(content_text(m.get("content")) for m in messages if isinstance(m, dict))


def default_reply(messages: list[Any]) -> Reply:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return text.echo(content_text(message.get("content")))
    return text.echo("")


def chat_problem(body: Any, need_model: bool) -> tuple[str, str] | None:
    """(param, message) when the body is not a chat request OpenAI would accept."""
    if not isinstance(body, dict):
        return "body", "We could not parse the JSON body of your request."
    if need_model and not body.get("model"):
        return "model", "you must provide a model parameter"
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        return "messages", "[] is too short - 'messages'"
    return None


# --- response building --------------------------------------------------------------------


def usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _finish(reply: Reply) -> str:
    return reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")


def _call_id(reply: Reply, index: int) -> str:
    return reply.tool_calls[index].id or f"call_fake_{index}"


def completion(body: dict[str, Any], reply: Reply, ident: str, omit_usage: bool) -> dict[str, Any]:
    n = int(body.get("n") or 1)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": reply.text if reply.text or not reply.tool_calls else None,
        "refusal": None,
        "annotations": [],
    }
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": _call_id(reply, i),
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for i, call in enumerate(reply.tool_calls)
        ]
    choices = [
        {"index": i, "message": message, "logprobs": None, "finish_reason": _finish(reply)}
        for i in range(n)
    ]
    payload: dict[str, Any] = {
        "id": ident,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", ""),
        "choices": choices,
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
    }
    if not omit_usage:
        payload["usage"] = _reply_usage(body, reply, n)
    return payload


def _reply_usage(body: dict[str, Any], reply: Reply, n: int) -> dict[str, Any]:
    prompt = reply.input_tokens
    if prompt is None:
        prompt = input_tokens(body["messages"])
    return usage(prompt, text.output_tokens(reply) * n)


def _deltas(reply: Reply) -> list[tuple[dict[str, Any], str | None]]:
    """One choice's (delta, finish_reason) sequence."""
    first = {"role": "assistant", "content": "" if reply.text or not reply.tool_calls else None}
    steps: list[tuple[dict[str, Any], str | None]] = [({**first, "refusal": None}, None)]
    steps += [({"content": piece}, None) for piece in text.text_pieces(reply.text)]
    for i, call in enumerate(reply.tool_calls):
        start = {"index": i, "id": _call_id(reply, i), "type": "function"}
        start["function"] = {"name": call.name, "arguments": ""}
        steps.append(({"tool_calls": [start]}, None))
        for piece in text.json_pieces(call.arguments):
            steps.append(({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}, None))
    steps.append(({}, _finish(reply)))
    return steps


def chunk_frames(body: dict[str, Any], reply: Reply, ident: str, omit_usage: bool) -> list[Frame]:
    n = int(body.get("n") or 1)
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    base: dict[str, Any] = {
        "id": ident,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": body.get("model", ""),
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
    }
    if include_usage:
        base["usage"] = None
    steps = _deltas(reply)
    frames = []
    # Choices interleave step by step, as they do upstream when n > 1.
    for delta, finish in steps:
        for index in range(n):
            choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
            frames.append(frame({**base, "choices": [choice]}))
    if include_usage and not omit_usage:
        frames.append(frame({**base, "choices": [], "usage": _reply_usage(body, reply, n)}))
    frames.append(Frame("[DONE]"))
    return frames


async def chat(call: Call, need_model: bool = True) -> JsonReply | SSEReply:
    problem = chat_problem(call.body, need_model)
    if problem:
        payload = error_payload(400, problem[1])
        payload["error"]["param"] = problem[0]
        return JsonReply(400, payload)
    body = call.body
    reply = call.reply(lambda: default_reply(body["messages"]))
    ident = f"chatcmpl-fake{call.server.next_id()}"
    headers = {"x-request-id": f"req_fake{call.server.next_id()}"}
    if body.get("stream"):
        return SSEReply(chunk_frames(body, reply, ident, call.fault.omit_usage), headers=headers)
    return JsonReply(200, completion(body, reply, ident, call.fault.omit_usage), headers)


# --- embeddings ---------------------------------------------------------------------------


def _embedding_inputs(raw: Any) -> list[tuple[str, int]] | None:
    """(text to hash, token count) per input; None when `input` has no valid shape."""
    if isinstance(raw, str):
        return [(raw, text.count_words([raw]))]
    if isinstance(raw, list) and raw and all(isinstance(x, int) for x in raw):
        return [(str(raw), len(raw))]
    if isinstance(raw, list) and raw and all(isinstance(x, str | list) for x in raw):
        return [(x, text.count_words([x])) if isinstance(x, str) else (str(x), len(x)) for x in raw]
    return None


async def embeddings(call: Call, need_model: bool = True) -> JsonReply:
    body = call.body if isinstance(call.body, dict) else {}
    inputs = _embedding_inputs(body.get("input"))
    if inputs is None or (need_model and not body.get("model")):
        param = "input" if inputs is None else "model"
        payload = error_payload(400, f"'{param}' is a required property")
        payload["error"]["param"] = param
        return JsonReply(400, payload)
    model = body.get("model", "")
    dimensions = int(body.get("dimensions") or EMBEDDING_DIMENSIONS.get(model, DEFAULT_DIMENSIONS))
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for index, (source, _) in enumerate(inputs):
        vector: Any = text.embedding(source, dimensions)
        if as_base64:
            vector = text.embedding_base64(vector)
        data.append({"object": "embedding", "index": index, "embedding": vector})
    payload: dict[str, Any] = {"object": "list", "data": data, "model": model}
    if not call.fault.omit_usage:
        tokens = sum(count for _, count in inputs)
        payload["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
    return JsonReply(200, payload)


# --- the server ---------------------------------------------------------------------------


class OpenAIFake(FakeServer):
    """`base_url` ends in /v1, like https://api.openai.com/v1."""

    name = "openai"

    def __init__(self, api_key: str = DEFAULT_KEY, models: tuple[str, ...] = MODELS) -> None:
        super().__init__(api_key)
        self.models = models

    @property
    def base_url(self) -> str:
        return self.root_url + "/v1"

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("POST", "/v1/chat/completions", chat),
            ("POST", "/v1/embeddings", embeddings),
            ("GET", "/v1/models", self._list_models),
            ("GET", "/v1/models/{model}", self._get_model),
        ]

    def authenticate(self, call: Call) -> JsonReply | None:
        header = call.request.headers.get("authorization", "")
        if not header:
            return self.error(
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                error_type=None,
            )
        if header != f"Bearer {self.api_key}":
            given = header.removeprefix("Bearer ")
            return self.error(401, f"Incorrect API key provided: {given[:3]}***{given[-4:]}.")
        return None

    def error(self, status: int, message: str, error_type: str | None = None) -> JsonReply:
        return JsonReply(status, error_payload(status, message, error_type))

    def stream_error(self, message: str, error_type: str | None = None) -> Frame:
        return frame(error_payload(500, message, error_type))

    def _model(self, model_id: str) -> dict[str, Any]:
        return {"id": model_id, "object": "model", "created": 1700000000, "owned_by": "openai"}

    async def _list_models(self, call: Call) -> JsonReply:
        return JsonReply(200, {"object": "list", "data": [self._model(m) for m in self.models]})

    async def _get_model(self, call: Call) -> JsonReply:
        model_id = call.request.match_info["model"]
        if model_id not in self.models:
            return self.error(404, f"The model '{model_id}' does not exist")
        return JsonReply(200, self._model(model_id))


def start(api_key: str = DEFAULT_KEY) -> OpenAIFake:
    """Start a fake OpenAI on a free loopback port; `stop()` it when done."""
    return OpenAIFake(api_key).start()
