"""A local model as teacher, run through transformers on this machine.

`local:REF` where REF is a hub id, a model folder, a `.gguf` file or an offline
alias (see distill.models). Requests in a batch are generated together with left
padding, which is several times faster than one at a time on a CPU.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pydantic import Field

from distill.models import Dtype, load_causal_lm
from distill.recipe import StrictModel
from distill.teachers.base import (
    BatchFirstTeacher,
    Completion,
    Message,
    Usage,
    cut_at_stop,
    parse_json,
)


class LocalOptions(StrictModel):
    dtype: Dtype = Field(
        "auto", description="Weights dtype: auto (bfloat16 where the hardware has it), float32."
    )


class LocalTeacher(BatchFirstTeacher):
    supports_batching = True
    Options = LocalOptions

    def __init__(self, spec: str, model: str, options: LocalOptions | None = None) -> None:
        super().__init__(spec, model, options or LocalOptions())
        self.options: LocalOptions
        self._loaded: tuple[Any, Any] | None = None

    def _load(self) -> tuple[Any, Any]:
        if self._loaded is None:
            self._loaded = load_causal_lm(self.model, self.options.dtype)
        return self._loaded

    def complete_many(
        self,
        batch: list[list[Message]],
        *,
        schema: dict[str, Any] | None = None,
        on_done: Callable[[int, Completion], None] | None = None,
        **params: Any,
    ) -> list[Completion]:
        model, tok = self._load()
        out = generate_batch(model, tok, batch, schema=schema, **params)
        for i, c in enumerate(out):
            if on_done is not None:
                on_done(i, c)
        return out


def generate_batch(
    model: Any,
    tok: Any,
    batch: list[list[Message]],
    *,
    schema: dict[str, Any] | None = None,
    max_tokens: int = 256,
    temperature: float = 0.0,
    top_p: float = 0.9,
    seed: int | None = None,
    stop: list[str] | None = None,
) -> list[Completion]:
    """Generate replies for a batch of chats with a loaded transformers model. A chat
    whose last message is the assistant's is continued (the reply is the continuation)."""
    import torch

    # A chat ending with an assistant message is continued from it (a prefill).
    prompts = [
        tok.apply_chat_template(m, tokenize=False, continue_final_message=True)
        if m[-1]["role"] == "assistant"
        else tok.apply_chat_template(m, add_generation_prompt=True, tokenize=False)
        for m in batch
    ]
    tok.padding_side = "left"
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    sampling: dict[str, Any] = (
        {"do_sample": True, "temperature": temperature, "top_p": top_p}
        if temperature > 0
        else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    )
    if seed is not None:
        torch.manual_seed(seed)
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(
            **enc, max_new_tokens=max_tokens, pad_token_id=tok.pad_token_id, **sampling
        )
    latency = (time.perf_counter() - t0) / len(batch)
    new = out[:, enc["input_ids"].shape[1] :]
    eos = _eos_ids(model, tok)
    results = []
    for row, mask in zip(new, enc["attention_mask"], strict=True):
        ids = row.tolist()
        # Count generated tokens up to and including the first end-of-sequence token.
        ended = next((i + 1 for i, t in enumerate(ids) if t in eos), None)
        n_out = ended or len(ids)
        decoded = tok.decode(ids[:n_out], skip_special_tokens=True).strip()
        text = cut_at_stop(decoded, stop)
        results.append(
            Completion(
                text=text.strip(),
                parsed=parse_json(text) if schema else None,
                usage=Usage(int(mask.sum()), n_out),
                latency_s=latency,
                finish_reason="stop" if ended or text != decoded else "length",
            )
        )
    return results


def _eos_ids(model: Any, tok: Any) -> set[int]:
    eos = model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos]) if eos is not None else set()
    if tok.eos_token_id is not None:
        ids.add(tok.eos_token_id)
    return ids
