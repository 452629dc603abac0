"""The curation funnel: checks, duplicates, support and judge scores, the split by
document, the seen-documents set and decontamination, each filter counting what it took
out and why (see distill.curate.stage for the order)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from distill.config import SplitConfig
from distill.curate.checks import check, dialogue, key_fact_problem, ngrams, normalise
from distill.curate.config import CurateConfig
from distill.curate.dedup import near_duplicates
from distill.grounding import support_score
from distill.io import sha256_text
from distill.split import Split, unit


def _crosses(s: dict[str, Any], eval_docs: frozenset[str]) -> str | None:
    """Why a sample cannot stay on either side of the split, or None."""
    sources = set(source_docs(s))
    if sources <= eval_docs:
        return None  # an eval item: written from held-out documents
    if sources & eval_docs:
        return "its source documents span the train and eval sides"
    if set(s.get("doc_ids") or []) & eval_docs:
        return "its context carries chunks of held-out documents"
    return None


def _seen_questions(
    rows: list[dict[str, Any]], cfg: SplitConfig
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(held-out questions on training documents, the rest): a seeded share of the
    plain `qa` samples, by sample id, so the pick does not depend on row order."""
    if not cfg.seen_eval_fraction:
        return [], rows
    pool = [s for s in rows if s["task"] == "qa" and not s.get("expects_refusal")]
    # The lowest seeded numbers, up to the share of all training rows (rounded down, so
    # a tiny run keeps all its rows for training).
    n = min(len(pool), int(cfg.seen_eval_fraction * len(rows)))
    ranked = sorted(pool, key=lambda s: unit(cfg.seed + 1, s["sample_id"]))
    pick = {s["sample_id"] for s in ranked[:n]}
    return [s for s in rows if s["sample_id"] in pick], [
        s for s in rows if s["sample_id"] not in pick
    ]


def _near_requests(
    rows: list[dict[str, Any]],
    against: list[dict[str, Any]],
    embed: Callable[[list[str]], Any],
    threshold: float,
    what: str = "an eval question",
) -> dict[int, str]:
    """Rows whose request has an embedding cosine >= threshold with one in `against`."""
    import numpy as np

    mine = np.asarray(embed([s["question"] for s in rows]))
    theirs = np.asarray(embed([s["question"] for s in against]))
    sims = mine @ theirs.T
    best = sims.argmax(axis=1)
    return {
        i: f"its request is {sims[i, j]:.2f} similar to {what} ({against[j]['sample_id']})"
        for i, j in enumerate(best)
        if sims[i, j] >= threshold
    }


def source_docs(s: dict[str, Any]) -> list[str]:
    return list(s.get("source_doc_ids") or s["doc_ids"][:1])


@dataclass
class Curated:
    train: list[dict[str, Any]]
    eval: list[dict[str, Any]]
    rejected: list[dict[str, Any]]
    funnel: list[tuple[str, int]] = field(default_factory=list)  # (filter, samples removed)
    # Held-out questions on training documents (knowledge absorbed, asked without retrieval).
    eval_seen: list[dict[str, Any]] = field(default_factory=list)
    seen_funnel: list[tuple[str, int]] = field(default_factory=list)  # its decontamination


Judge = Callable[[list[dict[str, Any]]], list[dict[str, Any] | str]]


