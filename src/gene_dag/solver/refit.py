"""After the constrained stage: refit the weights of the core on what it found, then refine.

* order refit (raw data, and every active-set solve): a causal order turns the core into
  one more batched lasso (each gene may take parents only earlier in the order);
  re-solving it removes the shrinkage of the h/μ term and lets back edges the
  constrained solve missed. Of the constrained solve's order and, on raw data, the
  least-residual order (ordering.py), the one with the lower score is kept.
* support refit (whole core, standardised data): the same lasso on the support the
  constrained solve found.
* refinement (whole core): greedy single-edge reversals on the same score (refine.py).

Required edges of the prior are in every support, every order and every DAG here.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
import torch

from gene_dag.graph import topological_order
from gene_dag.solver import score
from gene_dag.solver.lasso import lasso_columns
from gene_dag.solver.order_search import OrderSearchResult, best_order_search, explained_last_order
from gene_dag.solver.ordering import LEAST_RESIDUAL_MAX, ordered_residuals, screened_ordered_residuals
from gene_dag.solver.penalty import l1_value
from gene_dag.solver.postprocess import threshold_to_dag
from gene_dag.solver.problem import required_gene_matrix, to_gene_matrix
from gene_dag.solver.refine import refine_reversals
from gene_dag.solver.working_set import GATHER_ELEMENTS

if TYPE_CHECKING:
    from gene_dag.solver.driver import Core, Run
    from gene_dag.solver.problem import Problem

log = logging.getLogger(__name__)

#: Rounds of the completion's optimality check (each adds the edges still violating it).
COMPLETION_ROUNDS = 5
#: The least-residual order replaces the central path when the noise variances of its
#: fit are equal within this factor (largest / smallest over the core genes).
EQUAL_NOISE_RATIO = 1.5
#: Residual variances of the order itself (each gene given all before it) this far apart
#: rule the model out before any fit: genes determined by the ones before them (fewer
#: cells than genes) or noise variances of different orders of magnitude.
ORDER_RESIDUAL_RATIO = 1e3
#: After a screen, the share of genes at either end left out of those two ratios.
SCREENED_TRIM = 0.01


def least_residual_core(run: Run, core: Core) -> str:
    """On raw data, solve the core in the least-residual order when its noise variances are equal.

    The raw score is the likelihood of a linear SEM with equal noise variances; under that
    model the least-residual order is a causal order (ordering.py) and the constrained
    optimum is the lasso in it, so the central path, a search for the same order by
    continuous optimisation, has nothing to add. Whether the data fit the model is
    checked on the fit itself: the residual variances of the core genes in that order
    must agree within ``EQUAL_NOISE_RATIO`` (after a screen, all but the ``SCREENED_TRIM``
    most extreme at each end: see :func:`spread`). Returns ``"solved"`` when the core was
    solved so; ``"timed_out"`` when the time limit stopped the fit (the weights are
    untouched, and a resumed run tries again); ``"declined"`` (weights untouched) when
    the check fails, the data are standardised, the core is too large to order, or
    ``Tuning.core_order`` asks for the central path.
    """
    prob, V = run.prob, run.V
    if prob.s.standardize or prob.s.tuning.core_order != "auto" or not _orderable(prob, core):
        return "declined"
    order, pivots = _core_order(prob, core)
    run.cache["least_residual_order"] = order
    screened = prob.mask.candidates is not None
    live = pivots[prob.variances[prob.R[core.rows[order]]] > 0]
    if not spread(live, screened=screened) <= ORDER_RESIDUAL_RATIO:
        run.info["core_noise_variance_ratio"] = math.inf
        log.info("core: residuals of the least-residual order differ over %.0fx: central path", ORDER_RESIDUAL_RATIO)
        return "declined"
    res, value = _refit_in_order(run, core, order)
    if run.out_of_time():
        return "timed_out"
    run.cache["least_residual_fit"] = (res, value)
    cols = prob.R[core.rows]
    noise = res.residual_variance.cpu().numpy()[prob.variances[cols] > 0]  # a constant gene has no noise
    ratio = spread(noise, screened=screened)
    run.info["core_noise_variance_ratio"] = ratio
    if not ratio <= EQUAL_NOISE_RATIO:
        log.info(
            "core: noise variances in the least-residual order differ %.3gx (> %.3g): central path",
            ratio,
            EQUAL_NOISE_RATIO,
        )
        return "declined"
    V[:, cols] = res.V
    run.info.update(
        core_order="least_residual",
        refit_iterations=res.iterations,
        refit_converged=res.converged,
        refit_order="least_residual",
        refit_order_scores={"least_residual": value},
    )
    # in the state, which the next checkpoint holds: a resumed run skips this fit
    run.state["solved_order"] = torch.as_tensor(cols[order])
    log.info("core: least-residual order, noise variances equal within %.3gx: no central path needed", ratio)
    return "solved"


def spread(variances: np.ndarray, *, screened: bool) -> float:
    """Largest over smallest of the core's residual or noise variances (inf for none or a zero).

    After a candidate screen the genes whose parents it missed have inflated residuals,
    a failure of the screen rather than of the model: the ratio is then taken between
    the ``SCREENED_TRIM`` and 1 − ``SCREENED_TRIM`` quantiles, and the completion finds
    those parents later.
    """
    if not variances.size:
        return math.inf
    low, high = (
        np.quantile(variances, [SCREENED_TRIM, 1.0 - SCREENED_TRIM]) if screened else (variances.min(), variances.max())
    )
    return float(high / low) if low > 0 else math.inf


def core_dag(prob: Problem, V: torch.Tensor, core_rows: np.ndarray) -> sp.csr_matrix:
    """Return the thresholded DAG among core genes (by core position, original units).

    Required edges are included, and any cycle is broken the way the final output breaks it.
    """
    cols = torch.as_tensor(prob.R[core_rows], device=V.device)
    Wc = V[core_rows][:, cols].cpu().numpy() / prob.sigma[core_rows][:, None]
    thr = prob.s.w_threshold
    required = prob.required(prob.R[core_rows])[core_rows]
    # a required edge belongs to the structure even where its weight is still 0
    Wc = np.where(required & (Wc == 0), thr, Wc)
    strong = np.where((np.abs(Wc) >= thr) | required, Wc, 0.0)
    dag, _ = threshold_to_dag(sp.csr_matrix(strong), thr, sp.csr_matrix(required))
    return dag


def support_refit(run: Run, core: Core) -> None:
    """Re-estimate the core weights on the support the constrained solve found (standardised data).

    On standardised genes the variances carry no order, and a refit in an order would
    let in every edge that order allows: where the order is wrong, those are the extra
    edges that compensate for it. Re-solving on the found support only removes the
    shrinkage of the h/μ term.
    """
    prob, V = run.prob, run.V
    Wc = V[:, core.universe].cpu().numpy() / prob.sigma[:, None]
    support = (core.allowed & (np.abs(Wc) >= prob.s.tuning.support_refit_threshold)) | core.required
    sup = torch.as_tensor(support, dtype=prob.dtype, device=prob.device)
    res = lasso_columns(prob, core.universe, support, V[:, core.universe] * sup, deadline=run.deadline)
    V[:, core.universe] = res.V
    run.info.update(refit_iterations=res.iterations, refit_converged=res.converged, refit_order="none (support)")


def bic_order_refit(run: Run, core: Core, *, max_edges: float | None = None) -> bool:
    """Standardised whole core: search the order on the Gaussian BIC and fit the parents it selects.

    The equal-variance score of the constrained solve is not scale-invariant, and on
    standardised genes it tends to put hubs after their children (order_search.py).
    The BIC with one noise variance per gene is, so its best order (BOSS, from three
    starts) replaces it; the weights are then the least-squares fit of each core gene on
    the parents the BIC selected: the criterion chose the support, so its weights are the
    model's maximum-likelihood ones (λ shaped only the constrained solve's start).
    Regulators outside the core that may regulate a core gene are available to every
    core gene. The best network after each start is checkpointed: a resumed run goes on
    with the next start.

    Returns False, with the weights left as they were, as soon as the best network so
    far has more than ``max_edges`` edges at the network's threshold (from the first
    start, the one that is best where the linear model holds, so rejecting costs one).
    """
    prob, V, t = run.prob, run.V, run.prob.s.tuning
    q = core.rows.size
    outside = np.setdiff1d(np.flatnonzero(core.allowed[:, :q].any(axis=1)), core.rows)
    nodes = np.concatenate([outside, core.rows])
    C = prob.scaled_block(nodes)
    # BOSS finds a local optimum: start from the order that puts the best-explained genes
    # last (where genes are nearly determined by others, other starts can settle in orders
    # with several times the edges), the constrained solve's order, then seeded random
    # orders, and keep the best
    rng = np.random.default_rng(prob.s.seed)
    starts = [explained_last_order(C, q), topological_order(core_dag(prob, V, core.rows), prob.sigma[core.rows])]
    starts = starts[: max(t.order_search_starts, 1)]
    starts += [rng.permutation(q) for _ in range(t.order_search_starts - len(starts))]
    found, done = _resumed_search(run)
    weights = None if found is None else _least_squares_on(found.parents, C, nodes, prob.k)
    # i == done > 0: the checkpoint's best, checked against the limit like a new start's
    for i in range(max(done, 1), len(starts) + 1):
        if i > done:
            if found is not None and run.out_of_time():
                break  # the time limit: the best start so far stands, and a resumed run goes on
            trial = _search_from(run, core, C, nodes, starts[i - 1])
            log.info("order search start %d/%d: BIC %.6g after %d sweep(s)", i, len(starts), trial.score, trial.sweeps)
            if found is None or trial.score < found.score:
                found, weights = trial, _least_squares_on(trial.parents, C, nodes, prob.k)
            if not run.out_of_time():  # a start the time limit cut short is redone on resuming
                _save_search(run, found, i)
        record = {"bic": found.score, "sweeps": found.sweeps, "converged": found.converged, "starts": i}
        record["edges"] = _edges_above_threshold(prob, weights)
        # the best network so far is over the limit: no later start is needed to say so
        if max_edges is not None and record["edges"] > max_edges:
            run.info["order_search"] = record
            return False
    V[:, prob.R[core.rows]] = weights.to(V.device, V.dtype)
    run.state["solved_order"] = torch.as_tensor(prob.R[core.rows][found.order])
    run.info.update(refit_order="bic_search", order_search=record)
    log.info("order search: BIC %.6g after %d sweep(s), %d edges", found.score, found.sweeps, record["edges"])
    return True


def _search_from(run: Run, core: Core, C: np.ndarray, nodes: np.ndarray, start: np.ndarray) -> OrderSearchResult:
    """One BOSS run of the core's order from ``start`` (``C`` over ``nodes``: outside regulators, then the core)."""
    q, t = core.rows.size, run.prob.s.tuning
    return best_order_search(
        C,
        run.n_cells,
        start,
        allowed=core.allowed[nodes, :q],
        # a constant gene can carry no weight: its required edges are reported missing
        required=core.required[nodes, :q] & (np.diag(C) > 0)[:, None],
        penalty_discount=t.order_search_discount,
        gamma=t.order_search_gamma,
        max_sweeps=t.order_search_sweeps,
        deadline=run.deadline,
    )


