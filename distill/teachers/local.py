"""A local model as teacher, run on this machine by llama.cpp or transformers.

`local:REF` where REF is a hub id, a model folder, a `.gguf` file or an offline
alias (see distill.models). The `engine` option picks the runtime:
- `llama.cpp`: llama-cpp-python in process, straight from the GGUF (no de-quantised
  copy), JSON-schema grammar for structured output (distill.teachers.llamacpp);
- `transformers`: requests in a batch are generated together with left padding,
  several times faster than one at a time on a CPU; a GGUF is de-quantised once;
- `auto` (default): llama.cpp for a GGUF model when llama-cpp-python is installed,
  else transformers (saying so in one line when llama.cpp would have been used).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import cache
from typing import Any, Literal

from pydantic import Field

from distill.config import StrictModel
from distill.errors import UserError
from distill.models import Dtype, load_causal_lm
from distill.teachers.base import (
    BatchFirstTeacher,
    Completion,
    Message,
    Usage,
    cut_at_stop,
    parse_json,
)

Engine = Literal["auto", "llama.cpp", "transformers"]


class LocalOptions(StrictModel):
    engine: Engine = Field(
        "auto",
        description="auto (llama.cpp for GGUF models when llama-cpp-python is installed, "
        "else transformers), llama.cpp or transformers.",
    )
    dtype: Dtype = Field(
        "auto",
        description="transformers: weights dtype, auto (bfloat16 where the hardware has "
        "it) or float32.",
    )
    n_ctx: int = Field(4096, ge=256, description="llama.cpp: context window in tokens.")
    n_threads: int | None = Field(
        None, ge=1, description="llama.cpp: CPU threads; null: the cores this process may use."
    )


def choose_engine(ref: str, engine: Engine) -> str:
    """'llama.cpp' or 'transformers' for model `ref` (see the module docstring)."""
    from distill.models import resolve_gguf
    from distill.teachers import llamacpp

    if engine == "transformers":
        return engine
    gguf = resolve_gguf(ref)
    if engine == "llama.cpp":
        if gguf is None:
            raise UserError(
                f"engine llama.cpp needs a GGUF model (a .gguf file or a GGUF alias), not {ref}"
            )
        llamacpp.require()
        return engine
    if gguf is not None and llamacpp.available():
        return "llama.cpp"
    if gguf is not None:
        _say_fallback(ref)
    return "transformers"


@cache
def _say_fallback(ref: str) -> None:
    from distill.ui import console

    console.print(
        f"  [yellow]![/] llama-cpp-python is not installed: {ref} runs through transformers "
        "(several times slower; `make llamacpp` or pip install 'distill[llamacpp]')"
    )


class LocalTeacher(BatchFirstTeacher):
    runs_locally = True
    Options = LocalOptions

    def __init__(self, spec: str, model: str, options: LocalOptions | None = None) -> None:
        super().__init__(spec, model, options or LocalOptions())
        self.options: LocalOptions
        self._loaded: tuple[Any, Any] | None = None
        self._llama: Any = None
        self._engine: str | None = None

    @property
    def engine(self) -> str:
        """The runtime that answers: 'llama.cpp' or 'transformers' (resolved once)."""
        if self._engine is None:
            self._engine = choose_engine(self.model, self.options.engine)
        return self._engine

    @property
    def supports_schema(self) -> bool:  # type: ignore[override]
        """llama.cpp enforces a JSON schema with a grammar; transformers does not."""
        return self.engine == "llama.cpp"

    @property
    def sends_all_at_once(self) -> bool:  # type: ignore[override]
        """llama.cpp answers one chat at a time, each timed alone: callers need not
        cut batches (and a batch's wall time is not each answer's latency)."""
        return self.engine == "llama.cpp"

    def _load(self) -> tuple[Any, Any]:
        if self._loaded is None:
            self._loaded = load_causal_lm(self.model, self.options.dtype)
        return self._loaded

    def _load_llama(self) -> Any:
        if self._llama is None:
            from distill.models import resolve_gguf
            from distill.teachers.llamacpp import LlamaCppModel

            gguf = resolve_gguf(self.model)
            assert gguf is not None
            o = self.options
            self._llama = LlamaCppModel(gguf, n_ctx=o.n_ctx, n_threads=o.n_threads)
        return self._llama

    def complete_many(
        self,
        batch: list[list[Message]],
        *,
        schema: dict[str, Any] | None = None,
        on_done: Callable[[int, Completion], None] | None = None,
        **params: Any,
    ) -> list[Completion]:
        if self.engine == "llama.cpp":
            llama = self._load_llama()
            done = []
            for i, messages in enumerate(batch):
                c = llama.chat(messages, schema=schema, **params)
                done.append(c)
                if on_done is not None:
                    on_done(i, c)
            return done
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
