"""Running one command as several processes (``torchrun``): rank helpers and sharding.

``torchrun --nproc_per_node=N`` (and its multi-node rendezvous) starts N copies of the same
command with ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` set. :func:`start` joins the process
group (NCCL on CUDA, gloo on the CPU); :func:`shard` gives each rank its share of a list (cases
to train on, volumes to segment); only the main rank (0) writes files. Without torchrun every
helper behaves as a single process of rank 0.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from SegNetsLib.core.errors import ReportedByMainRank, SegNetsError
from SegNetsLib.runtime.devices import resolve_device

T = TypeVar("T")


@dataclass(frozen=True)
class Ranks:
    """Where this process stands: global rank, number of processes, rank on this node, its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """True on rank 0, the only rank that writes checkpoints, logs and model cards."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    """True when the environment says this process is one of several (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def rank() -> int:
    """This process's global rank: from the process group when joined, else ``RANK``, else 0."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """Number of processes: from the process group when joined, else ``WORLD_SIZE``, else 1."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    """True on rank 0 (and in a single process)."""
    return rank() == 0


def shard(items: Sequence[T], rank_index: int | None = None, num_ranks: int | None = None) -> list[T]:
    """This rank's share of ``items``: every ``num_ranks``-th item starting at ``rank_index``.

    Shares are disjoint, cover every item, and differ in length by at most one; a rank may get
    none when there are fewer items than ranks. Defaults come from :func:`rank` / :func:`world_size`.
    """
    rank_index = rank() if rank_index is None else rank_index
    num_ranks = world_size() if num_ranks is None else num_ranks
    if not 0 <= rank_index < num_ranks:
        raise ValueError(f"rank {rank_index} is outside 0..{num_ranks - 1}")
    return list(items[rank_index::num_ranks])


def start(spec: str | torch.device, timeout_s: float = 1800.0) -> Ranks:
    """Join the torchrun process group when there is one, and pick this rank's device.

    ``spec`` is the device the user asked for ("auto", "cpu", "cuda", "cuda:N", "mps"); one this machine lacks
    is refused before any rank joins, said by rank 0 for the run. Under torchrun a CUDA device becomes
    ``cuda:LOCAL_RANK`` and the backend is NCCL, otherwise gloo. Single processes join nothing.
    """
    try:
        device = resolve_device(spec)
    except SegNetsError as error:  # every rank asked for the same device: rank 0 says it once
        raise refuse(str(error)) from None
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not launched_by_torchrun():
        return Ranks(0, 1, 0, device)
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise SegNetsError(
                f"torchrun started local rank {local_rank} but this node has {torch.cuda.device_count()} CUDA "
                "device(s); use --nproc_per_node no larger than the number of GPUs."
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
    return Ranks(dist.get_rank(), dist.get_world_size(), local_rank, device)


def stop() -> None:
    """Leave the process group (a no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every rank gets here (a no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def gather_objects(value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order, on every rank (``[value]`` in a single process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def broadcast_object(value: Any, source: int = 0) -> Any:
    """Rank ``source``'s ``value`` on every rank (``value`` itself in a single process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    box = [value]
    dist.broadcast_object_list(box, src=source)
    return box[0]


def broadcast_buffers(module: nn.Module, source: int = 0) -> None:
    """Copy rank ``source``'s buffers of ``module`` (BatchNorm running statistics) to every rank, in place."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    for buffer in module.buffers():
        dist.broadcast(buffer, src=source)


def mean_over_ranks(value: float, device: torch.device) -> float:
    """The mean of a scalar over all ranks (the value itself in a single process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return float(value)
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor.item()) / dist.get_world_size()


def refuse(message: str) -> SegNetsError:
    """The error to raise for a problem every rank found alike: rank 0's names it, the others' stay silent."""
    return SegNetsError(message) if is_main() else ReportedByMainRank(message)


def on_every_rank(function: Callable[..., T], *arguments: Any) -> T:
    """``function(*arguments)`` on every rank; a SegNetsError on any rank stops every rank, and rank 0 raises it
    (naming the rank it came from when another), so that the run reports it once."""
    try:
        value, problem = function(*arguments), None
    except SegNetsError as error:
        if not (dist.is_available() and dist.is_initialized()):
            raise
        value, problem = None, error
    problems = gather_objects(None if problem is None else str(problem))
    failed = next(((index, text) for index, text in enumerate(problems) if text is not None), None)
    if failed is None:
        return value  # type: ignore[return-value]
    index, text = failed
    if is_main() and problem is not None:
        raise problem
    raise refuse(text if index == 0 else f"rank {index}: {text}")
