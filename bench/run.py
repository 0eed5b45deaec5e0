#!/usr/bin/env python3
"""Waystation benchmark harness (stdlib only; run via bench/run.sh or `make bench`).

One run on this machine measures a fast fake OpenAI upstream loaded
  1. directly, 2. through Waystation, 3. through LiteLLM proxy, 4. through Portkey gateway
with the same request bodies (only the model name / routing headers differ):
  * non-streaming POST /v1/chat/completions with wrk at 1, 50 and 200 connections
    (upstream: nginx `return 200 '<json>'`),
  * streaming at 200 concurrent SSE streams with bench/load/stream_load.mjs
    (upstream: bench/upstream/sse_server.mjs, 20 chunks 10 ms apart),
  * RSS of each gateway's process tree at the end of its run.
Writes bench/RESULTS.md and raw outputs under bench/out/<timestamp>/ (bench/out/latest).

Environment knobs (all optional):
  BENCH_DURATION=10         seconds per measured scenario
  BENCH_WARMUP=2            seconds of unrecorded load before each scenario (0 = none)
  BENCH_ONLY=direct,waystation,litellm,portkey   targets to run (order is fixed)
  BENCH_CONCURRENCY=1,50,200  wrk connection counts
  BENCH_STREAM_CONCURRENCY=200
  BENCH_CHUNKS=20 BENCH_CHUNK_MS=10   fake stream shape
  BENCH_WRK_THREADS=2 BENCH_NGINX_WORKERS=1
  BENCH_JSON_PORT=18081 BENCH_SSE_PORT=18082 BENCH_WAYSTATION_PORT=18090
  BENCH_LITELLM_PORT=18091 BENCH_PORTKEY_PORT=18092   (a busy port is replaced by a free one)
  BENCH_WS_START_TIMEOUT=30 BENCH_PEER_START_TIMEOUT=180
  BENCH_RESULTS=bench/RESULTS.md   where to write the report
  BENCH_CAPACITY=1          the capacity phase (0 skips it); BENCH_CAPACITY_PROCESSES=1,2,4
  BENCH_CAPACITY_CONCURRENCY=50 BENCH_CAPACITY_REQUESTS=500 (per-request cost sample)
  Waystation commands: see WAYSTATION_* below (BENCH_WS_* overrides).
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PEERS = BENCH / ".peers"

# --------------------------------------------------------------------------------------
# How Waystation is started.  Edit here (or override with the BENCH_WS_* env vars) if the
# gateway's entry points change.  Commands run with bash in the repo root; `{port}` is the
# listen port.  BENCH_JSON_PORT / BENCH_SSE_PORT are exported for apply_config.
# --------------------------------------------------------------------------------------
WAYSTATION_ENV = {
    "DATABASE_URL": os.environ.get(
        "BENCH_WS_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/waystation_bench"
    ),
    "REDIS_URL": os.environ.get("BENCH_WS_REDIS_URL", "redis://127.0.0.1:6379/5"),
    # The peers don't cache by default; the comparison is of proxying. The cache phase uses
    # `bench-cached`, whose own policy turns it on.
    "GATEWAY_CACHE_MODE": "off",
    # The bench upstreams listen on loopback, which the outbound policy refuses by default.
    "OUTBOUND_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128",
}
# Each setup step must exit 0, else the Waystation leg is skipped.
WAYSTATION_SETUP = os.environ.get(
    "BENCH_WS_SETUP",
    "\n".join(
        [
            # A fresh database and Redis index each run: usage rows of earlier runs would slow
            # the worker's queries (budget checks) and make runs incomparable.
            "dropdb -h 127.0.0.1 -U postgres --if-exists --force waystation_bench",
            "createdb -h 127.0.0.1 -U postgres waystation_bench",
            "redis-cli -n 5 flushdb >/dev/null",
            ".venv/bin/python manage.py migrate --noinput",
            ".venv/bin/python manage.py apply_config bench/config.yaml",
        ]
    ),
).splitlines()
# Prints the API key on its last stdout line (BENCH_WS_KEY=... skips it).
WAYSTATION_KEY_CMD = os.environ.get(
    "BENCH_WS_KEY_CMD",
    ".venv/bin/python manage.py create_api_key --tenant bench --name bench --all-models | tail -1",
)
WAYSTATION_SERVER_CMD = os.environ.get(
    "BENCH_WS_SERVER_CMD",
    ".venv/bin/uvicorn waystation.asgi:application --host 127.0.0.1 --port {port} --workers 2"
    " --loop uvloop --http httptools --no-access-log --log-level warning",
)
# Drains usage events; empty string disables it.
WAYSTATION_WORKER_CMD = os.environ.get(
    "BENCH_WS_WORKER_CMD", ".venv/bin/celery -A waystation worker -l warning -c 1"
)
WAYSTATION_JSON_MODEL = os.environ.get("BENCH_WS_JSON_MODEL", "bench-json")
# Four deployments of the same upstream and ten rules evaluated (bench/config.yaml).
WAYSTATION_ROUTED_MODEL = os.environ.get("BENCH_WS_ROUTED_MODEL", "bench-json-4")
TARGET_ROUTING_ADDED_P50_MS = 0.3
# Every kind of limit (rpm, tpm, concurrent; tenant, application, key, model) and two budgets.
WAYSTATION_LIMITED_KEY_CMD = os.environ.get(
    "BENCH_WS_LIMITED_KEY_CMD", ".venv/bin/python bench/limited_key.py | tail -1"
)
TARGET_LIMITS_ADDED_P50_MS = 0.5
PROMPT_ROUNDS = int(os.environ.get("BENCH_PROMPT_ROUNDS", "300"))
CALL_LOG_ROUNDS = int(os.environ.get("BENCH_CALL_LOG_ROUNDS", "500"))
TARGET_CALL_LOG_ADDED_P50_MS = 0.5
# The cache phase (bench/cache_latency.py): entries in the semantic partition, and targets.
CACHE_ENTRIES = int(os.environ.get("BENCH_CACHE_ENTRIES", "10000"))
TARGET_CACHE_EXACT_OVER_BASE_MS = 2.0  # an exact hit, against the gateway's own overhead
TARGET_CACHE_SEMANTIC_MS = 15.0  # a semantic lookup, embedding included
TARGET_CONTEXT_P50_MS = 5.0  # assembling a 200-turn conversation's context
TARGET_GUARDRAILS_P50_MS = 1.0  # the default guardrail policy on a 2 KB prompt
WAYSTATION_SSE_MODEL = os.environ.get("BENCH_WS_SSE_MODEL", "bench-sse")
# The capacity phase (bench/capacity.py): N single-process gateways behind a second nginx.
CAPACITY = os.environ.get("BENCH_CAPACITY", "1").strip() not in ("0", "false", "no", "off")
CAPACITY_PROCESSES = os.environ.get("BENCH_CAPACITY_PROCESSES", "1,2,4")
CAPACITY_CONCURRENCY = int(os.environ.get("BENCH_CAPACITY_CONCURRENCY", "50"))
CAPACITY_REQUESTS = int(os.environ.get("BENCH_CAPACITY_REQUESTS", "500"))
CAPACITY_TARGET_RPS = 20_000  # what the capacity model sizes a deployment for
WAYSTATION_CAPACITY_SERVER_CMD = os.environ.get(
    "BENCH_WS_CAPACITY_SERVER_CMD",
    ".venv/bin/uvicorn waystation.asgi:application --host 127.0.0.1 --port {port} --workers 1"
    " --loop uvloop --http httptools --no-access-log --log-level warning",
)

LITELLM_MASTER_KEY = "sk-bench"
UPSTREAM_MODEL = "gpt-4o-mini"
UPSTREAM_KEY = "bench"

# Targets from the brief, checked against Waystation (and shown for the peers).
TARGET_ADDED_P50_MS = 1.0
TARGET_ADDED_P99_MS = 5.0
TARGET_STREAM_RATIO = 0.90
TARGET_ADDED_TTFT_P50_MS = 5.0
TARGET_RSS_MB = 150.0

ALL_TARGETS = ["direct", "waystation", "litellm", "portkey"]
PEER_NAMES = ["litellm", "portkey"]
LABELS = {
    "direct": "direct",
    "waystation": "Waystation",
    "litellm": "LiteLLM",
    "portkey": "Portkey",
}


def env_int(name, default):
    v = os.environ.get(name, "").strip()
    return int(v) if v else default


def env_float(name, default):
    v = os.environ.get(name, "").strip()
    return float(v) if v else default


DURATION = env_float("BENCH_DURATION", 10.0)
WARMUP = env_float("BENCH_WARMUP", min(2.0, DURATION))
ONLY = [
    t.strip().lower()
    for t in os.environ.get("BENCH_ONLY", ",".join(ALL_TARGETS)).split(",")
    if t.strip()
]
CONCURRENCY = [
    int(c) for c in os.environ.get("BENCH_CONCURRENCY", "1,50,200").split(",") if c.strip()
]
STREAM_CONC = env_int("BENCH_STREAM_CONCURRENCY", 200)
CHUNKS = env_int("BENCH_CHUNKS", 20)
CHUNK_MS = env_int("BENCH_CHUNK_MS", 10)
WRK_THREADS = env_int("BENCH_WRK_THREADS", 2)
NGINX_WORKERS = env_int("BENCH_NGINX_WORKERS", 1)
WS_START_TIMEOUT = env_float("BENCH_WS_START_TIMEOUT", 30.0)
PEER_START_TIMEOUT = env_float("BENCH_PEER_START_TIMEOUT", 180.0)
RESULTS_MD = Path(os.environ.get("BENCH_RESULTS", str(BENCH / "RESULTS.md")))
if not RESULTS_MD.is_absolute():
    RESULTS_MD = ROOT / RESULTS_MD

NONSTREAM_MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Say hello in one short sentence."},
]


def nonstream_body(model):
    return {"model": model, "messages": NONSTREAM_MESSAGES, "max_tokens": 64, "temperature": 0}


def stream_body(model):
    return {
        "model": model,
        "messages": NONSTREAM_MESSAGES,
        "max_tokens": 64,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


# --------------------------------------------------------------------------------------
# small utilities
# --------------------------------------------------------------------------------------
OUT: Path = BENCH / "out"
LOGF = None


def log(msg):
    line = f"[{time.strftime('%H:%M:%S')}] {msg}"
    print(line, flush=True)
    if LOGF:
        LOGF.write(line + "\n")
        LOGF.flush()


def port_free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def pick_port(envname, default):
    want = env_int(envname, default)
    if port_free(want):
        return want
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        p = s.getsockname()[1]
    log(f"port {want} ({envname}) busy, using {p}")
    return p


def wait_port(port, timeout, proc=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.2)
    return False


def http_post(port, path, body, headers, timeout=10.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = json.dumps(body).encode()
        h = {"Content-Type": "application/json", **headers}
        conn.request("POST", path, body=data, headers=h)
        r = conn.getresponse()
        data = r.read().decode("utf-8", "replace")
        http_post.last_headers = dict(r.getheaders())
        return r.status, data
    finally:
        conn.close()


def tail(path, n=15):
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    lines = [ln for ln in lines if ln.strip()]
    return "\n".join(lines[-n:])


def sh_out(cmd, timeout=20):
    try:
        r = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=timeout)
        return (r.stdout + r.stderr).strip()
    except Exception as e:  # noqa: BLE001
        return f"? ({e})"


# --------------------------------------------------------------------------------------
# process management (everything we start gets its own session; we stop it by pgid)
# --------------------------------------------------------------------------------------
STARTED: list[subprocess.Popen] = []


def start_proc(name, cmd, cwd=None, env=None, shell=False):
    logpath = OUT / f"{name}.log"
    f = open(logpath, "ab")  # noqa: SIM115
    p = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        shell=shell,
        stdout=f,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        executable="/bin/bash" if shell else None,
    )
    p.bench_name = name  # type: ignore[attr-defined]
    p.bench_log = logpath  # type: ignore[attr-defined]
    STARTED.append(p)
    return p


def stop_proc(p, grace=15.0):
    if p is None:
        return
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    # leftovers of the group (workers, resource trackers, ...)
    try:
        os.killpg(p.pid, 0)
        alive = True
    except (ProcessLookupError, PermissionError):
        alive = False
    if alive:
        end = time.monotonic() + 3
        while time.monotonic() < end:
            try:
                os.killpg(p.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    try:
        p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    if p in STARTED:
        STARTED.remove(p)


def stop_all():
    for p in list(reversed(STARTED)):
        stop_proc(p, grace=10)


# --------------------------------------------------------------------------------------
# /proc sampling: RSS and CPU of process trees
# --------------------------------------------------------------------------------------
PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")


def proc_table():
    table = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        r = st.rfind(")")
        fields = st[r + 2 :].split()
        table[int(d)] = {
            "ppid": int(fields[1]),
            "comm": st[st.find("(") + 1 : r],
            "cpu_ticks": int(fields[11]) + int(fields[12]),
            "rss": int(fields[21]) * PAGE,
        }
    return table


def tree_pids(root, table):
    kids = {}
    for pid, info in table.items():
        kids.setdefault(info["ppid"], []).append(pid)
    out, stack = [], [root]
    while stack:
        pid = stack.pop()
        if pid in table:
            out.append(pid)
            stack.extend(kids.get(pid, []))
    return out


def tree_pids_all(roots, table=None):
    table = table or proc_table()
    return [p for r in roots for p in tree_pids(r, table)]


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()[:160]
    except OSError:
        return ""


def tree_stats(roots, table=None):
    table = table or proc_table()
    pids = []
    for r in roots:
        pids.extend(tree_pids(r, table))
    procs = [
        {
            "pid": p,
            "rss_mb": round(table[p]["rss"] / 2**20, 1),
            "cmd": cmdline(p) or table[p]["comm"],
        }
        for p in pids
    ]
    rss = [table[p]["rss"] for p in pids]
    return {
        "processes": len(pids),
        "rss_total_mb": round(sum(rss) / 2**20, 1),
        "rss_mean_mb": round(sum(rss) / len(rss) / 2**20, 1) if rss else 0.0,
        "rss_max_mb": round(max(rss) / 2**20, 1) if rss else 0.0,
        "cpu_ticks": sum(table[p]["cpu_ticks"] for p in pids),
        "procs": procs,
    }


class PeakSampler(threading.Thread):
    """Samples the RSS of each role's process tree once a second (peak values)."""

    def __init__(self, roots):
        super().__init__(daemon=True)
        self.roots = dict(roots)  # role -> pid
        self.peaks = {role: {"rss_total_mb": 0.0, "rss_max_mb": 0.0} for role in self.roots}
        self._stop = threading.Event()

    def run(self):
        while not self._stop.wait(1.0):
            try:
                table = proc_table()
                for role, pid in self.roots.items():
                    s = tree_stats([pid], table)
                    pk = self.peaks[role]
                    pk["rss_total_mb"] = max(pk["rss_total_mb"], s["rss_total_mb"])
                    pk["rss_max_mb"] = max(pk["rss_max_mb"], s["rss_max_mb"])
            except Exception:  # noqa: BLE001, S112
                continue

    def stop(self):
        self._stop.set()


