"""Generation tasks: what each sample asks the teacher, and from which chunks.

Each job is one (chunk, sample index) pair. A seeded pick per job chooses its task
type (by the recipe's weights), persona, difficulty, question style and, for the
instructions task, the kind of request:

- `qa`: a question the chunk answers; context = the chunk plus `neighbours`
  retrieved chunks, shuffled;
- `instructions`: a request over the chunk (summarise, extract, compare, explain
  step by step, rewrite for an audience); same context;
- `multi_hop`: a question that needs the chunk and a related chunk (the nearest one
  from another document, found by retrieval); context = both plus neighbours;
- `raft`: a question the chunk answers, with the chunk (the oracle) among
  `raft.distractors` retrieved chunks; for `raft.no_oracle_share` of them the
  oracle is left out (and so are other chunks of its document), and the target
  answer is `raft.refusal`;
- `multi_turn`: a `multi_turn_turns`-turn conversation grounded in the chunk.

With `pairs_per_request` > 1, a qa or raft job whose context holds its chunk asks
for that many questions *with their answers* in one request over the numbered
context the student will see (`qa_pairs@v1`): the teacher reads it once, not twice
per sample. A raft job without its oracle asks the same over its source chunk alone,
and each question becomes a sample over the context without it, its target the
refusal (RAFT's no-oracle share holds per sample, not per request).

In every answer prompt the context chunks are numbered documents (`<document
id="1">`), so answers cite them as [1], [2]; each sample keeps the chunk ids in
that order, so a citation maps back to its chunk.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from distill.generate.config import GenerateConfig
from distill.grounding import numbered
from distill.io import hash_json
from distill.prompts import Templates, fence, load_templates
from distill.recipe import Recipe
from distill.retrieval import Retriever
from distill.split import EVAL, Split
from distill.tables import Chunk
from distill.teachers.base import Message


def clean_question(text: str) -> str:
    """The question in a teacher's reply: the first line with a '?', labels and quotes stripped.

    Small teachers wrap it ('Question: ...', 'The customer wants to know: "...?"').
    """
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    line = next((ln for ln in lines if "?" in ln), lines[0] if lines else "")
    line = re.sub(r"^(question|q)\s*[:.)-]\s*", "", line, flags=re.I)
    quoted = re.search(r":\s*[\"“](.+?\?)", line)
    if quoted:
        line = quoted.group(1)
    if "?" in line:
        line = line[: line.rindex("?") + 1]
    return line.strip().strip('"“”').strip()


def clean_request(text: str) -> str:
    """The request in a teacher's reply to the instructions template."""
    text = text.strip()
    m = re.search(r"(?:^|\n)\s*(?:request|instruction)\s*:\s*(.+)", text, flags=re.I | re.S)
    body = m.group(1) if m else text
    lines = [ln.strip() for ln in body.splitlines() if ln.strip()]
    return lines[0].strip().strip('"“”').strip() if lines else ""


@dataclass
class Job:
    """One sample to generate."""

    index: int
    sample_id: str
    task: str
    chunk: Chunk  # the chunk the request is written from (the oracle)
    sources: list[Chunk]  # chunks the request needs (2 for multi_hop)
    context: list[Chunk]  # the answer prompt's documents, in order
    persona: str
    difficulty: str
    style: str | None
    kind: str | None  # instructions: the kind of request
    request_prompt: list[Message] = field(default_factory=list)
    pairs: int = 0  # > 0: one request writes this many questions with their answers

    @property
    def source_number(self) -> int:
        """The source chunk's number among the context documents ([n])."""
        return 1 + [c["chunk_id"] for c in self.context].index(self.chunk["chunk_id"])

    @property
    def oracle_in_context(self) -> bool:
        ids = {c["chunk_id"] for c in self.context}
        return all(s["chunk_id"] in ids for s in self.sources)

    @property
    def expects_refusal(self) -> bool:
        return self.task == "raft" and not self.oracle_in_context


@dataclass
class Plan:
    templates: Templates
    chunks: list[Chunk]
    jobs: list[Job]
    teacher: str  # the teacher's 'provider:model', recorded on every sample


def select_chunks(
    chunks: list[Chunk],
    max_chunks: int | None,
    seed: int,
    split: Split | None = None,
    held_out: int | None = None,
) -> list[Chunk]:
    """All chunks, or a seeded sample of `max_chunks` spread over the corpus, in corpus order.

    With a split, each side gets its share of the sample (at least one chunk for a side
    that has any), so a small sample still yields eval items; `held_out` caps the
    held-out side instead (at least one chunk when it is above 0), and what it frees
    goes to the training side."""
    budget = len(chunks) if max_chunks is None else min(max_chunks, len(chunks))
    if budget == len(chunks) and (split is None or held_out is None):
        return chunks
    rng = random.Random(seed)
    if split is None:
        picked = sorted(rng.sample(range(len(chunks)), budget))
        return [chunks[i] for i in picked]
    held = [i for i, c in enumerate(chunks) if split.side(c["doc_id"]) == EVAL]
    kept = [i for i, c in enumerate(chunks) if split.side(c["doc_id"]) != EVAL]
    share = max(1 if held else 0, round(budget * len(held) / len(chunks)))
    n_eval = min(len(held), share if held_out is None else held_out, budget)
    n_train = min(len(kept), budget - n_eval)
    picked = sorted(rng.sample(held, n_eval) + rng.sample(kept, n_train))
    return [chunks[i] for i in picked]


