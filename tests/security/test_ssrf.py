"""Server-side request forgery: provider base URLs and webhook URLs may not reach loopback,
private, link-local, CGNAT, multicast or metadata addresses (gateway/outbound.py), when they are
saved and when they are called, unless OUTBOUND_ALLOWED_NETWORKS / _HOSTS allow them.

The rest of the suite runs with loopback allowed (tests/conftest.py); these tests empty the
allow-list (or narrow it) first. Nothing of our HTTP layer is mocked: names are resolved by
the real getaddrinfo (`localhost` stands in for a name that resolves, or re-resolves, to an
internal address), and the servers are real ones on loopback.
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai
import pytest
from django.core.management import call_command

from billing import controls, report_webhooks
from billing.models import Budget, ReportWebhook
from gateway import config, outbound
from gateway.models import Provider
from gateway.secrets import encrypt
from portal import services
from portal.services import Actor, ServiceError
from tests.gateway.helpers import apply_yaml, new_key
from tests.security import tally

HELLO = [{"role": "user", "content": "hello"}]

FORBIDDEN_URLS = {
    "loopback": "http://127.0.0.1/v1",
    "private-10": "http://10.0.0.1/v1",
    "private-192": "http://192.168.1.10:8080/v1",
    "private-172": "http://172.16.0.1/v1",
    "metadata-v4": "http://169.254.169.254/latest/meta-data",
    "metadata-v6": "http://[fd00:ec2::254]/latest/meta-data",
    "metadata-name": "http://metadata.google.internal/computeMetadata/v1/",
    "loopback-v6": "http://[::1]/v1",
    "v4-mapped-v6": "http://[::ffff:127.0.0.1]/v1",
    "link-local-v6": "http://[fe80::1]/v1",
    "unique-local-v6": "http://[fc00::1]/v1",
    "cgnat": "http://100.64.0.1/v1",
    "unspecified": "http://0.0.0.0:8000/v1",
    "multicast": "http://224.0.0.1/v1",
    "name-to-loopback": "http://localhost:8000/v1",
    "decimal": "http://2130706433/v1",
    "hex": "http://0x7f000001/v1",
    "octal": "http://0177.0.0.1/v1",
    "short": "http://127.1/v1",
}
IDS = list(FORBIDDEN_URLS)
URLS = list(FORBIDDEN_URLS.values())


@pytest.fixture
def no_allowlist(settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = ""
    settings.OUTBOUND_ALLOWED_HOSTS = ""
    return settings


def provider_yaml(base_url: str, name: str = "p") -> str:
    return f"""
providers:
  - {{name: {name}, kind: openai, base_url: "{base_url}", api_key: "k"}}
models:
  - {{name: m-{name}, deployments: [{{provider: {name}, model: gpt-4o-mini}}]}}
