from __future__ import annotations

from pathlib import Path

import pytest

from distill.io import atomic_dir, atomic_path, hash_tree, read_rows, write_rows, write_text


def test_atomic_path_keeps_old_file_when_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half of the new")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_path_replaces_on_success(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.txt"
    write_text(target, "one")
    write_text(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["out.txt"]


def test_atomic_dir_swaps_whole_folder_or_nothing(tmp_path: Path) -> None:
    target = tmp_path / "adapter"
    with atomic_dir(target) as tmp:
        (tmp / "a.bin").write_bytes(b"1")
    with pytest.raises(ValueError), atomic_dir(target) as tmp:
        (tmp / "b.bin").write_bytes(b"2")
        raise ValueError
    assert sorted(p.name for p in target.iterdir()) == ["a.bin"]
    with atomic_dir(target) as tmp:
        (tmp / "c.bin").write_bytes(b"3")
    assert sorted(p.name for p in target.iterdir()) == ["c.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]


def test_rows_round_trip_with_nested_columns(tmp_path: Path) -> None:
    rows = [{"id": "a", "messages": [{"role": "user", "content": "hi"}], "ids": ["x", "y"]}]
    write_rows(tmp_path / "t.parquet", rows)
    assert read_rows(tmp_path / "t.parquet") == rows


def test_hash_tree_sees_content_but_not_reports(tmp_path: Path) -> None:
    (tmp_path / "data.txt").write_text("a")
    h1 = hash_tree(tmp_path)
    (tmp_path / "report.md").write_text("timings differ every run")
    assert hash_tree(tmp_path) == h1
    (tmp_path / "data.txt").write_text("b")
    assert hash_tree(tmp_path) != h1