def _save_search(run: Run, found: OrderSearchResult, starts_done: int) -> None:
    """Checkpoint the best search result after ``starts_done`` starts (a start can take minutes)."""
    run.save(
        force=True,
        order_search_done=starts_done,
        order_search_order=torch.as_tensor(found.order),
        order_search_parents=torch.as_tensor(found.parents),
        order_search_score=float(found.score),
        order_search_sweeps=int(found.sweeps),
        order_search_converged=bool(found.converged),
    )


def _resumed_search(run: Run) -> tuple[OrderSearchResult | None, int]:
    """Return the best search result a checkpoint holds and its number of starts (None, 0 when none)."""
    done = int(run.state.get("order_search_done", 0))
    if not done:
        return None, 0
    st = run.state
    found = OrderSearchResult(
        st["order_search_order"].numpy(),
        st["order_search_parents"].numpy(),
        float(st["order_search_score"]),
        int(st["order_search_sweeps"]),
        bool(st["order_search_converged"]),
    )
    log.info("order search: resumed after %d start(s) from the checkpoint", done)
    return found, done


def path_or_bic_refit(run: Run, core: Core, *, refine: bool) -> None:
    """Standardised whole core: the λ path's network or the BIC order search's, whichever fits the data.

    First the support refit (and the reversal refinement when ``refine``) of the path's
    network; then the order search (:func:`bic_order_refit`), kept when its network has
    at most ``order_search_max_edge_ratio`` times the path's edges. Under a linear SEM
    both criteria are consistent and choose supports of similar size; when the linear
    Gaussian model does not describe the data (nonlinear regulation, dropout), every
    weak dependence passes the BIC's penalty with thousands of cells, and its network
    grows several times larger than the path's: the path's network is then kept. With
    ``order_search="always"`` the search's network is kept without the path's refit.
    """
    prob, t = run.prob, run.prob.s.tuning
    if prob.s.order_search == "always":
        bic_order_refit(run, core)
        _warn_unless_converged(run.info["order_search"])
        return
    support_refit(run, core)
    if refine:
        refine_core(run, core)
    cols = torch.as_tensor(prob.R[core.rows], device=run.V.device)
    path_edges = _edges_above_threshold(prob, run.V[:, cols])
    kept = bic_order_refit(run, core, max_edges=t.order_search_max_edge_ratio * max(path_edges, 1))
    found = run.info["order_search"]
    found.update(path_edges=path_edges, kept=kept)
    if kept:
        _warn_unless_converged(found)
        return
    log.info(
        "order search: the BIC keeps %d edges, over %g times the λ path's %d: the linear Gaussian model does "
        "not describe these data (nonlinear regulation, dropout), so the path's network is kept",
        found["edges"],
        t.order_search_max_edge_ratio,
        path_edges,
    )


