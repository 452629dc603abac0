"""GKD from a captured teacher against GKD with the teacher loaded: what capturing costs
(time, peak memory, bytes per answer token at 8 and 16 bits), and the same off-policy
pass (lmbda 0: the curated answers; the same student, rows, steps and seed) run both
ways: peak RSS, wall time, per-step loss, and how close each trained student ends up
to the teacher.

Each phase runs in its own process, so its peak RSS (`os.wait4`'s ru_maxrss) is its own:
- loaded: `train_gkd` with `train.gkd.teacher` loaded in the process (TRL's GKDTrainer,
  the full-vocabulary generalized JSD);
- capture: the teacher's top-k on the rows, captured once at 16 bits (`prepare`); the
  8-bit capture is written from it (8-bit codes of float16 values: the same codes an
  8-bit capture stores, within float16's 5e-4 relative error); bytes per token as
  stored (zlib-compressed shards) and as the arrays hold them uncompressed;
- from8, from16: `train_gkd` from each capture, the teacher named (its identity is
  checked) but never constructed (the run fails if it is);
- yardstick: each trained adapter's full-vocabulary generalized JSD (beta 0.5) to the
  teacher on the training answers, teacher-forced, beside the base student's: the two
  passes' losses differ in kind (the capture's is coarse-grained onto the top-k and a
  tail bucket), this one does not.

    .venv/bin/python bench/gkd_capture.py [--student S] [--teacher T] [--rows N]
        [--run RUN_FOLDER] [--steps N] [--batch-size B] [--top-k K] [--out DIR]
        [--phases loaded,capture,from8,from16,yardstick]

Defaults: the Qwen2.5-Coder-0.5B student and the 1.5B teacher (one tokenizer, as GKD
needs; both de-quantised from their GGUFs), 4 steps of 4 rows, top 20, 48 grounded
Brightdesk conversations (bench/train_cpu.py's) or, with --run, a run folder's curated
training rows (runs/quickstart after `make demo`). A quick check of the plumbing:
--student smollm2-135m-instruct --teacher FOLDER (a SmolLM2 fine-tune) --rows 8 --steps 2.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PHASES = ("loaded", "capture", "from8", "from16", "yardstick")


def rows_for(args: argparse.Namespace) -> list[dict[str, Any]]:
    if args.run:
        from distill.review_gate import training_rows
        from distill.runfolder import RunFolder

        return training_rows(RunFolder(Path(args.run)))[: args.rows]
    from bench.train_cpu import conversations

    return conversations(args.rows)


def config(args: argparse.Namespace, capture: dict[str, Any] | None = None) -> Any:
    from distill.train.config import TrainConfig

    gkd: dict[str, Any] = {
        "teacher": args.teacher,
        "lmbda": 0.0,
        "max_steps": args.steps,
        "measure_eval": False,
    }
    if capture is not None:
        gkd["capture"] = capture
    return TrainConfig.model_validate(
        {
            "method": "gkd",
            "batch_size": args.batch_size,
            "max_seq_length": args.max_seq_length,
            "gradient_checkpointing": False,  # TRL samples without the KV cache with it on
            "lora_dropout": 0.0,
            "save_steps": 1000,
            "precision": args.precision,
            "gkd": gkd,
        }
    )


def pass_figures(m: Any) -> dict[str, Any]:
    losses = [round(float(h["loss"]), 4) for h in m.log_history if "loss" in h]
    return {
        "trainer": m.trainer,
        "pass_seconds": m.seconds,
        "pass_peak_mb": m.peak_memory_mb,
        "losses": losses,
        "capture": m.capture.model_dump() if m.capture else None,
    }


def phase_loaded(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    from distill.train.gkd import train_gkd

    m = train_gkd(args.student, config(args), rows_for(args), out / "loaded", eval_rows=[])
    return pass_figures(m)


def phase_capture(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    import numpy as np

    from distill.train.capture import prepare
    from distill.train.capture_store import CaptureStore, dequantise, quantise

    rows = rows_for(args)
    folder16 = out / "capture16"
    shutil.rmtree(folder16, ignore_errors=True)
    c = config(args, {"top_k": args.top_k, "bits": 16, "path": str(folder16)})
    made = prepare(args.student, c, rows, out / "capture")
    figures = made.figures.model_dump()
    store16 = made.store
    folder8 = out / "capture8"
    shutil.rmtree(folder8, ignore_errors=True)
    store8 = CaptureStore.create(folder8, {**store16.meta, "bits": 8})
    keys = sorted(store16.rows)
    read = [store16.read(k) for k in keys]
    store8.add(keys, read)
    lp = np.concatenate([r.logprobs.ravel() for r in read])
    lp = lp[np.isfinite(lp) & (lp >= -20)]
    err = np.abs(dequantise(quantise(lp, 8), 8) - lp)
    back = [store8.read(k) for k in keys]
    mass = np.concatenate([np.exp(r.logprobs).sum(1) + np.exp(r.tail) for r in back])
    top_mass = np.concatenate([np.exp(r.logprobs).sum(1) for r in read])
    sizes: dict[str, Any] = {}
    for bits, store in ((16, store16), (8, store8)):
        tokens, size = store.size()
        raw = 0
        for shard in store.shard_paths():
            with np.load(shard) as s:
                raw += sum(s[name].nbytes for name in s.files)
        sizes[f"bits{bits}"] = {
            "bytes": size,
            "bytes_per_token": round(size / tokens, 1),
            "uncompressed_bytes_per_token": round(raw / tokens, 1),
        }
    return {
        **figures,
        "answer_tokens": made.figures.tokens,
        "sizes": sizes,
        "bits8_abs_error": {"mean": float(err.mean()), "max": float(err.max())},
        "bits8_mass_error_max": float(np.abs(mass - 1).max()),
        "top_k_mass": {"mean": float(top_mass.mean()), "min": float(top_mass.min())},
    }


def phase_from(args: argparse.Namespace, out: Path, bits: int) -> dict[str, Any]:
    from distill.train import capture, gkd

    def refuse(*a: Any, **k: Any) -> Any:
        raise SystemExit(f"the teacher was constructed: {a}")

    capture.load_causal_lm = refuse  # the teacher must not be constructed
    gkd.load_causal_lm = refuse
    c = config(args, {"top_k": args.top_k, "bits": bits, "path": str(out / f"capture{bits}")})
    m = gkd.train_gkd(args.student, c, rows_for(args), out / f"from{bits}", eval_rows=[])
    return pass_figures(m)


def phase_yardstick(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Mean generalized JSD (beta 0.5, whole vocabulary) from each student to the
    teacher over the training answers' tokens."""
    import torch
    from peft import PeftModel

    from distill.models import load_causal_lm
    from distill.train.data import encode_rows, stop_ids

    teacher, tok = load_causal_lm(args.teacher, args.precision)
    encoded = encode_rows(tok, rows_for(args), stop_ids(tok, teacher))
    targets = []
    with torch.no_grad():
        for e in encoded:
            ids = torch.tensor([e["input_ids"][: args.max_seq_length]])
            mask = torch.tensor(e["assistant_masks"][1 : args.max_seq_length], dtype=torch.bool)
            lp = torch.log_softmax(teacher(input_ids=ids).logits[0, :-1].float(), -1)[mask]
            targets.append((ids, mask, lp))
    del teacher
    base, _ = load_causal_lm(args.student, args.precision)

    def jsd(model: Any) -> float:
        total, n = 0.0, 0
        with torch.no_grad():
            for ids, mask, t in targets:
                s = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)[mask]
                m = torch.logsumexp(torch.stack([s, t]) + torch.log(torch.tensor(0.5)), 0)
                kl_t = (t.exp() * (t - m)).sum(-1)
                kl_s = (s.exp() * (s - m)).sum(-1)
                total += float((0.5 * kl_t + 0.5 * kl_s).sum())
                n += int(mask.sum())
        return round(total / n, 5)

    result = {"base student": jsd(base)}
    for name in ("loaded", "from8", "from16"):
        adapter = out / name / "adapter"
        if adapter.is_dir():
            model = PeftModel.from_pretrained(base, str(adapter))
            result[name] = jsd(model)
            base = model.unload()
    return result


