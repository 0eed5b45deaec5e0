from celery import shared_task
from django.conf import settings

from billing import usage_stream


@shared_task(ignore_result=True)
def drain_usage_stream() -> int:
    if not settings.DISTRIBUTED:
        return 0  # embedded mode writes in-process
    return usage_stream.drain()
