checkpoint preprocess:
    """QC, normalisation, one AnnData per group; the groups come from the data, hence a checkpoint."""
    input:
        preprocess_input,
    output:
        groups=directory("results/{dataset}/preprocess"),
        manifest="results/{dataset}/groups.tsv",
    params:
        args=preprocess_args,
    log:
        "logs/{dataset}/preprocess.log",
    benchmark:
        "results/{dataset}/benchmarks/preprocess.tsv"
    threads: resource("preprocess", "threads")
    resources:
        mem_mb=resource("preprocess", "mem_mb"),
        runtime=resource("preprocess", "runtime"),
    conda:
        "../envs/gene_dag.yaml"
    shell:
        "gene-dag preprocess {params.args} --outdir {output.groups} --manifest {output.manifest} > {log} 2>&1"
