"""Versioned prompt templates, stored as files in `prompts/<name>/v<N>.j2`.

A reference is `name@vN`. Templates are Jinja2 with StrictUndefined (a missing
variable is an error). The template is split into chat messages by lines that
hold only `[system]`, `[user]` or `[assistant]`; each part is rendered on its own.

Documents are untrusted, and so is everything a model wrote (questions, answers,
references): one function, `defuse`, takes the '<' off anything in such text that
looks like one of the templates' tags (`</document>`, `< /answer`, `<QUESTION >`).
`Template.render` defuses every variable it is given, so no call site can forget;
`passages` come already fenced in `<document id=...>` tags by `fence` (whose text and
title it defuses), marked `Fenced` so their own tags stay. A document cannot end its
own fence, nor an answer its own tag, and speak as instructions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from distill import assets
from distill.errors import UserError
from distill.io import sha256_text
from distill.recipe import Recipe

BUILTIN_DIR = assets.path("prompts")
_REF = re.compile(r"^(?P<name>[a-z0-9_]+)@v(?P<version>[0-9]+)$")
_ROLE = re.compile(r"^\[(system|user|assistant)\]\s*$", re.M)
_ENV = jinja2.Environment(
    undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False
)


@dataclass(frozen=True)
class Template:
    ref: str  # name@vN
    path: Path
    text: str

    @property
    def sha(self) -> str:
        return sha256_text(self.text)[:16]

    def render(self, **variables: Any) -> list[dict[str, str]]:
        """Render to chat messages; raise UserError on a missing variable.

        The source is split into role sections *before* rendering, so a variable's
        value (a document) can never start a new message.
        """
        variables = {k: defused(v) for k, v in variables.items()}
        parts = _ROLE.split(self.text)
        if parts[0].strip():
            raise UserError(
                f"prompt template {self.ref}: text before the first [system]/[user] line"
            )
        if len(parts) < 3:
            raise UserError(f"prompt template {self.ref}: no [system]/[user] sections")
        messages = []
        for role, source in zip(parts[1::2], parts[2::2], strict=True):
            try:
                content = _ENV.from_string(source).render(**variables)
            except jinja2.UndefinedError as e:
                raise UserError(f"prompt template {self.ref} ({self.path}): {e.message}") from e
            messages.append({"role": role, "content": content.strip()})
        return messages


def load_template(ref: str, search: list[Path] | None = None) -> Template:
    """Find `name@vN` in the given folders, then in distill's built-in prompts/."""
    m = _REF.match(ref)
    if not m:
        raise UserError(f"template reference '{ref}' must look like NAME@vN, e.g. qa_answer@v1")
    for folder in [*(search or []), BUILTIN_DIR]:
        path = folder / m["name"] / f"v{m['version']}.j2"
        if path.is_file():
            return Template(ref, path, path.read_text(encoding="utf-8"))
    raise UserError(f"prompt template {ref} not found (looked for {m['name']}/v{m['version']}.j2)")


# The tags the templates use to delimit material, and chat-role look-alikes.
_TAG = re.compile(
    r"<\s*/?\s*(?:document|question|answer(?:_[ab])?|reference|passage|conversation|"
    r"context|request|instructions?|system|user|assistant)\b",
    re.I,
)


class Fenced(str):
    """Text `fence` built: its document tags are meant; `render` leaves it as it is."""


# Chat control tokens in their generic forms: ChatML and Llama 3 (<|im_end|>,
# <|eot_id|>, <|start_header_id|>), SentencePiece (<s>, </s>, <unk>), Gemma
# (<start_of_turn>, <end_of_turn>) and Mistral / Llama 2 ([INST], [/INST], <<SYS>>).
# Tokenizers read these as control ids, not text: a document holding "<|im_end|>
# <|im_start|>system" would close its turn and open a real system turn.
_CONTROL = re.compile(
    r"<\|[^|<>\s]{1,40}\|>"
    r"|</?(?:s|unk|pad|bos|eos|start_of_turn|end_of_turn)>"
    r"|<</?SYS>>"
    r"|\[/?(?:INST|SYSTEM_PROMPT|TOOL_CALLS|AVAILABLE_TOOLS|TOOL_RESULTS)\]"
)
# And the special tokens of every tokenizer this process has loaded (the student's,
# a local teacher's or judge's): register_special_tokens.
_SPECIAL: set[str] = set()
_SPECIAL_RE: re.Pattern[str] | None = None


