#!/usr/bin/env bash
# Installs what the benchmark needs, idempotently (each step is skipped when already done):
#   - wrk and nginx from Debian packages (only if missing; needs root),
#   - the LiteLLM proxy peer in its own venv bench/.peers/litellm, pinned by
#     bench/peers/litellm-requirements.txt,
#   - the Portkey gateway peer in bench/.peers/portkey from bench/peers/portkey/package.json
#     (+ package-lock.json; hono / @hono/* pinned through npm overrides).
# Only the package registries are used (apt, PyPI, npm). BENCH_ONLY limits which peers.
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PEERS="$BENCH_DIR/.peers"
ONLY=",${BENCH_ONLY:-direct,waystation,litellm,portkey},"
want() { [[ "$ONLY" == *",$1,"* ]]; }
say() { echo "[bench-setup] $*"; }
mkdir -p "$PEERS"

# --- OS tools ---------------------------------------------------------------------------
missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
if want portkey && ! command -v npm >/dev/null 2>&1; then missing+=(npm); fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    say "apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    say "missing: ${missing[*]} (install them with apt-get as root)"; exit 1
  fi
fi

# --- LiteLLM ----------------------------------------------------------------------------
if want litellm; then
  REQ="$BENCH_DIR/peers/litellm-requirements.txt"
  VENV="$PEERS/litellm"
  stamp="$(sha256sum "$REQ" | cut -c1-16)"
  if [ -x "$VENV/bin/litellm" ] && [ "$(cat "$VENV/.bench-stamp" 2>/dev/null)" = "$stamp" ]; then
    say "litellm: present ($VENV)"
  else
    PY="${BENCH_PYTHON:-$(command -v python3.11 || command -v python3)}"
    say "litellm: installing into $VENV with $PY"
    [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -r "$REQ"
    echo "$stamp" > "$VENV/.bench-stamp"
    say "litellm: $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("litellm"))')"
  fi
fi

# --- Portkey ----------------------------------------------------------------------------
if want portkey; then
  SRC="$BENCH_DIR/peers/portkey"
  DST="$PEERS/portkey"
  stamp="$(cat "$SRC/package.json" "$SRC/package-lock.json" | sha256sum | cut -c1-16)"
  entry="$DST/node_modules/@portkey-ai/gateway/build/start-server.js"
  if [ -f "$entry" ] && [ "$(cat "$DST/.bench-stamp" 2>/dev/null)" = "$stamp" ]; then
    say "portkey: present ($DST)"
  else
    say "portkey: installing into $DST"
    mkdir -p "$DST"
    cp "$SRC/package.json" "$SRC/package-lock.json" "$DST/"
    # --ignore-scripts: the gateway's postinstall is patch-package (it ships no patches) and
    # its prepare step is husky; neither is needed to run the built server.
    (cd "$DST" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
    echo "$stamp" > "$DST/.bench-stamp"
    say "portkey: $(cd "$DST" && npm ls --depth=0 2>/dev/null | tail -n +2 | sed 's/^[^a-z@]*//' | tr '\n' ' ')"
  fi
fi
