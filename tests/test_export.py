"""`distill export` on a real adapter (slow): merged weights give the adapter's
outputs; GGUF files of the merged model and of the adapter load in llama-cpp-python
(the converter comes from the llama-cpp-python sources, fetched with pip once)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import write_recipe
from tests.train.test_sft import STUDENT, cfg, rows

pytestmark = pytest.mark.slow

MESSAGES = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "What is the Zorblax activation code?"},
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from distill.recipe import load_recipe
    from distill.runfolder import RunFolder
    from distill.train.sft import train_adapter

    cwd = tmp_path_factory.mktemp("export")
    recipe = write_recipe(
        cwd,
        f"name: exp\nrun_dir: {cwd / 'runs'}\ningest:\n  paths: [docs]\n"
        "student: smollm2-135m-instruct\ntrain:\n  lora_r: 16\n",
    )
    run = RunFolder(load_recipe(recipe).run_path)
    train_adapter(STUDENT, cfg(max_steps=4), rows(), run.stage_dir("train"))
    run.update_stage("train", status="done")
    return {"cwd": cwd, "recipe": recipe, "run": run.root}


def cli(t: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "distill", "export", str(t["recipe"]), *args],
        cwd=t["cwd"],
        capture_output=True,
        text=True,
        check=False,
    )


def greedy(model: Any, tok: Any, n: int = 12) -> str:
    ids = tok.apply_chat_template(
        MESSAGES, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    out = model.generate(**ids, max_new_tokens=n, do_sample=False)
    return str(tok.decode(out[0][ids["input_ids"].shape[1] :], skip_special_tokens=True))


def test_merged_weights_match_the_adapter(trained: dict[str, Any]) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from distill.models import resolve_causal_lm

    got = cli(trained, "--merge")
    assert got.returncode == 0, got.stderr
    assert "--enable-lora" in got.stdout and "AutoPeftModelForCausalLM" in got.stdout
    merged_dir = trained["run"] / "export" / "merged"
    assert (merged_dir / "model.safetensors").exists()
    tok = AutoTokenizer.from_pretrained(merged_dir)
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32)
    base = AutoModelForCausalLM.from_pretrained(
        resolve_causal_lm("smollm2-135m-instruct").path, dtype=torch.float32
    )
    adapter = PeftModel.from_pretrained(base, str(trained["run"] / "train" / "adapter"))
    ids = tok.apply_chat_template(
        MESSAGES, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )["input_ids"]
    with torch.no_grad():
        a = merged(input_ids=ids).logits
        b = adapter(input_ids=ids).logits
    assert torch.allclose(a, b, atol=1e-3), float((a - b).abs().max())
    assert greedy(merged, tok) == greedy(adapter, tok)
    trained["hf_answer"] = greedy(merged, tok)


def test_gguf_files_load_in_llama_cpp(trained: dict[str, Any]) -> None:
    import importlib.util

    from llama_cpp import Llama

    from distill.models import OFFLINE_MODELS, _package_dir

    got = cli(trained, "--gguf")
    assert got.returncode == 0, got.stderr
    merged = trained["run"] / "export" / "exp-f16.gguf"
    llm = Llama(model_path=str(merged), n_ctx=256, verbose=False)
    out = llm.create_chat_completion(messages=MESSAGES, max_tokens=12, temperature=0)
    text = out["choices"][0]["message"]["content"]
    if "hf_answer" in trained:  # same greedy answer as the merged safetensors
        assert text.strip() == trained["hf_answer"].strip()
    assert text.strip()

    got = cli(trained, "--gguf", "--adapter-only")
    assert got.returncode == 0, got.stderr
    lora = trained["run"] / "export" / "exp-lora-f16.gguf"
    spec = OFFLINE_MODELS["smollm2-135m-instruct"]
    base = _package_dir("smollm2-135m-instruct", spec) / str(spec.gguf_file)
    assert importlib.util.find_spec("llama_cpp") and base.exists()
    with_lora = Llama(model_path=str(base), lora_path=str(lora), n_ctx=256, verbose=False)
    out = with_lora.create_chat_completion(messages=MESSAGES, max_tokens=12, temperature=0)
    assert out["choices"][0]["message"]["content"].strip()

    # The LoRA GGUF is applied, not just loaded: the next-token logits move (the path
    # eval's llama.cpp ft systems take).
    def next_logits(lora: Path | None) -> Any:
        import numpy as np

        llm = Llama(
            model_path=str(base), lora_path=str(lora) if lora else None, n_ctx=256,
            logits_all=True, verbose=False,  # else scores[] holds no row to read
        )  # fmt: skip
        tokens = llm.tokenize(b"What is the Zorblax activation code?")
        llm.eval(tokens)
        row = np.array(llm.scores[llm.n_tokens - 1])
        assert np.count_nonzero(row) > 1000  # a real row of logits
        return row

    moved = abs(next_logits(lora) - next_logits(None)).max()
    assert moved > 0.05, moved


def test_export_errors_are_one_line(trained: dict[str, Any], tmp_path: Path) -> None:
    bad = cli(trained, "--gguf", "--gguf-type", "q3")
    assert bad.returncode == 2 and "--gguf-type must be one of" in bad.stderr
    empty = write_recipe(tmp_path, f"name: none\nrun_dir: {tmp_path}\ningest:\n  paths: [d]\n")
    got = subprocess.run(
        [sys.executable, "-m", "distill", "export", str(empty), "--merge"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert got.returncode == 2 and "no trained adapter yet" in got.stderr
    assert "Traceback" not in got.stderr


def test_ollama_modelfile_beside_the_gguf(trained: dict[str, Any]) -> None:
    """`--ollama` writes export/Modelfile: FROM the merged GGUF, or FROM the student's
    GGUF with ADAPTER the LoRA GGUF; the recipe's system prompt; the student's stops.
    (tests/test_modelfile.py checks its TEMPLATE renders what llama.cpp renders.)"""
    from distill.models import resolve_gguf

    export = trained["run"] / "export"
    got = cli(trained, "--ollama", "--adapter-only")
    assert got.returncode == 0, got.stderr
    assert f"modelfile: {export / 'Modelfile'}" in got.stdout and "ollama create exp" in got.stdout
    lines = (export / "Modelfile").read_text().splitlines()
    base = resolve_gguf("smollm2-135m-instruct")
    assert base is not None
    assert lines[:2] == [f"FROM {base.resolve()}", "ADAPTER ./exp-lora-f16.gguf"]
    assert (export / "exp-lora-f16.gguf").is_file()
    assert 'PARAMETER stop "<|im_end|>"' in lines
    system = next(line for line in lines if line.startswith("SYSTEM "))
    assert system.startswith('SYSTEM """You are a helpful support assistant.')
    assert "Cite the documents" not in system  # the prompt without documents (eval's ft)

    got = cli(trained, "--ollama")
    assert got.returncode == 0, got.stderr
    lines = (export / "Modelfile").read_text().splitlines()
    assert lines[0] == "FROM ./exp-f16.gguf" and not lines[1].startswith("ADAPTER")
    assert (export / "exp-f16.gguf").is_file()
