"""Unit tests for gateway.guardrails.pii (pure Python, no database)."""

import pytest

from gateway.guardrails import pii


def found(text, types=None, custom=()):
    return [(f.type, f.value) for f in pii.find(text, types, custom)]


@pytest.mark.parametrize(
    "text,value",
    [
        ("mail john.doe+x@example.co.uk now", "john.doe+x@example.co.uk"),
        ("<ops-team@sub.domain.org>", "ops-team@sub.domain.org"),
        ("user=a_b@corp.io,", "a_b@corp.io"),
    ],
)
def test_email(text, value):
    assert found(text) == [("EMAIL", value)]


@pytest.mark.parametrize(
    "text",
    ["npm i lodash@4.17.21", "@app.route('/x')", "user@10.0.0.1", "a..b@example.com"],
)
def test_email_lookalikes(text):
    assert found(text, frozenset({"EMAIL"})) == []


def test_url_userinfo_is_a_secret_not_an_email():
    tok = "ghp_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"
    assert found(f"https://{tok}@github.com/acme/app.git") == [("SECRET", tok)]


@pytest.mark.parametrize(
    "value",
    [
        "+1 415 555 2671",
        "+44 (0)20 7946 0958",
        "(555) 123-4567",
        "555.123.4567",
        "1-800-555-0199",
        "020 7946 0958",
        "07700 900123",
        "+14155552671",
        "01 23 45 67 89",
        "+49 30 12345678",
        "0049 30 12345678",
    ],
)
def test_phone(value):
    assert found(f"call {value} today") == [("PHONE", value)]


@pytest.mark.parametrize(
    "text",
    [
        "ORD-2024-000123",
        "at 2024-03-12T10:15:00Z",
        "10:15:30",
        "costs $1,299.99",
        "v2.10.4",
        "ISBN 978-3-16-148410-0",
        "ISBN 0-306-40615-2",
        "ts 1710238500",
        "call 5551234567",
        "1234 5678 9012 3456",
    ],
)
def test_phone_lookalikes(text):
    assert found(text, frozenset({"PHONE"})) == []


@pytest.mark.parametrize(
    "value",
    [
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "5555555555554444",
        "3782 822463 10005",
        "6011111111111117",
        "4222222222222",
        "2221000000000009",
    ],
)
def test_credit_card(value):
    assert found(f"card {value}, exp 09/27") == [("CREDIT_CARD", value)]


@pytest.mark.parametrize(
    "text",
    [
        "order #4111111111111112",
        "4111 1111 1111 1112",
        "1234567812345670",  # no known IIN
        "4111 1111-1111 1111",
        "id 9fceb02d-4111111111111111",
        "0000000000000000",
    ],
)
def test_credit_card_lookalikes(text):
    assert found(text, frozenset({"CREDIT_CARD"})) == []


@pytest.mark.parametrize(
    "value",
    [
        "DE89 3704 0044 0532 0130 00",
        "DE89370400440532013000",
        "GB82 WEST 1234 5698 7654 32",
        "FR1420041010050500013M02606",
        "NL91ABNA0417164300",
        "BE68539007547034",
    ],
)
def test_iban(value):
    assert found(f"IBAN {value}.") == [("IBAN", value)]


def test_iban_stops_before_trailing_code():
    assert found("to BE68 5390 0754 7034 EUR now") == [("IBAN", "BE68 5390 0754 7034")]


@pytest.mark.parametrize(
    "text",
    [
        "DE89 3704 0044 0532 0130 01",
        "GB99WEST12345698765432",
        "XX89370400440532013000",
        "DE8937040044053201300",
    ],
)
def test_iban_lookalikes(text):
    assert found(text, frozenset({"IBAN"})) == []


def test_ssn():
    assert found("SSN 123-45-6789") == [("SSN", "123-45-6789")]
    assert found("ssn: 123456789") == [("SSN", "123456789")]
    assert found("social security number 123 45 6789") == [("SSN", "123 45 6789")]


@pytest.mark.parametrize(
    "text",
    [
        "000-12-3456",
        "666-12-3456",
        "912-34-5678",
        "123-00-4567",
        "123-45-0000",
        "batch 123456789",
        "room 123 45 6789",
        "a-123-45-6789",
    ],
)
def test_ssn_lookalikes(text):
    assert found(text, frozenset({"SSN"})) == []


@pytest.mark.parametrize(
    "value",
    ["192.168.1.10", "8.8.8.8", "2001:db8::8a2e:370:7334", "::1", "fe80::1ff:fe23:4567:890a"],
)
def test_ip(value):
    assert found(f"from {value} port 22") == [("IP_ADDRESS", value)]


def test_ip_with_port():
    assert found("connect 10.0.0.1:8080") == [("IP_ADDRESS", "10.0.0.1")]


@pytest.mark.parametrize(
    "text",
    [
        "1.2.3",
        "v1.2.3.4",
        "version 1.2.3.4",
        "1.3.6.1.2.1.1",
        "256.1.1.1",
        "10:15:30",
        "00:1A:2B:3C:4D:5E",
        "std::vector",
        "Chrome/122.0.6261.94",
    ],
)
def test_ip_lookalikes(text):
    assert found(text, frozenset({"IP_ADDRESS"})) == []


@pytest.mark.parametrize(
    "text,value",
    [
        ("born on 12 March 1985", "12 March 1985"),
        ("DOB: 1985-03-12", "1985-03-12"),
        ("Birthday: July 4, 1990", "July 4, 1990"),
        ("née le 5 mai 1979", "5 mai 1979"),
        ("12/03/1985 (date of birth)", "12/03/1985"),
    ],
)
def test_dob(text, value):
    assert found(text) == [("DATE_OF_BIRTH", value)]


