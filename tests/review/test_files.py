"""The spot-check as a file (`review.mode: file`): what export writes, the round trip
through a filled copy (JSONL and CSV; accept, reject, edit), and the training gate
closed until the import covers what it asks, then open (no Argilla server)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from distill.errors import UserError
from distill.io import read_json, read_rows
from distill.pipeline import Stage, check_gate, run_pipeline
from distill.recipe import Recipe
from distill.review import stage as review
from distill.review.answers import import_file
from distill.review.files import COLUMNS, export
from distill.review_gate import GateClosed, review_stats, summary, training_rows
from distill.runfolder import RunFolder, RunOptions
from tests.review.conftest import FileRun, sample


def read_export(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def write_filled(path: Path, rows: list[dict[str, Any]]) -> Path:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    else:
        with path.open("w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return path


def test_export_is_the_spot_check_argilla_would_get(file_run: FileRun) -> None:
    recipe = file_run.recipe()
    got = export(recipe, file_run.folder, "jsonl", None, "recipe.yaml")
    assert got["path"] == file_run.folder.review_file_dir / "spot_check.jsonl"
    assert (got["records"], got["sample"], got["low_score"]) == (7, 6, 1)
    rows = read_export(got["path"])
    entries, by_id = review.picked(recipe, file_run.folder)
    assert [(r["sample_id"], r["content_sha"], r["reason"]) for r in rows] == [
        (e["sample_id"], e["content_sha"], e["reason"]) for e in entries
    ]
    assert list(rows[0]) == list(COLUMNS)
    first = rows[0]
    s = by_id[first["sample_id"]]
    assert first["instruction"] == s["question"] and first["answer"] == s["answer"]
    n = int(first["sample_id"], 16)
    assert first["citations"] == f"[1] c{n}  (Doc {n % 3} > Part {n})"
    assert f"[2] c{n + 1}" in first["context"] and f"Part {n + 1}: the plan" in first["context"]
    assert all(first[k] == "" for k in ("decision", "corrected_answer", "quality", "issues"))
    assert first["judge_groundedness"] == s["groundedness"]
    # What push leaves behind for status and the stage: the same pick.
    assert read_rows(file_run.folder.spot_check) == entries
    note = got["note"].read_text(encoding="utf-8")
    assert note.startswith("# Reviewer guidelines")
    assert "`decision`: `accept`, `reject`, `edit`, or `skip`" in note
    assert f"distill review import recipe.yaml {got['path']}" in note
    assert "(at least 10, or all of them when fewer)" in " ".join(note.split())


def test_csv_cells_of_document_text_never_start_a_formula(file_run: FileRun) -> None:
    rows = [sample(i) for i in range(1, 17)]
    rows[0]["messages"][-1]["content"] = '=HYPERLINK("http://evil.example","click")'
    rows[1]["messages"][-1]["content"] = "- a bullet\n- another"
    rows[0]["groundedness"] = rows[1]["groundedness"] = 2  # both low-score: both exported
    file_run.train(rows)
    recipe = file_run.recipe()
    path = export(recipe, file_run.folder, "csv", file_run.path.parent / "s.csv", "r.yaml")["path"]
    got = {r["sample_id"]: r for r in read_export(path)}
    assert got[rows[0]["sample_id"]]["answer"] == '\'=HYPERLINK("http://evil.example","click")'
    assert got[rows[1]["sample_id"]]["answer"] == "'- a bullet\n- another"
    assert not any(v.startswith(("=", "+", "-", "@")) for r in got.values() for v in r.values())
    # The JSONL carries the text as it trains.
    jsonl = export(recipe, file_run.folder, "jsonl", None, "r.yaml")["path"]
    answers = {r["sample_id"]: r["answer"] for r in read_export(jsonl)}
    assert answers[rows[1]["sample_id"]] == "- a bullet\n- another"


def test_export_out_a_folder_or_a_name_of_the_other_format(file_run: FileRun) -> None:
    recipe, where = file_run.recipe(), file_run.path.parent
    got = export(recipe, file_run.folder, "csv", where, "r.yaml")
    assert got["path"] == where / "spot_check.csv" and got["path"].is_file()
    with pytest.raises(UserError, match=r"--out .*x.csv is named for csv, not jsonl"):
        export(recipe, file_run.folder, "jsonl", where / "x.csv", "r.yaml")


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_round_trip_accept_reject_edit(file_run: FileRun, fmt: str) -> None:
    recipe = file_run.recipe()
    path = export(recipe, file_run.folder, fmt, None, "r.yaml")["path"]  # type: ignore[arg-type]
    rows = read_export(path)
    plan = {}
    for i, row in enumerate(rows):
        decision = ("accept", "reject", "edit", "accept", "accept", "accept", "accept")[i]
        row["decision"] = decision
        row["quality"] = 4
        if decision == "edit":
            row["corrected_answer"] = "It costs less [1].\nAsk sales."
        if decision == "reject":
            row.update(issues="hallucination, Not grounded in the context", corrected_answer="no")
        plan[row["sample_id"]] = decision
    filled = write_filled(file_run.path.parent / f"alice.{fmt}", rows)
    report = import_file(recipe, file_run.folder, filled)
    assert report.outcomes == {"accepted": 5, "rejected": 1, "edited": 1}
    assert report.blank == 0 and not report.refused and report.reviewer == "alice"
    run_pipeline(recipe, only="review", force={"review"})
    decisions = {d["sample_id"]: d for d in read_rows(file_run.folder.decisions)}
    by_plan = {v: k for k, v in plan.items() if v != "accept"}
    rejected, edited = decisions[by_plan["reject"]], decisions[by_plan["edit"]]
    assert rejected["status"] == "rejected" and rejected["reviewers"] == ["alice"]
    assert rejected["issues"] == ["hallucination", "not_grounded"]
    assert rejected["reviewer_notes"] == ["no"]
    assert edited["status"] == "edited" and edited["human_edited"]
    assert edited["corrected_answer"] == "It costs less [1].\nAsk sales."
    assert all(d["content_sha"] for d in decisions.values()) and len(decisions) == 7
    train = {s["sample_id"]: s for s in training_rows(file_run.folder)}
    assert by_plan["reject"] not in train and len(train) == 15
    assert train[by_plan["edit"]]["messages"][-1]["content"] == "It costs less [1].\nAsk sales."
    assert train[by_plan["edit"]]["answer"] == "It costs less [1].\nAsk sales."
    stats = review_stats(file_run.folder)
    assert stats["mode"] == "file" and stats["human_reviewed"]
    assert (stats["reviewed"], stats["imported_answers"]) == (7, 7)
    card = summary(stats, None)
    assert card.startswith("Human spot-check in review files: 7 of 7")
    assert "1 rejected and removed, 1 corrected by a reviewer" in card
    # What trains goes to the exports with the reviewers' decisions applied.
    lines = (file_run.folder.exports_dir / "train.openai.jsonl").read_text().splitlines()
    assert len(lines) == 15


def stand_in_stages(trained: list[list[dict[str, Any]]]) -> dict[str, Stage]:
    """The real review stage, and a train stage that records what it would train on,
    behind the real gate."""

    def train(recipe: Recipe, folder: RunFolder, options: RunOptions) -> dict[str, Any]:
        trained.append(training_rows(folder))
        folder.stage_dir("train")
        return {"rows": len(trained[-1])}

    return {
        "review": Stage("review", ("curate",), review.run, volatile=lambda r: True),
        "train": Stage("train", ("curate", "review"), train, before=check_gate),
    }


def test_the_gate_blocks_training_until_the_import_covers_the_sample(file_run: FileRun) -> None:
    recipe = file_run.recipe()
    trained: list[list[dict[str, Any]]] = []
    stages = stand_in_stages(trained)
    path = export(recipe, file_run.folder, "csv", None, "r.yaml")["path"]
    run_pipeline(recipe, only="review", stages=stages)
    with pytest.raises(
        GateClosed, match=r"0 of 6 randomly sampled records reviewed.*review import"
    ):
        run_pipeline(recipe, only="train", stages=stages)
    assert trained == []
    gate = read_json(file_run.folder.manifest_path)["review_gate"]
    assert not gate["passed"] and "distill review export" in gate["error"]
    rows = read_export(path)
    sampled = [r for r in rows if r["reason"] == "sample"]
    # Five of six sampled rows, and the low-score one: not enough (required_share 100%).
    for r in [*sampled[:5], *[r for r in rows if r["reason"] == "low_score"]]:
        r["decision"] = "accept"
    import_file(recipe, file_run.folder, write_filled(path, rows))
    run_pipeline(recipe, only="review", force={"review"}, stages=stages)
    with pytest.raises(GateClosed, match="5 of 6 randomly sampled records reviewed"):
        run_pipeline(recipe, only="train", stages=stages)
    # The sixth, rejected: one in six (17%) is under max_reject_rate 20%.
    sampled[5].update(decision="Reject ", issues="unsafe")
    import_file(recipe, file_run.folder, write_filled(path, rows))
    run_pipeline(recipe, only="review", force={"review"}, stages=stages)
    run_pipeline(recipe, only="train", stages=stages)
    assert len(trained) == 1 and len(trained[0]) == 15
    assert sampled[5]["sample_id"] not in {s["sample_id"] for s in trained[0]}
    gate = read_json(file_run.folder.manifest_path)["review_gate"]
    assert gate["passed"] and gate["mode"] == "file" and gate["human_reviewed"]
    # A second rejection (2 of 6, 33%) closes it again.
    sampled[0]["decision"] = "reject"
    import_file(recipe, file_run.folder, write_filled(path, rows))
    run_pipeline(recipe, only="review", force={"review"}, stages=stages)
    with pytest.raises(GateClosed, match="rejected 33%"):
        run_pipeline(recipe, only="train", stages=stages)


def test_argilla_mode_counts_imported_answers_as_more_reviewers(
    file_run: FileRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With review.mode argilla, a file's answers join the Argilla records' responses and
    are decided by the same rule: a reject wins."""
    recipe = file_run.recipe("review.mode=argilla")
    path = export(recipe, file_run.folder, "jsonl", None, "r.yaml")["path"]
    entries = read_rows(file_run.folder.spot_check)
    accept = {"user": "annotator", "status": "submitted", "values": {"verdict": "accept"}}
    server = {e["record_id"]: [accept] for e in entries}
    where = {"dataset": "files-spot-check", "url": "http://argilla.invalid"}
    monkeypatch.setattr(review, "_from_argilla", lambda r, e: (server, where))
    rows = read_export(path)
    rows[0]["decision"] = "reject"
    import_file(recipe, file_run.folder, write_filled(path, rows[:1]), reviewer="bob")
    _, decisions, stats = review.pull(recipe, file_run.folder)
    first = next(d for d in decisions if d["sample_id"] == rows[0]["sample_id"])
    assert first["status"] == "rejected" and first["reviewers"] == ["annotator", "bob"]
    assert stats["mode"] == "argilla" and stats["imported_answers"] == 1
    assert stats["rejected"] == 1 and stats["accepted"] == 6
    assert "and 1 answers imported from review files" in summary(stats, None)
    # Without imported answers, Argilla's stats read as they did before files existed.
    file_run.folder.imported_answers.unlink()
    _, _, stats = review.pull(recipe, file_run.folder)
    assert "imported_answers" not in stats and stats["accepted"] == 7


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "distill", "review", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )


