"""Training throughput on the CPU: distill's train stage against a plain TRL
SFTTrainer script with identical settings on the same data, and distill with packing.

The data: 48 grounded conversations built from the Brightdesk example corpus (a
system prompt, one or two numbered documents and a question; a one- to three-
sentence answer), 150-520 tokens each, like the quickstart's samples. The student
is the offline SmolLM2-135M-Instruct; LoRA r=16 on q/k/v/o, batch 8, one epoch (6
optimizer steps), max length 768, bf16 mixed precision where the CPU has it.

Each configuration runs in its own process, so its peak memory (max RSS) is its
own. Tokens/s counts the tokens of the prepared training rows (prompt + answer, no
padding) over the wall time of `trainer.train()`; the plain script's rows are the
ones TRL's own chat-template tokenization makes from the same conversations.

Goal (issue 7): distill / plain TRL >= 1.0 tokens/s; report the packing gain. The
"lean" pair runs both with the quickstart's settings (packing, gradient
checkpointing, no LoRA dropout): peak memory beside tokens/s.

    .venv/bin/python bench/train_cpu.py [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STUDENT = "smollm2-135m-instruct"
SETTINGS = dict(batch_size=8, epochs=1.0, max_seq_length=768, lora_r=16, lora_alpha=32)


def conversations(n: int = 48, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    paras = []
    for f in sorted((ROOT / "examples" / "brightdesk" / "docs").rglob("*.md")):
        for p in re.split(r"\n\s*\n", f.read_text(encoding="utf-8")):
            if len(p.split()) > 25 and not p.startswith("#"):
                paras.append(" ".join(p.split()))
    rows = []
    for i in range(n):
        docs = rng.sample(paras, rng.choice([1, 2]))
        numbered = "\n".join(
            f'<document id="{k}">\n{d}\n</document>' for k, d in enumerate(docs, 1)
        )
        sentences = re.split(r"(?<=[.!?])\s", docs[0])
        answer = " ".join(sentences[: rng.choice([1, 2, 3])]) + " [1]"
        question = "What does the documentation say about " + " ".join(docs[0].split()[:6]) + "?"
        rows.append(
            {
                "sample_id": f"b{i}",
                "messages": [
                    {"role": "system", "content": "Answer from the numbered documents; cite them."},
                    {"role": "user", "content": f"{numbered}\n\nQuestion: {question}"},
                    {"role": "assistant", "content": answer},
                ],
            }
        )
    return rows


def peak_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# The quickstart's lean settings: packed rows, activations recomputed, no
# LoRA dropout.
LEAN = {"packing": True, "gradient_checkpointing": True, "lora_dropout": 0.0}


def run_distill(packing: bool, lean: bool = False) -> dict[str, Any]:
    import tempfile

    from distill.train.config import TrainConfig
    from distill.train.sft import train_adapter

    cfg = TrainConfig.model_validate(
        {
            **SETTINGS,
            "packing": packing,
            "save_steps": 1000,
            "eval_steps": 1000,
            **(LEAN if lean else {}),
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        m = train_adapter(STUDENT, cfg, conversations(), Path(tmp))
    return {
        "tokens_per_second": m.tokens_per_second,
        "train_seconds": m.seconds,
        "steps": m.steps,
        "peak_mb": peak_mb(),
    }


def run_plain_trl(lean: bool = False) -> dict[str, Any]:
    """What a user would write with TRL alone: the same model, LoRA and arguments.
    `lean`: the quickstart's settings, packed rows sent one at a time on the CPU and
    accumulated to the same batch as distill does (TRL's flattened packed batch needs
    FlashAttention to stay small)."""
    import tempfile

    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from distill.models import inference_dtype, resolve_causal_lm
    from distill.train.common import _checkpointing_arg

    path = resolve_causal_lm(STUDENT).path
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    data = Dataset.from_list(
        [{"prompt": r["messages"][:-1], "completion": r["messages"][-1:]} for r in conversations()]
    )
    with tempfile.TemporaryDirectory() as tmp:
        args = SFTConfig(
            output_dir=tmp,
            num_train_epochs=SETTINGS["epochs"],
            learning_rate=2e-4,
            lr_scheduler_type="cosine",
            per_device_train_batch_size=1 if lean else SETTINGS["batch_size"],
            gradient_accumulation_steps=SETTINGS["batch_size"] if lean else 1,
            packing=lean,
            packing_strategy="bfd",
            max_length=SETTINGS["max_seq_length"],
            logging_steps=1,
            save_strategy="no",
            report_to=[],
            disable_tqdm=True,
            use_cpu=True,
            bf16=inference_dtype("auto") == torch.bfloat16,
            dataloader_num_workers=0,
            seed=0,
            # TRL's SFTConfig turns checkpointing on by default; distill's default (and
            # the setting compared here) is off, the lean settings' on.
            **{_checkpointing_arg(SFTConfig): lean},
        )
        lora = LoraConfig(
            r=SETTINGS["lora_r"],
            lora_alpha=SETTINGS["lora_alpha"],
            lora_dropout=0.0 if lean else 0.05,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
            task_type="CAUSAL_LM",
        )
        trainer = SFTTrainer(
            model=model, args=args, train_dataset=data, processing_class=tok, peft_config=lora
        )
        t0 = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t0
        ds = trainer.train_dataset
        if "seq_lengths" in ds.column_names:  # packed rows: their real tokens only
            tokens = sum(sum(x) for x in ds["seq_lengths"])
        else:
            tokens = sum(len(x) for x in ds["input_ids"])
    return {
        "tokens_per_second": round(tokens * SETTINGS["epochs"] / seconds, 1),
        "train_seconds": round(seconds, 1),
        "steps": trainer.state.global_step,
        "peak_mb": peak_mb(),
    }


def one(kind: str) -> dict[str, Any]:
    if kind.startswith("plain-trl"):
        return run_plain_trl(lean=kind.endswith("lean"))
    return run_distill(packing=kind == "distill+packing", lean=kind.endswith("lean"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one)))
        return
    kinds = ["plain-trl", "distill", "distill+packing", "plain-trl lean", "distill lean"]
    results: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    for _ in range(a.repeat):
        for kind in kinds:
            out = subprocess.run(
                [sys.executable, __file__, "--one", kind],
                capture_output=True,
                text=True,
                check=True,
            )
            results[kind].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{'configuration':<16} {'tokens/s':>9} {'train s':>8} {'steps':>6} {'peak MB':>8}")
    best = {}
    for kind in kinds:
        r = max(results[kind], key=lambda x: x["tokens_per_second"])
        best[kind] = r
        print(
            f"{kind:<16} {r['tokens_per_second']:>9} {r['train_seconds']:>8} {r['steps']:>6} "
            f"{r['peak_mb']:>8}"
        )
    base = best["plain-trl"]["tokens_per_second"]
    print(f"distill / plain TRL tokens/s: {best['distill']['tokens_per_second'] / base:.2f}")
    packed, plain = best["distill+packing"], best["distill"]
    speed = packed["tokens_per_second"] / plain["tokens_per_second"]
    wall = plain["train_seconds"] / packed["train_seconds"]
    print(f"packing: {speed:.2f}x tokens/s, {wall:.2f}x less wall time per epoch")
    lean, plain_lean = best["distill lean"], best["plain-trl lean"]
    print(
        f"lean (the quickstart's settings): distill / plain TRL tokens/s "
        f"{lean['tokens_per_second'] / plain_lean['tokens_per_second']:.2f}, peak "
        f"{lean['peak_mb']:.0f} MB against {plain_lean['peak_mb']:.0f} MB"
    )


if __name__ == "__main__":
    main()
