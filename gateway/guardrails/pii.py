"""PII and secret detection for the guardrails.

Pure Python, no I/O: it runs on every request, so each detector is gated by a cheap
substring pre-check (``"@" in text``, a digit, a provider prefix...) and candidate
matches are confirmed by checksums (Luhn, mod-97), validity rules (SSA, octets,
``ipaddress``) or context cues, rather than by ever more clever regexes.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["STRUCTURED", "TYPES", "Finding", "check_custom", "find"]

TYPES = (
    "EMAIL",
    "PHONE",
    "CREDIT_CARD",
    "IBAN",
    "SSN",
    "IP_ADDRESS",
    "DATE_OF_BIRTH",
    "SECRET",
)
STRUCTURED = ("EMAIL", "CREDIT_CARD", "IBAN", "SSN", "IP_ADDRESS", "SECRET")


@dataclass(frozen=True, slots=True)
class Finding:
    type: str
    start: int
    end: int
    value: str


# A candidate is (start, end, type, rank); rank breaks ties between equally long
# overlapping matches (lower wins): checksum-verified types beat shape-only ones.
_Cand = tuple[int, int, str, int]
_RANK = {
    "SECRET": 0,
    "CREDIT_CARD": 1,
    "IBAN": 1,
    "EMAIL": 2,
    "SSN": 3,
    "IP_ADDRESS": 3,
    "DATE_OF_BIRTH": 4,
    "PHONE": 5,
}
_CUSTOM_RANK = 6

# --------------------------------------------------------------------------- EMAIL

# The local part may not start with a dot; the domain needs a letter TLD so that
# "user@10.0.0.1" or "pkg@1.2.3" (npm specs) are not emails.
_EMAIL = re.compile(
    r"(?<![\w.%+\-])[A-Za-z0-9_%+\-](?:[A-Za-z0-9._%+\-]{0,63}[A-Za-z0-9_%+\-])?"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w\-]|\.\w)"
)


def _email(text: str, out: list[_Cand]) -> None:
    if "@" not in text:
        return
    for m in _EMAIL.finditer(text):
        # "https://token@host" is URL userinfo (often a credential), not an address.
        if ".." not in m.group() and not text.startswith("://", m.start() - 3):
            out.append((m.start(), m.end(), "EMAIL", _RANK["EMAIL"]))


# --------------------------------------------------------------------- CREDIT_CARD

# Contiguous 13-19 digits, or the printed groupings (4-4-4-4[-3], Amex 4-6-5, 4-4-4-1..4)
# with one consistent separator.  Boundaries refuse digits, letters, dots and dashes so a
# card-shaped run inside a UUID, SHA, version or longer number is never taken.
_CARD = re.compile(
    r"(?<![\w.\-/])(?:"
    r"\d{4}([ \-])\d{4}\1\d{4}\1\d{4}(?:\1\d{1,3})?"
    r"|\d{4}([ \-])\d{6}\2\d{4,5}"
    r"|\d{4}([ \-])\d{4}\3\d{4}\3\d{1,3}"
    r"|\d{13,19}"
    r")(?![\w\-]|[.,/]\d)"
)


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i & 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card_brand_ok(d: str) -> bool:
    """Known issuer prefixes with their allowed lengths (IIN ranges, public tables)."""
    n = len(d)
    if d[0] == "4":  # Visa
        return n in (13, 16, 19)
    p2, p4, p6 = int(d[:2]), int(d[:4]), int(d[:6])
    if 51 <= p2 <= 55 or 2221 <= p4 <= 2720:  # Mastercard
        return n == 16
    if p2 in (34, 37):  # Amex
        return n == 15
    if p4 == 6011 or p2 == 65 or 644 <= int(d[:3]) <= 649 or 622126 <= p6 <= 622925:
        return 16 <= n <= 19  # Discover
    if 3528 <= p4 <= 3589:  # JCB
        return 16 <= n <= 19
    if p2 in (36, 38, 39) or 300 <= int(d[:3]) <= 305:  # Diners
        return 14 <= n <= 19
    if p2 == 62:  # UnionPay
        return 16 <= n <= 19
    if p2 in (50, 56, 57, 58, 63, 67) or p2 == 60 or p2 == 61 or p2 == 69:  # Maestro
        return 12 <= n <= 19
    return False


def _card(text: str, a: int, b: int, out: list[_Cand]) -> None:
    for m in _CARD.finditer(text, a, b):
        d = m.group().replace(" ", "").replace("-", "")
        if 13 <= len(d) <= 19 and _card_brand_ok(d) and _luhn(d) and len(set(d)) > 1:
            out.append((m.start(), m.end(), "CREDIT_CARD", _RANK["CREDIT_CARD"]))


# ---------------------------------------------------------------------------- IBAN

# Total IBAN length per country (SWIFT IBAN registry); unknown countries are rejected.
_IBAN_LEN = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
    "BH": 22, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28,
    "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24,
    "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SC": 31,
    "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip
# The first letter is consumed before the look-behind so the regex keeps a charset prefix
# (fast C scan over lowercase prose).
_IBAN = re.compile(
    r"[A-Z](?<![A-Za-z0-9][A-Z])([A-Z])(\d{2})((?: ?[A-Z0-9]){11,30})(?![A-Za-z0-9])"
)
# Every IBAN holds a run of 7+ digits (account/bank numbers), i.e. a numeric island: the
# IBAN regex only runs in a window around such islands.  The window reaches back over
# "CCkk BANK " and forward over trailing alphanumeric groups.
_IBAN_BACK, _IBAN_FORWARD = 16, 40


def _mod97(s: str) -> bool:
    # Move the first four characters to the end and map letters A..Z to 10..35.
    r = s[4:] + s[:4]
    num = "".join(str(int(c, 36)) for c in r)
    return int(num) % 97 == 1


def _iban(text: str, a: int, b: int, out: list[_Cand]) -> None:
    for m in _IBAN.finditer(text, a, b):
        want = _IBAN_LEN.get(m.group()[:2])
        if want is None:
            continue
        # The greedy match may have run into a following code ("... 3000 EUR"): keep the
        # first `want` alphanumerics and locate where they end in the original text.
        raw = m.group()
        compact = raw.replace(" ", "")
        if len(compact) < want:
            continue
        count, end = 0, m.start()
        for i, ch in enumerate(raw):
            if ch != " ":
                count += 1
                if count == want:
                    end = m.start() + i + 1
                    break
        # Only cut on a group boundary (spaced form) or at the very end (compact form).
        if end < m.end() and text[end] != " ":
            continue
        if _mod97(compact[:want]):
            out.append((m.start(), end, "IBAN", _RANK["IBAN"]))


# ----------------------------------------------------------------------------- SSN

_SSN = re.compile(r"(?<![\w\-.])(\d{3})([- ])(\d{2})\2(\d{4})(?![\w\-]|\.\d)")
_SSN_BARE = re.compile(r"(?<![\w\-.])(\d{3})(\d{2})(\d{4})(?![\w\-]|\.\d)")
_SSN_CUE = re.compile(r"(?i)\b(?:ssn|ss#|social security(?: number| no\.?| #)?|sozialversicherung)")


def _ssn_valid(area: str, group: str, serial: str) -> bool:
    # SSA rules: no 000/666/9xx area (9xx are ITINs), no 00 group, no 0000 serial.
    return area != "000" and area != "666" and area[0] != "9" and group != "00" and serial != "0000"


def _cue_before(lower: str, pos: int, cue: re.Pattern[str], window: int = 30) -> bool:
    return cue.search(lower, max(0, pos - window), pos) is not None


def _ssn(text: str, a: int, b: int, lower: str, out: list[_Cand]) -> None:
    for m in _SSN.finditer(text, a, b):
        if not _ssn_valid(m.group(1), m.group(3), m.group(4)):
            continue
        # Space-separated "123 45 6789" is too ambiguous (quantities, codes) without a cue.
        if m.group(2) == " " and not _cue_before(lower, m.start(), _SSN_CUE):
            continue
        out.append((m.start(), m.end(), "SSN", _RANK["SSN"]))


def _ssn_bare(text: str, lower: str, out: list[_Cand]) -> None:
    if "ssn" in lower or "ss#" in lower or "social" in lower:
        for m in _SSN_BARE.finditer(text):
            if _ssn_valid(m.group(1), m.group(2), m.group(3)) and _cue_before(
                lower, m.start(), _SSN_CUE
            ):
                out.append((m.start(), m.end(), "SSN", _RANK["SSN"]))


# ---------------------------------------------------------------------- IP_ADDRESS

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
# Exactly four parts: a fifth ".N" or a leading "N." / "v" means a version or an OID.
_IPV4 = re.compile(rf"(?<![\w.\-]){_OCTET}(?:\.{_OCTET}){{3}}(?![\w\-]|\.\d)")
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{1,4}:|::?)(?:[0-9A-Fa-f]{0,4}:){1,7}"
    r"(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?:%[\w.]+)?(?![\w:.])"
)
_VERSION_CUE = re.compile(r"(?i)(?:version|release|build|\bver\.?|\bv)\s*$")


def _ipv4(text: str, a: int, b: int, out: list[_Cand]) -> None:
    for m in _IPV4.finditer(text, a, b):
        if _VERSION_CUE.search(text, max(0, m.start() - 12), m.start()):
            continue
        out.append((m.start(), m.end(), "IP_ADDRESS", _RANK["IP_ADDRESS"]))


def _ipv6(text: str, out: list[_Cand]) -> None:
    if "::" in text or text.count(":") >= 5:
        for m in _IPV6.finditer(text):
            s = m.group()
            if s.count(":") < 2 or len(s) < 3:
                continue
            try:
                ipaddress.IPv6Address(s)
            except ValueError:
                continue
            # "dead::beef"-style tokens (C++/Rust paths) are valid IPv6 only by accident:
            # real addresses in text virtually always contain a digit.
            if not any(c.isdigit() for c in s):
                continue
            out.append((m.start(), m.end(), "IP_ADDRESS", _RANK["IP_ADDRESS"]))


# ------------------------------------------------------------------- DATE_OF_BIRTH

_MONTHS = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?"
    r"|janvier|f[ée]vrier|mars|avril|mai|juin|juillet|ao[uû]t|septembre|octobre"
    r"|novembre|d[ée]cembre|januar|februar|m[äa]rz|juni|juli|oktober|dezember)\.?"
)
_DATE = re.compile(
    r"(?i)(?<![\w.\-/])(?:"
    r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}"
    r"|\d{1,2}[-/.]\d{1,2}[-/.](?:\d{4}|\d{2})"
    rf"|\d{{1,2}}(?:st|nd|rd|th)?(?:\s+of)?\s+{_MONTHS},?\s+\d{{4}}"
    rf"|{_MONTHS}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}"
    r")(?![\w\-/]|[.:]\d)"
)
_DOB_CUE = re.compile(
    r"(?i)(?:\bborn\b|\bd\.?o\.?b\b\.?|date\s+of\s+birth|birth\s*date|birth\s*day|\bbday"
    r"|\bn[ée]e?\b|geboren|geburtsdatum|fecha de nacimiento|date de naissance)"
)
_DOB_HINTS = ("born", "dob", "d.o.b", "birth", "bday", "né", "nee", "gebo", "nacim", "naiss")


def _dob(text: str, lower: str, out: list[_Cand]) -> None:
    if not any(h in lower for h in _DOB_HINTS):
        return
    cues = [(m.start(), m.end()) for m in _DOB_CUE.finditer(text)]
    if not cues:
        return
    for m in _DATE.finditer(text):
        s, e = m.start(), m.end()
        # The cue usually precedes the date ("DOB: 1985-03-12"); allow a short trailing
        # cue too ("12/03/1985 (date of birth)").
        if any(0 <= s - ce <= 30 or 0 <= cs - e <= 15 for cs, ce in cues):
            out.append((s, e, "DATE_OF_BIRTH", _RANK["DATE_OF_BIRTH"]))


# --------------------------------------------------------------------------- PHONE

# International (+CC or 00CC), NANP, and European national formats with a trunk 0.
# Bare digit runs without "+" are never phones: they are order numbers and timestamps.
# A number continuing to the left ("3704 0044 ...") is part of something longer.
_NOT_AFTER = r"(?<![\w+\-.,/])(?<![0-9][ .\-])"  # no digit run continuing on the left
_NOT_BEFORE = r"(?![\w\-]|[.,:/]\d|[ .\-]\d)"  # ...nor on the right (nor a time, a decimal)
_PHONE = re.compile(
    # +CC / 00CC international, optional "(0)" trunk or "(area)" groups.
    r"(?:(?<![\w+])\+|(?<![\w+\-.])(?<![0-9][ .\-])00)[1-9]\d{0,2}"
    r"(?:[ .\-]?(?:\(\d{1,4}\)|\d{1,6})){1,7}"
    + _NOT_BEFORE
    # NANP: (555) 123-4567, 555-123-4567, 1-800-555-0199 (one separator style).
    + r"|"
    + _NOT_AFTER
    + r"(?:1[ .\-])?(?:\([2-9]\d{2}\)[ .\-]?|[2-9]\d{2}([ .\-]))"
    r"\d{3}(?(1)\1|[ .\-])\d{4}"
    + _NOT_BEFORE
    # Trunk-0 national: 020 7946 0958, 07700 900123, 030 1234 5678.
    + r"|"
    + _NOT_AFTER
    + r"0[1-9]\d{1,3}[ \-]\d{3,4}[ \-]?\d{3,4}"
    + _NOT_BEFORE
    # French pairs: 01 23 45 67 89.
    + r"|"
    + _NOT_AFTER
    + r"0[1-9](?:([ .\-])\d{2})(?:\2\d{2}){3}"
    + _NOT_BEFORE
)


def _phone(text: str, a: int, b: int, out: list[_Cand]) -> None:
    for m in _PHONE.finditer(text, a, b):
        s = m.group()
        # Drop a "(0)" trunk marker before counting: "+44 (0)20 7946 0958".
        d = sum(c.isdigit() for c in s.replace("(0)", ""))
        if s[0] == "+" or s.startswith("00"):
            if not 8 <= d - (2 if s[0] == "0" else 0) <= 15:
                continue
        elif not 9 <= d <= 12:
            continue
        out.append((m.start(), m.end(), "PHONE", _RANK["PHONE"]))


# -------------------------------------------------------------------------- SECRET

# Provider key shapes.  Each is anchored on a literal prefix that the text is checked for
# with a plain substring test first, so a clean prompt costs a few `in` tests.
_SECRET_SHAPES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("sk-", re.compile(r"(?<![\w\-])sk-(?:ant-|proj-|svcacct-|admin-|None-)?[A-Za-z0-9_\-]{20,}")),
    ("AKIA", re.compile(r"(?<![A-Za-z0-9])AKIA[0-9A-Z]{16}(?![A-Za-z0-9])")),
    ("ASIA", re.compile(r"(?<![A-Za-z0-9])ASIA[0-9A-Z]{16}(?![A-Za-z0-9])")),
    ("_", re.compile(r"(?<![\w])gh[pousr]_[A-Za-z0-9]{30,255}(?!\w)")),
    ("github_pat_", re.compile(r"(?<![\w])github_pat_[A-Za-z0-9_]{22,255}")),
    ("glpat-", re.compile(r"(?<![\w\-])glpat-[A-Za-z0-9_\-]{20,}")),
    ("xox", re.compile(r"(?<![\w\-])xox[baprse]-[A-Za-z0-9\-]{10,}")),
    ("hooks.slack.com", re.compile(r"https://hooks\.slack\.com/services/[A-Za-z0-9/_\-]{20,}")),
    ("AIza", re.compile(r"(?<![\w\-])AIza[0-9A-Za-z_\-]{35}(?![\w\-])")),
    ("_live_", re.compile(r"(?<![\w])(?:sk|rk|whsec)_live_[0-9A-Za-z]{16,}")),
    ("_test_", re.compile(r"(?<![\w])(?:sk|rk)_test_[0-9A-Za-z]{16,}")),
    ("whsec_", re.compile(r"(?<![\w])whsec_[0-9A-Za-z+/=]{24,}")),
    ("hf_", re.compile(r"(?<![\w])hf_[A-Za-z0-9]{30,}(?!\w)")),
    ("npm_", re.compile(r"(?<![\w])npm_[A-Za-z0-9]{36}(?!\w)")),
    ("SG.", re.compile(r"(?<![\w])SG\.[\w\-]{16,32}\.[\w\-]{30,64}")),
    (
        "eyJ",
        re.compile(
            r"(?<![\w\-])eyJ[A-Za-z0-9_\-]{8,8192}\.eyJ[A-Za-z0-9_\-]{8,8192}\.[A-Za-z0-9_\-]{8,2048}"
        ),
    ),
    (
        "-----BEGIN",
        re.compile(
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
            r"(?:[\s\S]{0,16384}?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
            # A truncated block (no END line) still leaks the key: take the base64 body.
            r"|(?:[A-Za-z0-9+/=:\-,\s]|\\n){0,16384}[A-Za-z0-9+/=])"
        ),
    ),
)

# "api_key = ...", "password: ...", "Authorization: Bearer ...": the value is reported only
# when it looks random (entropy and character classes), so "password: <redacted>" or
# "token = os.environ[...]" are not flagged.
_ASSIGN_HINTS = ("key", "secret", "token", "passw", "pwd", "auth", "credential", "bearer")
# Every repetition is bounded and no part precedes the keyword: an unbounded "[\w.-]*"
# prefix made a long token ("key=AAAA...") cubic.
_ASSIGN = re.compile(
    r"(?i)(?:(?:api[_\-. ]?key|secret|token|passw(?:or)?d|passphrase|pwd|access[_\-. ]?key"
    r"|private[_\-. ]?key|auth|credentials?)[\w.\-]{0,40}[\"']?[ \t]{0,4}(?:[:=]|=>|:=)[ \t]{0,4}"
    r"(?:[\"'`]|b[\"'])?|\bbearer[ \t]+|\b(?:api[_\- ]?key|password|secret)[ \t]+(?:is[ \t]+)?)"
    r"([A-Za-z0-9_\-+/=.~!@#$%^&*?]{8,200})"
)
_PLACEHOLDER = re.compile(
    r"(?i)^(?:x+|\*+|\.+|<.*|\$.*|\{.*|%.*|your[\w\-]*|changeme|example\w*|placeholder|redacted"
    r"|none|null|nil|true|false|undefined|env\b.*|os\.environ.*|process\.env.*|getenv.*"
    r"|settings\..*|config\..*|self\..*|req(?:uest)?\..*|[a-z]+(?:[_\-.][a-z]+)+)$"
)
# AWS secret access keys: 40 base64 characters, only trusted next to an AWS cue.
_AWS_SECRET = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
_AWS_CUE = re.compile(r"(?i)aws|secret[_ ]?access|secret[_ ]?key")


def _entropy(s: str) -> float:
    n = len(s)
    counts: dict[str, int] = {}
    for c in s:
        counts[c] = counts.get(c, 0) + 1
    return -sum(k / n * math.log2(k / n) for k in counts.values())


def _looks_random(v: str) -> bool:
    if len(v) < 8 or _PLACEHOLDER.match(v):
        return False
    classes = (
        any(c.islower() for c in v)
        + any(c.isupper() for c in v)
        + any(c.isdigit() for c in v)
        + any(not c.isalnum() for c in v)
    )
    if classes < 2:
        return False
    # ~3 bits/char separates random strings from words and repeated characters.
    return _entropy(v) >= (2.8 if len(v) < 16 else 3.2)


def _secret(text: str, lower: str, out: list[_Cand]) -> None:
    rank = _RANK["SECRET"]
    # Most prefixes contain "_" or "-": test those two characters once, not every prefix.
    has = {"_": "_" in text, "-": "-" in text}
    for hint, rx in _SECRET_SHAPES:
        gate = "_" if "_" in hint else "-" if "-" in hint else ""
        if (not gate or has[gate]) and hint in text:
            for m in rx.finditer(text):
                if hint == "sk-" and not _looks_random(m.group()[3:]):
                    continue
                out.append((m.start(), m.end(), "SECRET", rank))
    if any(h in lower for h in _ASSIGN_HINTS):
        for m in _ASSIGN.finditer(text):
            v = m.group(1).rstrip(".,;!?")
            if _looks_random(v):
                out.append((m.start(1), m.start(1) + len(v), "SECRET", rank))
    if ("aws" in lower or "secret" in lower) and _AWS_CUE.search(text):
        for m in _AWS_SECRET.finditer(text):
            v = m.group()
            if _cue_before(lower, m.start(), _AWS_CUE, 60) and _looks_random(v):
                out.append((m.start(), m.end(), "SECRET", rank))


# ------------------------------------------------------------------------ CUSTOM

_MAX_CUSTOM_LEN = 1000


@lru_cache(maxsize=256)
def _compile_custom(regex: str) -> re.Pattern[str]:
    return re.compile(regex)


def check_custom(regex: str) -> str | None:
    """Return an error message when a policy's custom regex is unusable, else None."""
    if not isinstance(regex, str) or not regex:
        return "regex must be a non-empty string"
    if len(regex) > _MAX_CUSTOM_LEN:
        return f"regex is longer than {_MAX_CUSTOM_LEN} characters"
    try:
        rx = re.compile(regex)
    except re.error as exc:
        return f"invalid regex: {exc}"
    if rx.match(""):
        # A pattern matching the empty string would flag every position of every request.
        return "regex must not match the empty string"
    return None


