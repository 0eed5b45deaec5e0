# The columns stay jsonb (EncryptedJSONField keeps JSONField's column type): no SQL runs
# (`sqlmigrate gateway 0009` is a no-op) and no row is rewritten. Rows written before are
# read as they are; `manage.py rotate_secrets` encrypts them in batches, outside migrations.

from django.db import migrations

import gateway.fields


class Migration(migrations.Migration):
    dependencies = [
        ("gateway", "0008_guardrails"),
    ]

    operations = [
        migrations.AlterField(
            model_name="conversationitem",
            name="message",
            field=gateway.fields.EncryptedJSONField(),
        ),
        migrations.AlterField(
            model_name="storedresponse",
            name="body",
            field=gateway.fields.EncryptedJSONField(),
        ),
    ]
