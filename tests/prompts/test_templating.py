"""Tests for the prompt template syntax (prompts/templating.py): pure Python, no database."""

from __future__ import annotations

import pytest

from prompts.templating import Template, TemplateError, compile_template


def render(source: str, **values: object) -> str:
    return compile_template(source).render(values)


def compile_error(source: str) -> TemplateError:
    with pytest.raises(TemplateError) as info:
        compile_template(source)
    return info.value


# --- substitution and filters ----------------------------------------------------------------


def test_substitution_and_value_rendering():
    src = "{{ s }}|{{n}}|{{ f }}|{{ b }}|{{ none }}|{{ d }}|{{ lst }}"
    out = render(src, s="héllo", n=3, f=2.5, b=True, none=None, d={"a": 1, "b": "é"}, lst=[1, "x"])
    assert out == 'héllo|3|2.5|true||{"a":1,"b":"é"}|[1,"x"]'


def test_plain_text_is_copied_unchanged():
    src = "a { b } }} %} ${x} <%= y %> #{z}\n"
    assert render(src) == src


def test_variables_and_template_dataclass():
    t = compile_template("{{ a.b }}{% for x in xs %}{{ x.y }}{{ loop.index }}{{ c }}{% endfor %}")
    assert isinstance(t, Template)
    assert t.source.startswith("{{ a.b }}")
    assert t.variables == frozenset({"a", "xs", "c"})
    assert Template("{{ q }}") == compile_template("{{ q }}")
    with pytest.raises(AttributeError):
        t.source = "x"  # frozen


def test_dotted_keys_read_dicts_only():
    assert render("{{ u.profile.name }}", u={"profile": {"name": "Ada"}}) == "Ada"
    with pytest.raises(TemplateError, match="'u' is not a dict"):
        render("{{ u.upper }}", u="text")
    with pytest.raises(TemplateError, match="variable 'u.missing' is not defined"):
        render("{{ u.missing }}", u={})


def test_json_filter():
    assert render("{{ s | json }}", s='say "hi"\n') == '"say \\"hi\\"\\n"'
    assert render("{{ d|json }}", d={"k": [1, None]}) == '{"k":[1,null]}'
    assert render("{{ n | json }}", n=5) == "5"


def test_default_filter():
    assert render('{{ x | default("fallback") }}') == "fallback"
    assert render("{{ x | default(7) }}") == "7"
    assert render('{{ x | default("d") }}', x="set") == "set"
    assert render('{{ x | default("d") }}', x=None) == ""  # only replaces undefined
    assert render('{{ u.k | default("d") }}', u={}) == "d"
    assert render('{{ x | default("a\\"b") | json }}') == '"a\\"b"'
    assert render("{{ x | default('}}') }}") == "}}"


def test_missing_variable_error():
    with pytest.raises(TemplateError) as info:
        render("line1\n  {{ x }}")
    assert info.value.message == "variable 'x' is not defined"
    assert (info.value.line, info.value.column) == (2, 6)


def test_unrenderable_value_type():
    with pytest.raises(TemplateError, match="cannot render"):
        render("{{ x }}", x=object())
    with pytest.raises(TemplateError, match="cannot be encoded as JSON"):
        render("{{ x | json }}", x={1, 2})


# --- conditionals ----------------------------------------------------------------------------

IF_SRC = (
    '{% if a %}A{% elif b == "yes" %}B{% elif n != 3 %}N{% elif not c %}C{% else %}E{% endif %}'
)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"a": 1, "b": "", "n": 3, "c": 0}, "A"),
        ({"a": "", "b": "yes", "n": 3, "c": 0}, "B"),
        ({"a": [], "b": "no", "n": 4, "c": 0}, "N"),
        ({"a": {}, "b": "no", "n": 3, "c": False}, "C"),
        ({"a": None, "b": "no", "n": 3.0, "c": "x"}, "E"),
    ],
)
def test_if_elif_else_not_eq_ne(values, expected):
    assert compile_template(IF_SRC).render(values) == expected


def test_condition_details():
    assert render("{% if x == 1 %}y{% endif %}", x=True) == ""  # bools are not numbers
    assert render("{% if x == 1.5 %}y{% endif %}", x=1.5) == "y"
    assert render('{% if u.role == "admin" %}y{% endif %}', u={"role": "admin"}) == "y"
    assert render('{% if x | default("") %}y{% else %}n{% endif %}') == "n"
    assert render("{% if x %}{% if y %}both{% endif %}{% endif %}", x=1, y=1) == "both"
    with pytest.raises(TemplateError, match="variable 'x' is not defined"):
        render("{% if x %}y{% endif %}")


# --- loops -----------------------------------------------------------------------------------


def test_for_with_loop_index():
    src = "{% for item in items %}{{ loop.index }}. {{ item.name }}\n{% endfor %}"
    assert render(src, items=[{"name": "a"}, {"name": "b"}]) == "1. a\n2. b\n"
    assert render(src, items=[]) == ""


