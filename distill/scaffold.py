"""`distill init DOCS`: a commented recipe for a corpus, sized from it.

It ingests the corpus (local and free: reading, chunking, embedding, into the run
folder `distill run` will use, so that run starts at generate), sizes generation
from the chunk count (about TARGET_SAMPLES training samples, at most
MAX_SAMPLES_PER_CHUNK per chunk, a seeded sample of MAX_CHUNKS chunks for a large
corpus), holds out a share of the documents that leaves at least two for
evaluation, estimates the teacher's requests and cost (`distill estimate`), and
writes it all as a recipe whose comments say what each choice is and how to change
it. `distill run` accepts the file as it is.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
from pathlib import Path
from typing import Any

import yaml

from distill.errors import UserError
from distill.recipe import load_recipe

TARGET_SAMPLES = 600
MAX_SAMPLES_PER_CHUNK = 4
MAX_CHUNKS = 1500
DEFAULT_TEACHER = "local:qwen2.5-coder-0.5b-instruct"  # offline; a frontier API is better
DEFAULT_STUDENT = "smollm2-135m-instruct"
GENERIC_NAMES = {"docs", "doc", "documents", "data", "corpus", "content", "pages", "text"}


def slug(text: str) -> str:
    name = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return name or "my-corpus"


def sizing(documents: int, chunks: int) -> dict[str, Any]:
    """Generation and split sizes for a corpus of `documents` and `chunks`."""
    used = min(chunks, MAX_CHUNKS)
    per_chunk = max(1, min(MAX_SAMPLES_PER_CHUNK, math.ceil(TARGET_SAMPLES / max(used, 1))))
    # At least two documents held out (one is an anecdote), about a fifth of a large corpus.
    eval_fraction = 0.2 if documents >= 10 else min(0.5, round(2 / max(documents, 2) + 0.05, 2))
    return {
        "max_chunks": used if chunks > MAX_CHUNKS else None,
        "samples_per_chunk": per_chunk,
        "eval_fraction": eval_fraction,
        # The promise of at least two held out, kept by the split (hashes alone miss it
        # for about a quarter of seeds on a small corpus).
        "min_eval_documents": 2 if documents >= 3 else 1,
        "epochs": 3 if used * per_chunk < 300 else 2,
    }


TEMPLATE = """\
# distill recipe for {docs}, written by `distill init` on {date}.
#
# The corpus: {inputs} files read ({skipped} skipped, reasons in {report}),
# {documents} documents, {chunks} chunks, {tokens:,} tokens. Ingest has run already
# ({run}/ingest), so `distill run {out}` starts at generate.
# Generate, as sized below: {requests:,} teacher requests, ~{input_tokens:,} input and
# ~{output_tokens:,} output tokens (at most {output_max:,}): {cost}.
# The plan's {coverage}.
# Check again after any change: distill estimate {out}
# Every key with its default and meaning: distill fields. Run it: distill run {out}
name: {name}
description: {description}

# PROVIDER:MODEL of the teacher that writes the training data: openai:MODEL,
# anthropic:MODEL, any OpenAI-compatible server ({{model: openai:MODEL, options:
# {{base_url: URL}}}}), or local:MODEL (offline aliases, a .gguf or a folder).
teacher: {teacher}
student: {student}  # the model the adapter is trained for (runs here)
split:
  eval_fraction: {eval_fraction}        # of the documents, held out before generation
  min_eval_documents: {min_eval}     # at least this many held out, whatever the hashes say
  seen_eval_fraction: 0.15  # training-document questions held out (knowledge absorbed)

ingest:
{ingest}
generate:
  # Plain questions, RAFT (the answer among distractors, or absent: then the target
  # says so), requests over a page, and two-turn conversations.
  tasks: {{qa: 0.4, raft: 0.4, instructions: 0.1, multi_turn: 0.1}}
  raft: {{no_oracle_share: 0.4}}
  samples_per_chunk: {samples_per_chunk}   # {planned} samples from {used} chunks (aim: ~{target})
  max_chunks: {max_chunks}          # null: every chunk; else a seeded sample
  max_cost_usd: {max_cost}          # generation stops before spending more (null: no cap)

review:
  mode: auto                # argilla: a spot-check for people gates training

train:
  epochs: {epochs}
  packing: true
  max_seq_length: 1024

eval:
  systems: [teacher, base, base+rag, ft, ft+rag]
  max_questions: 100
  judge: null               # null: the teacher grades; set a strong model to trust the verdict
