"""The prompt library's pages: a tenant's prompts, a prompt's versions and labels (moving a
label is a release or a rollback), a new version, one version with a diff, publishing, and
chains.

prompts.services, prompts.chains and prompts.publishing check who may write and what is
valid; the forms here only parse, and a ServiceError lands on the field it names.
"""

from __future__ import annotations

import json

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from gateway.models import LanguageModel
from portal import access
from portal.services.common import ServiceError
from portal.views.common import actor, portal_view, tenant_page
from prompts import publishing, services
from prompts.chains import chain_save
from prompts.forms import ChainForm, LabelForm, PromptForm, PublishForm, VersionForm, attach
from prompts.models import Chain, Prompt, PromptVersion

SUGGESTED_LABELS = ("production", "staging")


def _prompt(request, slug: str, prompt_slug: str, action: str = "tenant.view"):
    tenant = tenant_page(request, slug, action)
    return tenant, get_object_or_404(Prompt, tenant=tenant, slug=prompt_slug)


def _can_publish(request, tenant) -> bool:
    return _can_manage(request, tenant) and access.can(request.user, tenant, "product.manage")


def _can_manage(request, tenant) -> bool:
    return access.can(request.user, tenant, "prompt.manage")


def _needed(request) -> str:
    """Anyone in the tenant reads; writing is refused (403) before a form is even parsed."""
    return "prompt.manage" if request.method == "POST" else "tenant.view"


# --- prompts ---------------------------------------------------------------------------


def _prompt_rows(tenant) -> list[dict]:
    prompts = tenant.prompts.order_by("name", "slug").prefetch_related("versions", "labels")
    rows = []
    for prompt in prompts:
        labels = sorted(prompt.labels.all(), key=lambda label: label.name)
        numbers = [v.number for v in prompt.versions.all()]
        rows.append({"prompt": prompt, "latest": max(numbers, default=None), "labels": labels})
    return rows


def _list_page(request, tenant, *, form=None, status: int = 200):
    context = {
        "tenant": tenant,
        "rows": _prompt_rows(tenant),
        "form": form or PromptForm(),
        "can_manage": _can_manage(request, tenant),
    }
    return render(request, "prompts/library_list.html", context, status=status)


@portal_view
def prompt_list(request, slug):
    tenant = tenant_page(request, slug, _needed(request))
    if request.method != "POST":
        return _list_page(request, tenant)
    form = PromptForm(request.POST)
    if form.is_valid():
        try:
            prompt = services.prompt_create(
                actor=actor(request), tenant=tenant, **form.cleaned_data
            )
        except ServiceError as exc:
            attach(form, str(exc))
        else:
            messages.success(request, f"Created the prompt {prompt.name}; now write version 1.")
            return redirect("prompts:version_new", slug=tenant.slug, prompt=prompt.slug)
    return _list_page(request, tenant, form=form, status=400)


def _versions_context(request, tenant, prompt, *, label_form=None) -> dict:
    versions = list(prompt.versions.select_related("author").prefetch_related("labels"))
    labels = list(prompt.labels.select_related("version").order_by("name"))
    numbers = [v.number for v in versions]
    if label_form is None:
        label_form = LabelForm(numbers=numbers, initial={"name": "production"})
    names = sorted({label.name for label in labels} | set(SUGGESTED_LABELS))
    return {
        "tenant": tenant,
        "prompt": prompt,
        "versions": versions,
        "labels": labels,
        "label_form": label_form,
        "label_names": names,
        "can_manage": _can_manage(request, tenant),
    }


@portal_view
def prompt_detail(request, slug, prompt):
    tenant, prompt = _prompt(request, slug, prompt)
    apis = prompt.apis.select_related("product", "tenant").order_by("slug")
    context = _versions_context(request, tenant, prompt)
    context["apis"] = [{"api": api, "path": publishing.api_path(api)} for api in apis]
    context["can_publish"] = _can_publish(request, tenant)
    return render(request, "prompts/library_detail.html", context)


