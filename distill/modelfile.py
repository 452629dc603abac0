"""An Ollama Modelfile for an exported GGUF (`distill export --ollama`): FROM the GGUF
(the merged student, or the student's own GGUF with ADAPTER the LoRA GGUF), TEMPLATE
the student's chat template in Go template syntax, PARAMETER stop for the tokens that
end its turn, SYSTEM the recipe's system prompt (the answer template's, as eval's `ft`
system asks without retrieval).

The TEMPLATE is not translated from Jinja (no general translation exists); it is read
off the chat template's own output. The template, as the GGUF carries it, renders
conversations of marker strings (a system message, user and assistant turns, with and
without a generation prompt); what surrounds each marker is that role's fixed prefix
and suffix, and what it writes when a chat has no system message is its default. The
pieces are checked against more renderings before anything is written, and a template
whose turns are not fixed text around their messages is refused in one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.errors import UserError

_S, _U1, _A1, _U2 = "\x01SYSTEM\x01", "\x01USER1\x01", "\x01ASSISTANT1\x01", "\x01USER2\x01"


@dataclass(frozen=True)
class Turns:
    """A chat template as fixed text around each message."""

    system: tuple[str, str]  # (prefix, suffix) of the system message
    default: str  # what stands in the system turn's place when a chat has none
    user: tuple[str, str]
    assistant: tuple[str, str]  # the suffix closes a finished assistant turn
    generation: str  # what opens the reply (the generation prompt)

    def render(self, messages: list[dict[str, str]]) -> str:
        """The prompt for `messages` (a system message first, or none), as the Go
        template below renders it and as the chat template does."""
        system = [m["content"] for m in messages if m["role"] == "system"]
        out = [f"{self.system[0]}{system[0]}{self.system[1]}" if system else self.default]
        for m in messages:
            if m["role"] in ("user", "assistant"):
                prefix, suffix = getattr(self, m["role"])
                out.append(f"{prefix}{m['content']}{suffix}")
        return "".join(out) + self.generation

    def go_template(self) -> str:
        """Ollama's TEMPLATE: the same text, from `.System` and `.Messages` (Ollama
        passes the system messages joined as `.System`, and every message in
        `.Messages`). No trim markers: every character between actions is the
        template's own."""
        return (
            f"{{{{ if .System }}}}{self.system[0]}{{{{ .System }}}}{self.system[1]}"
            f"{{{{ else }}}}{self.default}{{{{ end }}}}"
            '{{ range .Messages }}{{ if eq .Role "user" }}'
            f"{self.user[0]}{{{{ .Content }}}}{self.user[1]}"
            '{{ else if eq .Role "assistant" }}'
            f"{self.assistant[0]}{{{{ .Content }}}}{self.assistant[1]}"
            "{{ end }}{{ end }}"
            f"{self.generation}"
        )


def chat_renderer(template: str, bos: str, eos: str) -> Any:
    """render(messages, add_generation_prompt) with a Jinja chat template, in the
    sandboxed environment transformers and llama-cpp-python render them in."""
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )

    def fail(message: str) -> None:
        raise UserError(f"the student's chat template refused a test conversation: {message}")

    compiled = env.from_string(template)

    def render(messages: list[dict[str, str]], generation: bool) -> str:
        return compiled.render(
            messages=messages,
            bos_token=bos,
            eos_token=eos,
            add_generation_prompt=generation,
            raise_exception=fail,
        )

    return render


def _split(text: str, markers: list[str]) -> list[str]:
    """The text between the markers (len(markers) + 1 pieces)."""
    out = []
    for m in markers:
        head, found, text = text.partition(m)
        if not found:
            raise _unreadable(f"it does not write a message it is given ({m.strip(chr(1))})")
        out.append(head)
    return [*out, text]


def _unreadable(why: str) -> UserError:
    return UserError(
        f"the student's chat template cannot be written as an Ollama TEMPLATE: {why}; "
        "write the Modelfile's TEMPLATE by hand, or serve with `distill serve`"
    )


def _without(text: str, *, prefix: str = "", suffix: str = "") -> str:
    if not (text.startswith(prefix) and text.endswith(suffix)):
        raise _unreadable("a turn's wrapping changes with its position")
    return text[len(prefix) : len(text) - len(suffix)]


