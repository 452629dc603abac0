"""The assistant `distill serve` runs: the question searched in the run's index as eval's
`+rag` systems search it (the recipe's retrieval settings, `eval.k` chunks, the whole
index), put in the prompt the student was trained and evaluated on
(`distill.grounding.answer_prompt` with the recipe's answer template), answered by the
student with eval's settings, and the answer's citations mapped back to the chunks and
their documents."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from distill.errors import InputError
from distill.grounding import ANSWER_STOP, answer_prompt, citations
from distill.prompts import Template
from distill.recipe import Recipe
from distill.retrieval import Retriever
from distill.runfolder import RunFolder
from distill.serve.students import Student
from distill.teachers.base import Message
from distill.teachers.local import TOP_P


@dataclass
class Source:
    """A retrieved chunk, numbered as the prompt numbers it ([n] in the answer)."""

    n: int
    chunk_id: str
    doc_id: str
    title: str
    heading_path: str
    score: float


@dataclass
class Grounded:
    messages: list[Message]  # the student's prompt
    sources: list[Source]  # what retrieval gave it, in prompt order

    def extra(self, answer: str) -> dict[str, Any]:
        """The reply's `distill` field: the sources the answer cites, and all retrieved."""
        by_n = {s.n: s for s in self.sources}
        cited = [asdict(by_n[n]) for n in citations(answer) if n in by_n]
        return {"citations": cited, "retrieved": [asdict(s) for s in self.sources]}


class Assistant:
    """Retrieval, the grounded prompt and the student, for one recipe's run."""

    def __init__(
        self,
        name: str,
        retriever: Retriever,
        template: Template,
        k: int,
        student: Student,
        max_tokens: int,
    ) -> None:
        self.name, self.retriever, self.template, self.k = name, retriever, template, k
        self.student = student
        # Eval's settings: greedy, its token cap, its stop strings.
        self.defaults: dict[str, Any] = {
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "top_p": TOP_P,
            "stop": list(ANSWER_STOP),
        }

    def ground(self, question: str) -> Grounded:
        """The question's chunks and the student's prompt (safe to call concurrently)."""
        hits = self.retriever.retrieve(question, self.k)
        sources = [
            Source(n, c["chunk_id"], c["doc_id"], c["title"], c["heading_path"], round(s, 6))
            for n, (c, s) in enumerate(hits, start=1)
        ]
        return Grounded(answer_prompt(self.template, question, [c for c, _ in hits]), sources)


def ready(recipe: Recipe, recipe_path: Path, need_adapter: bool) -> RunFolder:
    """The recipe's run folder, with an index and (`need_adapter`) a trained adapter;
    else a one-line error naming the command that makes them."""
    folder = RunFolder(recipe.run_path)
    if not folder.is_done("ingest"):
        raise InputError(
            f"no index for '{recipe.name}' in {folder.root}; run `distill run {recipe_path}` "
            "first (it ingests, trains and evaluates the student)"
        )
    if need_adapter and not (
        folder.is_done("train") and (folder.adapter_dir / "adapter_config.json").is_file()
    ):
        raise InputError(
            f"no trained adapter for '{recipe.name}' in {folder.adapter_dir}; run "
            f"`distill run {recipe_path}` (or `distill train {recipe_path}`) first"
        )
    return folder


def open_assistant(
    recipe: Recipe,
    recipe_path: Path,
    upstream: str | None = None,
    upstream_options: dict[str, Any] | None = None,
) -> Assistant:
    """The assistant for `recipe`'s run: the student loaded here (eval's, with its
    adapter), or `upstream` (`openai:MODEL`, e.g. vLLM serving the adapter; default
    `eval.ft_model` with `eval.student_options`)."""
    from distill.evaluate.systems import LOOP_TOKENS, load_student
    from distill.models import student_specials
    from distill.prompts import load_templates
    from distill.serve.students import LocalStudent, UpstreamStudent

    cfg = recipe.eval
    spec = upstream or cfg.ft_model
    folder = ready(recipe, recipe_path, need_adapter=spec is None)
    student_specials(recipe.student)  # before any prompt is rendered, as eval does
    retriever = Retriever(folder.ingest_dir, recipe.retrieval)
    template = load_templates(recipe).answer
    student: Student
    if spec is not None:
        student = UpstreamStudent(spec, {**cfg.student_options, **(upstream_options or {})})
    else:
        student = LocalStudent(
            load_student(recipe, folder, ft=True).another(adapter=True), LOOP_TOKENS
        )
    return Assistant(recipe.name, retriever, template, cfg.k, student, cfg.max_new_tokens)
