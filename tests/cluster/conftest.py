"""A cluster of real processes (deploy/cluster): nginx, two gateways, a Celery worker and a
beat, on this session's test database and Redis, started once for the session.

The database is flushed between tests, so each test creates its own data; the shared Redis
counters are wiped before each test, and the processes' catalogs are waited for (settle).
"""

from __future__ import annotations

import os
import shutil
import time

import pytest
from django.conf import settings

CATALOG_SECONDS = 0.5  # the cluster's GATEWAY_CATALOG_CACHE_SECONDS


def nginx_available() -> bool:
    return bool(shutil.which("nginx")) or os.access("/usr/sbin/nginx", os.X_OK)


# Package scope: the cluster (and its Celery worker) is gone before the other suites run.
@pytest.fixture(scope="package")
def cluster(django_db_setup, django_db_blocker, isolated_usage_stream, tmp_path_factory):
    from deploy.cluster.cluster import Cluster

    if not nginx_available():
        pytest.skip("nginx is not installed (make nginx installs it)")
    if not settings.DISTRIBUTED:
        pytest.skip("the cluster shares state through Redis: set REDIS_URL")
    db = settings.DATABASES["default"]
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    env = {
        "DATABASE_URL": f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "OUTBOUND_ALLOWED_NETWORKS": settings.OUTBOUND_ALLOWED_NETWORKS,  # fakes on loopback
        # Its own stream: its worker must never drain the test process's events.
        "USAGE_STREAM_KEY": f"{settings.USAGE_STREAM_KEY}:cluster",
        "GATEWAY_CACHE_KEY_PREFIX": settings.GATEWAY_CACHE_KEY_PREFIX,
        "GATEWAY_CATALOG_CACHE_SECONDS": str(CATALOG_SECONDS),
        "GATEWAY_BREAKER_FAILURES": "3",
        "GATEWAY_BREAKER_COOLDOWN_SECONDS": "30",
        "CLUSTER_DRAIN_SECONDS": "5",
        "LOG_LEVEL": "WARNING",
    }
    run_dir = tmp_path_factory.mktemp("cluster")
    running = Cluster(gateways=2, workers=1, env=env, run_dir=run_dir, migrate=False).start()
    yield running
    # Its processes' connections end with them. (Dropping every other connection here would
    # also cut the in-process gateway's, which later suites still use.)
    running.stop()


@pytest.fixture
def cl(cluster, transactional_db):
    """The cluster, with the counters, breakers and cache entries of earlier tests wiped."""
    import redis

    from gateway import shared

    client = redis.Redis.from_url(settings.REDIS_URL)
    counters = [
        *client.keys("waystation:breakers:*"),
        *client.keys("waystation:rl:*"),
        *client.keys("waystation:budget:*"),
        *client.keys(f"{settings.GATEWAY_CACHE_KEY_PREFIX}:*"),
    ]
    client.delete(shared.BALANCE_KEY, *counters)
    return cluster


def settle() -> None:
    """Every process has re-read the catalog (and its keys) since now."""
    time.sleep(CATALOG_SECONDS + 0.4)
