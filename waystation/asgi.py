"""ASGI entry: Channels routes the gateway's endpoints to its consumers, the rest to Django."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "waystation.settings")
django_app = get_asgi_application()

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

# Static files straight from the apps in the embedded demo; a real deployment puts nginx first.
django_app = ASGIStaticFilesHandler(django_app)

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import re_path  # noqa: E402

from gateway import consumers, health, lifespan  # noqa: E402
from observability.consumers import TailConsumer  # noqa: E402

gateway_routes = [
    re_path(r"^v1/chat/completions/?$", consumers.ChatCompletionsConsumer.as_asgi()),
    re_path(r"^v1/messages/?$", consumers.MessagesConsumer.as_asgi()),
    re_path(r"^v1/embeddings/?$", consumers.EmbeddingsConsumer.as_asgi()),
    re_path(r"^v1/responses/?$", consumers.ResponsesConsumer.as_asgi()),
    re_path(
        r"^v1/responses/(?P<response_id>[A-Za-z0-9_-]+)(?:/(?P<part>input_items))?/?$",
        consumers.ResponseConsumer.as_asgi(),
    ),
    re_path(r"^v1/conversations/?$", consumers.ConversationsConsumer.as_asgi()),
    re_path(
        r"^v1/conversations/(?P<conversation_id>[A-Za-z0-9_-]+)"
        r"(?:/(?P<part>items|documents))?/?$",
        consumers.ConversationConsumer.as_asgi(),
    ),
    re_path(r"^v1/documents/?$", consumers.DocumentsConsumer.as_asgi()),
    re_path(r"^v1/models/?$", consumers.ModelsConsumer.as_asgi()),
    re_path(r"^v1/models/(?P<model_id>.+)$", consumers.ModelsConsumer.as_asgi()),
    re_path(r"^v1/", consumers.NotFoundConsumer.as_asgi()),
    re_path(
        r"^api/p/(?P<tenant>[-a-zA-Z0-9_]+)/(?P<slug>[-a-zA-Z0-9_]+)(?:/v/(?P<version>[0-9]{1,9}))?/?$",
        consumers.PromptApiConsumer.as_asgi(),
    ),
    re_path(r"^api/v1/feedback/?$", consumers.FeedbackConsumer.as_asgi()),
    re_path(r"^metrics/?$", consumers.MetricsConsumer.as_asgi()),
    re_path(r"^readyz/?$", health.ReadyzConsumer.as_asgi()),
]

application = ProtocolTypeRouter(
    {
        "http": URLRouter([*gateway_routes, re_path(r"", django_app)]),
        "lifespan": lifespan.app,
        # The portal's live tail: the session says who is watching.
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(
                URLRouter([re_path(r"^ws/tail/(?P<slug>[-\w]+)/$", TailConsumer.as_asgi())])
            )
        ),
    }
)