def _edges_above_threshold(prob: Problem, weights: torch.Tensor) -> int:
    """Return the number of entries of k × q scaled weights at or above the network's threshold."""
    W = weights.double().cpu().numpy() / prob.sigma[:, None]
    return int((np.abs(W) >= prob.s.w_threshold).sum())


def _warn_unless_converged(found: dict) -> None:
    """WARNING when the kept order search stopped (sweep limit or time) before a local optimum."""
    if not found["converged"]:
        log.warning("order search: stopped after %d sweep(s) before a local optimum of the BIC", found["sweeps"])


def _least_squares_on(parents: np.ndarray, C: np.ndarray, nodes: np.ndarray, k: int) -> torch.Tensor:
    """Return the k × q scaled weights of each target regressed on its selected parents."""
    m, q = parents.shape
    out = np.zeros((k, q))
    for t in range(q):
        S = np.flatnonzero(parents[:, t])
        if S.size:
            out[nodes[S], t] = np.linalg.lstsq(C[np.ix_(S, S)], C[S, m - q + t], rcond=None)[0]
    return torch.as_tensor(out)


def order_refit(run: Run, core: Core) -> None:
    """Refit the core columns in a causal order: the better, by the score, of two orders.

    Given an order, the DAG constraint is a mask (each gene may have parents only
    earlier in the order) and the problem is the convex batched lasso again: edges the
    constrained solve missed come back, and weights lose the h penalty's shrinkage. The
    two orders are the constrained solve's, a topological order of its thresholded DAG
    among core genes (ties by increasing variance, the order raw-scale SEMs tend to
    follow), and, on raw data, the least-residual order of the statistics (ordering.py).
    Both give DAGs, so their scores compare like for like; the lower one is kept.
    Required edges are in both orders.
    """
    prob, V = run.prob, run.V
    orders = {"constrained": topological_order(core_dag(prob, V, core.rows), prob.sigma[core.rows])}
    # on standardised genes every variance is 1 and the least-residual order's first
    # choices are ties broken by rounding: it carries no information there
    if _orderable(prob, core) and not prob.s.standardize:
        orders["least_residual"] = run.cache.get("least_residual_order")
        if orders["least_residual"] is None:
            orders["least_residual"] = _core_order(prob, core)[0]
    best, scores, iterations = None, {}, 0
    for name, order in orders.items():
        # the least-residual fit, when least_residual_core made it, is the same convex lasso
        cached = run.cache.get("least_residual_fit") if name == "least_residual" else None
        res, value = cached or _refit_in_order(run, core, order)
        scores[name], iterations = value, iterations + res.iterations
        if best is None or value < scores[best[0]]:
            best = (name, res)
    name, res = best
    V[:, prob.R[core.rows]] = res.V
    run.state["solved_order"] = torch.as_tensor(prob.R[core.rows][orders[name]])
    run.info.update(
        refit_iterations=iterations, refit_converged=res.converged, refit_order=name, refit_order_scores=scores
    )
    log.info("order refit: %s order kept (scores %s)", name, ", ".join(f"{k} {v:.6g}" for k, v in scores.items()))


