"""Typed recipe: one pydantic model per stage, composed into `Recipe`, with the settings
several stages read (`teacher`, `student`, `split`, `retrieval`) at its top level.

YAML keys are exactly the field names; unknown keys are errors, and a key that moved
(`MOVED`) fails with one line naming its new place. `--set a.b=value` overrides a field
(the value is parsed as YAML, so `--set train.epochs=1` is a number).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError

from distill.config import (
    DEFAULT_STUDENT,
    LocalModel,
    PriceConfig,
    RetrievalConfig,
    SplitConfig,
    StrictModel,
    TeacherConfig,
)
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
    teacher: TeacherConfig = Field(
        default_factory=lambda: TeacherConfig(),
        description="The teacher: 'provider:model', or {model, options, price}.",
    )
    student: LocalModel = Field(
        DEFAULT_STUDENT,
        description="The student model: local:MODEL or MODEL (hub id, local folder, .gguf "
        "file or offline alias).",
    )
    split: SplitConfig = Field(default_factory=lambda: SplitConfig())
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
        t = self.teacher
        spec = spec or t.model
        if options is None:
            options = t.options if spec == t.model else {}
        return spec, options

    def price_of(self, spec: str) -> PriceConfig | None:
        """The recipe's price for a judge's `spec`: teacher.price when it is the
        teacher's model, else none (the factory then looks it up in the table)."""
        return self.teacher.price if spec == self.teacher.model else None


# Keys that moved, and where to: a recipe (or a --set) that still uses one fails with one
# line naming the new place, rather than being read under the old name.
MOVED = {
    "train.student": "student",
    "generate.teacher": "teacher",
    "generate.teacher_options": "teacher.options",
    "generate.price": "teacher.price",
    "curate.eval_fraction": "split.eval_fraction",
    "curate.min_eval_documents": "split.min_eval_documents",
    "curate.seed": "split.seed",
    "curate.seen_eval_fraction": "split.seen_eval_fraction",
    "curate.exports": "review.exports",
    "train.gkd.teacher_options": "train.gkd.served_teacher.options",
}
# A section given as one string stands for this mapping (`teacher: X` is {model: X}).
SHORTHAND = {"teacher": "model"}


def _get(data: Any, dotted: str) -> tuple[bool, Any]:
    node = data
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return False, None
        node = node[key]
    return True, node


