"""The split by document: seeded, stable, and one document on each side."""

from __future__ import annotations

from pathlib import Path

import pytest

from distill.errors import InputError
from distill.split import Split, split_documents, unit


def test_the_fraction_is_met_on_average_and_the_split_is_order_independent() -> None:
    docs = [f"doc{i}" for i in range(2000)]
    held = split_documents(docs, 0.2, seed=0)
    assert 0.17 < len(held) / len(docs) < 0.23  # binomial: sd 0.009
    assert split_documents(list(reversed(docs)), 0.2, seed=0) == held
    assert split_documents(docs, 0.2, seed=1) != held
    assert all(0 <= unit(0, d) < 1 for d in docs[:50])


def test_adding_unrelated_documents_moves_no_document() -> None:
    docs = [f"guide/{i}.md" for i in range(40)]
    before = split_documents(docs, 0.25, seed=7)
    after = split_documents(docs + [f"new/{i}.md" for i in range(60)], 0.25, seed=7)
    assert before == after & set(docs)  # every old document keeps its side


def test_each_side_keeps_a_document() -> None:
    assert len(split_documents(["a", "b"], 0.99, seed=0)) == 1
    assert len(split_documents(["a", "b", "c"], 0.0001, seed=0)) == 1
    assert split_documents(["only"], 0.5, seed=0) == set()


def test_a_split_round_trips_and_a_missing_one_says_what_to_run(tmp_path: Path) -> None:
    split = Split.choose([f"d{i}" for i in range(10)], 0.3, 0)
    split.save(tmp_path / "split.json", 0.3, 0)
    back = Split.load(tmp_path / "split.json")
    assert back.eval_docs == split.eval_docs and back.train_docs == split.train_docs
    assert back.side("never-seen") == "train"  # a new document is never an eval item
    with pytest.raises(InputError, match="rerun `distill generate RECIPE`"):
        Split.load(tmp_path / "nope" / "split.json")
