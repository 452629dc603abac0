"""The Python half of tools/gpu_check.sh: a small student and teacher made without a
download, distill's own training functions run on them, and the results merged.

    python3 tools/gpu_check.py models DIR             # DIR/student, DIR/teacher
    python3 tools/gpu_check.py run NAME DIR RESULT    # one run -> RESULT (JSON)
    python3 tools/gpu_check.py merge WORK OUT_JSON    # WORK/results/*.json + runs.tsv
    python3 tools/gpu_check.py names                  # the runs, in the order they run

Each run is its own process (tools/gpu_check.sh gives each a time limit): Unsloth patches
transformers and TRL when it is imported, so a TRL run after it in the same process
would not be TRL's. The student has SmolLM2-135M's architecture and tokenizer
(tools/gpu_student/, copied from SmolLM2-135M-Instruct, Apache-2.0) with random
weights; the GKD teacher has SmolLM2-360M's architecture and the same tokenizer. The
training rows are built here, the same every time: grounded chat rows (numbered
documents, a question, an answer citing them) about made-up products.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def say(text: str) -> None:
    """A line to the log (stdout, flushed: the device call returns what was printed)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


TOKENIZER = HERE / "gpu_student"

# SmolLM2-135M-Instruct's config.json (random weights here), and SmolLM2-360M's shape.
STUDENT = dict(
    hidden_size=576,
    intermediate_size=1536,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
)
TEACHER = dict(
    hidden_size=960,
    intermediate_size=2560,
    num_hidden_layers=32,
    num_attention_heads=15,
    num_key_value_heads=5,
)
COMMON = dict(
    vocab_size=49152,
    head_dim=64,
    hidden_act="silu",
    max_position_embeddings=8192,
    rms_norm_eps=1e-5,
    rope_theta=100000.0,
    tie_word_embeddings=True,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=2,
    initializer_range=0.02,
)

# name: (pass, backend, 4-bit). tools/gpu_check.sh runs them in this order and skips
# those the time budget has no room for: the comparison first (TRL, then Unsloth 16-bit
# and 4-bit), then DPO and GKD through TRL, then the rest.
RUNS: dict[str, tuple[str, str, bool]] = {
    "sft-trl-16bit": ("sft", "trl", False),
    "sft-unsloth-16bit": ("sft", "unsloth", False),
    "sft-unsloth-4bit": ("sft", "unsloth", True),
    "dpo-trl": ("dpo", "trl", False),
    "gkd-trl": ("gkd", "trl", False),
    "sft-trl-4bit": ("sft", "trl", True),
    "dpo-unsloth": ("dpo", "unsloth", False),
    "gkd-unsloth": ("gkd", "unsloth", False),
}

SFT_STEPS, DPO_STEPS, GKD_STEPS = 40, 10, 6
BATCH = 16
MAX_SEQ = 1024
N_ROWS, N_EVAL = 64, 8


# --- the rows ---------------------------------------------------------------------

PRODUCTS = ["Zorblax", "Quillon", "Marrowgate", "Tessaline", "Brindlewood", "Ostrava Hub",
            "Kelpstone", "Vantor", "Pellucid", "Harrowmere", "Sablefin", "Wexley"]  # fmt: skip
FACTS = [
    ("default port", "listens on port {n}", "Which port does {p} listen on by default?",
     "{p} listens on port {n} by default [{c}].", "{p} listens on port 80 [{c}]."),
    ("session length", "ends an idle session after {n} minutes",
     "How long can a {p} session stay idle?",
     "An idle {p} session ends after {n} minutes [{c}].", "Sessions never time out in {p}."),
    ("backup schedule", "takes a snapshot every {n} hours",
     "How often does {p} take a snapshot?",
     "{p} takes a snapshot every {n} hours [{c}].", "{p} takes one snapshot a week."),
    ("retry limit", "retries a failed upload {n} times",
     "How many times does {p} retry a failed upload?",
     "It retries a failed upload {n} times [{c}].", "{p} does not retry failed uploads."),
    ("key length", "requires API keys of {n} characters",
     "How long must a {p} API key be?",
     "A {p} API key must be {n} characters long [{c}].", "Any length works for {p} keys."),
    ("release cadence", "ships a release every {n} weeks",
     "How often does {p} ship a release?",
     "{p} ships a release every {n} weeks [{c}].", "{p} ships a release every day."),
]  # fmt: skip
FILLER = [
    "The service is configured through a single YAML file that lives beside the binary.",
    "Administrators can change most settings at run time from the console.",
    "Logs rotate daily and are kept for a month unless the retention setting says otherwise.",
    "Upgrades keep the configuration file and migrate it when the format changes.",
    "The command line tool prints its version and the server's when given --version.",
    "Health checks answer on a separate endpoint that needs no authentication.",
    "Every change to the settings is recorded in the audit log with the user who made it.",
    "The installer checks free disk space before it writes anything.",
]
SYSTEM = (
    "Answer the question from the numbered documents only, citing them as [n]. If they "
    "do not say, answer that the documents do not say."
)


