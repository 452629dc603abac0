"""The per-sample checks and the text helpers the filters share: a sample's own words,
their normal form and n-grams, and how much of an answer repeats itself."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from distill.curate.config import CurateConfig
from distill.grounding import (
    QUESTION_TASKS,
    citations,
    content_words,
    final_answer,
    is_refusal,
    quotes,
    verbatim,
)
from distill.keyfacts import figures, known_figures, mentions, tokens
from distill.prompts import has_control

_CITATIONS = re.compile(r"\[\d{1,2}\]")
_TAG = re.compile(r"<[^>]*>")


def normalise(text: str) -> str:
    """Lower case, punctuation and extra spaces removed: the key for exact dedup."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


# "What does the document say..." cannot be asked by a user who never saw the document.
_REFERS_TO_CONTEXT = re.compile(
    r"\b(the|this|that|above|given|provided) (document|passage|text|help page|context|article)\b",
    re.I,
)


def repetition(text: str) -> float:
    """Share of word 4-grams that repeat an earlier one (0 = none, near 1 = a loop)."""
    words = text.lower().split()
    grams = [tuple(words[i : i + 4]) for i in range(len(words) - 3)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def check(sample: dict[str, Any], cfg: CurateConfig, count_tokens: Callable[[str], int]) -> str:
    """The reason to reject a sample, or '' to keep it."""
    q, a = sample.get("question") or "", sample.get("answer") or ""
    answers = [m["content"] for m in sample.get("messages") or [] if m["role"] == "assistant"]
    answers = answers or [a]
    if not q.strip() or not all(x.strip() for x in answers):
        return "unparseable: empty request or answer"
    if "\n" in q.strip():
        return "unparseable: request spans several lines"
    asks_question = sample.get("task", "qa") in QUESTION_TASKS
    if asks_question and cfg.require_question_mark and not q.strip().endswith("?"):
        return "not a question (no question mark)"
    if _REFERS_TO_CONTEXT.search(q):
        return "request refers to the context instead of standing alone"
    if len(q.strip()) < cfg.min_question_chars:
        return f"request shorter than {cfg.min_question_chars} characters"
    if any(len(x.strip()) < cfg.min_answer_chars for x in answers):
        return f"answer shorter than {cfg.min_answer_chars} characters"
    if sample.get("answer_truncated"):
        return "answer cut off at the teacher's token limit"
    if any(count_tokens(x) > cfg.max_answer_tokens for x in answers):
        return f"answer longer than {cfg.max_answer_tokens} tokens"
    # A quote-style answer may restate its (verified, verbatim) quote: only the answer
    # part can loop.
    if any(repetition(final_answer(x)) > cfg.max_repetition for x in answers):
        return f"repetitive answer (over {cfg.max_repetition:.0%} repeated 4-grams)"
    if sample.get("expects_refusal"):
        if not is_refusal(a):
            return "answers although its context lacks the answer"
        return ""
    if any(is_refusal(x) for x in answers):
        return "refuses although its context holds the answer"
    if any(has_control(m["content"]) for m in sample.get("messages") or []):
        return "spells a chat control token of the student"
    n_context = len(sample.get("chunk_ids") or [])
    cited = [n for x in answers for n in citations(x)]
    if any(not 1 <= n <= n_context for n in cited):
        return "cites a document that is not in its context"
    if cfg.require_citations and not cited:
        return "cites no document"
    if any(not re.search(r"\w\w|\d", _CITATIONS.sub("", final_answer(x))) for x in answers):
        return "answer is nothing but citation markers"
    messages = sample.get("messages") or []
    stated = " ".join(m["content"] for m in messages if m["role"] != "assistant") or q
    for x in answers:
        said = quotes(x)
        if said and final_answer(x) == x:
            return "quotes but gives no answer"
        if any(not verbatim(span, stated) for span in said):
            return "quote is not a verbatim span of its context"
    if _off_question(q, answers[0]):
        return "answer shares no word with its question"
    if cfg.grounded_numbers:
        # The document tags' ids and titles are the prompt's, not the documents' words.
        known = known_figures(_TAG.sub(" ", stated))
        if any(figures(x) - known for x in answers):
            return "answer states a number its context does not"
    return ""


def key_fact_problem(sample: dict[str, Any], chunk_text: dict[str, str]) -> str:
    """For a sample whose teacher named its key facts (a keyed pairs template): the
    reason its facts do not check out, or ''. Each fact must be a span of the source
    chunk (the same matching as the answer key), and the answer (its `Answer:` part in
    the quote style) must state every one the question does not; a question that states
    them all asks nothing. A refusal target (its context lacks the source chunk) is held
    to the same question, with no answer to check. Samples without key facts pass."""
    facts = sample.get("key_facts")
    if facts is None:
        return ""
    facts = [f for f in facts if f.strip()]
    if not facts:
        return "key facts: none given"
    if any(len(f.split()) > 8 or not tokens(f) for f in facts):
        return "key facts: one is not a short span"
    source = chunk_text.get(sample.get("source_chunk_id") or "")
    if source is None:
        return "key facts: its source chunk is not in the index"
    have = tokens(source)
    if not all(mentions(have, f) for f in facts):
        return "key facts: one is not in its source chunk"
    # A fact the question already states ("Requests per minute") is its topic, not
    # what the answer must add: left out, unless that leaves none.
    facts = [f for f in facts if not mentions(sample["question"], f)]
    if not facts:
        return "key facts: every one is in the question"
    if sample.get("expects_refusal"):
        return ""
    if not all(mentions(final_answer(sample["answer"]), f) for f in facts):
        return "key facts: the answer does not state them"
    return ""


def _off_question(question: str, answer: str) -> bool:
    """An answer of five or more content words that shares none with its question (by
    their first five letters: 'cancel' meets 'cancelled'): written for another
    question, as a small teacher's batch of pairs can be. A short answer ("14 days")
    need not repeat its question."""
    said = {w[:5] for w in content_words(answer)}
    return len(said) >= 5 and not said & {w[:5] for w in content_words(question)}


def dialogue(sample: dict[str, Any]) -> str:
    """The sample's own words: the request, every answer and later turn (not the context
    documents, which many samples share)."""
    later = [m["content"] for m in (sample.get("messages") or [])[2:]]
    return "\n".join([sample["question"], *(later or [sample["answer"]])])


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = normalise(text).split()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}
