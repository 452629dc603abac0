"""Key facts: does an answer state what the answer key says? The judge-free primary.

A key fact is a short span of the source page ("30 minutes", "E102", "Admin > Team"),
or a list of accepted wordings of one fact. Text is compared as canonical tokens:

- case, Markdown emphasis, citation markers ([1]) and punctuation other than $ and %
  are ignored, and articles are dropped, so "Settings > Security" matches
  "settings → security";
- numbers are whole tokens: "5" never matches inside "15", "5,000" or "5.5";
  "5,000" is 5000, number words up to ninety are digits ("fifteen" is 15) and "an
  hour" is "1 hour";
- units have one spelling each ("min", "mins", "minutes" -> minute; "%", "percent";
  "$29", "29 dollars", "29 USD" -> 29 $), and plurals are folded, so "15-minute"
  and "15 min" match "15 minutes".

An answer is correct when it contains every key fact and states no conflicting value:
a number with the same unit as a key fact that is none of the key's values for that
unit (nor a value the question itself states): "15 minutes" where the key says
"30 minutes" fails, and so does a hedge ("15 or 30 minutes"). Key-fact recall, the
share of key facts found, is the continuous companion.

The same matching checks an answer key against the corpus (a fact must occur in a
chunk, and not in its question) and verifies unanswerable items (their probe terms
occur in no chunk that stays in the index).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

Fact = str | Sequence[str]  # one fact: a span, or its accepted wordings

_CITATION = re.compile(r"\[\d{1,2}\]")
_TOKEN = re.compile(r"\$|%|\d+(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|[a-z][a-z0-9]*")
_WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen twenty"
).split()
_NUMBER_WORDS = {w: str(i) for i, w in enumerate(_WORDS)} | {
    w: str(10 * i)
    for i, w in enumerate("thirty forty fifty sixty seventy eighty ninety".split(), start=3)
}
_UNITS = {
    "second": "second seconds sec secs",
    "minute": "minute minutes min mins",
    "hour": "hour hours hr hrs h",
    "day": "day days",
    "week": "week weeks",
    "month": "month months",
    "year": "year years yr yrs",
    "kb": "kb kilobyte kilobytes",
    "mb": "mb megabyte megabytes",
    "gb": "gb gigabyte gigabytes",
    "tb": "tb terabyte terabytes",
    "character": "character characters char chars",
    "%": "% percent",
    "$": "$ dollar dollars usd",
}
_UNIT = {spelling: unit for unit, words in _UNITS.items() for spelling in words.split()}
_ARTICLES = {"the", "a", "an"}
_JOINS = {"or", "and", "to"}  # "15 or 30 minutes": both are minutes


def _number(token: str) -> str:
    """A number's canonical spelling: no thousands separators, no trailing zeros."""
    value = Decimal(token.replace(",", ""))
    text = format(value.normalize(), "f")
    return text


def _is_number(token: str) -> bool:
    return token[0].isdigit()


def tokens(text: str) -> list[str]:
    """Canonical tokens of a text (see the module docstring)."""
    raw = _TOKEN.findall(_CITATION.sub(" ", text.lower()))
    out: list[str] = []
    for i, t in enumerate(raw):
        if t in _NUMBER_WORDS:
            t = _NUMBER_WORDS[t]
        if _is_number(t):
            out.append(_number(t))
            # "$29": the currency after its number, as "29 dollars" has it
            if i and raw[i - 1] == "$" and len(out) >= 2 and out[-2] == "$":
                out[-2], out[-1] = out[-1], "$"
            continue
        if t in ("a", "an") and i + 1 < len(raw) and _UNIT.get(raw[i + 1]) not in (None, "$"):
            out.append("1")  # "an hour" is "1 hour"
            continue
        if t in _ARTICLES:
            continue
        if t in _UNIT:
            out.append(_UNIT[t])
        elif len(t) > 3 and t.endswith("s") and not t.endswith("ss"):
            out.append(t[:-1])
        else:
            out.append(t)
    return out


# A numbered list's markers ("1. ", "2) ", "Step 3: ") at the start of a line.
_LIST_MARKER = re.compile(r"(?im)^\s*(?:step\s+)?\d{1,2}[.):]\s")


def figures(text: str) -> set[str]:
    """The numbers and codes a text states in digits ("15", "99.9", "e102"), numbers in
    canonical form, list markers and citations left out: what an answer claims."""
    raw = _TOKEN.findall(_CITATION.sub(" ", _LIST_MARKER.sub(" ", text).lower()))
    return {_number(t) if _is_number(t) else t for t in raw if any(c.isdigit() for c in t)}


def known_figures(text: str | Sequence[str]) -> set[str]:
    """The numbers and codes a source states, number words included ("thirty" is 30):
    what an answer's figures may come from."""
    toks = tokens(text) if isinstance(text, str) else text
    return {t for t in toks if any(c.isdigit() for c in t)}


def _contains(haystack: Sequence[str], needle: Sequence[str]) -> bool:
    n = len(needle)
    if not n:
        return False
    return any(haystack[i : i + n] == needle for i in range(len(haystack) - n + 1))


def wordings(fact: Fact) -> list[str]:
    """A fact's accepted wordings, the first as the key spells it."""
    return [fact] if isinstance(fact, str) else list(fact)


def mentions(text: str | Sequence[str], fact: Fact) -> bool:
    """Does the text (or its tokens) state the fact in any accepted wording, on whole words?"""
    have = tokens(text) if isinstance(text, str) else text
    return any(_contains(have, tokens(w)) for w in wordings(fact))


def quantities(toks: Sequence[str]) -> set[tuple[str, str]]:
    """(number, unit) pairs: a number followed by a unit, directly or after one word
    ("5 business days"); in "15 or 30 minutes" both numbers take the unit."""
    unit: dict[int, str] = {}
    for i in range(len(toks) - 1, -1, -1):
        if not _is_number(toks[i]):
            continue
        nxt = toks[i + 1 : i + 3]
        if nxt and nxt[0] in _UNITS:
            unit[i] = nxt[0]
        elif len(nxt) == 2 and nxt[0] in _JOINS and i + 2 in unit:
            unit[i] = unit[i + 2]
        elif len(nxt) == 2 and not _is_number(nxt[0]) and nxt[1] in _UNITS:
            unit[i] = nxt[1]
    return {(toks[i], u) for i, u in unit.items()}


@dataclass(frozen=True)
class FactCheck:
    """One answer against its key facts."""

    found: list[bool]
    conflicts: list[str] = field(default_factory=list)  # e.g. "15 minute"

    @property
    def correct(self) -> bool:
        return bool(self.found) and all(self.found) and not self.conflicts

    @property
    def recall(self) -> float:
        return sum(self.found) / len(self.found) if self.found else 0.0


def check(answer: str, facts: Iterable[Fact], question: str = "") -> FactCheck:
    """Which key facts the answer states, and which values it gives that conflict."""
    facts = list(facts)
    have = tokens(answer)
    key: dict[str, set[str]] = {}
    for f in facts:
        for w in wordings(f):
            for number, unit in quantities(tokens(w)):
                key.setdefault(unit, set()).add(number)
    asked = quantities(tokens(question))
    conflicts = sorted(
        f"{number} {unit}"
        for number, unit in quantities(have)
        if unit in key and number not in key[unit] and (number, unit) not in asked
    )
    return FactCheck([mentions(have, f) for f in facts], conflicts)
