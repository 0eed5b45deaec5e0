"""The tenant isolation matrix: mallory, owner of tenant B (full rights there), aims every route
that takes an object id or slug at tenant A's objects (tests/security/isolation_world.py).

The matrix is generated: the REST routes come from the URL resolver, the portal pages from
portal/, prompts/ and observability/ urls, the gateway's stored-state routes from their
consumers' route tables. A route with a path parameter that the tables of
tests/security/isolation_targets.py don't map to one of A's objects fails the test (new routes
join the matrix), unless it is exempt there with a reason.

The rule for the answer:
- an object of A's that B cannot see is a 404, in B's tenant or in A's (B learns nothing of
  its existence): applications, keys, subscriptions, budgets, limits, members, policies,
  prompts, experiments, calls, conversations, stored responses, A's tenant slug, a private
  product or prompt API;
- an object that exists publicly (A's *public* catalog product) is a 403 on what only its
  owner may do (PATCH, its cache policy); reading it, and subscribing to it, are allowed;
- operator pages answer B (not staff) with the 403 page;
- a page that only takes POST (or GET) may answer the other method with 405: the view never ran;
- what B may see of A's (the public product, its page) must not show any of A's private data,
  and no list B reads (REST routes without parameters, also with ?tenant=A) may either.
After each area every row of A's is compared with the snapshot taken before: nothing changed.
"""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest
from channels.db import database_sync_to_async
from django.db import connections
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from prompts import experiment_metrics
from prompts.models import Feedback
from tests.observability.test_tail import SOCKET, WebsocketCommunicator
from tests.portal.test_api import registered_api_paths
from tests.security import tally
from tests.security.isolation_targets import (
    FORM,
    OWN_PARAMS,
    PAGE_EXEMPT,
    REST_EXEMPT,
    body_references,
    gateway_attempts,
    page_body_references,
    page_routes,
    page_targets,
    pages_without_parameters,
    rest_body,
    rest_targets,
)
from tests.security.isolation_world import CACHED_QUESTION, a_markers, a_state, build, chat, gw

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def w(gateway, stored_usage):
    world = build(gateway.base_url, stored_usage)
    yield world
    # The websocket consumer's queries ran in asgiref's worker thread; close its connection.
    asyncio.run(database_sync_to_async(connections.close_all)())


def assert_a_unchanged(w, before, area: str) -> None:
    after = a_state(w)
    changed = [name for name in before if before[name] != after[name]]
    assert not changed, f"{area}: B changed A's {changed}"


def text(response) -> str:
    if response.streaming:
        return b"".join(response.streaming_content).decode()
    return response.content.decode()


def report(capsys, area: str, checks: int, denials: int) -> None:
    tally.add("isolation: checks", checks)
    tally.add("isolation: denials", denials)
    with capsys.disabled():
        print(f"\nisolation {area}: {checks} checks, {denials} denials")


# --- 1. the REST API ------------------------------------------------------------------------


