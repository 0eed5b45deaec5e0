"""The developer portal's pages (mounted at /portal/). The names are a contract: keep them."""

from django.urls import path

from portal.views import (
    applications,
    budgets,
    cache,
    catalog,
    conversations,
    guardrails,
    operator,
    prices,
    reports,
    tenants,
    tokens,
    usage,
)

app_name = "portal"
urlpatterns = [
    path("", tenants.dashboard, name="dashboard"),
    path("operator/routing/", operator.routing, name="routing"),
    path("operator/routing/<int:deployment_id>/", operator.routing_drain, name="routing_drain"),
    path("operator/prices/", prices.prices_page, name="prices"),
    path("operator/prices/add/", prices.price_add, name="price_add"),
    path("cache/", cache.operator_cache, name="cache"),
    path("cache/save/", cache.operator_cache_save, name="cache_save"),
    path("cache/<int:policy_id>/remove/", cache.policy_remove, name="cache_policy_remove"),
    path("guardrails/", guardrails.operator_guardrails, name="guardrails"),
    path("guardrails/save/", guardrails.operator_guardrail_save, name="guardrail_save"),
    path(
        "guardrails/<int:policy_id>/toggle/", guardrails.guardrail_toggle, name="guardrail_toggle"
    ),
    path(
        "guardrails/<int:policy_id>/remove/", guardrails.guardrail_remove, name="guardrail_remove"
    ),
    path("tenants/new/", tenants.tenant_create, name="tenant_create"),
    path("tenants/switch/", tenants.tenant_switch, name="tenant_switch"),
    path("t/<slug:slug>/applications/", applications.applications, name="applications"),
    path(
        "t/<slug:slug>/applications/new/",
        applications.application_create,
        name="application_create",
    ),
    path("t/<slug:slug>/members/", tenants.members, name="members"),
    path("t/<slug:slug>/members/invite/", tenants.member_invite, name="member_invite"),
    path("t/<slug:slug>/members/<int:member_id>/role/", tenants.member_role, name="member_role"),
    path(
        "t/<slug:slug>/members/<int:member_id>/remove/", tenants.member_remove, name="member_remove"
    ),
    path("t/<slug:slug>/audit/", tenants.audit, name="audit"),
    path("t/<slug:slug>/reports/", reports.reports_page, name="reports"),
    path(
        "t/<slug:slug>/reports/webhook/",
        reports.report_webhook_save,
        name="report_webhook_save",
    ),
    path("t/<slug:slug>/reports/<str:month>/", reports.report_page, name="report"),
    path(
        "t/<slug:slug>/reports/<str:month>/<str:fmt>/",
        reports.report_download,
        name="report_download",
    ),
    path("t/<slug:slug>/usage/", usage.usage_page, name="usage"),
    path(
        "t/<slug:slug>/conversations/",
        conversations.conversations_page,
        name="conversations",
    ),
    path(
        "t/<slug:slug>/conversations/<str:public_id>/",
        conversations.conversation_page,
        name="conversation",
    ),
    path("t/<slug:slug>/budgets/", budgets.budgets, name="budgets"),
    path("t/<slug:slug>/budgets/save/", budgets.budget_save, name="budget_save"),
    path(
        "t/<slug:slug>/budgets/<int:budget_id>/remove/",
        budgets.budget_remove,
        name="budget_remove",
    ),
    path("t/<slug:slug>/rate-limits/save/", budgets.rate_limit_save, name="rate_limit_save"),
    path(
        "t/<slug:slug>/rate-limits/<int:limit_id>/remove/",
        budgets.rate_limit_remove,
        name="rate_limit_remove",
    ),
    path("t/<slug:slug>/cache/", cache.tenant_cache, name="tenant_cache"),
    path("t/<slug:slug>/cache/purge/", cache.tenant_cache_purge, name="tenant_cache_purge"),
    path("t/<slug:slug>/guardrails/", guardrails.tenant_guardrails, name="tenant_guardrails"),
    path(
        "t/<slug:slug>/guardrails/save/",
        guardrails.tenant_guardrail_save,
        name="tenant_guardrail_save",
    ),
    path("applications/<int:app_id>/", applications.application_detail, name="application_detail"),
    path("applications/<int:app_id>/keys/new/", applications.key_create, name="key_create"),
    path("keys/<int:key_id>/rotate/", applications.key_rotate, name="key_rotate"),
    path("keys/<int:key_id>/revoke/", applications.key_revoke, name="key_revoke"),
    path(
        "subscriptions/<int:sub_id>/cancel/",
        catalog.subscription_cancel,
        name="subscription_cancel",
    ),
    path("catalog/", catalog.catalog, name="catalog"),
    path("catalog/<slug:slug>/", catalog.product_detail, name="product_detail"),
    path("catalog/<slug:slug>/subscribe/", catalog.subscribe, name="subscribe"),
    path("catalog/<slug:slug>/cache/", cache.product_cache, name="product_cache"),
    path("catalog/<slug:slug>/cache/save/", cache.product_cache_save, name="product_cache_save"),
    path("approvals/", catalog.approvals, name="approvals"),
    path("approvals/<int:sub_id>/decide/", catalog.approval_decide, name="approval_decide"),
    path("invitations/<str:token>/", tenants.invitation_accept, name="invitation_accept"),
    path("tokens/", tokens.tokens, name="tokens"),
    path("tokens/<int:token_id>/revoke/", tokens.token_revoke, name="token_revoke"),
]
