"""What moves the primary: recipe settings tried one at a time against a finished run.

Starts from a finished run folder (trained and evaluated with the answer key, e.g. the
folder `bench/distill_quality.py --quick --keep DIR` leaves: DIR/quickstart). For each
variant it copies the folder, changes the variant's settings on top of the settings the
run was made with (read back from its manifest), and runs `distill run --until eval`
there: stages whose inputs did not change are skipped, and a changed generate replays
every request its cache already holds, so a training setting costs a training and an
eval, and a data setting what it changes. Then it prints one table: each variant's
`ft+rag` key-fact accuracy on the answer key, paired against the base run's `ft+rag`
on the same questions (Newcombe interval, clustered, exact McNemar, Holm across the
variants), and against its own `base+rag` (the primary of that variant), with its
training rows and each stage's time.

    .venv/bin/python bench/sweep.py RUN_FOLDER [--preset NAME[,NAME...]]
        [--variant NAME KEY=VALUE [KEY=VALUE ...]] [--out DIR] [--reuse]

A variant that changes only `train.*` asks only `ft+rag` again (the base run's `base+rag`
answers stand); any other change asks both, since the answer template or the data can
change what `base+rag` is asked.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from methods import key_rows, recipe_of  # noqa: E402

# The settings the sweep varies, one at a time; the quickstart's
# values are epochs 2, learning rate 2e-4, LoRA r 16 (alpha 32) on q/k/v/o, short
# answers, no-oracle share 0.4, 3 RAFT distractors, the Qwen 0.5B teacher.
EXTRACTIVE = [
    "generate.pairs_per_request=4",
    "generate.pairs_template=qa_keyed@v1",
    "generate.tasks={qa: 0.5, raft: 0.5}",
]
PRESETS: dict[str, list[str]] = {
    "epochs_1": ["train.epochs=1"],
    "epochs_4": ["train.epochs=4"],
    "lr_1e-4": ["train.learning_rate=1e-4"],
    "lr_5e-4": ["train.learning_rate=5e-4"],
    "rank_8": ["train.lora_r=8", "train.lora_alpha=16"],
    "rank_64": ["train.lora_r=64", "train.lora_alpha=128"],
    "all_linear": [
        "train.target_modules=[q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]"
    ],
    "quote_style": ["generate.answer_template=grounded_answer_quote@v1"],
    "no_oracle_0.2": ["generate.raft.no_oracle_share=0.2"],
    "no_oracle_0.6": ["generate.raft.no_oracle_share=0.6"],
    "distractors_1": ["generate.raft.distractors=1"],
    "teacher_1.5b": ["teacher=local:qwen2.5-coder-1.5b-instruct"],
    # Checked data (docs/data.md): extractive pairs, four a request, and the same in
    # RAFT's quote style; then those written by the 1.5B, and taught to the Qwen 0.5B.
    "extractive": EXTRACTIVE,
    "extractive_quote": [*EXTRACTIVE, "generate.answer_style=quote"],
    "extractive_1.5b": [*EXTRACTIVE, "teacher=local:qwen2.5-coder-1.5b-instruct"],
    "student_qwen_0.5b": [
        *EXTRACTIVE,
        "teacher=local:qwen2.5-coder-1.5b-instruct",
        "student=qwen2.5-coder-0.5b-instruct",
        "train.epochs=1",
    ],
}


def base_sets(run: Path, recipe: Path) -> list[str]:
    """The overrides that turn `recipe` into the recipe `run` was made with: every field
    whose value differs, as KEY=JSON (JSON is YAML), except the name and run folder."""
    from distill.recipe import load_recipe

    used = json.loads((run / "manifest.json").read_text())["recipe"]
    plain = load_recipe(recipe).model_dump(mode="json")
    sets = []
    for key, value in used.items():
        if key in ("name", "run_dir", "base_dir"):
            continue
        mine = plain.get(key)
        if isinstance(value, dict) and isinstance(mine, dict):
            for field, v in value.items():
                if mine.get(field) != v:
                    sets.append(f"{key}.{field}={json.dumps(v)}")
        elif value != mine:
            sets.append(f"{key}={json.dumps(value)}")
    return sets


def only_training(changes: list[str]) -> bool:
    return all(c.split("=", 1)[0].startswith("train.") for c in changes)


def run_variant(base: Path, out: Path, name: str, changes: list[str]) -> dict[str, Any]:
    """Copy the run, apply `changes`, run what they change up to eval; its folder."""
    recipe = recipe_of(base)
    folder = out / name
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(base, folder)
    systems = "[ft+rag]" if only_training(changes) else "[base+rag, ft+rag]"
    sets = [
        *base_sets(base, recipe),
        f"run_dir={out}",
        f"name={name}",
        f"eval.systems={systems}",
        *changes,
    ]
    cmd = [sys.executable, "-m", "distill", "run", str(recipe), "--until", "eval"]
    for s in sets:
        cmd += ["--set", s]
    proc = subprocess.run(cmd, check=False)
    if proc.returncode:
        raise SystemExit(f"{name}: distill run failed ({proc.returncode})")
    return {"folder": folder}


def finished(folder: Path) -> bool:
    try:
        stages = json.loads((folder / "manifest.json").read_text())["stages"]
    except (OSError, KeyError, ValueError):
        return False
    return stages.get("eval", {}).get("status") == "done"


def base_rag(folder: Path) -> dict[str, float]:
    rows = key_rows(folder, "base+rag")
    return {i: float(r["fact_correct"]) for i, r in rows.items() if r["fact_correct"] is not None}


def table(base: Path, results: dict[str, dict[str, Any]], changes: dict[str, list[str]]) -> str:
    """The sweep's Markdown table (see the module docstring)."""
    from distill.evaluate import stats

    def correct(folder: Path) -> tuple[dict[str, float], dict[str, str], dict[str, str]]:
        rows = key_rows(folder)
        vals = {
            i: float(r["fact_correct"]) for i, r in rows.items() if r["fact_correct"] is not None
        }
        docs = {i: r["doc_id"] for i, r in rows.items()}
        chunks = {i: (r["source_chunk_ids"] or [i])[0] for i, r in rows.items()}
        return vals, docs, chunks

    def paired(a: dict[str, float], b: dict[str, float], docs: dict, chunks: dict) -> Any:
        shared = sorted(set(a) & set(b))
        if not shared:
            return None
        clusters, _ = stats.cluster_of(shared, docs, chunks)
        return stats.paired_binary(a, b, clusters)

    def cell(pb: Any) -> str:
        if pb is None:
            return "—"
        lo, hi = pb.ci
        return f"{pb.diff * 100:+.1f} [{lo * 100:+.1f}, {hi * 100:+.1f}] pt, {pb.wins}/{pb.losses}"

    def acc(vals: dict[str, float]) -> str:
        k, n = int(sum(vals.values())), len(vals)
        w = stats.wilson(k, n) or (0.0, 0.0)
        return f"{k / max(n, 1):.0%} [{w[0]:.0%}, {w[1]:.0%}] of {n}"

    def stage_s(folder: Path) -> tuple[str, str]:
        manifest = json.loads((folder / "manifest.json").read_text())
        rows = manifest["stages"].get("curate", {}).get("counts", {}).get("train", "?")
        secs = {k: v.get("duration_s") for k, v in manifest["stages"].items()}
        ran = ", ".join(
            f"{k} {secs[k]:.0f}" for k in ("generate", "train", "eval") if secs.get(k) is not None
        )
        return str(rows), ran

    ref, docs, chunks = correct(base)
    ref_base = base_rag(base)
    compared: dict[str, tuple[dict[str, float], Any, Any]] = {}
    for name, res in results.items():
        vals, d, c = correct(res["folder"])
        docs.update(d)
        chunks.update(c)
        own = base_rag(res["folder"]) or ref_base
        compared[name] = (vals, paired(vals, ref, docs, chunks), paired(vals, own, docs, chunks))
    holm = stats.holm({k: v[1].p_value for k, v in compared.items() if v[1] is not None})
    lines = [
        f"ft+rag key-fact accuracy on the answer key, {len(ref)} questions in the base run",
        "",
        "| variant | changes | train rows | ft+rag | vs base run's ft+rag, paired [95% CI], "
        "won/lost | p (Holm) | MDE | vs its base+rag (primary) | seconds (a skipped stage "
        "keeps the base run's) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    rows, ran = stage_s(base)
    own = paired(ref, ref_base, docs, chunks)
    lines.append(f"| base run | — | {rows} | {acc(ref)} | — | — | — | {cell(own)} | {ran} |")
    for name, (vals, vs_ref, vs_own) in compared.items():
        rows, ran = stage_s(results[name]["folder"])
        p = f"{holm[name]:.3g}" if name in holm else "—"
        mde = f"{vs_ref.mde * 100:.0f} pt" if vs_ref is not None else "—"
        what = "; ".join(changes.get(name, [])).replace("|", "\\|")
        lines.append(
            f"| {name} | `{what}` | {rows} | {acc(vals)} | {cell(vs_ref)} | {p} | {mde} | "
            f"{cell(vs_own)} | {ran} |"
        )
    return "\n".join(lines)


def main() -> int:
    from distill.evaluate.systems import hardware

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path, help="a finished run folder (trained, evaluated)")
    ap.add_argument("--preset", default="", help=f"comma-separated, of: {', '.join(PRESETS)}")
    ap.add_argument(
        "--variant",
        nargs="+",
        action="append",
        default=[],
        metavar=("NAME", "KEY=VALUE"),
        help="a variant of your own: its name, then recipe overrides",
    )
    ap.add_argument("--out", type=Path, default=Path("runs/sweep"))
    ap.add_argument("--reuse", action="store_true", help="keep --out's finished variants")
    args = ap.parse_args()
    variants: dict[str, list[str]] = {}
    for name in [x for x in args.preset.split(",") if x]:
        if name not in PRESETS:
            ap.error(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
        variants[name] = PRESETS[name]
    for name, *changes in args.variant:
        if not changes or any("=" not in c for c in changes):
            ap.error(f"--variant {name}: give KEY=VALUE overrides after the name")
        variants[name] = changes
    if not variants:
        ap.error("nothing to try: give --preset or --variant")
    base = args.run.resolve()
    if not finished(base):
        ap.error(f"{base}: not a finished run folder (no done eval in its manifest)")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name, changes in variants.items():
        if args.reuse and finished(out / name):
            results[name] = {"folder": out / name}
        else:
            results[name] = run_variant(base, out, name, changes)
    print(f"\n# Sweep against {base}, {hardware()}\n")
    print(table(base, results, variants))
    return 0


if __name__ == "__main__":
    sys.exit(main())
