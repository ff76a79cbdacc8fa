"""Effects and a knockout for 10 genes on a 20,000-gene network, without a dense d x d matrix.

The network is the simulated true graph of a ``gene-dag simulate --graph tf`` dataset
(``varp["true_dag"]``, copied to ``varp["gene_dag"]``): learning it at this size takes too
long on a laptop CPU, and effects and knockouts only need a DAG with weights.

    python benchmarks/bench_effects.py prepare --out benchmarks/out/tf20k.h5ad
    /usr/bin/time -v python benchmarks/bench_effects.py run benchmarks/out/tf20k.h5ad

``run`` reads the file, runs ``tl.effects`` and ``tl.knockout`` (each gene's effect row,
then the 10 genes knocked out together, per group of cells) and prints the wall time of
each step and the size a dense d x d float64 matrix would take. ``--dense`` also times the
dense ``(I - W)^{-1}`` for comparison (needs that memory; leave it off at d = 20,000).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path


def prepare(args: argparse.Namespace) -> None:
    import anndata

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sim = out.with_name(out.stem + ".sim.h5ad")
    cmd = ["gene-dag", "simulate", "--out", str(sim), "--genes", str(args.genes), "--cells", str(args.cells),
           "--graph", "tf", "--regulators", str(args.regulators), "--seed", str(args.seed)]  # fmt: skip
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    adata = anndata.read_h5ad(sim)
    adata.varp["gene_dag"] = adata.varp["true_dag"].tocsr()
    adata.obs["group"] = ["a" if i % 2 == 0 else "b" for i in range(adata.n_obs)]
    adata.write_h5ad(out)
    sim.unlink()
    print(f"wrote {out}: {adata.n_obs} cells x {adata.n_vars} genes, {adata.varp['gene_dag'].nnz} edges")


def run(args: argparse.Namespace) -> None:
    import anndata
    import numpy as np

    from gene_dag import tl

    t0 = time.perf_counter()
    adata = anndata.read_h5ad(args.network)
    t_read = time.perf_counter() - t0
    W = adata.varp["gene_dag"]
    d = adata.n_vars
    out_deg = np.diff(W.tocsr().indptr)
    # the 10 regulators with the most targets: the largest effect rows
    genes = list(adata.var_names[np.argsort(-out_deg, kind="stable")[: args.n_genes]])
    t0 = time.perf_counter()
    tl.effects(adata, genes)
    t_effects = time.perf_counter() - t0
    t0 = time.perf_counter()
    tl.knockout(adata, genes, groupby="group")
    t_knockout = time.perf_counter() - t0
    affected = adata.uns["effects"]["n_affected"]
    print(f"d = {d} genes, {W.nnz} edges, {adata.n_obs} cells; {len(genes)} genes: {', '.join(genes)}")
    print(f"read network.h5ad        {t_read:8.3f} s")
    print(
        f"tl.effects (10 genes)    {t_effects:8.3f} s   genes affected per intervention: "
        f"min {affected.min()}, median {int(np.median(affected))}, max {affected.max()}"
    )
    print(f"tl.knockout (10 genes)   {t_knockout:8.3f} s   genes changed: {adata.uns['knockout']['n_changed']}")
    print(f"a dense d x d float64 matrix would take {d * d * 8 / 2**30:.2f} GiB")
    if args.dense:
        import scipy.sparse as sp

        t0 = time.perf_counter()
        T = np.linalg.inv(np.eye(d) - sp.csr_matrix(W).toarray().astype(np.float64))
        t_dense = time.perf_counter() - t0
        idx = adata.var_names.get_indexer(genes)
        err = np.abs(T[idx].T - adata.varm["effects"].to_numpy()).max()
        print(
            f"dense inverse            {t_dense:8.3f} s   max |difference| {err:.2e}   ratio dense / sparse "
            f"{t_dense / t_effects:.1f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="simulate the tf network and store its true graph as the network")
    p.add_argument("--out", required=True)
    p.add_argument("--genes", type=int, default=20_000)
    p.add_argument("--cells", type=int, default=1000)
    p.add_argument("--regulators", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=prepare)
    r = sub.add_parser("run", help="time tl.effects and tl.knockout for 10 genes")
    r.add_argument("network")
    r.add_argument("--n-genes", type=int, default=10)
    r.add_argument("--dense", action="store_true", help="also time the dense inverse (d x d memory)")
    r.set_defaults(func=run)
    args = parser.parse_args(argv)
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
