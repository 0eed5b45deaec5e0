"""Settings, all from the environment.

Embedded mode (the default): SQLite, in-process cache, limiter and usage writer.
Distributed mode: DATABASE_URL (PostgreSQL) and REDIS_URL set; shared state lives there.
"""

import os
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from celery.schedules import crontab

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in ("1", "true", "yes", "on")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return default if value in (None, "") else int(value)


def _origin_of(url: str) -> list[str]:
    """["https://host[:port]"] of a URL, [] for an empty one (CSP source expressions)."""
    parts = urlsplit(url)
    return [f"{parts.scheme}://{parts.netloc}"] if parts.scheme and parts.netloc else []


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return default if value in (None, "") else float(value)


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY", "waystation-insecure-development-key-change-me")
ALLOWED_HOSTS = env_str("ALLOWED_HOSTS", "*").split(",")

REDIS_URL = env_str("REDIS_URL")
DISTRIBUTED = bool(REDIS_URL)

INSTALLED_APPS = [
    "daphne" if env_bool("USE_DAPHNE_RUNSERVER") else "channels",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "django_htmx",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.openid_connect",
    "portal",
    "gateway",
    "billing",
    "prompts",
    "observability",
    "csp",
]

MIDDLEWARE = [
    "waystation.logs.request_id_middleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "waystation.urls"
ASGI_APPLICATION = "waystation.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "portal.context.portal_context",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'var' / 'db.sqlite3'}"),
        conn_max_age=env_int("DB_CONN_MAX_AGE", 60),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the usage writer commit while requests read.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

if DISTRIBUTED:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = not DISTRIBUTED
CELERY_TASK_ACKS_LATE = True
# Fetch a task only when a process is free: a worker holding prefetched, unacknowledged
# messages when Redis goes away dies in kombu's restore_unacked (Celery/kombu 5.7).
CELERY_WORKER_DISABLE_PREFETCH = True
CELERY_BEAT_SCHEDULE = {
    "drain-usage-stream": {"task": "billing.tasks.drain_usage_stream", "schedule": 1.0},
    # Usage rollups (billing.rollups): the current and previous bucket, again and again, as
    # events arrive late; reports stay exact in between.
    "rollup-recent-hours": {"task": "billing.tasks.rollup_recent_hours", "schedule": 300.0},
    "rollup-recent-days": {"task": "billing.tasks.rollup_recent_days", "schedule": 1800.0},
    # Last month's cost reports to the chargeback webhooks: hourly on the 1st, each once.
    "purge-expired-conversations": {
        "task": "gateway.tasks.purge_expired_conversations",
        "schedule": 3600.0,
    },
    "purge-call-bodies": {"task": "observability.tasks.purge_call_bodies", "schedule": 3600.0},
    "flag-cost-anomalies": {
        "task": "observability.tasks.flag_cost_anomalies",
        "schedule": 3600.0,
    },
    "push-monthly-reports": {
        "task": "billing.tasks.push_monthly_reports",
        "schedule": crontab(minute=30, day_of_month="1"),
    },
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"

# --- accounts (django-allauth) ------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/portal/"
ACCOUNT_LOGIN_METHODS = {"email", "username"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "username*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = env_str("ACCOUNT_EMAIL_VERIFICATION", "mandatory")
ACCOUNT_CONFIRM_EMAIL_ON_GET = False
ACCOUNT_LOGOUT_REDIRECT_URL = "/"
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
# Login throttling (allauth's defaults, pinned here so a change is deliberate): 10 failed logins
# a minute per client address, 5 per account in 5 minutes; then the form refuses even the
# right password until the window passes. Counters live in the cache (Redis when distributed).
ACCOUNT_RATE_LIMITS = {"login_failed": "10/m/ip,5/300s/key", "login": "30/m/ip"}
PORTAL_BASE_URL = env_str("PORTAL_BASE_URL", "http://127.0.0.1:8000")
# Single sign-on through an OpenID Connect provider the operator configures.
SOCIALACCOUNT_PROVIDERS = {}
if env_str("OIDC_SERVER_URL"):
    SOCIALACCOUNT_PROVIDERS["openid_connect"] = {
        "APPS": [
            {
                "provider_id": env_str("OIDC_PROVIDER_ID", "sso"),
                "name": env_str("OIDC_NAME", "Single sign-on"),
                "client_id": env_str("OIDC_CLIENT_ID"),
                "secret": env_str("OIDC_CLIENT_SECRET"),
                "settings": {"server_url": env_str("OIDC_SERVER_URL")},
            }
        ]
    }
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Waystation <noreply@waystation.local>")

# --- web security (portal and management API; docs/settings.md, tests/security/) ---------
# HTTPS=true: the portal is served over TLS (terminated here or by a proxy such as
# deploy/nginx): secure cookies, HSTS and a redirect of plain HTTP.
HTTPS = env_bool("HTTPS", False)
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
# The portal's JavaScript sends the token from the page (hx-headers), never from the cookie;
# the Swagger UI's "Try it out" reads the cookie, so it stays readable.
CSRF_COOKIE_HTTPONLY = False
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", HTTPS)
# Liveness probes (Dockerfile, Compose, Helm) call /healthz over plain HTTP inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
# Behind a TLS-terminating proxy, this header tells Django the request was HTTPS. Only a proxy
# that always sets it (deploy/nginx sets X-Forwarded-Proto) may be trusted with it.
_proxy_ssl_header = env_str("SECURE_PROXY_SSL_HEADER", "X-Forwarded-Proto" if HTTPS else "")
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_" + _proxy_ssl_header.upper().replace("-", "_"), "https") if _proxy_ssl_header else None
)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", HTTPS)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Preloading HSTS is a commitment for the whole domain, hard to undo (hstspreload.org), so it
# is the operator's explicit choice; until it is made, check --deploy's reminder is silenced.
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
# allauth reads the client's address for its rate limits: behind N proxies that append to
# X-Forwarded-For (deploy/nginx: 1), the Nth entry from the right; 0 uses the socket's peer.
ALLAUTH_TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)
# Content-Security-Policy (django-csp 4): no inline or eval'd script anywhere; every script is
# a file under static/. Inline styles stay allowed (a few pages carry <style> blocks and
# computed style="" widths). connect-src 'self' covers ws:/wss: to the same host (CSP Level 3),
# which is all the live tail opens.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "frame-ancestors": ["'none'"],
        # Browsers hold a form's redirects to form-action too: the single sign-on form posts
        # here and is redirected to the provider's authorization endpoint.
        "form-action": ["'self'", *_origin_of(env_str("OIDC_SERVER_URL"))],
    }
}

