"""The embedded quick start (what `make run` does), end to end in a subprocess: SQLite, no Redis."""

import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    data = tmp_path_factory.mktemp("embedded")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DATABASE_URL=f"sqlite:///{data / 'db.sqlite3'}", PORT=str(port))
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
    seeded = subprocess.run(
        [*manage, "seed_demo"], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    ).stdout
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "waystation.asgi:application",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.get(base + "/healthz", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    yield seeded, base, data / "db.sqlite3"
    server.terminate()
    server.wait(timeout=10)


def test_the_printed_curl_works(embedded):
    seeded, base, _ = embedded
    curl = re.search(r"^  curl .*?'\n", seeded, re.S | re.M).group(0).replace("\\\n", " ")

    out = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, check=True).stdout

    assert '"object":"chat.completion"' in out and "You said: Hello!" in out


def test_the_printed_sdk_snippet_works_and_usage_lands_in_sqlite(embedded):
    seeded, base, db = embedded
    snippet = seeded[seeded.index("  from openai import OpenAI") :]
    code = "\n".join(line[2:] for line in snippet.splitlines())

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert "You said: Hello!" in out.stdout
    key = re.search(r"api_key=\"(wsk-[^\"]+)\"", seeded).group(1)
    stream = openai.OpenAI(base_url=base + "/v1", api_key=key).chat.completions.create(
        model="demo-chat", messages=[{"role": "user", "content": "s"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices).endswith("s")
    for _ in range(50):
        rows = sqlite3.connect(db).execute("select count(*) from billing_usageevent").fetchone()[0]
        if rows >= 2:
            break
        time.sleep(0.1)
    assert rows >= 2  # at least the snippet and the stream
