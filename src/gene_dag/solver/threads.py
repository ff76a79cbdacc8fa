"""How many CPU threads the solver's loops use: one for small steps, the faster count otherwise.

A solver step is a dozen small dependent tensor operations. Each multi-threaded operation
ends at a barrier, so when another process holds one of the cores, every operation waits
for the thread that lost the core: on a 2-core machine with one other busy job, a central
path that takes 2 s on one thread took 69 s on two. On an idle machine two threads are
faster once the matrices are large. Neither count is right everywhere, so steps that are
cheap (below ``SMALL_FLOPS``) always run on one thread, and larger ones time a probe
(one evaluation of the step) on one thread and on all of them, and use all only when that is clearly faster.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from threadpoolctl import threadpool_limits

log = logging.getLogger(__name__)

#: Steps cheaper than this many flops run on one thread without probing.
SMALL_FLOPS = 5e7
#: Timed repetitions of a probe per thread count (the median is compared).
PROBE_REPEATS = 3
#: All threads are used only when the probe ran at most this fraction of its one-thread
#: time: a near tie means another process is taking turns on the cores, and then the
#: barriers of a whole stage lose far more than the probe showed.
PARALLEL_GAIN = 0.75


@contextmanager
def single_thread() -> Iterator[None]:
    """Run the block with torch and every BLAS pool on one thread."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(previous)


def _median_time(probe: Callable[[], object]) -> float:
    probe()  # warm-up: allocations, thread pool start
    times = []
    for _ in range(PROBE_REPEATS):
        start = time.perf_counter()
        probe()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


@contextmanager
def threads_for(
    flops_per_step: float, device: torch.device | str = "cpu", probe: Callable[[], object] | None = None
) -> Iterator[None]:
    """Run the block on the thread count that suits its steps.

    Parameters
    ----------
    flops_per_step
        Rough floating-point operations of one step of the block.
    device
        Off the CPU nothing changes.
    probe
        One step, side-effect free. Without it, steps of at least ``SMALL_FLOPS`` run on
        torch's thread count; with it, on that count only if it ran the probe clearly
        faster than one thread just now (see ``PARALLEL_GAIN``).
    """
    if torch.device(device).type != "cpu" or torch.get_num_threads() == 1:
        yield
        return
    one = flops_per_step < SMALL_FLOPS
    if not one and probe is not None:
        many = _median_time(probe)
        with single_thread():
            single = _median_time(probe)
        one = many > PARALLEL_GAIN * single
        log.debug(
            "threads: one %.3g ms, %d threads %.3g ms per step: %s",
            1e3 * single,
            torch.get_num_threads(),
            1e3 * many,
            "one" if one else "all",
        )
    if one:
        with single_thread():
            yield
    else:
        yield
