#!/usr/bin/env python
"""Side-by-side benchmark: gene-dag's solver against published NOTEARS-family solvers.

For every graph type, number of genes d and seed, one data set is simulated with
``gene_dag.simulate`` and every requested solver is run on the same X:

* graph: ER or SF with ``edges_per_node=2`` (ER2 / SF2), ``simulate_graph``;
* weights: uniform in +-[0.5, 2] (``simulate_weights(B, w_range=(0.5, 2.0))``);
* data: linear SEM with Gaussian noise, sd 1 (``simulate_sem(W, n, noise_scale=1.0)``),
  n = 1000 by default, raw (not standardised);
* seeds: the benchmark seed s is expanded with ``numpy.random.SeedSequence(s)`` into
  three independent integer seeds, for the graph, the weights and the noise.

Solvers (each exactly as its authors' example calls it, plus the shared data):

* ``gene-dag``: ``gene_dag.fit(X)`` with all defaults (run in this process, after one
  untimed warm-up fit on a 5-gene problem, so one-off start-up costs are not charged
  to the first run). X is passed as simulated (float32).
* ``dagma``: ``dagma.linear.DagmaLinear(loss_type="l2").fit(X, lambda1=0.02)``, the
  usage of the DAGMA README / example (``dagma/linear.py::test``); every other argument
  is the package default (w_threshold=0.3, T=5, mu_init=1, mu_factor=0.1,
  s=[1, .9, .8, .7, .6], warm_iter=3e4, max_iter=6e4, lr=3e-4). X is passed as float64
  (DagmaLinear's default dtype); its tqdm progress bar is silenced (TQDM_DISABLE=1).
* ``notears``: ``benchmarks/notears_linear.py`` (a faithful reimplementation of
  xunzheng/notears ``notears/linear.py``) with ``lambda1=0.1, loss_type="l2"`` as in the
  original's ``__main__`` demo; other settings are the original's defaults (max_iter=100,
  h_tol=1e-8, rho_max=1e16, w_threshold=0.3).

dagma and notears run in a child process of this script (hidden ``--_worker`` flag),
killed when it exceeds ``--time-limit`` (status ``timeout``). The recorded time is the
wall-clock time of the fit call alone (measured inside the child; process start-up,
imports and data loading excluded); the time limit applies to the whole child.

Threads: the same count (``--threads``, default 2) for every solver, set through the
environment (OMP/OPENBLAS/MKL_NUM_THREADS) before numpy is imported, through
``threadpoolctl.threadpool_limits`` and through ``torch.set_num_threads``. What each
process actually saw (threadpoolctl.threadpool_info(), torch.get_num_threads()) is
written into the JSON and the markdown.

Metrics: ``gene_dag.metrics.count_accuracy(B_true, W_est)`` on the thresholded
estimate (each solver's own w_threshold, 0.3 everywhere), plus whether the estimate is
acyclic.

Output: the JSON (``--out``) is rewritten after every run; rerunning the same command
resumes, skipping (graph, d, n, seed, solver) entries already done (``ok``, or
``timeout`` under a time limit at least as long as the current one); ``--fresh``
starts over. The markdown (``--markdown``) summarises every run in the JSON: per
(graph, d, solver) mean +- sd over seeds of SHD, TPR, FDR, predicted edges and wall
time, and the time ratio solver / gene-dag computed only from seeds where both ran in
the same invocation.

Example (tiny, seconds)::

    .venv/bin/python benchmarks/compare_published.py --graphs er --d 10 --seeds 0 \
        --solvers dagma notears --out benchmarks/out/tiny.json --markdown benchmarks/out/tiny.md
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SOLVERS = ("gene-dag", "dagma", "notears")
SUBPROCESS_SOLVERS = ("dagma", "notears")
DAGMA_LAMBDA1 = 0.02  # DAGMA README / example
NOTEARS_LAMBDA1 = 0.1  # NOTEARS notears/linear.py __main__ demo
W_RANGE = (0.5, 2.0)
EDGES_PER_NODE = 2.0
NOISE_SCALE = 1.0
THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


# --------------------------------------------------------------------------- threads


def set_thread_env(threads: int) -> None:
    """Set the thread environment variables; effective only before numpy/torch load."""
    for var in THREAD_ENV_VARS:
        os.environ[var] = str(threads)
    os.environ["TQDM_DISABLE"] = "1"


_LIMITER = None  # keeps the threadpoolctl limit alive for the life of the process


def pin_threads(threads: int, use_torch: bool) -> dict:
    """Limit every thread pool to ``threads`` and return what is in effect."""
    global _LIMITER
    import numpy  # noqa: F401  load every BLAS the solvers use first: threadpool_limits
    import scipy.linalg  # noqa: F401  only reaches libraries already loaded
    import scipy.optimize  # noqa: F401
    from threadpoolctl import threadpool_limits

    _LIMITER = threadpool_limits(limits=threads)
    if use_torch:
        import torch

        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(threads)
        except RuntimeError:
            pass  # only settable once, before any parallel work
    return thread_report(use_torch)


def thread_report(use_torch: bool) -> dict:
    from threadpoolctl import threadpool_info

    pools = [
        {
            "user_api": p.get("user_api"),
            "internal_api": p.get("internal_api"),
            "prefix": p.get("prefix"),
            "version": p.get("version"),
            "num_threads": p.get("num_threads"),
            # e.g. numpy.libs/libscipy_openblas64_...so vs scipy.libs/libscipy_openblas-...so:
            # numpy and scipy wheels each ship their own OpenBLAS
            "library": _library_owner(p.get("filepath", "")),
        }
        for p in threadpool_info()
    ]
    rep = {"threadpools": pools, "env": {v: os.environ.get(v) for v in THREAD_ENV_VARS}}
    if use_torch:
        import torch

        rep["torch_num_threads"] = torch.get_num_threads()
        rep["torch_num_interop_threads"] = torch.get_num_interop_threads()
    return rep


def _library_owner(filepath: str) -> str:
    """'numpy.libs', 'scipy.libs', 'torch', ...: the installed package a shared library came with."""
    parts = filepath.split(os.sep)
    if "site-packages" in parts:
        i = parts.index("site-packages")
        if i + 1 < len(parts) - 1:
            return parts[i + 1]
    return os.path.dirname(filepath) or "?"


def thread_summary(rep: dict) -> str:
    parts = [f"{p['internal_api']}[{p['library']}]={p['num_threads']}" for p in rep["threadpools"]]
    if "torch_num_threads" in rep:
        parts.append(f"torch={rep['torch_num_threads']}")
    return ", ".join(parts)


# --------------------------------------------------------------------------- worker


def worker_main(spec_path: str) -> int:
    """Child process: run one published solver on X and write W and timings."""
    with open(spec_path) as fh:
        spec = json.load(fh)
    set_thread_env(spec["threads"])
    import resource

    import numpy as np

    rep = pin_threads(spec["threads"], use_torch=False)
    X = np.load(spec["x_path"]).astype(np.float64)
    solver = spec["solver"]
    info = {}
    if solver == "dagma":
        from dagma.linear import DagmaLinear

        model = DagmaLinear(loss_type="l2")
        t0, c0 = time.perf_counter(), time.process_time()
        W = model.fit(X, lambda1=spec["lambda1"])
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        info = {"h_final": float(model.h_final), "score_final": float(model.score_final)}
    elif solver == "notears":
        sys.path.insert(0, HERE)
        from notears_linear import notears_linear

        t0, c0 = time.perf_counter(), time.process_time()
        W, info = notears_linear(X, lambda1=spec["lambda1"], loss_type="l2", return_info=True)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    else:
        raise ValueError(f"worker: unknown solver {solver!r}")
    rep_after = thread_report(use_torch=False)
    np.save(spec["w_path"], np.asarray(W, dtype=np.float64))
    out = {
        "time_s": wall,
        "cpu_s": cpu,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "solver_info": info,
        "threads_seen": thread_summary(rep_after),
        "threads_at_start": thread_summary(rep),
    }
    tmp = spec["result_path"] + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(out, fh)
    os.replace(tmp, spec["result_path"])
    return 0


def run_in_subprocess(solver: str, X, lambda1: float, threads: int, time_limit: float | None):
    """Run a published solver in a child process with a wall-clock cap.

    Returns (status, W or None, result dict).
    """
    import numpy as np

    tmpdir = tempfile.mkdtemp(prefix="gene_dag_bench_")
    try:
        spec = {
            "solver": solver,
            "lambda1": lambda1,
            "threads": threads,
            "x_path": os.path.join(tmpdir, "X.npy"),
            "w_path": os.path.join(tmpdir, "W.npy"),
            "result_path": os.path.join(tmpdir, "result.json"),
        }
        np.save(spec["x_path"], X)
        spec_path = os.path.join(tmpdir, "spec.json")
        with open(spec_path, "w") as fh:
            json.dump(spec, fh)
        log_path = os.path.join(tmpdir, "worker.log")
        env = dict(os.environ)
        for var in THREAD_ENV_VARS:
            env[var] = str(threads)
        env["TQDM_DISABLE"] = "1"
        t0 = time.perf_counter()
        with open(log_path, "w") as log:
            proc = subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "--_worker", spec_path],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # own process group: a timeout kills it whole
            )
            try:
                rc = proc.wait(timeout=time_limit)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                return "timeout", None, {"elapsed_s": time.perf_counter() - t0}
            except BaseException:  # KeyboardInterrupt: do not leave the child running
                _kill_group(proc)
                raise
        elapsed = time.perf_counter() - t0
        if rc != 0 or not os.path.exists(spec["result_path"]):
            with open(log_path, errors="replace") as fh:
                tail = fh.read()[-3000:]
            return "error", None, {"elapsed_s": elapsed, "error": f"worker exit code {rc}\n{tail}"}
        with open(spec["result_path"]) as fh:
            res = json.load(fh)
        res["elapsed_s"] = elapsed
        return "ok", np.load(spec["w_path"]), res
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _kill_group(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


# --------------------------------------------------------------------------- gene-dag


def load_gene_dag():
    """Return (fit, None) if gene_dag.fit exists, else (None, reason)."""
    try:
        import gene_dag
    except Exception as exc:  # pragma: no cover - environment problem
        return None, f"cannot import gene_dag: {exc!r}"
    fit = getattr(gene_dag, "fit", None)
    if fit is None:
        return None, (
            "gene_dag.fit is not available yet (the solver in src/gene_dag/solver/ is "
            "not written or not exported from gene_dag/__init__.py)"
        )
    return fit, None


def warm_up_gene_dag(fit, kwargs) -> None:
    """One untimed fit on a 5-gene chain, so one-off start-up costs stay out of the timings."""
    import numpy as np

    rng = np.random.default_rng(12345)
    Z = rng.normal(size=(200, 5)).astype(np.float32)
    X = Z.copy()
    for j in range(1, 5):
        X[:, j] += 0.8 * X[:, j - 1]
    fit(X, **kwargs)


def run_gene_dag(fit, X, kwargs):
    t0, c0 = time.perf_counter(), time.process_time()
    W = fit(X, **kwargs)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    res = {"time_s": wall, "cpu_s": cpu, "elapsed_s": wall}
    return W, res


# --------------------------------------------------------------------------- data & metrics


def simulate(graph: str, d: int, n: int, seed: int, edges_per_node: float = EDGES_PER_NODE):
    import numpy as np

    from gene_dag.simulate import simulate_graph, simulate_sem, simulate_weights

    s_graph, s_weights, s_noise = (int(x) for x in np.random.SeedSequence(seed).generate_state(3))
    B, _ = simulate_graph(d, graph_type=graph, edges_per_node=edges_per_node, seed=s_graph)
    W = simulate_weights(B, w_range=W_RANGE, seed=s_weights)
    X = simulate_sem(W, n, noise_scale=NOISE_SCALE, seed=s_noise)
    seeds = {"graph": s_graph, "weights": s_weights, "noise": s_noise}
    return B, W, np.asarray(X), seeds


def to_csr(W):
    import numpy as np
    import scipy.sparse as sp

    if sp.issparse(W):
        W = sp.csr_matrix(W)
    else:
        W = sp.csr_matrix(np.asarray(W))
    W.eliminate_zeros()
    return W


def is_acyclic(W) -> bool:
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    A = sp.csr_matrix(W)
    if A.diagonal().any():
        return False
    n_comp, _ = connected_components(A, directed=True, connection="strong")
    return n_comp == A.shape[0]


def evaluate(B_true, W_est) -> dict:
    import numpy as np

    from gene_dag.metrics import count_accuracy

    acc = count_accuracy(B_true, W_est)
    out = {}
    for k, v in dict(acc).items():
        if isinstance(v, (bool, np.bool_)):
            out[k] = bool(v)
        elif isinstance(v, (int, np.integer)):
            out[k] = int(v)
        elif isinstance(v, (float, np.floating)):
            out[k] = float(v)
    out.setdefault("n_predicted", int(W_est.nnz))
    out["is_dag"] = bool(is_acyclic(W_est))
    return out


# --------------------------------------------------------------------------- JSON store


def run_key(r) -> tuple:
    return (r["graph"], int(r["d"]), int(r["n"]), int(r["seed"]), r["solver"])


def load_store(path: str, fresh: bool, threads: int) -> dict:
    if fresh or not os.path.exists(path):
        return {"meta": {"invocations": []}, "runs": []}
    with open(path) as fh:
        store = json.load(fh)
    prev = {inv.get("threads") for inv in store["meta"].get("invocations", [])}
    prev.discard(None)
    if prev and prev != {threads}:
        sys.exit(
            f"error: {path} holds runs with --threads {sorted(prev)}, this run asks for "
            f"{threads}; timings would not be comparable. Use another --out or --fresh."
        )
    return store


def save_store(path: str, store: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(store, fh, indent=1, default=_json_default)
    os.replace(tmp, path)


def _json_default(o):
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"not JSON serialisable: {type(o)}")


def done_already(store: dict, key: tuple, time_limit: float | None, key_of=run_key) -> bool:
    for r in store["runs"]:
        if key_of(r) != key:
            continue
        if r["status"] == "ok":
            return True
        if r["status"] == "timeout":
            old = r.get("time_limit_s")
            if time_limit is not None and old is not None and old >= time_limit:
                return True
    return False


def put_run(store: dict, rec: dict, key_of=run_key) -> None:
    key = key_of(rec)
    store["runs"] = [r for r in store["runs"] if key_of(r) != key]
    store["runs"].append(rec)


# --------------------------------------------------------------------------- summary


def _mean_sd(xs):
    xs = [float(x) for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not xs:
        return None, None
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return m, None
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def _fmt(m, sd, digits):
    if m is None:
        return "–"
    if sd is None:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {sd:.{digits}f}"


def _fmt_time(m, sd):
    if m is None:
        return "–"
    digits = 2 if m < 10 else (1 if m < 100 else 0)
    return _fmt(m, sd, digits)


def summarise(store: dict) -> list[dict]:
    """Rows per (graph, d, n, solver)."""
    runs = store["runs"]
    groups = {}
    for r in runs:
        groups.setdefault((r["graph"], r["d"], r["n"]), {}).setdefault(r["solver"], []).append(r)
    rows = []
    order = {s: i for i, s in enumerate(SOLVERS)}
    for graph, d, n in sorted(groups, key=lambda k: (k[0], k[1], k[2])):
        by_solver = groups[(graph, d, n)]
        gd_runs = {(r["seed"], r["invocation"]): r for r in by_solver.get("gene-dag", []) if r["status"] == "ok"}
        for solver in sorted(by_solver, key=lambda s: order.get(s, 99)):
            rs = by_solver[solver]
            ok = [r for r in rs if r["status"] == "ok"]
            row = {
                "graph": graph,
                "d": d,
                "n": n,
                "solver": solver,
                "runs": len(rs),
                "ok": len(ok),
                "timeouts": sum(r["status"] == "timeout" for r in rs),
                "errors": sum(r["status"] == "error" for r in rs),
                "not_dag": sum(1 for r in ok if not r["metrics"].get("is_dag", True)),
            }
            for m in ("shd", "tpr", "fdr", "n_predicted", "n_true"):
                row[m] = _mean_sd([r["metrics"].get(m) for r in ok])
            row["time_s"] = _mean_sd([r["time_s"] for r in ok])
            limits = [r.get("time_limit_s") for r in rs if r["status"] == "timeout"]
            row["timeout_limit_s"] = min(limits) if limits else None
            # time ratio solver / gene-dag, only from seeds run in the same invocation
            if solver != "gene-dag":
                pairs, lower = [], []
                for r in rs:
                    g = gd_runs.get((r["seed"], r["invocation"]))
                    if g is None:
                        continue
                    if r["status"] == "ok":
                        pairs.append((r["time_s"], g["time_s"]))
                    elif r["status"] == "timeout" and r.get("time_limit_s"):
                        lower.append(r["time_limit_s"] / g["time_s"])
                row["ratio_pairs"] = len(pairs)
                row["ratio"] = (
                    (sum(a for a, _ in pairs) / sum(b for _, b in pairs))
                    if pairs and sum(b for _, b in pairs) > 0
                    else None
                )
                row["ratio_range"] = (min(a / b for a, b in pairs), max(a / b for a, b in pairs)) if pairs else None
                row["ratio_lower_bounds"] = lower
            rows.append(row)
    return rows


def invocation_lines(store: dict) -> list[str]:
    """Markdown list of every invocation in ``store``: machine, threads, commit, load before its runs."""
    invs = store["meta"].get("invocations", [])
    lines = []
    if invs:
        lines.append("Machine and threads:")
        lines.append("")
        for inv in invs:
            loads = [
                r["loadavg_before"][0]
                for r in store["runs"]
                if r.get("invocation") == inv["id"] and r.get("loadavg_before")
            ]
            if loads:
                inv = dict(inv, load_note=f"1-min load average before runs {min(loads):.1f}–{max(loads):.1f}")
            lines.append(
                f"- invocation {inv['id']} ({inv['started']}): {inv.get('cpu', '?')}, {inv.get('n_cpus', '?')} CPUs, "
                f"--threads {inv.get('threads')}; this process: {inv.get('threads_summary', '?')}; "
                f"gene-dag device: {inv.get('gene_dag_device', '?')}; time limit {inv.get('time_limit_s')} s; "
                f"git {inv.get('git_commit', '?')}{' (dirty)' if inv.get('git_dirty') else ''}"
                + (f"; {inv['load_note']}" if inv.get("load_note") else "")
                + (
                    f"; **gene-dag skipped**: {inv['gene_dag_unavailable_reason']}"
                    if inv.get("gene_dag_unavailable_reason")
                    else ""
                )
            )
        lines.append("")
    return lines


def write_markdown(path: str, store: dict) -> None:
    rows = summarise(store)
    lines = ["# gene-dag vs published solvers", ""]
    lines += [
        "Data: `gene_dag.simulate`: ER / SF graphs with 2 edges per node, weights ±[0.5, 2], "
        "Gaussian noise sd 1, raw (not standardised) data; the same X for every solver.",
        f"Solvers: gene-dag `gene_dag.fit(X)` (defaults); DAGMA `DagmaLinear(loss_type='l2').fit(X, lambda1={DAGMA_LAMBDA1})` "
        f"(README usage, w_threshold 0.3); NOTEARS linear (benchmarks/notears_linear.py, lambda1={NOTEARS_LAMBDA1}, "
        "loss l2, w_threshold 0.3).",
        "Time: wall-clock seconds of the fit call. Mean ± sd over seeds of successful runs. "
        "‘× gene-dag’: sum of the solver's times / sum of gene-dag's times over seeds where both finished "
        "in the same invocation (range over seeds in brackets); for timeouts, `>` gives the lower bound "
        "time-limit / gene-dag time.",
        "",
    ]
    lines += invocation_lines(store)
    lines.append(
        "| graph | d | n | solver | ok/runs | SHD | TPR | FDR | predicted (true) | time (s) | × gene-dag | notes |"
    )
    lines.append("| --- | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        notes = status_notes(r)
        ratio = "–"
        if r["solver"] != "gene-dag":
            if r.get("ratio") is not None:
                lo, hi = r["ratio_range"]
                ratio = (
                    f"{r['ratio']:.2g}"
                    + (f" [{lo:.2g}–{hi:.2g}]" if r["ratio_pairs"] > 1 else "")
                    + f" ({r['ratio_pairs']} seed{'s' if r['ratio_pairs'] > 1 else ''})"
                )
            if r.get("ratio_lower_bounds"):
                lb = f"> {min(r['ratio_lower_bounds']):.2g}"
                ratio = lb if ratio == "–" else f"{ratio}; {lb}"
        pred = _fmt(*r["n_predicted"], 1)
        true = _fmt(r["n_true"][0], None, 1) if r["n_true"][0] is not None else "?"
        lines.append(
            f"| {r['graph']} | {r['d']} | {r['n']} | {r['solver']} | {r['ok']}/{r['runs']} | "
            f"{_fmt(*r['shd'], 1)} | {_fmt(*r['tpr'], 3)} | {_fmt(*r['fdr'], 3)} | {pred} ({true}) | "
            f"{_fmt_time(*r['time_s'])} | {ratio} | {'; '.join(notes)} |"
        )
    lines.append("")
    write_text(path, "\n".join(lines))


def status_notes(row: dict) -> list[str]:
    """Timeouts, errors and non-DAG results of a summary row, for its notes column."""
    notes = []
    if row["timeouts"]:
        notes.append(f"{row['timeouts']} timeout (> {row['timeout_limit_s']:g} s)")
    if row["errors"]:
        notes.append(f"{row['errors']} error")
    if row["not_dag"]:
        notes.append(f"{row['not_dag']} not a DAG")
    return notes


def write_text(path: str, text: str) -> None:
    """Write ``path`` atomically (a reader never sees half a file)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- main


