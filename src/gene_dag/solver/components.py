"""The constrained stage on the cycle core: components, batches of them, and the central path.

The core's columns are coupled only inside strongly connected components of the active
edges (every allowed edge when the core is solved whole; the lasso candidates on the
active-set path). Components of similar size are padded into one batch, solved together
by the central path (central_path.py), and scattered back into the weights.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
import torch

from gene_dag.graph import strong_components
from gene_dag.solver.central_path import ComponentBatch, PathSettings, solve_components
from gene_dag.solver.checkpoint import snapshot

if TYPE_CHECKING:
    from gene_dag.solver.driver import Core, Run
    from gene_dag.solver.problem import Problem

log = logging.getLogger(__name__)

#: Relative size of the central path's seeded tie-break on standardised genes.
TIE_BREAK = 0.01


@dataclass
class Component:
    """One constrained problem of the core.

    ``rows`` are its parent rows (its own q genes first), ``cols`` its positions among the
    core's columns and ``q`` the size of its square cycle block.
    """

    rows: np.ndarray
    cols: np.ndarray
    q: int


def find_components(active: np.ndarray, core: Core) -> list[Component]:
    """Strongly connected components of the active edges among the core genes."""
    sub = active[core.rows, :]  # core row -> core column, both by core position
    labels = strong_components(sp.csr_matrix(sub))
    order = np.argsort(labels, kind="stable")
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    comps = []
    for members in np.split(order, bounds):
        own_rows = core.rows[members]
        parents = np.flatnonzero(active[:, members].any(axis=1))
        extra = np.setdiff1d(parents, own_rows)
        comps.append(Component(np.concatenate([own_rows, extra]), members, len(members)))
    return comps


def _pow2(n: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(n, 1))))


def buckets(comps: list[Component], prob: Problem) -> list[list[Component]]:
    """Group components of similar size (powers of two) into batches within the memory budget."""
    groups: dict[tuple[int, int, int], list] = {}
    for comp in comps:
        groups.setdefault((_pow2(comp.q), _pow2(len(comp.rows)), _pow2(len(comp.cols))), []).append(comp)
    out = []
    budget = prob.s.memory_gb * 2**30 / 16  # float64, a dozen live tensors
    for (q, p, c), items in sorted(groups.items()):
        per = 8 * (p * p + 6 * p * c + 4 * q * q)
        size = max(1, int(budget // per))
        out.extend(items[i : i + size] for i in range(0, len(items), size))
    return out


@dataclass
class _Padding:
    """Index arrays of a bucket padded to one shape (nb, P, C), with validity masks."""

    rows: np.ndarray  # (nb, P) regulator rows
    cols: np.ndarray  # (nb, C) positions among the core's columns
    rvalid: np.ndarray
    cvalid: np.ndarray
    qvalid: np.ndarray  # (nb, Q)

    @classmethod
    def of(cls, bucket: list[Component]) -> _Padding:
        """Pad the bucket's index arrays to the largest component."""
        nb = len(bucket)
        P = max(len(c.rows) for c in bucket)
        C = max(len(c.cols) for c in bucket)
        Q = max(c.q for c in bucket)
        pad = cls(
            np.zeros((nb, P), np.int64),
            np.zeros((nb, C), np.int64),
            np.zeros((nb, P), bool),
            np.zeros((nb, C), bool),
            np.zeros((nb, Q), bool),
        )
        for b, comp in enumerate(bucket):
            pad.rows[b, : len(comp.rows)], pad.rvalid[b, : len(comp.rows)] = comp.rows, True
            pad.cols[b, : len(comp.cols)], pad.cvalid[b, : len(comp.cols)] = comp.cols, True
            pad.qvalid[b, : comp.q] = True
        return pad


def gather(run: Run, core: Core, active: np.ndarray, bucket: list[Component]) -> ComponentBatch:
    """Gather the padded float64 tensors of one bucket (padding rows and columns are zero)."""
    prob, dev, f64 = run.prob, run.prob.device, torch.float64
    pad = _Padding.of(bucket)
    gene_cols = core.universe[pad.cols]
    valid = pad.rvalid[:, :, None] & pad.cvalid[:, None, :]
    r3, c3 = pad.rows[:, :, None], pad.cols[:, None, :]
    act = active[r3, c3] & valid

    def t(x):
        return torch.as_tensor(np.ascontiguousarray(x), dtype=f64, device=dev)

    rt = torch.as_tensor(pad.rows, device=dev)
    gt = torch.as_tensor(gene_cols, device=dev)
    Q = pad.qvalid.shape[1]
    return ComponentBatch(
        A=prob.A[rt[:, :, None], rt[:, None, :]].to(f64) * t(pad.rvalid[:, :, None] & pad.rvalid[:, None, :]),
        B=prob.B[rt[:, :, None], gt[:, None, :]].to(f64) * t(valid),
        allowed=t(act),
        penalty=t(core.pen[r3, c3] * valid),
        sign=None if core.sign is None else t(core.sign[r3, c3] * valid),
        # the constrained Q × Q corner: rows of the component's own genes come first
        col_scale=t(np.where(pad.qvalid, prob.sigma[pad.rows[:, :Q]], 1.0)),
        target_scale=t(np.where(pad.cvalid, prob.target_scale[gene_cols], 1.0)),
        V=run.V[rt[:, :, None], gt[:, None, :]].to(f64) * t(act),
    )


def scatter(run: Run, core: Core, bucket: list[Component], Vb: torch.Tensor) -> None:
    """Write a solved bucket back into the run's weights (its columns replaced whole)."""
    dev = run.prob.device
    Vout = Vb.to(run.V.dtype)
    for b, comp in enumerate(bucket):
        g = torch.as_tensor(core.universe[comp.cols], device=dev)
        run.V[:, g] = 0.0
        run.V[torch.as_tensor(comp.rows, device=dev)[:, None], g[None, :]] = Vout[b, : len(comp.rows), : len(comp.cols)]


def solve_bucket(run: Run, core: Core, active: np.ndarray, bucket: list[Component], index: int):
    """Gather, run the central path (resuming a checkpointed stage) and scatter; return its result.

    The central path checkpoints after every stage (rate-limited), so a large core killed
    mid-path resumes at its last finished stage instead of from the start.
    """
    t = run.prob.s.tuning
    batch = gather(run, core, active, bucket)
    state, start = run.state, 0
    if state.get("path_bucket") == index and tuple(state["path_V"].shape) == tuple(batch.V.shape):
        batch.V, start = state["path_V"].to(run.prob.device, torch.float64), int(state["path_stage"])
        log.info("resuming the central path of bucket %d after stage %d", index, start)

    def on_stage(stage: int, Vb: torch.Tensor) -> None:
        run.save(path_bucket=index, path_stage=stage, path_V=snapshot(Vb))

    settings = PathSettings(
        acyclicity=core.acyclicity,
        max_inner=t.inner_max_iter,
        ftol=t.inner_ftol,
        s_path=tuple(np.linspace(1.0, t.path_s_final, 5).tolist()),
        deadline=run.deadline,
        threads=run.prob.s.core_threads,
        start_stage=start,
        on_stage=on_stage,
        # standardised statistics are symmetric: without it, i -> j and j -> i tie (_asymmetry)
        tie_break=TIE_BREAK if run.prob.s.standardize else 0.0,
        seed=run.prob.s.seed,
    )
    res = solve_components(batch, settings)
    scatter(run, core, bucket, res.V)
    return res
