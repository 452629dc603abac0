"""Retrieval over the chunks of an ingest stage: dense, BM25 and hybrid.

The index is `ingest/index/`:
- embeddings.npy: float32, L2-normalised, one row per chunk in chunks.parquet order;
- bm25/: a `bm25s` index over the same chunks (lower-cased words, English stopwords);
- meta.json: embedding model, dimension, chunk ids and content hashes.
Loading an index never re-embeds the corpus.

Hybrid search fuses the dense and BM25 rankings with weighted reciprocal rank
fusion: score(c) = sum over rankings of weight / (rrf_k + rank(c)), ranks from 1,
a chunk absent from a ranking getting nothing from it. An optional cross-encoder
re-scores the fused top `rerank_top`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from distill import tables
from distill.config import RetrievalConfig
from distill.errors import InputError
from distill.io import atomic_dir, read_json, sha256_text, write_json
from distill.tables import Chunk

Hit = tuple[Chunk, float]


def embed(texts: list[str], model_ref: str, batch_size: int = 32, label: str = "") -> np.ndarray:
    """Embed texts with a sentence-transformers model; rows are L2-normalised float32."""
    from distill.models import load_embedder
    from distill.ui import progress

    model = load_embedder(model_ref)
    dim = model.get_embedding_dimension()
    if not texts:
        return np.zeros((0, dim), np.float32)
    # Longest first, as sentence-transformers orders a single call: batches of similar
    # length waste little on padding (per-batch calls in corpus order were 20% slower).
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    out = np.zeros((len(texts), dim), np.float32)
    with progress() as bar:
        task = bar.add_task(label or "embedding", total=len(texts), visible=bool(label))
        # Several batches per call: each encode() call has a fixed cost of its own.
        step = batch_size * 8
        for start in range(0, len(order), step):
            idx = order[start : start + step]
            out[idx] = model.encode(
                [texts[i] for i in idx], batch_size=batch_size, normalize_embeddings=True
            )
            bar.advance(task, len(idx))
    return out


def chunk_embedding_text(chunk: Chunk) -> str:
    return f"{chunk['heading_path']}\n{chunk['text']}"


def bm25_tokens(texts: list[str]) -> list[list[str]]:
    import bm25s

    return bm25s.tokenize(texts, stopwords="en", return_ids=False, show_progress=False)


def build_index(
    chunks: list[Chunk],
    model_ref: str,
    batch_size: int,
    out: Path,
    previous: Path | None = None,
) -> int:
    """Write `out/index/` atomically; return how many chunks were embedded.

    Chunks whose text and embedding model match a chunk in the `previous` index reuse
    its vector, so re-ingesting a corpus embeds only what changed.
    """
    import bm25s

    texts = [chunk_embedding_text(c) for c in chunks]
    hashes = [sha256_text(t) for t in texts]
    reuse: dict[str, np.ndarray] = {}
    if previous is not None and (previous / "meta.json").exists():
        meta = read_json(previous / "meta.json")
        if meta.get("model") == model_ref and "hashes" in meta:
            old = np.load(previous / "embeddings.npy")
            reuse = {h: old[i] for i, h in enumerate(meta["hashes"])}
    todo = [i for i, h in enumerate(hashes) if h not in reuse]
    fresh = embed([texts[i] for i in todo], model_ref, batch_size, "embedding chunks")
    dim = fresh.shape[1] if todo else next(iter(reuse.values())).shape[0]
    vectors = np.zeros((len(chunks), dim), np.float32)
    for i, h in enumerate(hashes):
        if h in reuse:
            vectors[i] = reuse[h]
    for row, i in enumerate(todo):
        vectors[i] = fresh[row]
    retriever = bm25s.BM25()
    retriever.index(bm25_tokens(texts), show_progress=False)
    with atomic_dir(out / "index") as tmp:
        np.save(tmp / "embeddings.npy", vectors)
        retriever.save(str(tmp / "bm25"))
        write_json(
            tmp / "meta.json",
            {
                "model": model_ref,
                "dim": int(dim),
                "chunk_ids": [c["chunk_id"] for c in chunks],
                "hashes": hashes,
            },
        )
    return len(todo)


def rrf(rankings: Sequence[tuple[float, Sequence[int]]], rrf_k: int) -> list[tuple[int, float]]:
    """Weighted reciprocal rank fusion of rankings (weight, items best first), best first."""
    scores: dict[int, float] = {}
    for weight, ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (rrf_k + rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


class Retriever:
    """`retrieve(query, k)` and `neighbours(chunk_id, k)` over one ingest folder."""

    def __init__(self, ingest_dir: Path, config: RetrievalConfig | None = None) -> None:
        import bm25s

        index = ingest_dir / "index"
        if not (index / "embeddings.npy").exists():
            raise InputError(f"no index in {ingest_dir}; run `distill ingest RECIPE` first")
        if not (index / "bm25").is_dir() or not (ingest_dir / "chunks.parquet").exists():
            raise InputError(
                f"the index in {ingest_dir} is incomplete or from an older distill; "
                "rebuild it with `distill ingest RECIPE --force`"
            )
        self.config = config or RetrievalConfig()
        self.meta = read_json(index / "meta.json")
        self.vectors = np.load(index / "embeddings.npy")
        self.bm25 = bm25s.BM25.load(str(index / "bm25"))
        self.chunks = tables.read(ingest_dir / "chunks.parquet", Chunk)
        self.position = {c["chunk_id"]: i for i, c in enumerate(self.chunks)}
        self.doc_ids = np.array([c["doc_id"] for c in self.chunks])

    def in_docs(self, docs: frozenset[str]) -> np.ndarray:
        """A mask over the chunks: those of `docs`."""
        return np.isin(self.doc_ids, np.array(sorted(docs), dtype=object))

    # -- rankings: chunk positions, best first, with their scores

    def _dense(self, qvec: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        scores = self.vectors @ qvec
        if mask is not None:
            scores = np.where(mask, scores, -np.inf)
        order = np.argsort(-scores, kind="stable")
        return order[np.isfinite(scores[order])], scores

    def _sparse(self, tokens: list[str], mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        known = [t for t in tokens if t in self.bm25.vocab_dict]
        scores = (
            np.asarray(self.bm25.get_scores(known), dtype=np.float64)
            if known
            else np.zeros(len(self.chunks))
        )
        if mask is not None:
            scores = np.where(mask, scores, 0.0)
        order = np.argsort(-scores, kind="stable")
        return order[scores[order] > 0], scores  # no shared term: not ranked at all

    def retrieve(
        self, query: str, k: int = 5, exclude_doc: str | None = None, mode: str | None = None
    ) -> list[Hit]:
        """The k best chunks for `query`, best first, as (chunk, score)."""
        return self.retrieve_many([query], k, exclude_doc, mode)[0]

    def retrieve_many(
        self,
        queries: list[str],
        k: int = 5,
        exclude_doc: str | None = None,
        mode: str | None = None,
        within: frozenset[str] | None = None,
    ) -> list[list[Hit]]:
        """`retrieve` for many queries (their embeddings are computed in one batch); with
        `within`, only chunks of those documents (one side of the split) are ranked."""
        cfg = self.config
        mode = mode or cfg.mode
        mask = self.doc_ids != exclude_doc if exclude_doc else None
        if within is not None:
            mask = self.in_docs(within) if mask is None else mask & self.in_docs(within)
        qvecs = embed(queries, self.meta["model"]) if mode != "bm25" else None
        tokens = bm25_tokens(queries) if mode != "dense" else None
        results = []
        for i, query in enumerate(queries):
            if mode == "dense":
                order, scores = self._dense(qvecs[i], mask)  # type: ignore[index]
                hits = [(int(j), float(scores[j])) for j in order[:k]]
            elif mode == "bm25":
                order, scores = self._sparse(tokens[i], mask)  # type: ignore[index]
                hits = [(int(j), float(scores[j])) for j in order[:k]]
            else:
                depth = max(cfg.rerank_top, k, cfg.candidates)
                dense, _ = self._dense(qvecs[i], mask)  # type: ignore[index]
                sparse, _ = self._sparse(tokens[i], mask)  # type: ignore[index]
                fused = rrf(
                    [
                        (cfg.dense_weight, dense[:depth].tolist()),
                        (cfg.bm25_weight, sparse[:depth].tolist()),
                    ],
                    cfg.rrf_k,
                )
                hits = [(int(j), s) for j, s in fused[: max(k, cfg.rerank_top)]]
            if cfg.rerank_model:
                hits = self._rerank(query, hits[: cfg.rerank_top])
            results.append([(self.chunks[j], score) for j, score in hits[:k]])
        return results

    def _rerank(self, query: str, hits: list[tuple[int, float]]) -> list[tuple[int, float]]:
        from distill.models import load_cross_encoder

        if not hits:
            return hits
        model = load_cross_encoder(self.config.rerank_model or "")
        texts = [chunk_embedding_text(self.chunks[j]) for j, _ in hits]
        scores = model.predict([(query, t) for t in texts], show_progress_bar=False)
        ranked = sorted(zip(hits, scores, strict=True), key=lambda x: -float(x[1]))
        return [(j, float(s)) for (j, _), s in ranked]

    def neighbours(
        self, chunk_id: str, k: int = 5, within: frozenset[str] | None = None
    ) -> list[Hit]:
        """The k chunks whose embeddings are closest to chunk `chunk_id`'s, itself excluded;
        with `within`, only chunks of those documents (one side of the split)."""
        i = self.position[chunk_id]
        mask = np.ones(len(self.chunks), bool) if within is None else self.in_docs(within)
        mask[i] = False
        order, scores = self._dense(self.vectors[i], mask)
        return [(self.chunks[j], float(scores[j])) for j in order[:k]]
