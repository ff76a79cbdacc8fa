#!/usr/bin/env python
"""Feature-sign search against working sets (with the support polish) for float64 statistics.

When the statistics need float64 (``Problem.working_precision``), every lasso column of
at most ``working_set.FEATURE_SIGN_MAX`` allowed parents is solved exactly by
feature-sign search, one column at a time. This script runs ``fit`` on one data set
with that limit as given (256 is the default, 0 sends every column to the batched
working sets) and prints one JSON line: wall time, SHD, TPR, FDR, the λ path's time.

    python benchmarks/float64_lasso_choice.py benchmarks/out/er2000_k1000_n2000_s3.h5ad --raw --feature-sign-max 0
"""

from __future__ import annotations

import argparse
import json
import time

import anndata as ad

from gene_dag.metrics import count_accuracy
from gene_dag.solver import working_set
from gene_dag.solver.api import fit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", help=".h5ad with varp['true_dag'] (bench_scale.py writes them)")
    ap.add_argument("--raw", action="store_true", help="standardize=False (default: standardised)")
    ap.add_argument("--feature-sign-max", type=int, default=working_set.FEATURE_SIGN_MAX)
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()
    working_set.FEATURE_SIGN_MAX = args.feature_sign_max
    adata = ad.read_h5ad(args.data)
    started = time.perf_counter()
    res = fit(adata, standardize=not args.raw, seed=args.seed, return_result=True)
    wall = time.perf_counter() - started
    m = count_accuracy(adata.varp["true_dag"], res.adjacency)
    run = res.info["run"]
    print(
        json.dumps(
            {
                "data": args.data,
                "standardize": not args.raw,
                "feature_sign_max": args.feature_sign_max,
                "wall_s": round(wall, 2),
                "shd": int(m["shd"]),
                "tpr": round(float(m["tpr"]), 4),
                "fdr": round(float(m["fdr"]), 4),
                "n_edges": int(res.adjacency.nnz),
                "precision": run.get("precision"),
                "time_lambda_path_s": round(float(run.get("time_lambda_path_s", float("nan"))), 2),
            }
        )
    )


if __name__ == "__main__":
    main()
