"""Preflight: what the stages about to run need, checked before the first one starts.

A bad recipe fails in seconds with every problem listed, not after ingest: each
teacher and judge spec names a known provider with valid options, API keys are in
the environment (their names only are ever printed), local model files and offline
packages are present, the prompt templates exist, the student resolves, and (with
`network=True`, as `distill run` does) the Argilla server answers when review is on.
`distill validate` runs the checks that need no network.

Nothing here loads a model or sends a request to a teacher.
"""

from __future__ import annotations

import importlib.util
import os
import re
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from distill.errors import UserError
from distill.recipe import Recipe
from distill.runfolder import STAGES

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def model_problem(ref: str, what: str) -> str | None:
    """Why model reference `ref` cannot be used here, or None. Resolves offline aliases
    and paths without loading anything; a hub id is checked against the local cache
    only when the Hub is off (HF_HUB_OFFLINE)."""
    from distill.models import OFFLINE_MODELS, assembled_path

    if ref in OFFLINE_MODELS:
        spec = OFFLINE_MODELS[ref]
        if spec.parts:
            if spec.gguf_file and assembled_path(spec).is_file():
                return None  # assembled before
            names = [spec.package.format(n=n) for n in range(1, spec.parts + 1)]
            missing = [n for n in names if importlib.util.find_spec(n) is None]
            if missing:
                return (
                    f"{what} '{ref}': {len(missing)} of its {spec.parts} packages are not "
                    f"installed (first: {missing[0]}); run: pip install {spec.install}"
                )
            return None
        if importlib.util.find_spec(spec.package) is None:
            return f"{what} '{ref}': its package is not installed; run: pip install {spec.install}"
        return None
    path = Path(ref).expanduser()
    if path.suffix == ".gguf":
        return None if path.is_file() else f"{what}: GGUF file not found: {ref}"
    if path.exists():
        if path.is_dir() and not (path / "config.json").exists() and what != "embedding model":
            return f"{what}: {ref} is a folder without config.json; give a model folder"
        return None
    if ref.startswith((".", "/", "~")) or ref.endswith((".gguf", ".safetensors", ".bin")):
        return f"{what}: {ref} does not exist"
    if not _HUB_ID.match(ref):
        aliases = ", ".join(sorted(OFFLINE_MODELS))
        return (
            f"{what} '{ref}' is not an offline alias ({aliases}), a local path or a Hub id ORG/NAME"
        )
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(ref, "config.json"), str):
            return f"{what} '{ref}' is not in the Hugging Face cache and HF_HUB_OFFLINE=1"
    return None


def spec_problems(spec: str, options: dict[str, Any] | None, where: str) -> list[str]:
    """What is wrong with a teacher/judge spec and its options (keys: names only)."""
    from distill.teachers import parse_spec

    try:
        backend, model, opts = parse_spec(spec, options)
    except UserError as e:
        return [f"{where}: {e}"]
    out = []
    env = getattr(opts, "api_key_env", None)
    if env and not os.environ.get(env):
        out.append(
            f"{where} '{spec}' needs an API key in ${env}; set it (any non-empty value for a "
            "local server that checks none)"
        )
    if backend.runs_locally:  # its weights must be here
        why = model_problem(model, f"{where} model")
        if why:
            out.append(why)
    return out


def reachable(url: str, timeout_s: float = 3.0) -> str | None:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except OSError as e:
        return f"cannot connect to {parts.scheme}://{host}:{port} ({e.strerror or e})"


def review_problems(recipe: Recipe, network: bool) -> list[str]:
    if recipe.review.mode != "argilla":
        return []
    from distill.review.server import local_server

    url = os.environ.get("ARGILLA_API_URL") or recipe.review.api_url
    local = local_server()
    if url is None:
        if local is None:
            return [
                "review.mode is argilla but no Argilla server is set or running: start one "
                "with `distill review serve`, or set ARGILLA_API_URL and ARGILLA_API_KEY"
            ]
        return []
    if not os.environ.get("ARGILLA_API_KEY") and (local is None or local["url"] != url):
        return [f"review: no API key for the Argilla server at {url}: set ARGILLA_API_KEY"]
    if network:
        why = reachable(url)
        if why:
            return [f"review: the Argilla server at {url} does not answer: {why}"]
    return []


