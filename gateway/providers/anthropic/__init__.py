"""Anthropic Messages API: the upstream adapter and the `/v1/messages` client codec."""

from gateway.providers.anthropic.adapter import AnthropicAdapter, AnthropicStreamParser
from gateway.providers.anthropic.client import AnthropicMessagesCodec, AnthropicStreamEncoder

__all__ = [
    "AnthropicAdapter",
    "AnthropicMessagesCodec",
    "AnthropicStreamEncoder",
    "AnthropicStreamParser",
]
