"""The targets of the isolation matrix (tests/security/test_isolation.py): for every route
with path parameters, which of tenant A's objects they name and what tenant B must get back.
A route missing here fails the matrix, unless it is exempt with a reason."""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.urls import URLPattern

from gateway import consumers
from observability import urls as observability_urls
from portal import urls as portal_urls
from prompts import urls as prompts_urls


@dataclass(frozen=True)
class Target:
    """One set of path parameters aimed at A's objects, and what B must get back."""

    params: dict
    status: frozenset[int] = frozenset({404})
    allowed: frozenset[str] = frozenset()  # methods B may use on it by design (public objects)
    control: bool = True  # alice's GET proves the parameters name a real object of A's


def T(params, status=(404,), allowed=(), control=True) -> Target:  # noqa: N802
    return Target(params, frozenset(status), frozenset(allowed), control)


# --- 1. the REST API ----------------------------------------------------------------------

REST_EXEMPT: dict[str, str] = {}  # route -> why it needs no target (none so far)


def rest_targets(w) -> dict[str, list[Target]]:
    a, b = w.a.slug, w.b.slug
    app, key, sub = {"id": w.app.pk}, {"id": w.key.api_key.pk}, {"id": w.sub.pk}
    private, public = w.private_product.slug, w.public_product.slug
    privates = (private, w.prompt_api.product.slug)  # a private product, a private prompt API
    cache_policies = (w.cache_policy, w.public_cache_policy)
    guardrails = (w.guardrail, w.key_guardrail, w.product_guardrail)
    targets = {
        "/api/v1/tenants/{slug}/": [T({"slug": a})],
        "/api/v1/tenants/{slug}/members/": [T({"slug": a})],
        "/api/v1/tenants/{slug}/members/{id}/": [
            T({"slug": a, "id": w.member.pk}),
            T({"slug": b, "id": w.member.pk}, control=False),
        ],
        "/api/v1/tenants/{slug}/invitations/": [T({"slug": a})],
        "/api/v1/tenants/{slug}/applications/": [T({"slug": a})],
        "/api/v1/applications/{id}/": [T(app)],
        "/api/v1/applications/{id}/keys/": [T(app)],
        "/api/v1/applications/{id}/subscriptions/": [T(app)],
        "/api/v1/keys/{id}/rotate/": [T(key)],
        "/api/v1/keys/{id}/revoke/": [T(key)],
        "/api/v1/products/{slug}/": [
            *[T({"slug": slug}) for slug in privates],
            T({"slug": public}, status=(403,), allowed=("get",)),
        ],
        "/api/v1/tenants/{slug}/budgets/": [T({"slug": a})],
        "/api/v1/tenants/{slug}/budgets/{id}/": [
            T({"slug": a, "id": w.budget.pk}),
            T({"slug": b, "id": w.budget.pk}, control=False),
        ],
        "/api/v1/tenants/{slug}/rate-limits/": [T({"slug": a})],
        "/api/v1/tenants/{slug}/rate-limits/{id}/": [
            T({"slug": a, "id": w.limit.pk}),
            T({"slug": b, "id": w.limit.pk}, control=False),
        ],
        "/api/v1/tenants/{slug}/usage/": [T({"slug": a})],
        "/api/v1/tenants/{slug}/cost-reports/{month}/": [T({"slug": a, "month": w.month})],
        "/api/v1/cache-policies/{id}/": [T({"id": p.pk}) for p in cache_policies],
        "/api/v1/tenants/{slug}/cache/purge/": [T({"slug": a})],
        "/api/v1/guardrail-policies/{id}/": [T({"id": p.pk}) for p in guardrails],
        "/api/v1/tokens/{id}/revoke/": [T({"id": w.token.token.pk})],
        "/api/v1/calls/{request_id}/": [T({"request_id": w.request_id})],
    }
    for action in ("approve", "reject", "suspend", "resume", "revoke"):
        targets[f"/api/v1/subscriptions/{{id}}/{action}/"] = [T(sub)]
    return targets


# A body that passes the input checks of the write routes, so only the access check can refuse.
def rest_body(w) -> dict:
    return {
        "name": "pwned", "email": "pwned@example.com", "role": "viewer", "reason": "pwned",
        "product": w.public_product.slug, "amount_usd": "1", "period": "monthly",
        "requests_per_minute": 1, "enabled": False, "mode": "off", "grace_seconds": 0,
        "description": "pwned", "checks": "default",
    }  # fmt: skip