def wait_tree_stable(root, timeout, settle=4.0, min_procs=1):
    """Wait until the pid set of the tree stays the same for `settle` seconds.

    LiteLLM's uvicorn supervisor restarts workers that are slow to import, so a healthy
    HTTP answer alone does not mean both workers are up."""
    end = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while time.monotonic() < end:
        pids = frozenset(tree_pids(root, proc_table()))
        if pids != last:
            last, since = pids, time.monotonic()
        elif len(pids) >= min_procs and time.monotonic() - since >= settle:
            return True
        time.sleep(0.5)
    return False


# --------------------------------------------------------------------------------------
# targets
# --------------------------------------------------------------------------------------
class Skip(Exception):
    pass


class Target:
    def __init__(self, name):
        self.name = name
        self.label = LABELS[name]
        self.port = None
        self.procs = []  # (role, Popen)
        self.mem_roots = {}  # role -> pid
        self.version = ""
        self.json_model = UPSTREAM_MODEL
        self.sse_model = UPSTREAM_MODEL
        self.json_headers = {}
        self.sse_headers = {}
        self.json_port = None
        self.sse_port = None
        self.notes = []

    def json_url(self):
        return f"http://127.0.0.1:{self.json_port}/v1/chat/completions"

    def sse_url(self):
        return f"http://127.0.0.1:{self.sse_port}/v1/chat/completions"

    def stop(self):
        for _role, p in reversed(self.procs):
            stop_proc(p)
        self.procs = []


def make_direct(up):
    t = Target("direct")
    t.json_port, t.sse_port = up["json_port"], up["sse_port"]
    t.json_headers = t.sse_headers = {"Authorization": f"Bearer {UPSTREAM_KEY}"}
    t.version = f"nginx {up['nginx_version']} + node SSE server"
    return t


def start_litellm(up, port):
    t = Target("litellm")
    exe = PEERS / "litellm" / "bin" / "litellm"
    if not exe.exists():
        raise Skip(f"{exe} missing (run bench/setup_peers.sh)")
    t.version = sh_out(
        f"{PEERS}/litellm/bin/python -c "
        "\"import importlib.metadata as m; print(m.version('litellm'))\""
    )
    cfg = OUT / "litellm-config.yaml"
    cfg.write_text(
        "# generated by bench/run.py\n"
        "model_list:\n"
        "  - model_name: bench-json\n"
        "    litellm_params:\n"
        f"      model: openai/{UPSTREAM_MODEL}\n"
        f"      api_base: http://127.0.0.1:{up['json_port']}/v1\n"
        f"      api_key: {UPSTREAM_KEY}\n"
        "  - model_name: bench-sse\n"
        "    litellm_params:\n"
        f"      model: openai/{UPSTREAM_MODEL}\n"
        f"      api_base: http://127.0.0.1:{up['sse_port']}/v1\n"
        f"      api_key: {UPSTREAM_KEY}\n"
        # as in LiteLLM's own benchmark docs: no callbacks, no retries
        "litellm_settings:\n"
        "  set_verbose: false\n"
        "  telemetry: false\n"
        "  callbacks: []\n"
        "  num_retries: 0\n"
        "  request_timeout: 30\n"
        "general_settings:\n"
        f"  master_key: {LITELLM_MASTER_KEY}\n"
    )
    # Clean environment: no DATABASE_URL/REDIS_URL leaking in (that would switch on its DB and
    # caching features), local model cost map (no fetch at import), quiet logs.
    home = OUT / "litellm-home"
    home.mkdir(exist_ok=True)
    env = {
        "PATH": f"{PEERS}/litellm/bin:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "ERROR",
        "LITELLM_MODE": "PRODUCTION",
        "NO_DOCS": "True",
    }
    cmd = [
        str(exe),
        "--config",
        str(cfg),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "2",
    ]
    p = start_proc("litellm", cmd, cwd=str(OUT), env=env)
    t.procs.append(("server", p))
    t.mem_roots["server"] = p.pid
    t.port = port
    t.json_port = t.sse_port = port
    t.json_model, t.sse_model = "bench-json", "bench-sse"
    t.json_headers = t.sse_headers = {"Authorization": f"Bearer {LITELLM_MASTER_KEY}"}
    if not wait_port(port, PEER_START_TIMEOUT, p):
        t.stop()
        raise Skip(
            f"LiteLLM did not listen on {port} within {PEER_START_TIMEOUT:.0f}s:\n"
            + tail(p.bench_log)
        )
    # 2 workers + the supervisor (+ multiprocessing resource tracker)
    if not wait_tree_stable(p.pid, PEER_START_TIMEOUT, settle=5.0, min_procs=3):
        t.notes.append("worker set was still changing when the run started")
    return t


