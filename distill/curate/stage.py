"""Curate: only good samples reach training.

In order, each step removing samples (the report counts each):
1. checks: the request parses, lengths are in bounds, no loops, no truncation; a
   RAFT sample whose context lacks the answer must say so, and every other answer
   must not refuse; citations ([n]) must point at documents in the context;
2. exact duplicates (normalised request + answer);
3. near-duplicate requests, then near-duplicate samples (MinHash LSH, distill.curate.dedup);
4. optional semantic duplicates (embedding cosine of the requests);
5. a lexical support score (no model: the share of the answers' content words found
   in the documents they cite), reported, and a filter when `min_support` is set;
6. optional judge scores (groundedness and quality 1-5, one call per sample to
   `curate.judge`); a sample whose judge call failed is rejected, never passed;
7. the split by document, chosen before generation (generate/split.json,
   distill.split): a sample goes to eval when all its source documents are held
   out, to train when none is and no chunk of its context comes from a held-out
   document; any other sample is dropped (generation never makes one: a check);
8. the seen-documents eval set: a seeded `seen_eval_fraction` of the training
   side's plain questions is held out (eval_seen.parquet), to ask without
   retrieval whether fine-tuning absorbed what the training documents say;
9. decontamination: a training sample sharing a `decontam_ngram`-word sequence with
   any eval sample's request or answers is dropped, and so is one whose request is
   within `decontam_similarity` (embedding cosine) of an eval request; a seen-set
   question the training set asks too (the same words or that similar) is dropped.

Outputs in `curate/`: train.parquet, eval.parquet, eval_seen.parquet,
rejected.parquet (with the reason), report.md with histograms (support.png,
judge.png). The exports (OpenAI JSONL, ShareGPT, Alpaca) are written after review,
in review/exports/, so they hold exactly what trains.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distill import rows
from distill.config import PriceConfig
from distill.curate.config import CurateConfig
from distill.curate.dedup import near_duplicates
from distill.errors import InputError
from distill.grounding import QUESTION_TASKS, citations, is_refusal, numbered, support_score
from distill.io import read_rows, save_figure, sha256_text, write_text
from distill.prompts import recipe_template
from distill.recipe import Recipe
from distill.rows import CuratedSample
from distill.runfolder import RunFolder, RunOptions
from distill.split import Split, unit


def normalise(text: str) -> str:
    """Lower case, punctuation and extra spaces removed: the key for exact dedup."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


# "What does the document say..." cannot be asked by a user who never saw the document.
_REFERS_TO_CONTEXT = re.compile(
    r"\b(the|this|that|above|given|provided) (document|passage|text|help page|context|article)\b",
    re.I,
)


