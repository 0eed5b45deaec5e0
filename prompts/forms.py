"""The prompt library's forms. They only check types (JSON that parses, slugs, choices); the
rules (valid templates, schemas, steps, who may write) stay in prompts.services, and a
ServiceError lands on the field it names (`attach`)."""

from __future__ import annotations

import json
import re

from django import forms

from portal.models import Product
from prompts.services import OUTPUT_FORMATS

MONO = {"spellcheck": "false", "class": "mono"}
STEP_FORMAT = (
    '[{"name": "classify", "prompt": "<prompt slug>", "version": 1, '
    '"variables": {"text": "{{ input.text }}"}, "when": ""}, ...]'
)


class JsonField(forms.CharField):
    """JSON text parsed into a value of `kind` (list or dict); empty gives `empty`."""

    def __init__(self, *, kind: type, empty=None, rows: int = 6, **kwargs) -> None:
        self.kind, self.empty = kind, empty
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": rows, **MONO}))
        kwargs.setdefault("strip", True)
        super().__init__(**kwargs)

    def prepare_value(self, value):
        if isinstance(value, list | dict):
            return json.dumps(value, indent=2, ensure_ascii=False)
        return value

    def to_python(self, value):
        text = super().to_python(value)
        if not text:
            return self.empty
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(
                f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."
            ) from exc
        if not isinstance(parsed, self.kind):
            what = "a JSON list [...]" if self.kind is list else "a JSON object {...}"
            raise forms.ValidationError(f"Give {what}.")
        return parsed


class PromptForm(forms.Form):
    slug = forms.SlugField(
        max_length=100, help_text="Lower-case letters, digits and hyphens; it names the prompt."
    )
    name = forms.CharField(max_length=200, required=False)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    tags = forms.CharField(required=False, max_length=500, help_text="Comma-separated.")

    def clean_tags(self) -> list[str]:
        return [t.strip() for t in self.cleaned_data["tags"].split(",") if t.strip()]


class VersionForm(forms.Form):
    messages = JsonField(
        kind=list,
        rows=10,
        help_text='A list of {"role": "system|user|assistant", "content": "<template>"}; '
        "templates use {{ variable }}, {% if %} and {% for %}.",
    )
    model = forms.CharField(
        max_length=200, widget=forms.TextInput(attrs={"list": "chat-models", **MONO})
    )
    parameters = JsonField(
        kind=dict, empty={}, required=False, rows=3, help_text='e.g. {"temperature": 0.2}'
    )
    input_schema = JsonField(
        kind=dict,
        empty=None,
        required=False,
        help_text="A JSON Schema of the variables. Empty: any object.",
    )
    output_format = forms.ChoiceField(choices=[(f, f) for f in OUTPUT_FORMATS])
    output_schema = JsonField(
        kind=dict, empty=None, required=False, help_text="A JSON Schema; needs output format json."
    )
    changelog = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))


class LabelForm(forms.Form):
    name = forms.SlugField(
        label="Label",
        max_length=50,
        widget=forms.TextInput(attrs={"list": "label-names"}),
        help_text="An existing label, or a new name.",
    )
    version = forms.TypedChoiceField(coerce=int)

    def __init__(self, *args, numbers: list[int], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["version"].choices = [(n, f"v{n}") for n in reversed(numbers)]


class PublishForm(forms.Form):
    slug = forms.SlugField(
        label="API slug", max_length=100, help_text="The API is served at /api/p/<tenant>/<slug>."
    )
    name = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    label = forms.ChoiceField(help_text="The calls run the version this label points at.")
    visibility = forms.ChoiceField(choices=Product.Visibility.choices)
    approval_required = forms.BooleanField(
        required=False, initial=True, help_text="Subscriptions wait for your approval."
    )

    def __init__(self, *args, labels: list[str] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if labels is None:  # a chain's API has no label
            del self.fields["label"]
        else:
            self.fields["label"].choices = [(name, name) for name in labels]


class ChainForm(forms.Form):
    slug = forms.SlugField(max_length=100)
    name = forms.CharField(max_length=200, required=False)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    input_schema = JsonField(
        kind=dict, required=False, help_text="A JSON Schema of the chain's input. Empty: any."
    )
    steps = JsonField(kind=list, rows=12, help_text=STEP_FORMAT)


def attach(form: forms.Form, message: str) -> None:
    """Put a service's message on the field it starts with (`'steps'`, `messages[0].role`)."""
    found = re.match(r"'?([a-z_]+)", message)
    field = found.group(1) if found else None
    form.add_error(field if field in form.fields else None, message)
