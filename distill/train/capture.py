"""Teacher log-probabilities captured once (`train.gkd.capture`), and GKD trained from
them with no teacher loaded or called.

Before the GKD pass loads the student, `prepare` reads the capture folder
(distill/train/capture_store.py: the format) and captures the rows it lacks: the
curated answers of the training rows (and the eval rows whose loss the pass measures),
each read by the teacher teacher-forced over its prompt and answer in the student's
tokenization, one row at a time. The teacher is loaded here (then freed, before the
student loads) or asked through its server (`TokenScorer`), and only when some row is
missing: a capture of the same rows by the same teacher is reused as it is, and a killed
one resumes from its last whole shard. The pass then reads each row's top-k and tail
bucket from the capture and matches them with the sparse top-k loss
(distill/train/served.py: `CapturedCollator`, `captured_trainer`).

Only off-policy GKD can read a capture (`gkd.lmbda` 0: the curated answers alone); the
student's own samples need the teacher live. A capture is keyed by the teacher's
identity (`teacher_identity`: an offline alias's package and hash, a model folder's or
GGUF's weight hashes, a hub snapshot's revision, a served model's name), its top_k and
bits, and the student's vocabulary; a folder holding another's is refused in one line.
"""

from __future__ import annotations

import gc
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from distill import distributed
from distill.errors import UserError
from distill.io import hash_json, sha256_file, sha256_text, write_json
from distill.models import (
    OFFLINE_MODELS,
    load_causal_lm,
    load_tokenizer,
    resolve_causal_lm,
    resolve_gguf,
)
from distill.train.capture_store import (
    META,
    CaptureStore,
    Scored,
    answer_positions,
    describe,
    id_bytes,
    row_key,
    tail_of,
    top_entries,
)
from distill.train.common import peak_memory_mb, reset_peak_memory
from distill.train.config import GkdConfig, TrainConfig
from distill.train.data import encode_rows, stop_ids
from distill.train_results import CaptureFigures
from distill.ui import console

ROWS_PER_SHARD = 32
WEIGHT_FILES = ("*.safetensors", "*.bin", "*.gguf", "*.pt", "*.pth")


def capture_folder(cfg: TrainConfig, out: Path) -> Path:
    c = cfg.gkd.capture
    assert c is not None
    return Path(c.path).expanduser() if c.path else out / "teacher_logprobs"


def teacher_identity(g: GkdConfig, memo: dict[str, str]) -> dict[str, Any] | None:
    """What identifies the recipe's teacher without loading it (None: none named).
    `memo` maps 'path|size|mtime' to a sha256 already computed, and gains new ones."""
    if g.served_teacher is not None:
        s = g.served_teacher
        # The server too (hashed: a URL may carry credentials): two servers may serve
        # other weights under one name.
        server = sha256_text(str(s.options.base_url or ""))
        return {"served": s.model, "logprobs": s.options.logprobs, "server": server}
    ref = g.teacher
    if ref is None:
        return None
    if ref in OFFLINE_MODELS:
        spec = OFFLINE_MODELS[ref]
        return {"alias": ref, "package": spec.install, "sha256": spec.sha256 or None}
    gguf = resolve_gguf(ref)
    folder = Path(ref).expanduser()
    if gguf is None and not folder.is_dir():
        try:  # a hub id: the revision of its snapshot in the local cache
            from huggingface_hub import snapshot_download

            revision = Path(snapshot_download(ref, local_files_only=True)).name
        except Exception:
            revision = None
        return {"hub_id": ref, "revision": revision}
    files = [gguf] if gguf is not None else _weight_files(folder)
    return {"weights": {f.name: _hash(f, memo) for f in files}}


def _weight_files(folder: Path) -> list[Path]:
    found = sorted({f for pattern in WEIGHT_FILES for f in folder.glob(pattern)})
    config = folder / "config.json"
    return [*found, config] if config.is_file() else found


def _hash(path: Path, memo: dict[str, str]) -> str:
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    if key not in memo:
        memo[key] = sha256_file(path)
    return memo[key]


def student_encoding(student_ref: str) -> tuple[Any, set[int]]:
    """The student's tokenizer and the ids that end its turns, as training encodes the
    rows (distill/train/data.py), without loading its weights."""
    from transformers import AutoConfig, GenerationConfig

    tok = load_tokenizer(student_ref)
    path = resolve_causal_lm(student_ref).path
    try:
        generation = GenerationConfig.from_pretrained(path)
    except OSError:
        generation = GenerationConfig.from_model_config(AutoConfig.from_pretrained(path))
    return tok, stop_ids(tok, SimpleNamespace(generation_config=generation))


