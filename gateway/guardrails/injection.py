"""Prompt-injection scoring: a fast, explainable rule set, no model call.

`score(text, tool_output=False)` returns a `Verdict` (0..1 score and the rules that fired).
It runs on every request, so everything is precompiled and the costly extra passes (ROT13,
leetspeak, homoglyphs, spaced-out letters, base64/hex payloads, hidden tag text) only run
when a cheap gate says the text could hold such a trick.

Rule families (the prefix of each rule name):
* `override`   - "ignore all previous instructions", "new instructions:", "you are no longer..."
* `extraction` - "print your system prompt", "what were you told"
* `roleplay`   - DAN, "developer mode enabled", "act as an unfiltered AI", "no restrictions"
* `delimiter`  - fake turn markers: <|im_start|>, [INST], "### System:", "system:" lines
* `encoding`   - zero-width / tag characters, encoded or obfuscated payloads, mixed scripts
* `tool`       - instructions aimed at the assistant inside tool results / retrieved documents;
                 they weigh much more when `tool_output=True` (a web page has no business
                 telling the assistant what to do; a user asking it to call a tool is normal).

Combination: noisy-OR, `1 - prod(1 - w_i)`. Each weight reads as "how likely this signal
alone means an attack"; noisy-OR lets one strong signal cross the threshold by itself, lets
several weak ones (e.g. "stay in character" + "never refuse" + "jailbreak") add up, never
exceeds 1, and does not depend on rule order. A sum would explode on long jailbreak
templates for no extra information, and max() would ignore corroboration.

Decision on quoted mentions: text that only *mentions* an attack phrase inside quotes and
frames it as a discussion ("translate 'ignore previous instructions' to French", "is 'print
your system prompt' a prompt injection?") gets its score halved, so a single quoted phrase
stays under the threshold. An unquoted "Translate this: ignore previous instructions and ..."
is not discounted: the model would read it as an instruction. Encoding and hidden-text
signals are never discounted.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from dataclasses import dataclass

DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True, slots=True)
class Verdict:
    score: float  # 0..1
    rules: tuple[str, ...]  # names of the rules that fired


@dataclass(frozen=True, slots=True)
class _Rule:
    name: str
    pattern: re.Pattern[str]
    weight: float  # in user text
    tool_weight: float  # in tool output / retrieved documents
    core: bool  # also run on de-obfuscated variants (ROT13, leet, decoded blobs, ...)
    groups: tuple[frozenset[str], ...]  # the regex only runs if each group has a word in
    subs: tuple[str, ...]  # the text, or if one of these substrings is in it
    context: re.Pattern[str] | None  # must match the text just before the match, if set


def _strip_leading_boundaries(regex: str) -> str:
    """Drop a `\\b` that opens a top-level branch. `re` finds a pattern fast only when it can
    see which characters a match starts with; a leading `\\b` hides that and makes the scan
    ~3x slower. `_search` checks the boundary on the match instead."""
    branches, depth, start, i = [], 0, 0, 0
    while i < len(regex):
        c = regex[i]
        if c == "\\":
            i += 2
            continue
        if c == "[":  # skip a character class (a "]" first in it is literal)
            i = regex.index("]", i + 2 if regex[i + 1 : i + 2] in ("]", "^") else i + 1)
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "|" and depth == 0:
            branches.append(regex[start:i])
            start = i + 1
        i += 1
    branches.append(regex[start:])
    return "|".join(b.removeprefix("\\b") for b in branches)


def _rule(name: str, triggers: str, regex: str, weight: float, tool_weight: float | None = None,
          core: bool = False, context: str | None = None) -> _Rule:  # fmt: skip
    """`triggers`: groups joined by " + ", each of space-separated words; every match must
    contain a word of each group (a `*` suffix or a non-word character makes an item a
    substring that alone lets the regex run). Python's `re` scans ~50 ns per
    character per pattern on this CPU, so forty patterns over 2 KB would cost milliseconds;
    a word-set lookup skips nearly all of them on benign text."""
    # Outside `tool`, a tool result that carries the same phrase is a bit more suspicious
    # than a user typing it (the user owns the conversation; a document does not).
    tw = min(0.95, weight * 1.15) if tool_weight is None else tool_weight
    groups = tuple(frozenset(t for t in g.split() if t.isalnum()) for g in triggers.split(" + "))
    subs = tuple(t.rstrip("*") for t in triggers.split() if t != "+" and not t.isalnum())
    pattern = re.compile(_strip_leading_boundaries(regex), re.MULTILINE)
    ctx = re.compile(context + r"\Z", re.MULTILINE) if context else None
    return _Rule(name, pattern, weight, tw, core, tuple(g for g in groups if g), subs, ctx)


# Imperative position: start of text/line/sentence/clause, after a quote or bullet, or after a
# word that introduces a command ("please", "you must", "I want you to"). "Why do models
# ignore previous instructions?" is a description, not a command, and gets the weak rule only.
_IMPERATIVE = (
    r"(?:^|[.!?:;,\-—>\"'“‘(\[*`]\s*|\b(?:please|now|just|and|then|so|also|simply|you|must"
    r"|should|will|to|first|kindly|always|immediately|ok|okay|pls|plz|can|could|would|shall"
    r"|hereby|step \d+)\s+)"
)
_OVERRIDE_VERB = r"(?:ignore|disregard|forget|skip|override|bypass|abandon|discard|neglect|drop)"
_PRIOR = (
    r"(?:previous|prior|above|preceding|earlier|former|original|initial|system|all|every"
    r"|your|any|existing|old|developer|openai|anthropic|safety)"
)
_DIRECTIVES = (
    r"(?:instructions?|rules?|guidelines?|directives?|prompts?|commands?|constraints?"
    r"|restrictions?|programming|guardrails?|policies|policy|context|messages?|orders?|training)"
    # "the old policy document", "the previous rules page": a document, not the directives.
    r"(?! (?:documents?|docs?|files?|pages?|pdfs?|sections?|manuals?|sheets?|templates?))"
)
# Up to three filler words of at most 30 characters, lazily: bounded, so no blow-up, and the
# window search below can rely on a match staying near its trigger word.
_W = r"(?:[\w'’-]{1,30} ){0,3}?"
_VERBS_T = "ignore ignoring disregard forget skip override bypass abandon discard neglect drop"

_RULES: tuple[_Rule, ...] = (
    # --- instruction overrides ---------------------------------------------------------
    _rule(
        "override.ignore_previous",
        (
            "ignore ignoring disregard forget skip override bypass abandon discard neglect drop + "
            "instructions instruction rules rule guidelines guideline directives directive prompts "
            "prompt commands command constraints constraint restrictions restriction programming "
            "guardrails guardrail policies policy context messages message orders order training"
        ),
        r"\b" + _OVERRIDE_VERB + r" " + _W + _PRIOR + r"\b ?" + _W + _DIRECTIVES + r"\b",
        0.75,
        core=True,
        context=_IMPERATIVE,
    ),
    _rule(
        "override.ignore_mention",
        (
            "ignore ignoring disregard forget skip override bypass abandon discard neglect drop + "
            "instructions instruction rules rule guidelines guideline directives directive prompts "
            "prompt commands command constraints constraint restrictions restriction programming "
            "guardrails guardrail policies policy context messages message orders order training"
        ),
        r"\b" + _OVERRIDE_VERB + r" " + _W + _PRIOR + r"\b ?" + _W + _DIRECTIVES + r"\b",
        0.3,
        core=True,
    ),
    _rule(
        "override.ignore_everything_above",
        f"{_VERBS_T} + everything all anything",
        r"\b" + _OVERRIDE_VERB + r" (?:everything|all|anything) (?:you(?:'ve| have)?"
        r" (?:been |were )?(?:told|given|taught|instructed)\b"
        r"|(?:(?:written|said|stated|you (?:read|saw)) )?"
        r"(?:above|before (?:this|now)|prior to this|so far|previously|in (?:the|your)"
        r" (?:system|original|initial))\b)",
        0.7,
        core=True,
        context=_IMPERATIVE,
    ),
    _rule(
        "override.void",
        (
            "above previous prior preceding earlier original + instructions rules guidelines "
            "directives"
        ),
        r"\b(?:the |all |any |your )?(?:above|previous|prior|preceding|earlier|original)"
        r" (?:instructions|rules|guidelines|directives) (?:are|were|is|have been) (?:now )?"
        r"(?:outdated|obsolete|void|null|cancell?ed|revoked|fake|wrong|invalid|no longer valid"
        r"|superseded|deprecated|a test|irrelevant)\b",
        0.6,
        core=True,
    ),
    _rule(
        "override.forget_everything",
        "forget",
        r"\bforget (?:everything|all|what)(?: that)? (?:you(?:'ve| have| were| know| are)"
        r"|(?:you )?(?:was|were) (?:said|told)|above|before)",
        0.65,
        core=True,
    ),
    _rule(
        "override.new_instructions",
        (
            "new updated revised real actual true additional override overriding secret + "
            "instruction "
            "instructions rule rules directive directives prompt task order orders"
        ),
        r"\b(?:new|updated|revised|real|actual|true|additional|override|overriding|secret)"
        r" (?:system )?(?:instructions?|rules?|directives?|system prompt|prompt|task|orders?)"
        r" ?(?::|are\b|is\b|follow\b)",
        0.55,
        core=True,
    ),
    _rule(
        "override.no_longer",
        "longer",
        r"\byou(?: are|'re) no longer (?:[\w-]+ ){0,2}?(?:bound|restricted|limited|required"
        r"|subject|governed|obliged|constrained|an? (?:ai|assistant|language model|chatbot)"
        r"|chatgpt|claude|gpt|llm|a helpful|programmed)",
        0.6,
        core=True,
    ),
    _rule(
        "override.from_now_on",
        "now point moment",
        r"\bfrom (?:now|this point|this moment)(?: on(?:wards?)?)?,? (?:you|your|ignore|act"
        r"|only|never|do not|don't|forget|respond as|answer as|pretend)\b",
        0.3,
        core=True,
    ),
    _rule(
        "override.disable_safety",
        (
            "ignore disregard bypass disable turn override deactivate remove circumvent switch "
            "lift + "
            "safety content ethical moral security alignment"
        ),
        r"\b(?:ignore|disregard|bypass|disable|turn off|override|deactivate|remove|circumvent"
        r"|switch off|lift) (?:all |any |your |the |of )*(?:safety|content|ethical|moral"
        r"|security|alignment) (?:filters?|guidelines|policies|policy|restrictions|rules"
        r"|protocols|settings|training|guardrails|measures|constraints)",
        0.55,
        core=True,
    ),
    _rule(
        "override.supersede",
        "supersede supersedes override overrides replace replaces precedence cancel cancels",
        r"\b(?:these|this|the following|my) (?:instructions?|rules?|message|prompt)"
        r" (?:supersedes?|overrides?|replaces?|takes? precedence over|cancels?)\b",
        0.55,
        core=True,
    ),
    _rule(
        "override.ignore_user",
        "ignore disregard answer + user human",
        r"\b(?:ignore|disregard|don't answer|do not answer) (?:the |what )?(?:user|human)"
        r"(?:'s)? ?(?:request|question|instructions|query|asked|said|wants)?",
        0.45,
        0.7,
    ),
    # --- system prompt extraction -------------------------------------------------------
    _rule(
        "extraction.reveal_prompt",
        (
            "reveal print repeat show display output tell give share leak dump write echo recite "
            "spell copy paste return expose disclose summarize summarise translate put send read "
            "what "
            "whats + system preprompt pre developer hidden initial metaprompt meta instructions "
            "rules "
            "guidelines directives configuration prompt guardrails programming setup above before "
            "prior preceding"
        ),
        r"\b(?:reveal|print|repeat|show|display|output|tell me|give me|share|leak|dump"
        r"|write out|write down|echo|recite|spell out|copy|paste|return|expose|disclose"
        r"|summari[sz]e|translate|put|send|read back|what(?:'s| is| are))\b "
        r"(?:[\w'’-]+ ){0,4}?(?:(?:your|the|its|this|my|hidden|initial|original|full|exact"
        r"|entire|secret|confidential|internal) (?:[\w-]+ )?(?:system (?:prompt|message"
        r"|instructions?)|pre-?prompt|developer (?:message|prompt|instructions?)|hidden"
        r" (?:prompt|instructions?|rules)|initial (?:prompt|instructions?)|meta-?prompt)"
        r"|your (?:instructions|rules|guidelines|directives|configuration|pre-?prompt"
        r"|prompt|guardrails|programming|setup instructions)"
        r"|(?:the |all )?(?:text|words|instructions|everything|content|messages?)"
        r" (?:above|before this|prior to this|preceding)(?! (?:table|code|list|paragraph))"
        r"|everything (?:above|before))",
        0.7,
        core=True,
    ),
    _rule(
        "extraction.what_told",
        "told instructed programmed prompted asked give given tell provide provided set",
        r"\bwhat (?:were you|have you been|had you been|did (?:they|your developers?|openai"
        r"|the developers?|your creators?|the operator)) (?:told|instructed|programmed|prompted"
        r"|asked) (?:to|before|initially|at the start|in your)?"
        r"|\b(?:what|which) (?:instructions|rules|guidelines|directives|prompt) (?:did|have"
        r"|were) (?:the developers?|your developers?|your creators?|the operator|they|you been)"
        r" (?:give|given|tell|provide|provided|set)\b",
        0.5,
        core=True,
    ),
    _rule(
        "extraction.what_rules",
        "what + initial original exact hidden secret system full internal confidential underlying",
        r"\bwhat (?:are|were|is) (?:your|the) (?:initial|original|exact|hidden|secret|system"
        r"|full|internal|confidential|underlying) (?:instructions|rules|directives|prompt"
        r"|guidelines|configuration)",
        0.6,
        core=True,
    ),
    _rule(
        "extraction.starting_with",
        "start starts starting begin begins beginning",
        r"\b(?:start|begin)(?:s|ning)? with [\"'“]?(?:you are|your instructions|system)\b",
        0.45,
        core=True,
    ),
    _rule(
        "extraction.verbatim",
        "verbatim word character block modification omission summarizing summarising",
        r"\b(?:verbatim|word for word|word-for-word|character for character|in a code block"
        r"|without (?:any )?(?:modification|omission|summari[sz]ing))\b",
        0.15,
    ),
    # --- role-play jailbreaks -----------------------------------------------------------
    _rule(
        "roleplay.dan",
        "anything dan stan dude aim mongo",
        r"\bdo anything now\b|\b(?:you are|you're|act as|become|be|play|enable|called"
        r"|as|hi|hello|hey) (?:now )?(?:dan|stan|dude|aim|mongo tom)\b(?! (?:brown|smith))"
        r"|\b(?:dan|stan|aim) (?:mode|prompt|jailbreak)\b",
        0.65,
        core=True,
    ),
    _rule(
        "roleplay.mode",
        "mode",
        r"\b(?:developer|dev|god|sudo|unrestricted|jailbreak|jailbroken|evil|chaos|unfiltered"
        r"|uncensored|unlocked|opposite) mode (?:enabled|activated|is on|output)\b"
        r"|\b(?:god|jailbreak|jailbroken|evil|chaos|unfiltered|uncensored|unrestricted) mode\b"
        r"|\b(?:chatgpt|gpt|ai|assistant|llm|model|claude|bot)\b[^.\n]{0,40}\bdeveloper mode\b"
        r"|\b(?:enable|activate|enter|switch to|simulate)\b[^.\n]{0,20}\bdeveloper mode\b"
        r"(?![^.\n]{0,40}\b(?:android|phone|chrome|browser|windows|iphone|ios|device|settings"
        r"|tablet|pixel|samsung|xbox|mac|extension|firefox|edge|vs ?code|usb)\b)",
        0.55,
        core=True,
    ),
    _rule("roleplay.jailbreak_word", "jailbr*", r"\bjailbr(?:eak|oken)(?:s|ed|ing)?\b", 0.25),
    _rule(
        "roleplay.no_restrictions",
        (
            "pretend imagine act behave respond answer assume suppose roleplay role simulate "
            "hypothetically + restrictions limits limitations filters rules guidelines boundaries "
            "censorship policy policies constraints ethics morals safeguards guardrails"
        ),
        r"\b(?:pretend|imagine|act|behave|respond|answer|assume|suppose|roleplay|role-play"
        r"|simulate|hypothetically)\b[^.\n]{0,50}?\b(?:have|had|with|without|are free of"
        r"|are free from|there are|free of|free from|has|having) (?:no|zero|any) (?:[\w-]+ )?"
        r"(?:restrictions|limits|limitations|filters|rules|guidelines|boundaries|censorship"
        r"|content polic\w+|constraints|ethics|morals|safeguards|guardrails)\b",
        0.7,
        core=True,
    ),
    _rule(
        "roleplay.lawless_ai",
        "ai assistant bot model chatbot llm + rules restrictions limits limitations filters",
        r"\b(?:ai|assistant|bot|model|chatbot|llm)(?: (?:that|which|who))? (?:with|has|having"
        r"|without) (?:no|zero|any) (?:rules|restrictions|limits|limitations|filters)\b",
        0.55,
        core=True,
    ),
    _rule(
        "roleplay.without_limits",
        "restrictions filters censorship limitations guardrails safeguards ethical moral",
        r"\b(?:without|no|free of|free from|zero) (?:any )?(?:ethical|moral|content|safety)?"
        r" ?(?:restrictions|filters|censorship|limitations|guardrails|safeguards"
        r"|(?:ethical|moral) (?:guidelines|constraints|limits|boundaries|compass))\b",
        0.3,
        core=True,
    ),
    _rule(
        "roleplay.unfiltered_persona",
        (
            "unfiltered uncensored unrestricted unaligned amoral unethical evil rogue jailbroken "
            "unbound unlimited unhinged lawless"
        ),
        r"\b(?:act|behave|respond|roleplay|role-play|pose|answer|reply|speak|write|talk)"
        r" (?:as|like) (?:an? |the |my )?(?:[\w-]+ ){0,2}?(?:unfiltered|uncensored"
        r"|unrestricted|unaligned|amoral|unethical|evil|rogue|jailbroken|unbound|unlimited"
        r"|unhinged|lawless)\b"
        r"|\b(?:unfiltered|uncensored|unrestricted|amoral|unaligned|jailbroken) (?:ai|assistant"
        r"|chatbot|model|version of (?:yourself|you|chatgpt)|persona|llm|language model"
        r"|alter ego)\b",
        0.6,
        core=True,
    ),
    _rule(
        "roleplay.stay_in_character",
        "character",
        r"\b(?:stay|remain|keep) in character\b|\bnever break character\b"
        r"|\bif you break character\b",
        0.3,
    ),
    _rule(
        "roleplay.never_refuse",
        (
            "never not don do cannot can won will must + refuse decline say reject apologise "
            "apologize warnings disclaimers"
        ),
        r"\b(?:never|not|don't|do not|cannot|can't|won't|will not|must not) (?:ever )?"
        r"(?:refuse|decline|say (?:no|that you can't)|reject any|apologi[sz]e|add (?:any )?"
        r"(?:warnings|disclaimers))\b",
        0.25,
    ),
    _rule(
        "roleplay.not_bound",
        "bound restricted limited constrained governed free freed",
        r"\b(?:not|never|isn't|aren't|no longer) (?:bound|restricted|limited|constrained"
        r"|governed) by (?:any |the |openai'?s? |anthropic'?s? )?(?:rules|polic\w+|guidelines"
        r"|openai|anthropic|ethics|restrictions|content polic\w+|laws|morals|filters)"
        r"|\bbroken? free (?:of|from)\b|\bfreed from (?:the )?(?:typical )?(?:confines|limits"
        r"|restrictions|rules)",
        0.55,
        core=True,
    ),
    _rule(
        "roleplay.dual_response",
        "jailbreak jailbroken dan classic unlocked unfiltered developer uncensored",
        r"\[(?:🔓|🔒)?\s*(?:jailbreak|jailbroken|dan|classic|unlocked|unfiltered|developer"
        r" mode output)\]|\b(?:two|2) (?:different |separate )?(?:responses|answers)\b"
        r"[^\n]{0,120}\b(?:jailbreak|unfiltered|dan|developer mode|uncensored)\b",
        0.45,
    ),
    _rule(
        "roleplay.token_threat",
        "tokens token",
        r"\b(?:you (?:will )?lose|deduct(?:ed)?|you have) \d+ tokens\b|\btoken system\b",
        0.35,
    ),
    # --- fake role / turn delimiters ----------------------------------------------------
    _rule(
        "delimiter.chat_template",
        "<| <start_of_turn> <end_of_turn>",
        r"<\|(?:im_start|im_end|system|user|assistant|endoftext|start_header_id|end_header_id"
        r"|eot_id|begin_of_text|end_of_turn)\|>|<start_of_turn>|<end_of_turn>",
        0.7,
    ),
    _rule("delimiter.inst", "inst sys", r"\[/?inst\]|<</?sys>>", 0.6),
    _rule(
        "delimiter.markdown_role",
        "#",
        r"^[ \t]*#{1,6} ?(?:system|assistant|developer|new instructions?|instructions?"
        r"|admin)(?: (?:prompt|message|override|note))? ?:",
        0.5,
    ),
    _rule(
        "delimiter.line_role",
        "system assistant developer admin root",
        r"^[ \t]*(?:system|assistant|developer|admin|root)(?: message| prompt| note)? ?:"
        r"[^\n]{0,80}\b(?:you|ignore|new|override|must|reveal|are now|disregard|always"
        r"|never|do not|forget|from now)\b",
        0.55,
    ),
    _rule(
        "delimiter.line_role_bare",
        "system assistant developer",
        r"^[ \t]*(?:system|assistant|developer)(?: message| prompt)? ?:",
        0.2,
    ),
    _rule(
        "delimiter.end_of_prompt",
        "end </ <system <instruction <admin <sys <developer role",
        r"\bend of (?:system )?(?:prompt|instructions|context|user input|input|document)\b"
        r"|</?(?:system|instructions?|admin|system_prompt|sys|developer)>"
        r"|\"role\" ?: ?\"(?:system|developer)\"",
        0.55,
    ),
    # --- instructions aimed at the assistant (strong in tool output) ---------------------
    _rule(
        "tool.address_ai",
        (
            "ai assistant assistants language llm llms chatbot chatbots agent agents gpt chatgpt "
            "claude copilot bot bots model models"
        ),
        r"\b(?:ai|assistant|language model|llm|chatbot|agent|gpt|chatgpt|claude|copilot"
        r"|bot|model)s?\b,? (?:[\w'-]{1,30}[:,]? ){0,3}?(?:you must|you should|you will|you need to"
        r"|you are (?:instructed|required|ordered)|must (?:now|immediately)|please (?:ignore"
        r"|send|forward|call|execute|run|reply|respond|include|tell|say)|are instructed"
        r"|are required|reading this)\b"
        r"|\b(?:attention|note|important|message|instructions?|notice) (?:to|for)"
        r" (?:the |any |all )?"
        r"(?:ai|assistant|llm|agent|model|chatbot|language model|bot)s?\b"
        r"|\bif you are an? (?:ai|llm|language model|assistant|agent|chatbot|bot)\b"
        r"|\b(?:dear|hey|hello|hi) (?:ai|assistant|agent|llm|chatgpt|claude|gpt|bot|model)\b",
        0.2,
        0.65,
    ),
    _rule(
        "tool.when_read",
        "read reading see process summarize summarise encounter parse + this",
        r"\b(?:when(?:ever)?|once|after|as soon as) you (?:read|see|process|summari[sz]e"
        r"|encounter|parse|finish reading|are done reading) this(?:[,:!]| (?:message|text|note"
        r"|instruction|document|email|comment|page|file))|\b(?:upon|after) reading this\b",
        0.25,
        0.6,
    ),
    _rule(
        "tool.exfiltrate",
        (
            "exfiltrat* send forward post upload email e-mail transmit leak append include encode "
            "+ "
            "conversation chat user users api credentials password passwords access tokens token "
            "secret secrets cookies session personal private contents content"
        ),
        r"\bexfiltrat\w*"
        r"|\b(?:send|forward|post|upload|email|e-mail|transmit|leak|append|include|encode)\b"
        r"[^.\n]{0,60}?\b(?:conversation|chat history|user'?s? (?:data|information|emails?"
        r"|password|credentials|messages|files|address|details)|api keys?|credentials"
        r"|passwords?|access tokens?|secrets?|cookies|session (?:id|token)|personal"
        r"(?: data| information)|private (?:data|keys?)|contents? of (?:the|this|your|their))"
        r"\b[^.\n]{0,60}?\b(?:to|at|via|into|in) (?:https?://|www\.|\S+@\S+|the (?:url|address"
        r"|endpoint|following)|this (?:url|address|endpoint)|attacker|my server)",
        0.35,
        0.7,
    ),
    _rule(
        "tool.md_image_exfil",
        "![",
        r"!\[[^\]\n]{0,50}\]\(https?://[^)\s]{0,200}[?&][\w]{1,20}=(?:\{|\[|<|%7b|\$)",
        0.6,
        0.75,
    ),
    _rule(
        "tool.call_tool",
        "call invoke use run execute trigger + tool function plugin action api",
        r"\b(?:call|invoke|use|run|execute|trigger)\b (?:the )?(?:[\w-]+ )?(?:tool|function"
        r"|plugin|action|api)\b[^.\n]{0,50}\bwith\b",
        0.1,
        0.4,
    ),
    _rule(
        "tool.call_named_tool",
        "call invoke run execute",
        r"\b(?:call|invoke|run|execute) (?:the )?`?[a-z]+_[a-z_]+`?(?:\(| with| tool| function)",
        0.1,
        0.45,
    ),
    _rule(
        "tool.conceal",
        (
            "tell telling inform informing mention mentioning alert alerting notify notifying let "
            "letting warn warning know see find told notice knowledge + user human them anyone "
            "they "
            "secretly*"
        ),
        r"\b(?:do not|don't|never|without) (?:tell(?:ing)?|inform(?:ing)?|mention(?:ing)?"
        r"|alert(?:ing)?|notify(?:ing)?|let(?:ting)?|warn(?:ing)?) (?:the )?(?:user|human"
        r"|them|anyone)\b"
        r"|\b(?:the user|they) (?:must not|should not|shouldn't|mustn't|need not) (?:know"
        r"|see|find out|be told|notice)\b|\bsecretly\b|\bwithout the user(?:'s)? knowledge\b",
        0.3,
        0.6,
    ),
    _rule(
        "tool.imperative_assistant",
        (
            "must should shall + ignore stop send forward delete reply respond tell say output "
            "visit "
            "open navigate click transfer approve recommend include"
        ),
        r"\b(?:you|the assistant|the ai) (?:must|should|shall) (?:now |immediately )?"
        r"(?:ignore|stop|send|forward|delete|reply|respond only|tell the user|say|output"
        r"|visit|open|navigate|click|transfer|approve|recommend|include)\b",
        0.1,
        0.45,
    ),
)
_CORE_RULES = tuple(r for r in _RULES if r.core)

# --- normalisation -------------------------------------------------------------------
# Zero-width / invisible format characters: stripped before matching ("ig\u200bnore").
# ZWJ (U+200D) and ZWNJ (U+200C) are stripped but not *counted*: emoji sequences and
# Persian/Indic text use them legitimately. A leading BOM is not counted either.
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"
)
_SUSPICIOUS_INVISIBLE = re.compile(
    "[\u180e\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"
)
# Unicode tag characters can spell out ASCII text that is invisible in most UIs. The only
# legitimate use is subdivision flags (England: U+1F3F4 + tags + cancel tag), removed first.
_TAG_FLAG = re.compile("\U0001f3f4[\U000e0020-\U000e007e]+\U000e007f")
_TAGS = re.compile("[\U000e0000-\U000e007f]+")
_STRIP = re.compile(_INVISIBLE.pattern[:-1] + "\U000e0000-\U000e007f]+")
_HSPACE_GATE = ("  ", "\t", "\r", "\x0b", "\x0c")
# Everything that is not a letter or digit splits words for the trigger lookup.
_WORD_SPLIT = str.maketrans({c: " " for c in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~’‘“”«»—–…"})

# Cyrillic/Greek letters that look like Latin ones (after casefold).
_CONFUSABLES = str.maketrans({
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "і": "i", "ј": "j",
    "ѕ": "s", "һ": "h", "ԁ": "d", "ԛ": "q", "ԝ": "w", "ӏ": "l", "ɡ": "g", "ո": "n", "ս": "u",
    "α": "a", "ο": "o", "ι": "i", "ν": "v", "κ": "k", "ρ": "p", "τ": "t", "υ": "u", "ε": "e",
})  # fmt: skip
_LOOKALIKES = "аеорсухіјѕһԁԛԝӏɡոսαοινκρτυε"
_LOOKALIKE_SET = frozenset(_LOOKALIKES)
_MIXED_WORD = re.compile(
    rf"(?=[a-z{_LOOKALIKES}]*[a-z])(?=[a-z{_LOOKALIKES}]*[{_LOOKALIKES}])[a-z{_LOOKALIKES}]{{3,}}"
)
_LEET = bytes.maketrans(b"01345789@$!|", b"oieastgbasil")
# Words an obfuscated attack must spell; the variants below only run the core rules when
# one of them appears in the variant but not in the plain text (cheap substring tests).
_KEYS = ("ignore", "disregard", "forget", "instruction", "prompt", "jailbreak", "restriction",
         "unfiltered", "reveal", "anything now", "bypass", "override")  # fmt: skip
_ROT13 = str.maketrans("abcdefghijklmnopqrstuvwxyz", "nopqrstuvwxyzabcdefghijklm")
_ROT13_WORDS = frozenset(
    w.translate(_ROT13)
    for w in "ignore disregard forget instructions instruction prompt system previous reveal "
    "jailbreak bypass override rules".split()
)
# Single-letter tokens that ordinary prose rarely has ("a", "i" and contraction tails like
# the "s" of "it's" are left out); spaced-out words produce many.
_SINGLE_LETTERS = frozenset("bcefghjklnopqruvwxyz")
# "i g n o r e  a l l" / "i.g.n.o.r.e": letters separated by single spaces or punctuation.
_SPACED = re.compile(r"\b(?:[a-z][ .\-_*]){2,}[a-z]\b")
_SPACED_SEP = re.compile(r"[ .\-_*]")
_SPACED_KEYS = tuple(sep.join(k) for k in ("ignore", "prompt", "instruct", "system", "disregard")
                     for sep in (" ", ".", "-", "*"))  # fmt: skip
_WORD_GAP = re.compile(r"[^\S\n]{2,}")
_B64_BLOB = re.compile(r"[A-Za-z0-9+/]{24,}={0,2}|[A-Za-z0-9_-]{32,}={0,2}")
_HEX_BLOB = re.compile(r"\b(?:[0-9a-fA-F]{2}[ :]?){20,}")
_DECODE_WORDS = frozenset(
    "decode decoded decoding base64 b64 hex decipher deobfuscate rot13 rot unscramble"
    " encoded".split()
)
_DECODE_OBEY = re.compile(
    r"\b(?:follow|execute|do|run|obey|act on|comply|carry out|perform|apply)\b"
    r"[^.\n]{0,30}\b(?:it|them|this|that|instructions?|what it says|the result|the decoded)\b"
    r"|\bthen (?:follow|do|execute|obey)\b"
)
_PRINTABLE = re.compile(r"[ -~\n\t]")

# --- the quoted-mention discount -------------------------------------------------------
_QUOTED = re.compile(
    r"\"[^\"\n]{3,300}\"|“[^”\n]{3,300}”|«[^»\n]{3,300}»|`[^`\n]{3,300}`"
    r"|(?<![a-z])'[^'\n]{3,300}'(?![a-z])|‘[^’\n]{3,300}’"
)
_META_CUE = re.compile(
    r"\b(?:translat\w*|what does|meaning of|means?|explain\w*|examples? of|is (?:this|it|that)"
    r"|detect\w*|classif\w*|regex|flag\w*|filter\w*|block\w*|training data|dataset|test cases?"
    r"|phrases?|strings?|sentences?|protect\w*|defend\w*|prevent\w*|mitigat\w*|attacks?"
    r"|injection|security|why do(?:es)?|in french|in spanish|in german|spell\w*|grammar"
    r"|quote|says?|said|wrote|written|tweet|headline|title)\b"
)
_META_DISCOUNT = 0.5
# The strong rule implies the weak one; count the evidence once.
_SUBSUMED = {"override.ignore_mention": "override.ignore_previous",
             "delimiter.line_role_bare": "delimiter.line_role"}  # fmt: skip


def _decode_blob(blob: str, hex_blob: bool) -> str | None:
    """Readable text hidden in a base64/hex blob, or None (binary data, hashes, keys)."""
    try:
        if hex_blob:
            raw = bytes.fromhex(re.sub(r"[ :]", "", blob))
        else:
            padded = blob + "=" * (-len(blob) % 4)
            raw = (base64.urlsafe_b64decode(padded) if ("-" in blob or "_" in blob)
                   else base64.b64decode(padded))  # fmt: skip
        decoded = raw.decode("utf-8")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    if len(decoded) < 8 or len(_PRINTABLE.findall(decoded)) < 0.9 * len(decoded):
        return None
    if " " not in decoded:  # ids and keys decode to noise without spaces, not to sentences
        return None
    return decoded


def normalise(text: str) -> str:
    """NFKC, casefolded, invisible characters removed, runs of spaces collapsed."""
    if text.isascii():  # the common case: NFKC and the invisible set cannot apply
        text = text.lower()
    else:
        text = _STRIP.sub("", unicodedata.normalize("NFKC", text)).casefold()
    if any(g in text for g in _HSPACE_GATE):
        # split/join runs in C, several times faster than a regex sub on long text; it also
        # drops indentation, which no rule needs.
        text = "\n".join(" ".join(line.split()) for line in text.split("\n"))
    return text


def _words(norm: str) -> frozenset[str]:
    return frozenset(norm.translate(_WORD_SPLIT).split())


# A match lies within this many characters of its trigger word (fillers are bounded), so on
# long texts the regex only scans windows around trigger occurrences.
_BEFORE, _AFTER, _MAX_WINDOWS = 300, 300, 10


def _positions(text: str, triggers: list[str]) -> list[int] | None:
    """Where the trigger words occur; None when there are too many to be worth windowing."""
    positions: list[int] = []
    for word in triggers:
        at = text.find(word)
        while at != -1:
            positions.append(at)
            if len(positions) > _MAX_WINDOWS:
                return None
            at = text.find(word, at + 1)
    return positions


def _valid(rule: _Rule, text: str, m: re.Match[str]) -> bool:
    at = m.start()
    # The `\b` stripped from the pattern's start (see _strip_leading_boundaries).
    if at and text[at - 1].isalnum() and text[at].isalnum():
        return False
    return rule.context is None or rule.context.search(text, max(0, at - 60), at) is not None


def _search_range(rule: _Rule, text: str, start: int, end: int) -> re.Match[str] | None:
    while (m := rule.pattern.search(text, start, end)) is not None:
        if _valid(rule, text, m):
            return m
        start = m.start() + 1
    return None


def _search(rule: _Rule, text: str, trigger_sets: list[list[str]]) -> re.Match[str] | None:
    """`trigger_sets`: for each trigger group, its words present in the text; every match
    contains one of each, so windows around the rarest group's occurrences suffice."""
    if len(text) <= _BEFORE + _AFTER + 200:
        return _search_range(rule, text, 0, len(text))
    best: list[int] | None = None
    for triggers in trigger_sets:
        positions = _positions(text, triggers)
        if positions is not None and (best is None or len(positions) < len(best)):
            best = positions
    if best is None:
        return _search_range(rule, text, 0, len(text))
    best.sort()
    start, end = -1, -1
    for at in best:  # merge overlapping windows so no character is scanned twice
        if start >= 0 and at - _BEFORE <= end:
            end = min(len(text), at + _AFTER)
            continue
        if start >= 0 and (m := _search_range(rule, text, start, end)) is not None:
            return m
        start, end = max(0, at - _BEFORE), min(len(text), at + _AFTER)
    return _search_range(rule, text, start, end) if start >= 0 else None


