"""The on-disk format of a captured GKD teacher (`train.gkd.capture`): for every answer
token of every captured row, the teacher's top-k next-token ids, their log-probabilities
quantised, and a tail bucket (the log of the probability mass outside the top-k).

A capture is one folder:

    capture.json       the format, the teacher's identity and name, top_k, bits,
                       id_bytes, the student vocabulary's hash and size
    shard-00000.npz    rows, written whole and atomically (a killed capture leaves
    shard-00001.npz    complete shards; the next one captures the rows they lack)
    ...

Each shard holds numpy arrays (N answer tokens over R rows, K = top_k), zlib-compressed
(`np.savez_compressed`: about a fifth smaller, measured on SmolLM2's teacher):

    keys       (R,) S64          each row's key: sha256 of its token ids and answer mask
                                 in the student's tokenization (`row_key`)
    offsets    (R + 1,) int64    row r's tokens are [offsets[r], offsets[r + 1])
    positions  (N,) uint16|32    the token's index in its row (the teacher read the
                                 tokens before it)
    ids        (N, K, id_bytes)  little-endian token ids: 2 bytes for a vocabulary of up
               uint8             to 65,536 tokens, 3 up to 16.7M (Qwen's 151,665), else 4
    logprobs   (N, K)            bits 8: uint8 code c for -20 (c / 254)^2 (square-root
               uint8|float16     companding: finer near 0, where the mass is), 255 for no
                                 entry; values below -20 are stored as -20. bits 16: float16,
                                 -inf for no entry
    tail       (N,) as logprobs  log(1 - the top-k's probability), as the teacher computed
                                 it over its whole vocabulary (-inf: no mass outside)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from distill.errors import UserError
from distill.io import atomic_path, hash_json, read_json, write_json

FORMAT = 1
RANGE = 20.0  # 8-bit codes span log-probabilities in [-RANGE, 0]
LEVELS = 254  # codes 0..254 are values; 255 is no entry (-inf)
NO_ENTRY = 255
META = "capture.json"


def quantise(logprobs: np.ndarray, bits: int) -> np.ndarray:
    """Log-probabilities (-inf: no entry) as stored with `bits` 8 or 16."""
    lp = np.asarray(logprobs, dtype=np.float32)
    if bits == 16:
        return lp.astype(np.float16)
    missing = ~np.isfinite(lp)
    depth = np.clip(-np.where(missing, 0.0, lp), 0.0, RANGE) / RANGE
    codes = np.rint(np.sqrt(depth) * LEVELS).astype(np.uint8)
    codes[missing] = NO_ENTRY
    return codes


def dequantise(stored: np.ndarray, bits: int) -> np.ndarray:
    """The log-probabilities `quantise` stored (float32; -inf: no entry)."""
    if bits == 16:
        return np.asarray(stored, dtype=np.float32)
    codes = np.asarray(stored)
    values = -RANGE * (codes.astype(np.float32) / LEVELS) ** 2
    return np.where(codes == NO_ENTRY, -np.inf, values).astype(np.float32)


def max_error(logprobs: np.ndarray, bits: int) -> np.ndarray:
    """The most a stored log-probability in [-20, 0] can differ from the true one: at
    8 bits, half a code step in the square-root domain, sqrt(20 |lp|) / 254 + 20 / 508^2
    (0.018 nats at -1, 0.04 at -5); at 16 bits, float16's half unit in the last place."""
    depth = -np.asarray(logprobs, dtype=np.float64)
    if bits == 16:
        return np.maximum(depth * 2.0**-11, 2.0**-25)
    return np.sqrt(RANGE * depth) / LEVELS + RANGE / (2 * LEVELS) ** 2


def id_bytes(vocab_size: int) -> int:
    """Bytes a token id needs in a vocabulary of `vocab_size`."""
    return 2 if vocab_size <= 1 << 16 else 3 if vocab_size <= 1 << 24 else 4


def pack_ids(ids: np.ndarray, width: int) -> np.ndarray:
    """(N, K) ids as (N, K, width) little-endian bytes."""
    wide = np.ascontiguousarray(np.asarray(ids, dtype="<u4"))
    return wide.view(np.uint8).reshape(*wide.shape, 4)[..., :width].copy()


def unpack_ids(packed: np.ndarray) -> np.ndarray:
    """`pack_ids`' bytes back to (N, K) int64 ids."""
    n, k, width = packed.shape
    wide = np.zeros((n, k, 4), dtype=np.uint8)
    wide[..., :width] = packed
    return wide.view("<u4").reshape(n, k).astype(np.int64)


def row_key(encoded: dict[str, Any]) -> str:
    """A row's key: its token ids and answer mask, as the student's tokenizer made them."""
    return hash_json([list(encoded["input_ids"]), list(encoded["assistant_masks"])])


def answer_positions(encoded: dict[str, Any]) -> list[int]:
    """The positions a capture scores: every answer token (the loss mask's), after the
    first token."""
    return [p for p, m in enumerate(encoded["assistant_masks"]) if m and p > 0]


