"""The world of the isolation matrix: tenant A with one of everything, tenant B beside it.

alice owns A (adam is a developer there); mallory owns B. Everything of A is made through the
services, and what only calls make (conversations, stored responses, cached answers, usage
events, call bodies) through the live gateway with A's key. B has the same prompt and chain
slugs as A, so a route with B's tenant slug and one of A's ids tests the inner id check.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from types import SimpleNamespace

import httpx
from django.contrib.auth import get_user_model
from django.db.models import Q

from billing import controls, report_webhooks
from billing.models import Budget, RateLimit, ReportWebhook, UsageEvent
from gateway.models import (
    CachePolicy,
    ContextDocument,
    Conversation,
    ConversationItem,
    Deployment,
    GuardrailPolicy,
    StoredResponse,
)
from observability.models import CallBody
from portal import services
from portal.models import (
    ApiKey,
    Application,
    AuditEvent,
    Invitation,
    Membership,
    PersonalAccessToken,
    Product,
    Role,
    Subscription,
    Tenant,
)
from portal.services import Actor
from prompts import chains, experiments, publishing
from prompts import services as library
from prompts.models import (
    Chain,
    Experiment,
    ExperimentArm,
    Feedback,
    Prompt,
    PromptApi,
    PromptLabel,
    PromptVersion,
)
from tests.gateway.helpers import DEMO, apply_yaml

SECRET_WORD = "ZEBRA-4711-ISO"  # in A's conversation only
CACHED_QUESTION = "What is the capital of the isolated kingdom?"


def _user(name: str):
    return get_user_model().objects.create_user(name, f"{name}@example.com")


def _prompt_and_chain(actor: Actor, tenant: Tenant) -> tuple[Prompt, list[PromptVersion], Chain]:
    prompt = library.prompt_create(actor=actor, tenant=tenant, slug="iso-prompt", name="Iso")
    versions = [
        library.version_create(
            actor=actor,
            prompt=prompt,
            model="demo-chat",
            messages=[{"role": "user", "content": f"Say {word}: {{{{ text }}}}"}],
        )  # fmt: skip
        for word in ("one", "two")
    ]
    library.label_set(actor=actor, prompt=prompt, name="production", version=versions[0])
    step = {"name": "first", "prompt": prompt.slug, "version": 1}
    chain = chains.chain_save(actor=actor, tenant=tenant, slug="iso-chain", name="C", steps=[step])
    return prompt, versions, chain


def gw(base: str, secret: str, method: str, path: str, body: object = None) -> httpx.Response:
    headers = {"authorization": f"Bearer {secret}"}
    return httpx.request(method, base + path, json=body, headers=headers, timeout=20)


def chat(base: str, secret: str, text: str, **extra) -> httpx.Response:
    body = {"model": "demo-chat", "messages": [{"role": "user", "content": text}], **extra}
    return gw(base, secret, "POST", "/v1/chat/completions", body)


def _services_part(w: SimpleNamespace) -> None:
    alice, a = Actor(w.alice), w.a
    w.app = services.application_create(actor=alice, tenant=a, name="alpha-app-iso")
    w.key = services.api_key_create(tenant=a, name="a-key", application=w.app, all_models=True)
    w.private_product = services.product_create(
        actor=alice, owner=a, name="A private", slug="iso-a-private", models=["demo-chat"],
        visibility=Product.Visibility.PRIVATE, status=Product.Status.PUBLISHED,
        approval_required=True,
    )  # fmt: skip
    w.public_product = services.product_create(
        actor=alice, owner=a, name="A public", slug="iso-a-public", models=["demo-chat"],
        status=Product.Status.PUBLISHED,
    )  # fmt: skip
    w.sub = services.subscription_request(actor=alice, application=w.app, product=w.private_product)
    w.budget = controls.budget_set(actor=alice, tenant=a, amount_usd=Decimal("100"))
    w.limit = controls.rate_limit_set(actor=alice, tenant=a, requests_per_minute=1000)
    w.guardrail = services.guardrail_policy_set(
        actor=alice, scope="tenant", tenant=a, name="alpha-guard-iso", checks="default"
    )
    w.key_guardrail = services.guardrail_policy_set(
        actor=alice,
        scope="key",
        api_key=w.key.api_key,
        name="alpha-key-guard-iso",
        checks="default",
    )
    w.product_guardrail = services.guardrail_policy_set(
        actor=alice, scope="product", product=w.public_product, name="alpha-product-guard-iso",
        checks="default",
    )  # fmt: skip
    w.cache_policy = services.cache_policy_set(actor=alice, product=w.private_product)
    w.public_cache_policy = services.cache_policy_set(actor=alice, product=w.public_product)
    w.webhook, _ = report_webhooks.report_webhook_set(
        actor=alice, tenant=a, url="https://alpha-iso.example/hook"
    )
    w.prompt, w.versions, w.chain = _prompt_and_chain(alice, a)
    w.experiment = experiments.experiment_start(
        actor=alice, prompt=w.prompt, name="A test", arms=[(w.versions[0], 1), (w.versions[1], 1)]
    )
    w.arm = w.experiment.arms.order_by("pk").first()
    w.prompt_api = publishing.api_publish(
        actor=alice, tenant=a, slug="iso-api", name="A prompt API", prompt=w.prompt,
        visibility=Product.Visibility.PRIVATE, approval_required=True,
    )  # fmt: skip
    own = services.subscription_request(
        actor=alice, application=w.app, product=w.prompt_api.product
    )
    services.subscription_decide(actor=alice, subscription=own, approve=True)
    w.invitation = services.invitation_create(
        actor=alice, tenant=a, email="alpha-invitee@example.com", role=Role.VIEWER
    )
    w.member = Membership.objects.create(user=w.adam, tenant=a, role=Role.DEVELOPER)
    w.token = services.personal_token_create(actor=alice, name="alpha-script-iso")
    w.deployment = Deployment.objects.order_by("pk").first()


def _gateway_part(w: SimpleNamespace, base: str, stored_usage) -> None:
    """What only calls make: a conversation, a stored response, a cached answer, usage."""
    secret = w.key.secret
    made = gw(base, secret, "POST", "/v1/conversations", {"items": []})
    assert made.status_code == 200, made.text
    w.conversation = made.json()["id"]
    assert chat(
        base, secret, f"Remember: the code is {SECRET_WORD}.", conversation=w.conversation
    ).is_success
    response = gw(base, secret, "POST", "/v1/responses", {"model": "demo-chat", "input": "Hi A"})
    assert response.status_code == 200, response.text
    w.response = response.json()["id"]
    for expected in ("miss", "hit"):
        asked = chat(base, secret, CACHED_QUESTION, temperature=0)
        assert asked.headers["x-waystation-cache"] == expected, asked.headers
    prompt_call = gw(base, secret, "POST", "/api/p/iso-a/iso-api", {"text": "hello"})
    assert prompt_call.status_code == 200, prompt_call.text
    w.request_id = prompt_call.headers["x-request-id"]
    assert chat(base, w.b_key.secret, "Hello from B.").is_success  # B has calls of its own too
    scored = gw(base, secret, "POST", "/api/v1/feedback", {"request_id": w.request_id, "score": 1})
    assert scored.status_code == 201, scored.text
    events = stored_usage()
    assert any(e.request_id == w.request_id and e.tenant_id == w.a.pk for e in events)
    assert CallBody.objects.filter(tenant_id=w.a.pk).exists()


def build(base: str, stored_usage) -> SimpleNamespace:
    from gateway import auth, catalog

    apply_yaml(DEMO)
    catalog.invalidate()
    w = SimpleNamespace(alice=_user("alice"), adam=_user("adam"), mallory=_user("mallory"))
    w.a = services.tenant_create(actor=Actor(w.alice), name="Tenant A", slug="iso-a")
    w.b = services.tenant_create(actor=Actor(w.mallory), name="Tenant B", slug="iso-b")
    _services_part(w)
    _prompt_and_chain(Actor(w.mallory), w.b)
    w.b_app = services.application_create(actor=Actor(w.mallory), tenant=w.b, name="b-app")
    w.b_key = services.api_key_create(tenant=w.b, name="b-key", application=w.b_app,
                                      all_models=True)  # fmt: skip
    w.b_token = services.personal_token_create(actor=Actor(w.mallory), name="mallory-script")
    auth._cache.clear()
    catalog.invalidate()
    _gateway_part(w, base, stored_usage)
    w.month = date.today().strftime("%Y-%m")
    return w


def _rows(queryset) -> list[dict]:
    rows = []
    for row in queryset.order_by("pk").values():
        rows.append({k: bytes(v) if isinstance(v, memoryview) else v for k, v in row.items()})
    return rows


def a_state(w: SimpleNamespace) -> dict[str, list[dict]]:
    """Every row of tenant A's, to compare before and after B's attempts."""
    a = w.a.pk
    targets_a = Q(tenant_id=a) | Q(application__tenant_id=a) | Q(api_key__tenant_id=a)
    return {
        name: _rows(queryset)
        for name, queryset in {
            "tenant": Tenant.objects.filter(pk=a),
            "memberships": Membership.objects.filter(tenant_id=a),
            "invitations": Invitation.objects.filter(tenant_id=a),
            "applications": Application.objects.filter(tenant_id=a),
            "keys": ApiKey.objects.filter(tenant_id=a),
            "products": Product.objects.filter(owner_id=a),
            "subscriptions": Subscription.objects.filter(
                Q(application__tenant_id=a) | Q(product__owner_id=a)
            ),
            "tokens": PersonalAccessToken.objects.filter(user=w.alice),
            "budgets": Budget.objects.filter(targets_a),
            "rate limits": RateLimit.objects.filter(targets_a),
            "report webhook": ReportWebhook.objects.filter(tenant_id=a),
            "guardrails": GuardrailPolicy.objects.filter(
                Q(tenant_id=a) | Q(api_key__tenant_id=a) | Q(product__owner_id=a)
            ),
            "cache policies": CachePolicy.objects.filter(product__owner_id=a),
            "prompts": Prompt.objects.filter(tenant_id=a),
            "versions": PromptVersion.objects.filter(prompt__tenant_id=a),
            "labels": PromptLabel.objects.filter(prompt__tenant_id=a),
            "experiments": Experiment.objects.filter(prompt__tenant_id=a),
            "arms": ExperimentArm.objects.filter(experiment__prompt__tenant_id=a),
            "chains": Chain.objects.filter(tenant_id=a),
            "prompt apis": PromptApi.objects.filter(tenant_id=a),
            "conversations": Conversation.objects.filter(tenant_id=a),
            "items": ConversationItem.objects.filter(conversation__tenant_id=a),
            "responses": StoredResponse.objects.filter(tenant_id=a),
            "documents": ContextDocument.objects.filter(tenant_id=a),
            "usage": UsageEvent.objects.filter(tenant_id=a),
            "call bodies": CallBody.objects.filter(tenant_id=a),
            "feedback": Feedback.objects.filter(tenant_id=a),
            "audit": AuditEvent.objects.filter(tenant_id=a),
        }.items()
    }


def a_markers(w: SimpleNamespace) -> list[str]:
    """Strings only A's private data contains: none may appear in what B sees."""
    return [w.request_id, w.key.api_key.prefix, w.private_product.slug,
            w.prompt_api.product.slug, "alpha-app-iso", "alpha-guard-iso", "alpha-key-guard-iso",
            "alpha-script-iso", "alpha-invitee@example.com", "alpha-iso.example", w.conversation,
            w.response, SECRET_WORD]  # fmt: skip
