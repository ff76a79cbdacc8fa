rule evaluate:
    """Accuracy against the true graph, for data that carry one (varp["true_dag"], e.g. simulated)."""
    input:
        network="results/{dataset}/groups/{group}/network.h5ad",
        truth="results/{dataset}/groups/{group}/selected.h5ad",
    output:
        "results/{dataset}/groups/{group}/metrics.json",
    log:
        "logs/{dataset}/{group}/evaluate.log",
    conda:
        "../envs/gene_dag.yaml"
    threads: resource("evaluate", "threads")
    resources:
        mem_mb=resource("evaluate", "mem_mb"),
        runtime=resource("evaluate", "runtime"),
    shell:
        "gene-dag evaluate {input.network} --truth {input.truth} --out {output} > {log} 2>&1"


rule dataset_summary:
    """One line per network of a dataset: size, edges, convergence, and accuracy where a truth exists."""
    input:
        unpack(dataset_summary_inputs),
    output:
        "results/{dataset}/summary.tsv",
    log:
        "logs/{dataset}/summary.log",
    conda:
        "../envs/gene_dag.yaml"
    script:
        "../scripts/summarize.py"


rule summary:
    """Every dataset's summary in one table, printed at the end of the run."""
    input:
        DATASET_SUMMARIES,
    output:
        "results/summary.tsv",
    log:
        "logs/summary.log",
    conda:
        "../envs/gene_dag.yaml"
    script:
        "../scripts/summarize.py"
