"""The solver's driver: the stages in order, one typed run state, checkpoints, the DAG out.

Score  F(W) = ½ tr((I−W)ᵀ C (I−W)) + λ Σ p_ij |w_ij|  subject to W being a DAG, with W
zero outside the k regulator rows (docs/design.md). The stages:

1. lasso (lasso.py): every target column outside the cycle core of the allowed-edge
   graph is an independent masked lasso, solved batched; these columns are final.
2. core (components.py, central_path.py): the constrained problem on the cycle-core
   columns. A core of at most ``full_core_max`` genes is one component solved whole; a
   larger one is split into the components of its lasso candidates (active set).
3. refits (refit.py): the order refit (on raw data the better of the constrained solve's
   order and the least-residual order, by the score), or on a standardised whole core
   the support refit; then refinement after a whole core.
4. after a candidate screen (screen.py), every column re-solved over the whole mask in
   the causal order found (refit.complete_in_order).
5. threshold |w|, break any cycle left, return a DAG (postprocess.py).

The checkpointed ``Run.state`` records the stage reached (``lasso`` with its next block,
``core`` with its round and next bucket, the central path's last finished stage) and
snapshots of the weights; a killed run resumes from it.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch

from gene_dag.graph import strong_components
from gene_dag.prior import EdgeMask
from gene_dag.solver.acyclicity import choose_acyclicity
from gene_dag.solver.checkpoint import Checkpointer, fingerprint, snapshot
from gene_dag.solver.components import Component, buckets, find_components, solve_bucket
from gene_dag.solver.lasso import lasso_columns, lipschitz
from gene_dag.solver.postprocess import threshold_to_dag
from gene_dag.solver.problem import Problem, required_gene_matrix, to_gene_matrix, total_score
from gene_dag.solver.refit import (
    complete_in_order,
    least_residual_core,
    order_refit,
    path_or_bic_refit,
    refine_core,
    support_refit,
)
from gene_dag.solver.settings import SolverSettings

log = logging.getLogger(__name__)


@dataclass
class SolveResult:
    """The DAG (d × d CSR, original units) and everything worth reporting about the run."""

    W: sp.csr_matrix
    W_continuous: sp.csr_matrix
    info: dict = field(default_factory=dict)
    #: after a candidate screen: the k × d edges outside it that the completion found
    screen_missed: sp.csr_matrix | None = None


@dataclass
class Run:
    """What every stage works on: the problem, the live weights, the checkpointed state, the record."""

    prob: Problem
    V: torch.Tensor  # k × d scaled weights, on the device
    state: dict  # what a checkpoint holds (tensors, numbers, strings)
    ckpt: Checkpointer
    deadline: float | None  # time.monotonic() value
    info: dict
    #: results worth reusing within this run, not checkpointed (e.g. the least-residual fit)
    cache: dict = field(default_factory=dict)
    n_cells: int | None = None  # cells behind the statistics, where the caller gives them

    def out_of_time(self) -> bool:
        """Whether the time limit has passed."""
        return self.deadline is not None and time.monotonic() > self.deadline

    def save(self, *, force: bool = False, **updates) -> None:
        """Record ``updates`` in the state and checkpoint it (rate-limited unless ``force``)."""
        self.state.update(updates)
        self.ckpt.save(self.state, force=force)


@dataclass
class Core:
    """The cycle core's columns and the dense mask blocks of the constrained stage."""

    rows: np.ndarray  # regulator rows of the core genes
    universe: np.ndarray  # gene columns: core genes first (then the rest when undecomposed)
    allowed: np.ndarray  # k × universe blocks
    pen: np.ndarray
    sign: np.ndarray | None
    required: np.ndarray
    active_set: bool  # too large to solve whole: components of the lasso candidates
    acyclicity: str = "logdet"

    @classmethod
    def of(cls, prob: Problem, rows: np.ndarray) -> Core:
        """Build the core of ``prob`` on these regulator rows, with its mask blocks."""
        t = prob.s.tuning
        core_cols = prob.R[rows]
        rest = np.setdiff1d(np.arange(prob.d), core_cols) if not t.decompose else np.zeros(0, np.int64)
        universe = np.concatenate([core_cols, rest])
        allowed = prob.allowed(universe)
        return cls(
            rows,
            universe,
            allowed,
            np.broadcast_to(prob.penalty(universe), allowed.shape),
            prob.sign(universe),
            prob.required(universe),
            t.decompose and rows.size > t.full_core_max,
        )


