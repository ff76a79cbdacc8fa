rule prior:
    """The group's prior files restricted to its selected genes, checked, with a found / missing report."""
    input:
        unpack(prior_inputs),
    output:
        regulators="results/{dataset}/groups/{group}/prior/regulators.txt",
        edges="results/{dataset}/groups/{group}/prior/prior_edges.tsv",
        report="results/{dataset}/groups/{group}/prior/prior_report.json",
    log:
        "logs/{dataset}/{group}/prior.log",
    conda:
        "../envs/gene_dag.yaml"
    threads: resource("prior", "threads")
    resources:
        mem_mb=resource("prior", "mem_mb"),
        runtime=resource("prior", "runtime"),
    params:
        args=prior_args,
    shell:
        "gene-dag prior {input.h5ad} {params.args} --out-regulators {output.regulators}"
        " --out-edges {output.edges} --report {output.report} > {log} 2>&1"
