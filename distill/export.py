"""`distill export`: the trained adapter as merged weights or GGUF, and how to serve it.

- `--merge`: the base student with the adapter folded in, saved as safetensors with
  its tokenizer (export/merged/); loads anywhere transformers or vLLM loads a model.
- `--ollama` (implies `--gguf`): an Ollama Modelfile beside the GGUF (export/Modelfile:
  the student's chat template, stop tokens and system prompt; distill.modelfile).
- `--gguf`: llama.cpp's converters (convert_hf_to_gguf.py, convert_lora_to_gguf.py)
  turn the merged model (export/<name>-<type>.gguf) or the adapter alone
  (export/<name>-lora-<type>.gguf, applied with llama.cpp's --lora) into GGUF. The
  scripts ship inside the llama-cpp-python source package; distill fetches that
  package with pip once and keeps the scripts in its cache, or uses a llama.cpp
  checkout named by $DISTILL_LLAMA_CPP.

Outputs in `export/` (not a pipeline stage: run it after training).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

from distill.errors import InputError, UserError
from distill.io import adapter_id, atomic_dir, atomic_path, write_text
from distill.models import resolve_causal_lm, tools_dir
from distill.recipe import Recipe
from distill.runfolder import RunFolder, now
from distill.ui import console

LLAMA_CPP_PYTHON = "0.3.36"  # the version `make test` installs; its sdist carries llama.cpp
# sha256 of the llama-cpp-python source packages whose converter scripts distill runs:
# code that executes here is code whose bytes were checked.
SDIST_SHA256 = {"0.3.36": "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"}
GGUF_TYPES = ("f16", "bf16", "q8_0", "f32")
CONVERTER_PARTS = ("convert_hf_to_gguf.py", "convert_lora_to_gguf.py", "conversion/", "gguf-py/")


def _adapter(folder: RunFolder) -> Path:
    path = folder.adapter_dir
    if not folder.is_done("train") or not (path / "adapter_config.json").exists():
        raise InputError("no trained adapter yet; run `distill train RECIPE` first")
    return path


def current_adapter_id(folder: RunFolder) -> str:
    """The trained adapter's id (`io.adapter_id`): what an export was made from."""
    digest = adapter_id(_adapter(folder))
    if digest is None:
        raise InputError(
            "the trained adapter has no adapter_model.safetensors; run `distill train RECIPE` again"
        )
    return digest


def _stamp(path: Path) -> Path:
    return path / ".adapter.sha256" if path.is_dir() else path.with_name(f".{path.name}.adapter")


def made_from_current_adapter(path: Path, folder: RunFolder) -> bool:
    """Whether the export at `path` exists and was made from the adapter trained now
    (not one from before a retrain)."""
    stamp = _stamp(path)
    return path.exists() and stamp.exists() and stamp.read_text() == current_adapter_id(folder)


def _record_source(path: Path, digest: str) -> None:
    write_text(_stamp(path), digest)


