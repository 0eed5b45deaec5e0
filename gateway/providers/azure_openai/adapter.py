"""Azure OpenAI: OpenAI's wire format behind per-deployment URLs and an `api-key` header."""

from __future__ import annotations

from gateway.providers.openai.adapter import OpenAIAdapter
from gateway.schemas import Credentials

DEFAULT_API_VERSION = "2024-10-21"


class AzureOpenAIAdapter(OpenAIAdapter):
    def headers(self, creds: Credentials) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if creds.api_key:
            headers["api-key"] = creds.api_key
        return headers

    def _url(self, creds: Credentials, operation: str) -> str:
        version = creds.options.get("api_version", DEFAULT_API_VERSION)
        base = creds.base_url.rstrip("/")
        return f"{base}/openai/deployments/{creds.upstream_model}/{operation}?api-version={version}"

    def chat_url(self, creds: Credentials) -> str:
        return self._url(creds, "chat/completions")

    def embeddings_url(self, creds: Credentials) -> str:
        return self._url(creds, "embeddings")

    def upstream_model(self, creds: Credentials) -> str | None:
        return None  # the deployment in the URL names the model
