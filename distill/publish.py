"""Publish: write the dataset and the adapter as Hugging Face Hub repositories on disk.

Outputs in `publish/`:
- dataset/: README.md (dataset card with YAML metadata), data/train-*.parquet,
  data/test-*.parquet; loads with `datasets.load_dataset("publish/dataset")`;
- adapter/: adapter_model.safetensors, adapter_config.json, tokenizer files and
  README.md (model card with the evaluation results); loads with PEFT.
Pushing to the Hub is a later step; these folders are what would be pushed.
"""

from __future__ import annotations

import shutil
from typing import Any

import yaml

from distill import __version__
from distill.io import atomic_dir, read_json, read_rows, write_rows
from distill.models import resolve_causal_lm
from distill.recipe import Recipe
from distill.review import review_stats, summary, training_rows
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


def _card(meta: dict[str, Any], body: str) -> str:
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n\n" + body.strip() + "\n"


def _dataset_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            **{k: r.get(k) for k in DATASET_COLUMNS},
            "review_status": r.get("review_status", "not_reviewed"),
            "human_edited": bool(r.get("human_edited")),
        }
        for r in rows
    ]


def run(recipe: Recipe, run: RunFolder) -> dict[str, Any]:
    out = run.stage_dir("publish")
    train = training_rows(run)
    held = read_rows(run.stage_dir("curate") / "eval.parquet")
    metrics = read_json(run.root / "eval" / "metrics.json")
    train_metrics = read_json(run.root / "train" / "metrics.json")
    review_text = summary(review_stats(run), run.manifest.get("review_gate"))
    dataset_name = recipe.publish.dataset_name or f"{recipe.name}-dataset"
    adapter_name = recipe.publish.adapter_name or f"{recipe.name}-lora"
    student = resolve_causal_lm(recipe.train.student)

    with atomic_dir(out / "dataset") as tmp:
        write_rows(tmp / "data" / "train-00000-of-00001.parquet", _dataset_rows(train))
        write_rows(tmp / "data" / "test-00000-of-00001.parquet", _dataset_rows(held))
        (tmp / "README.md").write_text(
            _dataset_card(recipe, dataset_name, len(train), len(held), review_text),
            encoding="utf-8",
        )
    with atomic_dir(out / "adapter") as tmp:
        for f in (run.root / "train" / "adapter").iterdir():
            shutil.copy2(f, tmp / f.name)
        (tmp / "README.md").write_text(
            _model_card(recipe, adapter_name, dataset_name, student.hub_id, student.note,
                        metrics, train_metrics, len(train), review_text),
            encoding="utf-8",
        )  # fmt: skip
    return {
        "dataset_rows": len(train) + len(held),
        "dataset": dataset_name,
        "adapter": adapter_name,
    }


def _dataset_card(recipe: Recipe, name: str, n_train: int, n_test: int, review_text: str) -> str:
    meta = {
        "license": recipe.publish.license,
        "task_categories": ["question-answering", "text-generation"],
        "language": ["en"],
        "tags": ["synthetic", "distill", "rag", "grounded"],
        "size_categories": ["n<1K" if n_train + n_test < 1000 else "1K<n<10K"],
        "configs": [
            {
                "config_name": "default",
                "data_files": [
                    {"split": "train", "path": "data/train-*.parquet"},
                    {"split": "test", "path": "data/test-*.parquet"},
                ],
            }
        ],
    }
    g = recipe.generate
    body = f"""
# {name}

Synthetic question/answer pairs grounded in a document collection, made with
[distill](https://pypi.org/project/distill/) {__version__} from the recipe `{recipe.name}`.
{recipe.description}

## How it was made
- **Teacher**: `{g.teacher}` wrote one question per chunk (`{g.question_template}`),
  then answered it from the chunk plus {g.neighbours} retrieved neighbour chunk(s)
  (`{g.answer_template}`).
- **Curation**: empty, unparseable and over-long samples and exact duplicates removed.
- **Split**: by source document; no document has questions in both splits.
- **Human review**: {review_text} Each row's `review_status` says whether it was
  reviewed; `human_edited` marks answers a reviewer rewrote.

## Splits
| split | rows |
| --- | --- |
| train | {n_train} |
| test | {n_test} |

## Columns
`messages` is OpenAI chat format: the system prompt, the user turn with the retrieved
documents (fenced in `<document>` tags) and the question, and the assistant's answer.
`source_chunk_id` is the chunk the question was written from; `chunk_ids` are every
chunk in the context; `template` and `template_sha` name the prompt versions.

## Limitations
The answers are machine-written and only as correct as the teacher. Check the teacher
named above before trusting them; small local teachers often answer wrongly.
"""
    return _card(meta, body)


def _model_card(
    recipe: Recipe,
    name: str,
    dataset_name: str,
    base_hub_id: str | None,
    base_note: str,
    metrics: dict[str, Any],
    train_metrics: dict[str, Any],
    n_train: int,
    review_text: str,
) -> str:
    t = recipe.train
    backend = train_metrics.get("backend", t.backend)
    base = base_hub_id or t.student
    meta = {
        "base_model": base,
        "library_name": "peft",
        "license": recipe.publish.license,
        "pipeline_tag": "text-generation",
        "tags": ["lora", "peft", "trl", "sft", "distill"],
        "datasets": [dataset_name],
    }
    from distill.eval_report import decision_table

    table = decision_table(metrics)
    meaning = " ".join(metrics.get("what_this_means", []))
    provenance = f" ({base_note})" if base_note else ""
    body = f"""
# {name}

A LoRA adapter for `{base}`{provenance}, trained with
[distill](https://pypi.org/project/distill/) {__version__} (recipe `{recipe.name}`) on
{n_train} synthetic question/answer pairs from `{dataset_name}`. {recipe.description}

## Training
TRL SFTTrainer with PEFT LoRA (backend `{backend}`, {train_metrics["device"]}):
r={t.lora_r}, alpha={t.lora_alpha}, dropout={t.lora_dropout}, modules {", ".join(t.target_modules)};
{train_metrics["steps"]} steps ({train_metrics["epochs"]} epochs), learning rate {t.learning_rate},
batch {t.batch_size} x {t.gradient_accumulation_steps}, max length {t.max_seq_length};
loss on the answer tokens only. Mean training loss {train_metrics["train_loss"]}.
Human review: {review_text}

## Evaluation
{metrics["questions"]} held-out questions from documents not trained on, answered by the
teacher (`{recipe.generate.teacher}`) and the student with and without this adapter and
retrieval (top {metrics["k"]} chunks); judged by `{metrics["judge"]}` against the
teacher's reference answers. Latency and compute were measured on {metrics["hardware"]}.
The full report is `eval/report.html` in the run folder.

{meaning}

{table}

## Use
```python
from transformers import AutoModelForCausalLM, AutoTokenizer
from peft import PeftModel
base = AutoModelForCausalLM.from_pretrained("{base}")
model = PeftModel.from_pretrained(base, "PATH_OR_REPO_OF_THIS_ADAPTER")
tokenizer = AutoTokenizer.from_pretrained("PATH_OR_REPO_OF_THIS_ADAPTER")
```
The prompt format is the one in the dataset's `messages` column: retrieved documents
in `<document>` tags, then `Question: ...`.

## Limitations
Trained on machine-written answers; it learns the teacher's style and errors. Check the
evaluation above on your own questions before relying on it.
"""
    return _card(meta, body)
