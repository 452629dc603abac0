"""The quality benchmark: a real distillation, offline, and its decision table.

Runs the whole pipeline (`distill run`) on the Brightdesk corpus into a fresh run
folder: Qwen2.5-Coder-0.5B-Instruct through llama.cpp writes the training data (the
faster Qwen: generation is most of the work), Qwen2.5-Coder-1.5B-Instruct judges
(the 0.5B grades plainly wrong answers 5/5; see tests/test_llamacpp.py), and
SmolLM2-135M-Instruct is the student (LoRA, TRL + PEFT on the CPU). Then it
prints the decision table of both eval sets with their 95% intervals, the
deciding comparisons with paired intervals, and each stage's wall time; the HTML
report is in the run folder.

    .venv/bin/python bench/distill_quality.py [--quick] [--teacher ALIAS] [--keep DIR]
        [--set KEY=VALUE ...]

Goal (issue 15): on unseen documents, ft+rag beats base+rag with the paired 95%
interval above 0 on the primary metric (share judged >= 4) and on refusal accuracy;
ft+rag reaches >= 70% of the teacher's score at <= 1/5 of its latency. Budget: the
full size in <= 90 minutes on the 2-core machine, --quick in <= 20.
Needs `make qwen` (the offline Qwen GGUFs) and `make llamacpp`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# What each size changes in recipes/quickstart.yaml (everything else as the demo).
SIZES = {
    "full": [
        "generate.max_chunks=null",  # all ~96 chunks
        "generate.samples_per_chunk=4",
        "curate.eval_fraction=0.3",
        "curate.seen_eval_fraction=0.5",  # of the training side's qa questions: >= 40
        "train.epochs=2",
        "train.eval_steps=10",  # each eval-loss pass reads ~70 rows
        "train.save_steps=10",
        "eval.max_questions=48",
        "eval.unanswerable=24",
        "eval.pairwise=false",  # ~360 more judge calls: past the 90-minute budget
    ],
    "quick": [
        "generate.max_chunks=null",
        "generate.samples_per_chunk=1",
        "curate.eval_fraction=0.3",
        "curate.seen_eval_fraction=0.3",
        "train.epochs=2",
        "eval.max_questions=30",
        "eval.unanswerable=8",
        "eval.pairwise=false",
    ],
}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="the <= 20 minute size")
    ap.add_argument("--teacher", default="qwen2.5-coder-0.5b-instruct")
    ap.add_argument("--keep", type=Path, help="run folder parent to keep (default: a temp dir)")
    ap.add_argument("--set", action="append", default=[], help="more recipe overrides")
    args = ap.parse_args()
    size = "quick" if args.quick else "full"
    tmp = tempfile.TemporaryDirectory()
    run_dir = args.keep or Path(tmp.name)
    sets = [
        f"run_dir={run_dir}",
        f"generate.teacher=local:{args.teacher}",
        "generate.teacher_options={}",
        *SIZES[size],
        *args.set,
    ]
    cmd = [sys.executable, "-m", "distill", "run", str(REPO / "recipes" / "quickstart.yaml")]
    for s in sets:
        cmd += ["--set", s]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, check=False)
    total = time.perf_counter() - t0
    if proc.returncode:
        return proc.returncode
    run = run_dir / "quickstart"
    print_results(run, total, size, args.teacher)
    return 0


def print_results(run: Path, total: float, size: str, teacher: str) -> None:
    from distill.evaluate.systems import hardware
    from distill.verdict import comparison_table, decision_table

    manifest = json.loads((run / "manifest.json").read_text())
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    print(f"\n# distill quality benchmark ({size}), {hardware()}")
    judge, student = metrics["judge"], metrics["student"]
    print(f"teacher: {teacher}, judge: {judge} (llama.cpp); student: {student}\n")
    print(" ".join(metrics["what_this_means"]) + "\n")
    print(f"## Unseen documents ({metrics['questions']} questions)\n")
    print(decision_table(metrics) + "\n")
    print(comparison_table(metrics.get("comparisons", [])) + "\n")
    seen = metrics.get("seen")
    if seen:
        print(f"## Seen documents ({seen['questions']} questions)\n")
        print(decision_table(metrics, seen["systems"]) + "\n")
        print(comparison_table(seen.get("comparisons", [])) + "\n")
    print(f"{'stage':<10} {'seconds':>8}  counts")
    for name in ("ingest", "generate", "curate", "review", "train", "eval", "publish"):
        stage = manifest["stages"].get(name)
        if stage is None or "duration_s" not in stage:
            print(f"{name:<10} {'—':>8}  did not run")
            continue
        counts = ", ".join(
            f"{k} {v}" for k, v in stage["counts"].items() if not k.startswith("removed_by")
        )
        print(f"{name:<10} {stage['duration_s']:>8.1f}  {counts[:160]}")
    print(f"{'total':<10} {total:>8.1f}  (wall time of `distill run`)")
    print(f"\nreport: {run / 'eval' / 'report.html'}")


if __name__ == "__main__":
    sys.exit(main())