def merge(recipe: Recipe, folder: RunFolder) -> Path:
    """The student with the adapter merged in, as safetensors + tokenizer in export/merged."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter = _adapter(folder)
    base_path = resolve_causal_lm(recipe.student).path
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    tok = AutoTokenizer.from_pretrained(str(adapter))
    out = folder.export_dir / "merged"
    digest = current_adapter_id(folder)
    with atomic_dir(out) as tmp:
        merged.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / ".adapter.sha256").write_text(digest)
    return out


def converter_dir() -> Path:
    """A folder with llama.cpp's GGUF converters: $DISTILL_LLAMA_CPP, or the scripts
    taken from the llama-cpp-python source package (fetched with pip once)."""
    env = os.environ.get("DISTILL_LLAMA_CPP")
    if env:
        path = Path(env)
        if not (path / "convert_hf_to_gguf.py").is_file():
            raise UserError(f"DISTILL_LLAMA_CPP={env} has no convert_hf_to_gguf.py")
        return path
    try:
        version = metadata.version("llama-cpp-python")
    except metadata.PackageNotFoundError:
        version = LLAMA_CPP_PYTHON
    if version not in SDIST_SHA256:
        # The converters are Python scripts; a pinned release's read the same models.
        version = LLAMA_CPP_PYTHON
    dest = tools_dir() / f"llama.cpp-converters-{version}"
    if (dest / "convert_hf_to_gguf.py").is_file():
        return dest
    console.print(
        f"  fetching llama.cpp's GGUF converters (llama-cpp-python {version} sources, once)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        archive = _fetch_sdist(version, Path(tmp))
        with atomic_dir(dest) as out, tarfile.open(archive) as tar:
            prefix = f"llama_cpp_python-{version}/vendor/llama.cpp/"
            for member in tar.getmembers():
                name = member.name.removeprefix(prefix)
                if member.name.startswith(prefix) and name.startswith(CONVERTER_PARTS):
                    if member.isfile():
                        target = inside(out, name)
                        target.parent.mkdir(parents=True, exist_ok=True)
                        src = tar.extractfile(member)
                        assert src is not None
                        target.write_bytes(src.read())
    if not (dest / "convert_hf_to_gguf.py").is_file():
        shutil.rmtree(dest, ignore_errors=True)
        raise UserError(f"the llama-cpp-python {version} sources hold no GGUF converter")
    return dest


def _fetch_sdist(version: str, tmp: Path) -> Path:
    """The llama-cpp-python source package, downloaded by pip and checked against its
    pinned sha256 (pip checks it too: --require-hashes)."""
    want = SDIST_SHA256[version]
    req = tmp / "requirements.txt"
    req.write_text(f"llama-cpp-python=={version} --hash=sha256:{want}\n")
    got = subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:"]
        + ["--disable-pip-version-check", "--require-hashes", "-d", str(tmp), "-r", str(req)],
        capture_output=True,
        text=True,
    )
    archives = list(tmp.glob("llama_cpp_python-*.tar.gz"))
    if got.returncode != 0 or not archives:
        raise UserError(
            "the GGUF converter is not available: pip could not fetch the "
            f"llama-cpp-python {version} sources ({got.stderr.strip()[-200:]}); "
            "set DISTILL_LLAMA_CPP to a llama.cpp checkout"
        )
    digest = hashlib.sha256()
    with archives[0].open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != want:
        raise UserError(
            f"the llama-cpp-python {version} sources pip fetched do not match their pinned "
            "sha256; nothing was run. Check your package index, or set DISTILL_LLAMA_CPP to "
            "a llama.cpp checkout"
        )
    return archives[0]


def inside(root: Path, name: str) -> Path:
    """root/name, refused when an archive member's name leaves root ('..', absolute)."""
    target = (root / name).resolve()
    if name.startswith("/") or not target.is_relative_to(root.resolve()):
        raise UserError(f"refusing archive member '{name}': it would be written outside {root}")
    return target


def _convert(script: str, args: list[str], out: Path) -> Path:
    tools = converter_dir()
    env = {**os.environ, "PYTHONPATH": str(tools / "gguf-py"), "NO_LOCAL_GGUF": ""}
    with atomic_path(out) as tmp:
        got = subprocess.run(
            [sys.executable, str(tools / script), *args, "--outfile", str(tmp)],
            capture_output=True,
            text=True,
            env=env,
        )
        if got.returncode != 0:
            tail = " ".join(got.stderr.strip().splitlines()[-3:])
            raise UserError(f"llama.cpp's {script} failed: {tail}")
    return out


