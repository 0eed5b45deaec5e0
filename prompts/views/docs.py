"""A published prompt API's documentation page (in the portal) and its OpenAPI document.

Who may read them follows the catalog: a public product's docs are anyone's, a private
product's only its owner tenant's members'; a retired product, or an unknown API, is a 404.
"""

from __future__ import annotations

import json
from typing import Any

from django.http import Http404, JsonResponse
from django.shortcuts import render

from portal import access
from portal.models import Product
from portal.services.common import ServiceError
from portal.views.common import portal_view
from prompts import openapi
from prompts.models import PromptApi
from prompts.publishing import api_path

KEY_VAR = "WAYSTATION_API_KEY"


def access_prompt_api(user, tenant_slug: str, api_slug: str) -> PromptApi:
    """The API at /api/p/{tenant_slug}/{api_slug} if `user` may see its product, else 404."""
    if user.is_authenticated:
        products = access.products_visible_to(user)
    else:
        products = Product.objects.filter(visibility=Product.Visibility.PUBLIC).exclude(
            status=Product.Status.DRAFT
        )
    api = (
        PromptApi.objects.select_related("product", "tenant", "prompt", "chain")
        .filter(tenant__slug=tenant_slug, slug=api_slug, product__in=products)
        .exclude(product__status=Product.Status.RETIRED)
        .first()
    )
    if api is None:
        raise Http404("No such API.")
    return api


def _document(request, api: PromptApi) -> dict:
    try:
        return openapi.api_document(api, request.build_absolute_uri("/"))
    except ServiceError as exc:  # the label points at no version any more
        raise Http404(str(exc)) from exc


def openapi_json(request, tenant, api):
    found = access_prompt_api(request.user, tenant, api)
    response = JsonResponse(_document(request, found), json_dumps_params={"indent": 2})
    if found.product.visibility == Product.Visibility.PUBLIC:  # for any OpenAPI viewer
        response["Access-Control-Allow-Origin"] = "*"
    return response


@portal_view
def api_docs(request, tenant, api):
    found = access_prompt_api(request.user, tenant, api)
    document = _document(request, found)
    version = openapi.api_version(found)
    schema = openapi.input_schema(found, version)
    base = request.build_absolute_uri("/").rstrip("/")
    url = base + api_path(found)
    body = openapi.example_variables(schema)
    context = {
        "api": found,
        "product": found.product,
        "version": version,
        "chain": found.chain,
        "path": api_path(found),
        "url": url,
        "variables": variable_rows(schema),
        "output_format": version.output_format if version is not None else "chain",
        "output_schema": _pretty(version.output_schema)
        if version and version.output_schema
        else "",
        "examples": examples(url=url, feedback_url=base + openapi.FEEDBACK_PATH, body=body),
        "document_version": document["info"]["version"],
    }
    return render(request, "prompts/api_docs.html", context)


# --- what the page shows -------------------------------------------------------------


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def type_label(schema: dict) -> str:
    kind = schema.get("type")
    label = " | ".join(kind) if isinstance(kind, list) else kind or "any"
    if kind == "array" and isinstance(schema.get("items"), dict):
        label = f"array of {type_label(schema['items'])}"
    if isinstance(schema.get("enum"), list):
        label += " (one of: " + ", ".join(json.dumps(v) for v in schema["enum"]) + ")"
    return label


def variable_rows(schema: dict) -> list[dict[str, Any]]:
    """One row per top-level variable: name, type, required, description."""
    required = set(schema.get("required") or [])
    return [
        {
            "name": name,
            "type": type_label(sub if isinstance(sub, dict) else {}),
            "required": name in required,
            "description": (sub or {}).get("description", "") if isinstance(sub, dict) else "",
        }
        for name, sub in openapi.ordered_properties(schema)
    ]


def _shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def examples(*, url: str, feedback_url: str, body: dict) -> dict[str, str]:
    """Copy-paste calls of the API with `body`; the key comes from $WAYSTATION_API_KEY."""
    data = json.dumps(body, ensure_ascii=False)
    auth = f'-H "Authorization: Bearer ${KEY_VAR}"'
    curl = f'curl {url} \\\n  {auth} \\\n  -H "Content-Type: application/json" \\\n'
    feedback = json.dumps({"request_id": "REQUEST_ID", "score": 1, "comment": "Spot on"})
    return {
        "curl": curl + f"  -d {_shell_quote(data)}",
        "stream": (
            f'curl -N {url} \\\n  {auth} \\\n  -H "Accept: text/event-stream" \\\n'
            f'  -H "Content-Type: application/json" \\\n  -d {_shell_quote(data)}'
        ),
        "python": PYTHON.format(url=url, key=KEY_VAR, body=repr(body)),
        "javascript": JAVASCRIPT.format(url=url, key=KEY_VAR, body=data),
        "feedback": (
            f'curl {feedback_url} \\\n  {auth} \\\n  -H "Content-Type: application/json" \\\n'
            f"  -d {_shell_quote(feedback)}"
        ),
    }


PYTHON = """import os

import httpx

response = httpx.post(
    "{url}",
    headers={{"Authorization": f"Bearer {{os.environ['{key}']}}"}},
    json={body},
    timeout=60,
)
response.raise_for_status()
answer = response.json()
print(answer["output"], answer["request_id"])"""

JAVASCRIPT = """const response = await fetch("{url}", {{
  method: "POST",
  headers: {{
    "Authorization": `Bearer ${{process.env.{key}}}`,
    "Content-Type": "application/json",
  }},
  body: JSON.stringify({body}),
}});
const answer = await response.json();
if (!response.ok) throw new Error(answer.error.message);
console.log(answer.output, answer.request_id);"""
