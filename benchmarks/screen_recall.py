"""Recall of the candidate screen: the share of true edges among each gene's candidates.

Simulates ER graphs without a regulator list (every gene may regulate every other), runs
only the screen of `gene-dag solve` on their statistics, and reports its time, its
candidates per gene and the share of true edges it keeps (either direction counts: the
screen is symmetric, and the constrained solve orients).

    python benchmarks/screen_recall.py --genes 2000 5000 10000 --cells 2000
    python benchmarks/screen_recall.py --genes 120 2000 --cells 2000 --seed 5 --scaled
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import scipy.sparse as sp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--genes", type=int, nargs="+", default=[2000])
    ap.add_argument("--cells", type=int, default=2000)
    ap.add_argument("--edges-per-node", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--lambda-factor", type=float, nargs="+", default=[0.5], help="Tuning.screen_lambda_factor")
    ap.add_argument("--scaled", action="store_true", help="Tuning.screen_scaled: penalties by residual sd")
    args = ap.parse_args()

    from gene_dag.prior import build_mask
    from gene_dag.simulate import simulate_adata
    from gene_dag.solver.screen import screen_mask
    from gene_dag.solver.settings import settings_from
    from gene_dag.stats import compute_stats

    for d in args.genes:
        adata = simulate_adata(d, args.cells, graph_type="er", edges_per_node=args.edges_per_node, seed=args.seed)
        truth = sp.csr_matrix(adata.varp["true_dag"], dtype=bool)
        mask = build_mask(np.asarray(adata.var_names), None, None)
        for standardize in (False, True):
            stats = compute_stats(adata, scale=standardize, progress=False)
            cov = np.asarray(stats.cov, dtype=np.float64)
            var = np.ones(d) if standardize else stats.std.astype(np.float64) ** 2
            for factor in args.lambda_factor:
                settings = settings_from(
                    standardize=standardize,
                    tuning={"screen": "on", "screen_lambda_factor": factor, "screen_scaled": args.scaled},
                )
                t = time.monotonic()
                screen = screen_mask(cov, var, mask, settings, stats.n)
                elapsed = time.monotonic() - t
                cand = sp.csr_matrix(screen.mask.candidates, dtype=bool)
                print(
                    json.dumps(
                        {
                            "genes": d,
                            "cells": args.cells,
                            "standardize": standardize,
                            "lambda_factor": factor,
                            "scaled": args.scaled,
                            "screen_s": round(elapsed, 2),
                            "candidates_per_gene": round(cand.nnz / d, 2),
                            "true_edges": int(truth.nnz),
                            "recall": round(truth.multiply(cand).nnz / truth.nnz, 4),
                        }
                    ),
                    flush=True,
                )


if __name__ == "__main__":
    main()
