from csp.decorators import csp_update
from django.contrib import admin
from django.http import JsonResponse
from django.urls import include, path
from django.views.defaults import page_not_found
from django.views.generic import TemplateView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView


def healthz(request):
    return JsonResponse({"status": "ok"})


# The Swagger UI: its set-up script is served by the same view (?script), not inline, and its
# bundle, stylesheet and icon come from drf-spectacular's default CDN, allowed on this page only.
SWAGGER_CDN = "https://cdn.jsdelivr.net"
api_docs = csp_update(
    {"script-src": [SWAGGER_CDN], "style-src": [SWAGGER_CDN], "img-src": [SWAGGER_CDN]}
)(SpectacularSwaggerSplitView.as_view(url_name="api-schema"))


urlpatterns = [
    path("", TemplateView.as_view(template_name="home.html"), name="home"),
    path("healthz", healthz),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("portal/", include("portal.urls")),
    path("", include("prompts.urls")),
    path("", include("observability.urls")),
    path("api/v1/", include("portal.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", api_docs, name="api-docs"),
]


def not_found(request, exception=None):
    """The API answers in JSON even where no route matched; the portal keeps its page."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return page_not_found(request, exception)


handler404 = not_found
