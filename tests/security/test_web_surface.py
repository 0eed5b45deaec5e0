"""The portal's web surface: CSRF on every route, cookies and headers under HTTPS, a
Content-Security-Policy without inline script, clickjacking, login throttling, and
`manage.py check --deploy` clean under production settings.

Persona: alice owns tenant "acme" with an application and a key; every sweep runs logged in
as her, so a route that forgot CSRF would act on her real objects.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import uuid
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.test import Client, override_settings
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.urls.resolvers import RegexPattern, RoutePattern

from portal import services
from portal.models import ApiKey, Application, AuditEvent, Tenant
from tests.security import tally

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "templates"
PASSWORD = "a-long-enough-passphrase-42"
# Views allowed to skip Django's CSRF middleware, each with the reason. DRF's views are
# exempt by construction and enforce CSRF themselves for session callers (SessionAuthentication);
# the sweep below proves they refuse. Nothing of ours may add to this.
CSRF_EXEMPT_SOURCES: dict[str, str] = {}
OUR_CODE = ["waystation", "portal", "prompts", "observability", "billing", "gateway"]

pytestmark = pytest.mark.django_db


# --- fixtures -------------------------------------------------------------------------


def _verified_user(name: str):
    from allauth.account.models import EmailAddress

    user = get_user_model().objects.create_user(name, f"{name}@example.com", PASSWORD)
    EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
    return user


@pytest.fixture
def alice():
    user = _verified_user("alice")
    actor = services.Actor(user, "127.0.0.1")
    tenant = services.tenant_create(actor=actor, name="Acme")
    app = services.application_create(actor=actor, tenant=tenant, name="bot")
    key = services.api_key_create(actor=actor, tenant=tenant, application=app, name="ci")
    return {"user": user, "tenant": tenant, "app": app, "key": key.api_key}


def _client_as(user, **kwargs) -> Client:
    client = Client(enforce_csrf_checks=True, **kwargs)
    client.force_login(user)
    return client


# --- 1. CSRF on every route -----------------------------------------------------------


def _group_sample(body: str) -> str:
    """A value a regex group accepts: the first word of an alternation, else "1"."""
    return body.split("|")[0] if re.fullmatch(r"[\w|]+", body) else "1"


def _regex_to_path(regex: str, values: dict[str, str]) -> str:
    """'^t/(?P<slug>[-\\w]+)/$' -> 't/acme/': named groups replaced by samples."""
    out, i = [], 0
    text = regex.removeprefix("^").removesuffix("$").removesuffix("\\Z")
    while i < len(text):
        start = text.find("(?P<", i)
        if start < 0:
            out.append(text[i:])
            break
        out.append(text[i:start])
        name_end = text.index(">", start)
        name = text[start + 4 : name_end]
        depth, j = 1, name_end + 1
        while depth:
            depth += {"(": 1, ")": -1}.get(text[j], 0)
            j += 1
        out.append(values.get(name) or _group_sample(text[name_end + 1 : j - 1]))
        i = j
    path = "".join(out).replace("\\.", ".").replace("/?", "/")
    return re.sub(r"\?$", "", path)


def _piece(pattern, values: dict[str, str]) -> str:
    if isinstance(pattern, RoutePattern):
        return re.sub(r"<(?:\w+:)?(\w+)>", lambda m: values.get(m.group(1), "1"), str(pattern))
    assert isinstance(pattern, RegexPattern)
    return _regex_to_path(pattern._regex, values)


def _routes(patterns, values: dict[str, str], prefix: str = ""):
    """(path, pattern) for every route of the URLconf, with sample values filled in."""
    for entry in patterns:
        here = prefix + _piece(entry.pattern, values)
        if isinstance(entry, URLResolver):
            yield from _routes(entry.url_patterns, values, here)
        else:
            assert isinstance(entry, URLPattern)
            yield "/" + here, entry


def _sample_values(world) -> dict[str, str]:
    tenant = world["tenant"]
    return {
        "slug": tenant.slug,
        "tenant": tenant.slug,
        "app_id": str(world["app"].pk),
        "key_id": str(world["key"].pk),
        "member_id": str(tenant.memberships.get().pk),
        "month": "2026-01",
        "fmt": "csv",
        "format": "json",  # DRF's format suffix: an unknown one is a 404 before the CSRF check
    }


def _state() -> tuple[int, ...]:
    return (
        Tenant.objects.count(),
        Application.objects.count(),
        ApiKey.objects.filter(revoked_at__isnull=True).count(),
        AuditEvent.objects.count(),
    )


def test_every_route_refuses_a_post_without_the_csrf_token(alice):
    # given alice, logged in, and every route of the URLconf with her objects' ids
    client = _client_as(alice["user"])
    routes = list(_routes(get_resolver().url_patterns, _sample_values(alice)))
    before = _state()

    # when each is POSTed without a token
    refused, wrong, unreachable = {}, {}, []
    for path, pattern in routes:
        match = _resolves(path)
        if match is None or match.func is not pattern.callback:
            unreachable.append(path)
            continue
        response = client.post(path, {"name": "x", "confirm": "1"})
        if _refused_for_csrf(response):
            refused[path] = pattern
        else:
            wrong[path] = response.status_code

    # then every one is a 403 from the CSRF check, and nothing changed
    assert wrong == {}, f"accepted a POST without a CSRF token: {wrong}"
    assert unreachable == [], f"the sweep could not build these routes: {unreachable}"
    assert _state() == before
    areas = {
        "portal": [p for p in refused if p.startswith("/portal/")],
        "accounts": [p for p in refused if p.startswith("/accounts/")],
        "admin": [p for p in refused if p.startswith("/admin/")],
        "api": [p for p in refused if p.startswith("/api/")],
    }
    assert len(areas["portal"]) >= 60 and len(areas["accounts"]) >= 20
    tally.add("web: csrf-protected routes (all)", len(refused))
    tally.add("web: csrf-protected routes (portal pages)", len(areas["portal"]))
    tally.add("web: csrf-protected routes (accounts)", len(areas["accounts"]))


def _refused_for_csrf(response) -> bool:
    """A 403 that names CSRF: Django's failure page, or a DRF answer (whose HTML renderer, for
    the Swagger UI, shows only the status; the reason is in its data)."""
    reason = response.content + str(getattr(response, "data", "")).encode()
    return response.status_code == 403 and b"CSRF" in reason


def _resolves(path: str):
    from django.urls import Resolver404

    try:
        return resolve(path)
    except Resolver404:
        return None


def test_a_post_with_the_token_passes_the_csrf_check(alice):
    # given the new-tenant form, rendered for alice with its token
    client = _client_as(alice["user"])
    page = client.get("/portal/tenants/new/")
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.content).group(1)

    # when it is posted with the token
    response = client.post(
        "/portal/tenants/new/", {"name": "Globex", "csrfmiddlewaretoken": token.decode()}
    )

    # then it acts: the sweep's 403s are the CSRF check's, not the views'
    assert response.status_code == 302
    assert Tenant.objects.filter(slug="globex").exists()


def _template_files() -> list[Path]:
    return sorted(TEMPLATES.rglob("*.html"))


POST_FORM = re.compile(r"<form\b[^>]*\bmethod=\"post\"[^>]*>(.*?)</form>", re.S | re.I)


def test_every_post_form_in_the_templates_carries_the_csrf_token():
    forms, missing = 0, []
    for path in _template_files():
        for body in POST_FORM.findall(path.read_text()):
            forms += 1
            if "{% csrf_token %}" not in body:
                missing.append(str(path.relative_to(ROOT)))
    htmx_posts = sum(
        len(re.findall(r"\bhx-(?:post|put|patch|delete)=", p.read_text()))
        for p in _template_files()
    )

    assert missing == []
    # htmx requests carry the token from <body hx-headers> in the one layout.
    assert (
        '<body hx-headers=\'{"X-CSRFToken": "{{ csrf_token }}"}\'>'
        in (TEMPLATES / "base.html").read_text()
    )
    assert forms >= 40
    tally.add("web: csrf-protected forms", forms + htmx_posts)


def test_no_view_of_ours_is_csrf_exempt():
    found = {}
    for package in OUR_CODE:
        for path in (ROOT / package).rglob("*.py"):
            if re.search(r"\bcsrf_exempt\b", path.read_text()):
                found[str(path.relative_to(ROOT))] = "uses csrf_exempt"

    assert set(found) == set(CSRF_EXEMPT_SOURCES)


# --- 2. cookies and HTTPS ---------------------------------------------------------------

HTTPS_SETTINGS = [
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SESSION_COOKIE_HTTPONLY",
    "SESSION_COOKIE_SAMESITE",
    "CSRF_COOKIE_SAMESITE",
    "SECURE_SSL_REDIRECT",
    "SECURE_REDIRECT_EXEMPT",
    "SECURE_PROXY_SSL_HEADER",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "X_FRAME_OPTIONS",
]


def _settings_under(env: dict[str, str]) -> dict:
    """The web-security settings as waystation/settings.py computes them under this env."""
    script = (
        "import json; from django.conf import settings; "
        f"print(json.dumps({{k: getattr(settings, k) for k in {HTTPS_SETTINGS!r}}}))"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SECURE_", "HTTPS"))}
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**clean, "DJANGO_SETTINGS_MODULE": "waystation.settings", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    values = json.loads(done.stdout.strip().splitlines()[-1])
    if values["SECURE_PROXY_SSL_HEADER"]:
        values["SECURE_PROXY_SSL_HEADER"] = tuple(values["SECURE_PROXY_SSL_HEADER"])
    return values


@pytest.fixture(scope="module")
def https_settings() -> dict:
    return _settings_under({"HTTPS": "true"})


def test_https_true_turns_on_secure_cookies_hsts_and_the_redirect(https_settings):
    assert https_settings == {
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "CSRF_COOKIE_SAMESITE": "Lax",
        "SECURE_SSL_REDIRECT": True,
        "SECURE_REDIRECT_EXEMPT": ["^healthz$"],
        "SECURE_PROXY_SSL_HEADER": ("HTTP_X_FORWARDED_PROTO", "https"),
        "SECURE_HSTS_SECONDS": 31_536_000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_HSTS_PRELOAD": False,
        "X_FRAME_OPTIONS": "DENY",
    }


def test_without_https_cookies_work_over_plain_http():
    plain = _settings_under({})

    assert plain["SESSION_COOKIE_SECURE"] is False and plain["SECURE_SSL_REDIRECT"] is False
    assert plain["SECURE_HSTS_SECONDS"] == 0 and plain["SECURE_PROXY_SSL_HEADER"] is None


def test_under_https_settings_login_sets_secure_httponly_lax_cookies(https_settings):
    # given the HTTPS settings, behind a proxy that says the request came over TLS
    user = _verified_user("carol")
    # (nginx passes the Host header; without it Django would add the socket's port 80)
    https = {
        "HTTP_X_FORWARDED_PROTO": "https",
        "HTTP_HOST": "testserver",
        "HTTP_ORIGIN": "https://testserver",
    }
    with override_settings(**https_settings):
        client = Client(enforce_csrf_checks=True)
        client.get("/accounts/login/", **https)
        token = client.cookies["csrftoken"].value

        # when carol logs in
        response = client.post(
            "/accounts/login/",
            {"login": "carol", "password": PASSWORD, "csrfmiddlewaretoken": token},
            HTTP_REFERER="https://testserver/accounts/login/",
            **https,
        )

    # then the session cookie is Secure, HttpOnly and SameSite=Lax; the CSRF cookie Secure, Lax
    assert response.status_code == 302, response.content[:500]
    session, csrf = client.cookies["sessionid"], client.cookies["csrftoken"]
    assert (session["secure"], session["httponly"], session["samesite"]) == (True, True, "Lax")
    assert (csrf["secure"], csrf["samesite"]) == (True, "Lax")
    assert int(client.session["_auth_user_id"]) == user.pk


def test_under_https_settings_plain_http_is_redirected_but_probes_are_not(https_settings):
    with override_settings(**https_settings):
        client = Client()
        plain = client.get("/accounts/login/")
        probe = client.get("/healthz")
        secure = client.get("/accounts/login/", HTTP_X_FORWARDED_PROTO="https")

    assert plain.status_code == 301 and plain["Location"].startswith("https://")
    assert probe.status_code == 200
    assert secure.status_code == 200
    assert secure["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"


# --- 3. Content-Security-Policy and clickjacking -----------------------------------------


def _policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in header.split(";") if part.strip()}


class _Scripts(HTMLParser):
    """Inline scripts (no src, not a JSON data block) and on*= handlers in a page."""

    def __init__(self) -> None:
        super().__init__()
        self.inline: list[str] = []

    def handle_starttag(self, tag, attrs):
        names = dict(attrs)
        if tag == "script" and "src" not in names:
            if names.get("type") not in ("application/json", "application/ld+json"):
                self.inline.append(self.get_starttag_text())
        for name, value in attrs:
            # (a handler has a value: a bare word such as {% if online %} in a template is not one)
            if re.fullmatch(r"on[a-z]+|hx-on.*", name) and value is not None:
                self.inline.append(f"<{tag} {name}=...>")
            if name in ("href", "src", "action") and (value or "").startswith("javascript:"):
                self.inline.append(f"<{tag} {name}={value}>")


def _inline_scripts(html: str) -> list[str]:
    parser = _Scripts()
    parser.feed(html)
    return parser.inline


def test_pages_send_a_policy_without_inline_script_and_refuse_framing(alice):
    # given alice's pages, and the pages anyone sees
    slug = alice["tenant"].slug
    pages = [
        "/portal/",
        f"/portal/t/{slug}/applications/",
        f"/portal/applications/{alice['app'].pk}/",
        f"/portal/t/{slug}/members/",
        f"/portal/t/{slug}/tail/",
        f"/portal/t/{slug}/calls/",
        f"/portal/t/{slug}/analytics/",
        f"/portal/t/{slug}/prompts/",
        f"/portal/t/{slug}/budgets/",
        "/portal/catalog/",
        "/portal/tokens/",
        "/accounts/email/",
        "/accounts/password/change/",
        "/accounts/2fa/",
    ]
    client = _client_as(alice["user"])
    responses = {path: client.get(path) for path in pages}
    anonymous = Client()
    responses.update({p: anonymous.get(p) for p in ["/", "/accounts/login/", "/accounts/signup/"]})

    # then each is a page with the policy, no inline script, and no framing
    for path, response in responses.items():
        assert response.status_code == 200, path
        policy = _policy(response)
        assert policy["default-src"] == ["'self'"], path
        assert policy["script-src"] == ["'self'"], path
        assert policy["style-src"] == ["'self'", "'unsafe-inline'"], path
        assert policy["img-src"] == ["'self'", "data:"], path
        assert policy["connect-src"] == ["'self'"], path
        assert policy["frame-ancestors"] == ["'none'"], path
        assert policy["form-action"] == ["'self'"], path
        assert response["X-Frame-Options"] == "DENY", path
        assert _inline_scripts(response.content.decode()) == [], path
    tally.add("web: pages under the CSP without inline script", len(responses))


def test_no_template_has_an_inline_script_or_handler():
    found = {}
    for path in _template_files():
        inline = _inline_scripts(path.read_text())
        if inline:
            found[str(path.relative_to(ROOT))] = inline

    assert found == {}
    tally.add("web: templates free of inline script", len(_template_files()))


def test_the_api_docs_load_their_setup_script_as_a_file_and_only_they_may_use_the_cdn():
    client = Client()
    page = client.get("/api/docs/")
    script = client.get("/api/docs/?script=")

    assert page.status_code == 200 and _inline_scripts(page.content.decode()) == []
    assert _policy(page)["script-src"] == ["'self'", "https://cdn.jsdelivr.net"]
    assert script.status_code == 200 and "SwaggerUIBundle" in script.content.decode()
    assert "cdn.jsdelivr.net" not in client.get("/accounts/login/")["Content-Security-Policy"]


def test_single_sign_on_adds_the_providers_origin_to_form_action():
    from waystation.settings import _origin_of

    assert _origin_of("https://id.example.com:8443/realms/acme") == ["https://id.example.com:8443"]
    assert _origin_of("") == []


# --- 4. login throttling and check --deploy ----------------------------------------------


def _log_in(client: Client, login: str, password: str, ip: str):
    return client.post("/accounts/login/", {"login": login, "password": password}, REMOTE_ADDR=ip)


def test_failed_logins_are_throttled_per_account():
    # given dave, whose password works, from an address of this run's own
    name = f"dave{uuid.uuid4().hex[:8]}"
    _verified_user(name)
    ip = f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}"
    first = Client()
    assert _log_in(first, name, PASSWORD, ip).status_code == 302

    # when five wrong passwords are tried
    attacker = Client()
    failures = [_log_in(attacker, name, "wrong-" + str(n), ip) for n in range(5)]

    # then the right password is refused too, for now
    late = Client()
    refused = _log_in(late, name, PASSWORD, ip)
    assert [r.status_code for r in failures] == [200] * 5
    assert refused.status_code in (200, 429)
    assert b"Too many failed login attempts" in refused.content
    assert "_auth_user_id" not in late.session
    tally.add("web: login attempts throttled", 1)


def _check_deploy(env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SECURE_", "HTTPS", "DEBUG", "SECRET_KEY", "ALLOWED_HOSTS"))
    }
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        env={**clean, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": secrets.token_urlsafe(64),
    "HTTPS": "true",
    "ALLOWED_HOSTS": "waystation.example.com",
}


def test_check_deploy_is_clean_under_production_settings():
    done = _check_deploy(PRODUCTION)

    assert done.returncode == 0, done.stdout + done.stderr
    tally.add("web: check --deploy clean", 1)


def test_check_deploy_fails_without_https_or_with_the_development_key():
    without_https = _check_deploy({k: v for k, v in PRODUCTION.items() if k != "HTTPS"})
    default_key = _check_deploy({k: v for k, v in PRODUCTION.items() if k != "SECRET_KEY"})

    assert without_https.returncode != 0
    assert {"security.W004", "security.W008", "security.W012", "security.W016"} <= set(
        re.findall(r"security\.W\d+", without_https.stderr + without_https.stdout)
    )
    assert default_key.returncode != 0
    assert "security.W009" in default_key.stderr + default_key.stdout