def test_nested_loops_and_shadowing():
    src = (
        "{% for row in rows %}[{{ loop.index }}:{% for c in row %}{{ c }}{{ loop.index }}"
        "{% endfor %}]{% endfor %}"
    )
    assert render(src, rows=[["a", "b"], ["c"]]) == "[1:a1b2][2:c1]"
    three = "{% for a in x %}{% for b in a %}{% for c in b %}{{ c }}{% endfor %}{% endfor %}{% endfor %}"
    assert render(three, x=[[[1, 2]], [[3]]]) == "123"


def test_loop_limits_and_types():
    with pytest.raises(TemplateError, match="exceeds 1000 iterations"):
        render("{% for i in xs %}{% endfor %}", xs=list(range(1001)))
    assert render("{% for i in xs %}.{% endfor %}", xs=list(range(1000))) == "." * 1000
    with pytest.raises(TemplateError, match="'xs' is not a list"):
        render("{% for i in xs %}{% endfor %}", xs="abc")
    with pytest.raises(TemplateError, match="'xs' is not a list"):
        render("{% for i in xs %}{% endfor %}", xs={"a": 1})
    four = (
        "{% for a in x %}{% for b in a %}{% for c in b %}{% for d in c %}"
        "{% endfor %}{% endfor %}{% endfor %}{% endfor %}"
    )
    err = compile_error(four)
    assert "nested at most 3" in err.message and err.column == 49


def test_total_iteration_budget():
    src = "{% for a in x %}{% for b in x %}{% for c in x %}{% endfor %}{% endfor %}{% endfor %}"
    with pytest.raises(TemplateError, match="loop iterations"):
        render(src, x=list(range(100)))


def test_output_cap():
    with pytest.raises(TemplateError, match="exceeds 1000000 characters"):
        render("{{ s }}", s="x" * 1_000_001)
    with pytest.raises(TemplateError, match="exceeds 1000000 characters"):
        render("{% for i in xs %}{{ s }}{% endfor %}", xs=list(range(1000)), s="y" * 1001)
    assert len(render("{{ s }}", s="x" * 1_000_000)) == 1_000_000


# --- compile errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "message", "line", "column"),
    [
        ("ok\n  {% import os %}", "unknown tag 'import'", 2, 3),
        ("{% include 'x' %}", "unknown tag 'include'", 1, 1),
        ("{% set x = 1 %}", "unknown tag 'set'", 1, 1),
        ("{% if a %}x", "unclosed '{% if %}'", 1, 1),
        ("a\n{% for x in y %}{% if x %}{% endfor %}", "unexpected '{% endfor %}'", 2, 27),
        ("{% for x in y %}x", "unclosed '{% for %}'", 1, 1),
        ("{% endif %}", "unexpected '{% endif %}'", 1, 1),
        ("{% if a %}{% else %}{% elif b %}{% endif %}", "unexpected '{% elif %}'", 1, 21),
        ("{% for x in y %}{% else %}{% endfor %}", "unexpected '{% else %}'", 1, 17),
        ("{{ a", "unclosed '{{'", 1, 1),
        ("x {% if a", "unclosed '{%'", 1, 3),
        ("{{ 7*7 }}", "unexpected character '*'", 1, 5),
        ("{{ a + b }}", "unexpected character '+'", 1, 6),
        ("{{ x[0] }}", "unexpected character '['", 1, 5),
        ("{{ f() }}", "function calls are not supported", 1, 5),
        ("{{ a b }}", "unexpected 'b'", 1, 6),
        ("{{ 7 }}", "expected a variable name", 1, 4),
        ("{{ }}", "expected a variable name, found end of tag", 1, 4),
        ("{% %}", "expected a tag name", 1, 4),
        ("{% if %}{% endif %}", "expected a variable name, found end of tag", 1, 7),
        ("{{ x.__class__ }}", "names starting with '_' are not allowed: '__class__'", 1, 6),
        ("{{ _private }}", "names starting with '_'", 1, 4),
        ("{% if x._y %}{% endif %}", "names starting with '_'", 1, 9),
        ("{% for _x in y %}{% endfor %}", "invalid loop variable name '_x'", 1, 8),
        ("{% for loop in y %}{% endfor %}", "invalid loop variable name 'loop'", 1, 8),
        ("{% for x in y %}{{ loop.length }}{% endfor %}", "only 'loop.index'", 1, 20),
        ("{{ x | upper }}", "unknown filter 'upper'", 1, 8),
        ("{{ x | default(y) }}", "expected a string or number literal", 1, 16),
        ('{{ x | default("a) }}', "unterminated string literal", 1, 16),
        ("{{ x. }}", "expected a key name after '.'", 1, 7),
        ("{% if x == y %}{% endif %}", "expected a string or number literal", 1, 12),
        ('{% if not x == "a" %}{% endif %}', "unexpected '=='", 1, 13),
        ("{% if a and b %}{% endif %}", "unexpected 'and'", 1, 9),
        ("{% for x of y %}{% endfor %}", "expected 'in'", 1, 10),
        ("{% endif extra %}", "unexpected '{% endif %}'", 1, 1),
        ("{% if a %}{% endif extra %}", "unexpected 'extra'", 1, 20),
    ],
)
def test_compile_errors(source, message, line, column):
    err = compile_error(source)
    assert message in err.message
    assert (err.line, err.column) == (line, column)
    assert f"(line {line}, column {column})" in str(err)
    assert isinstance(err, ValueError)


