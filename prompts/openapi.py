"""The OpenAPI 3.1 document of one published prompt API, and example variables for its docs.

The document describes what the gateway serves at POST /api/p/{tenant}/{slug}: the body is
the variables (validated against the version's input schema), the answer carries the output
typed by the version's output format. Chains have no fixed versions to call, so no /v/{version}.
"""

from __future__ import annotations

import copy
from typing import Any

from prompts.models import Chain, PromptApi, PromptVersion
from prompts.publishing import api_path
from prompts.services import version_for

FEEDBACK_PATH = "/api/v1/feedback"
PLACEHOLDER = "…"


# --- example values ------------------------------------------------------------------


def example_value(schema: Any) -> Any:
    """A value that fits `schema`: its own example, default, const or first enum value when it
    has one, otherwise a neutral value of its type (objects and arrays filled recursively)."""
    if not isinstance(schema, dict):
        return None
    for key in ("examples", "enum"):
        if isinstance(schema.get(key), list) and schema[key]:
            return copy.deepcopy(schema[key][0])
    for key in ("default", "const"):
        if key in schema:
            return copy.deepcopy(schema[key])
    for key in ("oneOf", "anyOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return example_value(schema[key][0])
    return _example_of_type(schema, _type_of(schema))


def example_variables(schema: Any) -> dict:
    """An example request body for an input schema: always a JSON object."""
    value = example_value(schema)
    return value if isinstance(value, dict) else {}


def ordered_properties(schema: dict) -> list[tuple[str, Any]]:
    """An object schema's properties, required ones first (in `required` order), then the rest
    by name: a schema stored in jsonb has lost the order it was written in."""
    properties = schema.get("properties") or {}
    required = [name for name in schema.get("required") or [] if name in properties]
    rest = sorted(name for name in properties if name not in required)
    return [(name, properties[name]) for name in [*required, *rest]]


def _type_of(schema: dict) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    return kind


def _number(schema: dict, integer: bool) -> int | float:
    if "minimum" in schema:
        return schema["minimum"]
    if "exclusiveMinimum" in schema:
        return schema["exclusiveMinimum"] + 1
    if "maximum" in schema and schema["maximum"] < 0:
        return schema["maximum"]
    return 0 if integer else 0.0


def _example_of_type(schema: dict, kind: str) -> Any:
    if kind == "object":
        return {name: example_value(sub) for name, sub in ordered_properties(schema)}
    if kind == "array":
        item = example_value(schema.get("items") or {})
        return [item] * max(1, schema.get("minItems", 1))
    if kind in ("integer", "number"):
        return _number(schema, kind == "integer")
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return PLACEHOLDER * max(1, schema.get("minLength", 1))


# --- the document --------------------------------------------------------------------


def api_version(api: PromptApi) -> PromptVersion | None:
    """The version the API's label points at (None for a chain)."""
    return version_for(api.prompt, api.label) if api.prompt_id else None


def input_schema(api: PromptApi, version: PromptVersion | None) -> dict:
    source = version.input_schema if version is not None else api.chain.input_schema
    return copy.deepcopy(source or {"type": "object"})


def output_schema(api: PromptApi, version: PromptVersion | None) -> dict:
    if version is None:
        return {"description": "The output of the chain's last step."}
    if version.output_format != "json":
        return {"type": "string", "description": "The model's answer."}
    schema = copy.deepcopy(version.output_schema or {})
    schema.setdefault("description", "The model's answer, parsed as JSON.")
    return schema


def api_document(api: PromptApi, base_url: str) -> dict:
    """The OpenAPI 3.1 document of `api`, served from `base_url`."""
    version = api_version(api)
    variables = input_schema(api, version)
    paths = {api_path(api): {"post": _operation(api, version, variables, fixed=False)}}
    if version is not None:
        path = api_path(api) + "/v/{version}"
        paths[path] = {"post": _operation(api, version, variables, fixed=True)}
    paths[FEEDBACK_PATH] = {"post": _feedback_operation()}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": api.product.name,
            "description": api.product.description or api.product.name,
            "version": _info_version(api, version),
        },
        "servers": [{"url": base_url.rstrip("/") or "/"}],
        "security": [{"bearer": []}, {"apiKey": []}],
        "paths": paths,
        "components": _components(),
    }


