"""Capacity figures for bench/run.py's capacity phase: scale-out and per-request costs.

1. Throughput of 1, 2 and 4 gateway processes (each `uvicorn --workers 1` on its own port,
   the main target's celery worker still running) behind a second nginx acting as the load
   balancer (bench/cluster/nginx.conf.tmpl), plus one process straight, without the proxy.
   wrk drives them with the main runs' non-streaming script, at one concurrency. CPU (cores)
   of the gateway processes (+ celery) and of the proxy, and Redis commands per request
   under load, are measured over each window.
2. What one plain chat call costs the shared stores, sent one at a time to one process:
   Redis commands (`INFO commandstats`, all databases, the idle rate subtracted), split into
   the gateway's side and the usage drain's side, and PostgreSQL rows written
   (`pg_stat_user_tables` n_tup_ins + n_tup_upd, after the usage drain).

Prints progress on stderr and one JSON object on its last stdout line.

Usage: .venv/bin/python bench/capacity.py OUT_DIR WRK_SCRIPT API_KEY MODEL CELERY_PID
         PROCESSES DURATION WARMUP CONCURRENCY REQUESTS SERVER_CMD
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import redis

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "waystation.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402

from billing import usage_stream  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
PG_STATS_DELAY_S = 11.0  # an idle backend reports its table counters within 10 s (PG 15+)
MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Say hello in one short sentence."},
]


def say(msg: str) -> None:
    print(f"  capacity   {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(name: str, cmd: list[str], out: Path) -> subprocess.Popen:
    log = open(out / f"capacity-{name}.log", "ab")  # noqa: SIM115
    return subprocess.Popen(
        cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def post(conn: http.client.HTTPConnection, key: str, model: str) -> int:
    body = json.dumps({"model": model, "messages": MESSAGES, "max_tokens": 16})
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    conn.request("POST", "/v1/chat/completions", body=body, headers=headers)
    response = conn.getresponse()
    response.read()
    return response.status


def wait_ready(port: int, key: str, model: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            if post(conn, key, model) == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"gateway process on :{port} did not answer 200")


def cpu_ticks(roots: list[int]) -> int:
    """utime + stime of the roots and all their descendants."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2 :].split()
            table[int(entry)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    pids, stack = set(), list(roots)
    while stack:
        pid = stack.pop()
        if pid in table and pid not in pids:
            pids.add(pid)
            stack.extend(p for p, (ppid, _) in table.items() if ppid == pid)
    return sum(table[p][1] for p in pids)


def machine_busy_ticks() -> tuple[int, int]:
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def redis_calls(client: redis.Redis) -> dict[str, int]:
    """Calls per command since Redis started, INFO itself left out."""
    stats = client.info("commandstats")
    return {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items() if k != "cmdstat_info"}


def redis_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    delta = {k: after[k] - before.get(k, 0) for k in after}
    return {k: v for k, v in delta.items() if v}


def run_wrk(script: str, port: int, conc: int, seconds: float, out: Path, tag: str) -> dict:
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    cmd = ["wrk", "-t2", f"-c{conc}", f"-d{seconds:g}s", "--timeout", "10s", "--latency"]
    cmd += ["-s", script, url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    (out / f"wrk-capacity-{tag}.txt").write_text(f"$ {shlex.join(cmd)}\n{done.stdout}")
    found = re.search(r"^WRKJSON (\{.*\})$", done.stdout, re.M)
    if done.returncode != 0 or not found:
        raise RuntimeError(f"wrk failed (exit {done.returncode}): {done.stderr.strip()[:200]}")
    d = json.loads(found.group(1))
    errors = sum(v for k, v in d.items() if k.startswith("err_"))
    secs = d["duration_us"] / 1e6
    return {
        "requests": d["requests"],
        "rps": d["requests"] / secs,
        "p50_ms": d["p50_us"] / 1000,
        "p99_ms": d["p99_us"] / 1000,
        "errors": errors,
    }


def measured(args, port: int, tag: str, gateway_roots: list[int], proxy: list[int], rc) -> dict:
    if args["warmup"] > 0:
        run_wrk(args["script"], port, args["conc"], args["warmup"], args["out"], tag + "-warmup")
    cpu0, proxy0, busy0 = cpu_ticks(gateway_roots), cpu_ticks(proxy), machine_busy_ticks()
    calls0, t0 = redis_calls(rc), time.monotonic()
    row = run_wrk(args["script"], port, args["conc"], args["duration"], args["out"], tag)
    wall = time.monotonic() - t0
    calls = sum(redis_delta(calls0, redis_calls(rc)).values())
    busy1 = machine_busy_ticks()
    row["gateway_cpu_cores"] = (cpu_ticks(gateway_roots) - cpu0) / TICK / wall
    row["proxy_cpu_cores"] = (cpu_ticks(proxy) - proxy0) / TICK / wall if proxy else 0.0
    row["machine_busy_cores"] = (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]) * os.cpu_count()
    row["redis_calls_per_request"] = calls / row["requests"] if row["requests"] else None
    say(
        f"{tag:<10} {row['rps']:8.0f} req/s  p50 {row['p50_ms']:6.2f} ms  p99 "
        f"{row['p99_ms']:7.2f} ms  gateway {row['gateway_cpu_cores']:.2f} cores  "
        f"errors {row['errors']}"
    )
    return row


def start_proxy(ports: list[int], out: Path) -> tuple[subprocess.Popen, int]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    tmp = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    port = free_port()
    servers = "\n".join(f"        server 127.0.0.1:{p};" for p in ports)
    conf = (BENCH / "cluster" / "nginx.conf.tmpl").read_text()
    conf = conf.replace("@@TMP@@", str(tmp)).replace("@@PORT@@", str(port))
    conf = conf.replace("@@WORKERS@@", os.environ.get("BENCH_NGINX_WORKERS", "1"))
    (tmp / "nginx.conf").write_text(conf.replace("@@SERVERS@@", servers))
    shutil.copy(tmp / "nginx.conf", out / f"nginx-cluster-{len(ports)}.conf")
    proc = start(f"nginx-{len(ports)}", [nginx, "-p", str(tmp), "-c", str(tmp / "nginx.conf")], out)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, port
        except OSError:
            time.sleep(0.1)
    stop(proc)
    raise RuntimeError(f"cluster nginx did not listen on :{port}")


def throughput(args, ports: list[int], pids: list[int], rc) -> list[dict]:
    celery = [args["celery"]] if args["celery"] else []
    rows = []
    row = measured(args, ports[0], "direct-1", [pids[0], *celery], [], rc)
    rows.append({"processes": 1, "proxy": False, **row})
    for n in args["processes"]:
        proxy, port = start_proxy(ports[:n], args["out"])
        try:
            row = measured(args, port, f"nginx-{n}", [*pids[:n], *celery], [proxy.pid], rc)
        finally:
            stop(proxy)
        rows.append({"processes": n, "proxy": True, **row})
    return rows


def drain_all() -> int:
    stored = 0
    while moved := usage_stream.drain(max_seconds=60, reclaim_idle_ms=0):
        stored += moved
    connection.close()  # a closing backend reports its table counters at once
    return stored


def pg_rows(cur) -> dict[str, int]:
    cur.execute("SELECT pg_stat_clear_snapshot()")
    cur.execute("SELECT relname, n_tup_ins + n_tup_upd FROM pg_stat_user_tables")
    return dict(cur.fetchall())


def costs(args, port: int, rc) -> dict:
    """Sequential plain chat calls to one process: Redis calls and PostgreSQL rows each."""
    n = args["requests"]
    backlog = drain_all()
    say(f"drained a backlog of {backlog} usage events; waiting for table counters")
    pg = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)
    time.sleep(PG_STATS_DELAY_S)
    idle0, t0 = redis_calls(rc), time.monotonic()
    time.sleep(3)
    idle_rate = sum(redis_delta(idle0, redis_calls(rc)).values()) / (time.monotonic() - t0)
    rows0 = pg_rows(pg.cursor())
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    calls0, t0 = redis_calls(rc), time.monotonic()
    statuses = [post(conn, args["key"], args["model"]) for _ in range(n)]
    time.sleep(1.0)  # the gateway's usage buffer is flushed every USAGE_FLUSH_SECONDS
    calls1, t1 = redis_calls(rc), time.monotonic()
    stored = drain_all()
    calls2, t2 = redis_calls(rc), time.monotonic()
    time.sleep(PG_STATS_DELAY_S)
    rows1 = pg_rows(pg.cursor())
    pg.close()
    gateway_cmds = redis_delta(calls0, calls1)
    drain_cmds = redis_delta(calls1, calls2)
    written = {t: rows1.get(t, 0) - rows0.get(t, 0) for t in rows1}
    written = {t: v for t, v in sorted(written.items(), key=lambda kv: -kv[1]) if v}
    commands = dict(gateway_cmds)
    for name, calls in drain_cmds.items():
        commands[name] = commands.get(name, 0) + calls
    gateway_calls = sum(gateway_cmds.values()) - idle_rate * (t1 - t0)
    drain_calls = sum(drain_cmds.values()) - idle_rate * (t2 - t1)
    return {
        "requests": n,
        "ok": statuses.count(200),
        "usage_events_stored": stored,
        "redis_idle_calls_per_s": idle_rate,
        "redis_gateway_per_request": gateway_calls / n,
        "redis_drain_per_request": drain_calls / n,
        "redis_per_request": (gateway_calls + drain_calls) / n,
        "redis_commands_per_request": {
            k: round(v / n, 3) for k, v in sorted(commands.items(), key=lambda kv: -kv[1])
        },
        "pg_rows_per_request": sum(written.values()) / n,
        "pg_rows_by_table": {t: round(v / n, 3) for t, v in written.items()},
    }


def main() -> None:
    out, script, key, model, celery, procs, dur, warm, conc, reqs, cmd = sys.argv[1:12]
    args = {
        "out": Path(out),
        "script": script,
        "key": key,
        "model": model,
        "celery": int(celery) if celery not in ("", "0") else None,
        "processes": [int(p) for p in procs.split(",") if p.strip()],
        "duration": float(dur),
        "warmup": float(warm),
        "conc": int(conc),
        "requests": int(reqs),
    }
    rc = redis.Redis.from_url(settings.REDIS_URL)
    ports = [free_port() for _ in range(max(args["processes"]))]
    servers = [start(f"gw-{p}", shlex.split(cmd.format(port=p)), args["out"]) for p in ports]
    try:
        for port, proc in zip(ports, servers, strict=True):
            wait_ready(port, key, model, proc)
        pids = [s.pid for s in servers]
        result = {"concurrency": args["conc"], "duration_s": args["duration"]}
        result["throughput"] = throughput(args, ports, pids, rc)
        result["costs"] = costs(args, ports[0], rc)
        result["cpu_count"] = os.cpu_count()
    finally:
        for proc in servers:
            stop(proc)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
