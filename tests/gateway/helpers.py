"""Setting up tenants, keys and models for gateway tests through the real services."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import httpx
from django.conf import settings

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


@contextlib.contextmanager
def another_gateway(**env: str) -> Iterator[str]:
    """A second gateway process on the test database and Redis; yields its base URL."""
    db = settings.DATABASES["default"]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    environment = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "OUTBOUND_ALLOWED_NETWORKS": settings.OUTBOUND_ALLOWED_NETWORKS,  # fakes on loopback
        **env,
    }
    command = [sys.executable, "-m", "uvicorn", "waystation.asgi:application"]
    proc = subprocess.Popen(
        [*command, "--port", str(port), "--log-level", "warning"], env=environment
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                httpx.get(base + "/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)
