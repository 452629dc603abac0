"""Typed rows: one definition per row kind, its Arrow schema derived from it,
so writers cannot add a column the readers do not know and a column's type does not
depend on the values a run produced."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distill import tables
from distill.tables import Answer, Chunk, CuratedSample, Failure


def chunk(i: int) -> Chunk:
    return Chunk(
        chunk_id=f"a#{i}", doc_id="a", source="a.md", title="A", heading_path="A", text="x",
        n_tokens=1, position=i,
    )  # fmt: skip


def test_the_schema_follows_the_definition() -> None:
    s = tables.schema(CuratedSample)
    assert s.field("messages").type == pa.list_(
        pa.struct([("role", pa.string()), ("content", pa.string())])
    )
    assert s.field("citations").type == pa.list_(pa.int64())
    assert s.field("cost_usd").type == pa.float64() and s.field("support").type == pa.float64()
    assert s.names[:2] == ["sample_id", "task"] and "reject_reason" in s.names


def test_round_trip_and_an_unknown_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "chunks.parquet"
    tables.write(path, [chunk(0), chunk(1)], Chunk)
    assert tables.read(path, Chunk) == [chunk(0), chunk(1)]
    with pytest.raises(ValueError, match=r"columns not in Chunk: \['chunk_text'\]"):
        tables.write(path, [{**chunk(0), "chunk_text": "renamed"}], Chunk)


def test_an_empty_table_keeps_its_columns_and_none_keeps_its_type(tmp_path: Path) -> None:
    empty = tmp_path / "failures.parquet"
    tables.write(empty, [], Failure)
    assert pq.read_schema(empty).names == list(Failure.__annotations__)
    answers = tmp_path / "answers.parquet"
    row = dict.fromkeys(Answer.__annotations__)  # a run where no answer was graded
    row.update(item_id="q1", retrieved_chunk_ids=[], source_chunk_ids=[], cited=[])
    row["cited_chunk_ids"] = []
    tables.write(answers, [row], Answer)
    types = pq.read_schema(answers)
    assert types.field("correctness").type == pa.int64()  # not the null type
    assert types.field("vs_teacher").type == pa.string()


def test_optional_columns_no_row_has_are_left_out(tmp_path: Path) -> None:
    path = tmp_path / "train.parquet"
    sample = {k: None for k in tables.schema(CuratedSample).names if k not in ("reject_reason",)}
    tables.write(path, [sample], CuratedSample)
    assert "reject_reason" not in pq.read_schema(path).names
