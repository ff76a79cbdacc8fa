"""Thread settings for small problems: one thread beats two when the matrices are tiny.

For a 20 × 20 problem, spinning up and synchronising a second thread costs far more than
the arithmetic (measured here: an 18 × 18 bmm took 15 ms with 2 threads on a loaded
2-core machine, 23 µs with 1; scipy's L-BFGS-B took 1.5 ms a call with 2 BLAS threads).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from threadpoolctl import threadpool_limits

SMALL_FLOPS = 5e7


@contextmanager
def threads_for(flops_per_step: float, device: torch.device | str = "cpu"):
    """Run the block on one thread (torch and BLAS) when a step is cheaper than SMALL_FLOPS."""
    if torch.device(device).type != "cpu" or flops_per_step >= SMALL_FLOPS:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(previous)