def gguf(recipe: Recipe, folder: RunFolder, outtype: str, adapter_only: bool) -> Path:
    """The merged model (or the adapter alone) as one GGUF file in export/."""
    if outtype not in GGUF_TYPES:
        raise UserError(f"--gguf-type must be one of {', '.join(GGUF_TYPES)}, not '{outtype}'")
    export = folder.export_dir
    digest = current_adapter_id(folder)
    if adapter_only:
        adapter = _adapter(folder)
        base = resolve_causal_lm(recipe.student).path
        out = export / f"{recipe.name}-lora-{outtype}.gguf"
        made = _convert(
            "convert_lora_to_gguf.py", [str(adapter), "--base", base, "--outtype", outtype], out
        )
        _record_source(made, digest)
        return made
    merged = export / "merged"
    if not (merged / "config.json").exists() or not made_from_current_adapter(merged, folder):
        merged = merge(recipe, folder)  # none yet, or merged from an adapter since retrained
    out = export / f"{recipe.name}-{outtype}.gguf"
    made = _convert("convert_hf_to_gguf.py", [str(merged), "--outtype", outtype], out)
    _record_source(made, digest)
    return made


def usage(recipe: Recipe, folder: RunFolder) -> str:
    """How to load the adapter with PEFT and serve it with vLLM or llama.cpp."""
    adapter = folder.adapter_dir
    base = resolve_causal_lm(recipe.student)
    base_id = base.hub_id or recipe.student
    rank = recipe.train.lora_r
    return f"""Load with PEFT:

    from peft import AutoPeftModelForCausalLM
    from transformers import AutoTokenizer
    model = AutoPeftModelForCausalLM.from_pretrained("{adapter}")
    tokenizer = AutoTokenizer.from_pretrained("{adapter}")

Serve with vLLM (OpenAI-compatible; ask for model "{recipe.name}"):

    vllm serve {base_id} --enable-lora --max-lora-rank {max(rank, 8)} \\
        --lora-modules {recipe.name}={adapter}

Serve with llama.cpp (after `distill export RECIPE --gguf --adapter-only`):

    llama-server -m BASE.gguf --lora {folder.lora_gguf(recipe.name)}

Serve with Ollama (after `distill export RECIPE --ollama`):

    ollama create {recipe.name} -f {folder.export_dir / "Modelfile"}

Serve with its retrieval, OpenAI-compatible (see docs/serving.md):

    distill serve RECIPE --port 8080
"""


def write_modelfile(recipe: Recipe, folder: RunFolder, made: Path, adapter_only: bool) -> Path:
    """export/Modelfile for Ollama: FROM the merged GGUF `made`, or (`adapter_only`) FROM
    the student's GGUF with ADAPTER `made`; SYSTEM the answer template's system prompt
    without documents (what eval's `ft` system is asked with)."""
    from distill.grounding import answer_prompt
    from distill.modelfile import modelfile
    from distill.models import resolve_gguf
    from distill.prompts import load_templates

    prompt = answer_prompt(load_templates(recipe).answer, "", [])
    system = next((m["content"] for m in prompt if m["role"] == "system"), None)
    if adapter_only:
        base = resolve_gguf(recipe.student)
        if base is None:
            raise UserError(
                f"--ollama --adapter-only needs a GGUF student for FROM, not {recipe.student}; "
                "export the merged model instead: distill export RECIPE --ollama"
            )
        text = modelfile(base, system, made, folder.export_dir)
    else:
        text = modelfile(made, system, None, folder.export_dir)
    out = folder.export_dir / "Modelfile"
    write_text(out, text)
    return out


def export(
    recipe: Recipe,
    *,
    merge_weights: bool,
    to_gguf: bool,
    outtype: str,
    adapter_only: bool,
    ollama: bool = False,
) -> dict[str, Any]:
    run = RunFolder(recipe.run_path)
    _adapter(run)
    made: dict[str, Any] = {}
    if merge_weights:
        made["merged"] = str(merge(recipe, run))
    if to_gguf or ollama:
        made["gguf"] = str(gguf(recipe, run, outtype, adapter_only))
    if ollama:
        made["modelfile"] = str(write_modelfile(recipe, run, Path(made["gguf"]), adapter_only))
    done = {k: {"path": v, "at": now()} for k, v in made.items()}
    run.change(lambda m: m.setdefault("exports", {}).update(done))
    return made
