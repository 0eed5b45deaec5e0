"""Stub: being written (Prometheus metrics)."""


def observe(record) -> None:
    return None
