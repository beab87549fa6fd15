"""The system-wide lock: one state directory that every run, console and service reads.

A lock taken anywhere (the console's `l`, `phase24 lock`, a storage failure) is written here,
so a run started later starts locked, and a run in progress picks it up within a poll. Both
files are written durably (fsync of the file and of the directory):

- `lock.json`: the current state, `{"locked": bool, "reason", "by", "at"}`;
- `lock_history.jsonl`: every lock and unlock, append-only, with who, why and when.

A state file that exists but cannot be read or parsed counts as LOCKED: the state cannot be
proven, so the system fails closed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from core.clock import Clock, SystemClock, iso
from core.errors import Phase24Error

STATE_DIR_ENV = "PHASE24_STATE_DIR"
LOCK_FILE = "lock.json"
LOCK_HISTORY = "lock_history.jsonl"
MAX_STATE_BYTES = 64 * 1024


class LockStateError(Phase24Error):
    """The system-wide lock state could not be written."""


def default_state_dir() -> Path:
    """`$PHASE24_STATE_DIR`, else `$XDG_STATE_HOME/phase24`, else `~/.local/state/phase24`."""
    explicit = os.environ.get(STATE_DIR_ENV)
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "phase24"


@dataclass(frozen=True)
class LockRecord:
    locked: bool
    reason: str
    by: str
    at: str


class SystemLockState:
    """Read and write the system-wide lock in `state_dir`."""

    def __init__(self, state_dir: Path | None = None, clock: Clock | None = None) -> None:
        self.state_dir = Path(state_dir) if state_dir is not None else default_state_dir()
        self.clock: Clock = clock or SystemClock()

    @property
    def path(self) -> Path:
        return self.state_dir / LOCK_FILE

    @property
    def history_path(self) -> Path:
        return self.state_dir / LOCK_HISTORY

    def read(self) -> LockRecord:
        """The current state; unlocked when no state was ever written, locked when unreadable."""
        try:
            with open(self.path, "rb") as f:
                raw = f.read(MAX_STATE_BYTES + 1)
        except FileNotFoundError:
            return LockRecord(False, "", "", "")
        except OSError as exc:
            why = f"lock state {self.path} unreadable ({exc.strerror or exc}); failing closed"
            return LockRecord(True, why, "system", "")
        try:
            if len(raw) > MAX_STATE_BYTES:
                raise ValueError("too large")
            data = json.loads(raw.decode("utf-8"))
            if not isinstance(data, dict) or not isinstance(data.get("locked"), bool):
                raise ValueError("no boolean 'locked' field")
            return LockRecord(
                data["locked"], str(data.get("reason", "")), str(data.get("by", "")), str(data.get("at", ""))
            )
        except (ValueError, UnicodeDecodeError) as exc:
            return LockRecord(True, f"lock state {self.path} is corrupt ({exc}); failing closed", "system", "")

    def stamp(self) -> float:
        """A cheap change marker for polling (the state file's mtime, or 0 when absent)."""
        try:
            return self.path.stat().st_mtime_ns / 1e9
        except OSError:
            return 0.0

    def lock(self, reason: str, by: str) -> LockRecord:
        return self._write(LockRecord(True, reason, by, iso(self.clock.now())))

    def unlock(self, reason: str, by: str) -> LockRecord:
        return self._write(LockRecord(False, reason, by, iso(self.clock.now())))

    def _write(self, record: LockRecord) -> LockRecord:
        body = {"locked": record.locked, "reason": record.reason, "by": record.by, "at": record.at}
        line = {"event": "LOCK" if record.locked else "UNLOCK", **body}
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            # History first: a crash between the two leaves a history that says more, never less.
            with open(self.history_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(line, ensure_ascii=False) + "\n")
                f.flush()
                os.fsync(f.fileno())
            tmp = self.path.with_name(f".{LOCK_FILE}.{os.getpid()}.tmp")
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(json.dumps(body, ensure_ascii=False))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            fd = os.open(self.state_dir, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            why = exc.strerror or exc
            raise LockStateError(f"{self.state_dir}: cannot record the system lock state: {why}") from exc
        return record

    def history(self) -> list[dict[str, object]]:
        try:
            text = self.history_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]