def _doc(rng: random.Random, p: str, fact: tuple[str, ...], n: int) -> str:
    body = rng.sample(FILLER, 5)
    body.insert(rng.randrange(len(body) + 1), f"{p} {fact[1].format(n=n)}.")
    return f"{p} — {fact[0]}\n" + " ".join(body)


def rows() -> list[dict[str, Any]]:
    """N_ROWS grounded chat rows, each with a wrong answer for DPO ("rejected")."""
    rng = random.Random(27)
    out = []
    for i in range(N_ROWS):
        p = PRODUCTS[i % len(PRODUCTS)]
        fact = FACTS[(i // len(PRODUCTS) + i) % len(FACTS)]
        n = rng.randrange(3, 97)
        docs = [_doc(rng, p, fact, n)]
        for _ in range(2):  # two distractors about other products and facts
            q = rng.choice([x for x in PRODUCTS if x != p])
            docs.append(_doc(rng, q, rng.choice(FACTS), rng.randrange(3, 97)))
        rng.shuffle(docs)
        cite = next(k for k, d in enumerate(docs, 1) if d.startswith(f"{p} —"))
        context = "\n\n".join(f"[{k}] {d}" for k, d in enumerate(docs, 1))
        question = fact[2].format(p=p)
        out.append(
            {
                "sample_id": f"gpu-{i:03d}",
                "messages": [
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": f"Documents:\n{context}\n\nQuestion: {question}"},
                    {"role": "assistant", "content": fact[3].format(p=p, n=n, c=cite)},
                ],
                "rejected": fact[4].format(p=p, c=cite),
            }
        )
    return out


def pairs(rs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """distill.tables.Preference rows: the answer over its wrong twin."""
    return [
        {
            "pair_id": f"pair-{r['sample_id']}",
            "sample_id": r["sample_id"],
            "task": "qa",
            "doc_ids": [],
            "prompt": r["messages"][:-1],
            "chosen": r["messages"][-1]["content"],
            "rejected": r["rejected"],
            "chosen_by": "teacher",
            "rejected_by": "base student",
            "rejected_correctness": 1,
            "judge": "gpu_check (scripted)",
            "why": "scripted wrong answer",
        }
        for r in rs
    ]


# --- the models -------------------------------------------------------------------


def tokenizer_files(dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    with (
        gzip.open(TOKENIZER / "tokenizer.json.gz", "rb") as src,
        open(dest / "tokenizer.json", "wb") as out,
    ):
        shutil.copyfileobj(src, out)
    for name in ("tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(TOKENIZER / name, dest / name)


def make_model(dest: Path, shape: dict[str, int], seed: int) -> dict[str, Any]:
    """A Llama-family causal LM of `shape` with random weights, saved with the student's
    tokenizer to `dest` (bfloat16 safetensors, as a hub checkpoint is)."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig, LlamaConfig

    t0 = time.perf_counter()
    torch.manual_seed(seed)
    config = LlamaConfig(**{**COMMON, **shape})
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.generation_config = GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=2)
    model.save_pretrained(dest)
    tokenizer_files(dest)
    return {
        "path": str(dest),
        "parameters": sum(p.numel() for p in model.parameters()),
        **shape,
        "vocab_size": COMMON["vocab_size"],
        "seconds": round(time.perf_counter() - t0, 1),
    }


# GPU_CHECK_TINY=1: two-layer models, to try the script's plumbing on a CPU in seconds.
TINY = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
)


def cmd_models(folder: Path, teacher_too: bool = True) -> None:
    tiny = os.environ.get("GPU_CHECK_TINY") == "1"
    info = {"student": make_model(folder / "student", TINY if tiny else STUDENT, 0)}
    if teacher_too:
        info["teacher"] = make_model(folder / "teacher", TINY if tiny else TEACHER, 1)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder / "student")
    lengths = [
        len(tok.apply_chat_template(r["messages"], tokenize=True, return_dict=False))
        for r in rows()
    ]
    info["rows"] = {
        "count": len(lengths),
        "tokens_min": min(lengths),
        "tokens_mean": round(sum(lengths) / len(lengths), 1),
        "tokens_max": max(lengths),
    }
    (folder / "models.json").write_text(json.dumps(info, indent=2) + "\n")
    say(json.dumps(info, indent=2))
    say(f"models made: student {info['student']['parameters']:,} parameters, rows of "
        f"{info['rows']['tokens_mean']} tokens on average")  # fmt: skip


# --- one run ----------------------------------------------------------------------


def _config(kind: str, backend: str, four_bit: bool, folder: Path) -> Any:
    from distill.train.config import TrainConfig

    base: dict[str, Any] = dict(
        backend=backend,
        load_in_4bit=four_bit,
        precision="auto",
        batch_size=BATCH,
        max_seq_length=MAX_SEQ,
        learning_rate=2e-4,
        # Unsloth's fast LoRA path wants no dropout; TRL gets the same for a fair count.
        lora_dropout=0.0,
        save_steps=10_000,  # no checkpoint inside the timed pass
        seed=0,
    )
    if kind == "sft":
        return TrainConfig.model_validate({**base, "max_steps": SFT_STEPS, "eval_steps": SFT_STEPS})
    if kind == "dpo":
        return TrainConfig.model_validate(
            {**base, "method": "dpo", "dpo": {"max_steps": DPO_STEPS, "learning_rate": 5e-5}}
        )
    gkd = {
        "teacher": str(folder / "teacher"),
        "max_steps": GKD_STEPS,
        "max_new_tokens": 48,
        "lmbda": 0.5,
    }
    return TrainConfig.model_validate({**base, "method": "gkd", "gkd": gkd})


def _summary(kind: str, m: Any) -> dict[str, Any]:
    """What the record keeps of a pass's result (SftPass, DpoPass or GkdPass)."""
    data = m.model_dump()
    keep = [
        "backend", "precision", "device", "steps", "epochs", "seconds", "tokens_per_second",
        "peak_memory_mb", "train_loss", "eval_loss", "adapter_bytes", "versions",
        # DPO
        "pairs", "first_margin", "last_margin", "last_accuracy",
        # GKD
        "trainer", "first_loss", "last_loss", "eval_loss_before", "eval_loss_after",
    ]  # fmt: skip
    out = {k: data[k] for k in keep if k in data}
    out["train_seconds"] = out.pop("seconds", None)
    out["losses"] = [round(h["loss"], 4) for h in m.log_history if "loss" in h]
    return out


def cmd_run(name: str, folder: Path, result: Path) -> int:
    kind, backend, four_bit = RUNS[name]
    record: dict[str, Any] = {"name": name, "pass": kind, "backend_asked": backend,
                              "load_in_4bit": four_bit}  # fmt: skip
    t0 = time.perf_counter()
    try:
        cfg = _config(kind, backend, four_bit, folder)
        student = str(folder / "student")
        out = folder / "runs" / name
        shutil.rmtree(out, ignore_errors=True)
        rs = rows()
        train, evals = rs[: N_ROWS - N_EVAL], rs[N_ROWS - N_EVAL :]
        if kind == "sft":
            from distill.train.sft import train_adapter

            m = train_adapter(student, cfg, train, out, eval_rows=evals)
        elif kind == "dpo":
            from distill.train.dpo import train_dpo

            m = train_dpo(student, cfg, pairs(train), out)  # type: ignore[arg-type]
        else:
            from distill.train.gkd import train_gkd

            m = train_gkd(student, cfg, train, out, eval_rows=evals)
        import torch

        record.update(_summary(kind, m))
        record["peak_reserved_mb"] = round(torch.cuda.max_memory_reserved() / 2**20, 1)
        record["ok"] = True
        record["error"] = None
    except BaseException as e:  # noqa: BLE001 - every failure is a result here
        traceback.print_exc()
        lines = [x for x in traceback.format_exception_only(type(e), e) if x.strip()]
        record["ok"] = False
        record["error"] = lines[-1].strip()[:2000] if lines else repr(e)
    record["seconds_in_process"] = round(time.perf_counter() - t0, 1)
    result.write_text(json.dumps(record, indent=2, default=str) + "\n")
    say(json.dumps({k: v for k, v in record.items() if k != "versions"}, default=str))
    return 0 if record["ok"] else 1


# --- the merge --------------------------------------------------------------------


def _last_line(log: Path) -> str | None:
    if not log.exists():
        return None
    lines = [x.strip() for x in log.read_text(errors="replace").splitlines() if x.strip()]
    return lines[-1][:2000] if lines else None


def cmd_merge(work: Path, out_json: Path) -> None:
    results: list[dict[str, Any]] = []
    setup: list[dict[str, Any]] = []
    tsv = work / "runs.tsv"
    for line in tsv.read_text().splitlines() if tsv.exists() else []:
        name, rc, wall, limit = line.split("\t")
        path = work / "results" / f"{name}.json"
        if name not in RUNS:  # install, models
            ok = rc == "0"
            log = _last_line(work / "logs" / f"{name}.log")
            setup.append({"name": name, "ok": ok, "exit_code": int(rc), "wall_seconds": float(wall),
                          "time_limit_s": int(limit), "error": None if ok else log})  # fmt: skip
            continue
        if rc == "skipped":
            rec: dict[str, Any] = {"name": name, "ok": False, "error": f"skipped: {wall}"}
        elif path.exists():
            rec = json.loads(path.read_text())
        else:
            why = (
                f"timed out after {limit} s"
                if rc in ("124", "137")
                else f"exited with code {rc} without a result"
            )
            rec = {"name": name, "ok": False, "error": why,
                   "log_last_line": _last_line(work / "logs" / f"{name}.log")}  # fmt: skip
        if rc != "skipped":
            rec["wall_seconds"] = float(wall)
            rec["time_limit_s"] = int(limit)
            rec["exit_code"] = int(rc)
        results.append(rec)
    by = {r["name"]: r for r in results}
    base = by.get("sft-trl-16bit", {})
    comparison = {}
    for r in results:
        if r["name"].startswith("sft-") and r.get("ok") and base.get("ok"):
            comparison[r["name"]] = {
                "tokens_per_second": r.get("tokens_per_second"),
                "peak_memory_mb": r.get("peak_memory_mb"),
                "speed_vs_sft_trl_16bit": round(
                    r["tokens_per_second"] / base["tokens_per_second"], 2
                ) if base.get("tokens_per_second") else None,
                "memory_vs_sft_trl_16bit": round(
                    r["peak_memory_mb"] / base["peak_memory_mb"], 2
                ) if base.get("peak_memory_mb") else None,
            }  # fmt: skip
    env: dict[str, Any] = {}
    for name in ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "unsloth",
                 "unsloth_zoo", "bitsandbytes", "pydantic", "triton"):  # fmt: skip
        try:
            from importlib import metadata

            env[name] = metadata.version(name)
        except Exception:  # noqa: BLE001
            env[name] = None
    gpu = work / "gpu.txt"
    models = work / "models" / "models.json"
    doc = {
        "what": "tools/gpu_check.sh: distill's SFT (TRL and Unsloth, 16-bit and 4-bit), DPO "
        "and GKD on a random-weight SmolLM2-135M-shaped student",
        "gpu": gpu.read_text().strip() if gpu.exists() else None,
        "python": sys.version.split()[0],
        "versions": env,
        "settings": {
            "sft_steps": SFT_STEPS,
            "dpo_steps": DPO_STEPS,
            "gkd_steps": GKD_STEPS,
            "batch_size": BATCH,
            "max_seq_length": MAX_SEQ,
            "train_rows": N_ROWS - N_EVAL,
            "eval_rows": N_EVAL,
        },  # fmt: skip
        "models": json.loads(models.read_text()) if models.exists() else None,
        "setup": setup,
        "comparison": comparison,
        "runs": results,
    }
    out_json.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    say(f"{'run':<20} {'ok':<5} {'tokens/s':>10} {'peak MiB':>9} {'wall s':>7}  error")
    for r in setup + results:
        say(
            f"{r['name']:<20} {str(r.get('ok')):<5} {r.get('tokens_per_second') or '-':>10} "
            f"{r.get('peak_memory_mb') or '-':>9} {r.get('wall_seconds') or '-':>7}  "
            f"{(r.get('error') or '')[:150]}"
        )


def main(argv: list[str]) -> int:
    if argv[:1] == ["names"]:
        say(" ".join(RUNS))
        return 0
    if argv[:1] == ["models"] and len(argv) in (2, 3):
        cmd_models(Path(argv[1]), teacher_too=argv[2:] != ["--no-teacher"])
        return 0
    if argv[:1] == ["run"] and len(argv) == 4 and argv[1] in RUNS:
        return cmd_run(argv[1], Path(argv[2]), Path(argv[3]))
    if argv[:1] == ["merge"] and len(argv) == 3:
        cmd_merge(Path(argv[1]), Path(argv[2]))
        return 0
    sys.stderr.write(__doc__ or "")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