def _flow(value: Any) -> str:
    """A value as one line of YAML."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def _snippet(dotted: str, value: Any) -> str:
    """Where `dotted` goes and what to write there: `split: {seed: 2}` at the top of the
    recipe, or `exports: [openai]` under review."""
    parent, _, key = dotted.rpartition(".")
    if parent in ("", "teacher", "split"):
        head, _, inner = dotted.partition(".")
        shown = _flow({inner: value}) if inner else _flow(value)
        return f"`{head}: {shown}` at the top of the recipe"
    return f"`{key}: {_flow(value)}` under {parent}"


# The old keys that make one new block together, each with its key inside the block;
# a recipe that uses several gets one line with the whole block.
BLOCKS = {
    "teacher": {
        "generate.teacher": "model",
        "generate.teacher_options": "options",
        "generate.price": "price",
    },
    "train.gkd.served_teacher": {
        "train.gkd.teacher": "model",
        "train.gkd.teacher_options": "options",
    },
}


def _is_served(old: str, value: Any) -> bool:
    """A GKD teacher given as openai:MODEL was a served one (a local one stays put)."""
    return old != "train.gkd.teacher" or (isinstance(value, str) and value.startswith("openai:"))


def _moved_in_file(data: dict[str, Any]) -> list[str]:
    """One line per moved key the recipe file still uses (one per block: `BLOCKS`)."""
    out = []
    for new, parts in BLOCKS.items():
        given = {}
        for old, inner in parts.items():
            found, value = _get(data, old)
            if found and _is_served(old, value):
                given[old] = (inner, value)
        if list(given) == ["generate.teacher"]:
            model = given["generate.teacher"][1]
            out.append(f"generate.teacher moved: write {_snippet(new, model)}")
        elif given:
            block: dict[str, Any] = {"model": "openai:MODEL" if "gkd" in new else "PROVIDER:MODEL"}
            block |= {inner: value for inner, value in given.values()}
            if "gkd" in new:
                block.setdefault("options", {"base_url": "URL"})
            named = [f"{old}: {v}" if i == "model" else old for old, (i, v) in given.items()]
            out.append(f"{', '.join(named)} moved: write {_snippet(new, block)}")
    for old, new in MOVED.items():
        found, value = _get(data, old)
        if found and not any(old in parts for parts in BLOCKS.values()):
            out.append(f"{old} moved: write {_snippet(new, value)}")
    return out


def _moved_by_set(key: str, value: Any) -> str | None:
    """The line for a --set of a moved key, or None."""
    for old, new in MOVED.items():
        if key == old or key.startswith(old + "."):
            return f"--set {key} moved: write --set {new}{key[len(old) :]}={_flow(value)}"
    if key == "train.gkd.teacher" and isinstance(value, str) and value.startswith("openai:"):
        return (
            f"--set train.gkd.teacher={value} is served: write --set "
            f"train.gkd.served_teacher.model={value} (and its options, "
            "train.gkd.served_teacher.options.base_url=URL)"
        )
    return None


def _set_path(data: dict[str, Any], dotted: str, value: Any, source: str) -> None:
    keys = dotted.split(".")
    node = data
    for i, key in enumerate(keys[:-1]):
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        inner = SHORTHAND.get(".".join(keys[: i + 1]))
        if inner and isinstance(child, str):
            child = node[key] = {inner: child}
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
    moved: list[str] = []
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
        why = _moved_by_set(key.strip(), value)
        if why:
            moved.append(why)
            continue
        _set_path(data, key.strip(), value, source)
    moved = _moved_in_file(data) + moved
    if moved:
        raise RecipeError(source, moved)
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


def _model_within(ann: Any, path: str = "") -> tuple[type[BaseModel], str] | None:
    """A model held deeper in a field's type (through a type alias, a union, a list or a
    dict's values: eval.systems' `NAME: SPEC` entries), with the key path to it."""
    from typing import get_args, get_origin

    value = getattr(ann, "__value__", None)  # a TypeAliasType
    if value is not None:
        return _model_within(value, path)
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann, path
    origin = get_origin(ann)
    step = "[]" if origin is list else ".NAME" if origin is dict else ""
    for arg in get_args(ann)[1:] if origin is dict else get_args(ann):
        found = _model_within(arg, path + step)
        if found is not None:
            return found
    return None


def _kind(ann: Any) -> str:
    """A field's type as the reference shows it: `LocalModel | None` is `str or None`."""
    from typing import Annotated, Union, get_args, get_origin

    origin = get_origin(ann)
    if origin is Annotated:
        return _kind(get_args(ann)[0])
    if origin is Union and any(get_origin(a) is Annotated for a in get_args(ann)):
        return " or ".join(_kind(a) for a in get_args(ann))
    if ann is type(None):
        return "None"
    return ann.__name__ if isinstance(ann, type) else str(ann).replace("typing.", "")


def describe_fields() -> str:
    """Every recipe key with its type, default and description, as Markdown."""
    sections: list[tuple[str, type[BaseModel]]] = []

    def collect(name: str, model: type[BaseModel]) -> None:
        sections.append((name, model))
        prefix = "" if name == "(top level)" else f"{name}."
        for key, field in model.model_fields.items():
            nested = _nested_model(field.annotation)
            if nested is not None:
                is_list = getattr(field.annotation, "__origin__", None) is list
                collect(f"{prefix}{key}{'[]' if is_list else ''}", nested)
            elif (within := _model_within(field.annotation)) is not None:
                collect(f"{prefix}{key}{within[1]}", within[0])

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
            kind = _kind(field.annotation).replace(" | ", " or ")
            rows.append(f"| `{key}` | {kind} | {default} | {field.description or ''} |")
        if rows:
            head = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
            lines += [f"### `{section}`", "", *head, *rows, ""]
    return "\n".join(lines)
