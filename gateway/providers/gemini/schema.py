"""JSON Schema -> the OpenAPI 3.0 subset that Gemini's `Schema` object accepts.

Used for function `parameters` and for `generationConfig.responseSchema`. Gemini rejects any key
it does not know ("Invalid JSON payload received. Unknown name ..."), so we keep an allowlist
(`ALLOWED`) rather than strip known offenders. Dropped, among others: `$schema`, `$id`,
`additionalProperties`, `strict`, `examples`, `not`, `patternProperties`, `x-*` vendor keys.
On the way:

* local `$ref`s (`#/$defs/X`, `#/definitions/X`) are inlined; a recursive or unresolvable
  reference becomes `{"type": "object"}`, since Gemini has no references;
* `allOf` is merged into its parent; `oneOf` is treated as `anyOf`;
* `type: [T, "null"]` and `anyOf: [..., {"type": "null"}]` become `nullable: true`; other type
  lists become `anyOf`. A node that keeps an `anyOf` carries nothing else (Gemini rejects
  siblings of `anyOf`): its description and nullability move into the branches;
* `const` becomes a one-value `enum`; `enum` is kept only as a list of non-empty strings (the
  only kind Gemini takes) and `format` only as `enum` or `date-time` (others are rejected);
* a missing `type` is inferred from `properties` / `items` / `enum`; an array without `items`
  gets string items; an object without properties loses `properties` and `required` (an empty
  map is rejected); `required` only names properties that exist;
* with `ordering=True` (response schemas) objects get `propertyOrdering` in the schema's own
  key order, because Gemini otherwise generates the properties in alphabetical order.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import invalid

ALLOWED = frozenset(
    {
        "type",
        "format",
        "title",
        "description",
        "nullable",
        "enum",
        "items",
        "minItems",
        "maxItems",
        "properties",
        "required",
        "minProperties",
        "maxProperties",
        "minLength",
        "maxLength",
        "pattern",
        "minimum",
        "maximum",
        "example",
        "default",
        "propertyOrdering",
    }
)
FORMATS = frozenset({"enum", "date-time"})
ANNOTATIONS = ("title", "description", "default", "example")
MAX_DEPTH = 64


def gemini_schema(schema: dict[str, Any], ordering: bool = False) -> dict[str, Any]:
    defs: dict[str, Any] = {}
    for key in ("definitions", "$defs"):
        if isinstance(schema.get(key), dict):
            defs.update(schema[key])
    return _Cleaner(defs, ordering).node(schema, 0, ())


class _Cleaner:
    def __init__(self, defs: dict[str, Any], ordering: bool) -> None:
        self.defs = defs
        self.ordering = ordering

    def node(self, raw: object, depth: int, refs: tuple[str, ...]) -> dict[str, Any]:
        if depth > MAX_DEPTH:
            raise invalid("A JSON schema is nested too deeply.")
        if not isinstance(raw, dict):
            return {}  # `true` / `{}` schemas: anything goes
        node, refs = self._expand(raw, refs)
        nullable = node.get("nullable") is True
        kind = node.get("type")
        if isinstance(kind, list):
            types = [t for t in kind if isinstance(t, str) and t.lower() != "null"]
            nullable = nullable or len(types) < len(kind)
            node = {k: v for k, v in node.items() if k != "type"}
            if len(types) == 1:
                node["type"] = types[0]
            elif types:
                node["anyOf"] = [_typed_branch(node, t) for t in types]
        branches = node.get("anyOf", node.get("oneOf"))
        if isinstance(branches, list):
            return self._any_of(node, branches, nullable, depth, refs)
        return self._plain(node, nullable, depth, refs)

    def _expand(self, node: dict[str, Any], refs: tuple[str, ...]) -> tuple[dict, tuple]:
        """Inline `$ref` and merge `allOf` until neither is left at this level."""
        while True:
            if "$ref" in node:
                ref = node["$ref"]
                name = ref.rsplit("/", 1)[-1] if isinstance(ref, str) else ""
                local = isinstance(ref, str) and ref.startswith(("#/$defs/", "#/definitions/"))
                if not local or name not in self.defs or name in refs:
                    target: Any = {"type": "object"}
                else:
                    target, refs = self.defs[name], refs + (name,)
                rest = {k: v for k, v in node.items() if k != "$ref"}
                node = {**(target if isinstance(target, dict) else {}), **rest}
            elif isinstance(node.get("allOf"), list):
                merged = {k: v for k, v in node.items() if k != "allOf"}
                for sub in node["allOf"]:
                    if isinstance(sub, dict):
                        sub, refs = self._expand(sub, refs)
                        _merge(merged, sub)
                node = merged
            else:
                return node, refs

    def _any_of(
        self, node: dict, branches: list, nullable: bool, depth: int, refs: tuple[str, ...]
    ) -> dict[str, Any]:
        def is_null(b: object) -> bool:
            return isinstance(b, dict) and str(b.get("type", "")).lower() == "null"

        kept = [b for b in branches if not is_null(b)]
        nullable = nullable or len(kept) < len(branches)
        rest = {k: v for k, v in node.items() if k not in ("anyOf", "oneOf")}
        notes = {k: node[k] for k in ANNOTATIONS if k in node}
        if len(kept) == 1:  # `Optional[X]`: X itself, with the parent's annotations
            merged = {**kept[0], **notes} if isinstance(kept[0], dict) else dict(notes)
            merged = {**merged, "nullable": True} if nullable else merged
            return self.node(merged, depth + 1, refs)
        if not kept:
            return self._plain(rest, nullable, depth, refs)
        out = []
        for branch in kept:
            clean = self.node(branch, depth + 1, refs)
            if "description" in notes and "anyOf" not in clean:
                clean.setdefault("description", notes["description"])
            if nullable and "anyOf" not in clean:
                clean["nullable"] = True
            out.append(clean)
        return {"anyOf": out}

    def _plain(
        self, node: dict, nullable: bool, depth: int, refs: tuple[str, ...]
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key not in ALLOWED or key == "nullable":
                continue
            if key == "properties":
                if isinstance(value, dict):
                    out[key] = {
                        str(name): self.node(sub, depth + 1, refs) for name, sub in value.items()
                    }
            elif key == "items":
                if isinstance(value, list):  # tuple validation: Gemini has one item schema
                    value = value[0] if value else {}
                out[key] = self.node(value, depth + 1, refs)
            elif key == "format":
                if value in FORMATS:
                    out[key] = value
            elif key == "enum":
                if isinstance(value, list) and all(isinstance(v, str) and v for v in value):
                    out[key] = value
            else:
                out[key] = value
        if "enum" not in out and isinstance(node.get("const"), str) and node["const"]:
            out["enum"] = [node["const"]]
        if nullable:
            out["nullable"] = True
        if "type" not in out:
            for key, kind in (("properties", "object"), ("items", "array"), ("enum", "string")):
                if key in out:
                    out["type"] = kind
                    break
        return _finish_node(out, self.ordering)


def _typed_branch(node: dict[str, Any], kind: str) -> dict[str, Any]:
    """One branch of a `type: [a, b]` list, taking the keywords that belong to that type."""
    own = {
        "object": ("properties", "required", "minProperties", "maxProperties"),
        "array": ("items", "minItems", "maxItems"),
        "string": ("enum", "format", "minLength", "maxLength", "pattern"),
    }.get(kind.lower(), ("minimum", "maximum"))
    return {"type": kind, **{k: node[k] for k in own if k in node}}


def _merge(into: dict[str, Any], sub: dict[str, Any]) -> None:
    for key, value in sub.items():
        if key == "properties" and isinstance(value, dict):
            into["properties"] = {**(into.get("properties") or {}), **value}
        elif key == "required" and isinstance(value, list):
            into["required"] = list(dict.fromkeys([*(into.get("required") or []), *value]))
        else:
            into.setdefault(key, value)


def _finish_node(out: dict[str, Any], ordering: bool) -> dict[str, Any]:
    kind = str(out.get("type", "")).lower()
    if kind == "object":
        props = out.get("properties")
        if not props:
            out.pop("properties", None)
            out.pop("required", None)
            out.pop("propertyOrdering", None)
        else:
            if isinstance(out.get("required"), list):
                out["required"] = [r for r in out["required"] if r in props]
            if ordering and "propertyOrdering" not in out:
                out["propertyOrdering"] = list(props)
    elif kind == "array" and "items" not in out:
        out["items"] = {"type": "string"}
    return out
