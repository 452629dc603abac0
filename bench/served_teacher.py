"""GKD against a served teacher against the same teacher loaded locally: the same
student, prompts, steps and seed; what each costs in wall time and memory, and how far
each brings the distillation loss on the eval split's answers.

Starts from a finished run folder (after `make demo`: runs/quickstart), copies it once
per mode and runs `distill train` with `train.method: gkd` from the base student:
- local: `train.gkd.teacher: TEACHER`, de-quantised into the training process;
- served: llama-cpp-python's OpenAI-compatible server on TEACHER's GGUF, started here,
  `train.gkd.served_teacher: {model: openai:TEACHER, options: {base_url: ...}}`.

    .venv/bin/python bench/served_teacher.py [RUN_FOLDER] [--student S] [--teacher T]
        [--steps N] [--modes local,served] [--out DIR] [--set KEY=VALUE ...]

Defaults: runs/quickstart, the Qwen2.5-Coder-0.5B student and the 1.5B teacher (they
share a tokenizer, as a served teacher must), 4 steps. The training process's peak RSS
is the train stage's; the server's is measured apart (psutil, sampled each 0.5 s).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def serve(gguf: Path, port: int, log: Path, extra: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
    """llama-cpp-python's OpenAI-compatible server on loopback, once it answers."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1"]
        + ["--port", str(port), "--n_ctx", "4096", *extra],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2):
                return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise SystemExit(f"llama_cpp.server did not start; see {log}") from None
            time.sleep(0.5)


class PeakRss:
    """The peak resident set of one process, sampled in a thread."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.proc, self.peak, self.stop = psutil.Process(pid), 0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except Exception:
                return
            time.sleep(0.5)

    def done(self) -> float:
        self.stop.set()
        self.thread.join()
        return self.peak / 2**30


def train(base: Path, out: Path, mode: str, sets: list[str], env: dict[str, str]) -> dict[str, Any]:
    from bench.methods import recipe_of
    from distill.train_results import read_train_metrics

    recipe = recipe_of(base)
    folder = out / mode
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(base, folder)
    args = [a for s in [f"run_dir={out}", f"name={mode}", *sets] for a in ("--set", s)]
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "distill", "train", str(recipe), *args]
    if subprocess.run(cmd, env=env, check=False).returncode:
        raise SystemExit(f"{mode}: distill train failed")
    wall = time.perf_counter() - t0
    gkd = read_train_metrics(folder / "train" / "metrics.json").gkd
    if gkd is None:
        raise SystemExit(f"{mode}: train wrote no GKD pass")
    return {"wall": round(wall, 1), **gkd.model_dump()}


def main() -> int:
    from distill.evaluate.systems import hardware
    from distill.models import resolve_gguf

    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path, nargs="?", default=Path("runs/quickstart"))
    ap.add_argument("--student", default="qwen2.5-coder-0.5b-instruct")
    ap.add_argument("--teacher", default="qwen2.5-coder-1.5b-instruct")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--modes", default="local,served")
    ap.add_argument("--out", type=Path, default=Path("runs/served_teacher"))
    ap.add_argument("--set", action="append", default=[], help="recipe overrides for both")
    args = ap.parse_args()
    base, out = args.run.resolve(), args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    common = [
        "train.method=gkd",
        f"student={args.student}",
        f"train.gkd.max_steps={args.steps}",
        "train.gradient_checkpointing=false",
        *args.set,
    ]
    results: dict[str, dict[str, Any]] = {}
    for mode in args.modes.split(","):
        env = dict(os.environ)
        if mode == "local":
            results[mode] = train(
                base, out, mode, [*common, f"train.gkd.teacher={args.teacher}"], env
            )
            continue
        gguf = resolve_gguf(args.teacher)
        if gguf is None:
            raise SystemExit(f"no GGUF for {args.teacher}: the served teacher needs one")
        from distill.teachers.llamacpp import threads

        port = 18000 + os.getpid() % 1000
        server = serve(gguf, port, out / "server.log")
        rss = PeakRss(server.pid)
        env["BENCH_TEACHER_KEY"] = "none"
        served = [
            f"train.gkd.served_teacher.model=openai:{args.teacher}",
            f"train.gkd.served_teacher.options.base_url=http://127.0.0.1:{port}/v1",
            "train.gkd.served_teacher.options.api_key_env=BENCH_TEACHER_KEY",
        ]
        try:
            results[mode] = train(base, out, mode, [*common, *served], env)
        finally:
            results[mode]["server_peak_gib"] = round(rss.done(), 2) if mode in results else None
            server.terminate()
            server.wait(timeout=30)
        results[mode]["server_threads"] = threads()

    print(f"\n# GKD: a local teacher against a served one, {hardware()}\n")
    print(f"{args.student} from {args.teacher}, {args.steps} steps from the base student.\n")
    print(
        "| teacher | train stage wall | GKD pass | trainer peak RSS | server peak RSS "
        "| loss first → last | eval-split loss before → after | positions scored |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for mode, r in results.items():
        server = f"{r['server_peak_gib']} GiB" if r.get("server_peak_gib") else "—"
        scored = (
            f"{r['teacher_coverage']:.0%} of {r['teacher_positions']}"
            if mode == "served"
            else "all"
        )
        print(
            f"| {mode} | {r['wall']} s | {r['seconds']} s | {r['peak_memory_mb'] / 1024:.1f} GiB "
            f"| {server} | {r['first_loss']} → {r['last_loss']} "
            f"| {r['eval_loss_before']} → {r['eval_loss_after']} | {scored} |"
        )
    print(
        "\nThe losses differ in kind: the local teacher's is the generalized JSD over the "
        "whole vocabulary, the served one's over its top-k and a tail bucket."
    )
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
