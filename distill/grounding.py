"""The answer rules every stage shares: how the context is numbered into a prompt, how
an answer cites it, what counts as a refusal, how a reply is cleaned and where it
stops, and how well its words are supported by what it cites.

Generate writes answers by these rules, curate checks them, evaluate scores the
systems' answers with them; none of those stages imports another for them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from distill.keyfacts import mentions
from distill.prompts import Template, fence

# The tasks whose request is a question (decontamination compares those).
QUESTION_TASKS = ("qa", "multi_hop", "raft", "multi_turn")
# Where an answer ends: a small model goes on to ask itself the next question.
ANSWER_STOP = ["\nQuestion:", "\nQ:"]

_CITATION = re.compile(r"\[(\d{1,2})\]")
# A refusal says the material lacks the answer. The phrase must be about the
# material (documents, context, information, "that", "this") or the speaker
# ("I cannot find/answer", "I don't know"), so "The Starter plan does not include SSO"
# or "If you cannot find the invite email" are answers, not refusals. Validated on
# labelled answers of several systems and wordings: tests/test_grounding.py.
_MATERIAL = (
    r"(documents?|documentation|docs|passages?|context|sources?|texts?|information|materials?|"
    r"excerpts?|help cent(er|re)|articles?|pages?)"
)
_NEG = r"(do(es)?n[o']?t|do(es)? not|did not|didn't)"
_VERB = r"(contain|include|mention|say|state|provide|cover|specify|address|discuss|give)"
_SAID = r"(mentioned|covered|specified|stated|described|addressed|discussed)"
_REFUSAL = re.compile(
    rf"\b{_MATERIAL}\b[^.;:!?]{{0,15}}?\b{_NEG} (seem to |appear to )?{_VERB}"
    rf"|\b({_MATERIAL}|it|that|this|the answer) (is|are|was|were|isn't|aren't)( not|n't)? "
    rf"(not )?{_SAID}\b"
    rf"|\bnot ({_SAID[1:-1]}|available|found|included|provided|given|listed|present) "
    r"(in|by|within|anywhere in) (the |these |this |any |your )?(provided |given |available )?"
    rf"{_MATERIAL}"
    rf"|\bnone of (the|these|those) (provided |given |available )?{_MATERIAL}\b[^.;:!?]{{0,10}}?"
    r"\b(answers?|mentions?|says?|states?|covers?|contains?|includes?|address(es)?|"
    r"discuss(es)?|specif(y|ies)|provides?|gives?)\b"
    r"|\b(the answer|it|this|that) (is not|was not|isn't|wasn't) (found |present |included )?"
    rf"in (the|these|those|any|your) (provided |given |available )?{_MATERIAL}\b"
    r"|\b(there is|there's|i (have|found)|i see) no (information|mention|details?|data|"
    r"answer|reference)\b"
    r"|\bno (information|mention|details?) (about|on|of|regarding)\b"
    r"|\bi (cannot|can't|can not|am unable to|'m unable to|was unable to|could not|"
    r"couldn't) (find|answer|determine|tell|provide|locate|see)\b"
    r"|\b(cannot|can't|unable to) (be )?(answer(ed)?|determined?)\b"
    r"|\bi (do not|don't) (know|have (that|this|enough|the) information)\b",
    re.I,
)
_CITE = re.compile(r"\[\d{1,2}\]")


def numbered(chunks: Sequence[Mapping[str, Any]]) -> list[str]:
    """Chunks as numbered, fenced documents: the context of every answer prompt."""
    return [fence(str(n), c["text"], c["heading_path"]) for n, c in enumerate(chunks, start=1)]


def answer_prompt(
    template: Template, question: str, hits: Sequence[Mapping[str, Any]]
) -> list[dict[str, str]]:
    """The student's prompt, as eval asks it and `distill serve` sends it: the answer
    template with the retrieved chunks `hits` as numbered documents ([]: no retrieval)."""
    return template.render(passages=numbered(hits), question=question)


def citations(text: str) -> list[int]:
    """The document numbers an answer cites ([1], [2]), in order, without repeats."""
    return list(dict.fromkeys(int(m) for m in _CITATION.findall(text)))


# The quote-then-answer style (grounded_answer_quote@v1, RAFT's targets): "Quote:" lines
# that copy the supporting sentences word for word, then "Answer:" and the answer.
_QUOTE = re.compile(r"^\s*quote\s*:\s*(.+)$", re.I | re.M)
_FINAL = re.compile(r"^\s*answer\s*:\s*", re.I | re.M)


def quotes(text: str) -> list[str]:
    """The spans a quote-style answer quotes (its citations and quote marks stripped);
    [] for any other answer."""
    out = []
    for q in _QUOTE.findall(text):
        span = _CITE.sub(" ", q).strip().strip("\"“”'").strip()
        if span:
            out.append(span)
    return out


# A sentence ends at . ! or ? followed by space and what starts a sentence.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"“(*`])")
_BULLET = re.compile(r"^(?:[-*+]\s+|\d{1,2}[.)]\s+|#{1,6}\s+)")
_HEADING = re.compile(r"^#{1,6}\s+")
_FENCE = "```"
# Columns aligned with runs of spaces: a configuration or code line outside a fence.
_ALIGNED = re.compile(r"\S {3,}\S")
# A quote must say something on its own: at least this many words, and not a lead-in
# to a list (ending in ":"). A code line, a heading or a wrapped line's tail is not one.
MIN_QUOTE_WORDS = 4


def _units(text: str) -> list[tuple[str, bool]]:
    """The text's lines grouped as Markdown reads them, each with whether it is prose:
    a paragraph's wrapped lines are one unit (HTML manuals wrap mid-sentence), a list
    item with its continuation lines is one, a heading or a table row is one line, and
    each line of a fenced code block, and each heading, is a unit that is not prose."""
    units: list[tuple[str, bool]] = []
    open_unit = False  # may the next plain line continue the last unit?
    in_code = False
    for raw in text.splitlines():
        line = raw.strip()
        if in_code or (line.startswith(_FENCE) and not open_unit):
            if line.startswith(_FENCE) and line.count(_FENCE) % 2:
                in_code = not in_code
            elif line and not line.startswith(_FENCE):
                units.append((line, False))
            open_unit = False
            continue
        if not line:
            open_unit = False
        elif _HEADING.match(line) or line.startswith("|"):
            # A heading names a topic rather than stating a fact (and "# ..." is as
            # often a comment line of a code block cut by the chunker).
            units.append((_BULLET.sub("", line).strip(), not _HEADING.match(line)))
            open_unit = False
        elif _BULLET.match(line) or not open_unit:
            units.append((_BULLET.sub("", line).strip(), not _ALIGNED.search(line)))
            open_unit = True
        else:
            units[-1] = (f"{units[-1][0]} {line}", units[-1][1] and not _ALIGNED.search(line))
    return units


def sentences(text: str, prose_only: bool = False) -> list[str]:
    """A chunk's sentences: its paragraphs and list items (wrapped lines joined with a
    space), table rows, headings and code lines, split at sentence ends, bullets and
    heading marks stripped; each a span of the text up to spacing (`verbatim`).
    prose_only: without code lines and headings, and without the chunk's first or last
    sentence where the chunker cut it (starting in lower case, ending unpunctuated)."""
    out: list[tuple[str, bool]] = []
    for unit, prose in _units(text):
        out.extend((s.strip(), prose) for s in _SENTENCE_END.split(unit) if s.strip())
    if not prose_only:
        return [s for s, _ in out]
    if out and out[0][0][:1].islower():
        out[0] = (out[0][0], False)
    if out and out[-1][0][-1:] not in ".!?|)":
        out[-1] = (out[-1][0], False)
    return [s for s, prose in out if prose]


def quotable(sentence: str) -> bool:
    """Can this sentence stand alone as a target? Not a fragment (fewer than
    MIN_QUOTE_WORDS words) and not a lead-in to what follows (ending in ":")."""
    words = re.findall(r"\w+", sentence)
    return len(words) >= MIN_QUOTE_WORDS and not sentence.rstrip().endswith(":")


def quote_sentence(text: str, facts: list[str]) -> str | None:
    """The shortest sentence of `text` that states every fact (distill.keyfacts
    matching) and can stand alone (`quotable`, not a code line): the target of an
    extractive pair and the quote of a RAFT-style one; None when no such sentence."""
    found = [
        s
        for s in sentences(text, prose_only=True)
        if quotable(s) and all(mentions(s, f) for f in facts)
    ]
    return min(found, key=len) if found else None


def final_answer(text: str) -> str:
    """What a quote-style answer answers: the text after its last "Answer:" (the quotes
    are its reasoning); any other answer as it is. Eval scores this part only."""
    found = list(_FINAL.finditer(text))
    return text[found[-1].end() :].strip() if found else text


def verbatim(span: str, context: str) -> bool:
    """Is `span` a word-for-word span of `context` (case, spacing and Markdown
    emphasis aside)? How a quote is checked at curation."""

    def norm(t: str) -> str:
        return " ".join(re.sub(r"[*_`]", "", t).lower().split())

    return bool(norm(span)) and norm(span) in norm(context)


def is_refusal(text: str) -> bool:
    """Does the answer say the documents do not contain the answer?"""
    return bool(_REFUSAL.search(text))


def clean_answer(text: str) -> str:
    return re.sub(r"^(answer|a)\s*:\s*", "", text.strip(), flags=re.I).strip()


_STOP = set(
    "the a an and or of to in on for with is are was be by as at it this that from can you "
    "your not but if then than there their they them its into about which what when where "
    "how who will would should could may might have has had does did done also any all".split()
)


def content_words(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z0-9$%]+", text.lower()) if len(w) > 2 and w not in _STOP]


def support_score(sample: dict[str, Any], chunk_text: dict[str, str]) -> float | None:
    """Share of the answers' content words found in the documents they cite (all of the
    context when they cite none): a cheap groundedness signal that needs no model.
    None for a refusal target (nothing to support)."""
    if sample.get("expects_refusal"):
        return None
    answers = [m["content"] for m in sample["messages"] if m["role"] == "assistant"]
    words = [w for x in answers for w in content_words(_CITE.sub(" ", x))]
    if not words:
        return 1.0
    ids = sample.get("cited_chunk_ids") or sample.get("chunk_ids") or []
    source = set(content_words(" ".join(chunk_text.get(i, "") for i in ids)))
    return sum(w in source for w in words) / len(words)