def start_portkey(up, port):
    t = Target("portkey")
    root = PEERS / "portkey"
    entry = root / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
    if not entry.exists():
        raise Skip(f"{entry} missing (run bench/setup_peers.sh)")

    def pkgver(name):
        try:
            return json.loads((root / "node_modules" / name / "package.json").read_text())[
                "version"
            ]
        except Exception:  # noqa: BLE001
            return "?"

    t.version = (
        f"@portkey-ai/gateway {pkgver('@portkey-ai/gateway')} (hono {pkgver('hono')}, "
        f"@hono/node-server {pkgver('@hono/node-server')}, @hono/node-ws {pkgver('@hono/node-ws')})"
    )
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(OUT), "NODE_ENV": "production"}
    p = start_proc(
        "portkey", ["node", str(entry), f"--port={port}", "--headless"], cwd=str(root), env=env
    )
    t.procs.append(("server", p))
    t.mem_roots["server"] = p.pid
    t.port = port
    t.json_port = t.sse_port = port
    auth = {"Authorization": f"Bearer {UPSTREAM_KEY}", "x-portkey-provider": "openai"}
    t.json_headers = {**auth, "x-portkey-custom-host": f"http://127.0.0.1:{up['json_port']}/v1"}
    t.sse_headers = {**auth, "x-portkey-custom-host": f"http://127.0.0.1:{up['sse_port']}/v1"}
    if not wait_port(port, PEER_START_TIMEOUT, p):
        t.stop()
        raise Skip(
            f"Portkey did not listen on {port} within {PEER_START_TIMEOUT:.0f}s:\n"
            + tail(p.bench_log)
        )
    time.sleep(1.5)  # it prints a 1 s start-up spinner before it is really ready
    return t


