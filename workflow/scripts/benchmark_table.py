"""Markdown table of the Snakemake benchmark files of a run (wall time, peak memory per job).

Usage: python workflow/scripts/benchmark_table.py [RESULTS_DIR]   (default: results)
Reads RESULTS_DIR/<dataset>/benchmarks/{preprocess.tsv,<rule>/<group>.tsv}.
"""

import sys
from pathlib import Path

import pandas as pd


def collect(results: Path) -> pd.DataFrame:
    rows = []
    for path in sorted(results.glob("*/benchmarks/**/*.tsv")):
        parts = path.relative_to(results).parts  # dataset, benchmarks, [rule,] file
        dataset = parts[0]
        rule, group = (parts[2], path.stem) if len(parts) == 4 else (path.stem, "-")
        bench = pd.read_csv(path, sep="\t")
        rows.append(
            {
                "dataset": dataset,
                "group": group,
                "rule": rule,
                "wall_s": float(bench["s"].iloc[0]),
                "max_rss_mb": float(bench["max_rss"].iloc[0]),
                "cpu_s": float(bench["cpu_time"].iloc[0]),
            }
        )
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame) -> str:
    lines = [
        "| dataset | group | rule | wall (s) | peak RSS (MB) | CPU (s) |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    for r in table.itertuples(index=False):
        lines.append(f"| {r.dataset} | {r.group} | {r.rule} | {r.wall_s:.1f} | {r.max_rss_mb:.0f} | {r.cpu_s:.1f} |")
    by_rule = table.groupby("rule").agg(jobs=("wall_s", "size"), wall=("wall_s", "sum"), peak=("max_rss_mb", "max"))
    lines += ["", "| rule | jobs | total wall (s) | largest peak RSS (MB) |", "| --- | ---: | ---: | ---: |"]
    for rule, r in by_rule.iterrows():
        lines.append(f"| {rule} | {int(r.jobs)} | {r.wall:.1f} | {r.peak:.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(collect(Path(sys.argv[1] if len(sys.argv) > 1 else "results"))), end="")
