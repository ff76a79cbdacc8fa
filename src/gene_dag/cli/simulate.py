"""``gene-dag simulate``: a synthetic dataset with a known causal graph, as .h5ad."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from gene_dag.cli._types import bounded, nonnegative_float, positive_int, seed

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``gene-dag simulate`` subcommand and its options to ``subparsers``."""
    p = subparsers.add_parser(
        "simulate",
        help="simulate expression from a linear SEM on a random DAG",
        description="Simulate cells x genes expression from a linear structural equation model on a "
        "random DAG and write it as .h5ad, with the weighted true graph in varp['true_dag'] "
        "(row = cause, column = effect).",
    )
    p.add_argument("--out", required=True, type=Path, metavar="OUT.h5ad", help="output file")
    p.add_argument("--genes", type=bounded(int, low=2), default=100, metavar="D", help="number of genes (default 100)")
    p.add_argument(
        "--cells", type=bounded(int, low=2), default=1000, metavar="N", help="number of cells (default 1000)"
    )
    p.add_argument(
        "--graph",
        choices=("er", "sf", "tf"),
        default="er",
        help="er: Erdős–Rényi; sf: scale-free; tf: regulators -> targets (default er)",
    )
    p.add_argument(
        "--edges-per-node",
        type=nonnegative_float,
        default=2.0,
        metavar="F",
        help="er/sf: expected edges per gene (default 2)",
    )
    p.add_argument(
        "--regulators", type=positive_int, default=None, metavar="K", help="tf: number of regulators (default genes/10)"
    )
    p.add_argument(
        "--regulator-parents",
        type=nonnegative_float,
        default=1.0,
        metavar="F",
        help="tf: expected regulator parents of a regulator (default 1)",
    )
    p.add_argument(
        "--target-parents",
        type=bounded(float, low=1.0),
        default=2.0,
        metavar="F",
        help="tf: expected regulator parents of a target, at least 1 (default 2)",
    )
    p.add_argument(
        "--w-range",
        type=nonnegative_float,
        nargs=2,
        default=(0.5, 2.0),
        metavar=("LO", "HI"),
        help="edge weight magnitudes, uniform in [LO, HI], random sign (default 0.5 2)",
    )
    p.add_argument(
        "--noise-scale", type=nonnegative_float, default=1.0, metavar="F", help="noise standard scale (default 1)"
    )
    p.add_argument(
        "--noise-type", choices=("gaussian", "exponential", "gumbel"), default="gaussian", help="(default gaussian)"
    )
    p.add_argument("--seed", type=seed, default=0, metavar="S", help="random seed (default 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``gene-dag simulate`` with the parsed ``args``; return the exit status (0 on success)."""
    from gene_dag import io
    from gene_dag.errors import ConfigError
    from gene_dag.simulate import simulate_adata

    if args.w_range[0] > args.w_range[1]:
        raise ConfigError(f"--w-range {args.w_range[0]:g} {args.w_range[1]:g}: LO must be <= HI")
    if args.regulators is not None and args.regulators > args.genes:
        raise ConfigError(f"--regulators {args.regulators}: more than the {args.genes} genes")
    io.check_outputs([args.out])
    start = time.perf_counter()
    adata = simulate_adata(
        d=args.genes,
        n=args.cells,
        graph_type=args.graph,
        edges_per_node=args.edges_per_node,
        n_regulators=args.regulators,
        regulator_parents=args.regulator_parents,
        target_parents=args.target_parents,
        w_range=tuple(args.w_range),
        noise_scale=args.noise_scale,
        noise_type=args.noise_type,
        seed=args.seed,
    )
    io.write_h5ad(adata, args.out)
    log.info(
        "%s: %d cells x %d genes, %d true edges (%s graph) in %.1f s",
        args.out,
        adata.n_obs,
        adata.n_vars,
        adata.varp["true_dag"].nnz,
        args.graph,
        time.perf_counter() - start,
    )
    return 0