def body_references(w) -> list[tuple[str, str, dict, frozenset[int]]]:
    """Writes in B's own tenant (or global lists) whose body names one of A's objects."""
    b, app, key = w.b.slug, w.app.pk, w.key.api_key.pk
    private, public = w.private_product.slug, w.public_product.slug
    guard = {"name": "b-guard", "checks": "default"}
    hidden, owned = frozenset({404}), frozenset({403})
    return [
        ("post", f"/api/v1/tenants/{b}/budgets/", {"amount_usd": "1", "application": app}, hidden),
        ("post", f"/api/v1/tenants/{b}/budgets/", {"amount_usd": "1", "api_key": key}, hidden),
        ("post", f"/api/v1/tenants/{b}/rate-limits/",
         {"requests_per_minute": 1, "application": app}, hidden),
        ("post", f"/api/v1/tenants/{b}/rate-limits/",
         {"requests_per_minute": 1, "api_key": key}, hidden),
        *[("post", f"/api/v1/applications/{w.b_app.pk}/subscriptions/", {"product": slug}, hidden)
          for slug in (private, w.prompt_api.product.slug)],
        ("post", "/api/v1/guardrail-policies/", {"scope": "tenant", "tenant": w.a.slug, **guard},
         hidden),
        ("post", "/api/v1/guardrail-policies/", {"scope": "key", "api_key": key, **guard}, hidden),
        ("post", "/api/v1/guardrail-policies/", {"scope": "product", "product": private, **guard},
         hidden),
        ("post", "/api/v1/guardrail-policies/", {"scope": "product", "product": public, **guard},
         owned),
        ("post", "/api/v1/cache-policies/", {"product": private, "mode": "off"}, hidden),
        ("post", "/api/v1/cache-policies/", {"product": public, "mode": "off"}, owned),
        ("post", "/api/v1/products/", {"owner": w.a.slug, "name": "B in A", "slug": "b-in-a"},
         hidden),
        ("get", f"/api/v1/audit/?tenant={w.a.slug}", {}, hidden),
    ]  # fmt: skip


# --- 2. the portal pages ------------------------------------------------------------------

PAGE_MODULES = (portal_urls, prompts_urls, observability_urls)
PAGE_EXEMPT = {
    "portal:invitation_accept": "the token is the credential: whoever holds the link may accept",
}
TENANT_PAGE = re.compile(r"(^|/)t/<slug:slug>/")
# The observability module also mounts the call log's REST routes: they are in matrix 1.
REST_PREFIX = "api/v1/"


def page_routes() -> dict[str, URLPattern]:
    found = {}
    for module in PAGE_MODULES:
        for pattern in module.urlpatterns:
            if pattern.pattern.converters and not str(pattern.pattern).startswith(REST_PREFIX):
                found[f"{module.app_name}:{pattern.name}"] = pattern
    return found


def pages_without_parameters() -> list[str]:
    return [f"{module.app_name}:{p.name}" for module in PAGE_MODULES for p in module.urlpatterns
            if not p.pattern.converters]  # fmt: skip


def tenant_targets(w) -> list[Target]:
    return [T({"slug": w.a.slug})]


def page_targets(w) -> dict[str, list[Target]]:
    a, b = w.a.slug, w.b.slug
    tenant = tenant_targets(w)
    private, public = w.private_product.slug, w.public_product.slug
    privates = (private, w.prompt_api.product.slug)  # a private product, a private prompt API
    prompt = {"slug": a, "prompt": w.prompt.slug}
    b_prompt = {"slug": b, "prompt": w.prompt.slug}  # B's own prompt of the same slug
    experiment = {"experiment_id": w.experiment.pk}
    promote = {**experiment, "arm_id": w.arm.pk}
    operator = dict(status=(403,), control=False)
    guardrails = [
        T({"policy_id": p.pk}, control=False)
        for p in (w.guardrail, w.key_guardrail, w.product_guardrail)
    ]

    def both(extra: dict) -> list[Target]:
        """A's id in A's tenant, and in B's own tenant."""
        return [T({"slug": a, **extra}), T({"slug": b, **extra}, control=False)]

    targets = {
        "portal:routing_drain": [T({"deployment_id": w.deployment.pk}, **operator)],
        "portal:cache_policy_remove": [
            T({"policy_id": p.pk}, control=False) for p in (w.cache_policy, w.public_cache_policy)
        ],
        "portal:guardrail_toggle": guardrails,
        "portal:guardrail_remove": guardrails,
        "portal:member_role": both({"member_id": w.member.pk}),
        "portal:member_remove": both({"member_id": w.member.pk}),
        "portal:report": [T({"slug": a, "month": w.month})],
        "portal:report_download": [T({"slug": a, "month": w.month, "fmt": "csv"})],
        "portal:conversation": both({"public_id": w.conversation}),
        "portal:budget_remove": both({"budget_id": w.budget.pk}),
        "portal:rate_limit_remove": both({"limit_id": w.limit.pk}),
        "portal:application_detail": [T({"app_id": w.app.pk})],
        "portal:key_create": [T({"app_id": w.app.pk})],
        "portal:key_rotate": [T({"key_id": w.key.api_key.pk})],
        "portal:key_revoke": [T({"key_id": w.key.api_key.pk})],
        "portal:subscription_cancel": [T({"sub_id": w.sub.pk})],
        "portal:approval_decide": [T({"sub_id": w.sub.pk})],
        # The page of a public product is everyone's (it ignores the method).
        "portal:product_detail": [
            *[T({"slug": slug}) for slug in privates],
            T({"slug": public}, allowed=("GET", "POST")),
        ],
        # B may subscribe to a public product: that is what the catalog is for.
        "portal:subscribe": [
            *[T({"slug": slug}) for slug in privates],
            T({"slug": public}, allowed=("GET", "POST")),
        ],
        "portal:product_cache": [
            *[T({"slug": slug}) for slug in privates],
            T({"slug": public}, status=(403,)),
        ],
        "portal:product_cache_save": [
            *[T({"slug": slug}) for slug in privates],
            T({"slug": public}, status=(403,)),
        ],
        "portal:token_revoke": [T({"token_id": w.token.token.pk}, control=False)],
        "prompts:version": [T({**prompt, "number": 1})],
        "prompts:chain": [T({"slug": a, "chain": w.chain.slug})],
        "prompts:experiment": [
            T({**prompt, **experiment}),
            T({**b_prompt, **experiment}, control=False),
        ],  # fmt: skip
        "prompts:experiment_stop": [
            T({**prompt, **experiment}),
            T({**b_prompt, **experiment}, control=False),
        ],  # fmt: skip
        "prompts:experiment_promote": [
            T({**prompt, **promote}),
            T({**b_prompt, **promote}, control=False),
        ],  # fmt: skip
        "prompts:api_docs": [T({"tenant": a, "api": w.prompt_api.slug})],
        "prompts:api_openapi": [T({"tenant": a, "api": w.prompt_api.slug})],
        "observability:calls_export": [T({"slug": a, "fmt": "csv"})],
        "observability:call": both({"request_id": w.request_id}),
        "observability:operator_call": [T({"request_id": w.request_id}, **operator)],
    }
    for name, pattern in page_routes().items():  # every other /portal/t/<slug>/ page of A's
        route = str(pattern.pattern)
        if set(pattern.pattern.converters) == {"slug"} and TENANT_PAGE.search(route):
            targets.setdefault(name, tenant)
    for name in ("detail", "version_new", "label_set", "publish", "playground", "playground_run",
                 "experiments"):  # fmt: skip
        targets[f"prompts:{name}"] = [T(prompt)]
    return targets