def gkd_teacher_problems(recipe: Recipe) -> list[str]:
    """A GKD teacher loaded here must be here; a served one needs its key's variable; a
    capture named without a teacher must be there."""
    g = recipe.train.gkd
    if g.served_teacher is None and g.teacher is None:
        assert g.capture is not None and g.capture.path is not None
        if not (Path(g.capture.path).expanduser() / "capture.json").is_file():
            return [
                f"train.gkd.capture.path {g.capture.path} holds no capture (no capture.json): "
                "give the folder a capture was written to, or name the teacher to capture"
            ]
        return []
    if g.served_teacher is None:
        assert g.teacher is not None
        why = model_problem(g.teacher, "train.gkd.teacher")
        return [why] if why else []
    served = g.served_teacher
    env = served.options.api_key_env
    if env and not os.environ.get(env):
        return [
            f"train.gkd.served_teacher '{served.model}' needs an API key in ${env}; set it "
            "(any non-empty value for a local server that checks none)"
        ]
    return []


def problems(recipe: Recipe, stages: list[str] | None = None, network: bool = False) -> list[str]:
    """Every problem that would stop one of `stages` (default: all), found without
    loading a model or calling a teacher."""
    from distill.prompts import recipe_template

    run = set(stages or STAGES)
    out: list[str] = []
    g, c, e, t = recipe.generate, recipe.curate, recipe.eval, recipe.train
    teacher = recipe.teacher

    def template(ref: str, where: str) -> None:
        try:
            recipe_template(recipe, ref)
        except UserError as err:
            out.append(f"{where}: {err}")

    if run & {"ingest", "curate"}:
        why = model_problem(recipe.ingest.embedding_model, "ingest.embedding_model")
        if why:
            out.append(why)
    if "ingest" in run:
        if recipe.ingest.paths:
            from distill.ingest.discover import discover

            try:
                discover(recipe.ingest, recipe.base_dir)
            except UserError as err:
                out.append(str(err))
        tok = recipe.ingest.tokenizer or recipe.student
        why = model_problem(tok, "ingest.tokenizer" if recipe.ingest.tokenizer else "student")
        if why:
            out.append(why)
    if "generate" in run:
        out += spec_problems(teacher.model, teacher.options, "teacher")
        if g.eval_key is not None:
            template(g.eval_key.template, "generate.eval_key.template")
            if g.eval_key.teacher:
                opts = g.eval_key.teacher_options
                out += spec_problems(
                    g.eval_key.teacher,
                    opts if opts is not None else teacher.options,
                    "generate.eval_key.teacher",
                )
        for field in ("question_template", "instruction_template", "multi_hop_template"):
            template(getattr(g, field), f"generate.{field}")
        template(g.follow_up_template, "generate.follow_up_template")
        if g.pairs_per_request > 1:
            template(g.pairs_template, "generate.pairs_template")
        template(g.answer_template, "generate.answer_template")
        if g.prompts is not None and not (recipe.base_dir / g.prompts.path).is_file():
            out.append(
                f"generate.prompts.path: {recipe.base_dir / g.prompts.path} is not a file; "
                "give your questions file relative to the recipe"
            )
    if "curate" in run and c.judge:
        out += spec_problems(c.judge, c.judge_options, "curate.judge")
        template(c.judge_template, "curate.judge_template")
    if "review" in run:
        out += review_problems(recipe, network)
    if run & {"train", "eval"}:
        why = model_problem(recipe.student, "student")
        if why:
            out.append(why)
    if "train" in run and t.method in ("dpo", "sft_then_dpo"):
        from distill.train.preferences import judge_spec

        spec, opts = judge_spec(recipe)
        where = "train.preferences.judge" if t.preferences.judge else "the DPO pair judge"
        out += spec_problems(spec, opts, where)
        template(t.preferences.grade_template, "train.preferences.grade_template")
    if "train" in run and t.method in ("gkd", "sft_then_gkd"):
        out += gkd_teacher_problems(recipe)
    if "train" in run and t.backend == "unsloth":
        import torch

        if not torch.cuda.is_available():
            out.append("train.backend is unsloth, which needs a CUDA GPU; set it to auto or trl")
        elif importlib.util.find_spec("unsloth") is None:
            out.append(
                "train.backend is unsloth but unsloth is not installed: pip install 'distill[gpu]'"
            )
    if "eval" in run:
        if e.judge:  # with its own settings, not the teacher's (recipe.judge_of)
            out += spec_problems(*recipe.judge_of(e.judge, e.judge_options), "eval.judge")
        if (not e.judge or "teacher" in e.systems) and "generate" not in run:
            out += spec_problems(teacher.model, teacher.options, "teacher (eval)")
        for field in ("base_model", "ft_model"):
            spec = getattr(e, field)
            if spec:
                out += spec_problems(spec, e.student_options, f"eval.{field}")
        for name, named in e.named_systems.items():
            out += spec_problems(named.model, named.options, f"eval.systems {name}")
        template(e.grade_template, "eval.grade_template")
        if e.answer_key is not None and not (recipe.base_dir / e.answer_key).is_file():
            out.append(
                f"eval.answer_key: no file {recipe.base_dir / e.answer_key}; give the path of "
                "a JSON Lines answer key, relative to the recipe"
            )
        if e.judge_items == 0 and e.pairwise and "teacher" in e.systems:
            out.append("eval.pairwise needs the judge, which eval.judge_items: 0 turns off")
        if e.pairwise:
            template(e.pairwise_template, "eval.pairwise_template")
    return list(dict.fromkeys(out))


