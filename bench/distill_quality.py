"""The quality benchmark: a real distillation, offline, and its decision table.

Runs the whole pipeline (`distill run`) on the Brightdesk corpus into a fresh run
folder: Qwen2.5-Coder-0.5B-Instruct through llama.cpp writes the training data (the
faster Qwen: generation is most of the work), Qwen2.5-Coder-1.5B-Instruct writes the
extractive answer key (generate.eval_key) and judges
(the 0.5B grades plainly wrong answers 5/5; see tests/teachers/test_llamacpp.py), and
SmolLM2-135M-Instruct is the student (LoRA, TRL + PEFT on the CPU). Then it
prints the decision table of both eval sets with their 95% intervals, the
deciding comparisons with paired intervals, and each stage's wall time; the HTML
report is in the run folder.

    .venv/bin/python bench/distill_quality.py [--quick] [--corpus brightdesk|postgres]
        [--teacher ALIAS] [--keep DIR] [--set KEY=VALUE ...]

Goal: the judge-free primary (ft+rag against base+rag on key-fact accuracy) on >= 300
answerable questions pooled over the unseen-documents and deployment sets (the shipped
answer key plus the teacher's extractive key), >= 60 verified unanswerables, and the
judge on 40 questions x 2 systems with identity and foil checks; full size <= 90
minutes on the 2-core machine, --quick <= 20. It prints the verdict, the tables, the
disagreement rate and each stage's time, so sizes can be set again. `--corpus
postgres` has a size of its own (SIZES["postgres"]: no generated twin, extractive data
by the 1.5B, the judge off).
Needs `make qwen` (the offline Qwen GGUFs) and `make llamacpp`.
"""

from __future__ import annotations

import argparse
import json
import shutil
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
        "generate.samples_per_chunk=2",
        # The answer key's extractive twin: every held-out chunk and 66 training chunks,
        # written by the 1.5B (the 0.5B kept ~1 question in 4 asked, the 1.5B ~2). With
        # 60 it kept 160 and then 158 questions: 300 and 296 with the shipped 140.
        "generate.eval_key={deployment_chunks: 66, questions_per_chunk: 4, "
        "teacher: 'local:qwen2.5-coder-1.5b-instruct'}",
        "split.eval_fraction=0.3",
        "split.seen_eval_fraction=0",  # no training row is taken for eval
        "train.epochs=2",
        "train.eval_steps=10",  # each eval-loss pass reads ~70 rows
        "train.save_steps=10",
        "eval.judge_items=40",
        "eval.unanswerable=30",  # verified twins, beside the key's 30 and 2 off-topic
    ],
    # The PostgreSQL pages are six times Brightdesk (588 chunks of 256 tokens against
    # 96), so the full size's per-chunk work would not fit in 90 minutes. Here the
    # hand-written key (225 answerable, 38 unanswerable) decides with no generated twin,
    # and the training data is the best measured on the demo: extractive pairs by the
    # 1.5B (docs/evaluation.md, "Checked, extractive training data"), four a request
    # from a seeded 150 of the chunks. The judge is off: on Brightdesk it passed 80-90%
    # of foils (docs/evaluation.md), so its figures would measure little.
    "postgres": [
        "generate.max_chunks=150",
        "generate.samples_per_chunk=1",
        "generate.pairs_per_request=4",
        "generate.pairs_template=qa_keyed@v1",
        "generate.tasks={qa: 0.5, raft: 0.5}",
        # One distractor beside the oracle: a training context the size of eval's (k = 2
        # retrieved chunks). Against three: +2.2 points [-3.9, +8.4] for SmolLM2, and the
        # answers that are only a citation fell from 52 to 4 (docs/evaluation.md).
        "generate.raft.distractors=1",
        "split.eval_fraction=0.3",
        "split.seen_eval_fraction=0",
        # The share generate plans (raft 0.5 x no-oracle 0.4): run 1 trained on 48%.
        "curate.max_refusal_share=0.2",
        "train.epochs=2",
        # The RAFT contexts (oracle + 3 distractors of full 256-token chunks + prompt)
        # ran 1,150-1,300 tokens with 3 distractors: at 1024 curate dropped 59 answerable
        # rows as too long (one distractor leaves room to spare).
        "train.max_seq_length=1536",
        # One eval-split pass at the end: each costs ~100 s here and decides nothing.
        "train.eval_steps=1000",
        "train.save_steps=10",
        "eval.judge_items=0",
        "eval.unanswerable=30",
    ],
    "quick": [
        "generate.max_chunks=null",
        "generate.samples_per_chunk=1",
        "generate.eval_key={deployment_chunks: 20, questions_per_chunk: 4, "
        "teacher: 'local:qwen2.5-coder-1.5b-instruct'}",
        "split.eval_fraction=0.3",
        "train.epochs=2",
        "eval.judge_items=10",
        "eval.unanswerable=10",
    ],
}