def run_phase(name: str, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """`name` in a child process: its result, wall time and peak RSS."""
    argv = [sys.executable, __file__, "--phase", name, *sys.argv[1:]]
    t0 = time.perf_counter()
    child = subprocess.Popen(argv)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - t0
    if status:
        raise SystemExit(f"phase {name} failed (status {status})")
    result = json.loads((out / f"{name}.json").read_text())
    return {**result, "wall_s": round(wall, 1), "peak_rss_gib": round(usage.ru_maxrss / 2**20, 2)}


def report(args: argparse.Namespace, r: dict[str, Any]) -> str:
    from distill.evaluate.systems import hardware

    lines = [
        f"# GKD from a captured teacher against the teacher loaded, {hardware()}\n",
        f"{args.student} from {args.teacher}: {args.steps} steps of {args.batch_size} rows "
        f"(lmbda 0, the curated answers), top {args.top_k}.\n",
    ]
    cap = r.get("capture")
    if cap:
        s8, s16 = cap["sizes"]["bits8"], cap["sizes"]["bits16"]
        lines += [
            f"Capture: {cap['captured_rows']} rows, {cap['answer_tokens']} answer tokens in "
            f"{cap['seconds']} s (wall {cap['wall_s']} s with loading, peak RSS "
            f"{cap['peak_rss_gib']} GiB). Bytes per answer token: 8 bits {s8['bytes_per_token']}"
            f" ({s8['uncompressed_bytes_per_token']} uncompressed), 16 bits "
            f"{s16['bytes_per_token']} ({s16['uncompressed_bytes_per_token']} uncompressed). 8-bit "
            f"error: mean {cap['bits8_abs_error']['mean']:.4f}, max "
            f"{cap['bits8_abs_error']['max']:.4f} nats; top-k mass mean "
            f"{cap['top_k_mass']['mean']:.3f} (min {cap['top_k_mass']['min']:.3f}).\n",
        ]
    lines += [
        "| pass | process wall | GKD pass | process peak RSS | loss first → last |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in ("loaded", "from8", "from16"):
        p = r.get(name)
        if p:
            lines.append(
                f"| {name} ({p['trainer']}) | {p['wall_s']} s | {p['pass_seconds']} s "
                f"| {p['peak_rss_gib']} GiB | {p['losses'][0]} → {p['losses'][-1]} |"
            )
    if r.get("yardstick"):
        y = {k: v for k, v in r["yardstick"].items() if k not in ("wall_s", "peak_rss_gib")}
        lines.append(
            "\nGeneralized JSD to the teacher over the whole vocabulary on the training "
            "answers: " + ", ".join(f"{k} {v}" for k, v in y.items()) + "."
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--student", default="qwen2.5-coder-0.5b-instruct")
    ap.add_argument("--teacher", default="qwen2.5-coder-1.5b-instruct")
    ap.add_argument("--rows", type=int, default=48)
    ap.add_argument("--run", default=None, help="a run folder whose curated rows to use")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--max-seq-length", type=int, default=1024)
    ap.add_argument("--top-k", type=int, default=20)
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--out", type=Path, default=Path("runs/gkd_capture"))
    ap.add_argument("--phases", default=",".join(PHASES))
    ap.add_argument("--phase", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    out = args.out.resolve()
    if args.phase:
        fn = {
            "loaded": phase_loaded,
            "capture": phase_capture,
            "from8": lambda a, o: phase_from(a, o, 8),
            "from16": lambda a, o: phase_from(a, o, 16),
            "yardstick": phase_yardstick,
        }[args.phase]
        (out / f"{args.phase}.json").write_text(json.dumps(fn(args, out), indent=2))
        return 0
    out.mkdir(parents=True, exist_ok=True)
    results = {name: run_phase(name, args, out) for name in args.phases.split(",")}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    text = report(args, results)
    (out / "report.md").write_text(text)
    print("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
