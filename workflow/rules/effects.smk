rule effects:
    """Total causal effects of raising each configured gene by one unit (datasets with effects.genes)."""
    input:
        "results/{dataset}/groups/{group}/network.h5ad",
    output:
        table=report(
            "results/{dataset}/groups/{group}/effects/effects.tsv",
            caption="../report/effects_table.rst",
            category="{dataset}",
            subcategory="{group}",
            labels={"figure": "effects table"},
        ),
        plot=report(
            "results/{dataset}/groups/{group}/effects/effects.png",
            caption="../report/effects.rst",
            category="{dataset}",
            subcategory="{group}",
            labels={"figure": "effects"},
        ),
    log:
        "logs/{dataset}/{group}/effects.log",
    conda:
        "../envs/gene_dag.yaml"
    threads: resource("effects", "threads")
    resources:
        mem_mb=resource("effects", "mem_mb"),
        runtime=resource("effects", "runtime"),
    params:
        genes=lambda wildcards: shlex.quote(",".join(dataset(wildcards)["effects"]["genes"])),
    shell:
        "gene-dag effects {input} --genes {params.genes} --skip-missing --out {output.table}"
        " --plot {output.plot} > {log} 2>&1"


rule knockout:
    """In-silico knockout (or knockdown) of the configured genes (datasets with effects.knockout)."""
    input:
        "results/{dataset}/groups/{group}/network.h5ad",
    output:
        table=report(
            "results/{dataset}/groups/{group}/effects/knockout.tsv",
            caption="../report/knockout_table.rst",
            category="{dataset}",
            subcategory="{group}",
            labels={"figure": "knockout table"},
        ),
        plot=report(
            "results/{dataset}/groups/{group}/effects/knockout.png",
            caption="../report/knockout.rst",
            category="{dataset}",
            subcategory="{group}",
            labels={"figure": "knockout"},
        ),
    log:
        "logs/{dataset}/{group}/knockout.log",
    conda:
        "../envs/gene_dag.yaml"
    threads: resource("effects", "threads")
    resources:
        mem_mb=resource("effects", "mem_mb"),
        runtime=resource("effects", "runtime"),
    params:
        args=knockout_args,
    shell:
        "gene-dag knockout {input} {params.args} --skip-missing --out {output.table}"
        " --plot {output.plot} > {log} 2>&1"