@portal_view
@require_POST
def label_move(request, slug, prompt):
    tenant, prompt = _prompt(request, slug, prompt, "prompt.manage")
    numbers = list(prompt.versions.values_list("number", flat=True))
    form = LabelForm(request.POST, numbers=numbers)
    back = reverse("prompts:detail", kwargs={"slug": tenant.slug, "prompt": prompt.slug})
    if form.is_valid():
        version = prompt.versions.get(number=form.cleaned_data["version"])
        try:
            label = services.label_set(
                actor=actor(request), prompt=prompt, name=form.cleaned_data["name"], version=version
            )
        except ServiceError as exc:
            return _label_failed(request, tenant, prompt, form, str(exc), back)
        done = f"The label {label.name} now points at v{version.number}."
        if request.htmx:
            context = _versions_context(request, tenant, prompt) | {"done": done}
            return render(request, "prompts/_library_versions.html", context)
        messages.success(request, done)
        return redirect(back)
    problems = "; ".join(e for errors in form.errors.values() for e in errors)
    return _label_failed(request, tenant, prompt, form, problems, back)


def _label_failed(request, tenant, prompt, form, message: str, back: str):
    if request.htmx:
        if not form.errors:
            form.add_error(None, message)
        context = _versions_context(request, tenant, prompt, label_form=form)
        return render(request, "prompts/_library_versions.html", context, status=400)
    messages.error(request, f"The label was not moved: {message}")
    return redirect(back)


# --- versions ------------------------------------------------------------------------


def _version_initial(prompt: Prompt) -> dict:
    latest = prompt.versions.order_by("-number").first()
    if latest is None:
        return {
            "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "{{ question }}"},
            ],
            "input_schema": {
                "type": "object",
                "properties": {"question": {"type": "string"}},
                "required": ["question"],
            },
            "parameters": {},
            "output_format": "text",
            "model": next(iter(_chat_models()), ""),
        }
    fields = ("messages", "model", "parameters", "input_schema", "output_format")
    initial = {name: getattr(latest, name) for name in fields}
    initial["output_schema"] = latest.output_schema
    return initial


def _chat_models() -> list[str]:
    chat = LanguageModel.objects.filter(enabled=True, mode="chat").order_by("name")
    return list(chat.values_list("name", flat=True))


@portal_view
def version_new(request, slug, prompt):
    tenant, prompt = _prompt(request, slug, prompt, "prompt.manage")
    status = 200
    if request.method == "POST":
        form = VersionForm(request.POST)
        if form.is_valid():
            try:
                version = services.version_create(
                    actor=actor(request), prompt=prompt, **form.cleaned_data
                )
            except ServiceError as exc:
                attach(form, str(exc))
            else:
                messages.success(request, f"Saved version {version.number}.")
                return redirect(
                    "prompts:version", slug=tenant.slug, prompt=prompt.slug, number=version.number
                )
        status = 400
    else:
        form = VersionForm(initial=_version_initial(prompt))
    context = {"tenant": tenant, "prompt": prompt, "form": form, "chat_models": _chat_models()}
    return render(request, "prompts/library_version_form.html", context, status=status)


def _diff_lines(diff: str) -> list[dict]:
    def kind(line: str) -> str:
        if line.startswith(("+++", "---")):
            return "diff-head"
        if line.startswith("@@"):
            return "diff-hunk"
        return {"+": "diff-add", "-": "diff-del"}.get(line[:1], "")

    return [{"kind": kind(line), "text": line} for line in diff.splitlines()]


def _against(request, prompt: Prompt, version: PromptVersion) -> PromptVersion | None:
    chosen = request.GET.get("against", "").strip()
    if not chosen:
        return None
    other = prompt.versions.filter(number=int(chosen)).first() if chosen.isdigit() else None
    if other is None or other == version:
        messages.error(request, f"There is no other version '{chosen}' to compare with.")
        return None
    return other


PRETTY = ("parameters", "input_schema", "output_schema")


def _pretty(value) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


@portal_view
def version_detail(request, slug, prompt, number):
    tenant, prompt = _prompt(request, slug, prompt)
    version = get_object_or_404(
        PromptVersion.objects.select_related("author"), prompt=prompt, number=number
    )
    against = _against(request, prompt, version)
    diff = services.version_diff(against, version) if against else None
    context = {
        "tenant": tenant,
        "prompt": prompt,
        "version": version,
        "labels": version.labels.order_by("name"),
        "others": prompt.versions.exclude(pk=version.pk).order_by("-number"),
        "against": against,
        "diff_lines": _diff_lines(diff) if diff is not None else None,
        "pretty": {name: _pretty(getattr(version, name)) for name in PRETTY},
    }
    return render(request, "prompts/library_version.html", context)


# --- publishing ------------------------------------------------------------------------


def _publish(request, tenant, form: PublishForm, **target):
    """The new API, or None with the errors on the form."""
    if not form.is_valid():
        return None
    try:
        return publishing.api_publish(actor=actor(request), tenant=tenant, **form.cleaned_data,
                                      **target)  # fmt: skip
    except ServiceError as exc:
        attach(form, str(exc))
    return None


