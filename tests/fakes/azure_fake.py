"""A fake Azure OpenAI resource: OpenAI's formats behind per-deployment URLs.

Differences from api.openai.com that a gateway has to cope with, reproduced here:
  * POST /openai/deployments/{deployment}/chat/completions|embeddings?api-version=...,
    auth by an `api-key` header; no api-version gives Azure's 404 "Resource not found";
  * the body needs no `model` (the deployment names it); responses name the deployment;
  * errors are `{"error": {"code": "<status or code>", "message": ...}}`;
  * content-filter annotations: non-stream responses carry `prompt_filter_results` and
    each choice `content_filter_results`; streams open with a chunk that has empty
    `choices`, an empty `id` and `model`, and only `prompt_filter_results`.
"""

from __future__ import annotations

from typing import Any

import orjson

from tests.fakes import openai_fake
from tests.fakes.control import Fault
from tests.fakes.server import Call, FakeServer, Frame, Handler, JsonReply, SSEReply, frame

DEFAULT_KEY = "fake-azure-key"

_SAFE = {"filtered": False, "severity": "safe"}
FILTER_RESULTS = {name: _SAFE for name in ("hate", "self_harm", "sexual", "violence")}
PROMPT_FILTER_RESULTS = [{"prompt_index": 0, "content_filter_results": FILTER_RESULTS}]


def error_payload(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _with_filters(payload: dict[str, Any], deployment: str) -> dict[str, Any]:
    payload["model"] = payload.get("model") or deployment
    for choice in payload.get("choices", []):
        choice["content_filter_results"] = FILTER_RESULTS
    return payload


class AzureOpenAIFake(FakeServer):
    """`base_url` is the resource endpoint, like https://<name>.openai.azure.com."""

    name = "azure"

    def __init__(self, api_key: str = DEFAULT_KEY, deployments: set[str] | None = None) -> None:
        super().__init__(api_key)
        self.deployments = deployments  # None: every deployment name exists

    def routes(self) -> list[tuple[str, str, Handler]]:
        prefix = "/openai/deployments/{deployment}"
        return [
            ("POST", prefix + "/chat/completions", self._chat),
            ("POST", prefix + "/embeddings", self._embeddings),
        ]

    def authenticate(self, call: Call) -> JsonReply | None:
        if call.request.headers.get("api-key") != self.api_key:
            return self.error(
                401,
                "Access denied due to invalid subscription key or wrong API endpoint. Make "
                "sure to provide a valid key for an active subscription and use a correct "
                "regional API endpoint for your resource.",
            )
        return None

    def error(self, status: int, message: str, error_type: str | None = None) -> JsonReply:
        return JsonReply(status, error_payload(error_type or str(status), message))

    def stream_error(self, message: str, error_type: str | None = None) -> Frame:
        return frame(error_payload(error_type or "server_error", message))

    def _status_fault(self, fault: Fault) -> JsonReply:
        reply = super()._status_fault(fault)
        if fault.retry_after is not None:  # Azure sends both; the openai SDK prefers -ms
            reply.headers["retry-after-ms"] = str(int(fault.retry_after * 1000))
        return reply

    def _check_target(self, call: Call) -> JsonReply | None:
        if "api-version" not in call.request.query:
            return self.error(404, "Resource not found")
        deployment = call.request.match_info["deployment"]
        if self.deployments is not None and deployment not in self.deployments:
            return self.error(
                404,
                "The API deployment for this resource does not exist. If you created the "
                "deployment within the last 5 minutes, please wait a moment and try again.",
                "DeploymentNotFound",
            )
        return None

    async def _chat(self, call: Call) -> JsonReply | SSEReply:
        problem = self._check_target(call)
        if problem:
            return problem
        deployment = call.request.match_info["deployment"]
        result = await openai_fake.chat(call, need_model=False)
        if isinstance(result, JsonReply):
            if result.status == 200:
                _with_filters(result.payload, deployment)
                result.payload["prompt_filter_results"] = PROMPT_FILTER_RESULTS
            return result
        frames = [self._filtered_frame(f, deployment) for f in result.frames]
        opening = {"choices": [], "created": 0, "id": "", "model": "", "object": ""}
        opening["prompt_filter_results"] = PROMPT_FILTER_RESULTS
        return SSEReply([frame(opening), *frames], headers=result.headers)

    def _filtered_frame(self, item: Frame, deployment: str) -> Frame:
        if item.data == "[DONE]":
            return item
        return frame(_with_filters(orjson.loads(item.data), deployment))

    async def _embeddings(self, call: Call) -> JsonReply:
        problem = self._check_target(call)
        if problem:
            return problem
        result = await openai_fake.embeddings(call, need_model=False)
        if result.status == 200 and not result.payload["model"]:
            result.payload["model"] = call.request.match_info["deployment"]
        return result


def start(api_key: str = DEFAULT_KEY) -> AzureOpenAIFake:
    """Start a fake Azure OpenAI resource on a free loopback port; `stop()` it when done."""
    return AzureOpenAIFake(api_key).start()