POSTGRES_HTML = Path("/usr/share/doc/postgresql-doc-15/html")
POSTGRES_OFF_TOPIC = [
    "How do I change the oil in a 2015 Honda Civic?",
    "What is the boiling point of ethanol?",
]


def corpus_sets(corpus: str, run_dir: Path) -> list[str]:
    """The recipe overrides that point the quickstart's pipeline at a corpus: Brightdesk
    as shipped, or 40 pages of the PostgreSQL 15 manual on server configuration
    (bench/data/postgres_pages.txt, copied out of the Debian package) with their
    hand-written answer key (bench/data/postgres_key.jsonl)."""
    if corpus == "brightdesk":
        return []
    pages = (REPO / "bench" / "data" / "postgres_pages.txt").read_text().split()
    missing = [p for p in pages if not (POSTGRES_HTML / p).exists()]
    if missing:
        sys.exit(f"{POSTGRES_HTML / missing[0]} not found: apt-get install -y postgresql-doc-15")
    folder = run_dir / "postgres-pages"
    folder.mkdir(parents=True, exist_ok=True)
    for p in pages:
        shutil.copyfile(POSTGRES_HTML / p, folder / p)
    off_topic = ", ".join(json.dumps(q) for q in POSTGRES_OFF_TOPIC)
    return [
        "name=postgres",
        "description=Server configuration pages of the PostgreSQL 15 manual.",
        f"ingest.paths=[{folder}]",
        f"eval.answer_key={REPO / 'bench' / 'data' / 'postgres_key.jsonl'}",
        f"eval.off_topic=[{off_topic}]",
    ]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="the <= 20 minute size")
    ap.add_argument(
        "--corpus",
        choices=["brightdesk", "postgres"],
        default="brightdesk",
        help="brightdesk (the demo's help centre) or 40 pages of the PostgreSQL 15 manual",
    )
    ap.add_argument(
        "--teacher",
        help="the training data's teacher alias (default: qwen2.5-coder-0.5b-instruct; "
        "for --corpus postgres at full size qwen2.5-coder-1.5b-instruct)",
    )
    ap.add_argument("--keep", type=Path, help="run folder parent to keep (default: a temp dir)")
    ap.add_argument("--set", action="append", default=[], help="more recipe overrides")
    args = ap.parse_args()
    if args.quick and args.corpus == "postgres":
        ap.error("--quick is sized for Brightdesk; --corpus postgres has one size (73 min)")
    size = "quick" if args.quick else "postgres" if args.corpus == "postgres" else "full"
    teacher = args.teacher or (
        "qwen2.5-coder-1.5b-instruct" if size == "postgres" else "qwen2.5-coder-0.5b-instruct"
    )
    tmp = tempfile.TemporaryDirectory()
    run_dir = args.keep or Path(tmp.name)
    sets = [
        f"run_dir={run_dir}",
        f"teacher=local:{teacher}",  # the whole teacher: no options
        *SIZES[size],
        *corpus_sets(args.corpus, run_dir),
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
    run = run_dir / ("quickstart" if args.corpus == "brightdesk" else args.corpus)
    print_results(run, total, size, teacher)
    return 0


def print_results(run: Path, total: float, size: str, teacher: str) -> None:
    from pydantic_core import to_jsonable_python

    from distill.decision_text import decision_markdown
    from distill.evaluate.systems import hardware
    from distill.results import read_metrics

    manifest = json.loads((run / "manifest.json").read_text())
    metrics = read_metrics(run / "eval" / "metrics.json")
    print(f"\n# distill quality benchmark ({size}), {hardware()}")
    print(f"teacher: {teacher}, judge: {metrics.judge} (llama.cpp); student: {metrics.student}\n")
    d = metrics.decision
    if d:
        print("\n".join(decision_markdown(d)) + "\n")
        p = d.sets[-1].primary
        if p is not None:
            print(
                f"disagreement rate (p_d) {p.p_d:.3f}, design effect {p.deff:.2f} by "
                f"{p.cluster_by} ({p.clusters} clusters), pooled n {p.n}\n"
            )
    for name, part in (
        ("judge_agreement", metrics.judge_agreement),
        ("judge_checks", metrics.judge_checks),
        ("judge_same_family", metrics.judge_same_family),
        ("answer_key", metrics.answer_key),
    ):
        print(f"{name}: {json.dumps(to_jsonable_python(part), sort_keys=True)}")
    eval_s = manifest["stages"]["eval"].get("duration_s")
    answers = d.sets[-1].questions if d else 0
    if eval_s and answers:
        print(f"eval: {eval_s:.0f} s, {eval_s / answers:.1f} s per scored question\n")
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
