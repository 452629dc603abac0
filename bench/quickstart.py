"""Time the offline quickstart end to end and print each stage's wall time.

    .venv/bin/python bench/quickstart.py [--set KEY=VALUE ...]

Runs `distill run recipes/quickstart.yaml` into a fresh temporary run folder (so no
stage is skipped), then prints the stage timings and counts from its manifest.
The GGUF-to-transformers conversion is cached in ~/.cache/distill and is not timed
again once done.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        args = [sys.executable, "-m", "distill", "run", str(REPO / "recipes" / "quickstart.yaml")]
        args += ["--set", f"run_dir={tmp}", *sys.argv[1:]]
        t0 = time.perf_counter()
        proc = subprocess.run(args, check=False)
        total = time.perf_counter() - t0
        if proc.returncode:
            return proc.returncode
        manifest = json.loads((Path(tmp) / "quickstart" / "manifest.json").read_text())
    print(f"\n{'stage':<10} {'seconds':>8}  counts")
    for name in ("ingest", "generate", "curate", "review", "train", "eval", "publish"):
        stage = manifest["stages"][name]
        counts = ", ".join(f"{k} {v}" for k, v in stage["counts"].items())
        print(f"{name:<10} {stage['duration_s']:>8.1f}  {counts}")
    print(f"{'total':<10} {total:>8.1f}  (wall time of `distill run`, model loading included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