def _docs(api):
    return redirect("prompts:api_docs", tenant=api.tenant.slug, api=api.slug)


@portal_view
def publish(request, slug, prompt):
    tenant, prompt = _prompt(request, slug, prompt, "prompt.manage")
    access.require(request.user, tenant, "product.manage")  # publishing creates a product
    labels = list(prompt.labels.order_by("name").values_list("name", flat=True))
    status = 200
    if request.method == "POST":
        form = PublishForm(request.POST, labels=labels)
        api = _publish(request, tenant, form, prompt=prompt)
        if api is not None:
            messages.success(request, f"Published {prompt.name} at {publishing.api_path(api)}.")
            return _docs(api)
        status = 400
    else:
        initial = {"slug": prompt.slug, "name": prompt.name, "description": prompt.description,
                   "visibility": "public", "label": "production"}  # fmt: skip
        form = PublishForm(initial=initial, labels=labels)
    context = {"tenant": tenant, "prompt": prompt, "form": form, "labels": labels}
    return render(request, "prompts/library_publish.html", context, status=status)


# --- chains ----------------------------------------------------------------------------


def _save_chain(request, tenant, form: ChainForm) -> Chain | None:
    if not form.is_valid():
        return None
    try:
        return chain_save(actor=actor(request), tenant=tenant, **form.cleaned_data)
    except ServiceError as exc:
        attach(form, str(exc))
    return None


def _chains_page(request, tenant, *, form=None, status: int = 200):
    context = {
        "tenant": tenant,
        "chains": tenant.chains.order_by("name", "slug"),
        "prompts": tenant.prompts.order_by("slug"),
        "form": form or ChainForm(initial={"input_schema": {"type": "object"}}),
        "can_manage": _can_manage(request, tenant),
    }
    return render(request, "prompts/chains.html", context, status=status)


@portal_view
def chain_list(request, slug):
    tenant = tenant_page(request, slug, _needed(request))
    if request.method != "POST":
        return _chains_page(request, tenant)
    form = ChainForm(request.POST)
    if form.is_valid() and tenant.chains.filter(slug=form.cleaned_data["slug"]).exists():
        form.add_error("slug", "This tenant already has a chain with this slug; edit it there.")
    chain = _save_chain(request, tenant, form)
    if chain is None:
        return _chains_page(request, tenant, form=form, status=400)
    messages.success(request, f"Created the chain {chain.name}.")
    return redirect("prompts:chain", slug=tenant.slug, chain=chain.slug)


def _chain_form(chain: Chain, data=None) -> ChainForm:
    fields = ("slug", "name", "description", "input_schema", "steps")
    return ChainForm(data, initial={name: getattr(chain, name) for name in fields})


def _publish_form(chain: Chain, data=None) -> PublishForm:
    initial = {"slug": chain.slug, "name": chain.name, "description": chain.description,
               "visibility": "public"}  # fmt: skip
    return PublishForm(data, initial=initial, prefix="publish")


@portal_view
def chain_detail(request, slug, chain):
    tenant = tenant_page(request, slug, _needed(request))
    chain = get_object_or_404(Chain, tenant=tenant, slug=chain)
    form, publish_form, status = _chain_form(chain), _publish_form(chain), 200
    if request.method == "POST" and request.POST.get("action") == "publish":
        publish_form = _publish_form(chain, request.POST)
        api = _publish(request, tenant, publish_form, chain=chain)
        if api is not None:
            messages.success(request, f"Published {chain.name} at {publishing.api_path(api)}.")
            return _docs(api)
        status = 400
    elif request.method == "POST":
        form = _chain_form(chain, request.POST.copy())
        form.data["slug"] = chain.slug  # the slug names the chain being edited
        saved = _save_chain(request, tenant, form)
        if saved is not None:
            messages.success(request, f"Saved the chain {saved.name}.")
            return redirect("prompts:chain", slug=tenant.slug, chain=saved.slug)
        status = 400
    apis = chain.apis.select_related("product", "tenant").order_by("slug")
    context = {
        "tenant": tenant,
        "chain": chain,
        "form": form,
        "publish_form": publish_form,
        "apis": [{"api": api, "path": publishing.api_path(api)} for api in apis],
        "prompts": tenant.prompts.order_by("slug"),
        "can_manage": _can_manage(request, tenant),
        "can_publish": _can_publish(request, tenant),
    }
    return render(request, "prompts/chain.html", context, status=status)