"""


# --- the policy ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "127.8.9.10", "::1", "10.1.2.3", "172.31.255.255", "192.168.0.1",
        "169.254.169.254", "169.254.1.1", "fe80::1", "fc00::1", "fd00:ec2::254", "100.64.0.1",
        "100.127.255.254", "0.0.0.0", "::", "224.0.0.251", "ff02::1", "::ffff:10.0.0.1",
        "64:ff9b::7f00:1", "2002:7f00:1::", "240.0.0.1", "255.255.255.255",
    ],
)  # fmt: skip
def test_internal_addresses_are_refused(no_allowlist, address):
    assert outbound.allowed_address(address) is False
    assert outbound.refusal(address)
    tally.add("ssrf: refused")


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "100.128.0.1"])
def test_public_addresses_are_allowed(no_allowlist, address):
    assert outbound.allowed_address(address) is True


def test_the_allow_list_admits_its_networks_only(settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = "10.0.0.0/8, 127.0.0.1/32, not-a-cidr"

    assert outbound.allowed_address("10.20.30.40")
    assert outbound.allowed_address("127.0.0.1")
    assert outbound.allowed_address("::ffff:10.0.0.1")
    assert not outbound.allowed_address("127.0.0.2")
    assert not outbound.allowed_address("192.168.0.1")
    assert not outbound.allowed_address("169.254.169.254")


@pytest.mark.parametrize(
    ("host", "address"),
    [("2130706433", "127.0.0.1"), ("0x7f000001", "127.0.0.1"), ("0177.0.0.1", "127.0.0.1"),
     ("127.1", "127.0.0.1"), ("10.1", "10.0.0.1"), ("[::1]", "::1"), ("fe80::1%eth0", "fe80::1"),
     ("example.com", None), ("0xcafe.example", None), ("deadbeef", None)],
)  # fmt: skip
def test_legacy_numeric_hosts_are_read_as_the_address_they_denote(host, address):
    parsed = outbound.parse_address(host)

    assert (str(parsed) if parsed else None) == address


# --- when saved: config, admin, webhooks ---------------------------------------------------


@pytest.mark.parametrize("url", URLS, ids=IDS)
def test_config_refuses_internal_base_urls(no_allowlist, url):
    with pytest.raises(config.ConfigError) as refused:
        config.parse(provider_yaml(url))

    [error] = refused.value.errors
    assert f"base_url '{url}' is not allowed" in error
    assert "OUTBOUND_ALLOWED_NETWORKS" in error or "OUTBOUND_ALLOWED_HOSTS" in error
    assert error.startswith("line 3: ")
    tally.add("ssrf: refused")


def test_config_accepts_what_the_operator_allows(settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = "127.0.0.0/8,10.0.0.0/8,::1/128"
    settings.OUTBOUND_ALLOWED_HOSTS = "metadata.google.internal"

    for url in ("http://127.0.0.1:1/v1", "http://10.0.0.1/v1", "http://[::1]/v1",
                "http://localhost:1/v1", "http://2130706433/v1",
                "http://metadata.google.internal/v1"):  # fmt: skip
        assert config.parse(provider_yaml(url)).providers[0].base_url == url

    # the allow-list is not a blanket pass: what it doesn't name stays refused
    with pytest.raises(config.ConfigError):
        config.parse(provider_yaml("http://169.254.169.254/"))


def test_a_public_base_url_is_accepted_with_an_empty_allow_list(no_allowlist):
    spec = config.parse(provider_yaml("https://api.openai.com/v1"))

    assert spec.providers[0].base_url == "https://api.openai.com/v1"


@pytest.mark.django_db
def test_apply_config_refuses_the_file_and_changes_nothing(no_allowlist, tmp_path):
    path = tmp_path / "gateway.yaml"
    path.write_text(provider_yaml("http://169.254.169.254/latest/meta-data", name="meta"))

    with pytest.raises(Exception, match="is not allowed") as refused:
        call_command("apply_config", str(path))

    assert "cloud metadata" in str(refused.value)
    assert not Provider.objects.filter(name="meta").exists()
    tally.add("ssrf: refused")


@pytest.mark.django_db
@pytest.mark.parametrize("url", URLS, ids=IDS)
def test_the_admin_refuses_internal_base_urls(no_allowlist, admin_client, url):
    answer = admin_client.post(
        "/admin/gateway/provider/add/",
        {"name": "sneaky", "kind": "openai", "base_url": url, "options": "{}", "enabled": "on"},
    )

    assert answer.status_code == 200  # the form again, with the error
    assert "OUTBOUND_ALLOWED_" in answer.content.decode()
    assert not Provider.objects.filter(name="sneaky").exists()
    tally.add("ssrf: refused")


@pytest.mark.django_db
def test_the_admin_saves_an_allowed_base_url(settings, admin_client):
    settings.OUTBOUND_ALLOWED_NETWORKS = "10.0.0.0/8"

    answer = admin_client.post(
        "/admin/gateway/provider/add/",
        {"name": "inhouse", "kind": "openai", "base_url": "http://10.0.0.1/v1", "options": "{}"},
    )

    assert answer.status_code == 302, answer.content.decode()[:2000]
    assert Provider.objects.get(name="inhouse").base_url == "http://10.0.0.1/v1"


@pytest.fixture
def owner(django_user_model):
    alice = django_user_model.objects.create_user("alice", "alice@example.com")
    tenant = services.tenant_create(actor=Actor(alice), name="Tenant A", slug="tenant-a")
    return Actor(alice), tenant


@pytest.mark.django_db
@pytest.mark.parametrize("url", URLS, ids=IDS)
def test_report_webhooks_refuse_internal_urls(no_allowlist, owner, url):
    actor, tenant = owner

    with pytest.raises(ServiceError, match="webhook URL") as refused:
        report_webhooks.report_webhook_set(actor=actor, tenant=tenant, url=url)

    assert not ReportWebhook.objects.filter(tenant=tenant).exists()
    if "is not allowed" in str(refused.value):  # else Django's URL validator said no first
        assert "OUTBOUND_ALLOWED_" in str(refused.value)
    tally.add("ssrf: refused")


@pytest.mark.django_db
@pytest.mark.parametrize("url", URLS, ids=IDS)
def test_budget_webhooks_refuse_internal_urls(no_allowlist, owner, url):
    actor, tenant = owner

    with pytest.raises(ServiceError, match="webhook URL"):
        controls.budget_set(actor=actor, tenant=tenant, amount_usd=10, webhook_url=url)

    assert not Budget.objects.filter(tenant=tenant).exists()
    tally.add("ssrf: refused")


@pytest.mark.django_db
def test_webhooks_save_when_allowed(settings, owner):
    actor, tenant = owner
    settings.OUTBOUND_ALLOWED_NETWORKS = "10.0.0.0/8"

    webhook, _ = report_webhooks.report_webhook_set(
        actor=actor, tenant=tenant, url="http://10.1.2.3/hook"
    )
    budget = controls.budget_set(
        actor=actor, tenant=tenant, amount_usd=10, webhook_url="https://hooks.example.com/b"
    )

    assert webhook.url == "http://10.1.2.3/hook"
    assert budget.webhook_url == "https://hooks.example.com/b"


# --- when called: the resolver, the gateway, the webhooks ----------------------------------


def test_the_resolver_drops_what_a_name_resolves_to_when_it_is_forbidden(no_allowlist):
    async def resolve():
        return await outbound.PolicyResolver().resolve("localhost", 80)

    with pytest.raises(outbound.OutboundRefused, match="localhost .*loopback"):
        asyncio.run(resolve())
    tally.add("ssrf: refused")


def test_the_resolver_keeps_allowed_addresses(settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = "127.0.0.0/8,::1/128"

    async def resolve():
        return await outbound.PolicyResolver().resolve("localhost", 80)

    found = asyncio.run(resolve())
    assert found and {r["host"] for r in found} <= {"127.0.0.1", "::1"}


def test_the_resolver_refuses_metadata_names_before_any_lookup(no_allowlist):
    async def resolve():
        return await outbound.PolicyResolver().resolve("metadata.google.internal", 80)

    with pytest.raises(outbound.OutboundRefused, match="metadata"):
        asyncio.run(resolve())
    tally.add("ssrf: refused")


@pytest.mark.parametrize(("host", "name"), [("localhost", "by-name"), ("127.0.0.1", "by-address")])
def test_a_provider_that_resolves_to_loopback_is_refused_at_call_time(
    gateway, openai_fake, settings, host, name
):
    # saved while loopback was allowed (or before the policy existed), called after it isn't
    base = openai_fake.base_url.replace("127.0.0.1", host)
    apply_yaml(provider_yaml(base, name=f"rebound-{name}"))
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=new_key(), max_retries=0)
    settings.OUTBOUND_ALLOWED_NETWORKS = ""

    with pytest.raises(openai.APIStatusError) as failure:
        client.chat.completions.create(model=f"m-rebound-{name}", messages=HELLO)

    assert failure.value.status_code == 502
    message = failure.value.body["message"]
    assert "outbound network policy" in message and "OUTBOUND_ALLOWED_NETWORKS" in message
    assert "127.0.0.1" not in message  # the policy is named, the internal address is not
    assert openai_fake.requests == []
    tally.add("ssrf: refused")


class Recorder:
    """A loopback HTTP server that records what it gets and answers `status` (+ Location)."""

    def __init__(self, host: str = "127.0.0.1", status: int = 200, location: str = "") -> None:
        self.received: list[tuple[str, str, dict]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                recorder.received.append((self.command, self.path, dict(self.headers)))
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                body = json.dumps({"ok": True}).encode()
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://{host}:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorders():
    made: list[Recorder] = []

    def make(**kwargs) -> Recorder:
        made.append(Recorder(**kwargs))
        return made[-1]

    yield make
    for recorder in made:
        recorder.close()


def test_an_upstream_redirect_is_not_followed(gateway, settings, recorders):
    # The allowed upstream (127.0.0.1) points at an address outside the allow-list: 127.0.0.2
    # stands in for 169.254.169.254, which no test can listen on.
    target = recorders(host="127.0.0.2")
    upstream = recorders(status=302, location=f"{target.url}/latest/meta-data")
    apply_yaml(provider_yaml(upstream.url + "/v1", name="redirector"))
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=new_key(), max_retries=0)
    settings.OUTBOUND_ALLOWED_NETWORKS = "127.0.0.1/32"

    with pytest.raises(openai.APIStatusError) as failure:
        client.chat.completions.create(model="m-redirector", messages=HELLO)

    assert failure.value.status_code >= 400
    assert [(m, p) for m, p, _ in upstream.received] == [("POST", "/v1/chat/completions")]
    assert target.received == []
    tally.add("ssrf: refused")


def test_a_webhook_that_resolves_to_loopback_is_refused_at_call_time(no_allowlist, recorders):
    receiver = recorders()

    for url in (receiver.url, receiver.url.replace("127.0.0.1", "localhost")):
        with pytest.raises(outbound.OutboundRefused, match="loopback"):
            report_webhooks.post_event(url + "/hook", "secret", "test.event", {"n": 1})
        tally.add("ssrf: refused")

    with pytest.raises(outbound.OutboundRefused, match="metadata"):
        report_webhooks.post_event("http://metadata.google.internal/", None, "test.event", {})
    tally.add("ssrf: refused")
    assert receiver.received == []


def test_a_webhook_by_name_connects_to_the_checked_address_with_its_own_host(settings, recorders):
    settings.OUTBOUND_ALLOWED_NETWORKS = "127.0.0.0/8"
    receiver = recorders()
    url = f"http://localhost:{receiver.port}/hook"

    report_webhooks.post_event(url, "secret", "test.event", {"n": 1})

    [(method, path, headers)] = receiver.received
    assert (method, path) == ("POST", "/hook")
    assert headers["Host"] == f"localhost:{receiver.port}"
    assert headers["X-Waystation-Event"] == "test.event"


def test_a_webhook_redirect_is_not_followed(settings, recorders):
    settings.OUTBOUND_ALLOWED_NETWORKS = "127.0.0.1/32"
    target = recorders(host="127.0.0.2")
    hook = recorders(status=302, location=f"{target.url}/latest/meta-data")

    with pytest.raises(urllib.error.HTTPError) as answer:
        report_webhooks.post_event(hook.url + "/hook", None, "test.event", {})

    assert answer.value.code == 302
    assert len(hook.received) == 1 and target.received == []
    tally.add("ssrf: refused")


@pytest.mark.django_db
def test_a_stored_report_webhook_to_an_internal_address_is_not_called(
    no_allowlist, owner, recorders
):
    # e.g. saved before the policy existed
    _, tenant = owner
    receiver = recorders()
    webhook = ReportWebhook.objects.create(
        tenant=tenant, url=receiver.url + "/chargeback", secret_encrypted=encrypt("s")
    )

    assert report_webhooks.push_monthly_reports(2026, 10) == 0

    webhook.refresh_from_db()
    assert webhook.last_status is None
    assert webhook.last_error.startswith("OutboundRefused: ")
    assert "OUTBOUND_ALLOWED_NETWORKS" in webhook.last_error
    assert receiver.received == []
    tally.add("ssrf: refused")


def test_urlopen_refuses_other_schemes(no_allowlist):
    for url in ("file:///etc/passwd", "ftp://example.com/x", "gopher://127.0.0.1:6379/_"):
        with pytest.raises(outbound.OutboundRefused, match="http"):
            outbound.urlopen(urllib.request.Request(url), timeout=1)  # noqa: S310
        tally.add("ssrf: refused")
