"""A student vocabulary as bytes, for reading a served teacher's replies in it.

A served teacher (distill/train/scoring.py) that speaks llama-cpp-python's `echo`
format names each top-k token by its text and splits a text with its own tokenizer;
the student's ids are found again by their bytes. Byte-level BPE vocabularies (SmolLM2,
Qwen, Llama 3) spell their tokens in GPT-2's byte-to-character table; SentencePiece ones
in text with byte fallbacks.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any


# GPT-2's byte-to-character table, which byte-level BPE vocabularies (SmolLM2, Qwen,
# Llama 3) spell their tokens in.
def _bytes_to_unicode() -> dict[int, str]:
    keep = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


_UNICODE_TO_BYTE = {c: b for b, c in _bytes_to_unicode().items()}


def token_bytes(tok: Any) -> list[bytes | None]:
    """Each token id's bytes, as llama.cpp renders a piece (None: a special token, which
    llama.cpp renders as nothing)."""
    vocab: dict[str, int] = tok.get_vocab()
    special = set(tok.all_special_ids) | {
        i for i, t in getattr(tok, "added_tokens_decoder", {}).items() if t.special
    }
    out: list[bytes | None] = [None] * (max(vocab.values()) + 1)
    byte_level = all(c in _UNICODE_TO_BYTE for c in "".join(list(vocab)[:200]).replace(" ", ""))
    for text, i in vocab.items():
        if i in special:
            continue
        if byte_level and all(c in _UNICODE_TO_BYTE for c in text):
            out[i] = bytes(_UNICODE_TO_BYTE[c] for c in text)
        elif len(text) == 6 and text.startswith("<0x") and text.endswith(">"):
            out[i] = bytes([int(text[3:5], 16)])  # SentencePiece byte fallback
        else:
            out[i] = text.replace("\u2581", " ").encode("utf-8")  # SentencePiece's space
    return out


# llama-cpp-python 0.3.36 renders a piece into a 32-byte buffer: a longer token (a run
# of 33+ spaces or dashes) comes back as empty text.
PIECE_BUFFER = 32


def piece_ids(tok: Any) -> dict[str, int]:
    """Token text (as llama-cpp-python reports a top-k entry: the piece's bytes decoded
    with invalid bytes dropped) -> the student's id. A token whose bytes are not whole
    UTF-8 (part of a character) shares its reported text with the whole token it starts
    with (b" \\xf0" reads " "): the whole token keeps the text. Texts two whole tokens
    share, and the partial tokens, map to nothing (their mass stays in the tail bucket)."""
    whole: dict[str, int] = {}
    clash: set[str] = set()
    for i, b in enumerate(token_bytes(tok)):
        if b is None or len(b) > PIECE_BUFFER:
            continue
        try:
            text = b.decode("utf-8")
        except UnicodeDecodeError:
            continue  # a partial character: its reported text is another token's
        if not text or text in clash:
            continue
        if text in whole:
            clash.add(text)
            del whole[text]
        else:
            whole[text] = i
    return whole


# The scorer asks for these on every request: computed once per tokenizer.
piece_map = lru_cache(maxsize=4)(piece_ids)


@lru_cache(maxsize=4)
def spelling(tok: Any) -> list[bytes]:
    """Each id's bytes as the decoded text holds them (special tokens as their text)."""
    table = token_bytes(tok)
    names = tok.convert_ids_to_tokens(list(range(len(table))))
    return [
        b if b is not None else str(n or "").encode("utf-8")
        for b, n in zip(table, names, strict=True)
    ]


def spell(tok: Any, ids: list[int]) -> bytes | None:
    """The bytes `ids` spell in `tok`'s vocabulary (special tokens as their text), or
    None for an id it does not have."""
    table = spelling(tok)
    if any(not 0 <= i < len(table) for i in ids):
        return None
    return b"".join(table[i] for i in ids)


def byte_starts(tok: Any, ids: list[int]) -> list[int]:
    """The byte offset in the text at which each token of `ids` starts."""
    table = spelling(tok)
    out, at = [], 0
    for i in ids:
        out.append(at)
        at += len(table[i])
    return out
