"""Which model serves a chat request: the one asked for, unless a routing rule or an `auto`
model picks another. Access is checked on the model the client named; what a rule or `auto`
picks is the operator's decision on its behalf.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from gateway import auto, catalog
from gateway.auth import Principal
from gateway.catalog import ModelEntry
from gateway.errors import GatewayError
from gateway.rules import Facts, first_match
from gateway.schemas import ChatRequest


@dataclass(frozen=True, slots=True)
class Choice:
    entry: ModelEntry
    reason: str = ""  # empty: served as asked


async def choose(principal: Principal, req: ChatRequest, headers: dict[bytes, bytes]) -> Choice:
    asked = await catalog.resolve(req.model, principal.may_use(req.model))
    snapshot = await catalog.current()
    if not snapshot.rules and not asked.auto:
        return Choice(asked)
    facts = Facts(principal, req, headers)
    entry, reasons = asked, []
    rule = first_match(snapshot.rules, facts)
    if rule is not None:
        entry = snapshot.models.get(rule.route_to, asked) if rule.route_to else asked
        reasons.append(f"rule={rule.name}")
        if rule.deployment:
            entry = _pinned(entry, rule.deployment, rule.name)
    if entry.auto:
        candidates = [snapshot.models[n] for n in entry.auto if n in snapshot.models]
        entry, why = auto.choose(entry, candidates, facts)
        reasons.append(why)
    elif reasons:
        reasons.append(f"model={entry.name}")
    if entry.mode != "chat":
        raise GatewayError(
            "invalid_request", f"The model '{entry.name}' can't serve chat.", param="model"
        )
    return Choice(entry, "; ".join(reasons))


def _pinned(entry: ModelEntry, deployment: str, rule: str) -> ModelEntry:
    targets = tuple(t for t in entry.targets if t.deployment == deployment)
    if not targets:
        raise GatewayError(
            "overloaded",
            f"Routing rule '{rule}' pins deployment '{deployment}', which is not serving.",
        )
    return replace(entry, targets=targets)
