"""The call log explorer's index, built without blocking the usage table's writes."""

from django.db import migrations, models

from waystation.migration_ops import AddIndexConcurrently


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("billing", "0011_usage_event_application_timings"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="usageevent",
            index=models.Index(fields=["tenant_id", "created_at"], name="usage_tenant_time"),
        ),
    ]
