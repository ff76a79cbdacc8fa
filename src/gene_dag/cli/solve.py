"""``gene-dag solve``: learn a DAG over all genes of an .h5ad and store it in the file's varp/uns."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

log = logging.getLogger("gene_dag.solve")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "solve",
        help="learn a DAG (NOTEARS family) from an expression .h5ad",
        description="Learn a causal DAG over all genes of INPUT and write INPUT's AnnData with "
        'varp["gene_dag"] (CSR, row = regulator, column = target) and uns["gene_dag"].',
    )
    p.add_argument("input", help="expression .h5ad (cells × genes)")
    p.add_argument("--out", required=True, help="output .h5ad")
    p.add_argument("--layer", help="use this layer instead of X ('raw' for .raw.X)")
    p.add_argument("--regulators", help="file with one regulator gene name per line")
    p.add_argument("--prior", help="TSV with source, target, type[, weight]")
    p.add_argument("--lambda1", type=float, default=0.02, help="L1 penalty (default 0.02)")
    p.add_argument("--w-threshold", type=float, default=0.3, help="|w| threshold (default 0.3)")
    p.add_argument("--acyclicity", choices=["auto", "expm", "logdet", "spectral"], default="auto")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--memory-gb", type=float, default=2.0, help="memory budget for blocks (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", help="directory for checkpoints; a rerun resumes from it")
    p.add_argument("--checkpoint-interval", type=float, default=60.0,
                   help="seconds between checkpoints (default 60)")
    p.add_argument("--max-time", type=float, help="stop after S seconds with the best DAG so far")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gene_dag import io
    from gene_dag.tl import learn_dag

    start = time.monotonic()
    adata = io.read_expression(args.input, layer=args.layer)
    learn_dag(  # stores varp["gene_dag"] and uns["gene_dag"] as tl.learn_dag does for any AnnData
        adata,
        regulators=args.regulators,
        prior=args.prior,
        checkpoint=args.checkpoint,
        lambda1=args.lambda1,
        w_threshold=args.w_threshold,
        acyclicity=args.acyclicity,
        device=args.device,
        memory_gb=args.memory_gb,
        seed=args.seed,
        max_time=args.max_time,
        checkpoint_interval=args.checkpoint_interval,
    )
    uns = adata.uns["gene_dag"]
    uns["parameters"].update(input=str(args.input), layer=args.layer or "X")  # X holds the layer read
    uns["run"]["total_wall_time_s"] = time.monotonic() - start
    io.write_h5ad(adata, args.out)
    if args.checkpoint:
        from gene_dag.solver.checkpoint import Checkpointer

        Checkpointer(args.checkpoint, "").clear()
    run_info = uns["run"]
    log.info("%s: %d edges among %d genes, converged %s, %.1f s", Path(args.out).name,
             uns["run"]["n_edges"], adata.n_vars, run_info["converged"], run_info["total_wall_time_s"])
    return 0
