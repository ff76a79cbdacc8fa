rule select:
    """Highly variable genes (or a list), every gene the prior names forced in."""
    input:
        unpack(select_inputs),
    output:
        "results/{dataset}/groups/{group}/selected.h5ad",
    log:
        "logs/{dataset}/{group}/select.log",
    benchmark:
        "results/{dataset}/benchmarks/select/{group}.tsv"
    conda:
        "../envs/gene_dag.yaml"
    threads: resource("select", "threads")
    resources:
        mem_mb=resource("select", "mem_mb"),
        runtime=resource("select", "runtime"),
    params:
        settings=select_settings,
        files=select_files,
    shell:
        "gene-dag select {input.h5ad} --out {output} {params.settings} {params.files} > {log} 2>&1"
