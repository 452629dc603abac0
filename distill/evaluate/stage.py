"""Evaluate: does the small model match the teacher? The decision table on held-out data.

Systems (recipe `eval.systems`):
- `teacher`: the generate stage's teacher, given the retrieved chunks;
- `base` / `base+rag`: the student without its adapter, without / with retrieved chunks;
- `ft` / `ft+rag`: the student with the trained adapter, without / with retrieved chunks.
Students run here through llama.cpp (`eval.engine`, by default for a GGUF student
when llama-cpp-python is installed: the base GGUF, and for `ft` the adapter
exported as a LoRA GGUF into export/) or transformers, or through an
OpenAI-compatible endpoint (`eval.base_model` / `eval.ft_model`, e.g. vLLM serving
the adapter).

Items, in two sets:
- unseen documents (the decision table): the held-out split's questions (documents
  no training row contains, not even as context) with their reference answers;
  `eval.unanswerable` of them asked again with their source documents removed from
  retrieval; and `eval.off_topic` questions. For the last two the right answer
  says the documents do not contain it (systems with retrieval only);
- seen documents (`eval.seen_set`): held-out questions on training documents
  (curate's eval_seen.parquet): can the fine-tuned model answer without retrieval
  about what it trained on? Reported beside the first, never mixed into it.
The `+rag` systems search the whole index, as a deployment would.
Every per-question mean carries a 95% bootstrap interval, and the deciding
comparisons a paired one (distill.evaluate.metrics).

Scores: a judge (`eval.judge`, default the teacher) grades correctness 1-5 against
the reference, and groundedness 1-5 against the retrieved chunks for systems with
retrieval; it compares each student system with the teacher in both orders. Also:
citation accuracy, refusal accuracy, similarity to the reference, latency, tokens/s,
cost per 1,000 queries. See distill.evaluate.metrics for the definitions.

Outputs in `eval/`: answers.parquet (one row per system and item, with every score
and judge reason), judgements.parquet (every judge call: verdict, error, raw reply),
metrics.json, report.md, report.html, quality.png, tradeoff.png.
API answers and every judgement are cached in eval/cache.sqlite, so a rerun never
pays twice; local models answer again (their latency is measured, not replayed).
"""

from __future__ import annotations

import os
import platform
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from distill.errors import InputError
from distill.evaluate import metrics as eval_metrics
from distill.grounding import ANSWER_STOP, citations, clean_answer, is_refusal, numbered
from distill.io import read_rows, write_json
from distill.prompts import Template, load_templates, recipe_template
from distill.recipe import Recipe
from distill.retrieval import Retriever, embed
from distill.rows import Answer, Chunk, Judgement, JudgementKey
from distill.rows import write as write_rows
from distill.runfolder import RunFolder, RunOptions
from distill.teachers import Message
from distill.teachers.base import BatchFirstTeacher, Completion, Teacher
from distill.teachers.cache import RequestCache
from distill.teachers.factory import make_teacher, with_cache
from distill.teachers.judge import JsonJudge
from distill.ui import progress

CORRECTNESS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "correctness": {"type": "integer", "minimum": 1, "maximum": 5},
        "reason": {"type": "string"},
    },
    "required": ["correctness", "reason"],
}
GRADE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "correctness": {"type": "integer", "minimum": 1, "maximum": 5},
        "groundedness": {"type": "integer", "minimum": 1, "maximum": 5},
        "reason": {"type": "string"},
    },
    "required": ["correctness", "groundedness", "reason"],
}
PAIRWISE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "winner": {"type": "string", "enum": ["A", "B", "tie"]},
        "reason": {"type": "string"},
    },
    "required": ["winner", "reason"],
}
# Tags of the judge templates: an answer containing one cannot close its own fence.
UNSEEN, SEEN = "unseen", "seen"  # the two eval sets (see the module docstring)


@dataclass
class Item:
    item_id: str
    kind: str  # answerable | no_oracle | off_topic
    question: str
    reference: str
    source_chunk_ids: list[str]
    hits: list[Chunk]  # the chunks retrieval systems see, best first
    eval_set: str = UNSEEN


@dataclass
class System:
    name: str
    teacher: Teacher
    local: bool  # compute on this machine (or a self-hosted endpoint), not an API bill