"""


def init(
    docs: Path,
    out: Path,
    teacher: str | None = None,
    student: str | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Write the recipe `out` for the corpus `docs`; return what was measured."""

    if not docs.exists():
        raise UserError(f"init: {docs} does not exist; give the folder (or file) of documents")
    if out.exists() and not force:
        raise UserError(f"init: {out} exists; choose another -o or pass --force to replace it")
    out = out.resolve()
    try:
        return _scaffold(docs, out, teacher, student)
    except BaseException:
        out.unlink(missing_ok=True)  # no half-written recipe is left behind
        raise


def _scaffold(docs: Path, out: Path, teacher: str | None, student: str | None) -> dict[str, Any]:
    from distill.generate.estimate import coverage_line, estimate
    from distill.pipeline import run_pipeline
    from distill.preflight import problems
    from distill.runfolder import RunFolder

    where = docs.resolve()
    # Relative to the recipe when the documents sit beside or below it, else absolute.
    rel = (
        where.relative_to(out.parent).as_posix()
        if where.is_relative_to(out.parent)
        else where.as_posix()
    )
    name = slug(where.name if where.is_dir() else where.stem)
    if name in GENERIC_NAMES:  # docs/ says little: brightdesk/docs -> brightdesk
        name = slug(where.parent.name)
    # JSON strings are YAML scalars that stay strings ('fake:' alone is a mapping).
    teacher = json.dumps(teacher or DEFAULT_TEACHER)
    student = json.dumps(student or DEFAULT_STUDENT)
    ingest = yaml.safe_dump({"paths": [rel]}, default_flow_style=False, indent=2).rstrip()
    ingest = "\n".join("  " + line for line in ingest.splitlines())
    about = json.dumps(f"Questions and answers about {docs.resolve().name}.")
    values: dict[str, Any] = dict(
        docs=" ".join(str(docs).split()), description=about, name=name, ingest=ingest,
        teacher=teacher,
        student=student, out=out.name, date=dt.date.today().isoformat(), target=TARGET_SAMPLES,
        max_cost="null",
    )  # fmt: skip
    # First ingest with a provisional sizing; then size from what it found.
    draft = dict(
        values, samples_per_chunk=1, max_chunks="null", eval_fraction=0.2, min_eval=1, epochs=2
    )
    sized = _write(out, draft, measured=None)
    recipe = load_recipe(sized)
    blocking = problems(recipe, ["ingest"])
    if blocking:
        out.unlink(missing_ok=True)
        raise UserError("init: " + "; ".join(blocking))
    run_pipeline(recipe, only="ingest")
    run = RunFolder(recipe.run_path)
    counts = run.stage("ingest")["counts"]
    plan = sizing(counts["documents"], counts["chunks"])
    values.update(
        samples_per_chunk=plan["samples_per_chunk"],
        max_chunks="null" if plan["max_chunks"] is None else plan["max_chunks"],
        eval_fraction=plan["eval_fraction"],
        min_eval=plan["min_eval_documents"],
        epochs=plan["epochs"],
        used=plan["max_chunks"] or counts["chunks"],
        planned=plan["samples_per_chunk"] * (plan["max_chunks"] or counts["chunks"]),
    )
    _write(out, dict(draft, **values), measured=None)
    recipe = load_recipe(out)
    est = estimate(recipe, run)
    total = est["total"]
    cost = (
        f"${total['cost_usd_expected']:.2f} expected, ${total['cost_usd_max']:.2f} at most"
        if est["price_per_1m"]
        else est["price"]
    )
    measured = dict(
        inputs=counts["inputs"], skipped=counts["skipped"], documents=counts["documents"],
        chunks=counts["chunks"], tokens=counts["corpus_tokens"],
        report=Path(os.path.relpath(run.ingest_dir / "report.md")).as_posix(),
        run=Path(os.path.relpath(run.root)).as_posix(), requests=total["requests"],
        input_tokens=total["input_tokens"], output_tokens=total["output_tokens_expected"],
        output_max=total["output_tokens_max"], cost=cost, coverage=coverage_line(est["coverage"]),
    )  # fmt: skip
    if est["price_per_1m"]:  # a cap at twice the expectation: an overrun stops, not surprises
        values["max_cost"] = f"{max(2 * total['cost_usd_expected'], 0.01):.2f}"
    _write(out, dict(draft, **values), measured=measured)
    final = load_recipe(out)  # what was written is a valid recipe
    return {**measured, **plan, "recipe": str(out), "problems": problems(final)}


def _write(out: Path, values: dict[str, Any], measured: dict[str, Any] | None) -> Path:
    from distill.io import write_text

    placeholders = dict(
        inputs="?", skipped="?", documents="?", chunks="?", tokens=0, report="?", run="?",
        requests=0, input_tokens=0, output_tokens=0, output_max=0, cost="not estimated yet",
        coverage="coverage: not estimated yet",
        used="?", planned="?",
    )  # fmt: skip
    write_text(out, TEMPLATE.format(**{**placeholders, **values, **(measured or {})}))
    return out
