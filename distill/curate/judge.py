"""Curate's judge: one cached call per sample to `curate.judge`, built and priced by
the teacher factory like every teacher; its verdicts validated, its spend counted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distill.config import PriceConfig
from distill.grounding import numbered
from distill.prompts import recipe_template
from distill.recipe import Recipe

JUDGE_SCHEMA = {
    "type": "object",
    "properties": {
        "groundedness": {"type": "integer", "minimum": 1, "maximum": 5},
        "quality": {"type": "integer", "minimum": 1, "maximum": 5},
        "reason": {"type": "string"},
    },
    "required": ["groundedness", "quality", "reason"],
}


def judge_price(recipe: Recipe, spec: str) -> PriceConfig | None:
    """The recipe's price for a judge: generate.price when it is the teacher's model."""
    return recipe.generate.price if spec == recipe.generate.teacher else None


class SampleJudge:
    """The recipe's judge: one cached call per sample, verdicts validated; `cost_usd` is
    what its calls paid in this run."""

    def __init__(self, recipe: Recipe, out: Path, chunk_text: dict[str, str]) -> None:
        assert recipe.curate.judge is not None
        self.recipe, self.out, self.chunk_text = recipe, out, chunk_text
        self.spec = recipe.curate.judge
        self.template = recipe_template(recipe, recipe.curate.judge_template)
        self.cost_usd = 0.0
        from distill.teachers.factory import price_for

        self.price_source = price_for(self.spec, judge_price(recipe, self.spec))[1]

    def __call__(self, samples: list[dict[str, Any]]) -> list[dict[str, Any] | str]:
        from distill.teachers.cache import RequestCache
        from distill.teachers.factory import make_teacher
        from distill.teachers.judge import JsonJudge

        cache = RequestCache(self.out / "cache.sqlite")
        teacher = make_teacher(
            self.spec,
            self.recipe.curate.judge_options,
            price=judge_price(self.recipe, self.spec),
            cache=cache,
            salt=self.template.sha,
        )
        judging = JsonJudge(teacher, max_tokens=128)
        prompts = [
            self.template.render(
                passages=numbered(
                    [{"text": self.chunk_text.get(c, ""), "heading_path": ""} for c in ids]
                ),
                question=s["question"],
                answer=s["answer"],
            )
            for s in samples
            for ids in [s["chunk_ids"]]
        ]
        verdicts = judging.ask("judging", prompts, JUDGE_SCHEMA)
        cache.close()
        self.cost_usd += teacher.spent_usd
        return [verdict if verdict is not None else str(error) for verdict, error, _ in verdicts]
