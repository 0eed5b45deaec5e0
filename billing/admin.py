from django.contrib import admin

from billing.models import Price, ReportWebhook, UsageEvent, UsageRollup


@admin.register(Price)
class PriceAdmin(admin.ModelAdmin):
    list_display = ("model_name", "input_per_mtok", "output_per_mtok", "effective_from")


@admin.register(UsageEvent)
class UsageEventAdmin(admin.ModelAdmin):
    list_display = ("created_at", "request_id", "public_model", "provider", "status", "cost")
    list_filter = ("status", "provider")


@admin.register(UsageRollup)
class UsageRollupAdmin(admin.ModelAdmin):
    list_display = ("granularity", "bucket_start", "tenant_id", "model", "requests", "cost")
    list_filter = ("granularity",)


@admin.register(ReportWebhook)
class ReportWebhookAdmin(admin.ModelAdmin):
    """The secret is set (and shown once) through the portal's reports page."""

    list_display = ("tenant", "url", "enabled", "last_pushed_month", "last_status")
    exclude = ("secret_encrypted",)
    readonly_fields = ("last_pushed_month", "last_attempt_at", "last_status", "last_error")

    def has_add_permission(self, request) -> bool:
        return False  # it needs a secret: the portal makes one