def test_cli_export_import_and_one_line_errors(file_run: FileRun) -> None:
    cwd = file_run.path.parent
    got = cli(cwd, "export", "recipe.yaml", "--format", "csv", "--out", "sheet.csv")
    assert got.returncode == 0, got.stderr
    assert "wrote 7 spot-check records to sheet.csv (6 sampled, 1 low-score)" in got.stdout
    assert "then run: distill review import recipe.yaml sheet.csv" in got.stdout
    assert (cwd / "sheet.instructions.md").is_file()
    rows = read_export(cwd / "sheet.csv")
    for r in rows:
        r["decision"] = "accept"
    rows[1]["decision"] = "perhaps"
    write_filled(cwd / "sheet.csv", rows)
    got = cli(cwd, "import", "recipe.yaml", "sheet.csv")
    assert got.returncode == 0, got.stderr
    assert "sheet.csv: 7 rows; 6 answers imported (6 accepted)" in got.stdout
    assert "1 bad decision (use accept, reject, edit or skip): row 3 (perhaps)" in got.stdout
    assert "training gate: closed: 5 of 6 randomly sampled records reviewed" in got.stdout
    status = cli(cwd, "status", "recipe.yaml")
    assert status.returncode == 0 and "reviewed 6 of 7" in status.stdout
    for args, message in (
        (("import", "recipe.yaml", "nowhere.csv"), "error: no file at nowhere.csv"),
        (("export", "recipe.yaml", "--format", "xlsx"), "Invalid value for '--format'"),
        (("push", "recipe.yaml"), "error: review.mode is 'file': this command needs Argilla"),
    ):
        got = cli(cwd, *args)
        assert got.returncode == 2 and "Traceback" not in got.stderr
        assert message in got.stderr, got.stderr
    (cwd / "bad.csv").write_bytes(b"sample_id,decision\nx,accept\n")
    got = cli(cwd, "import", "recipe.yaml", "bad.csv")
    assert got.returncode == 2 and "Traceback" not in got.stderr
    lines = [ln for ln in got.stderr.splitlines() if ln.strip()]
    assert lines == [
        "error: bad.csv: no column content_sha; the file needs sample_id, content_sha, "
        "decision as `distill review export` wrote them"
    ]
    auto = cli(cwd, "export", "recipe.yaml", "--set", "review.mode=auto")
    assert auto.returncode == 2 and "set review.mode: file" in auto.stderr
