"""Training examples as token ids with an assistant mask, built from the student's own
chat template.

Each conversation is rendered once with the tokenizer's chat template, exactly as
inference renders it. The loss mask covers every assistant turn: its text and the
end-of-turn token the template closes it with (the EOS the model must learn to emit),
and nothing else (not the system prompt, the documents, the user's turns, the
`<|im_start|>assistant` header, or a newline the template adds after the EOS). A
template that closes no turn with an EOS gets one appended to the final answer.

Turn boundaries come from rendering growing prefixes of the conversation: the prompt
for turn i is `messages[:i]` with the generation prompt (what inference sends), the
turn ends where `messages[:i+1]` ends. Templates whose prefixes are not stable (the
rendering of earlier turns changes as later ones are added) are refused with a
message, since their training text could not match inference.
"""

from __future__ import annotations

from typing import Any

from distill.errors import InputError


def stop_ids(tok: Any, model: Any | None = None) -> set[int]:
    """Token ids that end an assistant turn: the tokenizer's EOS and the model's
    generation EOS ids (Llama 3's <|eot_id|>, for instance)."""
    ids = {tok.eos_token_id} if tok.eos_token_id is not None else set()
    gen = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(gen, int):
        ids.add(gen)
    elif isinstance(gen, list):
        ids.update(int(i) for i in gen)
    return ids


def _render(tok: Any, messages: list[dict[str, str]], generation_prompt: bool) -> str:
    return str(
        tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    )


def encode(
    tok: Any, messages: list[dict[str, str]], stops: set[int], sample_id: str = "?"
) -> dict[str, list[int]]:
    """{"input_ids", "assistant_masks"} for one conversation ending with an assistant turn."""
    if not messages or messages[-1]["role"] != "assistant":
        raise InputError(f"sample {sample_id} does not end with an assistant answer")
    msgs = [{"role": m["role"], "content": m["content"]} for m in messages]
    full = _render(tok, msgs, False)
    spans = []
    for i, m in enumerate(msgs):
        if m["role"] != "assistant":
            continue
        prompt = _render(tok, msgs[:i], True)
        turn = _render(tok, msgs[: i + 1], False)
        if not (full.startswith(turn) and turn.startswith(prompt)):
            raise InputError(
                f"the student's chat template renders sample {sample_id} differently as the "
                "conversation grows, so training text would not match inference; give the "
                "student a standard chat template"
            )
        at = full.rfind(m["content"].rstrip(), len(prompt), len(turn))
        content_end = at + len(m["content"].rstrip()) if at >= 0 else len(turn)
        spans.append((len(prompt), len(turn), content_end))
    enc = tok(full, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = list(enc["input_ids"])
    offsets = enc["offset_mapping"]
    mask = [0] * len(ids)
    final_has_eos = False
    for n, (start, end, content_end) in enumerate(spans):
        inside = [k for k, (a, _) in enumerate(offsets) if start <= a < end]
        if not inside or offsets[inside[0]][0] != start:
            raise InputError(
                f"sample {sample_id}: the answer does not start on a token boundary of the "
                "student's tokenizer after its chat template's assistant header"
            )
        ends = [k for k in inside if ids[k] in stops]
        if ends:
            inside = inside[: inside.index(ends[-1]) + 1]  # up to the EOS, not what follows
            final_has_eos = n == len(spans) - 1
        elif n < len(spans) - 1:
            raise InputError(
                f"sample {sample_id}: the student's chat template closes an assistant turn "
                "without an end-of-turn token"
            )
        else:  # no EOS: learn the answer (not the template's separator after it), then EOS
            inside = [k for k in inside if offsets[k][0] < content_end]
        for k in inside:
            mask[k] = 1
    if not final_has_eos:
        # The template ends the answer without an EOS: the model must still learn to stop.
        last = max(k for k in range(len(ids)) if mask[k])
        eos = tok.eos_token_id
        ids = [*ids[: last + 1], eos, *ids[last + 1 :]]
        mask = [*mask[: last + 1], 1, *[0] * (len(mask) - last - 1)]
    return {"input_ids": ids, "assistant_masks": mask}


def encode_rows(tok: Any, rows: list[dict[str, Any]], stops: set[int]) -> list[dict[str, Any]]:
    return [encode(tok, r["messages"], stops, r.get("sample_id", "?")) for r in rows]


def final_answer_span(enc: dict[str, list[int]]) -> tuple[int, int]:
    """[start, end) of the last assistant turn's trained tokens (its answer and EOS)."""
    mask = enc["assistant_masks"]
    end = max(k for k, m in enumerate(mask) if m) + 1
    start = end
    while start > 0 and mask[start - 1]:
        start -= 1
    return start, end


def encode_pair(
    tok: Any,
    prompt: list[dict[str, str]],
    chosen: str,
    rejected: str,
    stops: set[int],
    pair_id: str = "?",
) -> dict[str, list[int]]:
    """{"prompt_ids", "chosen_ids", "rejected_ids"} for TRL's DPOTrainer, by SFT's rules:
    each answer is the tokens SFT would train on for it (its text and the EOS that ends
    the turn), the prompt everything before it, as inference renders it."""
    out: dict[str, list[int]] = {}
    prompts = []
    for name, answer in (("chosen", chosen), ("rejected", rejected)):
        enc = encode(tok, [*prompt, {"role": "assistant", "content": answer}], stops, pair_id)
        start, end = final_answer_span(enc)
        prompts.append(enc["input_ids"][:start])
        out[f"{name}_ids"] = enc["input_ids"][start:end]
    if prompts[0] != prompts[1]:
        raise InputError(
            f"pair {pair_id}: the student's tokenizer renders the prompt differently before "
            "the chosen and the rejected answer"
        )
    return {"prompt_ids": prompts[0], **out}