def _info_version(api: PromptApi, version: PromptVersion | None) -> str:
    if version is not None:
        return str(version.number)
    chain: Chain = api.chain
    return chain.updated_at.strftime("%Y-%m-%dT%H:%M:%SZ") if chain.updated_at else "1"


def _operation(api: PromptApi, version, variables: dict, *, fixed: bool) -> dict:
    what = f"version {{version}} of {api.prompt.slug}" if fixed else _current(api)
    operation = {
        "operationId": f"call_{api.slug.replace('-', '_')}" + ("_version" if fixed else ""),
        "summary": f"Run {what}",
        "description": (
            "Send the variables as a JSON object. Add `Accept: text/event-stream` (or "
            "`?stream=true`) to receive the answer as server-sent events."
        ),
        "parameters": _parameters(version, fixed),
        "requestBody": {
            "required": True,
            "description": "The variables, checked against the input schema.",
            "content": {
                "application/json": {"schema": variables, "example": example_variables(variables)}
            },
        },
        "responses": {
            "200": _success(api, version),
            **{code: {"$ref": f"#/components/responses/{name}"} for code, name in ERRORS},
        },
    }
    return operation


def _current(api: PromptApi) -> str:
    if api.chain_id:
        return f"the chain {api.chain.slug}"
    return f"{api.prompt.slug}@{api.label} (or its running A/B experiment's version)"


def _parameters(version, fixed: bool) -> list[dict]:
    params = []
    if fixed:
        params.append(
            {
                "name": "version",
                "in": "path",
                "required": True,
                "description": "A fixed version number of the prompt.",
                "schema": {"type": "integer", "minimum": 1},
                "example": version.number,
            }
        )
    params += [
        {
            "name": "stream",
            "in": "query",
            "required": False,
            "description": "true: answer with server-sent events (like Accept: text/event-stream).",
            "schema": {"type": "boolean", "default": False},
        },
        {
            "name": "x-waystation-user",
            "in": "header",
            "required": False,
            "description": "Your end user's id: keeps the user in the same A/B experiment arm.",
            "schema": {"type": "string"},
        },
    ]
    return params


def _success(api: PromptApi, version) -> dict:
    output = output_schema(api, version)
    properties = {
        "output": output,
        "usage": {"$ref": "#/components/schemas/Usage"},
        "request_id": {"type": "string", "description": "Send it back with feedback."},
        "version": {"type": "integer", "description": "The prompt version that answered."},
        "model": {"type": "string"},
    }
    required = ["output", "usage", "request_id", "version", "model"]
    if version is None:
        properties["steps"] = {"type": "array", "items": {"$ref": "#/components/schemas/Step"}}
        required.append("steps")
    example = {
        "output": example_value(output) if version is not None else PLACEHOLDER,
        "usage": {"input_tokens": 42, "output_tokens": 7, "total_tokens": 49, "cost_usd": None},
        "request_id": "req_0123456789abcdef",
        "version": version.number if version is not None else 1,
        "model": version.model if version is not None else "MODEL_NAME",
    }
    return {
        "description": "The answer (JSON), or server-sent events when streaming.",
        "headers": {"x-request-id": {"$ref": "#/components/headers/RequestId"}},
        "content": {
            "application/json": {
                "schema": {"type": "object", "required": required, "properties": properties},
                "example": example,
            },
            "text/event-stream": {
                "schema": {"type": "string", "description": STREAM_DESCRIPTION},
                "example": _stream_example(chain=version is None),
            },
        },
    }


STREAM_DESCRIPTION = (
    'Server-sent events: `delta` events carry {"text"} (chains add "step"); chains send a '
    '`step` event {"name", "output", "skipped"} after each step; the last event is `done` '
    'with the same JSON as the non-streaming answer, or `error` with {"error": {...}}.'
)


