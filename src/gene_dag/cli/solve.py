"""``gene-dag solve``: learn a DAG over all genes of an .h5ad and store it in the file's varp/uns."""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

from gene_dag.cli._types import (
    MAX_SEED,
    auto_or,
    fraction,
    nonnegative_float,
    nonnegative_int,
    open_fraction,
    positive_float,
    positive_int,
    seed,
)
from gene_dag.solver.settings import (
    ACYCLICITY_CHOICES,
    DEFAULTS,
    ORDER_SEARCH_CHOICES,
    RAW_W_THRESHOLD,
    STANDARDIZED_W_THRESHOLD,
)

log = logging.getLogger("gene_dag.solve")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``gene-dag solve`` subcommand and its options to ``subparsers``."""
    p = subparsers.add_parser(
        "solve",
        help="learn a DAG (NOTEARS family) from an expression .h5ad",
        description="Learn a causal DAG over all genes of INPUT and write INPUT's AnnData with "
        'varp["gene_dag"] (CSR, row = regulator, column = target) and uns["gene_dag"].',
    )
    p.add_argument("input", help="expression .h5ad (cells × genes)")
    p.add_argument("--out", required=True, help="output .h5ad")
    add_solver_options(p)
    p.add_argument("--checkpoint", help="directory for checkpoints; a rerun resumes from it")
    p.add_argument(
        "--checkpoint-interval",
        type=nonnegative_float,
        default=DEFAULTS["checkpoint_interval"],
        help=f"seconds between checkpoints (default {DEFAULTS['checkpoint_interval']:g})",
    )
    p.add_argument(
        "--max-time",
        type=nonnegative_float,
        help="stop after S seconds with the best DAG so far (the checkpoint is kept: a rerun resumes)",
    )
    p.set_defaults(func=run)


def add_solver_options(p: argparse.ArgumentParser) -> None:
    """Add the input's layer, the priors and every solver setting (shared with ``gene-dag stability``)."""
    p.add_argument("--layer", help="use this layer instead of X ('raw' for .raw.X)")
    p.add_argument("--regulators", help="file with one regulator gene name per line")
    p.add_argument("--prior", help="TSV with source, target, type[, weight]")
    _add_sparsity_options(p)
    p.add_argument(
        "--acyclicity",
        choices=ACYCLICITY_CHOICES,
        default=DEFAULTS["acyclicity"],
        help=f"acyclicity function (default {DEFAULTS['acyclicity']}: logdet)",
    )
    p.add_argument("--device", default=DEFAULTS["device"], help=f"auto, cpu or cuda (default {DEFAULTS['device']})")
    p.add_argument(
        "--memory-gb",
        type=positive_float,
        default=DEFAULTS["memory_gb"],
        help=f"memory budget for blocks in GiB (default {DEFAULTS['memory_gb']:g})",
    )
    p.add_argument("--seed", type=seed, default=DEFAULTS["seed"], help=f"random seed, 0 to {MAX_SEED} (default 0)")
    p.add_argument(
        "--core-threads",
        type=positive_int,
        default=DEFAULTS["core_threads"],
        help="CPU threads of the constrained stage (default: one below about 450 core genes, all above; "
        "chosen by size, never by load)",
    )


def solver_options(args: argparse.Namespace) -> dict:
    """Return the keyword options of :func:`gene_dag.tl.learn_dag` that :func:`add_solver_options` parsed."""
    names = (
        "regulators", "prior", "groupby", "lambda1", "w_threshold", "standardize", "order_search", "stability_resamples",
        "stability_fraction", "stability_min_frequency", "acyclicity", "device", "memory_gb", "core_threads",
        "seed",
    )  # fmt: skip
    return {name: getattr(args, name) for name in names}


