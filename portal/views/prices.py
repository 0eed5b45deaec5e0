"""The operator's price catalog: the price in force per name, its history, and a new price."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from billing import prices
from portal import access, services
from portal.views.common import actor, portal_view

PRICE_HELP = "USD per million tokens."


def _money(label: str, required: bool = True, help_text: str = PRICE_HELP) -> forms.DecimalField:
    return forms.DecimalField(
        label=label,
        required=required,
        min_value=0,
        max_digits=12,
        decimal_places=6,
        help_text=help_text,
        widget=forms.NumberInput(attrs={"step": "any", "inputmode": "decimal"}),
    )


class PriceForm(forms.Form):
    model_name = forms.CharField(
        label="Model",
        max_length=prices.MAX_NAME,
        help_text="A public model, a deployment (provider/upstream_model) or an upstream model.",
    )
    input_per_mtok = _money("Input")
    output_per_mtok = _money("Output")
    cached_input_per_mtok = _money(
        "Cached input", required=False, help_text="Empty: cached input is billed as input."
    )
    reasoning_per_mtok = _money(
        "Reasoning", required=False, help_text="Empty: reasoning tokens are billed as output."
    )
    per_request_usd = _money("Per request", required=False, help_text="USD per request.")
    source = forms.CharField(
        label="Source",
        required=False,
        max_length=300,
        help_text="Where the figures come from (a URL, a contract).",
    )
    effective_from = forms.DateTimeField(
        label="Effective from (UTC)",
        required=False,
        help_text="Empty: now. A later date schedules the change.",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"],
    )


def _require_operator(request) -> None:
    if not request.user.is_staff:
        raise access.Denied("Only the platform operator manages prices.")


@portal_view
def prices_page(request):
    _require_operator(request)
    return _render(request, PriceForm(initial=_prefill(request.GET.get("model", ""))))


@require_POST
@portal_view
def price_add(request):
    _require_operator(request)
    form = PriceForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            price = prices.price_set(actor=actor(request), **data)
        except services.ServiceError as exc:
            form.add_error(None, str(exc))
        else:
            when = "now"
            if price.effective_from > timezone.now():
                when = f"on {price.effective_from:%Y-%m-%d %H:%M} UTC"
            messages.success(request, f"New price for {price.model_name}, effective {when}.")
            return redirect("portal:prices")
    return _render(request, form, status=400)


def _prefill(name: str) -> dict:
    """The form, filled with a name's latest figures: a change starts from them."""
    latest = prices.latest_price(name) if name else None
    if latest is None:
        return {"model_name": name} if name else {}
    initial = {"model_name": name, "source": ""}
    for key in prices.FIGURES:
        value = getattr(latest, key)
        initial[key] = _usd(value) or None
    return initial


def _usd(value) -> str:
    """2.500000 -> "2.5", 10.000000 -> "10": exact, never in exponent form."""
    return "" if value is None else format(value.normalize(), "f")


def _figures(price) -> dict[str, str] | None:
    if price is None:
        return None
    out = {key: _usd(getattr(price, key)) for key in prices.FIGURES}
    out["effective_from"] = price.effective_from
    out["source"] = price.source
    return out


def _render(request, form: PriceForm, status: int = 200):
    rows = [
        {
            "name": row.model_name,
            "current": _figures(row.current),
            "scheduled": _figures(row.scheduled),
            "history": row.history,
        }
        for row in prices.current_prices()
    ]
    context = {"rows": rows, "form": form, "here": "prices"}
    return render(request, "portal/prices.html", context, status=status)
