"""llama.cpp's prefix reuse for judge prompts: the same grade prompt (eval_grade@v2:
rubric, two Brightdesk chunks, question, reference) with three different answers,
Qwen2.5-Coder-1.5B, first with the KV cache reset before each call, then with each
call following one that shares everything but the answer (what eval's question-by-
question order gives).

    .venv/bin/python bench/prefix_reuse.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from distill.evaluate.systems import hardware
    from distill.models import resolve_gguf
    from distill.prompts import load_template
    from distill.teachers.judge import GRADE_SCHEMA
    from distill.teachers.llamacpp import LlamaCppModel

    tpl = load_template("eval_grade@v2")
    page = sorted((ROOT / "examples" / "brightdesk" / "docs" / "billing").glob("*.md"))[0]
    text = " ".join(page.read_text().split())[:1500]
    passages = [f'<document id="1">{text}</document>', f'<document id="2">{text[:800]}</document>']

    def prompt(answer: str) -> list[dict[str, str]]:
        return tpl.render(
            passages=passages,
            question="What does the Team plan cost?",
            reference="$29 per user per month.",
            answer=answer,
        )

    gguf = resolve_gguf("qwen2.5-coder-1.5b-instruct")
    assert gguf is not None
    model = LlamaCppModel(gguf)
    model.chat(prompt("warm-up"), schema=GRADE_SCHEMA, max_tokens=8)
    print(hardware())
    for label, reset in (("cold (cache reset)", True), ("shared prefix", False)):
        times, n = [], 0
        for answer in ["It costs $29 a user.", "The Team plan is free.", "$29 per user monthly."]:
            if reset:
                model.llm.reset()
            t0 = time.perf_counter()
            c = model.chat(prompt(answer), schema=GRADE_SCHEMA, max_tokens=40)
            times.append(time.perf_counter() - t0)
            n = c.usage.input_tokens
        print(f"{label:<20} {n} prompt tokens: " + ", ".join(f"{t:.2f} s" for t in times))


if __name__ == "__main__":
    main()
