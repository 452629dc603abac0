"""An answer key checked against the corpus, and the seeded spread over documents."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from distill.errors import InputError
from distill.evaluate.answer_key import load_answer_key
from distill.split import spread
from distill.tables import Chunk

REPO = Path(__file__).resolve().parents[2]


def chunk(doc: str, n: int, text: str) -> Chunk:
    return Chunk(
        chunk_id=f"{doc}#{n}",
        doc_id=doc,
        source=doc,
        title=doc,
        heading_path=doc,
        text=text,
        n_tokens=len(text.split()),
        position=n,
    )


CHUNKS = [
    chunk("account/password", 0, "The reset link is valid for **30 minutes**."),
    chunk("account/password", 1, "After 5 failed sign-ins the account is locked (E102)."),
    chunk("billing/plans", 0, "Starter costs $12 and Team costs $29 per user per month."),
]


def key_file(tmp_path: Path, records: list[Any]) -> Path:
    path = tmp_path / "key.jsonl"
    path.write_text(
        "\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n",
        encoding="utf-8",
    )
    return path


def test_items_are_checked_against_the_corpus(tmp_path: Path) -> None:
    path = key_file(
        tmp_path,
        [
            {"question": "How long is a reset link good for?", "key_facts": ["30 minutes"]},
            {"question": "What does Team cost?", "key_facts": ["$29"], "doc": "billing/plans"},
            {"question": "Which code shows a lock?", "key_facts": ["E102"], "reference": "E102."},
            {"question": "Is SSO on Team?", "key_facts": []},
            {"question": "How long is a reset link good for?", "key_facts": ["30 minutes"]},
            {"question": "Is the link valid 30 minutes?", "key_facts": ["30 minutes"]},
            {"question": "What does Enterprise cost?", "key_facts": ["$99"]},
            {"question": "How much is Starter?", "key_facts": ["$12"], "doc": "billing/nope"},
            {"question": "Does it work with Salesforce?", "answerable": False, "absent": ["x1"]},
            {"question": "Can I buy Starter?", "answerable": False, "absent": ["Starter"]},
            {"question": "Is there a phone line?", "answerable": False},
            {"question": "What about the lock?", "reference": "It locks."},
        ],
    )
    key = load_answer_key(path, CHUNKS)
    kept = {it.question: it for it in key.items}
    assert list(kept) == [
        "How long is a reset link good for?",
        "What does Team cost?",
        "Which code shows a lock?",
        "Does it work with Salesforce?",
    ]
    reset = kept["How long is a reset link good for?"]
    # The document is the first with a chunk stating every fact; its stating chunks kept.
    assert (reset.doc_id, reset.chunk_ids, reset.reference) == (
        "account/password",
        ["account/password#0"],
        "30 minutes",
    )
    assert reset.item_id == "key-1"
    assert kept["Which code shows a lock?"].reference == "E102."
    assert not kept["Does it work with Salesforce?"].answerable
    assert key.skipped == {
        "empty key_facts": 1,
        "duplicate question": 1,
        "a key fact is stated in its question": 1,
        "a key fact is in no chunk of its document": 1,
        "its doc is not in the corpus": 1,
        "unanswerable, but the index mentions one of its 'absent' terms": 1,
        "unanswerable without 'absent' terms to verify it by": 1,
        "no key_facts (a reference alone cannot be scored without a judge)": 1,
    }
    assert key.examples[0] == "key.jsonl line 4: empty key_facts"


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("{not json", "key.jsonl line 2: not JSON"),
        ('["a list"]', 'key.jsonl line 2: expected an object with a "question" string'),
        ('{"question": "Q?", "key_facts": "30 minutes"}', "key.jsonl line 2: key_facts must be"),
        ('{"question": "Q?", "key_facts": [["a", 5]]}', "key.jsonl line 2: key_facts must be"),
        ('{"question": "Q?", "answerable": "no"}', "'answerable' must be true or false"),
        ('{"question": "Q?", "answerable": false, "absent": "x"}', "'absent' must be a list"),
    ],
)
def test_a_malformed_line_is_a_one_line_error_naming_it(
    tmp_path: Path, line: str, says: str
) -> None:
    path = key_file(tmp_path, [{"question": "Fine?", "key_facts": ["30 minutes"]}, line])
    with pytest.raises(InputError) as e:
        load_answer_key(path, CHUNKS)
    assert says in str(e.value) and "\n" not in str(e.value)


def test_a_missing_key_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="eval.answer_key: no file"):
        load_answer_key(tmp_path / "none.jsonl", CHUNKS)


def test_spread_is_seeded_and_takes_every_document_before_a_second_question() -> None:
    rows = [(doc, i) for doc in "abcde" for i in range(6)]  # in corpus order
    picked = spread(rows, 10, seed=0, doc=lambda r: r[0])
    assert len(picked) == 10 and picked == sorted(picked)  # original order kept
    per_doc = {d: sum(r[0] == d for r in picked) for d in "abcde"}
    assert per_doc == dict.fromkeys("abcde", 2)  # a corpus-order cut would take a and b only
    assert spread(rows, 10, seed=0, doc=lambda r: r[0]) == picked
    assert spread(rows, 10, seed=1, doc=lambda r: r[0]) != picked
    assert spread(rows, None, seed=0, doc=lambda r: r[0]) == rows
    few = spread(rows, 3, seed=0, doc=lambda r: r[0])
    assert len({r[0] for r in few}) == 3


def test_the_shipped_brightdesk_key_is_kept_whole() -> None:
    """Every line of examples/brightdesk/answer_key.jsonl passes the checks against the
    Brightdesk pages (chunked here as whole pages: a fact must be on its page)."""
    from distill.ingest.readers import read_document

    docs = REPO / "examples" / "brightdesk" / "docs"
    chunks = []
    for path in sorted(p for p in docs.rglob("*") if p.is_file()):
        d = read_document(path, docs, REPO)
        chunks.append(chunk(d["doc_id"].rsplit(".", 1)[0], 0, d["text"]))
    key = load_answer_key(REPO / "examples" / "brightdesk" / "answer_key.jsonl", chunks)
    assert key.skipped == {}
    answerable = [it for it in key.items if it.answerable]
    assert len(answerable) >= 120 and len(key.items) - len(answerable) >= 25
    held = {"account/resetting-your-password", "admin/support-and-sla", "billing/refund-policy"}
    held |= {"getting-started/quickstart", "integrations/slack"}  # the seed-0 split's
    assert sum(it.doc_id in held for it in answerable) >= 30
