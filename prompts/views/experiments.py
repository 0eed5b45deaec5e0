"""A/B experiments in the portal: a prompt's experiments and the form that starts one, an
experiment's arms with their metrics and readouts, and the Promote and Stop buttons.

prompts.experiments checks who may do what (`prompt.manage`) and audits; the form here only
checks shapes, and the service's errors land on the form or in a message.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from portal import access
from portal.services import ServiceError
from portal.views.common import actor, fail, portal_view, tenant_page
from prompts import experiment_metrics
from prompts import experiments as experiment_services
from prompts.models import Experiment, Prompt, PromptVersion

ARM_ROWS = experiment_services.MAX_ARMS
DEFAULT_WEIGHT = 50


class ExperimentForm(forms.Form):
    """Name, label, and up to ARM_ROWS arms; rows left without a version are ignored."""

    name = forms.CharField(
        label="Name", max_length=200, required=False, help_text="Empty: “<label> test”."
    )
    label = forms.ChoiceField(label="Label", help_text="The label whose traffic is split.")

    def __init__(self, *args, prompt: Prompt, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.versions = {str(v.number): v for v in prompt.versions.order_by("number")}
        labels = prompt.labels.select_related("version").order_by("name")
        self.fields["label"].choices = [
            (label.name, f"{label.name} (serves v{label.version.number})") for label in labels
        ]
        choices = [("", "—")] + [(n, f"v{n} · {v.model}") for n, v in self.versions.items()]
        for i in range(ARM_ROWS):
            self.fields[f"arm_{i}_version"] = forms.ChoiceField(
                label=f"Arm {i + 1} version" + (" (control)" if i == 0 else ""),
                choices=choices,
                required=i < 2,
            )
            self.fields[f"arm_{i}_weight"] = forms.IntegerField(
                label=f"Arm {i + 1} weight", min_value=1, max_value=10_000, required=False
            )

    def arm_rows(self) -> list[tuple[int, forms.BoundField, forms.BoundField]]:
        return [(i + 1, self[f"arm_{i}_version"], self[f"arm_{i}_weight"]) for i in range(ARM_ROWS)]

    def clean(self):
        cleaned = super().clean()
        arms: list[tuple[PromptVersion, int]] = []
        for i in range(ARM_ROWS):
            number = cleaned.get(f"arm_{i}_version")
            if not number:
                continue
            weight = cleaned.get(f"arm_{i}_weight")
            if weight is None:
                if f"arm_{i}_weight" not in self.errors:
                    self.add_error(f"arm_{i}_weight", "Give this arm a weight.")
                continue
            arms.append((self.versions[number], weight))
        cleaned["arms"] = arms
        return cleaned


def _initial(prompt: Prompt) -> dict:
    """Production (or the first label) against the newest version it doesn't serve, 50/50."""
    labels = list(prompt.labels.select_related("version").order_by("name"))
    label = next((x for x in labels if x.name == "production"), labels[0] if labels else None)
    initial: dict = {"arm_0_weight": DEFAULT_WEIGHT, "arm_1_weight": DEFAULT_WEIGHT}
    if label is None:
        return initial
    initial |= {"label": label.name, "arm_0_version": str(label.version.number)}
    newest = prompt.versions.exclude(pk=label.version_id).order_by("-number").first()
    if newest is not None:
        initial["arm_1_version"] = str(newest.number)
    return initial


def _prompt(request, slug: str, prompt_slug: str) -> Prompt:
    """The prompt of a tenant page: 404 for strangers and other tenants' prompts."""
    tenant = tenant_page(request, slug, "tenant.view")
    return get_object_or_404(
        Prompt.objects.select_related("tenant"), tenant=tenant, slug=prompt_slug
    )


def _experiment(prompt: Prompt, experiment_id: int) -> Experiment:
    experiment = get_object_or_404(prompt.experiments.select_related("winner"), pk=experiment_id)
    experiment.prompt = prompt  # the same instance, tenant included
    return experiment


