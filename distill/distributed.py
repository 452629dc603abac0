"""Training on more than one process (`accelerate launch --num_processes N` or
`torchrun`): which process this is, and waiting for the others.

Every process runs `distill train`; TRL's trainers split the batches between them and
average the gradients (NCCL on GPUs, gloo on CPUs). Process 0 keeps the books: it alone
writes the run folder (the manifest, checkpoints' stamp, the adapter, the metrics) and
builds DPO's pairs; the others train their share and write nothing. Process 0 also
decides (the preflight, whether the stage is unchanged, the review gate, what to
resume) and tells the others (`share`), so none of them waits for a pass that will not
run. Launchers set the environment read here (RANK, WORLD_SIZE)."""

from __future__ import annotations

import os
from typing import Any


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


# How long a process waits for the others at a collective (a barrier, a broadcast)
# before giving up. Process 0 builds DPO's pairs (the student answers and the judge
# grades every training prompt) while the others wait: that can take hours, and
# torch's default (30 minutes for gloo) ended such runs with a timeout.
TIMEOUT_MIN = "DISTILL_DISTRIBUTED_TIMEOUT_MIN"


def init() -> None:
    """Join the process group, with the timeout of $DISTILL_DISTRIBUTED_TIMEOUT_MIN
    (default 360 minutes). The first call decides: the trainers' Accelerator then uses
    the same group."""
    if world_size() > 1:
        from datetime import timedelta

        from accelerate import PartialState

        PartialState(timeout=timedelta(minutes=float(os.environ.get(TIMEOUT_MIN, "360"))))


def barrier() -> None:
    """Wait until every process gets here (nothing to wait for with one process)."""
    if world_size() > 1:
        from accelerate import PartialState

        init()
        PartialState().wait_for_everyone()


def share(value: Any) -> Any:
    """Process 0's `value`, in every process (each must call this at the same point)."""
    if world_size() == 1:
        return value
    import torch.distributed as dist

    init()
    box = [value if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def finish() -> None:
    """Leave the process group together: a process that exits while another still reads
    its last message (a broadcast) makes that one abort ("terminate called without an
    active exception")."""
    if world_size() == 1:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        barrier()
        dist.destroy_process_group()