def _custom(text: str, custom: Iterable[tuple[str, str]], out: list[_Cand]) -> None:
    for name, regex in custom:
        rx = _compile_custom(regex)
        for m in rx.finditer(text):
            if m.end() > m.start():
                out.append((m.start(), m.end(), name, _CUSTOM_RANK))


# -------------------------------------------------------------------------- find

# Numeric "islands": maximal runs of digits and the separators that phone, card, SSN and
# IPv4 formats use.  That regex has a charset prefix, so the C scanner skips prose; the
# per-type regexes (whose leading look-behinds defeat that optimisation) then only run
# on the few islands holding enough digits for their type.
# ASCII classes on purpose: a Unicode \d costs a category lookup per character.
# Seven characters is the shortest island that can hold any of these types (an IPv4
# "1.1.1.1"); requiring it in the regex keeps the many short numbers out of Python.
_ISLAND = re.compile(r"[0-9+(][0-9()\-. /+]{5,}[0-9)]")


def _numeric(text: str, want: Callable[[str], bool], lower: str, out: list[_Cand]) -> None:
    card, ssn, ip, phone = want("CREDIT_CARD"), want("SSN"), want("IP_ADDRESS"), want("PHONE")
    iban = want("IBAN")
    n = len(text)
    for isl in _ISLAND.finditer(text):
        a, b = isl.span()
        s = isl.group()
        nd = sum(map(str.isdigit, s))
        # Look-aheads need to see the two characters after the island.
        e = min(n, b + 2)
        if card and nd >= 13:
            _card(text, a, e, out)
        if ssn and nd >= 9:
            _ssn(text, a, e, lower, out)
        if ip and nd >= 4 and s.count(".") >= 3:
            _ipv4(text, a, e, out)
        if phone and nd >= 8:
            _phone(text, a, e, out)
        if iban and nd >= 6:
            # Overlapping windows may report an IBAN twice; _resolve drops the duplicate.
            _iban(text, max(0, a - _IBAN_BACK), min(n, b + _IBAN_FORWARD), out)


