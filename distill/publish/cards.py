"""The dataset and model cards: YAML metadata and a Markdown body rendered from the
templates in distill/publish/templates/ (Jinja2, strict: a missing value is an error).

This module gathers the values from the run folder; the wording is in the templates."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2
import yaml

from distill import __version__, tables
from distill.decision_text import decision_markdown
from distill.eval_text import decision_table
from distill.recipe import Recipe
from distill.results import EvalMetrics
from distill.review_gate import review_stats, summary, training_rows
from distill.runfolder import RunFolder
from distill.tables import Document
from distill.train_results import TrainMetrics

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("distill.publish", "templates"),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,
)


def render(template: str, meta: dict[str, Any], **values: Any) -> str:
    """A card: the metadata block, then the template's body."""
    body = _ENV.get_template(template).render(**values)
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n\n" + body.strip() + "\n"


def size_category(n: int) -> str:
    for limit, label in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
    ):
        if n < limit:
            return label
    return "1M<n<10M"


def table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def review_text(folder: RunFolder, unreviewed: list[str], accept_unreviewed: bool) -> str:
    """The review's summary; `unreviewed` are the reasons it did not pass, said when the
    folder is published anyway."""
    text = summary(review_stats(folder), folder.manifest.get("review_gate"))
    if unreviewed and accept_unreviewed:
        text += " **Published with --accept-unreviewed**: " + "; ".join(unreviewed) + "."
    return text


def _data_configs(
    seen: bool, rejected: bool, corpus: bool, preferences: bool = False
) -> list[dict[str, Any]]:
    files = [
        {"split": "train", "path": "data/train-*.parquet"},
        {"split": "eval", "path": "data/eval-*.parquet"},
    ]
    if seen:
        files.append({"split": "eval_seen", "path": "data/eval_seen-*.parquet"})
    configs: list[dict[str, Any]] = [{"config_name": "default", "data_files": files}]
    extra = (
        (preferences, "preferences", "preferences"),
        (rejected, "rejected", "rejected"),
        (corpus, "corpus", "corpus"),
    )
    for wanted, name, path in extra:
        if wanted:
            configs.append(
                {
                    "config_name": name,
                    "data_files": [{"split": "train", "path": f"{path}/*.parquet"}],
                }
            )
    return configs


OTHER_LICENSE = "LICENSE.md"


def license_meta(cfg: Any) -> dict[str, str]:
    """The card's license keys: the license the recipe names, or for `other` the
    license_name and license_link the Hub's card spec asks for."""
    if cfg.license != "other":
        return {"license": cfg.license}
    return {
        "license": "other",
        "license_name": cfg.license_name or "documents-license",
        "license_link": cfg.license_link or OTHER_LICENSE,
    }


def license_text(recipe: Recipe) -> str | None:
    """LICENSE.md for a repository whose license is `other` with no link of its own."""
    cfg = recipe.publish
    if cfg.license != "other" or cfg.license_link:
        return None
    return (
        "# License\n\n"
        f"This repository was made by distill from the documents of `{recipe.name}`. Its "
        "license is that of those documents, which the publisher has not named here "
        "(`publish.license: other`). Ask the publisher before reusing it; a publisher can "
        "name the license with `publish.license`, or `publish.license_name` and "
        "`publish.license_link`.\n"
    )