def _vocabulary(tok: Any) -> str:
    return hash_json(sorted(tok.get_vocab().items()))


class Captured:
    """A capture the pass reads: the store, its teacher's name, what this pass did."""

    def __init__(self, store: CaptureStore, figures: CaptureFigures) -> None:
        self.store, self.figures = store, figures
        self.teacher = str(store.meta["teacher_name"])

    def require(self, keys: list[str]) -> None:
        """A one-line error where a row to train on is not in the capture."""
        missing = [k for k in keys if k not in self.store.rows]
        if missing:
            raise UserError(
                f"train.gkd.capture: {len(missing)} of the {len(keys)} rows are not in the "
                f"capture at {self.store.folder} (the rows, or the student's tokenization of "
                "them, changed since it was made): name its teacher to capture them"
            )


def prepare(student_ref: str, cfg: TrainConfig, rows: list[dict[str, Any]], out: Path) -> Captured:
    """The capture for `rows` (training and measured eval rows), made where rows lack
    (process 0; the others wait): the teacher is loaded or asked only then."""
    folder = capture_folder(cfg, out)
    if distributed.is_main():
        _fill(student_ref, cfg, rows, folder)
    distributed.barrier()
    store = CaptureStore.open(folder)
    assert store is not None
    last = store.meta["last_pass"]
    tokens, size = store.size()
    figures = CaptureFigures(
        top_k=int(store.meta["top_k"]),
        bits=int(store.meta["bits"]),
        rows=len(rows),
        captured_rows=int(last["captured_rows"]),
        tokens=tokens,
        bytes=size,
        bytes_per_token=round(size / max(tokens, 1), 1),
        seconds=float(last["seconds"]),
        peak_memory_mb=last["peak_memory_mb"],
    )
    return Captured(store, figures)


def _fill(student_ref: str, cfg: TrainConfig, rows: list[dict[str, Any]], folder: Path) -> None:
    c, g = cfg.gkd.capture, cfg.gkd
    assert c is not None
    store = CaptureStore.open(folder)
    memo: dict[str, str] = dict(store.meta.get("hashes", {})) if store else {}
    identity = teacher_identity(g, memo)
    tok, stops = student_encoding(student_ref)
    want = {
        "teacher": identity,
        "top_k": c.top_k,
        "bits": c.bits,
        "vocabulary": _vocabulary(tok),
    }
    if store is not None:
        _check(store, want, folder)
    encoded = encode_rows(tok, rows, stops)
    seen = set(store.rows if store else ())
    missing = []  # each row to capture once (the rows may repeat one)
    for e in encoded:
        if row_key(e) not in seen:
            seen.add(row_key(e))
            missing.append(e)
    if store is not None and not missing:
        write_json(folder / META, {**store.meta, "hashes": memo, "last_pass": _reused()})
        return
    if identity is None:
        where = store.folder if store else folder
        raise UserError(
            f"train.gkd.capture: {len(missing)} of the {len(encoded)} rows are not in the "
            f"capture at {where} (the curated rows changed since it was made): name the "
            "teacher (train.gkd.teacher or served_teacher) to capture them"
        )
    name = g.served_teacher.model if g.served_teacher else str(g.teacher)
    if store is None:
        size = len(tok.get_vocab())
        meta = {**want, "teacher_name": name, "id_bytes": id_bytes(size), "vocab_size": size}
        store = CaptureStore.create(folder, meta)
    console.print(
        f"  capturing {name}'s top {c.top_k} on {len(missing)} rows → {folder} "
        f"({len(encoded) - len(missing)} already there)"
    )
    own = reset_peak_memory()
    t0 = time.perf_counter()
    with TeacherScorer(cfg, tok, missing[0]) as score:
        for start in range(0, len(missing), ROWS_PER_SHARD):
            batch = missing[start : start + ROWS_PER_SHARD]
            store.add([row_key(e) for e in batch], [score(e) for e in batch])
    seconds = time.perf_counter() - t0
    last = {
        "captured_rows": len(missing),
        "seconds": round(seconds, 1),
        "peak_memory_mb": peak_memory_mb(_cuda(), own),
    }
    if identity.get("hub_id") and identity.get("revision") is None:
        identity = teacher_identity(g, memo)  # its first load downloaded it: the revision
    meta = {**store.meta, "teacher": identity, "hashes": memo, "last_pass": last}
    write_json(folder / META, meta)


