"""Student answering on the CPU: batched generation (as the eval stage does it) against
one question at a time.

The prompts are what `ft+rag` sees: the grounded_answer template with the top 2
chunks of the Brightdesk example corpus for a question (hybrid retrieval, the
quickstart's settings), for N questions built from the corpus's headings. The model
is the offline SmolLM2-135M-Instruct (greedy, max 96 new tokens, the eval's stop
strings). Both runs answer the same prompts after a warm-up.

Reported: answers/s and output tokens/s for each, the ratio, the per-answer latency
(p50/p95; batched answers wait for their batch), and how many answers are identical
token for token (left padding can change a float32 argmax now and then).

Goal: batched generation faster than one at a time; report the ratio.

    .venv/bin/python bench/eval.py [--questions 32] [--batch 8]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STUDENT = "smollm2-135m-instruct"


def prompts(n: int) -> list[list[dict[str, str]]]:
    """Retrieval prompts for n questions about the example corpus."""
    from distill.grounding import numbered
    from distill.ingest.stage import run as ingest_run
    from distill.prompts import load_templates
    from distill.recipe import load_recipe
    from distill.retrieval import Retriever
    from distill.runfolder import RunFolder, RunOptions

    work = Path(tempfile.mkdtemp(prefix="distill-bench-eval-"))
    recipe_path = work / "recipe.yaml"
    recipe_path.write_text(
        f"name: bench\nrun_dir: {work}\ningest:\n  paths: [{ROOT / 'examples/brightdesk/docs'}]\n"
        "  chunk_tokens: 256\n  chunk_overlap: 32\n"
    )
    recipe = load_recipe(recipe_path)
    run = RunFolder(recipe.run_path)
    ingest_run(recipe, run, RunOptions())
    retriever = Retriever(run.ingest_dir, recipe.retrieval)
    headings = list(dict.fromkeys(c["heading_path"].split(" > ")[-1] for c in retriever.chunks))
    questions = [f"What does the help centre say about {h.lower()}?" for h in headings][:n]
    tpl = load_templates(recipe).answer
    hits = retriever.retrieve_many(questions, 2)
    return [
        tpl.render(passages=numbered([c for c, _ in h]), question=q)
        for q, h in zip(questions, hits, strict=True)
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--questions", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    args = ap.parse_args()

    from distill.evaluate.metrics import percentile
    from distill.grounding import ANSWER_STOP
    from distill.models import inference_dtype, load_causal_lm
    from distill.teachers.local import generate_batch

    chats = prompts(args.questions)
    model, tok = load_causal_lm(STUDENT, "auto")
    params = {"max_tokens": args.max_new_tokens, "temperature": 0.0, "stop": ANSWER_STOP}
    generate_batch(model, tok, chats[:2], **params)  # warm-up

    results = {}
    for label, size in (("one at a time", 1), (f"batches of {args.batch}", args.batch)):
        texts, tokens, latencies = [], 0, []
        t0 = time.perf_counter()
        for i in range(0, len(chats), size):
            batch = chats[i : i + size]
            b0 = time.perf_counter()
            out = generate_batch(model, tok, batch, **params)
            wall = time.perf_counter() - b0
            latencies += [wall] * len(batch)
            texts += [c.text for c in out]
            tokens += sum(c.usage.output_tokens for c in out)
        elapsed = time.perf_counter() - t0
        results[label] = (elapsed, tokens, texts, latencies)
        print(
            f"{label:>16}: {len(chats) / elapsed:5.2f} answers/s, {tokens / elapsed:6.1f} "
            f"output tokens/s, {elapsed:6.1f} s, latency p50 {percentile(latencies, 50):.2f} s "
            f"p95 {percentile(latencies, 95):.2f} s"
        )
    (single, _, one_texts, _), (batched, _, batch_texts, _) = results.values()
    same = sum(a == b for a, b in zip(one_texts, batch_texts, strict=True))
    print(
        f"{len(chats)} questions, {STUDENT} in {str(inference_dtype('auto')).split('.')[-1]}, "
        f"max {args.max_new_tokens} new tokens"
    )
    print(f"batched / one at a time: {single / batched:.2f}x answers/s")
    print(f"identical answers: {same}/{len(chats)}")


if __name__ == "__main__":
    main()