def samples_for(chunk: Chunk, cfg: GenerateConfig) -> int:
    """How many samples to write from a chunk: fixed, or proportional to its tokens."""
    if cfg.samples_per_1k_tokens is None:
        return cfg.samples_per_chunk
    return max(1, round(chunk["n_tokens"] / 1000 * cfg.samples_per_1k_tokens))


def choose_split(recipe: Recipe, retriever: Retriever) -> Split:
    """The train/eval documents of the ingested corpus (the recipe's `split`)."""
    cfg = recipe.split
    docs = (c["doc_id"] for c in retriever.chunks)
    return Split.choose(docs, cfg.eval_fraction, cfg.seed, cfg.min_eval_documents)


def make_plan(recipe: Recipe, retriever: Retriever, split: Split | None = None) -> Plan:
    """One job per (chunk, sample index). With a split, every chunk a job carries comes
    from its source chunk's side: training samples never see a held-out document."""
    cfg = recipe.generate
    tpl = load_templates(recipe)
    split = split or Split([], {c["doc_id"] for c in retriever.chunks})
    chunks = select_chunks(retriever.chunks, cfg.max_chunks, cfg.seed, split, cfg.held_out_chunks)
    names = [t for t, w in cfg.tasks.items() if w > 0]
    weights = [cfg.tasks[t] for t in names]
    jobs: list[Job] = []
    for chunk in chunks:
        for i in range(samples_for(chunk, cfg)):
            # One generator per job: adding chunks or tasks leaves other jobs unchanged.
            rng = random.Random(hash_json([cfg.seed, chunk["chunk_id"], i]))
            task = rng.choices(names, weights)[0]
            job = Job(
                index=len(jobs),
                sample_id="",
                task=task,
                chunk=chunk,
                sources=[chunk],
                context=[],
                persona=rng.choice(cfg.personas),
                difficulty=rng.choice(cfg.difficulties),
                style=rng.choice(cfg.question_styles) if cfg.question_styles else None,
                kind=rng.choice(cfg.instruction_kinds) if task == "instructions" else None,
            )
            _place(job, retriever, cfg, rng, split.docs_of(split.side(chunk["doc_id"])))
            if cfg.pairs_per_request > 1 and task in ("qa", "raft"):
                job.pairs = cfg.pairs_per_request
            job.request_prompt = _request_prompt(job, tpl)
            job.sample_id = hash_json(
                [job.task, chunk["chunk_id"], i, tpl.salt(), recipe.teacher.model, cfg.seed]
                + [cfg.neighbours, cfg.raft.model_dump(), cfg.multi_turn_turns]
            )[:16]
            jobs.append(job)
    return Plan(tpl, chunks, jobs, recipe.teacher.model)


def _place(
    job: Job,
    retriever: Retriever,
    cfg: GenerateConfig,
    rng: random.Random,
    within: frozenset[str],
) -> None:
    """Choose the job's sources and answer context (see the module docstring), every
    chunk from the documents `within` (the source chunk's side of the split)."""
    chunk = job.chunk

    def neighbours(k: int) -> list[Chunk]:
        return [c for c, _ in retriever.neighbours(chunk["chunk_id"], k, within)]

    if job.task == "multi_hop":
        near = neighbours(8)
        other = [c for c in near if c["doc_id"] != chunk["doc_id"]]
        if other or near:
            job.sources = [chunk, (other or near)[0]]
        else:
            job.task = "qa"  # a one-chunk corpus has nothing to hop to
    context: list[Chunk]
    if job.task == "raft":
        k = cfg.raft.distractors
        context = []
        if rng.random() < cfg.raft.no_oracle_share:
            far = neighbours(k * 4 + 4)
            context = [c for c in far if c["doc_id"] != chunk["doc_id"]][:k]
        # A side of the split with one document has no other document to distract with:
        # an empty context would teach refusing bare questions, so the oracle stays in.
        if not context:
            context = [chunk] + neighbours(k)
    else:
        have = {s["chunk_id"] for s in job.sources}
        near = neighbours(cfg.neighbours + len(have))
        context = (
            list(job.sources) + [c for c in near if c["chunk_id"] not in have][: cfg.neighbours]
        )
    rng.shuffle(context)  # the source is not always first
    job.context = context


def _request_prompt(job: Job, tpl: Templates) -> list[Message]:
    if job.pairs:
        assert tpl.pairs is not None
        # A raft job without its oracle asks over the source chunk alone; its questions
        # then meet a context that lacks it, and their target is the refusal.
        oracle = job.oracle_in_context
        return tpl.pairs.render(
            passages=numbered(job.context if oracle else [job.chunk]),
            source=job.source_number if oracle else 1,
            n=job.pairs,
            persona=job.persona,
            difficulty=job.difficulty,
            style=job.style,
        )
    passage = fence("1", job.chunk["text"], job.chunk["heading_path"])
    if job.task == "instructions":
        return tpl.instruction.render(passage=passage, persona=job.persona, kind=job.kind)
    if job.task == "multi_hop":
        return tpl.multi_hop.render(
            passages=numbered(job.sources), persona=job.persona, difficulty=job.difficulty
        )
    return tpl.question.render(
        passage=passage, persona=job.persona, difficulty=job.difficulty, style=job.style
    )


def clean_reply(job: Job, text: str) -> str:
    """The request (question or instruction) in the teacher's reply for this job."""
    return clean_request(text) if job.task == "instructions" else clean_question(text)
