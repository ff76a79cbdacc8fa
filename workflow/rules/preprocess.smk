checkpoint preprocess:
    """QC, normalisation, one AnnData per group; the groups come from the data, hence a checkpoint."""
    input:
        preprocess_input,
    output:
        groups=directory("results/{dataset}/preprocess"),
        manifest="results/{dataset}/groups.tsv",
    log:
        "logs/{dataset}/preprocess.log",
    benchmark:
        "results/{dataset}/benchmarks/preprocess.tsv"
    conda:
        "../envs/gene_dag.yaml"
    threads: resource("preprocess", "threads")
    resources:
        mem_mb=resource("preprocess", "mem_mb"),
        runtime=resource("preprocess", "runtime"),
    params:
        args=preprocess_args,
    shell:
        "gene-dag preprocess {params.args} --outdir {output.groups} --manifest {output.manifest} > {log} 2>&1"
