"""Training on more than one process (`accelerate launch --num_processes N` or
`torchrun`): which process this is, and waiting for the others.

Every process runs `distill train`; TRL's trainers split the batches between them and
average the gradients (NCCL on GPUs, gloo on CPUs). Process 0 keeps the books: it alone
writes the run folder (the manifest, checkpoints' stamp, the adapter, the metrics) and
builds DPO's pairs; the others train their share and write nothing. Launchers set the
environment read here (RANK, WORLD_SIZE)."""

from __future__ import annotations

import os


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    """Wait until every process gets here (nothing to wait for with one process)."""
    if world_size() > 1:
        from accelerate import PartialState

        PartialState().wait_for_everyone()
