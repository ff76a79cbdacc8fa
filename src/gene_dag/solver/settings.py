"""The solver's settings: one documented object of user-facing knobs, the single source of defaults.

The command line (``gene-dag solve``), the Python API (``gene_dag.fit``, ``tl.learn_dag``)
and the workflow (``workflow/schemas/config.schema.yaml``, ``config/config.yaml``) all take
their defaults from :class:`SolverSettings`; a test checks that they agree. Numerical
tuning that no user needs to set lives in :class:`Tuning`, for tests and benchmarks.

This module imports no torch, so the command line can read the defaults cheaply.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from gene_dag.errors import ConfigError

ACYCLICITY_CHOICES = ("auto", "expm", "logdet", "spectral")
#: ``SolverSettings.order_search``: checked against the λ path, kept whatever its size, or
#: never run ("never" rather than "off", which YAML reads as false).
ORDER_SEARCH_CHOICES = ("auto", "always", "never")
#: What ``w_threshold=None`` means on standardised genes: the standardised effect below
#: which edges are dropped (set from the realistic single-cell benchmark, BENCHMARKS.md).
STANDARDIZED_W_THRESHOLD = 0.05
#: ``lambda1=None`` and ``w_threshold=None`` with ``standardize=False``: the problem as it
#: is posed for unit-noise data (NOTEARS, DAGMA), in the data's units.
RAW_LAMBDA1 = 0.02
RAW_W_THRESHOLD = 0.3
MAX_SEED = 2**63 - 1


@dataclass
class Tuning:
    """Internal numerics of the solver (not part of the user interface; for tests and benchmarks).

    Attributes
    ----------
    decompose
        Split the problem into independent lasso columns and the cycle core (same optimum;
        ``False`` solves everything as one constrained problem, for tests).
    full_core_max
        Cycle cores of at most this many genes are solved whole by the central path;
        larger ones go through the active set of lasso candidates.
    candidate_threshold
        Active set: lasso weights with |w| at least this (data units) are candidate edges.
    refit, support_refit_threshold
        After a whole-core solve, refit the weights without the acyclicity term (removes
        its shrinkage): in a causal order on raw data (refit.order_refit; an active-set
        solve always refits so), on the support |w| >= threshold on standardised data
        (refit.support_refit).
    refine
        Greedy single-edge reversals after a whole-core solve, where they lower the score.
    order_search_max, order_search_discount, order_search_gamma
        The best-order search on the Gaussian BIC (``SolverSettings.order_search``;
        :mod:`gene_dag.solver.order_search`) runs on whole cores of at most
        ``order_search_max`` genes; the penalty per parent is ``order_search_discount *
        log(n) / 2 + order_search_gamma * log(p)`` (BIC; extended BIC for gamma > 0). It
        needs the number of cells (a solve on a covariance alone has none).
    order_search_max_edge_ratio
        With ``order_search="auto"``, the search's network replaces the λ path's only when
        it has at most this many times the path's edges. Where the linear Gaussian model
        holds the two criteria choose supports of similar size (the lasso's a little
        smaller); where it does not (nonlinear regulation, dropout: log-normalised
        single-cell counts), thousands of cells let every weak dependence pass the BIC
        penalty, and its network is several times the true one (BENCHMARKS.md, "This
        version: the order from the Gaussian BIC by default").
    order_search_starts, order_search_sweeps
        The search starts from the order that puts the best-explained genes last
        (:func:`gene_dag.solver.order_search.explained_last_order`), the constrained
        solve's order and seeded random orders, ``order_search_starts`` in all, and keeps
        the best; each search makes at most ``order_search_sweeps`` sweeps over the genes.
    inner_max_iter, inner_ftol
        OWL-QN iterations per central-path stage and its relative objective tolerance.
    path_s_final
        The log-det parameter s falls linearly from 1 to this over the five stages.
    lasso_tol
        Batched lasso stops when each column's largest step (FISTA) or optimality
        violation (working set) is below this times the target's standard deviation.
    lasso_method
        ``"working_set"`` (coordinate descent on growing working sets, cost following the
        solution's sparsity), ``"fista"`` (dense batched products, cost following k² per
        step), or ``"auto"``: working sets on the CPU, FISTA on a GPU, where a dense
        product is cheap next to the many small operations of coordinate descent.
    path_length, path_ratio
        Automatic λ: the path has this many values, geometric from the smallest λ that
        selects nothing down to ``path_ratio`` times it.
    path_patience
        The path stops this many values after the criterion's minimum (it is unimodal in
        practice and the small-λ end, the densest, costs the most).
    ebic_gamma
        γ of the extended BIC (Chen & Chen 2008): 0 is BIC; 0.5 is the usual choice when
        candidates per target are many relative to cells.
    screen
        The candidate screen (:mod:`gene_dag.solver.screen`): ``"auto"`` screens when the
        cycle core of the allowed graph is larger than ``full_core_max`` (no regulator
        list, or a long one), ``"on"`` always, ``"off"`` never.
    screen_lambda_factor, screen_max_parents
        The screen's neighbourhood lasso runs at this multiple of the noise level
        sqrt(2 log p / n) on the correlation scale and keeps at most this many parents
        per gene (by |coefficient|) before symmetrising.
    screen_scaled
        Scale each gene's screen penalty by its residual standard deviation (scaled
        lasso): more true edges kept, and more candidates per gene.
    core_order
        How the cycle core finds its causal order. ``"auto"``: on raw data, first the
        least-residual order (:func:`gene_dag.solver.ordering.least_residual_order`; after a
        candidate screen, each gene given its candidate parents only,
        :func:`gene_dag.solver.ordering.screened_ordered_residuals`), kept without the
        central path when the noise variances it leaves are equal within
        ``EQUAL_NOISE_RATIO`` (the model the raw score assumes, under which that order is
        consistent); otherwise, and on standardised data, the central path.
        ``"central_path"``: always the central path.
    precision
        Floating-point type of the solver's tensors: ``"float32"``, ``"float64"``, or
        ``"auto"``: float64 when some gene is so nearly determined by the regulators that
        float32 cannot resolve its residual (:func:`gene_dag.solver.problem.working_precision`),
        else float32 (half the memory, up to twice the speed).
    """

    decompose: bool = True
    full_core_max: int = 1024
    candidate_threshold: float = 0.3
    refit: bool = True
    support_refit_threshold: float = 0.05
    refine: bool = True
    order_search_max: int = 300
    order_search_discount: float = 1.0
    order_search_gamma: float = 0.0
    order_search_max_edge_ratio: float = 2.0
    order_search_starts: int = 3
    order_search_sweeps: int = 20
    inner_max_iter: int = 200
    inner_ftol: float = 2.2e-9
    path_s_final: float = 0.6
    lasso_tol: float = 1e-4
    lasso_method: str = "auto"
    path_length: int = 20
    path_ratio: float = 0.01
    path_patience: int = 3
    ebic_gamma: float = 0.5
    screen: str = "auto"
    screen_lambda_factor: float = 0.5
    screen_max_parents: int = 32
    screen_scaled: bool = False
    core_order: str = "auto"
    precision: str = "auto"


@dataclass
class SolverSettings:
    """What a user chooses about a solve; stored verbatim in ``uns["gene_dag"]["parameters"]``.

    Attributes
    ----------
    lambda1
        L1 penalty on the edge weights (larger gives sparser networks), in the units of
        the least-squares score: of correlations when ``standardize``, else of the data's
        covariances. ``None`` (default): when ``standardize``, chosen from the data by the
        extended BIC along a path of λ, and never below the noise level sqrt(2 log p / n)
        (:mod:`gene_dag.solver.lambda_path`; the path, the criterion and the choice are
        stored in ``uns``); without ``standardize``, ``RAW_LAMBDA1`` (0.02): one λ in the
        units of covariances cannot suit genes of very different variances, so a raw
        problem keeps the fixed penalty that suits unit-noise data.
    w_threshold
        Edges with |weight| below this are dropped after solving; a standardised effect
        when ``standardize`` (the change in a target's standard deviations per standard
        deviation of its regulator), else in the data's units. ``None`` (default):
        ``STANDARDIZED_W_THRESHOLD`` (0.05) when ``standardize``, else ``RAW_W_THRESHOLD``
        (0.3, the NOTEARS convention for unit-noise data).
    standardize
        Solve on standardised genes (default ``True``): λ and ``w_threshold`` then mean the
        same for every gene whatever its variance, and weights are reported in both units.
        Standardising removes the information in the genes' variances; with it, directions
        rest on the data's non-variance structure only and are less certain (see
        ``stability_resamples``). ``False`` solves on the data as given (right when the
        noise variances are comparable across genes, as in simulations with unit noise).
    order_search
        With ``standardize``, how the genes of a cycle core of at most 300 genes (all genes
        without a regulator list; the regulators with one) are oriented. Standardised
        genes carry no variance order, and the λ path's network, solved on the
        equal-variance score, tends to put hubs after their children; a best-order search
        on the Gaussian BIC with one noise variance per gene is scale-invariant.
        ``"auto"`` (default): run the search and keep its network when it has at most
        twice the path's edges, the case when a linear Gaussian model describes the data;
        on log-normalised single-cell counts (nonlinear regulation, dropout) it has several
        times more and the path's network is kept, at the cost of one start of the search.
        ``"always"``: keep the search's network whatever its size. ``"never"``: the λ path's
        network only (fastest). What happened is in ``uns[...]["run"]["order_search"]``.
    stability_resamples
        Number B of resamples of cells for edge selection and orientation frequencies
        (0, default: none). Subsamples are unions of disjoint chunks of cells whose
        statistics are accumulated in the same single pass over the data, drawn as
        complementary pairs (Shah & Samworth 2013), so B must be even.
    stability_fraction
        Share of the cells in each resample. Default 0.5.
    stability_chunks
        Number of disjoint chunks of cells the resamples are made of. Default 20.
    stability_min_frequency
        Keep only network edges whose selection frequency is at least this (``None``,
        default: keep all; the frequencies are reported either way).
    acyclicity
        The smooth acyclicity function h: ``logdet`` (DAGMA), ``expm`` (NOTEARS),
        ``spectral`` (spectral radius by power iteration; not exact, never chosen by
        ``auto``), or ``auto`` (logdet). Default ``auto``.
    device
        ``auto`` (the first visible CUDA device if torch sees one, else the CPU), ``cpu``,
        ``cuda`` or ``cuda:N``. Default ``auto``.
    memory_gb
        Memory budget in GiB for the blocks of the statistics and the solver. Default 2.
    seed
        Random seed (power iterations, tie-breaking). Default 0.
    max_time
        Stop after this many seconds with the best DAG so far, marked not converged, and
        keep the checkpoint (``None``: no limit). Default ``None``.
    checkpoint_interval
        Seconds between checkpoints when a checkpoint directory is given. Default 60.
    core_threads
        CPU threads of the constrained stage; ``None`` (default): one for cycle cores below
        about 450 genes, all of torch's above, chosen by size and never by the machine's
        load. The stage is nonconvex and the last bits of its sums, which depend on the
        thread count, can decide which optimum it reaches: the same count gives the same
        edges. Set 1 for the same edges on machines with different core counts.
    tuning
        Internal numerics (:class:`Tuning`).
    """

    lambda1: float | None = None
    w_threshold: float | None = None
    standardize: bool = True
    order_search: str = "auto"
    acyclicity: str = "auto"
    device: str = "auto"
    memory_gb: float = 2.0
    seed: int = 0
    max_time: float | None = None
    checkpoint_interval: float = 60.0
    core_threads: int | None = None
    stability_resamples: int = 0
    stability_fraction: float = 0.5
    stability_chunks: int = 20
    stability_min_frequency: float | None = None
    tuning: Tuning = field(default_factory=Tuning)


#: The user-facing defaults, by name (what the CLI and the workflow schema must say).
DEFAULTS: dict[str, Any] = {
    f.name: getattr(SolverSettings(), f.name) for f in fields(SolverSettings) if f.name != "tuning"
}


def settings_from(*, tuning: Tuning | dict | None = None, **options: Any) -> SolverSettings:
    """Build validated :class:`SolverSettings` from keyword options; anything wrong is a ConfigError.

    Parameters
    ----------
    tuning
        A :class:`Tuning` or a mapping of its fields.
    **options
        :class:`SolverSettings` fields.
    """
    _check_names(options, DEFAULTS, "solver option")
    if isinstance(tuning, dict):
        _check_names(tuning, {f.name for f in fields(Tuning)}, "tuning option")
        tuning = Tuning(**tuning)
    s = SolverSettings(**options, tuning=tuning or Tuning())
    _check_numbers(s)
    if s.order_search not in ORDER_SEARCH_CHOICES:
        raise ConfigError(f"order_search must be one of {', '.join(ORDER_SEARCH_CHOICES)}, not {s.order_search!r}")
    if s.acyclicity not in ACYCLICITY_CHOICES:
        raise ConfigError(f"acyclicity must be one of {', '.join(ACYCLICITY_CHOICES)}, not {s.acyclicity!r}")
    if s.device not in ("auto", "cpu", "cuda") and not s.device.startswith("cuda:"):
        raise ConfigError(f"device must be auto, cpu or cuda, not {s.device!r}")
    try:
        resolve_device(s.device)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return s


def _check_names(options: dict, known, what: str) -> None:
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(f"unknown {what}(s): {', '.join(unknown)}")


def _check_numbers(s: SolverSettings) -> None:
    for name, value in {**asdict(s.tuning), **asdict(s)}.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{name} must be a finite number, not {value}")
        if isinstance(value, int) and not isinstance(value, bool) and not 0 <= value <= MAX_SEED:
            raise ConfigError(f"{name} must be between 0 and 2**63 - 1, not {value}")
    if s.max_time is not None and s.max_time < 0 or s.checkpoint_interval < 0:
        raise ConfigError("max_time and checkpoint_interval must be >= 0")
    if s.lambda1 is not None and s.lambda1 < 0 or s.w_threshold is not None and s.w_threshold < 0:
        raise ConfigError("lambda1 and w_threshold must be >= 0")
    _check_stability(s)
    if s.memory_gb <= 0:
        raise ConfigError("memory_gb must be > 0")
    if s.core_threads is not None and s.core_threads < 1:
        raise ConfigError("core_threads must be >= 1")
    t = s.tuning
    if not 0 < t.path_s_final <= 1 or t.inner_max_iter < 1:
        raise ConfigError("path_s_final must be in (0, 1] and inner_max_iter >= 1")
    if t.path_length < 2 or not 0 < t.path_ratio < 1 or t.ebic_gamma < 0:
        raise ConfigError("path_length must be >= 2, path_ratio in (0, 1) and ebic_gamma >= 0")
    if t.screen not in ("auto", "on", "off") or not t.screen_lambda_factor > 0 or t.screen_max_parents < 1:
        raise ConfigError("screen must be auto, on or off, screen_lambda_factor > 0 and screen_max_parents >= 1")
    if t.core_order not in ("auto", "central_path"):
        raise ConfigError(f"core_order must be auto or central_path, not {t.core_order!r}")
    if not t.order_search_max_edge_ratio > 0:
        raise ConfigError(f"order_search_max_edge_ratio must be > 0, not {t.order_search_max_edge_ratio}")
    if t.precision not in ("auto", "float32", "float64"):
        raise ConfigError(f"precision must be auto, float32 or float64, not {t.precision!r}")


def _check_stability(s: SolverSettings) -> None:
    b, m, f = s.stability_resamples, s.stability_chunks, s.stability_fraction
    if b % 2:
        raise ConfigError(f"stability_resamples must be even (complementary pairs of subsamples), not {b}")
    if not 0 < f < 1:
        raise ConfigError(f"stability_fraction must be in (0, 1), not {f}")
    if m < 2 or round(f * m) < 1 or round(f * m) > m // 2 and b:
        raise ConfigError(
            f"stability_chunks = {m} with stability_fraction = {f}: a subsample of round(fraction x chunks) "
            "chunks must hold at least one chunk and its complement as many"
        )
    low = s.stability_min_frequency
    if low is not None and not 0 <= low <= 1:
        raise ConfigError(f"stability_min_frequency must be in [0, 1], not {low}")


def resolved(s: SolverSettings, *, lambda1: float | None = None) -> SolverSettings:
    """``s`` with its automatic λ and threshold made concrete.

    ``lambda1`` is the λ chosen from the data (needed when ``s.lambda1`` is None and
    ``s.standardize``).
    """
    lam = s.lambda1
    if lam is None:
        lam = lambda1 if s.standardize else RAW_LAMBDA1
    if lam is None:
        raise ValueError("lambda1 is automatic: choose it from the data first (solver.lambda_path)")
    thr = s.w_threshold
    if thr is None:
        thr = STANDARDIZED_W_THRESHOLD if s.standardize else RAW_W_THRESHOLD
    return replace(s, lambda1=float(lam), w_threshold=float(thr))


def resolve_device(name: str):
    """``auto`` -> cuda when torch sees a GPU, else cpu; ``cuda`` without a GPU is a ValueError.

    Device numbering is left to ``CUDA_VISIBLE_DEVICES`` (set by SLURM for the GPUs a job
    was given): ``cuda`` is the first visible device. Returns a ``torch.device``.
    """
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            visible = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")
            raise ValueError(
                f"device {name!r} requested but torch sees no CUDA device (torch {torch.__version__}, "
                f"{build}; CUDA_VISIBLE_DEVICES={visible})"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
    return device
