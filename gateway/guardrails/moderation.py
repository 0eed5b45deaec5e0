"""Output/input moderation: conservative phrase and pattern lists per category.

`moderate(text, categories=None, extra_patterns=())` returns the categories that matched, in
`CATEGORIES` order, then any categories that only a policy's `extra_patterns` name.

Lists are deliberately narrow: they name a harmful *request or intent* ("how to make a pipe
bomb", "I want to kill myself"), never a single common word ("kill", "bomb", "drugs"), so
"how to kill a process", "the movie bombed" or "drug interactions" pass. This is a cheap
tripwire for obvious cases, not a classifier; a policy that needs more adds patterns.

Categories: violence (threats, planning harm to people), self_harm (intent or methods),
sexual_minors (any sexual content involving minors), hate (dehumanising or exterminationist
statements about protected groups), weapons (making explosives, chemical/biological weapons,
untraceable or converted firearms), illicit_drugs (making or buying hard drugs).
"""

from __future__ import annotations

import functools
import re
import unicodedata

CATEGORIES = ("violence", "self_harm", "sexual_minors", "hate", "weapons", "illicit_drugs")

_HOW = (
    r"(?:how (?:do i|do you|can i|could i|would i|should i|to|does one)|ways? to|steps to"
    r"|best way to|teach me (?:how )?to|instructions (?:for|on|to)|guide (?:to|for|on))"
)
_PEOPLE = (
    r"(?:someone|somebody|a person|people|him|her|them|my (?:wife|husband|boss|neighbou?r"
    r"|teacher|mother|father|mom|dad|brother|sister|ex|girlfriend|boyfriend|roommate|coworker"
    r"|classmate|partner|family)|a (?:child|kid|baby|cop|police officer|human)|everyone|my ex)"
)
_MINORS = (
    r"(?:child|children|minors?|underage|under-age|kids?|preteens?|pre-teens?|toddlers?"
    r"|little (?:girls?|boys?)|(?:[1-9]|1[0-7])[- ]?(?:year|yr)[- ]?olds?|schoolgirls?"
    r"|schoolboys?)"
)
_GROUPS = (
    r"(?:jews|jewish people|muslims|christians|hindus|sikhs|blacks|black people|whites"
    r"|white people|asians|arabs|latinos|hispanics|mexicans|immigrants|refugees|gays"
    r"|gay people|lesbians|trans people|transgender people|women|disabled people|roma"
    r"|gypsies)"
)
_HARD_DRUGS = (
    r"(?:meth|methamphetamine|crystal meth|fentanyl|carfentanil|heroin|cocaine|crack"
    r"|crack cocaine|lsd|mdma|ecstasy|ghb|dmt|pcp|ketamine|krokodil|desomorphine)"
)

