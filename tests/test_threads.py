"""The constrained stage gives the same network whatever the number of threads torch may use.

Its result depends on the last bits of its sums, and those on the thread count; it runs on
``core_threads`` threads (one by default), so a machine's core count or load cannot change
the edges. The problem is above the size where steps are cheap enough to run on one thread
anyway, so the test fails if the stage used all of torch's threads.
"""

from __future__ import annotations

import pytest
import torch

from gene_dag.metrics import count_accuracy
from gene_dag.solver.central_path import _Objective
from gene_dag.solver.threads import SMALL_FLOPS, threads_for


def test_threads_for_uses_exactly_the_count_asked_for():
    if torch.get_num_threads() < 2:
        pytest.skip("torch has one thread here")
    before = torch.get_num_threads()
    with threads_for(10 * SMALL_FLOPS, "cpu", threads=1):
        assert torch.get_num_threads() == 1
    with threads_for(10 * SMALL_FLOPS, "cpu"):
        assert torch.get_num_threads() == before
    with threads_for(SMALL_FLOPS / 10, "cpu"):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_the_central_path_runs_on_core_threads(monkeypatch):
    """The stage's evaluations see one thread by default, even for large cores."""
    if torch.get_num_threads() < 2:
        pytest.skip("torch has one thread here")
    from gene_dag.simulate import simulate_adata
    from gene_dag.solver.api import fit

    seen = []
    original = _Objective.value_grad

    def spy(self, V, alpha):
        seen.append(torch.get_num_threads())
        return original(self, V, alpha)

    monkeypatch.setattr(_Objective, "value_grad", spy)
    monkeypatch.setattr("gene_dag.solver.threads.SMALL_FLOPS", 0.0)  # every step counts as large
    adata = simulate_adata(d=20, n=500, graph_type="er", edges_per_node=1.0, seed=0)
    W1 = fit(adata, device="cpu")
    assert seen and set(seen) == {1}
    seen.clear()
    W2 = fit(adata, device="cpu", core_threads=2)
    assert set(seen) == {2}
    for W in (W1, W2):
        assert count_accuracy(adata.varp["true_dag"], W)["shd"] <= 2