def _stream_example(*, chain: bool) -> str:
    step = ', "step": "first"' if chain else ""
    events = [f'event: delta\ndata: {{"text": "Hel"{step}}}\n']
    events.append(f'event: delta\ndata: {{"text": "lo"{step}}}\n')
    if chain:
        events.append('event: step\ndata: {"name": "first", "output": "Hello", "skipped": false}\n')
    events.append('event: done\ndata: {"output": "Hello", "usage": {...}, "request_id": "..."}\n')
    return "\n".join(events)


def _feedback_operation() -> dict:
    return {
        "operationId": "send_feedback",
        "summary": "Score an answer",
        "description": "Score one of your requests by its request_id; the last score counts.",
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/Feedback"},
                    "example": {"request_id": "req_0123456789abcdef", "score": 1},
                }
            },
        },
        "responses": {
            "201": {
                "description": "Recorded.",
                "headers": {"x-request-id": {"$ref": "#/components/headers/RequestId"}},
            },
            **{code: {"$ref": f"#/components/responses/{name}"} for code, name in ERRORS[:3]},
        },
    }


# --- shared components ---------------------------------------------------------------

ERRORS = [
    ("400", "InvalidRequest"),
    ("401", "Unauthorized"),
    ("403", "Forbidden"),
    ("404", "NotFound"),
    ("429", "TooManyRequests"),
    ("502", "BadGateway"),
]

ERROR_DESCRIPTIONS = {
    "InvalidRequest": "Invalid variables (code `invalid_variables`): one entry in `errors` "
    "per invalid field, by JSON path.",
    "Unauthorized": "The API key is missing or invalid.",
    "Forbidden": "Code `subscription_required`: your application is not subscribed to this "
    "API, or its subscription is not approved yet.",
    "NotFound": "No such API (or version).",
    "TooManyRequests": "A rate, token or budget limit was reached; retry after Retry-After.",
    "BadGateway": "The model failed; code `invalid_output` when its JSON answer failed the "
    "output schema twice (the reason is in the message).",
}

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string", "examples": ["invalid_request_error"]},
                "code": {"type": ["string", "null"], "examples": ["invalid_variables"]},
                "param": {"type": ["string", "null"]},
                "errors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["path", "message"],
                        "properties": {
                            "path": {"type": "string", "examples": ["$.text"]},
                            "message": {"type": "string"},
                        },
                    },
                },
            },
        }
    },
}

USAGE_SCHEMA = {
    "type": "object",
    "required": ["input_tokens", "output_tokens", "total_tokens", "cost_usd"],
    "properties": {
        "input_tokens": {"type": "integer"},
        "output_tokens": {"type": "integer"},
        "total_tokens": {"type": "integer"},
        "cost_usd": {
            "type": ["string", "null"],
            "description": "Dollars as a decimal string; null when no price is known.",
            "examples": ["0.000012"],
        },
    },
}

STEP_SCHEMA = {
    "type": "object",
    "required": ["name", "version", "output", "skipped"],
    "properties": {
        "name": {"type": "string"},
        "version": {"type": "integer"},
        "output": {"description": "The step's output; null when skipped."},
        "skipped": {"type": "boolean"},
        "usage": {"anyOf": [{"$ref": "#/components/schemas/Usage"}, {"type": "null"}]},
    },
}

FEEDBACK_SCHEMA = {
    "type": "object",
    "required": ["request_id", "score"],
    "properties": {
        "request_id": {"type": "string"},
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "comment": {"type": "string"},
    },
}


def _components() -> dict:
    responses = {
        name: {
            "description": ERROR_DESCRIPTIONS[name],
            "headers": {"x-request-id": {"$ref": "#/components/headers/RequestId"}},
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for _, name in ERRORS
    }
    return {
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "An API key of an application subscribed to this API.",
            },
            "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
        },
        "headers": {
            "RequestId": {
                "description": "This request's id (quote it in feedback and support requests).",
                "schema": {"type": "string"},
            }
        },
        "schemas": {
            "Error": copy.deepcopy(ERROR_SCHEMA),
            "Usage": copy.deepcopy(USAGE_SCHEMA),
            "Step": copy.deepcopy(STEP_SCHEMA),
            "Feedback": copy.deepcopy(FEEDBACK_SCHEMA),
        },
        "responses": responses,
    }
