"""Exceptions that the command line turns into one-line messages and a non-zero exit."""

from __future__ import annotations

from pathlib import Path


class GeneDagError(Exception):
    """Base class for every error gene-dag reports to a user (no traceback shown)."""


class InputError(GeneDagError, ValueError):
    """Bad input data or a bad file: the message names the file and the problem."""

    def __init__(self, problem: str, path: str | Path | None = None):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class ConfigError(GeneDagError, ValueError):
    """A bad parameter or configuration value: the message names the key."""
