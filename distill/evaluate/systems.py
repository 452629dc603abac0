"""The systems that answer: the teacher and the student with or without its adapter,
through llama.cpp, transformers or an OpenAI-compatible endpoint; and how an answer
is timed (alone, or a batch's wall time shared)."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.errors import InputError
from distill.recipe import Recipe
from distill.runfolder import RunFolder
from distill.teachers import Message
from distill.teachers.base import BatchFirstTeacher, Completion, Teacher
from distill.teachers.cache import RequestCache
from distill.teachers.factory import make_teacher, with_cache
from distill.ui import progress


@dataclass
class System:
    name: str
    teacher: Teacher
    local: bool  # compute on this machine (or a self-hosted endpoint), not an API bill


class StudentModel(BatchFirstTeacher):
    """The student loaded here, with (`ft`) or without (`base`) its LoRA adapter.
    Both systems share one loaded model."""

    runs_locally = True

    def __init__(self, weights: _Weights, adapter: bool) -> None:
        super().__init__(f"student:{weights.ref}", weights.ref)
        self.weights = weights
        self.adapter = adapter

    def complete_many(
        self, batch: list[list[Message]], *, schema: Any = None, on_done: Any = None, **params: Any
    ) -> list[Completion]:
        from distill.teachers.local import generate_batch

        model, tok = self.weights.load()
        if self.adapter:
            out = generate_batch(model, tok, batch, **params)
        else:
            with model.disable_adapter():
                out = generate_batch(model, tok, batch, **params)
        for i, c in enumerate(out):
            if on_done is not None:
                on_done(i, c)
        return out


# A reply that repeats a run of this many tokens is cut there (LoopStop): about 12
# words, longer than any phrase a short answer says twice on purpose.
LOOP_TOKENS = 16
# Answers timed alone (the KV cache reset first), spread over the items: the latency
# and compute figures. The others run in prompt order and reuse each other's start.
TIMED_ANSWERS = 40


class LlamaStudent(Teacher):
    """The student through llama.cpp: its GGUF, with (`ft`) the adapter exported as a
    LoRA GGUF (`distill export --gguf --adapter-only`'s file) or without (`base`).

    A batch runs in the order of its prompts' text, so prompts that share a start (the
    same retrieved chunk first) follow each other and llama.cpp evaluates the shared
    start once: most of a +rag prompt is its chunks. Reuse would flatter latency, so
    TIMED_ANSWERS of them, spread over the batch, run with the cache reset and only
    those are timed (Completion.timed). Replies that start to loop are cut."""

    sends_all_at_once = True
    runs_locally = True

    def __init__(self, gguf: Path, lora: Path | None) -> None:
        super().__init__(f"student:{gguf.name}" + ("+lora" if lora else ""), gguf.name)
        self.gguf, self.lora = gguf, lora
        self._model: Any = None

    def _loaded(self) -> Any:
        if self._model is None:
            from distill.teachers.llamacpp import LlamaCppModel

            self._model = LlamaCppModel(self.gguf, lora=self.lora)
        return self._model

    def complete(
        self, messages: list[Message], *, schema: dict[str, Any] | None = None, **params: Any
    ) -> Completion:
        return self._loaded().chat(messages, schema=schema, stop_loops=LOOP_TOKENS, **params)

    def complete_many(
        self,
        batch: list[list[Message]],
        *,
        schema: dict[str, Any] | None = None,
        on_done: Any = None,
        **params: Any,
    ) -> list[Completion]:
        model = self._loaded()
        timed = set(spread_indices(len(batch), TIMED_ANSWERS))
        order = sorted(range(len(batch)), key=lambda i: _prompt_text(batch[i]))
        out: dict[int, Completion] = {}
        for i in order:
            if i in timed:
                model.llm.reset()  # evaluate the whole prompt, as a lone request would
            c = self.complete(batch[i], schema=schema, **params)
            c.timed = i in timed
            out[i] = c
            if on_done is not None:
                on_done(i, c)
        return [out[i] for i in range(len(batch))]

    def release(self) -> None:
        self._model = None


def spread_indices(n: int, k: int) -> list[int]:
    """k indices spread evenly over range(n) (all of them when n <= k)."""
    if n <= k:
        return list(range(n))
    return sorted({i * n // k for i in range(k)})


def _prompt_text(messages: list[Message]) -> str:
    return "\x00".join(f"{m['role']}\x01{m['content']}" for m in messages)


def student_engine(recipe: Recipe) -> str:
    """'llama.cpp' or 'transformers' for the student systems (eval.engine)."""
    from distill.teachers.local import choose_engine

    return choose_engine(recipe.student, recipe.eval.engine)


def _llama_students(recipe: Recipe, folder: RunFolder) -> tuple[Path, Path | None]:
    """The student's GGUF and, when an ft system is asked for, its LoRA GGUF (exported
    once into the run's export/ folder; exported again when the adapter changed)."""
    from distill.export import gguf as export_gguf
    from distill.export import made_from_current_adapter
    from distill.models import gguf_for_cpu, resolve_gguf

    shipped = resolve_gguf(recipe.student)
    assert shipped is not None
    base = gguf_for_cpu(shipped, recipe.eval.gguf_type)
    if not any(s.startswith("ft") for s in recipe.eval.systems):
        return base, None
    lora = folder.lora_gguf(recipe.name)
    if not made_from_current_adapter(lora, folder):
        lora = export_gguf(recipe, folder, "f16", adapter_only=True)
    return base, lora