def start_waystation(up, port):
    t = Target("waystation")
    t.version = "git " + sh_out(
        f"git -C {shlex.quote(str(ROOT))} describe --always --dirty 2>/dev/null "
        f"|| git -C {shlex.quote(str(ROOT))} rev-parse --short HEAD"
    )
    env = dict(os.environ)
    env.update(WAYSTATION_ENV)
    env["BENCH_JSON_PORT"] = str(up["json_port"])
    env["BENCH_SSE_PORT"] = str(up["sse_port"])
    setup_log = OUT / "waystation-setup.log"
    for step in [s for s in WAYSTATION_SETUP if s.strip()]:
        log(f"  waystation setup: {step}")
        with open(setup_log, "a") as f:
            f.write(f"$ {step}\n")
            f.flush()
            try:
                r = subprocess.run(
                    step,
                    shell=True,
                    executable="/bin/bash",
                    cwd=ROOT,
                    env=env,
                    stdout=f,
                    stderr=subprocess.STDOUT,
                    timeout=300,
                )
            except subprocess.TimeoutExpired:
                raise Skip(f"setup step timed out: {step}") from None
        if r.returncode != 0:
            raise Skip(f"setup step failed (exit {r.returncode}): {step}\n" + tail(setup_log, 8))
    key = os.environ.get("BENCH_WS_KEY", "").strip()
    if not key:
        log(f"  waystation key: {WAYSTATION_KEY_CMD}")
        r = subprocess.run(
            WAYSTATION_KEY_CMD,
            shell=True,
            executable="/bin/bash",
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        with open(setup_log, "a") as f:
            f.write(f"$ {WAYSTATION_KEY_CMD}\n(exit {r.returncode})\n{r.stderr}\n")
        lines = [ln.strip() for ln in r.stdout.splitlines() if ln.strip()]
        if r.returncode != 0 or not lines:
            raise Skip(
                f"API key command failed (exit {r.returncode}): {WAYSTATION_KEY_CMD}\n"
                + (r.stderr.strip().splitlines() or [""])[-1]
            )
        key = lines[-1]
    t.json_model, t.sse_model = WAYSTATION_JSON_MODEL, WAYSTATION_SSE_MODEL
    t.json_headers = t.sse_headers = {"Authorization": f"Bearer {key}"}
    t.upstream_json_port = up["json_port"]  # the cache phase compares with it
    t.port = port
    t.json_port = t.sse_port = port
    if WAYSTATION_WORKER_CMD.strip():
        w = start_proc("waystation-celery", WAYSTATION_WORKER_CMD, cwd=ROOT, env=env, shell=True)
        t.procs.append(("celery", w))
        t.mem_roots["celery"] = w.pid
    s = start_proc(
        "waystation", WAYSTATION_SERVER_CMD.format(port=port), cwd=ROOT, env=env, shell=True
    )
    t.procs.append(("server", s))
    t.mem_roots["server"] = s.pid
    # Ready = answers a real chat completion within the start timeout.
    deadline = time.monotonic() + WS_START_TIMEOUT
    last = "no answer"
    while time.monotonic() < deadline:
        if s.poll() is not None:
            break
        try:
            status, body = http_post(
                port,
                "/v1/chat/completions",
                nonstream_body(t.json_model),
                t.json_headers,
                timeout=5,
            )
            if status == 200:
                break
            last = f"HTTP {status}: {body[:200]}"
        except OSError as e:
            last = str(e)
        time.sleep(0.5)
    else:
        t.stop()
        raise Skip(
            f"Waystation did not answer 200 within {WS_START_TIMEOUT:.0f}s ({last})\n"
            + tail(s.bench_log, 8)
        )
    if s.poll() is not None:
        t.stop()
        raise Skip(f"Waystation server exited (code {s.returncode}):\n" + tail(s.bench_log, 10))
    wait_tree_stable(s.pid, 15, settle=2.0, min_procs=1)
    return t


# --------------------------------------------------------------------------------------
# load generators
# --------------------------------------------------------------------------------------
def lua_str(s):
    return "[==[" + s + "]==]"


def write_wrk_script(t):
    path = OUT / f"wrk-{t.name}.lua"
    lines = [
        "-- generated by bench/run.py",
        'wrk.method = "POST"',
        f"wrk.body = {lua_str(json.dumps(nonstream_body(t.json_model), separators=(',', ':')))}",
        'wrk.headers["Content-Type"] = "application/json"',
    ]
    for k, v in t.json_headers.items():
        lines.append(f"wrk.headers[ {lua_str(k)} ] = {lua_str(v)}")
    lines.append(
        """
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"err_connect":%d,"err_read":%d,' ..
    '"err_write":%d,"err_status":%d,"err_timeout":%d,"lat_mean_us":%.1f,"lat_max_us":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end
"""
    )
    path.write_text("\n".join(lines))
    return path


def run_wrk(t, script, conc, seconds, tag):
    threads = max(1, min(WRK_THREADS, conc))
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{conc}",
        f"-d{seconds:g}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        t.json_url(),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    raw = OUT / f"wrk-{t.name}-c{conc}{tag}.txt"
    raw.write_text(f"$ {shlex.join(cmd)}\n{r.stdout}\n{r.stderr}")
    m = re.search(r"^WRKJSON (\{.*\})$", r.stdout, re.M)
    if r.returncode != 0 or not m:
        raise RuntimeError(f"wrk failed (exit {r.returncode}): {r.stderr.strip()[:300]}")
    d = json.loads(m.group(1))
    secs = d["duration_us"] / 1e6
    errs = d["err_connect"] + d["err_read"] + d["err_write"] + d["err_status"] + d["err_timeout"]
    return {
        "concurrency": conc,
        "threads": threads,
        "duration_s": round(secs, 3),
        "requests": d["requests"],
        "rps": d["requests"] / secs if secs else 0.0,
        "p50_ms": d["p50_us"] / 1000,
        "p90_ms": d["p90_us"] / 1000,
        "p99_ms": d["p99_us"] / 1000,
        "p999_ms": d["p999_us"] / 1000,
        "mean_ms": d["lat_mean_us"] / 1000,
        "max_ms": d["lat_max_us"] / 1000,
        "errors": errs,
        "errors_detail": {k: d[k] for k in d if k.startswith("err_") and d[k]},
        "raw": raw.name,
    }


def run_stream(t, conc, seconds, warmup, tag=""):
    cmd = [
        "node",
        str(BENCH / "load" / "stream_load.mjs"),
        "--url",
        t.sse_url(),
        "--concurrency",
        str(conc),
        "--duration",
        f"{seconds:g}",
        "--warmup",
        f"{warmup:g}",
        "--headers",
        json.dumps(t.sse_headers),
        "--body",
        json.dumps(stream_body(t.sse_model)),
        "--timeout",
        "30",
        "--grace",
        "5",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + warmup + 90)
    raw = OUT / f"stream-{t.name}-c{conc}{tag}.json"
    raw.write_text(r.stdout + (f"\n# stderr:\n{r.stderr}" if r.stderr else ""))
    if r.returncode != 0 or not r.stdout.strip():
        raise RuntimeError(f"stream client failed (exit {r.returncode}): {r.stderr.strip()[:300]}")
    d = json.loads(r.stdout.strip().splitlines()[-1])
    d["raw"] = raw.name
    return d


def validate(t):
    """One non-streaming and one streaming request must really reach our fake upstream."""
    for _ in range(5):  # a few, so the last one (whose headers are kept) is warm
        status, body = http_post(
            t.json_port, "/v1/chat/completions", nonstream_body(t.json_model), t.json_headers
        )
        if status != 200:
            break
    if status != 200:
        raise Skip(f"non-streaming check: HTTP {status}: {body[:300]}")
    try:
        content = json.loads(body)["choices"][0]["message"]["content"]
    except Exception:  # noqa: BLE001
        raise Skip(f"non-streaming check: unexpected body: {body[:300]}") from None
    if "fixed benchmark reply" not in (content or ""):
        raise Skip(f"non-streaming check: content not from the fake upstream: {content!r}")
    hdrs = getattr(http_post, "last_headers", {})
    (OUT / f"check-{t.name}-headers.json").write_text(json.dumps(hdrs, indent=1))
    own = {k.lower(): v for k, v in hdrs.items()}.get("x-litellm-overhead-duration-ms")
    if own:
        # LiteLLM's own view of its overhead, from one idle request (indicative only)
        t.notes.append(
            f"x-litellm-overhead-duration-ms on an idle check request: {float(own):.1f} ms"
        )
    cmd = [
        "node",
        str(BENCH / "load" / "stream_load.mjs"),
        "--url",
        t.sse_url(),
        "--concurrency",
        "1",
        "--requests",
        "1",
        "--headers",
        json.dumps(t.sse_headers),
        "--body",
        json.dumps(stream_body(t.sse_model)),
        "--timeout",
        "15",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    (OUT / f"stream-{t.name}-check.json").write_text(r.stdout + r.stderr)
    try:
        d = json.loads(r.stdout.strip().splitlines()[-1])
    except Exception:  # noqa: BLE001
        raise Skip(f"streaming check: client failed: {r.stderr.strip()[:300]}") from None
    if d["completed"] != 1:
        raise Skip(
            f"streaming check failed: errors={d['errors']} sample={str(d.get('sample'))[:300]}"
        )
    got = d["content_chunks_per_stream"]["min"]
    if got != CHUNKS:
        t.notes.append(
            f"stream check: {got} content frames arrived for {CHUNKS} sent (frames merged or split)"
        )
    if d["done_missing"]:
        t.notes.append("stream check: no `data: [DONE]` frame")
    if not d["usage_chunk_seen"]:
        t.notes.append("stream check: no usage chunk although stream_options.include_usage")


# --------------------------------------------------------------------------------------
# upstreams
# --------------------------------------------------------------------------------------
def start_upstreams():
    up = {}
    up["json_port"] = pick_port("BENCH_JSON_PORT", 18081)
    up["sse_port"] = pick_port("BENCH_SSE_PORT", 18082)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    up["nginx_version"] = sh_out(f"{nginx} -v").replace("nginx version: nginx/", "")
    tmp = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
    up["nginx_tmp"] = tmp
    body = (BENCH / "upstream" / "chat_completion.json").read_text().strip()
    if "'" in body or "$" in body:
        raise SystemExit("upstream/chat_completion.json must not contain ' or $")
    conf = (BENCH / "upstream" / "nginx.conf.tmpl").read_text()
    conf = (
        conf.replace("@@TMP@@", str(tmp))
        .replace("@@PORT@@", str(up["json_port"]))
        .replace("@@WORKERS@@", str(NGINX_WORKERS))
        .replace("@@BODY@@", body)
    )
    (tmp / "nginx.conf").write_text(conf)
    shutil.copy(tmp / "nginx.conf", OUT / "nginx.conf")
    up["nginx"] = start_proc(
        "nginx",
        [nginx, "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-e", str(tmp / "error.log")],
    )
    up["sse"] = start_proc(
        "sse-upstream",
        [
            "node",
            str(BENCH / "upstream" / "sse_server.mjs"),
            "--port",
            str(up["sse_port"]),
            "--chunks",
            str(CHUNKS),
            "--interval-ms",
            str(CHUNK_MS),
        ],
    )
    for name, port, p in (
        ("nginx", up["json_port"], up["nginx"]),
        ("sse", up["sse_port"], up["sse"]),
    ):
        if not wait_port(port, 10, p):
            raise SystemExit(
                f"upstream {name} did not start on {port}:\n"
                + tail(p.bench_log)
                + "\n"
                + tail(tmp / "error.log")
            )
    return up


# --------------------------------------------------------------------------------------
# one target
# --------------------------------------------------------------------------------------
def bench_target(t):
    res = {
        "name": t.name,
        "label": t.label,
        "version": t.version,
        "nonstream": {},
        "stream": None,
        "memory": {},
        "notes": t.notes,
    }
    roots = list(t.mem_roots.values())
    pids_before = set(tree_pids_all(roots))
    sampler = PeakSampler(t.mem_roots) if roots else None
    if sampler:
        sampler.start()
    script = write_wrk_script(t)
    for c in CONCURRENCY:
        if WARMUP > 0:
            try:
                run_wrk(t, script, c, WARMUP, "-warmup")
            except Exception as e:  # noqa: BLE001
                log(f"  warm-up c={c} failed: {e}")
        cpu0 = tree_stats(roots)["cpu_ticks"] if roots else 0
        t0 = time.monotonic()
        try:
            r = run_wrk(t, script, c, DURATION, "")
        except Exception as e:  # noqa: BLE001
            log(f"  wrk c={c}: {e}")
            res["nonstream"][c] = {"concurrency": c, "failed": str(e)}
            continue
        if roots:
            r["cpu_cores"] = (
                (tree_stats(roots)["cpu_ticks"] - cpu0) / TICK / (time.monotonic() - t0)
            )
        res["nonstream"][c] = r
        log(
            f"  non-stream c={c:<3} {r['rps']:9.0f} req/s  p50 {r['p50_ms']:7.2f} ms  "
            f"p99 {r['p99_ms']:7.2f} ms  errors {r['errors']}"
        )
        time.sleep(1)
    cpu0 = tree_stats(roots)["cpu_ticks"] if roots else 0
    t0 = time.monotonic()
    try:
        s = run_stream(t, STREAM_CONC, DURATION, WARMUP)
        if roots:
            # CPU over warm-up + window (the client runs both back to back)
            s["cpu_cores"] = (
                (tree_stats(roots)["cpu_ticks"] - cpu0) / TICK / (time.monotonic() - t0)
            )
        res["stream"] = s
        log(
            f"  stream     c={STREAM_CONC:<3} {s['streams_per_s']:9.1f} streams/s  "
            f"TTFT p50 {s['ttft_ms']['p50']} ms  p99 {s['ttft_ms']['p99']} ms  "
            f"errors {s['error_count']}"
        )
    except Exception as e:  # noqa: BLE001
        log(f"  stream: {e}")
        res["stream"] = {"failed": str(e)}
    if sampler:
        sampler.stop()
    table = proc_table()
    if roots:
        new = set(tree_pids_all(roots, table)) - pids_before
        if new:
            t.notes.append(
                f"{len(new)} process(es) appeared during the run (worker restarts?): "
                + "; ".join(f"{p} {cmdline(p)[:60]}" for p in sorted(new))
            )
    for role, pid in t.mem_roots.items():
        m = tree_stats([pid], table)
        m.pop("cpu_ticks")
        res["memory"][role] = m
        if sampler:
            m["peak"] = sampler.peaks[role]
    (OUT / f"memory-{t.name}.json").write_text(json.dumps(res["memory"], indent=1))
    return res


def alternate_p50(variants, rounds=3):
    """p50 per round at 1 connection for each (tag, target) variant, alternating."""
    seconds = max(3.0, DURATION / 2)
    scripts = {tag: write_wrk_script(target) for tag, target in variants}
    out = {tag: [] for tag, _ in variants}
    for _ in range(rounds):
        for tag, target in variants:
            r = run_wrk(target, scripts[tag], 1, seconds, f"-{tag}")
            if r["errors"]:
                raise RuntimeError(f"{tag}: {r['errors']} errors")
            out[tag].append(r["p50_ms"])
    return out, seconds


def limits_overhead(t):
    """The same model at 1 connection with a key under no limits and one under every kind."""
    env = dict(os.environ)
    env.update(WAYSTATION_ENV)
    r = subprocess.run(
        WAYSTATION_LIMITED_KEY_CMD,
        shell=True,
        executable="/bin/bash",
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [ln.strip() for ln in r.stdout.splitlines() if ln.strip()]
    if r.returncode != 0 or not lines:
        raise RuntimeError(f"limited key: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
    limited = Target(t.name)
    limited.__dict__.update(t.__dict__)
    limited.name = t.name + "-limited"
    limited.json_headers = {"Authorization": f"Bearer {lines[-1]}"}
    rounds, seconds = alternate_p50([("unlimited", t), ("limited", limited)])
    out = {
        "seconds_per_round": seconds,
        "baseline_p50_ms": rounds["unlimited"],
        "limited_p50_ms": rounds["limited"],
        "added_p50_ms": statistics.median(rounds["limited"])
        - statistics.median(rounds["unlimited"]),
    }
    log(
        f"  limits     c=1   p50 {statistics.median(rounds['unlimited']):.3f} -> "
        f"{statistics.median(rounds['limited']):.3f} ms (added {out['added_p50_ms']:+.3f} ms)"
    )
    return out


def capacity_phase(t):
    """bench/capacity.py: 1, 2, 4 gateway processes behind nginx, one without it, and what one
    chat call costs Redis and PostgreSQL. The main target's server stays up, idle; its celery
    worker keeps running (and is counted) so the setup matches the main runs."""
    out = json.loads(
        run_script(
            "capacity.py",
            OUT,
            write_wrk_script(t),
            t.json_headers["Authorization"].split()[-1],
            t.json_model,
            t.mem_roots.get("celery", 0),
            CAPACITY_PROCESSES,
            DURATION,
            WARMUP,
            CAPACITY_CONCURRENCY,
            CAPACITY_REQUESTS,
            WAYSTATION_CAPACITY_SERVER_CMD,
        ).splitlines()[-1]
    )
    c = out["costs"]
    log(
        f"  capacity   {[(r['processes'], r['proxy'], round(r['rps'])) for r in out['throughput']]}"
        f"; Redis {c['redis_per_request']:.1f} calls/req, PG {c['pg_rows_per_request']:.2f} rows/req"
    )
    return out


def run_script(script, *args, db=True, allow_exit_1=False):
    """stdout of one of our bench scripts (`.venv/bin/python bench/<script> args`), run on the
    bench database when `db`; RuntimeError with its last stderr line when it fails. An
    evaluation that misses a target exits 1 with its report: `allow_exit_1` keeps that."""
    env = dict(os.environ)
    if db:
        env.update(WAYSTATION_ENV)
    r = subprocess.run(
        [str(ROOT / ".venv/bin/python"), str(BENCH / script), *map(str, args)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if r.returncode not in ((0, 1) if allow_exit_1 else (0,)) or not r.stdout.strip():
        raise RuntimeError(f"{script}: " + (r.stderr.strip().splitlines() or ["?"])[-1])
    return r.stdout.strip()


def cache_latency(t):
    """Exact and semantic hits against the gateway's own overhead (bench/cache_latency.py),
    and the semantic matcher's evaluation on the labelled pairs (bench/cache_eval.py)."""
    token = t.json_headers["Authorization"].split()[-1]
    stdout = run_script("cache_latency.py", t.port, t.upstream_json_port, token, CACHE_ENTRIES)
    out = json.loads(stdout.splitlines()[-1])
    try:
        out["eval_md"], out["eval_error"] = run_script("cache_eval.py"), ""
    except RuntimeError as e:
        out["eval_md"], out["eval_error"] = "", str(e)
    log(f"  cache      {out['p50_ms']} in process {out['in_process_lookup_p50_ms']} ms")
    return out


def context_assembly(t):
    """bench/context_micro.py (assembly time, 200 turns) and bench/context_savings.py (tokens
    sent per strategy over a long conversation), on the bench database."""
    out = {
        "micro": json.loads(run_script("context_micro.py").splitlines()[-1]),
        "savings": run_script("context_savings.py"),
    }
    log(f"  context    {out['micro']}")
    return out


def prompt_api_latency(t):
    """bench/prompt_latency.py: a published prompt API against the chat completion it renders
    to, interleaved on one connection each."""
    out = json.loads(run_script("prompt_latency.py", t.port, PROMPT_ROUNDS).splitlines()[-1])
    log(f"  prompts    {out}")
    return out


def call_log_latency(t):
    """bench/call_log_latency.py: a tenant that keeps call bodies against one that doesn't,
    alternating on the same gateway and model."""
    out = json.loads(run_script("call_log_latency.py", t.port, CALL_LOG_ROUNDS).splitlines()[-1])
    log(f"  call log   {out}")
    return out


def guardrails_phase(t):
    """bench/guardrails/: the default policy's added time, and the detectors' evaluation on
    their corpora and on the holdout sets."""
    here = BENCH / "guardrails"
    runs = {
        "latency": ["latency.py"],
        "pii": ["eval_pii.py"],
        "injection": ["eval_injection.py"],
        "pii_holdout": ["eval_pii.py", "--corpus", here / "pii_holdout.jsonl"],
        "injection_holdout": ["eval_injection.py", "--corpus", here / "injection_holdout.jsonl"],
    }
    out = {
        name: run_script(f"guardrails/{script}", *args, db=False, allow_exit_1=True)
        for name, (script, *args) in runs.items()
    }
    out["latency"] = json.loads(out["latency"].splitlines()[-1])
    log(f"  guardrails {out['latency']}")
    return out


def routing_overhead(t):
    """1 connection, alternating the one-deployment model and the four-deployment model with
    rules, so drift hits both alike; then the same two in process without HTTP (routing_micro)."""
    routed_t = Target(t.name)
    routed_t.__dict__.update(t.__dict__)
    routed_t.name, routed_t.json_model = t.name + "-routed", WAYSTATION_ROUTED_MODEL
    rounds, seconds = alternate_p50([("baseline", t), ("routed", routed_t)])
    out = {
        "seconds_per_round": seconds,
        "baseline_p50_ms": rounds["baseline"],
        "routed_p50_ms": rounds["routed"],
        "added_p50_ms": statistics.median(rounds["routed"]) - statistics.median(rounds["baseline"]),
    }
    env = dict(os.environ)
    env.update(WAYSTATION_ENV)
    r = subprocess.run(
        [str(ROOT / ".venv/bin/python"), str(BENCH / "routing_micro.py")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if r.returncode == 0 and r.stdout.strip():
        out["micro"] = json.loads(r.stdout.strip().splitlines()[-1])
    else:
        out["micro_error"] = (r.stderr.strip().splitlines() or ["?"])[-1]
    log(
        f"  routing    c=1   p50 {statistics.median(rounds['baseline']):.3f} -> "
        f"{statistics.median(rounds['routed']):.3f} ms (added {out['added_p50_ms']:+.3f} ms); "
        f"in process {out.get('micro', {})}"
    )
    return out


# --------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------
def fnum(v, nd=2, suffix=""):
    if v is None:
        return "n/a"
    return f"{v:,.{nd}f}{suffix}"


def fsigned(v, nd=2):
    if v is None:
        return "n/a"
    return f"{v:+,.{nd}f}"


def ratio(a, b):
    if a is None or b in (None, 0):
        return None
    return a / b


def fratio(r):
    if r is None:
        return "n/a"
    return f"{r * 100:.1f}%" if r < 0.1 else f"{r * 100:.0f}%"


def ok_ns(res, c):
    r = res.get("nonstream", {}).get(c) if res else None
    return r if r and "failed" not in r else None


def ok_st(res):
    s = res.get("stream") if res else None
    return s if s and "failed" not in s else None


def machine_info():
    cpu = "?"
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                cpu = ln.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for ln in Path("/proc/meminfo").read_text().splitlines():
            if ln.startswith("MemTotal"):
                mem = f"{int(ln.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "mem": mem,
        "kernel": platform.release(),
        "os": sh_out(". /etc/os-release 2>/dev/null && echo $PRETTY_NAME"),
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def command_line():
    knobs = " ".join(
        f"{k}={shlex.quote(v)}"
        for k, v in sorted(os.environ.items())
        if k.startswith("BENCH_") and k not in ("BENCH_COMMAND", "BENCH_WS_KEY")
    )
    base = os.environ.get("BENCH_COMMAND", "bench/run.sh")
    return f"{knobs} {base}".strip()


def faster_peer_ns(results, c):
    best = None
    for n in PEER_NAMES:
        r = ok_ns(results.get(n), c)
        if (
            r
            and r["errors"] <= 0.01 * max(1, r["requests"])
            and (best is None or r["rps"] > best[1]["rps"])
        ):
            best = (n, r)
    return best


def faster_peer_st(results):
    best = None
    for n in PEER_NAMES:
        s = ok_st(results.get(n))
        if s and (best is None or s["streams_per_s"] > best[1]["streams_per_s"]):
            best = (n, s)
    return best


def write_report(results, skipped, meta):
    names = [n for n in ALL_TARGETS if n in results]
    direct = results.get("direct")
    L = []
    w = L.append
    w("# Waystation benchmark results")
    w("")
    w(
        f"Generated by `bench/run.py` on {meta['date']}. Raw outputs: `bench/out/{meta['out']}/` "
        "(git-ignored)."
    )
    w("")
    w(f"- **Command:** `{meta['command']}`")
    w(
        f"- **Settings:** {DURATION:g} s per scenario after {WARMUP:g} s warm-up; wrk "
        f"{WRK_THREADS} threads, `--latency`; non-streaming at {', '.join(map(str, CONCURRENCY))} "
        f"connections; streaming at {STREAM_CONC} concurrent streams of {CHUNKS} chunks "
        f"{CHUNK_MS} ms apart (+ usage chunk); nginx {NGINX_WORKERS} worker(s). Gateway CPU = "
        "CPU time of all the target's processes (Waystation: uvicorn + celery) / wall time."
    )
    m = meta["machine"]
    w(
        f"- **Machine:** {m['nproc']} CPUs ({m['cpu']}), {m['mem']} RAM, {m['os']}, kernel "
        f"{m['kernel']}; load average at start {m['load']} (shared machine: the load generators, "
        "the fake upstreams and the gateway under test all share these cores)."
    )
    w("- **Versions:**")
    for n in ALL_TARGETS:
        if n in results:
            w(f"  - {LABELS[n]}: {results[n]['version']}")
        elif n in meta.get("versions", {}):
            w(f"  - {LABELS[n]}: {meta['versions'][n]}")
    w(f"  - tools: {meta['tools']}")
    w(
        "- **Routing:** direct = the fake upstreams themselves (model `gpt-4o-mini`); Waystation = "
        f"models `{WAYSTATION_JSON_MODEL}`/`{WAYSTATION_SSE_MODEL}` from `bench/config.yaml`; LiteLLM "
        "= `bench-json`/`bench-sse` in a generated config (`--num_workers 2`, master key, no DB, "
        "`callbacks: []`, `num_retries: 0` as in LiteLLM's benchmark docs); "
        "Portkey = `x-portkey-provider: openai` + `x-portkey-custom-host`, one node process."
    )
    if skipped:
        w("")
        w("**Skipped:**")
        for n, why in skipped.items():
            first = why.strip().splitlines()[0] if why.strip() else "?"
            w(f"- {LABELS.get(n, n)}: {first}")
    notes = [(n, x) for n in names for x in results[n].get("notes", [])]
    if notes:
        w("")
        w("**Notes:**")
        for n, x in notes:
            w(f"- {LABELS[n]}: {x}")

    # non-streaming tables
    for c in CONCURRENCY:
        w("")
        w(f"## Non-streaming, {c} concurrent connection{'s' if c != 1 else ''} (wrk)")
        w("")
        d = ok_ns(direct, c)
        fp = faster_peer_ns(results, c)
        fp_txt = f"faster peer here: {LABELS[fp[0]]}" if fp else "no peer result"
        w(f"Added latency = through the gateway minus direct. {fp_txt}.")
        w("")
        w(
            "| target | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms | req/s vs direct "
            "| req/s vs faster peer | errors | gateway CPU (cores) |"
        )
        w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for n in names:
            r = results[n]["nonstream"].get(c)
            if not r:
                continue
            if "failed" in r:
                w(f"| {LABELS[n]} | failed: {r['failed'][:80]} |||||||||")
                continue
            add50 = r["p50_ms"] - d["p50_ms"] if d and n != "direct" else None
            add99 = r["p99_ms"] - d["p99_ms"] if d and n != "direct" else None
            vs_d = ratio(r["rps"], d["rps"]) if d else None
            vs_p = ratio(r["rps"], fp[1]["rps"]) if fp and n != "direct" else None
            err = f"{r['errors']}" + (" ⚠" if r["errors"] > 0.01 * max(1, r["requests"]) else "")
            w(
                f"| {LABELS[n]} | {fnum(r['rps'], 0)} | {fnum(r['p50_ms'], 3)} | "
                f"{fnum(r['p99_ms'], 3)} | {fsigned(add50, 3) if n != 'direct' else '—'} | "
                f"{fsigned(add99, 3) if n != 'direct' else '—'} | "
                f"{fratio(vs_d) if n != 'direct' else '100%'} | "
                f"{(f'{vs_p:.2f}×' if vs_p is not None else 'n/a') if n != 'direct' else '—'} | "
                f"{err} | {fnum(r.get('cpu_cores'), 2) if n != 'direct' else '—'} |"
            )

    # streaming table
    w("")
    w(f"## Streaming, {STREAM_CONC} concurrent streams (bench/load/stream_load.mjs)")
    w("")
    ds = ok_st(direct)
    fps = faster_peer_st(results)
    w(
        "Streams/s = streams completed in the window / window. TTFT = request sent → first "
        "`data:` frame with non-empty `delta.content`. Added TTFT = through the gateway minus "
        f"direct. {('faster peer here: ' + LABELS[fps[0]]) if fps else 'no peer result'}."
    )
    w("")
    w(
        "| target | streams/s | % of direct | TTFT p50 ms | TTFT p99 ms | added TTFT p50 ms | "
        "added TTFT p99 ms | stream p50 ms | streams/s vs faster peer | errors | gateway CPU (cores) |"
    )
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in names:
        s = results[n].get("stream")
        if not s:
            continue
        if "failed" in s:
            w(f"| {LABELS[n]} | failed: {s['failed'][:80]} ||||||||||")
            continue
        nd = n == "direct"
        a50 = (
            s["ttft_ms"]["p50"] - ds["ttft_ms"]["p50"]
            if ds and not nd and s["ttft_ms"]["p50"] is not None
            else None
        )
        a99 = (
            s["ttft_ms"]["p99"] - ds["ttft_ms"]["p99"]
            if ds and not nd and s["ttft_ms"]["p99"] is not None
            else None
        )
        vs_d = ratio(s["streams_per_s"], ds["streams_per_s"]) if ds else None
        vs_p = ratio(s["streams_per_s"], fps[1]["streams_per_s"]) if fps and not nd else None
        errs = s["error_count"]
        err = f"{errs}" + (
            f" ({', '.join(f'{k}: {v}' for k, v in s['errors'].items())})" if errs else ""
        )
        w(
            f"| {LABELS[n]} | {fnum(s['streams_per_s'], 1)} | {'100%' if nd else fratio(vs_d)} | "
            f"{fnum(s['ttft_ms']['p50'], 2)} | {fnum(s['ttft_ms']['p99'], 2)} | "
            f"{'—' if nd else fsigned(a50, 2)} | {'—' if nd else fsigned(a99, 2)} | "
            f"{fnum(s['stream_ms']['p50'], 1)} | {'—' if nd else (f'{vs_p:.2f}×' if vs_p is not None else 'n/a')} | "
            f"{err} | {'—' if nd else fnum(s.get('cpu_cores'), 2)} |"
        )

    # memory
    w("")
    w("## Memory (RSS at the end of each target's run)")
    w("")
    w(
        "RSS summed over the process tree; per process = total / processes. Peak = highest "
        "1-second sample during the target's run."
    )
    w("")
    w(
        "| target | process tree | processes | total RSS MB | per process MB | largest process MB "
        "| peak total MB | peak largest process MB |"
    )
    w("|---|---|---:|---:|---:|---:|---:|---:|")
    for n in names:
        for role, mm in results[n]["memory"].items():
            pk = mm.get("peak") or {}
            w(
                f"| {LABELS[n]} | {role} | {mm['processes']} | {fnum(mm['rss_total_mb'], 1)} | "
                f"{fnum(mm['rss_mean_mb'], 1)} | {fnum(mm['rss_max_mb'], 1)} | "
                f"{fnum(pk.get('rss_total_mb'), 1) if pk else '—'} | "
                f"{fnum(pk.get('rss_max_mb'), 1) if pk else '—'} |"
            )
    if "upstreams" in meta:
        u = meta["upstreams"]
        w(
            f"| (fake upstreams) | nginx + node SSE | {u['processes']} | {fnum(u['rss_total_mb'], 1)} | "
            f"{fnum(u['rss_mean_mb'], 1)} | {fnum(u['rss_max_mb'], 1)} | — | — |"
        )

    # targets
    w("")
    w("## Targets")
    w("")
    w(
        "Checked for Waystation (the peers are measured against the same bar for context). "
        "Margin: positive = headroom, negative = short by."
    )
    w("")
    gw = [n for n in ["waystation", "litellm", "portkey"]]
    w("| target | " + " | ".join(LABELS[n] for n in gw) + " |")
    w("|---|" + "---|" * len(gw))
    for label, fn in target_checks(results):
        cells = []
        for n in gw:
            if n not in results:
                cells.append("not measured" + (" (skipped)" if n in skipped else ""))
            else:
                cells.append(fn(n))
        w(f"| {label} | " + " | ".join(cells) + " |")
    if "waystation" not in results:
        w("")
        why = skipped.get("waystation", "not selected (BENCH_ONLY)")
        w(f"Waystation was not measured: {why.strip().splitlines()[0] if why.strip() else '?'}")

    routing_section(w, results.get("waystation", {}).get("routing"))
    limits_section(w, results.get("waystation", {}).get("limits"))
    cache_section(w, results.get("waystation", {}).get("cache"))
    context_section(w, results.get("waystation", {}).get("context"))
    prompts_section(w, results.get("waystation", {}).get("prompts"))
    call_log_section(w, results.get("waystation", {}).get("call_log"))
    guardrails_section(w, results.get("waystation", {}).get("guardrails"))
    if "waystation" in results:
        capacity_section(w, results["waystation"].get("capacity"))
    w("")
    w("## Caveats")
    w("")
    w(
        "- Everything runs on the same small machine: wrk / the stream client, the fake upstreams "
        "and the gateway compete for the same cores, so absolute numbers are low and gateway CPU "
        "use directly reduces throughput. Compare ratios, not absolutes, across machines."
    )
    w(
        "- wrk is closed-loop (no coordinated-omission correction): at saturation, latency "
        "percentiles mostly reflect queueing, and req/s is the meaningful figure."
    )
    w(
        "- The direct streaming baseline is itself partly CPU-bound (the node SSE server and the "
        "node client each use a large share of a core at 200 streams), so stream times exceed the "
        "nominal (chunks−1)×interval."
    )
    w(f"- Short runs (BENCH_DURATION={DURATION:g}) are noisy; use ≥10 s for decisions.")
    w("")
    analysis = BENCH / "ANALYSIS.md"  # hand-written: where the time goes (bench/profile.sh)
    if analysis.exists():
        L.append(analysis.read_text().rstrip())
        w("")
    RESULTS_MD.write_text("\n".join(L) + "\n")


def routing_section(w, routing):
    if not routing:
        return
    w("")
    w("## Routing and breaker overhead")
    w("")
    if "failed" in routing:
        w(f"Not measured: {routing['failed']}")
        return
    w(
        f"Waystation at 1 connection, {routing['seconds_per_round']:g} s rounds alternating "
        f"`bench-json` (one deployment, no rule applies) and `{WAYSTATION_ROUTED_MODEL}` (four "
        "deployments with breakers, one retry, a fallback, ten rules evaluated on every request; "
        "bench/config.yaml), same upstream."
    )
    rounds_table(
        w,
        "model",
        [
            ("bench-json", routing["baseline_p50_ms"]),
            (WAYSTATION_ROUTED_MODEL, routing["routed_p50_ms"]),
        ],
    )
    w(
        f"{added_verdict(routing['added_p50_ms'], TARGET_ROUTING_ADDED_P50_MS)} wrk reports "
        "latency at 10 µs resolution and rounds differ by more than the effect, so the in-process "
        "figure below is the sharper one."
    )
    micro = routing.get("micro")
    if micro:
        base, four = micro["baseline_us_p50"], micro["four_deployments_ten_rules_us_p50"]
        w("")
        w(
            f"In process (`bench/routing_micro.py`, {micro['samples_each']:,} requests each, "
            "model choice + deployment routing with an upstream that answers at once): "
            f"baseline {base:.1f} µs, four deployments and {micro['rules']} rules {four:.1f} µs "
            f"per request ({four / base:.2f}× the baseline, {four - base:+.1f} µs)."
        )
    elif routing.get("micro_error"):
        w(f"In-process measurement failed: {routing['micro_error']}")


def limits_section(w, limits):
    if not limits:
        return
    w("")
    w("## Rate limits and budgets overhead")
    w("")
    if "failed" in limits:
        w(f"Not measured: {limits['failed']}")
        return
    w(
        f"Waystation at 1 connection, `bench-json`, {limits['seconds_per_round']:g} s rounds "
        "alternating a key under no limits and a key under every kind (`bench/limited_key.py`: "
        "requests/min on the tenant and on the model, tokens/min on the application, concurrent "
        "requests on the key, a monthly tenant budget and a daily key budget), all checked in "
        "one Redis call per request and settled in batches after it."
    )
    rounds_table(
        w,
        "key",
        [
            ("no limits", limits["baseline_p50_ms"]),
            ("every limit + 2 budgets", limits["limited_p50_ms"]),
        ],
    )
    w(added_verdict(limits["added_p50_ms"], TARGET_LIMITS_ADDED_P50_MS))


def cache_section(w, cache):
    if not cache:
        return
    w("")
    w("## Response cache")
    w("")
    if "failed" in cache:
        w(f"Not measured: {cache['failed']}")
        return
    p50 = cache["p50_ms"]
    base = p50["off"] - p50["direct"]
    w(
        f"`bench/cache_latency.py`: {cache['entries']:,} entries in `bench-cached`'s semantic "
        f"partition (filled in {cache['fill_seconds']:g} s), then {cache['rounds']} rounds at 1 "
        "connection, each sending in turn: the request straight to the upstream, through the "
        "gateway with the cache off (`bench-json`), an exact hit, and a paraphrase of a stored "
        f"question (outcomes: {cache['outcomes']}). The gateway runs 2 worker processes, so "
        "entries stored by one are found by the other through Redis."
    )
    w("")
    w("| request | p50 (ms) |")
    w("|---|---|")
    w(f"| upstream, direct | {p50['direct']:.3f} |")
    w(f"| gateway, cache off | {p50['off']:.3f} |")
    w(f"| gateway, exact hit | {p50['exact']:.3f} |")
    w(f"| gateway, semantic hit | {p50['semantic']:.3f} |")
    w("")
    exact_over = p50["exact"] - base
    semantic = p50["semantic"] - p50["exact"]
    w(
        f"- Gateway overhead (cache off − direct): {base:.3f} ms. An exact hit answers in "
        f"{p50['exact']:.3f} ms, {exact_over:+.3f} ms against that overhead (target ≤ "
        f"{TARGET_CACHE_EXACT_OVER_BASE_MS:g} ms): "
        f"**{'met' if exact_over <= TARGET_CACHE_EXACT_OVER_BASE_MS else 'missed'}**."
    )
    w(
        f"- A semantic lookup (semantic hit − exact hit, embedding on the CPU included): "
        f"{semantic:.3f} ms at {cache['entries']:,} entries (target ≤ "
        f"{TARGET_CACHE_SEMANTIC_MS:g} ms): "
        f"**{'met' if semantic <= TARGET_CACHE_SEMANTIC_MS else 'missed'}**. In process, "
        f"without HTTP, a whole lookup that misses takes p50 {cache['in_process_lookup_p50_ms']:.3f}"
        f" ms, p90 {cache['in_process_lookup_p90_ms']:.3f} ms."
    )
    if cache.get("eval_md"):
        w("")
        w(cache["eval_md"].strip().replace("## Semantic cache: evaluation", "### Evaluation"))
    elif cache.get("eval_error"):
        w(f"- Evaluation failed: {cache['eval_error']}")


def call_log_section(w, out):
    if not out:
        return
    w("")
    w("## Call log: what keeping bodies adds")
    w("")
    if "failed" in out:
        w(f"Not measured: {out['failed']}")
        return
    p50 = out["p50_ms"]
    met = "met" if out["added_p50_ms"] <= TARGET_CALL_LOG_ADDED_P50_MS else "missed"
    w(
        f"`bench/call_log_latency.py`: {out['rounds']} rounds alternating two keys on "
        "`bench-json`, one of a tenant that keeps call bodies (captured on the request path "
        "as references, rendered, compressed and shipped with the usage event after the "
        "answer), one of a tenant that switched them off. p50 "
        f"{p50['bodies_off']:.3f} ms off, {p50['bodies_on']:.3f} ms on: "
        f"**{out['added_p50_ms']:+.3f} ms** (target ≤ +{TARGET_CALL_LOG_ADDED_P50_MS:g} ms: "
        f"**{met}**)."
    )


def prompts_section(w, out):
    if not out:
        return
    w("")
    w("## Prompt APIs: added latency")
    w("")
    if "failed" in out:
        w(f"Not measured: {out['failed']}")
        return
    p50 = out["p50_ms"]
    w(
        f"`bench/prompt_latency.py`: {out['rounds']} rounds on one keep-alive connection each, "
        "interleaved: the chat completion a published one-variable prompt renders to, sent to "
        "`/v1/chat/completions` as is, against `POST /api/p/...` with the variables (load the "
        "API and its label, check the subscription and the variables against the schema, render "
        f"the template, shape the answer). p50 {p50['chat']:.3f} ms against "
        f"{p50['prompt_api']:.3f} ms: **+{out['added_p50_ms']:.3f} ms** "
        f"(ratio {out['ratio']:.2f})."
    )


def context_section(w, ctx):
    if not ctx:
        return
    w("")
    w("## Conversations: context assembly")
    w("")
    if "failed" in ctx:
        w(f"Not measured: {ctx['failed']}")
        return
    m = ctx["micro"]
    met = "met" if m["begin_p50_ms"] <= TARGET_CONTEXT_P50_MS else "missed"
    w(
        f"`bench/context_micro.py`: a conversation of {m['turns']} turns ({m['items']} items, "
        f"{m['conversation_tokens']:,} tokens) on a model with an 8,000-token window, "
        f"{m['samples']} more turns timed in process on PostgreSQL (truncation: the summariser "
        "and embeddings are model calls of their own). Assembling a turn (read what is new, "
        f"place the window, build the messages; {m['sent_tokens']:,} tokens sent) takes "
        f"p50 **{m['begin_p50_ms']:.3f} ms** (p90 {m['begin_p90_ms']:.3f} ms; target ≤ "
        f"{TARGET_CONTEXT_P50_MS:g} ms: **{met}**). Storing the turn once the answer is in "
        "(its items and the inspector's record, in one transaction, before the client's last "
        f"bytes so the next turn finds them): p50 {m['finish_p50_ms']:.3f} ms."
    )
    w("")
    w("`bench/context_savings.py`: tokens sent with each strategy over 120 turns on a "
      "4,000-token window, against sending the whole conversation every turn (which stops "
      "fitting the window after about 45 turns):")  # fmt: skip
    w("")
    for line in ctx["savings"].splitlines():
        w(line)


def guardrails_section(w, g):
    if not g:
        return
    w("")
    w("## Guardrails")
    w("")
    if "failed" in g:
        w(f"Not measured: {g['failed']}")
        return
    lat = g["latency"]
    met = "met" if lat["p50_ms"] <= TARGET_GUARDRAILS_P50_MS else "missed"
    w(
        f"`bench/guardrails/latency.py`: the `default` policy (PII redaction, reversible, on "
        f"input and output; injection rules on input) on a {lat['prompt_bytes']:,}-byte prompt "
        f"and a {lat['answer_chars']}-character answer, {lat['samples']:,} runs in process: "
        f"p50 **{lat['p50_ms']:.3f} ms** (p90 {lat['p90_ms']:.3f} ms; target ≤ "
        f"{TARGET_GUARDRAILS_P50_MS:g} ms: **{met}**)."
    )
    for name in ("pii", "injection"):
        w("")
        for line in g[name].splitlines():
            w(line)
    w("")
    w("### Holdout sets")
    w("")
    w(
        "`pii_holdout.jsonl` (40 cases) and `injection_holdout.jsonl` (30 prompts) were written "
        "by someone else after the detectors were frozen. PII scored all 40 right on first "
        "sight. The injection rules first scored recall 0.73 (11/15) and a false-positive rate "
        "of 0.07 (1/15): they missed 'disregard everything you were told', a question for the "
        "developer's instructions, an 'AI with no rules' persona and a bare `<system>` tag, and "
        "took 'disregard the old policy document' for an override. Those were fixed by "
        "widening the rules, not by listing the prompts, so the figures below come after the "
        "fixes and the set is no longer unseen."
    )
    for name in ("pii_holdout", "injection_holdout"):
        w("")
        for line in g[name].splitlines():
            w(line.replace("### ", "#### ", 1))


def capacity_section(w, cap):
    w("")
    w("## Capacity: scale-out and per-request costs")
    w("")
    if not cap:
        w("Not measured (BENCH_CAPACITY=0).")
        return
    if "failed" in cap:
        w(f"Not measured: {cap['failed']}")
        return
    rows, c, cores = cap["throughput"], cap["costs"], cap["cpu_count"]
    w(
        f"`bench/capacity.py`: wrk, {cap['concurrency']} connections, {cap['duration_s']:g} s, the "
        "main runs' non-streaming body. Each gateway process is `uvicorn --workers 1` on its own "
        "port; *nginx-N* puts N of them behind a second nginx (`bench/cluster/nginx.conf.tmpl`, "
        "least_conn, keep-alive upstream connections); *direct-1* is one process without the "
        "proxy. Gateway CPU = the processes used + the celery worker; machine = all cores busy "
        f"(of {cores}). Redis calls per request are counted by `INFO commandstats` over the window."
    )
    w("")
    w(
        "| setup | processes | req/s | p50 ms | p99 ms | gateway CPU | proxy CPU | machine busy "
        "| req/s per gateway core | Redis calls/req | errors |"
    )
    w("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        per_core = r["rps"] / r["gateway_cpu_cores"] if r["gateway_cpu_cores"] else None
        w(
            f"| {'nginx' if r['proxy'] else 'direct'}-{r['processes']} | {r['processes']} | "
            f"{fnum(r['rps'], 0)} | {fnum(r['p50_ms'])} | {fnum(r['p99_ms'])} | "
            f"{fnum(r['gateway_cpu_cores'])} | {fnum(r['proxy_cpu_cores']) if r['proxy'] else '—'} | "
            f"{fnum(r['machine_busy_cores'])} | {fnum(per_core, 0)} | "
            f"{fnum(r['redis_calls_per_request'], 1)} | {r['errors']} |"
        )
    proxied = [r for r in rows if r["proxy"]]
    if proxied:
        one, best = proxied[0], max(proxied, key=lambda r: r["rps"])
        w("")
        w(
            f"**Where it flattens.** From 1 to {best['processes']} processes behind the proxy "
            f"throughput goes {fnum(one['rps'], 0)} → {fnum(best['rps'], 0)} req/s "
            f"(×{best['rps'] / one['rps']:.2f}) while the machine is "
            f"{fnum(max(r['machine_busy_cores'] for r in proxied), 1)} of {cores} cores busy. On "
            f"{cores} cores wrk, the proxy nginx, the fake upstream's nginx, the uvicorn processes "
            "and the celery worker all compete: once the cores are full a further process only "
            "adds context switches, and the proxy's own hop (compare direct-1 with nginx-1) costs "
            "CPU the gateways then lack. The scaling to read off this machine is the CPU per "
            "request, not req/s: with a core per process (not measured here) throughput should "
            "grow with the processes until the proxy, Redis or PostgreSQL (below) bind."
        )
    per_core = sorted(r["rps"] / r["gateway_cpu_cores"] for r in rows if r["gateway_cpu_cores"])
    proxy_core = sorted(r["rps"] / r["proxy_cpu_cores"] for r in proxied if r["proxy_cpu_cores"])
    if not per_core:
        return
    rps_core = statistics.median(per_core)
    want = CAPACITY_TARGET_RPS
    redis_req, pg_req = c["redis_per_request"], c["pg_rows_per_request"]
    w("")
    w("### Capacity model")
    w("")
    w(
        f"Per-request costs, from {c['requests']} plain chat calls sent one at a time to one "
        f"process ({c['ok']} answered 200, {c['usage_events_stored']} usage events drained), "
        f"Redis's idle rate ({fnum(c['redis_idle_calls_per_s'], 1)} calls/s) subtracted:"
    )
    w("")
    w(
        f"- **Redis:** {fnum(redis_req, 2)} commands per request = "
        f"{fnum(c['redis_gateway_per_request'], 2)} by the gateway + "
        f"{fnum(c['redis_drain_per_request'], 2)} by the usage drain. By command: "
        + ", ".join(f"`{k}` {v:g}" for k, v in list(c["redis_commands_per_request"].items())[:8])
        + "."
    )
    w(
        f"- **PostgreSQL:** {fnum(pg_req, 2)} rows written (inserted + updated) per request: "
        + ", ".join(f"`{k}` {v:g}" for k, v in c["pg_rows_by_table"].items())
        + "."
    )
    w(
        f"- **Gateway CPU:** {fnum(rps_core, 0)} req/s per core (median of the rows above, "
        "celery included)"
        + (
            f"; the proxy: {fnum(statistics.median(proxy_core), 0)} req/s per core."
            if proxy_core
            else "."
        )
    )
    w("")
    w(f"For {want:,} req/s of plain chat calls:")
    w("")
    w(f"- gateway cores: {want:,} / {fnum(rps_core, 0)} = **{fnum(want / rps_core, 1)} cores**")
    if proxy_core:
        pc = statistics.median(proxy_core)
        w(f"- load balancer cores (nginx): {want:,} / {fnum(pc, 0)} = **{fnum(want / pc, 1)}**")
    w(f"- Redis: {want:,} × {fnum(redis_req, 2)} = **{fnum(want * redis_req, 0)} commands/s**")
    w(f"- PostgreSQL: {want:,} × {fnum(pg_req, 2)} = **{fnum(want * pg_req, 0)} rows/s**")
    loaded = [r["redis_calls_per_request"] for r in rows if r["redis_calls_per_request"]]
    if loaded:
        under = statistics.median(loaded)
        w("")
        w(
            f"Check: under load the gateway made {fnum(under, 2)} Redis calls per request "
            f"(median of the windows above, nothing drained there) against "
            f"{fnum(c['redis_gateway_per_request'], 2)} one at a time"
            + (
                " — the same within 25 %, so the model's figure holds at load."
                if abs(under - c["redis_gateway_per_request"])
                <= 0.25 * max(c["redis_gateway_per_request"], 1e-9)
                else " — they differ by more than 25 % (usage events are batched per flush "
                "under load, and background work shows up in short windows); the model uses the "
                "one-at-a-time figure, the upper bound."
            )
        )


def rounds_table(w, what, rows):
    """p50 per alternating round, and the median, for each variant."""
    w("")
    w(f"| {what} | p50 per round (ms) | median |")
    w("|---|---|---|")
    for label, values in rows:
        per_round = ", ".join(f"{v:.3f}" for v in values)
        w(f"| {label} | {per_round} | {statistics.median(values):.3f} |")
    w("")


def added_verdict(added_ms, target_ms):
    met = "met" if added_ms <= target_ms else "missed"
    return f"Added p50: **{added_ms:+.3f} ms** (target ≤ {target_ms:g} ms): **{met}**."


def target_checks(results):
    direct = results.get("direct")
    checks = []

    c50 = 50 if 50 in CONCURRENCY else None
    if c50 is not None:

        def chk_rps(n):
            r = ok_ns(results.get(n), c50)
            if not r:
                return "n/a"
            others = [m for m in PEER_NAMES if m != n and ok_ns(results.get(m), c50)]
            if not others:
                return "n/a (no other peer)"
            best = max(others, key=lambda m: ok_ns(results[m], c50)["rps"])
            b = ok_ns(results[best], c50)["rps"]
            met = r["rps"] >= b and r["errors"] <= 0.01 * max(1, r["requests"])
            return (
                f"{'**met**' if met else '**missed**'}: {r['rps']:,.0f} vs {b:,.0f} "
                f"({LABELS[best]}), {(r['rps'] / b - 1) * 100:+.0f}%"
            )

        checks.append(("req/s at 50 connections ≥ faster peer's", chk_rps))

    if 1 in CONCURRENCY:

        def chk_lat(n, key, lim):
            r, d = ok_ns(results.get(n), 1), ok_ns(direct, 1)
            if not r or not d:
                return "n/a"
            added = r[key] - d[key]
            return (
                f"{'**met**' if added <= lim else '**missed**'}: +{added:.3f} ms "
                f"(margin {lim - added:+.3f} ms)"
            )

        checks.append(
            (
                f"added latency at 1 connection p50 ≤ {TARGET_ADDED_P50_MS:g} ms",
                lambda n: chk_lat(n, "p50_ms", TARGET_ADDED_P50_MS),
            )
        )
        checks.append(
            (
                f"added latency at 1 connection p99 ≤ {TARGET_ADDED_P99_MS:g} ms",
                lambda n: chk_lat(n, "p99_ms", TARGET_ADDED_P99_MS),
            )
        )

    def chk_stream_rate(n):
        s, d = ok_st(results.get(n)), ok_st(direct)
        if not s or not d or not d["streams_per_s"]:
            return "n/a"
        r = s["streams_per_s"] / d["streams_per_s"]
        met = r >= TARGET_STREAM_RATIO and s["error_count"] == 0
        extra = f", {s['error_count']} errors" if s["error_count"] else ""
        return (
            f"{'**met**' if met else '**missed**'}: {r * 100:.1f}% of direct "
            f"({(r - TARGET_STREAM_RATIO) * 100:+.1f} pts{extra})"
        )

    def chk_ttft(n):
        s, d = ok_st(results.get(n)), ok_st(direct)
        if not s or not d or s["ttft_ms"]["p50"] is None:
            return "n/a"
        added = s["ttft_ms"]["p50"] - d["ttft_ms"]["p50"]
        return (
            f"{'**met**' if added <= TARGET_ADDED_TTFT_P50_MS else '**missed**'}: "
            f"{added:+.2f} ms (margin {TARGET_ADDED_TTFT_P50_MS - added:+.2f} ms)"
        )

    checks.append(
        (
            f"streaming at {STREAM_CONC}: streams/s ≥ {TARGET_STREAM_RATIO * 100:.0f}% of direct",
            chk_stream_rate,
        )
    )
    checks.append(
        (f"streaming at {STREAM_CONC}: added TTFT p50 ≤ {TARGET_ADDED_TTFT_P50_MS:g} ms", chk_ttft)
    )

    def chk_mem(n):
        mem = results.get(n, {}).get("memory", {})
        if not mem:
            return "n/a"
        worst = max(mem.items(), key=lambda kv: kv[1]["rss_max_mb"])
        mx = worst[1]["rss_max_mb"]
        per = ", ".join(
            f"{role}: {m['processes']} proc(s), max {m['rss_max_mb']:.0f} MB"
            for role, m in mem.items()
        )
        return (
            f"{'**met**' if mx <= TARGET_RSS_MB else '**missed**'}: largest {mx:.0f} MB "
            f"(margin {TARGET_RSS_MB - mx:+.0f} MB; {per})"
        )

    checks.append((f"≤ {TARGET_RSS_MB:g} MB RSS per gateway process", chk_mem))
    return checks


# --------------------------------------------------------------------------------------
def main():
    global OUT, LOGF
    unknown = [t for t in ONLY if t not in ALL_TARGETS]
    if unknown:
        raise SystemExit(f"BENCH_ONLY: unknown target(s) {unknown}; choose from {ALL_TARGETS}")
    for tool in ("wrk", "node"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not found (run bench/setup_peers.sh)")
    if not (shutil.which("nginx") or os.path.exists("/usr/sbin/nginx")):
        raise SystemExit("nginx not found (run bench/setup_peers.sh)")
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    OUT = BENCH / "out" / stamp
    OUT.mkdir(parents=True, exist_ok=True)
    latest = BENCH / "out" / "latest"
    try:
        if latest.is_symlink() or latest.exists():
            latest.unlink()
        latest.symlink_to(stamp)
    except OSError:
        pass
    LOGF = open(OUT / "run.log", "w")  # noqa: SIM115

    def on_signal(signum, _frame):
        log(f"signal {signum}: stopping")
        stop_all()
        sys.exit(130)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    meta = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command_line(),
        "machine": machine_info(),
        "out": stamp,
        "versions": {},
    }
    meta["tools"] = ", ".join(
        [
            "wrk " + (sh_out("wrk -v 2>&1 | head -1").split()[1:2] or ["?"])[0],
            "nginx " + sh_out("nginx -v 2>&1").replace("nginx version: nginx/", ""),
            "node " + sh_out("node -v"),
            "python " + platform.python_version(),
        ]
    )
    log(f"out: {OUT}")
    log(
        f"targets: {', '.join(ONLY)}; duration {DURATION:g}s (+{WARMUP:g}s warm-up); "
        f"concurrency {CONCURRENCY}; streams {STREAM_CONC}"
    )
    results, skipped = {}, {}
    ports = {
        "waystation": pick_port("BENCH_WAYSTATION_PORT", 18090) if "waystation" in ONLY else None,
        "litellm": pick_port("BENCH_LITELLM_PORT", 18091) if "litellm" in ONLY else None,
        "portkey": pick_port("BENCH_PORTKEY_PORT", 18092) if "portkey" in ONLY else None,
    }
    try:
        up = start_upstreams()
        log(f"upstreams: nginx json :{up['json_port']}, node sse :{up['sse_port']}")
        starters = {
            "direct": lambda: make_direct(up),
            "waystation": lambda: start_waystation(up, ports["waystation"]),
            "litellm": lambda: start_litellm(up, ports["litellm"]),
            "portkey": lambda: start_portkey(up, ports["portkey"]),
        }
        for name in [n for n in ALL_TARGETS if n in ONLY]:
            log(f"== {LABELS[name]}")
            t = None
            try:
                t0 = time.monotonic()
                t = starters[name]()
                if name != "direct":
                    log(f"  started in {time.monotonic() - t0:.1f}s: {t.version}")
                validate(t)
                results[name] = bench_target(t)
                if name == "waystation":
                    for phase, measure in (
                        ("routing", routing_overhead),
                        ("limits", limits_overhead),
                        *([("capacity", capacity_phase)] if CAPACITY else []),
                        ("cache", cache_latency),
                        # Before context: its savings script applies a config of its own,
                        # which switches the bench models off.
                        ("prompts", prompt_api_latency),
                        ("call_log", call_log_latency),
                        ("context", context_assembly),
                        ("guardrails", guardrails_phase),
                    ):
                        try:
                            results[name][phase] = measure(t)
                        except Exception as e:  # noqa: BLE001
                            log(f"  {phase} phase failed: {e}")
                            results[name][phase] = {"failed": str(e)}
            except Skip as e:
                msg = str(e)
                skipped[name] = msg
                log(f"  SKIPPED {LABELS[name]}: {msg}")
                if t is not None:
                    results.pop(name, None)
            finally:
                if t is not None:
                    t.stop()
        u = tree_stats([up["nginx"].pid, up["sse"].pid])
        u.pop("cpu_ticks")
        meta["upstreams"] = u
    finally:
        stop_all()
        (OUT / "results.json").write_text(
            json.dumps(
                {"meta": meta, "results": results, "skipped": skipped}, indent=1, default=str
            )
        )
    write_report(results, skipped, meta)
    log(f"wrote {RESULTS_MD.relative_to(ROOT) if RESULTS_MD.is_relative_to(ROOT) else RESULTS_MD}")
    log(f"raw outputs in {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
