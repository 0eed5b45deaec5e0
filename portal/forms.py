"""Forms of the developer portal: they validate input; the services apply the rules."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.utils import timezone

from portal.models import Role

GRACE_CHOICES = [
    ("0", "None"),
    ("3600", "1 hour"),
    ("86400", "24 hours"),
    ("604800", "7 days"),
]


class TenantForm(forms.Form):
    name = forms.CharField(label="Tenant name", max_length=200)


class TenantSwitchForm(forms.Form):
    tenant = forms.SlugField(label="Tenant")


class ApplicationForm(forms.Form):
    name = forms.CharField(label="Name", max_length=200)
    description = forms.CharField(
        label="Description", required=False, widget=forms.Textarea(attrs={"rows": 3})
    )


class ApiKeyForm(forms.Form):
    name = forms.CharField(label="Key name", max_length=200)
    expires_at = forms.DateTimeField(
        label="Expires at",
        required=False,
        help_text="Leave empty for a key that does not expire.",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"],
    )

    def clean_expires_at(self):
        value = self.cleaned_data["expires_at"]
        if value is not None and value <= timezone.now():
            raise forms.ValidationError("The expiry must be in the future.")
        return value


class RotateKeyForm(forms.Form):
    grace = forms.TypedChoiceField(
        label="Grace period", choices=GRACE_CHOICES, coerce=int, initial="3600"
    )

    @property
    def grace_period(self) -> timedelta:
        return timedelta(seconds=self.cleaned_data["grace"])


class SubscribeForm(forms.Form):
    application = forms.ModelChoiceField(label="Application", queryset=None, empty_label=None)

    def __init__(self, *args, applications, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["application"].queryset = applications


class DecisionForm(forms.Form):
    decision = forms.ChoiceField(choices=[("approve", "Approve"), ("reject", "Reject")])
    reason = forms.CharField(label="Reason", required=False, widget=forms.Textarea)


class InvitationForm(forms.Form):
    email = forms.EmailField(label="Email")
    role = forms.ChoiceField(label="Role", choices=Role.choices, initial=Role.DEVELOPER)

    def __init__(self, *args, roles=None, **kwargs):
        super().__init__(*args, **kwargs)
        if roles is not None:
            self.fields["role"].choices = roles


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(label="Role", choices=Role.choices)


class TokenForm(forms.Form):
    name = forms.CharField(label="Token name", max_length=200)