_PATTERNS: dict[str, tuple[str, ...]] = {
    "violence": (
        _HOW + r" (?:kill|murder|strangle|stab|poison|shoot|suffocate|behead|torture) " + _PEOPLE,
        r"\bi(?:'m| am)? (?:going to|gonna|will|want to|plan to|am planning to) (?:kill|murder"
        r"|shoot|stab|hurt|strangle) " + _PEOPLE,
        r"\b(?:plan|planning|carry out|commit) (?:a |an )?(?:mass shooting|school shooting"
        r"|massacre|terrorist attack|terror attack)",
        r"\b(?:dispose of|get rid of|hide) (?:a |the )?(?:dead )?(?:body|corpse) (?:without|so"
        r" (?:no one|nobody|the police))",
        r"\bkill (?:as many people|the most people)\b",
    ),
    "self_harm": (
        r"\bi (?:want|wanna|am going|'m going|plan|intend|need) to (?:kill myself|end my life"
        r"|commit suicide|die|hurt myself|cut myself|end it all)\b",
        _HOW + r" (?:kill myself|end my life|commit suicide|hurt myself|cut myself"
        r"|hang myself|overdose)",
        r"\b(?:painless|easiest|quickest|best|surest) (?:way|method)s? to (?:die|kill myself"
        r"|commit suicide|end my life)\b",
        r"\bsuicide (?:methods|instructions|how-to)\b",
        r"\bhow many (?:pills|tablets|mg)\b[^.\n]{0,40}\b(?:to die|to kill myself|lethal|fatal"
        r" overdose)\b",
    ),
    "sexual_minors": (
        r"\b(?:child|kiddie|underage) (?:porn|pornography|sexual abuse material|erotica)\b",
        r"\bcsam\b",
        r"\b(?:sex|sexual|nude|naked|explicit|erotic|lewd|nsfw)\b (?:[\w-]+ ){0,3}?(?:with"
        r"|of|involving|about|featuring) (?:a |an |the |my )?" + _MINORS + r"\b",
        r"\b" + _MINORS + r" (?:porn|nudes|naked photos|sex videos|erotica)\b",
    ),
    "hate": (
        r"\b(?:kill|exterminate|eradicate|gas|wipe out|genocide|lynch|deport all) (?:all )?"
        r"(?:the )?" + _GROUPS + r"\b",
        r"\b" + _GROUPS + r" (?:are|is) (?:subhuman|vermin|animals|parasites|cockroaches"
        r"|rats|a disease|inferior|not human|a plague)\b",
        r"\b" + _GROUPS + r" (?:should|must|deserve to) (?:all )?(?:die|be killed"
        r"|be exterminated|be gassed|be wiped out|burn)\b",
    ),
    "weapons": (
        _HOW + r" (?:make|build|assemble|construct|create|manufacture) (?:a |an |my own )?"
        r"(?:homemade )?(?:pipe bomb|bomb|ied|explosive device|explosives|molotov cocktail"
        r"|nail bomb|car bomb|dirty bomb|suicide vest|nerve agent|sarin|vx|ricin|anthrax"
        r"|mustard gas|chlorine gas|bioweapon|biological weapon|chemical weapon|ghost gun"
        r"|silencer|suppressor|zip gun)\b",
        r"\b(?:synthesi[sz]e|weaponi[sz]e|produce|culture) (?:sarin|vx|ricin|anthrax|tabun"
        r"|soman|novichok|botulinum toxin|smallpox)\b",
        r"\bconvert (?:an? |my )?(?:ar-?15|glock|semi-?auto\w*(?: rifle| pistol)?) (?:in)?to"
        r" (?:full[- ]auto\w*|automatic|select[- ]fire)\b",
        r"\b(?:untraceable|unregistered) (?:gun|firearm|handgun|rifle)s? (?:at home|without"
        r" a (?:serial|background check))",
        r"\b3d[- ]print(?:ed|ing)? (?:a |an )?(?:gun|firearm|pistol|lower receiver|auto sear)\b",
    ),
    "illicit_drugs": (
        _HOW + r" (?:make|cook|synthesi[sz]e|manufacture|produce|brew) " + _HARD_DRUGS + r"\b",
        r"\b(?:synthesi[sz]e|cook|cooking|manufacture) " + _HARD_DRUGS + r" (?:at home|in my"
        r" (?:kitchen|garage|basement))",
        r"\b(?:buy|order|purchase|get|score) " + _HARD_DRUGS + r" (?:online|on the dark ?web"
        r"|without (?:a )?prescription|from a dealer)\b",
        r"\b(?:where|how) (?:can|do) i (?:buy|get|score) " + _HARD_DRUGS + r"\b",
    ),
}
# Every pattern of a category contains one of these words; the category's regex only runs
# when the text has one (a word-set lookup is ~100x cheaper than scanning 2 KB with `re`).
_TRIGGERS: dict[str, frozenset[str]] = {
    name: frozenset(words.split())
    for name, words in {
        "violence": "kill murder strangle stab poison shoot suffocate behead torture hurt "
        "shooting massacre attack body corpse",
        "self_harm": "myself life suicide die overdose lethal fatal end",
        "sexual_minors": "porn pornography csam sex sexual nude naked explicit erotic lewd nsfw "
        "nudes erotica abuse",
        "hate": "kill exterminate eradicate gas wipe genocide lynch deport subhuman vermin "
        "animals parasites cockroaches rats disease inferior human plague die killed "
        "exterminated gassed burn wiped",
        "weapons": "bomb ied explosive explosives molotov nerve sarin vx ricin anthrax mustard "
        "chlorine bioweapon biological chemical ghost silencer suppressor zip synthesize "
        "synthesise weaponize weaponise tabun soman novichok botulinum smallpox convert "
        "untraceable unregistered 3d vest",
        "illicit_drugs": "meth methamphetamine fentanyl carfentanil heroin cocaine crack lsd mdma "
        "ecstasy ghb dmt pcp ketamine krokodil desomorphine",
    }.items()
}
_WORD_SPLIT = str.maketrans({c: " " for c in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~’‘“”"})
_INVISIBLE = re.compile("[\u00ad\u180e\u200b-\u200f\u2060-\u2064\ufeff]")
_COMPILED: dict[str, re.Pattern[str]] = {
    name: re.compile("|".join(f"(?:{p})" for p in patterns)) for name, patterns in _PATTERNS.items()
}


@functools.lru_cache(maxsize=256)
def _extra(regex: str) -> re.Pattern[str]:
    # Policies are validated when saved (policy._pattern_errors), so compile errors surface
    # there; the cache keeps per-request cost to a dict lookup.
    return re.compile(regex, re.IGNORECASE)


def _normalise(text: str) -> str:
    if not text.isascii():
        text = _INVISIBLE.sub("", unicodedata.normalize("NFKC", text))
    # split/join in C instead of a regex sub: several times faster on long text.
    return "\n".join(" ".join(line.split()) for line in text.casefold().split("\n"))


def moderate(
    text: str,
    categories: frozenset[str] | None = None,
    extra_patterns: tuple[tuple[str, str], ...] = (),
) -> tuple[str, ...]:
    """Categories whose phrases match `text` (case-insensitive, word-bounded), limited to
    `categories` when given. `extra_patterns`: (category, regex) pairs a policy adds; they are
    matched against the original text (case-insensitive), so a policy's regex sees what the
    user wrote."""
    if not text:
        return ()
    norm = _normalise(text)
    words = frozenset(norm.translate(_WORD_SPLIT).split())
    found: list[str] = []
    for name, pattern in _COMPILED.items():
        if categories is not None and name not in categories:
            continue
        if not _TRIGGERS[name].isdisjoint(words) and pattern.search(norm):
            found.append(name)
    for name, regex in extra_patterns:
        # A policy's own category name is always on; a built-in one obeys `categories`.
        if name in found or (categories is not None and name in CATEGORIES
                             and name not in categories):  # fmt: skip
            continue
        if _extra(regex).search(text):
            found.append(name)
    order = {c: i for i, c in enumerate(CATEGORIES)}
    return tuple(sorted(found, key=lambda c: order.get(c, len(order))))