def _run(rules: tuple[_Rule, ...], text: str, tool_output: bool, hits: dict[str, float],
         spans: list[tuple[int, int]] | None = None,
         words: frozenset[str] | None = None) -> bool:  # fmt: skip
    if words is None:
        words = _words(text)
    fired = False
    for rule in rules:
        subs = [sub for sub in rule.subs if sub in text]
        if subs:
            # A substring alone may trigger; its group's words go in the same window set.
            trigger_sets = [subs + [w for g in rule.groups[:1] for w in g & words]]
        elif rule.groups and all(not g.isdisjoint(words) for g in rule.groups):
            trigger_sets = [list(g & words) for g in rule.groups]
        else:
            continue
        m = _search(rule, text, trigger_sets)
        if m is None:
            continue
        fired = True
        w = rule.tool_weight if tool_output else rule.weight
        if w > hits.get(rule.name, 0.0):
            hits[rule.name] = w
        if spans is not None:
            spans.append(m.span())
    return fired


def _variant(text: str, signal: str, weight: float, tool_output: bool,
             hits: dict[str, float]) -> None:  # fmt: skip
    """Run the core rules on a de-obfuscated variant; credit the trick only if it hid
    something the plain text did not show."""
    found: dict[str, float] = {}
    if _run(_CORE_RULES, text, tool_output, found) and any(k not in hits for k in found):
        for name, w in found.items():
            hits[name] = max(hits.get(name, 0.0), w)
        hits[signal] = max(hits.get(signal, 0.0), weight)


