"""The call log explorer, the live tail and the analytics pages (under /portal/), and the call
log's REST API (under /api/v1/)."""

from django.urls import path

from observability.views import analytics, calls, tail

app_name = "observability"

T = "portal/t/<slug:slug>/"

urlpatterns = [
    path(T + "calls/", calls.call_list, name="calls"),
    path(T + "calls/export.<str:fmt>", calls.call_export, name="calls_export"),
    path(T + "calls/settings/", calls.call_log_settings, name="call_log_settings"),
    path(T + "calls/<str:request_id>/", calls.call_detail, name="call"),
    path("portal/calls/", calls.operator_call_list, name="operator_calls"),
    path("portal/calls/<str:request_id>/", calls.operator_call_detail, name="operator_call"),
    path(T + "tail/", tail.tail_page, name="tail"),
    path(T + "analytics/", analytics.tenant_analytics, name="analytics"),
    path("portal/analytics/", analytics.operator_analytics, name="operator_analytics"),
    path("api/v1/calls/", calls.api_call_list, name="api_calls"),
    path("api/v1/calls/<str:request_id>/", calls.api_call_detail, name="api_call"),
]
