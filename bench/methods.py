"""The training methods side by side: SFT against SFT→DPO (and any other
`train.method`), on the same data, measured on the same held-out questions.

Starts from a finished run folder (`distill run`: trained with SFT and evaluated),
copies it once per method, retrains with that method (`distill train --set
train.method=M`: the data, the split and the eval items stay as they are), evaluates
the new adapter with eval's judge, and prints one table: each method's ft+rag (and
ft) on the unseen documents, with 95% intervals, its paired difference against SFT
on the same questions, and each method's training wall time and peak memory.

    .venv/bin/python bench/methods.py RUN_FOLDER [--methods sft_then_dpo,dpo]
        [--out DIR] [--set KEY=VALUE ...] [--reuse]

RUN_FOLDER is e.g. runs/quickstart after `make demo`, or the folder
bench/distill_quality.py --keep DIR leaves (DIR/quickstart). The primary is judge-free:
ft+rag's key-fact accuracy on the answer key, each method paired against SFT with
Holm across methods; the judged tables follow, descriptive.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from distill.errors import InputError
from distill.tables import Answer
from distill.train_results import read_train_metrics

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SYSTEMS = ("ft+rag", "ft")


def recipe_of(run: Path) -> Path:
    """The recipe a run folder was made from (else the quickstart's)."""
    manifest = json.loads((run / "manifest.json").read_text())
    recipe = Path(manifest["recipe_dir"]) / f"{manifest['recipe']['name']}.yaml"
    return recipe if recipe.exists() else REPO / "recipes" / "quickstart.yaml"


def run_method(base: Path, out: Path, method: str, sets: list[str]) -> dict[str, Any]:
    """Copy the run, retrain it with `method`, evaluate it; (train metrics, seconds)."""
    recipe = recipe_of(base)
    folder = out / method
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(base, folder)
    overrides = [
        f"run_dir={out}",
        f"name={method}",
        f"train.method={method}",
        # Only the systems the comparison reads answer again (the others are SFT's);
        # the answer key decides, judge-free.
        "eval.systems=[ft, ft+rag]",
        "eval.seen_systems=[ft]",
        *sets,
    ]
    # The copy keeps the recipe's name in its manifest; the folder is named by method.
    sets_args = [a for s in overrides for a in ("--set", s)]
    timings = {}
    for stage in ("train", "eval"):
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "distill", stage, str(recipe), *sets_args]
        proc = subprocess.run(cmd, check=False)
        if proc.returncode:
            raise SystemExit(f"{method}: distill {stage} failed ({proc.returncode})")
        timings[stage] = round(time.perf_counter() - t0, 1)
    return {"folder": folder, "timings": timings}


def finished(folder: Path, method: str) -> bool:
    """Trained with `method` and evaluated after that (a copy of the base run is not)."""
    try:
        trained = read_train_metrics(folder / "train" / "metrics.json").method
        stages = json.loads((folder / "manifest.json").read_text())["stages"]
    except (InputError, OSError, KeyError, ValueError):
        return False
    train, evaluated = stages.get("train", {}), stages.get("eval", {})
    return (
        trained == method
        and evaluated.get("status") == "done"
        and evaluated.get("ended_at", "") > train.get("ended_at", "~")
    )


def rows(folder: Path) -> list[Answer]:
    from distill import tables

    answers = tables.read(folder / "eval" / "answers.parquet", Answer)
    return [r for r in answers if r["eval_set"] == "unseen"]


def key_rows(folder: Path, system: str = "ft+rag") -> dict[str, Answer]:
    """A system's answers to the answer key's questions, by item."""
    from distill import tables

    answers = tables.read(folder / "eval" / "answers.parquet", Answer)
    return {
        r["item_id"]: r
        for r in answers
        if r["system"] == system and r["kind"] == "answerable" and r["key_facts"] != "[]"
    }


