"""Configuration checks and the helper functions the rules use (paths, arguments, resources)."""

import copy
import math
import os
import shlex
from pathlib import Path

import pandas as pd
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# ----------------------------------------------------------------------------- configuration

RULES_DIR = Path(workflow.current_basedir.get_path_or_uri(secret_free=True))
SCHEMA = RULES_DIR.parent / "schemas" / "config.schema.yaml"
BUNDLED_PREFIX = "scanpy:"
BUNDLED = ("pbmc68k_reduced", "krumsiek11")  # as gene_dag.io.BUNDLED_DATASETS (no download)
INPUT_SUFFIXES = (".h5ad", ".loom", ".csv", ".tsv", ".csv.gz", ".tsv.gz", ".h5")  # .h5: 10x Genomics
MTX_FILES = ("matrix.mtx", "matrix.mtx.gz")  # a folder holding one of these is a 10x Matrix Market input

# For `--sdm conda`: workflow/envs/*.yaml install this source tree with pip (`-e ${GENE_DAG_SRC}`).
os.environ.setdefault("GENE_DAG_SRC", str(RULES_DIR.parents[1]))


def _key(path):
    """A config key path as written in messages: datasets[0].genes.n_top."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text.lstrip(".") or "(top level)"


def _config_error(key, problem):
    raise WorkflowError(f"config key {key}: {problem}")


def explain_schema_errors(cfg):
    """Every schema violation as one line naming its key (snakemake's validate stops at the first, verbosely)."""
    import jsonschema
    import yaml

    schema = yaml.safe_load(SCHEMA.read_text())
    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(cfg), key=lambda e: [str(p) for p in e.absolute_path]
    )
    if not errors:
        return
    lines = []
    for error in errors:
        message = error.message
        if error.validator == "oneOf" and "datasets" in error.absolute_path:
            message = "a dataset needs exactly one of input (a file or bundled dataset) or simulate"
        lines.append(f"  config key {_key(error.absolute_path)}: {message}")
    raise WorkflowError(
        f"the configuration does not match {SCHEMA.name} ({len(errors)} problem(s)):\n" + "\n".join(lines)
    )


