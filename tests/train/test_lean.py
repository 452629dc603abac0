"""Lean CPU training: packed rows go one at a time through eval as
through training, and the train stage reports its own peak memory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from distill.train.config import TrainConfig
from distill.train.sft import sft_config


def test_packed_rows_go_one_at_a_time_through_train_and_eval_on_the_cpu(tmp_path: Path) -> None:
    cfg = TrainConfig(packing=True, batch_size=4, gradient_accumulation_steps=2)
    args = sft_config(cfg, tmp_path, evaluates=True, cuda=False, bf16=False)
    assert args.per_device_train_batch_size == 1 and args.gradient_accumulation_steps == 8
    assert args.per_device_eval_batch_size == 1  # 4 flattened rows cost ~1 GB more
    unpacked = sft_config(
        cfg.model_copy(update={"packing": False}), tmp_path, evaluates=True, cuda=False, bf16=False
    )
    assert unpacked.per_device_train_batch_size == 4 and unpacked.per_device_eval_batch_size == 4


PEAK = """
from distill.train.common import peak_memory_mb, reset_peak_memory
block = bytearray(200 * 2**20)  # touched: 200 MB resident
block[::4096] = b"x" * len(block[::4096])
del block
whole = peak_memory_mb(cuda=False)
reset = reset_peak_memory()
print(whole, reset, peak_memory_mb(cuda=False, since_reset=True))
"""


def test_the_peak_counts_from_the_reset() -> None:
    # A fresh interpreter: in the test process, what earlier tests left resident (and
    # the allocator's state) decides whether the freed block leaves the resident set.
    out = subprocess.run(
        [sys.executable, "-c", PEAK], capture_output=True, text=True, check=True
    ).stdout.split()
    whole, reset, since = float(out[0]), out[1], float(out[2])
    assert reset == "True"
    assert whole - since > 150, (whole, since)  # the freed block no longer counts
