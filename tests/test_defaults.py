"""One source of defaults: the solver's settings, read by the API, the command line, the
workflow schema and the default config."""

from __future__ import annotations

from pathlib import Path

import yaml

from gene_dag.cli import build_parser
from gene_dag.solver.settings import DEFAULTS, SolverSettings, settings_from

REPO = Path(__file__).resolve().parents[1]


def test_the_cli_takes_its_defaults_from_the_settings():
    args = build_parser().parse_args(["solve", "in.h5ad", "--out", "out.h5ad"])
    for name in (
        "lambda1",
        "w_threshold",
        "standardize",
        "order_search",
        "stability_resamples",
        "stability_fraction",
        "stability_min_frequency",
        "acyclicity",
        "device",
        "memory_gb",
        "seed",
        "checkpoint_interval",
        "core_threads",
    ):
        assert getattr(args, name) == DEFAULTS[name], name
    assert args.max_time is None and DEFAULTS["max_time"] is None
    assert args.core_threads is None and DEFAULTS["core_threads"] is None


def test_the_workflow_schema_and_config_agree_with_the_settings():
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    defaults = {k: v["default"] for k, v in schema["properties"]["solver"]["properties"].items() if "default" in v}
    assert defaults, "the schema lists no solver defaults"
    for name, value in defaults.items():
        assert value == DEFAULTS[name], f"schema default of solver.{name} is {value}, the solver's {DEFAULTS[name]}"
    assert "max_time" not in defaults  # no limit, as in the API
    stability = schema["$defs"]["solver"]["properties"]["stability"]["properties"]
    for name, spec in stability.items():
        if f"stability_{name}" not in DEFAULTS:  # per_job: how the workflow runs them, not a solver setting
            continue
        assert spec.get("default") == DEFAULTS[f"stability_{name}"], f"solver.stability.{name}"
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for name, value in config["solver"].items():
        assert value == DEFAULTS[name], f"config/config.yaml solver.{name} is {value}, the default {DEFAULTS[name]}"


def test_settings_from_nothing_are_the_defaults():
    assert settings_from() == SolverSettings()
    assert {k: getattr(SolverSettings(), k) for k in DEFAULTS} == DEFAULTS