OWN_PARAMS = {"slug", "fmt", "month"}  # with B's slug, these name B's own pages


def page_body_references(w) -> list[tuple[str, dict, dict]]:
    """Forms of B's own pages whose fields name one of A's objects (A must stay unchanged)."""
    b, app, key = {"slug": w.b.slug}, f"app:{w.app.pk}", f"key:{w.key.api_key.pk}"
    budget = {"period": "monthly", "amount_usd": "1", "thresholds": "50,100"}
    return [
        *[("portal:budget_save", b, {"target": t, **budget}) for t in (app, key)],
        *[("portal:rate_limit_save", b, {"target": t, "requests_per_minute": "1"})
          for t in (app, key)],
        ("portal:tenant_guardrail_save", b, {"target": key, "name": "b-guard", "enabled": "on"}),
        ("portal:subscribe", {"slug": w.public_product.slug}, {"application": w.app.pk}),
        ("portal:tenant_switch", {}, {"tenant": w.a.slug}),
    ]  # fmt: skip


FORM = {
    "name": "pwned", "email": "pwned@example.com", "role": "viewer", "amount_usd": "1",
    "period": "monthly", "url": "https://evil.example/hook", "enabled": "on", "reason": "pwned",
    "label": "production", "version": "2", "approve": "1", "requests_per_minute": "1",
    "text": "pwned",
}  # fmt: skip


# --- 3. the gateway -----------------------------------------------------------------------

STATE_ROUTES = {  # consumer -> the path its routes hang under
    consumers.ConversationConsumer: "/v1/conversations/{conversation}",
    consumers.ResponseConsumer: "/v1/responses/{response}",
}
STATE_BODIES = {
    "items": {"items": [{"role": "user", "content": "pwned"}]},
    "documents": {"title": "pwned", "text": "pwned"},
}


def gateway_attempts(w) -> list[tuple[str, str, str, object, frozenset[int]]]:
    """(label, method, path, body, statuses that deny) for every way at A's stored state."""
    ids = {"conversation": w.conversation, "response": w.response}
    attempts = []
    for consumer, stem in STATE_ROUTES.items():
        for method, part in sorted(consumer.routes):
            path = stem.format(**ids) + (f"/{part}" if part else "")
            attempts.append((path, method, path, STATE_BODIES.get(part), frozenset({404})))
    continuing = {
        "chat with A's conversation": ("/v1/chat/completions", {
            "model": "demo-chat", "conversation": w.conversation,
            "messages": [{"role": "user", "content": "What is the code?"}]}),
        "response in A's conversation": ("/v1/responses", {
            "model": "demo-chat", "input": "What is the code?", "conversation": w.conversation}),
        "response after A's response": ("/v1/responses", {
            "model": "demo-chat", "input": "And then?", "previous_response_id": w.response}),
    }  # fmt: skip
    for label, (path, body) in continuing.items():
        attempts.append((label, "POST", path, body, frozenset({404})))
    for suffix in ("", "/v/1"):
        path = f"/api/p/{w.a.slug}/{w.prompt_api.slug}{suffix}"
        attempts.append((path, "POST", path, {"text": "hi"}, frozenset({403, 404})))
    return attempts
