"""Benchmark: streamed sufficient statistics from a large backed sparse .h5ad.

Writes a synthetic cells x genes CSR matrix (default 1,000,000 x 10,000 at ~5%
nonzero, ~4 GB) chunk by chunk with h5py in anndata's on-disk sparse format (never
holding the whole matrix in memory), then streams it through
``gene_dag.stats.compute_stats`` for k regulators in a separate process run under
``/usr/bin/time -v``, so the peak RSS reported is that of the streaming alone.

    .venv/bin/python benchmarks/bench_stats_backed.py --cells 20000       # small check
    .venv/bin/python benchmarks/bench_stats_backed.py --delete-data       # full size

``--stream-only`` is the child step (also usable by hand: it needs the data file).
The data file is reused when it exists (same sizes and seed).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cells", type=int, default=1_000_000)
    p.add_argument("--genes", type=int, default=10_000)
    p.add_argument("--density", type=float, default=0.05, help="mean fraction of nonzero entries")
    p.add_argument("--regulators", type=int, default=1_000)
    p.add_argument("--memory-gb", type=float, default=2.0, help="compute_stats memory budget")
    p.add_argument("--chunk-cells", type=int, default=20_000, help="cells generated per write chunk")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", type=Path, default=REPO / "benchmarks" / "out")
    p.add_argument("--device", default="cpu")
    p.add_argument("--stream-only", action="store_true", help="only stream an existing file (child step)")
    p.add_argument(
        "--read-only",
        action="store_true",
        help="with --stream-only: read the blocks without computing (I/O time alone)",
    )
    p.add_argument(
        "--measure-read",
        action="store_true",
        help="also run a --read-only child first (I/O time and RSS without the products)",
    )
    p.add_argument("--delete-data", action="store_true", help="delete the data file at the end")
    return p.parse_args(argv)


def data_path(args) -> Path:
    return args.workdir / f"bench_{args.cells}x{args.genes}_d{args.density:g}_s{args.seed}.h5ad"


def thread_report() -> dict:
    """BLAS/OpenMP pools (threadpoolctl) and torch threads: every benchmark states them."""
    import torch
    from threadpoolctl import threadpool_info

    pools = [f"{p['internal_api']}:{Path(p['filepath']).name}={p['num_threads']}" for p in threadpool_info()]
    return {"torch_threads": torch.get_num_threads(), "threadpools": pools, "cpus": os.cpu_count()}


# ---------------------------------------------------------------------------- writing


def write_data(args, path: Path) -> float:
    """Write the CSR matrix chunk by chunk; returns seconds. Atomic: no partial file on failure."""
    import anndata as ad
    import h5py
    import pandas as pd

    from gene_dag import io

    n, d = args.cells, args.genes
    rng = np.random.default_rng(args.seed)
    # gene detection rates vary (lognormal), mean = density; capped at 60%
    rates = rng.lognormal(0, 1, d)
    rates = np.minimum(rates / rates.mean() * args.density, 0.6)
    cdf = np.cumsum(rates / rates.sum()).astype(np.float32)
    t0 = time.perf_counter()
    with io.atomic_write(path) as tmp:
        skeleton = ad.AnnData(
            obs=pd.DataFrame(index=pd.Index([f"cell{i}" for i in range(n)])),
            var=pd.DataFrame(index=pd.Index([f"gene{j}" for j in range(d)])),
        )
        skeleton.write_h5ad(tmp)
        del skeleton
        with h5py.File(tmp, "a") as f:
            if "X" in f:
                del f["X"]
            g = f.create_group("X")
            g.attrs["encoding-type"] = "csr_matrix"
            g.attrs["encoding-version"] = "0.1.0"
            g.attrs["shape"] = np.array([n, d], dtype=np.int64)
            data = g.create_dataset("data", shape=(0,), maxshape=(None,), dtype=np.float32, chunks=(1 << 20,))
            indices = g.create_dataset("indices", shape=(0,), maxshape=(None,), dtype=np.int32, chunks=(1 << 20,))
            indptr = g.create_dataset("indptr", shape=(n + 1,), dtype=np.int64)
            indptr[0] = 0
            nnz = 0
            for start in range(0, n, args.chunk_cells):
                stop = min(n, start + args.chunk_cells)
                block = random_chunk(rng, stop - start, d, args.density, cdf)
                indptr[start + 1 : stop + 1] = nnz + block.indptr[1:]
                data.resize((nnz + block.nnz,))
                indices.resize((nnz + block.nnz,))
                data[nnz:] = block.data
                indices[nnz:] = block.indices
                nnz += block.nnz
                if (start // args.chunk_cells) % 10 == 0:
                    print(
                        f"  wrote {stop:,}/{n:,} cells, {nnz:,} nonzeros, {time.perf_counter() - t0:.1f} s", flush=True
                    )
    return time.perf_counter() - t0


def random_chunk(rng, c: int, d: int, density: float, cdf: np.ndarray):
    """CSR block of c cells: ~density*d genes per cell drawn by detection rate, log1p(count) values.

    Repeated draws of a gene in a cell are summed by the COO->CSR conversion (per-row
    work only; a global sort of the keys was 10x slower here).
    """
    import scipy.sparse as sp

    rows = np.repeat(np.arange(c, dtype=np.int32), rng.binomial(d, density, size=c))
    cols = np.minimum(np.searchsorted(cdf, rng.random(rows.size, dtype=np.float32)), d - 1).astype(np.int32)
    vals = np.log1p(rng.poisson(3.0, size=rows.size) + 1).astype(np.float32)
    block = sp.csr_matrix((vals, (rows, cols)), shape=(c, d))
    block.sum_duplicates()
    return block


# ---------------------------------------------------------------------------- streaming


def stream(args, path: Path) -> dict:
    """The child step: compute_stats on the file (or just read its blocks)."""
    import torch

    from gene_dag import io, stats

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    genes = [
        f"gene{j}"
        for j in np.sort(np.random.default_rng(args.seed + 1).choice(args.genes, args.regulators, replace=False))
    ]
    result = {"threads": thread_report(), "file_gb": round(path.stat().st_size / 1e9, 3)}
    t0 = time.perf_counter()
    if args.read_only:
        with io.open_h5ad_matrix(path) as (matrix, _):
            plan = stats._plan(
                matrix,
                args.regulators,
                memory_gb=args.memory_gb,
                dev=torch.device("cpu"),
                dtype=np.dtype(np.float64),
                block_rows=None,
            )
            nnz = sum(block.nnz for _, _, block in io.iter_row_blocks(matrix, plan.rows))
        result.update(read_s=round(time.perf_counter() - t0, 2), nnz=int(nnz), block_rows=plan.rows)
        return result
    st = stats.compute_stats(path, regulators=genes, memory_gb=args.memory_gb, device=args.device)
    seconds = time.perf_counter() - t0
    diag = st.cov[np.arange(len(st.regulators)), st.regulators]
    result.update(
        stream_s=round(seconds, 2),
        cov_shape=list(st.cov.shape),
        cov_dtype=str(st.cov.dtype),
        n=st.n,
        n_genes=len(st.genes),
        n_zero_variance=int(st.zero_variance.sum()),
        finite=bool(np.isfinite(st.cov).all()),
        diag_matches_var=bool(np.allclose(diag, st.std[st.regulators] ** 2, rtol=1e-9)),
    )
    return result


def run_child(args, path: Path, extra: list[str]) -> dict:
    """Run the streaming step in a fresh process under /usr/bin/time -v; parse its peak RSS."""
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--stream-only",
        *extra,
        "--cells",
        str(args.cells),
        "--genes",
        str(args.genes),
        "--density",
        str(args.density),
        "--regulators",
        str(args.regulators),
        "--memory-gb",
        str(args.memory_gb),
        "--seed",
        str(args.seed),
        "--workdir",
        str(args.workdir),
        "--device",
        args.device,
    ]
    timer = shutil.which("time") and Path("/usr/bin/time").exists()
    if timer:
        cmd = ["/usr/bin/time", "-v", *cmd]
    print("$ " + " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    sys.stderr.write(proc.stderr)
    if proc.returncode:
        sys.exit(f"streaming step failed with exit status {proc.returncode}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if timer:
        rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
        wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", proc.stderr)
        result["peak_rss_kb"] = int(rss.group(1))
        result["peak_rss_gib"] = round(int(rss.group(1)) / 2**20, 3)
        result["process_wall"] = wall.group(1)
    return result


def main(argv=None) -> int:
    args = parse_args(argv)
    path = data_path(args)
    if args.stream_only:
        if not path.exists():
            sys.exit(f"{path}: file not found (run without --stream-only first)")
        print(json.dumps(stream(args, path)))
        return 0
    args.workdir.mkdir(parents=True, exist_ok=True)
    print(json.dumps({"threads": thread_report()}), flush=True)
    if path.exists():
        print(f"reusing {path} ({path.stat().st_size / 1e9:.2f} GB)")
    else:
        seconds = write_data(args, path)
        print(f"write: {seconds:.1f} s, {path} ({path.stat().st_size / 1e9:.2f} GB)", flush=True)
    if args.measure_read:
        print("read only: " + json.dumps(run_child(args, path, ["--read-only"])), flush=True)
    result = run_child(args, path, [])
    print("stream: " + json.dumps(result), flush=True)
    if args.delete_data:
        path.unlink()
        print(f"deleted {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
