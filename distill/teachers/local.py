"""A local model, run on this machine: the `local:` teacher and eval's students.

`local:REF` where REF is a hub id, a model folder, a `.gguf` file or an offline
alias (see distill.models). One class per runtime, chosen by the factory
(distill.teachers.factory) from the `engine` option:
- `llama.cpp` (LlamaCppTeacher, in distill.teachers.llamacpp): llama-cpp-python in
  process, straight from the GGUF (no de-quantised copy), JSON-schema grammar for
  structured output;
- `transformers` (TransformersTeacher, here): requests in a batch are generated
  together with left padding, several times faster than one at a time on a CPU; a
  GGUF is de-quantised once;
- `auto` (default): llama.cpp for a GGUF model when llama-cpp-python is installed,
  else transformers (saying so in one line when llama.cpp would have been used).
Both take an adapter (a PEFT adapter folder for transformers, a LoRA GGUF for
llama.cpp): eval's `ft` students are the student model with its adapter.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from functools import cache, cached_property
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from distill.config import StrictModel
from distill.errors import InputError, UserError
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

# What both runtimes sample with when the caller does not say: greedy, up to 256
# tokens (top_p applies only when sampling). The API teachers send only what is given.
MAX_TOKENS = 256
TEMPERATURE = 0.0
TOP_P = 0.9


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
    """What the two runtimes share: the `local:` options, no API bill, an optional
    adapter. The factory builds a subclass (`BACKENDS["local"]` names this one for
    its options)."""

    runs_locally = True
    Options = LocalOptions
    engine: ClassVar[str]  # the runtime, as eval's metrics name it

    def __init__(
        self,
        spec: str,
        model: str,
        options: LocalOptions | None = None,
        adapter: Path | None = None,
    ) -> None:
        super().__init__(spec, model, options or LocalOptions())
        self.options: LocalOptions
        self.adapter = adapter  # on top of the model; None: the model alone

    def another(self, adapter: bool) -> LocalTeacher:
        """This model for one more of eval's systems, answering with its adapter or
        without it (see each runtime for what it shares)."""
        raise NotImplementedError

    def release(self) -> None:
        """Free the loaded weights (they load again if asked)."""
        raise NotImplementedError


class _Weights:
    """A transformers model loaded once, with its adapter, for the teachers sharing it."""

    def __init__(self, ref: str, adapter: Path | None, dtype: Dtype) -> None:
        self.ref, self.adapter, self.dtype = ref, adapter, dtype
        self._loaded: tuple[Any, Any] | None = None

    def load(self) -> tuple[Any, Any]:
        if self._loaded is None:
            if self.adapter is not None and not (self.adapter / "adapter_config.json").exists():
                raise InputError(
                    f"no trained adapter in {self.adapter}; run `distill train RECIPE` first"
                )
            model, tok = load_causal_lm(self.ref, self.dtype)
            if self.adapter is not None:
                from peft import PeftModel

                model = PeftModel.from_pretrained(model, str(self.adapter))
                model.eval()
            self._loaded = (model, tok)
        return self._loaded

    def release(self) -> None:
        self._loaded = None


class TransformersTeacher(LocalTeacher):
    """The model through transformers: a batch is generated together (left padding).
    With an adapter (a PEFT adapter folder) it answers through it; `another` shares the
    loaded weights, so eval's base and ft systems hold one model in memory (base with
    the adapter switched off)."""

    engine = "transformers"
    adapter_off = False  # answers with its adapter switched off (eval's base systems)

    @cached_property
    def weights(self) -> _Weights:
        """The model, loaded on first use; shared with this teacher's `another`s."""
        return _Weights(self.model, self.adapter, self.options.dtype)

    def another(self, adapter: bool) -> TransformersTeacher:
        assert self.adapter is not None or not adapter, "no adapter to answer with"
        twin = TransformersTeacher(self.spec, self.model, self.options, self.adapter)
        twin.weights = self.weights
        twin.adapter_off = self.adapter is not None and not adapter
        return twin

    def release(self) -> None:
        self.weights.release()

    def complete_many(
        self,
        batch: list[list[Message]],
        *,
        schema: dict[str, Any] | None = None,
        on_done: Callable[[int, Completion], None] | None = None,
        **params: Any,
    ) -> list[Completion]:
        model, tok = self.weights.load()
        with model.disable_adapter() if self.adapter_off else contextlib.nullcontext():
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
    max_tokens: int = MAX_TOKENS,
    temperature: float = TEMPERATURE,
    top_p: float = TOP_P,
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