# --- management API ---------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "portal.api.auth.PersonalAccessTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "portal.api.errors.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Waystation management API",
    "DESCRIPTION": "Tenants, applications, keys, the API catalog, subscriptions and the audit log.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "ProductStatusEnum": "portal.models.Product.Status",
        "SubscriptionStatusEnum": "portal.models.Subscription.Status",
    },
}

# --- gateway -------------------------------------------------------------------
# Secrets and stored content at rest are encrypted with these Fernet keys (gateway/secrets.py):
# WAYSTATION_SECRETS_KEYS lists them current first (the others still decrypt, for rotation);
# else the one WAYSTATION_SECRETS_KEY; else a key derived from SECRET_KEY.
WAYSTATION_SECRETS_KEYS = [
    key.strip() for key in env_str("WAYSTATION_SECRETS_KEYS").split(",") if key.strip()
]
WAYSTATION_SECRETS_KEY = env_str("WAYSTATION_SECRETS_KEY")
GATEWAY_MAX_BODY_BYTES = env_int("GATEWAY_MAX_BODY_BYTES", 10 * 1024 * 1024)
# How long a process trusts what it read of keys and the catalog; bounds revocation delay.
GATEWAY_KEY_CACHE_SECONDS = env_float("GATEWAY_KEY_CACHE_SECONDS", 0.5)
GATEWAY_CATALOG_CACHE_SECONDS = env_float("GATEWAY_CATALOG_CACHE_SECONDS", 2.0)
GATEWAY_CONNECT_TIMEOUT = env_float("GATEWAY_CONNECT_TIMEOUT", 10.0)
GATEWAY_READ_TIMEOUT = env_float("GATEWAY_READ_TIMEOUT", 120.0)  # idle gap within a stream
GATEWAY_FIRST_TOKEN_TIMEOUT = env_float("GATEWAY_FIRST_TOKEN_TIMEOUT", 60.0)
GATEWAY_TOTAL_TIMEOUT = env_float("GATEWAY_TOTAL_TIMEOUT", 600.0)
# SIGTERM: running requests and streams get this long to finish; streams still running then
# end with an error event (gateway/drain.py). uvicorn's --timeout-graceful-shutdown must be longer.
GATEWAY_DRAIN_SECONDS = env_float("GATEWAY_DRAIN_SECONDS", 30.0)
# Redis unreachable: True keeps serving with per-process limits, False answers 503.
# The response cache's defaults, where no CachePolicy applies (gateway/cache/policy.py).
GATEWAY_CACHE_MODE = env_str("GATEWAY_CACHE_MODE", "exact")  # off | exact | semantic
GATEWAY_CACHE_TTL_SECONDS = env_int("GATEWAY_CACHE_TTL_SECONDS", 3600)
GATEWAY_CACHE_MAX_ENTRIES = env_int("GATEWAY_CACHE_MAX_ENTRIES", 10_000)  # per partition
GATEWAY_CACHE_KEY_PREFIX = env_str("GATEWAY_CACHE_KEY_PREFIX", "wsc")  # Redis keys
GATEWAY_CACHE_MEMORY_ITEMS = env_int("GATEWAY_CACHE_MEMORY_ITEMS", 50_000)  # embedded mode
# Server-side conversations (gateway/context/): the default strategy, the summariser ("":
# the conversation's own model) and the answer's reservation where the model sets none.
GATEWAY_CONTEXT_STRATEGY = env_str("GATEWAY_CONTEXT_STRATEGY", "truncate")
GATEWAY_CONTEXT_SUMMARIZER_MODEL = env_str("GATEWAY_CONTEXT_SUMMARIZER_MODEL", "")
GATEWAY_CONTEXT_OUTPUT_RESERVE = env_int("GATEWAY_CONTEXT_OUTPUT_RESERVE", 1024)
GATEWAY_LIMITS_FAIL_OPEN = env_bool("GATEWAY_LIMITS_FAIL_OPEN", True)
GATEWAY_BREAKER_FAILURES = env_int("GATEWAY_BREAKER_FAILURES", 5)
GATEWAY_BREAKER_WINDOW_SECONDS = env_float("GATEWAY_BREAKER_WINDOW_SECONDS", 30.0)
GATEWAY_BREAKER_COOLDOWN_SECONDS = env_float("GATEWAY_BREAKER_COOLDOWN_SECONDS", 30.0)
# A tenant's budget thresholds are evaluated at most this often per process.
BUDGET_ALERT_INTERVAL_SECONDS = env_float("BUDGET_ALERT_INTERVAL_SECONDS", 5.0)
# The call log (gateway/call_log.py, observability/): bodies are kept per tenant for its
# retention, at most GATEWAY_LOG_MAX_RETENTION_DAYS; each side is cut at the byte limit.
GATEWAY_LOG_BODIES = env_bool("GATEWAY_LOG_BODIES", True)
GATEWAY_LOG_MAX_RETENTION_DAYS = env_int("GATEWAY_LOG_MAX_RETENTION_DAYS", 30)
GATEWAY_LOG_BODY_MAX_BYTES = env_int("GATEWAY_LOG_BODY_MAX_BYTES", 256 * 1024)
# Prometheus /metrics: a bearer token, or callers from these networks (comma-separated).
METRICS_TOKEN = env_str("METRICS_TOKEN", "")
METRICS_ALLOWED_NETWORKS = env_str("METRICS_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128")
# Outbound calls (provider base URLs, webhooks; gateway/outbound.py) may not reach loopback,
# private, link-local, CGNAT, multicast or metadata addresses unless these allow them:
# comma-separated CIDRs, and exact host names (e.g. an in-cluster model server).
OUTBOUND_ALLOWED_NETWORKS = env_str("OUTBOUND_ALLOWED_NETWORKS", "")
OUTBOUND_ALLOWED_HOSTS = env_str("OUTBOUND_ALLOWED_HOSTS", "")
# OpenTelemetry: spans per stage of each call to this OTLP/HTTP endpoint ("": tracing off).
OTEL_EXPORTER_OTLP_ENDPOINT = env_str("OTEL_EXPORTER_OTLP_ENDPOINT", "")
OTEL_SERVICE_NAME = env_str("OTEL_SERVICE_NAME", "waystation-gateway")
# A day whose cost exceeds the trailing week's daily average by this factor is flagged.
COST_ANOMALY_FACTOR = env_float("COST_ANOMALY_FACTOR", 3.0)
USAGE_STREAM_KEY = env_str("USAGE_STREAM_KEY", "waystation:usage")
USAGE_FLUSH_SECONDS = env_float("USAGE_FLUSH_SECONDS", 0.05)
# Redis away: a gateway process keeps up to this many events (then drops the oldest, logged)
# and retries with exponential backoff up to USAGE_RETRY_MAX_SECONDS.
USAGE_BUFFER_MAX = env_int("USAGE_BUFFER_MAX", 100_000)
USAGE_RETRY_MAX_SECONDS = env_float("USAGE_RETRY_MAX_SECONDS", 5.0)
# Entries a consumer read and left unacknowledged this long (it died) go to another worker.
USAGE_RECLAIM_IDLE_MS = env_int("USAGE_RECLAIM_IDLE_MS", 60_000)
# /readyz fails when the usage stream holds more entries (or pending ones) than this.
READY_MAX_USAGE_BACKLOG = env_int("READY_MAX_USAGE_BACKLOG", 10_000)

# LOG_FORMAT: json (one object per line, for log pipelines) or plain; both carry request_id.
LOG_FORMAT = env_str("LOG_FORMAT", "json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "waystation.logs.RequestIdFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {"()": "waystation.logs.Json"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    # faiss reports at INFO which of its builds it loaded, with a traceback-like line.
    "loggers": {"faiss.loader": {"level": "WARNING"}},
}
