# Waystation: `make run` (embedded demo) and `make test` (the whole suite on PostgreSQL + Redis).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres
TEST_REDIS_URL ?= redis://127.0.0.1:6379/0

.PHONY: run test lint fmt install services browser nginx cluster cluster-stop bench clean

$(VENV)/.installed: requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --require-hashes -r requirements.lock
	@touch $@

install: $(VENV)/.installed

run: install
	@mkdir -p var
	$(PY) manage.py migrate --noinput -v 0
	$(PY) manage.py seed_prices
	PORT=$(PORT) $(PY) manage.py seed_demo
	@echo "Serving portal and gateway on http://127.0.0.1:$(PORT)"
	$(VENV)/bin/uvicorn waystation.asgi:application --host 127.0.0.1 --port $(PORT) --no-access-log --log-level warning

# PostgreSQL and Redis: start them where they are installed but not running.
services:
	@pg_isready -q -h 127.0.0.1 -p 5432 || { \
	  command -v pg_ctlcluster >/dev/null && pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql | head -1) main start; \
	  for i in $$(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done; }
	@redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || { \
	  mkdir -p /var/lib/redis /var/log/redis; \
	  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log; \
	  for i in $$(seq 30); do redis-cli ping >/dev/null 2>&1 && break; sleep 1; done; }

# Chromium for the browser tests (tests/browser): Debian's package, installed where missing.
browser:
	@command -v chromium >/dev/null || { export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq chromium; }

# nginx for `make cluster` and the cluster tests (tests/cluster): the OS package, where missing.
nginx:
	@command -v nginx >/dev/null || test -x /usr/sbin/nginx || { export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && { apt-get install -y -qq nginx-light || apt-get install -y -qq nginx; }; }

# nginx on CLUSTER_PORT in front of GATEWAYS gateway processes, WORKERS Celery workers and a beat,
# on DATABASE_URL and REDIS_URL (deploy/cluster/cluster.py); state and logs in var/cluster/.
GATEWAYS ?= 2
WORKERS ?= 1
CLUSTER_PORT ?= 8080
cluster: install services nginx
	$(PY) -m deploy.cluster.cluster start --gateways $(GATEWAYS) --workers $(WORKERS) --port $(CLUSTER_PORT)

cluster-stop:
	$(PY) -m deploy.cluster.cluster stop

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

fmt: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: install services browser nginx
	$(VENV)/bin/ruff check .
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(PY) manage.py makemigrations --check --dry-run
	$(PY) security/check.py
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(PY) -m pytest $(PYTEST_ARGS)

-include bench/Makefile.inc

clean:
	rm -rf $(VENV) var
