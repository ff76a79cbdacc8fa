"""The batched lasso by FISTA and by working-set coordinate descent, on the same problems.

Simulates a dataset (tf graph with a regulator list, or ER with every gene a regulator),
takes its statistics once, and solves the neighbourhood lasso of every target column at
one λ with each method, in the same process one after the other. Reports time, rounds
or iterations, convergence, nonzeros, the largest difference in weights and the largest
objective gap per column (relative to the column's objective scale).

    python benchmarks/lasso_methods.py --genes 10000 --regulators 1000 --cells 5000
    python benchmarks/lasso_methods.py --genes 2000 --no-prior --graph er --cells 2000
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--genes", type=int, default=10000)
    ap.add_argument("--regulators", type=int, default=1000)
    ap.add_argument("--cells", type=int, default=5000)
    ap.add_argument("--graph", default="tf")
    ap.add_argument("--no-prior", action="store_true", help="every gene may regulate every other")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--standardize", action="store_true", help="solve on correlations (the default's problem)")
    ap.add_argument("--lambdas", type=float, nargs="+", default=None, help="default: 0.02 raw, 0.05 standardised")
    ap.add_argument("--methods", nargs="+", default=["working_set", "fista"])
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    import numpy as np
    import torch

    from gene_dag.prior import build_mask
    from gene_dag.simulate import simulate_adata
    from gene_dag.solver.lambda_path import neighbourhood_fit
    from gene_dag.solver.problem import Problem
    from gene_dag.solver.settings import SolverSettings, Tuning
    from gene_dag.stats import compute_stats

    t = time.monotonic()
    adata = simulate_adata(
        args.genes,
        args.cells,
        graph_type=args.graph,
        n_regulators=None if args.no_prior else args.regulators,
        seed=args.seed,
    )
    genes = adata.var_names.to_numpy()
    regs = None if args.no_prior else list(genes[adata.var["is_regulator"].to_numpy()])
    mask = build_mask(genes, regs)
    stats = compute_stats(adata, regulators=mask.regulators, scale=args.standardize, progress=False)
    variances = np.ones(args.genes) if args.standardize else stats.std.astype(np.float64) ** 2
    cov = np.asarray(stats.cov, dtype=np.float64)
    print(f"simulated and counted in {time.monotonic() - t:.1f} s; k = {mask.n_regulators}, d = {args.genes}")
    lambdas = args.lambdas or [0.05 if args.standardize else 0.02]
    rows = []
    for lam in lambdas:
        results = {}
        for method in args.methods:
            s = SolverSettings(lambda1=lam, standardize=args.standardize, tuning=Tuning(lasso_method=method))
            prob = Problem(cov, variances, mask, s)
            t = time.monotonic()
            V = neighbourhood_fit(prob, lam, torch.zeros_like(prob.B))
            elapsed = time.monotonic() - t
            A, B = prob.A.double(), prob.B.double()
            Vd = V.double()
            pen = torch.as_tensor(np.broadcast_to(prob.penalty(np.arange(prob.d)), (prob.k, prob.d)).copy())
            obj = 0.5 * (Vd * (A @ Vd)).sum(0) - (B * Vd).sum(0) + (pen.double() * Vd.abs()).sum(0)
            results[method] = (V, obj)
            rows.append(
                {
                    "lambda1": lam,
                    "method": method,
                    "seconds": round(elapsed, 2),
                    "nonzeros": int((V != 0).sum()),
                    "mean_support": round(float((V != 0).sum(0).double().mean()), 2),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
        # each method's excess objective over the better of the two, per column, relative
        # to the column's variance (the scale of its objective)
        best = torch.stack([o for _, o in results.values()]).min(dim=0).values
        scale = torch.as_tensor(prob.variances).clamp_min(1e-12)
        first = next(iter(results.values()))[0]
        for row, (V, obj) in zip(rows[-len(results) :], results.values(), strict=True):
            row["max_excess_objective"] = float(((obj - best) / scale).max())
            row["max_weight_difference"] = float((V - first).abs().max())
            print(json.dumps(row), flush=True)
    info = {"args": vars(args) | {"out": str(args.out)}, "torch_threads": torch.get_num_threads()}
    info["load_before"] = os.getloadavg()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"info": info, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
