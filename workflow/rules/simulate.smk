rule simulate:
    """A dataset with a known graph (varp["true_dag"]) for datasets that say `simulate:`."""
    output:
        "results/{dataset}/simulated.h5ad",
    log:
        "logs/{dataset}/simulate.log",
    conda:
        "../envs/gene_dag.yaml"
    threads: resource("simulate", "threads")
    resources:
        mem_mb=resource("simulate", "mem_mb"),
        runtime=resource("simulate", "runtime"),
    params:
        args=simulate_args,
    shell:
        "gene-dag simulate --out {output} {params.args} > {log} 2>&1"