def api_client(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def test_the_rest_api_denies_b_every_object_of_a(w, capsys):
    routes = {path: m for path, m in registered_api_paths().items() if "{" in path}
    targets = rest_targets(w)
    unmapped = set(routes) - set(targets) - set(REST_EXEMPT)
    assert not unmapped, f"map these routes' path parameters to A's objects: {sorted(unmapped)}"
    assert not set(targets) - set(routes), "stale routes in the matrix"

    before, body = a_state(w), rest_body(w)
    mallory, alice = api_client(w.b_token.secret), api_client(w.token.secret)
    failures, checks, denials, controls = [], 0, 0, []
    for route, methods in sorted(routes.items()):
        for target in targets.get(route, []):
            url = route.format(**target.params)
            for method in sorted(methods - target.allowed):
                data = None if method == "get" else body
                answer = getattr(mallory, method)(url, data, format="json")
                checks += 1
                if answer.status_code in target.status:
                    denials += 1
                else:
                    failures.append(f"{method.upper()} {url}: {answer.status_code}")
            if "get" in target.allowed:  # what B may see of A's shows nothing private
                checks += 1
                shown = text(mallory.get(url))
                if leaked := [m for m in a_markers(w) if m in shown]:
                    failures.append(f"GET {url} shows {leaked}")
            if "get" in methods and target.control:
                controls.append(url)
    for method, url, data, statuses in body_references(w):
        answer = getattr(mallory, method)(url, data or None, format="json")
        checks += 1
        if answer.status_code in statuses:
            denials += 1
        else:
            failures.append(f"{method.upper()} {url} {data}: {answer.status_code}")
    lists = [path for path, methods in registered_api_paths().items()
             if "{" not in path and "get" in methods]  # fmt: skip
    for path in lists:
        for query in ("", f"?tenant={w.a.slug}"):
            answer = mallory.get(path + query)
            checks += 1
            leaked = [m for m in a_markers(w) if m in text(answer)]
            if leaked:
                failures.append(f"GET {path}{query}: {answer.status_code} shows {leaked}")
            else:
                denials += answer.status_code >= 400
    own = [
        path.format(slug=w.b.slug)
        for path, methods in routes.items()
        if "get" in methods and re.fullmatch(r"/api/v1/tenants/\{slug\}/[-a-z/]*", path)
    ]
    for url in own:  # B's own tenant shows nothing of A's
        checks += 1
        answer = mallory.get(url)
        if leaked := [m for m in a_markers(w) if m in text(answer)]:
            failures.append(f"GET {url}: {answer.status_code} shows {leaked}")
    assert_a_unchanged(w, before, "REST API")
    # the markers are visible where they belong: A's own listing shows them
    assert (
        "alpha-app-iso" in alice.get(f"/api/v1/tenants/{w.a.slug}/applications/").content.decode()
    )
    for url in controls:  # after the comparison: alice's reads must not hide B's writes
        assert alice.get(url).status_code == 200, url
    report(capsys, "REST API", checks, denials)
    assert not failures, "B reached A's objects:\n" + "\n".join(failures)


# --- 2. the portal pages -------------------------------------------------------------------


def portal_client(user) -> Client:
    """Logged in, with CSRF checks on: a denial must not be the CSRF failure."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.get(reverse("portal:tokens")).status_code == 200
    client.defaults["HTTP_X_CSRFTOKEN"] = client.cookies["csrftoken"].value
    return client


def test_the_portal_pages_deny_b_every_object_of_a(w, capsys):
    routes, targets = page_routes(), page_targets(w)
    unmapped = set(routes) - set(targets) - set(PAGE_EXEMPT)
    assert not unmapped, f"map these pages' path parameters to A's objects: {sorted(unmapped)}"
    assert not set(targets) - set(routes), "stale pages in the matrix"

    mallory, alice = portal_client(w.mallory), portal_client(w.alice)
    # the CSRF token works: B's own tenant switch goes through
    assert mallory.post(reverse("portal:tenant_switch"), {"tenant": w.b.slug}).status_code == 302
    before = a_state(w)
    failures, checks, denials, controls = [], 0, 0, []
    for name in sorted(set(routes) - set(PAGE_EXEMPT)):
        for target in targets[name]:
            url = reverse(name, kwargs=target.params)
            for method in sorted({"GET", "POST"} - target.allowed):
                answer = mallory.get(url) if method == "GET" else mallory.post(url, FORM)
                checks += 1
                if answer.status_code in target.status:
                    denials += 1
                elif answer.status_code == 405:
                    pass  # a POST-only (or GET-only) page: the view never ran
                else:
                    failures.append(f"{method} {url} ({name}): {answer.status_code}")
            if "GET" in target.allowed:  # what B may see of A's shows nothing private
                checks += 1
                shown = text(mallory.get(url))
                if leaked := [m for m in a_markers(w) if m in shown]:
                    failures.append(f"GET {url} ({name}) shows {leaked}")
            if target.control:
                controls.append(url)
    for name, kwargs, form in page_body_references(w):
        answer = mallory.post(reverse(name, kwargs=kwargs), form)
        checks += 1
        if answer.status_code < 500:  # refused or re-rendered; the state check below decides
            denials += 1
        else:
            failures.append(f"POST {name} {form}: {answer.status_code}")
    # B's own tenant pages (and the pages without parameters) show nothing of A's
    own = [
        reverse(name, kwargs={**target[0].params, "slug": w.b.slug})
        for name, target in targets.items()
        if target[0].params.get("slug") == w.a.slug and set(target[0].params) <= OWN_PARAMS
    ]
    for url in own + [reverse(n) for n in pages_without_parameters()]:
        checks += 1
        answer = mallory.get(url)
        if leaked := [m for m in a_markers(w) if m in text(answer)]:
            failures.append(f"GET {url}: {answer.status_code} shows {leaked}")
    assert_a_unchanged(w, before, "portal pages")
    mine = alice.get(reverse("portal:applications", kwargs={"slug": w.a.slug})).content.decode()
    assert "alpha-app-iso" in mine  # the markers show where they belong
    for url in controls:  # the targets are real: alice's own request is not a 404
        assert alice.get(url).status_code in (200, 302, 405), url
    report(capsys, "portal pages", checks, denials)
    assert not failures, "B reached A's objects:\n" + "\n".join(failures)


# --- 3. the gateway ------------------------------------------------------------------------


def test_the_gateway_denies_b_the_state_of_a(w, gateway, stored_usage, capsys):
    base, secret = gateway.base_url, w.b_key.secret
    before = a_state(w)
    failures, checks, denials = [], 0, 0

    def expect(label: str, ok: bool) -> None:
        nonlocal checks, denials
        checks += 1
        denials += ok
        if not ok:
            failures.append(label)

    for label, method, path, body, statuses in gateway_attempts(w):
        answer = gw(base, secret, method, path, body)
        expect(f"{label}: {method} {answer.status_code} {answer.text[:120]}",
               answer.status_code in statuses)  # fmt: skip
    # A's cached answer is not B's: the same deterministic question is a miss for B
    asked = chat(base, secret, CACHED_QUESTION, temperature=0)
    expect(f"cache: {asked.status_code} {asked.headers.get('x-waystation-cache')}",
           asked.status_code == 200 and asked.headers.get("x-waystation-cache") == "miss")  # fmt: skip
    # A's call log, over real HTTP with B's personal access token
    log = httpx.get(f"{base}/api/v1/calls/{w.request_id}/",
                    headers={"authorization": f"Bearer {w.b_token.secret}"})  # fmt: skip
    expect(f"call log: {log.status_code}", log.status_code == 404)
    # feedback on A's request id is B's own: accepted, and it never scores A's request
    feedback = gw(base, secret, "POST", "/api/v1/feedback", {"request_id": w.request_id,
                                                            "score": 0})  # fmt: skip
    assert feedback.status_code == 201, feedback.text
    saved = Feedback.objects.filter(request_id=w.request_id).order_by("pk").last()
    arms = experiment_metrics.arm_metrics(w.experiment)
    expect("feedback tenant", saved.tenant_id == w.b.pk)
    # A's call has A's own score (1) only: B's 0 does not join it
    scores = [(m.scored, m.feedback_mean) for m in arms if m.calls]
    expect(f"feedback on A's arm: {scores}", scores == [(1, 1.0)])
    listed = gw(base, secret, "GET", "/v1/models")
    shown = [m for m in a_markers(w) if m in listed.text]
    expect(f"models list: {listed.status_code} {shown}", listed.status_code == 200 and not shown)
    stored_usage()
    assert_a_unchanged(w, before, "gateway")
    # A still owns what B aimed at
    for path in (f"/v1/conversations/{w.conversation}", f"/v1/responses/{w.response}"):
        assert gw(base, w.key.secret, "GET", path).status_code == 200, path
    assert chat(base, w.key.secret, CACHED_QUESTION, temperature=0).headers[
        "x-waystation-cache"] == "hit"  # fmt: skip
    report(capsys, "gateway", checks, denials)
    assert not failures, "B reached A's state:\n" + "\n".join(failures)


def test_the_live_tail_of_a_refuses_b(w, capsys):
    async def scenario():
        socket = WebsocketCommunicator(SOCKET, f"/ws/tail/{w.a.slug}/")
        socket.scope["user"] = w.mallory
        accepted, code = await socket.connect()
        if accepted:  # the consumer accepts, then closes with the reason
            closed = await socket.receive_output(timeout=5)
            await socket.disconnect()
            return closed
        return {"type": "websocket.close", "code": code}

    closed = asyncio.run(scenario())
    report(capsys, "live tail", 1, int(closed == {"type": "websocket.close", "code": 4403}))
    assert closed == {"type": "websocket.close", "code": 4403}
