"""Curation at scale: near-duplicate removal (and the whole curate pass) on synthetic
samples.

Each size runs in its own process, so its peak memory (max RSS) is its own. The
samples are realistic in length (a ~12-word question, a ~60-word answer, a two-
document context) and 5% of them are planted near-duplicates of another (a word
added to the question, the answer's punctuation changed).

Goal: 100k samples in <= 60 s on this machine, growing about linearly.

    .venv/bin/python bench/curate.py [--sizes 10000 50000 100000]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def synthetic(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    vocab = [f"{w}{i}" for i in range(3000) for w in ("plan", "user", "ticket")][:6000]
    samples = []
    for i in range(n):
        q = " ".join(rng.choice(vocab) for _ in range(12)) + "?"
        a = " ".join(rng.choice(vocab) for _ in range(60)) + "."
        if i and i % 20 == 0:  # a near-duplicate of an earlier sample
            src = samples[rng.randrange(i)]
            q = src["question"].replace("?", " please?")
            a = src["answer"].replace(".", "!")
        doc = f"doc{i % 2000}"
        context = f'<document id="1">{a[:200]}</document>\n\n<document id="2">...</document>'
        samples.append(
            {
                "sample_id": f"{i:016x}",
                "task": "qa",
                "question": q,
                "answer": a,
                "messages": [
                    {"role": "system", "content": "You are a helpful support assistant."},
                    {"role": "user", "content": f"{context}\n\n{q}"},
                    {"role": "assistant", "content": a},
                ],
                "doc_ids": [doc],
                "source_doc_ids": [doc],
                "chunk_ids": [f"{doc}#1", f"{doc}#2"],
                "expects_refusal": False,
            }
        )
    return samples


def one(n: int) -> dict:
    from distill.config import SplitConfig
    from distill.curate.config import CurateConfig
    from distill.curate.dedup import near_duplicates
    from distill.curate.funnel import curate, source_docs
    from distill.split import Split

    samples = synthetic(n)
    t0 = time.perf_counter()
    q = near_duplicates([s["question"] for s in samples], 0.8)
    t_q = time.perf_counter() - t0
    t0 = time.perf_counter()
    cfg = CurateConfig(max_answer_tokens=500)
    docs = {d for s in samples for d in source_docs(s)}
    held = SplitConfig()
    split = Split.choose(docs, held.eval_fraction, held.seed, held.min_eval_documents)
    out = curate(samples, cfg, lambda t: len(t.split()), split=split, split_cfg=held)
    t_all = time.perf_counter() - t0
    near = sum(n for name, n in out.funnel if name.startswith("near"))
    return {
        "n": n,
        "near_dup_questions_s": round(t_q, 2),
        "curate_s": round(t_all, 2),
        "planted": n // 20 - (n % 20 == 0),
        "found_questions": len(q),
        "removed_near_dups": near,
        "kept": len(out.train) + len(out.eval),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000, 100_000])
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one)))
        return
    print(
        f"{'samples':>8} {'near-dup q (s)':>15} {'whole curate (s)':>17} {'per 10k (s)':>12}"
        f" {'planted':>8} {'found':>6} {'peak RSS (MB)':>14}"
    )
    for n in args.sizes:
        proc = subprocess.run(
            [sys.executable, __file__, "--one", str(n)], capture_output=True, text=True, check=True
        )
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(
            f"{r['n']:>8,} {r['near_dup_questions_s']:>15} {r['curate_s']:>17}"
            f" {r['curate_s'] / n * 1e4:>12.2f} {r['planted']:>8,} {r['found_questions']:>6,}"
            f" {r['peak_rss_mb']:>14,}"
        )


if __name__ == "__main__":
    main()
