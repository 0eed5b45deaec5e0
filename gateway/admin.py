from django.contrib import admin

from gateway.models import Deployment, LanguageModel, Provider
from portal.admin import AuditedAdmin


class DeploymentInline(admin.TabularInline):
    model = Deployment
    extra = 0


@admin.register(Provider)
class ProviderAdmin(AuditedAdmin):
    list_display = ("name", "kind", "base_url", "enabled", "from_config")
    exclude = ("api_key_encrypted",)  # secrets are set through config, never shown


@admin.register(LanguageModel)
class LanguageModelAdmin(AuditedAdmin):
    list_display = ("name", "mode", "context_window", "enabled", "from_config")
    inlines = [DeploymentInline]