def _hidden_signals(raw: str, hits: dict[str, float]) -> str:
    """Zero-width and tag-character signals (from the raw text: normalisation strips them);
    returns the ASCII text spelled by tag characters, if any."""
    found = _STRIP.findall(raw.lstrip("\ufeff"))  # one pass; usually nothing
    if not found:
        return ""
    found_text = "".join(found)
    invisible = len(_SUSPICIOUS_INVISIBLE.findall(found_text))
    if invisible:
        # One stray ZWSP is copy-paste noise; many are a hidden payload or word splitting.
        hits["encoding.zero_width"] = 0.15 if invisible < 3 else 0.45 if invisible < 8 else 0.6
    if not _TAGS.search(found_text):
        return ""
    tags = _TAGS.findall(_TAG_FLAG.sub("", raw) if "\U0001f3f4" in raw else raw)
    if not tags:
        return ""
    hits["encoding.tag_chars"] = 0.6
    return "".join(
        chr(ord(c) - 0xE0000) for t in tags for c in t if 0x20 <= ord(c) - 0xE0000 < 0x7F
    )


def _obfuscation(raw: str, norm: str, words: frozenset[str], tool_output: bool,
                 hits: dict[str, float]) -> None:  # fmt: skip
    """De-obfuscated variants, each behind a cheap gate."""
    ascii_text = norm.isascii()
    if not ascii_text and not _LOOKALIKE_SET.isdisjoint(norm):
        mixed = _MIXED_WORD.findall(norm)
        if mixed:
            hits["encoding.homoglyph"] = 0.25 if len(mixed) < 3 else 0.4
            _variant(norm.translate(_CONFUSABLES), "encoding.homoglyph", 0.5, tool_output, hits)
    if ascii_text and any(not w.isalpha() and not w.isdigit() for w in words):
        # Gate: a token mixing letters and digits ("1gn0r3"); "$"/"@" split tokens, so
        # "$y$tem" alone slips through, but real leet prompts mix in digits.
        leet = norm.encode().translate(_LEET).decode()
        if any(k in leet for k in _KEYS) and any(k in leet and k not in norm for k in _KEYS):
            _variant(leet, "encoding.leet", 0.5, tool_output, hits)
    if len(words & _SINGLE_LETTERS) >= 4 and any(k in norm for k in _SPACED_KEYS):
        # Word gaps (2+ spaces) survive as single spaces; letters inside a word are joined.
        text = _WORD_GAP.sub(" \x00 ", raw.lower())
        text = _SPACED.sub(lambda m: _SPACED_SEP.sub("", m.group(0)), text)
        _variant(normalise(text.replace(" \x00 ", " ")), "encoding.spaced", 0.5, tool_output,
                 hits)  # fmt: skip
    if not words.isdisjoint(_ROT13_WORDS):
        _variant(norm.translate(_ROT13), "encoding.rot13", 0.55, tool_output, hits)
    pieces = raw.split()
    long_words = (
        [w for w in pieces if len(w) >= 24] if max(map(len, pieces), default=0) >= 24 else []
    )
    asks_decode = not _DECODE_WORDS.isdisjoint(words)
    candidates = [(m.group(0), False) for w in long_words for m in _B64_BLOB.finditer(w)]
    if asks_decode:
        candidates += [(m.group(0), True) for m in _HEX_BLOB.finditer(raw)]
    for blob, is_hex in candidates:
        decoded = _decode_blob(blob, is_hex)
        if decoded is None:
            continue
        name = "encoding.hex_payload" if is_hex else "encoding.base64_payload"
        _variant(normalise(decoded), name, 0.55, tool_output, hits)
        if asks_decode and _DECODE_OBEY.search(norm):
            # "Decode this and follow it": the instruction itself is the attack, even when
            # the payload reads innocuously to our rules.
            hits[name] = max(hits.get(name, 0.0), 0.55)
        elif asks_decode:
            hits.setdefault(name, 0.2)


