"""The price catalog: list prices seeded from billing/data/prices.yaml, operator prices from the
portal and the YAML config. A change always adds a row with its effective date; rows are never
edited, so a cost computed yesterday stays what it was.

A row's `model_name` is a public model name, a deployment ("provider/upstream_model") or an
upstream model name (the seeded list prices); the gateway bills a deployment at the first that
exists, in that order (gateway.catalog.load).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing.models import Price
from portal import access
from portal.services.common import SYSTEM, Actor, ServiceError, audit

SEED_FILE = Path(__file__).resolve().parent / "data" / "prices.yaml"
# Rows the seed wrote say so; the seed never replaces a price an operator set.
LIST_PRICE = "list price"
CONFIG_SOURCE = "config"
FIGURES = (
    "input_per_mtok",
    "output_per_mtok",
    "cached_input_per_mtok",
    "reasoning_per_mtok",
    "per_request_usd",
)
REQUIRED = ("input_per_mtok", "output_per_mtok")
MAX_FIGURE = Decimal("1000000")  # the columns hold 12 digits, 6 after the point
MAX_NAME = 200


def _figures(values: dict[str, Any]) -> dict[str, Decimal | None]:
    """Validated Decimals; `per_request_usd` defaults to 0, optional prices to None."""
    out: dict[str, Decimal | None] = {}
    for key in FIGURES:
        raw = values.get(key)
        if raw is None or raw == "":
            if key in REQUIRED:
                raise ServiceError(f"{key} is required.")
            out[key] = Decimal(0) if key == "per_request_usd" else None
            continue
        try:
            if isinstance(raw, bool):
                raise InvalidOperation
            value = Decimal(str(raw).strip())  # a float's shortest repr: 0.1 -> "0.1"
        except InvalidOperation:
            raise ServiceError(f"{key} must be a number.") from None
        if not value.is_finite() or value < 0 or value >= MAX_FIGURE:
            raise ServiceError(f"{key} must be a number from 0 to {MAX_FIGURE}.")
        if value != value.quantize(Decimal("0.000001")):
            raise ServiceError(f"{key} takes at most 6 decimal places.")
        out[key] = value
    return out


def same_figures(row: Price, figures: dict[str, Decimal | None]) -> bool:
    """Numerically equal in every figure (0.6 == 0.600000); an empty fee is 0."""
    for key in FIGURES:
        have, want = getattr(row, key), figures.get(key)
        if key == "per_request_usd":
            have, want = have or Decimal(0), want or Decimal(0)
        if have != want:
            return False
    return True


def latest_price(model_name: str) -> Price | None:
    """The most recent row of a name, a scheduled one included."""
    return Price.objects.filter(model_name=model_name).order_by("-effective_from").first()


def price_record(
    model_name: str, values: dict[str, Any], *, source: str = CONFIG_SOURCE
) -> Price | None:
    """A new row effective now unless the latest row of the name already says the same (every
    figure and the source); None when nothing changed. For the YAML config and the seed."""
    figures = _figures(values)
    latest = latest_price(model_name)
    if latest is not None and same_figures(latest, figures) and latest.source == source:
        return None
    return Price.objects.create(
        model_name=model_name, source=source[:300], effective_from=timezone.now(), **figures
    )


# --- the seed ------------------------------------------------------------------------


class _DecimalLoader(yaml.SafeLoader):
    """Reads numbers as Decimal from their text: a float never touches a price."""


def _decimal(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Decimal:
    return Decimal(loader.construct_scalar(node).replace("_", ""))


_DecimalLoader.add_constructor("tag:yaml.org,2002:float", _decimal)
_DecimalLoader.add_constructor("tag:yaml.org,2002:int", _decimal)


@dataclass(frozen=True)
class ListPrice:
    model_name: str  # the upstream model name
    figures: dict[str, Any]
    source: str  # "list price YYYY-MM-DD: URL"


def load_list_prices(path: Path | str = SEED_FILE) -> list[ListPrice]:
    with open(path, encoding="utf-8") as handle:
        data = yaml.load(handle, Loader=_DecimalLoader)  # noqa: S506 - a SafeLoader subclass
    taken = str(data["taken"])
    out = []
    for provider in data["providers"].values():
        for name, entry in provider["models"].items():
            entry = dict(entry or {})
            url = entry.pop("source", provider["source"])
            when = str(entry.pop("taken", taken))
            out.append(ListPrice(str(name), entry, f"{LIST_PRICE} {when}: {url}"))
    return out


def seed_prices(path: Path | str = SEED_FILE, *, force: bool = False) -> list[str]:
    """Add the list prices of the seed file; idempotent. A row is added only when the figures
    differ from the latest row of that name, and never over a price an operator set (from the
    portal or the config) unless `force`. Returns the names that got a new row."""
    added = []
    with transaction.atomic():
        for item in load_list_prices(path):
            figures = _figures(item.figures)
            latest = latest_price(item.model_name)
            if latest is not None:
                if same_figures(latest, figures):
                    continue
                if not force and not latest.source.startswith(LIST_PRICE):
                    continue
            price = Price.objects.create(
                model_name=item.model_name,
                source=item.source[:300],
                effective_from=timezone.now(),
                **figures,
            )
            audit(actor=SYSTEM, tenant=None, action="price.seeded", target=price, **_data(price))
            added.append(item.model_name)
    return added


# --- the operator ----------------------------------------------------------------------


def price_set(
    *,
    actor: Actor,
    model_name: str,
    input_per_mtok: Any,
    output_per_mtok: Any,
    cached_input_per_mtok: Any = None,
    reasoning_per_mtok: Any = None,
    per_request_usd: Any = None,
    source: str = "",
    effective_from: datetime | None = None,
) -> Price:
    """A new price for a name, effective now or at a future date; the operator's alone."""
    if actor.user is not None and not getattr(actor.user, "is_staff", False):
        raise access.Denied("Only the platform operator sets prices.")
    model_name = (model_name or "").strip()
    if not model_name or len(model_name) > MAX_NAME or any(c.isspace() for c in model_name):
        raise ServiceError(
            "Name a public model, a deployment (provider/upstream_model) or an upstream model."
        )
    figures = _figures(
        {
            "input_per_mtok": input_per_mtok,
            "output_per_mtok": output_per_mtok,
            "cached_input_per_mtok": cached_input_per_mtok,
            "reasoning_per_mtok": reasoning_per_mtok,
            "per_request_usd": per_request_usd,
        }
    )
    now = timezone.now()
    if effective_from is None:
        effective_from = now
    elif effective_from < now - timedelta(seconds=60):
        raise ServiceError("A price takes effect now or later: past costs are never rewritten.")
    source = (source or "").strip() or f"set by {actor.label}"
    try:
        with transaction.atomic():
            price = Price.objects.create(
                model_name=model_name,
                source=source[:300],
                effective_from=max(effective_from, now),
                **figures,
            )
            audit(actor=actor, tenant=None, action="price.set", target=price, **_data(price))
    except IntegrityError:
        raise ServiceError(f"{model_name} already has a price from that moment.") from None
    return price


def _data(price: Price) -> dict[str, str | None]:
    """JSON-safe figures for the audit log: Decimals as exact strings."""
    data: dict[str, str | None] = {"model": price.model_name, "source": price.source}
    for key in FIGURES:
        value = getattr(price, key)
        data[key] = None if value is None else str(value)
    data["effective_from"] = price.effective_from.isoformat()
    return data


# --- reading -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CatalogRow:
    model_name: str
    current: Price | None  # in force now
    scheduled: Price | None  # the next one, if a future row exists
    history: int  # how many rows the name has


def current_prices(at: datetime | None = None) -> list[CatalogRow]:
    """Per name: the price in force (the latest effective row), the next scheduled one, and how
    many rows its history holds; sorted by name."""
    at = at or timezone.now()
    rows: dict[str, list[Price]] = {}
    for price in Price.objects.order_by("model_name", "effective_from"):
        rows.setdefault(price.model_name, []).append(price)
    out = []
    for name, history in rows.items():
        past = [p for p in history if p.effective_from <= at]
        future = [p for p in history if p.effective_from > at]
        out.append(
            CatalogRow(
                name, past[-1] if past else None, future[0] if future else None, len(history)
            )
        )
    return out