def _resolve(cands: list[_Cand]) -> list[_Cand]:
    """Keep a non-overlapping subset: longer first, then the more specific type."""
    if len(cands) < 2:
        return cands
    cands.sort(key=lambda c: (c[0] - c[1], c[3], c[0]))
    kept: list[_Cand] = []
    for c in cands:
        if all(c[1] <= k[0] or c[0] >= k[1] for k in kept):
            kept.append(c)
    kept.sort()
    return kept


def find(
    text: str,
    types: frozenset[str] | None = None,
    custom: tuple[tuple[str, str], ...] = (),
) -> list[Finding]:
    """Find PII in `text`, sorted by start and non-overlapping.

    `types` restricts the built-in detectors (None: all of them); `custom` adds
    (TYPE_NAME, regex) pairs, whose regexes the caller validated with `check_custom`.
    """
    if not text:
        return []

    def want(t: str) -> bool:
        return types is None or t in types

    out: list[_Cand] = []
    lower = text.lower()
    if want("SECRET"):
        _secret(text, lower, out)
    if want("EMAIL"):
        _email(text, out)
    _numeric(text, want, lower, out)
    if want("SSN"):
        _ssn_bare(text, lower, out)
    if want("IP_ADDRESS"):
        _ipv6(text, out)
    if want("DATE_OF_BIRTH"):
        _dob(text, lower, out)
    if custom:
        _custom(text, custom, out)
    return [Finding(t, s, e, text[s:e]) for s, e, t, _ in _resolve(out)]
