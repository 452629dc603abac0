"""llama.cpp in process (llama-cpp-python), straight from a GGUF file: the llama.cpp
runtime of a local model (LlamaCppTeacher; distill.teachers.local has the other).

One loaded model answers chats one at a time (llama.cpp on a CPU gains little from
batching small requests). Structured output goes through llama.cpp's JSON-schema
grammar, so a verdict always parses. llama-cpp-python keeps the previous prompt's
KV cache and re-evaluates only the tokens after the longest common prefix, so
prompts that start alike (the same system prompt, the judge's rubric before the
answer) pay for their shared start once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from distill.errors import MissingExtraError, TeacherError, UserError
from distill.prompts import register_special_tokens
from distill.teachers.base import Completion, Message, Usage, cut_at_stop, parse_json
from distill.teachers.local import MAX_TOKENS, TEMPERATURE, TOP_P, LocalOptions, LocalTeacher

INSTALL = "'llama-cpp-python==0.3.36' (or: pip install 'distill[llamacpp]'; ~12 min to compile)"


@cache
def available() -> bool:
    """Is llama-cpp-python importable? (Checked without importing it.)"""
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def require() -> None:
    """A one-line error naming the install when llama-cpp-python is missing."""
    if not available():
        raise MissingExtraError("llama-cpp-python (for engine: llama.cpp)", INSTALL)


def threads() -> int:
    """llama.cpp's threads: the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def bounded(schema: dict[str, Any], max_tokens: int) -> dict[str, Any]:
    """The schema with a maxLength on each free string field, so the reply closes within
    `max_tokens` even at one character per token: a grammar forces valid JSON only if
    the reply is not cut first (a small judge can loop inside its "reason")."""
    props = schema.get("properties") or {}
    free = [
        k
        for k, v in props.items()
        if v.get("type") == "string" and not {"enum", "maxLength"} & set(v)
    ]
    if not free:
        return schema
    # Keys, quotes, braces and numbers: about 12 tokens a field, in the worst case.
    room = max(8, (max_tokens - 12 * len(props)) // len(free))
    return {
        **schema,
        "properties": {k: {**v, "maxLength": room} if k in free else v for k, v in props.items()},
    }


def control_tokens(llm: Any) -> list[str]:
    """The text of every control token in a loaded model's vocabulary (its chat roles,
    end of turn, ...): documents must not spell them (distill.prompts.defuse)."""
    import llama_cpp

    vocab = llm._model
    control = llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED
    out = []
    for t in range(vocab.n_vocab()):
        if vocab.token_get_attr(t) & control:
            try:
                out.append(vocab.token_get_text(t))
            except UnicodeDecodeError:
                continue
    return out


class LoopStop:
    """A llama.cpp logits processor that ends a reply once it starts repeating itself:
    when the last `n` generated tokens already occurred, in that order, earlier in the
    reply, only the end-of-text token may follow. A small model that loops ("If you
    still cannot get in, ..." over and over until the token cap) costs its decoding
    time and adds nothing a reader or the key-fact check would use. `cut` is where the
    repeat began (in generated tokens), so the reply can be trimmed to before it."""

    def __init__(self, n: int, eos: int) -> None:
        self.n, self.eos = n, eos
        self.start: int | None = None
        self.seen: set[tuple[int, ...]] = set()
        self.cut: int | None = None

    def __call__(self, input_ids: Any, logits: Any) -> Any:
        if self.start is None:
            self.start = len(input_ids)  # the first call sees the prompt alone
        generated = input_ids[self.start :]
        if self.cut is None and len(generated) >= self.n:
            gram = tuple(int(t) for t in generated[-self.n :])
            if gram in self.seen:
                self.cut = len(generated) - self.n
            self.seen.add(gram)
        if self.cut is not None:
            import numpy as np

            logits[:] = -np.inf
            logits[self.eos] = 0.0
        return logits


class LlamaCppModel:
    """A GGUF loaded once; `chat` answers one conversation."""

    def __init__(
        self,
        gguf: Path,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        lora: Path | None = None,
        seed: int = 0,
    ) -> None:
        require()
        from llama_cpp import Llama

        self.gguf, self.lora = gguf, lora
        self.llm = Llama(
            model_path=str(gguf),
            n_ctx=n_ctx,
            n_threads=n_threads or threads(),
            n_batch=512,
            lora_path=str(lora) if lora else None,
            seed=seed,
            verbose=False,
        )
        register_special_tokens(control_tokens(self.llm))

    @staticmethod
    def request(
        messages: list[Message],
        schema: dict[str, Any] | None,
        max_tokens: int,
        temperature: float,
        top_p: float,
        seed: int | None,
        stop: list[str] | None,
    ) -> dict[str, Any]:
        """create_chat_completion's arguments for one reply (greedy at temperature 0):
        `chat`'s, and `distill serve`'s streamed replies."""
        if messages and messages[-1]["role"] == "assistant":
            # A prefill (the start of a JSON reply) is what a grammar does better: the
            # schema constrains the whole reply, so the partial message is dropped.
            if schema is None:
                raise UserError("llama.cpp chats cannot continue an assistant message")
            messages = messages[:-1]
        kwargs: dict[str, Any] = {
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "top_p": top_p if temperature > 0 else 1.0,
            "stop": stop or None,
        }
        if temperature == 0:
            kwargs["top_k"] = 1  # greedy
        if seed is not None:
            kwargs["seed"] = seed
        if schema is not None:
            kwargs["response_format"] = {
                "type": "json_object",
                "schema": bounded(schema, max_tokens),
            }
        return kwargs

    def chat(
        self,
        messages: list[Message],
        *,
        schema: dict[str, Any] | None = None,
        max_tokens: int = MAX_TOKENS,
        temperature: float = TEMPERATURE,
        top_p: float = TOP_P,
        seed: int | None = None,
        stop: list[str] | None = None,
        stop_loops: int | None = None,
    ) -> Completion:
        """One reply. `stop_loops=n` ends it where it starts repeating a run of n tokens
        (see LoopStop); the reply is trimmed to before the repeat."""
        kwargs = self.request(messages, schema, max_tokens, temperature, top_p, seed, stop)
        loop = None
        if stop_loops:
            loop = LoopStop(stop_loops, self.llm.token_eos())
            kwargs["logits_processor"] = [loop]
        t0 = time.perf_counter()
        try:
            out: Any = self.llm.create_chat_completion(**kwargs)
        except ValueError as e:
            if "context window" not in str(e):
                raise
            # One request too long for the context fails alone, with the reason; the
            # stage goes on (and a rerun retries it, as failures are not cached).
            return Completion(
                text="",
                error=TeacherError(
                    f"{self.gguf.name}: the prompt is longer than llama.cpp's context "
                    f"({e}); raise n_ctx in the model's options or shorten the prompt "
                    "(fewer or smaller chunks)"
                ),
                latency_s=time.perf_counter() - t0,
                finish_reason="error",
            )
        latency = time.perf_counter() - t0
        choice = out["choices"][0]
        text = choice["message"]["content"] or ""
        finish = "length" if choice.get("finish_reason") == "length" else "stop"
        if loop is not None and loop.cut is not None and loop.start is not None:
            ids = self.llm._input_ids[loop.start : loop.start + loop.cut]
            text = self.llm.detokenize(list(ids)).decode("utf-8", errors="ignore")
            finish = "loop"
        text = cut_at_stop(text, stop).strip()
        usage = out.get("usage") or {}
        return Completion(
            text=text,
            parsed=parse_json(text) if schema else None,
            usage=Usage(int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))),
            latency_s=latency,
            finish_reason=finish,
        )


