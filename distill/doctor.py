"""`distill doctor`: what this machine has for distill, one line each, with the fix
where something is missing. API keys are named, never shown."""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

# Environment variables distill reads credentials from (names only are printed).
KEY_VARIABLES = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "HF_TOKEN",
    "ARGILLA_API_KEY",
    "ARGILLA_API_URL",
)


@dataclass
class Check:
    name: str
    ok: bool  # False: a part is missing or wrong (the fix says what to do)
    detail: str
    fix: str = ""
    needed: bool = False  # distill cannot work without it (the others are optional)

    def line(self) -> str:
        mark = "ok " if self.ok else ("ERR" if self.needed else "-- ")
        return f"{mark} {self.name:<14} {self.detail}" + (f"  → {self.fix}" if self.fix else "")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def checks() -> list[Check]:
    # Long on purpose: one check after another, each a few lines, read top to bottom.
    from distill.models import OFFLINE_MODELS, cache_dir, cpu_has_bf16
    from distill.preflight import model_problem

    out = [
        Check(
            "python",
            sys.version_info >= (3, 10),
            f"{platform.python_version()} ({sys.executable})",
            "" if sys.version_info >= (3, 10) else "distill needs Python 3.10 or newer",
            needed=True,
        )
    ]
    torch_version = _version("torch")
    cuda = False
    if torch_version is None:
        out.append(Check("torch", False, "not installed", "pip install torch", needed=True))
    else:
        import torch

        cuda = torch.cuda.is_available()
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU build"
        out.append(Check("torch", True, f"{torch_version} ({build})"))
    bf16 = cpu_has_bf16()
    out.append(
        Check(
            "cpu",
            True,
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            + ("AVX-512 bf16: training runs in bfloat16" if bf16 else "no bf16: float32"),
        )
    )
    if cuda:
        import torch

        gpu = torch.cuda.get_device_name()
        unsloth = _version("unsloth")
        out.append(Check("gpu", True, gpu))
        out.append(
            Check(
                "unsloth",
                unsloth is not None,
                unsloth or "not installed (training uses TRL + PEFT)",
                "" if unsloth else "pip install 'distill[gpu]'",
            )
        )
    else:
        out.append(Check("gpu", True, "none (training on the CPU with TRL + PEFT)"))
    llama = _version("llama-cpp-python")
    out.append(
        Check(
            "llama.cpp",
            llama is not None,
            f"llama-cpp-python {llama}"
            if llama
            else "not installed (local models use transformers)",
            ""
            if llama
            else "make llamacpp (compiles ~12 min once), or pip install 'distill[llamacpp]'",
        )
    )
    redis = shutil.which("redis-server")
    out.append(
        Check(
            "redis",
            redis is not None,
            redis or "not installed (needed by the local Argilla server)",
            "" if redis else "apt-get install -y redis-server",
        )
    )
    out.append(_argilla())
    names = [k for k in KEY_VARIABLES if os.environ.get(k)]
    out.append(
        Check(
            "api keys",
            True,
            ("set: " + ", ".join(names)) if names else "none set (offline teachers only)",
        )
    )
    cache = cache_dir()
    probe = cache if cache.exists() else Path.home()
    free = shutil.disk_usage(probe).free / 1e9
    out.append(
        Check(
            "disk",
            free >= 5,
            f"{free:.0f} GB free at {probe}",
            "" if free >= 5 else "free some space: a run with local models needs ~5 GB",
        )
    )
    present = [a for a in sorted(OFFLINE_MODELS) if model_problem(a, a) is None]
    missing = [a for a in sorted(OFFLINE_MODELS) if a not in present]
    fix = ""
    if missing:
        fix = "make qwen" if any(a.startswith("qwen") for a in missing) else ""
        fix = fix or f"pip install {OFFLINE_MODELS[missing[0]].install}"
    out.append(
        Check(
            "model cache",
            not missing,
            f"{cache}; offline models: {', '.join(present) or 'none'}"
            + (f"; missing: {', '.join(missing)}" if missing else ""),
            fix,
        )
    )
    return out


def _argilla() -> Check:
    from distill.review.server import local_server

    url = os.environ.get("ARGILLA_API_URL")
    if url:
        from distill.preflight import reachable

        why = reachable(url)
        return Check(
            "argilla",
            why is None,
            f"{url}" + (": answers" if why is None else f": {why}"),
            "" if why is None else "check ARGILLA_API_URL, or start `distill review serve`",
        )
    local = local_server()
    if local is not None:
        return Check("argilla", True, f"local server running at {local['url']}")
    server = importlib.util.find_spec("argilla") is not None
    return Check(
        "argilla",
        False,
        "no server running" + ("" if server else "; the argilla SDK is not installed"),
        "distill review serve (reviews only; review.mode: auto needs none)",
    )


def report() -> tuple[list[str], int]:
    """The lines to print and the exit code (1 when a needed part is missing)."""
    from distill.redact import redact

    results = checks()
    lines = [redact(c.line()) for c in results]  # an ARGILLA_API_URL may carry a key
    try:
        git = subprocess.run(
            ["git", "-C", str(Path(__file__).parent), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=5,
        )  # fmt: skip
        where = f" (git {git.stdout.strip()})" if git.returncode == 0 else ""
    except OSError:
        where = ""
    lines.append(f"distill {_version('distill') or '?'}{where} at {Path(__file__).parent}")
    return lines, 1 if any(not c.ok and c.needed for c in results) else 0
