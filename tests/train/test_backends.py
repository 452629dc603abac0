"""The Unsloth backend on a CUDA GPU (marked `gpu`): it trains the same small student
with the same TRL trainer and settings as the CPU path. Skipped, saying why, on a
machine without a CUDA GPU or without the `gpu` extra."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.train.test_sft import STUDENT, cfg, rows

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine"),
    pytest.mark.skipif(
        importlib.util.find_spec("unsloth") is None,
        reason="the gpu extra is not installed (pip install -e '.[gpu]')",
    ),
]


@pytest.mark.parametrize("four_bit", [False, True])
def test_unsloth_backend_trains_the_student(tmp_path: Path, four_bit: bool) -> None:
    from distill.train.sft import train_adapter

    m = train_adapter(
        STUDENT,
        cfg(backend="auto", load_in_4bit=four_bit, precision="auto"),
        rows(),
        tmp_path,
        eval_rows=rows(4),
    )
    assert m.backend == "unsloth" and m.steps == 6 and m.device != "cpu"
    assert m.versions["unsloth"] and m.eval_loss is not None
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()
    assert m.precision.startswith("4-bit") == four_bit