def curate(
    samples: list[dict[str, Any]],
    cfg: CurateConfig,
    count_tokens: Callable[[str], int],
    chunk_text: dict[str, str] | None = None,
    *,
    split: Split,
    split_cfg: SplitConfig,
    judge: Judge | None = None,
    embed: Callable[[list[str]], Any] | None = None,
    sample_tokens: Callable[[dict[str, Any]], int] | None = None,
    max_sample_tokens: int | None = None,
) -> Curated:
    """Filter, deduplicate, score, split by document (`split`: generate's, chosen before
    any request; `split_cfg`: the recipe's split, for the seen-documents set and the
    seed of the refusal cap) and decontaminate.

    `judge(samples)` returns, per sample, {"groundedness", "quality", "reason"} or a
    string saying why the judge failed; `embed(texts)` returns normalised vectors.
    """
    chunk_text = chunk_text or {}
    funnel = _Funnel(list(samples))
    drop = funnel.drop
    drop("checks", {i: r for i, s in enumerate(funnel.kept) if (r := check(s, cfg, count_tokens))})
    drop("key facts", {
        i: r for i, s in enumerate(funnel.kept) if (r := key_fact_problem(s, chunk_text))
    })  # fmt: skip
    if sample_tokens is not None and max_sample_tokens is not None:
        # Training would cut these (TRL keeps the start), losing the answer.
        drop("too long to train on", {
            i: f"longer than train.max_seq_length ({n} > {max_sample_tokens} tokens)"
            for i, s in enumerate(funnel.kept)
            if (n := sample_tokens(s)) > max_sample_tokens
        })  # fmt: skip
    seen: dict[str, str] = {}
    exact = {}
    for i, s in enumerate(funnel.kept):
        key = sha256_text(normalise(s["question"]) + "\x00" + normalise(s["answer"]))
        if key in seen:
            exact[i] = f"exact duplicate of {seen[key]}"
        seen.setdefault(key, s["sample_id"])
    drop("exact duplicates", exact)
    kept = funnel.kept
    if cfg.near_dup_questions is not None:
        dup = near_duplicates([s["question"] for s in kept], cfg.near_dup_questions)
        drop("near-duplicate questions", {
            i: f"near-duplicate question of {kept[j]['sample_id']}" for i, j in dup.items()
        })  # fmt: skip
    kept = funnel.kept
    if cfg.near_dup_samples is not None:
        dup = near_duplicates([dialogue(s) for s in kept], cfg.near_dup_samples)
        drop("near-duplicate samples", {
            i: f"near-duplicate sample of {kept[j]['sample_id']}" for i, j in dup.items()
        })  # fmt: skip
    if cfg.semantic_dedup is not None and embed is not None and funnel.kept:
        drop("semantic duplicates", _semantic(funnel.kept, embed, cfg.semantic_dedup))
    for s in funnel.kept:
        s["support"] = support_score(s, chunk_text)
    if cfg.min_support is not None:
        low = {
            i: f"support score {s['support']:.2f} below {cfg.min_support}"
            for i, s in enumerate(funnel.kept)
            if s["support"] is not None and s["support"] < cfg.min_support
        }
        drop("support score", low)
    if judge is not None and funnel.kept:
        drop("judge", _judged(funnel.kept, judge(funnel.kept), cfg))
    return _by_document(funnel, cfg, split, split_cfg, embed)


class _Funnel:
    """The samples still in, and what each filter took out (with the reason)."""

    def __init__(self, kept: list[dict[str, Any]]) -> None:
        self.kept = kept
        self.out = Curated([], [], [])

    def drop(self, name: str, reasons: dict[int, str]) -> None:
        self.out.funnel.append((name, len(reasons)))
        self.out.rejected.extend({**self.kept[i], "reject_reason": r} for i, r in reasons.items())
        self.kept = [s for i, s in enumerate(self.kept) if i not in reasons]