def repetition(text: str) -> float:
    """Share of word 4-grams that repeat an earlier one (0 = none, near 1 = a loop)."""
    words = text.lower().split()
    grams = [tuple(words[i : i + 4]) for i in range(len(words) - 3)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def check(sample: dict[str, Any], cfg: CurateConfig, count_tokens: Callable[[str], int]) -> str:
    """The reason to reject a sample, or '' to keep it."""
    q, a = sample.get("question") or "", sample.get("answer") or ""
    answers = [m["content"] for m in sample.get("messages") or [] if m["role"] == "assistant"]
    answers = answers or [a]
    if not q.strip() or not all(x.strip() for x in answers):
        return "unparseable: empty request or answer"
    if "\n" in q.strip():
        return "unparseable: request spans several lines"
    asks_question = sample.get("task", "qa") in QUESTION_TASKS
    if asks_question and cfg.require_question_mark and not q.strip().endswith("?"):
        return "not a question (no question mark)"
    if _REFERS_TO_CONTEXT.search(q):
        return "request refers to the context instead of standing alone"
    if len(q.strip()) < cfg.min_question_chars:
        return f"request shorter than {cfg.min_question_chars} characters"
    if any(len(x.strip()) < cfg.min_answer_chars for x in answers):
        return f"answer shorter than {cfg.min_answer_chars} characters"
    if sample.get("answer_truncated"):
        return "answer cut off at the teacher's token limit"
    if any(count_tokens(x) > cfg.max_answer_tokens for x in answers):
        return f"answer longer than {cfg.max_answer_tokens} tokens"
    if any(repetition(x) > cfg.max_repetition for x in answers):
        return f"repetitive answer (over {cfg.max_repetition:.0%} repeated 4-grams)"
    if sample.get("expects_refusal"):
        if not is_refusal(a):
            return "answers although its context lacks the answer"
        return ""
    if any(is_refusal(x) for x in answers):
        return "refuses although its context holds the answer"
    n_context = len(sample.get("chunk_ids") or [])
    cited = [n for x in answers for n in citations(x)]
    if any(not 1 <= n <= n_context for n in cited):
        return "cites a document that is not in its context"
    if cfg.require_citations and not cited:
        return "cites no document"
    return ""


def dialogue(sample: dict[str, Any]) -> str:
    """The sample's own words: the request, every answer and later turn (not the context
    documents, which many samples share)."""
    later = [m["content"] for m in (sample.get("messages") or [])[2:]]
    return "\n".join([sample["question"], *(later or [sample["answer"]])])


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = normalise(text).split()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def _crosses(s: dict[str, Any], eval_docs: frozenset[str]) -> str | None:
    """Why a sample cannot stay on either side of the split, or None."""
    sources = set(_sources(s))
    if sources <= eval_docs:
        return None  # an eval item: written from held-out documents
    if sources & eval_docs:
        return "its source documents span the train and eval sides"
    if set(s.get("doc_ids") or []) & eval_docs:
        return "its context carries chunks of held-out documents"
    return None


def _seen_questions(
    rows: list[dict[str, Any]], cfg: CurateConfig
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


def _sources(s: dict[str, Any]) -> list[str]:
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
    judge: Judge | None = None,
    embed: Callable[[list[str]], Any] | None = None,
    sample_tokens: Callable[[dict[str, Any]], int] | None = None,
    max_sample_tokens: int | None = None,
    split: Split | None = None,
) -> Curated:
    """Filter, deduplicate, score, split by document and decontaminate.

    `judge(samples)` returns, per sample, {"groundedness", "quality", "reason"} or a
    string saying why the judge failed; `embed(texts)` returns normalised vectors.
    """
    chunk_text = chunk_text or {}
    out = Curated([], [], [])
    kept = list(samples)

    def drop(name: str, reasons: dict[int, str]) -> None:
        nonlocal kept
        out.funnel.append((name, len(reasons)))
        out.rejected.extend({**kept[i], "reject_reason": r} for i, r in reasons.items())
        kept = [s for i, s in enumerate(kept) if i not in reasons]

    drop("checks", {i: r for i, s in enumerate(kept) if (r := check(s, cfg, count_tokens))})
    if sample_tokens is not None and max_sample_tokens is not None:
        # Training would cut these (TRL keeps the start), losing the answer.
        drop("too long to train on", {
            i: f"longer than train.max_seq_length ({n} > {max_sample_tokens} tokens)"
            for i, s in enumerate(kept)
            if (n := sample_tokens(s)) > max_sample_tokens
        })  # fmt: skip
    seen: dict[str, str] = {}
    exact = {}
    for i, s in enumerate(kept):
        key = sha256_text(normalise(s["question"]) + "\x00" + normalise(s["answer"]))
        if key in seen:
            exact[i] = f"exact duplicate of {seen[key]}"
        seen.setdefault(key, s["sample_id"])
    drop("exact duplicates", exact)
    if cfg.near_dup_questions is not None:
        dup = near_duplicates([s["question"] for s in kept], cfg.near_dup_questions)
        drop("near-duplicate questions", {
            i: f"near-duplicate question of {kept[j]['sample_id']}" for i, j in dup.items()
        })  # fmt: skip
    if cfg.near_dup_samples is not None:
        texts = [dialogue(s) for s in kept]
        dup = near_duplicates(texts, cfg.near_dup_samples)
        drop("near-duplicate samples", {
            i: f"near-duplicate sample of {kept[j]['sample_id']}" for i, j in dup.items()
        })  # fmt: skip
    if cfg.semantic_dedup is not None and embed is not None and kept:
        drop("semantic duplicates", _semantic(kept, embed, cfg.semantic_dedup))
    for s in kept:
        s["support"] = support_score(s, chunk_text)
    if cfg.min_support is not None:
        low = {
            i: f"support score {s['support']:.2f} below {cfg.min_support}"
            for i, s in enumerate(kept)
            if s["support"] is not None and s["support"] < cfg.min_support
        }
        drop("support score", low)
    if judge is not None and kept:
        drop("judge", _judged(kept, judge(kept), cfg))
    split = split or Split.choose(
        (d for s in kept for d in _sources(s)), cfg.eval_fraction, cfg.seed
    )
    drop("split by document", {
        i: why for i, s in enumerate(kept) if (why := _crosses(s, split.eval_docs))
    })  # fmt: skip
    held = [{**s, "split": "eval"} for s in kept if set(_sources(s)) <= split.eval_docs]
    train_rows = [s for s in kept if not set(_sources(s)) <= split.eval_docs]
    asked_seen, train_rows = _seen_questions(train_rows, cfg)
    if asked_seen:  # not rejects: moved to the seen-documents eval set
        out.funnel.append(("held out: questions on training documents", len(asked_seen)))
    kept = train_rows
    if cfg.decontam_ngram:
        n = cfg.decontam_ngram
        grams = set().union(*(ngrams(dialogue(s), n) for s in held))
        drop("decontamination", {
            i: f"shares a {n}-word sequence with an eval sample"
            for i, s in enumerate(kept)
            if grams & ngrams(dialogue(s), n)
        })  # fmt: skip
    if cfg.decontam_similarity is not None and embed is not None and held and kept:
        drop("semantic decontamination", _near_requests(kept, held, embed, cfg.decontam_similarity))
    train_rows = kept
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


JUDGE_SCHEMA = {
    "type": "object",
    "properties": {
        "groundedness": {"type": "integer", "minimum": 1, "maximum": 5},
        "quality": {"type": "integer", "minimum": 1, "maximum": 5},
        "reason": {"type": "string"},
    },
    "required": ["groundedness", "quality", "reason"],
}


def judge_price(recipe: Recipe, spec: str) -> PriceConfig | None:
    """The recipe's price for a judge: generate.price when it is the teacher's model."""
    return recipe.generate.price if spec == recipe.generate.teacher else None


class SampleJudge:
    """The recipe's judge: one cached call per sample, verdicts validated; `cost_usd` is
    what its calls paid in this run."""

    def __init__(self, recipe: Recipe, out: Path, chunk_text: dict[str, str]) -> None:
        assert recipe.curate.judge is not None
        self.recipe, self.out, self.chunk_text = recipe, out, chunk_text
        self.spec = recipe.curate.judge
        self.template = recipe_template(recipe, recipe.curate.judge_template)
        self.cost_usd = 0.0
        from distill.teachers.factory import price_for

        self.price_source = price_for(self.spec, judge_price(recipe, self.spec))[1]

    def __call__(self, samples: list[dict[str, Any]]) -> list[dict[str, Any] | str]:
        from distill.teachers.cache import RequestCache
        from distill.teachers.factory import make_teacher
        from distill.teachers.judge import JsonJudge

        cache = RequestCache(self.out / "cache.sqlite")
        teacher = make_teacher(
            self.spec,
            self.recipe.curate.judge_options,
            price=judge_price(self.recipe, self.spec),
            cache=cache,
            salt=self.template.sha,
        )
        judging = JsonJudge(teacher, max_tokens=128)
        prompts = [
            self.template.render(
                passages=numbered(
                    [{"text": self.chunk_text.get(c, ""), "heading_path": ""} for c in ids]
                ),
                question=s["question"],
                answer=s["answer"],
            )
            for s in samples
            for ids in [s["chunk_ids"]]
        ]
        verdicts = judging.ask("judging", prompts, JUDGE_SCHEMA)
        cache.close()
        self.cost_usd += teacher.spent_usd
        return [verdict if verdict is not None else str(error) for verdict, error, _ in verdicts]


def run(recipe: Recipe, folder: RunFolder, options: RunOptions) -> dict[str, Any]:
    from distill.models import load_tokenizer

    samples = read_rows(folder.stage_dir("generate") / "samples.parquet")
    if not samples:
        raise InputError("curate: the generate stage produced no samples; check generate failures")
    cfg = recipe.curate
    out = folder.stage_dir("curate")
    chunks = read_rows(folder.stage_dir("ingest") / "chunks.parquet")
    chunk_text = {c["chunk_id"]: c["text"] for c in chunks}
    tok = load_tokenizer(recipe.train.student)
    embed = None
    if cfg.semantic_dedup is not None or cfg.decontam_similarity is not None:
        from distill.retrieval import embed as embed_model

        def embed(texts: list[str]) -> Any:
            return embed_model(texts, recipe.ingest.embedding_model, label="questions")

    judge = SampleJudge(recipe, out, chunk_text) if cfg.judge else None
    result = curate(
        samples,
        cfg,
        lambda t: len(tok(t, add_special_tokens=False)["input_ids"]),
        chunk_text,
        judge=judge,
        embed=embed,
        sample_tokens=lambda s: len(
            tok.apply_chat_template(
                [{"role": m["role"], "content": m["content"]} for m in s["messages"]],
                tokenize=True,
            )["input_ids"]
        ),
        max_sample_tokens=recipe.train.max_seq_length,
        split=Split.load(folder.stage_dir("generate") / "split.json"),
    )
    for name, kept in (
        ("train", result.train),
        ("eval", result.eval),
        ("eval_seen", result.eval_seen),
        ("rejected", result.rejected),
    ):
        rows.write(out / f"{name}.parquet", kept, CuratedSample)
    plots = _histograms(out, result)
    write_text(out / "report.md", _report(samples, result, plots, cfg))
    _print_funnel(len(samples), result)
    if not result.train:
        raise InputError(
            "curate: no training samples left; see curate/report.md for the reject reasons"
        )
    return {
        "samples": len(samples),
        "train": len(result.train),
        "eval": len(result.eval),
        "eval_seen": len(result.eval_seen),
        "eval_seen_decontaminated": sum(n for _, n in result.seen_funnel),
        "rejected": len(result.rejected),
        **{f"removed_by_{name.replace(' ', '_')}": n for name, n in result.funnel},
        # What the judge's calls paid in this run (priced like every teacher).
        "judge_cost_usd": round(judge.cost_usd, 6) if judge is not None else 0.0,
        "judge_price": judge.price_source if judge is not None else "no judge",
    }


def _print_funnel(n_in: int, result: Curated) -> None:
    from rich.table import Table

    from distill.ui import console

    table = Table(title="curation", show_edge=False)
    for col in ("filter", "in", "removed", "out"):
        table.add_column(col, justify="left" if col == "filter" else "right")
    left = n_in
    for name, removed in result.funnel:
        table.add_row(name, str(left), str(removed), str(left - removed))
        left -= removed
    console.print(table)


def _histograms(out: Path, result: Curated) -> list[str]:
    """support.png (and judge.png when judged); returns the file names written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    everyone = result.train + result.eval + result.rejected
    written = []
    support = [s["support"] for s in everyone if s.get("support") is not None]
    if support:
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.hist(support, bins=20, range=(0, 1), color="#4c72b0")
        ax.set_xlabel("support score (share of answer words found in cited documents)")
        ax.set_ylabel("samples")
        fig.tight_layout()
        save_figure(fig, out / "support.png", dpi=100)
        plt.close(fig)
        written.append("support.png")
    judged = [s for s in everyone if s.get("groundedness") is not None]
    if judged:
        fig, axes = plt.subplots(1, 2, figsize=(8, 3))
        for ax, key in zip(axes, ("groundedness", "quality"), strict=True):
            counts = Counter(s[key] for s in judged)
            ax.bar(range(1, 6), [counts.get(v, 0) for v in range(1, 6)], color="#55a868")
            ax.set_xlabel(f"judge {key}")
            ax.set_xticks(range(1, 6))
        axes[0].set_ylabel("samples")
        fig.tight_layout()
        save_figure(fig, out / "judge.png", dpi=100)
        plt.close(fig)
        written.append("judge.png")
    return written


def _report(
    samples: list[dict[str, Any]], result: Curated, plots: list[str], cfg: CurateConfig
) -> str:
    train, held, rejected = result.train, result.eval, result.rejected
    lines = [
        "# Curation report",
        "",
        f"- samples in: {len(samples)}",
        f"- kept: {len(train) + len(held)} (train {len(train)} from "
        f"{len({d for s in train for d in _sources(s)})} documents, eval {len(held)} from "
        f"{len({d for s in held for d in _sources(s)})} documents)",
        f"- rejected: {len(rejected)}",
        f"- tasks kept: {dict(Counter(s.get('task', 'qa') for s in train + held))}",
        "",
        "| filter | in | removed | out |",
        "| --- | --- | --- | --- |",
    ]
    left = len(samples)
    for name, removed in result.funnel:
        lines.append(f"| {name} | {left} | {removed} | {left - removed} |")
        left -= removed
    reasons = Counter(_reason_kind(r["reject_reason"]) for r in rejected)
    lines += ["", "| reject reason | samples |", "| --- | --- |"]
    lines += [f"| {r} | {n} |" for r, n in reasons.most_common()]
    lines += [""] + [f"![{p}]({p})" for p in plots]
    lines += ["", "## Rejected examples", ""]
    for reason, _ in reasons.most_common():
        lines.append(f"### {reason}")
        for r in [r for r in rejected if _reason_kind(r["reject_reason"]) == reason][:3]:
            answer = " ".join(r["answer"].split())[:300]
            lines.append(
                f"- `{r['sample_id']}` ({r.get('task', 'qa')}): **{r['question']}** → {answer}"
            )
        lines.append("")
    lines += ["## Held-out documents", ""]
    lines += [f"- {d}" for d in sorted({d for s in held for d in _sources(s)})]
    lines += [
        "",
        "## Seen-documents eval set",
        "",
        f"{len(result.eval_seen)} questions on training documents held out of training "
        "(eval_seen.parquet), to ask without retrieval what fine-tuning absorbed.",
    ]
    lines += [f"- removed: {name}: {n}" for name, n in result.seen_funnel]
    return "\n".join(lines) + "\n"


def _reason_kind(reason: str) -> str:
    """A reason without its specifics ('near-duplicate question of X' -> '... question')."""
    return re.sub(r" (of|\() ?[0-9a-f]{16}.*$", "", reason)
