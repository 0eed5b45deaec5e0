# syntax=docker/dockerfile:1
# Waystation: one image for the gateway (uvicorn), the Celery worker and beat, and the migrate job.
# The runtime lock (requirements-runtime.lock) has no test extras: no playwright, pytest or ruff.

FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
COPY requirements-runtime.lock /tmp/requirements-runtime.lock
RUN /opt/venv/bin/pip install --require-hashes -r /tmp/requirements-runtime.lock

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=waystation.settings \
    WEB_CONCURRENCY=2
# A fixed numeric id, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
RUN groupadd --system --gid 10001 waystation \
    && useradd --system --uid 10001 --gid waystation --home-dir /app --no-create-home waystation
WORKDIR /app
COPY --from=builder /opt/venv /opt/venv
# Root-owned: the app user reads its code and never rewrites it.
COPY . /app
# collectstatic reads settings only; the SQLite default is never opened.
RUN SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput -v 0
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"]
# WEB_CONCURRENCY uvicorn processes. PROMETHEUS_MULTIPROC_DIR, when set, must be empty before they
# start (gateway/metrics.py). waystation.serve drains on SIGTERM: streams get GATEWAY_DRAIN_SECONDS
# (30) to finish, then an error event; uvicorn's own timeout is 10 s more, less than the
# orchestrator's grace period. `exec` puts it in the shell's place, so the signal reaches it.
CMD ["sh", "-c", "if [ -n \"$PROMETHEUS_MULTIPROC_DIR\" ]; then mkdir -p \"$PROMETHEUS_MULTIPROC_DIR\" && find \"$PROMETHEUS_MULTIPROC_DIR\" -mindepth 1 -delete; fi; exec python -m waystation.serve --host 0.0.0.0 --port 8000 --workers \"$WEB_CONCURRENCY\" --proxy-headers --forwarded-allow-ips '*' --no-access-log"]