def _by_document(
    funnel: _Funnel,
    cfg: CurateConfig,
    split: Split,
    split_cfg: SplitConfig,
    embed: Callable[[list[str]], Any] | None,
) -> Curated:
    """The split by document, the seen-documents set, decontamination and the training
    rows' refusal share."""
    out, drop = funnel.out, funnel.drop
    drop("split by document", {
        i: why for i, s in enumerate(funnel.kept) if (why := _crosses(s, split.eval_docs))
    })  # fmt: skip
    kept = funnel.kept
    held = [{**s, "split": "eval"} for s in kept if set(source_docs(s)) <= split.eval_docs]
    train_rows = [s for s in kept if not set(source_docs(s)) <= split.eval_docs]
    asked_seen, train_rows = _seen_questions(train_rows, split_cfg)
    if asked_seen:  # not rejects: moved to the seen-documents eval set
        out.funnel.append(("held out: questions on training documents", len(asked_seen)))
    funnel.kept = train_rows
    if cfg.decontam_ngram:
        n = cfg.decontam_ngram
        grams = set().union(*(ngrams(dialogue(s), n) for s in held))
        drop("decontamination", {
            i: f"shares a {n}-word sequence with an eval sample"
            for i, s in enumerate(funnel.kept)
            if grams & ngrams(dialogue(s), n)
        })  # fmt: skip
    if cfg.decontam_similarity is not None and embed is not None and held and funnel.kept:
        near_eval = _near_requests(funnel.kept, held, embed, cfg.decontam_similarity)
        drop("semantic decontamination", near_eval)
    if cfg.max_refusal_share is not None:
        drop("refusal share", _over_share(funnel.kept, cfg.max_refusal_share, split_cfg.seed))
    train_rows = funnel.kept
    # The seen-documents set asks new questions about trained facts: a question the
    # training set already asks (the same words, or nearly) would test recall of it.
    # Its removals are listed in `seen_funnel`, apart from the training funnel.
    asked = {normalise(s["question"]) for s in train_rows}
    gone = {
        i: "seen set: the same question is in the training set"
        for i, s in enumerate(asked_seen)
        if normalise(s["question"]) in asked
    }
    out.seen_funnel.append(("the same question in training", len(gone)))
    if cfg.decontam_similarity is not None and embed is not None and asked_seen and train_rows:
        near = _near_requests(
            asked_seen, train_rows, embed, cfg.decontam_similarity, "a training question"
        )
        near = {i: f"seen set: {r}" for i, r in near.items() if i not in gone}
        out.seen_funnel.append(("a training question this similar (embedding)", len(near)))
        gone |= near
    out.rejected.extend({**asked_seen[i], "reject_reason": why} for i, why in gone.items())
    kept = [s for i, s in enumerate(asked_seen) if i not in gone]
    out.eval_seen = [{**s, "split": "eval_seen"} for s in kept]
    out.train = [{**s, "split": "train"} for s in train_rows]
    out.eval = held
    return out


def _over_share(rows: list[dict[str, Any]], share: float, seed: int) -> dict[int, str]:
    """A seeded choice of the refusal rows beyond `share` of the rows that stay: with `a`
    answerable rows, at most floor(a * share / (1 - share)) refusals."""
    refusals = [i for i, s in enumerate(rows) if s.get("expects_refusal")]
    answerable = len(rows) - len(refusals)
    room = len(refusals) if share >= 1 else int(answerable * share / (1 - share) + 1e-9)
    if len(refusals) <= room:
        return {}
    extra = random.Random(seed).sample(refusals, len(refusals) - room)
    why = f"refusal rows over {share:.0%} of the training rows"
    return {i: why for i in sorted(extra)}


def _semantic(
    kept: list[dict[str, Any]], embed: Callable[[list[str]], Any], threshold: float
) -> dict[int, str]:
    """Greedy: a question this close to an earlier kept one is a duplicate (O(n^2))."""
    import numpy as np

    vectors = np.asarray(embed([s["question"] for s in kept]))
    reasons: dict[int, str] = {}
    keep: list[int] = []
    for i in range(len(kept)):
        if keep:
            sims = vectors[keep] @ vectors[i]
            j = int(np.argmax(sims))
            if sims[j] >= threshold:
                reasons[i] = f"semantic duplicate of {kept[keep[j]]['sample_id']} ({sims[j]:.2f})"
                continue
        keep.append(i)
    return reasons


def _judged(
    kept: list[dict[str, Any]], verdicts: list[dict[str, Any] | str], cfg: CurateConfig
) -> dict[int, str]:
    reasons = {}
    for i, (s, v) in enumerate(zip(kept, verdicts, strict=True)):
        if isinstance(v, str):
            s["groundedness"] = s["quality"] = None
            s["judge_reason"] = v
            reasons[i] = f"judge failed: {v}"[:200]  # never counted as passing
            continue
        s["groundedness"], s["quality"], s["judge_reason"] = (
            v["groundedness"],
            v["quality"],
            v.get("reason", ""),
        )
        if v["groundedness"] < cfg.min_groundedness:
            reasons[i] = f"judge: groundedness {v['groundedness']} below {cfg.min_groundedness}"
        elif v["quality"] < cfg.min_quality:
            reasons[i] = f"judge: quality {v['quality']} below {cfg.min_quality}"
    return reasons
