"""Curate's judge: one cached call per sample to `curate.judge`, built and priced by
the teacher factory like every teacher; its verdicts validated, its spend counted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distill.grounding import numbered
from distill.prompts import recipe_template
from distill.recipe import Recipe
from distill.teachers.factory import make_teacher, price_for

JUDGE_SCHEMA = {
    "type": "object",
    "properties": {
        "groundedness": {"type": "integer", "minimum": 1, "maximum": 5},
        "quality": {"type": "integer", "minimum": 1, "maximum": 5},
        "reason": {"type": "string"},
    },
    "required": ["groundedness", "quality", "reason"],
}


class SampleJudge:
    """The recipe's judge: one cached call per sample, verdicts validated; `cost_usd` is
    what its calls paid in this run."""

    def __init__(self, recipe: Recipe, out: Path, chunk_text: dict[str, str]) -> None:
        assert recipe.curate.judge is not None
        self.recipe, self.out, self.chunk_text = recipe, out, chunk_text
        self.spec = recipe.curate.judge
        self.template = recipe_template(recipe, recipe.curate.judge_template)
        self.cost_usd = 0.0
        self.price_source = price_for(self.spec, recipe.price_of(self.spec))[1]

    def __call__(self, samples: list[dict[str, Any]]) -> list[dict[str, Any] | str]:
        from distill.teachers.cache import RequestCache
        from distill.teachers.judge import JsonJudge

        cache = RequestCache(self.out / "cache.sqlite")
        teacher = make_teacher(
            self.spec,
            self.recipe.curate.judge_options,
            price=self.recipe.price_of(self.spec),
            cache=cache,
            salt=self.template.sha,
        )
        judging = JsonJudge(teacher, max_tokens=128)
        prompts = [
            self.template.render(
                passages=numbered([self._passage(c) for c in s["chunk_ids"]]),
                question=s["question"],
                answer=s["answer"],
            )
            for s in samples
        ]
        verdicts = judging.ask("judging", prompts, JUDGE_SCHEMA)
        cache.close()
        self.cost_usd += teacher.spent_usd
        return [verdict if verdict is not None else str(error) for verdict, error, _ in verdicts]

    def _passage(self, chunk_id: str) -> dict[str, str]:
        return {"text": self.chunk_text.get(chunk_id, ""), "heading_path": ""}