def _refit_in_order(run: Run, core: Core, order: np.ndarray):
    """Lasso of the core columns with parents earlier in ``order`` (core positions); its result and score."""
    prob, V = run.prob, run.V
    core_cols = prob.R[core.rows]
    rank = np.empty(core.rows.size, dtype=np.int64)
    rank[order] = np.arange(core.rows.size)
    allowed = prob.allowed(core_cols)
    allowed[core.rows, :] &= rank[:, None] < rank[None, :]
    start = V[:, core_cols] * torch.as_tensor(allowed, dtype=prob.dtype, device=prob.device)
    res = lasso_columns(prob, core_cols, allowed, start, deadline=run.deadline)
    fit, _ = score.value_and_gradient(prob.A.double(), prob.B[:, core_cols].double(), res.V.double())
    pen = torch.as_tensor(np.broadcast_to(prob.penalty(core_cols), allowed.shape).copy(), device=prob.device)
    return res, float(fit) + float(l1_value(res.V.double(), pen))


def _orderable(prob: Problem, core: Core) -> bool:
    """Whether the core's least-residual order is computed: any size after a screen, else up to LEAST_RESIDUAL_MAX."""
    return prob.mask.candidates is not None or core.rows.size <= LEAST_RESIDUAL_MAX


def _core_order(prob: Problem, core: Core) -> tuple[np.ndarray, np.ndarray]:
    """Return the core's least-residual order and residual variances (ordering.py).

    After a candidate screen each gene is conditioned on its placed candidates only:
    with about as many cells as genes, conditioning on every earlier gene would drive
    the late residuals to 0.
    """
    if prob.mask.candidates is None:
        return ordered_residuals(_core_covariance(prob, core), _core_required(core))
    q = core.rows.size
    candidates = core.allowed[core.rows[:, None], np.arange(q)[None, :]]

    def block(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        r, c = core.rows[rows], core.rows[cols]
        A = prob.A[torch.as_tensor(r)[:, None], torch.as_tensor(c)[None, :]].double().cpu().numpy()
        return A * prob.sigma[r][:, None] * prob.sigma[c][None, :]

    return screened_ordered_residuals(block, candidates, _core_required(core))


def _core_covariance(prob: Problem, core: Core) -> np.ndarray:
    """Return the covariance of the core genes in data units (their variances carry the order)."""
    rows = torch.as_tensor(core.rows, device=prob.device)
    A = prob.A[rows[:, None], rows[None, :]].double().cpu().numpy()
    sd = prob.sigma[core.rows]
    return A * sd[:, None] * sd[None, :]


def _core_required(core: Core) -> np.ndarray | None:
    """Return the required edges among the core genes (core positions), or None without any."""
    req = core.required[core.rows][:, : core.rows.size]
    return req if req.any() else None


def complete_in_order(run: Run, n_cells: int) -> sp.csr_matrix:
    """After a candidate screen: let every allowed parent earlier in the causal order enter.

    The order is a topological order of the DAG found on the screened candidates, ties
    broken by :func:`completion_tie_break`. Given it, every target's problem is a convex
    lasso over the prior's whole mask. Each round checks the optimality conditions of
    every edge outside the screen that agrees with the order (one dense gradient), adds
    those whose gradient exceeds the noise level sqrt(2 log p / n) times the target's
    residual standard deviation times the regulator's sd given the target's current
    parents, and re-solves at the network's λ. This is the score test of adding one
    regulator: its gradient is the covariance of the regulator's part not explained by the
    parents with the target's residual, whose noise is the product of those two sds over
    sqrt(n). The threshold is the universal one (at most about one false entry per target
    among p candidates), in the units that matter: the total sd of a target its parents almost
    determine would hide a missed parent, and so would the marginal sd (1) of a missed
    parent nearly collinear with one the fit took instead. Without it, at a small λ
    (as on raw data), thousands of earlier genes would bring in spurious ones by the
    hundred. Columns of genes that regulate nothing are not ordered: they can close no
    cycle.

    Returns the k × d edges from outside the screen that entered: candidates for one more
    solve, since a parent the screen hid may have put the order wrong.
    """
    prob, V = run.prob, run.V
    dag, _ = threshold_to_dag(to_gene_matrix(prob, V), prob.s.w_threshold, required_gene_matrix(prob))
    rank = np.empty(prob.d, dtype=np.int64)
    ties = completion_tie_break(prob.target_scale, run.state.get("solved_order"))
    rank[topological_order(dag, ties)] = np.arange(prob.d)
    is_regulator = np.zeros(prob.d, dtype=bool)
    is_regulator[prob.R] = True
    margin = math.sqrt(2.0 * math.log(max(prob.k - 1, 2)) / max(n_cells, 2))
    totals = {"screen_edges_entered": 0, "screen_edges_added": 0, "completion_iterations": 0}
    found = []
    converged = True
    bs = prob.column_block_size()
    for a in range(0, prob.d, bs):
        cols = np.arange(a, min(prob.d, a + bs))
        ordered = (rank[prob.R][:, None] < rank[cols][None, :]) | ~is_regulator[cols][None, :]
        screened = prob.allowed(cols) & ordered
        res = _complete_block(run, cols, screened, ordered, margin)
        W = res.V.cpu().numpy() / prob.sigma[:, None]
        rows, where = np.nonzero((W != 0) & ~screened)
        found.append((rows, cols[where]))
        totals["screen_edges_entered"] += int(((W != 0) & ~screened).sum())
        totals["screen_edges_added"] += int(((np.abs(W) >= prob.s.w_threshold) & ~screened).sum())
        totals["completion_iterations"] += res.iterations
        converged = converged and res.converged
    rows = np.concatenate([r for r, _ in found]) if found else np.zeros(0, np.int64)
    cols = np.concatenate([c for _, c in found]) if found else np.zeros(0, np.int64)
    missed = sp.csr_matrix((np.ones(rows.size, dtype=bool), (rows, cols)), shape=(prob.k, prob.d))
    run.info.update(totals, completion_converged=converged)
    log.info(
        "completion in the causal order: %d edge(s) from outside the screen entered, %d above the threshold",
        totals["screen_edges_entered"],
        totals["screen_edges_added"],
    )
    return missed


def completion_tie_break(variances: np.ndarray, solved_order: torch.Tensor | None) -> np.ndarray:
    """Return the key that breaks the ties of the completion's topological order (smaller first).

    Genes that no path of the DAG connects may come in either order, and a parent the
    screen missed can enter only if it comes first. The order the core's lasso was last
    solved in (``solved_order``, gene indices: the least-residual order on raw data, or
    the order the refit kept by the score) is the fit's own answer, so its genes keep
    their positions in it; the others follow by increasing variance, the order raw-scale
    SEMs tend to follow. Without a solved order (standardised core, or a state that does
    not describe these genes) the key is the variance order alone.
    """
    d = variances.size
    key = np.empty(d)
    key[np.argsort(variances, kind="stable")] = np.arange(d)
    if solved_order is None:
        return key
    solved = solved_order.cpu().numpy().astype(np.int64, copy=False).ravel()
    # a checkpoint is read back: an order that is not a set of distinct genes here is ignored
    in_range = solved.size == 0 or (solved.min() >= 0 and solved.max() < d)
    if not in_range or np.unique(solved).size != solved.size:
        return key
    key += d
    key[solved] = np.arange(solved.size)
    return key


def _complete_block(run: Run, cols: np.ndarray, work: np.ndarray, ordered: np.ndarray, margin: float):
    """Run the completion's rounds on one block of columns: solve, check the excluded edges, add violators."""
    prob, V = run.prob, run.V
    full = prob.allowed(cols, screened=False) & ordered
    for _ in range(COMPLETION_ROUNDS):
        start = V[:, cols] * torch.as_tensor(work, dtype=V.dtype, device=V.device)
        res = lasso_columns(prob, cols, work, start, deadline=run.deadline)
        V[:, cols] = res.V
        # the noise of a gradient entry is the target's residual sd (lasso_columns has
        # it) times the regulator's sd given the target's parents, over sqrt(n)
        grad = score.gradient(prob.A, prob.B[:, cols], res.V)
        tau = margin * torch.sqrt(res.residual_variance).to(res.V.dtype)
        strong = (grad.abs() > tau[None, :] * given_support_sd(prob.A, res.V)).cpu().numpy()
        violators = strong & full & ~work
        if not violators.any():
            break
        work = work | violators
    return res


def given_support_sd(A: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """Each regulator's sd given each column's support: sqrt(1 − a_iSᵀ A_SS⁻¹ a_iS), k × c.

    A is the regulators' correlation matrix; S is the support of V's column. Entries of
    the support (conditional sd 0) and of singular supports are floored at 1e-6, and a
    column without support gives 1 (the marginal sd). Columns are batched by support
    size so that the gathered k × m blocks stay within ``working_set.GATHER_ELEMENTS``.
    """
    k, c = V.shape
    out = torch.ones(k, c, dtype=V.dtype, device=V.device)
    on = V != 0
    sizes = on.sum(dim=0)
    for m in torch.unique(sizes).tolist():
        if m == 0:
            continue
        group = torch.nonzero(sizes == m).flatten()
        step = max(1, GATHER_ELEMENTS // (k * m))
        for batch in torch.split(group, step):
            idx = torch.topk(on[:, batch].to(torch.int8), m, dim=0).indices.T  # b × m: the support
            # gather, then widen: a float64 copy of the whole k × k A would cost k² × 8 bytes a call
            factor, info = torch.linalg.cholesky_ex(A[idx[:, :, None], idx[:, None, :]].double())
            Z = torch.linalg.solve_triangular(factor, A[idx].double(), upper=False)  # b × m × k
            var = (1.0 - Z.square().sum(dim=1)).clamp_min(1e-12)
            var = torch.where((info == 0)[:, None], var, 1e-12)
            out[:, batch] = torch.sqrt(var).T.to(out.dtype)
    return out


def refine_core(run: Run, core: Core) -> None:
    """Greedy edge reversals on the whole-core solution (refine.py), in place.

    Only the rows that can matter travel to the CPU: the core genes and every regulator
    with an edge above the threshold into the core.
    """
    prob, V, n = run.prob, run.V, core.rows.size
    thr = prob.s.w_threshold
    cols_t = torch.as_tensor(core.universe[:n], device=V.device)
    Vc = V[:, cols_t].cpu().numpy().astype(np.float64)
    # start from a DAG: cut what the final thresholding would cut anyway
    strong = np.abs(Vc[core.rows]) / prob.sigma[core.rows][:, None] >= thr
    Vc[core.rows] = np.where(strong & (core_dag(prob, V, core.rows).toarray() == 0), 0.0, Vc[core.rows])
    rows = np.union1d(core.rows, np.flatnonzero((np.abs(Vc) / prob.sigma[:, None] >= thr).any(axis=1)))
    rt = torch.as_tensor(rows, device=V.device)
    A = prob.A[rt[:, None], rt[None, :]].double().cpu().numpy()
    B = prob.B[rt[:, None], cols_t[None, :]].double().cpu().numpy()
    sign = None if core.sign is None else core.sign[rows][:, :n]
    Vn, summary = refine_reversals(
        A,
        B,
        Vc[rows],
        pen=core.pen[rows][:, :n],
        allowed=core.allowed[rows][:, :n],
        required=core.required[rows][:, :n],
        sign=sign,
        sigma=prob.sigma[rows],
        core_rows=np.searchsorted(rows, core.rows),
        w_threshold=thr,
    )
    Vc[rows] = Vn
    V[:, cols_t] = torch.as_tensor(Vc, dtype=V.dtype, device=V.device)
    run.info.update(summary)
    log.info("refine: %d edge reversal(s) in %d sweep(s)", summary["refine_reversals"], summary["refine_sweeps"])
