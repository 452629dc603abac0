"""Curate: only good samples reach training.

In order, each step removing samples (the report counts each):
1. checks: the request parses, lengths are in bounds, no loops, no truncation; a
   RAFT sample whose context lacks the answer must say so, and every other answer
   must not refuse; citations ([n]) must point at documents in the context;
2. exact duplicates (normalised request + answer);
3. near-duplicate requests, then near-duplicate samples (MinHash LSH, distill.curate.dedup);
4. optional semantic duplicates (embedding cosine of the requests);
5. a lexical support score (no model: the share of the answers' content words found
   in the documents they cite), reported, and a filter when `min_support` is set;
6. optional judge scores (groundedness and quality 1-5, one call per sample to
   `curate.judge`); a sample whose judge call failed is rejected, never passed;
7. the split by document, chosen before generation (generate/split.json,
   distill.split): a sample goes to eval when all its source documents are held
   out, to train when none is and no chunk of its context comes from a held-out
   document; any other sample is dropped (generation never makes one: a check);
8. the seen-documents eval set: a seeded `split.seen_eval_fraction` of the training
   side's plain questions is held out (eval_seen.parquet), to ask without
   retrieval whether fine-tuning absorbed what the training documents say;
9. decontamination: a training sample sharing a `decontam_ngram`-word sequence with
   any eval sample's request or answers is dropped, and so is one whose request is
   within `decontam_similarity` (embedding cosine) of an eval request; a seen-set
   question the training set asks too (the same words or that similar) is dropped.

Outputs in `curate/`: train.parquet, eval.parquet, eval_seen.parquet,
rejected.parquet (with the reason), report.md with histograms (support.png,
judge.png). The exports (OpenAI JSONL, ShareGPT, Alpaca) are written after review,
in review/exports/, so they hold exactly what trains.
"""

from __future__ import annotations

from typing import Any

from distill import tables
from distill.curate.funnel import curate
from distill.curate.judge import SampleJudge
from distill.curate.report import histograms, print_funnel, report_text
from distill.errors import InputError
from distill.io import read_rows, write_text
from distill.recipe import Recipe
from distill.runfolder import RunFolder, RunOptions
from distill.split import Split
from distill.tables import CuratedSample


def planned_refusal_share(recipe: Recipe) -> float:
    """The share of refusal targets generate plans: the raft task's weight in
    generate.tasks times raft.no_oracle_share (a value for curate.max_refusal_share)."""
    tasks = recipe.generate.tasks
    total = sum(tasks.values())
    raft = tasks.get("raft", 0) / total if total else 0.0
    return raft * recipe.generate.raft.no_oracle_share


def run(recipe: Recipe, folder: RunFolder, options: RunOptions) -> dict[str, Any]:
    from distill.models import load_tokenizer

    samples = read_rows(folder.samples)
    if not samples:
        raise InputError("curate: the generate stage produced no samples; check generate failures")
    cfg = recipe.curate
    out = folder.stage_dir("curate")
    chunks = read_rows(folder.chunks)
    chunk_text = {c["chunk_id"]: c["text"] for c in chunks}
    tok = load_tokenizer(recipe.student)
    embed = None
    if cfg.semantic_dedup is not None or cfg.decontam_similarity is not None:
        from distill.retrieval import embed as embed_model

        def embed(texts: list[str]) -> Any:
            return embed_model(texts, recipe.ingest.embedding_model, label="questions")

    judge = SampleJudge(recipe, out, chunk_text) if cfg.judge else None
    result = curate(
        samples,
        cfg,
        lambda t: len(tok(t, add_special_tokens=False)["input_ids"]),
        chunk_text,
        judge=judge,
        embed=embed,
        sample_tokens=lambda s: len(
            tok.apply_chat_template(
                [{"role": m["role"], "content": m["content"]} for m in s["messages"]],
                tokenize=True,
            )["input_ids"]
        ),
        max_sample_tokens=recipe.train.max_seq_length,
        split=Split.load(folder.split_file),
        split_cfg=recipe.split,
    )
    for name, kept in (
        ("train", result.train),
        ("eval", result.eval),
        ("eval_seen", result.eval_seen),
        ("rejected", result.rejected),
    ):
        tables.write(folder.curated(name), kept, CuratedSample)
    plots = histograms(out, result)
    chunk_docs = {c["chunk_id"]: c["doc_id"] for c in chunks}
    write_text(
        out / "report.md",
        report_text(samples, result, plots, cfg, chunk_docs, planned_refusal_share(recipe)),
    )
    print_funnel(len(samples), result)
    if not result.train:
        raise InputError(
            "curate: no training samples left; see curate/report.md for the reject reasons"
        )
    return {
        "samples": len(samples),
        "train": len(result.train),
        "eval": len(result.eval),
        "eval_seen": len(result.eval_seen),
        "eval_seen_decontaminated": sum(n for _, n in result.seen_funnel),
        "rejected": len(result.rejected),
        **{f"removed_by_{name.replace(' ', '_')}": n for name, n in result.funnel},
        # What the judge's calls paid in this run (priced like every teacher).
        "judge_cost_usd": round(judge.cost_usd, 6) if judge is not None else 0.0,
        "judge_price": judge.price_source if judge is not None else "no judge",
    }
