#!/usr/bin/env python
"""Accuracy on ER2 / ER4 / SF4 graphs against DAGMA, on raw and on standardised data.

This is ``compare_published.py``'s harness (same simulation, same DAGMA call in a
killable child process with pinned threads, same metrics, same resumable JSON store)
with three more axes:

* graph: ``er2``, ``er4``, ``sf4`` (``--graphs``; a bare ``er`` / ``sf`` is combined with
  every ``--edges-per-node``): ``simulate_graph(d, graph_type, edges_per_node=k)``, so
  ER with k·d edges expected, or scale-free (Barabási–Albert) with k parents per new
  node. Weights ±[0.5, 2], Gaussian noise sd 1, n = 1000, and the benchmark seed
  expanded into graph / weight / noise seeds exactly as in ``compare_published.py``, so
  ``er2`` data are the same as its ``er``.
* scale (``--scale raw standardised``): ``standardised`` centres every simulated column
  and divides it by its sd (ddof = 0) before any solver sees it; every solver of a
  (graph, d, seed, scale) cell gets the same X. Raw SEM data have variances that grow
  along the causal order, which the equal-variance least-squares score can exploit;
  standardising removes that signal.
* solver variants: ``dagma`` (``DagmaLinear(loss_type="l2").fit(X, lambda1=0.02)``, the
  README usage, w_threshold 0.3), ``gene-dag`` (``gene_dag.fit(X)``, every default as it
  is when run), ``gene-dag raw-scale`` (``gene_dag.fit(X, standardize=False)``) and
  ``gene-dag no order search`` (``order_search="never"``: the standardised
  core without the best-order search on the Gaussian BIC, the defaults before it) and
  ``gene-dag bic-order`` (``order_search="always"``: the search's
  network kept whatever its size; ``w0``: the same with ``w_threshold=0``, every edge
  the BIC selected).
  gene-dag runs in this process after one untimed warm-up fit; each gene-dag run
  records ``info["parameters"]`` of its result and, where the solver reports one,
  ``info["run"]["lambda1_selected"]``. ``notears`` is also accepted.

The store key is (graph, d, n, seed, scale, solver); rerunning a command resumes it.
Every save merges with the JSON on disk under a lock, so a second invocation (say the
gene-dag rows) can write into the same store while the first (DAGMA) still runs.
Every run records the 1-minute load average just before it started and a hash of the X
it was given (``x_sha1``), so runs of one cell made in different invocations can be
checked to have seen the same data.

Loop order: for each d, seed-major (seed 0 for every graph × scale × solver, then seed
1, ...), so an interrupted run leaves every cell with its lowest seeds done.

Markdown: one row per (graph, d, scale, solver) with mean ± sd over seeds of SHD, TPR,
FDR, predicted edges and fit time, the seeds done and the load average range before
its runs. gene-dag rows also show whether their mean SHD is <= DAGMA's over the seeds
both have, and the time ratio DAGMA / gene-dag twice: from seeds where both ran in the
same invocation (sum over sum, per-seed range in brackets), and from the mean times
over the seeds both have, whichever invocations they ran in ("separate runs": the two
may have run under different machine load, which the load columns show).

Example (tiny, seconds)::

    .venv/bin/python benchmarks/er_sf_standardised.py --d 10 --seeds 0 --solvers dagma \
        --out /tmp/er_sf_tiny.json --markdown /tmp/er_sf_tiny.md

The DAGMA runs (one thread, then the gene-dag rows later into the same store)::

    nice -n 10 .venv/bin/python benchmarks/er_sf_standardised.py --d 100 200 \
        --seeds 0 1 2 3 4 5 6 7 8 9 --solvers dagma --threads 1 --time-limit 900
    nice -n 10 .venv/bin/python benchmarks/er_sf_standardised.py --d 100 200 \
        --seeds 0 1 2 3 4 5 6 7 8 9 --solvers gene-dag "gene-dag raw-scale" --threads 1
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import signal
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import compare_published as cp  # noqa: E402  (stdlib-only at import: thread settings still apply)

GENE_DAG_VARIANTS = {
    "gene-dag": {},
    "gene-dag raw-scale": {"standardize": False},
    "gene-dag no order search": {"order_search": "never"},
    "gene-dag bic-order": {"order_search": "always"},
    "gene-dag bic-order w0": {"order_search": "always", "w_threshold": 0.0},
}
SOLVERS = ("dagma", *GENE_DAG_VARIANTS, "notears")
SCALES = ("raw", "standardised")
GRAPH_ORDER = ("er2", "er4", "sf2", "sf4")
PEER = "dagma"


def run_key(r) -> tuple:
    return (r["graph"], int(r["d"]), int(r["n"]), int(r["seed"]), r["scale"], r["solver"])


def save_merged(path: str, store: dict) -> dict:
    """Save ``store`` merged with what is on disk, so two invocations can share one JSON.

    Under an exclusive lock: invocations are united by id, runs by key (the later
    ``finished`` wins). Returns the merged store.
    """
    import fcntl

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(path):
            with open(path) as fh:
                disk = json.load(fh)
            runs = {run_key(r): r for r in store["runs"]}
            for r in disk["runs"]:
                mine = runs.get(run_key(r))
                if mine is None or (r.get("finished") or "") > (mine.get("finished") or ""):
                    runs[run_key(r)] = r
            invs = {i["id"]: i for i in disk["meta"].get("invocations", [])}
            invs.update({i["id"]: i for i in store["meta"].get("invocations", [])})
            store["runs"] = list(runs.values())
            store["meta"]["invocations"] = sorted(invs.values(), key=lambda i: i.get("started", ""))
        cp.save_store(path, store)
    return store


def graph_names(graphs, edges_per_node) -> list[str]:
    """``er`` + ``--edges-per-node 2 4`` -> er2, er4; names with a number are kept."""
    out = []
    for g in graphs:
        names = [f"{g}{k}" for k in edges_per_node] if g in ("er", "sf") else [g]
        out += [x for x in names if x not in out]
    return out


def parse_graph(name: str) -> tuple[str, int]:
    return name[:2], int(name[2:])


def standardise(X):
    """Centre every column and divide by its sd (ddof = 0); constant columns are only centred."""
    import numpy as np

    X64 = np.asarray(X, dtype=np.float64)
    Xc = X64 - X64.mean(axis=0)
    sd = Xc.std(axis=0)
    Xs = Xc / np.where(sd > 0, sd, 1.0)
    return Xs.astype(np.asarray(X).dtype)


def gene_dag_call(solver: str) -> str:
    kw = GENE_DAG_VARIANTS[solver]
    return "gene_dag.fit(X" + "".join(f", {a}={v!r}" for a, v in kw.items()) + ")"


def run_gene_dag(fit, X, solver: str, device_kwargs: dict):
    """Time one gene-dag fit; return (W, result fields, recorded parameters)."""
    kwargs = {**GENE_DAG_VARIANTS[solver], **device_kwargs}
    t0, c0 = time.perf_counter(), time.process_time()
    result = fit(X, return_result=True, **kwargs)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    info = getattr(result, "info", None) or {}
    run = info.get("run") or {}
    params = {
        "call": gene_dag_call(solver),
        "parameters": info.get("parameters"),
        "lambda1_selected": run.get("lambda1_selected"),
        "run": {k: v for k, v in run.items() if not k.endswith("_json") and isinstance(v, (bool, int, float, str))},
    }
    res = {"time_s": wall, "cpu_s": cpu, "elapsed_s": wall}
    return result.adjacency, res, params


# --------------------------------------------------------------------------- summary


def _ok(rs):
    return {r["seed"]: r for r in rs if r["status"] == "ok"}


def _load_range(rs):
    loads = [r["loadavg_before"][0] for r in rs if r.get("loadavg_before")]
    return (min(loads), max(loads)) if loads else None


def summarise(store: dict) -> list[dict]:
    """Rows per (graph, d, n, scale, solver), with the comparison against DAGMA for gene-dag rows."""
    groups = {}
    for r in store["runs"]:
        groups.setdefault((r["graph"], r["d"], r["n"], r["scale"]), {}).setdefault(r["solver"], []).append(r)
    g_order = {g: i for i, g in enumerate(GRAPH_ORDER)}
    s_order = {s: i for i, s in enumerate(SCALES)}
    v_order = {s: i for i, s in enumerate(SOLVERS)}
    rows = []
    for key in sorted(groups, key=lambda k: (g_order.get(k[0], 99), k[0], k[1], k[2], s_order.get(k[3], 99))):
        graph, d, n, scale = key
        by_solver = groups[key]
        peer_rs = by_solver.get(PEER, [])
        peer_ok = _ok(peer_rs)
        for solver in sorted(by_solver, key=lambda s: v_order.get(s, 99)):
            rs = by_solver[solver]
            ok = _ok(rs)
            row = {
                "graph": graph,
                "d": d,
                "n": n,
                "scale": scale,
                "solver": solver,
                "runs": len(rs),
                "ok": len(ok),
                "timeouts": sum(r["status"] == "timeout" for r in rs),
                "errors": sum(r["status"] == "error" for r in rs),
                "not_dag": sum(1 for r in ok.values() if not r["metrics"].get("is_dag", True)),
                "load": _load_range(rs),
            }
            limits = [r.get("time_limit_s") for r in rs if r["status"] == "timeout"]
            row["timeout_limit_s"] = min(limits) if limits else None
            for m in ("shd", "tpr", "fdr", "n_predicted", "n_true"):
                row[m] = cp._mean_sd([r["metrics"].get(m) for r in ok.values()])
            row["time_s"] = cp._mean_sd([r["time_s"] for r in ok.values()])
            lams = [r.get("params", {}).get("lambda1_selected") for r in ok.values()]
            lams = [x for x in lams if isinstance(x, (int, float))]
            row["lambda1_selected"] = (min(lams), max(lams)) if lams else None
            if solver != PEER and peer_ok:
                common = sorted(set(ok) & set(peer_ok))
                row["common_seeds"] = len(common)
                if common:
                    own = [ok[s]["metrics"]["shd"] for s in common]
                    peer = [peer_ok[s]["metrics"]["shd"] for s in common]
                    row["shd_common"] = (sum(own) / len(own), sum(peer) / len(peer))
                    t_own = sum(ok[s]["time_s"] for s in common) / len(common)
                    t_peer = sum(peer_ok[s]["time_s"] for s in common) / len(common)
                    row["ratio_separate"] = t_peer / t_own if t_own > 0 else None
                    row["peer_load"] = _load_range([peer_ok[s] for s in common])
                pairs = [
                    (peer_ok[s]["time_s"], ok[s]["time_s"])
                    for s in common
                    if ok[s].get("invocation") == peer_ok[s].get("invocation")
                ]
                row["ratio_pairs"] = len(pairs)
                sb = sum(b for _, b in pairs)
                row["ratio_same"] = sum(a for a, _ in pairs) / sb if pairs and sb > 0 else None
                row["ratio_range"] = (min(a / b for a, b in pairs), max(a / b for a, b in pairs)) if pairs else None
            rows.append(row)
    return rows


def _range(lohi, digits):
    if lohi is None:
        return "–"
    lo, hi = lohi
    return f"{lo:.{digits}f}" if lo == hi else f"{lo:.{digits}f}–{hi:.{digits}f}"


def write_markdown(path: str, store: dict) -> None:
    rows = summarise(store)
    lines = ["# gene-dag vs DAGMA on ER2 / ER4 / SF4, raw and standardised", ""]
    lines += [
        "Data: `gene_dag.simulate`: ER graphs with k·d edges expected (er2, er4) or scale-free with k "
        "parents per new node (sf4), weights ±[0.5, 2], Gaussian noise sd 1; `standardised`: every column "
        "centred and divided by its sd (ddof 0) before any solver sees it. The same X for every solver of a cell.",
        f"Solvers: DAGMA `DagmaLinear(loss_type='l2').fit(X, lambda1={cp.DAGMA_LAMBDA1})` (README usage, "
        "w_threshold 0.3); gene-dag `gene_dag.fit(X)` (defaults when run); gene-dag raw-scale "
        "`gene_dag.fit(X, standardize=False)`.",
        "Mean ± sd over the seeds that finished. ‘SHD ≤ DAGMA’: mean SHD of the row vs DAGMA's over the seeds "
        "both have. Time ratios are DAGMA / the row: ‘same invocation’ from seeds where both ran in one "
        "invocation (sum / sum, per-seed range in brackets); ‘separate runs’ = mean DAGMA time / mean time "
        "of the row over the seeds both have, whichever invocation each ran in (compare the load columns). "
        "Load: 1-minute load average just before each run (min–max).",
        "",
    ]
    lines += cp.invocation_lines(store)
    lines.append(
        "| graph | d | n | scale | solver | ok/runs | SHD | TPR | FDR | predicted (true) | time (s) | load | "
        "SHD ≤ DAGMA (same seeds) | DAGMA / this, same invocation | DAGMA / this, separate runs (DAGMA load) | notes |"
    )
    lines.append(
        "| --- | ---: | ---: | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- |"
    )
    for r in rows:
        notes = cp.status_notes(r)
        if r["lambda1_selected"]:
            notes.append(f"lambda1 selected {_range(r['lambda1_selected'], 4)}")
        cmp_shd = same = sep = "–"
        if r.get("shd_common"):
            own, peer = r["shd_common"]
            verdict = "yes" if own <= peer else "**no**"
            cmp_shd = f"{verdict} ({own:.1f} vs {peer:.1f}, {r['common_seeds']} seeds)"
        if r.get("ratio_same") is not None:
            lo, hi = r["ratio_range"]
            same = f"{r['ratio_same']:.3g}" + (f" [{lo:.3g}–{hi:.3g}]" if r["ratio_pairs"] > 1 else "")
            same += f" ({r['ratio_pairs']} seeds)"
        if r.get("ratio_separate") is not None:
            sep = f"{r['ratio_separate']:.3g} ({_range(r.get('peer_load'), 1)})"
        pred = cp._fmt(*r["n_predicted"], 1)
        true = cp._fmt(r["n_true"][0], None, 1) if r["n_true"][0] is not None else "?"
        lines.append(
            f"| {r['graph']} | {r['d']} | {r['n']} | {r['scale']} | {r['solver']} | {r['ok']}/{r['runs']} | "
            f"{cp._fmt(*r['shd'], 1)} | {cp._fmt(*r['tpr'], 3)} | {cp._fmt(*r['fdr'], 3)} | {pred} ({true}) | "
            f"{cp._fmt_time(*r['time_s'])} | {_range(r['load'], 1)} | {cmp_shd} | {same} | {sep} | "
            f"{'; '.join(notes)} |"
        )
    lines.append("")
    cp.write_text(path, "\n".join(lines))


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="gene-dag vs DAGMA on ER2 / ER4 / SF4, raw and standardised data (see the module docstring).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--graphs",
        nargs="+",
        default=["er2", "er4", "sf4"],
        choices=["er", "sf", *GRAPH_ORDER],
        help="graph names; a bare er / sf is combined with every --edges-per-node",
    )
    p.add_argument("--edges-per-node", nargs="+", type=int, default=[2, 4], choices=[2, 4])
    p.add_argument("--scale", nargs="+", default=list(SCALES), choices=list(SCALES))
    p.add_argument("--d", nargs="+", type=int, default=[100, 200], help="numbers of genes")
    p.add_argument("--n", type=int, default=1000, help="samples (cells) per data set")
    p.add_argument("--seeds", nargs="+", type=int, default=list(range(10)))
    p.add_argument("--solvers", nargs="+", default=["dagma", "gene-dag"], choices=list(SOLVERS))
    p.add_argument("--out", default=os.path.join("benchmarks", "out", "er_sf_std.json"))
    p.add_argument("--markdown", default=os.path.join("benchmarks", "out", "er_sf_std.md"))
    p.add_argument("--time-limit", type=float, default=900.0, help="cap in s per dagma / notears run (0 = none)")
    p.add_argument("--threads", type=int, default=1, help="threads for every solver")
    p.add_argument("--device", default="auto", help="gene-dag device argument")
    p.add_argument("--fresh", action="store_true", help="ignore an existing --out and start over")
    p.add_argument("--redo", nargs="+", default=[], choices=list(SOLVERS), metavar="SOLVER")
    p.add_argument("--summary-only", action="store_true", help="only rewrite --markdown from --out")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads < 1:
        sys.exit("error: --threads must be >= 1")
    time_limit = args.time_limit if args.time_limit and args.time_limit > 0 else None
    if args.summary_only:
        with open(args.out) as fh:
            write_markdown(args.markdown, json.load(fh))
        print(f"wrote {args.markdown}")
        return 0

    cp.set_thread_env(args.threads)  # before numpy / torch are imported
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if args.fresh and os.path.exists(args.out):
        os.remove(args.out)  # else the merge on save would bring its runs back
    store = cp.load_store(args.out, args.fresh, args.threads)
    graphs = graph_names(args.graphs, args.edges_per_node)
    gd_solvers = [s for s in args.solvers if s in GENE_DAG_VARIANTS]
    fit, why = cp.load_gene_dag() if gd_solvers else (None, None)
    if gd_solvers and fit is None:
        print(f"SKIP gene-dag: {why}", flush=True)
    rep = cp.pin_threads(args.threads, use_torch=True)
    device_kwargs = {} if args.device == "auto" else {"device": args.device}
    inv = cp.invocation_record(
        args,
        rep,
        time_limit,
        gene_dag_available=fit is not None if gd_solvers else None,
        why=why,
        settings={
            "graphs": graphs,
            "scales": args.scale,
            "solvers": args.solvers,
            "w_range": cp.W_RANGE,
            "noise_scale": cp.NOISE_SCALE,
            "dagma_lambda1": cp.DAGMA_LAMBDA1,
            "notears_lambda1": cp.NOTEARS_LAMBDA1,
            "gene_dag_calls": {s: gene_dag_call(s) for s in gd_solvers},
        },
    )
    store["meta"].setdefault("invocations", []).append(inv)
    print(f"invocation {inv['id']}: {inv['threads_summary']}; time limit {time_limit} s; out {args.out}", flush=True)
    if fit is not None:
        t0 = time.perf_counter()
        try:
            cp.warm_up_gene_dag(fit, device_kwargs)
            print(f"gene-dag warm-up fit: {time.perf_counter() - t0:.2f} s (untimed)", flush=True)
        except Exception as exc:
            print(f"gene-dag warm-up failed: {exc!r}", flush=True)
    store = save_merged(args.out, store)

    total = len(args.d) * len(args.seeds) * len(graphs) * len(args.scale) * len(args.solvers)
    k = 0
    for d in args.d:
        for seed in args.seeds:
            for graph in graphs:
                todo = {
                    scale: [
                        s
                        for s in args.solvers
                        if not (s in GENE_DAG_VARIANTS and fit is None)
                        and (
                            s in args.redo
                            or not cp.done_already(
                                store, (graph, d, args.n, seed, scale, s), time_limit, key_of=run_key
                            )
                        )
                    ]
                    for scale in args.scale
                }
                skipped = sum(len(args.solvers) - len(v) for v in todo.values())
                k += skipped
                if skipped:
                    print(
                        f"({k}/{total}) [{graph} d={d} seed={seed}]: {skipped} done already or unavailable", flush=True
                    )
                if not any(todo.values()):
                    continue
                kind, epn = parse_graph(graph)
                t_sim = time.perf_counter()
                B_true, _, X_raw, sim_seeds = cp.simulate(kind, d, args.n, seed, edges_per_node=epn)
                B_true = cp.to_csr(B_true)
                t_sim = time.perf_counter() - t_sim
                for scale, solvers in todo.items():
                    X = X_raw if scale == "raw" else standardise(X_raw)
                    x_sha1 = hashlib.sha1(X.tobytes()).hexdigest()[:16]  # same data across invocations?
                    for solver in solvers:
                        k += 1
                        rec = run_one(
                            args, inv, fit, device_kwargs, time_limit, X, B_true, graph, d, seed, scale, solver
                        )
                        rec.update(sim_seeds=sim_seeds, simulate_s=t_sim, x_sha1=x_sha1)
                        cp.put_run(store, rec, key_of=run_key)
                        store = save_merged(args.out, store)
                        if args.markdown:
                            write_markdown(args.markdown, store)
                        report(k, total, rec, B_true.nnz, time_limit)
    if args.markdown:
        write_markdown(args.markdown, store)
    print(f"wrote {args.out}" + (f" and {args.markdown}" if args.markdown else ""), flush=True)
    return 0


def run_one(args, inv, fit, device_kwargs, time_limit, X, B_true, graph, d, seed, scale, solver) -> dict:
    rec = {
        "graph": graph,
        "d": d,
        "n": args.n,
        "seed": seed,
        "scale": scale,
        "solver": solver,
        "invocation": inv["id"],
        "threads": args.threads,
        "loadavg_before": list(os.getloadavg()),
        "started": _dt.datetime.now().isoformat(timespec="seconds"),
        "finished": None,
        "status": None,
        "time_s": None,
        "metrics": {},
    }
    try:
        if solver in GENE_DAG_VARIANTS:
            W, res, rec["params"] = run_gene_dag(fit, X, solver, device_kwargs)
            status = "ok"
        else:
            lam = cp.DAGMA_LAMBDA1 if solver == "dagma" else cp.NOTEARS_LAMBDA1
            rec["params"] = {"lambda1": lam, "w_threshold": 0.3, "loss_type": "l2"}
            rec["time_limit_s"] = time_limit
            status, W, res = cp.run_in_subprocess(solver, X, lam, args.threads, time_limit)
    except KeyboardInterrupt:
        raise
    except Exception:
        status, W, res = "error", None, {"error": traceback.format_exc()[-3000:]}
    rec["status"] = status
    rec.update({k: v for k, v in res.items() if k != "time_s"})
    if status == "ok":
        rec["time_s"] = res["time_s"]
        try:
            rec["metrics"] = cp.evaluate(B_true, cp.to_csr(W))
        except Exception:
            rec["status"] = "error"
            rec["error"] = "metrics failed:\n" + traceback.format_exc()[-3000:]
    rec["finished"] = _dt.datetime.now().isoformat(timespec="seconds")
    return rec


def report(k, total, rec, n_true, time_limit) -> None:
    head = (
        f"({k}/{total}) [{rec['graph']} d={rec['d']} seed={rec['seed']} {rec['scale']}] {rec['solver']} "
        f"(load {rec['loadavg_before'][0]:.2f}):"
    )
    if rec["status"] == "ok":
        m = rec["metrics"]
        lam = (rec.get("params") or {}).get("lambda1_selected")
        print(
            f"{head} SHD {m.get('shd')} TPR {m.get('tpr', float('nan')):.3f} FDR {m.get('fdr', float('nan')):.3f} "
            f"predicted {m.get('n_predicted')} (true {m.get('n_true', n_true)}) dag {m.get('is_dag')} "
            f"time {rec['time_s']:.2f} s" + (f" lambda1_selected {lam}" if lam is not None else ""),
            flush=True,
        )
    elif rec["status"] == "timeout":
        print(f"{head} TIMEOUT after {time_limit:g} s", flush=True)
    else:
        print(f"{head} ERROR\n{rec.get('error', '')}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
