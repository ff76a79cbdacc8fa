"""Atomic, rate-limited checkpoints of solver state, so a killed run resumes where it was."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import torch

log = logging.getLogger(__name__)

FILENAME = "solver_state.pt"


class Checkpointer:
    """Writes ``state`` (a dict of tensors / numbers / strings) at most every ``interval`` s.

    The file is written to a temporary name and renamed, so a crash leaves the previous
    checkpoint intact. ``fingerprint`` identifies the problem (data + settings): a
    checkpoint from another problem is ignored rather than resumed.
    """

    def __init__(self, directory: str | Path | None, fingerprint: str, interval: float = 60.0):
        self.dir = None if directory is None else Path(directory)
        self.fingerprint = fingerprint
        self.interval = interval
        self._last = time.monotonic()
        self.saves = 0

    @property
    def path(self) -> Path | None:
        return None if self.dir is None else self.dir / FILENAME

    def load(self) -> dict | None:
        """The saved state for this problem, or None."""
        if self.path is None or not self.path.is_file():
            return None
        state = torch.load(self.path, map_location="cpu", weights_only=True)
        if state.get("fingerprint") != self.fingerprint:
            log.warning("checkpoint %s belongs to another problem or settings; starting fresh", self.path)
            return None
        log.info("resuming from checkpoint %s (stage %s)", self.path, state.get("stage"))
        return state

    def save(self, state: dict, force: bool = False) -> None:
        """Write the state if ``interval`` seconds have passed (or ``force``)."""
        if self.dir is None:
            return
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f".{FILENAME}.{os.getpid()}.tmp"
        torch.save({**state, "fingerprint": self.fingerprint}, tmp)
        os.replace(tmp, self.path)
        self._last = now
        self.saves += 1

    def clear(self) -> None:
        if self.path is not None and self.path.exists():
            self.path.unlink()
