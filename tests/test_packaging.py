"""The package's metadata: the version is written once, and the licence file matches pyproject.toml."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

import gene_dag

REPO = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def test_the_version_is_read_from_the_package():
    assert "version" not in PROJECT, "pyproject.toml writes a version; it is read from gene_dag.__version__"
    assert "version" in PROJECT["dynamic"]
    assert importlib.metadata.version("gene-dag") == gene_dag.__version__


def test_the_license_file_is_the_mit_license_that_pyproject_names():
    assert PROJECT["license"] == "MIT"
    text = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License\n")
    assert "Copyright (c) 2026 the gene-dag authors" in text