def build_items(recipe: Recipe, folder: RunFolder, retriever: Retriever) -> list[Item]:
    cfg = recipe.eval
    held = read_rows(folder.stage_dir("curate") / "eval.parquet")
    # A RAFT sample whose context lacked the answer has a refusal as its reference;
    # its question is answerable once eval retrieves for itself, so it is left out.
    questions = [q for q in held if not q.get("expects_refusal")][: cfg.max_questions]
    if not questions:
        raise InputError(
            "eval: the held-out split is empty; raise curate.eval_fraction or "
            "generate.max_chunks, or add documents"
        )
    items = _answerable(questions, retriever, cfg.k, UNSEEN)
    picked = random.Random(cfg.seed).sample(questions, min(cfg.unanswerable, len(questions)))
    if picked:
        # Retrieve deeper, then drop every chunk of the question's source documents.
        deep = retriever.retrieve_many([q["question"] for q in picked], cfg.k + 24)
        for q, h in zip(picked, deep, strict=True):
            gone = set(q.get("source_doc_ids") or [q["doc_ids"][0]])
            rest = [c for c, _ in h if c["doc_id"] not in gone][: cfg.k]
            items.append(
                Item(f"{q['sample_id']}-no-oracle", "no_oracle", q["question"], "", [], rest)
            )
    if cfg.off_topic:
        off = retriever.retrieve_many(cfg.off_topic, cfg.k)
        for i, (text, h) in enumerate(zip(cfg.off_topic, off, strict=True)):
            items.append(Item(f"off-topic-{i}", "off_topic", text, "", [], [c for c, _ in h]))
    return items + _seen_items(recipe, folder, retriever)


def _seen_items(recipe: Recipe, folder: RunFolder, retriever: Retriever) -> list[Item]:
    """Held-out questions on training documents (curate's eval_seen.parquet)."""
    cfg = recipe.eval
    path = folder.stage_dir("curate") / "eval_seen.parquet"
    if not cfg.seen_set or not path.exists():
        return []
    return _answerable(read_rows(path)[: cfg.max_questions], retriever, cfg.k, SEEN)


def _answerable(
    rows: list[dict[str, Any]], retriever: Retriever, k: int, eval_set: str
) -> list[Item]:
    """Curated samples as questions with their reference answers and retrieved chunks."""
    hits = retriever.retrieve_many([q["question"] for q in rows], k) if rows else []
    return [
        Item(
            q["sample_id"],
            "answerable",
            q["question"],
            q["answer"],
            list(q.get("source_chunk_ids") or [q["source_chunk_id"]]),
            [c for c, _ in h],
            eval_set,
        )
        for q, h in zip(rows, hits, strict=True)
    ]


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


class LlamaStudent(Teacher):
    """The student through llama.cpp: its GGUF, with (`ft`) the adapter exported as a
    LoRA GGUF (`distill export --gguf --adapter-only`'s file) or without (`base`).
    One chat at a time, each timed alone."""

    sends_all_at_once = True
    runs_locally = True

    def __init__(self, gguf: Path, lora: Path | None) -> None:
        super().__init__(f"student:{gguf.name}" + ("+lora" if lora else ""), gguf.name)
        self.gguf, self.lora = gguf, lora
        self._model: Any = None

    def complete(
        self, messages: list[Message], *, schema: dict[str, Any] | None = None, **params: Any
    ) -> Completion:
        if self._model is None:
            from distill.teachers.llamacpp import LlamaCppModel

            self._model = LlamaCppModel(self.gguf, lora=self.lora)
        return self._model.chat(messages, schema=schema, **params)

    def release(self) -> None:
        self._model = None


def student_engine(recipe: Recipe) -> str:
    """'llama.cpp' or 'transformers' for the student systems (eval.engine)."""
    from distill.teachers.local import choose_engine

    return choose_engine(recipe.train.student, recipe.eval.engine)


def _adapter_sha(folder: RunFolder) -> str | None:
    from distill.io import sha256_file

    weights = folder.stage_dir("train") / "adapter" / "adapter_model.safetensors"
    return sha256_file(weights) if weights.exists() else None


def _llama_students(recipe: Recipe, folder: RunFolder) -> tuple[Path, Path | None]:
    """The student's GGUF and, when an ft system is asked for, its LoRA GGUF (exported
    once into the run's export/ folder; exported again when the adapter changed)."""
    from distill.export import gguf as export_gguf
    from distill.export import made_from_current_adapter
    from distill.models import resolve_gguf

    base = resolve_gguf(recipe.train.student)
    assert base is not None
    if not any(s.startswith("ft") for s in recipe.eval.systems):
        return base, None
    lora = folder.root / "export" / f"{recipe.name}-lora-f16.gguf"
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
    weights = _Weights(recipe.train.student, folder.stage_dir("train") / "adapter", cfg.dtype)
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
        # Remote replies are cached (a rerun pays nothing); local models answer again
        # (their latency is what is measured).
        if name == "teacher":
            g = recipe.generate
            teacher = make_teacher(g.teacher, g.teacher_options, price=g.price)
            local = teacher.runs_locally
        else:
            endpoint = cfg.ft_model if name.startswith("ft") else cfg.base_model
            if endpoint:  # a served student: its cost is the hardware's, like a local one
                teacher, local = make_teacher(endpoint, cfg.student_options), True
            elif llama is not None:
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