def solve(
    cov_rows: np.ndarray,
    variances: np.ndarray,
    mask: EdgeMask,
    settings: SolverSettings | None = None,
    checkpoint_dir=None,
    *,
    V0: torch.Tensor | None = None,
    n_cells: int | None = None,
) -> SolveResult:
    """Learn the DAG from covariance rows C[R, :] (k × d) and the diagonal of C (d,).

    ``mask.regulators`` gives R; ``settings.lambda1`` and ``w_threshold`` must be set
    (:func:`gene_dag.solver.settings.resolved` fills the automatic ones).
    ``V0`` (k × d, scaled space) warm-starts the lasso stage, e.g. with the λ path's
    neighbourhood fit at the same λ, whose independent columns are already the answer.
    A mask with a candidate screen (``mask.candidates``) needs ``n_cells``, the cells
    behind the statistics: the completion after the screen penalises edges from outside
    it at the noise level, which depends on them.
    Returns the thresholded DAG in original units.
    """
    s = settings or SolverSettings()
    if mask.candidates is not None and n_cells is None:
        raise ValueError("a screened mask needs n_cells (the completion's noise level depends on it)")
    t0 = time.monotonic()
    prob = Problem(cov_rows, variances, mask, s)
    if s.device == "auto":
        log.info(
            "device auto: solving on %s%s",
            prob.device,
            "" if prob.device.type == "cuda" else " (torch sees no CUDA device)",
        )
    ckpt = Checkpointer(checkpoint_dir, fingerprint(cov_rows, variances, mask, s), s.checkpoint_interval)
    state = ckpt.load(validate=lambda st: _state_problem(st, prob.k, prob.d)) or _fresh_state(prob, V0)
    resumed = state["stage"] != "lasso" or state["block"] > 0
    info = {
        "device": str(prob.device),
        "n_genes": prob.d,
        "n_regulators": prob.k,
        "resumed": resumed,
        "n_constant_regulator_rows": int(prob.dead_rows.sum()),
        "precision": str(prob.dtype).removeprefix("torch."),
        "min_residual_fraction": prob.min_residual_fraction,
    }
    log.info(
        "precision %s (smallest residual variance fraction %.3g; nan: not checked)",
        info["precision"],
        prob.min_residual_fraction,
    )
    run = Run(
        prob,
        state["V"].to(prob.device, prob.dtype, copy=True),
        state,
        ckpt,
        None if s.max_time is None else t0 + s.max_time,
        info,
        n_cells=n_cells,
    )
    timed_out = _run_stages(run, cycle_core(prob))
    missed = None
    if mask.candidates is not None and not timed_out:
        started = time.monotonic()
        missed = complete_in_order(run, n_cells)
        run.info["time_completion_s"] = time.monotonic() - started
    result = _finish(run, t0, timed_out=timed_out)
    result.screen_missed = missed
    return result


def _run_stages(run: Run, core_rows: np.ndarray) -> bool:
    """Run the lasso and core stages, resumably; return True when the time limit stopped them."""
    t = run.prob.s.tuning
    run.info["n_core"] = int(core_rows.size)
    timed_out = False
    try:
        if run.state["stage"] == "lasso":
            if t.decompose or core_rows.size == 0:
                # a core solved whole starts its central path at 0: its lasso would be wasted
                whole = t.decompose and 0 < core_rows.size <= t.full_core_max
                skip = run.prob.R[core_rows] if whole else np.zeros(0, dtype=np.int64)
                started = time.monotonic()
                timed_out = lasso_stage(run, np.setdiff1d(np.arange(run.prob.d), skip))
                run.info["time_lasso_s"] = time.monotonic() - started
            if not timed_out:
                run.save(force=True, stage="core", round=0, bucket=0, V=snapshot(run.V))
        if not timed_out and core_rows.size:
            timed_out = core_stage(run, Core.of(run.prob, core_rows))
    except BaseException:
        # a stop signal (signals.Interrupted), Ctrl-C or a failure: keep the work done so
        # far; the state only ever holds snapshots taken at consistent points
        run.save(force=True)
        raise
    if timed_out:
        run.save(force=True)
    return timed_out