def test_dob_needs_cue():
    assert found("released 1985-03-12") == []
    assert found("born in a hospital, and much later, on 1985-03-12 we met") == []


@pytest.mark.parametrize(
    "value",
    [
        "sk-" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5bC7dE9fG1hJ3",
        "sk-proj-aB3dE5fG7hJ9kL1mN3pQ5rS7",
        "sk-ant-api03-aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5",
        "AKIAIOSFODNN7EXAMPLE",
        "github_pat_11ABCDEFG0123456789abc_defGHIjklMNOpqrSTUvwxYZ0123456789",
        "xoxb-123456789012-1234567890123-aB3dE5fG7hJ9kL1mN3pQ5rS7",
        "AIzaSyA1bC2dE3fG4hI5jK6lM7nO8pQ9rS0tU1v",
        "sk_live_aB3dE5fG7hJ9kL1mN3pQ5rS7",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    ],
)
def test_secret_shapes(value):
    assert found(f"key {value} here") == [("SECRET", value)]


def test_pem_block_whole():
    pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEAabc\ndef+/==\n-----END RSA PRIVATE KEY-----"
    assert found(f"key:\n{pem}\nthanks") == [("SECRET", pem)]


def test_secret_assignments():
    assert found('password = "Tr0ub4dor&3xY"') == [("SECRET", "Tr0ub4dor&3xY")]
    assert found("api_key: a8F3kd93Jd0sQ1") == [("SECRET", "a8F3kd93Jd0sQ1")]


@pytest.mark.parametrize(
    "text",
    [
        "password: ********",
        "api_key = os.environ['OPENAI_API_KEY']",
        "API_KEY=<your-api-key>",
        "token: ${GITHUB_TOKEN}",
        'password = "changeme"',
        "secret_name = prod-db-credentials",
        "sk-learn",
        "max_tokens: 4096",
        "AKIA is the prefix",
    ],
)
def test_secret_lookalikes(text):
    assert found(text, frozenset({"SECRET"})) == []


@pytest.mark.parametrize(
    "text",
    [
        "request 123e4567-e89b-12d3-a456-426614174000",
        "commit 9fceb02d0ae598e95dc970b74767f19372d61af8",
        "tracking 1Z999AA10123456784",
        "USPS 9400 1000 0000 0000 0000 00",
        "ISBN 978-3-16-148410-0",
        "Python 3.11.7, numpy 1.26.4",
        "price $4,111.11",
    ],
)
def test_general_lookalikes(text):
    assert found(text) == []


def test_sorted_and_types_filter():
    text = "a@b.io 4111 1111 1111 1111 10.0.0.1"
    assert [t for t, _ in found(text)] == ["EMAIL", "CREDIT_CARD", "IP_ADDRESS"]
    assert found(text, frozenset({"IP_ADDRESS"})) == [("IP_ADDRESS", "10.0.0.1")]
    fs = pii.find(text)
    assert all(text[f.start : f.end] == f.value for f in fs)


def test_overlap_prefers_longer_then_specific():
    # The assignment value and the key shape cover the same span: one SECRET.
    text = "OPENAI_API_KEY=sk-aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"
    assert found(text) == [("SECRET", "sk-aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5")]
    # A custom pattern covering part of a card loses to the longer card.
    assert found("4111 1111 1111 1111", custom=(("ACCT", r"\d{4} \d{4}"),)) == [
        ("CREDIT_CARD", "4111 1111 1111 1111")
    ]
    # Non-overlapping output even when candidates overlap.
    fs = pii.find("x EMP-12345 y", custom=(("EMP", r"EMP-\d+"), ("NUM", r"\d{5}")))
    assert [(f.type, f.value) for f in fs] == [("EMP", "EMP-12345")]


def test_custom_regex():
    out = found("employee E-123456 and E-654321", custom=(("EMPLOYEE_ID", r"E-\d{6}"),))
    assert out == [("EMPLOYEE_ID", "E-123456"), ("EMPLOYEE_ID", "E-654321")]
    # Custom patterns apply even when `types` excludes the built-ins.
    assert found("E-123456 a@b.io", frozenset(), (("EMP", r"E-\d{6}"),)) == [("EMP", "E-123456")]


def test_check_custom():
    assert pii.check_custom(r"E-\d{6}") is None
    assert "invalid regex" in pii.check_custom(r"E-(\d")
    assert pii.check_custom("") is not None
    assert "empty string" in pii.check_custom(r"\d*")
    assert pii.check_custom("a" * 5000) is not None


def test_empty_and_no_pii():
    assert pii.find("") == []
    assert pii.find("Please summarise the release notes for version 2.10.4.") == []


def test_finding_is_frozen():
    f = pii.Finding("EMAIL", 0, 1, "x")
    with pytest.raises(AttributeError):
        f.type = "PHONE"  # type: ignore[misc]
    assert set(pii.STRUCTURED) <= set(pii.TYPES)


@pytest.mark.parametrize(
    "text",
    [
        "key=" + "A" * 20000,
        "-----BEGIN PRIVATE KEY-----" + "A" * 20000,
        "1 " * 10000,
        "password" * 3000,
        "secret" + "-" * 20000,
        "a" * 10000 + "@" + "b." * 3000,
    ],
)
def test_no_catastrophic_backtracking(text):
    import time

    t0 = time.perf_counter()
    pii.find(text)
    assert time.perf_counter() - t0 < 1.0
