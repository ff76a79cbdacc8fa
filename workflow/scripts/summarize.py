"""Summary tables of the learned networks.

rule dataset_summary: every summary.json (and metrics.json) of a dataset -> results/<dataset>/summary.tsv
rule summary: the datasets' tables -> results/summary.tsv, printed at the end of the run.
"""

import json
import sys
from pathlib import Path

import pandas as pd

from gene_dag.export import collect_summaries


def dataset_table(summaries, metrics):
    metrics_by_dir = {str(Path(p).parent): p for p in metrics}
    records = []
    for path in summaries:
        summary = json.loads(Path(path).read_text())
        m = metrics_by_dir.get(str(Path(path).parent))
        records.append(
            {
                "dataset": summary.get("dataset", Path(path).parts[1]),
                "group": summary.get("group", Path(path).parent.name),
                "summary": summary,
                "metrics": json.loads(Path(m).read_text()) if m else None,
            }
        )
    return collect_summaries(records)


def show(table):
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 32):
        text = table.to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep="-")
    return f"gene-dag: {len(table)} network(s); shd / tpr / fdr / auprc where the data carry a true graph\n{text}\n"


if snakemake.rule == "dataset_summary":  # noqa: F821
    table = dataset_table(snakemake.input.summaries, snakemake.input.metrics)  # noqa: F821
else:
    tables = snakemake.input  # noqa: F821
    table = pd.concat(
        [pd.read_csv(p, sep="\t", dtype={"group": str}, keep_default_na=False, na_values=[""]) for p in tables],
        ignore_index=True,
    )
table.to_csv(snakemake.output[0], sep="\t", index=False, float_format="%.4g")  # noqa: F821
message = show(table)
Path(snakemake.log[0]).write_text(message)  # noqa: F821
if snakemake.rule == "summary":  # noqa: F821
    print(message, file=sys.stderr, flush=True)
