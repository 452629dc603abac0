"""The refusal classifier (grounding.is_refusal) against labelled answers.

Two sets, both labelled by reading:
- tests/data/refusal_labels.jsonl: 112 real answers of the quickstart's `base+rag` and
  `ft+rag` (SmolLM2-135M, 2026-12-03): every answer to the 36 unanswerable questions and
  40 sampled answerable ones. These small models almost never refuse (1 of 112).
- WORDINGS below: refusals as other systems word them, and answers that use the same
  words without refusing (the false positives the old regex had).
"""

from __future__ import annotations

import json
from pathlib import Path

from distill.grounding import is_refusal

DATA = Path(__file__).parent / "data" / "refusal_labels.jsonl"

WORDINGS = [
    ("The documents provided do not contain the answer to this question.", True),
    ("The context doesn't mention webhook retries.", True),
    ("I cannot find that in the documents.", True),
    ("I'm sorry, the provided documents don't mention oil changes.", True),
    ("There is no information about that in the documents.", True),
    ("This information is not available in the provided documents.", True),
    ("I'm sorry, that isn't covered here.", True),
    ("The answer is not mentioned in the documents.", True),
    ("I don't know.", True),
    ("The question cannot be answered from the given documents.", True),
    ("Sorry, I could not find any details on that.", True),
    ("The passages do not say whether Brightdesk supports Salesforce.", True),
    ("None of the documents address pausing a subscription; I can't answer that.", True),
    ("That is not covered in the help centre articles I was given.", True),
    ("I was unable to find anything about IMAP in these documents.", True),
    ("The provided context does not specify a phone number.", True),
    ("There's no mention of a community forum in the sources.", True),
    ("Unfortunately the documentation doesn't say; please contact support.", True),
    ("The documents don't include a section on GraphQL.", True),
    ("No information on OAuth is given in the documents provided.", True),
    ("I do not have that information.", True),
    ("It cannot be determined from the documents.", True),
    ("The text does not state the IP addresses webhooks come from.", True),
    ("None of these documents answers this question.", True),
    ("The answer is not in the given documents.", True),
    ("This isn't in the documents I was given.", True),
    ("Webhooks retry 5 times [2].", False),
    ("Not all plans include SSO; Team does [1].", False),
    ("If you cannot find the invite email, check spam [1].", False),
    ("The Starter plan does not include SSO [2].", False),
    ("This plan does not include SSO.", False),
    ("The provided context says the Starter plan does not include SSO.", False),
    ("That is not available on the Starter plan.", False),
    ("Free trials last 14 days and need no credit card [1].", False),
    ("API tokens are not affected by a password reset [1].", False),
    ("Attachments that are not scanned cannot be opened.", False),
    ("You can't change the subdomain after 30 days.", False),
    ("Exports do not include deleted tickets older than 30 days [3].", False),
    ("Brightdesk does not support SMS codes for two-factor.", False),
    ("No, there is no limit on how many people you can invite.", False),
    ("The document contains information about the Team plan.", False),
    ("None of the pages need a restart after the change [2].", False),
    ("The setting is not in the Starter plan.", False),
    ("It is in the documents: webhooks retry 5 times [2].", False),
]


def scores(labelled: list[tuple[str, bool]]) -> tuple[int, int, int, int]:
    tp = sum(is_refusal(a) and y for a, y in labelled)
    fp = sum(is_refusal(a) and not y for a, y in labelled)
    fn = sum(not is_refusal(a) and y for a, y in labelled)
    return tp, fp, fn, len(labelled)


def test_real_answers_are_classified_as_labelled() -> None:
    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines()]
    assert len(rows) >= 100 and {r["system"] for r in rows} == {"base+rag", "ft+rag"}
    tp, fp, fn, n = scores([(r["answer"], r["refusal"]) for r in rows])
    assert (tp, fp, fn) == (1, 0, 0)  # precision and recall 1 on 112, one refusal among them


def test_wordings_precision_and_recall() -> None:
    """Measured: precision 26/26 = 1.0 and recall 26/26 = 1.0 over 44 wordings."""
    tp, fp, fn, n = scores(WORDINGS)
    assert n >= 35
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    assert precision >= 0.95 and recall >= 0.9, (tp, fp, fn)


def test_the_quote_then_answer_style_splits_into_its_quotes_and_its_answer() -> None:
    from distill.grounding import final_answer, quotes, verbatim

    text = 'Quote: "Reset links are valid for 30 minutes." [1]\nAnswer: 30 minutes [1].'
    assert quotes(text) == ["Reset links are valid for 30 minutes."]
    assert final_answer(text) == "30 minutes [1]."
    plain = "Reset links last 30 minutes [1]."
    assert quotes(plain) == [] and final_answer(plain) == plain
    assert verbatim(
        "reset links are  valid for 30 minutes.",
        "The **Reset links are valid for 30 minutes.** Request another.",
    )
    assert not verbatim(
        "Reset links are valid for 3 minutes.", "Reset links are valid for 30 minutes."
    )
    assert not verbatim("", "anything")
