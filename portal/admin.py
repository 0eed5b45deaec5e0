from django.contrib import admin

from portal.models import (
    ApiKey,
    Application,
    AuditEvent,
    Invitation,
    Membership,
    Product,
    Subscription,
    Tenant,
)
from portal.services import Actor, audit


class AuditedAdmin(admin.ModelAdmin):
    """Operator edits in the admin land in the audit log like portal acts do."""

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        verb = "updated" if change else "created"
        audit(
            actor=Actor(request.user, request.META.get("REMOTE_ADDR")),
            tenant=None,
            action=f"{type(obj).__name__.lower()}.{verb}",
            target=obj,
            fields=sorted(form.changed_data),
        )

    def delete_model(self, request, obj):
        audit(
            actor=Actor(request.user, request.META.get("REMOTE_ADDR")),
            tenant=None,
            action=f"{type(obj).__name__.lower()}.deleted",
            target=obj,
        )
        super().delete_model(request, obj)


@admin.register(Tenant)
class TenantAdmin(AuditedAdmin):
    list_display = ("slug", "name", "created_at")
    search_fields = ("slug", "name")


@admin.register(Product)
class ProductAdmin(AuditedAdmin):
    list_display = ("name", "slug", "owner", "status", "visibility", "approval_required")
    list_filter = ("status", "visibility", "kind")
    filter_horizontal = ("language_models",)


@admin.register(Application)
class ApplicationAdmin(admin.ModelAdmin):
    list_display = ("name", "tenant", "created_at")


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("prefix", "name", "tenant", "application", "created_at", "revoked_at")
    readonly_fields = ("secret_hash", "prefix")


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = ("application", "product", "status", "created_at", "decided_at")
    list_filter = ("status",)


admin.site.register(Membership)
admin.site.register(Invitation)


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ("created_at", "actor_label", "tenant", "action", "target_label", "source_ip")
    list_filter = ("action",)

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