def check_finite_numbers(value, path=()):
    """Every number in the configuration is finite: YAML's .nan and .inf pass the schema's minimum and maximum."""
    if isinstance(value, dict):
        for key, item in value.items():
            check_finite_numbers(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_finite_numbers(item, (*path, index))
    elif isinstance(value, float) and not math.isfinite(value):
        _config_error(_key(path), f"must be a finite number, not {value}")


check_finite_numbers(config)
explain_schema_errors(config)
validate(config, schema="../schemas/config.schema.yaml")  # fills in the defaults
CONFIG = copy.deepcopy(config)  # never mutated below
DATASETS = {d["name"]: d for d in CONFIG["datasets"]}


def _check_file(key, path):
    if Path(path).is_dir():
        _config_error(key, f"{path} is a directory, not a file")
    if not Path(path).is_file():
        _config_error(key, f"file not found: {path} (relative paths start at {os.getcwd()})")


# A key that only matters together with another (key, its condition, the condition as a message).
DEPENDENT_KEYS = (
    ("max_value", lambda ds: ds["scale"], "is only used with scale: true"),
    ("target_sum", lambda ds: ds["values"] == "counts", "is only used with values: counts"),
    ("genes.list", lambda ds: ds["genes"]["method"] == "list", "is only used with genes.method: list"),
    ("simulate.regulators", lambda ds: ds["simulate"]["graph"] == "tf", "is only used with simulate.graph: tf"),
)


def _has_key(ds, dotted):
    node = ds
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def check_config():
    """Everything the schema cannot say; runs before any job, each message names the key or file."""
    seen = set()
    for i, ds in enumerate(CONFIG["datasets"]):
        key = f"datasets[{i}]"
        if ds["name"] in seen:
            _config_error(f"{key}.name", f"dataset name {ds['name']!r} is used twice")
        seen.add(ds["name"])
        source = ds.get("input")
        if source is not None and source.startswith(BUNDLED_PREFIX):
            if source[len(BUNDLED_PREFIX) :] not in BUNDLED:
                _config_error(
                    f"{key}.input",
                    f"unknown bundled dataset {source}; available: "
                    + ", ".join(BUNDLED_PREFIX + name for name in BUNDLED),
                )
        elif source is not None and Path(source).is_dir():
            if not any((Path(source) / name).is_file() for name in MTX_FILES):
                _config_error(
                    f"{key}.input", f"{source}: a folder, but without {' or '.join(MTX_FILES)} (10x Matrix Market)"
                )
        elif source is not None:
            if not source.lower().endswith(INPUT_SUFFIXES):
                _config_error(
                    f"{key}.input", f"{source}: not one of {', '.join(INPUT_SUFFIXES)} or a 10x Matrix Market folder"
                )
            _check_file(f"{key}.input", source)
        priors = ds["priors"]
        for kind in ("regulators", "edges"):
            if kind in priors:
                _check_file(f"{key}.priors.{kind}", priors[kind])
        for group, files in priors.get("groups", {}).items():
            for kind, path in files.items():
                _check_file(f"{key}.priors.groups[{group!r}].{kind}", path)
        if priors.get("groups") and "groupby" not in ds:
            _config_error(f"{key}.priors.groups", "per-group priors need a groupby column")
        for dependent, applies, condition in DEPENDENT_KEYS:
            if _has_key(ds, dependent) and not applies(ds):
                _config_error(f"{key}.{dependent}", f"{condition}; it would be ignored")
        genes = ds["genes"]
        if genes["method"] == "list":
            if "list" not in genes:
                _config_error(f"{key}.genes.list", "genes.method is list but no gene list file is given")
            _check_file(f"{key}.genes.list", genes["list"])
        if genes["method"] == "hvg" and ds["values"] == "scaled" and genes["flavor"] != "variance":
            _config_error(
                f"{key}.genes.flavor",
                f"{genes['flavor']} expects log or count data, but values is scaled; use flavor variance or method list/all",
            )
        if genes["flavor"] == "seurat_v3" and genes["method"] == "hvg" and ds["values"] != "counts":
            _config_error(f"{key}.genes.flavor", "seurat_v3 needs count data (values: counts)")


check_config()


wildcard_constraints:
    dataset="[A-Za-z0-9][A-Za-z0-9_.-]*",
    group="[A-Za-z0-9][A-Za-z0-9_.-]*",


# ----------------------------------------------------------------------------- datasets and groups


def dataset(wildcards):
    return DATASETS[wildcards.dataset]


def preprocess_input(wildcards):
    """The file preprocess reads: the user's file, the simulated file, or nothing (bundled data)."""
    ds = dataset(wildcards)
    if "simulate" in ds:
        return f"results/{ds['name']}/simulated.h5ad"
    if ds["input"].startswith(BUNDLED_PREFIX):
        return []
    return ds["input"]


def preprocess_args(wildcards):
    ds = dataset(wildcards)
    source = preprocess_input(wildcards) or ds["input"]
    args = [source, "--values", ds["values"], "--min-group-size", ds["min_group_size"]]
    args += ["--orientation", ds["orientation"]]
    args += ["--min-genes", ds["qc"]["min_genes"], "--min-cells", ds["qc"]["min_cells"]]
    for key, flag in (("layer", "--layer"), ("groupby", "--groupby"), ("target_sum", "--target-sum")):
        if key in ds and not (key == "groupby" and ds.get("pool_groups")):  # pooled: one group, centred in solve
            args += [flag, ds[key]]
    if ds["scale"]:
        args.append("--scale")
        if "max_value" in ds:
            args += ["--max-value", ds["max_value"]]
    return " ".join(shlex.quote(str(a)) for a in args)


def simulate_args(wildcards):
    sim = dataset(wildcards)["simulate"]
    args = ["--genes", sim["genes"], "--cells", sim["cells"], "--graph", sim["graph"]]
    args += ["--edges-per-node", sim["edges_per_node"], "--seed", sim.get("seed", CONFIG["seed"])]
    if "regulators" in sim:
        args += ["--regulators", sim["regulators"]]
    return " ".join(shlex.quote(str(a)) for a in args)


def manifest(dataset_name):
    """The groups table of a dataset (runs, or waits for, its preprocess checkpoint)."""
    path = checkpoints.preprocess.get(dataset=dataset_name).output.manifest
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    check_group_priors(dataset_name, table)
    return table


def check_group_priors(dataset_name, table):
    """Every priors.groups key names a group found by preprocess (by name or slug): a prior is never silently unused.

    Runs once the checkpoint's manifest exists, before any job of the dataset's groups.
    """
    keys = DATASETS[dataset_name]["priors"].get("groups", {})
    unknown = [k for k in keys if k not in set(table["group"]) | set(table["slug"])]
    if unknown:
        index = list(DATASETS).index(dataset_name)
        found = ", ".join(repr(g) for g in table["group"])
        _config_error(
            f"datasets[{index}].priors.groups",
            f"{', '.join(map(repr, unknown))} match(es) no group of dataset {dataset_name} (groups found: {found})",
        )


def kept_groups(dataset_name):
    """(name, slug, has_truth) of every group that got a network."""
    table = manifest(dataset_name)
    table = table[table["status"] == "kept"]
    return [(row.group, row.slug, row.has_truth.lower() in ("true", "1")) for row in table.itertuples(index=False)]


def group_name(wildcards):
    for name, slug, _ in kept_groups(wildcards.dataset):
        if slug == wildcards.group:
            return name
    raise WorkflowError(f"dataset {wildcards.dataset}: no group with slug {wildcards.group!r}")


def group_prior(wildcards, kind):
    """Path of the regulator list / edge prior of a group (its own, else the dataset's), or None."""
    priors = dataset(wildcards)["priors"]
    per_group = priors.get("groups", {})
    if per_group:
        name = group_name(wildcards)
        for key in (name, wildcards.group):
            if key in per_group and kind in per_group[key]:
                return per_group[key][kind]
    return priors.get(kind)


def prior_files(wildcards):
    """Input mapping of the configured prior files of a group (only those that exist in the config)."""
    files = {}
    for kind in ("regulators", "edges"):
        path = group_prior(wildcards, kind)
        if path is not None:
            files[kind] = path
    return files


def select_inputs(wildcards):
    files = {"h5ad": f"results/{wildcards.dataset}/preprocess/{wildcards.group}.h5ad"}
    genes = dataset(wildcards)["genes"]
    if genes["method"] == "list":
        files["genes"] = genes["list"]
    if genes["force_prior_genes"] and genes["method"] != "all":
        files.update(prior_files(wildcards))
    return files


def select_settings(wildcards):
    """Selection options (a function of the wildcards only, so Snakemake reruns when they change)."""
    genes = dataset(wildcards)["genes"]
    args = ["--method", genes["method"], "--n-top-genes", genes["n_top"], "--flavor", genes["flavor"]]
    return " ".join(shlex.quote(str(a)) for a in args)


def file_args(input, flags):
    """Options naming input files (params derived from input; the files' own changes trigger reruns)."""
    args = []
    for kind, flag in flags:
        if kind in input.keys():
            args += [flag, input[kind]]
    return " ".join(shlex.quote(str(a)) for a in args)


def select_files(wildcards, input):
    return file_args(input, (("genes", "--genes"), ("regulators", "--regulators"), ("edges", "--prior")))


def prior_inputs(wildcards):
    return {"h5ad": f"results/{wildcards.dataset}/groups/{wildcards.group}/selected.h5ad", **prior_files(wildcards)}


def prior_args(wildcards, input):
    return file_args(input, (("regulators", "--regulators"), ("edges", "--prior")))


# ----------------------------------------------------------------------------- solver and resources


def solver_settings(dataset_name):
    """Top-level solver settings with the dataset's overrides applied."""
    return {**CONFIG["solver"], **DATASETS[dataset_name].get("solver", {})}


def resource(rule_name, key):
    """A function of the wildcards: the rule's resource, with the dataset's override if any.

    mem_mb grows with the attempt (attempt n asks for n x mem_mb), so that a job that ran out
    of memory and is retried (`--retries`) gets more.
    """

    def value(wildcards):
        own = (
            DATASETS[wildcards.dataset].get("resources", {}).get(rule_name, {}) if "dataset" in wildcards.keys() else {}
        )
        return own.get(key, CONFIG["resources"][rule_name][key])

    def memory(wildcards, attempt):
        return value(wildcards) * attempt

    return memory if key == "mem_mb" else value


GPU_PARTITION = CONFIG["cluster"].get("gpu_partition")


def solve_gpu(wildcards):
    """1 GPU for a solve on cuda, or on auto when a GPU partition is configured; else none."""
    device = solver_settings(wildcards.dataset)["device"]
    return int(device == "cuda" or (device == "auto" and GPU_PARTITION is not None))


def solve_cluster_resources():
    """slurm_partition of solve jobs: cluster.gpu_partition for those that ask for a GPU.

    Only when the key is set: a rule's own slurm_partition would hide the profile's default
    partition, so without it solve jobs go where the profile or the cluster sends every job.
    """
    if GPU_PARTITION is None:
        return {}
    return {"slurm_partition": lambda wildcards: GPU_PARTITION if solve_gpu(wildcards) else None}


def solve_settings(wildcards):
    """Solver options (a function of the wildcards only, so Snakemake reruns solve when they change)."""
    settings = solver_settings(wildcards.dataset)
    stability = settings.get("stability", {})
    fan_out = bool(stability_blocks(wildcards.dataset))
    args = _solver_args(wildcards.dataset, resamples=0 if fan_out else stability.get("resamples", 0))
    if "min_frequency" in stability and not fan_out:
        args += ["--stability-min-frequency", stability["min_frequency"]]
    if "max_time" in settings:
        args += ["--max-time", settings["max_time"]]
    return " ".join(shlex.quote(str(a)) for a in args)


def stability_settings(wildcards):
    """The options of one block of stability resamples: those of solve, with every resample counted."""
    stability = solver_settings(wildcards.dataset)["stability"]
    args = _solver_args(wildcards.dataset, resamples=stability["resamples"])
    return " ".join(shlex.quote(str(a)) for a in args)


def _solver_args(dataset_name, *, resamples):
    settings = solver_settings(dataset_name)
    args = [
        "--lambda1", _auto(settings["lambda1"]),
        "--w-threshold", _auto(settings["w_threshold"]),
        "--standardize" if settings["standardize"] else "--no-standardize",
        "--order-search", settings["order_search"],
        "--acyclicity", settings["acyclicity"],
        "--device", settings["device"],
        "--seed", CONFIG["seed"],
        "--stability-resamples", resamples,
        "--stability-fraction", settings.get("stability", {}).get("fraction", 0.5),
    ]  # fmt: skip
    ds = DATASETS[dataset_name]
    if ds.get("pool_groups") and "groupby" in ds:
        args += ["--groupby", ds["groupby"]]
    if "core_threads" in settings:
        args += ["--core-threads", settings["core_threads"]]
    return args


def stability_blocks(dataset_name):
    """Resample ids of each stability job ("FIRST-LAST"), or [] when the resamples run inside solve."""
    stability = solver_settings(dataset_name).get("stability", {})
    total, per_job = stability.get("resamples", 0), stability.get("per_job")
    if not total or per_job is None or per_job >= total:
        return []
    return [f"{a}-{min(a + per_job, total) - 1}" for a in range(0, total, per_job)]


def solved_network(wildcards):
    """What export reads: the solve's network, with the merged stability jobs when they fan out."""
    base = f"results/{wildcards.dataset}/groups/{wildcards.group}"
    return f"{base}/stable.h5ad" if stability_blocks(wildcards.dataset) else f"{base}/solved.h5ad"


def stability_counts(wildcards):
    """The edge counts of every stability job of one group."""
    base = f"results/{wildcards.dataset}/groups/{wildcards.group}/stability"
    return [f"{base}/{ids}.npz" for ids in stability_blocks(wildcards.dataset)]


def merge_stability_args(wildcards):
    stability = solver_settings(wildcards.dataset)["stability"]
    return f"--min-frequency {stability['min_frequency']}" if "min_frequency" in stability else ""


def _auto(value):
    """A setting the solver chooses from the data when null."""
    return "auto" if value is None else value


def solve_memory(wildcards, resources):
    """The solver's memory budget in GB: solver.memory_gb, else 75% of the job's mem_mb.

    A function of the resources, so changing the budget alone never reruns a finished solve.
    """
    settings = solver_settings(wildcards.dataset)
    return settings.get("memory_gb") or round(0.75 * resources.mem_mb / 1024, 2)


def solve_prior(wildcards, input):
    """The restricted prior files, passed only when the config names a prior of that kind."""
    configured = prior_files(wildcards)
    return file_args(
        input, tuple((k, f) for k, f in (("regulators", "--regulators"), ("edges", "--prior")) if k in configured)
    )


# ----------------------------------------------------------------------------- targets


def group_dir(dataset_name, slug):
    return f"results/{dataset_name}/groups/{slug}"


def network_outputs(dataset_name):
    """Every final file of a dataset: the exported network of each kept group, and metrics with a truth."""
    files = []
    for _, slug, has_truth in kept_groups(dataset_name):
        base = group_dir(dataset_name, slug)
        files += [f"{base}/{name}" for name in ("network.h5ad", "edges.tsv", "network.graphml", "summary.json")]
        if has_truth:
            files.append(f"{base}/metrics.json")
    return files


def dataset_summary_inputs(wildcards):
    """Every network file of one dataset (waits for its preprocess checkpoint), summaries and metrics apart."""
    files = network_outputs(wildcards.dataset)
    return {
        "summaries": [f for f in files if Path(f).name == "summary.json"],
        "metrics": [f for f in files if Path(f).name == "metrics.json"],
        "networks": [f for f in files if Path(f).suffix != ".json"],
    }


FIGURES = ("network.png", "degree.png", "convergence.png", "regulators.tsv", "facts.tsv")


def figures_inputs(wildcards):
    """The network of a group, and its metrics where the data carry a true graph."""
    base = group_dir(wildcards.dataset, wildcards.group)
    files = {"network": f"{base}/network.h5ad"}
    if any(slug == wildcards.group and has_truth for _, slug, has_truth in kept_groups(wildcards.dataset)):
        files["metrics"] = f"{base}/metrics.json"
    return files


def figures_metrics(wildcards, input):
    return file_args(input, (("metrics", "--metrics"),))


def knockout_args(wildcards):
    """--genes, and --value or --fraction, of a dataset's effects.knockout settings."""
    settings = dataset(wildcards)["effects"]
    args = ["--genes", ",".join(settings["knockout"])]
    args += ["--fraction", settings["fraction"]] if "fraction" in settings else ["--value", settings.get("value", 0)]
    return " ".join(shlex.quote(str(a)) for a in args)


def report_index_inputs(wildcards):
    """Every figure and table of a dataset: the figures of each group, and its effects when configured."""
    settings = dataset(wildcards).get("effects", {})
    files = []
    for _, slug, _ in kept_groups(wildcards.dataset):
        base = group_dir(wildcards.dataset, slug)
        files += [f"{base}/figures/{name}" for name in FIGURES]
        if settings.get("genes"):
            files += [f"{base}/effects/effects.tsv", f"{base}/effects/effects.png"]
        if settings.get("knockout"):
            files += [f"{base}/effects/knockout.tsv", f"{base}/effects/knockout.png"]
    return files


# One summary per dataset, so that the preprocess checkpoints of all datasets run side by side.
DATASET_SUMMARIES = [f"results/{name}/summary.tsv" for name in DATASETS]
# The figures of every dataset (and its effects, when configured): what `snakemake --report` shows.
DATASET_FIGURES = [f"results/{name}/figures.tsv" for name in DATASETS]
ALL_OUTPUTS = ["results/summary.tsv", *DATASET_SUMMARIES, *DATASET_FIGURES]
