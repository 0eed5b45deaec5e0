"""Cost of a request from its usage and a price, in Decimal end to end."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from gateway.schemas import Usage

MILLION = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class PriceEntry:
    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cached_input_per_mtok: Decimal | None = None


def cost_of(usage: Usage, price: PriceEntry | None) -> Decimal | None:
    """None when the price or the token counts are unknown: unknown is not free."""
    if price is None or usage.input_tokens is None or usage.output_tokens is None:
        return None
    cached = usage.cached_input_tokens or 0
    cached_price = price.cached_input_per_mtok
    if cached_price is None:
        cached_price = price.input_per_mtok
    total = (
        Decimal(usage.input_tokens - cached) * price.input_per_mtok
        + Decimal(cached) * cached_price
        + Decimal(usage.output_tokens) * price.output_per_mtok
    )
    return total / MILLION