# --- template-injection corpus ---------------------------------------------------------------

INJECTION_PAYLOADS = [
    "{{7*7}}",
    "{{ 7*7 }}",
    "{{7*'7'}}",
    "{% for x in y %}{{ x }}{% endfor %}",
    "{{ config }}",
    "{{ config.items() }}",
    "{{ settings.SECRET_KEY }}",
    "{{ request }}",
    "${7*7}",
    "<%= 7*7 %>",
    "<%= system('id') %>",
    "#{7*7}",
    "*{7*7}",
    "@(7*7)",
    "{{''.__class__.__mro__}}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ self.__init__.__globals__.__builtins__ }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{% import os %}{{ os.popen('id').read() }}",
    "{% include '/etc/passwd' %}",
    "{% set x = 7*7 %}{{ x }}",
    "{% debug %}",
    "{% load module %}{{ x|safe }}",
    "{{ x|attr('__class__') }}",
    "${ __import__('os').system('id') }",
    "<% import os %>${os.getcwd()}",
    "{{#each this}}{{this}}{{/each}}",
    '{{#with "s" as |string|}}{{string.sub.apply 0 codelist}}{{/with}}',
    "{{ .Env.SECRET }}",
    '{{ printf "%s" 7 }}',
    "{{ if 1 }}{{ end }}",
    "{{= 7*7 }}",
    "{% if x %}",
    "{% endif %}",
    "{{ x | default(7*7) }}",
    "{{",
    "}}",
    "{%",
    "\\{{ 7*7 }}",
    "{# comment #}",
    "[[${7*7}]]",
    "{php}echo 7*7;{/php}",
    "{{ loop.index }}",
    "{{ item }}",
]


def test_corpus_is_large_enough():
    assert len(INJECTION_PAYLOADS) >= 25


@pytest.mark.parametrize("payload", INJECTION_PAYLOADS)
def test_injection_payload_as_value_renders_verbatim(payload):
    t = compile_template(
        "A:{{ v }}|B:{{ d.k }}|{% for item in items %}{{ item }}{{ loop.index }}{% endfor %}"
        "|{% if v %}{{ v }}{% endif %}|{{ missing | default('x') }}"
    )
    values = {"v": payload, "d": {"k": payload}, "items": [payload], "config": "LEAKED-CONFIG"}
    out = t.render(values)
    assert out == f"A:{payload}|B:{payload}|{payload}1|{payload}|x"
    assert "LEAKED-CONFIG" not in out


@pytest.mark.parametrize("payload", INJECTION_PAYLOADS)
def test_injection_payload_in_json_filter_is_plain_json(payload):
    import json

    assert json.loads(render("{{ v | json }}", v=payload)) == payload


@pytest.mark.parametrize("payload", INJECTION_PAYLOADS)
def test_injection_payload_as_source_never_evaluates(payload):
    values = {"x": 1, "y": [1], "config": "CONFIG", "item": "ITEM"}
    try:
        out = compile_template(payload).render(values)
    except TemplateError:
        return
    assert "49" not in out
    assert "uid=" not in out
    if "{{" not in payload and "{%" not in payload:
        assert out == payload  # no tag: literal text


def test_source_payloads_that_compile_only_do_documented_things():
    # `{{ config }}` is a plain substitution of a caller-supplied value — nothing more.
    assert render("{{ config }}", config="C") == "C"
    with pytest.raises(TemplateError, match="variable 'config' is not defined"):
        render("{{ config }}")
    for payload in ("${7*7}", "<%= 7*7 %>", "#{7*7}", "*{7*7}", "{# 7*7 #}", "[[${7*7}]]"):
        assert render(payload) == payload
    for payload in ("{{7*7}}", "{{''.__class__.__mro__}}", "{% import os %}", "{{ .Env.X }}"):
        compile_error(payload)


def test_values_are_not_rendered_twice_through_nested_structures():
    out = render("{{ d }}", d={"k": "{{ secret }}", "l": ["{% if x %}"]})
    assert out == '{"k":"{{ secret }}","l":["{% if x %}"]}'