class _Weights:
    def __init__(self, ref: str, adapter_dir: Path, dtype: Any) -> None:
        self.ref, self.adapter_dir, self.dtype = ref, adapter_dir, dtype
        self._loaded: tuple[Any, Any] | None = None

    def load(self) -> tuple[Any, Any]:
        if self._loaded is None:
            from peft import PeftModel

            from distill.models import load_causal_lm

            if not (self.adapter_dir / "adapter_config.json").exists():
                raise InputError(
                    f"no trained adapter in {self.adapter_dir}; run `distill train RECIPE` first"
                )
            model, tok = load_causal_lm(self.ref, self.dtype)
            model = PeftModel.from_pretrained(model, str(self.adapter_dir))
            model.eval()
            self._loaded = (model, tok)
        return self._loaded

    def release(self) -> None:
        self._loaded = None


def make_systems(recipe: Recipe, folder: RunFolder, cache: RequestCache, salt: str) -> list[System]:
    cfg = recipe.eval
    weights = _Weights(recipe.student, folder.adapter_dir, cfg.dtype)
    needs_local = any(
        not (cfg.ft_model if s.startswith("ft") else cfg.base_model)
        for s in cfg.systems
        if s != "teacher"
    )
    llama = (
        _llama_students(recipe, folder)
        if needs_local and student_engine(recipe) == "llama.cpp"
        else None
    )
    out = []
    for name in cfg.systems:
        # The teacher's remote replies are cached (a rerun pays nothing); students,
        # local or served, answer again (their latency is what is measured).
        if name == "teacher":
            g = recipe.teacher
            teacher = make_teacher(g.model, g.options, price=g.price)
            local = teacher.runs_locally
        else:
            endpoint = cfg.ft_model if name.startswith("ft") else cfg.base_model
            if endpoint:
                # A served student: its cost is the hardware's, like a local one, and it
                # answers every time: the adapter behind the endpoint may have changed
                # since the last eval (a cached reply would be the old adapter's).
                served = make_teacher(endpoint, cfg.student_options)
                out.append(System(name, served, True))
                continue
            if llama is not None:
                gguf, lora = llama
                student = LlamaStudent(gguf, lora if name.startswith("ft") else None)
                out.append(System(name, student, True))
                continue
            else:
                out.append(System(name, StudentModel(weights, name.startswith("ft")), True))
                continue
        if not teacher.runs_locally:
            teacher = with_cache(teacher, cache, salt)
        out.append(System(name, teacher, local))
    return out


def answer(
    system: System, prompts: list[list[Message]], batch_size: int, params: dict[str, Any]
) -> list[tuple[Completion, float, float]]:
    """(completion, latency_s, compute_s) per prompt. A request sent alone or
    concurrently waits its own latency; a batch's answers each wait the batch's wall
    time, and share its compute."""
    out: list[tuple[Completion, float, float]] = []
    with progress() as bar:
        task = bar.add_task(f"answering: {system.name}", total=len(prompts))
        if system.teacher.sends_all_at_once:
            done = system.teacher.complete_many(
                prompts, on_done=lambda i, c: bar.advance(task), **params
            )
            return [(c, c.latency_s, c.latency_s) for c in done]
        for start in range(0, len(prompts), batch_size):
            batch = prompts[start : start + batch_size]
            t0 = time.perf_counter()
            done = system.teacher.complete_many(batch, **params)
            wall = time.perf_counter() - t0
            out += [(c, wall, wall / len(batch)) for c in done]
            bar.advance(task, len(batch))
    return out


def hardware() -> str:
    """This machine, in words, for the cost column of local systems."""
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} GPU"
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores, no GPU"
