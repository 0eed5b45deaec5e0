from celery import shared_task


@shared_task(ignore_result=True)
def purge_call_bodies() -> int:
    """Bodies older than their tenant's log retention."""
    from observability import retention

    return retention.purge_call_bodies()


@shared_task(ignore_result=True)
def flag_cost_anomalies() -> int:
    """Days whose cost ran above the trailing week's by the tenant's factor: flag and alert."""
    from observability import anomalies

    return anomalies.flag_and_alert()
