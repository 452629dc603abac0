"""The systems that answer: the teacher and the student with or without its adapter,
through llama.cpp, transformers (both built by distill.teachers.factory.make_student)
or an OpenAI-compatible endpoint; any model the recipe names (`NAME: SPEC`, e.g. the
fine-tune the student replaces), built as the teacher is; and how an answer is timed
(alone, or a batch's wall time shared)."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.config import PriceConfig
from distill.errors import UserError
from distill.recipe import Recipe
from distill.runfolder import RunFolder
from distill.teachers import Message
from distill.teachers.base import Completion, Teacher
from distill.teachers.cache import RequestCache
from distill.teachers.factory import make_student, make_teacher, with_cache
from distill.teachers.local import LocalOptions, LocalTeacher, choose_engine
from distill.ui import progress


@dataclass
class System:
    name: str
    model: Teacher  # what answers: the teacher, or the student (loaded here or served)
    local: bool  # compute on this machine (or a self-hosted endpoint), not an API bill
    student_here: bool = False  # the student built by make_student (not the teacher, not served)
    rag: bool = False  # given the retrieved chunks (EvalConfig.retrieval_systems)
    named: bool = False  # a NAME: SPEC of eval.systems (freed after answering if local)


# A reply that repeats a run of this many tokens is cut there (LoopStop): about 12
# words, longer than any phrase a short answer says twice on purpose.
LOOP_TOKENS = 16
# Answers timed alone (the KV cache reset first), spread over the items: the latency
# and compute figures. The others run in prompt order and reuse each other's start.
TIMED_ANSWERS = 40
FT = ("ft", "ft+rag")  # the systems answering with the adapter
STUDENTS = ("base", "base+rag", *FT)


def _llama_files(recipe: Recipe, folder: RunFolder, ft: bool) -> tuple[Path, Path | None]:
    """The student's GGUF and, with `ft` (an ft system is asked for), its LoRA GGUF
    (exported once into the run's export/ folder; exported again when the adapter
    changed)."""
    from distill.export import gguf as export_gguf
    from distill.export import made_from_current_adapter
    from distill.gguf_cpu import gguf_for_cpu
    from distill.models import resolve_gguf

    shipped = resolve_gguf(recipe.student)
    assert shipped is not None
    base = gguf_for_cpu(shipped, recipe.eval.gguf_type)
    if not ft:
        return base, None
    lora = folder.lora_gguf(recipe.name)
    if not made_from_current_adapter(lora, folder):
        lora = export_gguf(recipe, folder, "f16", adapter_only=True)
    return base, lora


def load_student(recipe: Recipe, folder: RunFolder, *, ft: bool) -> LocalTeacher:
    """The student loaded here, with its adapter (`ft`: for ft systems; `another(adapter=)`
    picks per system): through llama.cpp, its GGUF (re-encoded for this CPU,
    eval.gguf_type) and the adapter as a LoRA GGUF; through transformers, the model and
    the trained adapter folder. `eval.engine` picks the runtime as a `local:` teacher's
    `engine` does. `distill serve` answers with the same student."""
    engine = choose_engine(recipe.student, recipe.eval.engine)
    ref = recipe.student
    adapter: Path | None = folder.adapter_dir
    if engine == "llama.cpp":
        gguf, lora = _llama_files(recipe, folder, ft)
        ref, adapter = str(gguf), lora
    options = LocalOptions(engine=engine, dtype=recipe.eval.dtype)
    return make_student(ref, options, adapter, timed=TIMED_ANSWERS, stop_loops=LOOP_TOKENS)


def _by_spec(
    spec: str, options: dict[str, Any], price: PriceConfig | None, cache: RequestCache, salt: str
) -> Teacher:
    """A system given by spec (the teacher, a named one): its remote replies cached, so a
    rerun pays nothing; one that runs here answers again (its latency is measured)."""
    model = make_teacher(spec, options, price=price)
    return model if model.runs_locally else with_cache(model, cache, salt)


def make_systems(recipe: Recipe, folder: RunFolder, cache: RequestCache, salt: str) -> list[System]:
    cfg = recipe.eval
    names, named = cfg.system_names, cfg.named_systems
    needs_local = any(
        not (cfg.ft_model if s in FT else cfg.base_model) for s in names if s in STUDENTS
    )
    # Built once; each system gets its own (`another`), with the adapter for ft.
    ft = bool(set(FT) & set(names))
    student = load_student(recipe, folder, ft=ft) if needs_local else None
    out = []
    for name in names:
        rag = name in cfg.retrieval_systems
        # Students, local or served, answer again (their latency is what is measured).
        if name == "teacher":
            g = recipe.teacher
            teacher = _by_spec(g.model, g.options, g.price, cache, salt)
            out.append(System(name, teacher, teacher.runs_locally, rag=rag))
        elif spec := named.get(name):
            try:
                model = _by_spec(spec.model, spec.options, spec.price, cache, salt)
            except UserError as e:  # the factory speaks of a teacher: say which system
                raise UserError(f"eval.systems {name}: {e}") from None
            out.append(System(name, model, model.runs_locally, rag=rag, named=True))
        elif endpoint := cfg.ft_model if name in FT else cfg.base_model:
            # A served student: its cost is the hardware's, like a local one, and it
            # answers every time: the adapter behind the endpoint may have changed
            # since the last eval (a cached reply would be the old adapter's).
            out.append(System(name, make_teacher(endpoint, cfg.student_options), True, rag=rag))
        else:
            assert student is not None
            model = student.another(adapter=name in FT)
            out.append(System(name, model, True, student_here=True, rag=rag))
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
        if system.model.sends_all_at_once:
            done = system.model.complete_many(
                prompts, on_done=lambda i, c: bar.advance(task), **params
            )
            return [(c, c.latency_s, c.latency_s) for c in done]
        for start in range(0, len(prompts), batch_size):
            batch = prompts[start : start + batch_size]
            t0 = time.perf_counter()
            done = system.model.complete_many(batch, **params)
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