def _git_info():
    try:
        commit = subprocess.run(
            ["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
        )
        return commit or None, dirty
    except Exception:
        return None, None


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def invocation_record(args, rep: dict, time_limit, gene_dag_available, why, settings: dict) -> dict:
    """The ``meta.invocations`` entry: machine, threads, versions, commit and settings of this run."""
    import numpy as np
    import scipy
    import torch

    commit, dirty = _git_info()
    versions = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "torch": torch.__version__,
    }
    for mod in ("dagma", "gene_dag", "threadpoolctl"):
        try:
            from importlib.metadata import version

            versions[mod] = version(mod.replace("_", "-"))
        except Exception:
            versions[mod] = None
    inv = {
        "id": uuid.uuid4().hex[:8],
        "started": _dt.datetime.now().isoformat(timespec="seconds"),
        "argv": sys.argv[:],
        "host": socket.gethostname(),
        "cpu": _cpu_model(),
        "n_cpus": os.cpu_count(),
        "threads": args.threads,
        "threads_detail": rep,
        "threads_summary": thread_summary(rep),
        "time_limit_s": time_limit,
        "gene_dag_available": gene_dag_available,
        "gene_dag_unavailable_reason": why,
        "gene_dag_device": args.device,
        "cuda_available": bool(torch.cuda.is_available()),
        "git_commit": commit,
        "git_dirty": dirty,
        "versions": versions,
        "settings": settings,
    }
    return inv


