"""Dense retrieval over the chunks of an ingest stage.

The index is `ingest/index/`: embeddings.npy (float32, L2-normalised, one row per
chunk in chunks.parquet order) and meta.json (model, dimension, chunk ids).
Loading an index never re-embeds the corpus.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from distill.errors import InputError
from distill.io import atomic_dir, read_json, read_rows, write_json


def embed(texts: list[str], model_ref: str, batch_size: int = 32, label: str = "") -> np.ndarray:
    """Embed texts with a sentence-transformers model; rows are L2-normalised float32."""
    from distill.models import load_embedder
    from distill.ui import progress

    model = load_embedder(model_ref)
    parts = []
    with progress() as bar:
        task = bar.add_task(label or "embedding", total=len(texts), visible=bool(label))
        for i in range(0, len(texts), batch_size):
            batch = texts[i : i + batch_size]
            parts.append(model.encode(batch, batch_size=batch_size, normalize_embeddings=True))
            bar.advance(task, len(batch))
    dim = model.get_embedding_dimension()
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, dim), np.float32)


def chunk_embedding_text(chunk: dict[str, Any]) -> str:
    return f"{chunk['heading_path']}\n{chunk['text']}"


def build_index(chunks: list[dict[str, Any]], model_ref: str, batch_size: int, out: Path) -> None:
    """Embed every chunk and write `out/index/` atomically."""
    vectors = embed(
        [chunk_embedding_text(c) for c in chunks], model_ref, batch_size, "embedding chunks"
    )
    with atomic_dir(out / "index") as tmp:
        np.save(tmp / "embeddings.npy", vectors)
        write_json(
            tmp / "meta.json",
            {
                "model": model_ref,
                "dim": int(vectors.shape[1]),
                "chunk_ids": [c["chunk_id"] for c in chunks],
            },
        )


class Retriever:
    """`retrieve(query, k)` and `neighbours(chunk_id, k)` over one ingest folder."""

    def __init__(self, ingest_dir: Path) -> None:
        index = ingest_dir / "index"
        if not (index / "embeddings.npy").exists():
            raise InputError(f"no index in {ingest_dir}; run `distill ingest RECIPE` first")
        self.meta = read_json(index / "meta.json")
        self.vectors = np.load(index / "embeddings.npy")
        self.chunks = read_rows(ingest_dir / "chunks.parquet")
        self.position = {c["chunk_id"]: i for i, c in enumerate(self.chunks)}
        self.doc_ids = np.array([c["doc_id"] for c in self.chunks])

    def _top(
        self, scores: np.ndarray, k: int, mask: np.ndarray | None
    ) -> list[tuple[dict[str, Any], float]]:
        if mask is not None:
            scores = np.where(mask, scores, -np.inf)
        order = np.argsort(-scores, kind="stable")[:k]
        return [(self.chunks[i], float(scores[i])) for i in order if np.isfinite(scores[i])]

    def retrieve(
        self, query: str, k: int = 5, exclude_doc: str | None = None
    ) -> list[tuple[dict[str, Any], float]]:
        """The k chunks most similar to `query`, best first, as (chunk, cosine score)."""
        return self.retrieve_many([query], k, exclude_doc)[0]

    def retrieve_many(
        self, queries: list[str], k: int = 5, exclude_doc: str | None = None
    ) -> list[list[tuple[dict[str, Any], float]]]:
        q = embed(queries, self.meta["model"])
        mask = self.doc_ids != exclude_doc if exclude_doc else None
        return [self._top(self.vectors @ row, k, mask) for row in q]

    def neighbours(self, chunk_id: str, k: int = 5) -> list[tuple[dict[str, Any], float]]:
        """The k chunks most similar to chunk `chunk_id`, itself excluded."""
        i = self.position[chunk_id]
        mask = np.ones(len(self.chunks), bool)
        mask[i] = False
        return self._top(self.vectors @ self.vectors[i], k, mask)
