"""The prompt library's rules on the real database: immutable versions, labels as releases
and rollbacks, schema-checked variables, diffs, permissions and the audit trail."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied

from portal import access, services
from portal.models import AuditEvent, Membership, Role
from portal.services.common import Actor, ServiceError
from prompts import services as library
from prompts.models import PromptVersion

pytestmark = pytest.mark.django_db

SENTIMENT = [
    {"role": "system", "content": "Classify the sentiment of the text as positive or negative."},
    {
        "role": "user",
        "content": '{% if language | default("") %}Language: {{ language }}\n{% endif %}{{ text }}',
    },
]
SCHEMA = {
    "type": "object",
    "properties": {"text": {"type": "string", "minLength": 1}, "language": {"type": "string"}},
    "required": ["text"],
    "additionalProperties": False,
}


@pytest.fixture
def prompt():
    tenant = services.tenant_get_or_create(slug="acme")
    return library.prompt_create(tenant=tenant, slug="sentiment", name="Sentiment")


def version(prompt, **changes) -> PromptVersion:
    fields = {"messages": SENTIMENT, "model": "gpt-4o-mini", "input_schema": SCHEMA} | changes
    return library.version_create(prompt=prompt, **fields)


def test_versions_are_numbered_and_immutable(prompt):
    first, second = version(prompt), version(prompt, changelog="warmer wording")
    assert (first.number, second.number) == (1, 2)
    first.model = "gpt-4o"
    with pytest.raises(PermissionDenied):
        first.save()
    assert PromptVersion.objects.get(pk=first.pk).model == "gpt-4o-mini"


def test_a_label_moves_forward_and_back(prompt):
    first, second = version(prompt), version(prompt, model="gpt-4o")
    library.label_set(prompt=prompt, name="production", version=second)
    assert library.version_for(prompt, "production") == second
    library.label_set(prompt=prompt, name="production", version=first)  # the rollback
    assert library.version_for(prompt, "production") == first
    assert library.version_for(prompt, 2) == second
    with pytest.raises(ServiceError):
        library.version_for(prompt, "staging")


def test_variables_are_checked_against_the_schema_with_paths(prompt):
    v = version(prompt)
    with pytest.raises(library.VariablesInvalid) as caught:
        library.render(v, {"text": "", "mood": "x"})
    assert set(caught.value.errors) == {"$", "$.text"}
    assert "mood" in caught.value.errors["$"]
    messages = library.render(v, {"text": "I love it", "language": "en"})
    assert messages[1]["content"] == "Language: en\nI love it"


def test_template_injection_in_variables_renders_inert(prompt):
    v = version(prompt)
    payload = "{{ 7*7 }} {% for x in y %}{{ ''.__class__ }}{% endfor %} ${7*7}"
    [_, user] = library.render(v, {"text": payload})
    assert user["content"] == payload
    assert "49" not in user["content"]


def test_bad_versions_are_refused_with_the_reason(prompt):
    with pytest.raises(ServiceError, match="line 1"):
        version(prompt, messages=[{"role": "user", "content": "{% import os %}"}])
    with pytest.raises(ServiceError, match="lacks: tone"):
        version(prompt, messages=[{"role": "user", "content": "{{ tone }}"}])
    with pytest.raises(ServiceError, match="role"):
        version(prompt, messages=[{"role": "wizard", "content": "hi"}])
    with pytest.raises(ServiceError, match="JSON Schema"):
        version(prompt, input_schema={"type": "nonsense"})
    with pytest.raises(ServiceError, match="output_format json"):
        version(prompt, output_schema={"type": "object"})
    assert prompt.versions.count() == 0


def test_a_diff_shows_what_changed(prompt):
    first, second = version(prompt), version(prompt, model="gpt-4o", parameters={"temperature": 0})
    diff = library.version_diff(first, second)
    assert '-  "model": "gpt-4o-mini"' in diff and '+  "model": "gpt-4o"' in diff
    assert '"temperature": 0' in diff


def test_only_members_who_may_manage_prompts_write_and_every_write_is_audited(prompt):
    user_model = get_user_model()
    viewer = user_model.objects.create_user("viewer", "v@example.com", "pw")
    Membership.objects.create(user=viewer, tenant=prompt.tenant, role=Role.VIEWER)
    assert not access.can(viewer, prompt.tenant, "prompt.manage")
    with pytest.raises(access.Denied):
        library.version_create(actor=Actor(viewer), prompt=prompt, messages=SENTIMENT, model="m")
    version(prompt)
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"prompt.created", "prompt.version_created"} <= actions