def build_parser(defaults: dict | None = None, description: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=description
        or "Compare gene-dag's solver with DAGMA and NOTEARS (linear) on simulated SEM data "
        "(see the module docstring and benchmarks/README.md).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--graphs", nargs="+", default=["er", "sf"], choices=["er", "sf"])
    p.add_argument("--d", nargs="+", type=int, default=[20, 50, 100, 200], help="numbers of genes")
    p.add_argument("--n", type=int, default=1000, help="samples (cells) per data set")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--solvers", nargs="+", default=list(SOLVERS), choices=list(SOLVERS))
    p.add_argument(
        "--out",
        default=os.path.join("benchmarks", "out", "compare.json"),
        help="results JSON, rewritten after every run; an existing one is resumed",
    )
    p.add_argument(
        "--markdown",
        default=os.path.join("benchmarks", "out", "compare.md"),
        help="summary table of every run in --out ('' for none)",
    )
    p.add_argument(
        "--time-limit",
        type=float,
        default=3600.0,
        help="wall-clock cap in seconds per dagma / notears run (0 = none); gene-dag is not capped",
    )
    p.add_argument("--threads", type=int, default=2, help="threads for every solver (default 2)")
    p.add_argument("--device", default="auto", help="gene-dag device argument (default: fit's default 'auto')")
    p.add_argument("--fresh", action="store_true", help="ignore an existing --out and start over")
    p.add_argument(
        "--redo",
        nargs="+",
        default=[],
        choices=list(SOLVERS),
        metavar="SOLVER",
        help="rerun these solvers even where --out has them done (gene-dag is then rerun "
        "with them, so their time ratio comes from this invocation)",
    )
    p.add_argument("--summary-only", action="store_true", help="only rewrite --markdown from --out")
    p.add_argument("--_worker", help=argparse.SUPPRESS)
    if defaults:
        p.set_defaults(**defaults)
    return p


