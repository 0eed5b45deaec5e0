"""An API key under every kind of limit, set high enough never to refuse: for bench/run.py's
limits phase. Prints the key on its last line. Usage: .venv/bin/python bench/limited_key.py
"""

from __future__ import annotations

import os
import sys
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "waystation.settings")

import django  # noqa: E402

django.setup()

from billing import controls  # noqa: E402
from portal import services  # noqa: E402
from portal.models import Application  # noqa: E402
from portal.services.common import SYSTEM  # noqa: E402

tenant = services.tenant_get_or_create(slug="bench-limited")
app = Application.objects.filter(tenant=tenant, name="bench").first()
if app is None:
    app = services.application_create(actor=SYSTEM, tenant=tenant, name="bench")
issued = services.api_key_create(tenant=tenant, name="limited", all_models=True, application=app)
key = issued.api_key
controls.rate_limit_set(actor=SYSTEM, tenant=tenant, requests_per_minute=10_000_000)
controls.rate_limit_set(actor=SYSTEM, tenant=tenant, application=app, tokens_per_minute=10**9)
controls.rate_limit_set(actor=SYSTEM, tenant=tenant, api_key=key, concurrent=100_000)
controls.rate_limit_set(
    actor=SYSTEM, tenant=tenant, api_key=key, model="bench-json", requests_per_minute=10_000_000
)
controls.budget_set(actor=SYSTEM, tenant=tenant, amount_usd=Decimal("1000000"))
controls.budget_set(
    actor=SYSTEM, tenant=tenant, api_key=key, amount_usd=Decimal("1000000"), period="daily"
)
print(issued.secret)
