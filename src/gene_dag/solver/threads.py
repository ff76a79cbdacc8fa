"""How many CPU threads each stage uses, chosen so that results do not depend on the machine's load.

The constrained stage (the central path) is nonconvex: the last bits of a sum decide which
local optimum it reaches, and those bits depend on the number of threads that summed it
(on a scale-free 150-gene problem, one and two threads gave networks that differ in 34
edges). Its steps are also a dozen small dependent operations, each ending at a barrier:
when another process holds one of the cores, every operation waits for the thread that
lost it (the same problem took 39 s on one thread and 415 s on two with other jobs on the
machine). So the central path runs on ``SolverSettings.core_threads`` threads, one by
default: the same edges on every machine and under any load. The convex stages (the
batched lasso, its refits) run their large products on all threads, and steps cheaper than
``SMALL_FLOPS`` on one, where thread start-up costs more than the arithmetic.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from threadpoolctl import threadpool_limits

#: Steps cheaper than this many flops run on one thread.
SMALL_FLOPS = 5e7


@contextmanager
def limited_threads(n: int) -> Iterator[None]:
    """Run the block with torch and every BLAS pool on at most ``n`` threads."""
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, min(n, previous)))
    try:
        with threadpool_limits(limits=max(1, n)):
            yield
    finally:
        torch.set_num_threads(previous)


@contextmanager
def threads_for(
    flops_per_step: float, device: torch.device | str = "cpu", *, threads: int | None = None
) -> Iterator[None]:
    """Run the block on the thread count that suits its steps.

    Parameters
    ----------
    flops_per_step
        Rough floating-point operations of one step of the block.
    device
        Off the CPU nothing changes.
    threads
        Use exactly this many (at most torch's count); ``None``: one thread for steps below
        ``SMALL_FLOPS``, torch's count otherwise.
    """
    if torch.device(device).type != "cpu":
        yield
        return
    n = threads if threads is not None else (1 if flops_per_step < SMALL_FLOPS else torch.get_num_threads())
    if n >= torch.get_num_threads():
        yield
        return
    with limited_threads(n):
        yield
