from django import forms
from django.contrib import admin

from gateway import outbound
from gateway.models import Deployment, LanguageModel, Provider
from portal.admin import AuditedAdmin


class DeploymentInline(admin.TabularInline):
    model = Deployment
    extra = 0


class ProviderForm(forms.ModelForm):
    class Meta:
        model = Provider
        # not api_key_encrypted: secrets are set through config, never shown
        fields = ("name", "kind", "base_url", "api_key_env", "options", "enabled", "from_config")

    def clean_base_url(self) -> str:
        url = self.cleaned_data.get("base_url", "")
        if url:
            try:
                outbound.check_url(url)
            except outbound.OutboundRefused as exc:
                raise forms.ValidationError(str(exc)) from None
        return url


@admin.register(Provider)
class ProviderAdmin(AuditedAdmin):
    form = ProviderForm
    list_display = ("name", "kind", "base_url", "enabled", "from_config")
    exclude = ("api_key_encrypted",)  # secrets are set through config, never shown


@admin.register(LanguageModel)
class LanguageModelAdmin(AuditedAdmin):
    list_display = ("name", "mode", "context_window", "enabled", "from_config")
    inlines = [DeploymentInline]
