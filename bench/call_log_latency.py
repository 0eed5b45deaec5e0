"""What keeping call bodies adds, for bench/run.py's call-log phase.

Two keys on the same gateway and model (`bench-json`): one of a tenant that keeps call bodies
(the default), one of a tenant that switched them off. Requests alternate between them, one
keep-alive connection each, so drift hits both alike; the difference of the p50s is what
capturing, rendering, compressing and shipping the bodies costs a call. Prints JSON.

Usage: .venv/bin/python bench/call_log_latency.py GATEWAY_PORT [ROUNDS]
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "waystation.settings")

import django  # noqa: E402

django.setup()

from bench.prompt_latency import Client  # noqa: E402
from portal import services  # noqa: E402
from portal.models import Tenant  # noqa: E402

MODEL = "bench-json"
BODY = {
    "model": MODEL,
    "max_tokens": 64,
    "messages": [
        {"role": "system", "content": "You are the support assistant of an online shop."},
        {"role": "user", "content": "Where is my parcel? It was due on Tuesday. " * 8},
    ],
}


def key(logged: bool) -> str:
    slug = f"bench-log-{'on' if logged else 'off'}-{uuid.uuid4().hex[:6]}"
    tenant = services.tenant_get_or_create(slug=slug)
    Tenant.objects.filter(pk=tenant.pk).update(log_bodies=logged)
    return services.api_key_create(tenant=tenant, name="bench", all_models=True).secret


def main() -> None:
    port = int(sys.argv[1])
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 500
    on, off = Client(port, key(True)), Client(port, key(False))
    path = "/v1/chat/completions"
    for _ in range(30):
        on.post(path, BODY)
        off.post(path, BODY)
    timings: dict[str, list[float]] = {"bodies_off": [], "bodies_on": []}
    for _ in range(rounds):
        timings["bodies_off"].append(off.post(path, BODY))
        timings["bodies_on"].append(on.post(path, BODY))
    p50 = {name: round(statistics.median(values), 3) for name, values in timings.items()}
    added = round(p50["bodies_on"] - p50["bodies_off"], 3)
    print(json.dumps({"rounds": rounds, "p50_ms": p50, "added_p50_ms": added}))


if __name__ == "__main__":
    main()
