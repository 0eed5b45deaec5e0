"""The experiment pages: starting one from the form, the arms with their numbers, promoting
an arm (the label moves) and stopping, and who may do which."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from billing.models import UsageEvent
from portal import services
from portal.models import AuditEvent, Membership, Role
from portal.services import Actor
from prompts import experiments
from prompts import services as library
from prompts.models import Experiment, Feedback, PromptLabel

pytestmark = pytest.mark.django_db

MESSAGES = [{"role": "user", "content": "Classify: {{ text }}"}]
SCHEMA = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}


def _user(name: str, **extra):
    return get_user_model().objects.create_user(name, f"{name}@example.com", "pw", **extra)


@pytest.fixture
def world():
    alice, bob, vera, mallory = _user("alice"), _user("bob"), _user("vera"), _user("mallory")
    a = services.tenant_create(actor=Actor(alice), name="Tenant A", slug="tenant-a")
    Membership.objects.create(user=bob, tenant=a, role=Role.DEVELOPER)
    Membership.objects.create(user=vera, tenant=a, role=Role.VIEWER)
    b = services.tenant_create(actor=Actor(mallory), name="Tenant B", slug="tenant-b")
    prompt = library.prompt_create(actor=Actor(alice), tenant=a, slug="classify", name="Classify")
    versions = [
        library.version_create(
            actor=Actor(alice),
            prompt=prompt,
            messages=MESSAGES,
            model="demo-chat",
            input_schema=SCHEMA,
        )  # fmt: skip
        for _ in range(3)
    ]
    library.label_set(actor=Actor(alice), prompt=prompt, name="production", version=versions[0])
    library.label_set(actor=Actor(alice), prompt=prompt, name="staging", version=versions[1])
    theirs = library.prompt_create(actor=Actor(mallory), tenant=b, slug="theirs", name="Theirs")
    return {
        "alice": alice, "bob": bob, "vera": vera, "mallory": mallory, "a": a, "b": b,
        "prompt": prompt, "v": versions, "theirs": theirs,
    }  # fmt: skip


def _as(client, user):
    client.force_login(user)
    return client


def _list_url(prompt="classify", tenant="tenant-a"):
    return reverse("prompts:experiments", args=[tenant, prompt])


def _url(name, experiment, *extra):
    return reverse(f"prompts:{name}", args=["tenant-a", "classify", experiment.pk, *extra])


def _start(world, arms=None, label="production"):
    v = world["v"]
    return experiments.experiment_start(
        actor=Actor(world["alice"]), prompt=world["prompt"], name="Shorter", label=label,
        arms=arms or [(v[0], 50), (v[2], 50)],
    )  # fmt: skip


FORM = {
    "name": "Shorter wording",
    "label": "production",
    "arm_0_version": "1",
    "arm_0_weight": "70",
    "arm_1_version": "3",
    "arm_1_weight": "30",
}


def test_a_developer_starts_an_experiment_from_the_form(client, world):
    bob = _as(client, world["bob"])
    page = bob.get(_list_url())
    body = page.content.decode()
    assert page.status_code == 200 and "No experiments on Classify yet." in body
    assert 'id="experiment-form"' in body
    # the form starts as production's version against the newest other one, 50/50
    assert '<option value="1" selected>v1 · demo-chat</option>' in body
    assert '<option value="3" selected>v3 · demo-chat</option>' in body
    assert '<option value="production" selected>production (serves v1)</option>' in body
    assert body.count('value="50"') == 2

    started = bob.post(_list_url(), FORM)

    experiment = Experiment.objects.get()
    assert started.status_code == 302 and started["Location"] == _url("experiment", experiment)
    assert (experiment.name, experiment.label, experiment.status) == (
        "Shorter wording",
        "production",
        "running",
    )
    arms = [(arm.version.number, arm.weight) for arm in experiment.arms.order_by("pk")]
    assert arms == [(1, 70), (3, 30)]
    assert AuditEvent.objects.filter(
        action="prompt.experiment_started", actor=world["bob"]
    ).exists()
    listed = bob.get(_list_url()).content.decode()
    assert f'id="experiment-{experiment.pk}"' in listed and "v1 ×70 · v3 ×30" in listed


@pytest.mark.parametrize(
    "changes, field_error",
    [
        ({"arm_1_version": "", "arm_1_weight": ""}, "This field is required."),
        ({"arm_1_weight": ""}, "Give this arm a weight."),
        ({"arm_1_weight": "0"}, "greater than or equal to 1"),
        ({"arm_1_version": "9"}, "Select a valid choice"),
        ({"label": "nope"}, "Select a valid choice"),
        ({"arm_1_version": "1"}, "Each arm needs a different version."),
    ],
    ids=["one-arm", "no-weight", "zero-weight", "no-such-version", "no-such-label", "same"],
)
def test_bad_forms_show_the_error_and_start_nothing(client, world, changes, field_error):
    response = _as(client, world["alice"]).post(_list_url(), {**FORM, **changes})
    assert response.status_code == 400
    assert field_error in response.content.decode()
    assert not Experiment.objects.exists()


def test_a_second_experiment_on_a_running_label_is_refused_on_the_form(client, world):
    _start(world)
    response = _as(client, world["alice"]).post(_list_url(), FORM)
    assert response.status_code == 400
    assert "An experiment is already running on &#x27;production&#x27;." in (
        response.content.decode()
    )
    assert Experiment.objects.count() == 1
    # another label may run its own
    staging = {**FORM, "label": "staging", "arm_0_version": "2"}
    assert _as(client, world["alice"]).post(_list_url(), staging).status_code == 302
    assert Experiment.objects.count() == 2


def _event(request_id, experiment, arm, tenant, *, status=200):
    UsageEvent.objects.create(
        request_id=request_id, created_at=timezone.now(), tenant_id=tenant.pk, route="prompt",
        latency_ms=120.0, status=status,
        prompt={"api": "classify", "prompt": "classify", "version": arm.version.number,
                "experiment": experiment.pk, "arm": arm.pk},
    )  # fmt: skip


def test_the_detail_page_shows_the_arms_and_their_counts(client, world):
    experiment = _start(world)
    control, challenger = experiment.arms.order_by("pk")
    for n in range(3):
        _event(f"c{n}", experiment, control, world["a"], status=502 if n == 0 else 200)
    for n in range(5):
        _event(f"x{n}", experiment, challenger, world["a"])
    Feedback.objects.create(tenant=world["a"], request_id="x0", score=0.75)
    Feedback.objects.create(tenant=world["b"], request_id="c0", score=1.0)  # not A's feedback

    page = _as(client, world["alice"]).get(_url("experiment", experiment))

    body = page.content.decode()
    assert page.status_code == 200 and "Shorter" in body
    control_row = body.split(f'id="arm-{control.pk}"')[1].split("</tr>")[0]
    challenger_row = body.split(f'id="arm-{challenger.pk}"')[1].split("</tr>")[0]
    assert "v1" in control_row and "control" in control_row
    assert '<td class="calls">3</td>' in control_row
    assert '<td class="errors">1 <span class="small muted">(33.3%)</span></td>' in control_row
    assert '<td class="scored">0</td>' in control_row
    assert '<td class="calls">5</td>' in challenger_row and "0.75" in challenger_row
    assert '<td class="scored">1</td>' in challenger_row
    assert f'id="readout-{challenger.pk}"' in body
    assert "not enough data (needs ≥ 30 scored calls per arm)" in body
    promote = _url("experiment_promote", experiment, challenger.pk)
    assert f'action="{promote}"' in body and "Promote v3" in body
    assert 'id="stop-form"' in body
    # htmx refreshes only the results
    partial = client.get(_url("experiment", experiment), HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in partial and '<td class="calls">5</td>' in partial


def test_promote_moves_the_label_and_ends_the_experiment(client, world):
    experiment = _start(world)
    challenger = experiment.arms.order_by("pk")[1]
    alice = _as(client, world["alice"])

    done = alice.post(_url("experiment_promote", experiment, challenger.pk), follow=True)

    assert done.redirect_chain == [(_url("experiment", experiment), 302)]
    assert "Promoted v3: the label “production” now serves v3." in done.content.decode()
    label = PromptLabel.objects.get(prompt=world["prompt"], name="production")
    assert label.version == world["v"][2]
    experiment.refresh_from_db()
    assert (experiment.status, experiment.winner) == ("promoted", world["v"][2])
    assert experiment.ended_at is not None
    body = done.content.decode()
    assert "Promote v" not in body and 'id="stop-form"' not in body
    # promoting again is refused with a message, and nothing moves
    control = experiment.arms.order_by("pk")[0]
    again = alice.post(_url("experiment_promote", experiment, control.pk), follow=True)
    assert "The experiment has already ended." in again.content.decode()
    assert PromptLabel.objects.get(pk=label.pk).version == world["v"][2]


def test_stop_ends_the_experiment_and_leaves_the_label(client, world):
    experiment = _start(world)
    alice = _as(client, world["alice"])

    done = alice.post(_url("experiment_stop", experiment), follow=True)

    assert done.redirect_chain == [(_url("experiment", experiment), 302)]
    assert "Stopped the experiment “Shorter”" in done.content.decode()
    experiment.refresh_from_db()
    assert experiment.status == "stopped" and experiment.winner is None
    label = PromptLabel.objects.get(prompt=world["prompt"], name="production")
    assert label.version == world["v"][0]
    again = alice.post(_url("experiment_stop", experiment), follow=True)
    assert "The experiment has already ended." in again.content.decode()
    assert alice.get(_url("experiment_stop", experiment)).status_code == 405


def test_a_viewer_reads_but_may_not_start_promote_or_stop(client, world):
    experiment = _start(world)
    challenger = experiment.arms.order_by("pk")[1]
    vera = _as(client, world["vera"])

    page = vera.get(_url("experiment", experiment))
    assert page.status_code == 200
    assert (
        "Promote v" not in page.content.decode() and 'id="stop-form"' not in page.content.decode()
    )
    listed = vera.get(_list_url()).content.decode()
    assert 'id="experiment-form"' not in listed and "Only owners, admins and developers" in listed

    assert vera.post(_url("experiment_promote", experiment, challenger.pk)).status_code == 403
    assert vera.post(_url("experiment_stop", experiment)).status_code == 403
    assert vera.post(_list_url(), {**FORM, "label": "staging"}).status_code == 403

    experiment.refresh_from_db()
    assert experiment.status == "running"
    label = PromptLabel.objects.get(prompt=world["prompt"], name="production")
    assert label.version == world["v"][0]
    assert Experiment.objects.count() == 1


def test_other_tenants_see_nothing(client, world):
    experiment = _start(world)
    challenger = experiment.arms.order_by("pk")[1]
    mallory = _as(client, world["mallory"])
    assert mallory.get(_list_url()).status_code == 404
    assert mallory.get(_url("experiment", experiment)).status_code == 404
    assert mallory.post(_url("experiment_promote", experiment, challenger.pk)).status_code == 404
    assert mallory.post(_url("experiment_stop", experiment)).status_code == 404
    experiment.refresh_from_db()
    assert experiment.status == "running"

    alice = _as(client, world["alice"])
    # a prompt of another tenant under A's slug, and an experiment under another prompt
    assert alice.get(_list_url(prompt="theirs")).status_code == 404
    assert alice.get(_list_url(prompt="theirs", tenant="tenant-b")).status_code == 404
    other = library.prompt_create(
        actor=Actor(world["alice"]), tenant=world["a"], slug="other", name="Other"
    )
    wrong = reverse("prompts:experiment", args=["tenant-a", other.slug, experiment.pk])
    assert alice.get(wrong).status_code == 404
    # an arm of another experiment
    staging = _start(world, arms=[(world["v"][1], 1), (world["v"][0], 1)], label="staging")
    foreign_arm = staging.arms.order_by("pk")[0]
    bad = alice.post(_url("experiment_promote", experiment, foreign_arm.pk))
    assert bad.status_code == 404
    assert (
        PromptLabel.objects.get(prompt=world["prompt"], name="production").version
        == (world["v"][0])
    )


def test_without_two_versions_there_is_nothing_to_start(client, world):
    lone = library.prompt_create(
        actor=Actor(world["alice"]), tenant=world["a"], slug="lone", name="Lone"
    )
    library.version_create(actor=Actor(world["alice"]), prompt=lone, messages=MESSAGES,
                           model="demo-chat", input_schema=SCHEMA)  # fmt: skip
    body = _as(client, world["alice"]).get(_list_url(prompt="lone")).content.decode()
    assert "needs a label and at least two versions" in body
    assert 'id="experiment-form"' not in body
