"""The prompt library's pages (under /portal/) and each published API's OpenAPI document.

The calls themselves, POST /api/p/{tenant}/{slug}, are served by the gateway (asgi.py)."""

from django.urls import path

from prompts.views import docs, experiments, library, playground

app_name = "prompts"

T = "portal/t/<slug:slug>/"
P = T + "prompts/<slug:prompt>/"

urlpatterns = [
    path(T + "prompts/", library.prompt_list, name="list"),
    path(P, library.prompt_detail, name="detail"),
    path(P + "versions/new/", library.version_new, name="version_new"),
    path(P + "v/<int:number>/", library.version_detail, name="version"),
    path(P + "labels/", library.label_move, name="label_set"),
    path(P + "publish/", library.publish, name="publish"),
    path(T + "chains/", library.chain_list, name="chains"),
    path(T + "chains/<slug:chain>/", library.chain_detail, name="chain"),
    path(P + "playground/", playground.playground, name="playground"),
    path(P + "playground/run/", playground.playground_run, name="playground_run"),
    path(P + "experiments/", experiments.experiment_list, name="experiments"),
    path(P + "experiments/<int:experiment_id>/", experiments.experiment_detail, name="experiment"),
    path(
        P + "experiments/<int:experiment_id>/promote/<int:arm_id>/",
        experiments.experiment_promote,
        name="experiment_promote",
    ),
    path(
        P + "experiments/<int:experiment_id>/stop/",
        experiments.experiment_stop,
        name="experiment_stop",
    ),
    path("portal/apis/<slug:tenant>/<slug:api>/", docs.api_docs, name="api_docs"),
    path("api/p/<slug:tenant>/<slug:api>/openapi.json", docs.openapi_json, name="api_openapi"),
]
