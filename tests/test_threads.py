"""Thread counts depend on the problem's size and the settings, never on the machine's load.

The constrained stage's result depends on the last bits of its sums, and those on the
thread count; so the count is a function of the step size (or ``core_threads``) alone.
"""

from __future__ import annotations

import pytest
import torch

from gene_dag.metrics import count_accuracy
from gene_dag.solver.central_path import _Objective
from gene_dag.solver.threads import SMALL_FLOPS, threads_for

pytestmark = pytest.mark.skipif(torch.get_num_threads() < 2, reason="torch has one thread here")


def test_threads_for_uses_exactly_the_count_asked_for():
    before = torch.get_num_threads()
    with threads_for(10 * SMALL_FLOPS, "cpu", threads=1):
        assert torch.get_num_threads() == 1
    with threads_for(10 * SMALL_FLOPS, "cpu"):
        assert torch.get_num_threads() == before
    with threads_for(SMALL_FLOPS / 10, "cpu"):
        assert torch.get_num_threads() == 1
    with threads_for(10 * SMALL_FLOPS, "cpu", parallel_from=100 * SMALL_FLOPS):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def _threads_seen(monkeypatch, **options):
    from gene_dag.simulate import simulate_adata
    from gene_dag.solver.api import fit

    seen = []
    original = _Objective.value_grad

    def spy(self, V, alpha):
        seen.append(torch.get_num_threads())
        return original(self, V, alpha)

    monkeypatch.setattr(_Objective, "value_grad", spy)
    adata = simulate_adata(d=20, n=500, graph_type="er", edges_per_node=1.0, seed=0)
    # the central path itself (raw equal-noise data would otherwise skip it)
    W = fit(adata, device="cpu", standardize=False, tuning={"core_order": "central_path"}, **options)
    assert count_accuracy(adata.varp["true_dag"], W)["shd"] <= 2
    return set(seen)


def test_the_central_path_thread_count_follows_size_and_settings(monkeypatch):
    all_threads = torch.get_num_threads()
    assert _threads_seen(monkeypatch) == {1}  # a small core: one thread
    monkeypatch.setattr("gene_dag.solver.central_path.CORE_PARALLEL_FLOPS", 0.0)  # every core counts as large
    assert _threads_seen(monkeypatch) == {all_threads}
    assert _threads_seen(monkeypatch, core_threads=1) == {1}
