"""llama.cpp against transformers for local models: prompt and generation tokens/s.

The same chats go to both engines, greedy, one at a time (a teacher's or judge's
calls): a grounded prompt of about 250 tokens (three Brightdesk chunks and a
question) and `--new` tokens out. Prompt tokens/s is the prompt's tokens over the
time to the first generated token; generation tokens/s is the remaining tokens
over the remaining time (llama.cpp streamed; transformers timed with one new token,
then with all of them). transformers runs the GGUF de-quantised (float32 here, or
bfloat16 with --dtype), llama.cpp the GGUF itself.

Goal: llama.cpp >= 4x transformers for generation.

    .venv/bin/python bench/local_engines.py [--models ALIAS,ALIAS] [--new 48]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DOCS = ROOT / "examples" / "brightdesk" / "docs"


def prompts(n: int) -> list[list[dict[str, str]]]:
    pages = sorted(DOCS.rglob("*.md"))[:n]
    out = []
    for page in pages:
        text = " ".join(page.read_text().split())[:1100]
        out.append(
            [
                {"role": "system", "content": "Answer from the documents only; cite them as [1]."},
                {
                    "role": "user",
                    "content": f'<document id="1">{text}</document>\n\n'
                    f"What does the page {page.stem.replace('-', ' ')} say is most important?",
                },
            ]
        )
    return out


def bench_llamacpp(alias: str, chats: list[Any], new: int) -> dict[str, float]:
    from distill.models import resolve_gguf
    from distill.teachers.llamacpp import LlamaCppModel

    gguf = resolve_gguf(alias)
    assert gguf is not None
    model = LlamaCppModel(gguf).llm
    model.create_chat_completion(chats[0], max_tokens=4)  # warm-up
    p_rate, g_rate = [], []
    for chat in chats:
        model.reset()  # no prefix reuse between prompts: measure the prompt itself
        t0 = time.perf_counter()
        first = None
        n = 0
        for chunk in model.create_chat_completion(
            chat, max_tokens=new, temperature=0.0, top_k=1, stream=True
        ):
            if chunk["choices"][0]["delta"].get("content"):
                n += 1
                if first is None:
                    first = time.perf_counter()
        end = time.perf_counter()
        n_prompt = _prompt_tokens(model, chat)
        assert first is not None
        p_rate.append(n_prompt / (first - t0))
        if n > 1:
            g_rate.append((n - 1) / (end - first))
    return {"prompt": statistics.median(p_rate), "generation": statistics.median(g_rate)}


def _prompt_tokens(model: Any, chat: list[dict[str, str]]) -> int:
    out = model.create_chat_completion(chat, max_tokens=1)
    return int(out["usage"]["prompt_tokens"])


def bench_transformers(alias: str, chats: list[Any], new: int, dtype: str) -> dict[str, float]:
    import torch

    from distill.models import load_causal_lm

    model, tok = load_causal_lm(alias, dtype)  # type: ignore[arg-type]
    p_rate, g_rate = [], []
    for chat in chats:
        ids = tok.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt")
        ids = ids["input_ids"] if not torch.is_tensor(ids) else ids
        with torch.inference_mode():
            t0 = time.perf_counter()
            model.generate(ids, max_new_tokens=1, do_sample=False, pad_token_id=tok.pad_token_id)
            t1 = time.perf_counter()
            out = model.generate(
                ids, max_new_tokens=new, do_sample=False, pad_token_id=tok.pad_token_id
            )
            t2 = time.perf_counter()
        n = out.shape[1] - ids.shape[1]
        p_rate.append(ids.shape[1] / (t1 - t0))
        if n > 1:
            g_rate.append((n - 1) / max(1e-9, (t2 - t1) - (t1 - t0)))
    return {"prompt": statistics.median(p_rate), "generation": statistics.median(g_rate)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="smollm2-135m-instruct,qwen2.5-coder-0.5b-instruct")
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--new", type=int, default=48)
    ap.add_argument("--dtype", default="float32")
    args = ap.parse_args()
    from distill.evaluate.systems import hardware

    chats = prompts(args.prompts)
    print(f"{hardware()}; {len(chats)} grounded prompts, {args.new} new tokens, greedy")
    print(f"{'model':<30} {'engine':<13} {'prompt tok/s':>12} {'gen tok/s':>10}")
    for alias in args.models.split(","):
        fast = bench_llamacpp(alias, chats, args.new)
        slow = bench_transformers(alias, chats, args.new, args.dtype)
        for name, r in (("llama.cpp", fast), (f"transformers ({args.dtype})", slow)):
            print(f"{alias:<30} {name:<13} {r['prompt']:>12.1f} {r['generation']:>10.1f}")
        print(
            f"{alias:<30} {'ratio':<13} {fast['prompt'] / slow['prompt']:>11.1f}x "
            f"{fast['generation'] / slow['generation']:>9.1f}x"
        )


if __name__ == "__main__":
    main()
