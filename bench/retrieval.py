"""Retrieval benchmark on a corpus nobody here wrote: the PostgreSQL 15 manual (HTML).

    apt-get install -y postgresql-doc-15        # once; puts the HTML under /usr/share/doc
    .venv/bin/python bench/retrieval.py [--html DIR] [--limit N]

Prints:
- ingest + index throughput (chunks/s), and the ratio of distill's whole ingest
  (read, extract, chunk, embed, BM25) to a bare `SentenceTransformer.encode` of the
  same chunk texts (goal: <= 1.15);
- query latency p50/p95 for dense, BM25 and hybrid (one query per call, embedding
  included);
- page-level recall@5 and MRR@10 for each mode on bench/data/postgres_questions.jsonl
  (goal: hybrid >= the better of dense and BM25).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from distill.models import load_embedder, load_tokenizer  # noqa: E402
from distill.pipeline import run_pipeline  # noqa: E402
from distill.recipe import load_recipe  # noqa: E402
from distill.retrieval import Retriever, chunk_embedding_text  # noqa: E402

HERE = Path(__file__).resolve().parent
QUESTIONS = HERE / "data" / "postgres_questions.jsonl"
DEFAULT_HTML = Path("/usr/share/doc/postgresql-doc-15/html")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--html", type=Path, default=DEFAULT_HTML)
    ap.add_argument("--limit", type=int, default=0, help="only the first N pages (0 = all)")
    args = ap.parse_args()
    if not args.html.is_dir():
        sys.exit(f"{args.html} not found: apt-get install -y postgresql-doc-15")
    questions = [json.loads(line) for line in QUESTIONS.read_text().splitlines() if line.strip()]

    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "html"
        corpus.mkdir()
        pages = sorted(args.html.glob("*.html"))
        if args.limit:
            wanted = {p for q in questions for p in q["pages"]}
            pages = sorted({p for p in pages if p.name in wanted} | set(pages[: args.limit]))
        for page in pages:
            (corpus / page.name).symlink_to(page)
        recipe_path = Path(tmp) / "pg.yaml"
        recipe_path.write_text(f"name: pg\nrun_dir: {tmp}/runs\ningest:\n  paths: [html]\n")
        recipe = load_recipe(recipe_path)
        # Warm the models so both timings below measure work, not loading.
        load_tokenizer(recipe.student)
        model = load_embedder(recipe.ingest.embedding_model)
        model.encode(["warm up"])

        t0 = time.perf_counter()
        run = run_pipeline(recipe, only="ingest")
        ingest_s = time.perf_counter() - t0
        retriever = Retriever(run.ingest_dir, recipe.retrieval)
        texts = [chunk_embedding_text(c) for c in retriever.chunks]
        t0 = time.perf_counter()
        batch = recipe.ingest.embedding_batch_size
        model.encode(texts, batch_size=batch, normalize_embeddings=True)
        bare_s = time.perf_counter() - t0

        results = {}
        for mode in ("dense", "bm25", "hybrid"):
            latencies, recall, rr = [], [], []
            for q in questions:
                t0 = time.perf_counter()
                hits = retriever.retrieve(q["question"], k=10, mode=mode)
                latencies.append(time.perf_counter() - t0)
                gold = {p.removesuffix(".html") for p in q["pages"]}
                ranked = [c["doc_id"] for c, _ in hits]
                recall.append(any(d in gold for d in ranked[:5]))
                first = next((i for i, d in enumerate(ranked[:10], 1) if d in gold), None)
                rr.append(1 / first if first else 0.0)
            results[mode] = (latencies, recall, rr)

    n = len(texts)
    print(f"\ncorpus: {len(pages)} pages -> {n} chunks; {len(questions)} labelled questions")
    print(f"ingest + index: {ingest_s:.1f} s ({n / ingest_s:.1f} chunks/s)")
    print(f"bare SentenceTransformer.encode of the same texts: {bare_s:.1f} s")
    print(f"ratio distill ingest / bare encode: {ingest_s / bare_s:.2f} (goal <= 1.15)\n")
    print(f"{'mode':<8} {'recall@5':>9} {'MRR@10':>7} {'p50 ms':>7} {'p95 ms':>7}")
    for mode, (lat, recall, rr) in results.items():
        print(
            f"{mode:<8} {sum(recall) / len(recall):>9.3f} {statistics.fmean(rr):>7.3f} "
            f"{percentile(lat, 50) * 1000:>7.1f} {percentile(lat, 95) * 1000:>7.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
