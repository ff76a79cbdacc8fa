rule solve:
    """The causal network of one group (gene-dag solve); resumes from its checkpoint directory."""
    input:
        h5ad="results/{dataset}/groups/{group}/selected.h5ad",
        regulators="results/{dataset}/groups/{group}/prior/regulators.txt",
        edges="results/{dataset}/groups/{group}/prior/prior_edges.tsv",
        # The preprocess checkpoint: params look up the group name in its table, and a job
        # run on its own (cluster executors) may only do that for a checkpoint it names.
        groups="results/{dataset}/preprocess",
    output:
        "results/{dataset}/groups/{group}/solved.h5ad",
    log:
        "logs/{dataset}/{group}/solve.log",
    benchmark:
        "results/{dataset}/benchmarks/solve/{group}.tsv"
    conda:
        "../envs/solve.yaml"
    threads: resource("solve", "threads")
    resources:
        **solve_cluster_resources(),
        mem_mb=resource("solve", "mem_mb"),
        runtime=resource("solve", "runtime"),
        gpu=solve_gpu,
    params:
        settings=solve_settings,
        prior=solve_prior,
        memory_gb=solve_memory,
        checkpoint_dir="results/{dataset}/groups/{group}/solve_checkpoint",
    shell:
        "gene-dag solve {input.h5ad} --out {output} {params.settings} {params.prior}"
        " --memory-gb {params.memory_gb}"
        " --checkpoint {params.checkpoint_dir} > {log} 2>&1"


rule stability_block:
    """Edge counts of one block of stability resamples (gene-dag stability), a job of its own."""
    input:
        h5ad="results/{dataset}/groups/{group}/selected.h5ad",
        regulators="results/{dataset}/groups/{group}/prior/regulators.txt",
        edges="results/{dataset}/groups/{group}/prior/prior_edges.tsv",
        groups="results/{dataset}/preprocess",
    output:
        "results/{dataset}/groups/{group}/stability/{ids}.npz",
    log:
        "logs/{dataset}/{group}/stability_{ids}.log",
    benchmark:
        "results/{dataset}/benchmarks/stability/{group}_{ids}.tsv"
    wildcard_constraints:
        ids=r"\d+-\d+",
    conda:
        "../envs/solve.yaml"
    threads: resource("solve", "threads")
    resources:
        **solve_cluster_resources(),
        mem_mb=resource("solve", "mem_mb"),
        runtime=resource("solve", "runtime"),
        gpu=solve_gpu,
    params:
        settings=stability_settings,
        prior=solve_prior,
        memory_gb=solve_memory,
    shell:
        "gene-dag stability {input.h5ad} --ids {wildcards.ids} --out {output} {params.settings}"
        " {params.prior} --memory-gb {params.memory_gb} > {log} 2>&1"


rule merge_stability:
    """The solved network with selection and orientation frequencies summed over its stability jobs."""
    input:
        network="results/{dataset}/groups/{group}/solved.h5ad",
        counts=stability_counts,
    output:
        "results/{dataset}/groups/{group}/stable.h5ad",
    log:
        "logs/{dataset}/{group}/merge_stability.log",
    conda:
        "../envs/gene_dag.yaml"
    params:
        extra=merge_stability_args,
    shell:
        "gene-dag merge-stability {input.network} {input.counts} --out {output} {params.extra} > {log} 2>&1"