def _detail_url(experiment: Experiment) -> str:
    prompt = experiment.prompt
    return reverse("prompts:experiment", args=[prompt.tenant.slug, prompt.slug, experiment.pk])


# --- a prompt's experiments ------------------------------------------------------------


def _list_page(request, prompt: Prompt, *, form=None, status: int = 200):
    can_manage = access.can(request.user, prompt.tenant, "prompt.manage")
    if can_manage and form is None:
        form = ExperimentForm(prompt=prompt, initial=_initial(prompt))
    context = {
        "tenant": prompt.tenant,
        "prompt": prompt,
        "experiments": prompt.experiments.select_related("winner")
        .prefetch_related("arms__version")
        .order_by("-created_at", "-pk"),
        "can_manage": can_manage,
        "can_start": prompt.labels.exists() and prompt.versions.count() >= 2,
        "form": form,
    }
    return render(request, "prompts/experiments.html", context, status=status)


@portal_view
def experiment_list(request, slug, prompt):
    prompt = _prompt(request, slug, prompt)
    if request.method != "POST":
        return _list_page(request, prompt)
    access.require(request.user, prompt.tenant, "prompt.manage")
    form = ExperimentForm(request.POST, prompt=prompt)
    if form.is_valid():
        try:
            experiment = experiment_services.experiment_start(
                actor=actor(request),
                prompt=prompt,
                name=form.cleaned_data["name"],
                label=form.cleaned_data["label"],
                arms=form.cleaned_data["arms"],
            )
        except ServiceError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Started the experiment “{experiment.name}”.")
            return redirect(_detail_url(experiment))
    return _list_page(request, prompt, form=form, status=400)


# --- one experiment --------------------------------------------------------------------


def _percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate:.1%}"


def _results(experiment: Experiment) -> dict:
    metrics = experiment_metrics.arm_metrics(experiment)
    serving = experiment.prompt.labels.filter(name=experiment.label).first()
    rows = [
        {"m": m, "control": i == 0, "error_rate": _percent(m.error_rate)}
        for i, m in enumerate(metrics)
    ]
    return {
        "rows": rows,
        "readouts": experiment_metrics.readouts(metrics) if metrics else [],
        "serving": serving.version_id if serving else None,
        "min_samples": experiment_metrics.MIN_SAMPLES,
    }


@portal_view
def experiment_detail(request, slug, prompt, experiment_id):
    prompt = _prompt(request, slug, prompt)
    experiment = _experiment(prompt, experiment_id)
    context = {
        "tenant": prompt.tenant,
        "prompt": prompt,
        "experiment": experiment,
        "running": experiment.status == Experiment.Status.RUNNING,
        "can_manage": access.can(request.user, prompt.tenant, "prompt.manage"),
        **_results(experiment),
    }
    template = "prompts/_experiment_results.html" if request.htmx else "prompts/experiment.html"
    return render(request, template, context)


@portal_view
@require_POST
def experiment_promote(request, slug, prompt, experiment_id, arm_id):
    prompt = _prompt(request, slug, prompt)
    experiment = _experiment(prompt, experiment_id)
    arm = get_object_or_404(experiment.arms.select_related("version"), pk=arm_id)
    back = _detail_url(experiment)
    try:
        experiment_services.experiment_promote(actor=actor(request), experiment=experiment, arm=arm)
    except ServiceError as exc:
        return fail(request, str(exc), back)
    number = arm.version.number
    messages.success(
        request, f"Promoted v{number}: the label “{experiment.label}” now serves v{number}."
    )
    return redirect(back)


@portal_view
@require_POST
def experiment_stop(request, slug, prompt, experiment_id):
    prompt = _prompt(request, slug, prompt)
    experiment = _experiment(prompt, experiment_id)
    back = _detail_url(experiment)
    try:
        experiment_services.experiment_stop(actor=actor(request), experiment=experiment)
    except ServiceError as exc:
        return fail(request, str(exc), back)
    messages.success(
        request,
        f"Stopped the experiment “{experiment.name}”: the label “{experiment.label}” "
        "serves its own version again.",
    )
    return redirect(back)
