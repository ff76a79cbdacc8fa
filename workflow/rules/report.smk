rule figures:
    """The network plot, degree distribution, convergence plot, top regulators and facts of one group."""
    input:
        unpack(figures_inputs),
    output:
        network=report(
            "results/{dataset}/groups/{group}/figures/network.png",
            caption="../report/network.rst",
            category="{dataset}",
            subcategory="{group}",
            labels={"figure": "network"},
        ),
        degree=report(
            "results/{dataset}/groups/{group}/figures/degree.png",
            caption="../report/degree.rst",
            category="{dataset}",
            subcategory="{group}",
            labels={"figure": "degree distribution"},
        ),
        convergence=report(
            "results/{dataset}/groups/{group}/figures/convergence.png",
            caption="../report/convergence.rst",
            category="{dataset}",
            subcategory="{group}",
            labels={"figure": "convergence"},
        ),
        regulators=report(
            "results/{dataset}/groups/{group}/figures/regulators.tsv",
            caption="../report/regulators.rst",
            category="{dataset}",
            subcategory="{group}",
            labels={"figure": "top regulators"},
        ),
        facts=report(
            "results/{dataset}/groups/{group}/figures/facts.tsv",
            caption="../report/facts.rst",
            category="{dataset}",
            subcategory="{group}",
            labels={"figure": "facts and accuracy"},
        ),
    log:
        "logs/{dataset}/{group}/figures.log",
    conda:
        "../envs/gene_dag.yaml"
    threads: resource("figures", "threads")
    resources:
        mem_mb=resource("figures", "mem_mb"),
        runtime=resource("figures", "runtime"),
    params:
        metrics=figures_metrics,
    shell:
        "gene-dag plot {input.network} --outdir results/{wildcards.dataset}/groups/{wildcards.group}/figures"
        " {params.metrics} > {log} 2>&1"


rule report_index:
    """Every figure and table of a dataset (the target that brings them into the run and the report)."""
    input:
        report_index_inputs,
    output:
        "results/{dataset}/figures.tsv",
    log:
        "logs/{dataset}/figures.log",
    conda:
        "../envs/gene_dag.yaml"
    script:
        "../scripts/report_index.py"
