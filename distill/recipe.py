"""Typed recipe: one pydantic model per stage, composed into `Recipe`.

YAML keys are exactly the field names; unknown keys are errors. `--set a.b=value`
overrides a field (the value is parsed as YAML, so `--set train.epochs=1` is a number).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError

from distill.config import PriceConfig, RetrievalConfig, StrictModel
from distill.curate.config import CurateConfig
from distill.errors import RecipeError
from distill.evaluate.config import EvalConfig
from distill.generate.config import GenerateConfig
from distill.ingest.config import IngestConfig
from distill.publish.config import PublishConfig
from distill.review.config import ReviewConfig
from distill.train.config import TrainConfig


class Recipe(StrictModel):
    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="Run name; the run folder is <run_dir>/<name>.",
    )
    description: str = Field("", description="Free text, copied into the cards.")
    run_dir: str = Field("runs", description="Parent folder of run folders, relative to the cwd.")
    ingest: IngestConfig
    retrieval: RetrievalConfig = Field(default_factory=lambda: RetrievalConfig())
    generate: GenerateConfig = Field(default_factory=lambda: GenerateConfig())
    curate: CurateConfig = Field(default_factory=lambda: CurateConfig())
    review: ReviewConfig = Field(default_factory=lambda: ReviewConfig())
    train: TrainConfig = Field(default_factory=lambda: TrainConfig())
    eval: EvalConfig = Field(default_factory=lambda: EvalConfig())
    publish: PublishConfig = Field(default_factory=lambda: PublishConfig())

    # Set by load_recipe: where relative input paths are resolved from.
    base_dir: Path = Field(Path("."), exclude=True, description="Folder of the recipe file.")

    @property
    def run_path(self) -> Path:
        return Path(self.run_dir) / self.name

    def stage_config(self, stage: str) -> BaseModel:
        return getattr(self, stage)

    def judge_of(
        self, spec: str | None, options: dict[str, Any] | None
    ) -> tuple[str, dict[str, Any]]:
        """A judge's spec and backend settings: `spec` (else the teacher), with `options`
        (else the teacher's when it is the teacher's model, else none). Eval's judge and
        DPO's pair judge follow this rule."""
        g = self.generate
        spec = spec or g.teacher
        if options is None:
            options = g.teacher_options if spec == g.teacher else {}
        return spec, options

    def price_of(self, spec: str) -> PriceConfig | None:
        """The recipe's price for a judge's `spec`: generate.price when it is the
        teacher's model, else none (the factory then looks it up in the table)."""
        return self.generate.price if spec == self.generate.teacher else None


def _set_path(data: dict[str, Any], dotted: str, value: Any, source: str) -> None:
    keys = dotted.split(".")
    node = data
    for i, key in enumerate(keys[:-1]):
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise RecipeError(
                source, [f"--set {dotted}: '{'.'.join(keys[: i + 1])}' is not a section"]
            )
        node = child
    node[keys[-1]] = value


def _format_error(err: Any, model: type[BaseModel]) -> str:
    loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
    if err["type"] == "extra_forbidden":
        parent: Any = model
        for part in err["loc"][:-1]:
            field = parent.model_fields.get(str(part)) if isinstance(part, str) else None
            ann = field.annotation if field else None
            parent = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
            if parent is None:
                break
        known = f" (known keys: {', '.join(parent.model_fields)})" if parent else ""
        return f"{loc}: unknown key{known}"
    given = err.get("input")
    shown = "" if err["type"] == "missing" else f" (got {given!r})"
    return f"{loc}: {err['msg']}{shown}"


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read, override and validate a recipe; raise RecipeError with one line per problem."""
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise RecipeError(source, ["file not found"])
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise RecipeError(source, [f"{where}not valid YAML ({getattr(e, 'problem', e)})"]) from e
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(source, ["the top level must be a mapping of stage names to settings"])
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise RecipeError(source, [f"--set {item!r}: expected KEY.PATH=VALUE"])
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError as e:
            raise RecipeError(
                source,
                [
                    f"--set {item!r}: the value is not valid YAML ({getattr(e, 'problem', e)}); "
                    "quote it, e.g. --set 'eval.off_topic=[\"Is it free?\"]'"
                ],
            ) from e
        _set_path(data, key.strip(), value, source)
    data.pop("base_dir", None)
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as e:
        raise RecipeError(source, [_format_error(err, Recipe) for err in e.errors()]) from e
    recipe.base_dir = path.resolve().parent
    return recipe


def _nested_model(ann: Any) -> type[BaseModel] | None:
    """The model a field holds, directly or as list items."""
    from typing import get_args

    for candidate in (ann, *get_args(ann)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def describe_fields() -> str:
    """Every recipe key with its type, default and description, as Markdown."""
    sections: list[tuple[str, type[BaseModel]]] = []

    def collect(name: str, model: type[BaseModel]) -> None:
        sections.append((name, model))
        for key, field in model.model_fields.items():
            nested = _nested_model(field.annotation)
            if nested is not None:
                is_list = getattr(field.annotation, "__origin__", None) is list
                prefix = "" if name == "(top level)" else f"{name}."
                collect(f"{prefix}{key}{'[]' if is_list else ''}", nested)

    collect("(top level)", Recipe)
    lines = []
    for section, model in sections:
        rows = []
        for key, field in model.model_fields.items():
            if field.exclude or _nested_model(field.annotation) is not None:
                continue
            if field.is_required():
                default = "required"
            else:
                value = field.get_default(call_default_factory=True)
                default = f"`{json.dumps(value, default=str)}`"
            ann = field.annotation
            kind = ann.__name__ if isinstance(ann, type) else str(ann).replace("typing.", "")
            kind = kind.replace(" | ", " or ")
            rows.append(f"| `{key}` | {kind} | {default} | {field.description or ''} |")
        if rows:
            head = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
            lines += [f"### `{section}`", "", *head, *rows, ""]
    return "\n".join(lines)