def main(argv=None, defaults: dict | None = None, description: str | None = None) -> int:
    args = build_parser(defaults, description).parse_args(argv)
    if args._worker:
        return worker_main(args._worker)
    if args.threads < 1:
        sys.exit("error: --threads must be >= 1")
    time_limit = args.time_limit if args.time_limit and args.time_limit > 0 else None

    if args.summary_only:
        with open(args.out) as fh:
            store = json.load(fh)
        write_markdown(args.markdown, store)
        print(f"wrote {args.markdown}")
        return 0

    set_thread_env(args.threads)  # before numpy / torch are imported
    # A SIGTERM (cluster job killed) unwinds like Ctrl-C, so a running child solver is killed too.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    store = load_store(args.out, args.fresh, args.threads)

    use_gd = "gene-dag" in args.solvers
    fit, why = (None, None)
    if use_gd:
        fit, why = load_gene_dag()
        if fit is None:
            print(
                f"SKIP gene-dag: {why}. The other solvers run; rerun the same command later "
                "to add gene-dag (finished runs are kept).",
                flush=True,
            )
    # torch (gene-dag's backend) is pinned even when gene-dag is skipped, for a uniform report
    rep = pin_threads(args.threads, use_torch=True)
    gd_kwargs = {} if args.device == "auto" else {"device": args.device}

    try:
        from gene_dag.metrics import count_accuracy  # noqa: F401
        from gene_dag.simulate import simulate_graph  # noqa: F401
    except ImportError as exc:
        sys.exit(f"error: gene_dag.simulate / gene_dag.metrics not available yet ({exc}); cannot simulate data.")

    inv = invocation_record(
        args,
        rep,
        time_limit,
        gene_dag_available=fit is not None if use_gd else None,
        why=why,
        settings={
            "edges_per_node": EDGES_PER_NODE,
            "w_range": W_RANGE,
            "noise_scale": NOISE_SCALE,
            "dagma_lambda1": DAGMA_LAMBDA1,
            "notears_lambda1": NOTEARS_LAMBDA1,
        },
    )
    store["meta"].setdefault("invocations", []).append(inv)
    print(
        f"invocation {inv['id']}: threads {args.threads} -> {inv['threads_summary']}; "
        f"time limit {time_limit} s; out {args.out}",
        flush=True,
    )

    if fit is not None:
        t0 = time.perf_counter()
        try:
            warm_up_gene_dag(fit, gd_kwargs)
            print(f"gene-dag warm-up fit: {time.perf_counter() - t0:.2f} s (untimed)", flush=True)
        except Exception as exc:
            print(f"gene-dag warm-up failed: {exc!r}", flush=True)
    save_store(args.out, store)

    total = len(args.graphs) * len(args.d) * len(args.seeds) * len(args.solvers)
    k = 0  # (graph, d, seed, solver) combinations visited, for the progress lines
    for graph in args.graphs:
        for d in args.d:
            for seed in args.seeds:
                tag = f"[{graph} d={d} n={args.n} seed={seed}]"
                todo = [
                    solver
                    for solver in args.solvers
                    if not (solver == "gene-dag" and fit is None)
                    and (solver in args.redo or not done_already(store, (graph, d, args.n, seed, solver), time_limit))
                ]
                if fit is not None and "gene-dag" in args.solvers and todo and "gene-dag" not in todo:
                    # gene-dag is rerun with any solver that still has to run on this data set,
                    # so its time ratio always comes from one invocation (same machine state)
                    todo.insert(0, "gene-dag")
                    print(
                        f"{tag} gene-dag: done already, rerun to pair its time with "
                        f"{', '.join(todo[1:])} in this invocation",
                        flush=True,
                    )
                for solver in args.solvers:
                    if solver not in todo:
                        k += 1
                        why = "not available" if solver == "gene-dag" and fit is None else "done already"
                        print(f"({k}/{total}) {tag} {solver}: {why}, skipped", flush=True)
                if not todo:
                    continue
                t_sim = time.perf_counter()
                B_true, W_true, X, sim_seeds = simulate(graph, d, args.n, seed)
                B_true = to_csr(B_true)
                t_sim = time.perf_counter() - t_sim
                for solver in todo:
                    rec = {
                        "graph": graph,
                        "d": d,
                        "n": args.n,
                        "seed": seed,
                        "solver": solver,
                        "invocation": inv["id"],
                        "sim_seeds": sim_seeds,
                        "simulate_s": t_sim,
                        "threads": args.threads,
                        "loadavg_before": list(os.getloadavg()),
                        "finished": None,
                        "status": None,
                        "time_s": None,
                        "metrics": {},
                    }
                    try:
                        if solver == "gene-dag":
                            W, res = run_gene_dag(fit, X, gd_kwargs)
                            status = "ok"
                            rec["params"] = {
                                "call": "gene_dag.fit(X" + "".join(f", {a}={v!r}" for a, v in gd_kwargs.items()) + ")"
                            }
                        else:
                            lam = DAGMA_LAMBDA1 if solver == "dagma" else NOTEARS_LAMBDA1
                            rec["params"] = {"lambda1": lam, "w_threshold": 0.3, "loss_type": "l2"}
                            rec["time_limit_s"] = time_limit
                            status, W, res = run_in_subprocess(solver, X, lam, args.threads, time_limit)
                    except KeyboardInterrupt:
                        raise
                    except Exception:
                        status, W, res = "error", None, {"error": traceback.format_exc()[-3000:]}
                    rec["status"] = status
                    rec.update({k2: v for k2, v in res.items() if k2 != "time_s"})
                    if status == "ok":
                        rec["time_s"] = res["time_s"]
                        try:
                            W = to_csr(W)
                            rec["metrics"] = evaluate(B_true, W)
                        except Exception:
                            rec["status"] = status = "error"
                            rec["error"] = "metrics failed:\n" + traceback.format_exc()[-3000:]
                    rec["finished"] = _dt.datetime.now().isoformat(timespec="seconds")
                    put_run(store, rec)
                    save_store(args.out, store)
                    if args.markdown:
                        write_markdown(args.markdown, store)
                    k += 1
                    head = f"({k}/{total}) {tag} {solver}:"
                    if status == "ok":
                        m = rec["metrics"]
                        print(
                            f"{head} SHD {m.get('shd')} TPR {m.get('tpr', float('nan')):.3f} "
                            f"FDR {m.get('fdr', float('nan')):.3f} predicted {m.get('n_predicted')} "
                            f"(true {m.get('n_true', B_true.nnz)}) dag {m.get('is_dag')} "
                            f"time {rec['time_s']:.2f} s",
                            flush=True,
                        )
                    elif status == "timeout":
                        print(f"{head} TIMEOUT after {time_limit:g} s", flush=True)
                    else:
                        print(f"{head} ERROR\n{rec.get('error', '')}", flush=True)
    if args.markdown:
        write_markdown(args.markdown, store)
        print(f"wrote {args.out} and {args.markdown}", flush=True)
    else:
        print(f"wrote {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