def _finish(run: Run, t0: float, *, timed_out: bool) -> SolveResult:
    """Threshold to a DAG and complete the record."""
    prob, info = run.prob, run.info
    W_cont = to_gene_matrix(prob, run.V)
    required = required_gene_matrix(prob)
    W, post = threshold_to_dag(W_cont, prob.s.w_threshold, required)
    info.update(post)
    info["required_edges_missing"] = _missing_required(W, required)
    info["timed_out"] = timed_out
    info["converged"] = bool(not timed_out and info.get("lasso_converged", True) and info.get("core_converged", True))
    info["score"] = total_score(prob, W)
    info["wall_time_s"] = time.monotonic() - t0
    info["checkpoints_written"] = run.ckpt.saves
    log.info(
        "solve done: %d edges, score %.6g, converged %s, %.1f s",
        W.nnz,
        info["score"],
        info["converged"],
        info["wall_time_s"],
    )
    return SolveResult(W, W_cont, info)


def _fresh_state(prob: Problem, V0: torch.Tensor | None = None) -> dict:
    V = torch.zeros(prob.k, prob.d, dtype=prob.dtype) if V0 is None else V0.detach().to("cpu", prob.dtype, copy=True)
    return {"stage": "lasso", "block": 0, "V": V}


def _state_problem(state: dict, k: int, d: int) -> str | None:
    """Why a checkpoint's state cannot be resumed for a k × d problem, or None when it can."""
    if state.get("stage") not in ("lasso", "core") or not isinstance(state.get("block", 0), int):
        return f"unknown stage {state.get('stage')!r}"
    V = state.get("V")
    if not isinstance(V, torch.Tensor) or tuple(V.shape) != (k, d):
        return f"weights of shape {tuple(V.shape) if isinstance(V, torch.Tensor) else None}, expected {(k, d)}"
    return None


def cycle_core(prob: Problem) -> np.ndarray:
    """Return the regulator rows inside a non-trivial strongly connected component of the allowed graph."""
    if prob.k < 2:
        return np.zeros(0, dtype=np.int64)
    allowed_RR = prob.allowed(prob.R)  # k × k, row = regulator, column = regulator as target
    live = ~prob.dead_rows
    if allowed_RR.sum() == live.sum() * (live.sum() - 1) and live.all():
        return np.arange(prob.k)  # every regulator may regulate every other: one component
    labels = strong_components(sp.csr_matrix(allowed_RR))
    sizes = np.bincount(labels)
    return np.flatnonzero(sizes[labels] > 1)


def _progress(iterable, total: int, desc: str):
    """Wrap ``iterable`` in a tqdm bar when attached to a terminal."""
    if sys.stderr.isatty():
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, leave=False)
    return iterable


def lasso_stage(run: Run, columns: np.ndarray) -> bool:
    """Solve the batched lasso over ``columns``, block by block; return True when time ran out."""
    prob, state = run.prob, run.state
    if columns.size == 0:
        run.info.update(lasso_iterations=0, lasso_converged=True)
        return False
    L = lipschitz(prob.A, seed=prob.s.seed)
    bs = prob.column_block_size()
    blocks = [columns[a : a + bs] for a in range(0, columns.size, bs)]
    log.info("lasso: %d columns in %d block(s) of %d, k = %d, L = %.3g", columns.size, len(blocks), bs, prob.k, L)
    iters, converged = 0, True
    for b in _progress(range(state["block"], len(blocks)), len(blocks) - state["block"], "lasso"):
        cols = blocks[b]
        res = lasso_columns(prob, cols, prob.allowed(cols), run.V[:, cols], L=L, deadline=run.deadline)
        run.V[:, cols] = res.V
        iters += res.iterations
        converged &= res.converged
        log.info("lasso block %d/%d: %d iterations, converged %s", b + 1, len(blocks), res.iterations, res.converged)
        out_of_time = run.out_of_time()
        # a block cut short by the deadline is not done: a resumed run continues it
        run.save(block=b if out_of_time and not res.converged else b + 1, V=snapshot(run.V))
        if out_of_time:
            run.info.update(lasso_iterations=iters, lasso_converged=False)
            return True
    run.info.update(lasso_iterations=iters, lasso_converged=converged)
    return False


