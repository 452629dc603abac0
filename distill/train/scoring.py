"""A served GKD teacher scoring the student's token sequences: for each position of a
sequence, the teacher's top-k next-token log-probabilities, by the student's token ids,
from a server that shares the student's tokenizer (`TokenScorer`; the loss that uses
them is in distill/train/served.py).

Two wire formats, `train.gkd.served_teacher.options.logprobs`:
- `echo` (llama-cpp-python's server, and any server speaking the legacy completions API
  with `echo` and `logprobs`): the sequence goes as text, the reply keys each position's
  top-k by token text. The server's tokens for the text are read from `/extras/tokenize`
  (they must spell it in the student's vocabulary, though they may split it differently:
  the two are lined up by byte offsets); the texts are mapped back to the student's
  token ids by their bytes (distill/train/vocabulary.py; a text two ids share is left
  to the tail bucket).
  llama-cpp-python 0.3.36 pairs each echoed token with the distribution computed
  *after* it when the model adds no BOS token (SmolLM2, Qwen): the row at index i
  predicts token i+1. `TokenScorer` corrects that and checks the layout on the first
  request.
- `prompt_logprobs` (vLLM's extension): the sequence goes as token ids and each
  position's top-k comes keyed by id, the format TRL's VLLMClient reads; the tokenizer is
  checked once through vLLM's `/tokenize`.

The key comes from the environment variable `api_key_env` and is sent as a bearer token;
it is never logged or written.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field

from distill.config import StrictModel
from distill.errors import TeacherError, UserError
from distill.teachers.base import api_key
from distill.train.vocabulary import byte_starts, piece_map, spell
from distill.train_results import ServedFigures

PREFIX = "openai:"


class ServedOptions(StrictModel):
    """`train.gkd.served_teacher.options`: the server a served teacher answers from."""

    base_url: str = Field(
        description="The server's OpenAI-compatible URL, e.g. http://127.0.0.1:8080/v1."
    )
    api_key_env: str | None = Field(
        None,
        description="Environment variable holding the key; null: no key is sent (a local "
        "server checks none), except to api.openai.com, which reads $OPENAI_API_KEY. A key "
        "never goes over plain http to a host other than this machine.",
    )
    min_coverage: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Fail the pass when the teacher scored less than this share of the "
        "positions asked (checked after 4 requests and at the end): a teacher that scores "
        "nothing trains nothing.",
    )
    logprobs: Literal["echo", "prompt_logprobs"] = Field(
        "echo",
        description="echo: legacy completions with echo + logprobs, keyed by token text "
        "(llama-cpp-python's server); prompt_logprobs: vLLM's extension, keyed by token id.",
    )
    top_k: int = Field(
        20, ge=1, le=100, description="Teacher log-probabilities per position (vLLM allows 20)."
    )
    timeout_s: float = Field(300.0, gt=0, description="Per-request timeout.")


def served_headers(spec: str, options: ServedOptions) -> dict[str, str]:
    """The Authorization header for a served teacher: the key named by api_key_env
    ($OPENAI_API_KEY for api.openai.com when none is named), none otherwise; a one-line
    error when a key would go over plain http to another machine."""
    from urllib.parse import urlsplit

    url = urlsplit(options.base_url)
    host = (url.hostname or "").lower()
    env = options.api_key_env or ("OPENAI_API_KEY" if host == "api.openai.com" else None)
    if env is None:
        return {}
    local = host in ("localhost", "127.0.0.1", "::1") or host.startswith("127.")
    if url.scheme != "https" and not local:
        raise UserError(
            f"train.gkd.served_teacher.options.base_url {url.scheme}://{host} is plain http to "
            "another machine: the key would travel unencrypted; use https, or a loopback "
            "address for a server on this machine"
        )
    return {"Authorization": f"Bearer {api_key(f'train.gkd.served_teacher {spec}', env)}"}


class TokenScorer:
    """A teacher model on a server, scoring token sequences: `top_k(sequences, starts)`
    gives, for each sequence and each position p >= its start, the teacher's top-k
    (student token id, log-probability) for token p given tokens [0, p), or None where
    the server gave nothing usable for that position."""

    def __init__(self, spec: str, options: ServedOptions, tok: Any) -> None:
        import httpx

        self.spec, self.model = spec, spec.removeprefix(PREFIX)
        self.options = options
        self.tok = tok
        base = self.options.base_url.rstrip("/")
        self.root = base.removesuffix("/v1")
        self.http = httpx.Client(
            base_url=base, headers=served_headers(spec, options), timeout=self.options.timeout_s
        )
        self.adds_bos: bool | None = None
        self.aligned = False
        self.positions = 0  # positions asked for
        self.covered = 0  # positions the teacher scored
        self.requests = 0

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> TokenScorer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def report(self) -> ServedFigures:
        """What the pass's metrics record of the teacher (never its URL or key)."""
        return ServedFigures(
            teacher_top_k=self.options.top_k,
            teacher_requests=self.requests,
            teacher_positions=self.positions,
            teacher_coverage=round(self.covered / self.positions, 4) if self.positions else None,
        )

    def check_coverage(self, final: bool = False) -> None:
        """A one-line error when the teacher scores too little of what it is asked (after
        4 requests, and at the end of the pass): a pass trained on nothing must fail."""
        if not self.positions or (not final and self.requests < 4):
            return
        share = self.covered / self.positions
        if share < self.options.min_coverage:
            raise UserError(
                f"train.gkd.served_teacher {self.spec} scored {share:.0%} of the {self.positions} "
                f"positions asked (options.min_coverage is "
                f"{self.options.min_coverage:.0%}): check that the server returns "
                f"log-probabilities for its prompt (options.logprobs: "
                f"{self.options.logprobs}) and shares the student's tokenizer"
            )

    # -- wire -----------------------------------------------------------------------
    def _post(self, url: str, body: dict[str, Any]) -> Any:
        import httpx

        try:
            r = self.http.post(url, json=body)
        except httpx.HTTPError as e:
            raise TeacherError(
                f"served teacher {self.spec} at {self.options.base_url}: {type(e).__name__}: {e}"
            ) from None
        if r.status_code != 200:
            raise TeacherError(
                f"served teacher {self.spec}: HTTP {r.status_code} from {url}: {r.text[:200]}"
            )
        self.requests += 1
        return r.json()

    def server_tokens(self, text: str) -> list[int]:
        """The server's token ids for `text` (BOS included when the model adds one)."""
        if self.options.logprobs == "echo":
            got = self._post(f"{self.root}/extras/tokenize", {"model": self.model, "input": text})
        else:
            got = self._post(f"{self.root}/tokenize", {"model": self.model, "prompt": text})
        return [int(t) for t in got["tokens"]]

    def check_tokenizer(self, sample: list[int]) -> None:
        """Refuse a teacher whose vocabulary is not the student's: its tokens for the text
        of `sample` (student ids), after a BOS it may add, must spell that text in the
        student's vocabulary. (The two may split a text differently where their
        pre-tokenizers differ: llama.cpp's reads "\\n\\n1" as "\\n\\n", "1" where the
        transformers tokenizer converted from the same GGUF reads "\\n", "\\n", "1".)"""
        text = self._text(sample)
        got = self.server_tokens(text)
        want = text.encode("utf-8")
        if spell(self.tok, got) == want:
            self.adds_bos = False
        elif got[:1] == [self.tok.bos_token_id] and spell(self.tok, got[1:]) == want:
            self.adds_bos = True
        else:
            raise UserError(
                f"train.gkd.served_teacher {self.spec} does not spell the student's text in the "
                f"student's vocabulary (its first tokens {got[:8]}, the student's "
                f"{sample[:8]}): a served teacher must share the student's tokenizer; use a "
                "local teacher (GOLD) for another one"
            )

    def _text(self, ids: list[int]) -> str:
        return str(
            self.tok.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        )

    # -- scoring --------------------------------------------------------------------
    def top_k(
        self, sequences: list[list[int]], starts: list[int]
    ) -> list[list[list[tuple[int, float]] | None]]:
        """Per sequence, per position p in [start, len): the teacher's top-k for token p."""
        out = []
        for seq, start in zip(sequences, starts, strict=True):
            rows = (
                self._echo(seq, start)
                if self.options.logprobs == "echo"
                else self._vllm(seq, start)
            )
            self.positions += len(rows)
            self.covered += sum(r is not None for r in rows)
            out.append(rows)
        self.check_coverage()
        return out

    def _vllm(self, seq: list[int], start: int) -> list[list[tuple[int, float]] | None]:
        body = {
            "model": self.model,
            "prompt": seq,
            "max_tokens": 1,
            "temperature": 1.0,
            "prompt_logprobs": self.options.top_k,
        }
        choice = self._post("/completions", body)["choices"][0]
        scored = choice.get("prompt_logprobs") or []
        rows: list[list[tuple[int, float]] | None] = []
        for p in range(start, len(seq)):
            entry = scored[p] if p < len(scored) else None
            if not entry:
                rows.append(None)
                continue
            pairs = [
                (int(i), float(v["logprob"]))
                for i, v in entry.items()
                if v.get("logprob") is not None and not math.isnan(float(v["logprob"]))
            ]
            rows.append(_finite(pairs))
        return rows

    def _echo(self, seq: list[int], start: int) -> list[list[tuple[int, float]] | None]:
        text = self._text(seq)
        got = self.server_tokens(text)  # the server's input: BOS first if it adds one
        off = 1 if self.adds_bos else 0  # got[off:] spells the text
        if spell(self.tok, got[off:]) != text.encode("utf-8"):
            return [None] * (len(seq) - start)
        body = {
            "model": self.model,
            "prompt": text,
            "echo": True,
            "logprobs": self.options.top_k,
            "max_tokens": 1,
            "temperature": 0.0,
        }
        lp = self._post("/completions", body)["choices"][0].get("logprobs") or {}
        tops = lp.get("top_logprobs") or []
        # llama-cpp-python 0.3.36 lists the input's tokens (a leading BOS dropped, and
        # every token equal to BOS skipped) and pairs listed token idx with the row
        # computed after input token idx, which predicts input token idx + 1.
        bos = self.tok.bos_token_id
        strip = 1 if got[:1] == [bos] else 0
        listed = [idx for idx in range(len(got) - strip) if got[idx + strip] != bos]
        if len(tops) < len(listed):
            raise TeacherError(
                f"served teacher {self.spec}: {len(tops)} log-probability entries for "
                f"{len(listed)} tokens; does the server echo the prompt's logprobs?"
            )
        predicting = {idx + 1: entry for entry, idx in zip(tops, listed, strict=False)}
        ids = piece_map(self.tok)
        if not self.aligned:
            self._check_alignment(got, predicting, ids)
        # The student's token p and the server's token k start at the same byte of the
        # text: the teacher's row for k is its next-token distribution after the same
        # text. A student token starting inside one of the server's gets no row.
        server_at = {b: k + off for k, b in enumerate(byte_starts(self.tok, got[off:]))}
        starts = byte_starts(self.tok, seq)
        rows: list[list[tuple[int, float]] | None] = []
        for p in range(start, len(seq)):
            k = server_at.get(starts[p])
            entry = predicting.get(k) if k is not None else None
            if not entry:
                rows.append(None)
                continue
            pairs = [(ids[t], float(v)) for t, v in entry.items() if t in ids and v is not None]
            rows.append(_finite(pairs))
        return rows

    def _check_alignment(
        self, got: list[int], predicting: dict[int, Any], ids: dict[str, int]
    ) -> None:
        """Once: the teacher's top-1 should be the server's actual token more often at the
        positions this module reads its rows for than one position off (a server that
        lines its rows up otherwise would train the student on the wrong targets)."""

        def agree(shift: int) -> int:
            hits = 0
            for k, entry in predicting.items():
                q = k + shift
                if entry and 0 <= q < len(got):
                    best = max(entry.items(), key=lambda kv: kv[1] if kv[1] is not None else -1e9)
                    hits += ids.get(best[0]) == got[q]
            return hits

        here, early, late = agree(0), agree(-1), agree(1)
        if max(early, late) > here:
            raise TeacherError(
                f"served teacher {self.spec}: its log-probabilities line up with the tokens "
                f"one position off ({here} top-1 hits as read, {max(early, late)} shifted); "
                "distill reads llama-cpp-python 0.3.36's layout: use that server, or "
                "logprobs: prompt_logprobs with vLLM"
            )
        self.aligned = True


def _finite(pairs: list[tuple[int, float]]) -> list[tuple[int, float]] | None:
    kept = [(i, v) for i, v in pairs if math.isfinite(v)]
    return kept or None
