"""Your own questions (`generate.prompts`): a file of questions read with every bad record
a counted skip and its reason, never a traceback.

The formats, told apart per record (a file may mix them):
- JSON Lines of `{"question": ..., "answer": ...}` (the keys: `question_field`,
  `answer_field`; the answer is optional);
- OpenAI chat fine-tuning JSONL, `{"messages": [{"role", "content"}, ...]}`;
- a stored-completions export: a stored chat completion as the API returns it (`id`,
  `model`, `choices[0].message`, ...) with its request's messages beside it under `input`
  or `messages` (what `GET /v1/chat/completions/{id}/messages` lists); the completion's
  message follows them;
- CSV with a header row naming `question_field` (and, optionally, `answer_field`);
- a `.json` file holding a list of those records, or an API page `{"data": [...]}`.
In a conversation the question is the last user turn; the first assistant turn after it
with text is the imported answer. Content may be a string or a list of parts (their text
parts joined). A question's whitespace is collapsed (one line, as curate expects).

Skips, each counted by reason: a malformed line (not JSON, not UTF-8, not an object), a
message of an unknown role or without one, no user turn, a question or answer that is not
text, an empty question, a question or answer over `max_message_bytes` (a line far over it
is skipped unread), and a duplicate (the same question in lower case without punctuation).

Then `choose` holds out a seeded share of the questions (by a hash of each question, so
adding questions moves no other) as the `traffic` eval set, never trained on.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distill.errors import InputError
from distill.generate.config import PromptsConfig
from distill.io import sha256_text
from distill.redact import SECRET_SHAPES
from distill.split import split_documents, unit

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
TEXT_PARTS = frozenset({"text", "input_text", "output_text"})
# A line this many times max_message_bytes is skipped without being read into memory.
LINE_FACTOR = 16
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

Record = dict[str, Any] | str  # a record, or why the line is no record


@dataclass(frozen=True)
class Question:
    qid: str  # a hash of the normalised question: duplicates share it
    question: str
    answer: str | None  # the imported answer, if the record has one
    origin: str  # "FILE:LINE" (a .json file: "FILE:#INDEX")


@dataclass
class Imported:
    """What a prompts file gave: its questions, and its skips by reason."""

    questions: list[Question] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    first: dict[str, str] = field(default_factory=dict)  # reason -> where it first happened
    secret_shaped: int = 0  # questions or answers shaped like a credential (publish refuses)

    def skip(self, reason: str, where: str) -> None:
        self.skipped[reason] += 1
        self.first.setdefault(reason, where)

    def summary(self) -> str:
        """The skips as one line: '2 malformed line (first: traffic.jsonl:7), ...'."""
        return ", ".join(f"{n} {why} (first: {self.first[why]})" for why, n in self.skipped.items())


def normalise(text: str) -> str:
    """Lower case without punctuation or extra spaces: duplicates compare equal."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def read_prompts(path: Path, cfg: PromptsConfig) -> Imported:
    """Every usable question of the file, in file order, and what was skipped and why."""
    if not path.is_file():
        raise InputError(
            f"generate.prompts.path: {path} is not a file; give a JSONL, .json or CSV file "
            "relative to the recipe"
        )
    out = Imported()
    seen: set[str] = set()
    limit = cfg.max_message_bytes
    records = _csv(path, cfg) if path.suffix.lower() == ".csv" else _json(path, limit)
    for where, rec in records:
        got = _question(rec, cfg) if isinstance(rec, dict) else rec
        if isinstance(got, str):
            out.skip(got, where)
            continue
        question = " ".join(_CONTROL.sub("", got[0]).split())
        answer = _CONTROL.sub("", got[1]).strip() if got[1] is not None else None
        if not question or not normalise(question):
            out.skip("empty question", where)
            continue
        if any(t is not None and len(t.encode()) > limit for t in (question, answer)):
            out.skip("oversize message", where)
            continue
        key = normalise(question)
        if key in seen:
            out.skip("duplicate question", where)
            continue
        seen.add(key)
        if any(rx.search(t) for t in (question, answer or "") for rx in SECRET_SHAPES.values()):
            out.secret_shaped += 1
        out.questions.append(Question(sha256_text(key)[:16], question, answer or None, where))
    return out


def choose(
    questions: list[Question], cfg: PromptsConfig, seed: int
) -> tuple[list[Question], list[Question]]:
    """(training questions, held-out questions), each in file order: at most
    `max_questions` (a seeded sample), then `eval_fraction` of them held out (at least
    one when it is above 0 and there are two or more), by a seeded hash of each."""
    if cfg.max_questions is not None and len(questions) > cfg.max_questions:
        ranked = sorted(questions, key=lambda q: unit(seed + 1, q.qid))
        keep = {q.qid for q in ranked[: cfg.max_questions]}
        questions = [q for q in questions if q.qid in keep]
    least = 1 if cfg.eval_fraction > 0 else 0
    held = split_documents([q.qid for q in questions], cfg.eval_fraction, seed, least)
    return [q for q in questions if q.qid not in held], [q for q in questions if q.qid in held]


