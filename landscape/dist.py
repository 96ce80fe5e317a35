"""torch.distributed helpers: every reduction over data goes through here, so `torchrun` works.

Launched with `torchrun`, the environment holds WORLD_SIZE/RANK/MASTER_ADDR; `init()` joins the
group (NCCL on CUDA, gloo on CPU). Without it every function degrades to the single-process case.
"""

from __future__ import annotations

import atexit
import contextlib
import os
from collections.abc import Iterator

import torch
import torch.distributed as tdist


def init(device: torch.device | str = "cpu") -> None:
    """Join the process group described by torchrun's environment, once; a no-op otherwise.

    Args:
        device: the device this rank computes on: NCCL for CUDA (on the device LOCAL_RANK names),
            gloo otherwise.

    Examples:
        >>> init()  # not launched by torchrun: nothing to join
        >>> active()
        False
    """
    if (
        tdist.is_available()
        and not tdist.is_initialized()
        and int(os.environ.get("WORLD_SIZE", "1")) > 1
    ):
        device = torch.device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        tdist.init_process_group(backend=backend)
        atexit.register(_leave)


def _leave() -> None:
    """Leave the group before the interpreter tears down (gloo aborts otherwise)."""
    if tdist.is_initialized():
        tdist.barrier()
        tdist.destroy_process_group()


_local_depth = 0


def active() -> bool:
    """Whether more than one process takes part in collectives right now.

    Returns:
        True in a launched group of more than one process, False alone or inside `local()`.

    Examples:
        >>> active()
        False
    """
    return (
        _local_depth == 0
        and tdist.is_available()
        and tdist.is_initialized()
        and tdist.get_world_size() > 1
    )


def launched_rank() -> int:
    """This process's rank in the launched group, also inside `local()`.

    Returns:
        The rank, 0 when not distributed.

    Examples:
        >>> launched_rank()
        0
    """
    return tdist.get_rank() if tdist.is_available() and tdist.is_initialized() else 0


def launched_world_size() -> int:
    """Size of the launched group, also inside `local()`.

    Returns:
        The number of processes, 1 when not distributed.

    Examples:
        >>> launched_world_size()
        1
    """
    return tdist.get_world_size() if tdist.is_available() and tdist.is_initialized() else 1


@contextlib.contextmanager
def local() -> Iterator[None]:
    """Run a whole job on this rank alone: no sharding, no collectives.

    For the independent jobs of a study, each run by one rank. Contexts nest.

    Yields:
        None; inside, `active()` is False, `rank()` 0 and `world_size()` 1.

    Examples:
        >>> with local():
        ...     print(active(), rank(), world_size())
        False 0 1
    """
    global _local_depth
    _local_depth += 1
    try:
        yield
    finally:
        _local_depth -= 1


def rank() -> int:
    """This process's rank among the processes that take part in collectives now.

    Returns:
        The rank, 0 when not distributed or inside `local()`.

    Examples:
        >>> rank()
        0
    """
    return tdist.get_rank() if active() else 0


def world_size() -> int:
    """Number of processes that take part in collectives now.

    Returns:
        The count, 1 when not distributed or inside `local()`.

    Examples:
        >>> world_size()
        1
    """
    return tdist.get_world_size() if active() else 1


def is_main() -> bool:
    """Whether this is the process that prints and writes files.

    Returns:
        True on rank 0.

    Examples:
        >>> is_main()
        True
    """
    return rank() == 0


def shard(n: int, index: int | None = None, parts: int | None = None) -> range:
    """The contiguous block of `range(n)` that rank `index` of `parts` owns.

    The first `n % parts` blocks are one longer, so sizes differ by at most 1.

    Args:
        n: the number of items shared out.
        index: the block's rank (default: this process's rank).
        parts: the number of blocks (default: the number of processes).

    Returns:
        The block's indices.

    Examples:
        >>> [shard(10, i, 3) for i in range(3)]
        [range(0, 4), range(4, 7), range(7, 10)]
        >>> shard(10)  # one process owns everything
        range(0, 10)
    """
    index = rank() if index is None else index
    parts = world_size() if parts is None else parts
    base, extra = divmod(n, parts)
    start = index * base + min(index, extra)
    return range(start, start + base + (1 if index < extra else 0))


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum `t` over all ranks in place and return it.

    Args:
        t: this rank's part of the sum.

    Returns:
        `t`, now the sum over all ranks (unchanged in a single process).

    Examples:
        >>> import torch
        >>> all_reduce_sum(torch.tensor([1.0, 2.0]))
        tensor([1., 2.])
    """
    if active():
        tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
    return t


def barrier() -> None:
    """Wait for all ranks (no-op when not distributed).

    Examples:
        >>> barrier()
    """
    if active():
        tdist.barrier()
