"""Periodic work of the gateway app (Celery beat in distributed mode)."""

from __future__ import annotations

from celery import shared_task

from gateway.context import state


@shared_task(ignore_result=True)
def purge_expired_conversations() -> int:
    """Each tenant's retention: conversations unused past it go, with their responses."""
    return state.purge_expired()
