"""Cost of a request from its usage and a price, in Decimal end to end."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from gateway.schemas import Usage

if TYPE_CHECKING:
    from billing.models import Price

MILLION = Decimal(1_000_000)
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class PriceEntry:
    """USD per million tokens, plus a flat fee per request.

    `cached_input_per_mtok` None: cached input is billed as input. `reasoning_per_mtok` None:
    reasoning tokens are billed as output.
    """

    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cached_input_per_mtok: Decimal | None = None
    reasoning_per_mtok: Decimal | None = None
    per_request_usd: Decimal = ZERO

    @classmethod
    def of(cls, row: Price) -> PriceEntry:
        return cls(
            row.input_per_mtok,
            row.output_per_mtok,
            row.cached_input_per_mtok,
            row.reasoning_per_mtok,
            row.per_request_usd if row.per_request_usd is not None else ZERO,
        )


def cost_of(usage: Usage, price: PriceEntry | None) -> Decimal | None:
    """None when the price or the token counts are unknown: unknown is not free.

    Cached input tokens are part of the input tokens, and reasoning tokens part of the output
    tokens (as OpenAI and Gemini count them): each part is billed at its own price, once.
    """
    if price is None or usage.input_tokens is None or usage.output_tokens is None:
        return None
    cached = min(max(usage.cached_input_tokens or 0, 0), usage.input_tokens)
    reasoning = min(max(usage.reasoning_tokens or 0, 0), usage.output_tokens)
    cached_price = price.cached_input_per_mtok
    if cached_price is None:
        cached_price = price.input_per_mtok
    reasoning_price = price.reasoning_per_mtok
    if reasoning_price is None:
        reasoning_price = price.output_per_mtok
    tokens = (
        Decimal(usage.input_tokens - cached) * price.input_per_mtok
        + Decimal(cached) * cached_price
        + Decimal(usage.output_tokens - reasoning) * price.output_per_mtok
        + Decimal(reasoning) * reasoning_price
    )
    return tokens / MILLION + (price.per_request_usd or ZERO)
