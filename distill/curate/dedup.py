"""Near-duplicate detection: MinHash signatures, LSH banding, exact Jaccard to confirm.

Texts are normalised (lower case, punctuation dropped, spaces collapsed) and cut into
character n-gram shingles, hashed with a stable polynomial hash (the same on every
run and machine, unlike Python's `hash`). Shingling, hashing and MinHash run in numpy
over thousands of texts at once, so 100k samples take seconds. LSH bands propose
candidate pairs; a pair counts only if the exact Jaccard similarity of the two
shingle sets reaches the threshold, so LSH can miss a borderline pair but never
invents one. Each text is compared with the earlier texts that were kept: the first
of a group of near-duplicates stays.
"""

from __future__ import annotations

import re

import numpy as np

_WORDS = re.compile(r"[^\w\s]")
_MULT = np.uint64(1099511628211)  # FNV prime: the polynomial hash's base


def normalise(text: str) -> str:
    return " ".join(_WORDS.sub(" ", text.lower()).split())


def shingle_sets(texts: list[str], n: int) -> list[np.ndarray]:
    """Each text's character n-gram hashes (uint64; repeats kept: MinHash ignores them,
    and only candidate pairs pay for `np.unique`).

    A text shorter than n characters is one shingle (itself)."""
    out: list[np.ndarray] = []
    for start in range(0, len(texts), 4096):
        part = [normalise(t).encode("utf-8") for t in texts[start : start + 4096]]
        flat = np.frombuffer(b"".join(part), dtype=np.uint8).astype(np.uint64)
        lengths = np.array([len(p) for p in part], dtype=np.int64)
        ends = np.cumsum(lengths)
        # h[i] = hash of flat[i : i + n], by Horner's rule over the n offsets.
        m = max(len(flat) - n + 1, 0)
        h = np.zeros(m, dtype=np.uint64)
        with np.errstate(over="ignore"):
            for k in range(n):
                h = h * _MULT + flat[k : k + m] + np.uint64(1)
        for p, end, length in zip(part, ends, lengths, strict=True):
            begin = end - length
            if length < n:
                whole = np.frombuffer(p.ljust(n, b"\0")[:n], dtype=np.uint8).astype(np.uint64)
                acc = np.uint64(0)
                with np.errstate(over="ignore"):
                    for b in whole:
                        acc = acc * _MULT + b + np.uint64(1)
                out.append(np.array([acc], dtype=np.uint64) if length else np.empty(0, np.uint64))
            else:
                out.append(h[begin : end - n + 1])
    return out


def minhash(sets: list[np.ndarray], num_perm: int = 64, seed: int = 1) -> np.ndarray:
    """MinHash signatures (len(sets) x num_perm, uint32) by multiply-shift hashing."""
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 2**63, size=num_perm, dtype=np.uint64) | np.uint64(1)
    b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)
    sig = np.full((len(sets), num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)
    filled = [i for i, s in enumerate(sets) if len(s)]
    for start in range(0, len(filled), 4096):
        idx = filled[start : start + 4096]
        flat = np.concatenate([sets[i] for i in idx])
        offsets = np.cumsum([0] + [len(sets[i]) for i in idx[:-1]])
        part = np.empty((len(idx), num_perm), dtype=np.uint32)
        with np.errstate(over="ignore"):
            for k in range(num_perm):  # one permutation at a time: cache-sized arrays
                hv = ((flat * a[k] + b[k]) >> np.uint64(32)).astype(np.uint32)
                part[:, k] = np.minimum.reduceat(hv, offsets)
        sig[idx] = part
    return sig


def bands_for(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) whose LSH threshold (1/b)^(1/r) is closest below `threshold`:
    pairs at the threshold are likely to share a band; exact Jaccard confirms."""
    options = [(b, num_perm // b) for b in range(1, num_perm + 1) if num_perm % b == 0]
    below = [(b, r) for b, r in options if (1 / b) ** (1 / r) <= threshold] or options
    return max(below, key=lambda br: (1 / br[0]) ** (1 / br[1]))


def jaccard(x: np.ndarray, y: np.ndarray) -> float:
    """Jaccard similarity of two arrays of distinct values."""
    if not len(x) and not len(y):
        return 1.0
    inter = len(np.intersect1d(x, y, assume_unique=True))
    return inter / (len(x) + len(y) - inter)


def near_duplicates(
    texts: list[str], threshold: float = 0.8, ngram: int = 5, num_perm: int = 64
) -> dict[int, int]:
    """index -> the earlier kept index it nearly duplicates (Jaccard >= threshold)."""
    sets = shingle_sets(texts, ngram)
    sig = minhash(sets, num_perm)
    n_bands, rows = bands_for(threshold, num_perm)
    buckets: list[dict[bytes, list[int]]] = [{} for _ in range(n_bands)]
    dup: dict[int, int] = {}
    distinct: dict[int, np.ndarray] = {}

    def shingles(k: int) -> np.ndarray:
        if k not in distinct:
            distinct[k] = np.unique(sets[k])
        return distinct[k]

    for i in range(len(texts)):
        if not len(sets[i]):
            continue
        keys = [sig[i, k * rows : (k + 1) * rows].tobytes() for k in range(n_bands)]
        seen: set[int] = set()
        match = None
        for band, key in zip(buckets, keys, strict=True):
            for j in band.get(key, ()):
                if j not in seen:
                    seen.add(j)
                    if jaccard(shingles(i), shingles(j)) >= threshold and (
                        match is None or j < match
                    ):
                        match = j
        if match is not None:
            dup[i] = match
            continue
        for band, key in zip(buckets, keys, strict=True):
            band.setdefault(key, []).append(i)
    return dup
