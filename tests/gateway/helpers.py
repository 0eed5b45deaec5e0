"""Setting up tenants, keys and models for gateway tests through the real services."""

from __future__ import annotations

import textwrap

from gateway import config
from portal import services


def apply_yaml(text: str) -> None:
    config.apply(config.parse(textwrap.dedent(text)))


def new_key(
    *, tenant: str = "acme", all_models: bool = True, models: list[str] | None = None
) -> str:
    owner = services.tenant_get_or_create(slug=tenant)
    return services.api_key_create(
        tenant=owner, name="test", all_models=all_models, models=models
    ).secret


DEMO = """
providers:
  - {name: demo, kind: demo}
models:
  - name: demo-chat
    price: {input_per_mtok: 1, output_per_mtok: 2}
    deployments: [{provider: demo, model: demo-chat}]
  - name: demo-embed
    mode: embedding
    price: {input_per_mtok: 0.02, output_per_mtok: 0}
    deployments: [{provider: demo, model: demo-embed}]
"""
