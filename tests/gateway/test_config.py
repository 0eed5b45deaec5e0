"""apply_config: validated whole, applied idempotently, secrets never in clear."""

import io
import textwrap

import pytest
from django.core.management import CommandError, call_command

from billing.models import Price
from gateway import config
from gateway.models import Deployment, LanguageModel, Provider

BASE = """
providers:
  - {name: openai-main, kind: openai, base_url: "https://api.openai.com/v1", api_key: "${OPENAI_API_KEY}"}
  - {name: claude, kind: anthropic, base_url: "https://api.anthropic.com", api_key: "sk-ant-literal-secret"}
models:
  - name: gpt-4o-mini
    context_window: 128000
    price: {input_per_mtok: 0.15, output_per_mtok: 0.60, cached_input_per_mtok: 0.075}
    deployments:
      - {provider: openai-main, model: gpt-4o-mini, weight: 3}
      - {provider: claude, model: claude-haiku-4-5}
"""


def apply(tmp_path, text):
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text))
    out = io.StringIO()
    call_command("apply_config", str(path), stdout=out)
    return out.getvalue()


def snapshot():
    return (
        list(Provider.objects.order_by("name").values()),
        list(LanguageModel.objects.order_by("name").values()),
        list(Deployment.objects.order_by("id").values()),
        list(Price.objects.order_by("id").values()),
    )


@pytest.mark.django_db
def test_applying_twice_changes_nothing(tmp_path):
    first = apply(tmp_path, BASE)
    before = snapshot()
    second = apply(tmp_path, BASE)

    assert "created model gpt-4o-mini" in first
    assert second.strip().endswith("no change(s)")
    assert snapshot() == before


@pytest.mark.django_db
def test_secrets_are_referenced_or_encrypted_never_clear(tmp_path):
    apply(tmp_path, BASE)
    openai_main, claude = (
        Provider.objects.get(name="openai-main"),
        Provider.objects.get(name="claude"),
    )

    assert openai_main.api_key_env == "OPENAI_API_KEY" and not openai_main.api_key_encrypted
    assert claude.api_key_encrypted and "sk-ant-literal-secret" not in claude.api_key_encrypted
    from gateway.secrets import decrypt

    assert decrypt(claude.api_key_encrypted) == "sk-ant-literal-secret"


@pytest.mark.django_db
def test_what_the_file_no_longer_names_is_disabled_not_deleted(tmp_path):
    apply(tmp_path, BASE)
    LanguageModel.objects.create(name="made-in-portal")
    apply(
        tmp_path,
        """
        providers:
          - {name: openai-main, kind: openai, base_url: "https://api.openai.com/v1"}
        models:
          - name: gpt-4o
            deployments: [{provider: openai-main, model: gpt-4o}]
    """,
    )

    assert LanguageModel.objects.get(name="gpt-4o-mini").enabled is False
    assert Provider.objects.get(name="claude").enabled is False
    assert LanguageModel.objects.get(name="made-in-portal").enabled is True
    assert Deployment.objects.filter(model__name="gpt-4o-mini").count() == 2


@pytest.mark.django_db
def test_price_change_adds_a_row_and_keeps_history(tmp_path):
    apply(tmp_path, BASE)
    apply(tmp_path, BASE.replace("output_per_mtok: 0.60", "output_per_mtok: 0.70"))

    outputs = [str(p.output_per_mtok.normalize()) for p in Price.objects.order_by("effective_from")]
    assert outputs == ["0.6", "0.7"]


BROKEN = {
    "unknown-provider": ("deployments: [{provider: ghost, model: x}]", "line 8", "ghost"),
    "bad-kind": ("deployments: [{provider: p, model: x}]", "line 3", "kind 'nope'"),
    "negative-price": (
        "price: {input_per_mtok: -1, output_per_mtok: 1}",
        "line 8",
        "must be a number",
    ),
}


@pytest.mark.django_db
@pytest.mark.parametrize(("line", "where", "reason"), BROKEN.values(), ids=BROKEN.keys())
def test_a_file_with_an_error_is_rejected_whole(tmp_path, line, where, reason):
    kind = "nope" if "bad-kind" in reason or "nope" in reason else "openai"
    text = f"""
providers:
  - {{name: p, kind: {kind}, base_url: "http://127.0.0.1:1/v1"}}
models:
  - name: good-model
    deployments: [{{provider: p, model: x}}]
  - name: bad-model
    {line}
"""
    if "price" in line:
        text += "    deployments: [{provider: p, model: x}]\n"
    with pytest.raises(CommandError) as failure:
        apply(tmp_path, text)

    assert where in str(failure.value) and reason in str(failure.value)
    assert not LanguageModel.objects.exists() and not Provider.objects.exists()


@pytest.mark.django_db
def test_invalid_yaml_names_the_line(tmp_path):
    with pytest.raises(CommandError, match="line 3"):
        apply(tmp_path, "providers:\n  - {name: a\nmodels: [\n")


@pytest.mark.django_db
def test_create_api_key_prints_the_key_last():
    out = io.StringIO()
    call_command(
        "create_api_key", "--tenant", "newco", "--name", "ci", "--models", "a,b", stdout=out
    )
    key = out.getvalue().strip().splitlines()[-1]

    from portal.models import ApiKey
    from portal.services import hash_secret

    stored = ApiKey.objects.get(secret_hash=hash_secret(key))
    assert stored.tenant.slug == "newco" and stored.allowed_models == ["a", "b"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ("strategy: fastest", "'strategy' must be one of"),
        ("fallbacks: [ghost]", "fallback model 'ghost' is not defined"),
        ("fallbacks: [m]", "can't fall back to itself"),
        ("fallback_on: [bad_luck]", "'fallback_on' must list"),
        ("retries: 99", "'retries' must be an integer from 0 to 10"),
    ],
)
def test_routing_fields_are_validated(tmp_path, fields, reason):
    text = f"""
providers:
  - {{name: p, kind: openai, base_url: "http://127.0.0.1:1/v1"}}
models:
  - name: m
    {fields}
    deployments: [{{provider: p, model: x}}]
"""
    with pytest.raises(CommandError, match=reason):
        apply(tmp_path, text)


def test_the_readme_examples_are_valid_config(monkeypatch):
    """The YAML the README shows parses, so a copied example works."""
    import re
    from pathlib import Path

    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "AZURE_KEY"):
        monkeypatch.setenv(var, "sk-example")
    readme = Path(__file__).resolve().parents[2] / "README.md"
    blocks = re.findall(r"```yaml\n(.*?)```", readme.read_text(), re.S)
    providers, routing = blocks[0].split("models:")[0], blocks[1]
    spec = config.parse(providers + routing)
    assert [m.name for m in spec.models] == ["chat", "claude-chat", "coder", "auto"]
    assert [r.name for r in spec.rules] == [
        "code-questions",
        "acme-in-the-eu",
        "big-prompts",
        "nightly-batch",
    ]
    assert spec.models[0].deployments[1].timeouts["first_token"] == 10.0
    assert spec.models[0].deployments[1].timeouts["idle"] == 60.0  # the model's default
