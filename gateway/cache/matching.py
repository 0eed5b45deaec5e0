"""When a semantically similar question may share a cached answer.

Cosine similarity alone can't tell "convert 5 km to miles" from "convert 7 km to miles", a
question from its negation, "USD to EUR" from "EUR to USD" or "the melting point of iron" from
"the boiling point of iron": such pairs score as high as most paraphrases. So a candidate above
the threshold must also pass `agree`, a cheap guard (regexes and sets, no model, so it can run
on the request path) that rejects the pair when something that changes the answer differs:
numbers (digits or words), negation, names (capitalised words, acronyms, camel case, looked up
in the other text in any case), opposites (a short antonym list, opposite prefixes such as
lock/unlock or import/export, opposite particles such as log in/out), the roles of words that
trade places, and a single content word swapped in an otherwise identical question.

The guard leans towards rejecting: a wrongly rejected paraphrase costs one upstream call, a
wrongly reused answer costs far more. `bench/cache_eval.py` measures both on labelled pairs.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import NamedTuple

# For all-MiniLM-L6-v2 with this guard, tuned on the dev half of bench/cache_eval/pairs.jsonl:
# the guard does most of the work, and the cosine still removes a third of the near-misses
# should the guard miss them.
DEFAULT_THRESHOLD = 0.82

# --- words ------------------------------------------------------------------------------------

_TOKEN = re.compile(r"[a-z]+|\d+(?:,\d{3})*(?:\.\d+)?")  # ASCII: the model is English
_APOSTROPHES = str.maketrans("’‘`", "'''")
_NOT = re.compile(r"n't\b")
_CONTRACTION = re.compile(r"'(?:s|re|ve|m|ll|d)\b")  # also the possessive 's
# Contractions typed without an apostrophe, common in chat.
_BARE_CONTRACTIONS = {
    "dont": "do not", "doesnt": "does not", "didnt": "did not", "cant": "can not",
    "wont": "will not", "isnt": "is not", "arent": "are not", "wasnt": "was not",
    "werent": "were not", "havent": "have not", "hasnt": "has not", "hadnt": "had not",
    "wouldnt": "would not", "shouldnt": "should not", "couldnt": "could not",
    "aint": "is not", "cannot": "can not", "whats": "what", "wheres": "where", "hows": "how",
    "whos": "who", "thats": "that", "im": "i", "ive": "i", "youre": "you",
}  # fmt: skip


def _tokens(text: str) -> tuple[str, ...]:
    """Lowercase words and numbers; "n't" becomes "not", other contractions are dropped."""
    text = text.lower()
    if "'" in text or "’" in text:
        text = text.translate(_APOSTROPHES).replace("can't", "can not").replace("won't", "will not")
        text = _CONTRACTION.sub("", _NOT.sub(" not", text))
    tokens = _TOKEN.findall(text)
    if _BARE_CONTRACTIONS.keys().isdisjoint(tokens):
        return tuple(tokens)
    return tuple(" ".join(_BARE_CONTRACTIONS.get(t, t) for t in tokens).split())


@lru_cache(maxsize=8192)
def _stem(word: str) -> str:
    """A crude stem, enough to match plurals and -ing/-ed/-e forms of one word."""
    for suffix in ("ies", "ing", "ed", "es", "s", "e"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return word


def _one_edit_apart(a: str, b: str) -> bool:
    """One inserted, deleted, replaced or transposed letter: a typo."""
    if len(a) > len(b):
        a, b = b, a
    if len(b) - len(a) > 1:
        return False
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    if len(a) < len(b):
        return a[i:] == b[i + 1 :]
    swapped = a[i + 1 : i + 2] == b[i : i + 1] and a[i : i + 1] == b[i + 1 : i + 2]
    return a[i + 1 :] == b[i + 1 :] or (swapped and a[i + 2 :] == b[i + 2 :])


def _same_word(a: str, b: str) -> bool:
    """Equal up to inflection, abbreviation or a typo. A typo must spare the first letter:
    typos rarely hit it, and "ethanol" and "methanol" are different things."""
    if a == b or _stem(a) == _stem(b):
        return True
    short, long = (a, b) if len(a) <= len(b) else (b, a)
    if len(short) >= 3 and len(long) > len(short) + 1 and long.startswith(short):
        return True  # "dict" / "dictionary", "env" / "environment"
    return len(short) >= 4 and a[0] == b[0] and _one_edit_apart(a, b)


# --- numbers ----------------------------------------------------------------------------------

_UNITS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen".split()
    )
}
_TENS = {
    w: 10 * i
    for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), 2)
}
# From "second": "first" is more often an adverb ("should I pay off debt first").
_ORDINALS = {
    w: i
    for i, w in enumerate(
        "second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth thirteenth "
        "fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth twentieth".split(),
        2,
    )
}
_SCALES = {
    "hundred": 100,
    "thousand": 1_000,
    "million": 10**6,
    "billion": 10**9,
    "trillion": 10**12,
    "dozen": 12,
}
_NUMBER_WORDS = frozenset(_UNITS) | frozenset(_TENS) | frozenset(_ORDINALS) | frozenset(_SCALES)
# Roman numerals from II to XXIX ("World War II", "Henry VIII"); single letters are ambiguous.
_ROMAN_DIGITS = {"I": 1, "V": 5, "X": 10}
_ROMANS = frozenset(
    x + u
    for x in ("", "X", "XX")
    for u in ("", "I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX")
    if len(x + u) >= 2
)


def _roman_value(numeral: str) -> int:
    values = [_ROMAN_DIGITS[c] for c in numeral]
    return sum(-v if v < w else v for v, w in zip(values, [*values[1:], 0], strict=True))


def _continues(group: float, value: float) -> bool:
    """Whether a number word adds to the group before it: "two hundred" "five", "twenty"
    "five", "thousand" "two", but not "five" "five"."""
    rest = group % 100
    if value < 10:
        return rest % 10 == 0 and (rest >= 20 or rest == 0)
    return rest == 0


class _NumberReader:
    """Reads numbers in digits or words from tokens; "two thousand and five" is one."""

    def __init__(self) -> None:
        self.values: list[float] = []
        self.total = 0.0  # thousands, millions... read so far
        self.group: float | None = None  # below a thousand; None when no number is open

    def close(self) -> None:
        if self.group is not None:
            self.values.append(self.total + self.group)
        self.total, self.group = 0.0, None

    def start(self, value: float) -> None:
        self.close()
        self.group = value

    def read(self, token: str) -> None:
        group = self.group
        if token[0].isdigit():
            self.start(float(token.replace(",", "")))
        elif token in _UNITS or token in _TENS:
            value = float(_UNITS[token] if token in _UNITS else _TENS[token])
            if group is not None and (group == 0 or _continues(group, value)):
                self.group = group + value
            else:
                self.start(value)
        elif token == "hundred":
            self.group = (group or 1.0) * 100
        elif token in _SCALES:  # "thousand", "million", ..., "dozen"
            self.total += (group or 1.0) * _SCALES[token]
            self.group = 0.0
        elif token in _ORDINALS:
            self.close()
            self.values.append(float(_ORDINALS[token]))
        elif not (token == "and" and group is not None and group % 100 == 0):
            self.close()  # "and" may join "two hundred and five"


def _spelled_numbers(tokens: tuple[str, ...]) -> list[float]:
    reader = _NumberReader()
    for token in tokens:
        reader.read(token)
    reader.close()
    return reader.values


def _numbers(tokens: tuple[str, ...], numerals: list[str]) -> tuple[float, ...]:
    """Every quantity, sorted, without the ambiguous 1 ("a", "one")."""
    if not _NUMBER_WORDS.isdisjoint(tokens):
        values = _spelled_numbers(tokens)
    else:  # digits only, the common case
        values = [float(t.replace(",", "")) for t in tokens if t[0].isdigit()]
    values += [float(_roman_value(numeral)) for numeral in numerals]
    return tuple(sorted(v for v in values if v != 1.0)) if values else ()


# --- negation ---------------------------------------------------------------------------------

_NEGATIONS = frozenset(
    "not no never none nobody nothing nowhere neither nor without non unable except "
    "excluding".split()
)


# --- names ------------------------------------------------------------------------------------

_CAPITALISED = re.compile(r"[A-Z][A-Za-z0-9]*")
_LONG_LOWERCASE_WORD = re.compile(r"\b[a-z]{4,}\b")

_STOPWORDS = frozenset(
    """
    a an the this that these those there here some any each every all of in on at to for from
    with by about into onto as than then and or but if so i me my mine myself you your yours u
    we us our it its they them their he she his her him how what which where when why who whom
    whose is are was were be been being am do does did done doing can could should would will
    shall might must have has had get got please pls plz thanks just also really many much
    up down out off s t not no between vs versus
    explain describe tell show give help want need know way ways tips steps process possible
    okay ok someone something anyone anything everyone everything somebody anybody another
    different other lot lots thing things exactly actually usually typically
    """.split()
)  # function words, and words that frame a request rather than say what it is about


def _starts_sentence(text: str, start: int) -> bool:
    """Whether the word at `start` opens the text or follows a sentence's end, past spaces,
    quotes and bullets (looking a few characters back only, to stay linear)."""
    before = text[max(0, start - 12) : start].rstrip(" \t\"'“‘(*-")
    return not before and start <= 12 or bool(before) and before[-1] in ".!?:;\n"


def _names(text: str) -> tuple[frozenset[str], list[str]]:
    """Capitalised words past a sentence's start, acronyms and camel case, lowercased; and
    the Roman numerals found on the way.

    Text in Title Case or capitals ("How To Reset My Password") says nothing of names: it is
    told by a capitalised function word past a sentence's start and no long lowercase word.
    """
    if text.islower():
        return frozenset(), []
    names: set[str] = set()
    numerals: list[str] = []
    headline_word = False
    for match in _CAPITALISED.finditer(text):
        start, word = match.start(), match.group()
        if start and text[start - 1].isalnum():  # the capital inside "iPhone", "eBay"
            while start and text[start - 1].isalnum():
                start -= 1
            word = text[start : match.end()]
        elif word in _ROMANS:
            numerals.append(word)
            continue
        elif word == "I":
            continue
        mid_sentence = not _starts_sentence(text, start)
        if mid_sentence or not word[1:].islower():  # or camel case, an acronym, a letter
            lowered = word.lower()
            if lowered in _STOPWORDS:
                headline_word = headline_word or mid_sentence
                if word.isupper() and len(word) > 1:
                    names.add(lowered)  # "US", "IT"
            elif lowered not in _NUMBER_WORDS and not word[0].isdigit():
                names.add(lowered)  # "2FA", "4K": the numbers check compares the digits
    if headline_word and not _LONG_LOWERCASE_WORD.search(text):
        return frozenset(), numerals
    return frozenset(names), numerals


# --- opposites --------------------------------------------------------------------------------

_ANTONYMS = """
before/after first/last top/bottom high/low higher/lower highest/lowest large/small
larger/smaller largest/smallest big/small bigger/smaller biggest/smallest fast/slow
faster/slower fastest/slowest young/old younger/older youngest/oldest newest/oldest early/late
earlier/later earliest/latest long/short longer/shorter longest/shortest cheap/expensive
most/least most/fewest more/less more/fewer max/min best/worst better/worse good/bad
open/close opening/closing start/stop start/end begin/end push/pull add/remove buy/sell
send/receive deposit/withdraw deposit/withdrawal win/lose gain/lose gain/loss profit/loss
sunrise/sunset pros/cons soft/hard hot/cold warm/cold expand/collapse ascending/descending
asc/desc inner/outer north/south east/west northern/southern eastern/western left/right
light/dark heavy/light positive/negative strong/weak public/private male/female men/women
boy/girl accept/reject approve/deny approve/reject allow/deny allow/block rise/fall
horizontal/vertical sync/async synchronous/asynchronous true/false income/expense
credit/debit lend/borrow morning/evening summer/winter above/below over/under
inside/outside arrival/departure arrive/depart join/leave login/logout plus/minus
add/subtract multiply/divide
"""
_ANTONYM_KEYS: dict[str, set[tuple[str, int]]] = {}
for _pair in _ANTONYMS.split():
    for _side, _word in enumerate(_pair.split("/")):
        _ANTONYM_KEYS.setdefault(_word, set()).add((_pair, _side))

# A prefix that negates a word (lock/unlock), with the shortest stem it may take ("install" is
# not "in" + "stall"). Then pairs of prefixes that oppose each other on the same stem.
_NEGATING_PREFIXES = (
    ("un", 3), ("dis", 4), ("de", 4), ("non", 4), ("anti", 4), ("in", 5), ("im", 5),
)  # fmt: skip
_OPPOSED_PREFIXES = (
    ("en", "de"), ("en", "dis"), ("in", "ex"), ("im", "ex"), ("in", "de"), ("in", "out"),
    ("up", "down"), ("upper", "lower"), ("over", "under"), ("max", "min"), ("pre", "post"),
)  # fmt: skip
_PARTICLES = {"in": "out", "out": "in", "on": "off", "off": "on", "up": "down", "down": "up"}


@lru_cache(maxsize=8192)
def _opposition_keys(word: str) -> frozenset[tuple[str, int]]:
    """Keys with a side: two words oppose when they hold one key on opposite sides."""
    keys = set(_ANTONYM_KEYS.get(word, ()))
    keys.add((word, 0))  # a prefix may negate it
    for prefix, shortest in _NEGATING_PREFIXES:
        if word.startswith(prefix) and len(word) - len(prefix) >= shortest:
            keys.add((word[len(prefix) :], 1))
    for i, pair in enumerate(_OPPOSED_PREFIXES):
        for side, prefix in enumerate(pair):
            if word.startswith(prefix) and len(word) - len(prefix) >= 3:
                keys.add((f"{i}:{word[len(prefix) :]}", side))
    return frozenset(keys)


def _particles(tokens: tuple[str, ...]) -> frozenset[tuple[str, str]]:
    """(verb, particle) pairs such as ("log", "in") or ("turn", "off")."""
    if _PARTICLES.keys().isdisjoint(tokens):
        return frozenset()
    return frozenset((tokens[i - 1], t) for i, t in enumerate(tokens) if i and t in _PARTICLES)


# --- facts of one text ------------------------------------------------------------------------

_ARTICLES = frozenset({"a", "an", "the"})
_COORDINATORS = frozenset({"and", "or", "vs", "versus", "between"})
_NOT_CONTENT = _STOPWORDS | _NUMBER_WORDS | {r.lower() for r in _ROMANS}


class _Facts(NamedTuple):
    tokens: tuple[str, ...]
    token_set: frozenset[str]
    numbers: tuple[float, ...]
    negated: bool
    names: frozenset[str]
    particles: frozenset[tuple[str, str]]
    content: tuple[str, ...]  # the words that say what the text is about, in order
    coordinated: bool


@lru_cache(maxsize=2048)
def _facts(text: str) -> _Facts:
    tokens = _tokens(text)
    token_set = frozenset(tokens)
    names, numerals = _names(text)
    return _Facts(
        tokens=tokens,
        token_set=token_set,
        numbers=_numbers(tokens, numerals),
        negated=not _NEGATIONS.isdisjoint(token_set),
        names=names,
        particles=_particles(tokens),
        content=tuple([t for t in tokens if t not in _NOT_CONTENT and not t[0].isdigit()]),
        coordinated=not _COORDINATORS.isdisjoint(token_set),
    )


# --- checks: True when the two texts may need different answers --------------------------------


def _numbers_differ(a: _Facts, b: _Facts) -> bool:
    return a.numbers != b.numbers


def _negation_differs(a: _Facts, b: _Facts) -> bool:
    return a.negated != b.negated


def _mentions(facts: _Facts, name: str) -> bool:
    if name in facts.token_set:
        return True
    stem = _stem(name)  # "PDFs" / "pdf", "iPhones" / "iphone"
    return any(_stem(t) == stem for t in facts.tokens)


def _names_differ(a: _Facts, b: _Facts) -> bool:
    return not (all(_mentions(b, n) for n in a.names) and all(_mentions(a, n) for n in b.names))


def _opposed_words(a: _Facts, b: _Facts) -> bool:
    only_a, only_b = a.token_set - b.token_set, b.token_set - a.token_set
    if not only_a or not only_b:
        return False
    keys_b = set().union(*map(_opposition_keys, only_b))
    return any((key, 1 - side) in keys_b for w in only_a for key, side in _opposition_keys(w))


def _opposed_particles(a: _Facts, b: _Facts) -> bool:
    """The same verb with opposite particles: "zoom in" / "zoom out", "turn on" / "turn off"."""
    return any(
        (verb, _PARTICLES[particle]) in b.particles
        and (verb, particle) not in b.particles
        and (verb, _PARTICLES[particle]) not in a.particles
        for verb, particle in a.particles
    )


def _opposites(a: _Facts, b: _Facts) -> bool:
    return _opposed_words(a, b) or _opposed_particles(a, b)


def _skeleton(tokens: tuple[str, ...]) -> tuple[str, ...]:
    """The function words in order, with a gap for each content word; articles dropped."""
    return tuple(t if t in _STOPWORDS else "_" for t in tokens if t not in _ARTICLES)


def _roles_swapped(a: _Facts, b: _Facts) -> bool:
    """Content words trading places around the same function words: "USD to EUR" / "EUR to
    USD", "miles is 10 km" / "km is 10 miles". Coordinated words may trade places freely."""
    if a.content == b.content or a.coordinated or b.coordinated:
        return False
    return sorted(a.content) == sorted(b.content) and _skeleton(a.tokens) == _skeleton(b.tokens)


def _slot_differs(a: _Facts, b: _Facts) -> bool:
    """The same content words in the same order but one."""
    if len(a.content) != len(b.content) or len(a.content) < 2:
        return False
    return sum(not _same_word(x, y) for x, y in zip(a.content, b.content, strict=True)) == 1


_CHECKS: tuple[tuple[str, Callable[[_Facts, _Facts], bool]], ...] = (
    ("numbers", _numbers_differ),
    ("negation", _negation_differs),
    ("names", _names_differ),
    ("opposites", _opposites),
    ("roles", _roles_swapped),
    ("slot", _slot_differs),
)


def disagreement(query: str, candidate: str) -> str | None:
    """The first reason the two texts may need different answers, or None (for diagnostics)."""
    a, b = _facts(query), _facts(candidate)
    return next((name for name, differs in _CHECKS if differs(a, b)), None)


def agree(query: str, candidate: str) -> bool:
    """True when nothing that changes the answer differs between the two texts."""
    return disagreement(query, candidate) is None
