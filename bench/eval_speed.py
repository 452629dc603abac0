"""Eval's student answers through llama.cpp: prompt order and the loop stop.

Takes the first 30 `base+rag` answers of a finished eval (their questions and the
chunks retrieval gave them), rebuilds the prompts and answers them with SmolLM2
four ways: one at a time with the KV cache reset before each, the same with replies
cut where they start repeating themselves, in the order of their text (a shared
first chunk is evaluated once), and both; then the first and last way again on the
model's weights re-encoded as f16 and as bf16 (`eval.gguf_type`).

    .venv/bin/python bench/eval_speed.py [RUN_FOLDER]   # default: runs/quickstart
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from distill.evaluate.systems import LOOP_TOKENS, hardware
    from distill.gguf_cpu import gguf_for_cpu
    from distill.grounding import ANSWER_STOP, numbered
    from distill.io import read_rows
    from distill.models import resolve_gguf
    from distill.prompts import load_template
    from distill.teachers.llamacpp import LlamaCppModel

    run = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "runs" / "quickstart"
    chunks = {c["chunk_id"]: c for c in read_rows(run / "ingest" / "chunks.parquet")}
    answers = [a for a in read_rows(run / "eval" / "answers.parquet") if a["system"] == "base+rag"]
    tpl = load_template("grounded_answer@v1")
    prompts = [
        tpl.render(
            passages=numbered([chunks[c] for c in a["retrieved_chunk_ids"]]),
            question=a["question"],
        )
        for a in answers[:30]
    ]
    gguf = resolve_gguf("smollm2-135m-instruct")
    assert gguf is not None
    print(f"{hardware()}; {len(prompts)} base+rag prompts from {run}\n")
    print("| weights | how the prompts ran | s per answer | output tokens |")
    print("| --- | --- | --- | --- |")
    ordered = sorted(prompts, key=str)
    ways = (
        ("one at a time, cache reset before each", prompts, True, None),
        ("the same, replies cut where they repeat", prompts, True, LOOP_TOKENS),
        ("in the order of their text", ordered, False, None),
        ("both", ordered, False, LOOP_TOKENS),
    )
    for weights in ("as_is", "f16", "bf16"):
        model = LlamaCppModel(gguf_for_cpu(gguf, weights))  # type: ignore[arg-type]
        model.chat(prompts[0], max_tokens=4)  # load and warm up
        for label, batch, reset, loops in ways if weights == "as_is" else ways[::3]:
            t0, out = time.perf_counter(), 0
            for p in batch:
                if reset:
                    model.llm.reset()
                c = model.chat(
                    p, max_tokens=128, temperature=0.0, stop=ANSWER_STOP, stop_loops=loops
                )
                out += c.usage.output_tokens
            per = (time.perf_counter() - t0) / len(batch)
            name = gguf.name if weights == "as_is" else weights
            print(f"| {name} | {label} | {per:.2f} | {out / len(batch):.0f} |", flush=True)


if __name__ == "__main__":
    main()
