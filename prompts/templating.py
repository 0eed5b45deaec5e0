"""The prompt library's template syntax: small, documented and safe.

Prompt message templates are plain text with three kinds of tags. Everything outside a tag is
copied to the output unchanged (including ``${...}``, ``<%= ... %>``, ``#{...}``, lone braces).

Substitution
    ``{{ name }}`` inserts the variable ``name``. Names match ``[A-Za-z_][A-Za-z0-9_]*`` but may
    not start with ``_``. ``{{ user.name }}`` reads key ``name`` of the dict variable ``user``;
    dotted access works on dicts only (never attributes or list items).

    Values are rendered as text: ``str`` as-is, numbers via JSON (``3``, ``2.5``), booleans as
    ``true``/``false``, ``None`` as the empty string, dicts and lists as compact JSON. Other
    types are an error. A substituted value is inserted literally and never re-interpreted, so
    a value containing ``{{ ... }}`` or ``{% ... %}`` renders as that text.

Filters
    ``{{ name | json }}`` JSON-encodes the value (strings get quotes and escapes).
    ``{{ name | default("x") }}`` uses the string or number literal when ``name`` is not
    defined (it does not replace ``None`` or empty values). Filters may be chained, left to
    right: ``{{ name | default("") | json }}``. There are no other filters.

Conditionals
    ``{% if cond %}...{% elif cond %}...{% else %}...{% endif %}`` where ``cond`` is one of
    ``name`` (truthiness), ``not name``, ``name == "literal"`` or ``name != 3`` (string or number
    literal). ``name`` may be dotted and may carry filters, e.g.
    ``{% if tone | default("") %}``.

Loops
    ``{% for item in items %}...{% endfor %}`` iterates over a list variable. Inside the body
    ``item`` and ``loop.index`` (1-based) are available. A loop may run at most 1,000 times,
    loops nest at most 3 deep, and one render runs at most 100,000 loop iterations in total.

Nothing else is supported: any other tag, arithmetic (``{{ 7*7 }}``), function calls, indexing,
and names starting with ``_`` (``{{ x.__class__ }}``) are compile errors. There is no escape for
a literal ``{{`` or ``{%`` in template source; pass such text in through a variable.

Errors are :class:`TemplateError` with ``message``, ``line`` and ``column`` (1-based). Compile
errors point at the offending tag or token; render errors (a variable that is not defined, a
loop over a non-list, output over 1,000,000 characters) point at the variable or tag.
Tags do not trim surrounding whitespace or newlines.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["Template", "TemplateError", "compile_template"]

MAX_OUTPUT_CHARS = 1_000_000
MAX_LOOP_ITERATIONS = 1_000
MAX_TOTAL_ITERATIONS = 100_000
MAX_LOOP_DEPTH = 3
MAX_BLOCK_DEPTH = 50


class TemplateError(ValueError):
    """A compile or render error, with a 1-based ``line`` and ``column`` (0 when unknown)."""

    def __init__(self, message: str, line: int = 0, column: int = 0) -> None:
        self.message = message
        self.line = line
        self.column = column
        where = f" (line {line}, column {column})" if line else ""
        super().__init__(f"{message}{where}")


_MISSING = object()
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?")
_PUNCT = ("==", "!=", ".", "|", "(", ")", ",")
_OPEN_RE = re.compile(r"\{[{%]")
_TAG_NAME_RE = re.compile(r"\{%[ \t\r\n]*([A-Za-z_][A-Za-z0-9_]*)")
_TAGS = frozenset({"if", "elif", "else", "endif", "for", "endfor"})
_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "t": "\t"}


# --- AST -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Tok:
    kind: str  # "name" | "number" | "string" | "punct"
    value: object
    pos: int


@dataclass(frozen=True)
class _Expr:
    parts: tuple[str, ...]
    filters: tuple[tuple[str, object], ...]
    pos: int


@dataclass(frozen=True)
class _Cond:
    expr: _Expr
    negate: bool = False
    op: str | None = None
    literal: object = None


@dataclass(frozen=True)
class _Text:
    text: str


@dataclass(frozen=True)
class _Output:
    expr: _Expr


@dataclass(frozen=True)
class _If:
    branches: tuple[tuple[_Cond, tuple], ...]
    else_body: tuple


@dataclass(frozen=True)
class _For:
    var: str
    iterable: _Expr
    body: tuple
    pos: int


# --- lexing ----------------------------------------------------------------------------------


def _unknown_tag(name: str) -> str:
    return f"unknown tag '{name}': only if/elif/else/endif and for/endfor are supported"


def _line_col(source: str, pos: int) -> tuple[int, int]:
    line = source.count("\n", 0, pos) + 1
    return line, pos - (source.rfind("\n", 0, pos) + 1) + 1


def _error(source: str, message: str, pos: int) -> TemplateError:
    return TemplateError(message, *_line_col(source, pos))


def _lex_tag(source: str, start: int, close: str) -> tuple[list[_Tok], int]:
    """Tokenize the inside of a tag opening at ``start``; return tokens and the end offset."""
    tokens: list[_Tok] = []
    i = start + 2
    n = len(source)
    while True:
        while i < n and source[i] in " \t\r\n":
            i += 1
        if i >= n:
            opener = source[start : start + 2]
            raise _error(source, f"unclosed '{opener}': expected '{close}'", start)
        if source.startswith(close, i):
            return tokens, i + len(close)
        ch = source[i]
        if m := _NAME_RE.match(source, i):
            tokens.append(_Tok("name", m.group(), i))
            i = m.end()
        elif m := _NUMBER_RE.match(source, i):
            text = m.group()
            tokens.append(_Tok("number", float(text) if "." in text else int(text), i))
            i = m.end()
        elif ch in "\"'":
            value, end = _lex_string(source, i)
            tokens.append(_Tok("string", value, i))
            i = end
        elif punct := next((p for p in _PUNCT if source.startswith(p, i)), None):
            tokens.append(_Tok("punct", punct, i))
            i += len(punct)
        else:
            raise _error(
                source,
                f"unexpected character {ch!r}: only names, dotted keys, filters and "
                "string/number literals are allowed in tags",
                i,
            )


def _lex_string(source: str, start: int) -> tuple[str, int]:
    quote = source[start]
    out: list[str] = []
    i = start + 1
    while i < len(source):
        ch = source[i]
        if ch == quote:
            return "".join(out), i + 1
        if ch == "\\":
            esc = source[i + 1 : i + 2]
            if esc not in _ESCAPES:
                raise _error(source, f"unsupported escape '\\{esc}' in string literal", i)
            out.append(_ESCAPES[esc])
            i += 2
            continue
        if ch == "\n":
            break
        out.append(ch)
        i += 1
    raise _error(source, "unterminated string literal", start)


def _lex(source: str) -> list[tuple[str, object, int]]:
    """Split source into ("text", str, pos) and ("var"/"block", tokens, pos, close_pos) items."""
    items: list[tuple] = []
    i = 0
    n = len(source)
    while i < n:
        m = _OPEN_RE.search(source, i)
        j = m.start() if m else n
        if j > i:
            items.append(("text", source[i:j], i))
        if j >= n:
            break
        is_var = source.startswith("{{", j)
        if not is_var and (m := _TAG_NAME_RE.match(source, j)) and m[1] not in _TAGS:
            raise _error(source, _unknown_tag(m[1]), j)
        tokens, i = _lex_tag(source, j, "}}" if is_var else "%}")
        items.append(("var" if is_var else "block", tokens, j, i - 2))
    return items


# --- parsing ---------------------------------------------------------------------------------


def _describe(tok: _Tok) -> str:
    return repr(tok.value) if tok.kind == "string" else f"'{tok.value}'"


class _TagStream:
    def __init__(self, parser: _Parser, tokens: list[_Tok], pos: int) -> None:
        self.parser = parser
        self.tokens = tokens
        self.i = 0
        self.pos = pos

    def peek(self, value: str | None = None) -> _Tok | None:
        tok = self.tokens[self.i] if self.i < len(self.tokens) else None
        if (
            tok is not None
            and value is not None
            and (tok.kind, tok.value)
            not in (
                ("punct", value),
                ("name", value),
            )
        ):
            return None
        return tok

    def next(self, kind: str, what: str) -> _Tok:
        tok = self.peek()
        if tok is None or tok.kind != kind:
            found = "end of tag" if tok is None else _describe(tok)
            raise self.parser.error(f"expected {what}, found {found}", tok.pos if tok else self.pos)
        self.i += 1
        return tok

    def expect(self, value: str) -> None:
        tok = self.peek()
        if tok is None or tok.value != value or tok.kind not in ("punct", "name"):
            found = "end of tag" if tok is None else _describe(tok)
            raise self.parser.error(
                f"expected '{value}', found {found}", tok.pos if tok else self.pos
            )
        self.i += 1

    def end(self) -> None:
        tok = self.peek()
        if tok is None:
            return
        if tok.value == "(":
            raise self.parser.error("function calls are not supported", tok.pos)
        raise self.parser.error(f"unexpected {_describe(tok)}", tok.pos)


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.items = _lex(source)
        self.i = 0
        self.scopes: list[str] = []
        self.block_depth = 0
        self.variables: set[str] = set()

    def error(self, message: str, pos: int) -> TemplateError:
        return _error(self.source, message, pos)

    def parse(self) -> tuple:
        body, _, _ = self.body((), None)
        return body

    def body(self, stop: tuple[str, ...], opener: tuple[str, int] | None):
        nodes: list = []
        while self.i < len(self.items):
            kind, payload, pos = self.items[self.i][:3]
            self.i += 1
            if kind == "text":
                nodes.append(_Text(payload))
                continue
            ts = _TagStream(self, payload, self.items[self.i - 1][3])
            if kind == "var":
                expr = self.expr(ts)
                ts.end()
                nodes.append(_Output(expr))
                continue
            name = ts.next("name", "a tag name").value
            if name in stop:
                return tuple(nodes), name, ts
            if name == "if":
                nodes.append(self.parse_if(ts, pos))
            elif name == "for":
                nodes.append(self.parse_for(ts, pos))
            elif name in ("elif", "else", "endif", "endfor"):
                raise self.error(f"unexpected '{{% {name} %}}'", pos)
            else:
                raise self.error(_unknown_tag(name), pos)
        if opener is not None:
            raise self.error(f"unclosed '{{% {opener[0]} %}}': expected '{stop[-1]}'", opener[1])
        return tuple(nodes), None, None

    def enter(self, pos: int) -> None:
        self.block_depth += 1
        if self.block_depth > MAX_BLOCK_DEPTH:
            raise self.error(f"blocks can be nested at most {MAX_BLOCK_DEPTH} deep", pos)

    def parse_if(self, ts: _TagStream, pos: int) -> _If:
        self.enter(pos)
        branches = [(self.cond(ts), None)]
        else_body: tuple = ()
        while True:
            body, tag, ts = self.body(("elif", "else", "endif"), ("if", pos))
            branches[-1] = (branches[-1][0], body)
            if tag == "elif":
                branches.append((self.cond(ts), None))
                continue
            ts.end()
            if tag == "else":
                else_body, _, end_ts = self.body(("endif",), ("if", pos))
                end_ts.end()
            break
        self.block_depth -= 1
        return _If(tuple(branches), else_body)

    def parse_for(self, ts: _TagStream, pos: int) -> _For:
        self.enter(pos)
        if len(self.scopes) >= MAX_LOOP_DEPTH:
            raise self.error(f"loops can be nested at most {MAX_LOOP_DEPTH} deep", pos)
        var_tok = ts.next("name", "a loop variable name")
        var = var_tok.value
        if var.startswith("_") or var in ("loop", "in"):
            raise self.error(f"invalid loop variable name '{var}'", var_tok.pos)
        ts.expect("in")
        iterable = self.expr(ts, allow_filters=False)
        ts.end()
        self.scopes.append(var)
        body, _, end_ts = self.body(("endfor",), ("for", pos))
        end_ts.end()
        self.scopes.pop()
        self.block_depth -= 1
        return _For(var, iterable, body, pos)

    def cond(self, ts: _TagStream) -> _Cond:
        negate = ts.peek("not") is not None and ts.peek().kind == "name"
        if negate:
            ts.i += 1
        expr = self.expr(ts)
        op_tok = ts.peek()
        if not negate and op_tok is not None and op_tok.value in ("==", "!="):
            ts.i += 1
            literal = self.literal(ts)
            ts.end()
            return _Cond(expr, op=op_tok.value, literal=literal)
        ts.end()
        return _Cond(expr, negate=negate)

    def literal(self, ts: _TagStream) -> object:
        tok = ts.peek()
        if tok is None or tok.kind not in ("string", "number"):
            found = "end of tag" if tok is None else _describe(tok)
            raise self.error(
                f"expected a string or number literal, found {found}", tok.pos if tok else ts.pos
            )
        ts.i += 1
        return tok.value

    def name(self, tok: _Tok) -> str:
        if tok.value.startswith("_"):
            raise self.error(f"names starting with '_' are not allowed: '{tok.value}'", tok.pos)
        return tok.value

    def expr(self, ts: _TagStream, allow_filters: bool = True) -> _Expr:
        first = ts.next("name", "a variable name")
        parts = [self.name(first)]
        while ts.peek(".") is not None and ts.peek().kind == "punct":
            ts.i += 1
            parts.append(self.name(ts.next("name", "a key name after '.'")))
        if parts[0] in self.scopes:
            pass
        elif parts[0] == "loop" and self.scopes:
            if parts != ["loop", "index"]:
                raise self.error("only 'loop.index' is available on 'loop'", first.pos)
        else:
            self.variables.add(parts[0])
        filters: list[tuple[str, object]] = []
        while allow_filters and ts.peek("|") is not None and ts.peek().kind == "punct":
            ts.i += 1
            ftok = ts.next("name", "a filter name")
            if ftok.value == "json":
                filters.append(("json", None))
            elif ftok.value == "default":
                ts.expect("(")
                filters.append(("default", self.literal(ts)))
                ts.expect(")")
            else:
                raise self.error(
                    f"unknown filter '{ftok.value}': only 'json' and 'default' exist", ftok.pos
                )
        return _Expr(tuple(parts), tuple(filters), first.pos)


# --- rendering -------------------------------------------------------------------------------


def _compact_json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class _Renderer:
    def __init__(self, source: str, values: Mapping[str, object]) -> None:
        self.source = source
        self.values = values
        self.frames: list[dict[str, object]] = []
        self.out: list[str] = []
        self.size = 0
        self.iterations = 0

    def error(self, message: str, pos: int) -> TemplateError:
        return _error(self.source, message, pos)

    def emit(self, text: str, pos: int) -> None:
        self.size += len(text)
        if self.size > MAX_OUTPUT_CHARS:
            raise self.error(f"rendered output exceeds {MAX_OUTPUT_CHARS} characters", pos)
        self.out.append(text)

    def resolve(self, expr: _Expr) -> object:
        head = expr.parts[0]
        for frame in reversed(self.frames):
            if head in frame:
                value = frame[head]
                break
        else:
            value = self.values[head] if head in self.values else _MISSING
        for i, key in enumerate(expr.parts[1:], start=1):
            if value is _MISSING:
                break
            if not isinstance(value, dict):
                dotted = ".".join(expr.parts[:i])
                raise self.error(f"'{dotted}' is not a dict; cannot read key '{key}'", expr.pos)
            value = dict.get(value, key, _MISSING)
        return value

    def value(self, expr: _Expr) -> object:
        value = self.resolve(expr)
        for name, arg in expr.filters:
            if name == "default":
                if value is _MISSING:
                    value = arg
            elif value is not _MISSING:  # json
                value = self.json(value, expr)
        if value is _MISSING:
            raise self.error(f"variable '{'.'.join(expr.parts)}' is not defined", expr.pos)
        return value

    def json(self, value: object, expr: _Expr) -> str:
        try:
            return _compact_json(value)
        except (TypeError, ValueError) as exc:
            raise self.error(
                f"value of '{'.'.join(expr.parts)}' cannot be encoded as JSON: {exc}", expr.pos
            ) from None

    def text(self, value: object, expr: _Expr) -> str:
        if isinstance(value, str):
            return str.__str__(value)
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float | dict | list | tuple):
            return self.json(value, expr)
        raise self.error(
            f"cannot render '{'.'.join(expr.parts)}' of type {type(value).__name__}", expr.pos
        )

    def test(self, cond: _Cond) -> bool:
        value = self.value(cond.expr)
        if cond.op is None:
            return (not value) if cond.negate else bool(value)
        literal = cond.literal
        equal = isinstance(value, bool) == isinstance(literal, bool) and value == literal
        return equal if cond.op == "==" else not equal

    def render(self, nodes: tuple) -> None:
        for node in nodes:
            if isinstance(node, _Text):
                self.emit(node.text, 0)
            elif isinstance(node, _Output):
                self.emit(self.text(self.value(node.expr), node.expr), node.expr.pos)
            elif isinstance(node, _If):
                for cond, body in node.branches:
                    if self.test(cond):
                        self.render(body)
                        break
                else:
                    self.render(node.else_body)
            else:
                self.loop(node)

    def loop(self, node: _For) -> None:
        items = self.value(node.iterable)
        name = ".".join(node.iterable.parts)
        if not isinstance(items, list | tuple):
            raise self.error(f"'{name}' is not a list", node.pos)
        if len(items) > MAX_LOOP_ITERATIONS:
            raise self.error(
                f"loop over '{name}' exceeds {MAX_LOOP_ITERATIONS} iterations", node.pos
            )
        for index, item in enumerate(items, start=1):
            self.iterations += 1
            if self.iterations > MAX_TOTAL_ITERATIONS:
                raise self.error(
                    f"template runs more than {MAX_TOTAL_ITERATIONS} loop iterations", node.pos
                )
            self.frames.append({node.var: item, "loop": {"index": index}})
            try:
                self.render(node.body)
            finally:
                self.frames.pop()


# --- public API ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    """A compiled template. ``Template(source)`` parses at once and raises TemplateError."""

    source: str
    variables: frozenset[str] = field(init=False)
    _body: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.source, str):
            raise TypeError("template source must be a str")
        parser = _Parser(self.source)
        body = parser.parse()
        object.__setattr__(self, "variables", frozenset(parser.variables))
        object.__setattr__(self, "_body", body)

    def render(self, values: Mapping[str, object]) -> str:
        if not isinstance(values, Mapping):
            raise TypeError("template values must be a mapping of names to values")
        renderer = _Renderer(self.source, values)
        renderer.render(self._body)
        return "".join(renderer.out)


def compile_template(source: str) -> Template:
    """Parse ``source`` once; raise :class:`TemplateError` on any syntax error."""
    return Template(source)