class LlamaCppTeacher(LocalTeacher):
    """The model through llama.cpp, from its GGUF, with an adapter on top when given (a
    LoRA GGUF: `distill export --gguf --adapter-only`'s file). Chats are answered one at
    a time, each timed alone, in the batch's order.

    As eval's student (`timed=k`), a batch runs in the order of its prompts' text, so
    prompts that share a start (the same retrieved chunk first) follow each other and
    llama.cpp evaluates the shared start once: most of a +rag prompt is its chunks.
    Reuse would flatter latency, so k of them, spread over the batch, run with the cache
    reset and only those are timed (Completion.timed). With `stop_loops=n`, replies that
    start to repeat a run of n tokens are cut there (LoopStop)."""

    engine = "llama.cpp"
    supports_schema = True
    sends_all_at_once = True

    def __init__(
        self,
        spec: str,
        model: str,
        options: LocalOptions | None = None,
        adapter: Path | None = None,
        *,
        timed: int | None = None,
        stop_loops: int | None = None,
    ) -> None:
        super().__init__(spec, model, options, adapter)
        self.timed, self.stop_loops = timed, stop_loops
        self._llama: LlamaCppModel | None = None

    @property
    def gguf(self) -> Path:
        """The GGUF file it runs."""
        from distill.models import resolve_gguf

        gguf = resolve_gguf(self.model)
        assert gguf is not None, f"{self.model} is not a GGUF model (choose_engine says so)"
        return gguf

    def loaded(self) -> LlamaCppModel:
        if self._llama is None:
            o = self.options
            self._llama = LlamaCppModel(
                self.gguf, n_ctx=o.n_ctx, n_threads=o.n_threads, lora=self.adapter
            )
        return self._llama

    def another(self, adapter: bool) -> LlamaCppTeacher:
        """Loaded anew for each system: each keeps its own KV cache, so one system's
        prompts never start from another's."""
        assert self.adapter is not None or not adapter, "no adapter to answer with"
        lora = self.adapter if adapter else None
        return LlamaCppTeacher(
            self.spec, self.model, self.options, lora, timed=self.timed, stop_loops=self.stop_loops
        )

    def release(self) -> None:
        self._llama = None

    def complete_many(
        self,
        batch: list[list[Message]],
        *,
        schema: dict[str, Any] | None = None,
        on_done: Callable[[int, Completion], None] | None = None,
        **params: Any,
    ) -> list[Completion]:
        llama = self.loaded()
        order = list(range(len(batch)))
        alone: set[int] = set()
        if self.timed is not None:
            order.sort(key=lambda i: _prompt_text(batch[i]))
            alone = set(spread_indices(len(batch), self.timed))
        if self.stop_loops is not None:
            params = {**params, "stop_loops": self.stop_loops}
        out: dict[int, Completion] = {}
        for i in order:
            if i in alone:
                llama.llm.reset()  # evaluate the whole prompt, as a lone request would
            c = llama.chat(batch[i], schema=schema, **params)
            if self.timed is not None:
                c.timed = i in alone
            out[i] = c
            if on_done is not None:
                on_done(i, c)
        return [out[i] for i in range(len(batch))]


def spread_indices(n: int, k: int) -> list[int]:
    """k indices spread evenly over range(n) (all of them when n <= k)."""
    if n <= k:
        return list(range(n))
    return sorted({i * n // k for i in range(k)})


def _prompt_text(messages: list[Message]) -> str:
    return "\x00".join(f"{m['role']}\x01{m['content']}" for m in messages)
