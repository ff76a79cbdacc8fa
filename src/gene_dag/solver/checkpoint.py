"""Atomic, rate-limited checkpoints of solver state, so a killed run resumes where it was."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from gene_dag.prior import EdgeMask
from gene_dag.solver.settings import SolverSettings, resolve_device

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
        """The checkpoint file (None without a directory)."""
        return None if self.dir is None else self.dir / FILENAME

    def load(self, validate: Callable[[dict], str | None] | None = None) -> dict | None:
        """Return the saved state for this problem, or None (a fresh start).

        An unreadable, empty or foreign file, or one ``validate`` rejects (it returns the
        reason, e.g. a wrong shape), is reported as a WARNING and ignored, never unpickled
        as code (``weights_only``) and never fatal.
        """
        if self.path is None or not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - truncated, empty, not a torch file, pickled code ...
            log.warning(
                "checkpoint %s cannot be read (%s); starting fresh", self.path, " ".join(str(exc).split())[:200]
            )
            return None
        if not isinstance(state, dict) or state.get("fingerprint") != self.fingerprint:
            log.warning("checkpoint %s belongs to another problem or settings; starting fresh", self.path)
            return None
        problem = validate(state) if validate is not None else None
        if problem:
            log.warning("checkpoint %s does not fit this problem (%s); starting fresh", self.path, problem)
            return None
        log.info("resuming from checkpoint %s (stage %s)", self.path, state.get("stage"))
        return state

    def save(self, state: dict, *, force: bool = False) -> None:
        """Write the state if ``interval`` seconds have passed (or ``force``)."""
        if self.dir is None:
            return
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f".{FILENAME}.{os.getpid()}.tmp"
        try:
            torch.save({**state, "fingerprint": self.fingerprint}, tmp)
            os.replace(tmp, self.path)
        finally:  # interrupted or failed mid-write: leave no temporary behind
            with contextlib.suppress(OSError):
                tmp.unlink()
        self._last = now
        self.saves += 1

    def clear(self) -> None:
        """Remove the checkpoint (after a converged run whose output is written)."""
        if self.path is not None and self.path.exists():
            self.path.unlink()


def snapshot(tensor: torch.Tensor) -> torch.Tensor:
    """Copy ``tensor`` to the CPU, out of reach of later in-place updates.

    Checkpointed state must describe one consistent moment: a view of the live weights
    would be saved half-updated if a signal arrives between two writes to them.
    """
    return tensor.detach().to("cpu", copy=True)


def fingerprint(cov_rows: np.ndarray, variances: np.ndarray, mask: EdgeMask, s: SolverSettings) -> str:
    """Hash of data and settings, so a checkpoint only resumes the same problem.

    The device enters as resolved (``auto`` on a CPU-only machine is ``cpu``): a run
    started with ``--device auto`` resumes with ``--device cpu`` on the same machine.
    """
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(cov_rows, dtype=np.float32).tobytes())
    h.update(np.ascontiguousarray(variances, dtype=np.float64).tobytes())
    h.update(np.asarray(mask.regulators).tobytes())
    screen = () if mask.candidates is None else (mask.candidates,)
    for m in (mask.forbidden, mask.required, mask.sign, mask.penalty, *screen):
        coo = m.tocoo()
        h.update(coo.row.tobytes() + coo.col.tobytes() + np.asarray(coo.data, dtype=np.float64).tobytes())
    settings = {k: v for k, v in asdict(s).items() if k not in ("max_time", "checkpoint_interval")}
    settings["device"] = str(resolve_device(s.device))
    h.update(repr(sorted(settings.items())).encode())
    return h.hexdigest()[:16]
