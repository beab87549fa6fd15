"""How the last run of a directory ended, in a file that can still be written when storage fails.

A storage failure locks the system, but the lock's durable record goes to the journal, and
the journal is what failed: without this file, a later `resume` would start unlocked. So
every run creates `run_status` at a fixed size before anything else (fsynced), and rewrites
it in place, without growing it: a write inside existing blocks still works on a full disk
or at a file-size limit. A resume starts locked unless the file proves the last run ended
cleanly or was killed (RUNNING): after STORAGE_FAILED, or when the file is missing or
unreadable, the state cannot be proven.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final

RUN_STATUS_FILE: Final = "run_status"
SIZE: Final = 1024
_MAGIC: Final = "phase24-run-status 1"


class RunStatus(StrEnum):
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    STORAGE_FAILED = "STORAGE_FAILED"


@dataclass(frozen=True)
class LastRun:
    """What `read_last_run` found: the status, its detail, and whether it proves a safe state."""

    status: RunStatus | None
    detail: str

    @property
    def lock_reason(self) -> str:
        """Why a resume must start locked ("" when it need not)."""
        if self.status is RunStatus.STORAGE_FAILED:
            return f"the last run ended in a storage failure ({self.detail}); its state cannot be proven"
        if self.status is None:
            return f"how the last run ended cannot be proven ({self.detail})"
        return ""


def _encode(status: RunStatus, detail: str) -> bytes:
    text = f"{_MAGIC}\n{status.value}\n{detail}".encode("utf-8", "replace")[: SIZE - 1]
    return text.ljust(SIZE - 1, b" ") + b"\n"


class RunStatusFile:
    """The open status file of a running run. `mark` never grows the file and never raises."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd: int | None = fd
        self.path = path

    @classmethod
    def create(cls, run_dir: Path) -> RunStatusFile:
        """Create (or reopen) the file at its full size and mark the run RUNNING, fsynced."""
        path = Path(run_dir) / RUN_STATUS_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            os.pwrite(fd, _encode(RunStatus.RUNNING, ""), 0)
            os.fsync(fd)
        except OSError:
            os.close(fd)
            raise
        return cls(fd, path)

    def mark(self, status: RunStatus, detail: str = "") -> bool:
        """Overwrite the status in place and fsync; False if even that failed."""
        if self._fd is None:
            return False
        try:
            os.pwrite(self._fd, _encode(status, " ".join(detail.split())), 0)
            os.fsync(self._fd)
        except OSError:
            return False
        return True

    def close(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            finally:
                self._fd = None


def read_last_run(run_dir: Path) -> LastRun:
    """How the last run in `run_dir` ended, as its status file says (None when unproven)."""
    path = Path(run_dir) / RUN_STATUS_FILE
    try:
        data = path.read_bytes()[: SIZE + 1]
    except FileNotFoundError:
        return LastRun(None, f"{RUN_STATUS_FILE} is missing")
    except OSError as exc:
        return LastRun(None, f"{RUN_STATUS_FILE} cannot be read: {exc.strerror or exc}")
    lines = data.decode("utf-8", "replace").rstrip().split("\n", 2)
    if len(data) != SIZE or len(lines) < 2 or lines[0] != _MAGIC or lines[1] not in RunStatus.__members__:
        return LastRun(None, f"{RUN_STATUS_FILE} is not a status this program wrote")
    return LastRun(RunStatus(lines[1]), lines[2].strip() if len(lines) > 2 else "")
