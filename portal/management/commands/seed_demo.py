"""The quick-start demo: tenant `demo`, an operator login, the demo provider and one key."""

import os
import secrets as pysecrets

from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from gateway import config
from portal import services
from portal.models import ApiKey, Membership, Product, Role

DEMO_CONFIG = """
providers:
  - {name: demo, kind: demo}
models:
  - name: demo-chat
    context_window: 32000
    price: {input_per_mtok: 0.10, output_per_mtok: 0.40}
    deployments: [{provider: demo, model: demo-chat}]
  - name: demo-embed
    mode: embedding
    price: {input_per_mtok: 0.02, output_per_mtok: 0}
    deployments: [{provider: demo, model: demo-embed}]
"""


class Command(BaseCommand):
    help = "Seed the demo tenant, operator and key (idempotent); prints how to call the gateway."

    def handle(self, *args, **options):
        config.apply(config.parse(DEMO_CONFIG))
        tenant = services.tenant_get_or_create(slug="demo", name="Demo")
        if not Product.objects.filter(slug="demo-models").exists():
            services.product_create(
                actor=services.SYSTEM,
                owner=None,
                name="Demo models",
                slug="demo-models",
                description="The built-in demo provider's chat and embedding models.",
                models=["demo-chat", "demo-embed"],
                status="published",
            )
        port = os.environ.get("PORT", "8000")
        base = f"http://127.0.0.1:{port}"
        self._operator(tenant)
        if ApiKey.objects.filter(tenant=tenant, name="demo", revoked_at__isnull=True).exists():
            self.stdout.write("Demo already seeded; its key was printed on first run.")
            self.stdout.write(
                "New key: python manage.py create_api_key --tenant demo --name x --all-models"
            )
            return
        key = services.api_key_create(tenant=tenant, name="demo", all_models=True).secret
        self.stdout.write(SNIPPET.format(key=key, base=base))

    def _operator(self, tenant) -> None:
        user_model = get_user_model()
        if user_model.objects.filter(username="operator").exists():
            return
        password = os.environ.get("WAYSTATION_OPERATOR_PASSWORD") or pysecrets.token_urlsafe(12)
        user = user_model.objects.create_superuser("operator", "operator@example.com", password)
        Membership.objects.create(user=user, tenant=tenant, role=Role.OWNER)
        EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
        port = os.environ.get("PORT", "8000")
        self.stdout.write(
            f"Operator login: operator / {password}  (http://127.0.0.1:{port}/portal/)"
        )


SNIPPET = """
Your demo API key (shown once): {key}

curl:
  curl {base}/v1/chat/completions \\
    -H "Authorization: Bearer {key}" -H "Content-Type: application/json" \\
    -d '{{"model": "demo-chat", "messages": [{{"role": "user", "content": "Hello!"}}]}}'

openai SDK (pip install openai):
  from openai import OpenAI
  client = OpenAI(base_url="{base}/v1", api_key="{key}")
  reply = client.chat.completions.create(
      model="demo-chat", messages=[{{"role": "user", "content": "Hello!"}}]
  )
  print(reply.choices[0].message.content)
"""
