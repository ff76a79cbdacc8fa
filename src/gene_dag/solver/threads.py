"""How many CPU threads each stage uses, chosen so that results do not depend on the machine's load.

The constrained stage (the central path) is nonconvex: the last bits of a sum decide which
local optimum it reaches, and those bits depend on the number of threads that summed it
(on a scale-free 150-gene problem, one and two threads gave networks that differ in 34
edges). Its steps are also a dozen small dependent operations, each ending at a barrier:
when another process holds one of the cores, every operation waits for the thread that
lost it (the same problem took 39 s on one thread and 415 s on two with other jobs on the
machine). So the thread count depends on the problem's size only, never on the load: the
central path runs on one thread unless a step is at least ``CORE_PARALLEL_FLOPS`` (cores
of about 450 genes and more), where each operation is long enough that a wait at its
barrier costs little, or on ``SolverSettings.core_threads`` when set. The convex stages
(the batched lasso, its refits) run steps cheaper than ``SMALL_FLOPS`` on one thread,
where thread start-up costs more than the arithmetic, and larger ones on all.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from threadpoolctl import threadpool_limits

#: Steps of the convex stages cheaper than this many flops run on one thread.
SMALL_FLOPS = 5e7
#: Steps of the constrained stage cheaper than this run on one thread (its operations are
#: then short enough that a barrier waiting for a descheduled thread dominates them).
CORE_PARALLEL_FLOPS = 2e9


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
    flops_per_step: float,
    device: torch.device | str = "cpu",
    *,
    threads: int | None = None,
    parallel_from: float = SMALL_FLOPS,
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
        ``parallel_from`` flops, torch's count otherwise.
    parallel_from
        The step size from which all threads are used.
    """
    if torch.device(device).type != "cpu":
        yield
        return
    n = threads if threads is not None else (1 if flops_per_step < parallel_from else torch.get_num_threads())
    if n >= torch.get_num_threads():
        yield
        return
    with limited_threads(n):
        yield
