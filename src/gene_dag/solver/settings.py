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
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from gene_dag.errors import ConfigError

ACYCLICITY_CHOICES = ("auto", "expm", "logdet", "spectral")
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
    support_refit, support_refit_threshold
        After a whole-core solve, refit the weights on the support |w| >= threshold
        without the acyclicity term (removes its shrinkage).
    refine
        Greedy single-edge reversals after a whole-core solve, where they lower the score.
    inner_max_iter, inner_ftol
        OWL-QN iterations per central-path stage and its relative objective tolerance.
    path_s_final
        The log-det parameter s falls linearly from 1 to this over the five stages.
    lasso_tol
        Batched lasso stops when each column's largest step is below this times the
        target's standard deviation.
    """

    decompose: bool = True
    full_core_max: int = 1024
    candidate_threshold: float = 0.3
    support_refit: bool = True
    support_refit_threshold: float = 0.05
    refine: bool = True
    inner_max_iter: int = 200
    inner_ftol: float = 2.2e-9
    path_s_final: float = 0.6
    lasso_tol: float = 1e-4


@dataclass
class SolverSettings:
    """What a user chooses about a solve; stored verbatim in ``uns["gene_dag"]["parameters"]``.

    Attributes
    ----------
    lambda1
        L1 penalty on the edge weights (in the units of the least-squares score on the
        data as given: larger gives sparser networks). Default 0.02.
    w_threshold
        Edges with |weight| below this (data units) are dropped after solving. Default 0.3.
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

    lambda1: float = 0.02
    w_threshold: float = 0.3
    acyclicity: str = "auto"
    device: str = "auto"
    memory_gb: float = 2.0
    seed: int = 0
    max_time: float | None = None
    checkpoint_interval: float = 60.0
    core_threads: int | None = None
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
    if s.lambda1 < 0 or s.w_threshold < 0:
        raise ConfigError("lambda1 and w_threshold must be >= 0")
    if s.memory_gb <= 0:
        raise ConfigError("memory_gb must be > 0")
    if s.core_threads is not None and s.core_threads < 1:
        raise ConfigError("core_threads must be >= 1")
    t = s.tuning
    if not 0 < t.path_s_final <= 1 or t.inner_max_iter < 1:
        raise ConfigError("path_s_final must be in (0, 1] and inner_max_iter >= 1")


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
