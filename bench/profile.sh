#!/usr/bin/env bash
# Where the gateway's time goes on the streaming hot path: one uvicorn worker under 200
# concurrent streams, sampled with py-spy; prints the heaviest functions (self and inclusive).
# Usage: bash bench/profile.sh   (after `make bench` has set up the bench database once)
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS=bench/.peers/tools
[ -x $TOOLS/bin/py-spy ] || { python3 -m venv $TOOLS && $TOOLS/bin/pip install -q py-spy; }
export DATABASE_URL=postgres://postgres@127.0.0.1:5432/waystation_bench REDIS_URL=redis://127.0.0.1:6379/5
export OUTBOUND_ALLOWED_NETWORKS=127.0.0.0/8,::1/128  # the bench upstreams are on loopback
export BENCH_JSON_PORT=18081 BENCH_SSE_PORT=18082
OUT=$(mktemp -d)
node bench/upstream/sse_server.mjs --port 18082 --chunks 20 --interval-ms 10 >"$OUT/sse.log" 2>&1 &
SSE=$!
.venv/bin/python manage.py apply_config bench/config.yaml >/dev/null
KEY=$(.venv/bin/python manage.py create_api_key --tenant bench --name profile --all-models | tail -1)
.venv/bin/uvicorn waystation.asgi:application --host 127.0.0.1 --port 18095 --loop uvloop \
  --http httptools --no-access-log --log-level warning >"$OUT/ws.log" 2>&1 &
WS=$!
trap 'kill $SSE $WS 2>/dev/null || true' EXIT
sleep 4
BODY='{"model":"bench-sse","stream":true,"messages":[{"role":"user","content":"hi"}]}'
(sleep 3; $TOOLS/bin/py-spy record -p $WS -d 6 -r 250 -f raw -o "$OUT/prof.txt" --nonblocking >/dev/null 2>&1) &
SPY=$!
node bench/load/stream_load.mjs --url http://127.0.0.1:18095/v1/chat/completions --concurrency 200 \
  --duration 10 --warmup 2 --headers "{\"authorization\":\"Bearer $KEY\"}" --body "$BODY" \
  | python3 -c "import json,sys; d=json.load(sys.stdin); print('streams/s', d['streams_per_s'], 'ttft', d['ttft_ms'])"
wait $SPY
python3 - "$OUT/prof.txt" <<'PY'
import collections, sys
own, incl, total = collections.Counter(), collections.Counter(), 0
for line in open(sys.argv[1]):
    stack, _, n = line.rstrip().rpartition(" ")
    if not stack:
        continue
    n, frames = int(n), [f.rsplit(":", 1)[0] for f in stack.split(";")]
    total += n
    own[frames[-1]] += n
    for f in set(frames):
        incl[f] += n
print(f"{total} samples")
for title, counter in (("self", own), ("inclusive", incl)):
    print(f"-- {title}")
    for frame, n in counter.most_common(20):
        print(f"{100 * n / total:5.1f}%  {frame[:110]}")
PY
