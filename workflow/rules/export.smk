rule export:
    """network.h5ad (varp/uns), edges.tsv, network.graphml and summary.json of one group."""
    input:
        h5ad=solved_network,
        report="results/{dataset}/groups/{group}/prior/prior_report.json",
        # The preprocess checkpoint: params look up the group name in its table, and a job
        # run on its own (cluster executors) may only do that for a checkpoint it names.
        groups="results/{dataset}/preprocess",
    output:
        h5ad="results/{dataset}/groups/{group}/network.h5ad",
        edges="results/{dataset}/groups/{group}/edges.tsv",
        graphml="results/{dataset}/groups/{group}/network.graphml",
        summary="results/{dataset}/groups/{group}/summary.json",
    log:
        "logs/{dataset}/{group}/export.log",
    benchmark:
        "results/{dataset}/benchmarks/export/{group}.tsv"
    conda:
        "../envs/gene_dag.yaml"
    threads: resource("export", "threads")
    resources:
        mem_mb=resource("export", "mem_mb"),
        runtime=resource("export", "runtime"),
    params:
        names=lambda wildcards: "--dataset {} --group {}".format(
            shlex.quote(wildcards.dataset), shlex.quote(group_name(wildcards))
        ),
    shell:
        "gene-dag export {input.h5ad} --h5ad {output.h5ad} --edges {output.edges}"
        " --graphml {output.graphml} --summary {output.summary} --prior-report {input.report}"
        " {params.names} > {log} 2>&1"
