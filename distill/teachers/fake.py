"""A scripted teacher for tests and dry runs: no model, no network.

`FakeTeacher(responses=[...])` replies with the scripted strings in turn;
`responses=callable` computes the reply from the messages. With no script it
replies deterministically from the prompt (a question for question prompts, an
answer-key JSON with a question per sentence that states a number for eval_key
prompts, a cited question/answer pair per sentence of the source document for
qa_pairs prompts, the first sentence of the delimited document otherwise), so a whole
pipeline can run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from distill.teachers.base import Completion, Message, Teacher, Usage, cut_at_stop, parse_json

Script = list[str] | Callable[[list[Message]], str]

_DOC = re.compile(r'<document(?:\s+\w+="[^"]*")*\s*>\s*(.*?)\s*</document>', re.S)


_FIGURE = re.compile(r"\$?\d[\d,.]*(?:\s(?:minutes?|hours?|days?|MB|GB|characters?))?")


def _key_reply(document: str) -> str:
    """An answer-key reply (eval_key): a question per sentence that states a number."""
    items = []
    for sentence in re.split(r"(?<=[.!?])\s", document.strip()):
        m = _FIGURE.search(sentence)
        if m:
            topic = " ".join(re.findall(r"[A-Za-z]+", sentence[: m.start()])[-5:])
            items.append(
                {
                    "question": f"What does the page say about {topic}?",
                    "key_facts": [m.group(0).rstrip(".,")],
                }
            )
    return json.dumps({"items": items})


def _pairs_reply(prompt: str, docs: list[str]) -> str:
    """A pairs reply (qa_pairs): a question per sentence of the source document, each
    answered by that sentence with its citation; for a keyed template, its key fact."""
    n = int(m.group(1)) if (m := re.search(r"Write (\d+) different questions", prompt)) else 1
    src = int(m.group(1)) if (m := re.search(r"document \[(\d+)\] answers", prompt)) else 1
    sentences = re.split(r"(?<=[.!?])\s", docs[src - 1].strip()) if docs else []
    keyed = "key_facts" in prompt
    pairs = []
    for s in sentences[:n]:
        if not s.strip():
            continue
        m = _FIGURE.search(s)
        fact = m.group(0).rstrip(".,") if m else s.split()[-1].strip(".,")
        # The question leaves the key fact's words out (the eval key's rule).
        words = [w for w in re.findall(r"[A-Za-z0-9$%]+", s) if not (keyed and w in fact)]
        pair: dict[str, Any] = {
            "question": f"What does the documentation say about {' '.join(words[:8])}?"
        }
        if '"answer"' in prompt:  # an extractive template asks for none
            pair["answer"] = f"{s.strip()} [{src}]"
        if keyed:  # the sentence's first figure, or its last word
            pair["key_facts"] = [fact]
        pairs.append(pair)
    return json.dumps({"pairs": pairs})


def _default_reply(messages: list[Message]) -> str:
    prompt = messages[-1]["content"]
    docs = _DOC.findall(prompt)
    first = docs[0] if docs else prompt
    everything = "\n".join(m["content"] for m in messages)
    if '{"pairs"' in everything:
        return _pairs_reply(everything, docs)
    if "key_facts" in messages[0]["content"]:
        return _key_reply(first)
    sentence = re.split(r"(?<=[.!?])\s", first.strip(), maxsplit=1)[0][:200]
    if "write one request" in prompt.lower():
        words = re.findall(r"[A-Za-z0-9$%]+", sentence)[:8]
        return f"Request: Summarise what the documentation says about {' '.join(words)}."
    if "write one question" in prompt.lower() or "next question" in prompt.lower():
        words = re.findall(r"[A-Za-z0-9$%]+", sentence)[:8]
        return f"What does the documentation say about {' '.join(words)}?"
    return sentence


class FakeTeacher(Teacher):
    supports_schema = True
    scripted = True

    def __init__(
        self,
        spec: str = "fake:",
        model: str = "",
        options: Any = None,
        responses: Script | None = None,
    ) -> None:
        super().__init__(spec, model or "scripted", options)
        self.responses = responses
        self.calls: list[list[Message]] = []

    def complete(
        self, messages: list[Message], *, schema: dict[str, Any] | None = None, **params: Any
    ) -> Completion:
        self.calls.append(messages)
        if self.responses is None:
            text = _default_reply(messages)
        elif callable(self.responses):
            text = self.responses(messages)
        else:
            if not self.responses:
                raise IndexError("FakeTeacher ran out of scripted responses")
            text = self.responses.pop(0)
        text = cut_at_stop(text, params.get("stop"))
        n_in = sum(len(m["content"].split()) for m in messages)
        return Completion(
            text=text,
            parsed=parse_json(text) if schema else None,
            usage=Usage(n_in, len(text.split())),
        )
