"""A judge over any teacher: JSON verdicts validated against a schema, with failures
kept as failures (curate's sample judge and eval's graders use it). The teacher comes
from distill.teachers.factory, cached there."""

from __future__ import annotations

import json
from typing import Any

from distill.tables import Judgement, JudgementKey
from distill.teachers import Message
from distill.teachers.base import Teacher, parse_json
from distill.teachers.engine import schema_problem
from distill.ui import progress

JUDGE_BATCH = 8  # prompts per call for judges that answer a batch at a time (local)
Verdict = tuple[dict[str, Any] | None, str | None, float]  # verdict, error, cost

# The graders' verdicts (eval's grade and head-to-head, train's preference pairs).
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

# Eval's judge from eval_grade@v3: the reason first (it is written before the verdict),
# then one of three named levels.
VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "reason": {"type": "string"},
        "verdict": {"type": "string", "enum": ["correct", "partial", "wrong"]},
    },
    "required": ["reason", "verdict"],
}

PAIRWISE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "winner": {"type": "string", "enum": ["A", "B", "tie"]},
        "reason": {"type": "string"},
    },
    "required": ["winner", "reason"],
}


class JsonJudge:
    """A judge: cached calls, each reply validated against its JSON schema."""

    def __init__(
        self, teacher: Teacher, *, max_tokens: int = 160, prefill: bool | None = False
    ) -> None:
        """`prefill`: start the reply with the opening of the JSON object (None: where
        the backend says it needs one: a local transformers model, whose small models
        otherwise echo the prompt; llama.cpp's JSON grammar needs none)."""
        self.teacher = teacher
        self.size = 10_000 if teacher.sends_all_at_once else JUDGE_BATCH
        self.max_tokens = max_tokens
        if prefill is None:  # a capability of the backend (a grammar makes it unneeded)
            prefill = teacher.needs_json_prefill
        self.prefill = prefill
        self.calls = 0
        self.failures = 0  # errored or unparseable judgements
        self.log: list[Judgement] = []  # every judgement, raw reply included

    def ask(
        self,
        label: str,
        prompts: list[list[Message]],
        schema: dict[str, Any],
        keys: list[JudgementKey] | None = None,
    ) -> list[Verdict]:
        """(verdict, error, cost) per prompt; a failed or unparseable judgement is an error.
        `keys` (e.g. item, system, kind per prompt) label the rows of `log`."""
        out: list[Verdict] = []
        if not prompts:
            return out
        first, spec = next(iter(schema["properties"].items()))
        # ... up to the opening quote of a string: then "A" / "B" / "tie" is the next token.
        start_of_reply = '{"' + first + '": ' + ('"' if spec.get("type") == "string" else "")
        if self.prefill:
            prompts = [[*p, {"role": "assistant", "content": start_of_reply}] for p in prompts]
        raws: list[str] = []
        with progress() as bar:
            task = bar.add_task(label, total=len(prompts))
            for start in range(0, len(prompts), self.size):
                replies = self.teacher.complete_many(
                    prompts[start : start + self.size],
                    schema=schema,
                    max_tokens=self.max_tokens,
                    temperature=0.0,
                    on_done=lambda i, c: bar.advance(task),
                )
                self.calls += len(replies)
                for c in replies:
                    if self.prefill and c.error is None:
                        c.parsed = parse_json(start_of_reply + c.text)
                    if c.error is not None:
                        why = str(c.error).split(": ", 1)[-1][:300] or "error"
                        out.append((None, why, c.cost_usd))
                    elif (problem := schema_problem(c.parsed, schema)) is not None:
                        out.append((None, f"unparseable verdict ({problem})", c.cost_usd))
                    else:
                        out.append((c.parsed, None, c.cost_usd))
                raws += [c.text for c in replies]
        self.failures += sum(err is not None for _, err, _ in out)
        labels = keys if keys is not None else [{} for _ in out]
        for key, (verdict, err, usd), raw in zip(labels, out, raws, strict=True):
            self.log.append(
                {
                    **key,
                    "verdict": json.dumps(verdict) if verdict is not None else None,
                    "error": err,
                    "raw": (start_of_reply if self.prefill else "") + raw,
                    "judge": self.teacher.spec,
                    "cost_usd": usd,
                }
            )
        return out
