"""Multi-process training through torchrun and DistributedDataParallel.

``torchrun --nproc_per_node=N -m fairadv run R.toml`` starts N processes; each calls `init_from_env`, which joins the
process group (NCCL on GPUs, gloo on CPU) from torchrun's environment variables. The recipe's batch size is global:
each rank trains on its 1/N share of every global batch. Sums (class statistics, evaluation counts, losses) are
all-reduced so every rank sees the same numbers and holds the same policy; only rank 0 writes files.

It sits below ``train/``: plugin strategies import ``from fairadv.distributed import all_reduce_sum`` from a module
that brings in no training machinery.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import attrs
import torch
import torch.distributed as dist
from torch import nn

from fairadv.errors import FairadvError


@attrs.frozen
class DistInfo:
    """This process's place in the job (a single process is rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


_joined = False  # whether init_from_env created the process group (so fairadv should also leave it)


def init_from_env(device_spec: str = "auto") -> DistInfo:
    """Join the process group torchrun describes in the environment; a plain single process is rank 0 of 1."""
    info = dist_info_from_env(os.environ)
    if not info.enabled:
        return info
    use_cuda = torch.cuda.is_available() and device_spec != "cpu"
    if not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        global _joined
        _joined = True
    return info


def dist_info_from_env(env: Mapping[str, str]) -> DistInfo:
    """This process's place from torchrun's variables, checked: whole numbers in range, and the rendezvous address
    when there is more than one process. A stale ``WORLD_SIZE`` or ``RANK`` (left in a shell or a batch script by an
    earlier job) is a one-line `FairadvError` rather than torch's traceback."""
    stale = "set by torchrun; unset it (left over from another job?) or start the run with torchrun"

    def number(name: str, default: str, low: int, high: int | None = None) -> int:
        text = env.get(name, default)
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low or (high is not None and value > high):
            bounds = f"from {low} to {high}" if high is not None else f"of {low} or more"
            raise FairadvError(f"environment variable {name}={text!r}: expected a whole number {bounds}, {stale}")
        return value

    world_size = number("WORLD_SIZE", "1", 1)
    if world_size == 1:
        return DistInfo()
    for name in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        if not env.get(name):
            raise FairadvError(f"environment variable WORLD_SIZE={world_size} without {name}: WORLD_SIZE is {stale}")
    rank = number("RANK", "", 0, world_size - 1)
    local_rank = number("LOCAL_RANK", "0", 0)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank)


def local_batch_size(global_batch: int, info: DistInfo) -> int:
    """Each rank's share of the recipe's global batch size."""
    if global_batch % info.world_size:
        raise FairadvError(f"train.batch_size = {global_batch}: expected a multiple of the {info.world_size} "
                           "processes (the recipe's batch size is global)")
    return global_batch // info.world_size


def all_reduce_sum(*tensors: torch.Tensor) -> None:
    """Sum tensors across ranks in place (a no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        for tensor in tensors:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)


def wrap_model(model: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """DistributedDataParallel around ``model``; ``model`` itself when there is a single process."""
    if not info.enabled:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def leave_process_group() -> None:
    """After a finished run: wait for every process, then leave the group fairadv joined (none otherwise).

    Leaving explicitly matters: a gloo group left to interpreter exit can abort a process ("terminate called without
    an active exception"), which torchrun reports as a failed run.
    """
    global _joined
    if _joined and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    _joined = False


def barrier() -> None:
    """Wait until every process gets here (a no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
