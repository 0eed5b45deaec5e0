"""The prompt library: a tenant's prompts, their immutable versions, and labels that point at
versions (moving a label is how a version is released or rolled back)."""

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import models


class Prompt(models.Model):
    tenant = models.ForeignKey("portal.Tenant", on_delete=models.CASCADE, related_name="prompts")
    slug = models.SlugField(max_length=100)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    tags = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "slug"], name="prompt_slug_once")]

    def __str__(self) -> str:
        return f"{self.tenant_id}/{self.slug}"


class PromptVersion(models.Model):
    """Immutable once written: a change is a new version."""

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    messages = models.JSONField()  # [{role, content: template}]
    model = models.CharField(max_length=200)
    parameters = models.JSONField(default=dict, blank=True)  # temperature, max_tokens, ...
    input_schema = models.JSONField(default=dict, blank=True)  # JSON Schema of the variables
    output_format = models.CharField(max_length=8, default="text")  # text | json
    output_schema = models.JSONField(null=True, blank=True)
    changelog = models.TextField(blank=True)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["prompt", "number"], name="prompt_version_once")
        ]
        ordering = ["number"]

    def __str__(self) -> str:
        return f"{self.prompt} v{self.number}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise PermissionDenied("Prompt versions are immutable: write a new version.")
        super().save(*args, **kwargs)


class PromptLabel(models.Model):
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="labels")
    name = models.SlugField(max_length=50)  # production, staging, any custom name
    version = models.ForeignKey(PromptVersion, on_delete=models.PROTECT, related_name="labels")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["prompt", "name"], name="prompt_label_once")]

    def __str__(self) -> str:
        return f"{self.prompt}@{self.name}"