def read_turns(render: Any) -> Turns:
    """The fixed text around each message of the chat template `render` renders."""

    def msgs(*roles_contents: tuple[str, str]) -> list[dict[str, str]]:
        return [{"role": r, "content": c} for r, c in roles_contents]

    s, u1, a1, u2 = ("system", _S), ("user", _U1), ("assistant", _A1), ("user", _U2)
    full = _split(render(msgs(s, u1, a1, u2), True), [_S, _U1, _A1, _U2])
    user_suffix = _split(render(msgs(s, u1), False), [_S, _U1])[2]
    assistant_suffix = _split(render(msgs(s, u1, a1), False), [_S, _U1, _A1])[3]
    alone = _split(render(msgs(u1), True), [_U1])
    user_prefix = _without(full[3], prefix=assistant_suffix)
    turns = Turns(
        system=(full[0], _without(full[1], suffix=user_prefix)),
        default=_without(alone[0], suffix=user_prefix),
        user=(user_prefix, user_suffix),
        assistant=(_without(full[2], prefix=user_suffix), assistant_suffix),
        generation=_without(full[4], prefix=user_suffix),
    )
    checks = [
        msgs(s, u1, a1, u2),
        msgs(u1),
        msgs(u1, a1, u2),
        msgs(("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello."), ("user", "Bye")),
    ]
    for chat in checks:
        if turns.render(chat) != render(chat, True):
            raise _unreadable("its turns are not fixed text around their messages")
    return turns


@dataclass(frozen=True)
class GgufChat:
    template: str
    bos: str
    eos: str


def gguf_chat(path: Path) -> GgufChat:
    """The chat template and the BOS / EOS token text a GGUF carries."""
    from gguf import GGUFReader

    fields = GGUFReader(path).fields

    def string(name: str) -> str | None:
        field = fields.get(name)
        return bytes(field.parts[field.data[0]]).decode("utf-8") if field else None

    tokens = fields.get("tokenizer.ggml.tokens")

    def token(role: str) -> str:
        field = fields.get(f"tokenizer.ggml.{role}_token_id")
        if field is None or tokens is None:
            return ""
        token_id = int(field.parts[field.data[0]][0])
        return bytes(tokens.parts[tokens.data[token_id]]).decode("utf-8", errors="replace")

    template = string("tokenizer.chat_template")
    if not template:
        raise UserError(f"{path.name} carries no chat template; Ollama would need one written")
    return GgufChat(template, token("bos"), token("eos"))


def stops(turns: Turns, eos: str) -> list[str]:
    """What ends the student's turn: its EOS, the text closing an assistant turn, and
    the start of a next user turn."""
    found = [eos, turns.assistant[1].strip(), turns.user[0].strip()]
    return list(dict.fromkeys(s for s in found if s))


def _quoted(text: str, what: str) -> str:
    if '"""' in text:
        raise UserError(f'the {what} holds """, which a Modelfile cannot quote; remove it')
    return f'"""{text}"""'


def modelfile(gguf: Path, system: str | None, adapter: Path | None, folder: Path) -> str:
    """The Modelfile's text for `gguf` (with `adapter`), written into `folder`: paths
    inside it are relative (./name), others absolute."""

    def where(p: Path) -> str:
        return f"./{p.name}" if p.parent.resolve() == folder.resolve() else str(p.resolve())

    chat = gguf_chat(gguf)
    turns = read_turns(chat_renderer(chat.template, chat.bos, chat.eos))
    lines = [f"FROM {where(gguf)}"]
    if adapter is not None:
        lines.append(f"ADAPTER {where(adapter)}")
    pieces = [*turns.system, turns.default, *turns.user, *turns.assistant, turns.generation]
    if any("{{" in p or "}}" in p for p in pieces):
        raise _unreadable("its text holds '{{' or '}}', which Go templates read as actions")
    template = turns.go_template()
    lines.append(f"TEMPLATE {_quoted(template, 'chat template')}")
    lines += [f'PARAMETER stop "{s}"' for s in stops(turns, chat.eos) if not {'"', "\n"} & set(s)]
    # Greedy, as eval measured the student.
    lines.append("PARAMETER temperature 0")
    if system:
        lines.append(f"SYSTEM {_quoted(system, 'system prompt')}")
    return "\n".join(lines) + "\n"
