from django.contrib import admin

from billing.models import Price, UsageEvent


@admin.register(Price)
class PriceAdmin(admin.ModelAdmin):
    list_display = ("model_name", "input_per_mtok", "output_per_mtok", "effective_from")


@admin.register(UsageEvent)
class UsageEventAdmin(admin.ModelAdmin):
    list_display = ("created_at", "request_id", "public_model", "provider", "status", "cost")
    list_filter = ("status", "provider")