def _add_sparsity_options(p: argparse.ArgumentParser) -> None:
    """Add the options of λ, the threshold, standardisation, groups and stability resamples."""
    p.add_argument(
        "--lambda1",
        type=auto_or(nonnegative_float),
        default=DEFAULTS["lambda1"],
        help="L1 penalty, or auto (default): chosen by the extended BIC along a lambda path",
    )
    p.add_argument(
        "--w-threshold",
        type=auto_or(nonnegative_float),
        default=DEFAULTS["w_threshold"],
        help=f"|w| threshold, or auto (default): {STANDARDIZED_W_THRESHOLD} standardised, "
        f"{RAW_W_THRESHOLD} with --no-standardize",
    )
    p.add_argument(
        "--standardize",
        action=argparse.BooleanOptionalAction,
        default=DEFAULTS["standardize"],
        help="solve on standardised genes (default); --no-standardize solves on the data's units",
    )
    p.add_argument(
        "--order-search",
        choices=ORDER_SEARCH_CHOICES,
        default=DEFAULTS["order_search"],
        help="standardised cores of at most 300 genes: orient by a best-order search on the Gaussian BIC; auto "
        "(default) keeps its network when it has at most twice the lambda path's edges, always keeps it, never skips it",
    )
    p.add_argument(
        "--groupby",
        help="obs column of cell groups: one network pooled over them, on group-centred statistics",
    )
    p.add_argument(
        "--stability-resamples",
        type=nonnegative_int,
        default=DEFAULTS["stability_resamples"],
        help="even number of cell resamples for edge selection/orientation frequencies (default 0: none)",
    )
    p.add_argument(
        "--stability-fraction",
        type=open_fraction,
        default=DEFAULTS["stability_fraction"],
        help=f"share of cells per resample (default {DEFAULTS['stability_fraction']})",
    )
    p.add_argument(
        "--stability-min-frequency",
        type=fraction,
        default=DEFAULTS["stability_min_frequency"],
        help="keep only edges selected in at least this share of resamples (default: keep all)",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``gene-dag solve`` with the parsed ``args``; return the exit status (0 on success)."""
    from gene_dag import io
    from gene_dag.signals import Interrupted
    from gene_dag.solver.checkpoint import FILENAME

    _check_arguments(args)
    start = time.monotonic()
    adata = io.read_expression(args.input, layer=args.layer)
    try:
        _learn(args, adata)
    except Interrupted as exc:
        if args.checkpoint and (Path(args.checkpoint) / FILENAME).is_file():
            log.warning(
                "%s: the solve's progress is saved in %s; run the same command again to resume", exc, args.checkpoint
            )
        elif args.checkpoint:
            log.warning("%s before the solver's first checkpoint; a rerun starts from the beginning", exc)
        else:
            log.warning("%s: no --checkpoint was given, so the progress is lost", exc)
        raise
    uns = adata.uns["gene_dag"]
    uns["parameters"].update(input=str(args.input), layer=args.layer or "X")  # X holds the layer read
    uns["run"]["total_wall_time_s"] = time.monotonic() - start
    io.write_h5ad(adata, args.out)
    run_info = uns["run"]
    if args.checkpoint and run_info["converged"]:
        from gene_dag.solver.checkpoint import Checkpointer

        Checkpointer(args.checkpoint, "").clear()
    elif args.checkpoint:
        log.warning(
            "not converged (time limit or iteration cap): the checkpoint in %s is kept; "
            "run the same command again to continue",
            args.checkpoint,
        )
    log.info(
        "%s: %d edges among %d genes, converged %s, %.1f s",
        Path(args.out).name,
        uns["run"]["n_edges"],
        adata.n_vars,
        run_info["converged"],
        run_info["total_wall_time_s"],
    )
    return 0


def _learn(args: argparse.Namespace, adata) -> None:
    from gene_dag.tl import learn_dag

    learn_dag(  # stores varp["gene_dag"] and uns["gene_dag"] as tl.learn_dag does for any AnnData
        adata,
        checkpoint=args.checkpoint,
        max_time=args.max_time,
        checkpoint_interval=args.checkpoint_interval,
        **solver_options(args),
    )


def _check_arguments(args: argparse.Namespace) -> None:
    """Everything that can be checked before the data are read, so no solve is lost to it."""
    from gene_dag import io
    from gene_dag.errors import ConfigError, InputError
    from gene_dag.solver.checkpoint import FILENAME
    from gene_dag.solver.settings import resolve_device

    io.check_output_path(args.out, [args.input])
    if not str(args.out).lower().endswith(".h5ad"):
        raise InputError("the output must be an .h5ad file", args.out)
    for path in (args.regulators, args.prior):
        if path is not None and not Path(path).is_file():
            raise InputError("is a directory, not a file" if Path(path).is_dir() else "file not found", path)
    if args.checkpoint is not None:
        ckpt = Path(args.checkpoint)
        if ckpt.exists() and not ckpt.is_dir():
            raise InputError("--checkpoint must name a directory, and this is a file", ckpt)
        if ckpt.exists() and not os.access(ckpt, os.W_OK | os.X_OK):
            raise InputError("checkpoint directory is not writable", ckpt)
        if not ckpt.exists():
            io.check_output_path(ckpt / FILENAME)  # its nearest existing parent must be writable
    try:
        resolve_device(args.device)
    except (ValueError, RuntimeError) as exc:
        raise ConfigError(f"--device {args.device}: {exc}") from None