@dataclass
class Scored:
    """One row's teacher, dequantised: for each answer position (n), the top-k ids and
    log-probabilities (-inf: no entry; an unscored position has none) and the tail."""

    positions: np.ndarray  # (n,) int64
    ids: np.ndarray  # (n, K) int64
    logprobs: np.ndarray  # (n, K) float32
    tail: np.ndarray  # (n,) float32


class CaptureStore:
    """A capture folder: its meta, the rows it holds, shards to add, rows to read."""

    def __init__(self, folder: Path, meta: dict[str, Any]) -> None:
        self.folder, self.meta = folder, meta
        self.bits, self.width = int(meta["bits"]), int(meta["id_bytes"])
        self.rows: dict[str, tuple[Path, int]] = {}  # key -> (its shard, its row there)
        self._shards: dict[Path, dict[str, np.ndarray]] = {}
        for path in self.shard_paths():
            with np.load(path) as shard:
                keys = shard["keys"]
            for r, key in enumerate(keys):
                self.rows[key.decode()] = (path, r)

    @classmethod
    def open(cls, folder: Path) -> CaptureStore | None:
        """The capture in `folder`, or None where none was started."""
        if not (folder / META).is_file():
            return None
        meta = read_json(folder / META)
        if meta.get("format") != FORMAT:
            raise UserError(
                f"train.gkd.capture: {folder} holds capture format {meta.get('format')}, not "
                f"{FORMAT}: delete it to capture again, or set train.gkd.capture.path to "
                "another folder"
            )
        return cls(folder, meta)

    @classmethod
    def create(cls, folder: Path, meta: dict[str, Any]) -> CaptureStore:
        for stale in folder.glob("shard-*.npz"):
            stale.unlink()
        write_json(folder / META, {"format": FORMAT, **meta})
        return cls(folder, {"format": FORMAT, **meta})

    def shard_paths(self) -> list[Path]:
        return sorted(self.folder.glob("shard-*.npz"))

    def add(self, keys: list[str], rows: list[Scored]) -> None:
        """Write `rows` (keyed by `keys`) as one new shard, atomically."""
        if not rows:
            return
        counts = [len(r.positions) for r in rows]
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        positions = np.concatenate([r.positions for r in rows])
        taken = [int(p.stem.removeprefix("shard-")) for p in self.shard_paths()]
        path = self.folder / f"shard-{max(taken, default=-1) + 1:05d}.npz"
        with atomic_path(path) as tmp, tmp.open("wb") as f:
            np.savez_compressed(
                f,
                keys=np.array([k.encode() for k in keys], dtype="S64"),
                offsets=offsets,
                positions=positions.astype(
                    np.uint16 if positions.max(initial=0) < 1 << 16 else np.uint32
                ),
                ids=pack_ids(np.concatenate([r.ids for r in rows]), self.width),
                logprobs=quantise(np.concatenate([r.logprobs for r in rows]), self.bits),
                tail=quantise(np.concatenate([r.tail for r in rows]), self.bits),
            )
        for r, key in enumerate(keys):
            self.rows[key] = (path, r)

    def read(self, key: str) -> Scored:
        """Row `key`'s teacher, dequantised."""
        path, r = self.rows[key]
        if path not in self._shards:
            with np.load(path) as shard:
                self._shards[path] = {name: shard[name] for name in shard.files}
        s = self._shards[path]
        a, b = int(s["offsets"][r]), int(s["offsets"][r + 1])
        return Scored(
            positions=s["positions"][a:b].astype(np.int64),
            ids=unpack_ids(s["ids"][a:b]),
            logprobs=dequantise(s["logprobs"][a:b], self.bits),
            tail=dequantise(s["tail"][a:b], self.bits),
        )

    def size(self) -> tuple[int, int]:
        """(answer tokens, bytes of the shards)."""
        tokens = 0
        for path in self.shard_paths():
            with np.load(path) as shard:
                tokens += int(shard["offsets"][-1])
        return tokens, sum(p.stat().st_size for p in self.shard_paths())


def tail_of(logprobs: np.ndarray) -> np.ndarray:
    """log(1 - the entries' probability) per row, for a teacher that gives only its top-k
    (a served one): TRL's tail bucket, the sum held below 1."""
    finite = np.where(np.isfinite(logprobs), logprobs, -np.inf)
    with np.errstate(divide="ignore"):
        total = np.logaddexp.reduce(finite, axis=-1)
    return np.log(-np.expm1(np.minimum(total, -1e-7))).astype(np.float32)


def top_entries(pairs: list[tuple[int, float]] | None, k: int) -> tuple[list[int], list[float]]:
    """A served position's (id, log-probability) pairs as the k most probable, padded
    with no entry (id 0, -inf)."""
    kept = sorted(pairs or [], key=lambda p: -p[1])[:k]
    ids = [i for i, _ in kept] + [0] * (k - len(kept))
    lps = [v for _, v in kept] + [-math.inf] * (k - len(kept))
    return ids, lps


def describe(meta: dict[str, Any]) -> str:
    """The capture's teacher and format, for messages."""
    return f"{meta['teacher_name']}'s top {meta['top_k']} at {meta['bits']} bits"