def _judge(
    recipe: Recipe, teacher: Teacher | None, cache: RequestCache, salt: str
) -> tuple[str, Teacher]:
    """The judge's spec and a ready, cached judge; `teacher` is the teacher system's."""
    cfg = recipe.eval
    g = recipe.generate
    spec = cfg.judge or g.teacher
    same = spec == g.teacher
    options = cfg.judge_options
    if options is None:
        options = g.teacher_options if same else {}
    reuse = same and options == g.teacher_options
    if teacher is not None and reuse and teacher.runs_locally:
        return spec, with_cache(teacher, cache, salt)  # one loaded model, not two
    price = g.price if same else None  # priced like the teacher, by the same rule
    return spec, make_teacher(spec, options, price=price, cache=cache, salt=salt)


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


def judge_templates(recipe: Recipe) -> tuple[Template, Template]:
    """The grade and pairwise templates (the recipe's prompts_dir first)."""
    return (
        recipe_template(recipe, recipe.eval.grade_template),
        recipe_template(recipe, recipe.eval.pairwise_template),
    )


def run(recipe: Recipe, folder: RunFolder, options: RunOptions) -> dict[str, Any]:
    from distill.evaluate.report import write_report
    from distill.grounding import support_score

    cfg = recipe.eval
    out = folder.stage_dir("eval")
    retriever = Retriever(folder.stage_dir("ingest"), recipe.retrieval)
    items = build_items(recipe, folder, retriever)
    answer_tpl = load_templates(recipe).answer
    grade_tpl, pair_tpl = judge_templates(recipe)
    cache = RequestCache(out / "cache.sqlite")
    systems = make_systems(recipe, folder, cache, answer_tpl.sha)
    params: dict[str, Any] = {
        "max_tokens": cfg.max_new_tokens,
        "temperature": 0.0,
        "stop": ANSWER_STOP,
    }

    rows: list[Answer] = []
    for system in systems:
        rag = eval_metrics.uses_retrieval(system.name)
        mine = [
            it
            for it in items
            if (rag or it.kind == "answerable")
            and (it.eval_set == UNSEEN or system.name in cfg.seen_systems)
        ]
        prompts = [
            answer_tpl.render(passages=numbered(it.hits) if rag else [], question=it.question)
            for it in mine
        ]
        for it, (c, latency, compute) in zip(
            mine, answer(system, prompts, cfg.batch_size, params), strict=True
        ):
            rows.append(_row(system, it, rag, c, latency, compute))
    for system in systems:  # free the student before the judge loads
        if isinstance(system.teacher, StudentModel):
            system.teacher.weights.release()
        elif isinstance(system.teacher, LlamaStudent):
            system.teacher.release()

    teacher_sys = next((s for s in systems if s.name == "teacher"), None)
    judge_spec, judge_model = _judge(
        recipe, teacher_sys.teacher if teacher_sys else None, cache, grade_tpl.sha + pair_tpl.sha
    )
    judge = JsonJudge(judge_model, prefill=None)
    by_item = {it.item_id: it for it in items}
    judge_cost = _grade(rows, by_item, judge, grade_tpl)
    if cfg.pairwise and teacher_sys is not None:
        judge_cost += _pairwise(rows, judge, pair_tpl)
    chunk_text = {c["chunk_id"]: c["text"] for c in retriever.chunks}
    for r in rows:
        r["support"] = (
            support_score(
                {
                    "messages": [{"role": "assistant", "content": r["answer"]}],
                    "cited_chunk_ids": r["cited_chunk_ids"],
                    "chunk_ids": r["retrieved_chunk_ids"],
                },
                chunk_text,
            )
            if r["kind"] == "answerable" and not r["answer_error"] and r["retrieved_chunk_ids"]
            else None
        )
    _similarity(rows, cfg.similarity_model)
    cache.close()

    answerable = [it for it in items if it.kind == "answerable" and it.eval_set == UNSEEN]
    found = [bool(set(it.source_chunk_ids) & {c["chunk_id"] for c in it.hits}) for it in answerable]
    unseen = [r for r in rows if r["eval_set"] == UNSEEN]
    seen = [r for r in rows if r["eval_set"] == SEEN]
    names: list[str] = list(cfg.systems)
    seen_names: list[str] = [s for s in names if s in cfg.seen_systems]
    metrics: dict[str, Any] = {
        "questions": len(answerable),
        "unanswerable": {
            "no_oracle": sum(it.kind == "no_oracle" for it in items),
            "off_topic": sum(it.kind == "off_topic" for it in items),
        },
        "k": cfg.k,
        "retrieval_hit_rate": round(sum(found) / len(found), 4) if found else None,
        "teacher": recipe.generate.teacher,
        "student": recipe.train.student,
        "judge": judge_spec,
        "smoke_test": _tiny(judge_spec, recipe.train.student),
        "small_judge": _small(judge_spec),
        "judge_calls": judge.calls,
        "judge_failures": judge.failures,
        "judge_cost_usd": round(judge_cost, 4),
        "hardware": hardware(),
        "batch_size": cfg.batch_size,
        "student_engine": next(
            (
                "llama.cpp" if isinstance(s.teacher, LlamaStudent) else "transformers"
                for s in systems
                if isinstance(s.teacher, LlamaStudent | StudentModel)
            ),
            None,
        ),
        "systems": eval_metrics.summarise(unseen, names, cfg.hardware_cost_per_hour, cfg.seed),
        "comparisons": eval_metrics.comparisons(unseen, names, cfg.seed),
        "bootstrap": {"resamples": eval_metrics.N_BOOT, "seed": cfg.seed, "level": 0.95},
        # Which adapter these numbers are of: publish refuses to put them on another one.
        "adapter_sha256": _adapter_sha(folder),
    }
    if seen:
        metrics["seen"] = {
            "questions": len({r["item_id"] for r in seen}),
            "systems": eval_metrics.summarise(
                seen, seen_names, cfg.hardware_cost_per_hour, cfg.seed
            ),
            "comparisons": eval_metrics.comparisons(seen, seen_names, cfg.seed),
        }
    metrics["what_this_means"] = eval_metrics.what_this_means(metrics)
    write_rows(out / "answers.parquet", rows, Answer)
    write_rows(out / "judgements.parquet", judge.log, Judgement)
    write_json(out / "metrics.json", metrics)
    write_report(out, recipe, metrics, rows)
    counts: dict[str, Any] = {
        "questions": metrics["questions"],
        "unanswerable": sum(metrics["unanswerable"].values()),
        "judge_failures": metrics["judge_failures"],
        # What this run paid (cached replies are free), priced like every teacher.
        "systems_cost_usd": round(sum(s.teacher.spent_usd for s in systems), 6),
        "judge_cost_usd": round(judge_model.spent_usd, 6),
    }
    for s, m in metrics["systems"].items():
        mean = m["correctness"]["mean"]
        counts[f"correctness[{s}]"] = mean if mean is not None else "n/a"
    return counts