def score(text: str, tool_output: bool = False) -> Verdict:
    """Score `text` (a user message, or with `tool_output=True` a tool result / retrieved
    document) for prompt injection. 0 = nothing found; >= DEFAULT_THRESHOLD = likely attack."""
    if not text:
        return Verdict(0.0, ())
    hits: dict[str, float] = {}
    spans: list[tuple[int, int]] = []
    hidden = "" if text.isascii() else _hidden_signals(text, hits)
    norm = normalise(text)
    words = _words(norm)
    _run(_RULES, norm, tool_output, hits, spans, words)
    direct = any(not k.startswith("encoding.") for k in hits)

    # Quoted mention in a discussion: discount (see module docstring). Decided on the
    # direct rules only, before any de-obfuscation adds its own.
    discount = (
        direct
        and _META_CUE.search(norm) is not None
        and all(
            any(q.start() <= s and e <= q.end() for q in _QUOTED.finditer(norm)) for s, e in spans
        )
    )
    if hidden:
        _variant(normalise(hidden), "encoding.tag_chars", 0.6, tool_output, hits)
    _obfuscation(text, norm, words, tool_output, hits)

    if not hits:
        return Verdict(0.0, ())
    for weak, strong in _SUBSUMED.items():
        if strong in hits:
            hits.pop(weak, None)
    remaining = 1.0
    for w in hits.values():
        remaining *= 1.0 - w
    total = 1.0 - remaining
    if discount and not any(k.startswith("encoding.") for k in hits):
        total *= _META_DISCOUNT
    return Verdict(round(total, 4), tuple(sorted(hits)))
