"""Routes of the management API, mounted at /api/v1/."""

from django.urls import path

from portal.api.views.applications import (
    ApiKeyListCreateApi,
    ApiKeyRevokeApi,
    ApiKeyRotateApi,
    ApplicationDetailApi,
    ApplicationListCreateApi,
)
from portal.api.views.audit import AuditEventListApi, TokenListCreateApi, TokenRevokeApi
from portal.api.views.budgets import (
    BudgetDetailApi,
    BudgetListSetApi,
    RateLimitDetailApi,
    RateLimitListSetApi,
)
from portal.api.views.cache import (
    CachePolicyDetailApi,
    CachePolicyListSetApi,
    TenantCachePurgeApi,
)
from portal.api.views.catalog import (
    ApplicationSubscriptionListCreateApi,
    ProductDetailApi,
    ProductListCreateApi,
    SubscriptionApproveApi,
    SubscriptionListApi,
    SubscriptionRejectApi,
    SubscriptionResumeApi,
    SubscriptionRevokeApi,
    SubscriptionSuspendApi,
)
from portal.api.views.guardrails import GuardrailPolicyDetailApi, GuardrailPolicyListSetApi
from portal.api.views.reports import CostReportApi
from portal.api.views.tenants import (
    InvitationListCreateApi,
    MemberDetailApi,
    MemberListApi,
    TenantDetailApi,
    TenantListCreateApi,
)
from portal.api.views.usage import UsageApi

app_name = "api"

urlpatterns = [
    # tenants and members
    path("tenants/", TenantListCreateApi.as_view(), name="tenants"),
    path("tenants/<slug:slug>/", TenantDetailApi.as_view(), name="tenant"),
    path("tenants/<slug:slug>/members/", MemberListApi.as_view(), name="members"),
    path("tenants/<slug:slug>/members/<int:id>/", MemberDetailApi.as_view(), name="member"),
    path(
        "tenants/<slug:slug>/invitations/",
        InvitationListCreateApi.as_view(),
        name="invitations",
    ),
    # applications and keys
    path(
        "tenants/<slug:slug>/applications/",
        ApplicationListCreateApi.as_view(),
        name="applications",
    ),
    path("applications/<int:id>/", ApplicationDetailApi.as_view(), name="application"),
    path("applications/<int:id>/keys/", ApiKeyListCreateApi.as_view(), name="keys"),
    path("keys/<int:id>/rotate/", ApiKeyRotateApi.as_view(), name="key-rotate"),
    path("keys/<int:id>/revoke/", ApiKeyRevokeApi.as_view(), name="key-revoke"),
    # the catalog
    path("products/", ProductListCreateApi.as_view(), name="products"),
    path("products/<slug:slug>/", ProductDetailApi.as_view(), name="product"),
    # subscriptions
    path(
        "applications/<int:id>/subscriptions/",
        ApplicationSubscriptionListCreateApi.as_view(),
        name="application-subscriptions",
    ),
    path("subscriptions/", SubscriptionListApi.as_view(), name="subscriptions"),
    path(
        "subscriptions/<int:id>/approve/",
        SubscriptionApproveApi.as_view(),
        name="subscription-approve",
    ),
    path(
        "subscriptions/<int:id>/reject/",
        SubscriptionRejectApi.as_view(),
        name="subscription-reject",
    ),
    path(
        "subscriptions/<int:id>/suspend/",
        SubscriptionSuspendApi.as_view(),
        name="subscription-suspend",
    ),
    path(
        "subscriptions/<int:id>/resume/",
        SubscriptionResumeApi.as_view(),
        name="subscription-resume",
    ),
    path(
        "subscriptions/<int:id>/revoke/",
        SubscriptionRevokeApi.as_view(),
        name="subscription-revoke",
    ),
    # budgets, rate limits and usage
    path("tenants/<slug:slug>/budgets/", BudgetListSetApi.as_view(), name="budgets"),
    path("tenants/<slug:slug>/budgets/<int:id>/", BudgetDetailApi.as_view(), name="budget"),
    path("tenants/<slug:slug>/rate-limits/", RateLimitListSetApi.as_view(), name="rate-limits"),
    path(
        "tenants/<slug:slug>/rate-limits/<int:id>/",
        RateLimitDetailApi.as_view(),
        name="rate-limit",
    ),
    path("tenants/<slug:slug>/usage/", UsageApi.as_view(), name="usage"),
    # monthly cost reports
    path(
        "tenants/<slug:slug>/cost-reports/<str:month>/",
        CostReportApi.as_view(),
        name="cost-report",
    ),
    # the response cache
    path("cache-policies/", CachePolicyListSetApi.as_view(), name="cache-policies"),
    path("cache-policies/<int:id>/", CachePolicyDetailApi.as_view(), name="cache-policy"),
    path("tenants/<slug:slug>/cache/purge/", TenantCachePurgeApi.as_view(), name="cache-purge"),
    # guardrail policies
    path("guardrail-policies/", GuardrailPolicyListSetApi.as_view(), name="guardrail-policies"),
    path(
        "guardrail-policies/<int:id>/",
        GuardrailPolicyDetailApi.as_view(),
        name="guardrail-policy",
    ),
    # audit log and personal access tokens
    path("audit/", AuditEventListApi.as_view(), name="audit"),
    path("tokens/", TokenListCreateApi.as_view(), name="tokens"),
    path("tokens/<int:id>/revoke/", TokenRevokeApi.as_view(), name="token-revoke"),
]