# Offline judges too small to grade anything: their scores only exercise the pipeline.
TINY_JUDGES = ("smollm2-135m-instruct",)


def _tiny(spec: str, student: str = "") -> bool:
    """A smoke-test judge: scripted, tiny, or the student model itself."""
    provider, _, model = spec.partition(":")
    return provider == "fake" or (
        provider == "local" and (model in TINY_JUDGES or model == student)
    )


def _small(spec: str) -> bool:
    """A small offline judge (stronger than the student, still noisy)."""
    from distill.models import OFFLINE_MODELS

    provider, _, model = spec.partition(":")
    return provider == "local" and model in OFFLINE_MODELS


def _row(
    system: System, it: Item, rag: bool, c: Completion, latency: float, compute: float
) -> Answer:
    text = clean_answer(c.text) if c.error is None else ""
    ids = [h["chunk_id"] for h in it.hits] if rag else []
    cited = citations(text) if rag else []
    return {
        "item_id": it.item_id,
        "eval_set": it.eval_set,
        "kind": it.kind,
        "system": system.name,
        "local": system.local,
        "priced": system.local or system.teacher.price is not None,
        "question": it.question,
        "reference": it.reference,
        "answer": text,
        "answer_error": str(c.error)[:200] if c.error is not None else None,
        "latency_s": round(latency, 4),
        "compute_s": round(compute, 4),
        "output_tokens": c.usage.output_tokens,
        "cost_usd": c.cost_usd,
        "retrieved_chunk_ids": ids,
        "source_chunk_ids": it.source_chunk_ids,
        "cited": cited,
        "cited_chunk_ids": [ids[n - 1] for n in cited if 0 < n <= len(ids)],
        "refused": is_refusal(text) if c.error is None else False,
        "correctness": None,
        "groundedness": None,
        "grade_reason": None,
        "grade_error": None,
        "vs_teacher": None,
        "pairwise": None,
        "pairwise_error": None,
        "similarity": None,
        "token_f1": round(eval_metrics.token_f1(text, it.reference), 4)
        if it.kind == "answerable" and c.error is None
        else None,
        "support": None,
    }


