"""The Ollama Modelfile: its TEMPLATE, executed as Ollama executes it (Go's text/template,
tests/fakes/gotemplate.py, on the `.System` and `.Messages` Ollama passes), renders the
prompt the chat template renders: for synthetic templates (fast), and for the real
GGUFs (slow) the prompt llama.cpp renders from the same file (llama-cpp-python's
formatter over the GGUF's template, compared token for token) and transformers
renders. Its stops are control tokens that end the student's turn."""

from __future__ import annotations

from pathlib import Path

import pytest

from distill.errors import UserError
from distill.modelfile import chat_renderer, gguf_chat, modelfile, read_turns, stops
from tests.fakes import gotemplate

CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are helpful.<|im_end|>\\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
LLAMA3 = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>"
    "\n\n{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
CHATS = [
    [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Hi?"}],
    [{"role": "user", "content": "What is a trial?\nSay it in one line."}],
    [
        {"role": "system", "content": "Cite documents like [1]."},
        {"role": "user", "content": '<document id="1">\nTrials last 14 days.\n</document>\n\nQ?'},
        {"role": "assistant", "content": "14 days [1]."},
        {"role": "user", "content": "And the reset link?"},
    ],
]


def ollama(template: str, chat: list[dict[str, str]]) -> str:
    """What Ollama renders: the system messages joined as .System, every message in
    .Messages (distill's chats never repeat a role, so collating changes nothing)."""
    system = "\n\n".join(m["content"] for m in chat if m["role"] == "system")
    messages = [{"Role": m["role"], "Content": m["content"]} for m in chat]
    return gotemplate.render(template, {"System": system, "Messages": messages})


@pytest.mark.parametrize("template", [CHATML, LLAMA3], ids=["chatml", "llama3"])
def test_the_go_template_renders_what_the_chat_template_renders(template: str) -> None:
    render = chat_renderer(template, "<s>", "</s>")
    turns = read_turns(render)
    for chat in CHATS:
        assert ollama(turns.go_template(), chat) == render(chat, True)
    if template is CHATML:  # a chat without a system message gets the template's default
        assert turns.default == "<|im_start|>system\nYou are helpful.<|im_end|>\n"
        assert stops(turns, "<|im_end|>") == ["<|im_end|>", "<|im_start|>user"]


def test_a_template_that_is_not_fixed_text_is_refused_in_one_line() -> None:
    numbered = "{% for m in messages %}<turn {{ loop.index }}>{{ m['content'] }}</turn>{% endfor %}"
    reversed_ = "{% for m in messages %}{{ m['content'][::-1] }}{% endfor %}"
    for template in (numbered, reversed_):
        with pytest.raises(UserError) as e:
            read_turns(chat_renderer(template, "", ""))
        assert "cannot be written as an Ollama TEMPLATE" in str(e.value)
        assert "\n" not in str(e.value)


def test_the_evaluator_follows_go_on_trim_markers_and_truth() -> None:
    # What Go prints for these (text/template's documented rules).
    assert gotemplate.render("a  {{- .X -}}  b", {"X": 1}) == "a1b"
    assert gotemplate.render("{{ if .X }}y{{ else }}n{{ end }}", {"X": ""}) == "n"
    assert gotemplate.render("{{ range .L }}[{{ . }}]{{ end }}", {"L": ["p", "q"]}) == "[p][q]"
    with pytest.raises(ValueError):
        gotemplate.render('{{ template "x" }}', {})


@pytest.mark.slow
@pytest.mark.parametrize("name", ["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"])
def test_a_real_ggufs_modelfile_renders_what_llama_cpp_renders(name: str, tmp_path: Path) -> None:
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter
    from transformers import AutoTokenizer

    from distill.models import resolve_gguf
    from distill.teachers.llamacpp import control_tokens

    gguf = resolve_gguf(name)
    assert gguf is not None
    text = modelfile(gguf, "Answer briefly.", None, tmp_path)
    lines = text.splitlines()
    assert lines[0] == f"FROM {gguf.resolve()}"
    template = text.split('TEMPLATE """', 1)[1].split('"""', 1)[0]
    assert text.rstrip().endswith('SYSTEM """Answer briefly."""')
    stop = [line.split('"')[1] for line in lines if line.startswith("PARAMETER stop ")]

    llm = Llama(model_path=str(gguf), vocab_only=True, verbose=False)
    vocab = llm._model
    eos = vocab.token_get_text(llm.token_eos())
    bos = vocab.token_get_text(llm.token_bos()) if llm.token_bos() != -1 else ""
    formatter = Jinja2ChatFormatter(llm.metadata["tokenizer.chat_template"], eos, bos)
    hf = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    for chat in CHATS:
        got = ollama(template, chat)
        want = formatter(messages=chat).prompt  # type: ignore[arg-type]
        assert got == want
        ids = llm.tokenize(got.encode(), add_bos=False, special=True)
        assert ids == llm.tokenize(want.encode(), add_bos=False, special=True)
        assert got == hf.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    # The stops: the EOS llama.cpp stops on, each a control token (or one leading).
    control = set(control_tokens(llm))
    assert eos in stop and eos == gguf_chat(gguf).eos
    for s in stop:
        first = llm.tokenize(s.encode(), add_bos=False, special=True)[0]
        assert vocab.token_get_text(first) in control, s