def _question(rec: dict[str, Any], cfg: PromptsConfig) -> tuple[str, str | None] | str:
    """(question, imported answer or None) of one record, or why it has none."""
    messages = rec.get("messages", rec.get("input"))
    if messages is None and cfg.question_field not in rec:
        return "no question (no messages, input or question field)"
    if messages is None:
        question, answer = rec[cfg.question_field], rec.get(cfg.answer_field)
        if not isinstance(question, str):
            return "question is not text"
        if answer is not None and not isinstance(answer, str):
            return "answer is not text"
        return question, answer
    if isinstance(messages, str):  # a request given as its text alone
        messages = [{"role": "user", "content": messages}]
    if not isinstance(messages, list):
        return "malformed message"
    choices = rec.get("choices")
    if choices is not None:  # a stored completion: its reply follows the request
        first = choices[0] if isinstance(choices, list) and choices else None
        reply = first.get("message") if isinstance(first, dict) else None
        if not isinstance(reply, dict):
            return "malformed message"
        messages = [*messages, reply]
    return _last_turn(messages)


def _last_turn(messages: list[Any]) -> tuple[str, str | None] | str:
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            return "malformed message"
        if m["role"] not in ROLES:
            return "unknown role"
    users = [i for i, m in enumerate(messages) if m["role"] == "user"]
    if not users:
        return "no user turn"
    question = _text(messages[users[-1]].get("content"))
    if question is None:
        return "question is not text"
    after = (_text(m.get("content")) for m in messages[users[-1] + 1 :] if m["role"] == "assistant")
    return question, next((a for a in after if a and a.strip()), None)


def _text(content: Any) -> str | None:
    """A message's text: a string, or the text parts of a list of parts joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            p["text"]
            for p in content
            if isinstance(p, dict)
            and p.get("type") in TEXT_PARTS
            and isinstance(p.get("text"), str)
        ]
        return "\n".join(parts) if parts else None
    return None


def _json(path: Path, limit: int) -> Iterator[tuple[str, Record]]:
    """A .json file's records, or a JSON Lines file's, with where each came from."""
    name = path.name
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_bytes())
        except (ValueError, RecursionError):
            raise InputError(
                f"generate.prompts.path: {path} is not JSON; give a JSON list of records or "
                "JSON Lines (.jsonl, one record a line)"
            ) from None
        rows = data.get("data") if isinstance(data, dict) else data
        if not isinstance(rows, list):
            raise InputError(
                f"generate.prompts.path: {path} holds neither a list of records nor a page "
                '{"data": [...]}; give JSON Lines instead'
            )
        for i, row in enumerate(rows):
            yield f"{name}:#{i}", row if isinstance(row, dict) else "not a JSON object"
        return
    for n, line in _lines(path, limit * LINE_FACTOR):
        where = f"{name}:{n}"
        if line is None:
            yield where, "oversize message"
            continue
        if not line.strip():
            continue  # a blank line is no record
        try:
            rec = json.loads(line)
        except (ValueError, RecursionError):  # not UTF-8, not JSON, nested too deep
            yield where, "malformed line"
            continue
        yield where, rec if isinstance(rec, dict) else "not a JSON object"


def _lines(path: Path, limit: int) -> Iterator[tuple[int, bytes | None]]:
    """(line number, bytes) per line; None for a line over `limit` bytes, which is read
    past in pieces, never held whole."""
    with path.open("rb") as f:
        n = 0
        while line := f.readline(limit + 1):
            n += 1
            if len(line) > limit and not line.endswith(b"\n"):
                while (rest := f.readline(1 << 20)) and not rest.endswith(b"\n"):
                    pass
                yield n, None
            else:
                yield n, line


def _csv(path: Path, cfg: PromptsConfig) -> Iterator[tuple[str, Record]]:
    """A CSV file's rows as records, by its header's names. Bytes that are not UTF-8 make
    the row malformed; a field over the line limit makes it oversize."""
    name = path.name
    old = csv.field_size_limit()
    csv.field_size_limit(cfg.max_message_bytes * LINE_FACTOR)
    try:
        with path.open(encoding="utf-8-sig", errors="replace", newline="") as f:
            reader = csv.reader(f)
            try:
                header = next(reader, None)
            except csv.Error:
                header = None
            if not header or cfg.question_field not in header:
                raise InputError(
                    f"generate.prompts.path: {path} has no header column "
                    f"{cfg.question_field!r}; name the question column in the first row, or "
                    "set generate.prompts.question_field"
                )
            at = header.index(cfg.question_field)
            answer_at = header.index(cfg.answer_field) if cfg.answer_field in header else None
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    return
                except csv.Error as e:
                    big = "field larger" in str(e)
                    yield (
                        f"{name}:{reader.line_num}",
                        "oversize message" if big else "malformed line",
                    )
                    continue
                where = f"{name}:{reader.line_num}"
                if not any(c.strip() for c in row):
                    continue
                if "\ufffd" in "".join(row):
                    yield where, "malformed line"
                    continue
                rec = {cfg.question_field: row[at] if at < len(row) else ""}
                if answer_at is not None and answer_at < len(row) and row[answer_at].strip():
                    rec[cfg.answer_field] = row[answer_at]
                yield where, rec
    finally:
        csv.field_size_limit(old)
