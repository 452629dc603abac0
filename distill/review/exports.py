"""Training data in the formats other tools read.

- `openai`: OpenAI fine-tuning JSONL, one `{"messages": [...]}` per line (also what
  Hugging Face chat datasets, TRL and Axolotl's `chat_template` loader read);
- `sharegpt`: a JSON list of `{"conversations": [{"from": "system"|"human"|"gpt",
  "value": ...}]}` (LLaMA-Factory, Axolotl, FastChat);
- `alpaca`: a JSON list of `{"instruction", "input", "output", "system", "history"}`
  (LLaMA-Factory's alpaca format): the last user turn is the instruction, earlier
  turns are `history` pairs.
The parquet splits themselves, with their `messages` column, load with
`datasets.load_dataset("parquet", ...)`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from distill.io import write_text

ROLE_SHAREGPT = {"system": "system", "user": "human", "assistant": "gpt"}


def openai_line(sample: dict[str, Any]) -> dict[str, Any]:
    return {"messages": [{"role": m["role"], "content": m["content"]} for m in sample["messages"]]}


def sharegpt(sample: dict[str, Any]) -> dict[str, Any]:
    return {
        "conversations": [
            {"from": ROLE_SHAREGPT[m["role"]], "value": m["content"]} for m in sample["messages"]
        ]
    }


def alpaca(sample: dict[str, Any]) -> dict[str, Any]:
    msgs = sample["messages"]
    system = "\n\n".join(m["content"] for m in msgs if m["role"] == "system")
    turns = [m for m in msgs if m["role"] != "system"]
    pairs = [
        (turns[i]["content"], turns[i + 1]["content"])
        for i in range(0, len(turns) - 1, 2)
        if turns[i]["role"] == "user" and turns[i + 1]["role"] == "assistant"
    ]
    instruction, output = pairs[-1]
    return {
        "instruction": instruction,
        "input": "",
        "output": output,
        "system": system,
        "history": [list(p) for p in pairs[:-1]],
    }


def write_exports(out: Path, split: str, samples: list[dict[str, Any]], formats: list[str]) -> None:
    """Write `split` (train or eval) in each format to `out`."""
    if "openai" in formats:
        lines = [json.dumps(openai_line(s), ensure_ascii=False) for s in samples]
        write_text(out / f"{split}.openai.jsonl", "".join(line + "\n" for line in lines))
    if "sharegpt" in formats:
        data = [sharegpt(s) for s in samples]
        write_text(out / f"{split}.sharegpt.json", json.dumps(data, ensure_ascii=False, indent=1))
    if "alpaca" in formats:
        data = [alpaca(s) for s in samples]
        write_text(out / f"{split}.alpaca.json", json.dumps(data, ensure_ascii=False, indent=1))
