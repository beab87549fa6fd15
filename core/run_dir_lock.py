"""One process at a time per run directory: a second `resume` of the same run fails at once.

An exclusive, non-blocking `flock` on `RUN_DIR/run.lock`, held for the life of the process
(the kernel releases it when the process dies, also by SIGKILL, so a crash never leaves a
stale lock). The file records the holder's pid, for the message the loser prints.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Final

from core.errors import Phase24Error

RUN_DIR_LOCK: Final = "run.lock"


class RunDirBusy(Phase24Error):
    """Another process holds the run directory."""


class RunDirLock:
    """Held from `acquire` until `release` (or the process ends)."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd: int | None = fd
        self.path = path

    @classmethod
    def acquire(cls, run_dir: Path) -> RunDirLock:
        path = Path(run_dir) / RUN_DIR_LOCK
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise RunDirBusy(
                f"{run_dir}: another phase24 process (pid {holder}) is running this run; "
                "wait for it to finish, then resume again"
            ) from None
        except OSError:
            os.close(fd)
            raise
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        except OSError:
            pass  # the pid is only for the message; the flock is what excludes
        return cls(fd, path)

    def release(self) -> None:
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None
