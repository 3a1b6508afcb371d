"""Running one ``cellst finetune`` in several processes (``torchrun``, ``accelerate launch``): who writes what.

Training itself is DDP through the sentence-transformers trainer (accelerate underneath); this module only answers
the questions cellst's own code asks: how many processes there are, whether this one is the main process (the only
one that writes the run folder and prints tables), and a barrier. Launchers describe the job in environment variables
(``WORLD_SIZE``, ``RANK``), which are read before the process group exists, so the answers hold from the first step.
"""

from __future__ import annotations

import os


def world_size() -> int:
    """Number of training processes (1 for a plain ``cellst finetune``)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", 1))


def rank() -> int:
    """Global rank of this process; 0 is the main process."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", 0))


def is_main() -> bool:
    return rank() == 0


def start(backend: str | None = None) -> None:
    """Join the process group now (it would otherwise start with the training arguments), so the main process can
    prepare the run folder while the others wait. Without an accelerator the processes train on CPU with gloo,
    the same choice :func:`cpu_flag` makes for the training arguments."""
    if world_size() > 1:
        from accelerate import PartialState

        PartialState(cpu=cpu_flag(), backend=backend)


def cpu_flag() -> bool:
    """Several processes and no GPU: tell accelerate to run DDP on CPU (otherwise it trains each process alone)."""
    import torch

    return world_size() > 1 and not torch.cuda.is_available()


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
