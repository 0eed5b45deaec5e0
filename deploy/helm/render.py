"""Render the Waystation Helm chart in Python, for tests and machines without helm.

Usage: python deploy/helm/render.py [CHART_DIR] [--set a.b=value ...] [--release NAME]

The templates use a small subset of Go-template syntax, and anything else fails loudly
(`TemplateError`) rather than rendering something helm would not:

- actions `{{ pipeline }}`, with `{{-` / `-}}` trimming the whitespace (newlines included) before
  or after them, and comments `{{/* ... */}}`;
- a pipeline starts with a field path (`.Values.a.b`, `.Release.Name`, `.Release.Namespace`,
  `.Release.Service`, `.Chart.Name`, `.Chart.Version`, `.Chart.AppVersion`), a string or
  number literal, `include "name" .` or `toYaml TERM`; then any of `| quote`, `| toYaml`,
  `| default TERM` (a literal or a field path), `| indent N`, `| nindent N`, `| int`;
- `{{- if [not] PIPELINE }} ... [{{- else }} ...] {{- end }}` (nested), where empty strings,
  zero, false, null and empty maps or lists are false, as in Go;
- `{{- define "name" }} ... {{- end }}` in files starting with `_` (`_helpers.tpl`), used with
  `include "name" .`; always with the root context `.`.

A missing value renders as empty, as helm does; `| default` supplies one. Values come from the
chart's values.yaml, deep-merged with `--set` overrides (or `overrides=` in Python).
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

CHART_DIR = Path(__file__).resolve().parent / "waystation"
_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.DOTALL)
_LITERAL = re.compile(r'^(?:"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?|true|false)$')


class TemplateError(Exception):
    """The template uses syntax this renderer does not support, or is malformed."""


def _tokens(text: str) -> list[tuple[str, str]]:
    """Split a template into ("text", s) and ("action", s) tokens, trimming around `{{-`/`-}}`."""
    tokens: list[tuple[str, str]] = []
    pos, trim_next = 0, False
    for match in _ACTION.finditer(text):
        chunk = text[pos : match.start()]
        if trim_next:
            chunk = chunk.lstrip()
        if match.group(1):
            chunk = chunk.rstrip()
        tokens.append(("text", chunk))
        body = match.group(2).strip()
        if not (body.startswith("/*") and body.endswith("*/")):
            tokens.append(("action", body))
        pos, trim_next = match.end(), bool(match.group(3))
    tail = text[pos:]
    if "{{" in tail or "}}" in tail:
        raise TemplateError(f"unbalanced braces near: {tail[:40]!r}")
    tokens.append(("text", tail.lstrip() if trim_next else tail))
    return tokens


def _parse(tokens: list[tuple[str, str]], pos: int, defines: dict, stop: tuple[str, ...]):
    """Parse tokens into a node list until one of `stop` ("end", "else"); returns (nodes, pos)."""
    nodes: list[tuple] = []
    while pos < len(tokens):
        kind, body = tokens[pos]
        pos += 1
        if kind == "text":
            nodes.append(("text", body))
            continue
        word = body.split(None, 1)[0] if body else ""
        if word in stop:
            return nodes, pos - 1
        if word == "if":
            then, pos = _parse(tokens, pos, defines, ("end", "else"))
            otherwise: list[tuple] = []
            if tokens[pos][1] == "else":
                otherwise, pos = _parse(tokens, pos + 1, defines, ("end",))
            if tokens[pos][1] != "end":
                raise TemplateError(f"expected end, got {{{{ {tokens[pos][1]} }}}}")
            nodes.append(("if", body[2:].strip(), then, otherwise))
            pos += 1
        elif word == "define":
            name = _string(body[len("define") :].strip())
            inner, pos = _parse(tokens, pos, defines, ("end",))
            defines[name] = inner
            pos += 1
        elif word in ("end", "else"):
            raise TemplateError(f"unexpected {{{{ {body} }}}}")
        else:
            nodes.append(("expr", body))
    if stop:
        raise TemplateError(f"missing {{{{ end }}}} (expected one of {stop})")
    return nodes, pos


def _string(token: str) -> str:
    if not (len(token) >= 2 and token[0] == token[-1] == '"'):
        raise TemplateError(f"expected a quoted string, got {token!r}")
    return json.loads(token)


def _lookup(path: str, root: dict) -> Any:
    if not re.fullmatch(r"(\.[A-Za-z_][A-Za-z0-9_]*)+", path):
        raise TemplateError(f"unsupported term {path!r}")
    parts = path[1:].split(".")
    if parts[0] not in ("Values", "Release", "Chart"):
        raise TemplateError(f"unsupported object .{parts[0]}")
    value: Any = root
    for part in parts:
        if not isinstance(value, dict):
            raise TemplateError(f"{path}: .{part} of a non-map")
        value = value.get(part)
    return value


class _Renderer:
    def __init__(self, root: dict, defines: dict) -> None:
        self.root, self.defines = root, defines

    def nodes(self, nodes: list[tuple]) -> str:
        out = []
        for node in nodes:
            if node[0] == "text":
                out.append(node[1])
            elif node[0] == "expr":
                out.append(_text(self.pipeline(node[1])))
            else:
                condition = node[1]
                negate = condition.startswith("not ")
                truth = _truthy(self.pipeline(condition[4:] if negate else condition))
                out.append(self.nodes(node[2] if truth != negate else node[3]))
        return "".join(out)

    def pipeline(self, body: str) -> Any:
        stages = [stage.strip() for stage in re.split(r'\|(?=(?:[^"]*"[^"]*")*[^"]*$)', body)]
        value = self.term(stages[0])
        for stage in stages[1:]:
            if stage.startswith("default "):
                fallback = stage[len("default ") :].strip()
                value = value if _truthy(value) else self.term(fallback)
            else:
                value = _apply(stage, value)
        return value

    def term(self, term: str) -> Any:
        if term.startswith("include "):
            args = term[len("include ") :].rsplit(None, 1)
            if len(args) != 2 or args[1] != ".":
                raise TemplateError(f'only `include "name" .` is supported, got {term!r}')
            name = _string(args[0])
            if name not in self.defines:
                raise TemplateError(f"include of undefined template {name!r}")
            return self.nodes(self.defines[name])
        if term.startswith("toYaml "):
            return _apply("toYaml", self.term(term[len("toYaml ") :].strip()))
        if _LITERAL.match(term):
            return json.loads(term)
        return _lookup(term, self.root)


def _apply(stage: str, value: Any) -> Any:
    name, _, arg = stage.partition(" ")
    arg = arg.strip()
    if name == "quote" and not arg:
        return json.dumps(_text(value))
    if name == "toYaml" and not arg:
        return "" if value is None else yaml.safe_dump(value, sort_keys=False).rstrip("\n")
    if name in ("indent", "nindent") and arg.isdigit():
        pad = " " * int(arg)
        text = "\n".join(pad + line if line else line for line in _text(value).split("\n"))
        return "\n" + text if name == "nindent" else text
    if name == "int" and not arg:
        return int(value or 0)
    raise TemplateError(f"unsupported pipeline stage {stage!r}")


def _truthy(value: Any) -> bool:
    return value not in (None, False, 0, "") and value != {} and value != []


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        raise TemplateError("a map or list needs `| toYaml` to be printed")
    return str(value)


def deep_merge(base: dict, overrides: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def render_chart(
    chart_dir: Path = CHART_DIR,
    *,
    overrides: dict | None = None,
    release: str = "waystation",
    namespace: str = "default",
) -> dict[str, str]:
    """Render every template of the chart; returns {template path: rendered text}."""
    chart = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
    values = yaml.safe_load((chart_dir / "values.yaml").read_text()) or {}
    root = {
        "Values": deep_merge(values, overrides or {}),
        "Release": {"Name": release, "Namespace": namespace, "Service": "Helm"},
        "Chart": {key[0].upper() + key[1:]: value for key, value in chart.items()},
    }
    defines: dict[str, list] = {}
    parsed = {}
    for path in sorted((chart_dir / "templates").iterdir()):
        try:
            nodes, _ = _parse(_tokens(path.read_text()), 0, defines, ())
        except TemplateError as error:
            raise TemplateError(f"templates/{path.name}: {error}") from error
        if not path.name.startswith("_"):
            parsed[f"templates/{path.name}"] = nodes
    renderer = _Renderer(root, defines)
    rendered = {}
    for name, nodes in parsed.items():
        try:
            rendered[name] = renderer.nodes(nodes)
        except TemplateError as error:
            raise TemplateError(f"{name}: {error}") from error
    return rendered


def render_documents(chart_dir: Path = CHART_DIR, **kwargs: Any) -> list[dict]:
    """The chart's rendered Kubernetes objects, parsed (empty documents left out)."""
    documents = []
    for text in render_chart(chart_dir, **kwargs).values():
        documents += [doc for doc in yaml.safe_load_all(text) if doc]
    return documents


def _parse_set(items: list[str]) -> dict:
    overrides: dict = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects key=value, got {item!r}")
        *parents, leaf = key.split(".")
        node = overrides
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(raw)
    return overrides


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chart", nargs="?", default=str(CHART_DIR))
    parser.add_argument("--set", action="append", default=[], dest="sets")
    parser.add_argument("--release", default="waystation")
    args = parser.parse_args(argv)
    rendered = render_chart(Path(args.chart), overrides=_parse_set(args.sets), release=args.release)
    for name, text in rendered.items():
        if text.strip():
            sys.stdout.write(f"---\n# Source: waystation/{name}\n{text.strip()}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
