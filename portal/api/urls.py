"""Routes of the management API, mounted at /api/v1/."""

from django.urls import path

from portal.api import views

app_name = "api"

urlpatterns = [
    # tenants and members
    path("tenants/", views.TenantListCreateApi.as_view(), name="tenants"),
    path("tenants/<slug:slug>/", views.TenantDetailApi.as_view(), name="tenant"),
    path("tenants/<slug:slug>/members/", views.MemberListApi.as_view(), name="members"),
    path("tenants/<slug:slug>/members/<int:id>/", views.MemberDetailApi.as_view(), name="member"),
    path(
        "tenants/<slug:slug>/invitations/",
        views.InvitationListCreateApi.as_view(),
        name="invitations",
    ),
    # applications and keys
    path(
        "tenants/<slug:slug>/applications/",
        views.ApplicationListCreateApi.as_view(),
        name="applications",
    ),
    path("applications/<int:id>/", views.ApplicationDetailApi.as_view(), name="application"),
    path("applications/<int:id>/keys/", views.ApiKeyListCreateApi.as_view(), name="keys"),
    path("keys/<int:id>/rotate/", views.ApiKeyRotateApi.as_view(), name="key-rotate"),
    path("keys/<int:id>/revoke/", views.ApiKeyRevokeApi.as_view(), name="key-revoke"),
    # the catalog
    path("products/", views.ProductListCreateApi.as_view(), name="products"),
    path("products/<slug:slug>/", views.ProductDetailApi.as_view(), name="product"),
    # subscriptions
    path(
        "applications/<int:id>/subscriptions/",
        views.ApplicationSubscriptionListCreateApi.as_view(),
        name="application-subscriptions",
    ),
    path("subscriptions/", views.SubscriptionListApi.as_view(), name="subscriptions"),
    path(
        "subscriptions/<int:id>/approve/",
        views.SubscriptionApproveApi.as_view(),
        name="subscription-approve",
    ),
    path(
        "subscriptions/<int:id>/reject/",
        views.SubscriptionRejectApi.as_view(),
        name="subscription-reject",
    ),
    path(
        "subscriptions/<int:id>/suspend/",
        views.SubscriptionSuspendApi.as_view(),
        name="subscription-suspend",
    ),
    path(
        "subscriptions/<int:id>/resume/",
        views.SubscriptionResumeApi.as_view(),
        name="subscription-resume",
    ),
    path(
        "subscriptions/<int:id>/revoke/",
        views.SubscriptionRevokeApi.as_view(),
        name="subscription-revoke",
    ),
    # audit log and personal access tokens
    path("audit/", views.AuditEventListApi.as_view(), name="audit"),
    path("tokens/", views.TokenListCreateApi.as_view(), name="tokens"),
    path("tokens/<int:id>/revoke/", views.TokenRevokeApi.as_view(), name="token-revoke"),
]