def context_warnings(recipe: Recipe) -> list[str]:
    """The generate prompts a local teacher may not fit in its context (estimated from
    the chunk size and the chunks a prompt carries): such a request fails alone, as a
    failure row, so it is worth knowing before paying for the rest."""
    from distill.teachers import parse_spec

    g, teacher = recipe.generate, recipe.teacher
    try:
        backend, _, opts = parse_spec(teacher.model, teacher.options)
    except UserError:
        return []  # problems() says what is wrong with it
    n_ctx = getattr(opts, "n_ctx", None)
    if not backend.runs_locally or n_ctx is None:
        return []
    contexts = max(g.neighbours + 1, g.raft.distractors + 1, 2)
    # chunk_tokens counts the student's tokens (another tokenizer may need ~1.5x of
    # them); the templates and the question take ~600 more.
    need = int(1.5 * recipe.ingest.chunk_tokens * contexts) + 600 + g.max_new_tokens
    if need <= n_ctx:
        return []
    return [
        f"teacher: a prompt of {contexts} chunks of {recipe.ingest.chunk_tokens} "
        f"tokens may need ~{need} tokens, more than its context (n_ctx {n_ctx}); those "
        "requests would fail: raise teacher.options.n_ctx or lower "
        "ingest.chunk_tokens"
    ]


def check(recipe: Recipe, stages: list[str] | None = None, network: bool = False) -> None:
    """Raise one UserError listing every problem (one per line), or return; print the
    warnings (what may fail for some requests) either way."""
    if "generate" in (stages or STAGES):
        from distill.ui import console

        for warning in context_warnings(recipe):
            console.print(f"[yellow]warning:[/] {warning}", soft_wrap=True)
    found = problems(recipe, stages, network)
    if len(found) == 1:
        raise UserError(found[0])
    if found:
        raise UserError(f"{len(found)} problems stop this recipe:\n" + "\n".join(found))