def _grade(rows: list[Answer], items: dict[str, Item], judge: JsonJudge, tpl: Template) -> float:
    todo = [r for r in rows if r["kind"] == "answerable"]
    for r in todo:
        if r["answer_error"]:
            r["grade_error"] = "no answer to grade"
    # Question by question: the systems answering one question share the judge prompt's
    # start (rubric, documents, question, reference), which llama.cpp evaluates once.
    todo = sorted((r for r in todo if not r["answer_error"]), key=lambda r: r["item_id"])
    prompts, schemas = [], []
    for r in todo:
        it = items[r["item_id"]]
        rag = bool(r["retrieved_chunk_ids"])
        prompts.append(
            tpl.render(
                passages=numbered(it.hits) if rag else [],
                question=it.question,
                reference=it.reference,
                answer=r["answer"],
            )
        )
        schemas.append(GRADE_SCHEMA if rag else CORRECTNESS_SCHEMA)
    cost = 0.0
    for schema, label in (
        (GRADE_SCHEMA, "judging: correctness + groundedness"),
        (CORRECTNESS_SCHEMA, "judging: correctness"),
    ):
        idx = [i for i, s in enumerate(schemas) if s is schema]
        keys = [
            JudgementKey(item_id=todo[i]["item_id"], system=todo[i]["system"], kind="grade")
            for i in idx
        ]
        verdicts = judge.ask(label, [prompts[i] for i in idx], schema, keys)
        for i, (v, err, usd) in zip(idx, verdicts, strict=True):
            r, cost = todo[i], cost + usd
            if v is None:
                r["grade_error"] = err
            else:
                r["correctness"] = int(v["correctness"])
                r["groundedness"] = (
                    int(v["groundedness"])
                    if "groundedness" in v and (schema is GRADE_SCHEMA)
                    else None
                )
                r["grade_reason"] = str(v.get("reason", ""))[:500]
    return cost


def _pairwise(rows: list[Answer], judge: JsonJudge, tpl: Template) -> float:
    """Each student answer against the teacher's, in both orders."""
    teacher = {r["item_id"]: r for r in rows if r["system"] == "teacher"}
    todo = sorted(
        (r for r in rows if r["system"] != "teacher" and r["kind"] == "answerable"),
        key=lambda r: r["item_id"],  # shared prompt prefixes, as in _grade
    )
    asked, prompts = [], []
    for r in todo:
        t = teacher.get(r["item_id"])
        if t is None or r["answer_error"] or t["answer_error"]:
            r["vs_teacher"] = "failed"
            r["pairwise_error"] = "no answer to compare"
            continue
        common = {"question": r["question"], "reference": r["reference"]}
        s_ans, t_ans = r["answer"], t["answer"]
        prompts.append(tpl.render(**common, answer_a=s_ans, answer_b=t_ans))
        prompts.append(tpl.render(**common, answer_a=t_ans, answer_b=s_ans))
        asked.append(r)
    keys = [
        JudgementKey(item_id=r["item_id"], system=r["system"], kind=kind)
        for r in asked
        for kind in ("pairwise: student first", "pairwise: teacher first")
    ]
    verdicts = judge.ask("judging: head to head with the teacher", prompts, PAIRWISE_SCHEMA, keys)
    cost = 0.0
    for j, r in enumerate(asked):
        (v1, e1, c1), (v2, e2, c2) = verdicts[2 * j], verdicts[2 * j + 1]
        cost += c1 + c2
        first = v1["winner"] if v1 else None
        second = v2["winner"] if v2 else None
        r["pairwise"] = f"{first or 'failed'}/{second or 'failed'}"
        r["vs_teacher"] = eval_metrics.combine_pairwise(first, second)
        if e1 or e2:
            r["pairwise_error"] = e1 or e2
    return cost


def _similarity(rows: list[Answer], model_ref: str) -> None:
    todo = [r for r in rows if r["kind"] == "answerable" and not r["answer_error"]]
    if not todo:
        return
    answers = embed([r["answer"] for r in todo], model_ref)
    refs = embed([r["reference"] for r in todo], model_ref)
    for r, sim in zip(todo, np.sum(answers * refs, axis=1), strict=True):
        r["similarity"] = round(float(sim), 4)
