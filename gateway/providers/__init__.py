"""The registry of wire protocols: provider kind -> its adapter (and, for the demo, its server).

Adding a provider means adding a module under providers/ and one line here; nothing outside
this package knows a provider's wire format.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from gateway.providers.base import Adapter, ClientCodec
from gateway.schemas import UpstreamRequest

LocalServer = Callable[[UpstreamRequest], Awaitable[tuple[int, AsyncIterator[bytes]]]]


@dataclass(frozen=True)
class ProviderKind:
    adapter: Adapter
    # An in-process server answering instead of the network (the built-in demo only).
    local_server: LocalServer | None = None


def _registry() -> dict[str, ProviderKind]:
    from gateway.providers.anthropic.adapter import AnthropicAdapter
    from gateway.providers.azure_openai.adapter import AzureOpenAIAdapter
    from gateway.providers.demo import server as demo_server
    from gateway.providers.gemini.adapter import GeminiAdapter
    from gateway.providers.openai.adapter import OpenAIAdapter

    return {
        "openai": ProviderKind(OpenAIAdapter()),
        "azure_openai": ProviderKind(AzureOpenAIAdapter()),
        "anthropic": ProviderKind(AnthropicAdapter()),
        "gemini": ProviderKind(GeminiAdapter()),
        "demo": ProviderKind(OpenAIAdapter(), local_server=demo_server.serve),
    }


REGISTRY: dict[str, ProviderKind] = {}


def provider_kind(kind: str) -> ProviderKind:
    if not REGISTRY:
        REGISTRY.update(_registry())
    return REGISTRY[kind]


KINDS = ("openai", "azure_openai", "anthropic", "gemini", "demo")


def client_codec(route: str) -> ClientCodec:
    from gateway.providers.anthropic.client import AnthropicMessagesCodec
    from gateway.providers.openai.client import OpenAIChatCodec

    return {"openai": OpenAIChatCodec(), "anthropic": AnthropicMessagesCodec()}[route]