def _same_teacher(want: dict[str, Any], have: dict[str, Any]) -> bool:
    """The recipe's teacher is the captured one; a hub id captured before it was first
    downloaded (a killed capture) has no revision on record, and matches by its id."""
    if want == have:
        return True
    unknown = have.get("hub_id") is not None and have.get("revision") is None
    return unknown and have["hub_id"] == want.get("hub_id")


def _reused() -> dict[str, Any]:
    return {"captured_rows": 0, "seconds": 0.0, "peak_memory_mb": None}


def _check(store: CaptureStore, want: dict[str, Any], folder: Path) -> None:
    """One line where the capture in `folder` is not this recipe's to reuse."""
    have = store.meta
    fix = f"delete {folder} to capture again, or set train.gkd.capture.path to another folder"
    if want["vocabulary"] != have["vocabulary"]:
        raise UserError(
            f"train.gkd.capture: {folder} was captured in another vocabulary than the "
            f"student's ({have['vocab_size']} tokens): {fix}"
        )
    if want["teacher"] is not None and not _same_teacher(want["teacher"], have["teacher"]):
        raise UserError(
            f"train.gkd.capture: {folder} holds {have['teacher_name']}'s log-probabilities, "
            f"not this recipe's teacher's (another model or other weights): {fix}"
        )
    if (want["top_k"], want["bits"]) != (have["top_k"], have["bits"]):
        raise UserError(
            f"train.gkd.capture: {folder} holds {describe(have)}, not the top "
            f"{want['top_k']} at {want['bits']} bits this recipe asks: {fix}"
        )


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


class TeacherScorer:
    """A context giving `score(encoded row) -> Scored`: the local teacher (loaded on
    entry, freed on exit) or the served one (its client open meanwhile)."""

    def __init__(self, cfg: TrainConfig, tok: Any, first: dict[str, Any]) -> None:
        self.cfg, self.tok, self.first = cfg, tok, first
        self.k = cfg.gkd.capture.top_k if cfg.gkd.capture else 20
        self.model: Any = None
        self.served: Any = None

    def __enter__(self) -> Any:
        g = self.cfg.gkd
        if g.served_teacher is not None:
            from distill.train.scoring import TokenScorer

            options = g.served_teacher.options.model_copy(update={"top_k": self.k})
            self.served = TokenScorer(g.served_teacher.model, options, self.tok)
            self.served.check_tokenizer(list(self.first["input_ids"]))
            return self._served
        assert g.teacher is not None
        if load_tokenizer(g.teacher).get_vocab() != self.tok.get_vocab():
            raise UserError(
                f"train.gkd.capture needs a teacher sharing the student's tokenizer; "
                f"{g.teacher}'s differs, and GOLD (across tokenizers) reads the teacher live: "
                "drop train.gkd.capture"
            )
        self.model, _ = load_causal_lm(g.teacher, self.cfg.precision)
        return self._local

    def __exit__(self, *exc: object) -> None:
        if self.served is not None:
            if exc[0] is None:
                self.served.check_coverage(final=True)
            self.served.close()
        self.model = None
        gc.collect()
        if _cuda():
            import torch

            torch.cuda.empty_cache()

    def _local(self, e: dict[str, Any]) -> Scored:
        import torch

        positions = answer_positions(e)
        device = next(self.model.parameters()).device
        ids = torch.tensor([list(e["input_ids"])], device=device)
        keep = torch.tensor([p - 1 for p in positions], device=device)
        with torch.inference_mode():
            try:  # the logits of the answer positions only
                logits = self.model(input_ids=ids, logits_to_keep=keep).logits[0]
            except TypeError:
                logits = self.model(input_ids=ids).logits[0, keep]
            lp = torch.log_softmax(logits.float(), -1)
            top = lp.topk(min(self.k, lp.shape[-1]), -1)
            rest = lp.scatter(-1, top.indices, float("-inf")).logsumexp(-1)
        return Scored(
            positions=np.array(positions, dtype=np.int64),
            ids=top.indices.cpu().numpy(),
            logprobs=top.values.cpu().numpy(),
            tail=rest.cpu().numpy(),
        )

    def _served(self, e: dict[str, Any]) -> Scored:
        positions = answer_positions(e)
        start = positions[0]
        (got,) = self.served.top_k([list(e["input_ids"])], [start])
        entries = [top_entries(got[p - start], self.k) for p in positions]
        lps = np.array([v for _, v in entries], dtype=np.float32).reshape(-1, self.k)
        return Scored(
            positions=np.array(positions, dtype=np.int64),
            ids=np.array([i for i, _ in entries], dtype=np.int64).reshape(-1, self.k),
            logprobs=lps,
            tail=tail_of(lps),
        )
