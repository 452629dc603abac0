"""On-policy distillation against a served teacher (slow): llama-cpp-python's real
OpenAI-compatible server serving a GGUF of a teacher that knows the training facts (the
SmolLM2 student after SFT on them, merged and converted by llama.cpp's converter). The
teacher's top-k read through the server must be the distribution llama.cpp computes for
each position (the server's off-by-one layout corrected), and GKD against it must bring
the base student closer to the teacher."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import llama_server
from tests.fakes.loopback import json_server
from tests.train.test_gkd import divergence, held_out_rows, merged_teacher
from tests.train.test_sft import STUDENT, cfg, rows

pytestmark = pytest.mark.slow
KEY_ENV = "DISTILL_TEST_SERVED_KEY"


@pytest.fixture(scope="module")
def taught(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """SmolLM2 after SFT on the training facts: the merged folder and its GGUF."""
    from distill.export import _convert

    out = tmp_path_factory.mktemp("served_teacher")
    model = merged_teacher(out)
    gguf = _convert("convert_hf_to_gguf.py", [str(model), "--outtype", "f32"], out / "t.gguf")
    return {"model": out / "model", "gguf": gguf}


@pytest.fixture(scope="module")
def server(taught: dict[str, Path]) -> Iterator[str]:
    with llama_server(taught["gguf"], taught["gguf"].parent, n_ctx=2048) as url:
        yield url


def served_options(url: str, **kw: Any) -> dict[str, Any]:
    return {"base_url": url, "api_key_env": KEY_ENV, "top_k": 20, **kw}


def test_piece_texts_are_llama_cpps(taught: dict[str, Path]) -> None:
    """The student's token texts as llama-cpp-python reports them in a top-k entry (bytes
    decoded, invalid ones dropped), for every id of the vocabulary: the map from a
    reported text back to an id is exact where one id has the text."""
    from llama_cpp import Llama

    from distill.models import load_tokenizer
    from distill.train.vocabulary import PIECE_BUFFER, piece_ids, token_bytes

    tok = load_tokenizer("smollm2-135m-instruct")
    llm = Llama(str(taught["gguf"]), vocab_only=True, verbose=False)
    ours = token_bytes(tok)
    # llama-cpp-python renders a token into 32 bytes: longer ones come back empty.
    wanted = [b"" if len(b or b"") > PIECE_BUFFER else b or b"" for b in ours]
    wrong = [i for i in range(llm.n_vocab()) if wanted[i] != llm.detokenize([i])]
    assert not wrong, [(i, ours[i], llm.detokenize([i])) for i in wrong[:5]]
    assert sum(len(b or b"") > PIECE_BUFFER for b in ours) > 10  # the quirk is there
    ids = piece_ids(tok)
    assert len(ids) > 40_000 and ids[" the"] == tok.convert_tokens_to_ids("Ġthe")
    assert all(len(ours[i] or b"") <= PIECE_BUFFER for i in ids.values())
    assert ids[" "] == 216 and b" \xe2\x80" in ours  # the whole token keeps the text


def test_served_top_k_is_llama_cpps_distribution(
    taught: dict[str, Path],
    server: str,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    """At every answer position, the top-k read through the server equals llama.cpp's own
    log-softmax of the logits for that position (in process, same GGUF); read one row
    off, as the server lays them out for a model without BOS, they would not."""
    import numpy as np
    from llama_cpp import Llama

    from distill.models import load_tokenizer
    from distill.train.data import encode_rows, final_answer_span, stop_ids
    from distill.train.scoring import ServedOptions, TokenScorer
    from distill.train.vocabulary import piece_ids

    monkeypatch.setenv(KEY_ENV, "none")
    tok = load_tokenizer("smollm2-135m-instruct")
    teacher = TokenScorer("openai:taught", ServedOptions(**served_options(server)), tok)
    request.addfinalizer(teacher.close)
    encoded = encode_rows(tok, rows(3), stop_ids(tok))
    teacher.check_tokenizer(list(encoded[0]["input_ids"]))
    assert teacher.adds_bos is False  # SmolLM2's GGUF adds no BOS: the off-by-one case
    llm = Llama(str(taught["gguf"]), logits_all=True, n_ctx=2048, verbose=False)
    readable = np.array(sorted(piece_ids(tok).values()))  # the ids a reported text names
    checked = shifted_hits = 0
    for e in encoded:
        seq, start = list(e["input_ids"]), final_answer_span(e)[0]
        (got,) = teacher.top_k([seq], [start])
        llm.reset()
        llm.eval(seq)
        scores = np.asarray(llm.scores[: len(seq)], dtype=np.float64)
        truth = scores - np.logaddexp.reduce(scores, axis=1, keepdims=True)
        assert all(r is not None for r in got), got
        for p, pairs in zip(range(start, len(seq)), got, strict=True):
            assert pairs is not None
            assert len(pairs) >= 15  # 20 asked; texts two ids share go to the tail
            best = max(pairs, key=lambda kv: kv[1])[0]
            assert best == int(readable[truth[p - 1][readable].argmax()]), (p, pairs[:3])
            assert max(abs(v - truth[p - 1][i]) for i, v in pairs) < 1e-2
            shifted_hits += best == int(readable[truth[p][readable].argmax()])
            checked += 1
    assert checked > 20 and teacher.covered == teacher.positions == checked
    assert shifted_hits < 0.7 * checked, (shifted_hits, checked)


def test_a_text_the_two_tokenizers_split_differently_is_read_by_bytes(
    taught: dict[str, Path],
    server: str,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    """llama.cpp reads "\\n\\n1." as "\\n\\n", "1", "." where the student's tokenizer
    (transformers', converted from the same GGUF) reads "\\n", "\\n", "1", ".": the
    student's tokens that start where one of the server's does get the teacher's row for
    it (its distribution after the same text); the one starting inside "\\n\\n" gets none."""
    import numpy as np
    from llama_cpp import Llama

    from distill.models import load_tokenizer
    from distill.train.data import encode_rows, final_answer_span, stop_ids
    from distill.train.scoring import ServedOptions, TokenScorer
    from distill.train.vocabulary import piece_ids

    monkeypatch.setenv(KEY_ENV, "none")
    tok = load_tokenizer("smollm2-135m-instruct")
    teacher = TokenScorer("openai:taught", ServedOptions(**served_options(server)), tok)
    request.addfinalizer(teacher.close)
    chat = [
        {"role": "user", "content": "How do I turn on 2FA?"},
        {
            "role": "assistant",
            "content": "Follow these steps:\n\n1. Open Settings.\n\n2. Pick 2FA.",
        },
    ]
    (e,) = encode_rows(tok, [{"messages": chat}], stop_ids(tok))
    seq, start = list(e["input_ids"]), final_answer_span(e)[0]
    teacher.check_tokenizer(seq)  # the same vocabulary, although split differently
    text = tok.decode(seq, skip_special_tokens=False)
    theirs = Llama(str(taught["gguf"]), logits_all=True, n_ctx=2048, verbose=False)
    served = theirs.tokenize(text.encode(), add_bos=False, special=True)
    assert served != seq and len(served) < len(seq)  # "\\n\\n" is one token there
    (got,) = teacher.top_k([seq], [start])
    theirs.eval(served)
    scores = np.asarray(theirs.scores[: len(served)], dtype=np.float64)
    truth = scores - np.logaddexp.reduce(scores, axis=1, keepdims=True)
    readable = np.array(sorted(piece_ids(tok).values()))

    def starts(ids: list[int]) -> list[int]:
        out, at = [], 0
        for i in ids:
            out.append(at)
            at += len(tok.decode([i], skip_special_tokens=False).encode())
        return out

    at = {b: k for k, b in enumerate(starts(served))}
    mine = starts(seq)
    missing = 0
    for p, pairs in zip(range(start, len(seq)), got, strict=True):
        k = at.get(mine[p])
        if k is None:
            assert pairs is None and tok.decode([seq[p]]) == "\n"
            missing += 1
            continue
        assert pairs is not None
        best = max(pairs, key=lambda kv: kv[1])[0]
        assert best == int(readable[truth[k - 1][readable].argmax()]), (p, k)
        assert max(abs(v - truth[k - 1][i]) for i, v in pairs) < 1e-2
    assert missing == 2 and teacher.covered == teacher.positions - 2


def test_gkd_against_the_served_teacher_moves_the_student(
    taught: dict[str, Path], server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from peft import PeftModel

    from distill.models import load_causal_lm
    from distill.train.gkd import train_gkd

    monkeypatch.setenv(KEY_ENV, "sk-served-7f3a")
    gkd = {
        "served_teacher": {"model": "openai:taught", "options": served_options(server)},
        "max_steps": 4,
        "lmbda": 0.5,
        "learning_rate": 1e-3,
        "max_new_tokens": 24,
    }
    m = train_gkd(
        STUDENT,
        cfg(method="gkd", batch_size=2, gkd=gkd),
        rows(8),
        tmp_path,
        eval_rows=held_out_rows(),
    )
    assert m.trainer == "GKD (served teacher, top-k)" and m.steps == 4, m
    assert m.served is not None and (m.served.teacher_coverage or 0) > 0.9, m
    assert m.served.teacher_requests > 8, m
    assert m.eval_loss_after < m.eval_loss_before, m
    text = json.dumps(m.model_dump(), default=str)
    assert server not in text and "sk-served-7f3a" not in text  # neither URL nor key
    for f in tmp_path.rglob("*"):
        assert not f.is_file() or b"sk-served-7f3a" not in f.read_bytes(), f
    base, tok = load_causal_lm("smollm2-135m-instruct")
    teacher, _ = load_causal_lm(str(taught["model"]))
    before = divergence(base, teacher, tok)
    student = PeftModel.from_pretrained(base, str(tmp_path / "adapter"))
    after = divergence(student, teacher, tok)
    assert after < 0.8 * before, (before, after)


def test_a_teacher_with_another_tokenizer_is_refused(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from distill.errors import UserError
    from distill.models import load_tokenizer
    from distill.train.scoring import ServedOptions, TokenScorer

    monkeypatch.setenv(KEY_ENV, "none")
    qwen = load_tokenizer("qwen2.5-coder-0.5b-instruct")
    ids = qwen.apply_chat_template(rows(1)[0]["messages"], tokenize=True)["input_ids"]
    with TokenScorer("openai:taught", ServedOptions(**served_options(server)), qwen) as teacher:
        with pytest.raises(UserError, match="must share the student's tokenizer"):
            teacher.check_tokenizer(list(ids))


def test_a_served_teacher_needs_its_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from distill.errors import UserError
    from distill.models import load_tokenizer
    from distill.train.scoring import ServedOptions, TokenScorer

    monkeypatch.delenv(KEY_ENV, raising=False)
    assert KEY_ENV not in os.environ
    with pytest.raises(UserError, match=f"needs an API key in \\${KEY_ENV}"):
        TokenScorer(
            "openai:taught",
            ServedOptions(**served_options("http://127.0.0.1:9/v1")),
            load_tokenizer("smollm2-135m-instruct"),
        )


@pytest.fixture(scope="module")
def vllm_wire(taught: dict[str, Path]) -> Iterator[str]:
    """vLLM cannot run here (it needs a GPU build), so this HTTP server speaks its wire
    format (`/tokenize`; `/v1/completions` with token-id prompts and `prompt_logprobs`,
    keyed by id with logprob and rank) with numbers llama.cpp computes in process from
    the same GGUF."""
    import threading

    import numpy as np
    from llama_cpp import Llama

    llm = Llama(str(taught["gguf"]), logits_all=True, n_ctx=2048, verbose=False)
    lock = threading.Lock()

    def prompt_logprobs(seq: list[int], k: int) -> list[Any]:
        with lock:
            llm.reset()
            llm.eval(seq)
            scores = np.asarray(llm.scores[: len(seq)], dtype=np.float64)
        rows = scores - np.logaddexp.reduce(scores, axis=1, keepdims=True)
        out: list[Any] = [None]
        for p in range(1, len(seq)):
            order = np.argsort(-rows[p - 1])
            rank = {int(i): r + 1 for r, i in enumerate(order[: k + 1])}
            keep = [int(i) for i in order[:k]] + [seq[p]]
            out.append(
                {
                    str(i): {
                        "logprob": float(rows[p - 1][i]),
                        "rank": rank.get(i, int((rows[p - 1] > rows[p - 1][i]).sum()) + 1),
                        "decoded_token": llm.detokenize([i]).decode("utf-8", "replace"),
                    }
                    for i in keep
                }
            )
        return out

    def reply(path: str, body: dict[str, Any], headers: Any) -> Any:
        if path == "/tokenize":
            ids = llm.tokenize(body["prompt"].encode(), add_bos=True, special=True)
            return {"count": len(ids), "max_model_len": 2048, "tokens": ids}
        if path == "/v1/completions" and isinstance(body["prompt"], list):
            seq = [int(t) for t in body["prompt"]]
            lp = prompt_logprobs(seq, int(body["prompt_logprobs"]))
            choice = {"index": 0, "text": "", "logprobs": None, "prompt_logprobs": lp}
            return {"object": "text_completion", "choices": [{**choice, "finish_reason": "length"}]}
        return None

    with json_server(reply) as url:
        yield url


def test_vllms_prompt_logprobs_and_the_echo_read_agree(
    server: str,
    vllm_wire: str,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    """The same sequences scored through vLLM's format (ids) and llama-cpp-python's echo
    (texts, its layout corrected): the same tokens with the same log-probabilities."""
    from distill.models import load_tokenizer
    from distill.train.data import encode_rows, final_answer_span, stop_ids
    from distill.train.scoring import ServedOptions, TokenScorer
    from distill.train.vocabulary import piece_ids

    monkeypatch.setenv(KEY_ENV, "none")
    tok = load_tokenizer("smollm2-135m-instruct")
    echo = TokenScorer("openai:taught", ServedOptions(**served_options(server)), tok)
    vllm = TokenScorer(
        "openai:taught",
        ServedOptions(**served_options(vllm_wire, logprobs="prompt_logprobs")),
        tok,
    )
    request.addfinalizer(echo.close)
    request.addfinalizer(vllm.close)
    encoded = encode_rows(tok, rows(2), stop_ids(tok))
    seqs = [list(e["input_ids"]) for e in encoded]
    starts = [final_answer_span(e)[0] for e in encoded]
    for t in (echo, vllm):
        t.check_tokenizer(seqs[0])
    readable = set(piece_ids(tok).values())
    compared = 0
    for seq, start, a_rows, b_rows in zip(
        seqs, starts, echo.top_k(seqs, starts), vllm.top_k(seqs, starts), strict=True
    ):
        for p, a, b in zip(range(start, len(seq)), a_rows, b_rows, strict=True):
            assert a is not None and b is not None and len(b) in (20, 21)
            mine, theirs = dict(a), dict(b)
            # The echo also lists the token before p (llama-cpp-python adds the echoed
            # token's own entry, from the row after it); special tokens (EOS) and texts
            # two ids share are nameless there, so they stay in the tail.
            assert set(mine) - {seq[p - 1]} <= set(theirs), (p, mine, theirs)
            named = {i: v for i, v in theirs.items() if i in readable}
            assert len(set(mine) & set(named)) >= len(named) - 1
            assert max(abs(mine[i] - theirs[i]) for i in set(mine) & set(theirs)) < 1e-2
            assert max(mine, key=mine.__getitem__) == max(named, key=named.__getitem__)
            compared += 1
    assert compared > 10 and vllm.covered == vllm.positions == compared