def core_stage(run: Run, core: Core) -> bool:
    """Solve the cycle core under the constraint, then refit it; return True when time ran out.

    Columns are the core genes (in core-row order, so row i and column i are one gene);
    without decomposition, every other gene follows as a column of the same problem.
    """
    started = time.monotonic()
    if run.state["round"] == 0 and "active" not in run.state:
        outcome = least_residual_core(run, core)
        if outcome == "timed_out":
            run.info["core_converged"] = False
            return True
        if outcome == "solved":
            run.save(force=True, round=1, bucket=0, core_converged=True, core_order="least_residual", V=snapshot(run.V))
    by_order = run.state.get("core_order") == "least_residual"
    if run.state["round"] == 0:
        if _solve_core(run, core, _active_edges(run, core)):
            return True
        run.save(round=1, bucket=0, core_converged=run.info["core_converged"], V=snapshot(run.V))
    run.info["time_core_s"], started = time.monotonic() - started, time.monotonic()
    run.info["core_converged"] = bool(run.state.get("core_converged", True))
    run.info["core_rounds"] = 1
    run.info.setdefault("core_order", "least_residual" if by_order else "central_path")
    t = run.prob.s.tuning
    refine = t.decompose and t.refine
    if by_order:
        pass  # the core's weights are already the lasso in its order
    elif core.active_set or (t.refit and not run.prob.s.standardize):
        order_refit(run, core)
    elif t.refit and _bic_order_applies(run, core):
        path_or_bic_refit(run, core, refine=refine)
        refine = False  # done on the path's network; reversals on its score would undo the BIC's order
    elif t.refit:
        support_refit(run, core)
    if refine:
        refine_core(run, core)
    run.info["time_refits_s"] = time.monotonic() - started
    return False


def _bic_order_applies(run: Run, core: Core) -> bool:
    """Whether the standardised whole core gets the order search on the BIC (refit.path_or_bic_refit)."""
    t = run.prob.s.tuning
    if run.prob.s.order_search == "never" or run.n_cells is None:
        return False
    if core.rows.size > t.order_search_max:
        log.info(
            "order search: core of %d genes is above order_search_max = %d; support refit instead",
            core.rows.size,
            t.order_search_max,
        )
        return False
    return True


def _active_edges(run: Run, core: Core) -> np.ndarray:
    """Choose the edges of the constrained problem (kept in the state: a resumed run has the same)."""
    if "active" in run.state:
        return run.state["active"].numpy().astype(bool)
    if core.active_set:
        W_lasso = run.V[:, core.universe].cpu().numpy() / run.prob.sigma[:, None]
        active = (np.abs(W_lasso) >= run.prob.s.tuning.candidate_threshold) & core.allowed
    else:
        active = core.allowed.copy()  # one constrained problem over every allowed edge
    active |= core.required
    run.V[:, core.universe] = run.V[:, core.universe] * torch.as_tensor(active, dtype=run.V.dtype, device=run.V.device)
    run.state.update(active=torch.as_tensor(active), V=snapshot(run.V))
    return active


def _solve_core(run: Run, core: Core, active: np.ndarray) -> bool:
    """Solve every component of the active edges, bucket by bucket; return True when time ran out."""
    prob = run.prob
    if prob.s.tuning.decompose:
        comps = find_components(active, core)
    else:
        order = np.concatenate([core.rows, np.setdiff1d(np.arange(prob.k), core.rows)])
        comps = [Component(order, np.arange(core.universe.size), core.rows.size)]
    batches = buckets(comps, prob)
    max_q = max((c.q for c in comps), default=0)
    core.acyclicity = choose_acyclicity(prob.s.acyclicity)
    log.info(
        "core: %d component(s) to solve (largest %d genes), %d active edges, h = %s",
        len(comps),
        max_q,
        int(active.sum()),
        core.acyclicity,
    )
    h_max, ok = 0.0, True
    for bi in _progress(range(run.state.get("bucket", 0), len(batches)), len(batches), "core"):
        res = solve_bucket(run, core, active, batches[bi], bi)
        run.info.setdefault("path_stages", []).extend({"round": 0, "bucket": bi, **st} for st in res.history)
        h_max, ok = max(h_max, float(res.h.max())), ok and bool(res.converged.all())
        if res.timed_out:  # the bucket is not done: a resumed run continues its path
            run.save(force=True)
            run.info["core_converged"] = False
            return True
        for key in ("path_bucket", "path_stage", "path_V"):
            run.state.pop(key, None)
        run.save(bucket=bi + 1, V=snapshot(run.V))
    run.info["core_converged"] = ok
    run.info.setdefault("rounds", []).append(
        {"round": 0, "components": len(comps), "largest": max_q, "active_edges": int(active.sum()), "max_h": h_max}
    )
    return False


def _missing_required(W: sp.csr_matrix, required: sp.csr_matrix | None) -> int:
    """Count (and warn about) required edges absent from the output (weight 0: a constant regulator)."""
    if required is None:
        return 0
    req = required.tocoo()
    missing = int((np.asarray(W[req.row, req.col]).ravel() == 0).sum())
    if missing:
        log.warning(
            "%d required edge(s) have weight 0 in the data (constant regulator?) and are missing from the network",
            missing,
        )
    return missing
