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


class Chain(models.Model):
    """A pipeline of prompt versions. Each step's variables are templates over the chain's
    input and earlier steps' outputs; a step may run only when its condition holds."""

    tenant = models.ForeignKey("portal.Tenant", on_delete=models.CASCADE, related_name="chains")
    slug = models.SlugField(max_length=100)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    input_schema = models.JSONField(default=dict, blank=True)
    # [{name, prompt: slug, version: number, variables: {var: template}, when: condition}]
    steps = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "slug"], name="chain_slug_once")]

    def __str__(self) -> str:
        return f"{self.tenant_id}/{self.slug} (chain)"


class PromptApi(models.Model):
    """A prompt (through a label) or a chain, published as a catalog product and served at
    POST /api/p/{tenant}/{slug}."""

    product = models.OneToOneField(
        "portal.Product", on_delete=models.CASCADE, related_name="prompt_api"
    )
    tenant = models.ForeignKey(
        "portal.Tenant", on_delete=models.CASCADE, related_name="prompt_apis"
    )
    slug = models.SlugField(max_length=100)
    prompt = models.ForeignKey(
        Prompt, on_delete=models.CASCADE, null=True, blank=True, related_name="apis"
    )
    label = models.SlugField(max_length=50, default="production")
    chain = models.ForeignKey(
        Chain, on_delete=models.CASCADE, null=True, blank=True, related_name="apis"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "slug"], name="prompt_api_slug_once"),
            models.CheckConstraint(
                condition=models.Q(prompt__isnull=False, chain__isnull=True)
                | models.Q(prompt__isnull=True, chain__isnull=False),
                name="prompt_api_prompt_xor_chain",
            ),
        ]

    def __str__(self) -> str:
        return f"/api/p/{self.tenant_id}/{self.slug}"


class Experiment(models.Model):
    """Splits a label's traffic between versions by weight, sticky per end user."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        STOPPED = "stopped", "Stopped"
        PROMOTED = "promoted", "Promoted"

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="experiments")
    label = models.SlugField(max_length=50, default="production")
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    winner = models.ForeignKey(
        PromptVersion, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["prompt", "label"],
                condition=models.Q(status="running"),
                name="one_running_experiment_per_label",
            )
        ]

    def __str__(self) -> str:
        return f"{self.prompt}@{self.label}: {self.name}"


class ExperimentArm(models.Model):
    """The first arm (lowest id) is the control the others are compared with."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="arms")
    version = models.ForeignKey(PromptVersion, on_delete=models.PROTECT, related_name="+")
    weight = models.PositiveIntegerField()

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.experiment_id}: v{self.version_id} x{self.weight}"


class Feedback(models.Model):
    """A score the caller gave one of its requests (POST /api/v1/feedback); the last one
    posted for a request counts."""

    tenant = models.ForeignKey("portal.Tenant", on_delete=models.CASCADE, related_name="+")
    api_key_id = models.BigIntegerField(null=True)
    request_id = models.CharField(max_length=128)
    score = models.FloatField()
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "request_id"], name="feedback_once")
        ]

    def __str__(self) -> str:
        return f"{self.request_id}: {self.score}"
