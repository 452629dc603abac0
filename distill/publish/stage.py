"""Publish: the dataset and the adapter as Hugging Face Hub repositories.

The stage writes both folders, exactly as they would be uploaded:
- publish/dataset/: data/train-*.parquet and data/eval-*.parquet (plus, when asked,
  a `rejected` config with the reasons and a `corpus` config with the chunks),
  README.md (dataset card with YAML metadata) and recipe.yaml (the resolved recipe,
  secrets removed); loads with `datasets.load_dataset("publish/dataset")`;
- publish/adapter/: adapter_model.safetensors, adapter_config.json, the tokenizer
  files and README.md (model card with the eval decision table); loads with PEFT.

`distill publish RECIPE dataset|adapter --repo-id ORG/NAME` writes the folder again
for that repository and uploads it (distill.publish.hub). Before anything is written to disk
as final, both folders are scanned for tokens and API keys; one found stops the stage.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from distill import __version__
from distill.errors import UserError
from distill.io import atomic_dir, read_json, read_rows, sha256_file, write_rows
from distill.models import resolve_causal_lm
from distill.recipe import Recipe
from distill.redact import SECRET_SHAPES, env_secrets, redact, scrub
from distill.review.stage import gate_reasons, review_stats, summary, training_rows
from distill.runfolder import RunFolder

DATASET_COLUMNS = (
    "sample_id",
    "messages",
    "question",
    "answer",
    "task",
    "source_chunk_id",
    "chunk_ids",
    "doc_ids",
    "teacher",
    "template",
    "template_sha",
    "review_status",
    "human_edited",
)
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
)


def repo_ids(recipe: Recipe) -> tuple[str, str]:
    """(dataset repo, adapter repo), from the recipe or the defaults."""
    p = recipe.publish
    return (
        p.dataset_repo or f"{recipe.name}-dataset",
        p.adapter_repo or f"{recipe.name}-lora",
    )


# -- secrets


def hub_login_token() -> tuple[str | None, str | None]:
    """(the Hub login cache's token or None, why it could not be read or None). No cache
    is not a problem; a cache that exists and cannot be read is: the scan says so."""
    try:
        from huggingface_hub import constants
    except ImportError:
        return None, None
    path = Path(constants.HF_TOKEN_PATH)
    try:
        if not path.exists():
            return None, None
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        reason = getattr(e, "strerror", None) or type(e).__name__
        return None, f"the Hugging Face login cache {path} could not be read ({reason})"
    return token or None, None


def secret_values() -> tuple[dict[str, str], list[str]]:
    """Secrets this process knows, as value -> where it came from (at least 8 characters):
    environment variables named like credentials and the Hub login cache's token; and
    what could not be looked at."""
    found = env_secrets()
    token, problem = hub_login_token()
    if token and len(token) >= 8:
        found.setdefault(token, "the Hugging Face login cache")
    return found, [problem] if problem else []


def _file_text(path: Path) -> str:
    """A file's content for the scan: Parquet decoded (its pages may be compressed),
    everything else as bytes read as text."""
    if path.suffix == ".parquet":
        import json

        return json.dumps(read_rows(path), default=str)
    return path.read_bytes().decode("utf-8", errors="replace")


def find_secrets(folder: Path) -> list[str]:
    """'file: what' for every credential found in the folder's files (never the value)."""
    known, unread = secret_values()
    problems = [f"{u}: its token was not looked for" for u in unread]
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        text = _file_text(path)
        what = [f"the value of {src}" for value, src in known.items() if value in text]
        what += [name for name, rx in SECRET_SHAPES.items() if rx.search(text)]
        if what:
            problems.append(f"{path.relative_to(folder)}: {', '.join(sorted(set(what)))}")
    return problems


# -- the stage


def run(recipe: Recipe, run: RunFolder) -> dict[str, Any]:
    """The stage: both folders."""
    dataset_repo, adapter_repo = repo_ids(recipe)
    counts = write(recipe, run, "dataset")
    write(recipe, run, "adapter")
    return {**counts, "dataset": dataset_repo, "adapter": adapter_repo}


NEEDS = {"dataset": ("ingest", "generate", "curate", "review"), "adapter": ("train", "eval")}


def check_ready(run: RunFolder, kind: str) -> None:
    """One line naming the first stage the folder needs that has not run."""
    from distill.errors import InputError

    for stage in NEEDS[kind]:
        if not run.is_done(stage):
            raise InputError(
                f"publish {kind}: the {stage} stage has not run; run `distill run RECIPE` first"
            )


def write(recipe: Recipe, run: RunFolder, kind: str) -> dict[str, Any]:
    """Write publish/<kind>/ as it would be uploaded; refuse (and remove it) when it holds
    a credential."""
    check_ready(run, kind)
    dataset_repo, adapter_repo = repo_ids(recipe)
    dest = run.stage_dir("publish") / kind
    if kind == "dataset":
        return write_dataset(recipe, run, dest, dataset_repo)
    write_adapter(recipe, run, dest, adapter_repo, dataset_repo)
    return {}


def refuse_secrets(folder: Path, kind: str) -> None:
    """Stop before a staged folder becomes final when it holds a credential, or when the
    scan could not look for one; the folder published before (if any) stays as it was."""
    problems = find_secrets(folder)
    if problems:
        raise UserError(
            f"publish {kind}: not written, the secret scan stopped it: "
            + "; ".join(problems)
            + ". Remove the credentials from the documents or recipe (or fix what the scan "
            "could not read) and publish again"
        )


def _dataset_rows(rows: list[dict[str, Any]], extra: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    return [
        {
            **{k: r.get(k) for k in DATASET_COLUMNS + extra},
            "review_status": r.get("review_status", "not_reviewed"),
            "human_edited": bool(r.get("human_edited")),
        }
        for r in rows
    ]


def _reviewer_reason(row: dict[str, Any]) -> str:
    issues = ", ".join(row.get("issues") or []) or "rejected"
    notes = row.get("reviewer_notes")
    text = " / ".join(notes) if isinstance(notes, list) else (notes or "")
    return f"{issues}: {text}" if text else issues


def unreviewed_reasons(recipe: Recipe, run: RunFolder) -> list[str]:
    """Why the dataset has not passed a human spot-check (empty: it has)."""
    stats = review_stats(run)
    if stats.get("mode") != "argilla":
        return ["the spot-check was skipped (review.mode is auto: no person checked it)"]
    return gate_reasons(stats, recipe.review)


def write_dataset(recipe: Recipe, run: RunFolder, dest: Path, repo_id: str) -> dict[str, int]:
    cfg = recipe.publish
    train = training_rows(run)
    held = read_rows(run.stage_dir("curate") / "eval.parquet")
    seen_path = run.stage_dir("curate") / "eval_seen.parquet"
    seen = read_rows(seen_path) if seen_path.exists() else []
    rejected: list[dict[str, Any]] = []
    if cfg.include_rejected:
        rejected = [
            {**r, "rejected_by": "curation"}
            for r in read_rows(run.stage_dir("curate") / "rejected.parquet")
        ]
        human = run.stage_dir("review") / "rejected.parquet"
        if human.exists():
            rejected += [
                {**r, "rejected_by": "reviewer", "reject_reason": _reviewer_reason(r)}
                for r in read_rows(human)
            ]
    with atomic_dir(dest) as tmp:
        write_rows(tmp / "data" / "train-00000-of-00001.parquet", _dataset_rows(train))
        write_rows(tmp / "data" / "eval-00000-of-00001.parquet", _dataset_rows(held))
        if seen:
            write_rows(tmp / "data" / "eval_seen-00000-of-00001.parquet", _dataset_rows(seen))
        if rejected:
            write_rows(
                tmp / "rejected" / "rejected-00000-of-00001.parquet",
                _dataset_rows(rejected, ("reject_reason", "rejected_by")),
            )
        if cfg.include_corpus:
            chunks = read_rows(run.stage_dir("ingest") / "chunks.parquet")
            write_rows(tmp / "corpus" / "chunks-00000-of-00001.parquet", chunks)
        recipe_data = scrub(recipe.model_dump(mode="json"))
        (tmp / "recipe.yaml").write_text(
            "# The resolved recipe this dataset was made with (distill "
            f"{__version__}); secrets removed.\n" + yaml.safe_dump(recipe_data, sort_keys=False),
            encoding="utf-8",
        )
        (tmp / "README.md").write_text(
            redact(dataset_card(recipe, run, repo_id, train, held, rejected, seen)),
            encoding="utf-8",
        )
        refuse_secrets(tmp, "dataset")
    return {
        "train": len(train),
        "eval": len(held),
        "eval_seen": len(seen),
        "rejected": len(rejected),
    }


def _card(meta: dict[str, Any], body: str) -> str:
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


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _review_text(recipe: Recipe, run: RunFolder) -> str:
    text = summary(review_stats(run), run.manifest.get("review_gate"))
    reasons = unreviewed_reasons(recipe, run)
    if reasons and run.flags.get("accept_unreviewed"):
        text += " **Published with --accept-unreviewed**: " + "; ".join(reasons) + "."
    return text


def dataset_card(
    recipe: Recipe,
    run: RunFolder,
    repo_id: str,
    train: list[dict[str, Any]],
    held: list[dict[str, Any]],
    rejected: list[dict[str, Any]],
    seen: list[dict[str, Any]] | None = None,
) -> str:
    cfg = recipe.publish
    g = recipe.generate
    seen = seen or []
    files = [
        {"split": "train", "path": "data/train-*.parquet"},
        {"split": "eval", "path": "data/eval-*.parquet"},
    ]
    if seen:
        files.append({"split": "eval_seen", "path": "data/eval_seen-*.parquet"})
    configs: list[dict[str, Any]] = [{"config_name": "default", "data_files": files}]
    if rejected:
        configs.append(
            {
                "config_name": "rejected",
                "data_files": [{"split": "train", "path": "rejected/*.parquet"}],
            }
        )
    if cfg.include_corpus:
        configs.append(
            {
                "config_name": "corpus",
                "data_files": [{"split": "train", "path": "corpus/*.parquet"}],
            }
        )
    meta = {
        "license": cfg.license,
        "language": cfg.language,
        "task_categories": ["question-answering", "text-generation"],
        "size_categories": [size_category(len(train) + len(held))],
        "tags": ["synthetic", "distillation", "distill", "rag", "grounded"],
        "pretty_name": repo_id.split("/")[-1],
        "configs": configs,
    }
    stages = run.manifest.get("stages", {})
    ingest = stages.get("ingest", {}).get("counts", {})
    gen = stages.get("generate", {})
    gen_counts = gen.get("counts", {})
    tokens = gen.get("tokens", {})
    curate_counts = stages.get("curate", {}).get("counts", {})
    docs = read_rows(run.stage_dir("ingest") / "documents.parquet")
    formats = Counter(d.get("format") or Path(d["source"]).suffix.lstrip(".") for d in docs)
    templates = (stages.get("generate", {}).get("inputs") or {}).get("templates", {})
    mix = Counter(r["task"] for r in train)
    mix_eval = Counter(r["task"] for r in held)
    filters = [
        (k.removeprefix("removed_by_").replace("_", " "), v)
        for k, v in curate_counts.items()
        if k.startswith("removed_by_")
    ]
    corpus_line = (
        "The chunks themselves are in the `corpus` config."
        if cfg.include_corpus
        else "The documents are described here, not copied: the dataset holds the "
        "questions and answers, and each row's context quotes only the chunks it was "
        "grounded in."
    )
    cost = gen_counts.get("cost_usd", 0.0)
    body = f"""
# {repo_id.split("/")[-1]}

Synthetic, document-grounded instruction/answer pairs made with
[distill](https://pypi.org/project/distill/) {__version__} from the recipe
`{recipe.name}` (the full resolved recipe is `recipe.yaml`). {recipe.description}

## Source corpus
{ingest.get("documents", len(docs))} documents ({
        ", ".join(f"{n} {f}" for f, n in formats.most_common())
    }), {ingest.get("corpus_tokens", "?")} tokens, split into
{ingest.get("chunks", "?")} heading-aware chunks of up to {recipe.ingest.chunk_tokens} tokens.
{corpus_line}

## Teacher and prompts
- **Teacher**: `{g.teacher}` wrote each request from one chunk and answered it from
  that chunk among retrieved neighbours, citing documents as [n].
- **Prompt templates** (versions and text hashes):
{chr(10).join(f"  - `{ref}` ({sha})" for ref, sha in templates.items()) or "  - (not recorded)"}
- Each row's `template` and `template_sha` name the exact prompt text.

## Task mix
{
        _table(
            ("task", "train", "eval"),
            [(t, mix[t], mix_eval[t]) for t in sorted(set(mix) | set(mix_eval))],
        )
    }

## Curation
{curate_counts.get("samples", len(train) + len(held))} samples generated,
{gen_counts.get("failures", 0)} generation failures. Removed by each filter:

{_table(("filter", "removed"), filters) if filters else "(no counts recorded)"}

Split by document, chosen before generation (seeded, per document): the `train` rows
({len(train)}) were written from training documents, and every chunk of context inside
their `messages` comes from training documents too; the `eval` rows ({len(held)}) were
written from held-out documents that no training row contains.{
        f" `eval_seen` ({len(seen)} rows) holds questions on training documents that were "
        "held out of training (and decontaminated against its questions): they test what "
        "fine-tuning absorbed, not unseen documents."
        if seen
        else ""
    }

## Human review
{_review_text(recipe, run)} Each row's `review_status` says whether it was reviewed;
`human_edited` marks answers a reviewer rewrote.

## Generation cost
{gen_counts.get("requests_sent", "?")} teacher requests, {tokens.get("input", 0):,} input
and {tokens.get("output", 0):,} output tokens, ${cost:.2f} ({gen_counts.get("price", "")}).

## Columns
`messages` is OpenAI chat format: the system prompt, the user turn with the numbered
documents (fenced in `<document>` tags) and the request, and the assistant's answer.
`source_chunk_id` is the chunk the request was written from; `chunk_ids` are the
context's chunks in order (citation [n] is `chunk_ids[n-1]`).

## Known limitations
- The answers are machine-written and only as correct as `{g.teacher}`; they carry
  its style and its mistakes.
- Requests come from single chunks (or two, for multi-hop), so the data says little
  about questions that need a whole document or none of them.
- {
        "Not human-reviewed: no person checked any row."
        if review_stats(run).get("mode") != "argilla"
        else "Only the spot-check sample was reviewed by people."
    }
"""
    return _card(meta, body)


def write_adapter(
    recipe: Recipe, run: RunFolder, dest: Path, repo_id: str, dataset_repo: str
) -> None:
    adapter = run.stage_dir("train") / "adapter"
    metrics = read_json(run.root / "eval" / "metrics.json")
    train_metrics = read_json(run.root / "train" / "metrics.json")
    measured = metrics.get("adapter_sha256")
    actual = sha256_file(adapter / "adapter_model.safetensors")
    if measured is not None and measured != actual:
        raise UserError(
            "publish adapter: the adapter was retrained after eval measured it, so the "
            "card's table would describe another adapter; run `distill eval RECIPE` first"
        )
    student = resolve_causal_lm(recipe.train.student)
    with atomic_dir(dest) as tmp:
        for f in adapter.iterdir():
            if f.is_file():
                shutil.copy2(f, tmp / f.name)
        if not any((tmp / n).exists() for n in ("tokenizer.json", "tokenizer.model")):
            for name in TOKENIZER_FILES:  # the student's own tokenizer
                src = Path(student.path) / name
                if src.exists():
                    shutil.copy2(src, tmp / name)
        (tmp / "README.md").write_text(
            redact(model_card(recipe, run, repo_id, dataset_repo,
                              student.hub_id or recipe.train.student, student.note, metrics,
                              train_metrics)),
            encoding="utf-8",
        )  # fmt: skip
        refuse_secrets(tmp, "adapter")


def model_card(
    recipe: Recipe,
    run: RunFolder,
    repo_id: str,
    dataset_repo: str,
    base: str,
    base_note: str,
    metrics: dict[str, Any],
    train_metrics: dict[str, Any],
) -> str:
    from distill.evaluate.report import decision_table

    t = recipe.train
    backend = train_metrics.get("backend", t.backend)
    meta = {
        "base_model": base,
        "library_name": "peft",
        "pipeline_tag": "text-generation",
        "license": recipe.publish.license,
        "language": recipe.publish.language,
        "datasets": [dataset_repo],
        "tags": ["lora", "peft", "trl", "sft", "distillation", "distill"],
    }
    versions = train_metrics.get("versions", {})
    n_train = len(training_rows(run))
    provenance = f" ({base_note})" if base_note else ""
    meaning = " ".join(metrics.get("what_this_means", []))
    name = repo_id.split("/")[-1]
    body = f"""
# {name}

A LoRA adapter for `{base}`{provenance}, distilled from `{recipe.generate.teacher}` with
[distill](https://pypi.org/project/distill/) {__version__} (recipe `{recipe.name}`).
{recipe.description}

## Training data
{n_train} synthetic, document-grounded conversations from
[`{dataset_repo}`](https://huggingface.co/datasets/{dataset_repo}) (its card describes
the corpus, the teacher, the curation and the review). Human review: {_review_text(recipe, run)}

## Training
TRL `SFTTrainer` with PEFT LoRA (backend `{backend}`, {train_metrics.get("device", "?")}):
r={t.lora_r}, alpha={t.lora_alpha}, dropout={t.lora_dropout}, modules {", ".join(t.target_modules)};
{train_metrics.get("steps", "?")} steps ({train_metrics.get("epochs", "?")} epochs), learning rate
{t.learning_rate}, batch {t.batch_size} x {t.gradient_accumulation_steps}, max length
{t.max_seq_length}; loss on the answer tokens only. Final training loss
{train_metrics.get("train_loss", "?")}, eval loss {train_metrics.get("eval_loss", "?")}.
Versions: {", ".join(f"{k} {v}" for k, v in versions.items()) or "not recorded"}.

## Evaluation against the teacher
{metrics["questions"]} held-out questions from documents not trained on, answered by the
teacher and by the student with and without this adapter and retrieval (top
{metrics["k"]} chunks), judged by `{metrics["judge"]}` against the teacher's reference
answers. Latency and compute were measured on {metrics["hardware"]}. The adapter measured
is this one: `adapter_model.safetensors` sha256 `{metrics.get("adapter_sha256") or "not recorded"}`.

{meaning}

{decision_table(metrics)}

## Use
With PEFT:
```python
from transformers import AutoModelForCausalLM, AutoTokenizer
from peft import PeftModel

base = AutoModelForCausalLM.from_pretrained("{base}")
model = PeftModel.from_pretrained(base, "{repo_id}")
tokenizer = AutoTokenizer.from_pretrained("{repo_id}")
```
Served with vLLM (OpenAI-compatible API; ask for the model `{name}`):
```bash
huggingface-cli download {repo_id} --local-dir {name}
vllm serve {base} --enable-lora --lora-modules {name}={name}
```
Give it the prompt it was trained on: the system prompt, then the retrieved documents
as numbered `<document id="n">` blocks and the question (see the dataset's `messages`).

## Intended use and limits
For answering questions about the documents described in the dataset card, with the
relevant passages retrieved and given in the prompt. It learned from machine-written
answers, so it repeats the teacher's style and errors; the evaluation above is the
evidence of how often, on documents it never saw. It is not a general assistant and
was not tested for safety beyond that.
"""
    return _card(meta, body)