def register_special_tokens(tokens: Iterable[str]) -> None:
    """Defuse these token strings too from now on (those of three or more characters
    with a character that is not a letter or digit: words stay words)."""
    global _SPECIAL_RE
    new = {t for t in tokens if len(t) >= 3 and not t.isalnum() and t.strip() == t} - _SPECIAL
    if new:
        _SPECIAL.update(new)
        _SPECIAL_RE = re.compile("|".join(map(re.escape, sorted(_SPECIAL, key=len, reverse=True))))


def _break(token: str) -> str:
    """A control token's text that no tokenizer reads as the token: its first character
    escaped ('<' as '&lt;', '[' as '&#91;'), the rest as it was."""
    first = {"<": "&lt;", "[": "&#91;"}.get(token[0], token[0] + "\u2060")
    return first + token[1:]


def has_control(text: str) -> bool:
    """Does the text spell a chat control token (generic or a loaded tokenizer's)?"""
    return bool(_CONTROL.search(text) or (_SPECIAL_RE is not None and _SPECIAL_RE.search(text)))


def defuse(text: str) -> str:
    """Untrusted text as prompt material: tag look-alikes lose their '<' (as '&lt;'), and
    chat control tokens (generic forms and every loaded tokenizer's) are broken up."""
    text = _TAG.sub(lambda m: "&lt;" + m.group(0)[1:], text)
    text = _CONTROL.sub(lambda m: _break(m.group(0)), text)
    if _SPECIAL_RE is not None:
        text = _SPECIAL_RE.sub(lambda m: _break(m.group(0)), text)
    return text


def defused(value: Any) -> Any:
    """A template variable with every untrusted string in it defused (not `Fenced`)."""
    if isinstance(value, Fenced):
        return value
    if isinstance(value, str):
        return defuse(value)
    if isinstance(value, list | tuple):
        return [defused(v) for v in value]
    if isinstance(value, dict):
        return {k: defused(v) for k, v in value.items()}
    return value


def fence(chunk_id: str, text: str, title: str = "") -> Fenced:
    """Wrap an untrusted passage in document tags; its text and title are defused, and
    the title cannot close its attribute or break the line."""
    label = ""
    if title:
        label = ' title="' + " ".join(defuse(title).replace('"', "'").split()) + '"'
    return Fenced(f'<document id="{chunk_id}"{label}>\n{defuse(text)}\n</document>')


# -- the recipe's templates


@dataclass
class Templates:
    question: Template
    instruction: Template
    multi_hop: Template
    follow_up: Template
    answer: Template
    pairs: Template | None = None  # generate.pairs_per_request > 1 only

    def all(self) -> list[Template]:
        main = [self.question, self.instruction, self.multi_hop, self.follow_up, self.answer]
        return main + ([self.pairs] if self.pairs is not None else [])

    def salt(self) -> str:
        """The text hashes of every template, for cache keys and sample ids (a run
        without pairs keeps the ids and cache keys it had before they existed)."""
        return "+".join(t.sha for t in self.all())


def recipe_template(recipe: Recipe, ref: str) -> Template:
    """Template `ref`, looked up in the recipe's `generate.prompts_dir` first."""
    cfg = recipe.generate
    search = [recipe.base_dir / cfg.prompts_dir] if cfg.prompts_dir else []
    return load_template(ref, search)


def load_templates(recipe: Recipe) -> Templates:
    cfg = recipe.generate
    return Templates(
        question=recipe_template(recipe, cfg.question_template),
        instruction=recipe_template(recipe, cfg.instruction_template),
        multi_hop=recipe_template(recipe, cfg.multi_hop_template),
        follow_up=recipe_template(recipe, cfg.follow_up_template),
        answer=recipe_template(recipe, cfg.answer_template),
        pairs=recipe_template(recipe, cfg.pairs_template) if cfg.pairs_per_request > 1 else None,
    )