def dataset_card(
    recipe: Recipe,
    folder: RunFolder,
    repo_id: str,
    rows: Mapping[str, Sequence[Mapping[str, Any]]],
    review: str,
) -> str:
    """`rows`: the published splits (train, eval, eval_seen, rejected); `review`: the
    review's summary (review_text)."""
    cfg = recipe.publish
    train, held, seen = rows["train"], rows["eval"], rows.get("eval_seen", [])
    prefs = rows.get("preferences", [])
    meta = {
        **license_meta(cfg),
        "language": cfg.language,
        "task_categories": ["question-answering", "text-generation"],
        "size_categories": [size_category(len(train) + len(held))],
        "tags": ["synthetic", "distillation", "distill", "rag", "grounded"],
        "pretty_name": repo_id.split("/")[-1],
        "configs": _data_configs(
            bool(seen), bool(rows.get("rejected")), cfg.include_corpus, bool(prefs)
        ),
    }
    stages = folder.manifest.get("stages", {})
    ingest = stages.get("ingest", {}).get("counts", {})
    gen = stages.get("generate", {})
    gen_counts, tokens = gen.get("counts", {}), gen.get("tokens", {})
    curate_counts = stages.get("curate", {}).get("counts", {})
    docs = tables.read(folder.documents, Document)
    formats = Counter(d.get("format") or Path(d["source"]).suffix.lstrip(".") for d in docs)
    mix, mix_eval = Counter(r["task"] for r in train), Counter(r["task"] for r in held)
    filters = [
        (k.removeprefix("removed_by_").replace("_", " "), v)
        for k, v in curate_counts.items()
        if k.startswith("removed_by_")
    ]
    return render(
        "dataset.md.j2",
        meta,
        name=repo_id.split("/")[-1],
        version=__version__,
        recipe_name=recipe.name,
        description=recipe.description,
        documents=ingest.get("documents", len(docs)),
        formats=", ".join(f"{n} {f}" for f, n in formats.most_common()),
        corpus_tokens=ingest.get("corpus_tokens", "?"),
        chunks=ingest.get("chunks", "?"),
        chunk_tokens=recipe.ingest.chunk_tokens,
        include_corpus=cfg.include_corpus,
        teacher=recipe.teacher.model,
        templates=list(((gen.get("inputs") or {}).get("templates") or {}).items()),
        task_table=table(
            ("task", "train", "eval"),
            [(t, mix[t], mix_eval[t]) for t in sorted(set(mix) | set(mix_eval))],
        ),
        samples=curate_counts.get("samples", len(train) + len(held)),
        failures=gen_counts.get("failures", 0),
        filter_table=table(("filter", "removed"), filters) if filters else "",
        n_train=len(train),
        n_eval=len(held),
        n_seen=len(seen),
        review_text=review,
        requests_sent=gen_counts.get("requests_sent", "?"),
        tokens_in=tokens.get("input", 0),
        tokens_out=tokens.get("output", 0),
        cost=gen_counts.get("cost_usd", 0.0),
        price=gen_counts.get("price", ""),
        human_reviewed=bool(review_stats(folder).get("human_reviewed")),
        n_pairs=len(prefs),
        pairs_written_by=sorted({p["rejected_by"] for p in prefs}),
        pairs_judge=sorted({p["judge"] for p in prefs}),
    )


def method_tags(method: str) -> list[str]:
    """The card's tags for `train.method` (sft_then_dpo: sft, dpo)."""
    return [m for m in ("sft", "dpo", "gkd") if m in method.split("_")]


def model_card(
    recipe: Recipe,
    folder: RunFolder,
    repo_ids: tuple[str, str],
    base: tuple[str, str],
    metrics: tuple[EvalMetrics, TrainMetrics],
    review: str,
) -> str:
    """`repo_ids`: (adapter, dataset); `base`: (the student's id, where it came from);
    `metrics`: (eval's, train's)."""
    repo_id, dataset_repo = repo_ids
    base_id, base_note = base
    evaluated, trained = metrics
    meta = {
        "base_model": base_id,
        "library_name": "peft",
        "pipeline_tag": "text-generation",
        **license_meta(recipe.publish),
        "language": recipe.publish.language,
        "datasets": [dataset_repo],
        "tags": ["lora", "peft", "trl", *method_tags(trained.method), "distillation", "distill"],
    }
    first = trained.first  # the pass whose figures the card's first paragraph gives
    return render(
        "model.md.j2",
        meta,
        name=repo_id.split("/")[-1],
        repo_id=repo_id,
        dataset_repo=dataset_repo,
        base=base_id,
        provenance=f" ({base_note})" if base_note else "",
        teacher=recipe.teacher.model,
        version=__version__,
        recipe_name=recipe.name,
        description=recipe.description,
        n_train=len(training_rows(folder)),
        review_text=review,
        backend=first.backend,
        device=first.device,
        t=recipe.train,
        method=trained.method,
        dpo=trained.dpo,
        gkd=trained.gkd,
        steps=first.steps,
        epochs=first.epochs,
        train_loss=first.train_loss,
        eval_loss=trained.eval_loss,
        versions=", ".join(f"{k} {v}" for k, v in first.versions.items()) or "not recorded",
        questions=evaluated.questions,
        k=evaluated.k,
        judge=evaluated.judge,
        hardware=evaluated.hardware,
        adapter_sha256=evaluated.adapter_sha256 or "not recorded",
        meaning=" ".join(evaluated.what_this_means_judged),
        decision_table=decision_table(evaluated.systems),
        decision="\n".join(decision_markdown(evaluated.decision)) if evaluated.decision else "",
    )