def print_key_table(results: dict[str, dict[str, Any]]) -> None:
    """The judge-free primary: each method's ft+rag key-fact accuracy, paired against
    SFT's on the same questions (Newcombe + exact McNemar, clustered), Holm across the
    methods. The judge is out of it, so a method trained on a judge's preferences
    cannot win by pleasing that judge."""
    from distill.evaluate import stats

    sft = key_rows(results["sft"]["folder"])
    if not sft:
        print("(no answer-key questions in these runs: set eval.answer_key)\n")
        return
    ref = {i: float(r["fact_correct"]) for i, r in sft.items() if r["fact_correct"] is not None}
    compared = {}
    for method, res in results.items():
        if method == "sft":
            continue
        mine = key_rows(res["folder"])
        vals = {
            i: float(r["fact_correct"]) for i, r in mine.items() if r["fact_correct"] is not None
        }
        docs = {i: r["doc_id"] for i, r in mine.items()}
        chunks = {i: (r["source_chunk_ids"] or [i])[0] for i, r in mine.items()}
        clusters, _ = stats.cluster_of(sorted(set(vals) & set(ref)), docs, chunks)
        compared[method] = (vals, stats.paired_binary(vals, ref, clusters))
    holm = stats.holm({k: pb.p_value for k, (_, pb) in compared.items() if pb is not None})
    print(f"## ft+rag, key-fact accuracy (judge-free), {len(ref)} answer-key questions\n")
    print("| method | key-fact accuracy | vs SFT, paired [95% CI] | won / lost | p (Holm) | MDE |")
    print("| --- | --- | --- | --- | --- | --- |")
    k = int(sum(ref.values()))
    w = stats.wilson(k, len(ref))
    assert w is not None
    print(f"| sft | {k / len(ref):.0%} [{w[0]:.0%}, {w[1]:.0%}] | — | — | — | — |")
    for method, (vals, pb) in compared.items():
        k = int(sum(vals.values()))
        w = stats.wilson(k, len(vals)) or (0.0, 0.0)
        if pb is None:
            print(f"| {method} | {k / max(len(vals), 1):.0%} | — | — | — | — |")
            continue
        print(
            f"| {method} | {k / len(vals):.0%} [{w[0]:.0%}, {w[1]:.0%}] | {pb.diff:+.1%} "
            f"[{pb.ci[0]:+.1%}, {pb.ci[1]:+.1%}] | {pb.wins} / {pb.losses} | "
            f"{holm[method]:.3g} | {pb.mde:.0%} |"
        )
    print()


def main() -> int:
    from distill.evaluate import metrics as m
    from distill.evaluate.systems import hardware

    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path, help="a finished run folder (SFT, evaluated)")
    ap.add_argument("--methods", default="sft_then_dpo", help="comma-separated train.method")
    ap.add_argument("--out", type=Path, default=Path("runs/methods"))
    ap.add_argument("--set", action="append", default=[], help="recipe overrides for all")
    ap.add_argument(
        "--reuse", action="store_true", help="print the table from --out's finished methods"
    )
    args = ap.parse_args()
    base = args.run.resolve()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {"sft": {"folder": base, "timings": {}}}
    for method in [x for x in args.methods.split(",") if x]:
        if args.reuse and finished(out / method, method):
            results[method] = {"folder": out / method, "timings": {}}
        else:
            results[method] = run_method(base, out, method, args.set)

    print(f"\n# Training methods side by side, {hardware()}\n")
    print_key_table(results)
    sft_rows = rows(base)
    for system in SYSTEMS:
        ref = m.item_scores(sft_rows, system)
        if not ref["correct"]:
            continue
        print(f"## {system}, judged, unseen documents ({len(ref['correct'])} questions)\n")
        print(
            "| method | correct (judge >= 4) | vs SFT, paired | token F1 | vs SFT, paired "
            "| train s | peak GiB |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for method, res in results.items():
            scores = m.item_scores(rows(res["folder"]), system)
            train = read_train_metrics(res["folder"] / "train" / "metrics.json")
            manifest = json.loads((res["folder"] / "manifest.json").read_text())
            seconds = manifest["stages"]["train"]["duration_s"]  # every pass, pairs included
            cells = [method]
            for metric in ("correct", "token_f1"):
                vals = scores[metric]
                ci = m.bootstrap_ci(list(vals.values()))
                mean = sum(vals.values()) / max(len(vals), 1)
                cells.append(f"{mean:.0%} [{ci[0]:.0%}, {ci[1]:.0%}]" if ci else "—")
                if method == "sft":
                    cells.append("—")
                else:
                    d = m.paired_difference(vals, ref[metric], binary=metric in m.BINARY)
                    cells.append(f"{d.diff:+.0%} [{d.ci[0]:+.0%}, {d.ci[1]:+.0%}]" if d else "—")
            cells.append(f"{seconds:.0f}")
            cells.append(f"{train.peak_memory_mb / 1024:.2f}")
            print("| " + " | ".join(cells) + " |")
        print()
    for method, res in results.items():
        train = read_train_metrics(res["folder"] / "train" / "metrics.json")
        if d := train.dpo:
            print(
                f"{method}: {d.pairs_built} pairs from {d.prompts} prompts "
                f"({d.outcomes}); DPO {d.steps} steps, reward margin "
                f"{d.first_margin} -> {d.last_margin}"
            )
        if g := train.gkd:
            print(
                f"{method}: {g.trainer} {g.steps} steps against {g.teacher}, "
                f"loss {g.first_loss} -> {g.last_loss}; eval-split loss "
                f"{g.eval_loss_before} -> {g.eval_loss_after}, "
                f"{g.seconds} s, peak {g.peak_memory_mb} MB"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
