"""Go's text/template, the part Ollama's chat templates use, to render a Modelfile's
TEMPLATE the way Ollama does without Go: text, `{{ .Field }}` and `{{ $.Field }}`,
`if` / `else if` / `else` / `end`, `range`, the functions `eq`, `ne`, `not`, `and`,
`or`, `len`, and the trim markers `{{- ` and ` -}}` (which remove the whitespace
before or after the action, newlines included). Go's truth: "", 0, false, nil and
empty lists are false. Anything else is refused (ValueError), so a template using more
than this cannot pass a test by being misread."""

from __future__ import annotations

import re
import shlex
from typing import Any

_ACTION = re.compile(r"\{\{(- )?(.*?)( -)?\}\}", re.S)


def _tokens(source: str) -> list[tuple[str, str]]:
    """[("text", ...) | ("action", ...)] with the trim markers applied."""
    out: list[tuple[str, str]] = []
    pos, trim_next = 0, False
    for m in _ACTION.finditer(source):
        text = source[pos : m.start()]
        if trim_next:
            text = text.lstrip(" \t\r\n")
        if m.group(1):
            text = text.rstrip(" \t\r\n")
        out.append(("text", text))
        out.append(("action", m.group(2).strip()))
        pos, trim_next = m.end(), bool(m.group(3))
    tail = source[pos:]
    out.append(("text", tail.lstrip(" \t\r\n") if trim_next else tail))
    return out


def _parse(tokens: list[tuple[str, str]], i: int, ends: tuple[str, ...]) -> tuple[list, int]:
    """Nodes up to an action in `ends` (returned with its index)."""
    nodes: list[Any] = []
    while i < len(tokens):
        kind, value = tokens[i]
        if kind == "text":
            nodes.append(("text", value))
            i += 1
            continue
        word = value.split(" ", 1)[0]
        if value in ends or word in ends:
            return nodes, i
        if word in ("if", "range"):
            branches, otherwise = [], []
            cond = value[len(word) :].strip()
            while True:
                body, i = _parse(tokens, i + 1, ("else", "end"))
                branches.append((cond, body))
                stop = tokens[i][1]
                if stop == "end":
                    break
                if stop.startswith("else if ") and word == "if":
                    cond = stop[len("else if ") :].strip()
                    continue
                if stop == "else":
                    otherwise, i = _parse(tokens, i + 1, ("end",))
                    break
                raise ValueError(f"unsupported action {stop!r}")
            nodes.append((word, branches, otherwise))
            i += 1
        elif word in ("else", "end"):
            raise ValueError(f"unexpected {{{{ {value} }}}}")
        else:
            nodes.append(("print", value))
            i += 1
    if ends:
        raise ValueError(f"missing {{{{ end }}}} (wanted one of {ends})")
    return nodes, i


def _truth(value: Any) -> bool:
    return value not in (None, "", 0, False) and not (isinstance(value, list | dict) and not value)


def _value(word: str, dot: Any, root: Any) -> Any:
    if word.startswith('"'):
        return shlex.split(word)[0]
    if word == ".":
        return dot
    if word.startswith("$."):
        base, path = root, word[2:]
    elif word.startswith("."):
        base, path = dot, word[1:]
    else:
        raise ValueError(f"unsupported operand {word!r}")
    for name in path.split("."):
        base = base.get(name) if isinstance(base, dict) else getattr(base, name)
    return base


def _eval(pipe: str, dot: Any, root: Any) -> Any:
    if "(" in pipe or "|" in pipe or ":=" in pipe:
        raise ValueError(f"unsupported pipeline {pipe!r}")
    words = re.findall(r'"(?:[^"\\]|\\.)*"|\S+', pipe)
    head, args = words[0], [_value(w, dot, root) for w in words[1:]]
    functions = {
        "eq": lambda a, *b: any(a == x for x in b),
        "ne": lambda a, b: a != b,
        "not": lambda a: not _truth(a),
        "and": lambda *a: next((x for x in a if not _truth(x)), a[-1]),
        "or": lambda *a: next((x for x in a if _truth(x)), a[-1]),
        "len": lambda a: len(a),
    }
    if head in functions:
        return functions[head](*args)
    if args:
        raise ValueError(f"unsupported function {head!r}")
    return _value(head, dot, root)


def _run(nodes: list, dot: Any, root: Any, out: list[str]) -> None:
    for node in nodes:
        if node[0] == "text":
            out.append(node[1])
        elif node[0] == "print":
            value = _eval(node[1], dot, root)
            out.append("" if value is None else str(value))
        elif node[0] == "if":
            for cond, body in node[1]:
                if _truth(_eval(cond, dot, root)):
                    _run(body, dot, root, out)
                    break
            else:
                _run(node[2], dot, root, out)
        else:  # range
            ((cond, body),) = node[1]
            items = _eval(cond, dot, root) or []
            for item in items:
                _run(body, item, root, out)
            if not items:
                _run(node[2], dot, root, out)


def render(template: str, data: dict[str, Any]) -> str:
    """`template` executed on `data` as Go's text/template executes it."""
    nodes, _ = _parse(_tokens(template), 0, ())
    out: list[str] = []
    _run(nodes, data, data, out)
    return "".join(out)
