"""The operator's routing page: every deployment's breaker state, with drain and resume."""

from __future__ import annotations

import time

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from gateway import breaker
from gateway.models import Deployment, LanguageModel, RoutingRule
from portal import access, services
from portal.views.common import actor, portal_view


def _require_operator(request) -> None:
    if not request.user.is_staff:
        raise access.Denied("Only the platform operator sees routing health.")


def _name(dep: Deployment) -> str:
    return f"{dep.provider.name}/{dep.upstream_model}"


@portal_view
def routing(request):
    _require_operator(request)
    deployments = list(
        Deployment.objects.select_related("model", "provider").order_by("model__name", "pk")
    )
    health = breaker.health_report(sorted({_name(d) for d in deployments}))
    now = time.time()
    rows = [
        {
            "deployment": d,
            "name": _name(d),
            "health": health[_name(d)],
            "cooldown": _cooldown(health[_name(d)], now),
        }
        for d in deployments
    ]
    rules = [
        {"rule": r, "conditions": _conditions(r.when)}
        for r in RoutingRule.objects.filter(enabled=True).order_by("position", "pk")
    ]
    autos = LanguageModel.objects.filter(enabled=True).exclude(auto_candidates=[]).order_by("name")
    context = {"rows": rows, "rules": rules, "autos": autos, "here": "routing"}
    return render(request, "portal/routing.html", context)


def _cooldown(health: breaker.Health, now: float) -> str:
    if health.state != "open" or health.open_until is None:
        return ""
    return f"{max(0.0, health.open_until - now):.0f} s"


def _conditions(when: dict) -> list[str]:
    """Readable conditions: 'tenant is acme or globex', 'header x-region matches ^eu$'."""
    out = []
    for key, value in when.items():
        if isinstance(value, list):
            out.append(f"{key} is {' or '.join(map(str, value))}")
        elif isinstance(value, dict):
            out.extend(f"{key} {k} matches {v}" for k, v in value.items())
        else:
            out.append(f"{key.replace('_', ' ')} {value}")
    return out or ["always"]


@require_POST
@portal_view
def routing_drain(request, deployment_id: int):
    _require_operator(request)
    dep = get_object_or_404(Deployment.objects.select_related("provider"), pk=deployment_id)
    drained = request.POST.get("drain") == "1"
    breaker.set_drained(_name(dep), drained)
    action = "deployment.drained" if drained else "deployment.resumed"
    services.audit(actor=actor(request), tenant=None, action=action, target=dep)
    messages.success(request, f"{_name(dep)} {'drained' if drained else 'back in rotation'}.")
    return redirect("portal:routing")
